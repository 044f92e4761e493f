//! System tests with real parts: the bundled clip and model, a real mosquitto
//! on 127.0.0.1, the real `edge-node` binary and its own RTSP server.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

fn pipeline_text(port: u16, cameras: &str, extra: &str) -> String {
    format!(
        "{head}{extra}\n\n{cameras}\n",
        head = PipelineToml::new(port).build()
    )
}

/// Group events by id, in arrival order.
fn by_id(events: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for e in events {
        m.entry(e["id"].as_str().unwrap().to_string())
            .or_default()
            .push(e.clone());
    }
    m
}

/// Runs the node on the bundled clip (file, not real time, 5 fps) with
/// `extra` lines in `[detector]` until it stops by itself; returns every
/// message seen (schema-checked) and the node's log.
fn run_clip(extra: &str) -> (Vec<Msg>, String) {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let cams = format!(
        "[[cameras]]\nid = \"vtest\"\nurl = \"{}\"\ndetect_fps = 5\nrealtime = false\n",
        fixture("vtest_10s_h264.mp4").display()
    );
    let p = write(
        dir.path(),
        "p.toml",
        &pipeline_text(broker.port, &cams, extra),
    );
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let status = node
        .wait(Duration::from_secs(120))
        .expect("edge-node run ends by itself on a file");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{logtext}");
    let msgs = sub.wait_for("node stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == "t/test-district/test-box/status" && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);
    (msgs, logtext)
}

/// One object, one story: each event id is `new`, a few updates, `end`,
/// and the camera's `seq` runs 1, 2, 3, … (frames stay in order, nothing
/// lost). Returns the number of person events.
fn check_event_stories(evs: &[serde_json::Value], logtext: &str) -> usize {
    let groups = by_id(evs);
    let persons = groups
        .values()
        .filter(|g| g[0]["label"] == "person")
        .count();
    assert!(
        persons >= 3,
        "the clip has several people; got {persons} person events\n{logtext}"
    );
    for (id, g) in &groups {
        assert_eq!(g[0]["type"], "new", "{id} starts with new");
        assert_eq!(g.last().unwrap()["type"], "end", "{id} ends with end");
        assert_eq!(
            g.iter().filter(|e| e["type"] == "new").count(),
            1,
            "{id}: one new"
        );
        assert_eq!(
            g.iter().filter(|e| e["type"] == "end").count(),
            1,
            "{id}: one end"
        );
        // No per-frame spam: new + at most 5 updates + end.
        assert!(g.len() <= 7, "{id} has {} messages", g.len());
        assert!(g[0]["snapshot"].is_object(), "{id}: new carries a snapshot");
        assert!(g.last().unwrap()["end_time"].is_string());
        assert!(g[0]["end_time"].is_null());
    }
    // seq increases by one per message of the camera.
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let expect: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expect);
    persons
}

#[test]
fn clip_to_mqtt_end_to_end() {
    let (msgs, logtext) = run_clip("");
    check_event_stories(&events(&msgs), &logtext);
    // The camera reports streaming, then ended.
    // Each state once: the node used to publish `starting` twice (its own
    // initial state, then the source's first report).
    let st = statuses(&msgs, "vtest");
    assert_eq!(st, ["starting", "streaming", "ended"], "{st:?}");
    // Far fewer bytes than the video itself.
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let clip = std::fs::metadata(fixture("vtest_10s_h264.mp4"))
        .unwrap()
        .len() as usize;
    assert!(bytes < clip, "published {bytes} B for a {clip} B clip");
}

#[test]
fn rtsp_camera_reconnects_after_server_restart() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let rtsp_port = free_port();
    let serve = |port: u16| {
        Proc(
            edge_node()
                .args(["serve-rtsp", "--port", &port.to_string(), "--mount", "/cam"])
                .arg(fixture("vtest_10s_h264.mp4"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut server = serve(rtsp_port);
    std::thread::sleep(Duration::from_millis(500));
    let cams = format!(
        "[[cameras]]\nid = \"cam-rtsp\"\nurl = \"rtsp://127.0.0.1:{rtsp_port}/cam\"\ndetect_fps = 5\nwatchdog_s = 3\nbackoff_initial_s = 0.5\nbackoff_max_s = 2\n"
    );
    let p = write(dir.path(), "p.toml", &pipeline_text(broker.port, &cams, ""));
    let mut node = run_node(&p, &dir.path().join("node.log"));

    sub.wait_for(
        "streaming and a first event",
        Duration::from_secs(60),
        |m| statuses(m, "cam-rtsp").contains(&"streaming".into()) && !events(m).is_empty(),
    );
    // Stop the server: the camera must report reconnecting.
    server.terminate(Duration::from_secs(5));
    drop(server);
    let before = sub.snapshot().len();
    sub.wait_for("reconnecting", Duration::from_secs(30), |m| {
        statuses(&m[before..], "cam-rtsp").contains(&"reconnecting".into())
    });
    let st = last_status(&sub.snapshot(), "cam-rtsp").unwrap();
    assert!(
        st["last_error"].is_string(),
        "reconnecting carries the error: {st}"
    );
    // Start it again: streaming again, and new events.
    let n_before = sub.snapshot().len();
    let _server2 = serve(rtsp_port);
    sub.wait_for(
        "streaming again with new events",
        Duration::from_secs(60),
        |m| {
            let tail = &m[n_before..];
            statuses(tail, "cam-rtsp").contains(&"streaming".into())
                && events(tail).iter().any(|e| e["type"] == "new")
        },
    );
    let status = node
        .terminate(Duration::from_secs(20))
        .expect("node stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    let msgs = sub.wait_for("stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic.ends_with("test-box/status") && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);
    // Every object that started also ended (SIGTERM ends open events).
    for (id, g) in by_id(&events(&msgs)) {
        assert_eq!(g.last().unwrap()["type"], "end", "{id}");
    }
}

/// Workers with more ONNX Runtime threads than the box has free cores: each
/// worker's pre-processing companion runs under SCHED_IDLE, lifted while the
/// session waits for it (`sched::PrepMode::Background`; inline where the
/// process may not lift it). Same events as any other mode.
#[test]
fn busy_cores_worker_pipeline_end_to_end() {
    let (msgs, logtext) = run_clip("threads = 2\nworkers = 2");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 4 {
        assert!(
            logtext.contains("prep=\"background\"") || logtext.contains("prep=\"inline\""),
            "no free core: background (or inline) pre-processing\n{logtext}"
        );
    }
    check_event_stories(&events(&msgs), &logtext);
}

#[test]
fn bad_inputs_fail_alone() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let text_file = write(dir.path(), "notes.mp4", "this is not a video\n");
    let corrupt = write(
        dir.path(),
        "corrupt.onnx",
        "definitely not an onnx protobuf",
    );
    let unknown = repo().join("tests/fixtures/models/weird_outputs.onnx");
    assert!(unknown.exists(), "fixture {unknown:?}");
    let cams = format!(
        r#"
[[cameras]]
id = "good"
url = "{good}"
detect_fps = 5
realtime = false

[[cameras]]
id = "missing"
url = "{dir}/no-such-clip.mp4"

[[cameras]]
id = "not-video"
url = "{text}"

[[cameras]]
id = "unreachable"
url = "rtsp://127.0.0.1:{dead}/nothing"
backoff_initial_s = 0.5
backoff_max_s = 1

[[cameras]]
id = "corrupt-model"
url = "{good}"
model = "{corrupt}"

[[cameras]]
id = "unknown-model"
url = "{good}"
model = "{unknown}"
"#,
        good = fixture("vtest_10s_h264.mp4").display(),
        dir = dir.path().display(),
        text = text_file.display(),
        dead = free_port(),
        corrupt = corrupt.display(),
        unknown = unknown.display(),
    );
    let p = write(dir.path(), "p.toml", &pipeline_text(broker.port, &cams, ""));
    let mut node = run_node(&p, &dir.path().join("node.log"));
    let msgs = sub.wait_for("the good camera to finish", Duration::from_secs(120), |m| {
        last_status(m, "good").is_some_and(|s| s["state"] == "ended")
            && last_status(m, "unreachable").is_some_and(|s| s["state"] == "reconnecting")
    });
    let err = |cam: &str, state: &str| -> String {
        let m = sub.wait_for(&format!("{cam} {state}"), Duration::from_secs(30), |m| {
            last_status(m, cam).is_some_and(|s| s["state"] == state)
        });
        last_status(&m, cam).unwrap()["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let e = err("missing", "failed");
    assert!(e.contains("no-such-clip.mp4"), "names the file: {e}");
    let e = err("not-video", "failed");
    assert!(e.contains("notes.mp4"), "names the file: {e}");
    let e = err("unreachable", "reconnecting");
    assert!(!e.is_empty(), "says why: {e}");
    let e = err("corrupt-model", "failed");
    assert!(e.contains("corrupt.onnx"), "names the model: {e}");
    let e = err("unknown-model", "failed");
    assert!(e.contains("weird_outputs.onnx"), "names the model: {e}");
    // The good camera kept working.
    let evs = events(&msgs);
    assert!(
        evs.iter()
            .any(|e| e["camera"] == "good" && e["type"] == "new"),
        "good camera produced events"
    );
    assert!(evs.iter().all(|e| e["camera"] == "good"));
    schemas().validate_all(&msgs);
    let status = node
        .terminate(Duration::from_secs(20))
        .expect("stops on SIGTERM");
    assert_eq!(
        status.code(),
        Some(1),
        "failed cameras are reported in the exit status"
    );
}

#[test]
fn invalid_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let head = PipelineToml::new(1).node("b", "d").no_detector().build();
    let p = write(
        dir.path(),
        "bad.toml",
        &format!("{head}[[cameras]]\nid = \"c\"\nurl = \"x.mp4\"\ndetect_fps = 500\n"),
    );
    for cmd in ["run", "check"] {
        let out = edge_node().arg(cmd).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("bad.toml") && err.contains("cameras[0].detect_fps"),
            "{cmd}: {err}"
        );
    }
    let p = write(
        dir.path(),
        "typo.toml",
        &format!("{head}[[cameras]]\nid = \"c\"\nurl = \"x.mp4\"\ndetectfps = 5\n"),
    );
    let out = edge_node().arg("check").arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("typo.toml") && err.contains("detectfps"),
        "{err}"
    );
}

#[test]
fn detect_command_prints_json_in_source_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let out_img = dir.path().join("annotated.jpg");
    // The anchors below are the squashed 416x416 input's (the reference's).
    let out = edge_node()
        .args(["detect", "--json", "--input-pixels", "model", "--out"])
        .arg(&out_img)
        .arg(fixture("dog.jpg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["width"], 768);
    assert_eq!(v["height"], 576);
    let dets = v["detections"].as_array().unwrap();
    let labels: Vec<&str> = dets.iter().map(|d| d["label"].as_str().unwrap()).collect();
    // All classes by default: the dog is not in the traffic filter but must show.
    assert!(
        labels.contains(&"dog") && labels.contains(&"bicycle"),
        "{labels:?}"
    );
    let bike = dets.iter().find(|d| d["label"] == "bicycle").unwrap();
    let b: Vec<f64> = bike["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (got, want) in b.iter().zip([108.0, 127.0, 571.0, 425.0]) {
        assert!((got - want).abs() < 15.0, "bicycle box {b:?}");
    }
    let img = image::open(&out_img).unwrap();
    assert_eq!((img.width(), img.height()), (768, 576));
    // The default (aspect kept, 480x352) and tiles find the same objects.
    for extra in [&[][..], &["--tiles"][..]] {
        let out = edge_node()
            .args(["detect", "--json"])
            .args(extra)
            .arg(fixture("dog.jpg"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let labels: Vec<&str> = v["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["label"].as_str().unwrap())
            .collect();
        assert!(
            labels.contains(&"dog") && labels.contains(&"bicycle"),
            "{extra:?}: {labels:?}"
        );
    }
    let text = edge_node()
        .args(["detect", "--input-pixels", "detailed"])
        .arg(fixture("dog.jpg"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("at 672x512"), "{text}");
    // --classes narrows it.
    let out = edge_node()
        .args(["detect", "--json", "--classes", "dog"])
        .arg(fixture("dog.jpg"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["detections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["label"] == "dog")
    );
}

#[test]
fn demo_runs_unattended() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    // The embedded broker needs a port of its own; the demo pipeline's default may be busy.
    let port = free_port();
    let text = std::fs::read_to_string(repo().join("pipelines/demo.toml"))
        .unwrap()
        .replace(
            "url = \"embedded\"",
            &format!("url = \"embedded\"\nembedded_port = {port}"),
        )
        .replace(
            "../tests/fixtures/",
            &format!("{}/", repo().join("tests/fixtures").display()),
        );
    let p = write(dir.path(), "demo.toml", &text);
    let out = edge_node()
        .args(["demo", "--fast", "--pipeline"])
        .arg(&p)
        .arg("--out")
        .arg(&snaps)
        .env("EDGE_NODE_STATE_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo finished"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" NEW ") && l.contains("person")),
        "{stdout}"
    );
    let jpegs = std::fs::read_dir(&snaps).unwrap().count();
    assert!(jpegs >= 3, "snapshots written: {jpegs}");
}

/// `edge-node healthcheck` reads the daemon's heartbeat file: fresh and
/// plain is healthy; empty (the state folder could not be written), an
/// `outbox failing` line or a `delivery failing` line is not, and the
/// output says why.
#[test]
fn healthcheck_reports_what_the_heartbeat_says() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("heartbeat");
    let check = |text: &str| {
        std::fs::write(&f, text).unwrap();
        let out = edge_node()
            .args(["healthcheck", "--file"])
            .arg(&f)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    };
    let (code, said) = check("2026-12-07T05:00:00.000Z\n");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("healthy"), "{said}");
    let (code, said) = check("");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("empty"), "{said}");
    let (code, said) = check(
        "2026-12-07T05:00:00.000Z\noutbox failing: disk full (since 2026-12-07T04:59:00.000Z, 3 failed writes)\n",
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("outbox failing: disk full"), "{said}");
    let (code, said) = check(
        "2026-12-07T05:00:00.000Z\ndelivery failing: the broker refused t/d/n/cam/events (PUBACK reason code 0x87 NotAuthorized); kept in the outbox\n",
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("0x87"), "{said}");
}
