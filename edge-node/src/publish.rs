//! MQTT: the topic tree, the JSON wire schema and the client.
//!
//! This is the only module of the node that knows topic names and wire types;
//! both are defined in the `edge_wire` crate (shared with the centre) and
//! re-exported here. Internal types (`events::EventAction`,
//! `snapshot::Snapshot`) are converted here, explicitly, so the wire schema can
//! be versioned on its own.
//!
//! Topic tree (a public contract; see README "MQTT contract"):
//!
//! ```text
//! {prefix}/{district}/{node}/status                        retained; LWT (online | offline | stopped)
//! {prefix}/{district}/{node}/{camera}/status               retained camera state
//! {prefix}/{district}/{node}/{camera}/events               QoS 1, edge-event/7 JSON
//! {prefix}/{district}/{node}/{camera}/alerts               QoS 1, alerts only: edge-event/7
//!                                                          (per object), edge-zone-alert/3 (crowding)
//!                                                          or edge-camera-alert/1 (tamper)
//! {prefix}/{district}/{node}/{camera}/counts               QoS 1, edge-counts/1 every counts interval
//! {prefix}/{district}/{node}/{camera}/snapshot/{id}        QoS 1, JPEG bytes, not retained
//! {prefix}/{district}/{node}/stats                         retained, edge-stats/3 (outbox, bytes, budget)
//! {prefix}/{district}/{node}/replay                        subscribed, QoS 1: edge-replay-request/1 from the centre
//! {prefix}/{district}/{node}/{camera}/replayed             QoS 1, edge-replay-answer/1
//! ```
//!
//! Events and snapshots go through the durable [`outbox`] first: a pump task
//! drains it to the client at a bounded rate and a PUBACK removes the record
//! (see `docs/outbox.md`). Status messages are retained and re-announced after
//! every connect instead.
//!
//! One job per file: `wire` (conversion from internal forms into the
//! `edge_wire` message types), `record` (what the node hands
//! over: [`EventRecord`], [`SnapshotOutcome`]), `client` (MQTT options, the
//! event-loop task, pkid ↔ outbox key), `pump` (outbox → client), `stats`
//! (byte and snapshot counters, `edge-stats/3`), `replay` (the replay
//! server: kept events sent again on request), [`outbox`] (the durable
//! store), [`watch`] (a human-readable subscriber), `embedded` (a broker).
//! This root holds [`Publisher`] and its public methods.

#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod outbox;
pub mod watch;

mod client;
mod pump;
mod record;
mod replay;
mod stats;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::v5::{AsyncClient, MqttOptions};
use tokio::task::JoinHandle;

use crate::rules::CountsReport;

pub use client::{BrokerProbe, mqtt_options, probe_broker, tls_config};
pub use edge_wire::{
    AlertDetail, BudgetStats, CAMERA_ALERT_SCHEMA, CAMERA_STATUS_SCHEMA, COUNTS_SCHEMA,
    CameraAlertMessage, CameraLive, CameraState, CameraStats, CameraStatusMessage, ClassBytes,
    CountsMessage, Degraded, DropCounts, EVENT_SCHEMA, EndReason, EventMessage, EventType,
    FrameSize, LineCountsWire, NODE_STATUS_SCHEMA, NodeLoad, NodeOutbox, NodeState,
    NodeStatusMessage, OutboxStats, STATS_SCHEMA, SentStats, SnapshotCounts, SnapshotOmitted,
    SnapshotRef, SnapshotSource, StatsMessage, StreamDesc, TopicClass, Topics, WireBox,
    WireCounter, ZONE_ALERT_SCHEMA, ZoneAlertMessage, ZoneCountsWire, rfc3339,
};
pub use record::{
    CameraAlertRecord, EventRecord, OmitReason, SnapshotOutcome, SnapshotPayload, ZoneAlertRecord,
};
pub use replay::MAX_RANGE as REPLAY_MAX_RANGE;
pub use stats::{BudgetView, PublishStats, PublisherView, ReplayView};

use client::{Link, drive};
use pump::{PUBLISH_OVERHEAD, pump};
use stats::{Traffic, stats_loop};
use wire::Origin;

/// How long a write to a healthy outbox is retried (while the store is
/// reopened after a fault) before the message is counted as lost. Once the
/// store is known to be failing, one attempt is made per message.
const STORE_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {what} {path}: {source}")]
    ReadPem {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A TLS file that reads but does not parse (not PEM, no certificate, a
    /// key that does not fit the certificate).
    #[error("{what} {path}: {problem}")]
    Tls {
        what: &'static str,
        path: String,
        problem: String,
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
    #[error(
        "message {seq} of camera {camera} is lost: the outbox could not store it ({reason}); its seq is skipped and counted in lost_events"
    )]
    Lost {
        camera: String,
        seq: String,
        reason: String,
    },
}

/// Outbox settings the publisher needs.
#[derive(Clone, Debug)]
pub struct OutboxOptions {
    pub dir: std::path::PathBuf,
    pub quota_bytes: u64,
    /// Outbox messages per second handed to the client, at most.
    pub replay_rate: f64,
    pub stats_interval: Duration,
    /// How long delivered lifecycle events are kept for replay requests
    /// (`[outbox] keep_delivered_s`; zero: not kept).
    pub keep_delivered: Duration,
    /// The node's own MQTT packet limit (`[mqtt] max_packet_bytes`).
    pub max_packet_bytes: usize,
    /// A publish waiting this long with no PUBACK arriving drops the connection.
    pub puback_timeout: Duration,
}

struct Shared {
    topics: Topics,
    node: String,
    district: String,
    /// Current camera ids (a config reload changes them).
    cameras: Mutex<Vec<String>>,
    /// Whether the node keeps up (the node status's `load`).
    load: Mutex<Option<NodeLoad>>,
    started: SystemTime,
    /// Latest retained camera status, re-sent after every reconnect.
    camera_status: Mutex<BTreeMap<String, CameraStatusMessage>>,
    /// Per camera: its active tamper conditions (the status's `health`).
    health: Mutex<HashMap<String, Vec<String>>>,
    stats: PublishStats,
    /// Per camera: its latest run stamp (see [`Publisher::camera_run`]).
    runs: Mutex<HashMap<String, u64>>,
    /// The broker's maximum packet size from its CONNACK (0: none announced).
    broker_max_packet: AtomicU32,
    /// Why delivery is held up (a refusal, a PUBACK timeout), until the next delivery.
    delivery_error: Mutex<Option<String>>,
    /// The broker's address, for logs.
    broker: String,
    /// Since when the broker cannot be reached, and why (`None` while connected).
    broker_down: Mutex<Option<BrokerDown>>,
    outbox: Arc<outbox::Outbox>,
    opts: OutboxOptions,
    link: Mutex<Link>,
    wake: tokio::sync::Notify,
    stopping: AtomicBool,
    /// Bytes per class (node-wide) and per camera, counted in `Publisher::push`.
    traffic: Mutex<Traffic>,
    /// The node's snapshot budget, for the stats message only (the node spends it).
    budget: Mutex<Option<Arc<Mutex<crate::budget::ByteBudget>>>>,
    /// Replay requests waiting for the replay task (bounded: `replay::QUEUE`).
    replay_tx: tokio::sync::mpsc::Sender<replay::Incoming>,
}

/// The broker cannot be reached: since when, why, and the outbox's size then.
#[derive(Clone, Debug)]
pub struct BrokerDown {
    pub since: SystemTime,
    /// Monotonic twin of `since`, for durations.
    pub since_instant: Instant,
    /// The last connection error, worded (names the broker URL).
    pub error: String,
    /// Messages in the outbox when the outage began.
    pub outbox_at_start: u64,
}

/// A camera error as the status carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CameraError {
    /// Worded for people.
    pub summary: String,
    /// The library's text.
    pub detail: Option<String>,
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
    /// event loop and drain the outbox. The node's last will is its `offline`
    /// status. Objects a previous run left open (it died without sending
    /// their `end`) are ended first, with `end_reason: "restart"`.
    pub fn start(
        mut opts: MqttOptions,
        ident: NodeIdentity,
        outbox_opts: OutboxOptions,
    ) -> Result<(Publisher, JoinHandle<()>), PublishError> {
        let ob = outbox::Outbox::open_keeping(
            &outbox_opts.dir,
            outbox_opts.quota_bytes,
            outbox_opts.keep_delivered,
        )?;
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
        let (host, port) = opts.broker_address();
        let (replay_tx, replay_rx) = tokio::sync::mpsc::channel(replay::QUEUE);
        let shared = Arc::new(Shared {
            topics,
            node: ident.node,
            district: ident.district,
            cameras: Mutex::new(ident.cameras),
            load: Mutex::new(None),
            started: SystemTime::now(),
            camera_status: Mutex::new(BTreeMap::new()),
            health: Mutex::new(HashMap::new()),
            stats: PublishStats::default(),
            traffic: Mutex::new(Traffic::default()),
            budget: Mutex::new(None),
            runs: Mutex::new(HashMap::new()),
            broker_max_packet: AtomicU32::new(0),
            delivery_error: Mutex::new(None),
            broker: format!(
                "{}://{host}:{port}",
                if matches!(opts.transport(), rumqttc::Transport::Tls(_)) {
                    "mqtts"
                } else {
                    "mqtt"
                }
            ),
            broker_down: Mutex::new(None),
            link: Mutex::new(Link {
                replaying: !ob.is_empty(),
                ..Link::default()
            }),
            outbox: Arc::new(ob),
            opts: outbox_opts,
            wake: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
            replay_tx,
        });
        let will = node_status(&shared, NodeState::Offline, None);
        opts.set_last_will(LastWill::new(
            shared.topics.node_status(),
            serde_json::to_vec(&will).unwrap_or_default(),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        let p = Publisher { client, shared };
        p.end_open_objects();
        let h = tokio::spawn(drive(eventloop, p.clone()));
        tokio::spawn(pump(p.clone()));
        tokio::spawn(stats_loop(p.clone()));
        tokio::spawn(replay::serve(p.clone(), replay_rx));
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

    /// Why the outbox store is failing (`None`: healthy).
    pub fn outbox_failure(&self) -> Option<outbox::Failure> {
        self.shared.outbox.health()
    }

    /// The last `seq` handed out for `camera` (0 if none): numbering
    /// continues from here after a restart.
    pub fn last_seq(&self, camera: &str) -> u64 {
        self.shared.outbox.last_seq(camera)
    }

    /// A new run of `camera` (it starts, or restarts after a reload): its
    /// start in ms since the epoch, strictly greater than any earlier run of
    /// the camera in this process. Object ids carry it, so that a restarted
    /// tracker counting its track ids from 1 again names new objects anew.
    pub fn camera_run(&self, camera: &str) -> u64 {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let Ok(mut runs) = self.shared.runs.lock() else {
            return now;
        };
        let run = runs.get(camera).map_or(now, |&last| now.max(last + 1));
        runs.insert(camera.to_string(), run);
        run
    }

    /// A globally unique, stable object id: node, camera, camera run and track.
    pub fn event_id(&self, camera: &str, run: u64, track_id: u64) -> String {
        format!("{}.{camera}.{run:x}.{track_id}", self.shared.node)
    }

    /// Report the node's snapshot budget in the stats message.
    pub fn set_budget(&self, budget: Arc<Mutex<crate::budget::ByteBudget>>) {
        if let Ok(mut b) = self.shared.budget.lock() {
            *b = Some(budget);
        }
    }

    /// The tightest packet limit now: the node's `max_packet_bytes` or the
    /// broker's maximum packet size (from its CONNACK), and whose it is.
    fn packet_limit(&self) -> Option<(usize, &'static str)> {
        let own = (
            self.shared.opts.max_packet_bytes,
            "the node's [mqtt] max_packet_bytes",
        );
        let broker = self.shared.broker_max_packet.load(Ordering::Relaxed) as usize;
        if broker > 0 && broker < own.0 {
            Some((broker, "the broker's maximum packet size"))
        } else {
            Some(own)
        }
    }

    /// A snapshot that cannot fit one packet on `topic` goes as `too_large`.
    fn fit(&self, camera: &str, topic: &str, s: SnapshotOutcome) -> SnapshotOutcome {
        let SnapshotOutcome::Sent(p) = &s else {
            return s;
        };
        let size = topic.len() + p.jpeg.len() + PUBLISH_OVERHEAD;
        match self.packet_limit() {
            Some((limit, whose)) if size > limit => {
                tracing::warn!(
                    camera,
                    topic,
                    bytes = size,
                    limit,
                    limit_of = whose,
                    "snapshot larger than the MQTT packet limit: the message goes without it (snapshot_omitted: too_large)"
                );
                SnapshotOutcome::Omitted(OmitReason::TooLarge)
            }
            _ => s,
        }
    }

    pub(super) fn set_delivery_error(&self, e: Option<String>) {
        let changed = match self.shared.delivery_error.lock() {
            Ok(mut d) if *d != e => {
                *d = e;
                true
            }
            _ => false,
        };
        if changed {
            self.announce_node();
        }
    }

    /// Why delivery is held up (a refusal by the broker, no PUBACK in
    /// time), until the broker acknowledges again; `None` otherwise.
    pub fn delivery_error(&self) -> Option<String> {
        self.shared
            .delivery_error
            .lock()
            .ok()
            .and_then(|d| d.clone())
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

    /// Commit `rec` to the outbox. A storage fault is retried for up to
    /// [`STORE_RETRY`] while the store was healthy; when the message still
    /// cannot be stored it is counted as lost and its `seq` stays consumed.
    async fn store(&self, rec: Arc<Record>) -> Result<(), PublishError> {
        let was_failing = self.shared.outbox.health().is_some();
        let deadline = Instant::now()
            + if was_failing {
                Duration::ZERO
            } else {
                STORE_RETRY
            };
        loop {
            let (ob, r) = (self.shared.outbox.clone(), rec.clone());
            let res = tokio::task::spawn_blocking(move || ob.append(&r.as_append()))
                .await
                .map_err(|e| PublishError::OutboxTask(e.to_string()))?;
            match res {
                Ok(_) => {
                    self.shared.wake.notify_one();
                    return Ok(());
                }
                Err(e) if e.fault().is_some() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    self.shared.outbox.lost(&rec.camera, rec.seq);
                    self.shared.wake.notify_one();
                    return Err(PublishError::Lost {
                        camera: rec.camera.clone(),
                        seq: rec.seq.map_or_else(|| "-".into(), |s| s.to_string()),
                        reason: e.fault().unwrap_or_else(|| e.to_string()),
                    });
                }
            }
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
        let id = self.event_id(camera, rec.run, rec.track_id);
        let snap_topic = self.shared.topics.snapshot(camera, &id);
        let snapshot = snapshot.map(|s| self.fit(camera, &snap_topic, s));
        let counted = snapshot.as_ref().map(SnapshotOutcome::result);
        let (picture, omitted) = snapshot.map(SnapshotOutcome::split).unwrap_or_default();
        let snap_ref = picture.as_ref().map(|s| wire::snapshot_ref(snap_topic, s));
        let o = self.origin(camera);
        let mut msg = wire::event_message(o, seq, id.clone(), rec, snap_ref, omitted);
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
        let snap_len = snap.as_ref().map(|s| s.1.len() as u64);
        // What a restart needs to end the object: its latest message, without a picture.
        let last = snap.as_ref().map_or_else(|| body.clone(), |s| s.2.clone());
        let open = match rec.kind {
            EventType::New | EventType::Update => Some(last),
            EventType::End => None,
        };
        self.store(Arc::new(Record {
            camera: camera.to_string(),
            seq: Some(seq),
            topic: self.shared.topics.events(camera),
            body,
            snapshot: snap,
            // Object alerts are also copied to the alerts-only topic, in the
            // same commit and after the event, so the copy never arrives
            // before its snapshot.
            copy_topic: (!msg.alerts.is_empty()).then(|| self.shared.topics.alerts(camera)),
            open: Some((id, open)),
        }))
        .await?;
        self.count_snapshot(camera, counted);
        let st = &self.shared.stats;
        st.events.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = snap_len {
            st.snapshots.fetch_add(1, Ordering::Relaxed);
            st.snapshot_bytes.fetch_add(n, Ordering::Relaxed);
        }
        Ok(msg)
    }

    /// End every object a previous run left open (it died before their
    /// `end`): an `end` with `end_reason: "restart"`, the object's last known
    /// box and time, and the camera's next `seq`.
    fn end_open_objects(&self) {
        let ob = &self.shared.outbox;
        let open = match ob.open_objects() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot read the objects left open");
                return;
            }
        };
        let mut ended = 0;
        for (id, last) in open {
            let mut m = match serde_json::from_slice::<EventMessage>(&last) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(id = %id, error = %e, "outbox: an open object's last message is unreadable; forgetting it");
                    let _ = ob.forget_open(&id);
                    continue;
                }
            };
            let seq = ob.last_seq(&m.camera) + 1;
            m.schema = EVENT_SCHEMA.into();
            m.seq = seq;
            m.kind = EventType::End;
            m.end_time = Some(m.frame_time.clone());
            m.snapshot = None;
            m.snapshot_omitted = None;
            m.alerts.clear();
            m.alert = None;
            m.end_reason = Some(EndReason::Restart);
            let Ok(body) = serde_json::to_vec(&m) else {
                continue;
            };
            let topic = self.shared.topics.events(&m.camera);
            let r = ob.append(&outbox::Append {
                camera: &m.camera,
                seq: Some(seq),
                event_topic: &topic,
                event: &body,
                snapshot: None,
                copy_topic: None,
                open: Some(outbox::OpenObject::Clear { id: &id }),
            });
            match r {
                Ok(_) => ended += 1,
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "outbox: cannot end an object left open");
                }
            }
        }
        if ended > 0 {
            tracing::info!(
                ended,
                "objects left open by the previous run ended (end_reason: restart)"
            );
        }
    }

    /// Commit a zone-level alert for the alerts topic, with its whole-frame
    /// snapshot first when there is one: through the outbox, as events go.
    /// `snapshot`: what became of the crowding picture (`None`: none was due).
    pub async fn zone_alert(
        &self,
        camera: &str,
        rec: &ZoneAlertRecord,
        snapshot: Option<SnapshotOutcome>,
    ) -> Result<ZoneAlertMessage, PublishError> {
        let id = format!("{}.{camera}.{:x}.z{}", self.shared.node, rec.run, rec.seq);
        let snap_topic = self.shared.topics.snapshot(camera, &id);
        let snapshot = snapshot.map(|s| self.fit(camera, &snap_topic, s));
        let counted = snapshot.as_ref().map(SnapshotOutcome::result);
        let (picture, omitted) = snapshot.map(SnapshotOutcome::split).unwrap_or_default();
        let mut msg = ZoneAlertMessage {
            schema: ZONE_ALERT_SCHEMA.into(),
            id,
            seq: rec.seq,
            node: self.shared.node.clone(),
            district: self.shared.district.clone(),
            camera: camera.into(),
            zone: rec.zone.clone(),
            alerts: vec![rec.kind.clone()],
            occupancy: rec.occupancy,
            dwell_s: rec.dwell_s.map(|d| (d * 1e3).round() / 1e3),
            time: rfc3339(rec.time),
            snapshot: picture
                .as_ref()
                .map(|s| wire::snapshot_ref(snap_topic.clone(), s)),
            snapshot_omitted: omitted.map(SnapshotOmitted::from),
        };
        let body = json(&msg)?;
        let snap = match picture {
            Some(s) => {
                let r = msg.snapshot.take();
                msg.snapshot_omitted = Some(SnapshotOmitted::Evicted);
                let fallback = json(&msg)?;
                msg.snapshot_omitted = None;
                msg.snapshot = r;
                Some((snap_topic, s.jpeg, fallback))
            }
            None => None,
        };
        let snap_len = snap.as_ref().map(|s| s.1.len() as u64);
        self.store(Arc::new(Record {
            camera: camera.to_string(),
            seq: None,
            topic: self.shared.topics.alerts(camera),
            body,
            snapshot: snap,
            copy_topic: None,
            open: None,
        }))
        .await?;
        self.count_snapshot(camera, counted);
        if let Some(n) = snap_len {
            let st = &self.shared.stats;
            st.snapshots.fetch_add(1, Ordering::Relaxed);
            st.snapshot_bytes.fetch_add(n, Ordering::Relaxed);
        }
        Ok(msg)
    }

    /// Commit one counts message to the outbox (not retained: every interval matters):
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
        self.store(Arc::new(Record {
            camera: camera.to_string(),
            seq: None,
            topic: self.shared.topics.counts(camera),
            body,
            snapshot: None,
            copy_topic: None,
            open: None,
        }))
        .await?;
        Ok(n)
    }
    /// Record and publish (retained) a camera's state and live figures.
    pub async fn camera_status(
        &self,
        camera: &str,
        state: CameraState,
        error: Option<CameraError>,
        live: CameraLive,
    ) -> Result<(), PublishError> {
        // `since` is when the current state began: a retry that stays
        // `reconnecting` keeps it, so an outage's length is never lost.
        let since = self
            .shared
            .camera_status
            .lock()
            .ok()
            .and_then(|m| {
                m.get(camera)
                    .filter(|s| s.state == state)
                    .map(|s| s.since.clone())
            })
            .unwrap_or_else(|| rfc3339(SystemTime::now()));
        // Library errors quote camera URLs, passwords and all.
        let mask = |e: String| crate::redact::userinfo(&e).into_owned();
        let (last_error, detail) = match error {
            Some(e) => (Some(mask(e.summary)), e.detail.map(mask)),
            None => (None, None),
        };
        let msg = CameraStatusMessage {
            schema: CAMERA_STATUS_SCHEMA.into(),
            node: self.shared.node.clone(),
            camera: camera.into(),
            state,
            since,
            time: rfc3339(SystemTime::now()),
            last_error,
            detail,
            live: CameraLive {
                health: self.health(camera),
                ..live
            },
        };
        if let Ok(mut m) = self.shared.camera_status.lock() {
            m.insert(camera.to_string(), msg.clone());
        }
        let body = json(&msg)?;
        self.send(self.shared.topics.camera_status(camera), body, true)
            .await
    }

    /// Since when the broker cannot be reached, and why (`None` while connected).
    pub fn broker_down(&self) -> Option<BrokerDown> {
        self.shared.broker_down.lock().ok().and_then(|b| b.clone())
    }

    /// Messages waiting in the outbox.
    pub fn outbox_len(&self) -> u64 {
        self.shared.outbox.len() as u64
    }

    /// A camera's active tamper conditions.
    fn health(&self, camera: &str) -> Vec<String> {
        self.shared
            .health
            .lock()
            .ok()
            .and_then(|h| h.get(camera).cloned())
            .unwrap_or_default()
    }

    /// Set a camera's active tamper conditions; when they changed, its
    /// retained status is published again with the new `health` (same
    /// state and `since`).
    pub async fn set_camera_health(
        &self,
        camera: &str,
        health: Vec<String>,
    ) -> Result<(), PublishError> {
        let changed = match self.shared.health.lock() {
            Ok(mut h) if h.get(camera).map_or(!health.is_empty(), |v| *v != health) => {
                h.insert(camera.to_string(), health.clone());
                true
            }
            _ => false,
        };
        if !changed {
            return Ok(());
        }
        let msg = self.shared.camera_status.lock().ok().and_then(|mut m| {
            let s = m.get_mut(camera)?;
            s.live.health = health;
            s.time = rfc3339(SystemTime::now());
            Some(s.clone())
        });
        match msg {
            Some(msg) => {
                let body = json(&msg)?;
                self.send(self.shared.topics.camera_status(camera), body, true)
                    .await
            }
            // No status yet: the first one carries it.
            None => Ok(()),
        }
    }

    /// Commit a camera tamper alert (raised or cleared) for the alerts
    /// topic: through the outbox, as zone alerts go.
    pub async fn camera_alert(
        &self,
        camera: &str,
        rec: &CameraAlertRecord,
    ) -> Result<CameraAlertMessage, PublishError> {
        let id = format!("{}.{camera}.{:x}.c{}", self.shared.node, rec.run, rec.seq);
        let msg = wire::camera_alert_message(self.origin(camera), id, rec);
        let body = json(&msg)?;
        self.store(Arc::new(Record {
            camera: camera.to_string(),
            seq: None,
            topic: self.shared.topics.alerts(camera),
            body,
            snapshot: None,
            copy_topic: None,
            open: None,
        }))
        .await?;
        Ok(msg)
    }

    /// The camera list changed (config reload): re-announce the node status.
    pub async fn set_cameras(&self, cameras: Vec<String>) {
        if let Ok(mut c) = self.shared.cameras.lock() {
            *c = cameras;
        }
        self.republish_status().await;
    }

    /// The node's latest load assessment; the retained node status is
    /// republished when `overloaded` changes (the figures ride along).
    pub async fn set_load(&self, load: NodeLoad) {
        let changed = match self.shared.load.lock() {
            Ok(mut l) => {
                let changed = l.as_ref().is_none_or(|o| o.overloaded != load.overloaded);
                *l = Some(load);
                changed
            }
            Err(_) => false,
        };
        if changed {
            self.republish_status().await;
        }
    }

    /// The node's latest load assessment (`/metrics`).
    pub fn load(&self) -> Option<NodeLoad> {
        self.shared.load.lock().ok().and_then(|l| l.clone())
    }

    async fn republish_status(&self) {
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

    /// Clean stop: flush the outbox, publish `stopped` for every live camera
    /// and the node, and the final stats (retained), wait for their acks,
    /// disconnect.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let ok = self.flush(timeout).await;
        self.shared.stopping.store(true, Ordering::Relaxed);
        // No camera is left saying `streaming` after the node stopped.
        let live: Vec<CameraStatusMessage> = self
            .shared
            .camera_status
            .lock()
            .map(|m| {
                m.values()
                    .filter(|s| {
                        matches!(
                            s.state,
                            CameraState::Starting
                                | CameraState::Streaming
                                | CameraState::Reconnecting
                        )
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for s in live {
            let _ = self
                .camera_status(&s.camera, CameraState::Stopped, None, s.live)
                .await;
        }
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
        load: (state != NodeState::Offline)
            .then(|| shared.load.lock().ok().and_then(|l| l.clone()))
            .flatten(),
        outbox: (state != NodeState::Offline).then(|| {
            let c = shared.outbox.counters();
            NodeOutbox {
                events: c.events,
                snapshots: c.snapshots,
                evicted_events: c.evicted_events,
                evicted_snapshots: c.evicted_snapshots,
                lost_events: c.lost_events,
                quarantined: c.quarantined,
                store_error: shared.outbox.health().map(|f| f.reason),
                delivery_error: shared.delivery_error.lock().ok().and_then(|d| d.clone()),
            }
        }),
    }
}

/// A wire message as JSON bytes.
fn json<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>, PublishError> {
    serde_json::to_vec(msg).map_err(|e| PublishError::ClientGone(e.to_string()))
}

/// One message for the outbox, owned (it crosses into a blocking task).
struct Record {
    camera: String,
    seq: Option<u64>,
    topic: String,
    body: Vec<u8>,
    /// `(topic, jpeg, the message without its snapshot reference)`.
    snapshot: Option<(String, Vec<u8>, Vec<u8>)>,
    copy_topic: Option<String>,
    /// The object's id and its latest message while it is open (`None`: it ends).
    open: Option<(String, Option<Vec<u8>>)>,
}

impl Record {
    fn as_append(&self) -> outbox::Append<'_> {
        outbox::Append {
            camera: &self.camera,
            seq: self.seq,
            event_topic: &self.topic,
            event: &self.body,
            snapshot: self
                .snapshot
                .as_ref()
                .map(|(t, j, f)| (t.as_str(), j.as_slice(), f.as_slice())),
            copy_topic: self.copy_topic.as_deref(),
            open: self.open.as_ref().map(|(id, last)| match last {
                Some(l) => outbox::OpenObject::Set { id, last: l },
                None => outbox::OpenObject::Clear { id },
            }),
        }
    }
}
