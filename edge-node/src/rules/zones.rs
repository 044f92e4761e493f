//! Zone membership: an object is inside a zone after `inertia` consecutive
//! frames with its foot point in the polygon (and its class and box size
//! eligible), outside again after `inertia` consecutive frames out of it.
//! Entries are counted per class.

use super::counts::ZoneTally;
use super::geometry::point_in_polygon;
use super::{FrameCtx, Pt, Sighting, ZoneRule};

/// One object's membership of one zone.
#[derive(Clone, Debug, Default)]
pub(super) struct ZoneMembership {
    /// Inside now (after inertia).
    pub inside: bool,
    /// Consecutive frames disagreeing with `inside`.
    streak: u32,
    /// First frame of the run that made it inside.
    run_start: f64,
    /// When it counted as inside: the start of that run.
    pub entered_at: f64,
    /// Has been inside at some time.
    pub ever: bool,
}

impl ZoneMembership {
    /// One frame's observation (`here`: the object is in the zone now).
    /// Returns whether the object entered the zone.
    fn observe(&mut self, z: &ZoneRule, here: bool, t: f64) -> bool {
        if here == self.inside {
            self.streak = 0;
            return false;
        }
        if self.streak == 0 {
            self.run_start = t;
        }
        self.streak += 1;
        if self.streak < z.inertia {
            return false;
        }
        self.inside = here;
        self.streak = 0;
        if here {
            self.entered_at = self.run_start;
            self.ever = true;
        }
        here
    }
}

/// Whether a box of class `class_id` and `area` (fraction of the frame)
/// with its foot at `foot` is in zone `z`.
fn in_zone(z: &ZoneRule, class_id: u32, area: f32, foot: Pt) -> bool {
    let eligible = (z.classes.is_empty() || z.classes.contains(&class_id)) && area >= z.min_area;
    eligible && point_in_polygon(&z.polygon, foot)
}

/// Moves a confirmed, matched track in all zones (`members` and `tallies`
/// in configuration order) and counts its entries.
pub(super) fn observe(
    zones: &[ZoneRule],
    frame: &FrameCtx,
    s: &Sighting,
    members: &mut [ZoneMembership],
    tallies: &mut [ZoneTally],
) {
    let (tv, fw, fh) = (s.tv, frame.w, frame.h);
    let area = tv.bbox.clamp(fw, fh).area() / (fw * fh);
    for ((z, m), tally) in zones.iter().zip(members).zip(tallies) {
        let here = in_zone(z, tv.class_id, area, s.foot);
        if m.observe(z, here, frame.t) {
            tally.entered.entry(tv.class_id).or_default().add();
        }
    }
}
