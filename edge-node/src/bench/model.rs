//! `edge-node bench model`: per-stage latency of one model, and its ceiling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BenchError, Machine, Percentiles, machine, round3, sha256_file};
use crate::detect::{
    self, Analysis, Detector, DetectorOptions, InputBudget, Provider, RuntimeOptions, tiles,
};
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
    /// Square input sizes to try (`--input-size`).
    pub input_sizes: Vec<u32>,
    /// Input budgets to try (`--input-pixels`), after the sizes. With
    /// neither sizes nor budgets: the detector's default budget.
    pub input_budgets: Vec<InputBudget>,
    /// Also run every configuration with tiles (`--tiles`): a tiled row
    /// after each untiled one.
    pub tiles: bool,
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
    /// Execution provider and its device (`[detector] provider`,
    /// `provider_device`); one per process, see [`detect::provider`].
    pub provider: Provider,
    pub provider_device: Option<String>,
}

impl ModelBenchOptions {
    pub fn new(model: impl Into<PathBuf>, input: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            input: input.into(),
            threads: vec![1],
            input_sizes: Vec::new(),
            input_budgets: Vec::new(),
            tiles: false,
            iterations: 100,
            warmup: 5,
            max_frames: 50,
            max_height: 720,
            spinning: false,
            provider: Provider::Cpu,
            provider_device: None,
        }
    }
}

/// One measured configuration. Field names are a contract (see docs/bench.md).
#[derive(Clone, Debug, Serialize)]
pub struct ModelResult {
    pub threads: usize,
    /// The requested square size, or the model's width when none was
    /// requested (the `--input-pixels` rows: see `budget` and `input_wh`).
    pub input_size: u32,
    /// How frames were sized ([`InputBudget::describe`]): `model`,
    /// `standard`, `detailed`, `maximum`, `173056 px`, or `WxH` for an
    /// `--input-size` other than the model's own.
    pub budget: String,
    /// `[width, height]` actually fed to the model (for the first frame).
    pub input_wh: [u32; 2],
    /// Every distinct `[width, height]` the frames got, first seen first
    /// (one entry unless the frames differ in shape).
    pub input_whs: Vec<[u32; 2]>,
    /// Whether tiles were added to the full-frame pass.
    pub tiles: bool,
    /// Tiles per frame (mean over the frames; 0 without tiles, or for a
    /// frame no larger than one tile).
    pub tiles_per_frame: f64,
    pub iterations: usize,
    /// With tiles: the whole frame's stages (full-frame pass plus every tile).
    pub pre_ms: Percentiles,
    pub infer_ms: Percentiles,
    pub post_ms: Percentiles,
    /// Wall time of one whole `detect` call (with its tiles).
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
    /// decodes the current one (two input buffers); tiles run after the
    /// full-frame pass on this thread, as in a node worker.
    pub pipelined_fps: f64,
    /// iterations / wall time of the bare `Session::run` loop (with tiles:
    /// one full-frame run plus one per tile, per iteration).
    pub ceiling_fps: f64,
    pub ceiling_ms: Percentiles,
    /// How far the pipeline's throughput is below the bare session's:
    /// `(ceiling_fps / fps − 1) × 100`.
    pub overhead_pct: f64,
    /// Detections per class name (classes with none left out) of one pass
    /// over every loaded frame, after the timing, at the detector's default
    /// threshold and classes.
    pub detections: BTreeMap<String, u64>,
    /// Frames in that pass (each loaded frame once).
    pub frames_counted: usize,
}

/// A configuration the model cannot run (e.g. another size for a
/// fixed-size model); with `--tiles`, for both its rows.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub threads: usize,
    /// The requested square size, or the model's width for a budget.
    pub input_size: u32,
    /// The budget ([`ModelResult::budget`]) or the `WxH` size skipped.
    pub budget: String,
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
    /// The execution provider: `cpu`, `openvino`, `cuda` or `tensorrt`.
    pub provider: String,
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
    /// The score threshold of the detection counts (`DetectorOptions` default).
    pub threshold: f32,
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

/// One configuration to time: how frames are sized, and whether tiles are added.
#[derive(Clone, Copy, Debug)]
struct Config {
    /// [`ModelResult::input_size`].
    input_size: u32,
    analysis: Analysis,
}

impl Config {
    /// `standard`, `standard+tiles`, …: for logs and skip entries.
    fn label(&self) -> String {
        let name = self.analysis.input.describe();
        if self.analysis.tiles {
            format!("{name}+tiles")
        } else {
            name
        }
    }
}

/// The tiles [`Detector::add_tiles`] runs on a `w` x `h` frame: none when
/// its plan has a single tile (the frame is no larger than one).
fn tile_count(det: &Detector, w: u32, h: u32) -> usize {
    let plan = tiles::TilePlan::for_model(w, h, det.spec().input_size, tiles::default_overlap());
    if plan.tiles.len() <= 1 {
        0
    } else {
        plan.tiles.len()
    }
}

/// Wall time of `iterations` frames (from `first` on, cycling through
/// `frames`) through an inference worker's pipelined loop
/// (`sched::run_pipelined`, as `node::run_worker_pipelined` runs it): a
/// companion thread pre-processes frame i + 1 into the spare of two input
/// buffers while this thread runs the session on frame i and then, with
/// `tiles`, the frame's tiles ([`Detector::add_tiles`], as the worker does).
fn run_pipelined(
    det: &mut Detector,
    frames: &[Rgb],
    first: usize,
    iterations: usize,
    mode: PrepMode,
    tiles: bool,
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
            let i = next % frames.len();
            let f = &frames[i];
            next += 1;
            match hs.preparing(|| prep.prepare(&f.data, f.width, f.height, input)) {
                Ok(()) => Some(i),
                Err(e) => {
                    prep_err = Some(e);
                    None
                }
            }
        },
        |i, input, give_back| {
            let result = det.detect_prepared(&input);
            give_back(input);
            let f = &frames[i];
            let result = match result {
                Ok((full, times)) if tiles => {
                    det.add_tiles(full, times, &f.data, f.width, f.height)
                }
                other => other,
            };
            match result {
                Ok(_) => true,
                Err(e) => {
                    infer_err = Some(e);
                    false
                }
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

/// What the three loops of a configuration measured (milliseconds per
/// iteration, seconds of wall time per loop).
#[derive(Default)]
struct Timings {
    pre: Vec<f64>,
    infer: Vec<f64>,
    post: Vec<f64>,
    total: Vec<f64>,
    bare: Vec<f64>,
    loop_wall: f64,
    pipe_wall: f64,
    bare_wall: f64,
}

/// One round of the ceiling: `n` bare session runs of the full-frame input
/// of `last` (the last frame of the round), each with `tiles` more bare runs
/// of one of its tiles when the configuration adds tiles.
fn run_ceiling(
    det: &mut Detector,
    last: &Rgb,
    cfg: Config,
    tiles: usize,
    n: usize,
    t: &mut Timings,
) -> Result<(), BenchError> {
    // The loops before ended on `last`: its full-frame input is the
    // detector's input, or, with tiles, its last tile's (the tiles of a
    // frame all have one size).
    let mut tile_runs = Vec::new();
    if cfg.analysis.tiles && tiles > 0 {
        let start = Instant::now();
        tile_runs = det.run_bare(n * tiles)?;
        t.bare_wall += start.elapsed().as_secs_f64();
        // The full-frame input back in place, untimed.
        det.detect_timed_as(&last.data, last.width, last.height, cfg.analysis.input)?;
    }
    let start = Instant::now();
    let full = det.run_bare(n)?;
    t.bare_wall += start.elapsed().as_secs_f64();
    for (i, d) in full.into_iter().enumerate() {
        let of_tiles: Duration = tile_runs
            .get(i * tiles..(i + 1) * tiles)
            .map_or(Duration::ZERO, |s| s.iter().sum());
        t.bare.push(ms(d + of_tiles));
    }
    Ok(())
}

/// The three loops of a configuration, taking turns in rounds so that a
/// neighbour's load that comes and goes weighs on all of them alike and
/// their ratios hold. `tiles[i]` is frame i's tile count.
fn time_rounds(
    det: &mut Detector,
    frames: &[Rgb],
    cfg: Config,
    iterations: usize,
    pipe_mode: PrepMode,
    tiles: &[usize],
) -> Result<Timings, BenchError> {
    let mut t = Timings::default();
    let rounds = ROUNDS.min(iterations).max(1);
    let mut next = 0;
    for r in 0..rounds {
        let n = iterations * (r + 1) / rounds - iterations * r / rounds;
        let loop_start = Instant::now();
        for i in next..next + n {
            let f = &frames[i % frames.len()];
            let t0 = Instant::now();
            let (_, st) = det.detect_analysed(&f.data, f.width, f.height, cfg.analysis)?;
            t.total.push(ms(t0.elapsed()));
            t.pre.push(ms(st.pre));
            t.infer.push(ms(st.infer));
            t.post.push(ms(st.post));
        }
        t.loop_wall += loop_start.elapsed().as_secs_f64();
        t.pipe_wall += run_pipelined(det, frames, next, n, pipe_mode, cfg.analysis.tiles)?;
        let last = (next + n - 1) % frames.len();
        run_ceiling(det, &frames[last], cfg, tiles[last], n, &mut t)?;
        next += n;
    }
    Ok(t)
}

/// One pass over every frame (each once) as a node worker analyses it, at
/// the detector's threshold and classes: detections per class name.
fn count_detections(
    det: &mut Detector,
    frames: &[Rgb],
    analysis: Analysis,
) -> Result<BTreeMap<String, u64>, BenchError> {
    let mut by_id: BTreeMap<u32, u64> = BTreeMap::new();
    for f in frames {
        let (dets, _) = det.detect_analysed(&f.data, f.width, f.height, analysis)?;
        for d in dets {
            *by_id.entry(d.class_id).or_default() += 1;
        }
    }
    let labels = det.labels();
    let mut by_name = BTreeMap::new();
    for (id, n) in by_id {
        let name = labels
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("class {id}"));
        *by_name.entry(name).or_default() += n;
    }
    Ok(by_name)
}

/// Times one (threads, budget, tiles) configuration, then counts its
/// detections.
fn run_config(
    det: &mut Detector,
    frames: &[Rgb],
    threads: usize,
    cfg: Config,
    iterations: usize,
    warmup: usize,
) -> Result<ModelResult, BenchError> {
    let budget = cfg.analysis.input;
    // The pipelined loop's pre-processing takes the detector's budget.
    det.set_input_budget(budget);
    for i in 0..warmup {
        let f = &frames[i % frames.len()];
        det.detect_analysed(&f.data, f.width, f.height, cfg.analysis)?;
    }
    let tiles: Vec<usize> = frames
        .iter()
        .map(|f| {
            if cfg.analysis.tiles {
                tile_count(det, f.width, f.height)
            } else {
                0
            }
        })
        .collect();
    // The mode a node worker with these threads would run; the pipelined
    // loop is timed even when that mode is inline, with a normal companion.
    let mode = crate::sched::prep_mode(threads, 1);
    let pipe_mode = if mode == PrepMode::Inline {
        PrepMode::Companion
    } else {
        mode
    };
    let t = time_rounds(det, frames, cfg, iterations, pipe_mode, &tiles)?;
    let detections = count_detections(det, frames, cfg.analysis)?;
    let pipelined_fps = iterations as f64 / t.pipe_wall.max(1e-9);
    let sequential_fps = iterations as f64 / t.loop_wall.max(1e-9);
    let prep_thread = mode.has_thread();
    let fps = if prep_thread {
        pipelined_fps
    } else {
        sequential_fps
    };
    let ceiling_fps = iterations as f64 / t.bare_wall.max(1e-9);
    let overhead_pct = (ceiling_fps / fps.max(1e-9) - 1.0) * 100.0;
    let p = |v: &[f64]| Percentiles::of(v).unwrap_or_default();
    // The sizes the frames were run at (a dynamic model sizes them by budget).
    let mut input_whs: Vec<[u32; 2]> = Vec::new();
    for f in frames {
        let (w, h) = det.input_size_for(budget, f.width, f.height);
        if !input_whs.contains(&[w, h]) {
            input_whs.push([w, h]);
        }
    }
    let tiles_per_frame = tiles.iter().sum::<usize>() as f64 / frames.len().max(1) as f64;
    Ok(ModelResult {
        threads,
        input_size: cfg.input_size,
        budget: budget.describe(),
        input_wh: input_whs.first().copied().unwrap_or_default(),
        input_whs,
        tiles: cfg.analysis.tiles,
        tiles_per_frame: round3(tiles_per_frame),
        iterations,
        pre_ms: p(&t.pre),
        infer_ms: p(&t.infer),
        post_ms: p(&t.post),
        total_ms: p(&t.total),
        fps: round3(fps),
        prep_thread,
        prep_mode: mode.as_str().to_string(),
        sequential_fps: round3(sequential_fps),
        pipelined_fps: round3(pipelined_fps),
        ceiling_fps: round3(ceiling_fps),
        ceiling_ms: p(&t.bare),
        overhead_pct: (overhead_pct * 10.0).round() / 10.0,
        detections,
        frames_counted: frames.len(),
    })
}

/// The configurations one detector runs, in order: the `--input-size`
/// sizes, then the budgets (the detector's default when neither was
/// given), each untiled and, with `--tiles`, tiled. What the model cannot
/// run goes to `skipped`: other sizes on a fixed-size model, and budgets
/// other than `model` on a fixed-size model once `model` (or another
/// budget) already measures the one size it has.
fn plan_configs(
    det: &mut Detector,
    opts: &ModelBenchOptions,
    threads: usize,
    skipped: &mut Vec<Skipped>,
) -> Vec<Config> {
    let (mw, mh) = det.spec().input_size;
    let default = det.input_budget();
    let mut base: Vec<(u32, InputBudget)> = Vec::new();
    for &size in &opts.input_sizes {
        match det.set_input_size(size, size) {
            Ok(()) => base.push((size, det.input_budget())),
            Err(e) => {
                tracing::warn!(threads, size, error = %e, "input size skipped");
                skipped.push(Skipped {
                    threads,
                    input_size: size,
                    budget: format!("{size}x{size}"),
                    reason: e.to_string(),
                });
            }
        }
    }
    det.set_input_budget(default);
    let budgets = if opts.input_sizes.is_empty() && opts.input_budgets.is_empty() {
        vec![default]
    } else {
        opts.input_budgets.clone()
    };
    let fixed = !det.has_dynamic_input();
    let model_listed = budgets.contains(&InputBudget::Model);
    for budget in budgets {
        if fixed && budget != InputBudget::Model && (model_listed || !base.is_empty()) {
            skipped.push(Skipped {
                threads,
                input_size: mw,
                budget: budget.describe(),
                reason: format!(
                    "the model's input size is fixed ({mw}x{mh}): `{}` runs exactly as `model`",
                    budget.describe()
                ),
            });
            continue;
        }
        base.push((mw, budget));
    }
    let modes: &[bool] = if opts.tiles { &[false, true] } else { &[false] };
    base.into_iter()
        .flat_map(|(input_size, input)| {
            modes.iter().map(move |&tiles| Config {
                input_size,
                analysis: Analysis { input, tiles },
            })
        })
        .collect()
}

/// Runs the model benchmark: frames are decoded first, then each thread
/// count × configuration (see `plan_configs`) is warmed up, timed and its
/// detections counted. Configurations the model cannot run become
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
    detect::init_runtime(&RuntimeOptions {
        provider: opts.provider,
        device: opts.provider_device.clone(),
        ..RuntimeOptions::default()
    })?;
    let model_sha256 = sha256_file(&opts.model)?;
    let frames = load_frames(&opts.input, opts.max_frames, opts.max_height)?;
    tracing::info!(frames = frames.len(), input = %opts.input.display(), "input decoded");
    let Machine { cpu, cores } = machine();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    let mut model_wh = [0, 0];
    let mut dynamic_input = false;
    let det_opts = DetectorOptions {
        model: opts.model.clone(),
        spinning: opts.spinning,
        ..DetectorOptions::default()
    };
    for &threads in &opts.threads {
        let mut det = Detector::load(&DetectorOptions {
            intra_threads: threads,
            ..det_opts.clone()
        })?;
        let (mw, mh) = det.spec().input_size;
        model_wh = [mw, mh];
        dynamic_input = det.has_dynamic_input();
        for cfg in plan_configs(&mut det, opts, threads, &mut skipped) {
            tracing::info!(threads, config = %cfg.label(), "timing");
            match run_config(
                &mut det,
                &frames,
                threads,
                cfg,
                opts.iterations,
                opts.warmup,
            ) {
                Ok(r) => results.push(r),
                // A dynamic model may still refuse a size at run time (e.g. a reshape).
                Err(BenchError::Detect(e)) if cfg.analysis.input != InputBudget::Model => {
                    tracing::warn!(threads, config = %cfg.label(), error = %e, "configuration failed");
                    skipped.push(Skipped {
                        threads,
                        input_size: cfg.input_size,
                        budget: cfg.label(),
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
        provider: detect::runtime_provider().unwrap_or_default().to_string(),
        model_input_wh: model_wh,
        dynamic_input,
        input: opts.input.display().to_string(),
        frames: frames.len(),
        frame_wh: [first.width, first.height],
        warmup: opts.warmup,
        spinning: opts.spinning,
        threshold: det_opts.threshold,
        results,
        skipped,
    })
}

/// The classes the detection summary names one by one, in this order;
/// the others are summed as `other N`.
const TRAFFIC_CLASSES: [&str; 6] = ["person", "bicycle", "car", "motorcycle", "bus", "truck"];

/// `6`, `4.5`: a tile count for the table.
fn tiles_cell(r: &ModelResult) -> String {
    if !r.tiles {
        "-".into()
    } else if r.tiles_per_frame.fract() == 0.0 {
        format!("{}", r.tiles_per_frame)
    } else {
        format!("{:.1}", r.tiles_per_frame)
    }
}

impl ModelResult {
    /// `standard+tiles 480x352 (6 tiles): person 21, car 2, other 1 (5 frames)`.
    pub fn detection_line(&self) -> String {
        let mut parts: Vec<String> = TRAFFIC_CLASSES
            .iter()
            .filter_map(|c| {
                self.detections
                    .get(*c)
                    .filter(|n| **n > 0)
                    .map(|n| format!("{c} {n}"))
            })
            .collect();
        let other: u64 = self
            .detections
            .iter()
            .filter(|(c, _)| !TRAFFIC_CLASSES.contains(&c.as_str()))
            .map(|(_, n)| n)
            .sum();
        if other > 0 {
            parts.push(format!("other {other}"));
        }
        if parts.is_empty() {
            parts.push("nothing".into());
        }
        let (name, tiles) = if self.tiles {
            (
                format!("{}+tiles", self.budget),
                format!(" ({} tiles)", tiles_cell(self)),
            )
        } else {
            (self.budget.clone(), String::new())
        };
        format!(
            "{name} {}x{}{}{tiles}: {} ({} frame{})",
            self.input_wh[0],
            self.input_wh[1],
            if self.input_whs.len() > 1 { "*" } else { "" },
            parts.join(", "),
            self.frames_counted,
            if self.frames_counted == 1 { "" } else { "s" }
        )
    }
}

impl ModelBenchReport {
    /// The readable table printed by the CLI.
    pub fn table(&self) -> String {
        let mut out = self.table_head();
        let trip = |p: &Percentiles| format!("{:.2}/{:.2}/{:.2}", p.p50, p.p90, p.p99);
        for r in &self.results {
            out.push_str(&format!(
                "{:>3} {:>9} {:>9} {:>5} {:>5} | {:>20} | {:>20} | {:>20} | {:>20} | {:>7.1} {:>7.1} {:>6.1}{} {:>8.1} {:>7.1}%\n",
                r.threads,
                r.budget,
                format!(
                    "{}x{}{}",
                    r.input_wh[0],
                    r.input_wh[1],
                    if r.input_whs.len() > 1 { "*" } else { "" }
                ),
                tiles_cell(r),
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
                s.threads, s.budget, s.reason
            ));
        }
        out.push_str(&self.table_notes());
        out.push_str(&self.detection_summary());
        out
    }

    /// The header lines and the column titles.
    fn table_head(&self) -> String {
        let mut out = format!(
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
        );
        out.push_str(&format!(
            "cpu {} ({} cores), ONNX Runtime {} ({} provider), spinning {}\n",
            self.cpu,
            self.cores,
            self.ort_version,
            self.provider,
            if self.spinning { "on" } else { "off" }
        ));
        out.push_str(&format!(
            "frames: {} of {} ({}x{}), warm-up {} per configuration\n\n",
            self.frames, self.input, self.frame_wh[0], self.frame_wh[1], self.warmup
        ));
        out.push_str(&format!(
            "{:>3} {:>9} {:>9} {:>5} {:>5} | {:>20} | {:>20} | {:>20} | {:>20} | {:>7} {:>7} {:>7} {:>8} {:>8}\n",
            "thr",
            "budget",
            "size",
            "tiles",
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
        out
    }

    /// What the columns mean.
    fn table_notes(&self) -> String {
        let mut out = String::from(
            "\nseq fps = pre, infer and post back to back on one thread; pip fps = the next \
             frame pre-processed on a second thread while the session runs;\nfps = what a \
             node worker with these threads reaches: p = pipelined (a core is left free), \
             b = pipelined with the second thread under SCHED_IDLE (no free core), \
             s = sequential;\nceiling = a bare Session::run loop on the same pre-processed \
             input; overhead = ceiling / fps - 1\n",
        );
        if self.results.iter().any(|r| r.tiles) {
            out.push_str(
                "tiles = tiles per frame at native resolution, run after the full-frame pass; \
                 the stages, fps and ceiling are per frame, tiles included\n",
            );
        }
        if self.results.iter().any(|r| r.input_whs.len() > 1) {
            out.push_str(
                "* frames of several shapes: the first frame's input size (all in input_whs)\n",
            );
        }
        if !self.dynamic_input && self.results.iter().any(|r| r.budget != "model") {
            out.push_str(&format!(
                "fixed-size model: every budget runs at {}x{}, exactly as `model`\n",
                self.model_input_wh[0], self.model_input_wh[1]
            ));
        }
        out
    }

    /// One line of detections per configuration.
    fn detection_summary(&self) -> String {
        if self.results.is_empty() {
            return String::new();
        }
        let several_threads = self
            .results
            .iter()
            .any(|r| r.threads != self.results[0].threads);
        let mut out = format!(
            "\ndetections (score > {}, all classes, each frame once):\n",
            self.threshold
        );
        for r in &self.results {
            if several_threads {
                out.push_str(&format!("  {}t {}\n", r.threads, r.detection_line()));
            } else {
                out.push_str(&format!("  {}\n", r.detection_line()));
            }
        }
        out
    }
}
