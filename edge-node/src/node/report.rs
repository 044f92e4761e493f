//! What a run reports: [`RunReport`] (printed at the end, used by the demo
//! and `edge-node bench`), one [`CameraReport`] per camera, and the bounded
//! timing series ([`Samples`]) they are gathered from.

use std::time::Duration;

/// Counters and timings of one run, printed at the end and used by the demo.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub wall: Duration,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    pub events: u64,
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    pub bytes_published: u64,
    pub messages_published: u64,
    pub messages_acked: u64,
    pub pre_ms: Vec<f64>,
    pub infer_ms: Vec<f64>,
    pub post_ms: Vec<f64>,
    pub failed_cameras: Vec<String>,
    /// Per camera counters and latency samples (for `edge-node bench`).
    pub cameras: Vec<CameraReport>,
}

/// One camera's share of a [`RunReport`].
#[derive(Debug, Default, Clone)]
pub struct CameraReport {
    pub id: String,
    /// Frames the source handed on (after `detect_fps` sampling).
    pub frames_in: u64,
    pub frames_dropped: u64,
    pub frames_analysed: u64,
    /// From the first frame's arrival to the end of the run.
    pub active: Duration,
    /// Per analysed frame: arrival in the camera slot → detections ready (ms).
    pub detect_latency_ms: Vec<f64>,
    /// Per event published from a frame: that frame's arrival → the event
    /// handed to the MQTT client (ms). Events are sparse; `end` events sent
    /// at shutdown are not counted.
    pub publish_latency_ms: Vec<f64>,
}

/// The median of `v` (the upper one for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

impl RunReport {
    pub fn summary(&self) -> String {
        format!(
            "wall {:.1} s; frames analysed {} dropped {}; events {} snapshots {} ({} B); \
             published {} messages, {} B, acked {}; median ms pre {:.2} infer {:.2} post {:.2}",
            self.wall.as_secs_f64(),
            self.frames_analysed,
            self.frames_dropped,
            self.events,
            self.snapshots,
            self.snapshot_bytes,
            self.messages_published,
            self.bytes_published,
            self.messages_acked,
            median(&self.pre_ms),
            median(&self.infer_ms),
            median(&self.post_ms),
        )
    }
}

/// Timing samples kept per series (pre/infer/post per model, latencies per
/// camera): the latest ones, for percentiles in reports and benchmarks.
pub(super) const MAX_TIMINGS: usize = 20_000;

/// The latest [`MAX_TIMINGS`] samples of a timing series: a ring once full,
/// so a node that runs for months keeps its statistics in constant memory
/// (at most 160 KB per series).
#[derive(Debug, Default, Clone)]
pub(super) struct Samples {
    v: Vec<f64>,
    /// Where the next sample goes once the ring is full.
    next: usize,
}

impl Samples {
    pub(super) fn push(&mut self, x: f64) {
        if self.v.len() < MAX_TIMINGS {
            self.v.push(x);
        } else {
            self.v[self.next] = x;
            self.next = (self.next + 1) % MAX_TIMINGS;
        }
    }

    pub(super) fn as_slice(&self) -> &[f64] {
        &self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_samples_are_a_bounded_ring_of_the_latest() {
        let mut s = Samples::default();
        for i in 0..MAX_TIMINGS {
            s.push(i as f64);
        }
        assert_eq!(s.as_slice().len(), MAX_TIMINGS);
        let cap = s.v.capacity();
        // A month of frames later: same length, same allocation, latest kept.
        for i in MAX_TIMINGS..3 * MAX_TIMINGS + 7 {
            s.push(i as f64);
        }
        assert_eq!(s.as_slice().len(), MAX_TIMINGS);
        assert_eq!(s.v.capacity(), cap, "no growth once full");
        let min = s.as_slice().iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(
            min,
            (2 * MAX_TIMINGS + 7) as f64,
            "only the latest are kept"
        );
    }
}
