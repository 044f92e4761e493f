//! Dual-stream cameras: the main (full-resolution) stream, received but
//! not decoded. Its compressed access units are kept in a short ring of
//! whole GOPs ([`super::ring`]); when a snapshot is due, the frame nearest
//! the analysed sub-stream frame is decoded on demand, from its GOP's
//! keyframe, on the caller's thread (the node's blocking pool).
//!
//! Receive pipeline (one per connection, supervised like the analysed one:
//! live sources reconnect, files loop or end):
//!
//! ```text
//! uridecodebin uri=… caps="video/x-h264; video/x-h265"
//!   ! h264parse (or h265parse) ! appsink sync=<files: realtime> (compressed access units)
//! ```
//!
//! `uridecodebin` with those caps stops autoplugging at the compressed
//! stream: it demuxes (files) or depayloads (RTSP) and decodes nothing; it
//! also keeps the camera's source setup (credentials, latency, TCP) in one
//! place with the analysed stream. Equivalent by hand:
//! `gst-launch-1.0 uridecodebin uri=file:///abs/main.mp4 caps=video/x-h264 ! h264parse ! fakesink`.
//!
//! On-demand decode: one decoder per camera on its own `snap-<camera>`
//! thread at low priority, kept between snapshots and continued while they
//! move forward within a GOP (`session.rs`).
//!
//! Matching time: for files the media time of the PTS (plus the loops
//! played, like `Frame.t`), so two files cut from the same source match
//! frame for frame; for RTSP the camera's NTP capture time from the RTCP
//! sender reports (`rtspsrc add-reference-timestamp-meta`), compared with
//! the sub-stream frame's `wall`, which the analysed source takes from the
//! same meta ([`super::SourceOptions::reference_timestamps`]); without it,
//! arrival times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

pub use self::session::DecoderStats;
use self::session::{SnapshotThread, make};
use super::ring::{Au, Ring};
pub use super::ring::{Miss, RingStats};
use super::url::Target;
use super::{CameraAuth, SourceError, SourceKind, StopSignal, classify};
use crate::frame::Frame;
use crate::redact;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: f64 = 2_208_988_800.0;

/// Settings of a camera's main stream.
#[derive(Clone, Debug)]
pub struct MainStreamOptions {
    pub camera: String,
    /// The main (full-resolution) stream: H.264 or H.265.
    pub url: String,
    pub auth: CameraAuth,
    pub rtsp_tcp: bool,
    /// Files: play at native rate (the analysed stream must too, or the
    /// ring would not hold the moments it analyses).
    pub realtime: bool,
    pub loop_file: bool,
    /// The ring keeps at least this many seconds of whole GOPs.
    pub ring_s: f64,
    /// … and at most this many bytes.
    pub ring_bytes: usize,
    /// A main-stream frame farther than this from the analysed frame is no
    /// match (the snapshot falls back to the analysed frame).
    pub tolerance_s: f64,
}

impl Default for MainStreamOptions {
    fn default() -> Self {
        Self {
            camera: String::new(),
            url: String::new(),
            auth: CameraAuth::default(),
            rtsp_tcp: false,
            realtime: true,
            loop_file: false,
            ring_s: 10.0,
            ring_bytes: 32 << 20,
            tolerance_s: 0.1,
        }
    }
}

/// A decoded main-stream frame.
#[derive(Debug)]
pub struct HiRes {
    /// Packed RGB24, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Its match time.
    pub t: f64,
    /// Its match time minus the wanted one, seconds.
    pub error_s: f64,
}

/// Why no main-stream frame was decoded.
#[derive(Debug, thiserror::Error)]
pub enum MainMiss {
    #[error("main stream: nothing received yet")]
    Empty,
    #[error("main stream: nearest frame {error_s:+.3} s away, more than the tolerance")]
    TooFar { error_s: f64 },
    #[error("main stream: decoding failed: {0}")]
    Decode(String),
}

impl From<Miss> for MainMiss {
    fn from(m: Miss) -> Self {
        match m {
            Miss::Empty => MainMiss::Empty,
            Miss::TooFar { error_s } => MainMiss::TooFar { error_s },
        }
    }
}

/// Received-side state shared with the streaming thread.
struct Shared {
    camera: Arc<str>,
    kind: SourceKind,
    ring: Mutex<Ring<gst::Buffer, gst::Caps>>,
    /// Files: the summed length of the loops already played, and the last
    /// PTS seen (seconds).
    clock: Mutex<(f64, f64)>,
    received: AtomicU64,
    received_bytes: AtomicU64,
}

/// A camera's main stream: its receiver thread and its ring. Dropping it
/// stops the receiver (without waiting).
pub struct MainStream {
    shared: Arc<Shared>,
    tolerance_s: f64,
    /// Snapshots of one camera are decoded one at a time, on its `snap-`
    /// thread, by one decoder kept between them (`session.rs`).
    decoder: SnapshotThread,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MainStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainStream")
            .field("camera", &self.shared.camera)
            .finish_non_exhaustive()
    }
}

impl Drop for MainStream {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// What the receiver has done so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct MainStats {
    pub ring: RingStats,
    /// Access units and bytes received since the start.
    pub received: u64,
    pub received_bytes: u64,
    pub decoder: DecoderStats,
}

impl MainStream {
    /// Starts the receiver thread (`main-<camera>`).
    pub fn spawn(opts: MainStreamOptions) -> Result<MainStream, SourceError> {
        super::init()?;
        let target = super::url::parse(&opts.url)?;
        if matches!(target, Target::V4l2(_)) {
            return Err(SourceError::InvalidUrl {
                url: opts.url,
                reason: "a main stream must be a file or an RTSP/HTTP stream".into(),
            });
        }
        for e in ["uridecodebin", "appsink", "decodebin", "videoconvert"] {
            if gst::ElementFactory::find(e).is_none() {
                return Err(SourceError::MissingElement(e));
            }
        }
        let shared = Arc::new(Shared {
            camera: Arc::from(opts.camera.as_str()),
            kind: classify(&opts.url),
            ring: Mutex::new(Ring::new(opts.ring_s, opts.ring_bytes)),
            clock: Mutex::new((0.0, 0.0)),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
        });
        let stop = Arc::new(StopSignal::default());
        let name = format!("main-{}", opts.camera.replace('\0', "_"));
        let tolerance_s = opts.tolerance_s;
        let rx = Receiver {
            opts,
            target,
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
        };
        let decoder = SnapshotThread::spawn(&shared.camera)?;
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || rx.run())?;
        Ok(MainStream {
            shared,
            tolerance_s,
            decoder,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the receiver and waits for its thread.
    pub fn stop_and_join(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn stats(&self) -> MainStats {
        let ring = self
            .shared
            .ring
            .lock()
            .map(|r| r.stats())
            .unwrap_or_default();
        MainStats {
            ring,
            received: self.shared.received.load(Ordering::Relaxed),
            received_bytes: self.shared.received_bytes.load(Ordering::Relaxed),
            decoder: self.decoder.stats(),
        }
    }

    /// The time of an analysed (sub-stream) frame on the main stream's
    /// match clock: `t` for files, `wall` (Unix seconds) for live streams.
    pub fn match_time(&self, f: &Frame) -> f64 {
        match self.shared.kind {
            SourceKind::File => f.t,
            SourceKind::Live => unix_s(f.wall),
        }
    }

    /// Decodes the main-stream frame that shows the moment of the analysed
    /// frame `f`: the nearest one in the ring, if within the tolerance.
    /// Blocks for the decode (tens to hundreds of ms): call it off the
    /// async runtime and off the streaming threads.
    pub fn frame_near(&self, f: &Frame) -> Result<HiRes, MainMiss> {
        self.frame_at(self.match_time(f), self.tolerance_s)
    }

    /// [`Self::frame_near`] for a match time and tolerance.
    pub fn frame_at(&self, wanted: f64, tolerance_s: f64) -> Result<HiRes, MainMiss> {
        let plan = {
            let ring = self
                .shared
                .ring
                .lock()
                .map_err(|_| MainMiss::Decode("ring lock poisoned".into()))?;
            ring.plan(wanted, tolerance_s)?
        };
        let (t, error_s) = (plan.t, plan.error_s);
        let (width, height, rgb) = self.decoder.decode(plan).map_err(MainMiss::Decode)?;
        Ok(HiRes {
            rgb,
            width,
            height,
            t,
            error_s,
        })
    }
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The camera's NTP capture time of a buffer (Unix seconds), from the
/// reference timestamp meta `rtspsrc` attaches when asked to.
pub(crate) fn ntp_unix_s(buf: &gst::BufferRef) -> Option<f64> {
    buf.iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name().as_str() == "timestamp/x-ntp")
        })
        .map(|m| m.timestamp().nseconds() as f64 * 1e-9 - NTP_UNIX_OFFSET_S)
}

/// Makes the RTSP source of a `uridecodebin` attach NTP reference
/// timestamps (for the analysed sub-stream of a dual-stream camera).
pub(crate) fn ask_reference_timestamps(uridecodebin: &gst::Element) {
    if uridecodebin.find_property("uri").is_none() {
        return;
    }
    uridecodebin.connect("source-setup", false, |args| {
        let source = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
        if source
            .find_property("add-reference-timestamp-meta")
            .is_some()
        {
            source.set_property("add-reference-timestamp-meta", true);
        }
        None
    });
}

struct Receiver {
    opts: MainStreamOptions,
    target: Target,
    shared: Arc<Shared>,
    stop: Arc<StopSignal>,
}

impl Receiver {
    fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.stop.is_stopped() {
                return;
            }
            if let Ok(mut r) = self.shared.ring.lock() {
                r.clear();
            }
            let started = Instant::now();
            match self.connect_once() {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(camera = %self.shared.camera, error = %redact::userinfo(&e), "main stream lost");
                }
            }
            if self.shared.kind == SourceKind::File {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_secs(1);
            }
            if self.stop.wait(backoff) {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One connection; `Ok(true)`: stopped or the file ended for good.
    fn connect_once(&self) -> Result<bool, String> {
        let pipeline = self.build()?;
        let r = self.play(&pipeline);
        let _ = pipeline.set_state(gst::State::Null);
        r
    }

    fn build(&self) -> Result<gst::Pipeline, String> {
        let uri = match &self.target {
            Target::File(path) => gst::glib::filename_to_uri(path, None)
                .map_err(|e| format!("cannot make a URI of {}: {e}", path.display()))?
                .to_string(),
            Target::Uri(u) | Target::V4l2(u) => u.clone(),
        };
        let caps: gst::Caps = "video/x-h264; video/x-h265"
            .parse()
            .map_err(|e| format!("bad caps: {e}"))?;
        let bin = gst::ElementFactory::make("uridecodebin")
            .property("uri", uri.as_str())
            .property("caps", &caps)
            .property("expose-all-streams", false)
            .build()
            .map_err(|e| format!("cannot create uridecodebin: {e}"))?;
        let creds = self.opts.auth.resolve()?;
        let rtsp_tcp = self.opts.rtsp_tcp;
        bin.connect("source-setup", false, move |args| {
            let source = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
            setup_source(&source, rtsp_tcp, creds.as_ref());
            None
        });
        let sync = self.shared.kind == SourceKind::File && self.opts.realtime;
        let sink = gst_app::AppSink::builder()
            .caps(&caps)
            .sync(sync)
            .max_buffers(64)
            .drop(false)
            .enable_last_sample(false)
            .build();
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([&bin, sink.upcast_ref()])
            .map_err(|e| format!("cannot assemble the main-stream pipeline: {e}"))?;
        let sink_weak = sink.downgrade();
        let pipeline_weak = pipeline.downgrade();
        bin.connect_pad_added(move |_, pad| {
            let (Some(sink), Some(pipeline)) = (sink_weak.upgrade(), pipeline_weak.upgrade())
            else {
                return;
            };
            if let Err(e) = link_parser(&pipeline, pad, &sink) {
                tracing::warn!(pad = %pad.name(), error = %e, "cannot link the main stream");
            }
        });
        let shared = Arc::clone(&self.shared);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    shared.on_sample(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok(pipeline)
    }

    fn play(&self, pipeline: &gst::Pipeline) -> Result<bool, String> {
        let bus = pipeline.bus().ok_or("pipeline has no bus")?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start the main stream: {e}"))?;
        loop {
            if self.stop.is_stopped() {
                return Ok(true);
            }
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(50),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            ) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(err) => {
                    return Err(format!(
                        "{} ({})",
                        err.error(),
                        err.debug().map(|d| d.to_string()).unwrap_or_default()
                    ));
                }
                gst::MessageView::Eos(_) => {
                    if self.shared.kind == SourceKind::Live {
                        return Err("end of stream".into());
                    }
                    if !self.opts.loop_file {
                        return Ok(true);
                    }
                    let duration = pipeline
                        .query_duration::<gst::ClockTime>()
                        .map(|d| d.nseconds() as f64 * 1e-9);
                    if let Ok(mut c) = self.shared.clock.lock() {
                        let by_last = c.0 + c.1 + 0.04;
                        c.0 = duration.map_or(by_last, |d| (c.0 + d).max(by_last));
                        c.1 = 0.0;
                    }
                    pipeline
                        .seek_simple(
                            gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                            gst::ClockTime::ZERO,
                        )
                        .map_err(|e| format!("cannot loop the main stream: {e}"))?;
                }
                _ => {}
            }
        }
    }
}

/// `uridecodebin` stops at the demuxer's or depayloader's output: a
/// parser (`h264parse` / `h265parse`) makes whole access units with
/// keyframe flags, then the appsink.
fn link_parser(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    sink: &gst_app::AppSink,
) -> Result<(), String> {
    let sp = sink
        .static_pad("sink")
        .ok_or("appsink without a sink pad")?;
    if sp.is_linked() {
        return Ok(());
    }
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let parser = match name.as_str() {
        "video/x-h264" => "h264parse",
        "video/x-h265" => "h265parse",
        _ => return Ok(()),
    };
    let parse = make(parser)?;
    pipeline
        .add(&parse)
        .map_err(|e| format!("cannot add {parser}: {e}"))?;
    parse
        .link(sink)
        .map_err(|e| format!("cannot link {parser}: {e}"))?;
    parse
        .sync_state_with_parent()
        .map_err(|e| format!("cannot start {parser}: {e}"))?;
    let ps = parse
        .static_pad("sink")
        .ok_or("parser without a sink pad")?;
    pad.link(&ps)
        .map_err(|e| format!("cannot link to {parser}: {e:?}"))?;
    Ok(())
}

/// Latency, transport, reference timestamps and credentials of the
/// RTSP/HTTP source element.
fn setup_source(source: &gst::Element, rtsp_tcp: bool, creds: Option<&super::Credentials>) {
    if source
        .factory()
        .is_some_and(|f| f.name().as_str() == "rtspsrc")
    {
        source.set_property("latency", super::pipeline::RTSP_LATENCY_MS);
        if rtsp_tcp {
            source.set_property_from_str("protocols", "tcp");
        }
        if source
            .find_property("add-reference-timestamp-meta")
            .is_some()
        {
            source.set_property("add-reference-timestamp-meta", true);
        }
    }
    if let Some(c) = creds
        && source.find_property("user-id").is_some()
        && source.find_property("user-pw").is_some()
    {
        source.set_property("user-id", c.user.as_str());
        source.set_property("user-pw", c.password.as_str());
    }
}

impl Shared {
    /// On the streaming thread: stamp the access unit and ring it. No decode, no copy.
    fn on_sample(&self, sample: &gst::Sample) {
        let (Some(buf), Some(caps)) = (sample.buffer_owned(), sample.caps_owned()) else {
            return;
        };
        let t = match self.kind {
            SourceKind::File => {
                let Some(pts) = buf.pts() else { return };
                let p = pts.nseconds() as f64 * 1e-9;
                let Ok(mut c) = self.clock.lock() else { return };
                c.1 = c.1.max(p);
                c.0 + p
            }
            SourceKind::Live => ntp_unix_s(&buf).unwrap_or_else(|| unix_s(SystemTime::now())),
        };
        let bytes = buf.size();
        self.received.fetch_add(1, Ordering::Relaxed);
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let au = Au {
            t,
            key: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
            bytes,
            data: buf,
        };
        if let Ok(mut r) = self.ring.lock() {
            r.push(au, &caps);
        }
    }
}

mod session;
#[cfg(test)]
mod tests;
