//! A Prometheus histogram on atomics: fixed bucket bounds in seconds, one
//! counter per bucket (not cumulative; the renderer sums them), the count
//! and the sum in nanoseconds. Observing never locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds for inference stages (pre-process, run, decode), seconds.
pub const STAGE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Bucket bounds for frame-to-publish latency, seconds.
pub const LATENCY_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A histogram of durations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A consistent-enough reading of a histogram, cumulative per bound.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramReading {
    /// `(upper bound, observations ≤ bound)`; the last bound is `+Inf`.
    pub cumulative: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_s: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < s);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let mut acc = 0;
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            cumulative.push((bound, acc));
        }
        HistogramReading {
            // The `+Inf` bucket and the count are the same figure.
            count: acc,
            cumulative,
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(10));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(2));
        let r = h.read();
        assert_eq!(r.cumulative, vec![(0.01, 1), (0.1, 2), (f64::INFINITY, 3)]);
        assert_eq!(r.count, 3);
        assert!((r.sum_s - 2.06).abs() < 1e-9, "{}", r.sum_s);
    }
}
