//! edge-centre: the city centre of edge-node. It ingests every box's MQTT
//! messages (events, alerts, counts, status, snapshots) into a database with
//! nothing lost: a message is acknowledged to the broker only once its row
//! is committed. See `ARCHITECTURE.md` for the map.
//!
//! - [`config`]: the TOML config, validated into a [`config::Plan`].
//! - [`ingest`]: the broker (MQTT 5, shared subscription, manual acks).
//! - [`decode`]: topic and payload to a typed record, or a named rejection.
//! - [`writer`]: the thread that batches, commits and then acknowledges.
//! - [`store`]: the database behind one trait (SQLite).
//! - [`snapshots`]: the JPEG files, content-addressed.

pub mod config;
pub mod decode;
pub mod ingest;
pub mod snapshots;
pub mod store;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::info;

use crate::config::{Plan, StorePlan};
use crate::store::{Store, StoreError};
use crate::writer::{IngestStats, Writer};

/// Why the centre could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshots(#[from] snapshots::SnapshotError),
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// Opens the planned database.
pub fn open_store(plan: &StorePlan) -> Result<Box<dyn Store>, StoreError> {
    match plan {
        StorePlan::Sqlite { path } => Ok(Box::new(store::sqlite::Sqlite::open(path)?)),
    }
}

/// Runs the ingest until `stop` resolves, then commits and acknowledges
/// what it has received and disconnects. Returns the counters.
pub async fn run(
    plan: &Plan,
    stop: impl Future<Output = ()>,
) -> Result<Arc<IngestStats>, StartError> {
    let store = open_store(&plan.store)?;
    let snapshots = snapshots::Snapshots::open(&plan.snapshots.dir)?;
    let stats = Arc::new(IngestStats::default());
    let halt = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        store,
        snapshots,
        prefix: plan.mqtt.topic_prefix.clone(),
        max_payload: plan.mqtt.max_payload_bytes,
        batch_max: plan.batch_max,
        batch_wait: plan.batch_wait,
        stats: stats.clone(),
        stop: halt.clone(),
    };
    // Bounded: at most two batches wait for the writer; beyond that the
    // ingest stops reading and the broker holds the messages.
    let (tx, rx) = tokio::sync::mpsc::channel(plan.batch_max * 2);
    let (mut ingest, acker) = ingest::Ingest::new(&plan.mqtt);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("edge-centre-writer".into())
        .spawn(move || {
            writer.run(rx, |tokens| acker.ack(tokens));
            let _ = done_tx.send(());
        })
        .map_err(StartError::Thread)?;
    info!(filter = %plan.mqtt.filter, "edge-centre ingest started");
    ingest.run(&tx, stop).await;
    drop(tx);
    // The writer commits what it holds; its acknowledgements still go out.
    let drained = async {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), done_rx).await;
    };
    ingest.drain(drained).await;
    halt.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(stats)
}
