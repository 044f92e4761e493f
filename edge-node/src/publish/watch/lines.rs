//! One readable line per message, for a terminal: a pure function of the
//! topic, the payload and the time to show when the message carries none.
//!
//! Messages are told apart by their `schema` string (its family, before the
//! `/`), not by their topic or their exact version, so a newer schema or a
//! message this build has no type for still prints: `edge-camera-alert/*`
//! as a camera alert, any other JSON as a short `OTHER` line.
//!
//! Every line is `<time> <TAG> <what>`, the tag padded to 6 characters:
//! `NEW`, `UPDATE`, `END` (an object's lifecycle), `ALERT` / `CLEAR` (object,
//! zone and camera alerts), `COUNTS`, `STATUS` (node and cameras), `STATS`,
//! `OTHER`.

use serde_json::Value;

use edge_wire::{CountsMessage, EventMessage, EventType, SnapshotRef, ZoneAlertMessage};

/// What a message was, for the watcher's summary and its stop condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// An object's lifecycle message without an alert.
    Event(EventType),
    /// An `edge-event` carrying an alert (loitering, wrong way).
    ObjectAlert,
    /// `edge-zone-alert` (crowding, crowding cleared).
    ZoneAlert,
    /// `edge-camera-alert` (frozen, black, blurred, moved and their clearing).
    CameraAlert,
    Counts,
    /// A node's status; `stopped` is true when it says `stopped`.
    NodeStatus {
        stopped: bool,
    },
    /// A camera's status, or its retained status cleared (empty payload).
    CameraStatus,
    Stats,
    /// JPEG bytes on a `…/snapshot/{id}` topic (saved, not printed).
    Snapshot,
    Other,
}

/// One message, described.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub kind: Kind,
    /// The line to print; `None` for snapshots.
    pub text: Option<String>,
    /// Identifies the message across topics (an object alert comes on
    /// `/events` and on `/alerts`) and redeliveries: schema family, node,
    /// camera and `seq`. Only for messages that carry a `seq` per camera.
    pub key: Option<String>,
    /// For messages refreshed with the same news (a camera's status every
    /// `status_interval_s`): what a change is made of (state, error,
    /// health). The printer shows a refresh only when this changed.
    pub change: Option<String>,
}

impl Line {
    fn new(kind: Kind, text: String) -> Self {
        Line {
            kind,
            text: Some(text),
            key: None,
            change: None,
        }
    }
}

/// Describes one message received on `topic`; `now` is shown for messages
/// that carry no time of their own.
pub fn describe(topic: &str, payload: &[u8], now: &str) -> Line {
    if topic.contains("/snapshot/") {
        return Line {
            kind: Kind::Snapshot,
            text: None,
            key: None,
            change: None,
        };
    }
    if payload.is_empty() {
        return match topic.strip_suffix("/status") {
            Some(who) => Line::new(
                Kind::CameraStatus,
                tagged(
                    now,
                    "STATUS",
                    &format!("{} removed (retained status cleared)", tail(who, 2)),
                ),
            ),
            None => Line::new(
                Kind::Other,
                tagged(now, "OTHER", &format!("{topic}: empty message")),
            ),
        };
    }
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return Line::new(
            Kind::Other,
            tagged(
                now,
                "OTHER",
                &format!("{topic}: {} B, not JSON", payload.len()),
            ),
        );
    };
    let schema = str_of(&v, "schema").to_string();
    match schema.split('/').next().unwrap_or("") {
        "edge-event" => event(topic, &schema, v, now),
        "edge-zone-alert" => zone_alert(topic, &schema, v, now),
        "edge-camera-alert" => Line::new(Kind::CameraAlert, camera_alert(&v, now)),
        "edge-counts" => match serde_json::from_value::<CountsMessage>(v) {
            Ok(c) => Line::new(Kind::Counts, format_counts(&c)),
            Err(e) => unreadable(topic, &schema, &e, now),
        },
        "edge-node-status" => node_status(&v, now),
        "edge-camera-status" => Line {
            change: Some(status_change(&v)),
            ..Line::new(Kind::CameraStatus, camera_status(&v, now))
        },
        "edge-stats" => Line::new(Kind::Stats, stats(&v, now)),
        _ => {
            let what = if schema.is_empty() { "JSON" } else { &schema };
            Line::new(
                Kind::Other,
                tagged(
                    now,
                    "OTHER",
                    &format!("{topic}: {what}, {} B", payload.len()),
                ),
            )
        }
    }
}

/// `<time> <TAG padded to 6> <what>`.
fn tagged(time: &str, tag: &str, what: &str) -> String {
    format!("{time} {tag:<6} {what}")
}

/// The last `n` levels of a topic, e.g. `node/camera`.
fn tail(topic: &str, n: usize) -> String {
    let parts: Vec<&str> = topic.rsplit('/').take(n).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn unreadable(topic: &str, schema: &str, err: &serde_json::Error, now: &str) -> Line {
    Line::new(
        Kind::Other,
        tagged(
            now,
            "OTHER",
            &format!("{topic}: unreadable {schema}: {err}"),
        ),
    )
}

/// The dedup key of a message with a per-camera `seq`.
fn key(family: &str, v: &Value) -> Option<String> {
    let seq = v.get("seq")?.as_u64()?;
    Some(format!(
        "{family}|{}|{}|{seq}",
        str_of(v, "node"),
        str_of(v, "camera")
    ))
}

fn snapshot_text(s: Option<&SnapshotRef>) -> String {
    s.map(|s| {
        format!(
            " snapshot {}x{} {:.1} KB",
            s.width,
            s.height,
            s.bytes as f64 / 1024.0
        )
    })
    .unwrap_or_default()
}

fn event(topic: &str, schema: &str, v: Value, now: &str) -> Line {
    let k = key("edge-event", &v);
    match serde_json::from_value::<EventMessage>(v) {
        Ok(e) => {
            let kind = if e.alert.is_some() {
                Kind::ObjectAlert
            } else {
                Kind::Event(e.kind)
            };
            Line {
                kind,
                text: Some(format_event(&e)),
                key: k,
                change: None,
            }
        }
        Err(err) => unreadable(topic, schema, &err, now),
    }
}

/// One line for an `edge-event`: its alert when it carries one, otherwise
/// its lifecycle step.
pub fn format_event(e: &EventMessage) -> String {
    let snap = snapshot_text(e.snapshot.as_ref());
    let who = format!("{}/{}", e.node, e.camera);
    if let Some(a) = &e.alert {
        let rule = match a.kind.as_str() {
            "loitering" => format!("zone {}", a.rule),
            "wrong_way" => format!("line {}", a.rule),
            _ => format!("rule {}", a.rule),
        };
        let dwell = a
            .dwell_s
            .map(|d| format!(" for {d:.1} s"))
            .unwrap_or_default();
        let dir = a
            .direction
            .as_deref()
            .map(|d| format!(" going {d}"))
            .unwrap_or_default();
        return tagged(
            &e.frame_time,
            "ALERT",
            &format!(
                "{who} {} {rule}{dwell}{dir}: {} {:.2} id {}{snap}",
                a.kind, e.label, e.score, e.id
            ),
        );
    }
    let end = e
        .end_time
        .as_deref()
        .map(|t| format!(" ended {t}"))
        .unwrap_or_default();
    let still = if e.stationary { " stationary" } else { "" };
    let riders = match e.riders {
        0 => String::new(),
        1 => " 1 rider".into(),
        n => format!(" {n} riders"),
    };
    tagged(
        &e.frame_time,
        &format!("{:?}", e.kind).to_uppercase(),
        &format!(
            "{who} {} {:.2} (top {:.2}) box [{:.2} {:.2} {:.2} {:.2}]{still}{riders} id {}{snap}{end}",
            e.label, e.score, e.top_score, e.bbox.x1, e.bbox.y1, e.bbox.x2, e.bbox.y2, e.id,
        ),
    )
}

fn zone_alert(topic: &str, schema: &str, v: Value, now: &str) -> Line {
    let k = key("edge-zone-alert", &v);
    match serde_json::from_value::<ZoneAlertMessage>(v) {
        Ok(z) => Line {
            kind: Kind::ZoneAlert,
            text: Some(format_zone_alert(&z)),
            key: k,
            change: None,
        },
        Err(err) => unreadable(topic, schema, &err, now),
    }
}

/// One line for an `edge-zone-alert` (crowding or its clearing).
pub fn format_zone_alert(z: &ZoneAlertMessage) -> String {
    let what = z.alerts.join(",");
    let cleared = z.alerts.iter().all(|a| a.ends_with("_cleared"));
    let dwell = z
        .dwell_s
        .map(|d| format!(" for {d:.1} s"))
        .unwrap_or_default();
    tagged(
        &z.time,
        if cleared { "CLEAR" } else { "ALERT" },
        &format!(
            "{}/{} {what} zone {}: {} inside{dwell}{}",
            z.node,
            z.camera,
            z.zone,
            z.occupancy,
            snapshot_text(z.snapshot.as_ref())
        ),
    )
}

/// A camera alert from its JSON alone (`camera`, `kind`, `time`, and
/// whatever else it carries): the kind, how long when a `…_s` number says,
/// and a text detail when there is one.
fn camera_alert(v: &Value, now: &str) -> String {
    let kind = str_of(v, "kind");
    let time = Some(str_of(v, "time"))
        .filter(|t| !t.is_empty())
        .unwrap_or(now);
    let secs = v.as_object().and_then(|o| {
        o.iter()
            .filter(|(k, _)| k.ends_with("_s"))
            .find_map(|(_, n)| n.as_f64())
    });
    let secs = secs.map(|s| format!(" ({s:.0} s)")).unwrap_or_default();
    let detail = ["detail", "reason", "message"]
        .iter()
        .map(|k| str_of(v, k))
        .find(|s| !s.is_empty())
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    let tag = if kind.ends_with("_cleared") {
        "CLEAR"
    } else {
        "ALERT"
    };
    tagged(
        time,
        tag,
        &format!(
            "{}/{} camera {kind}{secs}{detail}",
            str_of(v, "node"),
            str_of(v, "camera")
        ),
    )
}

/// One line for an `edge-counts` report: each line's crossings per class and
/// direction, each zone's occupancy, peak and entries (total, +this interval).
pub fn format_counts(c: &CountsMessage) -> String {
    let mut parts = Vec::new();
    for (name, l) in &c.lines {
        let mut n = Vec::new();
        for (class, dirs) in &l.counts {
            for (dir, k) in dirs {
                n.push(format!("{class} {dir} {} (+{})", k.total, k.delta));
            }
        }
        let n = if n.is_empty() {
            "no crossings".to_string()
        } else {
            n.join(", ")
        };
        parts.push(format!("line {name}: {n}"));
    }
    for (name, z) in &c.zones {
        let inside: u32 = z.occupancy.values().sum();
        let entered = z
            .entered
            .iter()
            .map(|(class, k)| format!("{class} {} (+{})", k.total, k.delta))
            .collect::<Vec<_>>();
        let entered = if entered.is_empty() {
            "none".to_string()
        } else {
            entered.join(", ")
        };
        parts.push(format!(
            "zone {name}: {inside} inside, peak {}, entered {entered}",
            z.peak
        ));
    }
    tagged(
        &c.interval_end,
        "COUNTS",
        &format!("{}/{} {}", c.node, c.camera, parts.join("; ")),
    )
}

fn node_status(v: &Value, now: &str) -> Line {
    let state = str_of(v, "state");
    let time = Some(str_of(v, "since"))
        .filter(|t| !t.is_empty())
        .unwrap_or(now);
    let mut extra = String::new();
    if let Some(o) = v.get("outbox").filter(|o| o.is_object()) {
        let n = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        if n("events") + n("snapshots") > 0 {
            extra += &format!(
                ", outbox {} events {} snapshots",
                n("events"),
                n("snapshots")
            );
        }
        for k in ["lost_events", "quarantined"] {
            if n(k) > 0 {
                extra += &format!(", {k} {}", n(k));
            }
        }
        for k in ["store_error", "delivery_error"] {
            let s = str_of(o, k);
            if !s.is_empty() {
                extra += &format!(", {k}: {s}");
            }
        }
    }
    Line::new(
        Kind::NodeStatus {
            stopped: state == "stopped",
        },
        tagged(
            time,
            "STATUS",
            &format!("node {} {state}{extra}", str_of(v, "node")),
        ),
    )
}

/// What makes a camera status news: its state, error and health.
fn status_change(v: &Value) -> String {
    format!(
        "{}|{}|{}",
        str_of(v, "state"),
        str_of(v, "last_error"),
        health(v).join(",")
    )
}

fn health(v: &Value) -> Vec<&str> {
    v.get("health")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Only the fields it prints are read, so a newer status with more fields
/// still prints. Shown at the message's `time` (`edge-camera-status/3`),
/// else when its state began.
fn camera_status(v: &Value, now: &str) -> String {
    let time = [str_of(v, "time"), str_of(v, "since")]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or(now);
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let state = str_of(v, "state");
    let mut what = String::new();
    if state == "streaming"
        && let Some(fps) = f("fps_analysed").filter(|x| *x > 0.0)
    {
        what += &format!(" {fps:.1} fps");
    }
    match (n("frames"), n("frames_dropped")) {
        (Some(fr), Some(d)) => what += &format!(" ({fr} frames, {d} dropped)"),
        (Some(fr), None) => what += &format!(" ({fr} frames)"),
        _ => {}
    }
    if state != "streaming"
        && let Some(s) = f("outage_s")
    {
        what += &format!(", down {s:.0} s");
    }
    if let Some(a) = n("retry_attempt").filter(|a| *a > 0) {
        what += &format!(", attempt {a}");
    }
    let h = health(v);
    if !h.is_empty() {
        what += &format!(", picture: {}", h.join(", "));
    }
    let err = str_of(v, "last_error");
    if !err.is_empty() {
        what += &format!(": {err}");
    }
    tagged(
        time,
        "STATUS",
        &format!(
            "{}/{} {state}{what}",
            str_of(v, "node"),
            str_of(v, "camera")
        ),
    )
}

fn stats(v: &Value, now: &str) -> String {
    let time = Some(str_of(v, "time"))
        .filter(|t| !t.is_empty())
        .unwrap_or(now);
    let get = |a: &str, b: &str| {
        v.get(a)
            .and_then(|o| o.get(b))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    tagged(
        time,
        "STATS",
        &format!(
            "node {} sent {} messages ({} B, {} refused), outbox {} events {} snapshots, evicted {} events {} snapshots, lost {}",
            str_of(v, "node"),
            get("sent", "messages"),
            get("sent", "bytes"),
            get("sent", "refused"),
            get("outbox", "events"),
            get("outbox", "snapshots"),
            get("outbox", "evicted_events"),
            get("outbox", "evicted_snapshots"),
            get("outbox", "lost_events"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-07T07:00:00.000Z";

    /// The README's `edge-event/6` example, turned into an alert when `alert` is given.
    fn event_json(alert: &str) -> String {
        format!(
            r#"{{"schema":"edge-event/6","id":"box-01.cam-01.19ac1f6e2b1.7","seq":12,"type":"update",
 "node":"box-01","district":"hoan-kiem","camera":"cam-01",
 "label":"person","class_id":0,"track_id":7,"score":0.81,"top_score":0.83,
 "start_time":"2026-11-26T05:30:01.200Z","end_time":null,"frame_time":"2026-11-26T05:30:01.600Z",
 "box":{{"x1":0.41,"y1":0.22,"x2":0.47,"y2":0.48}},"frame_size":{{"width":768,"height":576}},
 "snapshot":{{"topic":"hanoi/hoan-kiem/box-01/cam-01/snapshot/box-01.cam-01.19ac1f6e2b1.7","bytes":14211,"width":480,"height":360,"degraded":null}},
 "snapshot_omitted":null,"current_zones":["plaza"],"entered_zones":["plaza"],"stationary":false,"alerts":[],"alert":{alert},
 "end_reason":null,"replayed":false,"riders":0}}"#
        )
    }

    fn text(l: &Line) -> &str {
        l.text.as_deref().unwrap_or("")
    }

    #[test]
    fn object_alerts_name_kind_rule_dwell_and_direction() {
        let t = "hanoi/hoan-kiem/box-01/cam-01/alerts";
        let l = describe(
            t,
            event_json(r#"{"kind":"loitering","rule":"plaza","dwell_s":61.2,"direction":null}"#)
                .as_bytes(),
            NOW,
        );
        assert_eq!(l.kind, Kind::ObjectAlert);
        assert_eq!(
            text(&l),
            "2026-11-26T05:30:01.600Z ALERT  box-01/cam-01 loitering zone plaza for 61.2 s: \
             person 0.81 id box-01.cam-01.19ac1f6e2b1.7 snapshot 480x360 13.9 KB"
        );
        assert_eq!(l.key.as_deref(), Some("edge-event|box-01|cam-01|12"));
        let l = describe(
            t,
            event_json(r#"{"kind":"wrong_way","rule":"gate","dwell_s":null,"direction":"west"}"#)
                .as_bytes(),
            NOW,
        );
        assert!(
            text(&l).contains(" ALERT  box-01/cam-01 wrong_way line gate going west: person"),
            "{}",
            text(&l)
        );
    }

    #[test]
    fn lifecycle_events_keep_their_step() {
        let l = describe("a/b/c/d/events", event_json("null").as_bytes(), NOW);
        assert_eq!(l.kind, Kind::Event(EventType::Update));
        assert!(
            text(&l).starts_with("2026-11-26T05:30:01.600Z UPDATE box-01/cam-01 person 0.81"),
            "{}",
            text(&l)
        );
        assert!(!text(&l).contains("rider"), "{}", text(&l));
        // A motorcycle with two riders says so; an `edge-event/5` (no
        // `riders`) still reads.
        let bike = event_json("null")
            .replace("\"person\",\"class_id\":0", "\"motorcycle\",\"class_id\":3")
            .replace("\"riders\":0", "\"riders\":2");
        let l = describe("a/b/c/d/events", bike.as_bytes(), NOW);
        assert!(
            text(&l).contains(" motorcycle 0.81 (top 0.83) box [0.41 0.22 0.47 0.48] 2 riders id "),
            "{}",
            text(&l)
        );
        let v5 = event_json("null")
            .replace("edge-event/6", "edge-event/5")
            .replace(",\"riders\":0", "");
        let l = describe("a/b/c/d/events", v5.as_bytes(), NOW);
        assert_eq!(l.kind, Kind::Event(EventType::Update), "{}", text(&l));
    }

    #[test]
    fn crowding_and_its_clearing() {
        let z = |alerts: &str, dwell: &str| {
            format!(
                r#"{{"schema":"edge-zone-alert/3","id":"n.c.1.z1","seq":3,"node":"n","district":"d","camera":"c",
                "zone":"plaza","alerts":{alerts},"occupancy":9,"dwell_s":{dwell},"time":"T",
                "snapshot":null,"snapshot_omitted":null}}"#
            )
        };
        let l = describe(
            "p/d/n/c/alerts",
            z(r#"["crowding"]"#, "10.0").as_bytes(),
            NOW,
        );
        assert_eq!(l.kind, Kind::ZoneAlert);
        assert_eq!(
            text(&l),
            "T ALERT  n/c crowding zone plaza: 9 inside for 10.0 s"
        );
        let l = describe(
            "p/d/n/c/alerts",
            z(r#"["crowding_cleared"]"#, "null").as_bytes(),
            NOW,
        );
        assert_eq!(
            text(&l),
            "T CLEAR  n/c crowding_cleared zone plaza: 9 inside"
        );
    }

    /// A camera alert prints from its JSON alone, whatever its version.
    #[test]
    fn camera_alerts_without_their_type() {
        let l = describe(
            "p/d/n/cam1/alerts",
            br#"{"schema":"edge-camera-alert/1","node":"n","camera":"cam1","kind":"frozen","time":"T","frozen_for_s":12.2}"#,
            NOW,
        );
        assert_eq!(l.kind, Kind::CameraAlert);
        assert_eq!(text(&l), "T ALERT  n/cam1 camera frozen (12 s)");
        let l = describe(
            "p/d/n/cam1/alerts",
            br#"{"schema":"edge-camera-alert/7","node":"n","camera":"cam1","kind":"moved_cleared","time":"T"}"#,
            NOW,
        );
        assert_eq!(text(&l), "T CLEAR  n/cam1 camera moved_cleared");
    }

    #[test]
    fn statuses_read_only_what_they_print() {
        let l = describe(
            "p/d/n/cam1/status",
            br#"{"schema":"edge-camera-status/3","node":"n","camera":"cam1","state":"reconnecting","since":"T",
                "last_error":"no route","frames":50,"frames_dropped":1,"fps":4.9,"live":{"x":1}}"#,
            NOW,
        );
        assert_eq!(l.kind, Kind::CameraStatus);
        assert_eq!(
            text(&l),
            "T STATUS n/cam1 reconnecting (50 frames, 1 dropped): no route"
        );
        // A live status (edge-camera-status/3): at its own time, with its rate,
        // outage, attempt and picture health.
        let l = describe(
            "p/d/n/cam1/status",
            br#"{"schema":"edge-camera-status/3","node":"n","camera":"cam1","state":"streaming","since":"S","time":"T2",
                "last_error":null,"frames":90,"frames_dropped":2,"fps_analysed":4.96,"retry_attempt":0,"outage_s":null,"health":["frozen"]}"#,
            NOW,
        );
        assert_eq!(
            text(&l),
            "T2 STATUS n/cam1 streaming 5.0 fps (90 frames, 2 dropped), picture: frozen"
        );
        let l2 = describe(
            "p/d/n/cam1/status",
            br#"{"schema":"edge-camera-status/3","node":"n","camera":"cam1","state":"reconnecting","since":"S","time":"T3",
                "last_error":"refused","frames":90,"frames_dropped":2,"fps_analysed":0.0,"retry_attempt":3,"outage_s":12.4,"health":[]}"#,
            NOW,
        );
        assert_eq!(
            text(&l2),
            "T3 STATUS n/cam1 reconnecting (90 frames, 2 dropped), down 12 s, attempt 3: refused"
        );
        assert_ne!(l.change, l2.change);
        let l = describe("p/d/n/cam1/status", b"", NOW);
        assert_eq!(
            text(&l),
            format!("{NOW} STATUS n/cam1 removed (retained status cleared)")
        );
        let l = describe(
            "p/d/n/status",
            br#"{"schema":"edge-node-status/3","node":"n","district":"d","state":"stopped","since":"T","version":"1","cameras":[],"outbox":null}"#,
            NOW,
        );
        assert_eq!(l.kind, Kind::NodeStatus { stopped: true });
        assert_eq!(text(&l), "T STATUS node n stopped");
    }

    #[test]
    fn counts_in_one_line() {
        let l = describe(
            "edge/demo/demo-box/vtest/counts",
            br#"{"schema":"edge-counts/1","node":"demo-box","district":"demo","camera":"vtest","seq":1,
 "interval_start":"2026-11-26T06:19:27.918Z","interval_end":"2026-11-26T06:19:37.718Z",
 "lines":{"walkway":{"directions":["east","west"],"counts":{"person":{"west":{"total":3,"delta":3}}}}},
 "zones":{"plaza":{"occupancy":{"person":5},"peak":6,"entered":{"person":{"total":7,"delta":7}}}}}"#,
            NOW,
        );
        assert_eq!(l.kind, Kind::Counts);
        assert_eq!(
            text(&l),
            "2026-11-26T06:19:37.718Z COUNTS demo-box/vtest line walkway: person west 3 (+3); \
             zone plaza: 5 inside, peak 6, entered person 7 (+7)"
        );
    }

    #[test]
    fn anything_else_still_prints_a_line() {
        let l = describe("x/y", br#"{"schema":"acme-thing/2","a":1}"#, NOW);
        assert_eq!(l.kind, Kind::Other);
        assert_eq!(text(&l), format!("{NOW} OTHER  x/y: acme-thing/2, 31 B"));
        let l = describe("x/y", b"hello", NOW);
        assert_eq!(text(&l), format!("{NOW} OTHER  x/y: 5 B, not JSON"));
        let l = describe("x/y", br#"{"schema":"edge-event/4"}"#, NOW);
        assert_eq!(l.kind, Kind::Other);
        assert!(text(&l).contains("unreadable edge-event/4"), "{}", text(&l));
        let l = describe("a/b/c/d/snapshot/id", b"\xff\xd8", NOW);
        assert_eq!((l.kind, l.text), (Kind::Snapshot, None));
    }
}
