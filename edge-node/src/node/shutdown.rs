//! The shutdown coordinator: one deadline for the whole stop, steps in a
//! fixed order, each with its latest end inside that deadline, cameras and
//! threads joined concurrently, and a log line naming any step that overran.
//!
//! Nothing is lost by a step that overruns: every event and snapshot not yet
//! acknowledged is already in the outbox and is replayed at the next start.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::Instant as Deadline;
use tracing::{info, warn};

use super::lifecycle::NodeRun;
use super::report::RunReport;
use super::slots::Pool;

/// The whole clean stop, from the stop request to the last thread joined.
/// Stays under [`super::SHUTDOWN_DEADLINE`], after which a signalled
/// process exits anyway.
pub(super) const STOP_BUDGET: Duration = Duration::from_secs(27);

/// Latest end of each step, from the start of the stop.
const DRAIN_BY: Duration = Duration::from_secs(10);
const STATUS_BY: Duration = Duration::from_secs(12);
const FLUSH_BY: Duration = Duration::from_secs(22);
const MQTT_BY: Duration = Duration::from_secs(24);

/// One deadline and the step plan within it.
pub(super) struct Shutdown {
    start: Deadline,
    deadline: Deadline,
}

impl Shutdown {
    pub fn begin() -> Self {
        let start = Deadline::now();
        Self {
            start,
            deadline: start + STOP_BUDGET,
        }
    }

    /// The latest end of a step that must finish `by` after the start.
    fn by(&self, by: Duration) -> Deadline {
        (self.start + by).min(self.deadline)
    }

    /// Runs one step until `until`; logs the step by name when it overruns.
    async fn step<T>(&self, name: &str, until: Deadline, f: impl Future<Output = T>) -> Option<T> {
        match tokio::time::timeout_at(until, f).await {
            Ok(v) => Some(v),
            Err(_) => {
                warn!(
                    step = name,
                    after_s = (Deadline::now() - self.start).as_secs_f64(),
                    "shutdown step overran its deadline; going on with the next"
                );
                None
            }
        }
    }
}

/// Awaits every handle, concurrently (they already run); results in order.
async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<Option<T>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.ok());
    }
    out
}

/// Stops a running node: sources, then the cameras' queued frames and open
/// events, then the camera statuses, the workers, the publisher's flush, the
/// MQTT task and the threads. Returns the run's report (without the
/// publisher's counters, which the caller adds).
pub(super) async fn stop(node: &mut NodeRun, mqtt_task: JoinHandle<()>) -> RunReport {
    let sd = Shutdown::begin();
    let stopping = Instant::now();
    for c in &node.cams {
        c.stop_source();
    }
    // Cameras drain concurrently: each ends its open events, then ends.
    let analytics: Vec<_> = node
        .cams
        .iter_mut()
        .filter_map(|c| c.analytics.take())
        .collect();
    sd.step(
        "drain cameras (analytics, end events)",
        sd.by(DRAIN_BY),
        join_all(analytics),
    )
    .await;
    let report = gather(node, stopping);
    let cams = std::mem::take(&mut node.cams);
    let (statuses, sources): (Vec<_>, Vec<_>) =
        cams.into_iter().map(|c| (c.status, c.source)).unzip();
    if let Some(failed) = sd
        .step("camera status", sd.by(STATUS_BY), join_all(statuses))
        .await
    {
        node.failed.extend(failed.into_iter().flatten().flatten());
    }
    for pool in node.pools.values().flatten() {
        pool.0.stop();
    }
    let flush_until = sd.by(FLUSH_BY);
    let left = flush_until.saturating_duration_since(Deadline::now());
    let flushed = sd
        .step(
            "flush publisher",
            flush_until,
            node.publisher.shutdown(left),
        )
        .await;
    if flushed != Some(true) {
        warn!("not every message was acknowledged before the shutdown deadline");
    }
    sd.step("mqtt event loop", sd.by(MQTT_BY), mqtt_task).await;
    let threads: Vec<_> = sources
        .into_iter()
        .map(|h| tokio::task::spawn_blocking(move || h.join()))
        .chain(
            std::mem::take(&mut node.workers)
                .into_iter()
                .map(|w| tokio::task::spawn_blocking(move || drop(w.join()))),
        )
        .collect();
    sd.step(
        "join source and worker threads",
        sd.deadline,
        join_all(threads),
    )
    .await;
    info!(
        took_s = (Deadline::now() - sd.start).as_secs_f64(),
        "stopped"
    );
    report
}

/// Per-camera reports (those stopped by reloads first) and each model's
/// stage timings, once per pool.
fn gather(node: &mut NodeRun, stopping: Instant) -> RunReport {
    let mut report = RunReport::default();
    let mut seen: HashSet<*const Pool> = HashSet::new();
    let mut cams = std::mem::take(&mut node.stopped);
    for c in &node.cams {
        cams.push(c.report(stopping));
        if seen.insert(Arc::as_ptr(&c.pool)) {
            let s = c.pool.stage_samples();
            report.pre_ms.extend_from_slice(&s.pre_ms);
            report.infer_ms.extend_from_slice(&s.infer_ms);
            report.post_ms.extend_from_slice(&s.post_ms);
        }
    }
    for r in &cams {
        report.frames_dropped += r.frames_dropped;
        report.frames_analysed += r.frames_analysed;
    }
    report.cameras = cams;
    report
}
