//! Loitering: an object inside a zone for the zone's `loiter_s` raises a
//! `loitering` alert (subject to the alert gate).

use super::gate::{AlertGate, Subject};
use super::{Alert, AlertKind, ObjState, RulesConfig};

/// Checks a confirmed, matched object's (`track_id`) time in each zone at
/// `t`; raises its loitering alerts.
pub(super) fn observe(
    cfg: &RulesConfig,
    gate: &mut AlertGate,
    t: f64,
    track_id: u64,
    o: &mut ObjState,
) {
    let mut subject = Subject {
        alerted: &mut o.alerted,
        stationary: o.still.stationary,
    };
    for (z, m) in cfg.zones.iter().zip(&o.zones) {
        let loitering = z
            .loiter_s
            .is_some_and(|limit| m.inside && t - m.entered_at >= limit);
        if !loitering {
            continue;
        }
        let alert = Alert {
            kind: AlertKind::Loitering,
            rule: z.name.clone(),
            track_id: Some(track_id),
            t,
            dwell_s: Some(t - m.entered_at),
            direction: None,
            occupancy: None,
        };
        let cooldown = z.cooldown_s.unwrap_or(cfg.cooldown_s);
        gate.raise(cooldown, Some(subject.reborrow()), alert);
    }
}
