//! The MQTT side of the centre (the only module that touches the broker):
//! an MQTT 5 client with a persistent session and a shared subscription
//! (`$share/{group}/{prefix}/#`, QoS 1), so several instances split the load
//! and messages queued while an instance is away reach it when it is back.
//!
//! Acknowledgements are manual: a PUBACK is sent only when the writer has
//! committed the message's row. Packet ids are per connection, so a token
//! remembers the connection it came on (its epoch); after a
//! reconnect, acknowledgements of the old connection are dropped (the
//! broker redelivers those messages, and the store ignores the copies).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc::Sender;
use tracing::{debug, info, warn};

use crate::config::MqttPlan;
use crate::writer::Incoming;

/// Acknowledges one received message, on the connection it came on.
pub struct AckToken {
    epoch: u64,
    pkid: u16,
    qos: QoS,
}

/// Sends the PUBACKs of committed messages (from the writer thread).
#[derive(Clone)]
pub struct Acker {
    client: AsyncClient,
    /// The current connection's number; held while acknowledging, and by
    /// the ingest while it switches connections, so no acknowledgement of an
    /// old connection reaches a new one.
    epoch: Arc<Mutex<u64>>,
}

impl Acker {
    pub fn ack(&self, tokens: Vec<AckToken>) {
        let epoch = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stale = 0u64;
        for t in tokens {
            if t.qos == QoS::AtMostOnce {
                continue;
            }
            if t.epoch != *epoch {
                stale += 1;
                continue;
            }
            let mut p = Publish::new("", t.qos, Vec::new(), None);
            p.pkid = t.pkid;
            if let Err(e) = self.client.try_ack(&p) {
                // Unacknowledged: redelivered after the next reconnect.
                warn!(error = %e, pkid = t.pkid, "cannot queue an acknowledgement");
            }
        }
        if stale > 0 {
            debug!(
                stale,
                "acknowledgements of an earlier connection dropped (the broker redelivers)"
            );
        }
    }
}

impl Acker {
    /// Queues a QoS 1 publish (a replay request) on the connection; `false`
    /// when the client's queue is full or closed (the caller tries again
    /// later).
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "cannot queue a replay request; it is asked again later");
                false
            }
        }
    }
}

/// The broker connection.
pub struct Ingest {
    plan: MqttPlan,
    client: AsyncClient,
    eventloop: EventLoop,
    epoch: Arc<Mutex<u64>>,
}

/// The broker as people write it (never with credentials).
fn broker_name(plan: &MqttPlan) -> String {
    format!("mqtt://{}:{}", plan.host, plan.port)
}

impl Ingest {
    pub fn new(plan: &MqttPlan) -> (Self, Acker) {
        let mut o = MqttOptions::new(plan.client_id.clone(), plan.host.clone(), plan.port);
        o.set_keep_alive(plan.keep_alive)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(plan.session_expiry_s))
            .set_receive_maximum(Some(plan.receive_maximum))
            .set_manual_acks(true)
            // Twice the payload limit: a payload up to that size still
            // arrives and is rejected by name (counted, logged, acknowledged);
            // the broker discards larger ones for this client (MQTT 5).
            .set_max_packet_size(Some(
                u32::try_from(plan.max_payload_bytes.saturating_mul(2) + (64 << 10))
                    .unwrap_or(u32::MAX),
            ));
        if let Some((u, p)) = &plan.login {
            o.set_credentials(u.clone(), p.clone());
        }
        // Room for an acknowledgement of every message in flight, and more.
        let (client, eventloop) = AsyncClient::new(o, usize::from(plan.receive_maximum) * 2 + 64);
        let epoch = Arc::new(Mutex::new(0));
        let acker = Acker {
            client: client.clone(),
            epoch: epoch.clone(),
        };
        (
            Self {
                plan: plan.clone(),
                client,
                eventloop,
                epoch,
            },
            acker,
        )
    }

    /// Receives until `stop` resolves, handing each message to the writer
    /// through `tx` (bounded: when the writer falls behind, this waits and
    /// the broker holds the rest). Reconnects forever with backoff.
    pub async fn run(&mut self, tx: &Sender<Incoming<AckToken>>, stop: impl Future<Output = ()>) {
        let broker = broker_name(&self.plan);
        let mut backoff = Duration::from_millis(200);
        let mut connected = false;
        tokio::pin!(stop);
        loop {
            let ev = tokio::select! {
                () = &mut stop => return,
                ev = self.eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connected = true;
                    backoff = Duration::from_millis(200);
                    info!(broker = %broker, session_present = ack.session_present, filter = %self.plan.filter,
                        "connected to the broker");
                    if let Err(e) = self
                        .client
                        .try_subscribe(self.plan.filter.clone(), QoS::AtLeastOnce)
                    {
                        warn!(error = %e, "cannot queue the subscription");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    if s.return_codes
                        .iter()
                        .any(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        warn!(broker = %broker, filter = %self.plan.filter, codes = ?s.return_codes,
                            "the broker refused the subscription (does it support MQTT 5 shared subscriptions?)");
                    } else {
                        info!(filter = %self.plan.filter, "subscribed");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let epoch = *self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
                    let msg = Incoming {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        received: SystemTime::now(),
                        token: AckToken {
                            epoch,
                            pkid: p.pkid,
                            qos: p.qos,
                        },
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    {
                        // No acknowledgement of the lost connection may reach
                        // the next one: switch epochs and drop those queued.
                        let mut epoch = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
                        *epoch += 1;
                        self.eventloop.clean();
                    }
                    if connected {
                        warn!(broker = %broker, error = %e, "lost the broker; reconnecting");
                    } else {
                        warn!(broker = %broker, error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "cannot reach the broker");
                    }
                    connected = false;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Keeps the connection served (acknowledgements go out) until `done`
    /// resolves, then disconnects cleanly.
    pub async fn drain(mut self, done: impl Future<Output = ()>) {
        tokio::pin!(done);
        loop {
            tokio::select! {
                () = &mut done => break,
                ev = self.eventloop.poll() => {
                    if ev.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(ev) = self.eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}
