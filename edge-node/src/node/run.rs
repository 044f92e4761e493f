//! A node's run from start to stop: start-up (embedded broker, publisher
//! with its outbox, heartbeat, ONNX Runtime, snapshot budget, cameras), the
//! wait for the end of every file camera, a stop request or a SIGHUP
//! reload, then the shutdown coordinator and the final report.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::health::{Board, Limits};
use super::lifecycle::NodeRun;
use super::pictures::SharedBudget;
use super::report::RunReport;
use super::{NodeError, SHUTDOWN_DEADLINE, shutdown, status};
use crate::budget::ByteBudget;
use crate::config::Pipeline;
use crate::detect;
use crate::metrics::Metrics;
use crate::publish::{self, NodeIdentity, Publisher};
use crate::sdnotify::{self, Notifier};
use crate::source;

/// SIGHUPs as reload requests (at most one pending).
pub(super) fn sighup_reloads() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A full channel means a reload is already pending.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot listen for SIGHUP; config reload disabled"),
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// SIGTERM or Ctrl-C.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut t) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = t.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A hard deadline for the clean stop, should the coordinator itself hang.
/// Nothing is lost by it: every event and snapshot not yet acknowledged is
/// already in the outbox.
pub(super) fn arm_hard_deadline() {
    let _ = std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(|| {
            std::thread::sleep(SHUTDOWN_DEADLINE);
            tracing::error!(
                deadline_s = SHUTDOWN_DEADLINE.as_secs(),
                "clean stop took too long; exiting now (unacknowledged messages stay in the outbox)"
            );
            std::process::exit(1);
        });
}

/// Start, wait, stop, report.
pub(super) async fn run(
    p: Pipeline,
    stop: impl Future<Output = ()>,
    reloads: mpsc::Receiver<()>,
) -> Result<RunReport, NodeError> {
    let started = Instant::now();
    for w in &p.warnings {
        warn!(warning = %w, "config");
    }
    let (publisher, mqtt_task) = start_publisher(&p)?;
    let notifier = match Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            warn!(error = %e, "systemd notification disabled");
            None
        }
    };
    let board = Arc::new(Board::default());
    let limits = Limits {
        broker_down: Duration::from_secs_f64(p.raw.node.broker_unhealthy_s),
        stall: Duration::from_secs_f64(p.raw.node.stall_unhealthy_s),
    };
    let metrics = Metrics::new();
    metrics.set_publisher(publisher.clone());
    let metrics_task = match p.metrics_listen() {
        Some(addr) => Some(crate::metrics::start(addr, metrics.clone()).await?),
        None => None,
    };
    let mut node = start_node(p, publisher.clone(), board.clone(), metrics);
    let hb_task = status::spawn_heartbeat(
        node.p.state_dir().join("heartbeat"),
        publisher.clone(),
        board,
        limits,
        notifier.clone(),
    );
    for i in 0..node.p.raw.cameras.len() {
        node.start_camera(i).await;
    }
    if node.cams.is_empty() {
        warn!("no camera could start");
    }
    if let Some(n) = &notifier {
        let _ = n.send(&format!(
            "READY=1\n{}",
            sdnotify::status_line(&format!("{} cameras started", node.cams.len()))
        ));
    }
    wait(&mut node, stop, reloads).await;
    if let Some(n) = &notifier {
        let _ = n.send("STOPPING=1");
    }
    let mut report = shutdown::stop(&mut node, mqtt_task).await;
    hb_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    let st = publisher.stats();
    report.events = st.events.load(Ordering::Relaxed);
    report.snapshots = st.snapshots.load(Ordering::Relaxed);
    report.snapshot_bytes = st.snapshot_bytes.load(Ordering::Relaxed);
    report.bytes_published = st.bytes.load(Ordering::Relaxed);
    report.messages_published = st.sent.load(Ordering::Relaxed);
    report.messages_acked = st.acked.load(Ordering::Relaxed);
    node.failed.sort();
    node.failed.dedup();
    report.failed_cameras = std::mem::take(&mut node.failed);
    report.wall = started.elapsed();
    Ok(report)
}

/// The embedded broker when configured, then the publisher (outbox, client).
fn start_publisher(p: &Pipeline) -> Result<(Publisher, JoinHandle<()>), NodeError> {
    let raw = &p.raw;
    #[cfg(feature = "embedded-broker")]
    if let crate::config::BrokerUrl::Embedded { port } = p.broker {
        publish::embedded::start(port, raw.mqtt.max_packet_bytes)?;
        info!(port, "embedded MQTT broker listening on 127.0.0.1");
    }
    #[cfg(not(feature = "embedded-broker"))]
    if let crate::config::BrokerUrl::Embedded { .. } = p.broker {
        return Err(publish::PublishError::NoEmbeddedBroker.into());
    }
    let client_id = raw
        .mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| format!("edge-node-{}", raw.node.id));
    let opts = publish::mqtt_options(&raw.mqtt, &p.broker, &client_id)?;
    let dir = p.state_dir();
    Ok(Publisher::start(
        opts,
        NodeIdentity {
            node: raw.node.id.clone(),
            district: raw.node.district.clone(),
            prefix: raw.mqtt.topic_prefix.clone(),
            cameras: raw.cameras.iter().map(|c| c.id.clone()).collect(),
        },
        publish::OutboxOptions {
            dir: raw.outbox.dir.clone().unwrap_or(dir.join("outbox")),
            quota_bytes: (raw.outbox.quota_mb * 1024.0 * 1024.0) as u64,
            replay_rate: raw.outbox.replay_rate,
            stats_interval: Duration::from_secs_f64(raw.outbox.stats_interval_s),
            keep_delivered: Duration::from_secs_f64(raw.outbox.keep_delivered_s),
            max_packet_bytes: raw.mqtt.max_packet_bytes,
            // A few keep-alive intervals: the broker answers pings within one.
            puback_timeout: Duration::from_secs((3 * raw.mqtt.keep_alive_s).max(5)),
        },
    )?)
}

/// ONNX Runtime, GStreamer and the snapshot budget, then every camera.
fn start_node(
    p: Pipeline,
    publisher: Publisher,
    board: Arc<Board>,
    metrics: Arc<Metrics>,
) -> NodeRun {
    let runtime_err = detect::init_runtime(&p.runtime_options())
        .err()
        .map(|e| e.to_string());
    let _ = source::init();
    let budget: SharedBudget = p.raw.budget.bucket().map(|(rate, burst)| {
        info!(bytes_per_s = rate, burst_bytes = burst, "snapshot budget");
        Arc::new(Mutex::new(ByteBudget::new(rate, burst, Instant::now())))
    });
    if let Some(b) = &budget {
        publisher.set_budget(b.clone());
    }
    NodeRun {
        budget,
        p,
        publisher,
        pools: BTreeMap::new(),
        workers: Vec::new(),
        runtime_err,
        cams: Vec::new(),
        stopped: Vec::new(),
        failed: Vec::new(),
        board,
        metrics,
    }
}

/// Waits (the cameras are started): all-file pipelines end by themselves;
/// otherwise until `stop`. SIGHUP reloads in between.
async fn wait(node: &mut NodeRun, stop: impl Future<Output = ()>, mut reloads: mpsc::Receiver<()>) {
    tokio::pin!(stop);
    enum Wake {
        Done,
        Stop,
        Reload,
    }
    loop {
        let all_files = node.p.all_files();
        let wake = {
            let all_done = async {
                for c in node.cams.iter_mut() {
                    if let Some(h) = &mut c.analytics {
                        let _ = h.await;
                        c.analytics = None;
                    }
                }
            };
            tokio::select! {
                _ = all_done, if all_files => Wake::Done,
                _ = &mut stop => Wake::Stop,
                Some(()) = reloads.recv() => Wake::Reload,
            }
        };
        match wake {
            Wake::Done => {
                info!("every file camera has ended");
                return;
            }
            Wake::Stop => {
                info!("stop requested; stopping");
                return;
            }
            Wake::Reload => reload(node).await,
        }
    }
}

/// SIGHUP: reads the config file again and applies it, or says why not.
async fn reload(node: &mut NodeRun) {
    let file = node.p.file.clone();
    info!(file = %file.display(), "SIGHUP: reloading the config");
    let res = match Pipeline::load(&file) {
        Ok(new) => {
            for w in &new.warnings {
                warn!(warning = %w, "config");
            }
            node.reload(new).await
        }
        Err(e) => Err(e.to_string()),
    };
    match res {
        Ok(o) => info!(
            kept = ?o.kept, restarted = ?o.restarted, started = ?o.started,
            stopped = ?o.stopped, "config reloaded"
        ),
        // One log line: a TOML parse error spans several lines (a caret
        // under the bad spot); they are joined with " | ".
        Err(e) => warn!(
            error = %one_line(&e),
            "config reload refused; the running config stays in force"
        ),
    }
}

/// A multi-line message on one line: trimmed lines joined with " | ".
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}
