//! A subscriber for people, not machines: prints each alert as one readable
//! line and writes snapshots to a folder. Used by `edge-node demo` and
//! `edge-node watch`. Speaks MQTT 5, like the node.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use super::{CameraStatusMessage, EventMessage, NodeState, NodeStatusMessage, PublishError};

#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub host: String,
    pub port: u16,
    /// Topic filter, e.g. `hanoi/#`.
    pub filter: String,
    /// Where snapshots are written (`<event id>-<seq>.jpg`); none: not written.
    pub snapshot_dir: Option<PathBuf>,
    /// Return once a node reports `stopped`.
    pub until_stopped: bool,
}

/// What was seen, for the demo's summary.
#[derive(Clone, Debug, Default)]
pub struct WatchSummary {
    pub events: u64,
    pub new: u64,
    pub updates: u64,
    pub ends: u64,
    pub snapshots: u64,
    /// Payload bytes of every message received.
    pub bytes: u64,
    pub snapshot_bytes: u64,
}

/// One line per alert, for a terminal.
pub fn format_event(e: &EventMessage) -> String {
    let snap = e
        .snapshot
        .as_ref()
        .map(|s| {
            format!(
                " snapshot {}x{} {:.1} KB",
                s.width,
                s.height,
                s.bytes as f64 / 1024.0
            )
        })
        .unwrap_or_default();
    let end = e
        .end_time
        .as_deref()
        .map(|t| format!(" ended {t}"))
        .unwrap_or_default();
    format!(
        "{} {:<6} {}/{} {} {:.2} (top {:.2}) box [{:.2} {:.2} {:.2} {:.2}] id {}{}{}",
        e.frame_time,
        format!("{:?}", e.kind).to_uppercase(),
        e.node,
        e.camera,
        e.label,
        e.score,
        e.top_score,
        e.bbox.x1,
        e.bbox.y1,
        e.bbox.x2,
        e.bbox.y2,
        e.id,
        snap,
        end
    )
}

/// Subscribe and print until `until_stopped` sees a stopped node (or forever).
///
/// `ready` is signalled once the subscription is acknowledged, so a caller can
/// start publishers without losing their first messages.
pub async fn watch(
    opts: WatchOptions,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<WatchSummary, PublishError> {
    let id = format!("edge-node-watch-{}", std::process::id());
    let mut mo = MqttOptions::new(id, opts.host.clone(), opts.port);
    mo.set_max_packet_size(Some(64 << 20));
    mo.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(mo, 64);
    client
        .subscribe(opts.filter.clone(), QoS::AtLeastOnce)
        .await
        .map_err(|e| PublishError::ClientGone(e.to_string()))?;
    if let Some(d) = &opts.snapshot_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| PublishError::ClientGone(format!("{}: {e}", d.display())))?;
    }
    let mut sum = WatchSummary::default();
    let mut snap_seq: HashMap<String, u32> = HashMap::new();
    let mut failures = 0;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                failures = 0;
                sum.bytes += p.payload.len() as u64;
                let topic = String::from_utf8_lossy(&p.topic);
                let topic = topic.as_ref();
                if topic.ends_with("/events") {
                    match serde_json::from_slice::<EventMessage>(&p.payload) {
                        Ok(e) => {
                            sum.events += 1;
                            match e.kind {
                                super::EventType::New => sum.new += 1,
                                super::EventType::Update => sum.updates += 1,
                                super::EventType::End => sum.ends += 1,
                            }
                            println!("{}", format_event(&e));
                        }
                        Err(err) => println!("unreadable event on {topic}: {err}"),
                    }
                } else if let Some((_, id)) = topic.split_once("/snapshot/") {
                    sum.snapshots += 1;
                    sum.snapshot_bytes += p.payload.len() as u64;
                    if let Some(d) = &opts.snapshot_dir {
                        let n = snap_seq.entry(id.to_string()).or_default();
                        *n += 1;
                        let path = d.join(format!("{id}-{n}.jpg"));
                        if let Err(err) = std::fs::write(&path, &p.payload) {
                            println!("cannot write {}: {err}", path.display());
                        }
                    }
                } else if topic.ends_with("/status") {
                    if let Ok(s) = serde_json::from_slice::<NodeStatusMessage>(&p.payload) {
                        println!("node {} is {:?}", s.node, s.state);
                        if opts.until_stopped && s.state == NodeState::Stopped {
                            let _ = client.disconnect().await;
                            return Ok(sum);
                        }
                    } else if let Ok(s) = serde_json::from_slice::<CameraStatusMessage>(&p.payload)
                    {
                        let err = s.last_error.map(|e| format!(": {e}")).unwrap_or_default();
                        println!("camera {} is {:?}{err}", s.camera, s.state);
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                if failures > 50 {
                    return Err(PublishError::Connect {
                        addr: format!("{}:{}", opts.host, opts.port),
                        reason: e.to_string(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
