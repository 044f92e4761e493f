//! Camera ingest: the only module that touches GStreamer.
//!
//! Each camera gets one supervisor thread (`src-<camera>`) that owns its
//! pipeline (see `source/pipeline.rs` for the element chain). GStreamer's streaming
//! thread only copies each sampled frame into a [`Frame`] and calls the
//! frame callback, which must not block (use `try_send` and drop when full):
//! detection speed never back-pressures decoding.
//!
//! Fault policy, by [`SourceKind`]:
//! - **Live** (rtsp, http(s), v4l2): any error, EOS or watchdog stall tears
//!   the pipeline down and reconnects after a capped exponential backoff.
//!   Live sources never give up; the state says why they are waiting.
//! - **File**: EOS ends the camera ([`SourceState::Ended`]) or, with
//!   `loop_file`, seeks back to the start. Errors are final
//!   ([`SourceState::Failed`]): retrying a missing, truncated or non-video
//!   local file cannot succeed, and silently retrying would hide a config
//!   mistake. A file whose frames stop well before the duration its
//!   container declares (cut short, or corrupt enough that the demuxer gives
//!   up) fails too, at that EOS: GStreamer ends it like a complete clip.
//!
//! Time: `Frame.t` is monotonic per camera. For files it is the PTS plus the
//! length of the loops already played, so replays are deterministic; for
//! live sources it is seconds since the camera started (a monotonic clock,
//! read at arrival), so reconnects never move time backwards.

mod auth;
mod decode;
mod describe;
mod fault;
mod mainstream;
mod pipeline;
mod probe;
mod ring;
mod rtsp_server;
mod url;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;

pub use self::auth::{CameraAuth, Credentials};
use self::decode::DecoderPolicy;
pub use self::decode::{DecoderChoice, KeyframeGate, MAX_GOP_S, hardware_decoders};
pub use self::describe::{StreamFacts, describe_file};
pub use self::fault::Fault;
use self::fault::LibError;
pub use self::mainstream::{
    DecoderStats, HiRes, MainMiss, MainStats, MainStream, MainStreamOptions, RingStats,
};
use self::pipeline::ConnStats;
pub use self::pipeline::MAX_FRAME_WIDTH;
pub use self::probe::{ProbeReport, probe};
pub use self::rtsp_server::{RtspServer, serve_rtsp_blocking};
use self::url::Target;
pub use self::url::{SourceKind, classify, local_path, validate_url};
use crate::frame::Frame;
use crate::redact;

/// Receives every sampled frame, on a GStreamer streaming thread. Must not block.
pub type FrameCallback = Box<dyn Fn(Frame) + Send + Sync>;
/// Receives state changes, on the camera's supervisor thread.
pub type StateCallback = Box<dyn Fn(SourceState) + Send + Sync>;

/// How often the supervisor wakes up to check the bus, the watchdog and `stop()`.
const POLL: Duration = Duration::from_millis(50);

/// Settings of one camera source.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    pub camera: String,
    /// rtsp://, http(s)://, file://, v4l2:///dev/videoN, /dev/videoN or a path.
    pub url: String,
    /// Frames per second handed on (sampled by PTS before scaling). ≤ 0: every frame.
    pub detect_fps: f64,
    /// Frames taller than this (or wider than [`MAX_FRAME_WIDTH`]) are
    /// downscaled, keeping the aspect ratio.
    pub max_height: u32,
    /// Files only: play at native rate (true) or as fast as possible (false,
    /// for benchmarks and batch runs). Live sources are never throttled.
    pub realtime: bool,
    /// Files only: restart at the end instead of ending.
    pub loop_file: bool,
    /// Live only: no frame for this long while playing counts as a stall.
    pub watchdog_s: f64,
    pub backoff_initial_s: f64,
    pub backoff_max_s: f64,
    /// A connection that streamed at least this long resets the backoff to
    /// its initial value, so a camera that drops once a day reconnects fast.
    pub backoff_reset_s: f64,
    /// RTSP over TCP (interleaved) instead of UDP: for NAT/firewalls and lossy links.
    pub rtsp_tcp: bool,
    /// Where the camera's user name and password come from; read at each
    /// connection and handed to the source element, never put into the URL.
    pub auth: CameraAuth,
    /// Which decoders may be used (`auto` prefers hardware).
    pub decoder: DecoderChoice,
    /// Threads per software (FFmpeg) decoder; 0: FFmpeg's automatic count.
    pub decoder_threads: u32,
    /// Keyframe-only decoding, switched by the camera's analytics while it
    /// is idle; `None`: always full-rate.
    pub keyframe_gate: Option<KeyframeGate>,
    /// RTSP: ask `rtspsrc` for the camera's NTP capture times (RTCP sender
    /// reports) and use them as the frames' `wall` when present (the
    /// sub-stream of a dual-stream camera, matched with its main stream).
    pub reference_timestamps: bool,
}

impl SourceOptions {
    /// Options with the documented defaults for `url`.
    pub fn new(camera: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            camera: camera.into(),
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            camera: String::new(),
            url: String::new(),
            detect_fps: 5.0,
            max_height: 720,
            realtime: true,
            loop_file: false,
            watchdog_s: 10.0,
            backoff_initial_s: 1.0,
            backoff_max_s: 30.0,
            backoff_reset_s: 30.0,
            rtsp_tcp: false,
            auth: CameraAuth::default(),
            decoder: DecoderChoice::Auto,
            decoder_threads: 1,
            keyframe_gate: None,
            reference_timestamps: false,
        }
    }
}

/// What a camera is doing, reported through the [`StateCallback`].
///
/// `Starting` is reported once; later attempts go `Reconnecting` →
/// `Streaming` (on the first frame of each connection). `Failed` and `Ended`
/// are final. A camera stopped with [`CameraHandle::stop`] reports nothing more.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceState {
    Starting,
    /// Frames arrive; `info` says what is being decoded, and how.
    Streaming {
        info: StreamInfo,
    },
    /// Lost; the next attempt is in `retry_in_s`. `error` is worded for
    /// people (URL masked, host and port, what failed), `detail` is the
    /// library's text. `attempt` counts the tries of this outage (1, 2, …).
    Reconnecting {
        error: String,
        detail: Option<String>,
        retry_in_s: f64,
        attempt: u32,
    },
    Failed {
        error: String,
        detail: Option<String>,
    },
    Ended,
}

/// What a streaming camera sends, read from its decoder when the first
/// frame of a connection arrives (each field `None` when GStreamer does not say).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamInfo {
    /// Codec of the compressed stream (`h264`, `h265`, `jpeg`, `raw`…).
    pub codec: Option<String>,
    /// The GStreamer decoder element in use (`avdec_h264`, `vah264dec`…).
    pub decoder: Option<String>,
    /// Decoded size, before the node scales it down.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The stream's declared frame rate.
    pub fps: Option<f64>,
}

#[derive(thiserror::Error, Debug)]
pub enum SourceError {
    #[error("GStreamer initialisation failed: {0}")]
    Init(String),
    #[error("invalid camera URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("missing GStreamer element {0:?} (install the GStreamer plugin packages)")]
    MissingElement(&'static str),
    /// A hardware decoder family was asked for and none of its elements is installed.
    #[error("decoder = \"{choice}\": no such decoder element is installed; it needs {needs}")]
    NoDecoder {
        choice: &'static str,
        needs: &'static str,
    },
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("RTSP server: {0}")]
    Rtsp(String),
    /// `check --probe` could not get a frame; the URL's user info is masked.
    #[error("camera {url}: {reason}")]
    Probe { url: String, reason: String },
    /// A benchmark clip could not be read (`bench pipeline`).
    #[error("cannot read the video file {path}: {reason}")]
    Describe { path: String, reason: String },
}

/// Initialises GStreamer once per process; later calls return the first result.
pub fn init() -> Result<(), SourceError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(SourceError::Init)
}

/// Refuses a hardware decoder family (`decoder = "vaapi"`, …) none of
/// whose elements is installed, as starting a camera would (`edge-node check`).
pub fn check_decoder(choice: DecoderChoice) -> Result<(), SourceError> {
    init()?;
    decode::check_choice(choice)
}

/// Fails early (at startup, not per reconnect) when a plugin package is missing.
fn check_elements(target: &Target) -> Result<(), SourceError> {
    let mut needed = vec!["videoscale", "videoconvert", "capsfilter", "appsink"];
    match target {
        Target::V4l2(_) => needed.extend(["v4l2src", "decodebin"]),
        Target::File(_) => needed.push("uridecodebin"),
        Target::Uri(uri) => {
            needed.push("uridecodebin");
            if uri.to_ascii_lowercase().starts_with("rtsp") {
                needed.push("rtspsrc");
            } else {
                needed.push("souphttpsrc");
            }
        }
    }
    match needed
        .into_iter()
        .find(|n| gst::ElementFactory::find(n).is_none())
    {
        Some(missing) => Err(SourceError::MissingElement(missing)),
        None => Ok(()),
    }
}

/// State shared between the supervisor and the streaming-thread callback.
pub(crate) struct Shared {
    camera: Arc<str>,
    kind: SourceKind,
    started: Instant,
    started_wall: SystemTime,
    next_index: AtomicU64,
    file_clock: Mutex<FileClock>,
    on_frame: FrameCallback,
    decoders: Arc<DecoderPolicy>,
    /// Live frames take `wall` from the camera's NTP capture time when known.
    reference_timestamps: bool,
}

/// Media time of a file across loops.
#[derive(Default)]
struct FileClock {
    /// Added to PTS: the summed length of the loops already played.
    offset: f64,
    last_t: f64,
    last_pts: f64,
}

impl Shared {
    /// `t` for a file frame; never goes backwards even on odd PTS.
    fn file_time(&self, pts: Option<f64>) -> f64 {
        let Ok(mut clock) = self.file_clock.lock() else {
            return 0.0;
        };
        let t = match pts {
            Some(p) => {
                clock.last_pts = p;
                (clock.offset + p).max(clock.last_t)
            }
            None => clock.last_t,
        };
        clock.last_t = t;
        t
    }

    /// PTS (seconds) of the last frame handed on in this pass, if any.
    fn last_pts(&self) -> Option<f64> {
        let clock = self.file_clock.lock().ok()?;
        (clock.last_pts > 0.0).then_some(clock.last_pts)
    }

    /// Called at EOS before seeking back: the next loop starts after this one.
    fn start_next_loop(&self, duration: Option<f64>, min_gap: f64) {
        if let Ok(mut clock) = self.file_clock.lock() {
            let by_duration = duration.map(|d| clock.offset + d);
            let by_last = clock.offset + clock.last_pts + min_gap;
            clock.offset = by_duration.map_or(by_last, |d| d.max(by_last));
            clock.last_pts = 0.0;
        }
    }
}

/// Stop request shared by the handle and the supervisor: a flag plus a
/// condvar so that a backoff sleep ends at once.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    cv: Condvar,
    flag: AtomicBool,
}

impl StopSignal {
    fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Ok(mut s) = self.stopped.lock() {
            *s = true;
        }
        self.cv.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; returns true if stopped meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let Ok(mut guard) = self.stopped.lock() else {
            return self.is_stopped();
        };
        while !*guard {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match self.cv.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => guard = g,
                Err(_) => return self.is_stopped(),
            }
        }
        true
    }
}

/// A running camera. Dropping it stops the camera (without waiting).
pub struct CameraHandle {
    camera: String,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl CameraHandle {
    /// Asks the supervisor to tear the pipeline down and exit; returns at once.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Waits for the supervisor thread to exit (call `stop` first for live sources).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(camera = %self.camera, "camera supervisor panicked");
        }
    }

    /// True once the supervisor has exited (Ended, Failed or stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for CameraHandle {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Starts a camera: validates the URL, checks the plugins, and spawns its
/// supervisor thread. Frames and states arrive through the callbacks.
pub fn spawn_camera(
    opts: SourceOptions,
    on_frame: FrameCallback,
    on_state: StateCallback,
) -> Result<CameraHandle, SourceError> {
    init()?;
    let target = url::parse(&opts.url)?;
    check_elements(&target)?;
    decode::check_choice(opts.decoder)?;
    let kind = classify(&opts.url);
    let camera: Arc<str> = Arc::from(opts.camera.as_str());
    let shared = Arc::new(Shared {
        camera: Arc::clone(&camera),
        kind,
        started: Instant::now(),
        started_wall: SystemTime::now(),
        next_index: AtomicU64::new(0),
        file_clock: Mutex::new(FileClock::default()),
        on_frame,
        decoders: Arc::new(DecoderPolicy::new(opts.decoder, opts.decoder_threads)),
        reference_timestamps: opts.reference_timestamps,
    });
    let stop = Arc::new(StopSignal::default());
    let supervisor = Supervisor {
        opts,
        target,
        shared,
        on_state,
        stop: Arc::clone(&stop),
    };
    // Thread names cannot hold NUL; Linux shows only the first 15 bytes.
    let name = format!("src-{}", camera.replace('\0', "_"));
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || supervisor.run())?;
    Ok(CameraHandle {
        camera: camera.to_string(),
        stop,
        thread: Some(thread),
    })
}

/// How one connection (one pipeline instance) ended.
enum Outcome {
    Stopped,
    Eos,
    Error(Fault),
    /// A hardware decoder failed under `decoder = "auto"`: try the next one now.
    NextDecoder,
}

struct Supervisor {
    opts: SourceOptions,
    target: Target,
    shared: Arc<Shared>,
    on_state: StateCallback,
    stop: Arc<StopSignal>,
}

impl Supervisor {
    fn report(&self, state: SourceState) {
        // The node's status task logs every change in words; here only what
        // the stream is, once per connection.
        match &state {
            SourceState::Streaming { info } => tracing::info!(
                camera = %self.shared.camera,
                codec = info.codec.as_deref().unwrap_or("unknown"),
                decoder = info.decoder.as_deref().unwrap_or("unknown"),
                width = info.width.unwrap_or(0),
                height = info.height.unwrap_or(0),
                "stream opened"
            ),
            _ => tracing::debug!(camera = %self.shared.camera, state = ?state, "source state"),
        }
        (self.on_state)(state);
    }

    fn run(self) {
        self.report(SourceState::Starting);
        let initial = secs(self.opts.backoff_initial_s, 1.0);
        let max = secs(self.opts.backoff_max_s, 30.0).max(initial);
        let mut backoff = initial;
        let mut attempt = 0u32;
        loop {
            if self.stop.is_stopped() {
                return;
            }
            let started = Instant::now();
            let stats = Arc::new(ConnStats::new(self.shared.started));
            let outcome = self.connect_once(&stats);
            let streamed_for = started.elapsed();
            let frames = stats.frames.load(Ordering::Relaxed);
            let error = match (self.shared.kind, outcome) {
                (_, Outcome::Stopped) => return,
                (_, Outcome::NextDecoder) => continue,
                (SourceKind::File, Outcome::Eos) if frames == 0 => {
                    return self.report(SourceState::Failed {
                        error: format!("{}: no video stream", self.describe()),
                        detail: None,
                    });
                }
                (SourceKind::File, Outcome::Eos) => return self.report(SourceState::Ended),
                (SourceKind::File, Outcome::Error(f)) => {
                    let path = self.describe();
                    let error = if f.summary.contains(&path) {
                        f.summary
                    } else {
                        format!("{path}: {}", f.summary)
                    };
                    return self.report(SourceState::Failed {
                        error,
                        detail: f.detail,
                    });
                }
                (SourceKind::Live, Outcome::Eos) => Fault::plain(format!(
                    "{}: end of stream (the camera closed it)",
                    self.describe()
                )),
                (SourceKind::Live, Outcome::Error(f)) => f,
            };
            if frames > 0 {
                attempt = 0;
            }
            if frames > 0 && streamed_for.as_secs_f64() >= self.opts.backoff_reset_s {
                backoff = initial;
            }
            attempt = attempt.saturating_add(1);
            tracing::warn!(camera = %self.shared.camera, error = %error.summary, detail = ?error.detail, attempt, retry_in_s = backoff.as_secs_f64(), "camera lost");
            self.report(SourceState::Reconnecting {
                error: error.summary,
                detail: error.detail,
                retry_in_s: backoff.as_secs_f64(),
                attempt,
            });
            if self.stop.wait(backoff) {
                return;
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Words a GStreamer error for people; for a connection that failed,
    /// asks the network (DNS, one TCP connect) what went wrong.
    fn lib_fault(&self, lib: &LibError) -> Fault {
        match &self.target {
            Target::Uri(url) => {
                let reach = if fault::is_connection_failure(lib) {
                    fault::endpoint(url)
                        .map(|ep| fault::probe_endpoint(&ep, Duration::from_secs(2)))
                } else {
                    None
                };
                fault::describe(url, lib, reach.as_ref())
            }
            Target::File(_) | Target::V4l2(_) => fault::describe(&self.describe(), lib, None),
        }
    }

    /// The path of a file source, for error messages.
    fn describe(&self) -> String {
        match &self.target {
            Target::File(p) => p.display().to_string(),
            Target::Uri(u) | Target::V4l2(u) => redact::userinfo(u).into_owned(),
        }
    }

    /// Builds a pipeline, plays it until it ends, fails, stalls or is
    /// stopped, and always leaves it in NULL.
    fn connect_once(&self, stats: &Arc<ConnStats>) -> Outcome {
        if let Target::File(path) = &self.target
            && let Err(e) = check_file(path)
        {
            return Outcome::Error(Fault::plain(e));
        }
        let pipeline = match pipeline::build(&self.target, &self.opts, &self.shared, stats) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(Fault::plain(e)),
        };
        let outcome = self.play(&pipeline, stats);
        if let Err(err) = pipeline.set_state(gst::State::Null) {
            tracing::warn!(camera = %self.shared.camera, error = ?err, "pipeline did not go to NULL");
        }
        outcome
    }

    fn play(&self, pipeline: &gst::Pipeline, stats: &ConnStats) -> Outcome {
        let Some(bus) = pipeline.bus() else {
            return Outcome::Error(Fault::plain("pipeline has no bus"));
        };
        if pipeline.set_state(gst::State::Playing).is_err() {
            return Outcome::Error(match first_error(&bus) {
                Some(lib) => self.lib_fault(&lib),
                None => Fault::plain(format!("{}: cannot start the pipeline", self.describe())),
            });
        }
        let live = self.shared.kind == SourceKind::Live;
        let watchdog = Duration::from_secs_f64(self.opts.watchdog_s.max(0.1));
        let conn_start_ms = elapsed_ms(self.shared.started);
        let mut streaming = false;
        loop {
            if self.stop.is_stopped() {
                return Outcome::Stopped;
            }
            if !streaming && stats.frames.load(Ordering::Relaxed) > 0 {
                streaming = true;
                let info = pipeline::stream_info(pipeline);
                self.report(SourceState::Streaming { info });
            }
            if live && self.opts.watchdog_s > 0.0 {
                let last = stats
                    .last_frame_ms
                    .load(Ordering::Relaxed)
                    .max(conn_start_ms);
                let idle = elapsed_ms(self.shared.started).saturating_sub(last);
                if idle as u128 >= watchdog.as_millis() {
                    return Outcome::Error(Fault::plain(format!(
                        "{}: no frame for {:.1} s (watchdog): the camera stopped sending",
                        self.describe(),
                        idle as f64 / 1000.0
                    )));
                }
            }
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(POLL.as_nanos() as u64),
                &[
                    gst::MessageType::Error,
                    gst::MessageType::Eos,
                    gst::MessageType::Warning,
                ],
            ) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(err) => {
                    let element = err.src().and_then(|s| s.downcast_ref::<gst::Element>());
                    let text = err.error().to_string();
                    if self
                        .shared
                        .decoders
                        .on_error(&self.shared.camera, element, &text)
                    {
                        return Outcome::NextDecoder;
                    }
                    return Outcome::Error(self.lib_fault(&pipeline::lib_error(err)));
                }
                gst::MessageView::Warning(w) => {
                    let detail = w.debug().map(|d| redact::userinfo(&d).into_owned());
                    let warning = w.error().to_string();
                    tracing::warn!(camera = %self.shared.camera, warning = %redact::userinfo(&warning), debug = ?detail, "gstreamer warning");
                }
                gst::MessageView::Eos(_) => {
                    let frames = stats.frames.load(Ordering::Relaxed);
                    if !live
                        && frames > 0
                        && let Some(e) = self.truncated(pipeline)
                    {
                        return Outcome::Error(Fault::plain(e));
                    }
                    if live || !self.opts.loop_file || frames == 0 {
                        return Outcome::Eos;
                    }
                    if let Err(e) = self.rewind(pipeline) {
                        return Outcome::Error(Fault::plain(e));
                    }
                }
                _ => {}
            }
        }
    }

    /// At a file's EOS: an error if the last frame is well short of the
    /// duration the container declares. GStreamer ends a cut-off file (and
    /// conceals the decoder errors of a corrupt one) with a plain EOS, which
    /// would otherwise look like a clip that simply ended.
    fn truncated(&self, pipeline: &gst::Pipeline) -> Option<String> {
        let duration = pipeline.query_duration::<gst::ClockTime>()?.nseconds() as f64 * 1e-9;
        let last = self.shared.last_pts()?;
        // Frames are sampled at detect_fps, so the last one kept may sit up to
        // a period before the end; a container may also state a duration a
        // little longer than its video (audio, edit lists).
        let period = if self.opts.detect_fps > 0.0 {
            1.0 / self.opts.detect_fps
        } else {
            0.0
        };
        // Decoding keyframes only, the last frame is the last keyframe.
        let gop = if self
            .opts
            .keyframe_gate
            .as_ref()
            .is_some_and(|g| g.skipped() > 0)
        {
            MAX_GOP_S
        } else {
            0.0
        };
        let slack = (2.0 * period).max(1.0).max(0.1 * duration).max(gop);
        (last + slack < duration).then(|| {
            format!(
                "stream ends at {last:.1} s of the {duration:.1} s the file declares: \
                 truncated or corrupt file (decoder errors); re-copy or re-encode it"
            )
        })
    }

    /// Loops a file: moves the media clock past this pass, then seeks to 0.
    fn rewind(&self, pipeline: &gst::Pipeline) -> Result<(), String> {
        let duration = pipeline
            .query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds() as f64 * 1e-9);
        let min_gap = if self.opts.detect_fps > 0.0 {
            1.0 / self.opts.detect_fps
        } else {
            0.04
        };
        self.shared.start_next_loop(duration, min_gap);
        tracing::debug!(camera = %self.shared.camera, ?duration, "looping file");
        pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                gst::ClockTime::ZERO,
            )
            .map_err(|e| format!("cannot seek back to start for loop_file: {e}"))
    }
}

fn secs(s: f64, fallback: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 {
        s
    } else {
        fallback
    })
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A clear message for a file that cannot be opened at all (GStreamer's
/// own is "Resource not found." without the path).
fn check_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("not a regular file: {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("file not found: {}", path.display()))
        }
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

/// The first error already posted on the bus (after a failed state change).
fn first_error(bus: &gst::Bus) -> Option<LibError> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(500),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(err) => Some(pipeline::lib_error(err)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
