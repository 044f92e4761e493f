//! A camera's analytics task (tokio): results from the camera's hand-over
//! → [`CameraAnalytics`] (pure) → each [`Outgoing`] message's snapshot
//! rendered ([`Painter`]) and the message handed to `publish`, in order.
//! Wall-clock times on the wire come from the frame's media time anchored
//! at the frame ([`wall_at`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::camera::{CameraAnalytics, Outgoing};
use super::pictures::Painter;
use super::report::Samples;
use super::slots::Handover;
use crate::cpu;
use crate::events::{EventAction, EventKind};
use crate::frame::Frame;
use crate::metrics::CameraMetrics;
use crate::publish::{
    AlertDetail, CameraAlertRecord, EventRecord, EventType, PublishError, Publisher,
    ZoneAlertRecord,
};
use crate::rules::{Alert, CountsReport, ObjectRules};
use crate::tamper::{TamperKind, Transition};

/// Where one camera's messages go, and their numbering.
pub(super) struct Emitter {
    pub id: String,
    pub publisher: Publisher,
    pub labels: Arc<Vec<String>>,
    pub painter: Painter,
    /// This camera run's stamp ([`Publisher::camera_run`]), in every object id.
    pub run: u64,
    /// Last event `seq`; continues after a restart (the outbox stores it).
    pub seq: u64,
    pub counts_seq: u64,
    pub zone_alert_seq: u64,
    pub camera_alert_seq: u64,
    /// Frame arrival → event handed to the MQTT client, ms (see `CameraReport`).
    pub publish_latency_ms: Arc<Mutex<Samples>>,
    /// The camera's figures for `/metrics`.
    pub metrics: Arc<CameraMetrics>,
}

/// The camera's analytics task: runs until the camera's hand-over ends
/// (the slot is closed and drained), then ends every open event.
pub(super) async fn run(mut analytics: CameraAnalytics, mut rx: Handover, mut emit: Emitter) {
    // A new run learns its scene again: no condition is active yet.
    let _ = emit.publisher.set_camera_health(&emit.id, Vec::new()).await;
    while let Some(a) = rx.recv().await {
        let out = cpu::charge(cpu::Stage::Analytics, || {
            analytics.on_frame(&a.frame, &a.detections)
        });
        for o in out {
            emit.send(o, &a.frame, a.arrived).await;
        }
    }
    if let Some(f) = analytics.last_frame().cloned() {
        let now = Instant::now();
        for o in analytics.finish() {
            emit.send(o, &f, now).await;
        }
    }
    let c = analytics.traffic_counts();
    info!(
        merged = c.merged,
        riders = c.riders,
        lone_riders = c.lone_riders,
        ignored = c.ignored,
        "traffic stage: detections merged, riders folded into vehicles, lone riders counted as motorcycles, ignored"
    );
}

/// Media time → wall clock, using a frame as the anchor.
pub(super) fn wall_at(anchor: &Frame, t: f64) -> SystemTime {
    let d = anchor.t - t;
    if d >= 0.0 {
        anchor
            .wall
            .checked_sub(Duration::from_secs_f64(d))
            .unwrap_or(anchor.wall)
    } else {
        anchor.wall + Duration::from_secs_f64(-d)
    }
}

impl Emitter {
    /// Sends one message caused by `anchor` (which arrived at `arrived`).
    async fn send(&mut self, o: Outgoing, anchor: &Arc<Frame>, arrived: Instant) {
        match o {
            Outgoing::Event {
                action,
                object,
                alert,
                from_frame,
            } => {
                let alert = alert.map(|a| AlertDetail {
                    kind: a.kind.name().to_string(),
                    rule: a.rule,
                    dwell_s: a.dwell_s.map(|d| (d * 1e3).round() / 1e3),
                    direction: a.direction,
                });
                let arrived = from_frame.then_some(arrived);
                self.event(action, anchor, arrived, object, alert).await;
            }
            Outgoing::ZoneAlert { alert, evidence } => {
                self.zone_alert(alert, evidence, anchor).await;
            }
            Outgoing::CameraAlert { transition, health } => {
                self.camera_alert(&transition, &health, anchor).await;
            }
            Outgoing::Counts(report) => self.counts(&report, anchor).await,
        }
    }

    /// A tamper condition raised or cleared on /alerts, then the camera's
    /// status with its new `health`.
    async fn camera_alert(&mut self, tr: &Transition, health: &[TamperKind], f: &Frame) {
        self.camera_alert_seq += 1;
        let health: Vec<String> = health.iter().map(|k| k.name().to_string()).collect();
        let rec = CameraAlertRecord {
            run: self.run,
            seq: self.camera_alert_seq,
            condition: tr.kind.name().to_string(),
            raised: tr.raised,
            t: tr.t,
            time: wall_at(f, tr.t),
            duration_s: tr.duration_s,
            score: tr.score,
            threshold: tr.threshold,
            health: health.clone(),
        };
        match self.publisher.camera_alert(&self.id, &rec).await {
            Ok(m) => {
                warn!(kind = %m.kind, t = m.t, duration_s = m.duration_s, score = m.score, threshold = m.threshold, "camera alert");
            }
            Err(e) => publish_failed(&e),
        }
        if let Err(e) = self.publisher.set_camera_health(&self.id, health).await {
            publish_failed(&e);
        }
    }

    fn label(&self, class_id: u32) -> String {
        self.labels
            .get(class_id as usize)
            .cloned()
            .unwrap_or_else(|| format!("class{class_id}"))
    }

    /// One lifecycle message; `arrived`: when the frame that caused it
    /// entered its slot (for the latency samples).
    async fn event(
        &mut self,
        act: EventAction<Arc<Frame>>,
        anchor: &Frame,
        arrived: Option<Instant>,
        obj: ObjectRules,
        alert: Option<AlertDetail>,
    ) {
        let label = self.label(act.class_id);
        let kind = act.kind;
        let snapshot = match act.snapshot {
            Some(choice) => Some(
                self.painter
                    .object(choice.handle.clone(), choice.bbox, label.clone())
                    .await,
            ),
            None => None,
        };
        let rec = EventRecord {
            run: self.run,
            kind: match act.kind {
                EventKind::New => EventType::New,
                EventKind::Update => EventType::Update,
                EventKind::End => EventType::End,
            },
            track_id: act.track_id,
            class_id: act.class_id,
            label,
            score: act.score,
            top_score: act.top_score,
            start: wall_at(anchor, act.start_t),
            end: act.end_t.map(|t| wall_at(anchor, t)),
            frame: wall_at(anchor, act.frame_t),
            bbox: act.bbox,
            frame_size: act.frame_size,
            current_zones: obj.current_zones,
            entered_zones: obj.entered_zones,
            stationary: obj.stationary,
            alert,
            riders: act.riders,
        };
        self.seq += 1;
        match self
            .publisher
            .event(&self.id, self.seq, &rec, snapshot)
            .await
        {
            Ok(m) => {
                self.metrics.event(kind, &rec.label);
                if let Some(a) = &rec.alert {
                    self.metrics.alert(&a.kind);
                }
                if arrived.is_some() {
                    self.metrics.published_frame(anchor.wall);
                }
                if let Some(a) = arrived {
                    let mut v = self
                        .publish_latency_ms
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    v.push(a.elapsed().as_secs_f64() * 1e3);
                }
                info!(kind = ?m.kind, id = %m.id, label = %m.label, score = m.score, "event");
            }
            Err(e) => publish_failed(&e),
        }
    }

    /// A zone-level alert on /alerts, with its whole-frame evidence.
    async fn zone_alert(&mut self, al: Alert, evidence: Option<Arc<Frame>>, f: &Frame) {
        let snapshot = match evidence {
            Some(frame) => Some(self.painter.whole_frame(frame).await),
            None => None,
        };
        self.zone_alert_seq += 1;
        let rec = ZoneAlertRecord {
            run: self.run,
            seq: self.zone_alert_seq,
            zone: al.rule.clone(),
            kind: al.kind.name().to_string(),
            occupancy: al.occupancy.unwrap_or(0),
            dwell_s: al.dwell_s,
            time: wall_at(f, al.t),
        };
        match self.publisher.zone_alert(&self.id, &rec, snapshot).await {
            Ok(m) => {
                self.metrics.alert(al.kind.name());
                info!(zone = %m.zone, alert = %al.kind.name(), occupancy = m.occupancy, "zone alert");
            }
            Err(e) => publish_failed(&e),
        }
    }

    async fn counts(&mut self, r: &CountsReport, anchor: &Frame) {
        self.counts_seq += 1;
        let (start, end) = (wall_at(anchor, r.start_t), wall_at(anchor, r.end_t));
        let label = |c: u32| self.label(c);
        match self
            .publisher
            .counts(&self.id, self.counts_seq, r, label, start, end)
            .await
        {
            Ok(bytes) => info!(seq = self.counts_seq, bytes, "counts"),
            Err(e) => publish_failed(&e),
        }
    }
}

/// A message that could not be handed over: a lost one (the outbox could
/// not store it) is an error, it leaves a `seq` gap.
fn publish_failed(e: &PublishError) {
    match e {
        PublishError::Lost { .. } => error!(error = %e, "message lost"),
        _ => warn!(error = %e, "publish failed"),
    }
}
