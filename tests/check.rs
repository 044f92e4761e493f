//! `edge-node check` catches what `run` rejects or quietly degrades on
//! (issue 14, items 5 and 9): the real binary on configs written to a
//! temporary folder, real models, a real mosquitto and the loopback RTSP
//! server for `--probe`.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;
use edge_node::check::CheckReport;

fn check(path: &Path, args: &[&str]) -> Output {
    edge_node()
        .arg("check")
        .args(args)
        .arg(path)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stderr line that reports `field`, if any.
fn line_of<'a>(stderr: &'a str, field: &str) -> Option<&'a str> {
    stderr
        .lines()
        .find(|l| l.contains(&format!("field `{field}`")))
}

/// Each problem of the issue in one file: a scheme typo, a missing clip,
/// `blur_faces` with a missing face model, a zone class the model does not
/// know, a CA file that is not PEM. `check` exits non-zero and names every
/// field with its problem, all in one run.
#[test]
fn every_problem_run_would_hit_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "this is not a certificate\n");
    let toml = format!(
        r#"{head}
[privacy]
face_model = "no/such/centerface.onnx"

[[cameras]]
id = "typo"
url = "rstp://10.20.1.11:554/stream1"

[[cameras]]
id = "missing"
url = "no/such/clip.mp4"

[[cameras]]
id = "faces"
url = "{clip}"
blur_faces = true
[[cameras.zones]]
name = "door"
polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
classes = ["persn"]
[[cameras.lines]]
name = "gate"
a = [0.0, 0.5]
b = [1.0, 0.5]
classes = ["car", "bycicle"]
"#,
        head = PipelineToml::new(free_port())
            .mqtts()
            .mqtt(&format!("ca_file = \"{}\"", ca.display()))
            .build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    );
    let path = write(dir.path(), "p.toml", &toml);
    let out = check(&path, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains("OK"), "{stdout}");
    for (field, words) in [
        ("cameras[0].url", &["unsupported scheme \"rstp\""][..]),
        ("cameras[1].url", &["no/such/clip.mp4", "does not exist"]),
        (
            "privacy.face_model",
            &["faces must be blurred", "no/such/centerface.onnx"],
        ),
        (
            "cameras[2].zones[0].classes",
            &["\"persn\" is not a class of model"],
        ),
        (
            "cameras[2].lines[0].classes",
            &["\"bycicle\" is not a class of model"],
        ),
        ("mqtt.ca_file", &["CA file", "PEM"]),
    ] {
        let line = line_of(&stderr, field).unwrap_or_else(|| panic!("no {field}: {stderr}"));
        for w in words {
            assert!(line.contains(w), "{field}: {w:?} not in {line}");
        }
        assert!(line.contains("Fix:"), "{line}");
    }
    // "car" is a class of the model: not reported.
    assert!(!stderr.contains("\"car\""), "{stderr}");
}

/// TLS files with a plaintext URL, and a client key that is not PEM.
#[test]
fn tls_files_that_run_cannot_use_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "junk\n");
    let cam = format!(
        "[[cameras]]\nid = \"a\"\nurl = \"{}\"\n",
        fixture("vtest_10s_h264.mp4").display()
    );
    let plain = PipelineToml::new(free_port())
        .mqtt(&format!("ca_file = \"{}\"", ca.display()))
        .build();
    let path = write(dir.path(), "plain.toml", &format!("{plain}{cam}"));
    let out = check(&path, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = line_of(&stderr, "mqtt.url").expect(&stderr);
    assert!(line.contains("plaintext"), "{line}");

    // A real CA (from rcgen), a client certificate and a key that is junk.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca = write(dir.path(), "real-ca.pem", &cert.cert.pem());
    let key = write(dir.path(), "client.key", "not a key\n");
    let tls = PipelineToml::new(free_port())
        .mqtts()
        .mqtt(&format!("ca_file = \"{}\"", ca.display()))
        .mqtt(&format!("client_cert = \"{}\"", ca.display()))
        .mqtt(&format!("client_key = \"{}\"", key.display()))
        .build();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = write(dir.path(), "tls.toml", &format!("{tls}{cam}"));
    let out = check(&path, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = line_of(&stderr, "mqtt.client_key").expect(&stderr);
    assert!(line.contains("PEM private key"), "{line}");
}

/// Files that exist but that `run` could not use: a face model that is not
/// ONNX, a client certificate that is not PEM, a state folder that is a
/// file and an outbox folder under a file. All reported at once.
#[test]
fn files_that_exist_but_cannot_be_used_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let face = write(dir.path(), "face.onnx", "not an onnx model\n");
    let ca_cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca = write(dir.path(), "ca.pem", &ca_cert.cert.pem());
    let cert = write(dir.path(), "client.pem", "not a certificate\n");
    let key = write(dir.path(), "client.key", &ca_cert.key_pair.serialize_pem());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let state = write(dir.path(), "state", "a file, not a folder\n");
    let blocker = write(dir.path(), "blocker", "a file\n");
    let toml = format!(
        r#"[node]
id = "box"
district = "d"
state_dir = "{state}"
[mqtt]
url = "mqtts://127.0.0.1:{port}"
topic_prefix = "t"
ca_file = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
[detector]
model = "{model}"
[privacy]
face_model = "{face}"
[outbox]
dir = "{outbox}"

[[cameras]]
id = "a"
url = "{clip}"
blur_faces = true
"#,
        state = state.display(),
        port = free_port(),
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
        model = repo().join("models/nanodet_g_coco_416.onnx").display(),
        face = face.display(),
        outbox = blocker.join("outbox").display(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    );
    let path = write(dir.path(), "p.toml", &toml);
    let out = check(&path, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for (field, words) in [
        (
            "privacy.face_model",
            &["faces must be blurred", "unusable"][..],
        ),
        ("mqtt.client_cert", &["client certificate"]),
        ("node.state_dir", &["is not a folder"]),
        ("outbox.dir", &["cannot be made", "blocker is not a folder"]),
    ] {
        let line = line_of(&stderr, field).unwrap_or_else(|| panic!("no {field}: {stderr}"));
        for w in words {
            assert!(line.contains(w), "{field}: {w:?} not in {line}");
        }
    }

    // A key that is PEM but not the client certificate's.
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
    std::fs::write(&cert, other.cert.pem()).unwrap();
    let out = check(&path, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = line_of(&stderr, "mqtt.client_key").expect(&stderr);
    assert!(
        line.contains("does not fit the client certificate"),
        "{line}"
    );
}

/// `run` refuses what `check` refuses: the scheme typo is a config error
/// (exit 2, no camera silently missing), and a zone class the model does
/// not know fails the camera (exit 1), as an unknown `detector.classes` does.
#[test]
fn run_refuses_the_same_problems() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let head = PipelineToml::new(broker.port).build();
    let typo = write(
        dir.path(),
        "typo.toml",
        &format!("{head}[[cameras]]\nid = \"a\"\nurl = \"rstp://10.20.1.11:554/s\"\n"),
    );
    let log = dir.path().join("typo.log");
    let status = run_node(&typo, &log).wait(Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log_text}");
    assert!(log_text.contains("unsupported scheme"), "{log_text}");

    // A CA file that is not PEM stops `run` at start (it used to retry the
    // TLS handshake forever).
    let ca = write(dir.path(), "ca.pem", "not a certificate\n");
    let tls_head = PipelineToml::new(free_port())
        .mqtts()
        .mqtt(&format!("ca_file = \"{}\"", ca.display()))
        .build();
    let tls = write(
        dir.path(),
        "tls.toml",
        &format!(
            "{tls_head}[[cameras]]\nid = \"a\"\nurl = \"{}\"\n",
            fixture("vtest_10s_h264.mp4").display()
        ),
    );
    let log = dir.path().join("tls.log");
    let status = run_node(&tls, &log).wait(Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.and_then(|s| s.code()).is_some_and(|c| c != 0),
        "{log_text}"
    );
    assert!(
        log_text.contains("CA file") && log_text.contains("PEM"),
        "{log_text}"
    );

    let zone = write(
        dir.path(),
        "zone.toml",
        &format!(
            "{head}[[cameras]]\nid = \"a\"\nurl = \"{}\"\nrealtime = false\n[[cameras.zones]]\nname = \"z\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\nclasses = [\"persn\"]\n",
            fixture("vtest_10s_h264.mp4").display()
        ),
    );
    let log = dir.path().join("zone.log");
    let status = run_node(&zone, &log).wait(Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log_text}");
    assert!(
        log_text.contains("\\\"persn\\\" is not a class")
            || log_text.contains("\"persn\" is not a class"),
        "{log_text}"
    );
}

fn readable_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let mask = "[[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]]";
    let toml = format!(
        r#"[node]
id = "box-7"
district = "ba-dinh"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "hanoi"
[detector]
model = "models/../models/nanodet_g_coco_416.onnx"
classes = ["person", "car"]
class_thresholds = {{ car = 0.5 }}
[budget]
snapshot_bytes_per_s = 20000
burst_bytes = 100000

[[cameras]]
id = "gate"
url = "tests/../tests/fixtures/vtest_10s_h264.mp4"
detect_fps = 4
privacy_masks = [{mask}]
blur_faces = true
[[cameras.zones]]
name = "door"
polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
classes = ["person"]
loiter_s = 30
[[cameras.lines]]
name = "kerb"
a = [0.0, 0.5]
b = [1.0, 0.5]
classes = ["car"]
forward = "in"
backward = "out"
alert_direction = "in"
[cameras.tamper]
frozen_after_s = 20
"#
    );
    write(dir, "plan.toml", &toml)
}

/// The plan is for people: the model in two lines (family, input, classes,
/// thresholds), each camera with its rules, privacy, the budget, and
/// normalised paths; no debug dumps.
#[test]
fn the_plan_reads_as_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let path = readable_config(dir.path(), 1883);
    let out = check(&path, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for want in [
        "OK",
        "node box-7 in district ba-dinh",
        "hanoi/ba-dinh/box-7/#",
        "model models/nanodet_g_coco_416.onnx: nanodet, input 416×416 (",
        "80 classes",
        "detects person, car; score > 0.35 (car 0.5), NMS IoU",
        "camera gate (file) tests/fixtures/vtest_10s_h264.mp4: 4 fps",
        "zone \"door\" (3 points): person; alerts: loitering after 30 s",
        "line \"kerb\": car; forward \"in\", backward \"out\"; alert on \"in\"",
        "privacy: 1 mask, faces blurred (",
        "tamper: checked every 1 s; frozen after 20 s, black/blurred/moved after 10 s",
        "budget: snapshots 20000 B/s for the node, bursts up to 100000 B",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    for bad in ["ModelSpec", "..", "Some(", "{"] {
        assert!(!stdout.contains(bad), "{bad:?} in:\n{stdout}");
    }
    let model_line = stdout.lines().find(|l| l.starts_with("model ")).unwrap();
    assert!(model_line.len() < 200, "{model_line}");
}

/// Every string in a JSON value (to find debug dumps).
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// `--json` is the documented structure (the library's types, which refuse
/// unknown fields), with no debug strings in it.
#[test]
fn json_is_the_documented_structure() {
    let dir = tempfile::tempdir().unwrap();
    let path = readable_config(dir.path(), 1883);
    let out = check(&path, &["--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let report: CheckReport = serde_json::from_str(&stdout).expect(&stdout);
    assert_eq!(report.node, "box-7");
    assert_eq!(report.mqtt.topics, "hanoi/ba-dinh/box-7/#");
    assert!(!report.mqtt.tls);
    assert_eq!(report.models.len(), 1);
    let m = &report.models[0];
    assert_eq!(m.path, "models/nanodet_g_coco_416.onnx");
    assert_eq!(m.family, "nanodet");
    assert_eq!(m.input, [416, 416]);
    assert!(
        m.dynamic_input,
        "the bundled model takes any multiple of 32"
    );
    assert_eq!(m.stride, 32);
    assert_eq!(m.classes, 80);
    assert_eq!(m.detects, ["person", "car"]);
    assert_eq!(m.class_thresholds.get("car"), Some(&0.5));
    let c = &report.cameras[0];
    assert_eq!(c.url, "tests/fixtures/vtest_10s_h264.mp4");
    assert_eq!(c.kind, "file");
    assert_eq!(c.model, m.path);
    // Without --probe the frame size is unknown: examples instead.
    assert_eq!(c.input_pixels, "standard");
    assert!(!c.tiles);
    assert_eq!(c.input_size, None);
    assert!(
        c.input_examples.iter().any(|e| e == "1280x720 -> 544x320"),
        "{:?}",
        c.input_examples
    );
    assert_eq!(c.zones[0].alerts, ["loitering after 30 s"]);
    assert_eq!(c.lines[0].alert_direction.as_deref(), Some("in"));
    assert_eq!(c.privacy.masks, 1);
    assert!(c.privacy.blur_faces);
    assert_eq!(c.tamper.as_ref().map(|t| t.frozen_after_s), Some(20.0));
    assert!(c.probe.is_none());
    assert_eq!(report.budget.snapshot_bytes_per_s, Some(20000.0));
    // The README's example has the same shape.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("```json check")
        .expect("README has a ```json check example");
    let body = &readme[start + "```json check".len()..];
    let example = &body[..body.find("```").unwrap()];
    let _: CheckReport = serde_json::from_str(example).expect("README example parses");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut all = Vec::new();
    strings(&v, &mut all);
    for s in all {
        assert!(
            !s.contains('{') && !s.contains("Some(") && !s.contains(".."),
            "debug string or raw path in the JSON: {s}"
        );
    }
}

/// `--probe` opens the camera (loopback RTSP server and the clip itself)
/// and connects to a real broker; the RTSP stream reports the clip's codec,
/// size and rate. A camera on a port where nothing serves and a broker
/// that refuses give worded errors.
#[test]
fn probe_connects_to_cameras_and_broker() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let rtsp_port = free_port();
    let _server = Proc(
        edge_node()
            .args([
                "serve-rtsp",
                "--port",
                &rtsp_port.to_string(),
                "--mount",
                "/cam",
            ])
            .arg(fixture("vtest_10s_h264.mp4"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let cams = format!(
        "[[cameras]]\nid = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{rtsp_port}/cam\"\n[[cameras]]\nid = \"file\"\nurl = \"{}\"\n",
        fixture("vtest_10s_h264.mp4").display()
    );
    let head = PipelineToml::new(broker.port).build();
    let path = write(dir.path(), "p.toml", &format!("{head}{cams}"));
    let out = check(&path, &["--json", "--probe=20"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let report: CheckReport = serde_json::from_str(&stdout).expect(&stdout);
    let rtsp = report.cameras[0].probe.as_ref().expect("rtsp probed");
    let file = report.cameras[1].probe.as_ref().expect("file probed");
    assert_eq!(rtsp.codec, "h264", "{rtsp:?}");
    assert_eq!(file.codec, "h264", "{file:?}");
    assert!(rtsp.width > 0 && rtsp.height > 0, "{rtsp:?}");
    assert_eq!((rtsp.width, rtsp.height), (file.width, file.height));
    assert!(file.fps.is_some_and(|f| f > 0.0), "{file:?}");
    assert!(!rtsp.decoder.is_empty());
    // The probed 768x576 clip is analysed at its own aspect: 480x352.
    assert_eq!(report.cameras[1].input_size, Some([480, 352]));
    assert_eq!(report.cameras[0].input_size, Some([480, 352]));
    let b = report.mqtt.probe.as_ref().expect("broker probed");
    assert_eq!(b.addr, format!("127.0.0.1:{}", broker.port));

    // The text form says the same.
    let out = check(&path, &["--probe"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let want = format!("probe: h264 {}×{} at ", rtsp.width, rtsp.height);
    assert!(stdout.contains(&want), "{want:?} not in {stdout}");
    assert!(
        stdout.contains("model input 480×352 (input_pixels standard)"),
        "{stdout}"
    );
    assert!(stdout.contains("answered CONNACK"), "{stdout}");

    // Nothing listens: neither camera port nor broker port.
    let dead = free_port();
    let head = PipelineToml::new(free_port()).build();
    let bad = write(
        dir.path(),
        "bad.toml",
        &format!("{head}[[cameras]]\nid = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{dead}/cam\"\n"),
    );
    let out = check(&bad, &["--probe=5"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let cam = line_of(&stderr, "cameras[0].url").expect(&stderr);
    assert!(cam.contains("probe failed"), "{cam}");
    let mqtt = line_of(&stderr, "mqtt.url").expect(&stderr);
    assert!(
        mqtt.contains("probe failed") && mqtt.contains("cannot connect"),
        "{mqtt}"
    );
    assert!(mqtt.to_lowercase().contains("refused"), "{mqtt}");
}
