//! The MQTT 5 client: options from the config (credentials, TLS, packet
//! sizes), the one `push` every QoS-1 publish goes through, and the task
//! that drives rumqttc's event loop: it maps packet ids to outbox keys
//! ([`Link`]), treats a PUBACK with a failure reason code as a refusal
//! (the record stays, its camera's queue waits), drops a connection whose
//! broker stopped acknowledging, and re-announces the retained state after
//! every connect.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::Transport;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAck, PubAckReason, Publish};
use rumqttc::v5::{ConnectionError, Event, EventLoop, MqttOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{PublishError, Publisher, node_status};
use crate::config::{BrokerUrl, MqttSection};
use edge_wire::{CameraStatusMessage, NodeState};

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
    // The largest packet the node accepts; what it sends is checked against
    // `max_packet_bytes` and the broker's limit before it is handed over.
    o.set_max_packet_size(Some(
        u32::try_from(cfg.max_packet_bytes).unwrap_or(u32::MAX),
    ));
    o.set_outgoing_inflight_upper_limit(100);
    let (user, pass) = credentials(cfg)?;
    match (user, pass) {
        (Some(u), Some(p)) => o.set_credentials(u, p),
        (Some(u), None) => o.set_credentials(u, ""),
        _ => &mut o,
    };
    if tls {
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls_config(cfg)?),
        ));
    }
    Ok(o)
}

/// A broker connection error worded for people: the broker's URL and what
/// failed (refused, timeout, DNS, TLS, authentication).
pub(super) fn broker_error(broker: &str, e: &ConnectionError) -> String {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code;
    let what = match e {
        ConnectionError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused: is the broker running, and is the port right?".to_string()
            }
            std::io::ErrorKind::TimedOut => "no answer (timeout)".to_string(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                "the broker closed the connection".to_string()
            }
            _ if io.to_string().contains("lookup") => format!("host name not found (DNS: {io})"),
            _ => format!("network error: {io}"),
        },
        ConnectionError::Timeout(_) => "no answer to CONNECT (timeout)".to_string(),
        ConnectionError::Tls(t) => {
            format!("TLS failed: {t} (check ca_file, client_cert, client_key and the host name)")
        }
        ConnectionError::ConnectionRefused(Code::NotAuthorized | Code::BadUserNamePassword) => {
            "the broker refused the credentials (check the user name and password)".to_string()
        }
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?})")
        }
        other => other.to_string(),
    };
    format!("broker {broker}: {what}")
}

fn tls_error(what: &'static str, p: &std::path::Path, problem: impl Into<String>) -> PublishError {
    PublishError::Tls {
        what,
        path: p.display().to_string(),
        problem: problem.into(),
    }
}

/// The PEM certificates in file `p`; at least one.
fn pem_certs(
    what: &'static str,
    p: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, PublishError> {
    let pem = read_pem(what, p)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, p, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            what,
            p,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The TLS settings of an `mqtts://` broker: the CA file's certificates as
/// the only roots, and the client certificate and key for mutual TLS.
/// Parsed once, here, so a file that is not PEM (or a key that does not
/// match its certificate) stops `run` at start and is reported by `check`,
/// instead of failing every connection attempt.
pub fn tls_config(cfg: &MqttSection) -> Result<Arc<rustls::ClientConfig>, PublishError> {
    // ring is the only rustls provider compiled in; installing it is idempotent.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(p) = &cfg.ca_file {
        let (added, _ignored) = roots.add_parsable_certificates(pem_certs("CA file", p)?);
        if added == 0 {
            return Err(tls_error("CA file", p, "holds no usable CA certificate"));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PublishError::Connect {
            addr: "tls".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(c), Some(k)) => {
            let certs = pem_certs("client certificate", c)?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem("client key", k)?).map_err(|e| {
                tls_error("client key", k, format!("holds no PEM private key: {e}"))
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                tls_error(
                    "client key",
                    k,
                    format!("does not fit the client certificate: {e}"),
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// What `check --probe` learnt from the broker.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerProbe {
    /// `host:port` connected to.
    pub addr: String,
    /// TLS was used (`mqtts://`).
    pub tls: bool,
    /// The broker's largest packet, when it says (CONNACK property).
    pub max_packet_bytes: Option<u32>,
}

/// Connects once with the node's options (credentials, TLS) under a client
/// id of its own (so a running node is not disconnected), waits for the
/// CONNACK and disconnects. A refusal, a TLS failure or no answer within
/// `timeout` is an error that says which.
pub async fn probe_broker(
    cfg: &MqttSection,
    broker: &BrokerUrl,
    client_id: &str,
    timeout: Duration,
) -> Result<BrokerProbe, PublishError> {
    let id = format!("{client_id}-check-{}", std::process::id());
    let opts = mqtt_options(cfg, broker, &id)?;
    let (host, port) = opts.broker_address();
    let addr = format!("{host}:{port}");
    let tls = matches!(broker, BrokerUrl::Tls { .. });
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 10);
    let fail = |reason: String| PublishError::Connect {
        addr: addr.clone(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) => {
                return Err(fail(format!(
                    "no CONNACK within {} s",
                    timeout.as_secs_f64()
                )));
            }
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                let max_packet_bytes = ack.properties.as_ref().and_then(|p| p.max_packet_size);
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
                return Ok(BrokerProbe {
                    addr,
                    tls,
                    max_packet_bytes,
                });
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// How many times in a row a record may be the oldest unacknowledged one of
/// a connection that dropped before any PUBACK, before it is quarantined.
const STRIKES: u32 = 5;
/// How long after each connect the node listens to its retained camera
/// statuses, to clear those of cameras it no longer has.
const GHOST_SWEEP: Duration = Duration::from_secs(3);
/// A refused camera queue waits this long, doubling per refusal in a row.
const REFUSED_WAIT_MIN: Duration = Duration::from_secs(1);
const REFUSED_WAIT_MAX: Duration = Duration::from_secs(60);

/// An outbox record handed to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Sent {
    pub key: u64,
    pub camera: String,
    pub topic: String,
}

/// Which QoS-1 publish is which: rumqttc reports `Outgoing::Publish(pkid)` in
/// the order requests enter its channel, and `PubAck(pkid)` later. Every QoS-1
/// publish goes through [`Publisher::push`], which records a tag in the same
/// order under this lock (the test `rumqttc_keeps_request_order` pins this).
#[derive(Debug, Default)]
pub(super) struct Link {
    pub connected: bool,
    /// Tags of publishes in rumqttc's channel, in order (`None`: not from the outbox).
    pub queued: VecDeque<Option<Sent>>,
    /// pkid → tag, sent and waiting for PUBACK.
    pub by_pkid: HashMap<u16, Option<Sent>>,
    /// Outbox keys handed to the client and not yet acknowledged.
    pub handed: usize,
    /// Acknowledged outbox keys, to delete in one batch.
    pub acked: Vec<u64>,
    /// Per camera: the last outbox key handed out.
    pub cursors: HashMap<String, u64>,
    /// Round-robin position over cameras.
    pub turn: usize,
    /// Set when the link drops: everything unacknowledged is replayed from the outbox.
    pub replaying: bool,
    /// Since when a sent publish has been waiting for its PUBACK with none
    /// arriving (the PUBACK timeout's clock); `None` when nothing waits.
    pub waiting_since: Option<Instant>,
    /// PUBACKs on the current connection.
    pub acks_this_connection: u64,
    /// Per camera: its queue waits until then (the broker refused a record).
    pub held: HashMap<String, Instant>,
    /// Per refused topic: retry rounds refused in a row (the wait doubles
    /// with each); cleared when a record on that topic is delivered.
    pub refusals: HashMap<String, u32>,
    /// Per outbox key: connections that dropped before any PUBACK while it
    /// was the oldest unacknowledged record.
    pub strikes: HashMap<u64, u32>,
}

/// What a PUBACK resolved.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Acked {
    /// Not from the outbox (a retained status), or unknown.
    Other,
    /// The outbox record is delivered; its key is queued for deletion.
    /// `cleared`: no topic is refused any more (delivery is healthy again).
    Delivered { key: u64, cleared: bool },
    /// The broker refused the record: it stays, and its camera's queue
    /// waits `wait` before it is sent again.
    Refused(Sent, Duration),
}

impl Link {
    /// A publish was handed to rumqttc's channel (in channel order).
    fn queue(&mut self, tag: Option<Sent>) {
        if tag.is_some() {
            self.handed += 1;
        }
        self.queued.push_back(tag);
    }

    /// rumqttc wrote the next publish of its channel as `pkid`.
    fn on_outgoing(&mut self, pkid: u16) {
        if let Some(tag) = self.queued.pop_front() {
            self.by_pkid.insert(pkid, tag);
            self.waiting_since.get_or_insert_with(Instant::now);
        }
    }

    /// PUBACK for `pkid`, `ok` unless its reason code is a failure (≥ 0x80).
    fn on_puback(&mut self, pkid: u16, ok: bool) -> Acked {
        let tag = self.by_pkid.remove(&pkid);
        self.acks_this_connection += 1;
        self.waiting_since = (!self.by_pkid.is_empty()).then(Instant::now);
        let Some(Some(sent)) = tag else {
            return Acked::Other;
        };
        self.handed = self.handed.saturating_sub(1);
        self.strikes.remove(&sent.key);
        if ok {
            self.refusals.remove(&sent.topic);
            self.acked.push(sent.key);
            return Acked::Delivered {
                key: sent.key,
                cleared: self.refusals.is_empty(),
            };
        }
        let now = Instant::now();
        let wait = match self.held.get(&sent.camera) {
            // Another refusal of the round already holding this camera: keep its wait.
            Some(&until) if until > now => until - now,
            _ => {
                let n = self.refusals.entry(sent.topic.clone()).or_insert(0);
                let wait = REFUSED_WAIT_MIN
                    .saturating_mul(1 << (*n).min(6))
                    .min(REFUSED_WAIT_MAX);
                *n += 1;
                self.held.insert(sent.camera.clone(), now + wait);
                wait
            }
        };
        // Send the camera's queue again from the refused record on.
        match sent.key.checked_sub(1) {
            Some(before) => {
                let c = self.cursors.entry(sent.camera.clone()).or_insert(before);
                *c = (*c).min(before);
            }
            None => {
                self.cursors.remove(&sent.camera);
            }
        }
        Acked::Refused(sent, wait)
    }

    /// The connection is lost: forget every mapping; whatever was not
    /// acknowledged is replayed from the outbox. Returns how many outbox
    /// messages were unacknowledged, and the oldest of them when the
    /// connection got no PUBACK at all (a strike against it).
    fn lost(&mut self) -> (usize, Option<u64>) {
        let unacked = self.handed;
        let suspect = if self.acks_this_connection == 0 {
            self.by_pkid
                .values()
                .chain(self.queued.iter())
                .flatten()
                .map(|s| s.key)
                .min()
        } else {
            None
        };
        self.connected = false;
        self.queued.clear();
        self.by_pkid.clear();
        self.handed = 0;
        self.cursors.clear();
        self.replaying = true;
        self.waiting_since = None;
        self.acks_this_connection = 0;
        (unacked, suspect)
    }

    /// Count a strike against `key`; true when it has reached [`STRIKES`].
    fn strike(&mut self, key: u64) -> bool {
        let n = self.strikes.entry(key).or_insert(0);
        *n += 1;
        *n >= STRIKES
    }

    /// Whether `camera`'s queue is waiting after a refusal.
    pub fn is_held(&mut self, camera: &str, now: Instant) -> bool {
        match self.held.get(camera) {
            Some(&until) if until > now => true,
            Some(_) => {
                self.held.remove(camera);
                false
            }
            None => false,
        }
    }
}

/// The MQTT 5 reason code of a PUBACK.
fn reason_code(r: PubAckReason) -> u8 {
    match r {
        PubAckReason::Success => 0x00,
        PubAckReason::NoMatchingSubscribers => 0x10,
        PubAckReason::UnspecifiedError => 0x80,
        PubAckReason::ImplementationSpecificError => 0x83,
        PubAckReason::NotAuthorized => 0x87,
        PubAckReason::TopicNameInvalid => 0x90,
        PubAckReason::PacketIdentifierInUse => 0x91,
        PubAckReason::QuotaExceeded => 0x97,
        PubAckReason::PayloadFormatInvalid => 0x99,
    }
}

impl Publisher {
    /// Hand one QoS-1 publish to rumqttc, recording its tag in channel order.
    /// Returns false when the link is down or the channel is full.
    pub(super) fn push(
        &self,
        tag: Option<Sent>,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> bool {
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
        link.queue(tag);
        let s = &self.shared.stats;
        s.sent.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(n, Ordering::Relaxed);
        drop(link);
        if let Some((camera, class)) = self.shared.topics.classify(&topic_for_stats)
            && let Ok(mut t) = self.shared.traffic.lock()
        {
            t.add(camera, class, n);
        }
        true
    }

    /// Publish the retained state after every (re)connect.
    fn announce(&self) {
        self.announce_node();
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

    /// Publish the retained `online` node status now (dropped while disconnected).
    pub(super) fn announce_node(&self) {
        let online = node_status(&self.shared, NodeState::Online, Some(self.shared.started));
        if let Ok(body) = serde_json::to_vec(&online) {
            let _ = self.push(None, self.shared.topics.node_status(), body, true);
        }
    }

    pub(super) fn client_closed(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
            && !self.shared.stats.connected.load(Ordering::Relaxed)
    }

    fn on_connack(&self, connects: u64, broker_max: Option<u32>) {
        let s = &self.shared.stats;
        if connects > 1 {
            s.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .broker_max_packet
            .store(broker_max.unwrap_or(0), Ordering::Relaxed);
        s.connected.store(true, Ordering::Relaxed);
        if let Ok(mut d) = self.shared.broker_down.lock()
            && let Some(down) = d.take()
        {
            tracing::info!(broker = %self.shared.broker, down_s = down.since_instant.elapsed().as_secs(), "mqtt broker reachable again");
        }
        if let Ok(mut l) = self.shared.link.lock() {
            l.connected = true;
        }
        self.announce();
        self.sweep_ghosts();
        self.subscribe_replay();
        self.shared.wake.notify_one();
    }

    /// Subscribe (QoS 1) to the centre's replay requests; after every
    /// connect, as the session starts clean.
    fn subscribe_replay(&self) {
        let topic = self.shared.topics.replay();
        if let Err(e) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
            tracing::error!(topic = %topic, error = %e,
                "mqtt: cannot subscribe to replay requests on this connection");
        }
    }

    /// Listen for a few seconds to the retained camera statuses under this
    /// node: those of cameras no longer in the config (removed while the
    /// node was down) are cleared, so no ghost camera stays `streaming`.
    fn sweep_ghosts(&self) {
        let filter = self.shared.topics.camera_statuses();
        if self
            .client
            .try_subscribe(filter.clone(), QoS::AtMostOnce)
            .is_err()
        {
            return;
        }
        let client = self.client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GHOST_SWEEP).await;
            let _ = client.unsubscribe(filter).await;
        });
    }

    /// A message on a subscribed topic: a retained status of a camera that
    /// is not configured (any more) is cleared with an empty retained message.
    fn on_publish(&self, p: &Publish) {
        let topic = String::from_utf8_lossy(&p.topic);
        if topic == self.shared.topics.replay() {
            self.replay_request(&topic, &p.payload);
            return;
        }
        if !p.retain || p.payload.is_empty() {
            return;
        }
        let Some(camera) = self.shared.topics.status_camera(&topic) else {
            return;
        };
        let configured = self
            .shared
            .cameras
            .lock()
            .map(|c| c.iter().any(|x| x == camera))
            .unwrap_or(true);
        if !configured {
            tracing::info!(
                camera,
                "clearing the retained status of a camera no longer configured"
            );
            let _ = self.push(None, topic.to_string(), Vec::new(), true);
        }
    }

    fn on_puback(&self, ack: &PubAck) {
        let code = reason_code(ack.reason);
        let ok = code < 0x80;
        if ok {
            self.shared.stats.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        let acked = match self.shared.link.lock() {
            Ok(mut l) => l.on_puback(ack.pkid, ok),
            Err(_) => Acked::Other,
        };
        match acked {
            Acked::Delivered { cleared: true, .. } => self.set_delivery_error(None),
            Acked::Refused(sent, wait) => {
                let why = ack
                    .properties
                    .as_ref()
                    .and_then(|p| p.reason_string.clone())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let msg = format!(
                    "the broker refused {} (PUBACK reason code {code:#04x} {:?}{why}); kept in the outbox",
                    sent.topic, ack.reason
                );
                tracing::warn!(camera = %sent.camera, key = sent.key, topic = %sent.topic,
                    reason_code = code, retry_in_ms = wait.as_millis() as u64,
                    "mqtt: the broker refused a message; it stays in the outbox and is sent again");
                self.set_delivery_error(Some(msg));
            }
            Acked::Other if !ok => {
                tracing::warn!(pkid = ack.pkid, reason_code = code, reason = ?ack.reason,
                    "mqtt: the broker refused a status message");
            }
            Acked::Delivered { cleared: false, .. } | Acked::Other => {}
        }
        self.shared.wake.notify_one();
    }

    /// The connection is lost (or could not be made).
    fn on_error(&self, eventloop: &mut EventLoop, e: &ConnectionError, backoff: Duration) {
        self.drop_link(eventloop);
        let worded = broker_error(&self.shared.broker, e);
        if let Ok(mut d) = self.shared.broker_down.lock() {
            match d.as_mut() {
                Some(d) => d.error.clone_from(&worded),
                None => {
                    *d = Some(super::BrokerDown {
                        since: std::time::SystemTime::now(),
                        since_instant: Instant::now(),
                        error: worded.clone(),
                        outbox_at_start: self.shared.outbox.len() as u64,
                    });
                }
            }
        }
        if self.shared.stats.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!(broker = %self.shared.broker, error = %worded, detail = %e, "mqtt connection lost; reconnecting");
        } else {
            tracing::warn!(broker = %self.shared.broker, error = %worded, detail = %e,
                retry_in_ms = backoff.as_millis() as u64, "mqtt connect failed");
        }
    }

    /// Forget the connection: drain rumqttc's channel and retransmit list
    /// (nothing enters the channel while `connected` is false); everything
    /// unacknowledged is replayed from the outbox. A record that was the
    /// oldest unacknowledged one of [`STRIKES`] connections in a row that
    /// dropped before any PUBACK is quarantined: it would block the queue.
    fn drop_link(&self, eventloop: &mut EventLoop) {
        // PUBACKs read before the link dropped are still queued in rumqttc:
        // they belong to this connection, so they count before it is forgotten.
        let queued: Vec<Event> = eventloop.state.events.drain(..).collect();
        for ev in queued {
            if let Event::Incoming(Packet::PubAck(ack)) = ev {
                self.on_puback(&ack);
            }
        }
        let Ok(mut l) = self.shared.link.lock() else {
            return;
        };
        eventloop.clean();
        eventloop.pending.clear();
        let (unacked, suspect) = l.lost();
        if unacked > 0 {
            tracing::info!(unacked, "outbox: unacknowledged messages will be replayed");
        }
        let Some(key) = suspect.filter(|&k| l.strike(k)) else {
            return;
        };
        l.strikes.remove(&key);
        drop(l);
        self.quarantine(
            key,
            &format!("{STRIKES} connections in a row dropped before any PUBACK while it was the oldest unacknowledged record"),
        );
    }

    /// The PUBACK timeout: a publish has waited longer than `timeout` with
    /// no PUBACK arriving. Drop the connection and replay.
    fn puback_overdue(&self, timeout: Duration) -> bool {
        self.shared
            .link
            .lock()
            .ok()
            .and_then(|l| l.waiting_since)
            .is_some_and(|t| t.elapsed() > timeout)
    }
}

/// Drive rumqttc's event loop forever: map pkids to outbox keys, collect
/// PUBACKs (and refusals), re-announce after each connect, drop a connection
/// whose broker stopped acknowledging, and back off (capped) while the
/// broker is unreachable. On a lost connection, rumqttc's in-memory copies
/// of unacknowledged publishes are dropped: the outbox is the only source of
/// truth and replays them, in order, from the oldest unacknowledged key.
pub(super) async fn drive(mut eventloop: EventLoop, p: Publisher) {
    let mut backoff = Duration::from_millis(200);
    let mut connects = 0u64;
    let timeout = p.shared.opts.puback_timeout;
    loop {
        // `poll` is never raced with a timer: cancelling it mid-connect
        // would drop the half-made connection (a broker slower than the
        // timer to answer CONNECT would never be reached). The PUBACK timeout
        // is checked between events instead: a connected link yields one
        // at least every keep-alive interval (PINGREQ / PINGRESP), and a
        // broker that stops answering pings fails the link in rumqttc.
        if p.puback_overdue(timeout) {
            p.shared
                .stats
                .puback_timeouts
                .fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "the broker stopped acknowledging: no PUBACK for {} s; reconnecting",
                timeout.as_secs()
            );
            tracing::warn!(broker = %p.shared.broker, timeout_s = timeout.as_secs(),
                "mqtt: no PUBACK in time; dropping the connection, the outbox replays");
            p.set_delivery_error(Some(msg));
            p.drop_link(&mut eventloop);
            p.shared.stats.connected.store(false, Ordering::Relaxed);
        }
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let broker_max = ack.properties.as_ref().and_then(|p| p.max_packet_size);
                tracing::info!(broker = %p.shared.broker, code = ?ack.code,
                    broker_max_packet = broker_max, "mqtt connected");
                connects += 1;
                backoff = Duration::from_millis(200);
                p.on_connack(connects, broker_max);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                if let Ok(mut l) = p.shared.link.lock() {
                    l.on_outgoing(pkid);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => p.on_puback(&ack),
            Ok(Event::Incoming(Packet::Publish(msg))) => p.on_publish(&msg),
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
                p.on_error(&mut eventloop, &e, backoff);
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
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use rumqttc::Outgoing;
    use rumqttc::v5::AsyncClient;

    use super::*;

    /// Messages in the test, rumqttc's inflight window (small, so packet ids
    /// wrap and collide), and how many publishes the broker acknowledges at
    /// once (in reverse order).
    const N: u64 = 60;
    const INFLIGHT: u16 = 4;
    const BATCH: usize = 3;

    /// Outbox key of message `i`; every third message is untagged (like a
    /// retained status message pushed between outbox messages).
    fn key(i: u64) -> Option<u64> {
        (i % 3 != 2).then_some(1000 + i)
    }

    fn tag(i: u64) -> Option<Sent> {
        key(i).map(|key| Sent {
            key,
            camera: "cam".into(),
            topic: "t".into(),
        })
    }

    /// One MQTT packet: its first byte and its body.
    fn read_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        let first = b[0];
        let (mut len, mut shift) = (0usize, 0);
        loop {
            s.read_exact(&mut b)?;
            len |= ((b[0] & 0x7f) as usize) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body)?;
        Ok((first, body))
    }

    /// What the broker saw: (pkid, message number) of every PUBLISH in
    /// arrival order, and the message numbers it acknowledged, in ack order.
    type Seen = (Vec<(u16, u64)>, Vec<u64>, TcpStream);

    /// A bare MQTT 5 broker on a blocking socket: CONNACK, then reads
    /// PUBLISHes and acknowledges them `BATCH` at a time in reverse order
    /// (or whatever is pending after a quiet moment), until `N` are acked.
    fn broker(listener: &TcpListener) -> Seen {
        let (mut s, _) = listener.accept().unwrap();
        let (first, _) = read_packet(&mut s).unwrap();
        assert_eq!(first >> 4, 1, "CONNECT expected");
        // CONNACK: no session, success, no properties.
        s.write_all(&[0x20, 3, 0, 0, 0]).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (mut wire, mut acked, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        while (acked.len() as u64) < N {
            let quiet = match read_packet(&mut s) {
                Ok((first, body)) if first >> 4 == 3 => {
                    assert_eq!(first & 0x06, 0x02, "QoS 1 expected");
                    let t = u16::from_be_bytes([body[0], body[1]]) as usize;
                    let pkid = u16::from_be_bytes([body[2 + t], body[3 + t]]);
                    // After the packet id: the properties' length (0), then the payload.
                    assert_eq!(body[4 + t], 0, "no publish properties expected");
                    let i: u64 = std::str::from_utf8(&body[5 + t..])
                        .unwrap()
                        .parse()
                        .unwrap();
                    wire.push((pkid, i));
                    pending.push((pkid, i));
                    false
                }
                Ok((first, _)) if first >> 4 == 12 => {
                    s.write_all(&[0xd0, 0]).unwrap(); // PINGRESP
                    false
                }
                Ok((first, _)) => panic!("unexpected packet {first:#x}"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    true
                }
                Err(e) => panic!("broker read: {e}"),
            };
            if pending.len() >= BATCH || (quiet && !pending.is_empty()) {
                for (pkid, i) in pending.drain(..).rev() {
                    let [hi, lo] = pkid.to_be_bytes();
                    s.write_all(&[0x40, 2, hi, lo]).unwrap();
                    acked.push(i);
                    // One at a time, so that rumqttc may send between them
                    // (and run into a pkid still in use: a collision).
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        (wire, acked, s)
    }

    /// What the pkid ↔ outbox key mapping relies on: publishes handed to
    /// `AsyncClient::try_publish` go on the wire in request order, rumqttc
    /// reports `Outgoing::Publish(pkid)` in that same order with the pkid on
    /// the wire, so popping [`Link::queued`] on each one maps every PUBACK to
    /// the outbox key of the message it acknowledges: with packet ids
    /// wrapping, acks out of order and rumqttc's pkid collisions.
    #[tokio::test]
    async fn rumqttc_keeps_request_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = std::thread::spawn(move || broker(&listener));
        let mut o = MqttOptions::new("order-test", "127.0.0.1", port);
        o.set_outgoing_inflight_upper_limit(INFLIGHT);
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        let mut link = Link {
            connected: true,
            ..Link::default()
        };
        // As `Publisher::push` does: the tag queued right after the request.
        for i in 0..N {
            let retain = tag(i).is_none();
            client
                .try_publish("t", QoS::AtLeastOnce, retain, i.to_string())
                .unwrap();
            link.queue(tag(i));
        }
        let (mut outgoing, mut resolved, mut collisions) = (Vec::new(), Vec::new(), 0);
        while (resolved.len() as u64) < N {
            let ev = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
                .await
                .expect("the event loop stalled")
                .expect("connection");
            match ev {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    outgoing.push(pkid);
                    link.on_outgoing(pkid);
                }
                Event::Incoming(Packet::PubAck(ack)) => {
                    resolved.push(match link.on_puback(ack.pkid, true) {
                        Acked::Delivered { key, .. } => Some(key),
                        _ => None,
                    });
                }
                Event::Outgoing(Outgoing::AwaitAck(_)) => collisions += 1,
                _ => {}
            }
        }
        let (wire, acked, _socket) = broker.join().unwrap();
        eprintln!("{N} publishes, {collisions} pkid collisions");

        let order: Vec<u64> = wire.iter().map(|w| w.1).collect();
        assert_eq!(order, (0..N).collect::<Vec<_>>(), "wire order");
        let wire_pkids: Vec<u16> = wire.iter().map(|w| w.0).collect();
        assert_eq!(outgoing, wire_pkids, "reported pkids");
        let expected: Vec<Option<u64>> = acked.iter().map(|&i| key(i)).collect();
        assert_eq!(resolved, expected, "PUBACK → outbox key");
        let keys: Vec<u64> = expected.into_iter().flatten().collect();
        assert_eq!(link.acked, keys);
        assert!(link.queued.is_empty() && link.by_pkid.is_empty());
        assert_eq!(link.handed, 0);
        // The test did exercise what it claims to.
        assert!(acked.windows(2).any(|w| w[0] > w[1]), "acks out of order");
        assert!(
            wire_pkids.iter().filter(|&&p| p == 1).count() > 1,
            "pkids wrap"
        );
    }

    /// A refused record stays: its camera's queue waits (doubling per retry
    /// round refused in a row, not per refused message) and is sent again
    /// from that record; only a delivery on the refused topic clears it.
    #[test]
    fn refusal_keeps_the_record_and_holds_its_camera() {
        let mut link = Link {
            connected: true,
            ..Link::default()
        };
        let sent = |key| Sent {
            key,
            camera: "a".into(),
            topic: "t/a/events".into(),
        };
        link.cursors.insert("a".into(), 12);
        for (pkid, key) in [(1, 10), (2, 11), (3, 12)] {
            link.queue(Some(sent(key)));
            link.on_outgoing(pkid);
        }
        assert!(link.waiting_since.is_some());
        let Acked::Refused(s, wait) = link.on_puback(1, false) else {
            panic!("a refusal");
        };
        assert_eq!((s.key, wait), (10, REFUSED_WAIT_MIN));
        assert!(link.acked.is_empty(), "a refused record is not deleted");
        assert_eq!(
            link.cursors["a"], 9,
            "the queue restarts at the refused record"
        );
        let now = Instant::now();
        assert!(link.is_held("a", now) && !link.is_held("b", now));
        // The same round: the wait does not grow.
        let Acked::Refused(_, wait) = link.on_puback(2, false) else {
            panic!("a refusal");
        };
        assert!(wait <= REFUSED_WAIT_MIN);
        // A delivery on another topic (the event's snapshot) clears nothing.
        let snap = Sent {
            key: 13,
            camera: "a".into(),
            topic: "t/a/snapshot/x".into(),
        };
        link.queue(Some(snap));
        link.on_outgoing(4);
        assert_eq!(
            link.on_puback(4, true),
            Acked::Delivered {
                key: 13,
                cleared: false
            }
        );
        // The next round, refused again: the wait doubles.
        link.held.insert("a".into(), Instant::now());
        let Acked::Refused(_, wait) = link.on_puback(3, false) else {
            panic!("a refusal");
        };
        assert_eq!(wait, REFUSED_WAIT_MIN * 2);
        link.queue(Some(sent(10)));
        link.on_outgoing(5);
        assert_eq!(
            link.on_puback(5, true),
            Acked::Delivered {
                key: 10,
                cleared: true
            }
        );
        assert!(link.refusals.is_empty());
        assert!(link.waiting_since.is_none() && link.handed == 0);
        assert!(!link.is_held("a", now + REFUSED_WAIT_MAX));
    }

    /// Only a connection that dropped before any PUBACK counts against its
    /// oldest unacknowledged record, and only [`STRIKES`] in a row quarantine it.
    #[test]
    fn strikes_count_connections_without_any_puback() {
        let mut link = Link::default();
        let big = Sent {
            key: 7,
            camera: "a".into(),
            topic: "t".into(),
        };
        for round in 1..=STRIKES {
            link.connected = true;
            link.queue(Some(big.clone()));
            link.on_outgoing(1);
            let (unacked, suspect) = link.lost();
            assert_eq!((unacked, suspect), (1, Some(7)));
            assert_eq!(link.strike(7), round == STRIKES);
        }
        link.strikes.clear();
        link.connected = true;
        link.queue(None);
        link.on_outgoing(1);
        link.on_puback(1, true);
        link.queue(Some(big));
        link.on_outgoing(2);
        assert_eq!(link.lost(), (1, None), "this connection did get a PUBACK");
    }
}
