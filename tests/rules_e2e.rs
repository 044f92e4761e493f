//! Scene rules end to end: the bundled vtest clip (PETS09 footage, people
//! walking left-right along the paved path) through the real binary to a
//! real mosquitto, with a line across the walkway and a zone on it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

fn pipeline(port: u16, clip: &str, extra_rules: &str, camera_rules: &str) -> String {
    format!(
        r#"{head}
[rules]
counts_interval_s = 1.0
{extra_rules}

[[cameras]]
id = "vtest"
url = "{clip}"
detect_fps = 5
realtime = false

# A vertical line across the paved path at x = 0.7 (A at the bottom, B at
# the top): people coming from the right cross it walking west.
[[cameras.lines]]
name = "walkway"
a = [0.7, 0.95]
b = [0.7, 0.3]
forward = "east"
backward = "west"
classes = ["person"]

[[cameras.zones]]
name = "plaza"
polygon = [[0.15, 0.25], [0.85, 0.25], [0.85, 0.98], [0.15, 0.98]]
classes = ["person"]
{camera_rules}
"#,
        head = PipelineToml::new(port)
            .node("rules-box", "test-district")
            .build(),
    )
}

/// Runs the node on the clip to the end; returns every message received.
fn run(extra_rules: &str, camera_rules: &str) -> (Vec<Msg>, String) {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture("vtest_10s_h264.mp4");
    let p = write(
        dir.path(),
        "p.toml",
        &pipeline(
            broker.port,
            &clip.display().to_string(),
            extra_rules,
            camera_rules,
        ),
    );
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let status = node
        .wait(Duration::from_secs(180))
        .expect("edge-node run ends by itself on a file");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{logtext}");
    let msgs = sub.wait_for("node stopped", Duration::from_secs(10), |m| {
        m.iter().any(|x| {
            x.topic == "t/test-district/rules-box/status" && x.json()["state"] == "stopped"
        })
    });
    (msgs, logtext)
}

fn total(c: &serde_json::Value) -> u64 {
    c["total"].as_u64().unwrap()
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario: a single node run whose phases are asserted in order"
)]
fn counts_and_alerts_on_the_real_clip() {
    // A 2 s loitering limit and a crowd of 2 held 1 s, so the 10 s clip
    // raises both kinds of alert. stationary_s = 3: one person in the clip
    // stands still for over 5 s.
    let (msgs, log) = run(
        "cooldown_s = 0.0\nstationary_s = 3.0",
        "loiter_s = 2.0\ncrowd_min = 2\ncrowd_for_s = 1.0\ncrowd_clear_s = 1.0",
    );
    // Every message (events, counts, alerts, statuses) validates against its
    // schema; events against edge-event/7.
    schemas().validate_all(&msgs);

    let counts: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.topic == "t/test-district/rules-box/vtest/counts")
        .map(|m| m.json())
        .collect();
    // 10 s of media time at 1 s intervals (+ the final partial one).
    assert!(
        counts.len() >= 8,
        "counts arrive every interval: got {}\n{log}",
        counts.len()
    );
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(c["schema"], "edge-counts/1");
        assert_eq!(c["seq"].as_u64(), Some(i as u64 + 1), "in order, no gaps");
        assert!(c["interval_start"].as_str() < c["interval_end"].as_str());
        if i > 0 {
            assert_eq!(
                c["interval_start"],
                counts[i - 1]["interval_end"],
                "intervals tile time"
            );
        }
    }
    // Cumulative counters never decrease, and each total is the sum of the deltas.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut sum: BTreeMap<String, u64> = BTreeMap::new();
    for c in &counts {
        let mut seen = Vec::new();
        for (line, l) in c["lines"].as_object().unwrap() {
            for (class, dirs) in l["counts"].as_object().unwrap() {
                for (dir, ctr) in dirs.as_object().unwrap() {
                    seen.push((format!("line/{line}/{class}/{dir}"), ctr.clone()));
                }
            }
        }
        for (zone, z) in c["zones"].as_object().unwrap() {
            for (class, ctr) in z["entered"].as_object().unwrap() {
                seen.push((format!("zone/{zone}/{class}"), ctr.clone()));
            }
        }
        for key in last.keys() {
            assert!(
                seen.iter().any(|(k, _)| k == key),
                "counter {key} disappeared"
            );
        }
        for (key, ctr) in seen {
            let prev = last.get(&key).copied().unwrap_or(0);
            assert!(total(&ctr) >= prev, "{key} decreased: {prev} -> {ctr}");
            let s = sum.entry(key.clone()).or_insert(0);
            *s += ctr["delta"].as_u64().unwrap();
            assert_eq!(*s, total(&ctr), "{key}: total = sum of deltas");
            last.insert(key, total(&ctr));
        }
    }
    let crossings: u64 = last
        .iter()
        .filter(|(k, _)| k.starts_with("line/walkway/person/"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        crossings >= 2,
        "people really cross the walkway line: {last:?}\n{log}"
    );
    assert!(
        last.get("zone/plaza/person").copied().unwrap_or(0) >= 3,
        "people enter the plaza zone: {last:?}"
    );

    // Events carry their zones.
    let evs = events(&msgs);
    assert!(evs.iter().all(|e| e["schema"] == "edge-event/7"));
    assert!(
        evs.iter().any(|e| e["current_zones"]
            .as_array()
            .unwrap()
            .contains(&"plaza".into())),
        "some event is in the plaza"
    );

    // Stationary: announced on the wire by one update with
    // "stationary": true (no alert); the same event can only announce it
    // again after moving and then staying put for stationary_s (3 s) again.
    let secs = |e: &serde_json::Value| -> f64 {
        // "YYYY-MM-DDTHH:MM:SS.mmmZ": seconds of the day (runs are short).
        let t = e["frame_time"].as_str().unwrap();
        let hms: Vec<f64> = t[11..t.len() - 1]
            .split(':')
            .map(|v| v.parse().unwrap())
            .collect();
        hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
    };
    let mut announced: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in &evs {
        if e["type"] == "update" && e["alerts"] == serde_json::json!([]) && e["stationary"] == true
        {
            announced
                .entry(e["id"].as_str().unwrap().to_string())
                .or_default()
                .push(secs(e));
        }
    }
    assert!(
        !announced.is_empty(),
        "the person standing still is announced as stationary\n{log}"
    );
    for (id, times) in &announced {
        assert!(
            times.windows(2).all(|w| w[1] - w[0] >= 3.0 - 1e-3),
            "{id}: stationary announced again without a new stationary spell: {times:?}"
        );
    }

    // Alerts: per object (loitering) on /events and /alerts, crowding on /alerts.
    let alerts: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.topic == "t/test-district/rules-box/vtest/alerts")
        .map(|m| m.json())
        .collect();
    let loiter: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["schema"] == "edge-event/7")
        .collect();
    assert!(!loiter.is_empty(), "someone stays 2 s in the plaza\n{log}");
    let mut per_object = BTreeMap::new();
    for a in &loiter {
        assert_eq!(a["alerts"], serde_json::json!(["loitering"]));
        assert!(a["alert"]["dwell_s"].as_f64().unwrap() >= 2.0);
        assert!(
            !a["snapshot"].is_null(),
            "loitering alert carries a snapshot"
        );
        assert!(
            evs.iter()
                .any(|e| e["id"] == a["id"] && e["seq"] == a["seq"]),
            "the alert is also on /events"
        );
        *per_object
            .entry(a["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(
        per_object.values().all(|&n| n == 1),
        "default: at most one alert per object per rule: {per_object:?}"
    );
    let crowd: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["schema"] == "edge-zone-alert/3")
        .collect();
    assert!(
        crowd
            .iter()
            .any(|a| a["alerts"] == serde_json::json!(["crowding"])
                && !a["snapshot"].is_null()
                && a["occupancy"].as_u64().unwrap() >= 2),
        "a crowd of 2 forms in the plaza: {crowd:?}"
    );
}
