//! More cameras than the box can carry (issue 17, part 4): the node says it
//! is overloaded, with its shortfall, in its retained status and its log,
//! and no camera starves. Twelve cameras of the bundled 10 fps clip, paced
//! like cameras, each asking for all 10 fps: 120 frames/s for a detector
//! that analyses a few dozen on this kind of machine.
//!
//! The even sharing itself (each camera within ±15 % of its fair share) is
//! asserted exactly on the frame pool (`node::slots` unit tests) and
//! measured with `bench pipeline` at twice the capacity; here, on a shared
//! machine, only starvation is checked (every camera gets at least half the
//! mean), which no scheduling noise explains.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const CAMERAS: usize = 12;

fn node_load(msgs: &[Msg]) -> Option<Value> {
    msgs.iter()
        .rev()
        .filter(|m| m.topic == "t/test-district/test-box/status" && !m.payload.is_empty())
        .filter_map(|m| {
            let v = m.json();
            let load = v.get("load")?.clone();
            load.get("overloaded")?.as_bool()?.then_some(load)
        })
        .next()
}

#[test]
fn more_cameras_than_the_box_carries_is_reported_and_none_starves() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture("vtest_10s_h264.mp4");
    let mut text = PipelineToml::new(broker.port).build().replacen(
        "[node]\n",
        "[node]\nstatus_interval_s = 2\n",
        1,
    );
    for k in 0..CAMERAS {
        text.push_str(&format!(
            "[[cameras]]\nid = \"cam-{k}\"\nurl = \"{}\"\ndetect_fps = 10\nrealtime = true\nloop = true\n",
            clip.display()
        ));
    }
    let p = write(dir.path(), "p.toml", &text);
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);

    let msgs = sub.wait_for(
        "a node status saying overloaded",
        Duration::from_secs(90),
        |m| node_load(m).is_some(),
    );
    let load = node_load(&msgs).unwrap();
    let f = |k: &str| load[k].as_f64().unwrap();
    assert!(f("shortfall_fps") > 0.0, "{load}");
    assert!(f("shed_pct") > 5.0, "{load}");
    // Delivered = analysed + shed, give or take the frames queued in the
    // slots at either end of the window.
    assert!(
        (f("delivered_fps") - f("analysed_fps") - f("shortfall_fps")).abs()
            < 0.05 * f("delivered_fps") + 1.0,
        "delivered = analysed + shed: {load}"
    );
    assert!(
        load["slowest_camera"]
            .as_str()
            .is_some_and(|c| c.starts_with("cam-")),
        "{load}"
    );
    schemas().validate_schemas(&msgs);

    // Let every camera run a while past the first window, then compare
    // what each had analysed in its latest status.
    std::thread::sleep(Duration::from_secs(12));
    let msgs = sub.snapshot();
    let analysed: Vec<f64> = (0..CAMERAS)
        .map(|k| {
            last_status(&msgs, &format!("cam-{k}"))
                .and_then(|s| s["frames_analysed"].as_f64())
                .unwrap_or(0.0)
        })
        .collect();
    let mean = analysed.iter().sum::<f64>() / CAMERAS as f64;
    assert!(mean > 0.0, "{analysed:?}");
    for (k, a) in analysed.iter().enumerate() {
        assert!(
            *a >= 0.5 * mean,
            "cam-{k} starves: {a} frames analysed, mean {mean:.1} ({analysed:?})"
        );
    }

    node.terminate(Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("node overloaded"))
        .unwrap_or_else(|| panic!("no overload line in the log:\n{text}"));
    assert!(line.contains("shortfall_fps="), "{line}");
    assert!(line.contains("frames/s") && line.contains("shed"), "{line}");
}
