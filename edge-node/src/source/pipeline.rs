//! The per-camera ingest pipeline and the code that runs on GStreamer's
//! streaming thread.
//!
//! ```text
//! uridecodebin uri=…            (or: v4l2src device=… ! decodebin)
//!   ! [rate probe]              drop frames by PTS down to detect_fps, before any pixel work
//!   ! videoscale ! video/x-raw,height=[1,MAX],width=[1,7680],pixel-aspect-ratio=1/1
//!   ! videoconvert ! video/x-raw,format=RGB
//!   ! appsink max-buffers=1 drop=<false for fast files> sync=<files: realtime, live: false>
//! ```
//!
//! Equivalent `gst-launch-1.0` line for trying things by hand (videorate
//! stands in for the probe there):
//! `gst-launch-1.0 uridecodebin uri=file:///abs/clip.mp4 ! videorate drop-only=true max-rate=5 ! videoscale ! 'video/x-raw,height=[1,720],pixel-aspect-ratio=1/1' ! videoconvert ! video/x-raw,format=RGB ! fakesink`
//!
//! Why a pad probe instead of `videorate drop-only=true max-rate=N`:
//! `max-rate` is an integer (2.5 fps is a legitimate `detect_fps`); a
//! `framerate` capsfilter after videorate fails to negotiate when the camera
//! is slower than `detect_fps` in drop-only mode; and RTSP cameras often
//! announce `framerate=0/1`. The probe keeps one frame per `1/detect_fps`
//! seconds of PTS whatever the caps say, and sits before `videoscale`, so
//! dropped frames cost no scaling or colour conversion.
//!
//! The height range with `pixel-aspect-ratio=1/1` makes `videoscale` shrink
//! to at most `max_height` keeping the aspect ratio (768×576 at 288 →
//! 384×288), and pass smaller pictures through untouched. The width range
//! caps very wide pictures the same way ([`MAX_FRAME_WIDTH`]: 16000×500 →
//! 7680×240), so a frame is never more than 7680 × `max_height` (≤ 4320)
//! pixels, whatever the camera sends: a 15360×8640 (16K) source at the
//! default 720 becomes 1280×720.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::fault::LibError;
use super::url::Target;
use super::{Credentials, Shared, SourceKind, SourceOptions, StreamInfo};
use crate::cpu;
use crate::frame::Frame;

/// Widest frame handed on (8K UHD width). With `max_height` at most 4320
/// (config), one frame is at most 7680 × 4320 × 3 bytes ≈ 100 MB.
pub const MAX_FRAME_WIDTH: u32 = 7680;

/// Jitter-buffer latency for RTSP cameras. rtspsrc's default is 2 s; for
/// analytics a fresher picture matters more than riding out reordering on a
/// bad WAN link, and on a LAN 200 ms is plenty.
pub(super) const RTSP_LATENCY_MS: u32 = 200;

/// Per-connection counters written by the streaming thread and read by the
/// supervisor (watchdog, "first frame" → Streaming).
#[derive(Default)]
pub(crate) struct ConnStats {
    /// Frames delivered on this connection.
    pub frames: AtomicU64,
    /// Milliseconds since the camera started at which the last frame
    /// arrived (or, in keyframe-only decoding, a compressed frame was skipped).
    pub last_frame_ms: AtomicU64,
    /// When the camera started (`Shared::started`), for `last_frame_ms`.
    pub origin: Option<Instant>,
}

impl ConnStats {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin: Some(origin),
            ..Self::default()
        }
    }

    /// A sign of life that is not a frame (a skipped delta unit): keeps the
    /// watchdog quiet on a stream with long GOPs.
    pub fn touch(&self) {
        if let Some(o) = self.origin {
            self.last_frame_ms.store(
                u64::try_from(o.elapsed().as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
}

/// Builds (but does not start) the ingest pipeline for one connection.
pub(crate) fn build(
    target: &Target,
    opts: &SourceOptions,
    shared: &Arc<Shared>,
    stats: &Arc<ConnStats>,
) -> Result<gst::Pipeline, String> {
    let pipeline = gst::Pipeline::new();
    let scale = make("videoscale")?;
    let scale_filter = size_filter(opts.max_height)?;
    let convert = make("videoconvert")?;
    let rgb_caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .build();
    let sync = shared.kind == SourceKind::File && opts.realtime;
    // A file played as fast as possible is analysed frame by frame: the sink
    // holds the decoder back instead of dropping (the frame callback may wait).
    // Live sources and paced files always shed the oldest frame.
    let lossless = shared.kind == SourceKind::File && !opts.realtime;
    let appsink = gst_app::AppSink::builder()
        .caps(&rgb_caps)
        .max_buffers(1)
        .drop(!lossless)
        .sync(sync)
        .enable_last_sample(false)
        .build();

    pipeline
        .add_many([&scale, &scale_filter, &convert, appsink.upcast_ref()])
        .map_err(|e| format!("cannot assemble pipeline: {e}"))?;
    gst::Element::link_many([&scale, &scale_filter, &convert, appsink.upcast_ref()])
        .map_err(|e| format!("cannot link pipeline: {e}"))?;

    // Read at each connection; a secret never goes into the URI.
    let creds = opts.auth.resolve()?;
    let decoder = match target {
        Target::File(path) => {
            let uri = gstreamer::glib::filename_to_uri(path, None)
                .map_err(|e| format!("cannot make a URI of {}: {e}", path.display()))?;
            uridecodebin(uri.as_str(), opts.rtsp_tcp, creds)?
        }
        Target::Uri(uri) => uridecodebin(uri, opts.rtsp_tcp, creds)?,
        Target::V4l2(device) => {
            let src = gst::ElementFactory::make("v4l2src")
                .property("device", device)
                .build()
                .map_err(|e| format!("cannot create v4l2src (gstreamer1.0-plugins-good): {e}"))?;
            let decode = make("decodebin")?;
            pipeline
                .add_many([&src, &decode])
                .map_err(|e| format!("cannot assemble pipeline: {e}"))?;
            src.link(&decode)
                .map_err(|e| format!("cannot link v4l2src: {e}"))?;
            decode
        }
    };
    if opts.reference_timestamps {
        super::mainstream::ask_reference_timestamps(&decoder);
    }
    if decoder.parent().is_none() {
        pipeline
            .add(&decoder)
            .map_err(|e| format!("cannot assemble pipeline: {e}"))?;
    }
    shared.decoders.attach(&decoder);
    super::decode::watch_decoders(
        &pipeline,
        &shared.decoders,
        opts.keyframe_gate.as_ref(),
        stats,
        &shared.camera,
    );

    // Decoders expose pads once they know the streams; link the first video one.
    let scale_weak = scale.downgrade();
    decoder.connect_pad_added(move |_, pad| {
        let Some(scale) = scale_weak.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .unwrap_or_else(|| pad.query_caps(None))
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        let Some(sink) = scale.static_pad("sink") else {
            return;
        };
        if !is_video || sink.is_linked() {
            return;
        }
        if let Err(err) = pad.link(&sink) {
            tracing::warn!(pad = %pad.name(), error = ?err, "cannot link decoded video pad");
        }
    });

    if let Some(sink) = scale.static_pad("sink") {
        add_rate_probe(&sink, opts.detect_fps);
    }

    let shared = Arc::clone(shared);
    let stats = Arc::clone(stats);
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| on_sample(sink, &shared, &stats))
            .build(),
    );
    Ok(pipeline)
}

/// The capsfilter after `videoscale`: at most `max_height` × [`MAX_FRAME_WIDTH`],
/// square pixels (see the module docs).
fn size_filter(max_height: u32) -> Result<gst::Element, String> {
    let caps = gst::Caps::builder("video/x-raw")
        .field(
            "height",
            gst::IntRange::new(1, i32::try_from(max_height.max(1)).unwrap_or(i32::MAX)),
        )
        .field("width", gst::IntRange::new(1, MAX_FRAME_WIDTH as i32))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    gst::ElementFactory::make("capsfilter")
        .property("caps", &caps)
        .build()
        .map_err(|e| format!("cannot create capsfilter: {e}"))
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| format!("cannot create {factory} (missing GStreamer plugin?): {e}"))
}

/// `uridecodebin` for raw video; `creds` become the RTSP/HTTP source's
/// `user-id` / `user-pw` (also used by `source::probe`).
pub(super) fn uridecodebin(
    uri: &str,
    rtsp_tcp: bool,
    creds: Option<Credentials>,
) -> Result<gst::Element, String> {
    // Only raw video is wanted: with these two properties audio and subtitle
    // streams are never exposed, so nothing needs a fakesink.
    let video_only: gst::Caps = "video/x-raw(ANY)"
        .parse()
        .map_err(|e| format!("bad caps: {e}"))?;
    let bin = gst::ElementFactory::make("uridecodebin")
        .property("uri", uri)
        .property("caps", &video_only)
        .property("expose-all-streams", false)
        .build()
        .map_err(|e| format!("cannot create uridecodebin (gstreamer1.0-plugins-base): {e}"))?;
    bin.connect("source-setup", false, move |args| {
        let source = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
        let is_rtsp = source
            .factory()
            .is_some_and(|f| f.name().as_str() == "rtspsrc");
        if is_rtsp {
            source.set_property("latency", RTSP_LATENCY_MS);
            if rtsp_tcp {
                source.set_property_from_str("protocols", "tcp");
            }
        }
        if let Some(c) = &creds
            && source.find_property("user-id").is_some()
            && source.find_property("user-pw").is_some()
        {
            source.set_property("user-id", c.user.as_str());
            source.set_property("user-pw", c.password.as_str());
        }
        None
    });
    Ok(bin)
}

/// Keeps one buffer per `1/fps` seconds of PTS and drops the rest.
///
/// The next due time advances by exactly one period while the input keeps
/// up, so 10 fps in → 5 fps out is exact and 29.97 → 5 does not drift; after
/// a gap it re-anchors on the current PTS. A flush or new segment (file
/// loop, seek) resets it, because PTS restart there.
fn add_rate_probe(pad: &gst::Pad, fps: f64) {
    if !(fps.is_finite() && fps > 0.0) {
        return;
    }
    let period = (1e9 / fps).round().max(1.0) as u64;
    // A millisecond of slack absorbs PTS rounding (29.97 fps timestamps are
    // not exact multiples of the period).
    let slack = 1_000_000u64.min(period / 2);
    let next_due = Mutex::new(None::<u64>);
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let Ok(mut due) = next_due.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            match &info.data {
                Some(gst::PadProbeData::Event(ev)) => {
                    if matches!(
                        ev.type_(),
                        gst::EventType::FlushStop | gst::EventType::Segment
                    ) {
                        *due = None;
                    }
                    gst::PadProbeReturn::Ok
                }
                Some(gst::PadProbeData::Buffer(buf)) => {
                    let Some(pts) = buf.pts().map(gst::ClockTime::nseconds) else {
                        return gst::PadProbeReturn::Ok;
                    };
                    match *due {
                        // `Handled` (not `Drop`): the probe consumes the buffer and
                        // upstream sees FLOW_OK. gstreamer-rs 0.25 + GStreamer 1.22
                        // log a CRITICAL (null unref) for every `Drop`ped buffer.
                        Some(d) if pts + slack < d => gst::PadProbeReturn::Handled,
                        Some(d) if pts < d + period => {
                            *due = Some(d + period);
                            kept_frame_starts();
                            gst::PadProbeReturn::Ok
                        }
                        _ => {
                            *due = Some(pts + period);
                            kept_frame_starts();
                            gst::PadProbeReturn::Ok
                        }
                    }
                }
                _ => gst::PadProbeReturn::Ok,
            }
        },
    );
}

thread_local! {
    /// Thread CPU (ns) when the frame now on its way to the appsink left
    /// the rate probe: the start of its scale/convert/copy cost.
    static KEPT_AT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// On the streaming thread, as the rate probe keeps a frame: the thread is a
/// camera's decode thread, and the frame's scale/convert/copy cost starts.
fn kept_frame_starts() {
    cpu::register_current(cpu::Role::Decode);
    KEPT_AT.with(|k| k.set(Some(cpu::thread_cpu_ns())));
}

/// Runs on the streaming thread for every frame that survives the rate
/// probe: copy, stamp, hand over. Nothing here may block.
fn on_sample(
    sink: &gst_app::AppSink,
    shared: &Shared,
    stats: &ConnStats,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
    let (width, height, data) = match copy_rgb(&sample) {
        Ok(v) => v,
        Err(err) => {
            // One bad buffer is not worth tearing the camera down for.
            tracing::warn!(camera = %shared.camera, error = %err, "dropping unreadable frame");
            return Ok(gst::FlowSuccess::Ok);
        }
    };
    if let Some(t0) = KEPT_AT.with(std::cell::Cell::take) {
        cpu::add(
            cpu::Stage::ScaleConvert,
            cpu::thread_cpu_ns().saturating_sub(t0),
        );
    }
    let arrival = shared.started.elapsed();
    let (t, wall) = match shared.kind {
        SourceKind::Live => (arrival.as_secs_f64(), live_wall(shared, &sample)),
        SourceKind::File => {
            let pts = sample
                .buffer()
                .and_then(|b| b.pts())
                .map(|p| p.nseconds() as f64 * 1e-9);
            let t = shared.file_time(pts);
            (t, shared.started_wall + Duration::from_secs_f64(t))
        }
    };
    stats.frames.fetch_add(1, Ordering::Relaxed);
    stats.last_frame_ms.store(
        u64::try_from(arrival.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let frame = Frame {
        camera: Arc::clone(&shared.camera),
        index: shared.next_index.fetch_add(1, Ordering::Relaxed),
        t,
        wall,
        width,
        height,
        data,
    };
    (shared.on_frame)(frame);
    Ok(gst::FlowSuccess::Ok)
}

/// A live frame's wall-clock time: the camera's NTP capture time when the
/// camera is matched with a main stream and `rtspsrc` attached it, else now.
fn live_wall(shared: &Shared, sample: &gst::Sample) -> SystemTime {
    let ntp = shared
        .reference_timestamps
        .then(|| sample.buffer().and_then(super::mainstream::ntp_unix_s))
        .flatten()
        .filter(|s| s.is_finite() && *s > 0.0);
    ntp.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s)
    })
}

/// Copies an RGB sample into a tightly packed buffer (GStreamer pads rows to
/// 4 bytes, so a 133-pixel-wide frame has a 400-byte stride, not 399).
pub(crate) fn copy_rgb(sample: &gst::Sample) -> Result<(u32, u32, Vec<u8>), String> {
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("bad caps: {e}"))?;
    if info.format() != gst_video::VideoFormat::Rgb {
        return Err(format!("expected RGB, got {:?}", info.format()));
    }
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| format!("cannot map frame: {e}"))?;
    let (width, height) = (frame.width(), frame.height());
    let stride = usize::try_from(*frame.plane_stride().first().ok_or("no plane")?)
        .map_err(|_| "negative stride")?;
    let plane = frame
        .plane_data(0)
        .map_err(|e| format!("cannot read plane: {e}"))?;
    let row = width as usize * 3;
    let rows = height as usize;
    let mut out = Vec::with_capacity(row * rows);
    if stride == row {
        out.extend_from_slice(plane.get(..row * rows).ok_or("short plane")?);
    } else {
        for y in 0..rows {
            let start = y * stride;
            out.extend_from_slice(plane.get(start..start + row).ok_or("short plane")?);
        }
    }
    Ok((width, height, out))
}

/// A bus error as the library words it: the message, plus the last line of
/// the debug text, which is where GStreamer puts the useful detail
/// ("Failed to connect. (Generic error)"), without the source-file prefix.
/// `source::fault` words it for people.
pub(crate) fn lib_error(err: &gst::message::Error) -> LibError {
    let message = err.error().to_string();
    let missing_plugin = err.error().matches(gst::CoreError::MissingPlugin);
    let full = err.debug().map(|d| d.to_string());
    // A missing decoder is named on its own line, not always the last.
    let missing = full.as_deref().and_then(|d| {
        d.lines()
            .map(str::trim)
            .find(|l| l.starts_with("Missing decoder"))
            .map(str::to_string)
    });
    let debug = missing.or_else(|| {
        full.as_deref()
            .and_then(|d| {
                d.lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
            })
            .map(|d| {
                d.rsplit_once("):\n")
                    .map_or(d.clone(), |(_, tail)| tail.to_string())
            })
            .filter(|d| !d.starts_with("../"))
    });
    LibError {
        message,
        debug,
        missing_plugin,
    }
}

/// What the decoder of a streaming pipeline is: the first video decoder
/// inside it, its input codec and its output size and rate.
pub(crate) fn stream_info(pipeline: &gst::Pipeline) -> StreamInfo {
    let mut info = StreamInfo::default();
    let mut it = pipeline.iterate_recurse();
    while let Ok(Some(e)) = it.next() {
        let Some(f) = e.factory() else { continue };
        let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or("");
        if !(klass.contains("Decoder") && klass.contains("Video")) {
            continue;
        }
        info.decoder = Some(f.name().to_string());
        let caps_of = |pad: &str| e.static_pad(pad).and_then(|p| p.current_caps());
        if let Some(caps) = caps_of("sink")
            && let Some(s) = caps.structure(0)
        {
            let name = s.name().as_str();
            info.codec = Some(name.strip_prefix("video/x-").unwrap_or(name).to_string());
        }
        if let Some(caps) = caps_of("src")
            && let Some(s) = caps.structure(0)
        {
            info.width = s
                .get::<i32>("width")
                .ok()
                .and_then(|w| u32::try_from(w).ok());
            info.height = s
                .get::<i32>("height")
                .ok()
                .and_then(|h| u32::try_from(h).ok());
            info.fps = s
                .get::<gst::Fraction>("framerate")
                .ok()
                .filter(|f| f.numer() > 0 && f.denom() > 0)
                .map(|f| f64::from(f.numer()) / f64::from(f.denom()));
        }
        break;
    }
    info
}
