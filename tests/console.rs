//! Fault 7, web security: the operators' console with real parts: a real
//! mosquitto, the real `edge-centre` binary (users and tokens made with its
//! command line) on SQLite and on PostgreSQL, and plain HTTP/1.1 over TCP.
//! Requests without a session are refused, POSTs without the CSRF token
//! are refused, a viewer cannot acknowledge while an operator can (who and
//! when stored), SQL injection in every filter is just a value, and the
//! API serves what the broker delivered.

#[path = "common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_centre::config::StorePlan;

/// What `pg.rs` needs of the shared harness.
mod common {
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto(dir: &Path) -> (Proc, u16) {
    let port = common::free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nmax_queued_messages 0\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        ),
    )
    .unwrap();
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mosquitto is not installed: run scripts/setup.sh");
    let p = Proc(
        Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("mosquitto listening", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn centre() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-centre"))
}

// ---- HTTP/1.1 by hand ---------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The value a `Set-Cookie` header gives `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
}

fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no HTTP header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("no status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    http(port, "GET", path, headers, b"")
}

fn form_post(port: u16, path: &str, headers: &[(&str, &str)], form: &str) -> Resp {
    let mut h = headers.to_vec();
    h.push(("Content-Type", "application/x-www-form-urlencoded"));
    http(port, "POST", path, &h, form.as_bytes())
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").expect("no CSRF field") + 19;
    page[i..i + 64].to_string()
}

// ---- the broker side ----------------------------------------------------------

const JPEG: &[u8] = b"\xff\xd8\xff\xe0 a console test picture \xff\xd9";
const OBJECT: &str = "box-1.cam-1.19a.7";

fn event(seq: u64, kind: &str, alerts: &str, snapshot: bool) -> String {
    let e = edge_centre::store::contract::event(seq, 7, kind, alerts);
    if snapshot {
        e.replace(
            "\"snapshot\":null",
            &format!(
                "\"snapshot\":{{\"topic\":\"edge/d1/box-1/cam-1/snapshot/{OBJECT}\",\"bytes\":{},\"width\":64,\"height\":48,\"degraded\":null}}",
                JPEG.len()
            ),
        )
    } else {
        e
    }
}

fn camera_status() -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    format!(
        r#"{{"schema":"edge-camera-status/3","node":"box-1","camera":"cam-1","state":"streaming","since":"{now}","time":"{now}","last_error":null,"detail":null,"frames":1,"frames_analysed":1,"frames_dropped":0,"drops":{{"queue_full":0,"inference_failed":0}},"fps_in":5.0,"fps_analysed":5.0,"last_frame_age_s":0.1,"reconnects":0,"retry_attempt":0,"outage_since":null,"outage_s":null,"stream":null,"health":[]}}"#
    )
}

fn counts(seq: u64, minute: u64, total: u64) -> String {
    format!(
        r#"{{"schema":"edge-counts/1","node":"box-1","district":"d1","camera":"cam-1","seq":{seq},"interval_start":"2026-12-07T08:0{minute}:00.000Z","interval_end":"2026-12-07T08:0{}:00.000Z","lines":{{"walkway":{{"directions":["east","west"],"counts":{{"person":{{"east":{{"total":{total},"delta":3}}}}}}}}}},"zones":{{}}}}"#,
        minute + 1
    )
}

/// Publishes at QoS 1 and waits for the broker's acknowledgements.
fn publish(port: u16, msgs: &[(String, Vec<u8>)]) {
    use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
    let mut o = MqttOptions::new(
        format!("console-test-{}", common::free_port()),
        "127.0.0.1",
        port,
    );
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(o, 100);
    for (topic, payload) in msgs {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone())
            .unwrap();
    }
    let mut acked = 0;
    for ev in conn.iter() {
        match ev {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                if acked == msgs.len() {
                    break;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => panic!("publish: {e}"),
        }
    }
    let _ = client.disconnect();
}

fn traffic() -> Vec<(String, Vec<u8>)> {
    let t = |s: &str| format!("edge/d1/box-1/cam-1/{s}");
    vec![
        (t("status"), camera_status().into_bytes()),
        (t(&format!("snapshot/{OBJECT}")), JPEG.to_vec()),
        (t("events"), event(1, "new", "", true).into_bytes()),
        (
            t("events"),
            event(2, "update", "\"loitering\"", true).into_bytes(),
        ),
        // seq 3 never arrives: a gap.
        (t("events"), event(4, "end", "", false).into_bytes()),
        (t("counts"), counts(1, 0, 10).into_bytes()),
        (t("counts"), counts(2, 1, 14).into_bytes()),
    ]
}

// ---- the scenario ---------------------------------------------------------------

struct Centre {
    dir: PathBuf,
    conf: PathBuf,
    http: u16,
    mqtt: u16,
    plan: StorePlan,
    _broker: Proc,
    _centre: Proc,
}

fn cli(conf: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut c = centre();
    c.args(args)
        .arg("--config")
        .arg(conf)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "edge-centre {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A broker and a centre with its console, storing with `store` lines;
/// users alice (operator, password from the environment) and victor
/// (viewer, password on standard input).
fn start(dir: &Path, store: &str, plan: StorePlan) -> Centre {
    let (broker, mqtt) = mosquitto(dir);
    let http = common::free_port();
    let conf = dir.join("centre.toml");
    std::fs::write(
        &conf,
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\n[store]\n{store}\nbatch_wait_ms = 10\n\
             [snapshots]\ndir = \"snapshots\"\n[console]\nlisten = \"127.0.0.1:{http}\"\nsession_hours = 1\n"
        ),
    )
    .unwrap();
    let out = cli(
        &conf,
        &[
            "user",
            "add",
            "--name",
            "alice",
            "--role",
            "operator",
            "--password-env",
            "ALICE_PW",
        ],
        None,
        &[("ALICE_PW", "alice-secret-1")],
    );
    assert_eq!(out, "added alice (operator)\n");
    cli(
        &conf,
        &["user", "add", "--name", "victor", "--role", "viewer"],
        Some("victor-secret-1\n"),
        &[],
    );
    let log = dir.join("centre.log");
    let child = centre()
        .arg("run")
        .arg("--config")
        .arg(&conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let centre = Proc(child);
    wait_until("the centre subscribed", Duration::from_secs(30), || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        l.contains("subscribed") && l.contains("console listening")
    });
    Centre {
        dir: dir.to_path_buf(),
        conf,
        http,
        mqtt,
        plan,
        _broker: broker,
        _centre: centre,
    }
}

/// Logs in through the form; returns the session cookie's value.
fn login(port: u16, name: &str, password: &str) -> String {
    let page = get(port, "/login", &[]);
    assert_eq!(page.status, 200);
    let form_token = page.cookie("edge_login").expect("login cookie");
    let csrf = csrf_of(&page.text());
    let cookie = format!("edge_login={form_token}");
    let r = form_post(
        port,
        "/login",
        &[("Cookie", &cookie)],
        &format!("csrf={csrf}&name={}&password={}", pct(name), pct(password)),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    r.cookie("edge_session").expect("session cookie")
}

fn refused_without_a_session(c: &Centre) {
    for path in [
        "/alerts",
        "/cameras",
        "/search",
        "/counts",
        "/delivery",
        "/objects/x",
    ] {
        let r = get(c.http, path, &[]);
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/login"), "{path}");
    }
    for path in [
        "/api/events",
        "/api/cameras",
        "/api/gaps",
        "/api/alerts",
        "/events/stream",
    ] {
        assert_eq!(get(c.http, path, &[]).status, 401, "{path}");
        let forged = [
            ("Authorization", "Bearer 0000"),
            ("Cookie", "edge_session=abc"),
        ];
        assert_eq!(get(c.http, path, &forged[..1]).status, 401, "{path}");
        assert_eq!(get(c.http, path, &forged[1..]).status, 401, "{path}");
    }
    let r = http(c.http, "POST", "/api/alerts/x/ack", &[], b"");
    assert_eq!(r.status, 401);
    // Login: a wrong password and an unknown user read the same; a login
    // POST without the form's own token is refused.
    let page = get(c.http, "/login", &[]);
    let cookie = format!("edge_login={}", page.cookie("edge_login").unwrap());
    let csrf = csrf_of(&page.text());
    let wrong = form_post(
        c.http,
        "/login",
        &[("Cookie", &cookie)],
        &format!("csrf={csrf}&name=alice&password=guess"),
    );
    let nobody = form_post(
        c.http,
        "/login",
        &[("Cookie", &cookie)],
        &format!("csrf={csrf}&name=mallory&password=guess"),
    );
    assert_eq!((wrong.status, nobody.status), (401, 401));
    assert_eq!(wrong.text(), nobody.text());
    assert!(wrong.cookie("edge_session").is_none());
    let forged = form_post(
        c.http,
        "/login",
        &[],
        &format!("csrf={csrf}&name=alice&password=alice-secret-1"),
    );
    assert_eq!(forged.status, 403);
}

fn acknowledging(c: &Centre, alice: &str, victor: &str, alice_token: &str, victor_token: &str) {
    let alert_id = format!("{OBJECT}/loitering");
    let path = format!("/alerts/{}/ack", pct(&alert_id));
    let a_cookie = format!("edge_session={alice}");
    let v_cookie = format!("edge_session={victor}");
    let page = get(c.http, "/alerts", &[("Cookie", &a_cookie)]);
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        text.contains(&format!("data-alert-id=\"{alert_id}\"")),
        "{text}"
    );
    assert!(text.contains("class=\"ack\"") && text.contains("id=\"unacked-count\">1<"));
    let a_csrf = csrf_of(&text);
    let v_page = get(c.http, "/alerts", &[("Cookie", &v_cookie)]).text();
    assert!(!v_page.contains("class=\"ack\""), "a viewer gets no button");
    let v_csrf = csrf_of(&v_page);
    assert_ne!(a_csrf, v_csrf);
    // No CSRF token, a wrong one, another session's: 403.
    for form in [
        String::new(),
        format!("csrf={}", "0".repeat(64)),
        format!("csrf={v_csrf}"),
    ] {
        let r = form_post(c.http, &path, &[("Cookie", &a_cookie)], &form);
        assert_eq!(r.status, 403, "{form}: {}", r.text());
    }
    let r = http(
        c.http,
        "POST",
        &format!("/api{path}"),
        &[("Cookie", &a_cookie)],
        b"",
    );
    assert_eq!(r.status, 403, "a cookie POST to the API needs X-CSRF-Token");
    // A viewer cannot, by form or by token.
    let r = form_post(
        c.http,
        &path,
        &[("Cookie", &v_cookie)],
        &format!("csrf={v_csrf}"),
    );
    assert_eq!(r.status, 403);
    let v_bearer = format!("Bearer {victor_token}");
    let r = http(
        c.http,
        "POST",
        &format!("/api{path}"),
        &[("Authorization", &v_bearer)],
        b"",
    );
    assert_eq!(r.status, 403);
    let a_bearer = format!("Bearer {alice_token}");
    let open = get(c.http, "/api/alerts", &[("Authorization", &a_bearer)]).json();
    assert!(open["alerts"][0]["acked_by"].is_null(), "{open}");
    assert_eq!(open["unacked"], 1);
    // An operator can; who and when are stored.
    let before = std::time::SystemTime::now();
    let r = form_post(
        c.http,
        &path,
        &[("Cookie", &a_cookie)],
        &format!("csrf={a_csrf}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let after = get(c.http, "/api/alerts", &[("Authorization", &a_bearer)]).json();
    let a = &after["alerts"][0];
    assert_eq!(a["alert_id"], alert_id.as_str());
    assert_eq!(a["acked_by"], "alice");
    let at = a["acked_at"].as_i64().unwrap();
    let t0 = edge_centre::store::millis(before);
    assert!(at >= t0 - 1000 && at <= t0 + 60_000, "{at} vs {t0}");
    assert_eq!(after["unacked"], 0);
    // A bearer POST needs no CSRF token (no ambient credential).
    let r = http(
        c.http,
        "POST",
        &format!("/api{path}"),
        &[("Authorization", &a_bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["acknowledged"], false, "already acknowledged");
    assert_eq!(r.json()["alert"]["acked_by"], "alice");
    let r = http(
        c.http,
        "POST",
        "/api/alerts/no-such-alert/ack",
        &[("Authorization", &a_bearer)],
        b"",
    );
    assert_eq!(r.status, 404);
}

const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "\"; DROP TABLE events; --",
    "'; DROP TABLE users; --",
    "1' UNION SELECT name, hash, role, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 FROM users --",
    "%' OR '%'='",
    "cam-1' AND 1=1 --",
    "\\'; DELETE FROM alerts; --",
];

fn injections_are_values(c: &Centre, alice: &str, token: &str) {
    let bearer = format!("Bearer {token}");
    let cookie = format!("edge_session={alice}");
    for bad in INJECTIONS {
        for field in ["district", "camera", "label", "kind", "node", "object"] {
            let q = format!("{field}={}", pct(bad));
            let r = get(
                c.http,
                &format!("/api/events?{q}"),
                &[("Authorization", &bearer)],
            );
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            assert_eq!(r.json()["events"], serde_json::json!([]), "{q}");
            let r = get(c.http, &format!("/search?{q}"), &[("Cookie", &cookie)]);
            assert_eq!(r.status, 200, "{q}");
            assert!(r.text().contains("id=\"no-events\""), "{q}");
            if field == "object" {
                continue;
            }
            let r = get(
                c.http,
                &format!("/api/alerts?{q}"),
                &[("Authorization", &bearer)],
            );
            assert_eq!(r.status, 200, "{q}");
            assert_eq!(r.json()["alerts"], serde_json::json!([]), "{q}");
            let r = get(c.http, &format!("/alerts?{q}"), &[("Cookie", &cookie)]);
            assert_eq!(r.status, 200, "{q}");
            assert!(r.text().contains("id=\"no-alerts\""), "{q}");
        }
        for field in ["from", "to", "after"] {
            let q = format!("{field}={}", pct(bad));
            let r = get(
                c.http,
                &format!("/api/events?{q}"),
                &[("Authorization", &bearer)],
            );
            assert_eq!(r.status, 400, "{q}: not a time or cursor");
        }
        let p = format!("/api/events/{}/cam-1/1", pct(bad));
        assert_eq!(get(c.http, &p, &[("Authorization", &bearer)]).status, 404);
        let p = format!("/api/snapshots/{}", pct(bad));
        assert_eq!(get(c.http, &p, &[("Authorization", &bearer)]).status, 404);
        let p = format!("/objects/{}", pct(bad));
        assert_eq!(get(c.http, &p, &[("Cookie", &cookie)]).status, 404);
    }
    // Every table is still there, with its rows.
    let t = edge_centre::open_store(&c.plan).unwrap().totals().unwrap();
    assert_eq!(
        (t.events, t.alerts, t.counts, t.cameras),
        (3, 1, 2, 1),
        "{t:?}"
    );
    let db = edge_centre::store::console::ConsoleDb::open(&c.plan).unwrap();
    let users = db.run(edge_centre::store::console::users).unwrap();
    assert_eq!(users.len(), 2);
    let all = get(c.http, "/api/events", &[("Authorization", &bearer)]).json();
    assert_eq!(all["events"].as_array().unwrap().len(), 3);
}

fn the_api_serves_what_was_published(c: &Centre, token: &str) -> String {
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let ev = get(
        c.http,
        "/api/events?camera=cam-1&label=person&limit=2",
        &auth,
    )
    .json();
    let list = ev["events"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{ev}");
    assert_eq!(list[0]["seq"], 4, "newest first");
    let next = ev["next"].as_str().expect("a next page");
    let ev2 = get(
        c.http,
        &format!("/api/events?limit=2&after={}", pct(next)),
        &auth,
    )
    .json();
    assert_eq!(ev2["events"].as_array().unwrap().len(), 1, "{ev2}");
    assert!(ev2["next"].is_null());
    let kinds = get(c.http, "/api/events?kind=update", &auth).json();
    assert_eq!(
        kinds["events"][0]["alerts"],
        serde_json::json!(["loitering"])
    );
    let one = get(c.http, "/api/events/box-1/cam-1/2", &auth);
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["object_id"], OBJECT);
    assert_eq!(get(c.http, "/api/events/box-1/cam-1/3", &auth).status, 404);
    let ranged = get(
        c.http,
        "/api/events?from=2026-12-07T08:00:02Z&to=2026-12-07T08:00:04Z",
        &auth,
    )
    .json();
    assert_eq!(ranged["events"].as_array().unwrap().len(), 1, "{ranged}");
    let cams = get(c.http, "/api/cameras", &auth).json();
    assert_eq!(cams["cameras"][0]["camera"], "cam-1", "{cams}");
    assert_eq!(cams["cameras"][0]["shown"], "streaming");
    let hist = get(c.http, "/api/cameras/box-1/cam-1/history", &auth).json();
    assert_eq!(hist["history"][0]["state"], "streaming", "{hist}");
    assert_eq!(
        get(c.http, "/api/cameras/box-1/cam-1/history", &[]).status,
        401
    );
    let gaps = get(c.http, "/api/gaps", &auth).json();
    let g = &gaps["gaps"][0];
    assert_eq!(gaps["gaps"].as_array().map(Vec::len), Some(1), "{gaps}");
    for (k, v) in [
        ("node", serde_json::json!("box-1")),
        ("camera", serde_json::json!("cam-1")),
        ("district", serde_json::json!("d1")),
        ("first", serde_json::json!(3)),
        ("last", serde_json::json!(3)),
        ("missing", serde_json::json!(1)),
        ("state", serde_json::json!("open")),
        ("lost", serde_json::json!(0)),
        ("reason", serde_json::Value::Null),
    ] {
        assert_eq!(g[k], v, "{k} in {gaps}");
    }
    let sha = list[1]["snapshot_sha"]
        .as_str()
        .expect("a snapshot")
        .to_string();
    let snap = get(c.http, &format!("/api/snapshots/{sha}"), &auth);
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("content-type"), Some("image/jpeg"));
    assert_eq!(snap.body, JPEG);
    assert_eq!(
        get(
            c.http,
            &format!("/api/snapshots/{}", "ab".repeat(32)),
            &auth
        )
        .status,
        404
    );
    let obj = get(c.http, &format!("/api/objects/{OBJECT}"), &auth).json();
    assert_eq!(obj["events"].as_array().unwrap().len(), 3);
    assert_eq!(obj["alerts"][0]["kind"], "loitering");
    let me = get(c.http, "/api/me", &auth).json();
    assert_eq!(me, serde_json::json!({"name":"alice","role":"operator"}));
    sha
}

fn pages_render(c: &Centre, alice: &str, sha: &str) {
    let cookie = format!("edge_session={alice}");
    let h = [("Cookie", cookie.as_str())];
    let obj = get(c.http, &format!("/objects/{OBJECT}"), &h).text();
    assert!(obj.contains(&format!("/snapshots/{sha}")), "{obj}");
    assert!(obj.contains("id=\"lifecycle\""));
    let cams = get(c.http, "/cameras", &h).text();
    assert!(cams.contains("data-camera=\"box-1/cam-1\""), "{cams}");
    let cam = get(c.http, "/cameras/box-1/cam-1", &h).text();
    assert!(
        cam.contains("class=\"event-row\"") && cam.contains("counts-chart"),
        "{cam}"
    );
    let counts = get(c.http, "/counts?node=box-1&camera=cam-1", &h).text();
    assert!(counts.contains("walkway · person · east"), "{counts}");
    let delivery = get(c.http, "/delivery", &h).text();
    assert!(delivery.contains("class=\"gap-row"), "{delivery}");
    assert_eq!(get(c.http, "/accounts", &h).status, 403, "admins only");
    let img = get(c.http, &format!("/snapshots/{sha}"), &h);
    assert_eq!(img.body, JPEG);
    // Expired: the file is gone and the page says so.
    let mut store = edge_centre::open_store(&c.plan).unwrap();
    let far = std::time::SystemTime::now() + Duration::from_secs(86_400);
    let gone = store.expire_snapshots(far, far, u64::MAX).unwrap();
    assert_eq!(gone, vec![sha.to_string()]);
    edge_centre::snapshots::Snapshots::open(&c.dir.join("snapshots"))
        .unwrap()
        .remove(sha)
        .unwrap();
    assert_eq!(get(c.http, &format!("/snapshots/{sha}"), &h).status, 410);
    let obj = get(c.http, &format!("/objects/{OBJECT}"), &h).text();
    assert!(obj.contains("snapshot expired"), "{obj}");
}

/// A new incident reaches an open `/events/stream` after its commit.
fn live_updates_arrive(c: &Centre, alice: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", c.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /events/stream HTTP/1.1\r\nHost: x\r\nCookie: edge_session={alice}\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut read_until = |needle: &str| {
        let end = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            assert!(
                Instant::now() < end,
                "no {needle:?} in {}",
                String::from_utf8_lossy(&seen)
            );
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    read_until("event: hello");
    publish(
        c.mqtt,
        &[(
            "edge/d1/box-1/cam-1/events".into(),
            event(5, "update", "\"wrong_way\"", false).into_bytes(),
        )],
    );
    read_until(&format!("{OBJECT}/wrong_way"));
}

fn scenario(c: &Centre) {
    let alice_token = cli(&c.conf, &["token", "add", "--name", "alice"], None, &[]);
    let victor_token = cli(&c.conf, &["token", "add", "--name", "victor"], None, &[]);
    let (alice_token, victor_token) = (alice_token.trim(), victor_token.trim());
    assert_eq!(alice_token.len(), 64);
    publish(c.mqtt, &traffic());
    let bearer = format!("Bearer {alice_token}");
    wait_until("the API lists the events", Duration::from_secs(20), || {
        let r = get(c.http, "/api/events", &[("Authorization", &bearer)]);
        r.status == 200 && r.json()["events"].as_array().is_some_and(|a| a.len() == 3)
    });
    wait_until("the counts stored", Duration::from_secs(20), || {
        edge_centre::open_store(&c.plan)
            .unwrap()
            .totals()
            .unwrap()
            .counts
            == 2
    });
    refused_without_a_session(c);
    let alice = login(c.http, "alice", "alice-secret-1");
    let victor = login(c.http, "victor", "victor-secret-1");
    // Only the token's hash is stored.
    let db = edge_centre::store::console::ConsoleDb::open(&c.plan).unwrap();
    let by_raw = db
        .run(|db| edge_centre::store::console::session_user(db, &alice, 0))
        .unwrap();
    assert!(by_raw.is_none(), "the session token is stored in clear");
    let sha = the_api_serves_what_was_published(c, alice_token);
    acknowledging(c, &alice, &victor, alice_token, victor_token);
    injections_are_values(c, &alice, alice_token);
    pages_render(c, &alice, &sha);
    live_updates_arrive(c, &alice);
    // Logged out, the session is dead.
    let cookie = format!("edge_session={alice}");
    let page = get(c.http, "/alerts", &[("Cookie", &cookie)]).text();
    let r = form_post(
        c.http,
        "/logout",
        &[("Cookie", &cookie)],
        &format!("csrf={}", csrf_of(&page)),
    );
    assert_eq!(r.status, 303);
    assert_eq!(get(c.http, "/alerts", &[("Cookie", &cookie)]).status, 303);
    assert_eq!(get(c.http, "/api/me", &[("Cookie", &cookie)]).status, 401);
}

/// Fault 7 on SQLite.
#[test]
fn web_security_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let plan = StorePlan::Sqlite {
        path: dir.path().join("centre.db"),
    };
    let c = start(dir.path(), "path = \"centre.db\"", plan);
    scenario(&c);
}

/// Fault 7 on PostgreSQL: the same checks.
#[test]
fn web_security_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg::PgCluster::start();
    let url = pg.url("edge");
    let plan = StorePlan::Postgres {
        url: url.clone(),
        password: None,
    };
    let c = start(
        dir.path(),
        &format!("kind = \"postgres\"\nurl = \"{url}\""),
        plan,
    );
    scenario(&c);
}
