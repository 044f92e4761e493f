//! Crowding: a zone's occupancy at or over `crowd_min` for `crowd_for_s`
//! raises a `crowding` alert; once it has stayed below `crowd_min` for
//! `crowd_clear_s` (time hysteresis) a `crowding_cleared` alert follows and
//! the zone can crowd again.

use super::gate::AlertGate;
use super::{Alert, AlertKind, ZoneRule};

/// Crowd state of one zone.
#[derive(Clone, Debug, Default)]
pub(super) struct CrowdState {
    /// Since when occupancy has been >= crowd_min (None: below).
    over_since: Option<f64>,
    /// Since when occupancy has been below crowd_min while active.
    under_since: Option<f64>,
    /// A crowd alert was raised and has not been cleared.
    pub active: bool,
}

/// A crowd alert of zone `z` at `t` with occupancy `occ`.
fn alert(z: &ZoneRule, kind: AlertKind, t: f64, dwell_s: Option<f64>, occ: u32) -> Alert {
    Alert {
        kind,
        rule: z.name.clone(),
        track_id: None,
        t,
        dwell_s,
        direction: None,
        occupancy: Some(occ),
    }
}

impl CrowdState {
    /// Updates zone `z` (`cooldown`: its alert cooldown) with its total
    /// occupancy `occ` at `t`, raising its alert, if any.
    pub(super) fn observe(
        &mut self,
        z: &ZoneRule,
        cooldown: f64,
        gate: &mut AlertGate,
        t: f64,
        occ: u32,
    ) {
        let Some(k) = z.crowd_min else { return };
        if occ >= k {
            self.over(z, cooldown, gate, t, occ);
        } else {
            self.under(z, gate, t, occ);
        }
    }

    /// Occupancy at or over `crowd_min`.
    fn over(&mut self, z: &ZoneRule, cooldown: f64, gate: &mut AlertGate, t: f64, occ: u32) {
        self.under_since = None;
        let since = *self.over_since.get_or_insert(t);
        if !self.active
            && t - since >= z.crowd_for_s
            && gate.raise(
                cooldown,
                None,
                alert(z, AlertKind::Crowding, t, Some(t - since), occ),
            )
        {
            self.active = true;
        }
    }

    /// Occupancy below `crowd_min`: an active crowd clears after
    /// `crowd_clear_s`. A cleared alert has no cooldown.
    fn under(&mut self, z: &ZoneRule, gate: &mut AlertGate, t: f64, occ: u32) {
        self.over_since = None;
        if !self.active {
            return;
        }
        let since = *self.under_since.get_or_insert(t);
        if t - since >= z.crowd_clear_s {
            self.active = false;
            self.under_since = None;
            gate.push(alert(z, AlertKind::CrowdingCleared, t, None, occ));
        }
    }
}
