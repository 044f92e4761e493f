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

#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod outbox;
pub mod watch;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::{BrokerUrl, MqttSection};
use crate::frame::BBox;

pub const EVENT_SCHEMA: &str = "edge-event/3";
pub const COUNTS_SCHEMA: &str = "edge-counts/1";
pub const ZONE_ALERT_SCHEMA: &str = "edge-zone-alert/2";
pub const NODE_STATUS_SCHEMA: &str = "edge-node-status/2";
pub const CAMERA_STATUS_SCHEMA: &str = "edge-camera-status/1";
pub const STATS_SCHEMA: &str = "edge-stats/2";

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

// ------------------------------------------------------------------ topics

/// Builds every topic from `{prefix}/{district}/{node}`.
#[derive(Clone, Debug)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, district: &str, node: &str) -> Self {
        Self {
            base: format!("{}/{district}/{node}", prefix.trim_end_matches('/')),
        }
    }
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn node_status(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn stats(&self) -> String {
        format!("{}/stats", self.base)
    }
    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/{camera}/status", self.base)
    }
    pub fn events(&self, camera: &str) -> String {
        format!("{}/{camera}/events", self.base)
    }
    pub fn alerts(&self, camera: &str) -> String {
        format!("{}/{camera}/alerts", self.base)
    }
    pub fn counts(&self, camera: &str) -> String {
        format!("{}/{camera}/counts", self.base)
    }
    pub fn snapshot(&self, camera: &str, event_id: &str) -> String {
        format!("{}/{camera}/snapshot/{event_id}", self.base)
    }
    /// Every topic of this node.
    pub fn all(&self) -> String {
        format!("{}/#", self.base)
    }

    /// Which camera (if any) and which class of traffic a topic of this
    /// node is; `None` for a topic outside the node's tree.
    pub fn classify<'a>(&self, topic: &'a str) -> Option<(Option<&'a str>, TopicClass)> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        match rest {
            "status" => return Some((None, TopicClass::Status)),
            "stats" => return Some((None, TopicClass::Stats)),
            _ => {}
        }
        let (camera, kind) = rest.split_once('/')?;
        let class = match kind {
            "status" => TopicClass::Status,
            "events" => TopicClass::Events,
            "alerts" => TopicClass::Alerts,
            "counts" => TopicClass::Counts,
            k if k.starts_with("snapshot/") => TopicClass::Snapshots,
            _ => return None,
        };
        Some((Some(camera), class))
    }
}

/// Classes of traffic counted in `edge-stats/2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicClass {
    Events,
    Alerts,
    Snapshots,
    Counts,
    Status,
    Stats,
}

/// Payload bytes sent per class of traffic (`edge-stats/2`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClassBytes {
    pub events: u64,
    pub alerts: u64,
    pub snapshots: u64,
    pub counts: u64,
    pub status: u64,
    pub stats: u64,
}

impl ClassBytes {
    fn add(&mut self, class: TopicClass, n: u64) {
        let slot = match class {
            TopicClass::Events => &mut self.events,
            TopicClass::Alerts => &mut self.alerts,
            TopicClass::Snapshots => &mut self.snapshots,
            TopicClass::Counts => &mut self.counts,
            TopicClass::Status => &mut self.status,
            TopicClass::Stats => &mut self.stats,
        };
        *slot += n;
    }

    pub fn total(&self) -> u64 {
        self.events + self.alerts + self.snapshots + self.counts + self.status + self.stats
    }
}

/// Snapshots of one camera by what the budget made of them (`edge-stats/2`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Sent at the configured quality.
    pub full: u64,
    /// Sent degraded, per step.
    pub quality: u64,
    pub height: u64,
    pub crop: u64,
    /// Due but not sent because the budget was spent.
    pub omitted_budget: u64,
    /// Due but withheld for privacy (face model unusable).
    pub omitted_privacy: u64,
}

/// Per-camera part of `edge-stats/2`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CameraStats {
    /// Payload bytes handed to the broker, per class.
    pub bytes: ClassBytes,
    pub snapshots: SnapshotCounts,
}

/// The snapshot budget as `edge-stats/2` reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BudgetStats {
    pub snapshot_bytes_per_s: f64,
    pub burst_bytes: f64,
    /// Bytes the bucket holds now.
    pub available_bytes: u64,
}

// ------------------------------------------------------------------ wire types

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    New,
    Update,
    End,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WireBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRef {
    pub topic: String,
    pub bytes: usize,
    pub width: u32,
    pub height: u32,
    /// The snapshot budget's degradation step (`quality`, `height`, `crop`);
    /// `None` at the configured quality.
    pub degraded: Option<String>,
}

/// Detail of the alert an `edge-event/3` message carries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlertDetail {
    /// `loitering` or `wrong_way`.
    pub kind: String,
    /// Zone or line name.
    pub rule: String,
    /// Loitering: seconds in the zone.
    pub dwell_s: Option<f64>,
    /// Wrong way: the direction crossed.
    pub direction: Option<String>,
}

/// `edge-event/3`: one message of an object's lifecycle.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventMessage {
    pub schema: String,
    pub id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub label: String,
    pub class_id: u32,
    pub track_id: u64,
    pub score: f32,
    pub top_score: f32,
    pub start_time: String,
    pub end_time: Option<String>,
    pub frame_time: String,
    #[serde(rename = "box")]
    pub bbox: WireBox,
    pub frame_size: FrameSize,
    pub snapshot: Option<SnapshotRef>,
    /// Why a snapshot this message should carry is missing: `budget` (the
    /// node's snapshot byte budget was spent), `privacy` (face blurring is
    /// required but unavailable), `evicted` (dropped from a full outbox),
    /// `error` (rendering failed). `None` when nothing is missing.
    pub snapshot_omitted: Option<String>,
    /// Zones the object is in now (after inertia).
    pub current_zones: Vec<String>,
    /// Zones it has entered during this event.
    pub entered_zones: Vec<String>,
    /// Its box has barely moved for `rules.stationary_s`; no updates follow.
    pub stationary: bool,
    /// Alert names this message raises (empty for plain lifecycle messages).
    pub alerts: Vec<String>,
    pub alert: Option<AlertDetail>,
}

/// `edge-zone-alert/2`: a zone-level alert (crowding), on the alerts topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZoneAlertMessage {
    pub schema: String,
    pub id: String,
    pub seq: u64,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub zone: String,
    /// `["crowding"]` or `["crowding_cleared"]`.
    pub alerts: Vec<String>,
    pub occupancy: u32,
    /// Seconds the occupancy has been at/over the limit (crowding only).
    pub dwell_s: Option<f64>,
    pub time: String,
    /// Whole-frame snapshot (crowding only).
    pub snapshot: Option<SnapshotRef>,
    /// Why the crowding snapshot is missing (as in `edge-event/3`).
    pub snapshot_omitted: Option<String>,
}

/// One counter on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireCounter {
    /// Since the node started.
    pub total: u64,
    /// During this interval.
    pub delta: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LineCountsWire {
    /// `[forward, backward]` direction names.
    pub directions: [String; 2],
    /// class label → direction → counter.
    pub counts: BTreeMap<String, BTreeMap<String, WireCounter>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZoneCountsWire {
    /// class label → objects inside at the end of the interval.
    pub occupancy: BTreeMap<String, u32>,
    /// Highest total occupancy during the interval.
    pub peak: u32,
    /// class label → entries.
    pub entered: BTreeMap<String, WireCounter>,
}

/// `edge-counts/1`, on `{base}/{camera}/counts` every counts interval.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CountsMessage {
    pub schema: String,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub seq: u64,
    pub interval_start: String,
    pub interval_end: String,
    pub lines: BTreeMap<String, LineCountsWire>,
    pub zones: BTreeMap<String, ZoneCountsWire>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Online,
    Offline,
    Stopped,
}

/// `edge-node-status/2`, retained on `{base}/status`; the broker publishes the
/// `offline` form as our last will.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeStatusMessage {
    pub schema: String,
    pub node: String,
    pub district: String,
    pub state: NodeState,
    pub since: Option<String>,
    pub version: String,
    pub cameras: Vec<String>,
    /// The durable outbox when this status was published: backlog and
    /// evictions (`None` in the last will, which is fixed at connect time).
    pub outbox: Option<NodeOutbox>,
}

/// The outbox part of `edge-node-status/2`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeOutbox {
    /// Events and snapshots waiting for a PUBACK.
    pub events: u64,
    pub snapshots: u64,
    /// Evicted by the disk quota since the outbox was created (snapshots first).
    pub evicted_events: u64,
    pub evicted_snapshots: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    Starting,
    Streaming,
    Reconnecting,
    Failed,
    Ended,
}

/// `edge-camera-status/1`, retained on `{base}/{camera}/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CameraStatusMessage {
    pub schema: String,
    pub node: String,
    pub camera: String,
    pub state: CameraState,
    pub since: String,
    pub last_error: Option<String>,
    pub frames: u64,
    pub frames_dropped: u64,
}

// ------------------------------------------------------------------ internal → wire

/// What `node` hands over for one lifecycle message (internal form).
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub kind: EventType,
    pub track_id: u64,
    pub class_id: u32,
    pub label: String,
    pub score: f32,
    pub top_score: f32,
    pub start: SystemTime,
    pub end: Option<SystemTime>,
    pub frame: SystemTime,
    /// Pixels of the analysed frame.
    pub bbox: BBox,
    pub frame_size: (u32, u32),
    pub current_zones: Vec<String>,
    pub entered_zones: Vec<String>,
    pub stationary: bool,
    pub alert: Option<AlertDetail>,
    /// A snapshot was due but is not sent: why (see [`EventMessage::snapshot_omitted`]).
    pub snapshot_omitted: Option<String>,
}

/// A JPEG ready to send.
#[derive(Clone, Debug)]
pub struct SnapshotPayload {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Budget degradation step, if any (wire name).
    pub degraded: Option<&'static str>,
}

// ------------------------------------------------------------------ client

/// Counters shared with the event loop task.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// QoS-1 publishes handed to the client (replays included).
    pub sent: AtomicU64,
    /// PUBACKs received.
    pub acked: AtomicU64,
    pub bytes: AtomicU64,
    /// Events and snapshots accepted into the outbox.
    pub events: AtomicU64,
    pub snapshots: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub connected: AtomicBool,
    pub reconnects: AtomicU64,
    /// Outbox messages handed to the client after a (re)connect or a restart
    /// while a backlog existed.
    pub replayed: AtomicU64,
}

/// `edge-stats/2`, retained on `{base}/stats`: outbox depth and evictions,
/// what was sent, bytes per class of traffic and per camera, and the budget.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatsMessage {
    pub schema: String,
    pub node: String,
    pub district: String,
    pub time: String,
    pub outbox: OutboxStats,
    pub sent: SentStats,
    /// Payload bytes handed to the broker since start, per class, for the
    /// whole node (the sum of the classes equals `sent.bytes`; this message's
    /// own bytes are counted in the next one).
    pub bytes: ClassBytes,
    /// Per camera: bytes per class and what became of its snapshots.
    pub cameras: BTreeMap<String, CameraStats>,
    /// The snapshot budget (`None`: no budget configured).
    pub budget: Option<BudgetStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OutboxStats {
    pub events: u64,
    pub snapshots: u64,
    pub bytes: u64,
    pub quota_bytes: u64,
    pub evicted_events: u64,
    pub evicted_snapshots: u64,
    pub evicted_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SentStats {
    pub messages: u64,
    pub acked: u64,
    pub bytes: u64,
    pub replayed: u64,
    pub reconnects: u64,
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

/// At most this many outbox messages are in flight (handed out, not acked).
const WINDOW: usize = 64;

/// Which QoS-1 publish is which: rumqttc reports `Outgoing::Publish(pkid)` in
/// the order requests enter its channel, and `PubAck(pkid)` later. Every QoS-1
/// publish goes through [`Publisher::push`], which records a tag in the same
/// order under this lock.
#[derive(Debug, Default)]
struct Link {
    connected: bool,
    /// Tags of publishes in rumqttc's channel, in order (`None`: not from the outbox).
    queued: VecDeque<Option<u64>>,
    /// pkid → tag, sent and waiting for PUBACK.
    by_pkid: HashMap<u16, Option<u64>>,
    /// Outbox keys handed to the client and not yet acknowledged.
    handed: usize,
    /// Acknowledged outbox keys, to delete in one batch.
    acked: Vec<u64>,
    /// Per camera: the last outbox key handed out.
    cursors: HashMap<String, u64>,
    /// Round-robin position over cameras.
    turn: usize,
    /// Set when the link drops: everything unacknowledged is replayed from the outbox.
    replaying: bool,
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
    /// Bytes per class (node-wide) and per camera, counted in [`Publisher::push`].
    traffic: Mutex<Traffic>,
    /// The node's snapshot budget, for the stats message only (the node spends it).
    budget: Mutex<Option<Arc<Mutex<crate::budget::ByteBudget>>>>,
}

#[derive(Debug, Default)]
struct Traffic {
    node: ClassBytes,
    cameras: BTreeMap<String, CameraStats>,
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

fn read_pem(what: &'static str, p: &std::path::Path) -> Result<Vec<u8>, PublishError> {
    std::fs::read(p).map_err(|source| PublishError::ReadPem {
        what,
        path: p.display().to_string(),
        source,
    })
}

/// One secret from a file: the first line, without the line end. Its
/// content never appears in an error or a log.
fn read_secret(what: &'static str, p: &std::path::Path) -> Result<String, PublishError> {
    let text = std::fs::read_to_string(p).map_err(|source| PublishError::ReadPem {
        what,
        path: p.display().to_string(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// User name and password: each from its file when the config names one,
/// otherwise from its environment variable; never from the config itself.
fn credentials(cfg: &MqttSection) -> Result<(Option<String>, Option<String>), PublishError> {
    let user = match &cfg.username_file {
        Some(f) => Some(read_secret("user name file", f)?.trim().to_string()),
        None => std::env::var(&cfg.username_env).ok(),
    };
    let pass = match &cfg.password_file {
        Some(f) => Some(read_secret("password file", f)?),
        None => std::env::var(&cfg.password_env).ok(),
    };
    Ok((user.filter(|u| !u.is_empty()), pass))
}

/// Client options from the config; credentials come from files or the environment.
pub fn mqtt_options(
    cfg: &MqttSection,
    broker: &BrokerUrl,
    client_id: &str,
) -> Result<MqttOptions, PublishError> {
    let (host, port, tls) = match broker {
        BrokerUrl::Embedded { port } => ("127.0.0.1".to_string(), *port, false),
        BrokerUrl::Tcp { host, port } => (host.clone(), *port, false),
        BrokerUrl::Tls { host, port } => (host.clone(), *port, true),
    };
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
    // rumqttc's default 10 KiB limit drops the connection on the first snapshot.
    o.set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
    o.set_inflight(100);
    let (user, pass) = credentials(cfg)?;
    match (user, pass) {
        (Some(u), Some(p)) => o.set_credentials(u, p),
        (Some(u), None) => o.set_credentials(u, ""),
        _ => &mut o,
    };
    if tls {
        // ring is the only rustls provider compiled in; installing it is idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = match &cfg.ca_file {
            Some(p) => read_pem("CA file", p)?,
            None => Vec::new(),
        };
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((
                read_pem("client certificate", c)?,
                read_pem("client key", k)?,
            )),
            _ => None,
        };
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            },
        ));
    }
    Ok(o)
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

    /// Hand one QoS-1 publish to rumqttc, recording its tag in channel order.
    /// Returns false when the link is down or the channel is full.
    fn push(&self, tag: Option<u64>, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        let n = payload.len() as u64;
        let topic_for_stats = topic.clone();
        let Ok(mut link) = self.shared.link.lock() else {
            return false;
        };
        if !link.connected {
            return false;
        }
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_err()
        {
            return false;
        }
        link.queued.push_back(tag);
        if tag.is_some() {
            link.handed += 1;
        }
        let s = &self.shared.stats;
        s.sent.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(n, Ordering::Relaxed);
        drop(link);
        if let Some((camera, class)) = self.shared.topics.classify(&topic_for_stats)
            && let Ok(mut t) = self.shared.traffic.lock()
        {
            t.node.add(class, n);
            if let Some(c) = camera {
                t.cameras
                    .entry(c.to_string())
                    .or_default()
                    .bytes
                    .add(class, n);
            }
        }
        true
    }

    /// Report the node's snapshot budget in the stats message.
    pub fn set_budget(&self, budget: Arc<Mutex<crate::budget::ByteBudget>>) {
        if let Ok(mut b) = self.shared.budget.lock() {
            *b = Some(budget);
        }
    }

    /// Count what became of a snapshot that was due (`edge-stats/2`).
    fn count_snapshot(&self, camera: &str, sent: Option<&SnapshotPayload>, omitted: Option<&str>) {
        let Ok(mut t) = self.shared.traffic.lock() else {
            return;
        };
        let c = &mut t.cameras.entry(camera.to_string()).or_default().snapshots;
        match (sent.map(|s| s.degraded), omitted) {
            (Some(None), _) => c.full += 1,
            (Some(Some("quality")), _) => c.quality += 1,
            (Some(Some("height")), _) => c.height += 1,
            (Some(Some(_)), _) => c.crop += 1,
            (None, Some("budget")) => c.omitted_budget += 1,
            (None, Some("privacy")) => c.omitted_privacy += 1,
            (None, _) => {}
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

    /// Commit one lifecycle message (and its snapshot, sent first, so a
    /// subscriber that reads the event can already have the picture) to the
    /// outbox; the pump publishes it. Returns once it is durable.
    pub async fn event(
        &self,
        camera: &str,
        seq: u64,
        rec: &EventRecord,
        snapshot: Option<&SnapshotPayload>,
    ) -> Result<EventMessage, PublishError> {
        let id = self.event_id(camera, rec.track_id);
        let snap_ref = snapshot.map(|s| SnapshotRef {
            topic: self.shared.topics.snapshot(camera, &id),
            bytes: s.jpeg.len(),
            width: s.width,
            height: s.height,
            degraded: s.degraded.map(String::from),
        });
        let mut msg = self.event_message(camera, seq, id, rec, snap_ref);
        let body = serde_json::to_vec(&msg).map_err(|e| PublishError::ClientGone(e.to_string()))?;
        let snap = match (snapshot, msg.snapshot.take()) {
            (Some(s), Some(r)) => {
                // The same event without its snapshot, used if the snapshot is evicted.
                msg.snapshot_omitted = Some("evicted".into());
                let fallback = serde_json::to_vec(&msg)
                    .map_err(|e| PublishError::ClientGone(e.to_string()))?;
                msg.snapshot_omitted = None;
                msg.snapshot = Some(r.clone());
                Some((r.topic, s.jpeg.clone(), fallback))
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
        self.count_snapshot(camera, snapshot, rec.snapshot_omitted.as_deref());
        let st = &self.shared.stats;
        st.events.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = snap_len {
            st.snapshots.fetch_add(1, Ordering::Relaxed);
            st.snapshot_bytes.fetch_add(n, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
        Ok(msg)
    }

    fn event_message(
        &self,
        camera: &str,
        seq: u64,
        id: String,
        rec: &EventRecord,
        snapshot: Option<SnapshotRef>,
    ) -> EventMessage {
        let (w, h) = rec.frame_size;
        let (fw, fh) = (w.max(1) as f32, h.max(1) as f32);
        let b = rec.bbox.clamp(fw, fh);
        let r = |v: f32| (v * 1e4).round() / 1e4;
        EventMessage {
            schema: EVENT_SCHEMA.into(),
            id,
            seq,
            kind: rec.kind,
            node: self.shared.node.clone(),
            district: self.shared.district.clone(),
            camera: camera.into(),
            label: rec.label.clone(),
            class_id: rec.class_id,
            track_id: rec.track_id,
            score: r(rec.score),
            top_score: r(rec.top_score),
            start_time: rfc3339(rec.start),
            end_time: rec.end.map(rfc3339),
            frame_time: rfc3339(rec.frame),
            bbox: WireBox {
                x1: r(b.x1 / fw),
                y1: r(b.y1 / fh),
                x2: r(b.x2 / fw),
                y2: r(b.y2 / fh),
            },
            frame_size: FrameSize {
                width: w,
                height: h,
            },
            snapshot,
            snapshot_omitted: rec.snapshot_omitted.clone(),
            current_zones: rec.current_zones.clone(),
            entered_zones: rec.entered_zones.clone(),
            stationary: rec.stationary,
            alerts: rec.alert.iter().map(|a| a.kind.clone()).collect(),
            alert: rec.alert.clone(),
        }
    }

    /// Publish a zone-level alert on the alerts topic, its whole-frame
    /// snapshot first when there is one. `kind` is `crowding` or
    /// `crowding_cleared`; `seq` counts this camera's zone alerts.
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
        snapshot: Option<&SnapshotPayload>,
        snapshot_omitted: Option<String>,
    ) -> Result<ZoneAlertMessage, PublishError> {
        let id = format!(
            "{}.{camera}.{:x}.z{seq}",
            self.shared.node, self.shared.boot_ms
        );
        let snap_ref = match snapshot {
            Some(s) => {
                let topic = self.shared.topics.snapshot(camera, &id);
                self.send(topic.clone(), s.jpeg.clone(), false).await?;
                let st = &self.shared.stats;
                st.snapshots.fetch_add(1, Ordering::Relaxed);
                st.snapshot_bytes
                    .fetch_add(s.jpeg.len() as u64, Ordering::Relaxed);
                Some(SnapshotRef {
                    topic,
                    bytes: s.jpeg.len(),
                    width: s.width,
                    height: s.height,
                    degraded: s.degraded.map(String::from),
                })
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
            snapshot_omitted,
        };
        self.count_snapshot(camera, snapshot, msg.snapshot_omitted.as_deref());
        let body = serde_json::to_vec(&msg).map_err(|e| PublishError::ClientGone(e.to_string()))?;
        self.send(self.shared.topics.alerts(camera), body, false)
            .await?;
        Ok(msg)
    }

    /// Publish one counts message (not retained: every interval matters).
    pub async fn counts(&self, mut msg: CountsMessage) -> Result<usize, PublishError> {
        msg.schema = COUNTS_SCHEMA.into();
        msg.node = self.shared.node.clone();
        msg.district = self.shared.district.clone();
        let body = serde_json::to_vec(&msg).map_err(|e| PublishError::ClientGone(e.to_string()))?;
        let n = body.len();
        self.send(self.shared.topics.counts(&msg.camera), body, false)
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
        let body = serde_json::to_vec(&msg).map_err(|e| PublishError::ClientGone(e.to_string()))?;
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

    fn stats_message(&self) -> StatsMessage {
        let c = self.shared.outbox.counters();
        // Read the traffic before `sent` so that their sums agree at rest.
        let (bytes, cameras) = self
            .shared
            .traffic
            .lock()
            .map(|t| (t.node, t.cameras.clone()))
            .unwrap_or_default();
        let budget = self
            .shared
            .budget
            .lock()
            .ok()
            .and_then(|b| b.clone())
            .and_then(|b| {
                let mut b = b.lock().ok()?;
                Some(BudgetStats {
                    snapshot_bytes_per_s: b.rate(),
                    burst_bytes: b.burst(),
                    available_bytes: b.available(std::time::Instant::now()),
                })
            });
        let s = &self.shared.stats;
        StatsMessage {
            schema: STATS_SCHEMA.into(),
            node: self.shared.node.clone(),
            district: self.shared.district.clone(),
            time: rfc3339(SystemTime::now()),
            outbox: OutboxStats {
                events: c.events,
                snapshots: c.snapshots,
                bytes: c.bytes,
                quota_bytes: c.quota_bytes,
                evicted_events: c.evicted_events,
                evicted_snapshots: c.evicted_snapshots,
                evicted_bytes: c.evicted_bytes,
            },
            sent: SentStats {
                messages: s.sent.load(Ordering::Relaxed),
                acked: s.acked.load(Ordering::Relaxed),
                bytes: s.bytes.load(Ordering::Relaxed),
                replayed: s.replayed.load(Ordering::Relaxed),
                reconnects: s.reconnects.load(Ordering::Relaxed),
            },
            bytes,
            cameras,
            budget,
        }
    }

    /// Publish the retained stats message now (dropped while disconnected).
    fn publish_stats(&self) {
        if let Ok(body) = serde_json::to_vec(&self.stats_message()) {
            let _ = self.push(None, self.shared.topics.stats(), body, true);
        }
    }

    /// Publish the retained state after every (re)connect.
    fn announce(&self) {
        let online = node_status(&self.shared, NodeState::Online, Some(self.shared.started));
        if let Ok(body) = serde_json::to_vec(&online) {
            let _ = self.push(None, self.shared.topics.node_status(), body, true);
        }
        let cams: Vec<CameraStatusMessage> = self
            .shared
            .camera_status
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for c in cams {
            if let Ok(body) = serde_json::to_vec(&c) {
                let _ = self.push(
                    None,
                    self.shared.topics.camera_status(&c.camera),
                    body,
                    true,
                );
            }
        }
        self.publish_stats();
    }

    /// Hand the next outbox messages to the client: round robin over cameras,
    /// each camera in key order, at most `budget` of them and never more than
    /// [`WINDOW`] unacknowledged. Returns how many were handed out.
    fn pump_once(&self, budget: usize) -> Result<usize, PublishError> {
        let ob = &self.shared.outbox;
        let cameras = ob.cameras();
        if cameras.is_empty() {
            return Ok(0);
        }
        let mut sent = 0;
        let mut idle_rounds = 0;
        while sent < budget && idle_rounds < cameras.len() {
            let (cam, after) = {
                let Ok(mut link) = self.shared.link.lock() else {
                    return Ok(sent);
                };
                if !link.connected || link.handed >= WINDOW {
                    return Ok(sent);
                }
                let cam = cameras[link.turn % cameras.len()].clone();
                link.turn = link.turn.wrapping_add(1);
                let after = link.cursors.get(&cam).copied();
                (cam, after)
            };
            let Some(key) = ob.next_key(&cam, after) else {
                idle_rounds += 1;
                continue;
            };
            idle_rounds = 0;
            let Some(m) = ob.get(key)? else {
                continue; // evicted meanwhile
            };
            if !self.push(Some(key), m.topic, m.payload, false) {
                return Ok(sent);
            }
            let Ok(mut link) = self.shared.link.lock() else {
                return Ok(sent);
            };
            link.cursors.insert(cam, key);
            if link.replaying {
                self.shared.stats.replayed.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
        }
        Ok(sent)
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

/// Drain the outbox to the client at no more than `replay_rate` messages per
/// second (a token bucket holding half a second of tokens, so live events go
/// out at once when there is no backlog), and delete acknowledged records in
/// batches.
async fn pump(p: Publisher) {
    let rate = p.shared.opts.replay_rate.max(1.0);
    let burst = (rate / 2.0).max(1.0);
    let mut tokens = burst;
    let mut last = tokio::time::Instant::now();
    loop {
        let acked: Vec<u64> = p
            .shared
            .link
            .lock()
            .map(|mut l| std::mem::take(&mut l.acked))
            .unwrap_or_default();
        if !acked.is_empty() {
            let ob = p.shared.outbox.clone();
            match tokio::task::spawn_blocking(move || ob.remove(&acked)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "outbox: cannot remove acknowledged messages")
                }
                Err(e) => tracing::error!(error = %e, "outbox: remove task failed"),
            }
        }
        let now = tokio::time::Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        last = now;
        if tokens >= 1.0 {
            match p.pump_once(tokens as usize) {
                Ok(n) => tokens -= n as f64,
                Err(e) => tracing::error!(error = %e, "outbox: cannot read a message"),
            }
        }
        if p.shared.outbox.is_empty()
            && let Ok(mut l) = p.shared.link.lock()
            && l.replaying
            && l.handed == 0
        {
            l.replaying = false;
            tracing::info!(
                replayed = p.shared.stats.replayed.load(Ordering::Relaxed),
                "outbox drained"
            );
        }
        if p.client_closed() {
            return;
        }
        let wait = if tokens < 1.0 {
            Duration::from_secs_f64((1.0 - tokens) / rate).max(Duration::from_millis(1))
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            _ = p.shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Publisher {
    fn client_closed(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
            && !self.shared.stats.connected.load(Ordering::Relaxed)
    }
}

/// Publish the retained stats message every `stats_interval`.
async fn stats_loop(p: Publisher) {
    loop {
        tokio::time::sleep(p.shared.opts.stats_interval).await;
        if p.client_closed() {
            return;
        }
        p.publish_stats();
    }
}

/// Drive rumqttc's event loop forever: map pkids to outbox keys, collect
/// PUBACKs, re-announce after each connect, and back off (capped) while the
/// broker is unreachable. On a lost connection, rumqttc's in-memory copies
/// of unacknowledged publishes are dropped: the outbox is the only source of
/// truth and replays them, in order, from the oldest unacknowledged key.
async fn drive(mut eventloop: EventLoop, p: Publisher) {
    let mut backoff = Duration::from_millis(200);
    let mut connects = 0u64;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(code = ?ack.code, "mqtt connected");
                let s = &p.shared.stats;
                connects += 1;
                if connects > 1 {
                    s.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                s.connected.store(true, Ordering::Relaxed);
                if let Ok(mut l) = p.shared.link.lock() {
                    l.connected = true;
                }
                backoff = Duration::from_millis(200);
                p.announce();
                p.shared.wake.notify_one();
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                if let Ok(mut l) = p.shared.link.lock()
                    && let Some(tag) = l.queued.pop_front()
                {
                    l.by_pkid.insert(pkid, tag);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                p.shared.stats.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = p.shared.link.lock()
                    && let Some(tag) = l.by_pkid.remove(&ack.pkid)
                    && let Some(key) = tag
                {
                    l.handed = l.handed.saturating_sub(1);
                    l.acked.push(key);
                }
                p.shared.wake.notify_one();
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                tracing::debug!("mqtt disconnect sent");
                // Let the final DISCONNECT flush, then stop driving.
                let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                p.shared.stats.connected.store(false, Ordering::Relaxed);
                p.shared.wake.notify_one();
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if let Ok(mut l) = p.shared.link.lock() {
                    // Nothing enters the channel while `connected` is false;
                    // drain what is there, and rumqttc's retransmit list.
                    eventloop.clean();
                    eventloop.pending.clear();
                    let unacked = l.handed;
                    l.connected = false;
                    l.queued.clear();
                    l.by_pkid.clear();
                    l.handed = 0;
                    l.cursors.clear();
                    l.replaying = true;
                    if unacked > 0 {
                        tracing::info!(unacked, "outbox: unacknowledged messages will be replayed");
                    }
                }
                if p.shared.stats.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "mqtt connection lost; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connect failed");
                }
                if p.shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_tree() {
        let t = Topics::new("hanoi/", "hoan-kiem", "box-1");
        assert_eq!(t.node_status(), "hanoi/hoan-kiem/box-1/status");
        assert_eq!(
            t.camera_status("cam-1"),
            "hanoi/hoan-kiem/box-1/cam-1/status"
        );
        assert_eq!(t.events("cam-1"), "hanoi/hoan-kiem/box-1/cam-1/events");
        assert_eq!(
            t.snapshot("cam-1", "e1"),
            "hanoi/hoan-kiem/box-1/cam-1/snapshot/e1"
        );
    }

    #[test]
    fn wire_names() {
        let b = serde_json::to_value(EventType::Update).unwrap();
        assert_eq!(b, "update");
        assert_eq!(
            serde_json::to_value(CameraState::Reconnecting).unwrap(),
            "reconnecting"
        );
        assert_eq!(serde_json::to_value(NodeState::Stopped).unwrap(), "stopped");
        assert!(rfc3339(SystemTime::UNIX_EPOCH).starts_with("1970-01-01T00:00:00"));
    }
}
