//! Camera passwords never leave the node (issue 13, item 7): cameras with
//! `user:password@` in their URLs against a port where nothing listens
//! (refused), a server answering junk, and an HTTP source answering 401,
//! next to a good camera. The passwords must appear in no log line, in no
//! `check` output (text and JSON), and in no MQTT message, while each faulty
//! camera's status does carry its error.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

const SECRETS: [&str; 3] = ["pw-refused-71", "pw-junk-72", "pw-401-73"];

/// A server on a free port that answers every connection with `reply`
/// after reading what the client sends first.
fn answering(reply: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply);
            });
        }
    });
    port
}

fn pipeline(port: u16) -> String {
    let refused = free_port();
    let junk = answering(b"\x00\xffthis is not RTSP\r\n\r\n");
    let http = answering(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let [a, b, c] = SECRETS;
    format!(
        r#"{head}
[[cameras]]
id = "good"
url = "{clip}"
detect_fps = 5
realtime = true
loop = true

[[cameras]]
id = "refused"
url = "rtsp://admin:{a}@127.0.0.1:{refused}/stream1"

[[cameras]]
id = "junk"
url = "rtsp://admin:{b}@127.0.0.1:{junk}/stream1"

[[cameras]]
id = "unauthorized"
url = "http://admin:{c}@127.0.0.1:{http}/cam.mjpg"
"#,
        head = PipelineToml::new(port).build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    )
}

fn leaked(text: &str) -> Vec<&'static str> {
    SECRETS.into_iter().filter(|s| text.contains(s)).collect()
}

#[test]
fn camera_passwords_appear_in_no_log_check_output_or_mqtt_message() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.toml", &pipeline(broker.port));

    for json in [false, true] {
        let mut cmd = edge_node();
        cmd.arg("check").arg(&p);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "check failed: {text}");
        assert!(
            leaked(&text).is_empty(),
            "check --json={json} leaks: {text}"
        );
        assert!(
            text.contains("***@127.0.0.1"),
            "check shows the cameras: {text}"
        );
    }

    let sub = Subscriber::start(broker.port, "t/#");
    let log = dir.path().join("node.log");
    let mut node = run_node_env(&p, &log, &[("RUST_LOG", "debug,rumqttc=warn")]);
    // Until every faulty camera has reported an error on its status topic.
    let end = Instant::now() + Duration::from_secs(40);
    let faulty = ["refused", "junk", "unauthorized"];
    loop {
        let msgs = sub.snapshot();
        let done = faulty
            .iter()
            .all(|c| last_status(&msgs, c).is_some_and(|s| s["last_error"].as_str().is_some()))
            && last_status(&msgs, "good").is_some_and(|s| s["state"] == "streaming");
        if done {
            break;
        }
        assert!(
            Instant::now() < end,
            "not every faulty camera reported an error (or the good one is not streaming): {:?}",
            faulty.map(|c| last_status(&msgs, c))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.terminate(Duration::from_secs(30));
    let msgs = sub.snapshot();
    for m in &msgs {
        let text = String::from_utf8_lossy(&m.payload);
        assert!(leaked(&text).is_empty(), "{} leaks: {text}", m.topic);
        assert!(leaked(&m.topic).is_empty(), "topic leaks: {}", m.topic);
    }
    for c in faulty {
        let s = last_status(&msgs, c).unwrap();
        eprintln!("{c}: {}", s["last_error"]);
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    let bad: Vec<&str> = log_text.lines().filter(|l| !leaked(l).is_empty()).collect();
    assert!(bad.is_empty(), "log lines leak a password: {bad:#?}");
    // The faults did reach the log (the test saw what it claims to); the
    // good camera was streaming (the wait above).
    assert!(
        log_text.contains("camera lost"),
        "no camera error in the log"
    );
}

/// A server that answers every connection with an HTTP 401 (Basic) and
/// keeps what each client sent, to see which credentials reached it.
fn recording_401() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                keep.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = s.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    (port, seen)
}

/// Standard base64 (what HTTP Basic authentication sends).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const CAM_SECRETS: [&str; 2] = ["pw-file-81", "pw-env-82"];

fn cam_leaked(text: &str) -> Vec<&'static str> {
    CAM_SECRETS
        .into_iter()
        .filter(|s| text.contains(s))
        .collect()
}

/// `check` without the camera variables names them (and nothing secret);
/// with them it passes, says where the credentials come from, and shows no
/// password (text and JSON).
fn check_names_the_sources_and_no_secret(p: &std::path::Path, env: &[(&str, &str)]) {
    // Without the variables, check names them (and nothing secret).
    let out = edge_node().arg("check").arg(p).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("field `cameras[2].username_env`")
            && stderr.contains("EDGE_TEST_CAM_USER is not set"),
        "{stderr}"
    );
    for json in [false, true] {
        let mut cmd = edge_node();
        cmd.envs(env.iter().copied()).arg("check").arg(p);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "check failed: {text}");
        assert!(cam_leaked(&text).is_empty(), "check leaks: {text}");
        assert!(
            text.contains("files") && text.contains("environment"),
            "check says where the credentials come from: {text}"
        );
    }
}

/// Per-camera credentials (issue 14, item 7): one camera's user name and
/// password from files, another's from environment variables. Both reach
/// the camera (its server sees the right Basic credentials), and neither
/// password appears in `check` (text or JSON), the log or any MQTT message.
#[test]
fn camera_credentials_from_files_and_env_reach_the_camera_and_nothing_else() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let user = write(dir.path(), "cam-user", "file-user\n");
    let pass = write(dir.path(), "cam-pass", &format!("{}\n", CAM_SECRETS[0]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (port_a, seen_a) = recording_401();
    let (port_b, seen_b) = recording_401();
    let toml = format!(
        r#"{head}
[[cameras]]
id = "good"
url = "{clip}"
detect_fps = 5
realtime = true
loop = true

[[cameras]]
id = "from-files"
url = "http://127.0.0.1:{port_a}/cam.mjpg"
username_file = "{user}"
password_file = "{pass}"

[[cameras]]
id = "from-env"
url = "http://127.0.0.1:{port_b}/cam.mjpg"
username_env = "EDGE_TEST_CAM_USER"
password_env = "EDGE_TEST_CAM_PASS"
"#,
        head = PipelineToml::new(broker.port).build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
        user = user.display(),
        pass = pass.display(),
    );
    let p = write(dir.path(), "p.toml", &toml);
    let env = [
        ("EDGE_TEST_CAM_USER", "env-user"),
        ("EDGE_TEST_CAM_PASS", CAM_SECRETS[1]),
    ];

    check_names_the_sources_and_no_secret(&p, &env);

    let sub = Subscriber::start(broker.port, "t/#");
    let log = dir.path().join("node.log");
    let mut node = run_node_env(&p, &log, &env);
    let want_a = format!(
        "Basic {}",
        base64(format!("file-user:{}", CAM_SECRETS[0]).as_bytes())
    );
    let want_b = format!(
        "Basic {}",
        base64(format!("env-user:{}", CAM_SECRETS[1]).as_bytes())
    );
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let a = seen_a.lock().unwrap().iter().any(|r| r.contains(&want_a));
        let b = seen_b.lock().unwrap().iter().any(|r| r.contains(&want_b));
        let msgs = sub.snapshot();
        let reported = ["from-files", "from-env"]
            .iter()
            .all(|c| last_status(&msgs, c).is_some_and(|s| s["last_error"].as_str().is_some()));
        if a && b && reported {
            break;
        }
        assert!(
            Instant::now() < end,
            "credentials not seen by the cameras (files: {a}, env: {b}) or no error reported; requests: {:?} {:?}",
            seen_a.lock().unwrap(),
            seen_b.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.terminate(Duration::from_secs(30));
    for m in &sub.snapshot() {
        let text = String::from_utf8_lossy(&m.payload);
        assert!(cam_leaked(&text).is_empty(), "{} leaks: {text}", m.topic);
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    let bad: Vec<&str> = log_text
        .lines()
        .filter(|l| !cam_leaked(l).is_empty())
        .collect();
    assert!(bad.is_empty(), "log lines leak a password: {bad:#?}");
}

/// A URL that carries a password and a password file too is refused,
/// without showing the URL's password.
#[test]
fn a_password_in_the_url_and_a_password_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pass = write(dir.path(), "pass", "other\n");
    let toml = format!(
        "{head}[[cameras]]\nid = \"a\"\nurl = \"rtsp://admin:pw-url-83@127.0.0.1:554/s\"\nusername_env = \"X_USER\"\npassword_file = \"{}\"\n",
        pass.display(),
        head = PipelineToml::new(1883).build(),
    );
    let p = write(dir.path(), "p.toml", &toml);
    let out = edge_node().arg("check").arg(&p).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("field `cameras[0].password_file`")
            && stderr.contains("already carries a user name and password"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-url-83"), "{stderr}");
}
