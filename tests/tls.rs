//! `mqtts://` to a real mosquitto with TLS, a client certificate (mTLS) and a
//! password read from the environment or a file. Certificates are made in
//! each test with rcgen.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A new self-signed CA named `cn`, written as `{name}.pem`.
fn make_ca(dir: &Path, name: &str, cn: &str) -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    Ca { cert, key }
}

/// A leaf certificate signed by `ca`, written as `{name}.pem` + `{name}.key`.
fn make_leaf(dir: &Path, ca: &Ca, name: &str, cn: &str, sans: &[&str], server: bool) {
    let mut p =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    p.extended_key_usages = vec![if server {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    }];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1 (`server.pem`/`.key`)
/// and a client certificate for `box-1` (`client.pem`/`.key`), made with rcgen
/// (ECDSA P-256) in the test's folder.
fn make_pki(dir: &Path) {
    let ca = make_ca(dir, "ca", "edge test CA");
    make_leaf(
        dir,
        &ca,
        "server",
        "127.0.0.1",
        &["127.0.0.1", "localhost"],
        true,
    );
    make_leaf(dir, &ca, "client", "box-1", &[], false);
}

#[test]
fn mqtts_with_client_certificate_and_password_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let passwd = d.join("passwd");
    for (i, (user, pass)) in [("box-1", "s3cret"), ("observer", "watch")]
        .into_iter()
        .enumerate()
    {
        let mut c = Command::new("mosquitto_passwd");
        if i == 0 {
            c.arg("-c");
        }
        let st = c
            .arg("-b")
            .arg(&passwd)
            .arg(user)
            .arg(pass)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let tls_port = free_port();
    let plain_port = free_port();
    // The node may only write under its own prefix; the observer reads all.
    let acl = d.join("acl");
    std::fs::write(
        &acl,
        "user box-1\ntopic write t/test-district/tls-box/#\n\nuser observer\ntopic read #\n",
    )
    .unwrap();
    // TLS listener needs a certificate AND the password; the plain one (for the
    // test subscriber) needs the password.
    let conf = format!(
        "per_listener_settings false\nallow_anonymous false\npassword_file {pw}\nacl_file {acl}\n\
         listener {plain_port} 127.0.0.1\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
        pw = passwd.display(),
        acl = acl.display(),
        d = d.display(),
    );
    let broker = mosquitto_with(plain_port, &conf);
    let sub = Subscriber::start_with(broker.port, "#", Some(("observer", "watch")));

    let pipeline = format!(
        r#"{head}[[cameras]]
id = "vtest"
url = "{clip}"
detect_fps = 5
realtime = false
"#,
        head = PipelineToml::new(tls_port)
            .node("tls-box", "test-district")
            .mqtts()
            .mqtt(r#"ca_file = "ca.pem""#)
            .mqtt(r#"client_cert = "client.pem""#)
            .mqtt(r#"client_key = "client.key""#)
            .build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    );
    let p = write(d, "p.toml", &pipeline);
    let log = d.join("node.log");
    let mut node = run_node_env(
        &p,
        &log,
        &[
            ("EDGE_NODE_MQTT_USERNAME", "box-1"),
            ("EDGE_NODE_MQTT_PASSWORD", "s3cret"),
        ],
    );
    let status = node.wait(Duration::from_secs(120)).expect("ends by itself");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{logtext}");
    let msgs = sub.wait_for("stopped over TLS", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == "t/test-district/tls-box/status" && x.json()["state"] == "stopped")
    });
    let evs = events(&msgs);
    assert!(
        evs.iter().any(|e| e["type"] == "new"),
        "events crossed the TLS link\n{logtext}"
    );
    assert!(
        msgs.iter().any(|m| m.topic.contains("/snapshot/")),
        "snapshots crossed the TLS link"
    );
    schemas().validate_all(&msgs);
    // Everything the node sent stayed inside its own topic space (and the ACL
    // let all of it through: the events above arrived).
    for m in &msgs {
        assert!(
            m.topic.starts_with("t/test-district/tls-box/"),
            "outside the node's prefix: {}",
            m.topic
        );
    }
}

#[test]
fn wrong_ca_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    // A second, unrelated CA the node is told to trust.
    make_ca(d, "other-ca", "some other CA");
    let port = free_port();
    let conf = format!(
        "allow_anonymous true\nlistener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = d.display()
    );
    let _broker = mosquitto_with(port, &conf);
    let pipeline = format!(
        "{head}[[cameras]]\nid = \"c\"\nurl = \"rtsp://127.0.0.1:{dead}/x\"\n",
        head = PipelineToml::new(port)
            .node("b", "d")
            .mqtts()
            .mqtt(r#"ca_file = "other-ca.pem""#)
            .no_detector()
            .build(),
        dead = free_port()
    );
    let p = write(d, "p.toml", &pipeline);
    let log = d.join("node.log");
    let mut node = run_node(&p, &log);
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("UnknownIssuer") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the certificate error is logged:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.terminate(Duration::from_secs(30));
}

#[test]
fn wrong_password_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let passwd = d.join("passwd");
    let st = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&passwd)
        .args(["box-1", "right"])
        .status()
        .unwrap();
    assert!(st.success());
    let port = free_port();
    let conf = format!(
        "allow_anonymous false\npassword_file {}\nlistener {port} 127.0.0.1\n",
        passwd.display()
    );
    let _broker = mosquitto_with(port, &conf);
    let pipeline = format!(
        "{head}[[cameras]]\nid = \"c\"\nurl = \"rtsp://127.0.0.1:{dead}/x\"\n",
        head = PipelineToml::new(port).node("b", "d").no_detector().build(),
        dead = free_port()
    );
    let p = write(d, "p.toml", &pipeline);
    let log = d.join("node.log");
    let mut node = run_node_env(
        &p,
        &log,
        &[
            ("EDGE_NODE_MQTT_USERNAME", "box-1"),
            ("EDGE_NODE_MQTT_PASSWORD", "wrong"),
            ("RUST_LOG", "info"),
        ],
    );
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("NotAuthorized")
            || text.contains("not authorised")
            || text.contains("BadUserNamePassword")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the refusal is logged:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.terminate(Duration::from_secs(30));
}

#[test]
fn credentials_from_files_work_are_never_logged_and_loose_modes_are_warned() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let passwd = d.join("passwd");
    for (i, (user, pass)) in [("box-1", "pa55-from-file"), ("observer", "watch")]
        .into_iter()
        .enumerate()
    {
        let mut c = Command::new("mosquitto_passwd");
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
    let acl = d.join("acl");
    std::fs::write(
        &acl,
        "user box-1\ntopic write t/d/b/#\n\nuser observer\ntopic read #\n",
    )
    .unwrap();
    let port = free_port();
    let conf = format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\nlistener {port} 127.0.0.1\n",
        passwd.display(),
        acl.display()
    );
    let broker = mosquitto_with(port, &conf);
    let sub = Subscriber::start_with(broker.port, "#", Some(("observer", "watch")));
    // The user name file ends with a newline; the password file is readable by
    // everyone (the loader warns) and has a trailing newline.
    write(d, "user", "box-1\n");
    let pw = write(d, "password", "pa55-from-file\n");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pipeline = format!(
        "{head}[[cameras]]\nid = \"c\"\nurl = \"{clip}\"\ndetect_fps = 5\nrealtime = false\n",
        head = PipelineToml::new(port)
            .node("b", "d")
            .mqtt(r#"username_file = "user""#)
            .mqtt(r#"password_file = "password""#)
            .build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    );
    let p = write(d, "p.toml", &pipeline);
    // `check` prints the warning.
    let out = edge_node().arg("check").arg(&p).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: mqtt.password_file") && stdout.contains("chmod 600"),
        "{stdout}"
    );
    // The environment must not be what makes it work.
    let log = d.join("node.log");
    let mut node = run_node_env(
        &p,
        &log,
        &[
            ("EDGE_NODE_MQTT_USERNAME", "nobody"),
            ("EDGE_NODE_MQTT_PASSWORD", "wrong"),
            ("RUST_LOG", "trace"),
        ],
    );
    let status = node.wait(Duration::from_secs(120)).expect("ends by itself");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "{status:?}\n{}",
        &logtext[logtext.len().saturating_sub(4000)..]
    );
    let msgs = sub.wait_for("stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == "t/d/b/status" && x.json()["state"] == "stopped")
    });
    assert!(events(&msgs).iter().any(|e| e["type"] == "new"));
    assert!(logtext.contains("mqtt.password_file") && logtext.contains("chmod 600"));
    assert!(
        logtext.contains("DEBUG") || logtext.contains("TRACE"),
        "trace logging was on:\n{logtext}"
    );
    assert!(
        !logtext.contains("pa55-from-file"),
        "the password appears in the log"
    );
}

/// A node configured for TLS never talks plaintext: pointed at a plaintext
/// broker it fails the handshake, says so, and nothing it has reaches the
/// broker.
#[test]
fn an_mqtts_node_never_falls_back_to_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d);
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "#");
    let pipeline = format!(
        "{head}[[cameras]]\nid = \"c\"\nurl = \"{clip}\"\ndetect_fps = 5\nrealtime = true\nloop = true\n",
        head = PipelineToml::new(broker.port)
            .node("b", "d")
            .mqtts()
            .mqtt(r#"ca_file = "ca.pem""#)
            .build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
    );
    let p = write(d, "p.toml", &pipeline);
    let log = d.join("node.log");
    let mut node = run_node(&p, &log);
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Events are being made (and stored) while every connect fails.
        if text.matches("mqtt connect failed").count() >= 2 && text.contains("kind=New") {
            break text;
        }
        assert!(
            std::time::Instant::now() < end,
            "repeated TLS connect failures and events in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.to_lowercase().contains("tls") || text.contains("InvalidContentType"),
        "the failure names TLS:\n{text}"
    );
    assert!(!text.contains("mqtt connected"), "{text}");
    node.terminate(Duration::from_secs(40));
    assert!(
        sub.snapshot().is_empty(),
        "nothing reached the plaintext broker: {:?}",
        sub.snapshot().iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
}
