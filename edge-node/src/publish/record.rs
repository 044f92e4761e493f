//! What the node hands over to `publish`, in internal form: one lifecycle
//! message of an object ([`EventRecord`]) and what became of a snapshot that
//! was due ([`SnapshotOutcome`]). Typed values only: the wire strings
//! (`"privacy"`, `"quality"`, …) are written by the `wire` module.

use std::time::SystemTime;

use crate::budget::Step;
use crate::frame::BBox;
use edge_wire::{AlertDetail, EventType, SnapshotSource};

/// What `node` hands over for one lifecycle message (internal form).
#[derive(Clone, Debug)]
pub struct EventRecord {
    /// The camera's run ([`crate::publish::Publisher::camera_run`]): with
    /// the track id it makes the object's id unique across restarts.
    pub run: u64,
    pub kind: EventType,
    pub track_id: u64,
    pub class_id: u32,
    pub label: String,
    pub score: f32,
    pub top_score: f32,
    pub start: SystemTime,
    pub end: Option<SystemTime>,
    pub frame: SystemTime,
    /// Pixels of the analysed frame.
    pub bbox: BBox,
    pub frame_size: (u32, u32),
    pub current_zones: Vec<String>,
    pub entered_zones: Vec<String>,
    pub stationary: bool,
    pub alert: Option<AlertDetail>,
    /// Persons riding the object (a motorcycle or bicycle), the most seen
    /// so far; 0 for other objects.
    pub riders: u32,
}

/// What `node` hands over for one zone-level alert (crowding).
#[derive(Clone, Debug)]
pub struct ZoneAlertRecord {
    /// The camera's run (as in [`EventRecord`]).
    pub run: u64,
    /// Counts this camera run's zone alerts.
    pub seq: u64,
    pub zone: String,
    /// `crowding` or `crowding_cleared`.
    pub kind: String,
    pub occupancy: u32,
    pub dwell_s: Option<f64>,
    pub time: SystemTime,
}

/// What `node` hands over for one camera tamper alert (raised or cleared).
#[derive(Clone, Debug)]
pub struct CameraAlertRecord {
    /// The camera's run (as in [`EventRecord`]).
    pub run: u64,
    /// Counts this camera run's tamper alerts.
    pub seq: u64,
    /// The condition: `frozen`, `black`, `blurred` or `moved`.
    pub condition: String,
    /// Raised (`true`) or cleared.
    pub raised: bool,
    /// Media time of the check that decided it, seconds.
    pub t: f64,
    /// Wall-clock time of that check.
    pub time: SystemTime,
    /// Raised: how long it has been seen; cleared: how long it lasted.
    pub duration_s: f64,
    pub score: f64,
    pub threshold: f64,
    /// The conditions active after this alert.
    pub health: Vec<String>,
}

/// A JPEG ready to send.
#[derive(Clone, Debug)]
pub struct SnapshotPayload {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The rung of the budget's degradation ladder it was rendered at
    /// ([`Step::Full`]: the configured options, or no budget).
    pub step: Step,
    /// Dual-stream cameras: the stream it was rendered from (`None`: a
    /// single-stream camera).
    pub source: Option<SnapshotSource>,
    /// Dual-stream cameras: main-stream frame time minus analysed frame
    /// time, ms.
    pub match_error_ms: Option<f64>,
}

/// What became of a snapshot that was due.
#[derive(Clone, Debug)]
pub enum SnapshotOutcome {
    /// The picture goes with the message.
    Sent(SnapshotPayload),
    /// The message goes without it, and says why.
    Omitted(OmitReason),
}

/// Why a snapshot that was due is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OmitReason {
    /// Face blurring is required but unavailable.
    Privacy,
    /// The node's snapshot byte budget was spent.
    Budget,
    /// Rendering failed.
    Error,
    /// Larger than the MQTT packet limit.
    TooLarge,
}

impl SnapshotOutcome {
    /// The rung it was sent at, or why it was not (what `edge-stats/3` counts).
    pub fn result(&self) -> Result<Step, OmitReason> {
        match self {
            SnapshotOutcome::Sent(s) => Ok(s.step),
            SnapshotOutcome::Omitted(why) => Err(*why),
        }
    }

    /// The picture and the reason, apart (exactly one is `Some`).
    pub fn split(self) -> (Option<SnapshotPayload>, Option<OmitReason>) {
        match self {
            SnapshotOutcome::Sent(s) => (Some(s), None),
            SnapshotOutcome::Omitted(why) => (None, Some(why)),
        }
    }
}
