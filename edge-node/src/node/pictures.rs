//! Snapshot rendering for a camera's messages, on the blocking pool: faces
//! blurred (when the camera requires it), privacy masks filled, then
//! crop/scale/JPEG, then the node's byte budget picks the first rung of the
//! degradation ladder it can pay for (`budget.rs`). A picture that cannot
//! be sent says why ([`OmitReason`]), never silently.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::warn;

use crate::budget::ByteBudget;
use crate::budget::Step;
use crate::cpu;
use crate::detect;
use crate::frame::{BBox, Frame};
use crate::publish::{OmitReason, SnapshotOutcome, SnapshotPayload};
use crate::snapshot::{self, SnapshotOptions};

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
        cpu::charge(cpu::Stage::Snapshot, || {
            let blurred;
            let data: &[u8] = match &painter.faces {
                FacePolicy::Off => &frame.data,
                FacePolicy::Withheld(_) => return Ok(Err(OmitReason::Privacy)),
                FacePolicy::On(det) => {
                    blurred = blur_faces(det, &frame)?;
                    &blurred
                }
            };
            let render = |o: &SnapshotOptions| {
                snapshot::render(data, frame.width, frame.height, bbox, &label, o)
                    .map(|s| (s.jpeg.len() as u64, s))
                    .map_err(|e| e.to_string())
            };
            let Some(budget) = painter.budget else {
                return render(&opts).map(|(_, s)| Ok((s, Step::Full)));
            };
            // Held while the ladder is walked, so two cameras never spend the
            // same bytes; snapshots are rare (a few per second per node) and an
            // encode is a few ms, so serialising them costs little.
            let mut b = budget
                .lock()
                .map_err(|_| "snapshot budget poisoned".to_string())?;
            Ok(
                match crate::budget::choose(&mut b, &opts, whole_frame, Instant::now, render)? {
                    Some((step, s)) => Ok((s, step)),
                    None => Err(OmitReason::Budget),
                },
            )
        })
    })
    .await;
    match r {
        Ok(Ok(Ok((s, step)))) => SnapshotOutcome::Sent(SnapshotPayload {
            jpeg: s.jpeg,
            width: s.width,
            height: s.height,
            step,
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

/// A copy of the frame with every face found blurred.
fn blur_faces(det: &Mutex<detect::FaceDetector>, frame: &Frame) -> Result<Vec<u8>, String> {
    let found = det
        .lock()
        .map_err(|_| "face detector poisoned".to_string())?
        .detect(&frame.data, frame.width, frame.height)
        .map_err(|e| format!("face detection failed, snapshot withheld: {e}"))?;
    let boxes: Vec<_> = found.into_iter().map(|(b, _)| b).collect();
    let mut copy = frame.data.clone();
    snapshot::blur_regions(&mut copy, frame.width, frame.height, &boxes);
    Ok(copy)
}
