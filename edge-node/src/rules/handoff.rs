//! Fragment hand-off for line counts: a confirmed track lost just before a
//! line and re-born as a new track just after it lends the newborn its
//! side, so the crossing is counted once (see the module docs of
//! [`super`], "Hand-off").

use std::collections::{BTreeMap, BTreeSet};

use super::geometry::crosses_segment;
use super::lines::Side;
use super::{FrameCtx, HANDOFF_MAX_SCALE, HANDOFF_MIN_GATE, LineRule, ObjState, Pt, RulesConfig};
use crate::track::TrackView;

/// A possible hand-off donor: a confirmed track not matched in this frame.
struct Donor {
    id: u64,
    class_id: u32,
    /// Where, when and how tall (box height, pixels) it was last matched.
    foot: Pt,
    t: f64,
    h: f32,
    /// Its committed side of each line.
    sides: Vec<Option<Side>>,
}

/// A donor's side of one line, handed over in this frame.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Handover {
    donor: u64,
    line: usize,
}

/// A newborn track committing its first side of a line.
pub(super) struct Newborn {
    pub id: u64,
    pub class_id: u32,
    /// Media time of its first detection.
    pub first_seen: f64,
    /// Box height, pixels.
    pub h: f32,
    /// The side it committed.
    pub side: Side,
    /// The first foot point of the run that committed it.
    pub foot: Pt,
}

/// One frame's hand-off donors and what they handed over.
pub(super) struct Handoff {
    donors: Vec<Donor>,
    consumed: Vec<Handover>,
    /// [`RulesConfig::handoff_speed`].
    speed: f32,
}

impl Handoff {
    /// The donors of the frame at `t`: confirmed tracks not matched in it
    /// (lost, or dropped within `handoff_s`) with a committed side, from
    /// the live objects `objs` then the dropped ones `recent`.
    pub(super) fn collect(
        cfg: &RulesConfig,
        t: f64,
        tracks: &[TrackView],
        objs: &BTreeMap<u64, ObjState>,
        recent: &BTreeMap<u64, ObjState>,
    ) -> Self {
        let mut donors = Vec::new();
        if cfg.handoff_s > 0.0 && !cfg.lines.is_empty() {
            let matched_now: BTreeSet<u64> =
                tracks.iter().filter(|v| v.matched).map(|v| v.id).collect();
            donors = objs
                .iter()
                .chain(recent.iter())
                .filter(|(id, o)| {
                    o.confirmed
                        && !matched_now.contains(id)
                        && t - o.last.t <= cfg.handoff_s
                        && o.lines.sides().iter().any(Option::is_some)
                })
                .map(|(&id, o)| Donor {
                    id,
                    class_id: o.class_id,
                    foot: o.last.foot,
                    t: o.last.t,
                    h: o.last.h,
                    sides: o.lines.sides(),
                })
                .collect();
        }
        Self {
            donors,
            consumed: Vec::new(),
            speed: cfg.handoff_speed,
        }
    }

    /// Whether `nb`'s first side of line `l` (index `li`) takes over from a
    /// donor; the nearest one within the gate is used up for that line.
    pub(super) fn take_over(
        &mut self,
        l: &LineRule,
        li: usize,
        nb: &Newborn,
        frame: &FrameCtx,
    ) -> bool {
        let best = self
            .donors
            .iter()
            .filter(|dn| self.fits(dn, l, li, nb))
            .map(|dn| {
                let dist = (((dn.foot.0 - nb.foot.0) * frame.w).powi(2)
                    + ((dn.foot.1 - nb.foot.1) * frame.h).powi(2))
                .sqrt();
                let gate =
                    dn.h.max(nb.h) * (HANDOFF_MIN_GATE + self.speed * (frame.t - dn.t) as f32);
                (dn.id, dist, gate)
            })
            .filter(|(_, dist, gate)| dist <= gate)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((donor, _, _)) = best else {
            return false;
        };
        self.consumed.push(Handover { donor, line: li });
        true
    }

    /// Whether donor `dn` could have become `nb` across line `l` (index `li`).
    fn fits(&self, dn: &Donor, l: &LineRule, li: usize, nb: &Newborn) -> bool {
        dn.id != nb.id
            && dn.class_id == nb.class_id
            && dn.sides[li] == Some(nb.side.opposite())
            && dn.t < nb.first_seen
            && !self.consumed.contains(&Handover {
                donor: dn.id,
                line: li,
            })
            && dn.h.max(nb.h) <= HANDOFF_MAX_SCALE * dn.h.min(nb.h)
            && crosses_segment(l, dn.foot, nb.foot)
    }

    /// A donor handed over its side: it must not count that crossing again
    /// if the tracker re-finds it on the other side.
    pub(super) fn release(
        self,
        objs: &mut BTreeMap<u64, ObjState>,
        recent: &mut BTreeMap<u64, ObjState>,
    ) {
        for Handover { donor, line } in self.consumed {
            if let Some(o) = objs.get_mut(&donor) {
                o.lines.clear_side(line);
            }
            if let Some(o) = recent.get_mut(&donor) {
                o.lines.clear_side(line);
            }
        }
    }
}
