//! SIGHUP reload and SIGTERM shutdown (issue 5, test 7), with the real
//! `edge-node` binary, a real mosquitto and the bundled clip looped in real time.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const NODE_STATUS: &str = "t/test-district/test-box/status";

fn camera(id: &str, fps: u32) -> String {
    format!(
        "[[cameras]]\nid = \"{id}\"\nurl = \"{}\"\ndetect_fps = {fps}\nrealtime = true\nloop = true\n",
        fixture("vtest_10s_h264.mp4").display()
    )
}

fn pipeline(port: u16, prefix: &str, cameras: &[String]) -> String {
    format!(
        "{head}\n{cams}",
        head = PipelineToml::new(port).prefix(prefix).build(),
        cams = cameras.join("\n"),
    )
}

fn hup(node: &Proc) {
    let st = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(node.0.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Wait until the log has `n` lines containing `needle`; return the log.
fn wait_log(log: &Path, needle: &str, n: usize) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= n {
            return text;
        }
        assert!(
            Instant::now() < end,
            "no {needle:?} (x{n}) in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Events of one camera, in arrival order.
fn camera_events(msgs: &[Msg], camera: &str) -> Vec<serde_json::Value> {
    msgs.iter()
        .filter(|m| m.topic == format!("t/test-district/test-box/{camera}/events"))
        .map(|m| m.json())
        .collect()
}

/// Status messages of one camera received after `since`.
fn statuses_after(msgs: &[Msg], camera: &str, since: Instant) -> Vec<String> {
    let after: Vec<Msg> = msgs.iter().filter(|m| m.at > since).cloned().collect();
    statuses(&after, camera)
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario: a single node run whose phases are asserted in order"
)]
fn sighup_reloads_changed_cameras_only_and_refuses_a_bad_config() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = write(
        d,
        "p.toml",
        &pipeline(broker.port, "t", &[camera("a", 5), camera("b", 5)]),
    );
    let log = d.join("node.log");
    let mut node = run_node(&p, &log);
    sub.wait_for("events from both cameras", Duration::from_secs(90), |m| {
        !camera_events(m, "a").is_empty() && !camera_events(m, "b").is_empty()
    });

    // 1. b changes, c is added, a is untouched.
    write(
        d,
        "p.toml",
        &pipeline(
            broker.port,
            "t",
            &[camera("a", 5), camera("b", 3), camera("c", 5)],
        ),
    );
    let t1 = Instant::now();
    hup(&node);
    let text = wait_log(&log, "config reloaded", 1);
    assert!(
        text.contains(r#"kept=["a"] restarted=["b"] started=["c"] stopped=[]"#),
        "{text}"
    );
    let msgs = sub.wait_for(
        "c streaming and events after the reload",
        Duration::from_secs(60),
        |m| {
            statuses_after(m, "c", t1).iter().any(|s| s == "streaming")
                && statuses_after(m, "b", t1).iter().any(|s| s == "streaming")
                && m.iter()
                    .any(|x| x.at > t1 && x.topic.ends_with("/a/events"))
                && m.iter()
                    .any(|x| x.at > t1 && x.topic.ends_with("/c/events"))
        },
    );
    // a kept running: no new status (a restart would publish `starting`).
    assert!(
        statuses_after(&msgs, "a", t1).is_empty(),
        "{:?}",
        statuses_after(&msgs, "a", t1)
    );
    assert_eq!(statuses_after(&msgs, "b", t1)[0], "starting");
    let ns = msgs
        .iter()
        .rfind(|m| m.topic == NODE_STATUS)
        .unwrap()
        .json();
    assert_eq!(ns["cameras"], serde_json::json!(["a", "b", "c"]), "{ns}");

    // 2. An invalid config is refused; nothing restarts.
    let bad = pipeline(
        broker.port,
        "t",
        &[camera("a", 0), camera("b", 3), camera("c", 5)],
    );
    write(d, "p.toml", &bad);
    let t2 = Instant::now();
    hup(&node);
    let text = wait_log(&log, "config reload refused", 1);
    assert!(
        text.lines()
            .any(|l| l.contains("config reload refused") && l.contains("detect_fps")),
        "the refusal names the field, on one log line:\n{text}"
    );
    // 3. A restart-only change (the topic prefix) is refused, naming the section.
    write(
        d,
        "p.toml",
        &pipeline(
            broker.port,
            "u",
            &[camera("a", 5), camera("b", 3), camera("c", 5)],
        ),
    );
    hup(&node);
    let text = wait_log(&log, "config reload refused", 2);
    assert!(text.contains("[mqtt] changed"), "{text}");
    // Events keep flowing under the old config, with no camera restarted.
    let msgs = sub.wait_for("events after the refusals", Duration::from_secs(60), |m| {
        let n = |c: &str| {
            m.iter()
                .filter(|x| x.at > t2 && x.topic.ends_with(&format!("/{c}/events")))
                .count()
        };
        n("a") > 0 && n("b") > 0 && n("c") > 0
    });
    for c in ["a", "b", "c"] {
        assert!(statuses_after(&msgs, c, t2).is_empty(), "{c} restarted");
    }
    assert!(!msgs.iter().any(|m| m.topic.starts_with("u/")));

    // 4. c is removed: it stops, its open events end, its retained status is cleared.
    write(
        d,
        "p.toml",
        &pipeline(broker.port, "t", &[camera("a", 5), camera("b", 3)]),
    );
    let t4 = Instant::now();
    hup(&node);
    let text = wait_log(&log, "config reloaded", 2);
    assert!(
        text.contains(r#"kept=["a", "b"] restarted=[] started=[] stopped=["c"]"#),
        "{text}"
    );
    let msgs = sub.wait_for("c's status cleared", Duration::from_secs(30), |m| {
        statuses_after(m, "c", t4).iter().any(|s| s == "removed")
    });
    let ns = msgs
        .iter()
        .rfind(|m| m.topic == NODE_STATUS)
        .unwrap()
        .json();
    assert_eq!(ns["cameras"], serde_json::json!(["a", "b"]), "{ns}");

    // 5. SIGTERM: prompt exit, `stopped`, every object ended, no seq gap on any camera.
    let t5 = Instant::now();
    let status = node
        .terminate(Duration::from_secs(30))
        .expect("exits within 30 s of SIGTERM");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{logtext}");
    eprintln!("SIGTERM to exit: {:.1} s", t5.elapsed().as_secs_f64());
    let msgs = sub.wait_for("stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == NODE_STATUS && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);
    for c in ["a", "b", "c"] {
        let evs = camera_events(&msgs, c);
        let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(
            seqs, want,
            "camera {c}: seq is gap-free and continues across the reload"
        );
        let mut open: BTreeMap<String, bool> = BTreeMap::new();
        for e in &evs {
            open.insert(e["id"].as_str().unwrap().into(), e["type"] != "end");
        }
        let still: Vec<_> = open.iter().filter(|(_, o)| **o).map(|(k, _)| k).collect();
        assert!(
            still.is_empty(),
            "camera {c}: events without an end: {still:?}"
        );
    }
}

/// No ghost cameras (issue 14, item 1): a clean stop leaves every live
/// camera's retained status `stopped` (it used to stay `streaming` for
/// ever), and a camera removed from the config while the node was down has
/// its retained status cleared when the node starts again.
#[test]
fn no_camera_is_left_streaming_after_a_stop_or_a_removal_while_down() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let status_of = |c: &str| format!("t/test-district/test-box/{c}/status");
    let p = write(
        d,
        "p.toml",
        &pipeline(broker.port, "t", &[camera("a", 5), camera("b", 5)]),
    );
    let sub = Subscriber::start(broker.port, "t/#");
    let mut node = run_node(&p, &d.join("node1.log"));
    let live = |m: &[Msg], c: &str, state: &str| {
        m.iter()
            .rfind(|x| x.topic == status_of(c))
            .is_some_and(|x| !x.payload.is_empty() && x.json()["state"] == state)
    };
    sub.wait_for("both cameras streaming", Duration::from_secs(60), |m| {
        live(m, "a", "streaming") && live(m, "b", "streaming")
    });
    node.terminate(Duration::from_secs(30))
        .expect("the node exits on SIGTERM");
    sub.wait_for("both cameras stopped", Duration::from_secs(20), |m| {
        live(m, "a", "stopped") && live(m, "b", "stopped")
    });
    // A newcomer reads the same from the retained messages.
    let fresh = Subscriber::start(broker.port, "t/test-district/test-box/+/status");
    fresh.wait_for("the retained statuses", Duration::from_secs(10), |m| {
        live(m, "a", "stopped") && live(m, "b", "stopped")
    });
    drop(fresh);

    // Camera b is removed while the node is down.
    write(d, "p.toml", &pipeline(broker.port, "t", &[camera("a", 5)]));
    let restarted = Instant::now();
    let mut node = run_node(&p, &d.join("node2.log"));
    let msgs = sub.wait_for(
        "b's retained status cleared, a streaming",
        Duration::from_secs(60),
        |m| {
            m.iter()
                .any(|x| x.at > restarted && x.topic == status_of("b") && x.payload.is_empty())
                && live(m, "a", "streaming")
        },
    );
    node.terminate(Duration::from_secs(30))
        .expect("the node exits on SIGTERM");
    let log2 = std::fs::read_to_string(d.join("node2.log")).unwrap();
    assert!(
        log2.contains("clearing the retained status of a camera no longer configured"),
        "{log2}"
    );
    let fresh = Subscriber::start(broker.port, "t/test-district/test-box/+/status");
    let m = fresh.wait_for("a's retained status", Duration::from_secs(10), |m| {
        live(m, "a", "stopped")
    });
    std::thread::sleep(Duration::from_millis(500));
    let m = [m, fresh.snapshot()].concat();
    assert!(
        !m.iter()
            .any(|x| x.topic == status_of("b") && !x.payload.is_empty()),
        "b's status is still retained"
    );
    schemas().validate_all(&msgs);
}
