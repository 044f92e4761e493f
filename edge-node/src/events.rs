//! Event lifecycle: turns per-frame track views into few, meaningful actions.
//!
//! Operators want **one** alert per object, then only material updates, then
//! an end. For every track id the engine walks
//! `Pending → Open → Closed` and emits:
//!
//! - [`EventKind::New`] once, the first frame the track is confirmed
//!   (`state == Confirmed`, `hits >= min_hits`) **and** matched. It carries
//!   the best snapshot seen so far, tentative frames included.
//! - [`EventKind::Update`] only when the best snapshot's quality beats the
//!   last *sent* one by `snapshot_improvement` (relative), at least
//!   `update_min_interval_s` after the previous message of this event, and
//!   fewer than `max_updates` updates were sent. Updates are considered on
//!   matched frames only: an object that is not visible has nothing new to say.
//! - [`EventKind::End`] once, when the track has been unmatched for
//!   `>= end_after_s`, when the tracker drops it, or on [`EventEngine::finish`].
//!   `end_t` is the last time the object was seen. The End carries the best
//!   snapshot only if that snapshot was never sent **and** is a material
//!   improvement (same `snapshot_improvement` test as updates): that delivers
//!   improvements held back by the rate limit or the update cap, without
//!   re-sending a near-identical picture at the end of every event.
//!
//! Scene rules hook in through [`EventEngine::on_frame_quiet`] (no updates
//! for stationary objects) and [`EventEngine::alert`] (an `update` carrying
//! a rule alert and the current frame as its snapshot).
//!
//! **Riders**: every action carries the object's rider count (persons the
//! traffic stage folded into a motorcycle or bicycle; 0 for anything else),
//! given per track through [`TrackFacts::riders`] (the tracker's
//! [`crate::track::Tracker::riders`]). The engine keeps the largest count
//! reported over the event's life, so a later message of an object never
//! reports fewer riders than an earlier one; the `end` carries the final
//! count. A change of the count alone sends no `update`.
//!
//! Invariants: never an End without a New, never two News for one track id
//! (a closed event stays closed while its track lives, even if the track is
//! re-found). Event ids and sequence numbers are the publisher's business;
//! the key here is the track id, so use one engine per tracker (per camera).
//!
//! **Snapshot quality** is `score × area` (area of the box clipped to the
//! frame), halved ([`EDGE_PENALTY`]) when the box comes within `edge_margin`
//! of any frame edge: a box cut by the frame border shows a partial object,
//! so a fully visible view wins unless the cut one is more than twice as good.
//!
//! Like `track`, this module is pure: time is the media time `t` passed in,
//! no clock, no I/O. The snapshot handle `S` is opaque (the caller passes
//! e.g. `Arc<Frame>`); the engine keeps at most one handle per live track
//! (its best view) and drops it when the event closes.

use std::collections::BTreeMap;

use crate::frame::BBox;
use crate::track::{TrackState, TrackView, TrackerConfig};

/// Quality multiplier for a box touching the frame edge. See the module docs.
pub const EDGE_PENALTY: f32 = 0.5;

/// Invalid event settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventConfigError {
    #[error("event setting {name} = {value} must be finite and >= 0")]
    Negative { name: &'static str, value: f64 },
    #[error("event edge_margin = {0} must be within 0..0.5")]
    EdgeMargin(f32),
    #[error("event min_hits must be >= 1")]
    MinHits,
}

/// Event lifecycle settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EventConfig {
    /// Matched frames before a track may become an event.
    pub min_hits: u32,
    /// A track unmatched for this many seconds ends its event.
    pub end_after_s: f64,
    /// Minimum seconds between two messages of one event (rate limit).
    pub update_min_interval_s: f64,
    /// Relative snapshot-quality gain needed for an update (0.3 = 30% better).
    pub snapshot_improvement: f32,
    /// Maximum updates per event.
    pub max_updates: u32,
    /// A box within this fraction of the frame size of an edge "touches" it.
    pub edge_margin: f32,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            min_hits: 3,
            end_after_s: 2.0,
            update_min_interval_s: 5.0,
            snapshot_improvement: 0.3,
            max_updates: 5,
            edge_margin: 0.01,
        }
    }
}

impl EventConfig {
    /// Checks ranges; does no I/O.
    pub fn validate(&self) -> Result<(), EventConfigError> {
        for (name, value) in [
            ("end_after_s", self.end_after_s),
            ("update_min_interval_s", self.update_min_interval_s),
            ("snapshot_improvement", f64::from(self.snapshot_improvement)),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(EventConfigError::Negative { name, value });
            }
        }
        if !(0.0..0.5).contains(&self.edge_margin) {
            return Err(EventConfigError::EdgeMargin(self.edge_margin));
        }
        if self.min_hits == 0 {
            return Err(EventConfigError::MinHits);
        }
        Ok(())
    }

    /// `base` with the settings that must agree with this engine: the same
    /// `min_hits`, and `max_lost_s = end_after_s`. A tracker that kept lost
    /// tracks longer would re-find objects whose event already ended (and
    /// stay silent about them, since an id gets one event); one that dropped
    /// them sooner would end events before `end_after_s`.
    pub fn tracker_config(&self, base: TrackerConfig) -> TrackerConfig {
        TrackerConfig {
            min_hits: self.min_hits,
            max_lost_s: self.end_after_s,
            ..base
        }
    }

    /// Snapshot quality of a box: `score × clipped area`, times
    /// [`EDGE_PENALTY`] if the box is within `edge_margin` of a frame edge.
    pub fn snapshot_quality(&self, bbox: &BBox, score: f32, frame_w: u32, frame_h: u32) -> f32 {
        let (w, h) = (frame_w as f32, frame_h as f32);
        let clipped = bbox.clamp(w, h);
        let (mx, my) = (self.edge_margin * w, self.edge_margin * h);
        let touches = bbox.x1 <= mx || bbox.y1 <= my || bbox.x2 >= w - mx || bbox.y2 >= h - my;
        let q = score.max(0.0) * clipped.area();
        let q = if touches { q * EDGE_PENALTY } else { q };
        if q.is_finite() { q } else { 0.0 }
    }
}

/// What an action tells the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    New,
    Update,
    End,
}

/// Why an action was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// New: the track was confirmed.
    Confirmed,
    /// Update: a materially better snapshot.
    BetterSnapshot,
    /// End: unmatched for `end_after_s`.
    Lost,
    /// End: the tracker stopped reporting the track before it had been
    /// lost for `end_after_s` (tracker reset, or a shorter `max_lost_s`).
    Dropped,
    /// End: [`EventEngine::finish`] (shutdown, all inputs ended).
    Finished,
    /// Update: a scene rule raised an alert for this object
    /// ([`EventEngine::alert`]).
    Alert,
    /// Update: the object just became stationary (`quiet`, see
    /// [`EventEngine::on_frame_quiet`]); the last update until it moves.
    Stationary,
}

/// The chosen view of an object: which frame, which box, how good.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotChoice<S> {
    pub handle: S,
    /// Box in pixels of that frame.
    pub bbox: BBox,
    pub score: f32,
    /// Media time of that frame.
    pub frame_t: f64,
    /// The quality it was chosen by (see [`EventConfig::snapshot_quality`]).
    pub quality: f32,
    pub frame_size: (u32, u32),
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct EventAction<S> {
    pub kind: EventKind,
    pub reason: Reason,
    pub track_id: u64,
    pub class_id: u32,
    /// Score of the latest matched detection.
    pub score: f32,
    /// Best score over the whole track, tentative frames included.
    pub top_score: f32,
    /// First time the object was seen (the track's first detection).
    pub start_t: f64,
    /// Last time the object was seen; `Some` on End only.
    pub end_t: Option<f64>,
    /// Media time of the frame `bbox` comes from (the latest matched frame).
    pub frame_t: f64,
    /// Latest matched box, pixels of a `frame_size` frame.
    pub bbox: BBox,
    pub frame_size: (u32, u32),
    /// The best snapshot, when it is new since the last one sent.
    pub snapshot: Option<SnapshotChoice<S>>,
    /// Riders seen on the object so far: the largest count reported for its
    /// track (never decreasing over the event; 0 for non-vehicles).
    pub riders: u32,
}

/// What the caller knows of each live track beyond its [`TrackView`], for
/// [`EventEngine::on_frame_with`].
#[derive(Clone, Copy)]
pub struct TrackFacts<'a> {
    /// The track is stationary (see [`EventEngine::on_frame_quiet`]).
    pub quiet: &'a dyn Fn(u64) -> bool,
    /// Its rider count (see the module docs).
    pub riders: &'a dyn Fn(u64) -> u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not (yet) an event: tentative, or confirmed but not matched since.
    Pending,
    Open,
    /// Ended; kept as a tombstone while the track lives so it cannot reopen.
    Closed,
}

#[derive(Clone, Debug)]
struct Entry<S> {
    phase: Phase,
    class_id: u32,
    start_t: f64,
    top_score: f32,
    last_score: f32,
    last_bbox: BBox,
    last_seen: f64,
    frame_size: (u32, u32),
    best: Option<SnapshotChoice<S>>,
    /// `best` differs from what was last sent.
    best_unsent: bool,
    /// Quality of the last sent snapshot.
    sent_quality: f32,
    last_msg_t: f64,
    updates: u32,
    /// The current quiet (stationary) spell has been announced.
    quiet_announced: bool,
    /// Reported by the tracker in the current frame.
    present: bool,
    /// Largest rider count reported for the track.
    riders: u32,
}

impl<S: Clone> Entry<S> {
    fn new(tv: &TrackView, frame_size: (u32, u32)) -> Self {
        Self {
            phase: Phase::Pending,
            class_id: tv.class_id,
            start_t: tv.first_seen,
            top_score: 0.0,
            last_score: tv.score,
            last_bbox: tv.bbox,
            last_seen: tv.last_seen,
            frame_size,
            best: None,
            best_unsent: false,
            sent_quality: 0.0,
            last_msg_t: f64::NEG_INFINITY,
            updates: 0,
            quiet_announced: false,
            present: true,
            riders: 0,
        }
    }

    fn action(
        &self,
        kind: EventKind,
        reason: Reason,
        track_id: u64,
        end_t: Option<f64>,
        snapshot: Option<SnapshotChoice<S>>,
    ) -> EventAction<S> {
        EventAction {
            kind,
            reason,
            track_id,
            class_id: self.class_id,
            score: self.last_score,
            top_score: self.top_score,
            start_t: self.start_t,
            end_t,
            frame_t: self.last_seen,
            bbox: self.last_bbox,
            frame_size: self.frame_size,
            snapshot,
            riders: self.riders,
        }
    }

    /// The best snapshot if it is unsent and at least `1 + improvement`
    /// times the last sent quality.
    fn material_snapshot(&self, improvement: f32) -> Option<&SnapshotChoice<S>> {
        let best = self.best.as_ref()?;
        (self.best_unsent && best.quality >= self.sent_quality * (1.0 + improvement))
            .then_some(best)
    }

    /// Marks `best` as sent and returns it for an action.
    fn send_best(&mut self) -> Option<SnapshotChoice<S>> {
        let best = self.best.clone()?;
        self.sent_quality = best.quality;
        self.best_unsent = false;
        Some(best)
    }

    fn close(&mut self, t: f64, reason: Reason, id: u64, improvement: f32) -> EventAction<S> {
        let snap = if self.material_snapshot(improvement).is_some() {
            self.send_best()
        } else {
            None
        };
        let end_t = self.last_seen.min(t);
        let action = self.action(EventKind::End, reason, id, Some(end_t), snap);
        self.phase = Phase::Closed;
        // The handle may pin a whole frame; nothing will need it any more.
        self.best = None;
        action
    }
}

/// The event lifecycle of one camera's tracks.
#[derive(Clone, Debug)]
pub struct EventEngine<S: Clone> {
    cfg: EventConfig,
    /// Per live track id; BTreeMap so actions come out in id order.
    entries: BTreeMap<u64, Entry<S>>,
}

impl<S: Clone> EventEngine<S> {
    /// The config is used as given: call [`EventConfig::validate`] first.
    pub fn new(cfg: EventConfig) -> Self {
        Self {
            cfg,
            entries: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &EventConfig {
        &self.cfg
    }

    /// Number of events currently open (New sent, End not yet).
    pub fn open_events(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.phase == Phase::Open)
            .count()
    }

    /// Processes the tracker's output for the frame at media time `t` of
    /// size `frame_w × frame_h`. `tracks` must be all live tracks (as
    /// returned by `Tracker::update`): a track missing from the list counts
    /// as dropped. `snap` is cloned only when a track's best view improves.
    pub fn on_frame(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[TrackView],
        snap: &S,
    ) -> Vec<EventAction<S>> {
        self.on_frame_quiet(t, frame_w, frame_h, tracks, snap, &|_| false)
    }

    /// [`Self::on_frame`] for scenes with rules: `quiet(id)` says a track is
    /// stationary (see `rules`). When an open event's track turns quiet it
    /// gets exactly one `update` ([`Reason::Stationary`], with the best
    /// snapshot if that is a material improvement), so the centre learns it
    /// is stationary; then no `update` until it moves again (a New sent
    /// while quiet already says so). The announcement is a state change, so
    /// neither the rate limit nor the update cap holds it back. New and End
    /// always go. No riders: see [`Self::on_frame_with`].
    pub fn on_frame_quiet(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[TrackView],
        snap: &S,
        quiet: &dyn Fn(u64) -> bool,
    ) -> Vec<EventAction<S>> {
        let facts = TrackFacts {
            quiet,
            riders: &|_| 0,
        };
        self.on_frame_with(t, frame_w, frame_h, tracks, snap, facts)
    }

    /// [`Self::on_frame_quiet`] with each track's rider count as well
    /// (`facts.riders`; the events keep the largest, see the module docs).
    pub fn on_frame_with(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[TrackView],
        snap: &S,
        facts: TrackFacts<'_>,
    ) -> Vec<EventAction<S>> {
        let quiet = facts.quiet;
        let cfg = &self.cfg;
        let mut out = Vec::new();
        for e in self.entries.values_mut() {
            e.present = false;
        }
        for tv in tracks {
            let e = self
                .entries
                .entry(tv.id)
                .or_insert_with(|| Entry::new(tv, (frame_w, frame_h)));
            e.present = true;
            if e.phase == Phase::Closed {
                continue;
            }
            e.riders = e.riders.max((facts.riders)(tv.id));
            if tv.matched {
                e.last_score = tv.score;
                e.last_bbox = tv.bbox;
                e.last_seen = tv.last_seen;
                e.frame_size = (frame_w, frame_h);
                e.top_score = e.top_score.max(tv.score);
                let quality = cfg.snapshot_quality(&tv.bbox, tv.score, frame_w, frame_h);
                if e.best.as_ref().is_none_or(|b| quality > b.quality) {
                    e.best = Some(SnapshotChoice {
                        handle: snap.clone(),
                        bbox: tv.bbox,
                        score: tv.score,
                        frame_t: t,
                        quality,
                        frame_size: (frame_w, frame_h),
                    });
                    e.best_unsent = true;
                }
            }
            let is_quiet = quiet(tv.id);
            if !is_quiet {
                e.quiet_announced = false;
            }
            match e.phase {
                Phase::Pending => {
                    if tv.matched && tv.state == TrackState::Confirmed && tv.hits >= cfg.min_hits {
                        let snap = e.send_best();
                        out.push(e.action(EventKind::New, Reason::Confirmed, tv.id, None, snap));
                        e.phase = Phase::Open;
                        e.last_msg_t = t;
                        // A New sent while quiet already carries the state.
                        e.quiet_announced = is_quiet;
                    }
                }
                Phase::Open if tv.matched && is_quiet && !e.quiet_announced => {
                    let snap = if e.material_snapshot(cfg.snapshot_improvement).is_some() {
                        e.send_best()
                    } else {
                        None
                    };
                    out.push(e.action(EventKind::Update, Reason::Stationary, tv.id, None, snap));
                    e.quiet_announced = true;
                    e.last_msg_t = t;
                }
                Phase::Open if tv.matched => {
                    let due = t - e.last_msg_t >= cfg.update_min_interval_s;
                    if due
                        && !is_quiet
                        && e.updates < cfg.max_updates
                        && e.material_snapshot(cfg.snapshot_improvement).is_some()
                    {
                        let snap = e.send_best();
                        out.push(e.action(
                            EventKind::Update,
                            Reason::BetterSnapshot,
                            tv.id,
                            None,
                            snap,
                        ));
                        e.updates += 1;
                        e.last_msg_t = t;
                    }
                }
                Phase::Open => {
                    if t - e.last_seen >= cfg.end_after_s {
                        out.push(e.close(t, Reason::Lost, tv.id, cfg.snapshot_improvement));
                    }
                }
                Phase::Closed => {}
            }
        }
        // Tracks the tracker no longer reports: end open events, forget the rest.
        for (&id, e) in self.entries.iter_mut() {
            if !e.present && e.phase == Phase::Open {
                // With `max_lost_s == end_after_s` the tracker often drops a
                // track in the very frame its lost time first reaches the
                // limit; that is still an ordinary "lost" end.
                let reason = if t - e.last_seen >= cfg.end_after_s {
                    Reason::Lost
                } else {
                    Reason::Dropped
                };
                out.push(e.close(t, reason, id, cfg.snapshot_improvement));
            }
        }
        self.entries.retain(|_, e| e.present);
        out
    }

    /// An `update` carrying an alert for an open event, with the frame `snap`
    /// at time `t` as its snapshot (the alert's evidence: the latest matched
    /// box). `None` when the track has no open event. Alerts are rare (the
    /// rules engine rate-limits them), so neither the update cap nor the
    /// rate limit applies; the message does count as the event's latest.
    pub fn alert(&mut self, track_id: u64, t: f64, snap: &S) -> Option<EventAction<S>> {
        let quality = {
            let e = self.entries.get(&track_id)?;
            if e.phase != Phase::Open {
                return None;
            }
            self.cfg
                .snapshot_quality(&e.last_bbox, e.last_score, e.frame_size.0, e.frame_size.1)
        };
        let e = self.entries.get_mut(&track_id)?;
        let choice = SnapshotChoice {
            handle: snap.clone(),
            bbox: e.last_bbox,
            score: e.last_score,
            frame_t: t,
            quality,
            frame_size: e.frame_size,
        };
        e.last_msg_t = t;
        Some(e.action(
            EventKind::Update,
            Reason::Alert,
            track_id,
            None,
            Some(choice),
        ))
    }

    /// Ends every open event (shutdown, or all inputs ended) and forgets all
    /// tracks. `end_t` of each End is the object's last-seen time (capped at `t`).
    pub fn finish(&mut self, t: f64) -> Vec<EventAction<S>> {
        let improvement = self.cfg.snapshot_improvement;
        let out = self
            .entries
            .iter_mut()
            .filter(|(_, e)| e.phase == Phase::Open)
            .map(|(&id, e)| e.close(t, Reason::Finished, id, improvement))
            .collect();
        self.entries.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Detection;
    use crate::track::Tracker;

    const W: u32 = 1280;
    const H: u32 = 720;

    /// Builds the track view a tracker would report.
    fn view(
        id: u64,
        state: TrackState,
        matched: bool,
        hits: u32,
        t: f64,
        first: f64,
        last: f64,
    ) -> TrackView {
        TrackView {
            id,
            class_id: 0,
            state,
            bbox: BBox::new(100.0, 100.0, 200.0, 300.0),
            score: if matched { 0.8 } else { 0.0 },
            matched,
            hits,
            first_seen: first,
            last_seen: if matched { t } else { last },
        }
    }

    /// A scripted track: `seen[i]` = matched in frame i; frames at 5 fps.
    /// Mirrors the tracker's state machine (min_hits 3, max_lost 2 s).
    fn script(id: u64, seen: &[bool]) -> Vec<Option<TrackView>> {
        let mut out = Vec::new();
        let (mut hits, mut last, mut first, mut confirmed, mut alive) =
            (0, 0.0, None, false, false);
        for (i, &m) in seen.iter().enumerate() {
            let t = i as f64 * 0.2;
            if m {
                hits += 1;
                last = t;
                first.get_or_insert(t);
                alive = true;
                confirmed |= hits >= 3;
                let state = if confirmed {
                    TrackState::Confirmed
                } else {
                    TrackState::Tentative
                };
                out.push(Some(view(
                    id,
                    state,
                    true,
                    hits,
                    t,
                    first.unwrap_or(t),
                    last,
                )));
            } else if alive && confirmed && t - last <= 2.0 {
                out.push(Some(view(
                    id,
                    TrackState::Lost,
                    false,
                    hits,
                    t,
                    first.unwrap_or(t),
                    last,
                )));
            } else {
                alive = false;
                out.push(None);
            }
        }
        out
    }

    fn kinds<S>(actions: &[EventAction<S>]) -> Vec<EventKind> {
        actions.iter().map(|a| a.kind).collect()
    }

    /// Runs frames of views through an engine; snapshot handle = frame index.
    fn run(
        engine: &mut EventEngine<usize>,
        frames: &[Vec<TrackView>],
        dt: f64,
    ) -> Vec<EventAction<usize>> {
        let mut all = Vec::new();
        for (i, tracks) in frames.iter().enumerate() {
            all.extend(engine.on_frame(i as f64 * dt, W, H, tracks, &i));
        }
        all
    }

    #[test]
    fn defaults_validate_and_align_tracker() {
        let cfg = EventConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        let tc = cfg.tracker_config(TrackerConfig::default());
        assert_eq!((tc.min_hits, tc.max_lost_s), (3, 2.0));
        assert!(
            EventConfig {
                edge_margin: 0.6,
                ..cfg
            }
            .validate()
            .is_err()
        );
        assert!(
            EventConfig {
                end_after_s: f64::NAN,
                ..cfg
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn one_new_one_end_per_object() {
        // 20 matched frames, then gone: New at frame 2 (3rd hit), End once
        // lost for 2 s, with end_t = last seen.
        let mut seen = vec![true; 20];
        seen.extend(vec![false; 20]);
        let frames: Vec<Vec<TrackView>> = script(7, &seen)
            .into_iter()
            .map(|v| v.into_iter().collect())
            .collect();
        let mut eng = EventEngine::new(EventConfig::default());
        let acts = run(&mut eng, &frames, 0.2);
        assert_eq!(kinds(&acts), [EventKind::New, EventKind::End]);
        let (new, end) = (&acts[0], &acts[1]);
        assert_eq!(
            (new.track_id, new.reason, new.end_t),
            (7, Reason::Confirmed, None)
        );
        assert!((new.frame_t - 0.4).abs() < 1e-9);
        assert_eq!(new.start_t, 0.0);
        assert!(new.snapshot.is_some());
        assert_eq!(end.reason, Reason::Lost);
        assert!((end.end_t.unwrap_or(-1.0) - 3.8).abs() < 1e-9);
        assert!(
            end.snapshot.is_none(),
            "nothing better than the sent snapshot"
        );
        assert_eq!(eng.open_events(), 0);
    }

    #[test]
    fn flicker_produces_nothing() {
        // Tentative tracks that never reach min_hits, then vanish.
        let seen = [true, false, true, true, false, false, true, false];
        let mut frames: Vec<Vec<TrackView>> = vec![Vec::new(); seen.len()];
        let mut id = 0;
        let mut hits = 0;
        for (i, &m) in seen.iter().enumerate() {
            if m {
                if hits == 0 {
                    id += 1;
                }
                hits += 1;
                let t = i as f64 * 0.2;
                frames[i].push(view(id, TrackState::Tentative, true, hits, t, t, t));
            } else {
                hits = 0;
            }
        }
        let mut eng = EventEngine::new(EventConfig::default());
        assert!(run(&mut eng, &frames, 0.2).is_empty());
        assert!(eng.finish(10.0).is_empty());
    }

    #[test]
    fn lost_then_refound_within_end_after_does_not_end() {
        let mut seen = vec![true; 10];
        seen.extend(vec![false; 9]); // 1.8 s gap < 2.0
        seen.extend(vec![true; 10]);
        let frames: Vec<Vec<TrackView>> = script(1, &seen)
            .into_iter()
            .map(|v| v.into_iter().collect())
            .collect();
        let mut eng = EventEngine::new(EventConfig::default());
        let acts = run(&mut eng, &frames, 0.2);
        assert_eq!(kinds(&acts), [EventKind::New]);
        assert_eq!(eng.open_events(), 1);
        let fin = eng.finish(100.0);
        assert_eq!(kinds(&fin), [EventKind::End]);
        assert_eq!(fin[0].reason, Reason::Finished);
        assert!((fin[0].end_t.unwrap_or(-1.0) - 28.0 * 0.2).abs() < 1e-9);
    }

    #[test]
    fn dropped_track_ends_and_refound_closed_track_stays_silent() {
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        let mut acts = Vec::new();
        for i in 0..5u32 {
            let t = f64::from(i) * 0.2;
            acts.extend(eng.on_frame(
                t,
                W,
                H,
                &[view(3, TrackState::Confirmed, true, i + 1, t, 0.0, t)],
                &0,
            ));
        }
        // The tracker drops it (absent from the list).
        acts.extend(eng.on_frame(1.0, W, H, &[], &0));
        assert_eq!(kinds(&acts), [EventKind::New, EventKind::End]);
        assert_eq!(acts[1].reason, Reason::Dropped);
        assert!((acts[1].end_t.unwrap_or(-1.0) - 0.8).abs() < 1e-9);

        // Lost-ended event whose track comes back with the same id: no second New.
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        let mut acts = Vec::new();
        for i in 0..40u32 {
            let t = f64::from(i) * 0.2;
            let tv = if (5..20).contains(&i) {
                view(4, TrackState::Lost, false, 5, t, 0.0, 0.8)
            } else {
                view(4, TrackState::Confirmed, true, i + 1, t, 0.0, t)
            };
            acts.extend(eng.on_frame(t, W, H, &[tv], &0));
        }
        assert_eq!(kinds(&acts), [EventKind::New, EventKind::End]);
        assert!(
            eng.finish(10.0).is_empty(),
            "closed event must not end twice"
        );
    }

    #[test]
    fn updates_are_material_rate_limited_and_capped() {
        // Box grows 2% in area every frame (64% per 5 s) for 60 s: a material
        // improvement is always pending, so only the rate limit and the cap
        // hold updates back.
        let cfg = EventConfig::default();
        let mut eng = EventEngine::<usize>::new(cfg.clone());
        let mut acts = Vec::new();
        let mut side = 20.0f32;
        for i in 0..300u32 {
            let t = f64::from(i) * 0.2;
            side *= 1.01;
            let state = if i >= 2 {
                TrackState::Confirmed
            } else {
                TrackState::Tentative
            };
            let mut tv = view(1, state, true, i + 1, t, 0.0, t);
            tv.bbox = BBox::new(100.0, 50.0, 100.0 + side, 50.0 + side);
            acts.extend(eng.on_frame(t, W, H, &[tv], &(i as usize)));
        }
        let k = kinds(&acts);
        assert_eq!(k[0], EventKind::New);
        let updates: Vec<&EventAction<usize>> = acts
            .iter()
            .filter(|a| a.kind == EventKind::Update)
            .collect();
        assert_eq!(updates.len(), cfg.max_updates as usize);
        let mut prev_t = acts[0].frame_t;
        let mut prev_q = acts[0].snapshot.as_ref().map_or(0.0, |s| s.quality);
        for u in &updates {
            assert!(
                u.frame_t - prev_t >= cfg.update_min_interval_s - 1e-9,
                "rate limit"
            );
            let s = u.snapshot.as_ref().expect("update carries its snapshot");
            assert!(s.quality >= prev_q * 1.3, "material improvement");
            assert_eq!(u.reason, Reason::BetterSnapshot);
            prev_t = u.frame_t;
            prev_q = s.quality;
        }
        assert_eq!(k.len(), 1 + cfg.max_updates as usize);
        // The improvement held back by the cap is delivered with the End.
        let fin = eng.finish(60.0);
        assert_eq!(kinds(&fin), [EventKind::End]);
        let s = fin[0]
            .snapshot
            .as_ref()
            .expect("capped improvement sent at End");
        assert_eq!(s.handle, 299);
    }

    #[test]
    fn becoming_stationary_is_announced_once_then_updates_stop() {
        // A growing box (a material improvement always pending) that is
        // quiet (stationary) in frames 50..150, moves in 150..200 and is
        // quiet again from 200. Each quiet spell gets exactly one update
        // with Reason::Stationary, even past the update cap, and no
        // BetterSnapshot update inside a spell.
        let cfg = EventConfig {
            max_updates: 2,
            ..EventConfig::default()
        };
        let mut eng = EventEngine::<usize>::new(cfg.clone());
        let quiet_at = |i: u32| (50..150).contains(&i) || i >= 200;
        let mut acts = Vec::new();
        let mut side = 20.0f32;
        for i in 0..300u32 {
            let t = f64::from(i) * 0.2;
            side *= 1.01;
            let state = if i >= 2 {
                TrackState::Confirmed
            } else {
                TrackState::Tentative
            };
            let mut tv = view(1, state, true, i + 1, t, 0.0, t);
            tv.bbox = BBox::new(100.0, 50.0, 100.0 + side, 50.0 + side);
            let q = quiet_at(i);
            for a in eng.on_frame_quiet(t, W, H, &[tv], &(i as usize), &|_| q) {
                acts.push((i, a));
            }
        }
        let stationary: Vec<u32> = acts
            .iter()
            .filter(|(_, a)| a.reason == Reason::Stationary)
            .map(|(i, a)| {
                assert_eq!(a.kind, EventKind::Update);
                *i
            })
            .collect();
        assert_eq!(stationary, [50, 200], "one announcement per quiet spell");
        assert!(
            acts.iter()
                .filter(|(_, a)| a.reason == Reason::BetterSnapshot)
                .all(|(i, _)| !quiet_at(*i)),
            "no snapshot update while quiet: {:?}",
            acts.iter().map(|(i, a)| (i, a.reason)).collect::<Vec<_>>()
        );
        // A New sent while already quiet carries the state: no extra update.
        let mut eng = EventEngine::<usize>::new(cfg);
        let mut n = 0;
        for i in 0..20u32 {
            let t = f64::from(i) * 0.2;
            let tv = view(2, TrackState::Confirmed, true, i + 3, t, 0.0, t);
            n += eng
                .on_frame_quiet(t, W, H, &[tv], &0, &|_| true)
                .iter()
                .filter(|a| a.kind == EventKind::Update)
                .count();
        }
        assert_eq!(n, 0, "quiet from the start: the New says so, no update");
    }

    #[test]
    fn small_improvements_do_not_update() {
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        let mut acts = Vec::new();
        for i in 0..200u32 {
            let t = f64::from(i) * 0.2;
            let mut tv = view(
                1,
                if i >= 2 {
                    TrackState::Confirmed
                } else {
                    TrackState::Tentative
                },
                true,
                i + 1,
                t,
                0.0,
                t,
            );
            // Score creeps from 0.50 to 0.60 (< 30% better overall).
            tv.score = 0.5 + 0.1 * (i as f32 / 200.0);
            acts.extend(eng.on_frame(t, W, H, &[tv], &(i as usize)));
        }
        assert_eq!(kinds(&acts), [EventKind::New]);
        let fin = eng.finish(40.0);
        assert!(
            fin[0].snapshot.is_none(),
            "immaterial improvement is not re-sent at End"
        );
    }

    #[test]
    fn end_carries_material_snapshot_held_back_by_rate_limit() {
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        let mut acts = Vec::new();
        for i in 0..6u32 {
            let t = f64::from(i) * 0.2;
            let mut tv = view(
                1,
                if i >= 2 {
                    TrackState::Confirmed
                } else {
                    TrackState::Tentative
                },
                true,
                i + 1,
                t,
                0.0,
                t,
            );
            tv.score = if i == 5 { 0.95 } else { 0.4 };
            acts.extend(eng.on_frame(t, W, H, &[tv], &(i as usize)));
        }
        assert_eq!(kinds(&acts), [EventKind::New]);
        let fin = eng.finish(2.0);
        let snap = fin[0].snapshot.as_ref().expect("unsent better snapshot");
        assert_eq!((snap.handle, snap.frame_t), (5, 1.0));
    }

    #[test]
    fn edge_penalty_prefers_fully_visible_view() {
        let cfg = EventConfig::default();
        let mut eng = EventEngine::<&str>::new(cfg.clone());
        // Frame 0: larger box cut by the left edge (quality 0.9*150*200*0.5).
        // Frames 1-2: smaller, fully visible box (0.9*130*180), which wins.
        let boxes = [
            BBox::new(0.0, 100.0, 150.0, 300.0),
            BBox::new(300.0, 100.0, 430.0, 280.0),
            BBox::new(300.0, 100.0, 430.0, 280.0),
        ];
        let names = ["edge", "full", "full-again"];
        let mut acts = Vec::new();
        for (i, b) in boxes.iter().enumerate() {
            let t = i as f64 * 0.2;
            let mut tv = view(
                9,
                if i == 2 {
                    TrackState::Confirmed
                } else {
                    TrackState::Tentative
                },
                true,
                i as u32 + 1,
                t,
                0.0,
                t,
            );
            tv.bbox = *b;
            tv.score = 0.9;
            acts.extend(eng.on_frame(t, W, H, &[tv], &names[i]));
        }
        assert_eq!(kinds(&acts), [EventKind::New]);
        let s = acts[0].snapshot.as_ref().expect("New carries a snapshot");
        assert_eq!(s.handle, "full", "first equal-quality view is kept");
        // Without the penalty the edge box would have won.
        assert!(0.9 * boxes[0].area() > 0.9 * boxes[1].area());
        assert!(
            cfg.snapshot_quality(&boxes[0], 0.9, W, H) < cfg.snapshot_quality(&boxes[1], 0.9, W, H)
        );
        // Right/bottom edges and margins count too.
        let q = |b: BBox| cfg.snapshot_quality(&b, 1.0, W, H);
        assert_eq!(
            q(BBox::new(1000.0, 500.0, 1275.0, 600.0)),
            0.5 * 275.0 * 100.0
        );
        assert_eq!(
            q(BBox::new(1000.0, 500.0, 1200.0, 715.0)),
            0.5 * 200.0 * 215.0
        );
        assert_eq!(q(BBox::new(100.0, 100.0, 200.0, 200.0)), 100.0 * 100.0);
    }

    #[test]
    fn finish_ends_all_open_events_only() {
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        for i in 0..4u32 {
            let t = f64::from(i) * 0.2;
            let tracks = [
                view(
                    1,
                    if i >= 2 {
                        TrackState::Confirmed
                    } else {
                        TrackState::Tentative
                    },
                    true,
                    i + 1,
                    t,
                    0.0,
                    t,
                ),
                view(
                    2,
                    if i >= 2 {
                        TrackState::Confirmed
                    } else {
                        TrackState::Tentative
                    },
                    true,
                    i + 1,
                    t,
                    0.0,
                    t,
                ),
                view(3, TrackState::Tentative, i == 3, 1, t, t, t), // just appeared
            ];
            eng.on_frame(t, W, H, &tracks, &0);
        }
        assert_eq!(eng.open_events(), 2);
        let fin = eng.finish(0.8);
        assert_eq!(kinds(&fin), [EventKind::End, EventKind::End]);
        assert_eq!(fin.iter().map(|a| a.track_id).collect::<Vec<_>>(), [1, 2]);
        assert!(fin.iter().all(|a| a.reason == Reason::Finished));
        assert!(
            fin.iter()
                .all(|a| (a.end_t.unwrap_or(-1.0) - 0.6).abs() < 1e-9)
        );
        assert!(eng.finish(1.0).is_empty());
        assert_eq!(eng.open_events(), 0);
    }

    #[test]
    fn message_count_bounded_over_long_run() {
        // 1000 frames; the object flickers in and out (gaps < end_after_s)
        // with fluctuating score and size.
        let cfg = EventConfig::default();
        let mut eng = EventEngine::<usize>::new(cfg.clone());
        let mut s: u64 = 42;
        let mut rnd = || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 33) as f32 / (1u64 << 31) as f32
        };
        let mut acts = Vec::new();
        let (mut hits, mut last) = (0u32, 0.0);
        for i in 0..1000usize {
            let t = i as f64 * 0.2;
            let matched = i < 3 || rnd() > 0.3;
            if matched {
                hits += 1;
                last = t;
            }
            let state = match (hits >= 3, matched) {
                (false, _) => TrackState::Tentative,
                (true, true) => TrackState::Confirmed,
                (true, false) => TrackState::Lost,
            };
            let mut tv = view(1, state, matched, hits, t, 0.0, last);
            if matched {
                tv.score = 0.3 + 0.7 * rnd();
                let side = 20.0 + 400.0 * rnd();
                tv.bbox = BBox::new(10.0 + 800.0 * rnd(), 10.0 + 200.0 * rnd(), 0.0, 0.0);
                tv.bbox.x2 = tv.bbox.x1 + side;
                tv.bbox.y2 = tv.bbox.y1 + side;
            }
            acts.extend(eng.on_frame(t, W, H, &[tv], &i));
        }
        acts.extend(eng.finish(200.0));
        let k = kinds(&acts);
        assert_eq!(k.iter().filter(|&&x| x == EventKind::New).count(), 1);
        assert_eq!(k.iter().filter(|&&x| x == EventKind::End).count(), 1);
        let updates = k.iter().filter(|&&x| x == EventKind::Update).count();
        assert!(updates <= cfg.max_updates as usize);
        assert!(acts.len() <= 2 + cfg.max_updates as usize);
    }

    /// Tracker + EventEngine on a scripted 5 fps detector output.
    #[test]
    fn integration_tracker_and_events() {
        let ecfg = EventConfig::default();
        let mut tracker = Tracker::new(ecfg.tracker_config(TrackerConfig::default()));
        let mut eng = EventEngine::<usize>::new(ecfg);
        let d = |class_id: u32, score: f32, x: f32, y: f32, w: f32, h: f32| Detection {
            class_id,
            score,
            bbox: BBox::new(x, y, x + w, y + h),
        };
        let mut acts = Vec::new();
        for i in 0..80usize {
            let t = i as f64 * 0.2;
            let mut dets = Vec::new();
            // A person walking right, t = 0 .. 6 s, missed at frames 10-11
            // and blurred (low score) at frame 20.
            if i <= 30 && i != 10 && i != 11 {
                let score = if i == 20 { 0.3 } else { 0.85 };
                dets.push(d(0, score, 50.0 + 25.0 * i as f32, 300.0, 60.0, 150.0));
            }
            // A car driving left, t = 2 .. 10 s.
            if (10..=50).contains(&i) {
                let k = (i - 10) as f32;
                dets.push(d(2, 0.9, 1100.0 - 20.0 * k, 450.0, 160.0, 90.0));
            }
            // Flicker: single-frame false positives.
            if i % 13 == 5 {
                dets.push(d(0, 0.7, 600.0, 50.0, 30.0, 30.0));
            }
            let views = tracker.update(t, &dets);
            acts.extend(eng.on_frame(t, W, H, &views, &i));
        }
        acts.extend(eng.finish(16.0));
        let news: Vec<&EventAction<usize>> =
            acts.iter().filter(|a| a.kind == EventKind::New).collect();
        let ends: Vec<&EventAction<usize>> =
            acts.iter().filter(|a| a.kind == EventKind::End).collect();
        assert_eq!(news.len(), 2, "{acts:#?}");
        assert_eq!(ends.len(), 2, "{acts:#?}");
        let person = news.iter().find(|a| a.class_id == 0).expect("person event");
        let car = news.iter().find(|a| a.class_id == 2).expect("car event");
        assert!((person.frame_t - 0.4).abs() < 1e-9, "New on 3rd hit");
        assert!((car.frame_t - 2.4).abs() < 1e-9);
        for (new, last_seen) in [(person, 6.0), (car, 10.0)] {
            let end = ends
                .iter()
                .find(|a| a.track_id == new.track_id)
                .expect("paired End");
            assert_eq!(end.reason, Reason::Lost);
            assert!(
                (end.end_t.unwrap_or(-1.0) - last_seen).abs() < 1e-9,
                "{end:?}"
            );
            assert_eq!(end.start_t, new.start_t);
        }
        assert!(
            acts.iter()
                .all(|a| a.kind != EventKind::Update || a.snapshot.is_some())
        );
    }

    /// A motorbike seen with 1 rider, then 2, then (passenger hidden, or
    /// the person box missed) 1 or 0 again, and a pedestrian beside it,
    /// through the tracker and the engine: the bike's messages never lose
    /// a rider and its `end` says 2; the pedestrian's say 0.
    #[test]
    fn the_event_carries_the_most_riders_seen() {
        let ecfg = EventConfig {
            update_min_interval_s: 0.0,
            snapshot_improvement: 0.0,
            ..EventConfig::default()
        };
        let mut tracker = Tracker::new(ecfg.tracker_config(TrackerConfig::default()));
        let mut eng = EventEngine::<usize>::new(ecfg);
        let bike = |i: usize| Detection {
            class_id: 3,
            score: 0.8,
            // Growing as it comes closer: every frame a better snapshot.
            bbox: BBox::new(
                100.0 + 20.0 * i as f32,
                300.0,
                200.0 + 24.0 * i as f32,
                380.0,
            ),
        };
        let walker = |i: usize| Detection {
            class_id: 0,
            score: 0.9,
            bbox: BBox::new(900.0, 200.0 + 4.0 * i as f32, 940.0, 300.0 + 4.0 * i as f32),
        };
        let riders = [1, 1, 1, 2, 2, 1, 0, 1, 1, 1];
        let mut acts = Vec::new();
        for (i, &n) in riders.iter().enumerate() {
            let t = i as f64 * 0.2;
            let views = tracker.update_with_riders(t, &[bike(i), walker(i)], &[n, 0]);
            let facts = TrackFacts {
                quiet: &|_| false,
                riders: &|id| tracker.riders(id),
            };
            acts.extend(eng.on_frame_with(t, W, H, &views, &i, facts));
        }
        acts.extend(eng.finish(2.0));
        let of = |class_id: u32| -> Vec<(EventKind, u32)> {
            acts.iter()
                .filter(|a| a.class_id == class_id)
                .map(|a| (a.kind, a.riders))
                .collect()
        };
        let bike_msgs = of(3);
        assert_eq!(
            bike_msgs.first(),
            Some(&(EventKind::New, 1)),
            "{bike_msgs:?}"
        );
        assert_eq!(
            bike_msgs.last(),
            Some(&(EventKind::End, 2)),
            "{bike_msgs:?}"
        );
        assert!(
            bike_msgs.windows(2).all(|w| w[0].1 <= w[1].1),
            "{bike_msgs:?}"
        );
        assert!(
            bike_msgs.contains(&(EventKind::Update, 2)),
            "an update after the second rider says 2: {bike_msgs:?}"
        );
        let walker_msgs = of(0);
        assert_eq!(
            walker_msgs.iter().map(|m| m.0).collect::<Vec<_>>(),
            [EventKind::New, EventKind::End]
        );
        assert!(walker_msgs.iter().all(|m| m.1 == 0), "{walker_msgs:?}");
    }

    /// The engine itself never lowers an event's count, whatever it is
    /// told (a tracker replaced under it, a caller's own policy), and an
    /// alert update carries the count too.
    #[test]
    fn an_events_rider_count_never_decreases() {
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        let frames = script(7, &[true; 8]);
        let told = [0, 1, 3, 0, 2, 0, 1, 0];
        let mut acts = Vec::new();
        for (i, (fv, &n)) in frames.iter().zip(&told).enumerate() {
            let views: Vec<TrackView> = fv.iter().cloned().collect();
            let facts = TrackFacts {
                quiet: &|_| false,
                riders: &move |_| n,
            };
            acts.extend(eng.on_frame_with(i as f64 * 0.2, W, H, &views, &i, facts));
            if i == 5 {
                acts.extend(eng.alert(7, i as f64 * 0.2, &i));
            }
        }
        acts.extend(eng.finish(2.0));
        let got: Vec<(EventKind, u32)> = acts.iter().map(|a| (a.kind, a.riders)).collect();
        assert_eq!(
            got,
            [
                (EventKind::New, 3),
                (EventKind::Update, 3),
                (EventKind::End, 3)
            ]
        );
        // Without facts (`on_frame`, `on_frame_quiet`) every count is 0.
        let mut eng = EventEngine::<usize>::new(EventConfig::default());
        let frames: Vec<Vec<TrackView>> = script(1, &[true; 4])
            .into_iter()
            .map(|v| v.into_iter().collect())
            .collect();
        let mut acts = run(&mut eng, &frames, 0.2);
        acts.extend(eng.finish(1.0));
        assert_eq!(kinds(&acts), [EventKind::New, EventKind::End]);
        assert!(acts.iter().all(|a| a.riders == 0), "{acts:?}");
    }
}
