//! Stationary objects: an object whose box centre stays within
//! `stationary_tolerance` of an anchor for `stationary_s` is stationary
//! until it moves beyond the tolerance again.

use super::{FrameCtx, RulesConfig};
use crate::frame::BBox;

/// Stillness of one object.
#[derive(Clone, Debug)]
pub(super) struct Stillness {
    /// Box centre (pixels) where the object last came to rest.
    anchor: (f32, f32),
    /// When it came to rest there.
    anchor_t: f64,
    /// Stationary now.
    pub stationary: bool,
}

impl Stillness {
    /// An object first seen with box `bbox` at `t`: anchored there, moving.
    pub(super) fn new(bbox: &BBox, t: f64) -> Self {
        Self {
            anchor: bbox.center(),
            anchor_t: t,
            stationary: false,
        }
    }

    /// Updates the state with a confirmed, matched box.
    pub(super) fn observe(&mut self, cfg: &RulesConfig, frame: &FrameCtx, bbox: &BBox) {
        let c = bbox.center();
        let (a, t) = (self.anchor, frame.t);
        let moved = ((c.0 - a.0).powi(2) + (c.1 - a.1).powi(2)).sqrt() / frame.diag;
        if moved > cfg.stationary_tolerance {
            self.anchor = c;
            self.anchor_t = t;
            self.stationary = false;
        } else if cfg.stationary_s > 0.0 && t - self.anchor_t >= cfg.stationary_s {
            self.stationary = true;
        }
    }
}
