//! What `/metrics` says, family by family. Every family's name is in
//! [`METRIC_NAMES`] (the Grafana dashboard is checked against it).

use std::sync::Arc;

use super::text::{Kind, Text};
use super::{
    ALERT_TYPES, CAMERA_STATES, CameraMetrics, EVENT_TYPES, ModelMetrics, STAGES, event_type,
    process_figures, state_name,
};
use crate::publish::{PublisherView, SnapshotCounts};

/// Every metric family the node exports (histograms by their base name).
pub const METRIC_NAMES: &[&str] = &[
    "edge_node_frames_received_total",
    "edge_node_frames_analysed_total",
    "edge_node_frames_dropped_total",
    "edge_node_events_total",
    "edge_node_alerts_total",
    "edge_node_camera_reconnects_total",
    "edge_node_camera_idle",
    "edge_node_frames_not_decoded_total",
    "edge_node_frame_to_publish_seconds",
    "edge_node_inference_duration_seconds",
    "edge_node_camera_state",
    "edge_node_snapshots_total",
    "edge_node_published_bytes_total",
    "edge_node_published_messages_total",
    "edge_node_acknowledged_messages_total",
    "edge_node_refused_messages_total",
    "edge_node_broker_connected",
    "edge_node_broker_reconnects_total",
    "edge_node_outbox_messages",
    "edge_node_outbox_bytes",
    "edge_node_outbox_quota_bytes",
    "edge_node_outbox_evicted_messages_total",
    "edge_node_outbox_evicted_bytes_total",
    "edge_node_outbox_lost_events_total",
    "edge_node_outbox_delivered_messages",
    "edge_node_outbox_delivered_bytes",
    "edge_node_outbox_delivered_removed_total",
    "edge_node_replay_requests_total",
    "edge_node_replay_resent_messages_total",
    "edge_node_budget_available_bytes",
    "edge_node_budget_rate_bytes_per_second",
    "edge_node_budget_burst_bytes",
    "edge_node_overloaded",
    "edge_node_analysis_shortfall_frames_per_second",
    "edge_node_process_resident_memory_bytes",
    "edge_node_process_open_fds",
];

pub(super) fn render(
    cameras: &[(String, Arc<CameraMetrics>)],
    models: &[(String, Arc<ModelMetrics>)],
    publisher: Option<&PublisherView>,
) -> String {
    let mut t = Text::default();
    frames(&mut t, cameras);
    idle(&mut t, cameras);
    events(&mut t, cameras);
    latency(&mut t, cameras, models);
    if let Some(v) = publisher {
        camera_states(&mut t, v);
        delivery(&mut t, v);
        outbox(&mut t, v);
        replay(&mut t, v);
        load(&mut t, v);
    }
    process(&mut t);
    t.finish()
}

fn frames(t: &mut Text, cameras: &[(String, Arc<CameraMetrics>)]) {
    let counts: Vec<_> = cameras
        .iter()
        .map(|(id, c)| (id.as_str(), c.frame_counts()))
        .collect();
    let n = "edge_node_frames_received_total";
    t.family(
        n,
        Kind::Counter,
        "Frames that entered the camera's slot (after detect_fps sampling).",
    );
    for (id, c) in &counts {
        t.int(n, &[("camera", id)], c.received);
    }
    let n = "edge_node_frames_analysed_total";
    t.family(
        n,
        Kind::Counter,
        "Frames a detector finished with (failed ones included).",
    );
    for (id, c) in &counts {
        t.int(n, &[("camera", id)], c.analysed);
    }
    let n = "edge_node_frames_dropped_total";
    t.family(
        n,
        Kind::Counter,
        "Frames not analysed, by cause: queue_full (the slot dropped its oldest), inference_failed.",
    );
    for (id, c) in &counts {
        t.int(
            n,
            &[("camera", id), ("cause", "queue_full")],
            c.dropped_queue_full,
        );
        t.int(
            n,
            &[("camera", id), ("cause", "inference_failed")],
            c.failed,
        );
    }
    let n = "edge_node_camera_reconnects_total";
    t.family(
        n,
        Kind::Counter,
        "Times the camera's source reported reconnecting (one per retry).",
    );
    for (id, c) in cameras {
        t.int(
            n,
            &[("camera", id)],
            c.reconnects.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
}

/// Keyframe-only decoding (`idle_decode`), for the cameras that have it.
fn idle(t: &mut Text, cameras: &[(String, Arc<CameraMetrics>)]) {
    let figures: Vec<(&String, (bool, u64))> = cameras
        .iter()
        .filter_map(|(id, c)| c.idle_decoding().map(|f| (id, f)))
        .collect();
    let n = "edge_node_camera_idle";
    t.family(
        n,
        Kind::Gauge,
        "1 while the camera is idle and decodes keyframes only (idle_decode), else 0.",
    );
    for (id, (idle, _)) in &figures {
        t.int(n, &[("camera", id)], u64::from(*idle));
    }
    let n = "edge_node_frames_not_decoded_total";
    t.family(
        n,
        Kind::Counter,
        "Compressed frames dropped before the decoder while the camera was idle (keyframe-only decoding).",
    );
    for (id, (_, skipped)) in &figures {
        t.int(n, &[("camera", id)], *skipped);
    }
}

fn events(t: &mut Text, cameras: &[(String, Arc<CameraMetrics>)]) {
    let n = "edge_node_events_total";
    t.family(
        n,
        Kind::Counter,
        "Event messages handed to the outbox, by type (new, update, end) and class.",
    );
    for (id, c) in cameras {
        let ev = super::lock(&c.events).clone();
        for k in EVENT_TYPES {
            let ty = event_type(k);
            for ((_, class), v) in ev.iter().filter(|((t, _), _)| *t == ty) {
                t.int(n, &[("camera", id), ("type", ty), ("class", class)], *v);
            }
        }
    }
    let n = "edge_node_alerts_total";
    t.family(
        n,
        Kind::Counter,
        "Alerts handed to the outbox (per-object and zone alerts), by type.",
    );
    for (id, c) in cameras {
        for (a, v) in ALERT_TYPES.iter().zip(&c.alerts) {
            let v = v.load(std::sync::atomic::Ordering::Relaxed);
            t.int(n, &[("camera", id), ("type", a.name())], v);
        }
    }
}

fn latency(
    t: &mut Text,
    cameras: &[(String, Arc<CameraMetrics>)],
    models: &[(String, Arc<ModelMetrics>)],
) {
    let n = "edge_node_frame_to_publish_seconds";
    t.family(
        n,
        Kind::Histogram,
        "From a frame's capture (wall clock) to its event's hand-over to the outbox.",
    );
    for (id, c) in cameras {
        t.histogram(n, &[("camera", id)], &c.frame_to_publish.read());
    }
    let n = "edge_node_inference_duration_seconds";
    t.family(
        n,
        Kind::Histogram,
        "Per frame and model: pre-processing (pre), session run (infer), decoding and NMS (post).",
    );
    for (model, m) in models {
        for (stage, h) in STAGES.iter().zip(&m.stages) {
            t.histogram(n, &[("model", model), ("stage", stage)], &h.read());
        }
    }
}

fn camera_states(t: &mut Text, v: &PublisherView) {
    let n = "edge_node_camera_state";
    t.family(
        n,
        Kind::Gauge,
        "1 for the camera's current state (starting, streaming, reconnecting, failed, ended, stopped), 0 for the others.",
    );
    for (id, st) in &v.cameras {
        for s in CAMERA_STATES {
            let on = u64::from(*st == Some(s));
            t.int(n, &[("camera", id), ("state", state_name(s))], on);
        }
    }
    let n = "edge_node_snapshots_total";
    t.family(
        n,
        Kind::Counter,
        "Snapshots due, by outcome: full, quality/height/crop (degraded by the budget), omitted_budget, omitted_privacy, omitted_too_large.",
    );
    for (id, s) in &v.snapshots {
        let SnapshotCounts {
            full,
            quality,
            height,
            crop,
            omitted_budget,
            omitted_privacy,
            omitted_too_large,
        } = *s;
        for (o, x) in [
            ("full", full),
            ("quality", quality),
            ("height", height),
            ("crop", crop),
            ("omitted_budget", omitted_budget),
            ("omitted_privacy", omitted_privacy),
            ("omitted_too_large", omitted_too_large),
        ] {
            t.int(n, &[("camera", id), ("outcome", o)], x);
        }
    }
}

fn delivery(t: &mut Text, v: &PublisherView) {
    let n = "edge_node_published_bytes_total";
    t.family(
        n,
        Kind::Counter,
        "MQTT payload bytes handed to the client, by traffic class.",
    );
    let b = v.bytes;
    for (class, x) in [
        ("events", b.events),
        ("alerts", b.alerts),
        ("snapshots", b.snapshots),
        ("counts", b.counts),
        ("status", b.status),
        ("stats", b.stats),
    ] {
        t.int(n, &[("class", class)], x);
    }
    for (n, help, x) in [
        (
            "edge_node_published_messages_total",
            "QoS 1 publishes handed to the client (replays included).",
            v.sent,
        ),
        (
            "edge_node_acknowledged_messages_total",
            "PUBACKs received.",
            v.acked,
        ),
        (
            "edge_node_refused_messages_total",
            "PUBACKs with a failure reason code.",
            v.refused,
        ),
        (
            "edge_node_broker_reconnects_total",
            "Reconnections to the broker.",
            v.reconnects,
        ),
    ] {
        t.family(n, Kind::Counter, help);
        t.int(n, &[], x);
    }
    let n = "edge_node_broker_connected";
    t.family(n, Kind::Gauge, "1 while the MQTT connection is up.");
    t.int(n, &[], u64::from(v.connected));
    let budget = [
        (
            "edge_node_budget_available_bytes",
            "Snapshot budget tokens available now.",
            v.budget.map(|b| b.available_bytes),
        ),
        (
            "edge_node_budget_rate_bytes_per_second",
            "Snapshot budget refill rate.",
            v.budget.map(|b| b.rate_bytes_per_s),
        ),
        (
            "edge_node_budget_burst_bytes",
            "Snapshot budget bucket size.",
            v.budget.map(|b| b.burst_bytes),
        ),
    ];
    for (n, help, x) in budget {
        t.family(n, Kind::Gauge, help);
        if let Some(x) = x {
            t.real(n, &[], x);
        }
    }
}

fn load(t: &mut Text, v: &PublisherView) {
    let Some(l) = &v.load else {
        return;
    };
    let n = "edge_node_overloaded";
    t.family(
        n,
        Kind::Gauge,
        "1 while the detector sheds more than 5 % of the frames the cameras deliver (cleared below 1 %).",
    );
    t.int(n, &[], u64::from(l.overloaded));
    let n = "edge_node_analysis_shortfall_frames_per_second";
    t.family(
        n,
        Kind::Gauge,
        "Frames per second shed unanalysed over the last load window (all cameras).",
    );
    t.real(n, &[], l.shortfall_fps);
}

fn outbox(t: &mut Text, v: &PublisherView) {
    let c = v.outbox;
    let n = "edge_node_outbox_messages";
    t.family(
        n,
        Kind::Gauge,
        "Messages in the outbox not yet acknowledged: events (events, alerts, counts) and snapshots.",
    );
    t.int(n, &[("kind", "events")], c.events);
    t.int(n, &[("kind", "snapshots")], c.snapshots);
    for (n, help, x) in [
        (
            "edge_node_outbox_bytes",
            "Bytes held by the outbox.",
            c.bytes,
        ),
        (
            "edge_node_outbox_quota_bytes",
            "The outbox quota ([outbox] quota_mb).",
            c.quota_bytes,
        ),
    ] {
        t.family(n, Kind::Gauge, help);
        t.int(n, &[], x);
    }
    let n = "edge_node_outbox_evicted_messages_total";
    t.family(
        n,
        Kind::Counter,
        "Messages evicted from the outbox to stay under its quota.",
    );
    t.int(n, &[("kind", "events")], c.evicted_events);
    t.int(n, &[("kind", "snapshots")], c.evicted_snapshots);
    for (n, help, x) in [
        (
            "edge_node_outbox_evicted_bytes_total",
            "Bytes evicted from the outbox.",
            c.evicted_bytes,
        ),
        (
            "edge_node_outbox_lost_events_total",
            "Messages that could not be stored (their seq is skipped).",
            c.lost_events,
        ),
    ] {
        t.family(n, Kind::Counter, help);
        t.int(n, &[], x);
    }
}

/// The delivered window and replay requests.
fn replay(t: &mut Text, v: &PublisherView) {
    let c = v.outbox;
    for (n, help, x) in [
        (
            "edge_node_outbox_delivered_messages",
            "Delivered lifecycle messages kept for replay requests ([outbox] keep_delivered_s).",
            c.delivered,
        ),
        (
            "edge_node_outbox_delivered_bytes",
            "Bytes of the kept delivered messages (counted in the quota).",
            c.delivered_bytes,
        ),
    ] {
        t.family(n, Kind::Gauge, help);
        t.int(n, &[], x);
    }
    let n = "edge_node_outbox_delivered_removed_total";
    t.family(
        n,
        Kind::Counter,
        "Kept delivered messages removed: evicted for room, or expired (older than keep_delivered_s).",
    );
    t.int(n, &[("reason", "evicted")], c.evicted_delivered);
    t.int(n, &[("reason", "expired")], c.expired_delivered);
    let r = v.replay;
    let n = "edge_node_replay_requests_total";
    t.family(
        n,
        Kind::Counter,
        "Replay requests from the centre: served (answered), refused (malformed, unknown camera, too large, queue full) or failed (outbox error).",
    );
    t.int(n, &[("result", "served")], r.served);
    t.int(n, &[("result", "refused")], r.refused);
    t.int(n, &[("result", "failed")], r.failed);
    let n = "edge_node_replay_resent_messages_total";
    t.family(
        n,
        Kind::Counter,
        "Lifecycle messages queued again for replay requests.",
    );
    t.int(n, &[], r.resent);
}

fn process(t: &mut Text) {
    let (rss, fds) = process_figures();
    let n = "edge_node_process_resident_memory_bytes";
    t.family(n, Kind::Gauge, "Resident memory of the process.");
    if let Some(x) = rss {
        t.int(n, &[], x);
    }
    let n = "edge_node_process_open_fds";
    t.family(n, Kind::Gauge, "Open file descriptors of the process.");
    if let Some(x) = fds {
        t.int(n, &[], x);
    }
}
