//! Counters: line crossings per class and direction, zone entries per class
//! and peak occupancy, each cumulative and per counts interval.

use std::collections::BTreeMap;

use super::LineRule;

/// A counter: cumulative since start and the delta of the current interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub total: u64,
    pub delta: u64,
}

impl Counter {
    pub(super) fn add(&mut self) {
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

impl LineCounts {
    /// Empty counters of line `l`.
    pub(super) fn new(l: &LineRule) -> Self {
        Self {
            name: l.name.clone(),
            forward: l.forward.clone(),
            backward: l.backward.clone(),
            by_class: BTreeMap::new(),
        }
    }

    /// Counts one crossing of class `class_id` in direction `dir`.
    pub(super) fn add(&mut self, class_id: u32, dir: &str) {
        self.by_class
            .entry(class_id)
            .or_default()
            .entry(dir.to_string())
            .or_default()
            .add();
    }

    /// Starts a new interval.
    pub(super) fn reset_deltas(&mut self) {
        for dirs in self.by_class.values_mut() {
            for c in dirs.values_mut() {
                c.delta = 0;
            }
        }
    }
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

/// The running counters of one zone (its occupancy is the live objects').
#[derive(Clone, Debug, Default)]
pub(super) struct ZoneTally {
    /// Entries per class.
    pub entered: BTreeMap<u32, Counter>,
    /// Highest total occupancy seen during the interval.
    pub peak: u32,
}

impl ZoneTally {
    /// Notes the zone's total occupancy in this frame.
    pub(super) fn see_occupancy(&mut self, occupancy: u32) {
        self.peak = self.peak.max(occupancy);
    }

    /// This interval's counts of zone `name`, with its current `occupancy`.
    pub(super) fn report(&self, name: &str, occupancy: BTreeMap<u32, u32>) -> ZoneCounts {
        ZoneCounts {
            name: name.to_string(),
            occupancy,
            peak: self.peak,
            entered: self.entered.clone(),
        }
    }

    /// Starts a new interval.
    pub(super) fn reset_deltas(&mut self) {
        for c in self.entered.values_mut() {
            c.delta = 0;
        }
        self.peak = 0;
    }
}
