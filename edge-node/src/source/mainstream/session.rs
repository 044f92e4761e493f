//! The main stream's on-demand decoder, kept between snapshots, on the
//! camera's own snapshot thread (`snap-<camera>`).
//!
//! One per camera, started by its first snapshot:
//!
//! ```text
//! [pad pushed by the snap- thread] ! decodebin ! [probe: only the wanted PTS] ! videoconvert ! video/x-raw,format=RGB ! appsink
//! ```
//!
//! No `appsrc`: the `snap-` thread pushes the access units itself, so
//! parsing, decoding and conversion run on it, synchronously (decodebin
//! puts no queue between a parser and its decoder), and a push returns
//! with its picture, if any, already in the appsink. That thread is the
//! node's to own: it runs at nice [`SNAPSHOT_NICE`], so a snapshot waits
//! while the cameras' decoders and the inference workers run (events are
//! made of the analysis), and its CPU is reported apart (`snap-` threads).
//! GStreamer's own streaming threads come from a shared pool, so lowering
//! their priority would leak into other pipelines.
//!
//! Starting a decoder costs about as much as decoding six 1080p frames
//! (measured: ≈ 26 ms of CPU against ≈ 4 ms a frame), and snapshots of one
//! camera mostly move forward in time. So:
//! - a snapshot of a later frame of the GOP the decoder is in continues it:
//!   only the frames in between are decoded;
//! - a snapshot of the frame the decoder showed last is a copy of it;
//! - anything else (an earlier frame, another GOP, new caps, a decoder that
//!   ended or failed) starts a fresh decoder from the GOP's keyframe, so a
//!   picture never depends on decoding state from another GOP (open GOPs,
//!   leading pictures, a reconnect).
//!
//! Software decoders run one thread (`max-threads=1`): no frame-thread
//! latency, and about a third less CPU than libav's frame threads for the
//! same frames (measured: 120 against 172 ms for 25 frames after a 1080p
//! keyframe). A decoder that still holds the wanted picture back once it
//! has everything up to it (reordering) is given the GOP's next frames,
//! one at a time, then drained.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::super::ring::Plan;

/// The nice value of the `snap-` threads (0 normal, 19 lowest).
pub(super) const SNAPSHOT_NICE: i32 = 10;

/// How long a snapshot waits for its frame before it falls back (a decoder
/// that hangs must not hold the camera's events back for good).
const DEADLINE: Duration = Duration::from_secs(10);

/// One snapshot to decode, and where its answer goes.
type Job = (
    Plan<gst::Buffer, gst::Caps>,
    SyncSender<Result<Rgb, String>>,
);

/// The camera's snapshot thread: decodes one plan at a time. Dropping it
/// lets the thread end after its current job.
pub(super) struct SnapshotThread {
    jobs: SyncSender<Job>,
    stats: Arc<Mutex<DecoderStats>>,
}

impl SnapshotThread {
    pub fn spawn(camera: &str) -> std::io::Result<SnapshotThread> {
        // One job at a time: a camera's snapshots are asked for in order.
        let (jobs, rx) = sync_channel::<Job>(1);
        let stats = Arc::new(Mutex::new(DecoderStats::default()));
        let shared = Arc::clone(&stats);
        std::thread::Builder::new()
            .name(format!("snap-{}", camera.replace('\0', "_")))
            .spawn(move || serve(&rx, &shared))?;
        Ok(SnapshotThread { jobs, stats })
    }

    /// Decodes the plan's target on the snapshot thread; blocks until done,
    /// at most [`DEADLINE`]. A thread still busy with a frame that was given
    /// up on refuses at once.
    pub fn decode(&self, plan: Plan<gst::Buffer, gst::Caps>) -> Result<Rgb, String> {
        let (tx, rx) = sync_channel(1);
        self.jobs.try_send((plan, tx)).map_err(|e| match e {
            TrySendError::Full(_) => "the snapshot decoder is still busy with an earlier frame",
            TrySendError::Disconnected(_) => "the snapshot thread has ended",
        })?;
        match rx.recv_timeout(DEADLINE) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "the snapshot decoder took longer than {} s",
                DEADLINE.as_secs()
            )),
            Err(RecvTimeoutError::Disconnected) => Err("the snapshot thread has ended".into()),
        }
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

fn serve(jobs: &Receiver<Job>, stats: &Mutex<DecoderStats>) {
    if !crate::sched::lower_current_priority(SNAPSHOT_NICE) {
        tracing::debug!("snapshot thread: cannot lower its priority");
    }
    let mut decoder = Decoder::default();
    while let Ok((plan, reply)) = jobs.recv() {
        let r = decoder.decode(&plan);
        if let Ok(mut s) = stats.lock() {
            *s = decoder.stats;
        }
        let _ = reply.send(r);
    }
}

/// What a camera's main-stream decoder has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Fresh decoders started (first snapshot, another GOP, an earlier frame).
    pub starts: u64,
    /// Snapshots that continued the running decoder.
    pub continued: u64,
    /// Snapshots of the frame shown last (a copy, nothing decoded).
    pub repeats: u64,
    /// Access units sent to decoders.
    pub pushed: u64,
}

/// A picture: width, height, packed RGB.
pub(super) type Rgb = (u32, u32, Vec<u8>);

/// The camera's decoder, if one is running, and its counters.
#[derive(Default)]
struct Decoder {
    session: Option<Session>,
    stats: DecoderStats,
}

impl Decoder {
    /// The plan's target picture, decoded as cheaply as the running
    /// decoder allows.
    pub fn decode(&mut self, plan: &Plan<gst::Buffer, gst::Caps>) -> Result<Rgb, String> {
        let same_gop = |s: &Session| s.gop == plan.gop && s.caps == plan.ctx;
        if let Some(s) = self.session.as_ref().filter(|s| same_gop(s))
            && let Some((i, pic)) = &s.last
            && *i == plan.target
        {
            self.stats.repeats += 1;
            return Ok(pic.clone());
        }
        let continues = self
            .session
            .as_ref()
            .is_some_and(|s| same_gop(s) && !s.ended && s.pushed <= plan.target);
        if continues {
            self.stats.continued += 1;
        } else {
            // The old decoder stops (its pipeline goes to NULL) before the
            // new one starts.
            self.session = None;
            self.session = Some(Session::start(&plan.ctx, plan.gop)?);
            self.stats.starts += 1;
        }
        let Some(s) = self.session.as_mut() else {
            return Err("no decoder".into());
        };
        match s.decode_to(plan, &mut self.stats.pushed) {
            Ok(pic) => {
                s.last = Some((plan.target, pic.clone()));
                Ok(pic)
            }
            Err(e) => {
                self.session = None;
                Err(e)
            }
        }
    }
}

/// A running decoder, positioned in one GOP.
struct Session {
    pipeline: gst::Pipeline,
    /// The pad the snapshot thread pushes from, linked to decodebin.
    pad: gst::Pad,
    sink: gst_app::AppSink,
    caps: gst::Caps,
    gop: u64,
    /// Access units of `gop` pushed, from its keyframe, in decode order.
    pushed: usize,
    /// End of stream sent (drained): it can decode nothing more.
    ended: bool,
    /// PTS (ns) of the picture wanted; the probe lets only it through.
    want: Arc<AtomicU64>,
    /// The last picture given, by its index in the GOP.
    last: Option<(usize, Rgb)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        let _ = self.pad.set_active(false);
    }
}

impl Session {
    fn start(caps: &gst::Caps, gop: u64) -> Result<Session, String> {
        let decodebin = make("decodebin")?;
        let convert = make("videoconvert")?;
        let rgb: gst::Caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .build();
        // `wait-on-eos` off: the end of stream is pushed by the thread that
        // pulls the samples, which must not wait for itself.
        let sink = gst_app::AppSink::builder()
            .caps(&rgb)
            .sync(false)
            .wait_on_eos(false)
            .enable_last_sample(false)
            .build();
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([&decodebin, &convert, sink.upcast_ref()])
            .map_err(|e| format!("cannot assemble the decoder: {e}"))?;
        convert
            .link(&sink)
            .map_err(|e| format!("cannot link videoconvert: {e}"))?;
        pipeline.connect_deep_element_added(|_, _, element| {
            let software = element
                .factory()
                .is_some_and(|f| f.name().starts_with("avdec_"));
            if software && element.find_property("max-threads").is_some() {
                element.set_property("max-threads", 1i32);
            }
        });
        let want = Arc::new(AtomicU64::new(u64::MAX));
        let want_p = Arc::clone(&want);
        let convert_weak = convert.downgrade();
        decodebin.connect_pad_added(move |_, pad| {
            let Some(convert) = convert_weak.upgrade() else {
                return;
            };
            let Some(sp) = convert.static_pad("sink") else {
                return;
            };
            if sp.is_linked() || pad.link(&sp).is_err() {
                return;
            }
            // Only the wanted picture is converted; the frames decoded to
            // reach it are dropped here.
            let want = Arc::clone(&want_p);
            sp.add_probe(gst::PadProbeType::BUFFER, move |_, info| match &info.data {
                Some(gst::PadProbeData::Buffer(b))
                    if b.pts().map(gst::ClockTime::nseconds)
                        != Some(want.load(Ordering::Relaxed)) =>
                {
                    gst::PadProbeReturn::Handled
                }
                _ => gst::PadProbeReturn::Ok,
            });
        });
        let pad = gst::Pad::builder(gst::PadDirection::Src)
            .name("snapshot")
            .build();
        let sinkpad = decodebin
            .static_pad("sink")
            .ok_or("decodebin without a sink pad")?;
        pad.set_active(true)
            .map_err(|e| format!("cannot activate the decoder's input: {e}"))?;
        pad.link(&sinkpad)
            .map_err(|e| format!("cannot link the decoder's input: {e:?}"))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start the decoder: {e}"))?;
        let session = Session {
            pipeline,
            pad,
            sink,
            caps: caps.clone(),
            gop,
            pushed: 0,
            ended: false,
            want,
            last: None,
        };
        for ev in [
            gst::event::StreamStart::new("snapshot"),
            gst::event::Caps::new(caps),
            gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()),
        ] {
            if !session.pad.push_event(ev) {
                return Err(session.error_or("the decoder refused the stream's caps"));
            }
        }
        Ok(session)
    }

    /// The pipeline's error message if it posted one, else `what`.
    fn error_or(&self, what: &str) -> String {
        self.pipeline
            .bus()
            .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| what.to_string())
    }

    /// Decodes `b` on this thread; its picture, if it makes one, is in the
    /// appsink when this returns.
    fn push(&mut self, b: &gst::Buffer, pushed: &mut u64) -> Result<(), String> {
        self.pad
            .push(b.clone())
            .map_err(|e| self.error_or(&format!("the decoder refused a frame: {e:?}")))?;
        self.pushed += 1;
        *pushed += 1;
        Ok(())
    }

    /// Pushes what the decoder has not seen up to the target, then more of
    /// the GOP (or the end of stream) while it holds the target back.
    fn decode_to(
        &mut self,
        plan: &Plan<gst::Buffer, gst::Caps>,
        pushed: &mut u64,
    ) -> Result<Rgb, String> {
        let target_pts = plan
            .aus
            .get(plan.target)
            .and_then(|b| b.pts())
            .ok_or("target frame without PTS")?;
        self.want.store(target_pts.nseconds(), Ordering::Relaxed);
        for b in plan.aus.get(self.pushed..).unwrap_or_default() {
            self.push(b, pushed)?;
        }
        // After a decoder given frames past an earlier target, the GOP's
        // next frames start later.
        let mut more = plan
            .rest
            .iter()
            .skip(self.pushed.saturating_sub(plan.aus.len()));
        loop {
            while let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::ZERO) {
                if sample.buffer().and_then(|b| b.pts()) == Some(target_pts) {
                    return super::super::pipeline::copy_rgb(&sample);
                }
            }
            if self.ended {
                return Err(self.error_or("the decoder ended without the wanted frame"));
            }
            match more.next() {
                Some(b) => self.push(b, pushed)?,
                None => {
                    self.ended = true;
                    let _ = self.pad.push_event(gst::event::Eos::new());
                }
            }
        }
    }
}

pub(super) fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| format!("cannot create {factory}: {e}"))
}
