//! Conversions from the node's internal forms ([`EventRecord`],
//! `SnapshotOutcome`, [`CountsReport`], the budget's [`Step`]) into the wire
//! types of the `edge_wire` crate, which holds the schema ids and every
//! message type as serialised (see `docs/schemas/`).

use std::time::SystemTime;

use edge_wire::{
    CAMERA_ALERT_SCHEMA, COUNTS_SCHEMA, CameraAlertMessage, CountsMessage, Degraded, EVENT_SCHEMA,
    EventMessage, FrameSize, LineCountsWire, SnapshotOmitted, SnapshotRef, WireBox, WireCounter,
    ZoneCountsWire, rfc3339,
};

use super::record::{CameraAlertRecord, EventRecord, OmitReason, SnapshotPayload};
use crate::budget::Step;
use crate::rules::{Counter, CountsReport};

/// The wire form of a ladder rung (`None` for [`Step::Full`]).
pub(super) fn degraded(step: Step) -> Option<Degraded> {
    match step {
        Step::Full => None,
        Step::Quality => Some(Degraded::Quality),
        Step::Height => Some(Degraded::Height),
        Step::Crop => Some(Degraded::Crop),
    }
}

impl From<OmitReason> for SnapshotOmitted {
    fn from(why: OmitReason) -> Self {
        match why {
            OmitReason::Privacy => SnapshotOmitted::Privacy,
            OmitReason::Budget => SnapshotOmitted::Budget,
            OmitReason::Error => SnapshotOmitted::Error,
            OmitReason::TooLarge => SnapshotOmitted::TooLarge,
        }
    }
}

/// Three decimals on the wire.
fn milli(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// A tamper alert as sent.
pub(super) fn camera_alert_message(
    o: Origin<'_>,
    id: String,
    rec: &CameraAlertRecord,
) -> CameraAlertMessage {
    CameraAlertMessage {
        schema: CAMERA_ALERT_SCHEMA.into(),
        id,
        seq: rec.seq,
        node: o.node.into(),
        district: o.district.into(),
        camera: o.camera.into(),
        kind: if rec.raised {
            rec.condition.clone()
        } else {
            format!("{}_cleared", rec.condition)
        },
        time: rfc3339(rec.time),
        t: milli(rec.t),
        duration_s: milli(rec.duration_s.max(0.0)),
        score: (rec.score * 1e4).round() / 1e4,
        threshold: (rec.threshold * 1e4).round() / 1e4,
        health: rec.health.clone(),
    }
}

// ------------------------------------------------------------------ internal → wire

/// Who a message is from: the node, its district and the camera.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin<'a> {
    pub node: &'a str,
    pub district: &'a str,
    pub camera: &'a str,
}

/// The reference an event carries to its snapshot, published on `topic`.
pub(super) fn snapshot_ref(topic: String, s: &SnapshotPayload) -> SnapshotRef {
    SnapshotRef {
        topic,
        bytes: s.jpeg.len(),
        width: s.width,
        height: s.height,
        degraded: degraded(s.step),
        source: s.source,
        match_error_ms: s.match_error_ms,
    }
}

/// `edge-event/7` for one lifecycle record: the box clamped to the frame and
/// normalised, scores rounded to 4 decimals.
pub(super) fn event_message(
    o: Origin<'_>,
    seq: u64,
    id: String,
    rec: &EventRecord,
    snapshot: Option<SnapshotRef>,
    omitted: Option<OmitReason>,
) -> EventMessage {
    let (w, h) = rec.frame_size;
    let (fw, fh) = (w.max(1) as f32, h.max(1) as f32);
    let b = rec.bbox.clamp(fw, fh);
    let r = |v: f32| (v * 1e4).round() / 1e4;
    EventMessage {
        schema: EVENT_SCHEMA.into(),
        id,
        seq,
        kind: rec.kind,
        node: o.node.into(),
        district: o.district.into(),
        camera: o.camera.into(),
        label: rec.label.clone(),
        class_id: rec.class_id,
        track_id: rec.track_id,
        score: r(rec.score),
        top_score: r(rec.top_score),
        start_time: rfc3339(rec.start),
        end_time: rec.end.map(rfc3339),
        frame_time: rfc3339(rec.frame),
        bbox: WireBox {
            x1: r(b.x1 / fw),
            y1: r(b.y1 / fh),
            x2: r(b.x2 / fw),
            y2: r(b.y2 / fh),
        },
        frame_size: FrameSize {
            width: w,
            height: h,
        },
        snapshot,
        snapshot_omitted: omitted.map(SnapshotOmitted::from),
        current_zones: rec.current_zones.clone(),
        entered_zones: rec.entered_zones.clone(),
        stationary: rec.stationary,
        alerts: rec.alert.iter().map(|a| a.kind.clone()).collect(),
        alert: rec.alert.clone(),
        end_reason: None,
        replayed: false,
        riders: rec.riders,
    }
}

/// `edge-counts/1` for one interval's report; `label` names a class id.
pub(super) fn counts_message(
    o: Origin<'_>,
    seq: u64,
    report: &CountsReport,
    label: &dyn Fn(u32) -> String,
    interval_start: SystemTime,
    interval_end: SystemTime,
) -> CountsMessage {
    let wire = |c: &Counter| WireCounter {
        total: c.total,
        delta: c.delta,
    };
    let lines = report
        .lines
        .iter()
        .map(|l| {
            let counts = l
                .by_class
                .iter()
                .map(|(cls, dirs)| {
                    (
                        label(*cls),
                        dirs.iter().map(|(d, c)| (d.clone(), wire(c))).collect(),
                    )
                })
                .collect();
            (
                l.name.clone(),
                LineCountsWire {
                    directions: [l.forward.clone(), l.backward.clone()],
                    counts,
                },
            )
        })
        .collect();
    let zones = report
        .zones
        .iter()
        .map(|z| {
            (
                z.name.clone(),
                ZoneCountsWire {
                    occupancy: z.occupancy.iter().map(|(c, n)| (label(*c), *n)).collect(),
                    peak: z.peak,
                    entered: z
                        .entered
                        .iter()
                        .map(|(c, n)| (label(*c), wire(n)))
                        .collect(),
                },
            )
        })
        .collect();
    CountsMessage {
        schema: COUNTS_SCHEMA.into(),
        node: o.node.into(),
        district: o.district.into(),
        camera: o.camera.into(),
        seq,
        interval_start: rfc3339(interval_start),
        interval_end: rfc3339(interval_end),
        lines,
        zones,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed outcomes serialise to the strings the schemas enumerate.
    #[test]
    fn snapshot_outcome_wire_names() {
        let omitted = [
            (OmitReason::Privacy, "privacy"),
            (OmitReason::Budget, "budget"),
            (OmitReason::Error, "error"),
            (OmitReason::TooLarge, "too_large"),
        ];
        for (why, name) in omitted {
            let v = serde_json::to_value(SnapshotOmitted::from(why)).unwrap();
            assert_eq!(v, name);
        }
        let steps = [
            (Step::Full, serde_json::Value::Null),
            (Step::Quality, "quality".into()),
            (Step::Height, "height".into()),
            (Step::Crop, "crop".into()),
        ];
        for (step, name) in steps {
            assert_eq!(serde_json::to_value(degraded(step)).unwrap(), name);
        }
    }
}
