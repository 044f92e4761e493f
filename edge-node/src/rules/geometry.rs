//! Rule geometry in normalised frame coordinates: foot points, the side of
//! a point relative to a tripwire, segment crossings and point-in-polygon.

use super::{LineRule, Pt};
use crate::frame::BBox;

/// Signed distance of `p` to the line through `a`, `b` (positive: right of
/// A→B on screen, y pointing down).
pub(super) fn side_dist(a: Pt, b: Pt, p: Pt) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt().max(f32::EPSILON);
    (dx * (p.1 - a.1) - dy * (p.0 - a.0)) / len
}

/// Whether the move from `p` to `q` (on opposite sides of the line through
/// A and B) passes between A and B.
pub(super) fn crosses_segment(l: &LineRule, p: Pt, q: Pt) -> bool {
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
