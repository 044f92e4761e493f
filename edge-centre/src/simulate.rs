//! `edge-centre simulate`: a load generator that plays many boxes' traffic
//! into a real broker, for sizing the centre. Every message is
//! contract-valid (built from the `edge-wire` types): events with their
//! snapshots (a real 25.6 KB node snapshot), object alerts with their copy
//! on `/alerts`, counts with cumulative totals, and camera status.
//!
//! Each simulated camera sends bursts of 20 messages in a fixed mix: 5
//! snapshots (each just before the event that refers to it), 10 more
//! lifecycle messages, one alert (on `/events` and its copy on `/alerts`),
//! one counts message and two status messages. At the city's design load
//! (3,400 messages/s) that is ≈22 MB/s of snapshots and ≈2 MB/s of JSON.
//! Events carry `frame_time` = the moment they are published, so the
//! centre's publish-to-commit latency is its commit time minus `frame_time`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use edge_wire::{
    CAMERA_STATUS_SCHEMA, COUNTS_SCHEMA, CameraLive, CameraState, CameraStatusMessage,
    CountsMessage, DropCounts, EVENT_SCHEMA, EventMessage, EventType, FrameSize, LineCountsWire,
    SnapshotRef, Topics, WireBox, WireCounter, rfc3339,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// The real snapshot every simulated event carries (see `assets/README.md`).
const SNAPSHOT: &[u8] = include_bytes!("../assets/sim-snapshot.jpg");

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimPlan {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    pub boxes: usize,
    pub cameras: usize,
    /// Messages per second, all boxes together.
    pub rate: f64,
    pub duration: Duration,
    /// MQTT connections the boxes are spread over.
    pub connections: usize,
}

/// What was sent.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub messages: u64,
    pub bytes: u64,
    pub snapshot_bytes: u64,
    /// Distinct lifecycle messages (node, camera, seq): what the centre
    /// must store in `events`.
    pub events: u64,
    pub acknowledged: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("broker mqtt://{host}:{port}: {error}")]
    Broker {
        host: String,
        port: u16,
        error: String,
    },
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    events: AtomicU64,
    acked: AtomicU64,
}

/// One simulated camera's running state.
struct Cam {
    node: usize,
    camera: String,
    seq: u64,
    track: u64,
    counts_seq: u64,
    total: u64,
    since: String,
}

/// Plays the traffic; returns once `duration` has passed and every
/// message was acknowledged by the broker (or 30 s after that).
pub async fn simulate(plan: &SimPlan) -> Result<SimReport, SimError> {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    let conns = plan.connections.max(1);
    for k in 0..conns {
        let plan = plan.clone();
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            connection(&plan, k, conns, &counters).await
        }));
    }
    let mut first_error = None;
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let c = &counters;
    Ok(SimReport {
        messages: c.messages.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        snapshot_bytes: c.snapshot_bytes.load(Ordering::Relaxed),
        events: c.events.load(Ordering::Relaxed),
        acknowledged: c.acked.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    })
}

async fn connection(
    plan: &SimPlan,
    k: usize,
    conns: usize,
    counters: &Arc<Counters>,
) -> Result<(), SimError> {
    let mut o = MqttOptions::new(
        format!("edge-sim-{k}-{}", std::process::id()),
        plan.host.clone(),
        plan.port,
    );
    o.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(Some(16 << 20))
        .set_outgoing_inflight_upper_limit(1000);
    let (client, mut eventloop) = AsyncClient::new(o, 1000);
    let broker_err = |error: String| SimError::Broker {
        host: plan.host.clone(),
        port: plan.port,
        error,
    };
    // Connect first, so a wrong address is an error, not a silent retry.
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => return Err(broker_err(e.to_string())),
        }
    }
    let acked = counters.clone();
    let pump = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::Disconnect(_))) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let since = rfc3339(SystemTime::now());
    let mut cams: Vec<Cam> = (0..plan.boxes)
        .filter(|b| b % conns == k)
        .flat_map(|b| {
            let since = since.clone();
            (0..plan.cameras).map(move |c| Cam {
                node: b,
                camera: format!("cam-{c:02}"),
                seq: 0,
                track: 0,
                counts_seq: 0,
                total: 0,
                since: since.clone(),
            })
        })
        .collect();
    if cams.is_empty() {
        pump.abort();
        return Ok(());
    }
    let rate = plan.rate / conns as f64;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut budget = 0.0;
    let (mut cam_i, mut slot) = (0usize, 0usize);
    let mut jpeg_n = 0u64;
    while start.elapsed() < plan.duration {
        tick.tick().await;
        budget += rate * 0.01;
        while budget >= 1.0 {
            budget -= 1.0;
            let cam = &mut cams[cam_i];
            let (topic, payload, kind) = next_message(plan, cam, slot, &mut jpeg_n);
            let n = payload.len() as u64;
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| broker_err(e.to_string()))?;
            counters.messages.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(n, Ordering::Relaxed);
            match kind {
                Kind::Snapshot => {
                    counters.snapshot_bytes.fetch_add(n, Ordering::Relaxed);
                }
                Kind::Event => {
                    counters.events.fetch_add(1, Ordering::Relaxed);
                }
                Kind::Other => {}
            }
            slot += 1;
            if slot == PATTERN.len() {
                slot = 0;
                cam_i = (cam_i + 1) % cams.len();
            }
        }
    }
    let sent = counters.messages.load(Ordering::Relaxed);
    let end = Instant::now() + Duration::from_secs(30);
    while counters.acked.load(Ordering::Relaxed) < sent && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A snapshot, then (next slot) the `new` that refers to it.
    Snapshot,
    New,
    Update,
    End,
    /// A loitering alert: on `/events`, then its copy on `/alerts`.
    Alert,
    AlertCopy,
    Counts,
    Status,
}

const PATTERN: [Slot; 20] = {
    use Slot::*;
    [
        Snapshot, New, Update, End, Snapshot, New, Update, End, Snapshot, New, Alert, AlertCopy,
        End, Snapshot, New, Counts, Status, Snapshot, New, Status,
    ]
};

enum Kind {
    Snapshot,
    Event,
    Other,
}

fn next_message(
    plan: &SimPlan,
    cam: &mut Cam,
    slot: usize,
    jpeg_n: &mut u64,
) -> (String, Vec<u8>, Kind) {
    let node = format!("box-{:03}", cam.node);
    let district = format!("d{:02}", cam.node % 30);
    let topics = Topics::new(&plan.prefix, &district, &node);
    let id = |track: u64| format!("{node}.{}.19a.{track}", cam.camera);
    match PATTERN[slot] {
        Slot::Snapshot => {
            cam.track += 1;
            *jpeg_n += 1;
            let topic = topics.snapshot(&cam.camera, &id(cam.track));
            (topic, unique_jpeg(*jpeg_n), Kind::Snapshot)
        }
        Slot::AlertCopy => {
            // The alert of the previous slot again, on /alerts (same seq).
            let msg = event(&topics, &node, &district, cam, EventType::Update, true);
            (topics.alerts(&cam.camera), msg, Kind::Other)
        }
        Slot::Counts => {
            cam.counts_seq += 1;
            cam.total += 3;
            (
                topics.counts(&cam.camera),
                counts(&node, &district, cam),
                Kind::Other,
            )
        }
        Slot::Status => (
            topics.camera_status(&cam.camera),
            status(&node, cam),
            Kind::Other,
        ),
        s => {
            cam.seq += 1;
            let kind = match s {
                Slot::New => EventType::New,
                Slot::End => EventType::End,
                _ => EventType::Update,
            };
            let msg = event(&topics, &node, &district, cam, kind, s == Slot::Alert);
            (topics.events(&cam.camera), msg, Kind::Event)
        }
    }
}

/// The snapshot with a JPEG comment segment (FF FE) after SOI holding `n`,
/// so every copy is a distinct picture (the centre stores by content).
fn unique_jpeg(n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(SNAPSHOT.len() + 12);
    v.extend_from_slice(&SNAPSHOT[..2]);
    v.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x0A]);
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&SNAPSHOT[2..]);
    v
}

fn event(
    topics: &Topics,
    node: &str,
    district: &str,
    cam: &Cam,
    kind: EventType,
    alert: bool,
) -> Vec<u8> {
    let now = rfc3339(SystemTime::now());
    let id = format!("{node}.{}.19a.{}", cam.camera, cam.track);
    let m = EventMessage {
        schema: EVENT_SCHEMA.into(),
        id: id.clone(),
        seq: cam.seq,
        kind,
        node: node.into(),
        district: district.into(),
        camera: cam.camera.clone(),
        label: "person".into(),
        class_id: 0,
        track_id: cam.track,
        score: 0.82,
        top_score: 0.9,
        start_time: now.clone(),
        end_time: (kind == EventType::End).then(|| now.clone()),
        frame_time: now,
        bbox: WireBox {
            x1: 0.31,
            y1: 0.22,
            x2: 0.38,
            y2: 0.61,
        },
        frame_size: FrameSize {
            width: 1920,
            height: 1080,
        },
        snapshot: (kind == EventType::New).then(|| SnapshotRef {
            topic: topics.snapshot(&cam.camera, &id),
            bytes: SNAPSHOT.len() + 12,
            width: 480,
            height: 360,
            degraded: None,
            source: None,
            match_error_ms: None,
        }),
        snapshot_omitted: None,
        current_zones: vec!["plaza".into()],
        entered_zones: vec!["plaza".into()],
        stationary: false,
        alerts: if alert {
            vec!["loitering".into()]
        } else {
            Vec::new()
        },
        alert: None,
        end_reason: None,
        replayed: false,
        riders: 0,
    };
    serde_json::to_vec(&m).unwrap_or_default()
}

fn counts(node: &str, district: &str, cam: &Cam) -> Vec<u8> {
    let now = SystemTime::now();
    let mut per_dir = std::collections::BTreeMap::new();
    per_dir.insert(
        "east".to_string(),
        WireCounter {
            total: cam.total,
            delta: 3,
        },
    );
    let mut per_class = std::collections::BTreeMap::new();
    per_class.insert("person".to_string(), per_dir);
    let mut lines = std::collections::BTreeMap::new();
    lines.insert(
        "walkway".to_string(),
        LineCountsWire {
            directions: ["east".into(), "west".into()],
            counts: per_class,
        },
    );
    let m = CountsMessage {
        schema: COUNTS_SCHEMA.into(),
        node: node.into(),
        district: district.into(),
        camera: cam.camera.clone(),
        seq: cam.counts_seq,
        interval_start: rfc3339(now - Duration::from_secs(60)),
        interval_end: rfc3339(now),
        lines,
        zones: std::collections::BTreeMap::new(),
    };
    serde_json::to_vec(&m).unwrap_or_default()
}

fn status(node: &str, cam: &Cam) -> Vec<u8> {
    let m = CameraStatusMessage {
        schema: CAMERA_STATUS_SCHEMA.into(),
        node: node.into(),
        camera: cam.camera.clone(),
        state: CameraState::Streaming,
        since: cam.since.clone(),
        time: rfc3339(SystemTime::now()),
        last_error: None,
        detail: None,
        live: CameraLive {
            frames: cam.seq * 50,
            frames_analysed: cam.seq * 10,
            frames_dropped: 0,
            drops: DropCounts::default(),
            fps_in: 25.0,
            fps_analysed: 5.0,
            last_frame_age_s: Some(0.04),
            reconnects: 0,
            retry_attempt: 0,
            outage_since: None,
            outage_s: None,
            stream: None,
            health: Vec::new(),
        },
    };
    serde_json::to_vec(&m).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Record, decode};

    /// Every message the generator sends decodes as the contract says.
    #[test]
    fn every_simulated_message_is_contract_valid() {
        let plan = SimPlan {
            host: String::new(),
            port: 0,
            prefix: "edge".into(),
            boxes: 1,
            cameras: 1,
            rate: 1.0,
            duration: Duration::ZERO,
            connections: 1,
        };
        let mut cam = Cam {
            node: 7,
            camera: "cam-00".into(),
            seq: 0,
            track: 0,
            counts_seq: 0,
            total: 0,
            since: rfc3339(SystemTime::now()),
        };
        let mut n = 0;
        let mut seqs = Vec::new();
        for slot in 0..PATTERN.len() * 2 {
            let (topic, payload, _) = next_message(&plan, &mut cam, slot % PATTERN.len(), &mut n);
            match decode("edge", &topic, &payload, 1 << 20) {
                Ok(Some(Record::Event(e))) => seqs.push(e.seq),
                Ok(Some(_)) => {}
                other => panic!("{topic}: {other:?}"),
            }
        }
        // Lifecycle seqs run 1.. with the alert's copy repeating its seq.
        let mut unique = seqs.clone();
        unique.dedup();
        assert_eq!(unique, (1..=unique.len() as u64).collect::<Vec<_>>());
        assert_eq!(seqs.len(), unique.len() + 2, "one alert copy per burst");
    }
}
