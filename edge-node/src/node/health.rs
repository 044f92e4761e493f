//! Whether the node is healthy, and why not.
//!
//! [`problems`] is a pure function of what the node observes ([`Observed`]):
//! the outbox store failing, the broker refusing or not acknowledging, the
//! broker unreachable for longer than `[node] broker_unhealthy_s` while the
//! outbox grows, a camera that streams but has had no frame analysed for
//! longer than its watchdog, and frames waiting with no inference worker
//! finishing one for longer than `[node] stall_unhealthy_s`. The heartbeat
//! task ([`super::status::spawn_heartbeat`]) writes one line per problem
//! into the heartbeat file (what `edge-node healthcheck` reads) and pings
//! systemd's watchdog only while there is none.
//!
//! A camera that is down (reconnecting, failed) does not make the node
//! unhealthy: restarting the node would not bring it back, and would stop
//! the cameras that work. It is reported on its status topic instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::slots::Pool;

/// Thresholds (`[node]`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub broker_down: Duration,
    pub stall: Duration,
}

/// The broker cannot be reached.
#[derive(Clone, Debug)]
pub(super) struct BrokerObs {
    pub down_for: Duration,
    pub error: String,
    /// Messages added to the outbox since the outage began.
    pub outbox_growth: i64,
}

/// One camera, as the health rules see it.
#[derive(Clone, Debug)]
pub(super) struct CameraObs {
    pub id: String,
    /// How long its source has been streaming (`None`: it is not).
    pub streaming_for: Option<Duration>,
    /// Time since its last analysed frame (`None`: none yet).
    pub since_analysed: Option<Duration>,
    pub watchdog: Duration,
}

/// Frames waiting on one model's workers.
#[derive(Clone, Debug)]
pub(super) struct StallObs {
    pub model: String,
    pub stalled_for: Duration,
    pub waiting: usize,
}

/// Everything the rules look at, read at one instant.
#[derive(Clone, Debug, Default)]
pub(super) struct Observed {
    pub outbox_failure: Option<String>,
    pub delivery_error: Option<String>,
    pub broker: Option<BrokerObs>,
    pub cameras: Vec<CameraObs>,
    pub stalls: Vec<StallObs>,
}

/// One reason the node is unhealthy: a heartbeat line `kind: text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub kind: &'static str,
    pub text: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.text)
    }
}

/// The health rules (see the module docs). Empty: healthy.
pub(super) fn problems(o: &Observed, l: &Limits) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(f) = &o.outbox_failure {
        out.push(Problem {
            kind: "outbox failing",
            text: f.clone(),
        });
    }
    if let Some(e) = &o.delivery_error {
        out.push(Problem {
            kind: "delivery failing",
            text: e.clone(),
        });
    }
    if let Some(b) = &o.broker
        && b.down_for >= l.broker_down
        && b.outbox_growth > 0
    {
        out.push(Problem {
            kind: "broker unreachable",
            text: format!(
                "{}; unreachable for {} s, the outbox grew by {} messages meanwhile",
                b.error,
                b.down_for.as_secs(),
                b.outbox_growth
            ),
        });
    }
    for c in &o.cameras {
        let Some(streaming) = c.streaming_for else {
            continue;
        };
        // Measured from the later of the stream's start and the last analysed frame.
        let quiet = c.since_analysed.map_or(streaming, |a| a.min(streaming));
        if quiet > c.watchdog {
            out.push(Problem {
                kind: "camera stalled",
                text: format!(
                    "{}: streaming, but no frame analysed for {} s (watchdog {} s)",
                    c.id,
                    quiet.as_secs(),
                    c.watchdog.as_secs_f64()
                ),
            });
        }
    }
    for s in &o.stalls {
        if s.stalled_for >= l.stall {
            out.push(Problem {
                kind: "inference stalled",
                text: format!(
                    "model {}: {} frames waiting, no worker finished one for {} s",
                    s.model,
                    s.waiting,
                    s.stalled_for.as_secs()
                ),
            });
        }
    }
    out
}

/// Whether systemd's watchdog may be pinged: only while healthy.
pub(super) fn may_ping(problems: &[Problem]) -> bool {
    problems.is_empty()
}

/// What the heartbeat needs to know about each running camera, kept by the
/// camera status tasks.
#[derive(Default)]
pub(super) struct Board {
    cams: Mutex<BTreeMap<String, CamEntry>>,
}

struct CamEntry {
    model: String,
    pool: Arc<Pool>,
    idx: usize,
    watchdog: Duration,
    streaming_since: Option<Instant>,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CamEntry>> {
        self.cams.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(
        &self,
        id: &str,
        model: String,
        pool: Arc<Pool>,
        idx: usize,
        watchdog: Duration,
    ) {
        self.lock().insert(
            id.to_string(),
            CamEntry {
                model,
                pool,
                idx,
                watchdog,
                streaming_since: None,
            },
        );
    }

    pub fn set_streaming(&self, id: &str, streaming: bool) {
        if let Some(c) = self.lock().get_mut(id) {
            match (streaming, c.streaming_since) {
                (true, None) => c.streaming_since = Some(Instant::now()),
                (false, _) => c.streaming_since = None,
                _ => {}
            }
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Every camera's slot counters, read now (the load meter's input).
    pub fn counts(&self) -> Vec<super::load::CamCounts> {
        self.lock()
            .iter()
            .map(|(id, c)| {
                let k = c.pool.counters(c.idx);
                super::load::CamCounts {
                    id: id.clone(),
                    detect_fps: c.pool.weight(c.idx),
                    frames_in: k.frames_in,
                    dropped: k.dropped,
                    analysed: k.analysed,
                }
            })
            .collect()
    }

    /// The cameras and the worker pools, read now.
    pub fn observe(&self) -> (Vec<CameraObs>, Vec<StallObs>) {
        let cams = self.lock();
        let mut seen: Vec<&Arc<Pool>> = Vec::new();
        let mut stalls = Vec::new();
        let mut out = Vec::new();
        for (id, c) in cams.iter() {
            let counters = c.pool.counters(c.idx);
            out.push(CameraObs {
                id: id.clone(),
                streaming_for: c.streaming_since.map(|t| t.elapsed()),
                since_analysed: counters.last_analysed.map(|t| t.elapsed()),
                watchdog: c.watchdog,
            });
            if seen.iter().any(|p| Arc::ptr_eq(p, &c.pool)) {
                continue;
            }
            seen.push(&c.pool);
            if let Some((stalled_for, waiting)) = c.pool.stalled() {
                stalls.push(StallObs {
                    model: c.model.clone(),
                    stalled_for,
                    waiting,
                });
            }
        }
        (out, stalls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        broker_down: Duration::from_secs(300),
        stall: Duration::from_secs(60),
    };

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn healthy_when_nothing_is_wrong() {
        let o = Observed {
            cameras: vec![CameraObs {
                id: "cam1".into(),
                streaming_for: Some(s(100)),
                since_analysed: Some(Duration::from_millis(200)),
                watchdog: s(10),
            }],
            ..Observed::default()
        };
        assert!(problems(&o, &L).is_empty());
        assert!(may_ping(&problems(&o, &L)));
    }

    #[test]
    fn broker_down_counts_only_past_the_threshold_and_while_the_outbox_grows() {
        let down = |secs, growth| Observed {
            broker: Some(BrokerObs {
                down_for: s(secs),
                error: "broker mqtt://127.0.0.1:1883: connection refused".into(),
                outbox_growth: growth,
            }),
            ..Observed::default()
        };
        assert!(problems(&down(299, 40), &L).is_empty());
        assert!(
            problems(&down(3600, 0), &L).is_empty(),
            "nothing to deliver"
        );
        let p = problems(&down(301, 40), &L);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, "broker unreachable");
        assert!(p[0].text.contains("mqtt://127.0.0.1:1883"), "{}", p[0]);
        assert!(!may_ping(&p));
    }

    #[test]
    fn a_streaming_camera_with_no_analysed_frame_past_its_watchdog() {
        let cam = |streaming: Option<u64>, analysed: Option<u64>| Observed {
            cameras: vec![CameraObs {
                id: "cam1".into(),
                streaming_for: streaming.map(s),
                since_analysed: analysed.map(s),
                watchdog: s(10),
            }],
            ..Observed::default()
        };
        assert!(problems(&cam(Some(5), None), &L).is_empty(), "just started");
        assert!(
            problems(&cam(None, Some(500)), &L).is_empty(),
            "down, not wedged"
        );
        assert!(
            problems(&cam(Some(11), Some(500)), &L)
                .first()
                .is_some_and(|p| p.kind == "camera stalled")
        );
        assert!(
            problems(&cam(Some(30), None), &L)
                .first()
                .is_some_and(|p| p.text.contains("no frame analysed for 30 s"))
        );
        assert!(problems(&cam(Some(500), Some(1)), &L).is_empty());
    }

    #[test]
    fn a_worker_that_makes_no_progress_while_frames_wait() {
        let o = |secs| Observed {
            stalls: vec![StallObs {
                model: "nanodet".into(),
                stalled_for: s(secs),
                waiting: 4,
            }],
            ..Observed::default()
        };
        assert!(problems(&o(59), &L).is_empty());
        let p = problems(&o(61), &L);
        assert_eq!(
            p[0].to_string(),
            "inference stalled: model nanodet: 4 frames waiting, no worker finished one for 61 s"
        );
    }

    #[test]
    fn outbox_and_delivery_failures_are_problems() {
        let o = Observed {
            outbox_failure: Some("disk full".into()),
            delivery_error: Some("the broker refused".into()),
            ..Observed::default()
        };
        let kinds: Vec<_> = problems(&o, &L).iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["outbox failing", "delivery failing"]);
    }
}
