//! Input geometry, tiling and the traffic stage end to end: the bundled
//! street clip (Market Street, 1906: cars, carriages, streetcars, people)
//! through the real binary and the bundled model (dynamic input) to a real
//! mosquitto.
//!
//! - With the default `input_pixels` the node logs the camera's budget and
//!   runs the clip at its own aspect ratio; with `tiles = true` it adds
//!   overlapping native-resolution tiles, and every event is still a whole
//!   story (new … end) in the wire schema.
//! - An ignore zone over the left half of the picture: no event's foot
//!   point lies in it.
//! - `input_pixels = "model"` (the squashed 416×416 of before) still runs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// Runs the node on the street clip to its end with `detector` lines in
/// `[detector]` and `camera` lines in the camera's table; returns the
/// events and the log.
fn run_street(detector: &str, camera: &str) -> (Vec<serde_json::Value>, String) {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{head}{detector}\n\n[[cameras]]\nid = \"street\"\nurl = \"{clip}\"\ndetect_fps = 5\nrealtime = false\n{camera}\n",
        head = PipelineToml::new(broker.port).build(),
        clip = fixture("market_street_10s_h264.mp4").display(),
    );
    let p = write(dir.path(), "p.toml", &text);
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let status = node
        .wait(Duration::from_secs(300))
        .expect("edge-node run ends by itself on a file");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{logtext}");
    let msgs = sub.wait_for("node stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == "t/test-district/test-box/status" && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);
    (events(&msgs), logtext)
}

/// Event ids with their messages, in arrival order.
fn stories(evs: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for e in evs {
        m.entry(e["id"].as_str().unwrap().to_string())
            .or_default()
            .push(e.clone());
    }
    m
}

fn labels(evs: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in stories(evs).values() {
        *m.entry(g[0]["label"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

fn check_whole_stories(evs: &[serde_json::Value], logtext: &str) {
    assert!(!evs.is_empty(), "no events on the street clip\n{logtext}");
    for (id, g) in stories(evs) {
        assert_eq!(g[0]["type"], "new", "{id} starts with new");
        assert_eq!(g.last().unwrap()["type"], "end", "{id} ends with end");
    }
}

#[test]
fn tiles_and_ignore_zones_on_the_street_clip() {
    // Foot points left of x = 0.5 are ignored.
    let (evs, logtext) = run_street(
        "tiles = true",
        "ignore_zones = [[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]",
    );
    assert!(
        logtext.contains("camera analysis") && logtext.contains("tiles=true"),
        "the camera logs its analysis settings\n{logtext}"
    );
    assert!(
        logtext.contains("input_pixels=standard"),
        "default budget\n{logtext}"
    );
    check_whole_stories(&evs, &logtext);
    for e in &evs {
        let b = &e["box"];
        let foot_x = (b["x1"].as_f64().unwrap() + b["x2"].as_f64().unwrap()) / 2.0;
        // Boxes move after the first sighting; the first sighting of every
        // object (its `new`) was outside the zone by construction.
        if e["type"] == "new" {
            assert!(
                foot_x >= 0.5 - 1e-6,
                "an object first seen in the ignore zone became an event: {e}"
            );
        }
    }
    let by_label = labels(&evs);
    assert!(
        by_label.keys().any(|l| l != "person"),
        "the street clip has vehicles; got {by_label:?}\n{logtext}"
    );
}

#[test]
fn squashed_and_aspect_kept_inputs_both_run() {
    let (squashed, log_a) = run_street("input_pixels = \"model\"", "");
    assert!(log_a.contains("input_pixels=model"), "{log_a}");
    check_whole_stories(&squashed, &log_a);
    let (kept, log_b) = run_street("", "input_pixels = \"detailed\"");
    assert!(log_b.contains("input_pixels=detailed"), "{log_b}");
    check_whole_stories(&kept, &log_b);
    eprintln!(
        "objects per class: squashed {:?}, detailed {:?}",
        labels(&squashed),
        labels(&kept)
    );
}
