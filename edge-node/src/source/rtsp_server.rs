//! A loopback RTSP server that plays an H.264 or H.265 MP4 forever, for
//! tests, demos and benchmarks (`edge-node serve-rtsp`).
//!
//! Looping: gst-rtsp-server ends the session when its pipeline reaches EOS,
//! and seeking its pipeline back would restart RTP timestamps. So the media
//! pipeline is a live `appsrc`:
//!
//! ```text
//! ( appsrc name=src is-live=true format=time ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )
//! ```
//!
//! (`h265parse` and `rtph265pay` for H.265, told by the file's video caps
//! when the server starts), and a feeder thread per media reads the file
//! with its own `filesrc ! qtdemux ! h264parse ! appsink` pipeline, seeks that reader back
//! to 0 at EOS, and pushes the access units with timestamps shifted by the
//! loops already played, paced against the media pipeline's running time.
//! Clients see one endless stream (H.264 with or without B-frames: PTS and
//! DTS are shifted alike). The media is shared, so all clients see the same
//! picture.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

use super::{SourceError, init};

/// Buffers are stamped this far in the future and pushed this far ahead of
/// their time, which covers B-frame reordering (PTS − DTS) and scheduling
/// jitter of the feeder thread.
const LEAD: gst::ClockTime = gst::ClockTime::from_mseconds(200);

/// A running RTSP server on 127.0.0.1. Dropping it stops it.
pub struct RtspServer {
    url: String,
    ctx: glib::MainContext,
    main_loop: glib::MainLoop,
    server: rtsp::RTSPServer,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtspServer {
    /// Serves `file` (H.264 or H.265 in MP4) at `rtsp://127.0.0.1:<port><mount>`.
    /// Port 0 picks a free port (see [`RtspServer::url`]). Fails if the port
    /// is taken or the file does not exist.
    pub fn start(file: &Path, port: u16, mount: &str) -> Result<RtspServer, SourceError> {
        init()?;
        for name in [
            "appsrc",
            "h264parse",
            "rtph264pay",
            "filesrc",
            "qtdemux",
            "appsink",
        ] {
            if gst::ElementFactory::find(name).is_none() {
                return Err(SourceError::MissingElement(name));
            }
        }
        let file = std::path::absolute(file)
            .map_err(|e| SourceError::Rtsp(format!("bad path {}: {e}", file.display())))?;
        if !file.is_file() {
            return Err(SourceError::Rtsp(format!(
                "file not found: {}",
                file.display()
            )));
        }
        let mount = if mount.starts_with('/') {
            mount.to_string()
        } else {
            format!("/{mount}")
        };

        let codec = video_codec(&file).map_err(SourceError::Rtsp)?;
        for name in [codec.parser(), codec.payloader()] {
            if gst::ElementFactory::find(name).is_none() {
                return Err(SourceError::MissingElement(name));
            }
        }
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( appsrc name=src is-live=true format=time ! {} config-interval=-1 \
             ! {} name=pay0 pt=96 )",
            codec.parser(),
            codec.payloader()
        ));
        factory.set_shared(true);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = Arc::clone(&stop);
            let file = file.clone();
            factory.connect_media_configure(move |_, media| {
                start_feeder(media, &file, codec, &stop);
            });
        }
        server
            .mount_points()
            .ok_or_else(|| SourceError::Rtsp("server has no mount points".into()))?
            .add_factory(&mount, factory);

        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let (tx, rx) = mpsc::channel::<Result<i32, String>>();
        let thread = {
            let (ctx, main_loop, server) = (ctx.clone(), main_loop.clone(), server.clone());
            std::thread::Builder::new()
                .name("rtsp-server".into())
                .spawn(move || run_loop(&ctx, &main_loop, &server, &tx))?
        };
        let bound = match rx.recv() {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(SourceError::Rtsp(format!(
                    "cannot listen on 127.0.0.1:{port}: {e}"
                )));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(SourceError::Rtsp("server thread exited".into()));
            }
        };
        let url = format!("rtsp://127.0.0.1:{bound}{mount}");
        tracing::info!(url = %url, file = %file.display(), "RTSP server started");
        Ok(RtspServer {
            url,
            ctx,
            main_loop,
            server,
            stop,
            thread: Some(thread),
        })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Disconnects every client, closes the listening socket and waits for
    /// the server thread. Clients see the connection drop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        let (server, main_loop) = (self.server.clone(), self.main_loop.clone());
        self.ctx.invoke(move || {
            server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
            main_loop.quit();
        });
        if thread.join().is_err() {
            tracing::error!("RTSP server thread panicked");
        }
        tracing::info!(url = %self.url, "RTSP server stopped");
    }

    /// Blocks until the server thread exits (it does not on its own).
    fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serves `file` until the process is killed (the `serve-rtsp` subcommand).
pub fn serve_rtsp_blocking(file: &Path, port: u16, mount: &str) -> Result<(), SourceError> {
    let server = RtspServer::start(file, port, mount)?;
    println!("serving {} at {}", file.display(), server.url());
    server.wait();
    Ok(())
}

/// The server thread: binds the socket (reporting the port or the error),
/// runs the main loop, and closes the socket when the loop quits.
fn run_loop(
    ctx: &glib::MainContext,
    main_loop: &glib::MainLoop,
    server: &rtsp::RTSPServer,
    ready: &mpsc::Sender<Result<i32, String>>,
) {
    let result = ctx.with_thread_default(|| {
        let source = match server.create_source(None::<&gstreamer_rtsp_server::gio::Cancellable>) {
            Ok(source) => source,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        source.attach(Some(ctx));
        let _ = ready.send(Ok(server.bound_port()));
        main_loop.run();
        // Destroying the source drops the listening socket: the port closes.
        source.destroy();
        while ctx.iteration(false) {}
    });
    if let Err(e) = result {
        let _ = ready.send(Err(format!("cannot own the main context: {e}")));
    }
}

/// Hooks a freshly created media up to a feeder thread.
fn start_feeder(media: &rtsp::RTSPMedia, file: &Path, codec: Codec, stop: &Arc<AtomicBool>) {
    let Some(appsrc) = media
        .element()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|bin| bin.by_name("src"))
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    else {
        tracing::error!("RTSP media has no appsrc named src");
        return;
    };
    let weak = appsrc.downgrade();
    let (file, stop) = (file.to_path_buf(), Arc::clone(stop));
    let spawned = std::thread::Builder::new()
        .name("rtsp-feed".into())
        .spawn(move || {
            if let Err(e) = feed(&file, codec, &weak, &stop) {
                tracing::warn!(file = %file.display(), error = %e, "RTSP feeder stopped");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start RTSP feeder thread");
    }
}

/// Reads the file in a loop and pushes paced, re-timestamped access units
/// into the media's appsrc until the media goes away or the server stops.
fn feed(
    file: &Path,
    codec: Codec,
    appsrc: &glib::WeakRef<gst_app::AppSrc>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let reader = gst::parse::launch(&format!(
        "filesrc name=f ! qtdemux ! {} ! appsink name=out",
        codec.parser()
    ))
    .map_err(|e| format!("cannot build reader: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "reader is not a pipeline".to_string())?;
    let result = (|| {
        reader
            .by_name("f")
            .ok_or("no filesrc")?
            .set_property("location", file);
        let sink = reader
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("no appsink")?;
        sink.set_sync(false);
        sink.set_max_buffers(8);
        reader
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start reader: {e}"))?;
        pump(&reader, &sink, appsrc, stop)
    })();
    let _ = reader.set_state(gst::State::Null);
    result
}

fn pump(
    reader: &gst::Pipeline,
    sink: &gst_app::AppSink,
    appsrc: &glib::WeakRef<gst_app::AppSrc>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut offset = gst::ClockTime::ZERO;
    let mut clip_end = gst::ClockTime::ZERO;
    let mut base: Option<gst::ClockTime> = None;
    let mut caps: Option<gst::Caps> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(src) = appsrc.upgrade() else {
            return Ok(());
        };
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            if sink.is_eos() {
                if clip_end == gst::ClockTime::ZERO {
                    return Err("no video in file".into());
                }
                offset += clip_end;
                clip_end = gst::ClockTime::ZERO;
                reader
                    .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO)
                    .map_err(|e| format!("cannot loop: {e}"))?;
            }
            continue;
        };
        let Some(mut buffer) = sample.buffer_owned() else {
            continue;
        };
        if let Some(c) = sample.caps_owned()
            && caps.as_ref() != Some(&c)
        {
            src.set_caps(Some(&c));
            caps = Some(c);
        }
        let (Some(pts), dts, dur) = (buffer.pts(), buffer.dts(), buffer.duration()) else {
            continue;
        };
        clip_end = clip_end.max(pts + dur.unwrap_or(gst::ClockTime::ZERO));

        let base = match base {
            Some(b) => b,
            None => match wait_running_time(&src, stop) {
                Some(rt) => *base.insert(rt + LEAD),
                None => return Ok(()),
            },
        };
        let out_pts = base + offset + pts;
        let out_dts = dts.map(|d| base + offset + d);
        let due = out_dts.unwrap_or(out_pts).saturating_sub(LEAD);
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let now = src.current_running_time();
            match now {
                Some(now) if now >= due => break,
                Some(now) => {
                    std::thread::sleep(Duration::from(due - now).min(Duration::from_millis(50)));
                }
                None => {
                    // Media paused or torn down.
                    if src.current_state() <= gst::State::Ready {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        {
            let b = buffer.make_mut();
            b.set_pts(out_pts);
            b.set_dts(out_dts);
        }
        if src.push_buffer(buffer).is_err() {
            // Flushing: the media was unprepared (last client left).
            return Ok(());
        }
    }
}

/// Waits until the media pipeline plays (live media start as soon as they
/// are prepared) and returns its running time.
fn wait_running_time(src: &gst_app::AppSrc, stop: &AtomicBool) -> Option<gst::ClockTime> {
    for _ in 0..1500 {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        if src.current_state() == gst::State::Playing
            && let Some(rt) = src.current_running_time()
        {
            return Some(rt);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The video codecs the server can packetise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    H264,
    H265,
}

impl Codec {
    fn parser(self) -> &'static str {
        match self {
            Self::H264 => "h264parse",
            Self::H265 => "h265parse",
        }
    }

    fn payloader(self) -> &'static str {
        match self {
            Self::H264 => "rtph264pay",
            Self::H265 => "rtph265pay",
        }
    }
}

/// The codec of the first video stream of an MP4, from the demuxer's caps.
fn video_codec(file: &Path) -> Result<Codec, String> {
    let p = gst::parse::launch("filesrc name=f ! qtdemux name=d d.video_0 ! fakesink name=s")
        .map_err(|e| format!("cannot build probe: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "probe is not a pipeline".to_string())?;
    let result = (|| {
        p.by_name("f")
            .ok_or("no filesrc")?
            .set_property("location", file);
        p.set_state(gst::State::Paused)
            .map_err(|e| format!("{}: not an MP4 with video ({e})", file.display()))?;
        let (done, _, _) = p.state(gst::ClockTime::from_seconds(5));
        done.map_err(|e| format!("{}: not an MP4 with video ({e})", file.display()))?;
        let caps = p
            .by_name("s")
            .and_then(|s| s.static_pad("sink"))
            .and_then(|pad| pad.current_caps())
            .ok_or_else(|| format!("{}: no video stream", file.display()))?;
        match caps.structure(0).map(|s| s.name().as_str()) {
            Some("video/x-h264") => Ok(Codec::H264),
            Some("video/x-h265") => Ok(Codec::H265),
            other => Err(format!(
                "{}: video is {}, the RTSP server serves H.264 or H.265",
                file.display(),
                other.unwrap_or("unknown")
            )),
        }
    })();
    let _ = p.set_state(gst::State::Null);
    result
}
