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

use std::collections::{BTreeMap, BTreeSet};

use crate::frame::BBox;
use crate::track::{TrackState, TrackView};

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

/// A counter: cumulative since start and the delta of the current interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub total: u64,
    pub delta: u64,
}

impl Counter {
    fn add(&mut self) {
        self.total += 1;
        self.delta += 1;
    }
}

/// Counters of one line: class id → direction name → counter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineCounts {
    pub name: String,
    pub forward: String,
    pub backward: String,
    pub by_class: BTreeMap<u32, BTreeMap<String, Counter>>,
}

/// Counters of one zone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZoneCounts {
    pub name: String,
    /// Objects inside at the end of the interval, per class.
    pub occupancy: BTreeMap<u32, u32>,
    /// Highest total occupancy seen during the interval.
    pub peak: u32,
    /// Entries per class.
    pub entered: BTreeMap<u32, Counter>,
}

/// One interval's counts report.
#[derive(Clone, Debug, PartialEq)]
pub struct CountsReport {
    pub start_t: f64,
    pub end_t: f64,
    pub lines: Vec<LineCounts>,
    pub zones: Vec<ZoneCounts>,
}

#[derive(Clone, Debug, Default)]
struct ZoneMembership {
    inside: bool,
    /// Consecutive frames disagreeing with `inside`.
    streak: u32,
    /// First frame of the run that made it inside.
    run_start: f64,
    entered_at: f64,
    ever: bool,
}

#[derive(Clone, Debug)]
struct ObjState {
    class_id: u32,
    zones: Vec<ZoneMembership>,
    /// Per line: committed side (-1, +1, 0 unknown) and the foot point then.
    sides: Vec<(i8, Pt)>,
    /// Per line: a run on the other side (side, frames, the run's first foot).
    runs: Vec<(i8, u32, Pt)>,
    /// Per line: a side was ever committed (a hand-off is only for newborns).
    sided: Vec<bool>,
    /// Seen confirmed (and matched) at least once.
    confirmed: bool,
    /// Crossings seen while tentative: (line, forward?); counted on confirmation.
    pending: Vec<(usize, bool)>,
    /// Media time of the track's first detection.
    first_seen: f64,
    /// Last matched foot point, its time and box height (pixels).
    last_foot: Pt,
    last_match_t: f64,
    last_h: f32,
    anchor: (f32, f32),
    anchor_t: f64,
    stationary: bool,
    /// (rule kind, rule name) → time of the last alert for this object.
    alerted: BTreeMap<(AlertKind, String), f64>,
    present: bool,
}

#[derive(Clone, Debug)]
struct CrowdState {
    /// Since when occupancy has been >= crowd_min (None: below).
    over_since: Option<f64>,
    /// Since when occupancy has been below crowd_min while active.
    under_since: Option<f64>,
    active: bool,
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
    crowds: Vec<CrowdState>,
    /// Last alert time per (kind, rule name), for cooldowns.
    last_alert: BTreeMap<(AlertKind, String), f64>,
    lines: Vec<LineCounts>,
    zone_entered: Vec<BTreeMap<u32, Counter>>,
    zone_peak: Vec<u32>,
    interval_start: f64,
}

/// Signed distance of `p` to the line through `a`, `b` (positive: right of
/// A→B on screen, y pointing down).
fn side_dist(a: Pt, b: Pt, p: Pt) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt().max(f32::EPSILON);
    (dx * (p.1 - a.1) - dy * (p.0 - a.0)) / len
}

/// Whether the move from `p` to `q` (on opposite sides of the line through
/// A and B) passes between A and B.
fn crosses_segment(l: &LineRule, p: Pt, q: Pt) -> bool {
    let (d0, d1) = (side_dist(l.a, l.b, p), side_dist(l.a, l.b, q));
    if d0 == d1 {
        return false;
    }
    let k = d0 / (d0 - d1);
    let x = (p.0 + k * (q.0 - p.0), p.1 + k * (q.1 - p.1));
    let (dx, dy) = (l.b.0 - l.a.0, l.b.1 - l.a.1);
    let u = ((x.0 - l.a.0) * dx + (x.1 - l.a.1) * dy) / (dx * dx + dy * dy);
    (0.0..=1.0).contains(&u)
}

/// A possible hand-off donor (see [`RulesEngine`]).
struct Donor {
    id: u64,
    class_id: u32,
    foot: Pt,
    t: f64,
    h: f32,
    sides: Vec<i8>,
}

/// Even-odd point-in-polygon test.
pub fn point_in_polygon(poly: &[Pt], p: Pt) -> bool {
    let mut inside = false;
    let n = poly.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > p.1) != (yj > p.1) && p.0 < (xj - xi) * (p.1 - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Foot point (bottom-centre) of a pixel box, normalised.
pub fn foot_point(b: &BBox, w: u32, h: u32) -> Pt {
    let (w, h) = (w.max(1) as f32, h.max(1) as f32);
    (((b.x1 + b.x2) / 2.0) / w, b.y2 / h)
}

impl RulesEngine {
    /// The config is used as given: call [`RulesConfig::validate`] first.
    /// `t0` is the media time the first counts interval starts at.
    pub fn new(cfg: RulesConfig, t0: f64) -> Self {
        let lines = cfg
            .lines
            .iter()
            .map(|l| LineCounts {
                name: l.name.clone(),
                forward: l.forward.clone(),
                backward: l.backward.clone(),
                by_class: BTreeMap::new(),
            })
            .collect();
        let nz = cfg.zones.len();
        Self {
            crowds: (0..nz)
                .map(|_| CrowdState {
                    over_since: None,
                    under_since: None,
                    active: false,
                })
                .collect(),
            cfg,
            objs: BTreeMap::new(),
            gone: BTreeMap::new(),
            recent: BTreeMap::new(),
            last_alert: BTreeMap::new(),
            lines,
            zone_entered: vec![BTreeMap::new(); nz],
            zone_peak: vec![0; nz],
            interval_start: t0,
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
            stationary: o.stationary,
        })
    }

    /// Whether a track is stationary now.
    pub fn is_stationary(&self, track_id: u64) -> bool {
        self.objs.get(&track_id).is_some_and(|o| o.stationary)
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

    /// Cooldown and once-per-object checks; records the alert when allowed.
    /// `cooldown` is the rule's own cooldown or the global one.
    ///
    /// A stationary object may still raise its *first* alert of a rule (a
    /// person standing still at a gate is exactly what loitering is about);
    /// it only does not re-alert (`realert_s`) while it stays stationary.
    fn allow(
        realert_s: Option<f64>,
        cooldown: f64,
        last_alert: &mut BTreeMap<(AlertKind, String), f64>,
        obj: Option<&mut ObjState>,
        kind: AlertKind,
        rule: &str,
        t: f64,
    ) -> bool {
        let key = (kind, rule.to_string());
        if last_alert
            .get(&key)
            .is_some_and(|&last| t - last < cooldown)
        {
            return false;
        }
        if let Some(o) = obj {
            if let Some(&prev) = o.alerted.get(&key) {
                match realert_s {
                    Some(r) if t - prev >= r && !o.stationary => {}
                    _ => return false,
                }
            }
            o.alerted.insert(key.clone(), t);
        }
        last_alert.insert(key, t);
        true
    }

    /// Processes all live tracks of the frame at media time `t`
    /// (`frame_w × frame_h` pixels). Returns the alerts raised.
    pub fn on_frame(
        &mut self,
        t: f64,
        frame_w: u32,
        frame_h: u32,
        tracks: &[TrackView],
    ) -> Vec<Alert> {
        let cfg = &self.cfg;
        let mut alerts = Vec::new();
        self.gone.clear();
        for o in self.objs.values_mut() {
            o.present = false;
        }
        let (fw, fh) = (frame_w.max(1) as f32, frame_h.max(1) as f32);
        let diag = (fw * fw + fh * fh).sqrt();
        // Hand-off donors: confirmed tracks not seen since an earlier frame
        // (lost, or dropped within `handoff_s`), with the sides they had.
        let matched_now: BTreeSet<u64> =
            tracks.iter().filter(|v| v.matched).map(|v| v.id).collect();
        let donors: Vec<Donor> = if cfg.handoff_s > 0.0 && !cfg.lines.is_empty() {
            self.objs
                .iter()
                .chain(self.recent.iter())
                .filter(|(id, o)| {
                    o.confirmed
                        && !matched_now.contains(id)
                        && t - o.last_match_t <= cfg.handoff_s
                        && o.sides.iter().any(|s| s.0 != 0)
                })
                .map(|(&id, o)| Donor {
                    id,
                    class_id: o.class_id,
                    foot: o.last_foot,
                    t: o.last_match_t,
                    h: o.last_h,
                    sides: o.sides.iter().map(|s| s.0).collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut consumed: Vec<(u64, usize)> = Vec::new();
        for tv in tracks {
            let foot = foot_point(&tv.bbox, frame_w, frame_h);
            let o = self.objs.entry(tv.id).or_insert_with(|| ObjState {
                class_id: tv.class_id,
                zones: vec![ZoneMembership::default(); cfg.zones.len()],
                sides: vec![(0, (0.0, 0.0)); cfg.lines.len()],
                runs: vec![(0, 0, (0.0, 0.0)); cfg.lines.len()],
                sided: vec![false; cfg.lines.len()],
                confirmed: false,
                pending: Vec::new(),
                first_seen: tv.first_seen,
                last_foot: foot,
                last_match_t: t,
                last_h: tv.bbox.height(),
                anchor: tv.bbox.center(),
                anchor_t: t,
                stationary: false,
                alerted: BTreeMap::new(),
                present: true,
            });
            o.present = true;
            // Lines follow every matched track, tentative ones too (their
            // crossings wait for confirmation); zones, loitering and
            // stationary only confirmed ones.
            if !tv.matched || tv.state == TrackState::Lost {
                continue;
            }
            o.last_foot = foot;
            o.last_match_t = t;
            o.last_h = tv.bbox.height();
            let confirmed = tv.state == TrackState::Confirmed;
            let mut crossings: Vec<(usize, bool)> = Vec::new();
            if confirmed && !o.confirmed {
                o.confirmed = true;
                crossings.append(&mut o.pending);
            }

            // Lines.
            for (li, l) in cfg.lines.iter().enumerate() {
                if !(l.classes.is_empty() || l.classes.contains(&tv.class_id)) {
                    continue;
                }
                let d = side_dist(l.a, l.b, foot);
                let (side, prev) = o.sides[li];
                if d.abs() <= l.hysteresis {
                    continue;
                }
                let now: i8 = if d > 0.0 { 1 } else { -1 };
                if now == side {
                    o.sides[li].1 = foot;
                    o.runs[li].1 = 0;
                    continue;
                }
                // On the other side (or no side yet): it must stay there for
                // `inertia` matched frames.
                let run = &mut o.runs[li];
                if run.0 != now || run.1 == 0 {
                    *run = (now, 0, foot);
                }
                run.1 += 1;
                if run.1 < l.inertia.max(1) {
                    continue;
                }
                let run_foot = run.2;
                run.1 = 0;
                if side != 0 {
                    if crosses_segment(l, prev, run_foot) {
                        crossings.push((li, now > 0));
                    }
                } else if !o.sided[li] {
                    // A newborn's first side: did it take over from a track
                    // lost on the other side of the line?
                    let h = tv.bbox.height();
                    let best = donors
                        .iter()
                        .filter(|dn| {
                            dn.id != tv.id
                                && dn.class_id == tv.class_id
                                && dn.sides[li] == -now
                                && dn.t < o.first_seen
                                && !consumed.contains(&(dn.id, li))
                                && dn.h.max(h) <= HANDOFF_MAX_SCALE * dn.h.min(h)
                                && crosses_segment(l, dn.foot, run_foot)
                        })
                        .map(|dn| {
                            let dist = (((dn.foot.0 - run_foot.0) * fw).powi(2)
                                + ((dn.foot.1 - run_foot.1) * fh).powi(2))
                            .sqrt();
                            let gate = dn.h.max(h)
                                * (HANDOFF_MIN_GATE + cfg.handoff_speed * (t - dn.t) as f32);
                            (dn.id, dist, gate)
                        })
                        .filter(|(_, dist, gate)| dist <= gate)
                        .min_by(|a, b| a.1.total_cmp(&b.1));
                    if let Some((id, _, _)) = best {
                        consumed.push((id, li));
                        crossings.push((li, now > 0));
                    }
                }
                o.sides[li] = (now, foot);
                o.sided[li] = true;
            }
            if !confirmed {
                o.pending.append(&mut crossings);
                continue;
            }
            for (li, forward) in crossings {
                let l = &cfg.lines[li];
                let dir = if forward { &l.forward } else { &l.backward };
                self.lines[li]
                    .by_class
                    .entry(tv.class_id)
                    .or_default()
                    .entry(dir.clone())
                    .or_default()
                    .add();
                if l.alert_direction.as_ref() == Some(dir)
                    && Self::allow(
                        cfg.realert_s,
                        l.cooldown_s.unwrap_or(cfg.cooldown_s),
                        &mut self.last_alert,
                        Some(o),
                        AlertKind::WrongWay,
                        &l.name,
                        t,
                    )
                {
                    alerts.push(Alert {
                        kind: AlertKind::WrongWay,
                        rule: l.name.clone(),
                        track_id: Some(tv.id),
                        t,
                        dwell_s: None,
                        direction: Some(dir.clone()),
                        occupancy: None,
                    });
                }
            }

            let area = tv.bbox.clamp(fw, fh).area() / (fw * fh);

            // Stationary.
            let c = tv.bbox.center();
            let moved = ((c.0 - o.anchor.0).powi(2) + (c.1 - o.anchor.1).powi(2)).sqrt() / diag;
            if moved > cfg.stationary_tolerance {
                o.anchor = c;
                o.anchor_t = t;
                o.stationary = false;
            } else if cfg.stationary_s > 0.0 && t - o.anchor_t >= cfg.stationary_s {
                o.stationary = true;
            }

            // Zones.
            for (zi, z) in cfg.zones.iter().enumerate() {
                let m = &mut o.zones[zi];
                let eligible = (z.classes.is_empty() || z.classes.contains(&tv.class_id))
                    && area >= z.min_area;
                let here = eligible && point_in_polygon(&z.polygon, foot);
                if here == m.inside {
                    m.streak = 0;
                } else {
                    if m.streak == 0 {
                        m.run_start = t;
                    }
                    m.streak += 1;
                    if m.streak >= z.inertia {
                        m.inside = here;
                        m.streak = 0;
                        if here {
                            m.entered_at = m.run_start;
                            m.ever = true;
                            self.zone_entered[zi].entry(tv.class_id).or_default().add();
                        }
                    }
                }
                if let Some(limit) = z.loiter_s
                    && m.inside
                    && t - m.entered_at >= limit
                {
                    let dwell = t - m.entered_at;
                    if Self::allow(
                        cfg.realert_s,
                        z.cooldown_s.unwrap_or(cfg.cooldown_s),
                        &mut self.last_alert,
                        Some(o),
                        AlertKind::Loitering,
                        &z.name,
                        t,
                    ) {
                        alerts.push(Alert {
                            kind: AlertKind::Loitering,
                            rule: z.name.clone(),
                            track_id: Some(tv.id),
                            t,
                            dwell_s: Some(dwell),
                            direction: None,
                            occupancy: None,
                        });
                    }
                }
            }
        }
        // A donor handed over its side: it must not count that crossing
        // again if the tracker re-finds it on the other side.
        for (id, li) in consumed {
            if let Some(o) = self.objs.get_mut(&id) {
                o.sides[li].0 = 0;
            }
            if let Some(o) = self.recent.get_mut(&id) {
                o.sides[li].0 = 0;
            }
        }
        // Forget tracks the tracker no longer reports (keep them one frame,
        // and confirmed ones as hand-off donors for `handoff_s`).
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
        self.recent.retain(|_, o| t - o.last_match_t <= window);

        // Crowding.
        for zi in 0..self.cfg.zones.len() {
            let occ: u32 = self.occupancy(zi).values().sum();
            self.zone_peak[zi] = self.zone_peak[zi].max(occ);
            let z = &self.cfg.zones[zi];
            let Some(k) = z.crowd_min else { continue };
            let st = &mut self.crowds[zi];
            if occ >= k {
                st.under_since = None;
                let since = *st.over_since.get_or_insert(t);
                if !st.active
                    && t - since >= z.crowd_for_s
                    && Self::allow(
                        self.cfg.realert_s,
                        z.cooldown_s.unwrap_or(self.cfg.cooldown_s),
                        &mut self.last_alert,
                        None,
                        AlertKind::Crowding,
                        &z.name,
                        t,
                    )
                {
                    st.active = true;
                    alerts.push(Alert {
                        kind: AlertKind::Crowding,
                        rule: z.name.clone(),
                        track_id: None,
                        t,
                        dwell_s: Some(t - since),
                        direction: None,
                        occupancy: Some(occ),
                    });
                }
            } else {
                st.over_since = None;
                if st.active {
                    let since = *st.under_since.get_or_insert(t);
                    if t - since >= z.crowd_clear_s {
                        st.active = false;
                        st.under_since = None;
                        alerts.push(Alert {
                            kind: AlertKind::CrowdingCleared,
                            rule: z.name.clone(),
                            track_id: None,
                            t,
                            dwell_s: None,
                            direction: None,
                            occupancy: Some(occ),
                        });
                    }
                }
            }
        }
        alerts
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
            .enumerate()
            .map(|(i, z)| ZoneCounts {
                name: z.name.clone(),
                occupancy: self.occupancy(i),
                peak: self.zone_peak[i],
                entered: self.zone_entered[i].clone(),
            })
            .collect();
        let report = CountsReport {
            start_t: self.interval_start,
            end_t: t,
            lines: self.lines.clone(),
            zones,
        };
        for l in &mut self.lines {
            for dirs in l.by_class.values_mut() {
                for c in dirs.values_mut() {
                    c.delta = 0;
                }
            }
        }
        for (i, z) in self.zone_entered.iter_mut().enumerate() {
            for c in z.values_mut() {
                c.delta = 0;
            }
            self.zone_peak[i] = 0;
        }
        self.interval_start = t;
        report
    }
}

#[cfg(test)]
#[path = "rules/tests.rs"]
mod tests;
