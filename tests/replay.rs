//! The gap replay protocol, node side: a real `edge-node` on the bundled
//! clip (looped, real time) publishes to a real mosquitto; the test plays
//! the centre, an MQTT client that sends `edge-replay-request/1` on
//! `{base}/replay` and reads the messages sent again and the
//! `edge-replay-answer/1` on `{base}/{camera}/replayed`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use edge_wire::{MissingReason, REPLAY_REQUEST_SCHEMA, ReplayAnswer, ReplayRequest, rfc3339};
use rumqttc::{Client, MqttOptions, QoS};

const BASE: &str = "t/test-district/test-box";
const EVENTS: &str = "t/test-district/test-box/vtest/events";
const ANSWERS: &str = "t/test-district/test-box/vtest/replayed";

fn pipeline(dir: &Path, port: u16, keep_delivered_s: f64, metrics: u16) -> PathBuf {
    pipeline_with(
        dir,
        port,
        &format!("keep_delivered_s = {keep_delivered_s}"),
        metrics,
    )
}

/// `outbox`: the lines of `[outbox]`.
fn pipeline_with(dir: &Path, port: u16, outbox: &str, metrics: u16) -> PathBuf {
    let text = format!(
        r#"{head}
[outbox]
{outbox}
[metrics]
listen = "127.0.0.1:{metrics}"

[[cameras]]
id = "vtest"
url = "{clip}"
detect_fps = 5
realtime = true
loop = true
"#,
        head = PipelineToml::new(port).mqtt("keep_alive_s = 5").build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    );
    write(dir, "p.toml", &text)
}

/// The centre's side: an MQTT client that publishes replay requests.
struct Centre {
    client: Client,
}

impl Centre {
    fn start(port: u16) -> Centre {
        let o = MqttOptions::new(format!("test-centre-{}", free_port()), "127.0.0.1", port);
        let (client, mut conn) = Client::new(o, 16);
        std::thread::spawn(move || {
            for ev in conn.iter() {
                if ev.is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Centre { client }
    }

    fn send(&self, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(
                format!("{BASE}/replay"),
                QoS::AtLeastOnce,
                false,
                payload.into(),
            )
            .unwrap();
    }

    fn ask(&self, id: &str, camera: &str, first: u64, last: u64) {
        let req = ReplayRequest {
            schema: REPLAY_REQUEST_SCHEMA.into(),
            request_id: id.into(),
            camera: camera.into(),
            first,
            last,
            time: rfc3339(SystemTime::now()),
        };
        self.send(serde_json::to_vec(&req).unwrap());
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// The answer to request `id`, with when it arrived.
fn answer(msgs: &[Msg], id: &str) -> Option<(ReplayAnswer, Instant)> {
    msgs.iter()
        .filter(|m| m.topic == ANSWERS)
        .map(|m| {
            (
                serde_json::from_slice::<ReplayAnswer>(&m.payload).unwrap(),
                m.at,
            )
        })
        .find(|(a, _)| a.request_id == id)
}

fn wait_answer(sub: &Subscriber, id: &str) -> (ReplayAnswer, Instant, Vec<Msg>) {
    let msgs = sub.wait_for(
        &format!("the answer to {id}"),
        Duration::from_secs(30),
        |m| answer(m, id).is_some(),
    );
    let (a, at) = answer(&msgs, id).unwrap();
    (a, at, msgs)
}

/// Events of the camera on its events topic: (payload as JSON, arrival).
fn camera_events(msgs: &[Msg]) -> Vec<(serde_json::Value, Instant)> {
    msgs.iter()
        .filter(|m| m.topic == EVENTS)
        .map(|m| (m.json(), m.at))
        .collect()
}

fn max_seq(msgs: &[Msg]) -> u64 {
    camera_events(msgs)
        .iter()
        .filter_map(|(e, _)| e["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// The node's `/metrics` page.
fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Seq 1..=3 came once more each, marked `replayed`, before the answer
/// (`answered_at`), the same messages otherwise, with their snapshots.
fn check_copies(msgs: &[Msg], answered_at: Instant) {
    let evs = camera_events(msgs);
    let mut pictures_resent = 0;
    for seq in 1..=3u64 {
        let original = evs
            .iter()
            .find(|(e, _)| e["seq"] == seq && e["replayed"] == false)
            .unwrap_or_else(|| panic!("seq {seq} was published"));
        let copies: Vec<&(serde_json::Value, Instant)> = evs
            .iter()
            .filter(|(e, _)| e["seq"] == seq && e["replayed"] == true)
            .collect();
        assert_eq!(copies.len(), 1, "seq {seq} is sent again once");
        let (copy, at) = copies[0];
        assert!(*at <= answered_at, "seq {seq}: the answer comes after it");
        let mut same = copy.clone();
        same["replayed"] = serde_json::Value::Bool(false);
        assert_eq!(&same, &original.0, "seq {seq}: the same message again");
        // Its snapshot, when it had one, is sent again too (before it).
        if let Some(topic) = copy["snapshot"]["topic"].as_str() {
            let pictures: Vec<&Msg> = msgs.iter().filter(|m| m.topic == topic).collect();
            assert!(pictures.len() >= 2, "seq {seq}: its snapshot is sent again");
            let resent = pictures.iter().rfind(|m| m.at <= *at).unwrap();
            assert_eq!(resent.payload, pictures[0].payload);
            pictures_resent += 1;
        }
    }
    assert!(pictures_resent > 0, "a new event carries a snapshot");
}

/// The five bad requests were refused, each in a log line with the topic and why.
fn check_refusals(text: &str) {
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("replay request refused"))
        .collect();
    assert_eq!(refused.len(), 5, "{text}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains(&format!("topic={BASE}/replay"))),
        "{refused:?}"
    );
    for what in [
        "not an edge-replay-request/1",
        "edge-replay-request/9",
        "\"nope\"",
        "after last",
        "at most 10000",
    ] {
        assert!(
            refused.iter().any(|l| l.contains(what)),
            "no refusal says {what:?}: {refused:?}"
        );
    }
}

#[test]
fn delivered_events_come_again_on_request_and_bad_requests_are_ignored() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let centre = Centre::start(broker.port);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let mport = free_port();
    let mut node = run_node(&pipeline(dir.path(), broker.port, 3600.0, mport), &log);
    // Seq 1..=3 are long acknowledged once seq 6 has arrived.
    sub.wait_for("six events", Duration::from_secs(90), |m| max_seq(m) >= 6);
    std::thread::sleep(Duration::from_millis(500));

    centre.ask("r1", "vtest", 1, 3);
    let (a, answered_at, msgs) = wait_answer(&sub, "r1");
    assert_eq!(
        (a.camera.as_str(), a.node.as_str(), a.district.as_str()),
        ("vtest", "test-box", "test-district")
    );
    assert_eq!((a.first, a.last, a.replayed), (1, 3, 3), "{a:?}");
    assert!(a.pending.is_empty() && a.missing.is_empty(), "{a:?}");

    check_copies(&msgs, answered_at);

    // Bad requests: each logged (with the topic) and counted; no answer.
    let before = max_seq(&msgs);
    centre.send("not json");
    centre.send(
        r#"{"schema":"edge-replay-request/9","request_id":"bad","camera":"vtest","first":1,"last":2,"time":"2026-12-07T00:00:00Z"}"#,
    );
    centre.ask("bad-camera", "nope", 1, 2);
    centre.ask("bad-order", "vtest", 5, 1);
    centre.ask("bad-size", "vtest", 1, 20_000);
    // Served in order: the answer to r2 comes after all of them were handled.
    let far = before + 1_000_000;
    centre.ask("r2", "vtest", far, far + 4);
    let (a, _, _) = wait_answer(&sub, "r2");
    assert_eq!(a.replayed, 0);
    assert_eq!(a.missing.len(), 1, "{a:?}");
    let m = &a.missing[0];
    assert_eq!(
        (m.first, m.last, m.reason),
        (far, far + 4, MissingReason::Unknown)
    );
    // The node goes on publishing.
    let msgs = sub.wait_for("new events", Duration::from_secs(60), |m| {
        max_seq(m) > before + 2
    });
    let answered: Vec<String> = msgs
        .iter()
        .filter(|m| m.topic == ANSWERS)
        .map(|m| {
            serde_json::from_slice::<ReplayAnswer>(&m.payload)
                .unwrap()
                .request_id
        })
        .collect();
    assert_eq!(answered, ["r1", "r2"], "no answer to a bad request");
    // Counted.
    let page = metrics(mport);
    for line in [
        "edge_node_replay_requests_total{result=\"served\"} 2",
        "edge_node_replay_requests_total{result=\"refused\"} 5",
        "edge_node_replay_requests_total{result=\"failed\"} 0",
        "edge_node_replay_resent_messages_total 3",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} missing in\n{page}");
    }
    assert!(
        page.lines()
            .any(|l| l.starts_with("edge_node_outbox_delivered_messages ") && !l.ends_with(" 0")),
        "delivered messages are kept\n{page}"
    );
    let status = node
        .terminate(Duration::from_secs(40))
        .expect("the node exits");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    check_refusals(&text);
    assert!(!text.contains("panicked"), "{text}");
    schemas().validate_all(
        &sub.snapshot()
            .into_iter()
            // The requests are the centre's own (bad ones among them).
            .filter(|m| !m.topic.ends_with("/stats") && m.topic != format!("{BASE}/replay"))
            .collect::<Vec<_>>(),
    );
}

#[test]
fn expired_range_is_answered_missing_after_a_reconnect() {
    let mut broker = PersistentBroker::start();
    let sub = Subscriber::start_persistent(broker.port, "t/#", "replay-test-sub-2");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let mport = free_port();
    let mut node = run_node(&pipeline(dir.path(), broker.port, 1.0, mport), &log);
    let msgs = sub.wait_for("three events", Duration::from_secs(90), |m| max_seq(m) >= 3);
    // The node reconnects: its subscription to requests must come back.
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    let seen = max_seq(&msgs);
    let back = Instant::now();
    sub.wait_for("events after the reconnect", Duration::from_secs(60), |m| {
        camera_events(m)
            .iter()
            .any(|(e, at)| *at > back && e["seq"].as_u64().unwrap_or(0) > seen)
    });
    // keep_delivered_s = 1, swept every second: seq 1..=3 have expired.
    std::thread::sleep(Duration::from_secs(3));
    let centre = Centre::start(broker.port);
    centre.ask("r3", "vtest", 1, 3);
    let (a, _, _) = wait_answer(&sub, "r3");
    assert_eq!(a.replayed, 0, "{a:?}");
    assert!(a.pending.is_empty(), "{a:?}");
    assert_eq!(a.missing.len(), 1, "{a:?}");
    let m = &a.missing[0];
    assert_eq!((m.first, m.last, m.reason), (1, 3, MissingReason::Expired));
    let page = metrics(mport);
    assert!(
        page.lines().any(|l| {
            l.strip_prefix("edge_node_outbox_delivered_removed_total{reason=\"expired\"} ")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= 3)
        }),
        "expiries are counted\n{page}"
    );
    let status = node
        .terminate(Duration::from_secs(40))
        .expect("the node exits");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn evicted_range_is_answered_missing() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let mport = free_port();
    // 20 kB: the kept window holds a few small messages at most, and every
    // snapshot pushes out all that is kept.
    let p = pipeline_with(
        dir.path(),
        broker.port,
        "keep_delivered_s = 3600\nquota_mb = 0.02",
        mport,
    );
    let mut node = run_node(&p, &log);
    let msgs = sub.wait_for("a dozen events", Duration::from_secs(90), |m| {
        max_seq(m) >= 12
    });
    // Seq 1..=3 were delivered (nothing was evicted before delivery).
    let evs = camera_events(&msgs);
    for seq in 1..=3u64 {
        assert!(
            evs.iter().any(|(e, _)| e["seq"] == seq),
            "seq {seq} arrived"
        );
    }
    let centre = Centre::start(broker.port);
    centre.ask("r4", "vtest", 1, 3);
    let (a, _, _) = wait_answer(&sub, "r4");
    assert_eq!(a.replayed, 0, "{a:?}");
    assert!(a.pending.is_empty(), "{a:?}");
    assert_eq!(a.missing.len(), 1, "{a:?}");
    let m = &a.missing[0];
    assert_eq!((m.first, m.last, m.reason), (1, 3, MissingReason::Evicted));
    let page = metrics(mport);
    assert!(
        page.lines().any(|l| {
            l.strip_prefix("edge_node_outbox_delivered_removed_total{reason=\"evicted\"} ")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= 3)
        }),
        "evictions are counted\n{page}"
    );
    let status = node
        .terminate(Duration::from_secs(40))
        .expect("the node exits");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
