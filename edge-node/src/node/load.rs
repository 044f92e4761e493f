//! Whether the node keeps up with its cameras: a pure assessment of the
//! camera slots' counters over a window ([`LoadMeter`]).
//!
//! A camera's frames enter its slot after the `detect_fps` limit; a frame
//! shed from a full slot is one the detector could not get to. Over each
//! window (≥ [`WINDOW`]) the meter compares the frames delivered with the
//! frames analysed: the node is **overloaded** while more than
//! [`ENTER_PCT`] % of the delivered frames are shed, and stops being so once
//! fewer than [`LEAVE_PCT`] % are (hysteresis: a node at the edge does not
//! flap). The shortfall (frames per second shed) tells an engineer how much
//! capacity is missing; the slowest camera (lowest analysed rate relative to
//! its `detect_fps`) shows whether the sharing is fair (`Pool::take`).
//!
//! What this does not see: a decoder that falls so far behind that frames
//! never reach the slot (the CPU split of `bench pipeline` shows that).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::publish::NodeLoad;

/// The shortest window assessed.
pub(super) const WINDOW: Duration = Duration::from_secs(10);
/// Overloaded above this share of delivered frames shed, %.
pub(super) const ENTER_PCT: f64 = 5.0;
/// Not overloaded any more below this share, %.
pub(super) const LEAVE_PCT: f64 = 1.0;

/// One camera's slot counters, read now.
#[derive(Clone, Debug)]
pub(super) struct CamCounts {
    pub id: String,
    pub detect_fps: f64,
    pub frames_in: u64,
    pub dropped: u64,
    pub analysed: u64,
}

/// The meter: counters at the start of the current window and the state.
#[derive(Default)]
pub(super) struct LoadMeter {
    start: Option<(Instant, BTreeMap<String, CamCounts>)>,
    overloaded: bool,
}

impl LoadMeter {
    /// Feeds the counters read at `now`; returns the assessment once a
    /// window of at least [`WINDOW`] has passed (and starts the next one).
    pub fn update(&mut self, now: Instant, cams: Vec<CamCounts>) -> Option<NodeLoad> {
        let by_id: BTreeMap<String, CamCounts> =
            cams.into_iter().map(|c| (c.id.clone(), c)).collect();
        let Some((t0, before)) = &self.start else {
            self.start = Some((now, by_id));
            return None;
        };
        let window = now.duration_since(*t0);
        if window < WINDOW {
            return None;
        }
        let secs = window.as_secs_f64();
        let (mut delivered, mut shed, mut analysed) = (0u64, 0u64, 0u64);
        let mut slowest: Option<(f64, &str, f64)> = None;
        for (id, c) in &by_id {
            // A camera that started during the window counts from zero.
            let b = before.get(id);
            let d_in = c.frames_in.saturating_sub(b.map_or(0, |b| b.frames_in));
            let d_shed = c.dropped.saturating_sub(b.map_or(0, |b| b.dropped));
            let d_an = c.analysed.saturating_sub(b.map_or(0, |b| b.analysed));
            delivered += d_in;
            shed += d_shed;
            analysed += d_an;
            if d_in == 0 || c.detect_fps <= 0.0 {
                continue;
            }
            let fps = d_an as f64 / secs;
            let share = fps / c.detect_fps;
            if slowest.is_none_or(|(s, _, _)| share < s) {
                slowest = Some((share, id, fps));
            }
        }
        let shed_pct = if delivered > 0 {
            shed as f64 / delivered as f64 * 100.0
        } else {
            0.0
        };
        self.overloaded = if self.overloaded {
            shed_pct >= LEAVE_PCT
        } else {
            shed_pct > ENTER_PCT
        };
        let r2 = |v: f64| (v * 100.0).round() / 100.0;
        let load = NodeLoad {
            overloaded: self.overloaded,
            window_s: r2(secs),
            delivered_fps: r2(delivered as f64 / secs),
            analysed_fps: r2(analysed as f64 / secs),
            shortfall_fps: r2(shed as f64 / secs),
            shed_pct: r2(shed_pct),
            slowest_camera: slowest.map(|(_, id, _)| id.to_string()),
            slowest_fps: slowest.map(|(_, _, fps)| r2(fps)),
        };
        self.start = Some((now, by_id));
        Some(load)
    }
}

/// The log line for a change of state (`None`: no change).
pub(super) fn transition(was: bool, load: &NodeLoad) -> Option<String> {
    match (was, load.overloaded) {
        (false, true) => Some(format!(
            "node overloaded: the detector analyses {:.1} of the {:.1} frames/s the cameras \
             deliver; {:.1} frames/s ({:.0} %) shed; slowest camera {} at {:.2} fps. \
             Fewer cameras, a lower detect_fps, a lighter model or a bigger box would fix it",
            load.analysed_fps,
            load.delivered_fps,
            load.shortfall_fps,
            load.shed_pct,
            load.slowest_camera.as_deref().unwrap_or("-"),
            load.slowest_fps.unwrap_or(0.0)
        )),
        (true, false) => Some(format!(
            "node keeps up again: {:.1} of {:.1} frames/s analysed",
            load.analysed_fps, load.delivered_fps
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(id: &str, frames_in: u64, dropped: u64, analysed: u64) -> CamCounts {
        CamCounts {
            id: id.into(),
            detect_fps: 5.0,
            frames_in,
            dropped,
            analysed,
        }
    }

    #[test]
    fn shedding_past_five_percent_is_overload_with_its_shortfall() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        assert!(
            m.update(t0, vec![cam("a", 0, 0, 0), cam("b", 0, 0, 0)])
                .is_none()
        );
        assert!(
            m.update(t0 + Duration::from_secs(5), vec![cam("a", 25, 0, 25)])
                .is_none(),
            "a window is at least 10 s"
        );
        // 10 s: both cameras delivered 50 frames; b had 20 shed.
        let l = m
            .update(
                t0 + Duration::from_secs(10),
                vec![cam("a", 50, 0, 50), cam("b", 50, 20, 30)],
            )
            .unwrap();
        assert!(l.overloaded);
        assert_eq!(l.delivered_fps, 10.0);
        assert_eq!(l.analysed_fps, 8.0);
        assert_eq!(l.shortfall_fps, 2.0);
        assert_eq!(l.shed_pct, 20.0);
        assert_eq!(l.slowest_camera.as_deref(), Some("b"));
        assert_eq!(l.slowest_fps, Some(3.0));
        let line = transition(false, &l).unwrap();
        assert!(line.contains("8.0 of the 10.0 frames/s"), "{line}");
        assert!(line.contains("2.0 frames/s (20 %) shed"), "{line}");
        // Next window: 3 % shed stays overloaded (hysteresis), 0 % clears it.
        let l = m
            .update(
                t0 + Duration::from_secs(20),
                vec![cam("a", 100, 3, 97), cam("b", 100, 23, 77)],
            )
            .unwrap();
        assert!(l.overloaded, "{l:?}");
        assert!(transition(true, &l).is_none());
        let l = m
            .update(
                t0 + Duration::from_secs(30),
                vec![cam("a", 150, 3, 147), cam("b", 150, 23, 127)],
            )
            .unwrap();
        assert!(!l.overloaded);
        assert!(
            transition(true, &l)
                .unwrap()
                .starts_with("node keeps up again")
        );
    }

    #[test]
    fn a_light_shed_does_not_make_an_idle_node_overloaded() {
        let t0 = Instant::now();
        let mut m = LoadMeter::default();
        m.update(t0, vec![cam("a", 0, 0, 0)]);
        let l = m
            .update(t0 + Duration::from_secs(10), vec![cam("a", 100, 4, 96)])
            .unwrap();
        assert!(!l.overloaded, "4 % shed is under the 5 % threshold");
        let l = m
            .update(t0 + Duration::from_secs(20), vec![cam("a", 100, 4, 96)])
            .unwrap();
        assert_eq!((l.delivered_fps, l.shed_pct), (0.0, 0.0));
        assert_eq!(
            l.slowest_camera, None,
            "no frame delivered: no slowest camera"
        );
    }
}
