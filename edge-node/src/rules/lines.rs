//! Tripwire lines: each object's committed side of each line, the runs
//! that change it, the crossings they make (held while the track is
//! tentative) and how crossings are counted and raise `wrong_way` alerts.
//! A newborn's first side may take over from a lost track: see
//! [`super::handoff`].

use super::counts::LineCounts;
use super::gate::{AlertGate, Subject};
use super::geometry::{crosses_segment, side_dist};
use super::handoff::{Handoff, Newborn};
use super::{Alert, AlertKind, FrameCtx, LineRule, Pt, RulesConfig, Sighting};
use crate::track::TrackView;

/// A side of a line, as seen on screen along A→B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Left,
    Right,
}

impl Side {
    /// The side a signed distance ([`side_dist`]) points to.
    fn of(d: f32) -> Self {
        if d > 0.0 { Side::Right } else { Side::Left }
    }

    pub(super) fn opposite(self) -> Self {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// A committed side and the foot point last seen on it.
#[derive(Clone, Copy, Debug)]
struct SideMark {
    side: Side,
    foot: Pt,
}

/// Matched frames in a row beyond the dead band on a side other than the
/// committed one.
#[derive(Clone, Copy, Debug)]
struct SideRun {
    side: Side,
    frames: u32,
    /// The run's first foot point.
    first_foot: Pt,
}

/// A run long enough to commit its side.
struct SideChange {
    side: Side,
    /// The side committed before, if any.
    from: Option<SideMark>,
    /// The run's first foot point.
    run_foot: Pt,
}

/// One object's state for one line.
#[derive(Clone, Debug, Default)]
struct LineTrack {
    /// The committed side (`None`: not known, or handed over).
    committed: Option<SideMark>,
    /// A run towards another side.
    run: Option<SideRun>,
    /// A side was ever committed (a hand-off is only for newborns).
    sided: bool,
}

impl LineTrack {
    /// One matched foot point: returns the side change it completes, if any.
    fn step(&mut self, l: &LineRule, foot: Pt) -> Option<SideChange> {
        let d = side_dist(l.a, l.b, foot);
        if d.abs() <= l.hysteresis {
            return None;
        }
        let now = Side::of(d);
        if let Some(mark) = &mut self.committed
            && mark.side == now
        {
            mark.foot = foot;
            self.run = None;
            return None;
        }
        // On the other side (or no side yet): it must stay there for
        // `inertia` matched frames.
        let mut run = match self.run {
            Some(run) if run.side == now => run,
            _ => SideRun {
                side: now,
                frames: 0,
                first_foot: foot,
            },
        };
        run.frames += 1;
        if run.frames < l.inertia.max(1) {
            self.run = Some(run);
            return None;
        }
        self.run = None;
        Some(SideChange {
            side: now,
            from: self.committed,
            run_foot: run.first_foot,
        })
    }
}

/// A crossing of one line.
#[derive(Clone, Copy, Debug)]
pub(super) struct Crossing {
    /// Index of the line in configuration order.
    line: usize,
    /// From the left of A→B to its right.
    forward: bool,
}

/// All of one object's line state.
#[derive(Clone, Debug)]
pub(super) struct LineState {
    /// Per line, in configuration order.
    per_line: Vec<LineTrack>,
    /// Crossings made while tentative; counted on confirmation.
    pending: Vec<Crossing>,
}

impl LineState {
    pub(super) fn new(n_lines: usize) -> Self {
        Self {
            per_line: vec![LineTrack::default(); n_lines],
            pending: Vec::new(),
        }
    }

    /// The committed side of each line (for hand-off donors).
    pub(super) fn sides(&self) -> Vec<Option<Side>> {
        self.per_line
            .iter()
            .map(|lt| lt.committed.map(|m| m.side))
            .collect()
    }

    /// Forgets the committed side of line `li` (it was handed over).
    pub(super) fn clear_side(&mut self, li: usize) {
        self.per_line[li].committed = None;
    }

    /// The crossings held while the track was tentative.
    pub(super) fn take_pending(&mut self) -> Vec<Crossing> {
        std::mem::take(&mut self.pending)
    }

    /// Holds crossings of a tentative track until it is confirmed.
    pub(super) fn hold(&mut self, mut crossings: Vec<Crossing>) {
        self.pending.append(&mut crossings);
    }

    /// Follows a matched track's foot point on every line of its class;
    /// pushes the crossings it makes onto `crossings`. `first_seen`: media
    /// time of the track's first detection.
    pub(super) fn observe(
        &mut self,
        lines: &[LineRule],
        frame: &FrameCtx,
        s: &Sighting,
        first_seen: f64,
        handoff: &mut Handoff,
        crossings: &mut Vec<Crossing>,
    ) {
        let (tv, foot) = (s.tv, s.foot);
        for (li, (l, lt)) in lines.iter().zip(&mut self.per_line).enumerate() {
            if !(l.classes.is_empty() || l.classes.contains(&tv.class_id)) {
                continue;
            }
            let Some(change) = lt.step(l, foot) else {
                continue;
            };
            let crossed = match change.from {
                Some(from) => crosses_segment(l, from.foot, change.run_foot),
                // A newborn's first side: did it take over from a track lost
                // on the other side of the line?
                None if !lt.sided => {
                    let newborn = Newborn {
                        id: tv.id,
                        class_id: tv.class_id,
                        first_seen,
                        h: tv.bbox.height(),
                        side: change.side,
                        foot: change.run_foot,
                    };
                    handoff.take_over(l, li, &newborn, frame)
                }
                None => false,
            };
            if crossed {
                crossings.push(Crossing {
                    line: li,
                    forward: change.side == Side::Right,
                });
            }
            lt.committed = Some(SideMark {
                side: change.side,
                foot,
            });
            lt.sided = true;
        }
    }
}

/// Counts a confirmed track's `crossings` in `counts` and raises a
/// `wrong_way` alert for each one in a line's `alert_direction`.
pub(super) fn count(
    cfg: &RulesConfig,
    counts: &mut [LineCounts],
    gate: &mut AlertGate,
    t: f64,
    tv: &TrackView,
    mut subject: Subject<'_>,
    crossings: Vec<Crossing>,
) {
    for Crossing { line, forward } in crossings {
        let l = &cfg.lines[line];
        let dir = if forward { &l.forward } else { &l.backward };
        counts[line].add(tv.class_id, dir);
        if l.alert_direction.as_ref() != Some(dir) {
            continue;
        }
        let alert = Alert {
            kind: AlertKind::WrongWay,
            rule: l.name.clone(),
            track_id: Some(tv.id),
            t,
            dwell_s: None,
            direction: Some(dir.clone()),
            occupancy: None,
        };
        let cooldown = l.cooldown_s.unwrap_or(cfg.cooldown_s);
        gate.raise(cooldown, Some(subject.reborrow()), alert);
    }
}
