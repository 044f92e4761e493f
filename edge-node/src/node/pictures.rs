//! Snapshot rendering for a camera's messages, on the blocking pool: faces
//! blurred (when the camera requires it), privacy masks filled, then
//! crop/scale/JPEG, then the node's byte budget picks the first rung of the
//! degradation ladder it can pay for (`budget.rs`). A picture that cannot
//! be sent says why ([`OmitReason`]), never silently.
//!
//! A dual-stream camera's pictures come from its main stream: the frame
//! matching the analysed one is decoded here (on the blocking pool), the
//! box scaled from analysed to main-stream pixels; privacy masks are in
//! normalised coordinates and faces are found in the picture itself, so
//! both apply unchanged. No match within the tolerance: the analysed
//! frame, marked `sub` on the wire.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::{debug, warn};

use crate::budget::ByteBudget;
use crate::budget::Step;
use crate::cpu;
use crate::detect;
use crate::frame::{BBox, Frame};
use crate::publish::{OmitReason, SnapshotOutcome, SnapshotPayload, SnapshotSource};
use crate::snapshot::{self, SnapshotOptions};
use crate::source::{HiRes, MainMiss, MainStream};

/// Face blurring for one camera's snapshots.
#[derive(Clone)]
pub(super) enum FacePolicy {
    Off,
    /// One CenterFace session per camera; snapshots are rare, so a mutex is enough.
    On(Arc<Mutex<detect::FaceDetector>>),
    /// Blurring is required but impossible: snapshots are withheld (events
    /// still go) and the camera status says why.
    Withheld(String),
}

/// The node's snapshot byte budget, shared by its cameras (`None`: no limit).
pub(super) type SharedBudget = Option<Arc<Mutex<ByteBudget>>>;

/// A snapshot that was due: the picture, or why there is none.
pub(super) type Rendered = SnapshotOutcome;

/// What one camera's pictures are made with.
#[derive(Clone)]
pub(super) struct Painter {
    pub options: SnapshotOptions,
    pub faces: FacePolicy,
    pub budget: SharedBudget,
    /// Dual-stream cameras: the main stream, decoded on demand.
    pub main: Option<Arc<MainStream>>,
}

/// The pixels a snapshot is rendered from: the main-stream frame matching
/// the analysed one (box scaled to it), or the analysed frame itself.
struct Picture<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
    bbox: BBox,
    source: Option<SnapshotSource>,
    match_error_ms: Option<f64>,
}

/// The main-stream frame showing `frame`'s moment, when the camera has a
/// main stream and one lies within its tolerance.
fn main_frame(painter: &Painter, frame: &Frame) -> (Option<HiRes>, Option<f64>) {
    let Some(main) = &painter.main else {
        return (None, None);
    };
    let ms = |s: f64| (s * 1e4).round() / 10.0;
    match main.frame_near(frame) {
        Ok(hi) => {
            let e = ms(hi.error_s);
            (Some(hi), Some(e))
        }
        Err(miss) => {
            debug!(error = %miss, "snapshot from the analysed stream");
            match miss {
                MainMiss::TooFar { error_s } => (None, Some(ms(error_s))),
                MainMiss::Empty | MainMiss::Decode(_) => (None, None),
            }
        }
    }
}

impl<'a> Picture<'a> {
    fn of(
        painter: &Painter,
        frame: &'a Frame,
        hi: Option<&'a HiRes>,
        err: Option<f64>,
        bbox: BBox,
    ) -> Self {
        match hi {
            Some(h) => {
                let sx = h.width as f32 / frame.width.max(1) as f32;
                let sy = h.height as f32 / frame.height.max(1) as f32;
                Picture {
                    data: &h.rgb,
                    width: h.width,
                    height: h.height,
                    bbox: BBox::new(bbox.x1 * sx, bbox.y1 * sy, bbox.x2 * sx, bbox.y2 * sy),
                    source: Some(SnapshotSource::Main),
                    match_error_ms: err,
                }
            }
            None => Picture {
                data: &frame.data,
                width: frame.width,
                height: frame.height,
                bbox,
                source: painter.main.as_ref().map(|_| SnapshotSource::Sub),
                match_error_ms: err,
            },
        }
    }
}

impl Painter {
    /// The object's snapshot: `bbox` drawn and labelled, cropped per the options.
    pub async fn object(&self, frame: Arc<Frame>, bbox: BBox, label: String) -> Rendered {
        render(
            frame,
            bbox,
            label,
            self.options.clone(),
            self.clone(),
            false,
        )
        .await
    }

    /// The whole frame as a JPEG (crowding evidence), no box drawn.
    pub async fn whole_frame(&self, f: Arc<Frame>) -> Rendered {
        let opts = SnapshotOptions {
            crop: false,
            draw_box: false,
            ..self.options.clone()
        };
        let bbox = BBox::new(0.0, 0.0, f.width as f32, f.height as f32);
        render(f, bbox, String::new(), opts, self.clone(), true).await
    }
}

/// The snapshot of `frame` with every privacy rule applied, then the
/// budget; `whole_frame` pictures have no crop rung.
async fn render(
    frame: Arc<Frame>,
    bbox: BBox,
    label: String,
    opts: SnapshotOptions,
    painter: Painter,
    whole_frame: bool,
) -> Rendered {
    let r = tokio::task::spawn_blocking(move || {
        // Snapshot CPU includes decoding the main-stream frame on demand.
        cpu::charge(cpu::Stage::Snapshot, || {
            let (hi, err) = main_frame(&painter, &frame);
            let pic = Picture::of(&painter, &frame, hi.as_ref(), err, bbox);
            let stream = (pic.source, pic.match_error_ms);
            let blurred;
            let data: &[u8] = match &painter.faces {
                FacePolicy::Off => pic.data,
                FacePolicy::Withheld(_) => return Ok(Err(OmitReason::Privacy)),
                FacePolicy::On(det) => {
                    blurred = blur_faces(det, pic.data, pic.width, pic.height)?;
                    &blurred
                }
            };
            let render = |o: &SnapshotOptions| {
                snapshot::render(data, pic.width, pic.height, pic.bbox, &label, o)
                    .map(|s| (s.jpeg.len() as u64, s))
                    .map_err(|e| e.to_string())
            };
            let Some(budget) = painter.budget else {
                return render(&opts).map(|(_, s)| Ok((s, Step::Full, stream)));
            };
            // Held while the ladder is walked, so two cameras never spend the
            // same bytes; snapshots are rare (a few per second per node) and an
            // encode is a few ms, so serialising them costs little.
            let mut b = budget
                .lock()
                .map_err(|_| "snapshot budget poisoned".to_string())?;
            Ok(
                match crate::budget::choose(&mut b, &opts, whole_frame, Instant::now, render)? {
                    Some((step, s)) => Ok((s, step, stream)),
                    None => Err(OmitReason::Budget),
                },
            )
        })
    })
    .await;
    match r {
        Ok(Ok(Ok((s, step, (source, match_error_ms))))) => SnapshotOutcome::Sent(SnapshotPayload {
            jpeg: s.jpeg,
            width: s.width,
            height: s.height,
            step,
            source,
            match_error_ms,
        }),
        Ok(Ok(Err(why))) => SnapshotOutcome::Omitted(why),
        Ok(Err(e)) => {
            warn!(error = %e, "snapshot not sent");
            SnapshotOutcome::Omitted(OmitReason::Error)
        }
        Err(e) => {
            warn!(error = %e, "snapshot task failed");
            SnapshotOutcome::Omitted(OmitReason::Error)
        }
    }
}

/// A copy of the picture with every face found blurred.
fn blur_faces(
    det: &Mutex<detect::FaceDetector>,
    rgb: &[u8],
    width: u32,
    height: u32,
) -> Result<Vec<u8>, String> {
    let found = det
        .lock()
        .map_err(|_| "face detector poisoned".to_string())?
        .detect(rgb, width, height)
        .map_err(|e| format!("face detection failed, snapshot withheld: {e}"))?;
    let boxes: Vec<_> = found.into_iter().map(|(b, _)| b).collect();
    let mut copy = rgb.to_vec();
    snapshot::blur_regions(&mut copy, width, height, &boxes);
    Ok(copy)
}
