//! The main stream's on-demand decoder, kept between snapshots.
//!
//! One per camera, started by its first snapshot:
//!
//! ```text
//! appsrc caps=<the GOP's caps> ! decodebin ! [probe: only the wanted PTS] ! videoconvert ! video/x-raw,format=RGB ! appsink
//! ```
//!
//! Starting a decoder costs about as much as decoding six 1080p frames
//! (measured: ≈ 31 ms of CPU against ≈ 5.4 ms a frame), and snapshots of one
//! camera mostly move forward in time. So:
//! - a snapshot of a later frame of the GOP the decoder is in continues it:
//!   only the frames in between are decoded;
//! - a snapshot of the frame the decoder showed last is a copy of it;
//! - anything else (an earlier frame, another GOP, new caps, a decoder that
//!   ended or failed) starts a fresh decoder from the GOP's keyframe, so a
//!   picture never depends on decoding state from another GOP (open GOPs,
//!   leading pictures, a reconnect).
//!
//! Software decoders run one thread each (`max-threads=1`): no frame-thread
//! latency, and the snapshot pool, not the decoder, decides how many cores
//! snapshots take. A decoder that still holds the wanted picture back once
//! it has consumed everything (reordering) is given the GOP's next frames,
//! one at a time, then drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::super::ring::Plan;

/// How long one snapshot may take to decode before it is given up.
const DECODE_DEADLINE: Duration = Duration::from_secs(5);
/// Polls of the appsink in which the decoder produced nothing, with
/// nothing left queued for it, before it is judged to be holding back.
const STALLED_POLLS: u32 = 2;
const POLL: gst::ClockTime = gst::ClockTime::from_mseconds(20);

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
pub(super) struct Decoder {
    session: Option<Session>,
    stats: DecoderStats,
}

impl Decoder {
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

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
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    caps: gst::Caps,
    gop: u64,
    /// Access units of `gop` pushed, from its keyframe, in decode order.
    pushed: usize,
    /// End of stream sent (drained): it can decode nothing more.
    ended: bool,
    /// PTS (ns) of the picture wanted; the probe lets only it through.
    want: Arc<AtomicU64>,
    /// Pictures out of the decoder, wanted or not.
    out: Arc<AtomicU64>,
    /// The last picture given, by its index in the GOP.
    last: Option<(usize, Rgb)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Session {
    fn start(caps: &gst::Caps, gop: u64) -> Result<Session, String> {
        let src = gst_app::AppSrc::builder()
            .caps(caps)
            .format(gst::Format::Time)
            .is_live(false)
            .build();
        let decodebin = make("decodebin")?;
        let convert = make("videoconvert")?;
        let rgb: gst::Caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .build();
        let sink = gst_app::AppSink::builder()
            .caps(&rgb)
            .sync(false)
            .enable_last_sample(false)
            .build();
        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([src.upcast_ref(), &decodebin, &convert, sink.upcast_ref()])
            .map_err(|e| format!("cannot assemble the decoder: {e}"))?;
        src.link(&decodebin)
            .map_err(|e| format!("cannot link appsrc: {e}"))?;
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
        let out = Arc::new(AtomicU64::new(0));
        let (want_p, out_p) = (Arc::clone(&want), Arc::clone(&out));
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
            // reach it are counted and dropped here.
            let (want, out) = (Arc::clone(&want_p), Arc::clone(&out_p));
            sp.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(gst::PadProbeData::Buffer(b)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                out.fetch_add(1, Ordering::Relaxed);
                if b.pts().map(gst::ClockTime::nseconds) == Some(want.load(Ordering::Relaxed)) {
                    gst::PadProbeReturn::Ok
                } else {
                    gst::PadProbeReturn::Handled
                }
            });
        });
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start the decoder: {e}"))?;
        Ok(Session {
            pipeline,
            src,
            sink,
            caps: caps.clone(),
            gop,
            pushed: 0,
            ended: false,
            want,
            out,
            last: None,
        })
    }

    fn push(&mut self, b: &gst::Buffer, pushed: &mut u64) -> Result<(), String> {
        self.src
            .push_buffer(b.clone())
            .map_err(|e| format!("decoder refused a buffer: {e:?}"))?;
        self.pushed += 1;
        *pushed += 1;
        Ok(())
    }

    /// Pushes what the decoder has not seen up to the target and waits for
    /// the target picture.
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
        let deadline = Instant::now() + DECODE_DEADLINE;
        let bus = self.pipeline.bus().ok_or("decoder has no bus")?;
        let (mut seen, mut still) = (self.out.load(Ordering::Relaxed), 0);
        loop {
            if let Some(sample) = self.sink.try_pull_sample(POLL) {
                if sample.buffer().and_then(|b| b.pts()) == Some(target_pts) {
                    return super::super::pipeline::copy_rgb(&sample);
                }
                continue;
            }
            if self.sink.is_eos() {
                return Err("the decoder ended without the wanted frame".into());
            }
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(err) = msg.view()
            {
                return Err(err.error().to_string());
            }
            if Instant::now() >= deadline {
                return Err("the decoder took longer than 5 s".into());
            }
            let now = self.out.load(Ordering::Relaxed);
            if now != seen {
                (seen, still) = (now, 0);
                continue;
            }
            still += 1;
            if still < STALLED_POLLS || self.ended || self.src.current_level_buffers() > 0 {
                continue;
            }
            // Everything consumed, the picture still held back: feed the
            // GOP's next frame, or drain the decoder.
            still = 0;
            match more.next() {
                Some(b) => self.push(b, pushed)?,
                None => {
                    let _ = self.src.end_of_stream();
                    self.ended = true;
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
