//! Storage of ingested messages behind one trait ([`Store`]), so SQLite (the
//! embedded default) and PostgreSQL pass the same tests (`contract`).
//!
//! A batch is committed in one transaction; inserting the same message
//! twice is a no-op (the keys are the node's own: node, camera and `seq`
//! for events, the message id for alerts, the interval for counts).

pub mod console;
mod delivery;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::decode::{Origin, Record, Rejected};

/// One row to commit.
#[derive(Clone, Debug)]
pub enum Row {
    /// Any decoded message but a snapshot.
    Message(Box<Record>),
    /// A snapshot whose file is already durable in the snapshot store.
    Snapshot {
        origin: Origin,
        topic: String,
        sha256: String,
        bytes: u64,
    },
    /// A message skipped, and why.
    Rejected {
        topic: String,
        reason: Rejected,
        bytes: u64,
    },
}

/// A row and when the centre received it.
#[derive(Clone, Debug)]
pub struct Item {
    pub received: SystemTime,
    pub row: Row,
}

/// What a commit did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Rows written.
    pub inserted: u64,
    /// Messages already stored (a redelivery).
    pub duplicates: u64,
}

/// Row counts, for the tests and `edge-centre stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub alerts: u64,
    pub counts: u64,
    pub snapshots: u64,
    pub cameras: u64,
    pub nodes: u64,
    pub rejected: u64,
}

/// A run of missing `seq` numbers of one camera's lifecycle messages: the
/// centre holds `first - 1` and `last + 1` but nothing between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub node: String,
    pub camera: String,
    pub first: u64,
    pub last: u64,
}

/// How the centre asks boxes for missing messages (`[replay]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayPlan {
    pub enabled: bool,
    /// A gap is requested once it is this old (messages may still be on
    /// their way through another instance).
    pub grace_ms: i64,
    /// How long an instance holds a gap's lease: it is requested again
    /// after this if still open.
    pub retry_ms: i64,
    /// A gap still open this long after it was found is closed: what is
    /// still missing is recorded lost (`no_answer`).
    pub give_up_ms: i64,
    /// How often each instance scans for due gaps.
    pub scan_every_ms: i64,
    /// The most `seq` one request asks for.
    pub max_range: u64,
    /// The most runs requested per gap per scan.
    pub max_runs: usize,
}

impl Default for ReplayPlan {
    fn default() -> Self {
        Self {
            enabled: true,
            grace_ms: 30_000,
            retry_ms: 60_000,
            give_up_ms: 86_400_000,
            scan_every_ms: 5_000,
            max_range: 10_000,
            max_runs: 100,
        }
    }
}

/// A replay request to publish (`edge-replay-request/1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub district: String,
    pub node: String,
    pub camera: String,
    pub first: u64,
    pub last: u64,
    pub request_id: String,
}

/// One gap as the delivery report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapReport {
    pub node: String,
    pub camera: String,
    pub district: String,
    pub first: u64,
    pub last: u64,
    /// `open`, `recovered` (complete, some by replay), `arrived` (complete,
    /// none by replay) or `lost` (some recorded lost).
    pub state: String,
    pub found_at: i64,
    pub requests: i64,
    /// Messages of the gap stored from a replay.
    pub replayed: i64,
    /// Messages the box could not send again.
    pub lost: i64,
    /// Why, per reason: `expired: 120, evicted: 3`.
    pub reasons: Option<String>,
    pub closed_at: Option<i64>,
    pub answered_at: Option<i64>,
}

/// A run of `seq` recorded lost, and why (the box's reason, or
/// `no_answer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRun {
    pub node: String,
    pub camera: String,
    pub first: u64,
    pub last: u64,
    pub reason: String,
    pub recorded_at: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("database error: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "the database schema is version {found}, newer than this edge-centre knows ({known}): upgrade edge-centre"
    )]
    TooNew { found: i64, known: i64 },
}

/// A database the centre stores into. Used from one writer thread.
pub trait Store: Send {
    /// Commits every row in one transaction, or none.
    fn commit(&mut self, items: &[Item]) -> Result<Committed, StoreError>;
    /// How many rows each table holds.
    fn totals(&mut self) -> Result<Totals, StoreError>;
    /// Every stored event's (node, camera, seq), in order.
    fn event_keys(&mut self) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// The incident rows of the review queue as (alert id, kind, camera),
    /// newest first.
    fn alerts(&mut self) -> Result<Vec<(String, String, String)>, StoreError>;
    /// Rejected messages as (topic, reason), oldest first.
    fn rejected(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// Every camera's current state as (node, camera, state).
    fn camera_states(&mut self) -> Result<Vec<(String, String, String)>, StoreError>;
    /// Marks expired the snapshots received before `cutoff`, then the
    /// oldest until the rest total at most `max_bytes`, in one transaction;
    /// returns their SHA-256 so their files can be deleted. The rows stay
    /// (events keep pointing at them, and the console says "expired").
    fn expire_snapshots(
        &mut self,
        now: SystemTime,
        cutoff: SystemTime,
        max_bytes: u64,
    ) -> Result<Vec<String>, StoreError>;
    /// SHA-256 of the snapshots not expired, oldest first.
    fn live_snapshots(&mut self) -> Result<Vec<String>, StoreError>;
    /// Every gap in the stored events' `seq`, by node, camera and `seq`.
    fn gaps(&mut self) -> Result<Vec<Gap>, StoreError>;
    /// Closes complete gaps and takes the leases of due ones, in one
    /// transaction; returns the requests this instance (`me`) must publish.
    fn replay_scan(
        &mut self,
        now: SystemTime,
        me: &str,
        plan: &ReplayPlan,
    ) -> Result<Vec<Request>, StoreError>;
    /// The newest `limit` gap rows, open and closed.
    fn delivery(&mut self, limit: i64) -> Result<Vec<GapReport>, StoreError>;
    /// Every run recorded lost.
    fn lost(&mut self) -> Result<Vec<LostRun>, StoreError>;
}

/// Milliseconds since the epoch.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(i64::MAX)
}

/// An RFC 3339 time of the wire in milliseconds since the epoch (`None`
/// when it does not parse).
pub fn wire_millis(s: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(s).ok().map(millis)
}

/// How urgent an alert kind is, for the review queue's colours and order.
pub fn severity(kind: &str) -> &'static str {
    match kind {
        "wrong_way" | "crowding" | "black" | "moved" => "high",
        "loitering" | "frozen" | "blurred" => "medium",
        _ => "low",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_times_are_read_to_the_millisecond() {
        assert_eq!(wire_millis("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(wire_millis("yesterday"), None);
    }
}

/// The behaviour every [`Store`] must have (a conformance suite that
/// panics on a violation): each backend runs it, SQLite in its unit tests,
/// both SQLite and PostgreSQL in `tests/centre.rs`.
#[doc(hidden)]
pub mod contract {
    use super::*;
    use crate::decode::decode;

    const MAX: usize = 1 << 20;

    fn item(topic: &str, json: &str) -> Item {
        let row = match decode("edge", topic, json.as_bytes(), MAX) {
            Ok(Some(r)) => Row::Message(Box::new(r)),
            other => panic!("{topic}: {other:?}"),
        };
        Item {
            received: SystemTime::now(),
            row,
        }
    }

    pub fn event(seq: u64, track: u64, kind: &str, alerts: &str) -> String {
        format!(
            r#"{{"schema":"edge-event/4","id":"box-1.cam-1.19a.{track}","seq":{seq},"type":"{kind}","node":"box-1","district":"d1","camera":"cam-1","label":"person","class_id":0,"track_id":{track},"score":0.8,"top_score":0.8,"start_time":"2026-12-07T08:00:00.000Z","end_time":null,"frame_time":"2026-12-07T08:00:0{seq}.000Z","box":{{"x1":0.1,"y1":0.1,"x2":0.2,"y2":0.3}},"frame_size":{{"width":640,"height":480}},"snapshot":null,"snapshot_omitted":null,"current_zones":[],"entered_zones":[],"stationary":false,"alerts":[{alerts}],"alert":null,"end_reason":null}}"#
        )
    }

    /// An `edge-event/6` message of a motorcycle carrying `riders`
    /// (otherwise as [`event`]).
    pub fn event6(seq: u64, track: u64, kind: &str, riders: u32) -> String {
        event(seq, track, kind, "")
            .replace("edge-event/4", "edge-event/6")
            .replace(
                r#""label":"person","class_id":0"#,
                r#""label":"motorcycle","class_id":3"#,
            )
            .replace(
                r#""end_reason":null}"#,
                &format!(r#""end_reason":null,"replayed":false,"riders":{riders}}}"#),
            )
    }

    fn camera_alert(seq: u64, kind: &str, time: &str) -> String {
        format!(
            r#"{{"schema":"edge-camera-alert/1","id":"box-1.cam-1.19a.c{seq}","seq":{seq},"node":"box-1","district":"d1","camera":"cam-1","kind":"{kind}","time":"{time}","t":1.0,"duration_s":10.0,"score":0.0,"threshold":8.0,"health":[]}}"#
        )
    }

    fn camera_status(state: &str, time: &str) -> String {
        format!(
            r#"{{"schema":"edge-camera-status/3","node":"box-1","camera":"cam-1","state":"{state}","since":"{time}","time":"{time}","last_error":null,"detail":null,"frames":1,"frames_analysed":1,"frames_dropped":0,"drops":{{"queue_full":0,"inference_failed":0}},"fps_in":5.0,"fps_analysed":5.0,"last_frame_age_s":0.1,"reconnects":0,"retry_attempt":0,"outage_since":null,"outage_s":null,"stream":null,"health":[]}}"#
        )
    }

    /// Every check, each on a fresh store from `fresh`.
    pub fn all(mut fresh: impl FnMut() -> Box<dyn Store>) {
        redelivery_is_stored_once(fresh().as_mut());
        a_cleared_alarm_closes_its_incident(fresh().as_mut());
        an_old_status_does_not_roll_back(fresh().as_mut());
        rejected_rows_are_kept_with_their_reason(fresh().as_mut());
        snapshots_expire_by_age_then_by_size(fresh().as_mut());
        gaps_are_found_per_camera(fresh().as_mut());
        a_gap_is_requested_once_then_recovered_or_lost(fresh().as_mut());
    }

    fn answer(first: u64, last: u64, missing: &str) -> String {
        format!(
            r#"{{"schema":"edge-replay-answer/1","request_id":"r1","node":"box-1","district":"d1","camera":"cam-1","first":{first},"last":{last},"replayed":1,"pending":[],"missing":[{missing}],"time":"2026-12-07T08:01:00.000Z"}}"#
        )
    }

    /// A gap becomes one request (a second instance, or the same one
    /// before the lease ends, does not ask again); the replayed message
    /// and the box's "no longer have" close it as lost with the reason;
    /// a gap filled without replay closes as arrived.
    pub fn a_gap_is_requested_once_then_recovered_or_lost(s: &mut dyn Store) {
        let ev = |q: u64| item(EV, &event(q, q, "new", ""));
        s.commit(&[ev(1), ev(2), ev(5), ev(6), ev(9)]).unwrap();
        let plan = ReplayPlan {
            grace_ms: 0,
            retry_ms: 60_000,
            ..ReplayPlan::default()
        };
        let t = SystemTime::now() + Duration::from_secs(1);
        let asked = s.replay_scan(t, "a", &plan).unwrap();
        let runs: Vec<(u64, u64)> = asked.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(runs, [(3, 4), (7, 8)]);
        assert!(
            asked
                .iter()
                .all(|r| r.node == "box-1" && r.camera == "cam-1" && r.district == "d1")
        );
        assert!(
            s.replay_scan(t, "b", &plan).unwrap().is_empty(),
            "instance b asked too"
        );
        assert!(
            s.replay_scan(t, "a", &plan).unwrap().is_empty(),
            "asked again within the lease"
        );
        // Seq 3 replayed, 4 expired at the box; 7 and 8 arrive late.
        let mut e3 = serde_json::from_str::<serde_json::Value>(&event(3, 3, "new", "")).unwrap();
        e3["replayed"] = serde_json::Value::Bool(true);
        e3["schema"] = "edge-event/5".into();
        s.commit(&[
            item(EV, &e3.to_string()),
            item(
                "edge/d1/box-1/cam-1/replayed",
                &answer(3, 4, r#"{"first":4,"last":4,"reason":"expired"}"#),
            ),
            ev(7),
            ev(8),
        ])
        .unwrap();
        assert!(s.replay_scan(t, "b", &plan).unwrap().is_empty());
        let report = s.delivery(100).unwrap();
        let by_first = |f: u64| report.iter().find(|g| g.first == f).unwrap().clone();
        let g = by_first(3);
        assert_eq!(
            (g.state.as_str(), g.replayed, g.lost),
            ("lost", 1, 1),
            "{g:?}"
        );
        assert_eq!(g.reasons.as_deref(), Some("expired: 1"));
        assert_eq!(g.requests, 1);
        let g = by_first(7);
        assert_eq!(
            (g.state.as_str(), g.replayed, g.lost),
            ("arrived", 0, 0),
            "{g:?}"
        );
        // A fully replayed gap is recovered; one past give-up is lost
        // (no answer) and nothing waits forever.
        s.commit(&[ev(12), ev(14)]).unwrap();
        let asked = s.replay_scan(t, "a", &plan).unwrap();
        assert_eq!(
            asked.iter().map(|r| (r.first, r.last)).collect::<Vec<_>>(),
            [(10, 11), (13, 13)]
        );
        let mut e13 = serde_json::from_str::<serde_json::Value>(&event(13, 13, "new", "")).unwrap();
        e13["replayed"] = serde_json::Value::Bool(true);
        s.commit(&[item(EV, &e13.to_string())]).unwrap();
        let late = t + Duration::from_secs(86_401);
        assert!(s.replay_scan(late, "a", &plan).unwrap().is_empty());
        let report = s.delivery(100).unwrap();
        let g = report.iter().find(|g| g.first == 13).unwrap();
        assert_eq!((g.state.as_str(), g.replayed), ("recovered", 1), "{g:?}");
        let g = report.iter().find(|g| g.first == 10).unwrap();
        assert_eq!((g.state.as_str(), g.lost), ("lost", 2), "{g:?}");
        assert_eq!(g.reasons.as_deref(), Some("no_answer: 2"));
        assert!(report.iter().all(|g| g.state != "open"), "{report:?}");
    }

    /// Missing `seq` runs are reported per camera; a redelivery does not
    /// hide or create one.
    pub fn gaps_are_found_per_camera(s: &mut dyn Store) {
        let other = |seq: u64| {
            item(
                "edge/d1/box-1/cam-2/events",
                &event(seq, 1, "new", "").replace("cam-1", "cam-2"),
            )
        };
        let items: Vec<Item> = [1, 2, 5, 6, 9, 2]
            .into_iter()
            .map(|q| item(EV, &event(q, q, "new", "")))
            .chain([other(1), other(3)])
            .collect();
        s.commit(&items).unwrap();
        let gap = |camera: &str, first, last| Gap {
            node: "box-1".into(),
            camera: camera.into(),
            first,
            last,
        };
        assert_eq!(
            s.gaps().unwrap(),
            vec![gap("cam-1", 3, 4), gap("cam-1", 7, 8), gap("cam-2", 2, 2)]
        );
        s.commit(&[
            item(EV, &event(3, 3, "new", "")),
            item(EV, &event(4, 4, "new", "")),
        ])
        .unwrap();
        assert_eq!(
            s.gaps().unwrap(),
            vec![gap("cam-1", 7, 8), gap("cam-2", 2, 2)]
        );
    }

    fn snapshot(topic: &str, sha: &str, bytes: u64, received: SystemTime) -> Item {
        Item {
            received,
            row: Row::Snapshot {
                origin: Origin {
                    district: "d1".into(),
                    node: "box-1".into(),
                    camera: Some("cam-1".into()),
                },
                topic: topic.into(),
                sha256: sha.into(),
                bytes,
            },
        }
    }

    /// Expiry: first by age, then the oldest until under the size bound;
    /// a picture sent again comes back to life.
    pub fn snapshots_expire_by_age_then_by_size(s: &mut dyn Store) {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |m: u64| t0 + Duration::from_secs(60 * m);
        s.commit(&[
            snapshot("t/a", "aa", 100, at(0)),
            snapshot("t/b", "bb", 100, at(1)),
            snapshot("t/c", "cc", 100, at(2)),
            snapshot("t/d", "dd", 100, at(3)),
        ])
        .unwrap();
        let gone = s.expire_snapshots(at(10), at(1), u64::MAX).unwrap();
        assert_eq!(gone, vec!["aa".to_string()]);
        let gone = s.expire_snapshots(at(10), at(0), 150).unwrap();
        assert_eq!(gone, vec!["bb".to_string(), "cc".to_string()]);
        assert_eq!(s.live_snapshots().unwrap(), vec!["dd".to_string()]);
        s.commit(&[snapshot("t/a", "aa", 100, at(11))]).unwrap();
        assert_eq!(
            s.live_snapshots().unwrap(),
            vec!["dd".to_string(), "aa".to_string()]
        );
        assert!(s.expire_snapshots(at(12), at(0), 1000).unwrap().is_empty());
    }

    const EV: &str = "edge/d1/box-1/cam-1/events";
    const AL: &str = "edge/d1/box-1/cam-1/alerts";
    const ST: &str = "edge/d1/box-1/cam-1/status";

    /// The same message twice (a redelivery, or an object alert's copy on
    /// `/alerts`) is stored once, in the same batch or a later one.
    pub fn redelivery_is_stored_once(s: &mut dyn Store) {
        let a = item(EV, &event(1, 7, "new", ""));
        let b = item(EV, &event(2, 7, "update", r#""loitering""#));
        let b_copy = item(AL, &event(2, 7, "update", r#""loitering""#));
        let c = s.commit(&[a.clone(), b, b_copy]).unwrap();
        assert_eq!(
            c,
            Committed {
                inserted: 2,
                duplicates: 1
            }
        );
        let c = s.commit(&[a]).unwrap();
        assert_eq!(
            c,
            Committed {
                inserted: 0,
                duplicates: 1
            }
        );
        let keys = s.event_keys().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            s.alerts().unwrap().len(),
            1,
            "one incident for the loitering object"
        );
        // An `edge-event/6` (with `riders`) beside the `/4`s: stored once too.
        let d = item(EV, &event6(3, 8, "new", 2));
        let c = s.commit(&[d.clone(), d]).unwrap();
        assert_eq!(
            c,
            Committed {
                inserted: 1,
                duplicates: 1
            }
        );
        assert_eq!(s.event_keys().unwrap().len(), 3);
    }

    /// A tamper alarm is one incident from raised to cleared; raised again
    /// it is a new one.
    pub fn a_cleared_alarm_closes_its_incident(s: &mut dyn Store) {
        s.commit(&[
            item(AL, &camera_alert(1, "black", "2026-12-07T08:00:00.000Z")),
            item(
                AL,
                &camera_alert(2, "black_cleared", "2026-12-07T08:01:00.000Z"),
            ),
            item(AL, &camera_alert(3, "black", "2026-12-07T08:02:00.000Z")),
        ])
        .unwrap();
        let alerts = s.alerts().unwrap();
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert!(alerts.iter().all(|(_, kind, _)| kind == "black"));
    }

    /// A camera status older than the stored one (a late redelivery of a
    /// retained message) does not roll the camera's state back.
    pub fn an_old_status_does_not_roll_back(s: &mut dyn Store) {
        s.commit(&[item(
            ST,
            &camera_status("reconnecting", "2026-12-07T08:05:00.000Z"),
        )])
        .unwrap();
        s.commit(&[item(
            ST,
            &camera_status("streaming", "2026-12-07T08:00:00.000Z"),
        )])
        .unwrap();
        assert_eq!(
            s.camera_states().unwrap(),
            vec![("box-1".into(), "cam-1".into(), "reconnecting".into())]
        );
    }

    /// A skipped message is kept with its topic and reason.
    pub fn rejected_rows_are_kept_with_their_reason(s: &mut dyn Store) {
        s.commit(&[Item {
            received: SystemTime::now(),
            row: Row::Rejected {
                topic: "edge/x".into(),
                reason: Rejected::OutsideTree,
                bytes: 3,
            },
        }])
        .unwrap();
        assert_eq!(
            s.rejected().unwrap(),
            vec![("edge/x".to_string(), "outside_tree".to_string())]
        );
    }
}
