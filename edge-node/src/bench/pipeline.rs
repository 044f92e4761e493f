//! `edge-node bench pipeline`: N cameras through the real node for a fixed
//! time (copies of a config's first camera, or with `--mix` its cameras in
//! turn), and the search for the largest N that holds a target detect fps.
//! Every report states the stream the cameras carried ([`StreamFacts`]) and
//! where the CPU went ([`CpuSplit`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BenchError, Machine, Percentiles, machine, round3, sha256_file};
use crate::config::{self, BrokerUrl, Pipeline};
use crate::cpu::{self, CpuSplit};
use crate::detect;
use crate::node::{self, RunReport};
use crate::source::{self, RtspServer, StreamFacts};

/// Default `--hold-ratio`: a camera "holds" the target when its measured
/// detect fps is at least this share of it. Not a discount on the goal: a
/// camera that keeps up measures ≈ 1.0 × target, but the frame still in the
/// detector when the run stops is not counted, which costs 1 / (duration ×
/// target) of the figure (2 % for 10 s at 5 fps). 0.95 absorbs that for runs
/// of ≥ 4 s at 5 fps; a camera that falls behind drops frames every second
/// and measures well under it.
pub const DEFAULT_HOLD_RATIO: f64 = 0.95;
/// `--find-capacity` never tries more cameras than this (the default `--max-cameras`).
pub const MAX_CAMERAS: usize = 256;

/// What to run.
#[derive(Clone, Debug)]
pub struct PipelineBenchOptions {
    pub pipeline: PathBuf,
    pub cameras: usize,
    pub duration: Duration,
    /// Detect fps every camera should reach; `None`: the first camera's `detect_fps`.
    pub target_fps: Option<f64>,
    /// Clip served over loopback RTSP when the first camera is `rtsp://`.
    pub rtsp_file: PathBuf,
    /// Clip served as the sub-stream of dual-stream RTSP cameras (their
    /// `detect_url`), e.g. the 640×360 stream made with the same timestamps.
    pub rtsp_detect_file: Option<PathBuf>,
    /// A camera holds when `detect_fps ≥ hold_ratio × target_fps`; in (0, 1].
    pub hold_ratio: f64,
    /// `--find-capacity` tries at most this many cameras (1..=`MAX_CAMERAS`).
    pub max_cameras: usize,
    /// Serve RTSP from a child process of this executable (`serve-rtsp`)
    /// instead of in this process; the CLI sets its own path.
    pub harness_exe: Option<PathBuf>,
    /// Run exactly these camera counts instead of searching (`--sweep`).
    pub sweep: Vec<usize>,
    /// Every camera's model instead of the config's (`--model`).
    pub model: Option<PathBuf>,
    /// `[detector] threads` instead of the config's (`--threads`).
    pub threads: Option<usize>,
    /// `[detector] workers` instead of the config's (`--workers`).
    pub workers: Option<usize>,
    /// Camera k is the config's camera k mod M (`--mix`), not copies of the first.
    pub mix: bool,
}

/// One camera of one run. Field names are a contract (see docs/bench.md).
#[derive(Clone, Debug, Serialize)]
pub struct CameraResult {
    pub id: String,
    pub target_fps: f64,
    /// Frames analysed per second, from the first frame's arrival to the stop.
    pub detect_fps: f64,
    pub holds: bool,
    pub frames_in: u64,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    /// Frame arrival in the node → detections ready, every analysed frame.
    pub frame_to_detection_ms: Option<Percentiles>,
    /// Frame arrival → the event it caused handed to the MQTT client (sparse).
    pub frame_to_publish_ms: Option<Percentiles>,
    pub events_timed: usize,
}

/// One timed run of N cameras.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineRun {
    pub cameras: usize,
    pub duration_s: f64,
    pub wall_s: f64,
    pub target_fps: f64,
    /// The hold criterion: a camera holds when `detect_fps ≥ hold_ratio × target_fps`.
    pub hold_ratio: f64,
    /// Every camera held.
    pub holds: bool,
    /// utime + stime of this process over the run / wall time; 100 = one core.
    pub cpu_pct: f64,
    /// VmHWM of this process after the run (peak resident set), MiB.
    pub peak_rss_mib: f64,
    /// Whether the peak was reset before this run (`/proc/self/clear_refs`).
    pub peak_rss_reset: bool,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    pub events: u64,
    pub infer_ms: Option<Percentiles>,
    /// Where the process's CPU went, by stage (bench harness apart).
    pub cpu_by_stage: CpuSplit,
    pub per_camera: Vec<CameraResult>,
}

/// The `--json` output of a plain run.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineBenchReport {
    pub pipeline: String,
    pub camera_url: String,
    pub source: &'static str,
    /// What the cameras carried: the served clip (RTSP) or the first
    /// camera's file; `None` for live sources.
    pub stream: Option<StreamFacts>,
    /// What dual-stream cameras analysed (`--rtsp-detect-file`), if any.
    pub detect_stream: Option<StreamFacts>,
    /// Cameras cycled through the config's cameras (`--mix`).
    pub mix: bool,
    pub model: String,
    pub model_sha256: String,
    pub cpu: String,
    pub cores: usize,
    pub ort_version: String,
    pub detector_threads: usize,
    pub detector_workers: usize,
    pub run: PipelineRun,
}

/// One step of the capacity search.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityStep {
    pub cameras: usize,
    pub holds: bool,
    pub min_fps: f64,
    pub median_fps: f64,
    pub max_fps: f64,
    /// The whole process (bench harness included), % of one core.
    pub cpu_pct: f64,
    /// The node's stages only ([`CpuSplit::node_pct`]).
    pub node_cpu_pct: f64,
    pub peak_rss_mib: f64,
}

/// The `--find-capacity` output.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityReport {
    #[serde(flatten)]
    pub bench: PipelineBenchReport,
    pub target_fps: f64,
    pub hold_ratio: f64,
    /// The search's upper bound (`--max-cameras`).
    pub max_cameras: usize,
    /// Largest N that held (0: even one camera did not).
    pub capacity: usize,
    pub steps: Vec<CapacityStep>,
}

/// The in-process broker (rumqttd cannot be stopped: one per process).
static BROKER: OnceLock<Result<u16, String>> = OnceLock::new();

fn broker_port(max_packet: usize) -> Result<u16, BenchError> {
    let r = BROKER.get_or_init(|| {
        #[cfg(feature = "embedded-broker")]
        {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| e.to_string())?;
            crate::publish::embedded::start(port, max_packet).map_err(|e| e.to_string())?;
            tracing::info!(port, "bench: embedded MQTT broker on 127.0.0.1");
            Ok(port)
        }
        #[cfg(not(feature = "embedded-broker"))]
        {
            let _ = max_packet;
            Err("this build has no embedded broker (cargo feature `embedded-broker`)".into())
        }
    });
    r.clone().map_err(|reason| BenchError::Option {
        name: "mqtt",
        reason,
    })
}

/// utime + stime of this process, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

const USER_HZ: f64 = 100.0;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| round3(kb / 1024.0))
        .unwrap_or(0.0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so each run's peak is its own.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One of the config's cameras as the bench runs it.
struct BenchCamera {
    /// Index in the config's `[[cameras]]`.
    index: usize,
    /// The URL the bench opens (RTSP cameras: the loopback server).
    url: String,
    /// A dual-stream camera's analysed sub-stream (RTSP: the second server).
    detect_url: Option<String>,
    source: &'static str,
}

/// The config's cameras (only the first unless `--mix`), replicated to N.
struct Plan {
    base: Pipeline,
    cams: Vec<BenchCamera>,
    stream: Option<StreamFacts>,
    detect_stream: Option<StreamFacts>,
    target_fps: f64,
    hold_ratio: f64,
    rtsp: Option<Harness>,
    rtsp_sub: Option<Harness>,
}

/// The loopback RTSP server feeding the cameras: in this process (library
/// callers), or a child `edge-node serve-rtsp` so that its CPU is not
/// counted as the node's.
enum Harness {
    InProcess(RtspServer),
    Process {
        child: std::process::Child,
        url: String,
    },
}

impl Harness {
    fn start(
        opts: &PipelineBenchOptions,
        file: &Path,
        option: &'static str,
        mount: &str,
    ) -> Result<Harness, BenchError> {
        let Some(exe) = &opts.harness_exe else {
            return Ok(Harness::InProcess(RtspServer::start(file, 0, mount)?));
        };
        let fail = |reason: String| BenchError::Option {
            name: option,
            reason,
        };
        if !file.is_file() {
            return Err(fail(format!("{} is not a file", file.display())));
        }
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| fail(format!("no free loopback port: {e}")))?;
        let mut child = std::process::Command::new(exe)
            .arg("serve-rtsp")
            .arg(file)
            .args(["--port", &port.to_string(), "--mount", mount])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start {} serve-rtsp: {e}", exe.display())))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(format!(
                    "the RTSP server exited ({status}) before listening"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("the RTSP server did not listen within 15 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Harness::Process {
            child,
            url: format!("rtsp://127.0.0.1:{port}{mount}"),
        })
    }

    fn url(&self) -> String {
        match self {
            Harness::InProcess(s) => s.url().to_string(),
            Harness::Process { url, .. } => url.clone(),
        }
    }

    /// CPU ticks of the server process (`None` in-process).
    fn ticks(&self) -> Option<u64> {
        let Harness::Process { child, .. } = self else {
            return None;
        };
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok()?;
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Harness::Process { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Plan {
    fn new(opts: &PipelineBenchOptions) -> Result<Plan, BenchError> {
        let mut base = Pipeline::load(&opts.pipeline)?;
        let Some(first) = base.raw.cameras.first() else {
            return Err(BenchError::Option {
                name: "pipeline",
                reason: format!("{} has no camera", opts.pipeline.display()),
            });
        };
        let target_fps = opts.target_fps.unwrap_or(first.detect_fps);
        if !(target_fps > 0.0 && target_fps.is_finite()) {
            return Err(BenchError::Option {
                name: "--target-fps",
                reason: format!("{target_fps} is not a positive number"),
            });
        }
        override_detector(&mut base, opts)?;
        let used = if opts.mix { base.camera_urls.len() } else { 1 };
        let mut rtsp: Option<Harness> = None;
        let mut rtsp_sub: Option<Harness> = None;
        let mut cams = Vec::with_capacity(used);
        for (index, url) in base.camera_urls.iter().take(used).enumerate() {
            let (url, source) = if is_rtsp(url) {
                let server = match &rtsp {
                    Some(s) => s,
                    None => rtsp.insert(Harness::start(
                        opts,
                        &opts.rtsp_file,
                        "--rtsp-file",
                        "/bench",
                    )?),
                };
                (server.url(), "rtsp-loopback")
            } else if config::is_file_url(url) {
                (url.clone(), "file-looped")
            } else {
                (url.clone(), "live")
            };
            let detect_url = match base.raw.cameras[index].detect_url.as_deref() {
                Some(d) if is_rtsp(d) => {
                    let Some(file) = &opts.rtsp_detect_file else {
                        return Err(BenchError::Option {
                            name: "--rtsp-detect-file",
                            reason: format!(
                                "camera {} is a dual-stream RTSP camera (detect_url): give the \
                                 sub-stream clip to serve",
                                base.raw.cameras[index].id
                            ),
                        });
                    };
                    let server = match &rtsp_sub {
                        Some(s) => s,
                        None => rtsp_sub.insert(Harness::start(
                            opts,
                            file,
                            "--rtsp-detect-file",
                            "/bench-sub",
                        )?),
                    };
                    Some(server.url())
                }
                other => other.map(str::to_string),
            };
            cams.push(BenchCamera {
                index,
                url,
                detect_url,
                source,
            });
        }
        let stream = match cams[0].source {
            "rtsp-loopback" => Some(source::describe_file(&opts.rtsp_file)?),
            "file-looped" => match source::local_path(&cams[0].url)? {
                Some(path) => Some(source::describe_file(&path)?),
                None => None,
            },
            _ => None,
        };
        let detect_stream = match (&rtsp_sub, &opts.rtsp_detect_file) {
            (Some(_), Some(file)) => Some(source::describe_file(file)?),
            _ => None,
        };
        if let Some(s) = &detect_stream {
            tracing::info!(stream = %s.summary(), "bench: detect stream (dual-stream cameras)");
        }
        if let Some(s) = &stream {
            tracing::info!(stream = %s.summary(), "bench: stream");
        }
        Ok(Plan {
            base,
            cams,
            stream,
            detect_stream,
            target_fps,
            hold_ratio: opts.hold_ratio,
            rtsp,
            rtsp_sub,
        })
    }

    /// CPU ticks of the RTSP server processes, when they are processes.
    fn harness_ticks(&self) -> Option<u64> {
        let main = self.rtsp.as_ref().and_then(Harness::ticks);
        let sub = self.rtsp_sub.as_ref().and_then(Harness::ticks);
        match (main, sub) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }

    /// `rtsp-loopback`, `file-looped`, `live`, or `mixed`.
    fn source(&self) -> &'static str {
        let first = self.cams[0].source;
        if self.cams.iter().all(|c| c.source == first) {
            first
        } else {
            "mixed"
        }
    }

    fn pipeline(&self, n: usize, broker: u16, state_dir: &Path) -> Pipeline {
        let mut p = self.base.clone();
        let mut cameras = Vec::with_capacity(n);
        let mut urls = Vec::with_capacity(n);
        let mut models = Vec::with_capacity(n);
        for k in 0..n {
            let bc = &self.cams[k % self.cams.len()];
            let mut c = self.base.raw.cameras[bc.index].clone();
            let suffix = format!("-{k}");
            let keep = 64usize.saturating_sub(suffix.len()).min(c.id.len());
            c.id = format!("{}{suffix}", &c.id[..keep]);
            c.detect_fps = self.target_fps;
            c.detect_url.clone_from(&bc.detect_url);
            if bc.source == "file-looped" {
                // Behave like a camera: paced, endless.
                c.realtime = true;
                c.loop_file = true;
            }
            cameras.push(c);
            urls.push(bc.url.clone());
            models.push(self.base.camera_models[bc.index].clone());
        }
        p.raw.cameras = cameras;
        p.camera_urls = urls;
        p.camera_models = models;
        p.broker = BrokerUrl::Tcp {
            host: "127.0.0.1".into(),
            port: broker,
        };
        // The bench's own state (outbox, heartbeat): never the box's spool.
        p.raw.node.state_dir = Some(state_dir.to_path_buf());
        p.raw.outbox.dir = None;
        p
    }
}

fn is_rtsp(url: &str) -> bool {
    url.starts_with("rtsp://") || url.starts_with("rtsps://")
}

/// `--model`, `--threads`, `--workers` replace the config's detector settings.
fn override_detector(p: &mut Pipeline, opts: &PipelineBenchOptions) -> Result<(), BenchError> {
    if let Some(model) = &opts.model {
        if !model.is_file() {
            return Err(BenchError::Option {
                name: "--model",
                reason: format!("{} is not a file", model.display()),
            });
        }
        for m in &mut p.camera_models {
            m.clone_from(model);
        }
        p.raw.detector.model = Some(model.clone());
        for c in &mut p.raw.cameras {
            c.model = None;
        }
    }
    for (name, value, field) in [
        ("--threads", opts.threads, &mut p.raw.detector.threads),
        ("--workers", opts.workers, &mut p.raw.detector.workers),
    ] {
        if let Some(v) = value {
            if v == 0 || v > 64 {
                return Err(BenchError::Option {
                    name,
                    reason: format!("{v} is not in 1..=64"),
                });
            }
            *field = v;
        }
    }
    Ok(())
}

/// A state directory (outbox, heartbeat) of its own for one run: concurrent
/// benches and successive runs of a capacity search never share an outbox
/// (the store is locked while open). Removed when dropped.
struct RunStateDir(PathBuf);

impl RunStateDir {
    fn new() -> Result<RunStateDir, BenchError> {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("edge-node-bench-{}-{k}", std::process::id()));
        // A leftover of an earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| BenchError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(RunStateDir(dir))
    }
}

impl Drop for RunStateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)
}

fn run_once(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    n: usize,
    duration: Duration,
) -> Result<PipelineRun, BenchError> {
    // Inside the runtime, as the node and the demo start it.
    let broker = rt.block_on(async { broker_port(plan.base.raw.mqtt.max_packet_bytes) })?;
    let state_dir = RunStateDir::new()?;
    let p = plan.pipeline(n, broker, &state_dir.0);
    let peak_reset = reset_peak_rss();
    let ticks0 = cpu_ticks();
    let threads0 = cpu::sample();
    let t0 = Instant::now();
    tracing::info!(cameras = n, seconds = duration.as_secs_f64(), "bench: run");
    let harness0 = plan.harness_ticks();
    // The end sample is taken while the node still runs: its threads (the
    // detector workers, the cameras' streaming threads) end with it.
    let end = std::sync::Arc::new(std::sync::Mutex::new(None));
    let end_in = std::sync::Arc::clone(&end);
    let report: RunReport = rt.block_on(node::run_until(p, async move {
        tokio::time::sleep(duration).await;
        if let Ok(mut e) = end_in.lock() {
            *e = Some((
                cpu::sample(),
                Instant::now(),
                plan.harness_ticks(),
                cpu_ticks(),
            ));
        }
    }))?;
    let wall = t0.elapsed().as_secs_f64();
    let (threads1, at, harness1, end_ticks) = end
        .lock()
        .ok()
        .and_then(|mut e| e.take())
        .unwrap_or_else(|| {
            (
                cpu::sample(),
                Instant::now(),
                plan.harness_ticks(),
                cpu_ticks(),
            )
        });
    let sampled_s = at.duration_since(t0).as_secs_f64();
    let harness_s = harness1
        .zip(harness0)
        .map_or(0.0, |(b, a)| b.saturating_sub(a) as f64 / USER_HZ);
    let mut cpu_by_stage = cpu::split(&threads0, &threads1, sampled_s, pre_share(plan, &report));
    // The process's own CPU that no live thread accounts for: threads that
    // ended during the run (the short pipelines that decode a dual-stream
    // camera's main-stream frame for a snapshot, above all).
    let in_process = cpu_by_stage.node_pct() + cpu_by_stage.harness_pct;
    cpu_by_stage.harness_pct += (harness_s / sampled_s.max(1e-9) * 1000.0).round() / 10.0;
    cpu_by_stage.ended_threads_pct = match (ticks0, end_ticks) {
        (Some(a), Some(b)) => {
            let pct = b.saturating_sub(a) as f64 / USER_HZ / sampled_s.max(1e-9) * 100.0;
            ((pct - in_process).max(0.0) * 10.0).round() / 10.0
        }
        _ => 0.0,
    };
    let cpu_pct = match (ticks0, cpu_ticks()) {
        (Some(a), Some(b)) => (b.saturating_sub(a) as f64 / USER_HZ) / wall.max(1e-9) * 100.0,
        _ => f64::NAN,
    };
    let target = plan.target_fps;
    let per_camera: Vec<CameraResult> = report
        .cameras
        .iter()
        .map(|c| {
            let active = c.active.as_secs_f64();
            let fps = if active > 0.0 {
                c.frames_analysed as f64 / active
            } else {
                0.0
            };
            CameraResult {
                id: c.id.clone(),
                target_fps: target,
                detect_fps: round3(fps),
                holds: fps >= plan.hold_ratio * target,
                frames_in: c.frames_in,
                frames_analysed: c.frames_analysed,
                frames_dropped: c.frames_dropped,
                frame_to_detection_ms: Percentiles::of(&c.detect_latency_ms),
                frame_to_publish_ms: Percentiles::of(&c.publish_latency_ms),
                events_timed: c.publish_latency_ms.len(),
            }
        })
        .collect();
    let holds = per_camera.len() == n && per_camera.iter().all(|c| c.holds);
    Ok(PipelineRun {
        cameras: n,
        duration_s: duration.as_secs_f64(),
        wall_s: round3(wall),
        target_fps: target,
        hold_ratio: plan.hold_ratio,
        holds,
        cpu_pct: (cpu_pct * 10.0).round() / 10.0,
        peak_rss_mib: peak_rss_mib(),
        peak_rss_reset: peak_reset,
        frames_analysed: report.frames_analysed,
        frames_dropped: report.frames_dropped,
        events: report.events,
        infer_ms: Percentiles::of(&report.infer_ms),
        cpu_by_stage,
        per_camera,
    })
}

/// The pre-processing share of a detector thread's busy time: 0 when a
/// companion thread pre-processes (its own CPU is counted apart), else the
/// workers' mean pre / (pre + infer + post).
fn pre_share(plan: &Plan, report: &RunReport) -> f64 {
    let d = &plan.base.raw.detector;
    if crate::sched::prep_mode(d.threads, d.workers).has_thread() {
        return 0.0;
    }
    let (pre, infer, post) = (
        super::mean(&report.pre_ms),
        super::mean(&report.infer_ms),
        super::mean(&report.post_ms),
    );
    let total = pre + infer + post;
    if total > 0.0 { pre / total } else { 0.0 }
}

fn header(
    opts: &PipelineBenchOptions,
    plan: &Plan,
    run: PipelineRun,
) -> Result<PipelineBenchReport, BenchError> {
    let model = plan.base.camera_models[0].clone();
    let Machine { cpu, cores } = machine();
    Ok(PipelineBenchReport {
        pipeline: opts.pipeline.display().to_string(),
        camera_url: plan.cams[0].url.clone(),
        source: plan.source(),
        stream: plan.stream.clone(),
        detect_stream: plan.detect_stream.clone(),
        mix: opts.mix,
        model: model.display().to_string(),
        model_sha256: sha256_file(&model)?,
        cpu,
        cores,
        ort_version: detect::runtime_version().unwrap_or_else(|| "unknown".into()),
        detector_threads: plan.base.raw.detector.threads,
        detector_workers: plan.base.raw.detector.workers,
        run,
    })
}

fn check(opts: &PipelineBenchOptions) -> Result<(), BenchError> {
    if opts.duration < Duration::from_secs(1) {
        return Err(BenchError::Option {
            name: "--duration",
            reason: "must be at least 1 s".into(),
        });
    }
    if !(opts.hold_ratio > 0.0 && opts.hold_ratio <= 1.0) {
        return Err(BenchError::Option {
            name: "--hold-ratio",
            reason: format!(
                "{} is not in (0, 1]: it is the share of the target fps a camera must reach",
                opts.hold_ratio
            ),
        });
    }
    Ok(())
}

/// Warns when one frame not counted at the stop already fails the hold test.
fn warn_if_too_short(plan: &Plan, duration: Duration) {
    let frames = duration.as_secs_f64() * plan.target_fps;
    if frames * (1.0 - plan.hold_ratio) < 1.0 {
        tracing::warn!(
            frames_per_camera = frames,
            hold_ratio = plan.hold_ratio,
            "bench: run too short for the hold criterion: one frame still in the detector at \
             the stop can make a camera that keeps up miss it; use a longer --duration \
             (≥ {:.0} s) or a lower --hold-ratio",
            (1.0 / ((1.0 - plan.hold_ratio).max(1e-9) * plan.target_fps)).ceil()
        );
    }
}

/// One run of `opts.cameras` cameras for `opts.duration`.
pub fn bench_pipeline(opts: &PipelineBenchOptions) -> Result<PipelineBenchReport, BenchError> {
    check(opts)?;
    if opts.cameras == 0 || opts.cameras > MAX_CAMERAS {
        return Err(BenchError::Option {
            name: "--cameras",
            reason: format!("must be 1..={MAX_CAMERAS}"),
        });
    }
    let plan = Plan::new(opts)?;
    warn_if_too_short(&plan, opts.duration);
    let rt = runtime()?;
    let run = run_once(&rt, &plan, opts.cameras, opts.duration)?;
    header(opts, &plan, run)
}

/// Largest N in 1..=`opts.max_cameras` that holds the target (`search`
/// from `opts.cameras`), or with `opts.sweep` one run per listed count (the
/// capacity is then the largest listed count that held). Each step is one run
/// of `opts.duration`.
pub fn find_capacity(opts: &PipelineBenchOptions) -> Result<CapacityReport, BenchError> {
    check(opts)?;
    if opts.max_cameras == 0 || opts.max_cameras > MAX_CAMERAS {
        return Err(BenchError::Option {
            name: "--max-cameras",
            reason: format!("must be 1..={MAX_CAMERAS}"),
        });
    }
    let max = opts.max_cameras;
    if let Some(&bad) = opts.sweep.iter().find(|&&n| n == 0 || n > MAX_CAMERAS) {
        return Err(BenchError::Option {
            name: "--sweep",
            reason: format!("{bad} cameras: each count must be 1..={MAX_CAMERAS}"),
        });
    }
    let plan = Plan::new(opts)?;
    warn_if_too_short(&plan, opts.duration);
    let rt = runtime()?;
    let mut steps = Vec::new();
    let mut runs: Vec<PipelineRun> = Vec::new();
    let mut step = |n: usize, steps: &mut Vec<CapacityStep>| -> Result<bool, BenchError> {
        let r = run_once(&rt, &plan, n, opts.duration)?;
        let mut fps: Vec<f64> = r.per_camera.iter().map(|c| c.detect_fps).collect();
        fps.sort_by(f64::total_cmp);
        let min_fps = fps.first().copied().unwrap_or(0.0);
        tracing::info!(
            cameras = n,
            holds = r.holds,
            min_fps,
            "bench: capacity step"
        );
        steps.push(CapacityStep {
            cameras: n,
            holds: r.holds,
            min_fps,
            median_fps: fps.get(fps.len() / 2).copied().unwrap_or(0.0),
            max_fps: fps.last().copied().unwrap_or(0.0),
            cpu_pct: r.cpu_pct,
            node_cpu_pct: r.cpu_by_stage.node_pct(),
            peak_rss_mib: r.peak_rss_mib,
        });
        let holds = r.holds;
        runs.push(r);
        Ok(holds)
    };
    let mut good = 0usize;
    if opts.sweep.is_empty() {
        good = search(opts.cameras.clamp(1, max), max, |n| step(n, &mut steps))?;
    } else {
        for &n in &opts.sweep {
            if step(n, &mut steps)? {
                good = good.max(n);
            }
        }
    }
    // Report the run at the capacity (or the smallest one tried when none held).
    let best = runs
        .iter()
        .rfind(|r| r.cameras == good)
        .or_else(|| runs.iter().min_by_key(|r| r.cameras))
        .cloned()
        .ok_or_else(|| BenchError::Option {
            name: "--find-capacity",
            reason: "no run completed".into(),
        })?;
    Ok(CapacityReport {
        target_fps: plan.target_fps,
        hold_ratio: plan.hold_ratio,
        max_cameras: max,
        capacity: good,
        steps,
        bench: header(opts, &plan, best)?,
    })
}

/// Largest N in 1..=`max` for which `holds(N)`: double from `start` until a
/// run fails, then bisect between the last N that held and the first that
/// did not. Assumes more cameras never make it easier.
fn search(
    start: usize,
    max: usize,
    mut holds: impl FnMut(usize) -> Result<bool, BenchError>,
) -> Result<usize, BenchError> {
    let mut good = 0usize;
    let mut n = start;
    let bad = loop {
        if holds(n)? {
            good = n;
            if n == max {
                return Ok(good);
            }
            n = (n * 2).min(max);
        } else {
            break n;
        }
    };
    let (mut lo, mut hi) = (good, bad);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Readable tables.
impl PipelineBenchReport {
    pub fn table(&self) -> String {
        let r = &self.run;
        let stream = self
            .stream
            .as_ref()
            .map_or_else(|| "live source".to_string(), StreamFacts::summary);
        let detect = self.detect_stream.as_ref().map_or_else(String::new, |d| {
            format!(
                " (main, snapshots only); analysed sub-stream: {}",
                d.summary()
            )
        });
        let mut out = format!(
            "pipeline {} — {} x{} ({} {}), model {}\n\
             stream: {stream}{detect}\n\
             cpu {} ({} cores), ONNX Runtime {}, detector threads {} workers {}\n\
             ran {:.1} s (wall {:.1} s incl. start/stop): target {} fps per camera, \
             holds (every camera ≥ {:.0}% of it): {}\n\
             process: CPU {:.1}% (100% = one core), peak RSS {:.1} MiB; analysed {} dropped {} events {}\n\n",
            self.pipeline,
            if self.mix {
                "its cameras in turn"
            } else {
                "first camera"
            },
            r.cameras,
            self.source,
            self.camera_url,
            self.model,
            self.cpu,
            self.cores,
            self.ort_version,
            self.detector_threads,
            self.detector_workers,
            r.duration_s,
            r.wall_s,
            r.target_fps,
            r.hold_ratio * 100.0,
            if r.holds { "yes" } else { "NO" },
            r.cpu_pct,
            r.peak_rss_mib,
            r.frames_analysed,
            r.frames_dropped,
            r.events
        );
        out.push_str(&format!(
            "{:<20} {:>8} {:>6} {:>6} {:>8} {:>7} | {:>22} | {:>22}\n",
            "camera",
            "fps",
            "holds",
            "in",
            "analysed",
            "dropped",
            "frame→detect p50/p99",
            "frame→publish p50/p99"
        ));
        let pp = |p: &Option<Percentiles>, n: Option<usize>| match p {
            Some(p) => match n {
                Some(n) => format!("{:.1}/{:.1} ms (n={n})", p.p50, p.p99),
                None => format!("{:.1}/{:.1} ms", p.p50, p.p99),
            },
            None => "no sample".into(),
        };
        for c in &r.per_camera {
            out.push_str(&format!(
                "{:<20} {:>8.2} {:>6} {:>6} {:>8} {:>7} | {:>22} | {:>22}\n",
                c.id,
                c.detect_fps,
                if c.holds { "yes" } else { "NO" },
                c.frames_in,
                c.frames_analysed,
                c.frames_dropped,
                pp(&c.frame_to_detection_ms, None),
                pp(&c.frame_to_publish_ms, Some(c.events_timed)),
            ));
        }
        out.push('\n');
        out.push_str(&r.cpu_by_stage.table());
        out
    }
}

impl CapacityReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "capacity search: target {} fps per camera, holds = every camera ≥ {:.0}% of it \
             (--hold-ratio {}), at most {} cameras\n",
            self.target_fps,
            self.hold_ratio * 100.0,
            self.hold_ratio,
            self.max_cameras
        );
        out.push_str(&format!(
            "{:>8} {:>6} {:>9} {:>9} {:>9} {:>7} {:>8} {:>10}\n",
            "cameras", "holds", "min fps", "med fps", "max fps", "CPU %", "node %", "RSS MiB"
        ));
        for s in &self.steps {
            out.push_str(&format!(
                "{:>8} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>7.1} {:>8.1} {:>10.1}\n",
                s.cameras,
                if s.holds { "yes" } else { "NO" },
                s.min_fps,
                s.median_fps,
                s.max_fps,
                s.cpu_pct,
                s.node_cpu_pct,
                s.peak_rss_mib
            ));
        }
        out.push_str(&format!(
            "\ncapacity: {} camera(s) at {} fps{}\n\nrun at the capacity:\n",
            self.capacity,
            self.target_fps,
            if self.capacity == self.max_cameras {
                " (the --max-cameras bound: the box may carry more)"
            } else {
                ""
            }
        ));
        out.push_str(&self.bench.table());
        out
    }
}

/// The clip served when the first camera is RTSP and no `--rtsp-file` is given.
pub fn default_rtsp_file(repo_dir: &Path) -> PathBuf {
    repo_dir.join("tests/fixtures/vtest_10s_h264.mp4")
}
