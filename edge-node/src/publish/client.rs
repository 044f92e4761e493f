//! The MQTT client: options from the config (credentials, TLS, packet
//! sizes), the one `push` every QoS-1 publish goes through, and the task
//! that drives rumqttc's event loop, mapping packet ids to outbox keys
//! ([`Link`]) and re-announcing the retained state after every connect.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{Event, EventLoop, MqttOptions, Packet, QoS, Transport};

use super::wire::{CameraStatusMessage, NodeState};
use super::{PublishError, Publisher, node_status};
use crate::config::{BrokerUrl, MqttSection};

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

/// Which QoS-1 publish is which: rumqttc reports `Outgoing::Publish(pkid)` in
/// the order requests enter its channel, and `PubAck(pkid)` later. Every QoS-1
/// publish goes through [`Publisher::push`], which records a tag in the same
/// order under this lock (the test `rumqttc_keeps_request_order` pins this).
#[derive(Debug, Default)]
pub(super) struct Link {
    pub connected: bool,
    /// Tags of publishes in rumqttc's channel, in order (`None`: not from the outbox).
    pub queued: VecDeque<Option<u64>>,
    /// pkid → tag, sent and waiting for PUBACK.
    pub by_pkid: HashMap<u16, Option<u64>>,
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
}

impl Link {
    /// A publish was handed to rumqttc's channel (in channel order).
    fn queue(&mut self, tag: Option<u64>) {
        self.queued.push_back(tag);
        if tag.is_some() {
            self.handed += 1;
        }
    }

    /// rumqttc wrote the next publish of its channel as `pkid`.
    fn on_outgoing(&mut self, pkid: u16) {
        if let Some(tag) = self.queued.pop_front() {
            self.by_pkid.insert(pkid, tag);
        }
    }

    /// PUBACK for `pkid`: the outbox key it acknowledges (queued for
    /// deletion), if the publish came from the outbox.
    fn on_puback(&mut self, pkid: u16) -> Option<u64> {
        let key = self.by_pkid.remove(&pkid)??;
        self.handed = self.handed.saturating_sub(1);
        self.acked.push(key);
        Some(key)
    }

    /// The connection is lost: forget every mapping; whatever was not
    /// acknowledged is replayed from the outbox. Returns how many outbox
    /// messages were unacknowledged.
    fn lost(&mut self) -> usize {
        let unacked = self.handed;
        self.connected = false;
        self.queued.clear();
        self.by_pkid.clear();
        self.handed = 0;
        self.cursors.clear();
        self.replaying = true;
        unacked
    }
}

impl Publisher {
    /// Hand one QoS-1 publish to rumqttc, recording its tag in channel order.
    /// Returns false when the link is down or the channel is full.
    pub(super) fn push(
        &self,
        tag: Option<u64>,
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

    pub(super) fn client_closed(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
            && !self.shared.stats.connected.load(Ordering::Relaxed)
    }

    fn on_connack(&self, connects: u64) {
        let s = &self.shared.stats;
        if connects > 1 {
            s.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        s.connected.store(true, Ordering::Relaxed);
        if let Ok(mut l) = self.shared.link.lock() {
            l.connected = true;
        }
        self.announce();
        self.shared.wake.notify_one();
    }

    /// The connection is lost (or could not be made).
    fn on_error(&self, eventloop: &mut EventLoop, e: &rumqttc::ConnectionError, backoff: Duration) {
        if let Ok(mut l) = self.shared.link.lock() {
            // Nothing enters the channel while `connected` is false;
            // drain what is there, and rumqttc's retransmit list.
            eventloop.clean();
            eventloop.pending.clear();
            let unacked = l.lost();
            if unacked > 0 {
                tracing::info!(unacked, "outbox: unacknowledged messages will be replayed");
            }
        }
        if self.shared.stats.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %e, "mqtt connection lost; reconnecting");
        } else {
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connect failed");
        }
    }
}

/// Drive rumqttc's event loop forever: map pkids to outbox keys, collect
/// PUBACKs, re-announce after each connect, and back off (capped) while the
/// broker is unreachable. On a lost connection, rumqttc's in-memory copies
/// of unacknowledged publishes are dropped: the outbox is the only source of
/// truth and replays them, in order, from the oldest unacknowledged key.
pub(super) async fn drive(mut eventloop: EventLoop, p: Publisher) {
    let mut backoff = Duration::from_millis(200);
    let mut connects = 0u64;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(code = ?ack.code, "mqtt connected");
                connects += 1;
                backoff = Duration::from_millis(200);
                p.on_connack(connects);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                if let Ok(mut l) = p.shared.link.lock() {
                    l.on_outgoing(pkid);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                p.shared.stats.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = p.shared.link.lock() {
                    l.on_puback(ack.pkid);
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

    use rumqttc::{AsyncClient, Outgoing};

    use super::*;

    /// Messages in the test, rumqttc's inflight window (small, so packet ids
    /// wrap and collide), and how many publishes the broker acknowledges at
    /// once (in reverse order).
    const N: u64 = 60;
    const INFLIGHT: u16 = 4;
    const BATCH: usize = 3;

    /// Outbox key of message `i`; every third message is untagged (like a
    /// retained status message pushed between outbox messages).
    fn tag(i: u64) -> Option<u64> {
        (i % 3 != 2).then_some(1000 + i)
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

    /// A bare MQTT 3.1.1 broker on a blocking socket: CONNACK, then reads
    /// PUBLISHes and acknowledges them `BATCH` at a time in reverse order
    /// (or whatever is pending after a quiet moment), until `N` are acked.
    fn broker(listener: &TcpListener) -> Seen {
        let (mut s, _) = listener.accept().unwrap();
        let (first, _) = read_packet(&mut s).unwrap();
        assert_eq!(first >> 4, 1, "CONNECT expected");
        s.write_all(&[0x20, 2, 0, 0]).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (mut wire, mut acked, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        while (acked.len() as u64) < N {
            let quiet = match read_packet(&mut s) {
                Ok((first, body)) if first >> 4 == 3 => {
                    assert_eq!(first & 0x06, 0x02, "QoS 1 expected");
                    let t = u16::from_be_bytes([body[0], body[1]]) as usize;
                    let pkid = u16::from_be_bytes([body[2 + t], body[3 + t]]);
                    let i: u64 = std::str::from_utf8(&body[4 + t..])
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
        o.set_inflight(INFLIGHT);
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
                Event::Incoming(Packet::PubAck(ack)) => resolved.push(link.on_puback(ack.pkid)),
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
        let expected: Vec<Option<u64>> = acked.iter().map(|&i| tag(i)).collect();
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
}
