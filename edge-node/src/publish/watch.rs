//! A subscriber for people, not machines: prints each message as one
//! readable line (object, zone and camera alerts, lifecycle events, counts,
//! statuses; formats in [`lines`]) and writes snapshots to a folder. Used by
//! `edge-node demo` and `edge-node watch`. Speaks MQTT 5 and connects like
//! the node ([`super::mqtt_options`]: `mqtts://` with a CA and an optional
//! client certificate, credentials from files or the environment). It never
//! gives up on the broker: it reconnects with capped backoff, saying once
//! when the broker is lost and once when it is back.

pub mod lines;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop};

use edge_wire::{EventType, rfc3339};

use super::PublishError;
use crate::config::{BrokerUrl, MqttSection};
pub use lines::{Kind, Line, describe, format_counts, format_event, format_zone_alert};

/// First wait before a reconnect; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between two connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many message keys are remembered to drop the second copy of an alert
/// (it comes on `/events` and `/alerts`) and redeliveries.
const SEEN_KEYS: usize = 4096;

#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// The broker (`Embedded` means 127.0.0.1 and its port).
    pub broker: BrokerUrl,
    /// How to connect, as for the node: `ca_file`, `client_cert`,
    /// `client_key`, the credential files or environment variables,
    /// `keep_alive_s`, `max_packet_bytes`. `url` is not read (see `broker`).
    pub mqtt: MqttSection,
    /// A user name given directly; overrides the one from `mqtt`.
    pub username: Option<String>,
    /// Topic filter, e.g. `hanoi/#` or `hanoi/+/+/+/alerts`.
    pub filter: String,
    /// Where snapshots are written (`<event id>-<seq>.jpg`); none: not written.
    pub snapshot_dir: Option<PathBuf>,
    /// Return once a node reports `stopped` (live, not a retained `stopped`
    /// left on the broker by an earlier run).
    pub until_stopped: bool,
}

/// What was seen, for the demo's summary.
#[derive(Clone, Debug, Default)]
pub struct WatchSummary {
    /// Lifecycle messages (`new`, `update`, `end`), object alerts included.
    pub events: u64,
    pub new: u64,
    pub updates: u64,
    pub ends: u64,
    /// Object alerts (loitering, wrong way), each counted once.
    pub object_alerts: u64,
    /// Zone alerts (crowding and its clearing).
    pub zone_alerts: u64,
    /// Camera alerts (frozen, black, blurred, moved and their clearing).
    pub camera_alerts: u64,
    pub counts: u64,
    pub snapshots: u64,
    /// Payload bytes of every message received.
    pub bytes: u64,
    pub snapshot_bytes: u64,
}

impl WatchSummary {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Event(t) => {
                self.events += 1;
                match t {
                    EventType::New => self.new += 1,
                    EventType::Update => self.updates += 1,
                    EventType::End => self.ends += 1,
                }
            }
            Kind::ObjectAlert => {
                self.events += 1;
                self.updates += 1;
                self.object_alerts += 1;
            }
            Kind::ZoneAlert => self.zone_alerts += 1,
            Kind::CameraAlert => self.camera_alerts += 1,
            Kind::Counts => self.counts += 1,
            _ => {}
        }
    }
}

/// True when `change` differs from what `topic` said last (a camera's
/// status refreshed with the same state, error and health is no news).
fn is_news(news: &mut HashMap<String, String>, topic: &str, change: &str) -> bool {
    if news.get(topic).is_some_and(|c| c == change) {
        return false;
    }
    news.insert(topic.to_string(), change.to_string());
    true
}

/// Remembers the last [`SEEN_KEYS`] message keys.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// True the first time `key` is offered.
    fn first(&mut self, key: &str) -> bool {
        if self.set.contains(key) {
            return false;
        }
        if self.order.len() == SEEN_KEYS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key.to_string());
        self.order.push_back(key.to_string());
        true
    }
}

/// The connection's story, told once per change.
struct Link {
    addr: String,
    filter: String,
    /// When the broker was lost (none while connected or before the first connect).
    lost_since: Option<Instant>,
    connected_once: bool,
    /// The last failure printed, so a retry that fails the same way stays quiet.
    last_error: Option<String>,
    backoff: Duration,
}

impl Link {
    fn subscribed(&mut self) {
        let now = rfc3339(SystemTime::now());
        if !self.connected_once {
            println!(
                "{now} BROKER connected to {}, watching {}",
                self.addr, self.filter
            );
        } else {
            let away = self
                .lost_since
                .map(|t| format!(" after {:.0} s", t.elapsed().as_secs_f64()))
                .unwrap_or_default();
            println!("{now} BROKER back: {}{away}", self.addr);
        }
        self.connected_once = true;
        self.lost_since = None;
        self.last_error = None;
        self.backoff = BACKOFF_MIN;
    }

    /// A failed poll: one line when a working link is lost, and one when
    /// an attempt fails for a new reason that is not the broker being away
    /// (refused credentials, a TLS failure); then a wait before the next try.
    async fn failed(&mut self, e: &ConnectionError) {
        let reason = e.to_string();
        let now = rfc3339(SystemTime::now());
        let away = matches!(
            e,
            ConnectionError::Io(_) | ConnectionError::Timeout(_) | ConnectionError::MqttState(_)
        );
        if self.lost_since.is_none() && self.connected_once {
            self.lost_since = Some(Instant::now());
            println!(
                "{now} BROKER lost: {} ({reason}); reconnecting until it is back",
                self.addr
            );
            self.last_error = Some(reason);
        } else if self.last_error.as_deref() != Some(reason.as_str())
            && (!away || !self.connected_once)
        {
            println!(
                "{now} BROKER cannot connect to {} ({reason}); retrying",
                self.addr
            );
            self.last_error = Some(reason);
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// The broker as a URL, for messages (never with credentials).
pub fn broker_display(b: &BrokerUrl) -> String {
    match b {
        BrokerUrl::Embedded { port } => format!("mqtt://127.0.0.1:{port}"),
        BrokerUrl::Tcp { host, port } => format!("mqtt://{host}:{port}"),
        BrokerUrl::Tls { host, port } => format!("mqtts://{host}:{port}"),
    }
}

/// The password as the node reads it: the first line of `password_file`,
/// else `password_env`'s value. Never printed.
fn password(cfg: &MqttSection) -> Result<Option<String>, PublishError> {
    match &cfg.password_file {
        Some(f) => std::fs::read_to_string(f)
            .map(|t| Some(t.lines().next().unwrap_or("").to_string()))
            .map_err(|source| PublishError::ReadPem {
                what: "password file",
                path: f.display().to_string(),
                source,
            }),
        None => Ok(std::env::var(&cfg.password_env).ok()),
    }
}

fn connect(opts: &WatchOptions) -> Result<(AsyncClient, EventLoop), PublishError> {
    let id = format!("edge-node-watch-{}", std::process::id());
    let mut mo = super::mqtt_options(&opts.mqtt, &opts.broker, &id)?;
    if let Some(user) = &opts.username {
        // `mqtt_options` sets a password only with a user name from the
        // config, so it is read here too, by the same rule.
        mo.set_credentials(user.clone(), password(&opts.mqtt)?.unwrap_or_default());
    }
    mo.set_max_packet_size(Some(64 << 20));
    Ok(AsyncClient::new(mo, 64))
}

/// Subscribe and print until `until_stopped` sees a stopped node (or forever).
///
/// `ready` is signalled once the subscription is first acknowledged, so a
/// caller can start publishers without losing their first messages. Fails
/// only on options that cannot work (an unreadable CA or credential file, a
/// snapshot folder that cannot be made) or a subscription the broker refuses;
/// an unreachable or lost broker is retried forever.
pub async fn watch(
    opts: WatchOptions,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<WatchSummary, PublishError> {
    let (client, mut el) = connect(&opts)?;
    if let Some(d) = &opts.snapshot_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| PublishError::ClientGone(format!("{}: {e}", d.display())))?;
    }
    let mut link = Link {
        addr: broker_display(&opts.broker),
        filter: opts.filter.clone(),
        lost_since: None,
        connected_once: false,
        last_error: None,
        backoff: BACKOFF_MIN,
    };
    let mut out = Printer::new(&opts);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // Every connect starts a clean session: subscribe again.
                client
                    .subscribe(opts.filter.clone(), QoS::AtLeastOnce)
                    .await
                    .map_err(|e| PublishError::ClientGone(e.to_string()))?;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if let Some(code) = ack
                    .return_codes
                    .iter()
                    .find(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                {
                    return Err(PublishError::Connect {
                        addr: link.addr.clone(),
                        reason: format!(
                            "the broker refused the subscription to {} ({code:?})",
                            opts.filter
                        ),
                    });
                }
                link.subscribed();
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if out.on_publish(&p) {
                    let _ = client.disconnect().await;
                    return Ok(out.sum);
                }
            }
            Ok(_) => {}
            Err(e) => link.failed(&e).await,
        }
    }
}

/// Prints messages, saves snapshots, counts.
struct Printer {
    snapshot_dir: Option<PathBuf>,
    until_stopped: bool,
    snap_seq: HashMap<String, u32>,
    seen: Seen,
    /// Per topic, what the last printed refresh said (see [`Line::change`]).
    news: HashMap<String, String>,
    sum: WatchSummary,
}

impl Printer {
    fn new(opts: &WatchOptions) -> Self {
        Printer {
            snapshot_dir: opts.snapshot_dir.clone(),
            until_stopped: opts.until_stopped,
            snap_seq: HashMap::new(),
            seen: Seen::default(),
            news: HashMap::new(),
            sum: WatchSummary::default(),
        }
    }

    /// Handles one message; true when the watch should end.
    fn on_publish(&mut self, p: &Publish) -> bool {
        self.sum.bytes += p.payload.len() as u64;
        let topic = String::from_utf8_lossy(&p.topic);
        let line = describe(&topic, &p.payload, &rfc3339(SystemTime::now()));
        if let Some(k) = &line.key
            && !self.seen.first(k)
        {
            return false;
        }
        if let Some(c) = &line.change
            && !is_news(&mut self.news, &topic, c)
        {
            return false;
        }
        self.sum.add(line.kind);
        if line.kind == Kind::Snapshot {
            self.save_snapshot(&topic, &p.payload);
        }
        if let Some(text) = &line.text {
            println!("{text}");
        }
        // A `stopped` the broker kept from an earlier run (retained, sent
        // because we subscribed) is not this run's end.
        self.until_stopped && !p.retain && line.kind == (Kind::NodeStatus { stopped: true })
    }

    fn save_snapshot(&mut self, topic: &str, jpeg: &[u8]) {
        self.sum.snapshots += 1;
        self.sum.snapshot_bytes += jpeg.len() as u64;
        let (Some(d), Some((_, id))) = (&self.snapshot_dir, topic.split_once("/snapshot/")) else {
            return;
        };
        let n = self.snap_seq.entry(id.to_string()).or_default();
        *n += 1;
        let path = d.join(format!("{id}-{n}.jpg"));
        if let Err(err) = std::fs::write(&path, jpeg) {
            println!("cannot write {}: {err}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_with_the_same_news_is_not_printed_again() {
        let mut news = HashMap::new();
        let status = |state: &str, err: &str, health: &str| {
            let body = format!(
                r#"{{"schema":"edge-camera-status/3","node":"n","camera":"c","state":"{state}","since":"S","time":"T","last_error":"{err}","frames":1,"health":[{health}]}}"#
            );
            describe("p/d/n/c/status", body.as_bytes(), "NOW")
                .change
                .unwrap()
        };
        assert!(is_news(
            &mut news,
            "p/d/n/c/status",
            &status("streaming", "", "")
        ));
        assert!(!is_news(
            &mut news,
            "p/d/n/c/status",
            &status("streaming", "", "")
        ));
        assert!(is_news(
            &mut news,
            "p/d/n/c/status",
            &status("streaming", "", r#""frozen""#)
        ));
        assert!(is_news(
            &mut news,
            "p/d/n/c/status",
            &status("reconnecting", "refused", "")
        ));
        assert!(!is_news(
            &mut news,
            "p/d/n/c/status",
            &status("reconnecting", "refused", "")
        ));
        assert!(is_news(
            &mut news,
            "p/d/n/c/status",
            &status("reconnecting", "timeout", "")
        ));
        assert!(is_news(
            &mut news,
            "p/d/n/other/status",
            &status("streaming", "", "")
        ));
    }

    #[test]
    fn seen_drops_second_copies_and_forgets_old_keys() {
        let mut s = Seen::default();
        assert!(s.first("a"));
        assert!(!s.first("a"));
        for i in 0..SEEN_KEYS {
            assert!(s.first(&i.to_string()));
        }
        assert!(s.first("a"), "forgotten after {SEEN_KEYS} newer keys");
        assert_eq!(s.set.len(), SEEN_KEYS);
    }
}
