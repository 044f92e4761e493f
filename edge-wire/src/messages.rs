//! The JSON wire schema: schema ids and every message type as serialised
//! (`edge-event/7`, `edge-zone-alert/3`, `edge-camera-alert/1`, `edge-counts/1`,
//! `edge-node-status/3`, `edge-camera-status/3`, `edge-stats/3`; see
//! `docs/schemas/`). Wire strings are written here only, by serde, from
//! typed values. The node converts its internal forms into these types in
//! `edge-node/src/publish/wire.rs`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::topics::TopicClass;

pub const EVENT_SCHEMA: &str = "edge-event/7";
/// The previous event schema: `edge-event/7` added the snapshot's
/// `source` and `match_error_ms` (dual-stream cameras). The centre still
/// accepts it (both read as absent).
pub const EVENT_SCHEMA_V6: &str = "edge-event/6";
/// The schema before that: `edge-event/6` added `riders`. The centre
/// still accepts it from boxes not yet upgraded (`riders` reads as 0).
pub const EVENT_SCHEMA_V5: &str = "edge-event/5";
/// The schema before that: `edge-event/5` added `replayed`. The centre
/// still accepts it too.
pub const EVENT_SCHEMA_V4: &str = "edge-event/4";
pub const REPLAY_REQUEST_SCHEMA: &str = "edge-replay-request/1";
pub const REPLAY_ANSWER_SCHEMA: &str = "edge-replay-answer/1";
pub const COUNTS_SCHEMA: &str = "edge-counts/1";
pub const ZONE_ALERT_SCHEMA: &str = "edge-zone-alert/3";
pub const NODE_STATUS_SCHEMA: &str = "edge-node-status/4";
/// The previous node status: `edge-node-status/4` added `load`. The centre
/// still accepts it from boxes not yet upgraded.
pub const NODE_STATUS_SCHEMA_V3: &str = "edge-node-status/3";
pub const CAMERA_STATUS_SCHEMA: &str = "edge-camera-status/3";
pub const STATS_SCHEMA: &str = "edge-stats/3";
pub const CAMERA_ALERT_SCHEMA: &str = "edge-camera-alert/1";

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    New,
    Update,
    End,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WireBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRef {
    pub topic: String,
    pub bytes: usize,
    pub width: u32,
    pub height: u32,
    /// The snapshot budget's degradation step (`quality`, `height`, `crop`);
    /// `None` at the configured quality.
    pub degraded: Option<Degraded>,
    /// Dual-stream cameras only (`edge-event/7`; absent otherwise): the
    /// stream the picture was rendered from, `main` (full resolution,
    /// decoded on demand) or `sub` (the analysed frame: no main-stream
    /// frame lay within the camera's `match_tolerance_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SnapshotSource>,
    /// Dual-stream cameras only: the main-stream frame's time minus the
    /// analysed frame's, in ms (signed); for a `sub` picture the nearest
    /// main-stream frame's distance, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_error_ms: Option<f64>,
}

/// `snapshot.source`: which stream of a dual-stream camera a snapshot
/// was rendered from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSource {
    Main,
    Sub,
}

/// Detail of the alert an `edge-event/7` message carries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlertDetail {
    /// `loitering` or `wrong_way`.
    pub kind: String,
    /// Zone or line name.
    pub rule: String,
    /// Loitering: seconds in the zone.
    pub dwell_s: Option<f64>,
    /// Wrong way: the direction crossed.
    pub direction: Option<String>,
}

/// `snapshot.degraded`: the budget's degradation step of a sent snapshot
/// (`None` on the wire: the configured quality).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Degraded {
    Quality,
    Height,
    Crop,
}

/// `snapshot_omitted`: why a snapshot a message should carry is missing.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotOmitted {
    Budget,
    Privacy,
    /// Dropped from a full outbox (written by the outbox's fallback copy).
    Evicted,
    Error,
    /// Larger than the MQTT packet limit (the node's `max_packet_bytes` or
    /// the broker's maximum packet size).
    #[serde(rename = "too_large")]
    TooLarge,
}

/// `end_reason`: why an `end` was sent other than by the tracker.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// The object was still open when the node's previous run died (a crash,
    /// `kill -9`, power loss): the node ends it when it starts again.
    Restart,
}

/// `edge-event/7` (and `/6`, the same without the snapshot's `source` and
/// `match_error_ms`; `/5`, without `riders` either; `/4`, without
/// `replayed` either): one message of an object's lifecycle.
///
/// `id` is `{node}.{camera}.{run}.{track}`, `run` being the camera's start
/// (ms since the epoch, hex; strictly increasing per camera): unique across
/// camera and node restarts. The centre deduplicates by node, camera and
/// `seq`; `id` names the object for its lifecycle.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventMessage {
    pub schema: String,
    pub id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub label: String,
    pub class_id: u32,
    pub track_id: u64,
    pub score: f32,
    pub top_score: f32,
    pub start_time: String,
    pub end_time: Option<String>,
    pub frame_time: String,
    #[serde(rename = "box")]
    pub bbox: WireBox,
    pub frame_size: FrameSize,
    pub snapshot: Option<SnapshotRef>,
    /// Why a snapshot this message should carry is missing: `budget` (the
    /// node's snapshot byte budget was spent), `privacy` (face blurring is
    /// required but unavailable), `evicted` (dropped from a full outbox),
    /// `error` (rendering failed). `None` when nothing is missing.
    pub snapshot_omitted: Option<SnapshotOmitted>,
    /// Zones the object is in now (after inertia).
    pub current_zones: Vec<String>,
    /// Zones it has entered during this event.
    pub entered_zones: Vec<String>,
    /// Its box has barely moved for `rules.stationary_s`; no updates follow.
    pub stationary: bool,
    /// Alert names this message raises (empty for plain lifecycle messages).
    pub alerts: Vec<String>,
    pub alert: Option<AlertDetail>,
    /// Set on an `end` the tracker did not send (`restart`: the object was
    /// left open by a crash); `None` otherwise.
    pub end_reason: Option<EndReason>,
    /// `true` when this is a copy sent again from the node's delivered
    /// window in answer to a replay request (`edge-event/5`; absent, and so
    /// `false`, in `edge-event/4`).
    #[serde(default)]
    pub replayed: bool,
    /// Persons riding the object: the most the node has seen on this
    /// motorcycle or bicycle so far (riders folded into it by the traffic
    /// stage; a later message never says fewer, the `end` has the final
    /// count). Always present in `edge-event/6`, 0 for every other class
    /// and for a vehicle seen without riders; absent, and so 0, in `/5` and
    /// `/4`.
    #[serde(default)]
    pub riders: u32,
}

/// `edge-replay-request/1`, centre → node on `{prefix}/{district}/{node}/replay`
/// (QoS 1): send again the lifecycle messages of `camera` numbered
/// `first..=last` (`seq`), which the centre does not have.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayRequest {
    pub schema: String,
    /// Chosen by the centre; echoed in the answer.
    pub request_id: String,
    pub camera: String,
    pub first: u64,
    pub last: u64,
    /// When the centre asked (RFC 3339).
    pub time: String,
}

/// Why a node cannot send a message again.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MissingReason {
    /// Removed from the outbox to stay within its quota (before or after
    /// it was delivered).
    Evicted,
    /// Delivered longer ago than `[outbox] keep_delivered_s`.
    Expired,
    /// Never stored: the outbox had a storage fault when it was made.
    NotStored,
    /// The node has no record of it (e.g. its outbox was deleted).
    Unknown,
}

/// A run of `seq` a node cannot send again, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MissingRange {
    pub first: u64,
    pub last: u64,
    pub reason: MissingReason,
}

/// `edge-replay-answer/1`, node → centre on
/// `{prefix}/{district}/{node}/{camera}/replayed` (QoS 1), after the
/// replayed messages were queued for sending (each marked `replayed`).
/// Every `seq` of the request is in exactly one of: replayed (sent again),
/// `pending` (not yet delivered the first time; it will come) or `missing`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayAnswer {
    pub schema: String,
    pub request_id: String,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub first: u64,
    pub last: u64,
    /// How many messages were sent again.
    pub replayed: u64,
    /// Runs still in the outbox's queue, not yet delivered once.
    pub pending: Vec<(u64, u64)>,
    pub missing: Vec<MissingRange>,
    pub time: String,
}

/// `edge-zone-alert/3`: a zone-level alert (crowding), on the alerts topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZoneAlertMessage {
    pub schema: String,
    pub id: String,
    pub seq: u64,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub zone: String,
    /// `["crowding"]` or `["crowding_cleared"]`.
    pub alerts: Vec<String>,
    pub occupancy: u32,
    /// Seconds the occupancy has been at/over the limit (crowding only).
    pub dwell_s: Option<f64>,
    pub time: String,
    /// Whole-frame snapshot (crowding only).
    pub snapshot: Option<SnapshotRef>,
    /// Why the crowding snapshot is missing (as in `edge-event/7`).
    pub snapshot_omitted: Option<SnapshotOmitted>,
}

/// `edge-camera-alert/1`: a camera tamper or picture-quality condition
/// raised or cleared, on the alerts topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CameraAlertMessage {
    pub schema: String,
    /// `{node}.{camera}.{run}.c{seq}`.
    pub id: String,
    pub seq: u64,
    pub node: String,
    pub district: String,
    pub camera: String,
    /// `frozen`, `black`, `blurred`, `moved`, or one of them + `_cleared`.
    pub kind: String,
    /// Wall-clock time of the check that decided it.
    pub time: String,
    /// Media time of that check, seconds.
    pub t: f64,
    /// Raised: seconds the condition has been seen; cleared: seconds it lasted.
    pub duration_s: f64,
    /// The condition's measure at that check, and its threshold.
    pub score: f64,
    pub threshold: f64,
    /// The camera's active conditions after this alert.
    pub health: Vec<String>,
}

/// One counter on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireCounter {
    /// Since the node started.
    pub total: u64,
    /// During this interval.
    pub delta: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LineCountsWire {
    /// `[forward, backward]` direction names.
    pub directions: [String; 2],
    /// class label → direction → counter.
    pub counts: BTreeMap<String, BTreeMap<String, WireCounter>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZoneCountsWire {
    /// class label → objects inside at the end of the interval.
    pub occupancy: BTreeMap<String, u32>,
    /// Highest total occupancy during the interval.
    pub peak: u32,
    /// class label → entries.
    pub entered: BTreeMap<String, WireCounter>,
}

/// `edge-counts/1`, on `{base}/{camera}/counts` every counts interval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CountsMessage {
    pub schema: String,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub seq: u64,
    pub interval_start: String,
    pub interval_end: String,
    pub lines: BTreeMap<String, LineCountsWire>,
    pub zones: BTreeMap<String, ZoneCountsWire>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Online,
    Offline,
    Stopped,
}

/// `edge-node-status/3`, retained on `{base}/status`; the broker publishes the
/// `offline` form as our last will.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeStatusMessage {
    pub schema: String,
    pub node: String,
    pub district: String,
    pub state: NodeState,
    pub since: Option<String>,
    pub version: String,
    pub cameras: Vec<String>,
    /// The durable outbox when this status was published: backlog and
    /// evictions (`None` in the last will, which is fixed at connect time).
    pub outbox: Option<NodeOutbox>,
    /// Whether the node keeps up with its cameras (`None` in the last will
    /// and before the first assessment; absent in `/3`).
    #[serde(default)]
    pub load: Option<NodeLoad>,
}

/// The load part of `edge-node-status/4`: over the last window, the frames
/// the cameras delivered for analysis (after each camera's `detect_fps`
/// limit) against the frames the detector analysed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeLoad {
    /// More than 5 % of the delivered frames were shed unanalysed (cleared
    /// below 1 %).
    pub overloaded: bool,
    /// Length of the window, seconds.
    pub window_s: f64,
    /// Frames per second delivered for analysis, all cameras.
    pub delivered_fps: f64,
    /// Frames per second analysed, all cameras.
    pub analysed_fps: f64,
    /// Frames per second shed because the detector could not keep up.
    pub shortfall_fps: f64,
    /// `shortfall_fps` as a share of `delivered_fps`, %.
    pub shed_pct: f64,
    /// The camera with the lowest analysed rate relative to its
    /// `detect_fps`, and that rate.
    pub slowest_camera: Option<String>,
    pub slowest_fps: Option<f64>,
}

/// The outbox part of `edge-node-status/3`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeOutbox {
    /// Events and snapshots waiting for a PUBACK.
    pub events: u64,
    pub snapshots: u64,
    /// Evicted by the disk quota since the outbox was created (snapshots first).
    pub evicted_events: u64,
    pub evicted_snapshots: u64,
    /// Messages that could not be stored (storage fault); each left a `seq` gap.
    pub lost_events: u64,
    /// Records taken out of the queue because they can never be delivered
    /// (larger than a packet limit); kept on the node.
    pub quarantined: u64,
    /// Why the store is failing (`disk full`, `I/O error: …`); `None` when healthy.
    pub store_error: Option<String>,
    /// Why delivery is held up: the broker refused a message (PUBACK reason
    /// code, topic) or stopped acknowledging; `None` once it acknowledges again.
    pub delivery_error: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    Starting,
    Streaming,
    Reconnecting,
    Failed,
    Ended,
    /// The node stopped cleanly while the camera was live (its final status).
    Stopped,
}

/// `edge-camera-status/3`, retained on `{base}/{camera}/status`: published
/// on every state change and refreshed every `[node] status_interval_s`
/// with the live figures.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CameraStatusMessage {
    pub schema: String,
    pub node: String,
    pub camera: String,
    pub state: CameraState,
    /// When the current state began (retries within one outage keep it).
    pub since: String,
    /// When this status was written.
    pub time: String,
    /// What went wrong, worded for people (URL with the password masked,
    /// host and port, what failed); `None` while fine.
    pub last_error: Option<String>,
    /// The library's own text behind `last_error`, if any.
    pub detail: Option<String>,
    #[serde(flatten)]
    pub live: CameraLive,
}

/// The live figures of a camera's status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CameraLive {
    /// Frames received from the source since the camera started.
    pub frames: u64,
    /// Frames the detector analysed.
    pub frames_analysed: u64,
    /// Frames not analysed, all causes (the sum of `drops`).
    pub frames_dropped: u64,
    pub drops: DropCounts,
    /// Frames per second received and analysed over the last interval.
    pub fps_in: f64,
    pub fps_analysed: f64,
    /// Seconds since the last frame arrived (`None`: none yet).
    pub last_frame_age_s: Option<f64>,
    /// Connections lost since the camera started.
    pub reconnects: u64,
    /// Tries so far in the current outage (0 while streaming).
    pub retry_attempt: u32,
    /// When the current outage began and how long it has lasted (`None` while streaming).
    pub outage_since: Option<String>,
    pub outage_s: Option<f64>,
    /// What the camera sends and which decoder reads it (from the last connection).
    pub stream: Option<StreamDesc>,
    /// Active picture-quality conditions (tamper alarms), empty when fine.
    #[serde(default)]
    pub health: Vec<String>,
}

/// Frames not analysed, by cause.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DropCounts {
    /// Shed because the detector was busy (the camera's queue was full).
    pub queue_full: u64,
    /// The detector failed on the frame.
    pub inference_failed: u64,
}

/// The stream a camera sends, as its decoder sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamDesc {
    pub codec: Option<String>,
    pub decoder: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
}

/// `edge-stats/3`, retained on `{base}/stats`: outbox depth and evictions,
/// what was sent, bytes per class of traffic and per camera, and the budget.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatsMessage {
    pub schema: String,
    pub node: String,
    pub district: String,
    pub time: String,
    pub outbox: OutboxStats,
    pub sent: SentStats,
    /// Payload bytes handed to the broker since start, per class, for the
    /// whole node (the sum of the classes equals `sent.bytes`; this message's
    /// own bytes are counted in the next one).
    pub bytes: ClassBytes,
    /// Per camera: bytes per class and what became of its snapshots.
    pub cameras: BTreeMap<String, CameraStats>,
    /// The snapshot budget (`None`: no budget configured).
    pub budget: Option<BudgetStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OutboxStats {
    pub events: u64,
    pub snapshots: u64,
    pub bytes: u64,
    pub quota_bytes: u64,
    pub evicted_events: u64,
    pub evicted_snapshots: u64,
    pub evicted_bytes: u64,
    /// As in `edge-node-status/3`.
    pub lost_events: u64,
    pub quarantined: u64,
    pub store_error: Option<String>,
    pub delivery_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SentStats {
    pub messages: u64,
    pub acked: u64,
    pub bytes: u64,
    pub replayed: u64,
    pub reconnects: u64,
    /// PUBACKs with a failure reason code (the message stays in the outbox).
    pub refused: u64,
    /// Connections dropped because the broker stopped acknowledging.
    pub puback_timeouts: u64,
}

/// The snapshot budget as `edge-stats/3` reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BudgetStats {
    pub snapshot_bytes_per_s: f64,
    pub burst_bytes: f64,
    /// Bytes the bucket holds now.
    pub available_bytes: u64,
}

/// Payload bytes sent per class of traffic (`edge-stats/3`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClassBytes {
    pub events: u64,
    pub alerts: u64,
    pub snapshots: u64,
    pub counts: u64,
    pub status: u64,
    pub stats: u64,
}

impl ClassBytes {
    /// Count `n` payload bytes sent on a topic of `class`.
    pub fn add(&mut self, class: TopicClass, n: u64) {
        let slot = match class {
            TopicClass::Events => &mut self.events,
            TopicClass::Alerts => &mut self.alerts,
            TopicClass::Snapshots => &mut self.snapshots,
            TopicClass::Counts => &mut self.counts,
            TopicClass::Status | TopicClass::Replay => &mut self.status,
            TopicClass::Stats => &mut self.stats,
        };
        *slot += n;
    }

    /// All classes together.
    pub fn total(&self) -> u64 {
        self.events + self.alerts + self.snapshots + self.counts + self.status + self.stats
    }
}

/// Snapshots of one camera by what the budget made of them (`edge-stats/3`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Sent at the configured quality.
    pub full: u64,
    /// Sent degraded, per step.
    pub quality: u64,
    pub height: u64,
    pub crop: u64,
    /// Due but not sent because the budget was spent.
    pub omitted_budget: u64,
    /// Due but withheld for privacy (face model unusable).
    pub omitted_privacy: u64,
    /// Due but larger than the MQTT packet limit.
    #[serde(default)]
    pub omitted_too_large: u64,
}

/// Per-camera part of `edge-stats/3`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CameraStats {
    /// Payload bytes handed to the broker, per class.
    pub bytes: ClassBytes,
    pub snapshots: SnapshotCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        let b = serde_json::to_value(EventType::Update).unwrap();
        assert_eq!(b, "update");
        assert_eq!(
            serde_json::to_value(CameraState::Reconnecting).unwrap(),
            "reconnecting"
        );
        assert_eq!(serde_json::to_value(NodeState::Stopped).unwrap(), "stopped");
        assert!(rfc3339(SystemTime::UNIX_EPOCH).starts_with("1970-01-01T00:00:00"));
    }

    /// The outcome enums serialise to the strings the schemas enumerate.
    #[test]
    fn snapshot_outcome_wire_names() {
        let omitted = [
            (SnapshotOmitted::Privacy, "privacy"),
            (SnapshotOmitted::Budget, "budget"),
            (SnapshotOmitted::Error, "error"),
            (SnapshotOmitted::TooLarge, "too_large"),
            (SnapshotOmitted::Evicted, "evicted"),
        ];
        for (why, name) in omitted {
            assert_eq!(serde_json::to_value(why).unwrap(), name);
        }
        let steps = [
            (Degraded::Quality, "quality"),
            (Degraded::Height, "height"),
            (Degraded::Crop, "crop"),
        ];
        for (step, name) in steps {
            assert_eq!(serde_json::to_value(step).unwrap(), name);
        }
        assert_eq!(serde_json::to_value(SnapshotSource::Main).unwrap(), "main");
        assert_eq!(serde_json::to_value(SnapshotSource::Sub).unwrap(), "sub");
    }

    /// A single-stream snapshot reference has no `source` or
    /// `match_error_ms` keys (zone alerts keep their schema); a dual-stream
    /// one has both, and an `edge-event/6` reference reads without them.
    #[test]
    fn snapshot_source_only_for_dual_stream_cameras() {
        let mut r = SnapshotRef {
            topic: "a/snapshot/x".into(),
            bytes: 1,
            width: 2,
            height: 3,
            degraded: None,
            source: None,
            match_error_ms: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("source").is_none() && v.get("match_error_ms").is_none());
        let back: SnapshotRef = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        r.source = Some(SnapshotSource::Main);
        r.match_error_ms = Some(-4.0);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (&v["source"], &v["match_error_ms"]),
            (&"main".into(), &(-4.0).into())
        );
    }

    /// Bytes added per class sum to the total.
    #[test]
    fn class_bytes_total() {
        let mut b = ClassBytes::default();
        b.add(TopicClass::Events, 3);
        b.add(TopicClass::Snapshots, 40);
        b.add(TopicClass::Stats, 500);
        assert_eq!((b.events, b.snapshots, b.stats), (3, 40, 500));
        assert_eq!(b.total(), 543);
    }
}
