//! The metrics endpoint against a real Prometheus server (Debian's
//! `prometheus`, started here with its own config on a loopback port): it
//! scrapes the node every second while the node analyses an RTSP camera and
//! publishes to a real mosquitto; the figures Prometheus stored must agree
//! with what the MQTT subscriber received. `/readyz` follows the camera and
//! the broker; the Grafana dashboard names only metrics the node exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// `GET path` on 127.0.0.1:`port`: status code and body (`None`: no connection).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Polls `GET path` until `pred` holds on (code, body), or panics after `timeout`.
fn wait_http(
    port: u16,
    path: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> String {
    let end = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some((code, body)) = http_get(port, path) {
            if pred(code, &body) {
                return body;
            }
            last = Some((code, body));
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what} on {path}; last answer: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `target` every second, its data in a temp dir.
struct Prometheus {
    port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is not installed: run scripts/setup.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = write(
            dir.path(),
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: edge-node\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        );
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            port,
            _proc: Proc(child),
            _dir: dir,
        };
        wait_http(
            port,
            "/-/ready",
            "Prometheus ready",
            Duration::from_secs(30),
            |c, _| c == 200,
        );
        p
    }

    /// An instant query: each series' labels and value.
    fn query(&self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let path = format!("/api/v1/query?query={}", percent_encode(q));
        let (code, body) = http_get(self.port, &path).expect("Prometheus answers");
        assert_eq!(code, 200, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{q}: {body}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// `sum by (label) (expr)` as a map from the label's value.
    fn by(&self, label: &str, expr: &str) -> BTreeMap<String, f64> {
        self.query(&format!("sum by ({label}) ({expr})"))
            .into_iter()
            .map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v))
            .collect()
    }

    /// One figure (`sum(expr)`); 0 when no series exists.
    fn one(&self, expr: &str) -> f64 {
        self.query(&format!("sum({expr})"))
            .first()
            .map_or(0.0, |(_, v)| *v)
    }

    /// Waits until Prometheus holds a scrape of the node taken after `t`.
    fn wait_scrape_after(&self, t: SystemTime) {
        let t = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let last = self.one("timestamp(edge_node_process_open_fds)");
            if last > t {
                return;
            }
            assert!(Instant::now() < end, "no scrape after {t} (last {last})");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Counts of `msgs` by a JSON field, as Prometheus' sums read.
fn count_by(
    msgs: &[serde_json::Value],
    field: impl Fn(&serde_json::Value) -> String,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for x in msgs {
        *m.entry(field(x)).or_insert(0.0) += 1.0;
    }
    m
}

/// Payload bytes of the messages whose topic passes `f`.
fn bytes_where(msgs: &[Msg], f: impl Fn(&str) -> bool) -> f64 {
    msgs.iter()
        .filter(|m| f(&m.topic))
        .map(|m| m.payload.len() as f64)
        .sum()
}

/// Metric names a live `/metrics` page declares (`# TYPE` lines), histograms
/// with their series suffixes.
fn exported_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in page.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split(' ');
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        }
    }
    names
}

/// Every `expr` in the dashboard names only metrics in `exported`; returns
/// the names it uses.
fn check_dashboard(exported: &BTreeSet<String>) -> BTreeSet<String> {
    let path = repo().join("packaging/grafana/edge-node.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    let panels = dash["panels"].as_array().expect("dashboard has panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {:?} has no query",
            p["title"]
        );
    }
    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("edge_node_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            assert!(
                exported.contains(&name),
                "dashboard expr {e:?} names {name}, which the node does not export"
            );
            used.insert(name);
        }
    }
    assert!(!used.is_empty());
    used
}

fn pipeline(broker: u16, metrics: u16, rtsp: u16) -> String {
    format!(
        "{head}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n\
         [[cameras]]\nid = \"cam-m\"\nurl = \"rtsp://127.0.0.1:{rtsp}/cam\"\ndetect_fps = 5\n\
         watchdog_s = 3\nbackoff_initial_s = 0.5\nbackoff_max_s = 1\n\
         [[cameras.zones]]\nname = \"all\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n\
         loiter_s = 2.0\ncrowd_min = 2\ncrowd_for_s = 1.0\ncrowd_clear_s = 1.0\n",
        head = PipelineToml::new(broker).build()
    )
}

fn serve_rtsp(port: u16) -> Proc {
    Proc(
        edge_node()
            .args(["serve-rtsp", "--port", &port.to_string(), "--mount", "/cam"])
            .arg(fixture("vtest_10s_h264.mp4"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: a node run whose phases (not ready, ready, quiet, compared, broker gone) are asserted in order"
)]
fn prometheus_scrapes_figures_that_agree_with_mqtt() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let (mport, rtsp_port) = (free_port(), free_port());
    let prom = Prometheus::start(mport);
    let p = write(
        dir.path(),
        "p.toml",
        &pipeline(broker.port, mport, rtsp_port),
    );
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let logtext = || std::fs::read_to_string(&log).unwrap_or_default();

    // Serving, but the camera has nothing to stream from yet: not ready.
    wait_http(
        mport,
        "/healthz",
        "liveness",
        Duration::from_secs(20),
        |c, b| c == 200 && b == "ok\n",
    );
    let (code, body) = http_get(mport, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("camera cam-m: "), "{body}");
    assert_eq!(http_get(mport, "/nope").unwrap().0, 404);

    // The camera streams: ready.
    let server = serve_rtsp(rtsp_port);
    wait_http(
        mport,
        "/readyz",
        "ready",
        Duration::from_secs(30),
        |c, b| c == 200 && b == "ready\n",
    );
    let page = http_get(mport, "/metrics").unwrap().1;
    assert!(
        page.contains("edge_node_camera_state{camera=\"cam-m\",state=\"streaming\"} 1"),
        "{page}"
    );
    let used = check_dashboard(&exported_names(&page));

    // Run until objects came and went and an alert was raised, then take the
    // camera's server away: no frames, so no messages, while Prometheus scrapes.
    sub.wait_for("events and an alert", Duration::from_secs(40), |m| {
        let ev = events(m);
        ev.iter().filter(|e| e["type"] == "end").count() >= 2
            && m.iter().any(|x| x.topic.ends_with("/alerts"))
    });
    drop(server);
    sub.wait_for("reconnecting", Duration::from_secs(20), |m| {
        statuses(m, "cam-m")
            .last()
            .is_some_and(|s| s == "reconnecting")
    });
    let (code, body) = http_get(mport, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("camera cam-m: reconnecting"), "{body}");
    // Everything handed over has been acknowledged (nothing left in flight).
    wait_http(
        mport,
        "/metrics",
        "an empty outbox",
        Duration::from_secs(15),
        |_, b| {
            b.contains("edge_node_outbox_messages{kind=\"events\"} 0")
                && b.contains("edge_node_outbox_messages{kind=\"snapshots\"} 0")
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    prom.wait_scrape_after(SystemTime::now());
    let msgs = sub.snapshot();

    // Events by type, as received.
    let ev = events(&msgs);
    let want = count_by(&ev, |e| e["type"].as_str().unwrap().to_string());
    let got = prom.by("type", "edge_node_events_total{camera=\"cam-m\"}");
    assert_eq!(
        got,
        want,
        "events by type: Prometheus vs MQTT\n{}",
        logtext()
    );
    // … and by class.
    let want = count_by(&ev, |e| e["label"].as_str().unwrap().to_string());
    assert_eq!(prom.by("class", "edge_node_events_total"), want);
    // Alerts by type: object alerts and zone alerts on the alerts topic.
    let alerts: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/cam-m/alerts"))
        .map(Msg::json)
        .collect();
    let want = count_by(&alerts, |a| {
        // edge-event/4 names it in `alert.kind`, edge-zone-alert/3 in `alerts`.
        a["alert"]["kind"]
            .as_str()
            .or(a["alerts"][0].as_str())
            .unwrap_or_else(|| panic!("alert without a kind: {a}"))
            .to_string()
    });
    let got: BTreeMap<String, f64> = prom
        .by("type", "edge_node_alerts_total")
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect();
    assert_eq!(got, want, "alerts by type");
    // Payload bytes by class: events, alerts, snapshots.
    let classes = prom.by("class", "edge_node_published_bytes_total");
    for (class, suffix) in [("events", "/events"), ("alerts", "/alerts")] {
        let want = bytes_where(&msgs, |t| t.ends_with(suffix));
        assert_eq!(classes[class], want, "{class} bytes");
    }
    let snap = bytes_where(&msgs, |t| t.contains("/snapshot/"));
    assert!(snap > 0.0);
    assert_eq!(classes["snapshots"], snap, "snapshot bytes");
    let snaps = msgs
        .iter()
        .filter(|m| m.topic.contains("/snapshot/"))
        .count() as f64;
    assert_eq!(
        prom.one("edge_node_snapshots_total{outcome=\"full\"}"),
        snaps,
        "snapshots sent at full quality (no budget)"
    );
    // Frames: the camera's last status (reconnecting) says how many entered
    // its slot; at rest every one was analysed or dropped.
    let st = last_status(&msgs, "cam-m").unwrap();
    let received = prom.one("edge_node_frames_received_total{camera=\"cam-m\"}");
    assert_eq!(received, st["frames"].as_f64().unwrap(), "{st}");
    let dropped = prom.one("edge_node_frames_dropped_total{camera=\"cam-m\",cause=\"queue_full\"}");
    assert_eq!(dropped, st["frames_dropped"].as_f64().unwrap(), "{st}");
    let analysed = prom.one("edge_node_frames_analysed_total{camera=\"cam-m\"}");
    assert_eq!(analysed + dropped, received);
    let failed = prom.one("edge_node_frames_dropped_total{cause=\"inference_failed\"}");
    for stage in ["pre", "infer", "post"] {
        let n = prom.one(&format!(
            "edge_node_inference_duration_seconds_count{{stage=\"{stage}\"}}"
        ));
        assert_eq!(
            n,
            analysed - failed,
            "{stage}: one timing per analysed frame"
        );
    }
    // Latency histograms Prometheus can read: a p95 exists and is positive.
    let p95 = prom
        .one("histogram_quantile(0.95, sum by (le) (edge_node_frame_to_publish_seconds_bucket))");
    assert!(p95 > 0.0, "frame-to-publish p95 {p95}");
    let fp = prom.one("edge_node_frame_to_publish_seconds_count");
    // Timed: the events a frame caused (every `new`, updates, ends seen on a
    // frame); not those carrying an alert nor the ends when the camera stops.
    let plain: Vec<&serde_json::Value> = ev.iter().filter(|e| e["alert"].is_null()).collect();
    let news = plain.iter().filter(|e| e["type"] == "new").count() as f64;
    assert!(
        news > 0.0 && fp >= news && fp <= plain.len() as f64,
        "{fp} latencies for {news} new of {} events without an alert",
        plain.len()
    );
    assert!(prom.one("edge_node_camera_reconnects_total{camera=\"cam-m\"}") >= 1.0);
    assert_eq!(
        prom.one("edge_node_camera_state{camera=\"cam-m\",state=\"reconnecting\"}"),
        1.0
    );
    assert_eq!(prom.one("edge_node_broker_connected"), 1.0);
    assert!(prom.one("edge_node_process_resident_memory_bytes") > 10e6);
    assert!(prom.one("edge_node_process_open_fds") > 3.0);
    eprintln!("dashboard metrics: {used:?}");

    // The broker goes away: not ready, and it says so.
    drop(broker);
    let body = wait_http(
        mport,
        "/readyz",
        "broker not connected",
        Duration::from_secs(20),
        |c, b| c == 503 && b.contains("broker: not connected"),
    );
    assert!(body.contains("camera cam-m: reconnecting"), "{body}");
    let status = node
        .terminate(Duration::from_secs(30))
        .expect("node stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", logtext());
}
