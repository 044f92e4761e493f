//! What the node says about itself outside MQTT events: each camera's
//! retained status (from its source's state, latest state wins), and the
//! heartbeat file the container health check reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span, info, warn};

use super::slots::Pool;
use crate::publish::{self, CameraState, Publisher};
use crate::source::SourceState;

/// How a source state reads on the camera status topic.
fn camera_state(s: &SourceState) -> (CameraState, Option<String>) {
    match s {
        SourceState::Starting => (CameraState::Starting, None),
        SourceState::Streaming => (CameraState::Streaming, None),
        SourceState::Reconnecting { error, .. } => (CameraState::Reconnecting, Some(error.clone())),
        SourceState::Failed { error } => (CameraState::Failed, Some(error.clone())),
        SourceState::Ended => (CameraState::Ended, None),
    }
}

/// The camera status task: publishes every state change of the camera's
/// source (retained), with the slot's frame counters. A privacy refusal
/// (`note`) stays visible as the error while the source is fine. Ends when
/// the source drops its state sender; yields the camera id if it failed.
pub(super) fn spawn_camera_status(
    camera: String,
    mut states: watch::Receiver<SourceState>,
    publisher: Publisher,
    pool: Arc<Pool>,
    idx: usize,
    note: Option<String>,
    span: Span,
) -> JoinHandle<Option<String>> {
    tokio::spawn(
        async move {
            let mut failed = None;
            loop {
                let s = states.borrow_and_update().clone();
                if let SourceState::Failed { .. } = s {
                    failed = Some(camera.clone());
                }
                let (state, err) = camera_state(&s);
                let err = err
                    .or_else(|| note.clone())
                    .map(|e| crate::redact::userinfo(&e).into_owned());
                let c = pool.counters(idx);
                match &err {
                    Some(e) => warn!(state = ?state, error = %e, "camera state"),
                    None => info!(state = ?state, "camera state"),
                }
                let _ = publisher
                    .camera_status(&camera, state, err, c.frames_in, c.dropped)
                    .await;
                if states.changed().await.is_err() {
                    break;
                }
            }
            failed
        }
        .instrument(span),
    )
}

/// Writes the current time to `path` every 5 s, for the container health
/// check, and a line `outbox failing: <reason>` while the outbox store
/// cannot store messages, `delivery failing: <reason>` while the broker
/// refuses messages or stops acknowledging (`edge-node healthcheck` then
/// fails).
pub(super) fn spawn_heartbeat(path: PathBuf, publisher: Publisher) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        loop {
            let mut text = publish::rfc3339(SystemTime::now());
            if let Some(f) = publisher.outbox_failure() {
                text.push_str(&format!(
                    "\noutbox failing: {} (since {}, {} failed writes)",
                    f.reason,
                    publish::rfc3339(f.since),
                    f.failed_writes
                ));
            }
            if let Some(e) = publisher.delivery_error() {
                text.push_str(&format!("\ndelivery failing: {e}"));
            }
            text.push('\n');
            let _ = std::fs::write(&path, text);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}
