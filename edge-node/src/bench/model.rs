//! `edge-node bench model`: per-stage latency of one model, and its ceiling.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BenchError, Machine, Percentiles, machine, round3, sha256_file};
use crate::detect::{self, Detector, DetectorOptions, RuntimeOptions};
use crate::sched::PrepMode;
use crate::source::{self, SourceOptions, SourceState};

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct ModelBenchOptions {
    pub model: PathBuf,
    /// An image, a folder of images (jpg/jpeg/png), or a video.
    pub input: PathBuf,
    /// ONNX Runtime intra-op thread counts to try.
    pub threads: Vec<usize>,
    /// Square input sizes to try; empty = the model's own size.
    pub input_sizes: Vec<u32>,
    /// Timed iterations per configuration (and as many bare runs).
    pub iterations: usize,
    /// Untimed iterations before timing each configuration.
    pub warmup: usize,
    /// Video inputs: decode at most this many frames (they are held in memory).
    pub max_frames: usize,
    /// Video inputs: frames taller than this are downscaled, as the node does.
    pub max_height: u32,
    /// ONNX Runtime's idle threads spin (`[detector] spinning`).
    pub spinning: bool,
}

impl ModelBenchOptions {
    pub fn new(model: impl Into<PathBuf>, input: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            input: input.into(),
            threads: vec![1],
            input_sizes: Vec::new(),
            iterations: 100,
            warmup: 5,
            max_frames: 50,
            max_height: 720,
            spinning: false,
        }
    }
}

/// One measured configuration. Field names are a contract (see docs/bench.md).
#[derive(Clone, Debug, Serialize)]
pub struct ModelResult {
    pub threads: usize,
    /// The requested square size, or the model's width when none was requested.
    pub input_size: u32,
    /// `[width, height]` actually fed to the model.
    pub input_wh: [u32; 2],
    pub iterations: usize,
    pub pre_ms: Percentiles,
    pub infer_ms: Percentiles,
    pub post_ms: Percentiles,
    /// Wall time of one whole `detect` call.
    pub total_ms: Percentiles,
    /// The detector throughput an inference worker reaches with this many
    /// threads: `pipelined_fps` when the worker gets a pre-processing thread
    /// (`prep_thread`), `sequential_fps` when it does not.
    pub fps: f64,
    /// Whether a node worker with these threads runs a `prep-…` thread
    /// (`sched::prep_mode`: at normal priority when a core is left free,
    /// under `SCHED_IDLE` when not and the process may lift it again).
    pub prep_thread: bool,
    /// `inline`, `companion` or `background`: see `sched::PrepMode`. The
    /// pipelined loop runs its companion the same way (`companion` when the
    /// worker's mode is `inline`).
    pub prep_mode: String,
    /// iterations / wall time of the plain one-thread `detect` loop (pre,
    /// infer and post back to back, as `total_ms` times them).
    pub sequential_fps: f64,
    /// iterations / wall time of the pipelined loop: one thread
    /// pre-processes the next frame while this one runs the session and
    /// decodes the current one (two input buffers).
    pub pipelined_fps: f64,
    /// iterations / wall time of the bare `Session::run` loop.
    pub ceiling_fps: f64,
    pub ceiling_ms: Percentiles,
    /// How far the pipeline's throughput is below the bare session's:
    /// `(ceiling_fps / fps − 1) × 100`.
    pub overhead_pct: f64,
}

/// A configuration the model cannot run (e.g. another size for a fixed-size model).
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub threads: usize,
    pub input_size: u32,
    pub reason: String,
}

/// The whole report; serialised as the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBenchReport {
    pub model: String,
    pub model_sha256: String,
    pub cpu: String,
    pub cores: usize,
    pub ort_version: String,
    pub ort_path: String,
    /// The model's own `[width, height]`.
    pub model_input_wh: [u32; 2],
    /// Whether the model's spatial input dims are dynamic (other sizes possible).
    pub dynamic_input: bool,
    pub input: String,
    pub frames: usize,
    pub frame_wh: [u32; 2],
    pub warmup: usize,
    /// Whether ONNX Runtime's idle threads were allowed to spin.
    pub spinning: bool,
    pub results: Vec<ModelResult>,
    pub skipped: Vec<Skipped>,
}

/// A decoded RGB24 frame.
struct Rgb {
    data: Vec<u8>,
    width: u32,
    height: u32,
}

const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

fn read_image(path: &Path) -> Result<Rgb, BenchError> {
    let img = image::open(path)
        .map_err(|e| BenchError::Input {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .to_rgb8();
    let (width, height) = img.dimensions();
    Ok(Rgb {
        data: img.into_raw(),
        width,
        height,
    })
}

/// Decodes a video with the node's own source (file, as fast as possible,
/// every frame) and keeps the first `max` frames.
fn read_video(path: &Path, max: usize, max_height: u32) -> Result<Vec<Rgb>, BenchError> {
    let abs = std::fs::canonicalize(path).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let frames: Arc<Mutex<Vec<Rgb>>> = Arc::new(Mutex::new(Vec::new()));
    // `None`: enough frames or the end of the file; `Some(e)`: the source failed.
    let (done_tx, done_rx) = mpsc::channel::<Option<String>>();
    let done_tx = Arc::new(Mutex::new(done_tx));
    let sink = frames.clone();
    let frame_tx = done_tx.clone();
    let on_frame: source::FrameCallback = Box::new(move |f| {
        let mut v = sink.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < max {
            v.push(Rgb {
                data: f.data,
                width: f.width,
                height: f.height,
            });
            if v.len() == max {
                let _ = frame_tx
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send(None);
            }
        }
    });
    let on_state: source::StateCallback = Box::new(move |s| {
        let msg = match s {
            SourceState::Ended => Some(None),
            SourceState::Failed { error, .. } => Some(Some(error)),
            _ => None,
        };
        if let Some(m) = msg {
            let _ = done_tx.lock().unwrap_or_else(|e| e.into_inner()).send(m);
        }
    });
    let opts = SourceOptions {
        detect_fps: 0.0,
        max_height,
        realtime: false,
        loop_file: false,
        ..SourceOptions::new("bench", abs.display().to_string())
    };
    let handle = source::spawn_camera(opts, on_frame, on_state)?;
    let outcome = done_rx.recv_timeout(Duration::from_secs(120));
    handle.stop();
    handle.join();
    let frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    match outcome {
        Ok(Some(error)) if frames.is_empty() => Err(BenchError::Input {
            path: path.to_path_buf(),
            reason: error,
        }),
        Err(_) if frames.is_empty() => Err(BenchError::Input {
            path: path.to_path_buf(),
            reason: "no frame decoded within 120 s".into(),
        }),
        _ if frames.is_empty() => Err(BenchError::Input {
            path: path.to_path_buf(),
            reason: "the video has no frames".into(),
        }),
        _ => Ok(frames),
    }
}

/// Reads the input into memory, before any timing.
fn load_frames(path: &Path, max: usize, max_height: u32) -> Result<Vec<Rgb>, BenchError> {
    let meta = std::fs::metadata(path).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        files.sort();
        files.truncate(max.max(1));
        if files.is_empty() {
            return Err(BenchError::Input {
                path: path.to_path_buf(),
                reason: "the folder holds no .jpg/.jpeg/.png image".into(),
            });
        }
        files.iter().map(|f| read_image(f)).collect()
    } else if is_image(path) {
        Ok(vec![read_image(path)?])
    } else {
        read_video(path, max.max(1), max_height)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The timed loops of a configuration run in this many alternating rounds.
const ROUNDS: usize = 5;

/// Wall time of `iterations` frames (from `first` on, cycling through
/// `frames`) through an inference worker's pipelined loop
/// (`sched::run_pipelined`, as `node::run_worker_pipelined` runs it): a
/// companion thread pre-processes frame i + 1 into the spare of two input
/// buffers while this thread runs the session on frame i.
fn run_pipelined(
    det: &mut Detector,
    frames: &[Rgb],
    first: usize,
    iterations: usize,
    mode: PrepMode,
) -> Result<f64, BenchError> {
    let mut prep = det.frame_prep();
    let buffers = [det.new_prepared(), det.new_prepared()];
    let (mut prep_err, mut infer_err) = (None, None);
    let mut next = first;
    let start = Instant::now();
    crate::sched::run_pipelined(
        mode,
        "bench-prep",
        buffers,
        |hs, input| {
            if next >= first + iterations {
                return None;
            }
            let f = &frames[next % frames.len()];
            next += 1;
            match hs.preparing(|| prep.prepare(&f.data, f.width, f.height, input)) {
                Ok(()) => Some(()),
                Err(e) => {
                    prep_err = Some(e);
                    None
                }
            }
        },
        |(), input, give_back| match det.detect_prepared(&input) {
            Ok(_) => {
                give_back(input);
                true
            }
            Err(e) => {
                infer_err = Some(e);
                false
            }
        },
    )
    .map_err(BenchError::Thread)?;
    let wall = start.elapsed().as_secs_f64();
    if let Some(e) = infer_err.or(prep_err) {
        return Err(e.into());
    }
    Ok(wall)
}

/// Times one (threads, size) configuration.
fn run_config(
    det: &mut Detector,
    frames: &[Rgb],
    threads: usize,
    input_size: u32,
    iterations: usize,
    warmup: usize,
) -> Result<ModelResult, BenchError> {
    for i in 0..warmup {
        let f = &frames[i % frames.len()];
        det.detect_timed(&f.data, f.width, f.height)?;
    }
    let (mut pre, mut infer, mut post, mut total) = (
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
    );
    // The three loops take turns in rounds, so a neighbour's load that comes
    // and goes weighs on all of them alike and their ratios hold.
    let rounds = ROUNDS.min(iterations).max(1);
    // The mode a node worker with these threads would run; the pipelined
    // loop is timed even when that mode is inline, with a normal companion.
    let mode = crate::sched::prep_mode(threads, 1);
    let pipe_mode = if mode == PrepMode::Inline {
        PrepMode::Companion
    } else {
        mode
    };
    let (mut loop_wall, mut pipe_wall, mut bare_wall) = (0.0, 0.0, 0.0);
    let mut bare: Vec<f64> = Vec::with_capacity(iterations);
    let mut next = 0;
    for r in 0..rounds {
        let n = iterations * (r + 1) / rounds - iterations * r / rounds;
        let loop_start = Instant::now();
        for i in next..next + n {
            let f = &frames[i % frames.len()];
            let t0 = Instant::now();
            let (_, st) = det.detect_timed(&f.data, f.width, f.height)?;
            total.push(ms(t0.elapsed()));
            pre.push(ms(st.pre));
            infer.push(ms(st.infer));
            post.push(ms(st.post));
        }
        loop_wall += loop_start.elapsed().as_secs_f64();
        pipe_wall += run_pipelined(det, frames, next, n, pipe_mode)?;
        // The ceiling: the same session on the last pre-processed frame,
        // nothing else.
        let bare_start = Instant::now();
        bare.extend(det.run_bare(n)?.into_iter().map(ms));
        bare_wall += bare_start.elapsed().as_secs_f64();
        next += n;
    }
    let pipelined_fps = iterations as f64 / pipe_wall.max(1e-9);
    let sequential_fps = iterations as f64 / loop_wall.max(1e-9);
    let prep_thread = mode.has_thread();
    let fps = if prep_thread {
        pipelined_fps
    } else {
        sequential_fps
    };
    let ceiling_fps = iterations as f64 / bare_wall.max(1e-9);
    let overhead_pct = (ceiling_fps / fps.max(1e-9) - 1.0) * 100.0;
    let p = |v: &[f64]| Percentiles::of(v).unwrap_or_default();
    let (w, h) = det.spec().input_size;
    Ok(ModelResult {
        threads,
        input_size,
        input_wh: [w, h],
        iterations,
        pre_ms: p(&pre),
        infer_ms: p(&infer),
        post_ms: p(&post),
        total_ms: p(&total),
        fps: round3(fps),
        prep_thread,
        prep_mode: mode.as_str().to_string(),
        sequential_fps: round3(sequential_fps),
        pipelined_fps: round3(pipelined_fps),
        ceiling_fps: round3(ceiling_fps),
        ceiling_ms: p(&bare),
        overhead_pct: (overhead_pct * 10.0).round() / 10.0,
    })
}

/// Runs the model benchmark: frames are decoded first, then each thread count
/// × input size is warmed up and timed. Sizes the model cannot take become
/// [`Skipped`] entries, not errors.
pub fn bench_model(opts: &ModelBenchOptions) -> Result<ModelBenchReport, BenchError> {
    if opts.iterations == 0 {
        return Err(BenchError::Option {
            name: "--iterations",
            reason: "must be at least 1".into(),
        });
    }
    if opts.threads.is_empty() || opts.threads.contains(&0) {
        return Err(BenchError::Option {
            name: "--threads",
            reason: "give one or more thread counts ≥ 1, e.g. 1,2".into(),
        });
    }
    detect::init_runtime(&RuntimeOptions::default())?;
    let model_sha256 = sha256_file(&opts.model)?;
    let frames = load_frames(&opts.input, opts.max_frames, opts.max_height)?;
    tracing::info!(frames = frames.len(), input = %opts.input.display(), "input decoded");
    let Machine { cpu, cores } = machine();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    let mut model_wh = [0, 0];
    let mut dynamic_input = false;
    for &threads in &opts.threads {
        let mut det = Detector::load(&DetectorOptions {
            model: opts.model.clone(),
            intra_threads: threads,
            spinning: opts.spinning,
            ..DetectorOptions::default()
        })?;
        let (mw, mh) = det.spec().input_size;
        model_wh = [mw, mh];
        dynamic_input = det.has_dynamic_input();
        let sizes: Vec<u32> = if opts.input_sizes.is_empty() {
            vec![mw]
        } else {
            opts.input_sizes.clone()
        };
        for size in sizes {
            // No size requested: the model's own (possibly non-square) size.
            let (w, h) = if opts.input_sizes.is_empty() {
                (mw, mh)
            } else {
                (size, size)
            };
            if let Err(e) = det.set_input_size(w, h) {
                tracing::warn!(threads, size, error = %e, "input size skipped");
                skipped.push(Skipped {
                    threads,
                    input_size: size,
                    reason: e.to_string(),
                });
                continue;
            }
            match run_config(
                &mut det,
                &frames,
                threads,
                size,
                opts.iterations,
                opts.warmup,
            ) {
                Ok(r) => results.push(r),
                // A dynamic model may still refuse a size at run time (e.g. a reshape).
                Err(BenchError::Detect(e)) if (w, h) != (mw, mh) => {
                    tracing::warn!(threads, size, error = %e, "input size failed");
                    skipped.push(Skipped {
                        threads,
                        input_size: size,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    let first = &frames[0];
    Ok(ModelBenchReport {
        model: opts.model.display().to_string(),
        model_sha256,
        cpu,
        cores,
        ort_version: detect::runtime_version().unwrap_or_else(|| "unknown".into()),
        ort_path: detect::runtime_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        model_input_wh: model_wh,
        dynamic_input,
        input: opts.input.display().to_string(),
        frames: frames.len(),
        frame_wh: [first.width, first.height],
        warmup: opts.warmup,
        spinning: opts.spinning,
        results,
        skipped,
    })
}

impl ModelBenchReport {
    /// The readable table printed by the CLI.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "model {} (sha256 {}), input {}x{}{}\n",
            self.model,
            &self.model_sha256[..self.model_sha256.len().min(16)],
            self.model_input_wh[0],
            self.model_input_wh[1],
            if self.dynamic_input {
                ", dynamic spatial dims"
            } else {
                ", fixed size"
            }
        ));
        out.push_str(&format!(
            "cpu {} ({} cores), ONNX Runtime {}, spinning {}\n",
            self.cpu,
            self.cores,
            self.ort_version,
            if self.spinning { "on" } else { "off" }
        ));
        out.push_str(&format!(
            "frames: {} of {} ({}x{}), warm-up {} per configuration\n\n",
            self.frames, self.input, self.frame_wh[0], self.frame_wh[1], self.warmup
        ));
        out.push_str(&format!(
            "{:>3} {:>9} {:>5} | {:>20} | {:>20} | {:>20} | {:>20} | {:>7} {:>7} {:>7} {:>8} {:>8}\n",
            "thr",
            "size",
            "iter",
            "pre ms p50/p90/p99",
            "infer ms p50/p90/p99",
            "post ms p50/p90/p99",
            "total ms p50/p90/p99",
            "seq fps",
            "pip fps",
            "fps",
            "ceiling",
            "overhead"
        ));
        let trip = |p: &Percentiles| format!("{:.2}/{:.2}/{:.2}", p.p50, p.p90, p.p99);
        for r in &self.results {
            out.push_str(&format!(
                "{:>3} {:>9} {:>5} | {:>20} | {:>20} | {:>20} | {:>20} | {:>7.1} {:>7.1} {:>6.1}{} {:>8.1} {:>7.1}%\n",
                r.threads,
                format!("{}x{}", r.input_wh[0], r.input_wh[1]),
                r.iterations,
                trip(&r.pre_ms),
                trip(&r.infer_ms),
                trip(&r.post_ms),
                trip(&r.total_ms),
                r.sequential_fps,
                r.pipelined_fps,
                r.fps,
                match r.prep_mode.as_str() {
                    "background" => 'b',
                    "companion" => 'p',
                    _ => 's',
                },
                r.ceiling_fps,
                r.overhead_pct
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!(
                "{:>3} {:>9} SKIPPED: {}\n",
                s.threads,
                format!("{0}x{0}", s.input_size),
                s.reason
            ));
        }
        out.push_str(
            "\nseq fps = pre, infer and post back to back on one thread; pip fps = the next \
             frame pre-processed on a second thread while the session runs;\nfps = what a \
             node worker with these threads reaches: p = pipelined (a core is left free), \
             b = pipelined with the second thread under SCHED_IDLE (no free core), \
             s = sequential;\nceiling = a bare Session::run loop on the same pre-processed \
             input; overhead = ceiling / fps - 1\n",
        );
        out
    }
}
