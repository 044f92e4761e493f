//! Wiring and lifetimes: cameras → frame slots → inference workers →
//! per-camera analytics → publisher. One job per file:
//!
//! - `run.rs`: start-up (broker, publisher, runtime, budget), the wait for
//!   the end / a stop / a SIGHUP reload, then the shutdown;
//! - `lifecycle.rs`: [`ReloadOutcome`], `NodeRun` and its cameras
//!   (`start_camera`, `stop_camera`, `reload`, fingerprints);
//! - `slots.rs`: the per-camera frame slots and hand-overs (bounded, with
//!   their full behaviour as types) shared by a model's workers;
//! - `workers.rs`: the `detect-…` inference threads and `prep-…` companions;
//! - `camera.rs`: one camera's analytics as a pure step (tracker → rules →
//!   events → typed outgoing messages);
//! - `emit.rs`: the camera's async task: snapshots rendered, messages published;
//! - `pictures.rs`: snapshot rendering with privacy and the byte budget;
//! - `status.rs`: camera status and the heartbeat file;
//! - `shutdown.rs`: the shutdown coordinator (one deadline);
//! - `report.rs`: [`RunReport`], [`CameraReport`].
//!
//! Threads and queues are listed in `ARCHITECTURE.md`. GStreamer streaming
//! threads only copy a frame into the camera's slot; workers never wait on
//! a camera's analytics; the analytics tasks run on tokio, JPEG encoding on
//! its blocking pool.

mod camera;
mod emit;
mod health;
mod lifecycle;
mod load;
mod pictures;
mod report;
mod run;
mod shutdown;
mod slots;
mod status;
mod workers;

#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{self, Pipeline};
use crate::{publish, source};

pub use lifecycle::ReloadOutcome;
pub use report::{CameraReport, RunReport, median};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("no camera could start: {0}")]
    NothingToRun(String),
}

/// The longest a stop (SIGTERM / SIGINT) may take before the process exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// Run a pipeline until every file camera has ended (all-file pipelines) or
/// SIGTERM / Ctrl-C arrives. SIGHUP reloads the config file (cameras whose
/// settings changed restart; see [`ReloadOutcome`]). Publishes `stopped` and
/// flushes before returning.
pub async fn run(p: Pipeline) -> Result<RunReport, NodeError> {
    let reloads = run::sighup_reloads();
    let stop = async {
        run::shutdown_signal().await;
        run::arm_hard_deadline();
    };
    run::run(p, stop, reloads).await
}

/// [`run`], stopping when `stop` completes instead of on a signal (timed runs,
/// `edge-node bench`). All-file pipelines still end by themselves. No reload.
pub async fn run_until(
    p: Pipeline,
    stop: impl Future<Output = ()>,
) -> Result<RunReport, NodeError> {
    let (_tx, rx) = mpsc::channel(1);
    run::run(p, stop, rx).await
}

/// Sections a running node can apply on reload; every other section (node,
/// mqtt, detector, outbox, and any added later) needs a restart.
const RELOADABLE: &[&str] = &[
    "cameras", "tracker", "events", "snapshot", "rules", "privacy",
];

/// Top-level sections that differ between two configs and cannot be reloaded.
pub fn restart_only_changes(old: &config::PipelineFile, new: &config::PipelineFile) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["(config not comparable)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !RELOADABLE.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| format!("[{k}]"))
        .collect()
}
