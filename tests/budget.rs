//! The snapshot byte budget (issue 5, test 6), with the real `edge-node`
//! binary, a real mosquitto and the bundled clip on two cameras: a tight
//! budget degrades snapshots in steps (quality, height, crop, none), never
//! drops an event, stays within its token bucket, and the `edge-stats/3`
//! message accounts for every byte the subscriber received.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const BASE: &str = "t/test-district/test-box";
const RATE: f64 = 3000.0;
const BURST: f64 = 60000.0;

fn camera(id: &str) -> String {
    format!(
        "[[cameras]]\nid = \"{id}\"\nurl = \"{}\"\ndetect_fps = 5\nrealtime = false\n",
        fixture("vtest_10s_h264.mp4").display()
    )
}

/// Which class of traffic a topic is, as `edge-stats/3` names them.
fn class(topic: &str) -> &'static str {
    if topic.contains("/snapshot/") {
        "snapshots"
    } else if topic.ends_with("/events") {
        "events"
    } else if topic.ends_with("/alerts") {
        "alerts"
    } else if topic.ends_with("/counts") {
        "counts"
    } else if topic.ends_with("/stats") {
        "stats"
    } else {
        "status"
    }
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario: a single node run whose phases are asserted in order"
)]
fn a_tight_budget_degrades_snapshots_in_steps_and_stats_account_for_every_byte() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        "{head}\
         [outbox]\nstats_interval_s = 1\n\
         [budget]\nsnapshot_bytes_per_s = {RATE}\nburst_bytes = {BURST}\n\n{a}\n{b}",
        head = PipelineToml::new(broker.port).build(),
        a = camera("a"),
        b = camera("b"),
    );
    let p = write(d, "p.toml", &text);
    let log = d.join("node.log");
    let started = Instant::now();
    let mut node = run_node(&p, &log);
    let status = node
        .wait(Duration::from_secs(180))
        .expect("file cameras end by themselves");
    let wall = started.elapsed().as_secs_f64();
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "{status:?}\n{}",
        &logtext[logtext.len().saturating_sub(4000)..]
    );
    let msgs = sub.wait_for("the final stats", Duration::from_secs(10), |m| {
        let stopped = m
            .iter()
            .position(|x| x.topic == format!("{BASE}/status") && x.json()["state"] == "stopped");
        stopped.is_some_and(|i| m[i..].iter().any(|x| x.topic == format!("{BASE}/stats")))
    });
    schemas().validate_all(&msgs);

    // 1. Events are never dropped for budget: gap-free seq, every object ended.
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    let mut snapshot_bytes = 0usize;
    for cam in ["a", "b"] {
        let evs: Vec<serde_json::Value> = msgs
            .iter()
            .filter(|m| m.topic == format!("{BASE}/{cam}/events"))
            .map(|m| m.json())
            .collect();
        let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{cam}");
        let news = evs.iter().filter(|e| e["type"] == "new").count();
        let ends = evs.iter().filter(|e| e["type"] == "end").count();
        assert!(news >= 3, "camera {cam}: {news} objects");
        assert_eq!(news, ends, "camera {cam}: every object ends");
        // Every `new` was due a snapshot: it has one, or says why not.
        for e in evs.iter().filter(|e| e["type"] == "new") {
            assert!(
                !e["snapshot"].is_null() || e["snapshot_omitted"] == "budget",
                "{e}"
            );
        }
        for e in &evs {
            let s = &e["snapshot"];
            if s.is_null() {
                if !e["snapshot_omitted"].is_null() {
                    assert_eq!(e["snapshot_omitted"], "budget", "{e}");
                    *steps.entry("omitted".into()).or_default() += 1;
                }
            } else {
                assert!(e["snapshot_omitted"].is_null(), "{e}");
                let step = s["degraded"].as_str().unwrap_or("full");
                *steps.entry(step.into()).or_default() += 1;
                snapshot_bytes += s["bytes"].as_u64().unwrap() as usize;
            }
        }
    }
    eprintln!("snapshots by step: {steps:?}; {snapshot_bytes} B in {wall:.1} s");
    // 2. The budget degraded in steps and finally sent events without pictures.
    let degraded: Vec<&String> = steps
        .keys()
        .filter(|k| ["quality", "height", "crop"].contains(&k.as_str()))
        .collect();
    assert!(degraded.len() >= 2, "at least two steps used: {steps:?}");
    assert!(steps.contains_key("omitted"), "{steps:?}");
    // The bucket starts full: the first pictures go at full quality.
    assert!(steps.contains_key("full"), "{steps:?}");
    // 3. The bucket held: no more snapshot bytes than the burst plus the rate
    // over the node's whole life.
    let jpeg_bytes: usize = msgs
        .iter()
        .filter(|m| m.topic.contains("/snapshot/"))
        .map(|m| m.payload.len())
        .sum();
    assert!(
        jpeg_bytes as f64 <= BURST + RATE * wall,
        "{jpeg_bytes} B of snapshots > {BURST} + {RATE} x {wall:.1} s"
    );

    // 4. The last stats message accounts for every byte received before it.
    let last = msgs
        .iter()
        .rposition(|m| m.topic == format!("{BASE}/stats"))
        .unwrap();
    let stats = msgs[last].json();
    eprintln!("stats: {stats}");
    let before = &msgs[..last];
    let total: usize = before.iter().map(|m| m.payload.len()).sum();
    assert_eq!(stats["sent"]["bytes"].as_u64().unwrap() as usize, total);
    let mut by_class: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_camera: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for m in before {
        let c = class(&m.topic);
        *by_class.entry(c).or_default() += m.payload.len() as u64;
        let rest = m.topic.strip_prefix(&format!("{BASE}/")).unwrap();
        if let Some((cam, _)) = rest.split_once('/') {
            *by_camera.entry((cam.to_string(), c)).or_default() += m.payload.len() as u64;
        }
    }
    let classes = ["events", "alerts", "snapshots", "counts", "status", "stats"];
    let mut sum = 0;
    for c in classes {
        let n = stats["bytes"][c].as_u64().unwrap();
        assert_eq!(n, by_class.get(c).copied().unwrap_or(0), "class {c}");
        sum += n;
    }
    assert_eq!(sum as usize, total, "the classes add up to sent.bytes");
    assert_eq!(by_class["snapshots"] as usize, jpeg_bytes);
    for cam in ["a", "b"] {
        let cs = &stats["cameras"][cam];
        for c in classes {
            assert_eq!(
                cs["bytes"][c].as_u64().unwrap(),
                by_camera.get(&(cam.to_string(), c)).copied().unwrap_or(0),
                "camera {cam}, class {c}"
            );
        }
    }
    // Snapshot outcomes, summed over the cameras, match what the events say.
    let outcome = |k: &str| -> u64 {
        ["a", "b"]
            .iter()
            .map(|c| stats["cameras"][c]["snapshots"][k].as_u64().unwrap())
            .sum()
    };
    for (k, wire) in [
        ("full", "full"),
        ("quality", "quality"),
        ("height", "height"),
        ("crop", "crop"),
        ("omitted_budget", "omitted"),
    ] {
        assert_eq!(
            outcome(k),
            steps.get(wire).copied().unwrap_or(0) as u64,
            "{k}: {stats}"
        );
    }
    let b = &stats["budget"];
    assert_eq!(b["snapshot_bytes_per_s"].as_f64().unwrap(), RATE);
    assert_eq!(b["burst_bytes"].as_f64().unwrap(), BURST);
}
