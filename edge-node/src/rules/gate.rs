//! Alert hygiene shared by every alert rule: the per-rule cooldown and the
//! once-per-object (or `realert_s`) limit. The gate also collects the
//! alerts it lets through, in the order they were raised.

use std::collections::BTreeMap;

use super::{Alert, AlertKind};

/// What a cooldown or an object's alert record is about: one rule's alerts
/// of one kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct AlertKey {
    kind: AlertKind,
    rule: String,
}

/// One object's alert history: last alert time per rule.
pub(super) type ObjectAlerts = BTreeMap<AlertKey, f64>;

/// The object an alert is about, as far as the gate needs to know it.
pub(super) struct Subject<'a> {
    pub alerted: &'a mut ObjectAlerts,
    pub stationary: bool,
}

impl Subject<'_> {
    /// The same subject, for one more [`AlertGate::allow`] call.
    pub(super) fn reborrow(&mut self) -> Subject<'_> {
        Subject {
            alerted: &mut *self.alerted,
            stationary: self.stationary,
        }
    }
}

/// Decides whether an alert may be raised, and records the ones that are.
#[derive(Clone, Debug)]
pub(super) struct AlertGate {
    /// `None`: at most one alert per object per rule; `Some(s)`: again after `s`.
    realert_s: Option<f64>,
    /// Last alert time per rule, for cooldowns.
    last: BTreeMap<AlertKey, f64>,
    /// Alerts let through in the current frame.
    raised: Vec<Alert>,
}

impl AlertGate {
    pub(super) fn new(realert_s: Option<f64>) -> Self {
        Self {
            realert_s,
            last: BTreeMap::new(),
            raised: Vec::new(),
        }
    }

    /// Raises `alert` (about `subject`, for a per-object alert) unless its
    /// rule's `cooldown` or the object's alert history holds it back;
    /// returns whether it was raised.
    pub(super) fn raise(
        &mut self,
        cooldown: f64,
        subject: Option<Subject<'_>>,
        alert: Alert,
    ) -> bool {
        let allowed = self.allow(cooldown, subject, alert.kind, &alert.rule, alert.t);
        if allowed {
            self.raised.push(alert);
        }
        allowed
    }

    /// Raises `alert` unconditionally (it is not subject to cooldowns).
    pub(super) fn push(&mut self, alert: Alert) {
        self.raised.push(alert);
    }

    /// The alerts raised since the last call.
    pub(super) fn take_raised(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.raised)
    }

    /// Cooldown and once-per-object checks; records the alert when allowed.
    /// `cooldown` is the rule's own cooldown or the global one; `subject`
    /// is the object of a per-object alert.
    ///
    /// A stationary object may still raise its *first* alert of a rule (a
    /// person standing still at a gate is exactly what loitering is about);
    /// it only does not re-alert (`realert_s`) while it stays stationary.
    fn allow(
        &mut self,
        cooldown: f64,
        subject: Option<Subject<'_>>,
        kind: AlertKind,
        rule: &str,
        t: f64,
    ) -> bool {
        let key = AlertKey {
            kind,
            rule: rule.to_string(),
        };
        if self.last.get(&key).is_some_and(|&last| t - last < cooldown) {
            return false;
        }
        if let Some(s) = subject {
            if let Some(&prev) = s.alerted.get(&key) {
                match self.realert_s {
                    Some(r) if t - prev >= r && !s.stationary => {}
                    _ => return false,
                }
            }
            s.alerted.insert(key.clone(), t);
        }
        self.last.insert(key, t);
        true
    }
}
