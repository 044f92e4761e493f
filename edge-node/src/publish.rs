//! MQTT: the topic tree, the JSON wire schema and the client.
//!
//! This is the only module that knows topic names and wire types. Internal
//! types (`events::EventAction`, `snapshot::Snapshot`) are converted here,
//! explicitly, so the wire schema can be versioned on its own.
//!
//! Topic tree (a public contract; see README "MQTT contract"):
//!
//! ```text
//! {prefix}/{district}/{node}/status                        retained; LWT (online | offline | stopped)
//! {prefix}/{district}/{node}/{camera}/status               retained camera state
//! {prefix}/{district}/{node}/{camera}/events               QoS 1, edge-event/3 JSON
//! {prefix}/{district}/{node}/{camera}/alerts               QoS 1, alerts only: edge-event/3
//!                                                          (per object) or edge-zone-alert/2 (crowding)
//! {prefix}/{district}/{node}/{camera}/counts               QoS 1, edge-counts/1 every counts interval
//! {prefix}/{district}/{node}/{camera}/snapshot/{id}        QoS 1, JPEG bytes, not retained
//! {prefix}/{district}/{node}/stats                         retained, edge-stats/2 (outbox, bytes, budget)
//! ```
//!
//! Events and snapshots go through the durable [`outbox`] first: a pump task
//! drains it to the client at a bounded rate and a PUBACK removes the record
//! (see `docs/outbox.md`). Status messages are retained and re-announced after
//! every connect instead.
//!
//! One job per file: `topics` (the tree above), `wire` (schema ids, message
//! types, conversion from internal forms), `record` (what the node hands
//! over: [`EventRecord`], [`SnapshotOutcome`]), `client` (MQTT options, the
//! event-loop task, pkid ↔ outbox key), `pump` (outbox → client), `stats`
//! (byte and snapshot counters, `edge-stats/2`), [`outbox`] (the durable
//! store), [`watch`] (a human-readable subscriber), `embedded` (a broker).
//! This root holds [`Publisher`] and its public methods.

#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod outbox;
pub mod watch;

mod client;
mod pump;
mod record;
mod stats;
mod topics;
mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use tokio::task::JoinHandle;

use crate::rules::CountsReport;

pub use client::mqtt_options;
pub use record::{EventRecord, OmitReason, SnapshotOutcome, SnapshotPayload};
pub use stats::{CameraStats, ClassBytes, PublishStats, SnapshotCounts};
pub use topics::{TopicClass, Topics};
pub use wire::{
    AlertDetail, BudgetStats, CAMERA_STATUS_SCHEMA, COUNTS_SCHEMA, CameraState,
    CameraStatusMessage, CountsMessage, Degraded, EVENT_SCHEMA, EventMessage, EventType, FrameSize,
    LineCountsWire, NODE_STATUS_SCHEMA, NodeOutbox, NodeState, NodeStatusMessage, OutboxStats,
    STATS_SCHEMA, SentStats, SnapshotOmitted, SnapshotRef, StatsMessage, WireBox, WireCounter,
    ZONE_ALERT_SCHEMA, ZoneAlertMessage, ZoneCountsWire, rfc3339,
};

use client::{Link, drive};
use pump::pump;
use stats::{Traffic, stats_loop};
use wire::Origin;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {what} {path}: {source}")]
    ReadPem {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the MQTT client stopped: {0}")]
    ClientGone(String),
    #[error(
        "MQTT URL \"embedded\" needs the `embedded-broker` cargo feature, which this build lacks"
    )]
    NoEmbeddedBroker,
    #[error("embedded broker: {0}")]
    Embedded(String),
    #[error("cannot connect to the MQTT broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error("the outbox writer task failed: {0}")]
    OutboxTask(String),
}

/// Outbox settings the publisher needs.
#[derive(Clone, Debug)]
pub struct OutboxOptions {
    pub dir: std::path::PathBuf,
    pub quota_bytes: u64,
    /// Outbox messages per second handed to the client, at most.
    pub replay_rate: f64,
    pub stats_interval: Duration,
}

struct Shared {
    topics: Topics,
    node: String,
    district: String,
    /// Current camera ids (a config reload changes them).
    cameras: Mutex<Vec<String>>,
    started: SystemTime,
    /// Latest retained camera status, re-sent after every reconnect.
    camera_status: Mutex<BTreeMap<String, CameraStatusMessage>>,
    stats: PublishStats,
    /// Node start, in ms since the epoch: makes event ids unique across restarts.
    boot_ms: u64,
    outbox: Arc<outbox::Outbox>,
    opts: OutboxOptions,
    link: Mutex<Link>,
    wake: tokio::sync::Notify,
    stopping: AtomicBool,
    /// Bytes per class (node-wide) and per camera, counted in `Publisher::push`.
    traffic: Mutex<Traffic>,
    /// The node's snapshot budget, for the stats message only (the node spends it).
    budget: Mutex<Option<Arc<Mutex<crate::budget::ByteBudget>>>>,
}

/// The node's MQTT publisher. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    shared: Arc<Shared>,
}

/// Identity of this node on the bus.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub node: String,
    pub district: String,
    pub prefix: String,
    pub cameras: Vec<String>,
}

impl Publisher {
    /// Open the outbox, create the client and spawn the tasks that drive its
    /// event loop and drain the outbox. The node's last will is its `offline` status.
    pub fn start(
        mut opts: MqttOptions,
        ident: NodeIdentity,
        outbox_opts: OutboxOptions,
    ) -> Result<(Publisher, JoinHandle<()>), PublishError> {
        let ob = outbox::Outbox::open(&outbox_opts.dir, outbox_opts.quota_bytes)?;
        let c = ob.counters();
        if !ob.is_empty() {
            tracing::info!(
                events = c.events,
                snapshots = c.snapshots,
                bytes = c.bytes,
                "outbox holds unacknowledged messages from a previous run; replaying"
            );
        }
        let topics = Topics::new(&ident.prefix, &ident.district, &ident.node);
        let started = SystemTime::now();
        let boot_ms = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            topics,
            node: ident.node,
            district: ident.district,
            cameras: Mutex::new(ident.cameras),
            started,
            camera_status: Mutex::new(BTreeMap::new()),
            stats: PublishStats::default(),
            traffic: Mutex::new(Traffic::default()),
            budget: Mutex::new(None),
            boot_ms,
            link: Mutex::new(Link {
                replaying: !ob.is_empty(),
                ..Link::default()
            }),
            outbox: Arc::new(ob),
            opts: outbox_opts,
            wake: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let will = node_status(&shared, NodeState::Offline, None);
        opts.set_last_will(LastWill::new(
            shared.topics.node_status(),
            serde_json::to_vec(&will).unwrap_or_default(),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        let p = Publisher { client, shared };
        let h = tokio::spawn(drive(eventloop, p.clone()));
        tokio::spawn(pump(p.clone()));
        tokio::spawn(stats_loop(p.clone()));
        Ok((p, h))
    }

    pub fn topics(&self) -> &Topics {
        &self.shared.topics
    }

    pub fn stats(&self) -> &PublishStats {
        &self.shared.stats
    }

    /// Outbox depth and eviction counters.
    pub fn outbox_counters(&self) -> outbox::Counters {
        self.shared.outbox.counters()
    }

    /// The last `seq` stored for `camera` (0 if none): numbering continues
    /// from here after a restart.
    pub fn last_seq(&self, camera: &str) -> u64 {
        self.shared.outbox.last_seq(camera)
    }

    /// A globally unique, stable event id: node, camera, node start time and track.
    pub fn event_id(&self, camera: &str, track_id: u64) -> String {
        format!(
            "{}.{camera}.{:x}.{track_id}",
            self.shared.node, self.shared.boot_ms
        )
    }

    /// Report the node's snapshot budget in the stats message.
    pub fn set_budget(&self, budget: Arc<Mutex<crate::budget::ByteBudget>>) {
        if let Ok(mut b) = self.shared.budget.lock() {
            *b = Some(budget);
        }
    }

    /// Publish a retained state message. While the link is down it is not
    /// queued: the latest state is re-announced after the next connect.
    async fn send(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), PublishError> {
        for _ in 0..50 {
            if !self.shared.stats.connected.load(Ordering::Relaxed) {
                return Ok(());
            }
            if self.push(None, topic.clone(), payload.clone(), retain) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(PublishError::ClientGone(
            "the MQTT request queue stayed full".into(),
        ))
    }

    fn origin<'a>(&'a self, camera: &'a str) -> Origin<'a> {
        Origin {
            node: &self.shared.node,
            district: &self.shared.district,
            camera,
        }
    }

    /// Commit one lifecycle message (and its snapshot, sent first, so a
    /// subscriber that reads the event can already have the picture) to the
    /// outbox; the pump publishes it. Returns once it is durable.
    /// `snapshot`: what became of the snapshot this message was due to carry
    /// (`None`: none was due).
    pub async fn event(
        &self,
        camera: &str,
        seq: u64,
        rec: &EventRecord,
        snapshot: Option<SnapshotOutcome>,
    ) -> Result<EventMessage, PublishError> {
        let id = self.event_id(camera, rec.track_id);
        let counted = snapshot.as_ref().map(SnapshotOutcome::result);
        let (picture, omitted) = snapshot.map(SnapshotOutcome::split).unwrap_or_default();
        let snap_ref = picture
            .as_ref()
            .map(|s| SnapshotRef::new(self.shared.topics.snapshot(camera, &id), s));
        let o = self.origin(camera);
        let mut msg = wire::event_message(o, seq, id, rec, snap_ref, omitted);
        let body = json(&msg)?;
        let snap = match (picture, msg.snapshot.take()) {
            (Some(s), Some(r)) => {
                // The same event without its snapshot, used if the snapshot is evicted.
                msg.snapshot_omitted = Some(SnapshotOmitted::Evicted);
                let fallback = json(&msg)?;
                msg.snapshot_omitted = None;
                msg.snapshot = Some(r.clone());
                Some((r.topic, s.jpeg, fallback))
            }
            _ => None,
        };
        let ob = self.shared.outbox.clone();
        let (cam, topic) = (camera.to_string(), self.shared.topics.events(camera));
        // Object alerts are also copied to the alerts-only topic, through the
        // outbox too and after the event, so the copy never arrives before
        // its snapshot.
        let alert_topic = (!msg.alerts.is_empty()).then(|| self.shared.topics.alerts(camera));
        let snap_len = snap.as_ref().map(|s| s.1.len() as u64);
        tokio::task::spawn_blocking(move || {
            ob.append(&outbox::Append {
                camera: &cam,
                seq,
                event_topic: &topic,
                event: &body,
                snapshot: snap
                    .as_ref()
                    .map(|(t, j, f)| (t.as_str(), j.as_slice(), f.as_slice())),
            })?;
            if let Some(t) = &alert_topic {
                ob.append(&outbox::Append {
                    camera: &cam,
                    seq,
                    event_topic: t,
                    event: &body,
                    snapshot: None,
                })?;
            }
            Ok::<_, outbox::OutboxError>(())
        })
        .await
        .map_err(|e| PublishError::OutboxTask(e.to_string()))??;
        self.count_snapshot(camera, counted);
        let st = &self.shared.stats;
        st.events.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = snap_len {
            st.snapshots.fetch_add(1, Ordering::Relaxed);
            st.snapshot_bytes.fetch_add(n, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
        Ok(msg)
    }

    /// Publish a zone-level alert on the alerts topic, its whole-frame
    /// snapshot first when there is one. `kind` is `crowding` or
    /// `crowding_cleared`; `seq` counts this camera's zone alerts;
    /// `snapshot`: what became of the crowding picture (`None`: none was due).
    #[allow(clippy::too_many_arguments)]
    pub async fn zone_alert(
        &self,
        camera: &str,
        seq: u64,
        zone: &str,
        kind: &str,
        occupancy: u32,
        dwell_s: Option<f64>,
        time: SystemTime,
        snapshot: Option<SnapshotOutcome>,
    ) -> Result<ZoneAlertMessage, PublishError> {
        let id = format!(
            "{}.{camera}.{:x}.z{seq}",
            self.shared.node, self.shared.boot_ms
        );
        let counted = snapshot.as_ref().map(SnapshotOutcome::result);
        let (picture, omitted) = snapshot.map(SnapshotOutcome::split).unwrap_or_default();
        let snap_ref = match picture {
            Some(s) => {
                let topic = self.shared.topics.snapshot(camera, &id);
                let r = SnapshotRef::new(topic.clone(), &s);
                let n = s.jpeg.len() as u64;
                self.send(topic, s.jpeg, false).await?;
                let st = &self.shared.stats;
                st.snapshots.fetch_add(1, Ordering::Relaxed);
                st.snapshot_bytes.fetch_add(n, Ordering::Relaxed);
                Some(r)
            }
            None => None,
        };
        let msg = ZoneAlertMessage {
            schema: ZONE_ALERT_SCHEMA.into(),
            id,
            seq,
            node: self.shared.node.clone(),
            district: self.shared.district.clone(),
            camera: camera.into(),
            zone: zone.into(),
            alerts: vec![kind.to_string()],
            occupancy,
            dwell_s: dwell_s.map(|d| (d * 1e3).round() / 1e3),
            time: rfc3339(time),
            snapshot: snap_ref,
            snapshot_omitted: omitted.map(SnapshotOmitted::from),
        };
        self.count_snapshot(camera, counted);
        let body = json(&msg)?;
        self.send(self.shared.topics.alerts(camera), body, false)
            .await?;
        Ok(msg)
    }

    /// Publish one counts message (not retained: every interval matters):
    /// `report` of `camera` for the interval `interval_start..interval_end`,
    /// class ids named by `label`. Returns the payload size.
    pub async fn counts(
        &self,
        camera: &str,
        seq: u64,
        report: &CountsReport,
        label: impl Fn(u32) -> String,
        interval_start: SystemTime,
        interval_end: SystemTime,
    ) -> Result<usize, PublishError> {
        let o = self.origin(camera);
        let msg = wire::counts_message(o, seq, report, &label, interval_start, interval_end);
        let body = json(&msg)?;
        let n = body.len();
        self.send(self.shared.topics.counts(camera), body, false)
            .await?;
        Ok(n)
    }
    /// Record and publish (retained) a camera's state.
    pub async fn camera_status(
        &self,
        camera: &str,
        state: CameraState,
        last_error: Option<String>,
        frames: u64,
        frames_dropped: u64,
    ) -> Result<(), PublishError> {
        let msg = CameraStatusMessage {
            schema: CAMERA_STATUS_SCHEMA.into(),
            node: self.shared.node.clone(),
            camera: camera.into(),
            state,
            since: rfc3339(SystemTime::now()),
            last_error,
            frames,
            frames_dropped,
        };
        if let Ok(mut m) = self.shared.camera_status.lock() {
            m.insert(camera.to_string(), msg.clone());
        }
        let body = json(&msg)?;
        self.send(self.shared.topics.camera_status(camera), body, true)
            .await
    }

    /// The camera list changed (config reload): re-announce the node status.
    pub async fn set_cameras(&self, cameras: Vec<String>) {
        if let Ok(mut c) = self.shared.cameras.lock() {
            *c = cameras;
        }
        let online = node_status(&self.shared, NodeState::Online, Some(self.shared.started));
        if let Ok(body) = serde_json::to_vec(&online) {
            let _ = self
                .send(self.shared.topics.node_status(), body, true)
                .await;
        }
    }

    /// A camera removed by a config reload: forget its status and clear its
    /// retained status message (an empty retained payload deletes it at the broker).
    pub async fn camera_removed(&self, camera: &str) -> Result<(), PublishError> {
        if let Ok(mut m) = self.shared.camera_status.lock() {
            m.remove(camera);
        }
        self.send(self.shared.topics.camera_status(camera), Vec::new(), true)
            .await
    }

    /// Wait until the outbox is empty and every QoS-1 publish is acknowledged,
    /// or `timeout` passes. Returns whether everything was acknowledged; what
    /// was not stays in the outbox for the next start.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self
                .shared
                .link
                .lock()
                .map(|l| l.queued.is_empty() && l.by_pkid.is_empty() && l.acked.is_empty())
                .unwrap_or(false);
            if idle && self.shared.outbox.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Clean stop: flush the outbox, publish `stopped` and the final stats
    /// (retained), wait for their acks, disconnect.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let ok = self.flush(timeout).await;
        self.shared.stopping.store(true, Ordering::Relaxed);
        let msg = node_status(&self.shared, NodeState::Stopped, Some(SystemTime::now()));
        if let Ok(body) = serde_json::to_vec(&msg) {
            let _ = self
                .send(self.shared.topics.node_status(), body, true)
                .await;
        }
        self.publish_stats();
        let _ = self.flush(Duration::from_secs(2)).await;
        let _ = self.client.disconnect().await;
        ok
    }
}

fn node_status(shared: &Shared, state: NodeState, since: Option<SystemTime>) -> NodeStatusMessage {
    NodeStatusMessage {
        schema: NODE_STATUS_SCHEMA.into(),
        node: shared.node.clone(),
        district: shared.district.clone(),
        state,
        since: since.map(rfc3339),
        version: env!("CARGO_PKG_VERSION").into(),
        cameras: shared.cameras.lock().map(|c| c.clone()).unwrap_or_default(),
        outbox: (state != NodeState::Offline).then(|| {
            let c = shared.outbox.counters();
            NodeOutbox {
                events: c.events,
                snapshots: c.snapshots,
                evicted_events: c.evicted_events,
                evicted_snapshots: c.evicted_snapshots,
            }
        }),
    }
}

/// A wire message as JSON bytes.
fn json<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>, PublishError> {
    serde_json::to_vec(msg).map_err(|e| PublishError::ClientGone(e.to_string()))
}
