//! edge-centre: the city centre of edge-node. It ingests every box's MQTT
//! messages (events, alerts, counts, status, snapshots) into a database with
//! nothing lost: a message is acknowledged to the broker only once its row
//! is committed. See `ARCHITECTURE.md` for the map.
//!
//! - [`config`]: the TOML config, validated into a [`config::Plan`].
//! - [`ingest`]: the broker (MQTT 5, shared subscription, manual acks).
//! - [`decode`]: topic and payload to a typed record, or a named rejection.
//! - [`writer`]: the thread that batches, commits and then acknowledges.
//! - [`store`]: the database behind one trait (SQLite, PostgreSQL).
//! - [`snapshots`]: the JPEG files, content-addressed.
//! - [`simulate`]: a load generator playing many boxes' traffic.
//! - [`web`]: the operators' console and JSON API (`[console] listen`).

pub mod bench;
pub mod config;
pub mod decode;
pub mod ingest;
pub mod simulate;
pub mod snapshots;
pub mod store;
pub mod web;
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
    #[error(transparent)]
    Console(#[from] web::ServeError),
}

/// Opens the planned database.
pub fn open_store(plan: &StorePlan) -> Result<Box<dyn Store>, StoreError> {
    match plan {
        StorePlan::Sqlite { path } => Ok(Box::new(store::sqlite::Sqlite::open(path)?)),
        StorePlan::Postgres { url, password } => Ok(Box::new(store::postgres::Postgres::open(
            url,
            password.as_deref(),
        )?)),
    }
}

/// Runs the ingest until `stop` resolves, then commits and acknowledges
/// what it has received and disconnects. Returns the counters.
pub async fn run(
    plan: &Plan,
    stop: impl Future<Output = ()>,
) -> Result<Arc<IngestStats>, StartError> {
    let snapshots = snapshots::Snapshots::open(&plan.snapshots.dir)?;
    let stats = Arc::new(IngestStats::default());
    let halt = Arc::new(AtomicBool::new(false));
    // Bounded: at most two batches wait for the writer; beyond that the
    // ingest stops reading and the broker holds the messages.
    let (tx, rx) = tokio::sync::mpsc::channel(plan.batch_max * 2);
    let (mut ingest, acker) = ingest::Ingest::new(&plan.mqtt);
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel::<Result<(), StoreError>>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (store_plan, prefix) = (plan.store.clone(), plan.mqtt.topic_prefix.clone());
    let (max_payload, batch_max, batch_wait) =
        (plan.mqtt.max_payload_bytes, plan.batch_max, plan.batch_wait);
    let (st, halted) = (stats.clone(), halt.clone());
    let (keep, max_snapshot_bytes) = (plan.snapshots.keep, plan.snapshots.max_bytes);
    let handle = tokio::runtime::Handle::current();
    let replay = plan.replay.enabled.then(|| writer::Replayer {
        me: plan.mqtt.client_id.clone(),
        plan: plan.replay.clone(),
        acker: acker.clone(),
    });
    // The console's live feed: the writer publishes what it committed.
    let (live, _) = tokio::sync::broadcast::channel(1024);
    let on_commit = plan
        .console
        .listen
        .is_some()
        .then(|| web::live::publisher(live.clone()));
    // The database is opened and used on the writer thread only: its
    // clients may block (PostgreSQL's runs its own small runtime).
    let thread = std::thread::Builder::new()
        .name("edge-centre-writer".into())
        .spawn(move || {
            let store = match open_store(&store_plan) {
                Ok(s) => {
                    let _ = opened_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let writer = Writer {
                store,
                snapshots,
                prefix,
                max_payload,
                batch_max,
                batch_wait,
                stats: st,
                stop: halted,
                keep,
                max_snapshot_bytes,
                handle,
                replay,
                on_commit,
            };
            writer.run(rx, |tokens| acker.ack(tokens));
            let _ = done_tx.send(());
        })
        .map_err(StartError::Thread)?;
    match opened_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            return Err(e.into());
        }
        Err(_) => {
            return Err(StartError::Thread(std::io::Error::other(
                "the writer thread died",
            )));
        }
    }
    let console = match plan.console.listen {
        Some(addr) => Some(start_console(plan, addr, live).await?),
        None => None,
    };
    info!(filter = %plan.mqtt.filter, "edge-centre ingest started");
    let reporter = tokio::spawn(report(stats.clone()));
    ingest.run(&tx, stop).await;
    reporter.abort();
    drop(tx);
    // The writer commits what it holds; its acknowledgements still go out.
    let drained = async {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), done_rx).await;
    };
    ingest.drain(drained).await;
    halt.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    if let Some(c) = console {
        c.abort();
    }
    Ok(stats)
}

/// Serves the operators' console (the database is migrated by now).
async fn start_console(
    plan: &Plan,
    addr: std::net::SocketAddr,
    live: tokio::sync::broadcast::Sender<web::Update>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let console = web::Console {
        db: Arc::new(store::console::ConsoleDb::open(&plan.store)?),
        snapshots: plan.snapshots.dir.clone(),
        live,
        session: plan.console.session,
        secure_cookie: plan.console.secure_cookie,
    };
    Ok(web::serve(&plan.console, addr, console).await?)
}

/// Logs the ingest's rates every 10 s (only when something happened).
async fn report(stats: Arc<IngestStats>) {
    let mut last = (0, 0, 0);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = (
            stats.received.load(Ordering::Relaxed),
            stats.stored.load(Ordering::Relaxed),
            stats.rejected.load(Ordering::Relaxed),
        );
        if now == last {
            continue;
        }
        let (p50, p99) = {
            let l = stats
                .latency
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (l.quantile(0.5), l.quantile(0.99))
        };
        info!(
            received_per_s = (now.0 - last.0) / 10,
            stored_per_s = (now.1 - last.1) / 10,
            rejected = now.2,
            received = now.0,
            stored = now.1,
            commit_latency_p50_ms = p50,
            commit_latency_p99_ms = p99,
            "ingest"
        );
        last = now;
    }
}
