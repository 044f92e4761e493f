//! `edge-node watch` for operators, against a real mosquitto: the demo
//! pipeline's alerts (one of each object alert kind, crowding) through the
//! README's operator filter, camera statuses and counts with `#`; a broker
//! restart; `mqtts://` with a CA, a client certificate and a password; the
//! default broker is the demo's. And the demo itself shows its alerts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A running `edge-node watch`, its stdout and stderr in files.
struct Watch {
    proc: Proc,
    out: PathBuf,
    err: PathBuf,
}

impl Watch {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Watch {
        Self::start_env(dir, name, args, &[])
    }

    fn start_env(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Watch {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = edge_node()
            .arg("watch")
            .args(args)
            .env_remove("EDGE_NODE_MQTT_USERNAME")
            .env_remove("EDGE_NODE_MQTT_PASSWORD")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("start edge-node watch");
        Watch {
            proc: Proc(child),
            out,
            err,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn both(&self) -> String {
        format!(
            "{}\n--- stderr:\n{}",
            self.stdout(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits until `pred` holds over stdout; returns it.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let s = self.stdout();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; watch printed:\n{}",
                self.both()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_line(&self, what: &str, needle: &str) -> String {
        self.wait_for(what, Duration::from_secs(30), |s| s.contains(needle))
    }
}

/// Lines of `text` that contain `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// Publishes one QoS-1 message (with `retain`) and waits for its PUBACK.
fn publish(port: u16, login: Option<(&str, &str)>, topic: &str, payload: &str, retain: bool) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new(format!("test-pub-{}", free_port()), "127.0.0.1", port);
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (client, mut conn) = Client::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes())
        .unwrap();
    for ev in conn.iter() {
        match ev {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("publish to {port}: {e}"),
        }
    }
    let _ = client.disconnect();
}

/// The demo pipeline, publishing to `port` (mosquitto) instead of its
/// embedded broker, its clip played as fast as the CPU allows.
fn demo_pipeline(dir: &Path, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("pipelines/demo.toml"))
        .unwrap()
        .replace(
            "url = \"embedded\"",
            &format!("url = \"mqtt://127.0.0.1:{port}\""),
        )
        .replace(
            "../tests/fixtures/",
            &format!("{}/", repo().join("tests/fixtures").display()),
        )
        .replace("detect_fps = 5", "detect_fps = 5\nrealtime = false");
    assert!(text.contains("realtime = false"), "{text}");
    write(dir, "demo.toml", &text)
}

/// The demo pipeline's rules fire within its clip: one wrong-way and one
/// loitering alert (each object alert kind) and a crowding alert reach the
/// alerts topic. `watch` with the README's operator filter prints each as
/// one line naming its kind and rule (and nothing but alerts); `watch` on
/// everything prints each alert once (not once per topic), the camera
/// statuses, the counts and the node's stop, where it ends.
#[test]
fn demo_alerts_through_the_operator_filter() {
    let dir = tempfile::tempdir().unwrap();
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "edge/#");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let ops = Watch::start(
        dir.path(),
        "ops",
        &["--url", &url, "--filter", "edge/+/+/+/alerts"],
    );
    let mut all = Watch::start(dir.path(), "all", &["--url", &url, "--until-stopped"]);
    ops.wait_line("ops connected", "BROKER connected");
    all.wait_line("all connected", "BROKER connected");

    let p = demo_pipeline(dir.path(), broker.port);
    let mut node = run_node(&p, &dir.path().join("node.log"));
    let st = node.wait(Duration::from_secs(180)).expect("the demo ends");
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("node.log")).unwrap()
    );
    let msgs = sub.wait_for("stopped", Duration::from_secs(30), |m| {
        m.iter()
            .any(|x| x.topic == "edge/demo/demo-box/status" && x.json()["state"] == "stopped")
    });

    // What the demo published on the alerts topic.
    let alerts: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.topic == "edge/demo/demo-box/vtest/alerts")
        .map(|m| m.json())
        .collect();
    let kinds = |schema: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| a["schema"] == schema)
            .map(|a| match a["alert"]["kind"].as_str() {
                Some(k) => k.to_string(),
                None => a["alerts"][0].as_str().unwrap_or("").to_string(),
            })
            .collect()
    };
    let object = kinds("edge-event/7");
    for kind in ["loitering", "wrong_way"] {
        assert!(
            object.iter().any(|k| k == kind),
            "no {kind} alert: {alerts:?}"
        );
    }
    assert!(
        kinds("edge-zone-alert/3").iter().any(|k| k == "crowding"),
        "{alerts:?}"
    );
    // Each object alert also went on /events (the lifecycle stays complete).
    for a in alerts.iter().filter(|a| a["schema"] == "edge-event/7") {
        assert!(
            events(&msgs)
                .iter()
                .any(|e| e["seq"] == a["seq"] && e["alert"] == a["alert"]),
            "{a}"
        );
    }

    let out = ops.wait_for("every alert", Duration::from_secs(30), |s| {
        lines_with(s, " ALERT ").len() >= alerts.len()
    });
    assert_eq!(lines_with(&out, " ALERT ").len(), alerts.len(), "{out}");
    for needle in [
        "ALERT  demo-box/vtest wrong_way line walkway going west: person",
        "ALERT  demo-box/vtest loitering zone signpost for ",
        "ALERT  demo-box/vtest crowding zone plaza: ",
    ] {
        assert_eq!(lines_with(&out, needle).len(), 1, "{needle}:\n{out}");
    }
    for tag in [" NEW ", " UPDATE ", " END ", " STATUS ", " COUNTS "] {
        assert!(lines_with(&out, tag).is_empty(), "{tag}:\n{out}");
    }

    assert!(
        all.proc.wait(Duration::from_secs(30)).is_some(),
        "--until-stopped did not end:\n{}",
        all.both()
    );
    let out = all.stdout();
    // Each alert once, though object alerts came on /events and /alerts.
    assert_eq!(lines_with(&out, " ALERT ").len(), alerts.len(), "{out}");
    for needle in [
        "STATUS demo-box/vtest streaming",
        "STATUS demo-box/vtest ended",
        "STATUS node demo-box online",
        "STATUS node demo-box stopped",
        "COUNTS demo-box/vtest line walkway: person",
        " NEW    demo-box/vtest person",
        " END    demo-box/vtest person",
    ] {
        assert!(out.contains(needle), "{needle}:\n{out}");
    }
    let stderr = std::fs::read_to_string(&all.err).unwrap();
    assert!(
        stderr.contains(&format!("{} object alerts", object.len())),
        "{stderr}"
    );
}

/// `edge-node demo` (embedded broker, built-in subscriber) shows an alert of
/// each kind its rules raise, within the clip, and counts them.
#[test]
fn demo_command_shows_an_alert_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
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
        .arg(dir.path().join("snaps"))
        .env("EDGE_NODE_STATE_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        " ALERT  demo-box/vtest wrong_way line walkway",
        " ALERT  demo-box/vtest loitering zone signpost",
        " ALERT  demo-box/vtest crowding zone plaza",
    ] {
        assert_eq!(lines_with(&stdout, needle).len(), 1, "{needle}:\n{stdout}");
    }
    assert!(stdout.contains("3 alerts (2 object, 1 zone)"), "{stdout}");
}

/// The broker goes away for longer than the old watcher's ~10 s of retries
/// and comes back on the same port: `watch` says once that it is lost,
/// once that it is back, and prints what is published afterwards.
#[test]
fn watch_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = PersistentBroker::start();
    let port = broker.port;
    let mut w = Watch::start(
        dir.path(),
        "w",
        &[
            "--url",
            &format!("mqtt://127.0.0.1:{port}"),
            "--filter",
            "edge/#",
        ],
    );
    w.wait_line("connected", "BROKER connected");
    // A camera alert of a schema this build has no type for.
    publish(
        port,
        None,
        "edge/d/n/cam1/alerts",
        r#"{"schema":"edge-camera-alert/1","node":"n","district":"d","camera":"cam1","kind":"frozen","time":"2026-12-07T07:00:00.000Z","frozen_s":12}"#,
        false,
    );
    w.wait_line(
        "camera alert",
        "2026-12-07T07:00:00.000Z ALERT  n/cam1 camera frozen (12 s)",
    );

    broker.stop();
    w.wait_line("lost", "BROKER lost");
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        w.proc.0.try_wait().unwrap().is_none(),
        "watch gave up:\n{}",
        w.both()
    );
    broker.restart();
    w.wait_line("back", "BROKER back");
    publish(
        port,
        None,
        "edge/d/n/cam1/alerts",
        r#"{"schema":"edge-zone-alert/3","id":"n.cam1.1.z1","seq":7,"node":"n","district":"d","camera":"cam1","zone":"plaza","alerts":["crowding"],"occupancy":9,"dwell_s":10.0,"time":"2026-12-07T07:01:00.000Z","snapshot":null,"snapshot_omitted":null}"#,
        false,
    );
    let out = w.wait_line(
        "crowding after the restart",
        "crowding zone plaza: 9 inside",
    );
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle}:\n{out}"))
    };
    assert!(at("BROKER lost") < at("BROKER back"), "{out}");
    assert!(at("BROKER back") < at("crowding zone plaza"), "{out}");
    // One line per change, not one per retry.
    assert_eq!(lines_with(&out, "BROKER").len(), 3, "{out}");
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1 and a client
/// certificate (`client.pem`/`.key`), made with rcgen in `dir`.
fn make_pki(dir: &Path) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "watch test CA");
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans, server) in [
        ("server", vec!["127.0.0.1".to_string()], true),
        ("client", vec![], false),
    ] {
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// mosquitto with a TLS listener that requires a client certificate and a
/// password (users `observer` and `box`), and a plain one with passwords;
/// returns it with the TLS port and the plain port.
fn tls_broker(d: &Path) -> (Mosquitto, u16, u16) {
    let passwd = d.join("passwd");
    for (i, (user, pass)) in [("observer", "w4tch-s3cret"), ("box", "b0x")]
        .into_iter()
        .enumerate()
    {
        let mut c = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            c.arg("-c");
        }
        assert!(
            c.arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(pass)
                .status()
                .unwrap()
                .success()
        );
    }
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings false\nallow_anonymous false\npassword_file {pw}\n\
         listener {plain_port} 127.0.0.1\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
        pw = passwd.display(),
        d = d.display(),
    );
    (mosquitto_with(plain_port, &conf), tls_port, plain_port)
}

/// `watch` over `mqtts://` to a broker that requires a client certificate
/// and a password: with flags, and with `--config` taking a pipeline's
/// `[mqtt]` table. A wrong password is reported (and retried), never printed.
#[test]
fn watch_over_tls_with_client_certificate_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let (_broker, tls_port, plain_port) = tls_broker(d);
    let pw_file = write(d, "observer.pw", "w4tch-s3cret\n");
    let bad_pw = write(d, "bad.pw", "not-the-password\n");
    #[cfg(unix)]
    for f in [&pw_file, &bad_pw] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let path = |f: &str| d.join(f).display().to_string();
    let tls_flags = |pw: &Path| {
        vec![
            "--url".to_string(),
            url.clone(),
            "--ca-file".into(),
            path("ca.pem"),
            "--client-cert".into(),
            path("client.pem"),
            "--client-key".into(),
            path("client.key"),
            "--username".into(),
            "observer".into(),
            "--password-file".into(),
            pw.display().to_string(),
        ]
    };
    let args = tls_flags(&pw_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let flags = Watch::start(d, "flags", &args);
    let pipeline = format!(
        "{}[[cameras]]\nid = \"cam1\"\nurl = \"rtsp://127.0.0.1:9/none\"\n",
        PipelineToml::new(tls_port)
            .mqtts()
            .mqtt(r#"ca_file = "ca.pem""#)
            .mqtt(r#"client_cert = "client.pem""#)
            .mqtt(r#"client_key = "client.key""#)
            .mqtt(r#"username_env = "WATCH_TEST_USER""#)
            .mqtt(r#"password_file = "observer.pw""#)
            .build()
    );
    let p = write(d, "p.toml", &pipeline);
    let cfg = Watch::start_env(
        d,
        "cfg",
        &["--config", &p.display().to_string()],
        &[("WATCH_TEST_USER", "observer")],
    );
    let args = tls_flags(&bad_pw);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bad = Watch::start(d, "bad", &args);
    flags.wait_line(
        "connected with flags",
        &format!("BROKER connected to {url}, watching #"),
    );
    cfg.wait_line(
        "connected with --config",
        &format!("BROKER connected to {url}, watching t/#"),
    );
    bad.wait_line("refused", "BROKER cannot connect");

    publish(
        plain_port,
        Some(("box", "b0x")),
        "t/test-district/test-box/cam1/alerts",
        r#"{"schema":"edge-camera-alert/1","node":"test-box","camera":"cam1","kind":"black","time":"2026-12-07T07:02:00.000Z"}"#,
        false,
    );
    for w in [&flags, &cfg] {
        w.wait_line("camera alert over TLS", "ALERT  test-box/cam1 camera black");
    }
    for w in [&flags, &cfg, &bad] {
        let all = w.both();
        assert!(
            !all.contains("w4tch-s3cret") && !all.contains("not-the-password"),
            "{all}"
        );
    }
    assert!(!bad.stdout().contains("camera black"), "{}", bad.both());
    // TLS files with a plaintext URL are refused, as for the node.
    let out = edge_node()
        .args([
            "watch",
            "--url",
            &format!("mqtt://127.0.0.1:{plain_port}"),
            "--ca-file",
        ])
        .arg(d.join("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mqtts://"));
}

/// With no `--url`, `watch` goes to the demo's broker: the same address as
/// `--config pipelines/demo.toml` (its embedded broker's port).
#[test]
fn default_broker_is_the_demos() {
    let dir = tempfile::tempdir().unwrap();
    let first_broker_line = |name: &str, args: &[&str]| {
        let w = Watch::start(dir.path(), name, args);
        let out = w.wait_line("a first line", "BROKER ");
        let line = lines_with(&out, "BROKER ")[0].to_string();
        line.split_whitespace()
            .find(|t| t.starts_with("mqtt"))
            .unwrap_or_else(|| panic!("{line}"))
            .trim_end_matches(',')
            .to_string()
    };
    let default = first_broker_line("default", &[]);
    let demo = first_broker_line("demo", &["--config", "pipelines/demo.toml"]);
    assert_eq!(default, demo);
    assert!(default.starts_with("mqtt://127.0.0.1:"), "{default}");
}
