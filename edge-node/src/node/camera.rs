//! One camera's analytics as one pure step: detections of a frame → tracker
//! → scene rules → event lifecycle → the typed messages to send
//! ([`Outgoing`]). No I/O, no clock: time is the frames' media time, so this
//! is testable without MQTT, GStreamer or ONNX Runtime. The async side
//! (`node/emit.rs`) renders snapshots and hands the messages to `publish`.
//!
//! The business rules of the order, tested below:
//! 1. rules run before events, so an event sees this frame's rule state (the
//!    update that announces a stationary object carries `stationary: true`);
//! 2. event actions of the frame come before its alerts, so an alert on an
//!    object whose event opens on this frame is sent as that event's update;
//! 3. tamper alerts (on the frames the tamper checks look at) come next;
//! 4. a counts report closes the frame's messages when its interval is over.
//!
//! With keyframe-only decoding (`idle_decode`), the analytics also decide
//! when the camera is idle (`crate::idle`) and switch the source's
//! [`KeyframeGate`]: an atomic flag, no I/O.

use std::sync::Arc;

use crate::events::{EventAction, EventEngine, TrackFacts};
use crate::frame::{Detection, Frame};
use crate::idle::{IdleChange, IdleConfig, IdleDetector};
use crate::rules::{Alert, AlertKind, CountsReport, ObjectRules, RulesConfig, RulesEngine};
use crate::source::KeyframeGate;
use crate::tamper::{TamperConfig, TamperKind, TamperMonitor, Thumbnail, Transition};
use crate::track::Tracker;
use crate::traffic::{TrafficCounts, TrafficStage};

/// One message a frame (or the camera's end) causes, in sending order.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// An object's lifecycle message (`new`, `update`, `end`), with its
    /// snapshot choice and rule state; `alert` when a per-object rule alert
    /// (loitering, wrong way) is announced through it.
    Event {
        action: EventAction<Arc<Frame>>,
        object: ObjectRules,
        alert: Option<Alert>,
        /// Caused by this frame's detections (its frame-to-publish latency
        /// is measured); alert updates and the end-of-camera `end`s are not.
        from_frame: bool,
    },
    /// A zone-level alert (crowding); `evidence`: the whole frame for a
    /// snapshot, for crowding.
    ZoneAlert {
        alert: Alert,
        evidence: Option<Arc<Frame>>,
    },
    /// A tamper condition raised or cleared, with the conditions active after it.
    CameraAlert {
        transition: Transition,
        health: Vec<TamperKind>,
    },
    /// The zone and line counts of one finished interval.
    Counts(CountsReport),
}

/// A camera's tracker, rules and event lifecycle.
pub(super) struct CameraAnalytics {
    /// Cross-class merge, rider pairing, ignore zones: before the tracker.
    traffic: TrafficStage,
    tracker: Tracker,
    events: EventEngine<Arc<Frame>>,
    rules_cfg: RulesConfig,
    /// Created at the first frame: the first counts interval starts there.
    rules: Option<RulesEngine>,
    counts_interval_s: f64,
    last: Option<Arc<Frame>>,
    tamper: Option<TamperMonitor>,
    /// Keyframe-only decoding while idle: the decision and the source's switch.
    idle: Option<(IdleDetector, KeyframeGate)>,
}

impl CameraAnalytics {
    pub fn new(
        tracker: Tracker,
        events: EventEngine<Arc<Frame>>,
        rules: RulesConfig,
        counts_interval_s: f64,
    ) -> Self {
        Self {
            traffic: TrafficStage::default(),
            tracker,
            events,
            rules_cfg: rules,
            rules: None,
            counts_interval_s,
            last: None,
            tamper: None,
            idle: None,
        }
    }

    /// Decodes keyframes only while the camera is idle: `gate` is its
    /// source's switch (`SourceOptions::keyframe_gate`).
    pub fn with_idle(mut self, cfg: Option<IdleConfig>, gate: Option<KeyframeGate>) -> Self {
        self.idle = cfg.zip(gate).map(|(c, g)| (IdleDetector::new(c), g));
        self
    }

    /// Whether the camera is idle now (keyframes only).
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.idle.as_ref().is_some_and(|(d, _)| d.is_idle())
    }

    /// Runs the tamper checks on this camera's frames.
    pub fn with_tamper(mut self, cfg: Option<TamperConfig>) -> Self {
        self.tamper = cfg.map(TamperMonitor::new);
        self
    }

    /// Runs the traffic stage (see `traffic.rs`) on each frame's detections
    /// before the tracker; without it they go to the tracker as detected.
    pub fn with_traffic(mut self, stage: TrafficStage) -> Self {
        self.traffic = stage;
        self
    }

    /// What the traffic stage has removed so far (merged, riders, ignored).
    pub fn traffic_counts(&self) -> TrafficCounts {
        self.traffic.counts()
    }

    /// The latest frame seen (the time anchor of [`Self::finish`]'s messages).
    pub fn last_frame(&self) -> Option<&Arc<Frame>> {
        self.last.as_ref()
    }

    /// One analysed frame → the messages it causes, in sending order.
    pub fn on_frame(&mut self, f: &Arc<Frame>, detections: &[Detection]) -> Vec<Outgoing> {
        // Riders are counted on their vehicle here and travel beside the
        // detections: the track keeps the most seen, the event reports it.
        let (kept, riders): (Vec<Detection>, Vec<u32>) = self
            .traffic
            .apply(f.width, f.height, detections)
            .into_iter()
            .map(|d| (d.detection, d.riders))
            .unzip();
        let tracks = self.tracker.update_with_riders(f.t, &kept, &riders);
        self.idle_step(f, !kept.is_empty() || !self.tracker.is_empty());
        let cfg = &self.rules_cfg;
        let rules = self
            .rules
            .get_or_insert_with(|| RulesEngine::new(cfg.clone(), f.t));
        // 1. Rules first: the events below see this frame's stationary state.
        let alerts = rules.on_frame(f.t, f.width, f.height, &tracks);
        let actions = {
            let tracker = &self.tracker;
            let facts = TrackFacts {
                quiet: &|id: u64| rules.is_stationary(id),
                riders: &|id: u64| tracker.riders(id),
            };
            self.events
                .on_frame_with(f.t, f.width, f.height, &tracks, f, facts)
        };
        let mut out: Vec<Outgoing> = actions
            .into_iter()
            .map(|action| Outgoing::Event {
                object: rules.object(action.track_id).unwrap_or_default(),
                action,
                alert: None,
                from_frame: true,
            })
            .collect();
        // 2. Alerts after the events, so an event opened now can carry one.
        for alert in alerts {
            out.extend(alert_message(alert, rules, &mut self.events, f));
        }
        // 3. Counts when the interval is over (pushed after the tamper alerts).
        let counts = (!self.rules_cfg.is_empty()
            && f.t - rules.interval_start() >= self.counts_interval_s)
            .then(|| Outgoing::Counts(rules.take_counts(f.t)));
        // 4. Tamper checks on a frame every interval, before the counts.
        out.extend(self.tamper_check(f));
        out.extend(counts);
        self.last = Some(f.clone());
        out
    }

    /// Idle or awake after this frame (`busy`: a detection kept or a track
    /// alive); switches the source's gate on a change.
    fn idle_step(&mut self, f: &Frame, busy: bool) {
        let Some((d, gate)) = self.idle.as_mut() else {
            return;
        };
        let thumb = d
            .wants_thumbnail(f.t)
            .then(|| Thumbnail::from_rgb(f.width, f.height, &f.data))
            .flatten();
        match d.observe(f.t, busy, thumb) {
            Some(IdleChange::Enter) => {
                gate.set_keyframes_only(true);
                tracing::info!(t = f.t, "camera idle: decoding keyframes only");
            }
            Some(IdleChange::Leave(cause)) => {
                gate.set_keyframes_only(false);
                tracing::info!(
                    t = f.t,
                    cause = cause.name(),
                    "camera awake: full-rate decoding from the next keyframe"
                );
            }
            None => {}
        }
    }

    /// Media seconds spent idle, idle spells, and compressed frames not
    /// decoded; `None` without keyframe-only decoding.
    pub fn idle_figures(&self) -> Option<(f64, u64, u64)> {
        let (d, gate) = self.idle.as_ref()?;
        let t = self.last.as_ref().map_or(0.0, |f| f.t);
        let (s, spells) = d.idle_time(t);
        Some((s, spells, gate.skipped()))
    }

    /// The tamper checks of a frame, when one is due: a grey thumbnail of
    /// it, checked; a message per transition.
    fn tamper_check(&mut self, f: &Frame) -> Vec<Outgoing> {
        let Some(m) = self.tamper.as_mut().filter(|m| m.due(f.t)) else {
            return Vec::new();
        };
        let Some(thumb) = Thumbnail::from_rgb(f.width, f.height, &f.data) else {
            return Vec::new();
        };
        let (transitions, s) = m.check(&thumb, f.t);
        tracing::debug!(
            t = f.t,
            mean = s.mean,
            std = s.std,
            changed = s.changed,
            sharpness = s.sharpness,
            mismatch = s.mismatch,
            learned = m.learned(),
            "tamper check"
        );
        let health = m.active();
        transitions
            .into_iter()
            .map(|transition| Outgoing::CameraAlert {
                transition,
                health: health.clone(),
            })
            .collect()
    }

    /// The camera has ended: every open event gets its `end`, and the last
    /// (partial) counts interval is reported. Nothing when no frame came.
    pub fn finish(&mut self) -> Vec<Outgoing> {
        if let Some((idle_s, spells, skipped)) = self.idle_figures() {
            tracing::info!(
                idle_s = (idle_s * 10.0).round() / 10.0,
                spells,
                skipped,
                "keyframe-only decoding: media seconds idle, idle spells, compressed frames not decoded"
            );
        }
        let Some(f) = self.last.clone() else {
            return Vec::new();
        };
        let rules = self.rules.as_mut();
        let mut out: Vec<Outgoing> = self
            .events
            .finish(f.t)
            .into_iter()
            .map(|action| Outgoing::Event {
                object: rules
                    .as_ref()
                    .and_then(|r| r.object(action.track_id))
                    .unwrap_or_default(),
                action,
                alert: None,
                from_frame: false,
            })
            .collect();
        if let Some(r) = rules
            && !self.rules_cfg.is_empty()
            && f.t > r.interval_start()
        {
            out.push(Outgoing::Counts(r.take_counts(f.t)));
        }
        out
    }
}

/// One rule alert as a message: a per-object alert becomes an `update` of
/// the object's open event (none when the object has no open event), a zone
/// alert goes on its own, with the whole frame as evidence for crowding.
fn alert_message(
    alert: Alert,
    rules: &RulesEngine,
    events: &mut EventEngine<Arc<Frame>>,
    f: &Arc<Frame>,
) -> Option<Outgoing> {
    match alert.track_id {
        Some(id) => {
            let Some(action) = events.alert(id, f.t, f) else {
                tracing::info!(
                    track = id,
                    alert = alert.kind.name(),
                    "alert for an object without an open event; not sent"
                );
                return None;
            };
            Some(Outgoing::Event {
                object: rules.object(id).unwrap_or_default(),
                action,
                alert: Some(alert),
                from_frame: false,
            })
        }
        None => {
            let evidence = (alert.kind == AlertKind::Crowding).then(|| f.clone());
            Some(Outgoing::ZoneAlert { alert, evidence })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventConfig, EventKind};
    use crate::frame::BBox;
    use crate::rules::ZoneRule;
    use crate::track::TrackerConfig;
    use std::collections::BTreeSet;
    use std::time::SystemTime;

    const DT: f64 = 0.1;

    fn frame(i: u64) -> Arc<Frame> {
        Arc::new(Frame {
            camera: "cam".into(),
            index: i,
            t: i as f64 * DT,
            wall: SystemTime::UNIX_EPOCH,
            width: 1000,
            height: 1000,
            data: Vec::new(),
        })
    }

    fn person(x: f32) -> Detection {
        Detection {
            class_id: 0,
            score: 0.9,
            bbox: BBox::new(x, 400.0, x + 60.0, 600.0),
        }
    }

    fn analytics(rules: RulesConfig) -> CameraAnalytics {
        let ev = EventConfig::default();
        let tracker = Tracker::new(ev.tracker_config(TrackerConfig::default()));
        CameraAnalytics::new(tracker, EventEngine::new(ev), rules, 60.0)
    }

    fn zone(loiter_s: Option<f64>, crowd_min: Option<u32>) -> ZoneRule {
        ZoneRule {
            name: "square".into(),
            polygon: vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
            classes: BTreeSet::new(),
            min_area: 0.0,
            inertia: 1,
            loiter_s,
            crowd_min,
            crowd_for_s: 0.0,
            crowd_clear_s: 1.0,
            cooldown_s: None,
        }
    }

    /// Kinds of the messages, in order: `new`/`update`/`end` (with `+alert`),
    /// `zone`, `counts`.
    fn kinds(out: &[Outgoing]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Outgoing::Event { action, alert, .. } => {
                    let k = match action.kind {
                        EventKind::New => "new",
                        EventKind::Update => "update",
                        EventKind::End => "end",
                    };
                    if alert.is_some() {
                        format!("{k}+alert")
                    } else {
                        k.into()
                    }
                }
                Outgoing::ZoneAlert { .. } => "zone".into(),
                Outgoing::CameraAlert { transition, .. } => transition.kind.name().into(),
                Outgoing::Counts(_) => "counts".into(),
            })
            .collect()
    }

    /// The traffic stage runs before the tracker: a rider on a motorcycle
    /// opens one event (the motorcycle, carrying its rider to the end), an
    /// object standing in an ignore zone opens none.
    #[test]
    fn the_traffic_stage_feeds_the_tracker() {
        use crate::traffic::{TrafficConfig, TrafficStage};
        let labels: Vec<String> = ["person", "bicycle", "car", "motorcycle"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let cfg = TrafficConfig {
            // The right half of the frame is ignored.
            ignore_zones: vec![vec![[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]],
            ..TrafficConfig::default()
        };
        let (stage, unknown) = TrafficStage::new(&cfg, &labels);
        assert_eq!(unknown, ["bus", "truck"]);
        let mut a = analytics(RulesConfig::default()).with_traffic(stage);
        let mut opened = Vec::new();
        for i in 0..10 {
            let x = 100.0 + i as f32;
            let dets = [
                // A rider on a motorcycle, on the left.
                Detection {
                    class_id: 0,
                    score: 0.9,
                    bbox: BBox::new(x + 20.0, 320.0, x + 80.0, 550.0),
                },
                Detection {
                    class_id: 3,
                    score: 0.8,
                    bbox: BBox::new(x, 400.0, x + 100.0, 600.0),
                },
                // A car parked on the right.
                Detection {
                    class_id: 2,
                    score: 0.9,
                    bbox: BBox::new(700.0, 500.0, 900.0, 650.0),
                },
            ];
            for o in a.on_frame(&frame(i), &dets) {
                if let Outgoing::Event { action, .. } = o
                    && action.kind == EventKind::New
                {
                    opened.push((action.class_id, action.riders));
                }
            }
        }
        assert_eq!(opened, [(3, 1)], "one event, the motorcycle, one rider");
        let ends: Vec<(u32, u32)> = a
            .finish()
            .into_iter()
            .filter_map(|o| match o {
                Outgoing::Event { action, .. } => Some((action.class_id, action.riders)),
                _ => None,
            })
            .collect();
        assert_eq!(ends, [(3, 1)]);
        let c = a.traffic_counts();
        assert_eq!((c.riders, c.ignored, c.merged), (10, 10, 0));
    }

    /// Keyframe-only decoding: the camera goes idle once its last track is
    /// gone for `after_s`, the source's gate follows, and a detection on a
    /// (key)frame wakes it up.
    #[test]
    fn the_gate_follows_idle_and_a_detection_wakes_the_camera() {
        let gate = KeyframeGate::default();
        let mut a = analytics(RulesConfig::default())
            .with_idle(Some(IdleConfig { after_s: 2.0 }), Some(gate.clone()));
        let mut went_idle = None;
        for i in 0..100 {
            let dets: &[Detection] = if i < 10 { &[person(100.0)] } else { &[] };
            a.on_frame(&frame(i), dets);
            if gate.keyframes_only() && went_idle.is_none() {
                went_idle = Some(i);
            }
        }
        let i = went_idle.expect("the camera went idle");
        // The track outlives its last detection by end_after_s, then 2 s of quiet.
        assert!(i as f64 * DT >= 1.0 + 2.0, "idle at frame {i}");
        assert!(a.is_idle());
        // Keyframes only now: 2 s apart; the third shows a person.
        a.on_frame(&frame(120), &[]);
        assert!(gate.keyframes_only());
        a.on_frame(&frame(140), &[person(300.0)]);
        assert!(!gate.keyframes_only(), "a detection restores full rate");
        assert!(!a.is_idle());
        let (idle_s, spells, _) = a.idle_figures().unwrap();
        assert_eq!(spells, 1);
        assert!(idle_s > 1.0, "{idle_s}");
    }

    #[test]
    fn an_object_seen_then_gone_is_one_new_and_one_end() {
        let mut a = analytics(RulesConfig::default());
        let mut all = Vec::new();
        for i in 0..10 {
            all.extend(kinds(&a.on_frame(&frame(i), &[person(100.0 + i as f32)])));
        }
        for i in 10..40 {
            all.extend(kinds(&a.on_frame(&frame(i), &[])));
        }
        all.extend(kinds(&a.finish()));
        assert_eq!(all, vec!["new", "end"]);
    }

    #[test]
    fn rules_run_before_events_so_the_event_sees_this_frames_stationary_state() {
        let rules = RulesConfig {
            zones: vec![zone(None, None)],
            stationary_s: 1.0,
            ..RulesConfig::default()
        };
        let mut a = analytics(rules);
        let mut became = None;
        for i in 0..40 {
            let f = frame(i);
            for o in a.on_frame(&f, &[person(100.0)]) {
                if let Outgoing::Event { action, object, .. } = o
                    && action.kind == EventKind::Update
                    && object.stationary
                {
                    became.get_or_insert((i, a.rules.as_ref().unwrap().is_stationary(1)));
                }
            }
        }
        let (i, stationary_now) = became.expect("an update announces the stationary object");
        assert!(
            stationary_now,
            "the rules already hold it stationary on that frame"
        );
        assert!(i as f64 * DT >= 1.0, "not before stationary_s");
    }

    #[test]
    fn alerts_follow_the_events_of_their_frame() {
        // Loitering fires as soon as the object is in the zone; its event
        // opens on the same frame (min_hits): the alert must ride on it.
        let rules = RulesConfig {
            zones: vec![zone(Some(0.0), None)],
            cooldown_s: 0.0,
            ..RulesConfig::default()
        };
        let mut a = analytics(rules);
        let mut per_frame = Vec::new();
        for i in 0..10 {
            let k = kinds(&a.on_frame(&frame(i), &[person(100.0)]));
            if !k.is_empty() {
                per_frame.push(k);
            }
        }
        // Had the alert gone first, the object would have had no open event
        // and the alert would have been lost.
        assert_eq!(per_frame, vec![vec!["new", "update+alert"]]);
    }

    #[test]
    fn crowding_is_a_zone_alert_with_the_whole_frame_and_counts_close_the_interval() {
        let rules = RulesConfig {
            zones: vec![zone(None, Some(2))],
            cooldown_s: 0.0,
            ..RulesConfig::default()
        };
        let mut a = analytics(rules);
        a.counts_interval_s = 0.5;
        let mut seen = Vec::new();
        for i in 0..12 {
            let out = a.on_frame(&frame(i), &[person(100.0), person(500.0)]);
            for o in &out {
                if let Outgoing::ZoneAlert { evidence, .. } = o {
                    assert_eq!(evidence.as_ref().map(|f| f.index), Some(i));
                }
            }
            let k = kinds(&out);
            if let Some(p) = k.iter().position(|k| k == "counts") {
                assert_eq!(p, k.len() - 1, "counts come last: {k:?}");
            }
            seen.extend(k);
        }
        assert!(seen.iter().any(|k| k == "zone"), "{seen:?}");
        assert!(seen.iter().any(|k| k == "counts"), "{seen:?}");
        let end = kinds(&a.finish());
        assert_eq!(end, vec!["end", "end", "counts"]);
    }
}
