//! Scene rules: zones, tripwire lines, loitering, crowding, stationary
//! objects and their counters.
//!
//! Like `track` and `events` this module is pure: it sees the tracker's
//! [`TrackView`]s and the media time `t`, never a clock or a socket. The
//! caller (`node`) publishes what it returns.
//!
//! Geometry is normalised to 0..1 of the frame (x right, y down). An
//! object's position is its **foot point**, the bottom-centre of its box:
//! that is where it touches the ground, so zones drawn on the pavement and
//! lines drawn across a road mean the same thing at any distance.
//!
//! Only confirmed, matched tracks move an object in zones and count as
//! stationary (tentative tracks may be flicker; a lost track's box is only
//! a prediction); line crossings of tentative tracks wait for confirmation.
//!
//! - **Zones**: an object counts as inside after `inertia` consecutive
//!   frames with its foot point in the polygon, and as outside again after
//!   `inertia` consecutive frames out of it, so an object standing on the
//!   edge does not flicker in and out. A zone may filter classes and
//!   ignore boxes smaller than `min_area` (fraction of the frame area).
//! - **Lines**: the side of the foot point is the sign of its distance to
//!   the line through A and B. A side only changes once the point is more
//!   than `hysteresis` away from the line for `inertia` matched frames, so
//!   jitter on the line and a box cut short for a frame are never counted;
//!   a side change counts as a crossing when the move passes between A and
//!   B. `forward` = from the left of A→B to its right as seen on screen
//!   (for A at the bottom and B at the top: moving right). Lines follow
//!   tentative tracks too; their crossings are held and counted when the
//!   track is confirmed (never, for flicker).
//! - **Hand-off** (`handoff_s` > 0): a track lost right before a line at an
//!   occluder and re-born as a new track right after it would cross
//!   nothing. A newborn's first side may therefore take over from a
//!   confirmed track of the same class lost before the newborn was first
//!   seen, at most `handoff_s` earlier, last seen on the other side within
//!   [`HANDOFF_MIN_GATE`] + `handoff_speed` × gap box heights, heights
//!   within [`HANDOFF_MAX_SCALE`], the move between them passing between A
//!   and B: that counts one crossing. Each lost track hands over once, and
//!   its side is cleared, so if the tracker re-finds it the crossing is not
//!   counted twice.
//! - **Loitering**: inside a zone for `loiter_s` → alert.
//! - **Crowding**: occupancy ≥ `crowd_min` for `crowd_for_s` → alert;
//!   it clears once occupancy has stayed below `crowd_min` for
//!   `crowd_clear_s` (time hysteresis), and can then alert again.
//! - **Stationary**: the box's centre stays within `stationary_tolerance`
//!   (fraction of the frame diagonal) of an anchor for `stationary_s` →
//!   the object is stationary until it moves beyond the tolerance again.
//!   A stationary object does not re-alert (`realert_s` repeats are held
//!   back while it stays put), but it can still raise its first alert of a
//!   rule: someone standing still at a gate must be able to loiter. The
//!   event engine announces the change with one `update` and then sends no
//!   more updates for it.
//! - **Alert hygiene**: every alert rule has a cooldown (no alert of that
//!   rule within its `cooldown_s`, or the global one, of its previous one)
//!   and, by default, fires at most once per object (`realert_s` allows
//!   repeats).
//!
//! This file holds the configuration, the alert and state types and the
//! engine, whose [`RulesEngine::on_frame`] runs one observer per rule in a
//! fixed order; each observer owns its state type in its own file:
//! `lines` (sides and crossings) with `handoff` (fragment hand-off),
//! `stationary`, `zones` (membership and entries), `loiter`, `crowding`;
//! `gate` is the alert hygiene, `counts` the counters and `geometry` the
//! shared geometry.

use std::collections::{BTreeMap, BTreeSet};

use crate::frame::BBox;
use crate::track::{TrackState, TrackView};

mod counts;
mod crowding;
mod gate;
mod geometry;
mod handoff;
mod lines;
mod loiter;
mod stationary;
mod zones;

pub use counts::{Counter, CountsReport, LineCounts, ZoneCounts};
pub use geometry::{foot_point, point_in_polygon};

use counts::ZoneTally;
use crowding::CrowdState;
use gate::{AlertGate, ObjectAlerts, Subject};
use handoff::Handoff;
use lines::LineState;
use stationary::Stillness;
use zones::ZoneMembership;

/// Invalid rule settings (the config module reports them with field names).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RulesError {
    #[error("{rule}: {problem}")]
    Invalid { rule: String, problem: String },
}

/// A point in normalised frame coordinates.
pub type Pt = (f32, f32);

/// A polygonal zone.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneRule {
    pub name: String,
    pub polygon: Vec<Pt>,
    /// Class ids counted; empty = all.
    pub classes: BTreeSet<u32>,
    /// Minimum box area as a fraction of the frame area.
    pub min_area: f32,
    /// Consecutive frames in (out) before an object counts as in (out).
    pub inertia: u32,
    /// Alert when an object stays inside this long.
    pub loiter_s: Option<f64>,
    /// Alert when at least this many objects are inside …
    pub crowd_min: Option<u32>,
    /// … for this long.
    pub crowd_for_s: f64,
    /// Occupancy below `crowd_min` this long clears a crowd.
    pub crowd_clear_s: f64,
    /// Cooldown of this zone's alerts; `None`: [`RulesConfig::cooldown_s`].
    pub cooldown_s: Option<f64>,
}

/// A tripwire from A to B.
#[derive(Clone, Debug, PartialEq)]
pub struct LineRule {
    pub name: String,
    pub a: Pt,
    pub b: Pt,
    /// Name of the left-to-right direction of A→B.
    pub forward: String,
    /// Name of the other direction.
    pub backward: String,
    pub classes: BTreeSet<u32>,
    /// Dead band either side of the line (normalised distance).
    pub hysteresis: f32,
    /// Matched frames beyond the band on a new side before the side
    /// changes (1 = at once).
    pub inertia: u32,
    /// A crossing in this direction (one of `forward`/`backward`) raises a
    /// `wrong_way` alert.
    pub alert_direction: Option<String>,
    /// Cooldown of this line's alerts; `None`: [`RulesConfig::cooldown_s`].
    pub cooldown_s: Option<f64>,
}

/// All rules of one camera.
#[derive(Clone, Debug, PartialEq)]
pub struct RulesConfig {
    pub zones: Vec<ZoneRule>,
    pub lines: Vec<LineRule>,
    /// Seconds without movement before an object is stationary; 0 = never.
    pub stationary_s: f64,
    /// Movement below this fraction of the frame diagonal is "no movement".
    pub stationary_tolerance: f32,
    /// No two alerts of one rule within this many seconds, unless the zone
    /// or line sets its own `cooldown_s`.
    pub cooldown_s: f64,
    /// `None`: at most one alert per object per rule; `Some(s)`: again after `s`.
    pub realert_s: Option<f64>,
    /// Fragment hand-off window for line counts, seconds; 0 = off. See
    /// [`RulesEngine`]'s module docs ("Lines").
    pub handoff_s: f64,
    /// Hand-off gate: how far (in box heights per second of the gap, plus
    /// [`HANDOFF_MIN_GATE`]) the new track may be from where the lost one
    /// was last seen.
    pub handoff_speed: f32,
}

/// Default [`LineRule::inertia`].
pub const DEFAULT_LINE_INERTIA: u32 = 2;

/// Hand-off gate at a zero gap, in box heights.
pub const HANDOFF_MIN_GATE: f32 = 0.5;
/// Hand-off: the two boxes' heights may differ at most by this factor.
pub const HANDOFF_MAX_SCALE: f32 = 1.5;

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            zones: Vec::new(),
            lines: Vec::new(),
            stationary_s: 60.0,
            stationary_tolerance: 0.02,
            cooldown_s: 10.0,
            realert_s: None,
            handoff_s: 2.0,
            handoff_speed: 1.0,
        }
    }
}

impl RulesConfig {
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.lines.is_empty()
    }

    /// Checks geometry and ranges; does no I/O.
    pub fn validate(&self) -> Result<(), RulesError> {
        let bad = |rule: &str, problem: String| RulesError::Invalid {
            rule: rule.to_string(),
            problem,
        };
        let unit = |p: &Pt| (0.0..=1.0).contains(&p.0) && (0.0..=1.0).contains(&p.1);
        let mut names = BTreeSet::new();
        for z in &self.zones {
            if !names.insert(z.name.as_str()) {
                return Err(bad(&z.name, "name used twice".into()));
            }
            if z.polygon.len() < 3 || !z.polygon.iter().all(unit) {
                return Err(bad(&z.name, "polygon needs >= 3 points within 0..1".into()));
            }
            if z.inertia == 0 {
                return Err(bad(&z.name, "inertia must be >= 1".into()));
            }
            check_cooldown(&z.name, z.cooldown_s)?;
        }
        for l in &self.lines {
            if !names.insert(l.name.as_str()) {
                return Err(bad(&l.name, "name used twice".into()));
            }
            if !unit(&l.a) || !unit(&l.b) || l.a == l.b {
                return Err(bad(
                    &l.name,
                    "a and b must be distinct points within 0..1".into(),
                ));
            }
            if l.forward == l.backward {
                return Err(bad(&l.name, "direction names must differ".into()));
            }
            if l.inertia == 0 {
                return Err(bad(&l.name, "inertia must be >= 1".into()));
            }
            if let Some(d) = &l.alert_direction
                && d != &l.forward
                && d != &l.backward
            {
                return Err(bad(
                    &l.name,
                    format!("alert_direction {d:?} is neither direction"),
                ));
            }
            check_cooldown(&l.name, l.cooldown_s)?;
        }
        check_cooldown("rules", Some(self.cooldown_s))?;
        if !(self.handoff_s.is_finite() && self.handoff_s >= 0.0) {
            return Err(bad(
                "rules",
                format!("handoff_s = {} must be finite and >= 0", self.handoff_s),
            ));
        }
        if !(self.handoff_speed.is_finite() && self.handoff_speed >= 0.0) {
            return Err(bad(
                "rules",
                format!(
                    "handoff_speed = {} must be finite and >= 0",
                    self.handoff_speed
                ),
            ));
        }
        Ok(())
    }
}

fn check_cooldown(rule: &str, v: Option<f64>) -> Result<(), RulesError> {
    match v {
        Some(c) if !(c.is_finite() && c >= 0.0) => Err(RulesError::Invalid {
            rule: rule.to_string(),
            problem: format!("cooldown_s = {c} must be finite and >= 0"),
        }),
        _ => Ok(()),
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    Loitering,
    WrongWay,
    Crowding,
    CrowdingCleared,
}

impl AlertKind {
    /// Wire name.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Loitering => "loitering",
            AlertKind::WrongWay => "wrong_way",
            AlertKind::Crowding => "crowding",
            AlertKind::CrowdingCleared => "crowding_cleared",
        }
    }
}

/// One alert raised in a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    /// Zone or line name.
    pub rule: String,
    /// The object, for per-object alerts (loitering, wrong way).
    pub track_id: Option<u64>,
    pub t: f64,
    /// Loitering: seconds inside the zone; crowding: seconds at/over `crowd_min`.
    pub dwell_s: Option<f64>,
    /// Wrong way: the direction name.
    pub direction: Option<String>,
    /// Crowding: zone occupancy (all counted classes).
    pub occupancy: Option<u32>,
}

/// Rule state of one object, for its event messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectRules {
    /// Zones it is in now (after inertia), in configuration order.
    pub current_zones: Vec<String>,
    /// Every zone it has entered during its life, in configuration order.
    pub entered_zones: Vec<String>,
    pub stationary: bool,
}

/// The frame the observers look at.
struct FrameCtx {
    /// Media time.
    t: f64,
    /// Frame width and height in pixels (at least 1).
    w: f32,
    h: f32,
    /// Frame diagonal in pixels.
    diag: f32,
}

impl FrameCtx {
    fn new(t: f64, frame_w: u32, frame_h: u32) -> Self {
        let (w, h) = (frame_w.max(1) as f32, frame_h.max(1) as f32);
        Self {
            t,
            w,
            h,
            diag: (w * w + h * h).sqrt(),
        }
    }
}

/// A track as the observers see it in one frame.
struct Sighting<'a> {
    tv: &'a TrackView,
    /// Its foot point, normalised.
    foot: Pt,
}

/// Where, when and how tall (box height, pixels) an object was last matched.
#[derive(Clone, Copy, Debug)]
struct LastMatch {
    foot: Pt,
    t: f64,
    h: f32,
}

impl LastMatch {
    /// Matched at `t` with box `bbox` and foot point `foot`.
    fn new(foot: Pt, bbox: &BBox, t: f64) -> Self {
        Self {
            foot,
            t,
            h: bbox.height(),
        }
    }
}

/// Rule state of one object (track).
#[derive(Clone, Debug)]
struct ObjState {
    class_id: u32,
    /// Media time of the track's first detection.
    first_seen: f64,
    /// Seen confirmed (and matched) at least once.
    confirmed: bool,
    last: LastMatch,
    /// Per zone, in configuration order.
    zones: Vec<ZoneMembership>,
    lines: LineState,
    still: Stillness,
    alerted: ObjectAlerts,
    /// Reported by the tracker in the current frame.
    present: bool,
}

impl ObjState {
    fn new(cfg: &RulesConfig, s: &Sighting, t: f64) -> Self {
        Self {
            class_id: s.tv.class_id,
            first_seen: s.tv.first_seen,
            confirmed: false,
            last: LastMatch::new(s.foot, &s.tv.bbox, t),
            zones: vec![ZoneMembership::default(); cfg.zones.len()],
            lines: LineState::new(cfg.lines.len()),
            still: Stillness::new(&s.tv.bbox, t),
            alerted: ObjectAlerts::new(),
            present: true,
        }
    }

    /// The object, for the alert gate.
    fn subject(&mut self) -> Subject<'_> {
        Subject {
            alerted: &mut self.alerted,
            stationary: self.still.stationary,
        }
    }
}

/// The rules of one camera's tracks.
#[derive(Clone, Debug)]
pub struct RulesEngine {
    cfg: RulesConfig,
    objs: BTreeMap<u64, ObjState>,
    /// Tracks that disappeared in the latest frame (their End may still need them).
    gone: BTreeMap<u64, ObjState>,
    /// Confirmed tracks the tracker dropped less than `handoff_s` after they
    /// were last seen: possible hand-off donors.
    recent: BTreeMap<u64, ObjState>,
    /// Per zone, in configuration order.
    crowds: Vec<CrowdState>,
    /// Cooldowns, and the alerts of the current frame.
    gate: AlertGate,
    /// Line counters, in configuration order.
    lines: Vec<LineCounts>,
    /// Zone counters, in configuration order.
    zone_tallies: Vec<ZoneTally>,
    interval_start: f64,
}

impl RulesEngine {
    /// The config is used as given: call [`RulesConfig::validate`] first.
    /// `t0` is the media time the first counts interval starts at.
    pub fn new(cfg: RulesConfig, t0: f64) -> Self {
        let nz = cfg.zones.len();
        Self {
            objs: BTreeMap::new(),
            gone: BTreeMap::new(),
            recent: BTreeMap::new(),
            crowds: vec![CrowdState::default(); nz],
            gate: AlertGate::new(cfg.realert_s),
            lines: cfg.lines.iter().map(LineCounts::new).collect(),
            zone_tallies: vec![ZoneTally::default(); nz],
            interval_start: t0,
            cfg,
        }
    }

    pub fn config(&self) -> &RulesConfig {
        &self.cfg
    }

    /// Start of the current counts interval.
    pub fn interval_start(&self) -> f64 {
        self.interval_start
    }

    /// Rule state of a live track, or of one that disappeared in the latest frame.
    pub fn object(&self, track_id: u64) -> Option<ObjectRules> {
        let o = self
            .objs
            .get(&track_id)
            .or_else(|| self.gone.get(&track_id))?;
        let names = |pred: &dyn Fn(&ZoneMembership) -> bool| {
            self.cfg
                .zones
                .iter()
                .zip(&o.zones)
                .filter(|(_, m)| pred(m))
                .map(|(z, _)| z.name.clone())
                .collect()
        };
        Some(ObjectRules {
            current_zones: names(&|m| m.inside),
            entered_zones: names(&|m| m.ever),
            stationary: o.still.stationary,
        })
    }

    /// Whether a track is stationary now.
    pub fn is_stationary(&self, track_id: u64) -> bool {
        self.objs.get(&track_id).is_some_and(|o| o.still.stationary)
    }

    /// Current occupancy of zone `i` per class.
    fn occupancy(&self, i: usize) -> BTreeMap<u32, u32> {
        let mut m = BTreeMap::new();
        for o in self.objs.values() {
            if o.zones.get(i).is_some_and(|z| z.inside) {
                *m.entry(o.class_id).or_insert(0) += 1;
            }
        }
        m
    }

    /// Processes all live tracks of the frame at media time `t`
    /// (`frame_w × frame_h` pixels). Returns the alerts raised.
    ///
    /// Per track, in the order given: lines (and their wrong-way alerts),
    /// stationary, zones, loitering; then hand-offs are settled, vanished
    /// tracks forgotten, and each zone's occupancy checked for crowding.
    pub fn on_frame(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[TrackView],
    ) -> Vec<Alert> {
        let frame = FrameCtx::new(t, frame_w, frame_h);
        self.gone.clear();
        for o in self.objs.values_mut() {
            o.present = false;
        }
        let mut handoff = Handoff::collect(&self.cfg, t, tracks, &self.objs, &self.recent);
        for tv in tracks {
            let s = Sighting {
                tv,
                foot: foot_point(&tv.bbox, frame_w, frame_h),
            };
            self.observe_track(&frame, &s, &mut handoff);
        }
        handoff.release(&mut self.objs, &mut self.recent);
        self.forget_absent(t);
        self.observe_occupancy(t);
        self.gate.take_raised()
    }

    /// One track of the frame. Lines follow every matched track, tentative
    /// ones too (their crossings wait for confirmation); stationary, zones
    /// and loitering only confirmed ones.
    fn observe_track(&mut self, frame: &FrameCtx, s: &Sighting, handoff: &mut Handoff) {
        let (cfg, tv) = (&self.cfg, s.tv);
        let o = self
            .objs
            .entry(tv.id)
            .or_insert_with(|| ObjState::new(cfg, s, frame.t));
        o.present = true;
        if !tv.matched || tv.state == TrackState::Lost {
            return;
        }
        o.last = LastMatch::new(s.foot, &tv.bbox, frame.t);
        let confirmed = tv.state == TrackState::Confirmed;
        let mut crossings = Vec::new();
        if confirmed && !o.confirmed {
            o.confirmed = true;
            crossings = o.lines.take_pending();
        }
        let first_seen = o.first_seen;
        o.lines
            .observe(&cfg.lines, frame, s, first_seen, handoff, &mut crossings);
        if !confirmed {
            o.lines.hold(crossings);
            return;
        }
        let gate = &mut self.gate;
        lines::count(
            cfg,
            &mut self.lines,
            gate,
            frame.t,
            tv,
            o.subject(),
            crossings,
        );
        o.still.observe(cfg, frame, &tv.bbox);
        zones::observe(&cfg.zones, frame, s, &mut o.zones, &mut self.zone_tallies);
        loiter::observe(cfg, gate, frame.t, tv.id, o);
    }

    /// Forgets tracks the tracker no longer reports: keeps them one frame
    /// (in `gone`), and confirmed ones as hand-off donors for `handoff_s`.
    fn forget_absent(&mut self, t: f64) {
        let ids: Vec<u64> = self
            .objs
            .iter()
            .filter(|(_, o)| !o.present)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(o) = self.objs.remove(&id) {
                if self.cfg.handoff_s > 0.0 && o.confirmed {
                    self.recent.insert(id, o.clone());
                }
                self.gone.insert(id, o);
            }
        }
        let window = self.cfg.handoff_s;
        self.recent.retain(|_, o| t - o.last.t <= window);
    }

    /// Each zone's occupancy after the frame: its peak, then crowding.
    fn observe_occupancy(&mut self, t: f64) {
        for (zi, z) in self.cfg.zones.iter().enumerate() {
            let occ: u32 = self.occupancy(zi).values().sum();
            self.zone_tallies[zi].see_occupancy(occ);
            let cooldown = z.cooldown_s.unwrap_or(self.cfg.cooldown_s);
            self.crowds[zi].observe(z, cooldown, &mut self.gate, t, occ);
        }
    }

    /// Whether a crowd is active in zone `name`.
    pub fn crowd_active(&self, name: &str) -> bool {
        self.cfg
            .zones
            .iter()
            .position(|z| z.name == name)
            .is_some_and(|i| self.crowds[i].active)
    }

    /// The counts of the interval ending at `t`; starts the next interval.
    pub fn take_counts(&mut self, t: f64) -> CountsReport {
        let zones = self
            .cfg
            .zones
            .iter()
            .zip(&self.zone_tallies)
            .enumerate()
            .map(|(i, (z, tally))| tally.report(&z.name, self.occupancy(i)))
            .collect();
        let report = CountsReport {
            start_t: self.interval_start,
            end_t: t,
            lines: self.lines.clone(),
            zones,
        };
        self.lines.iter_mut().for_each(LineCounts::reset_deltas);
        self.zone_tallies
            .iter_mut()
            .for_each(ZoneTally::reset_deltas);
        self.interval_start = t;
        report
    }
}

#[cfg(test)]
#[path = "rules/tests.rs"]
mod tests;
