//! Shared harness for the system tests: a real mosquitto on 127.0.0.1, the
//! real `edge-node` binary, an MQTT subscriber and the JSON Schemas.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where ONNX Runtime is, for child processes (set by scripts/test.sh, or the repo's copy).
pub fn ort_dylib() -> String {
    std::env::var("ORT_DYLIB_PATH").unwrap_or_else(|_| {
        repo()
            .join("third_party/onnxruntime/lib/libonnxruntime.so.1.32.0")
            .display()
            .to_string()
    })
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        self.wait(timeout)
    }
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

pub struct Mosquitto {
    pub port: u16,
    _proc: Proc,
}

/// A real mosquitto broker on 127.0.0.1 and a free port.
pub fn mosquitto() -> Mosquitto {
    let port = free_port();
    mosquitto_with(
        port,
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
}

pub fn mosquitto_bin() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mosquitto is not installed: run scripts/setup.sh")
}

/// mosquitto with the given listener/auth lines; `port` is the one to wait for.
pub fn mosquitto_with(port: u16, conf_lines: &str) -> Mosquitto {
    let bin = mosquitto_bin();
    let dir = tempfile::tempdir().unwrap().keep();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        // As root, mosquitto drops to user `mosquitto`, which cannot read the
        // test's private temp folder (certificates, password file); stay root.
        // (The setting has no effect when the tests run as another user.)
        // No per-client queue cap: a subscriber that falls behind on a loaded
        // machine must not make the broker drop QoS-1 messages (default 1000).
        format!("user root\nmax_queued_messages 0\n{conf_lines}persistence false\nmessage_size_limit 0\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let p = Proc(child);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < end,
            "mosquitto did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto { port, _proc: p }
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", self.topic))
    }
}

/// Collects every message under a filter, from a background thread.
pub struct Subscriber {
    pub msgs: Arc<Mutex<Vec<Msg>>>,
    client: Client,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str) -> Subscriber {
        Self::start_with(port, filter, None)
    }

    /// Like `start`, with a user name and password.
    pub fn start_with(port: u16, filter: &str, login: Option<(&str, &str)>) -> Subscriber {
        let mut o = MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        o.set_max_packet_size(16 << 20, 16 << 20);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut conn) = Client::new(o, 100);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let m2 = msgs.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => m2.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        at: Instant::now(),
                    }),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscription acknowledged");
        Subscriber { msgs, client }
    }

    pub fn snapshot(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Wait until `pred` holds over the messages so far.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Msg]) -> bool,
    ) -> Vec<Msg> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.snapshot();
            if pred(&m) {
                return m;
            }
            if Instant::now() > end {
                let topics: Vec<String> = m
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {}",
                            x.topic,
                            String::from_utf8_lossy(&x.payload)
                                .chars()
                                .take(200)
                                .collect::<String>()
                        )
                    })
                    .collect();
                panic!(
                    "timed out waiting for {what}; got {} messages:\n{}",
                    m.len(),
                    topics.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

pub fn edge_node() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edge-node"));
    c.env("ORT_DYLIB_PATH", ort_dylib());
    c.env(
        "RUST_LOG",
        std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    c.current_dir(repo());
    c
}

/// Start `edge-node run <pipeline>` with its log in `log`.
pub fn run_node(pipeline: &Path, log: &Path) -> Proc {
    run_node_env(pipeline, log, &[])
}

/// `run_node` with extra environment variables (e.g. MQTT credentials).
pub fn run_node_env(pipeline: &Path, log: &Path, env: &[(&str, &str)]) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    let child = edge_node()
        .envs(env.iter().copied())
        .arg("run")
        .arg(pipeline)
        .env("EDGE_NODE_STATE_DIR", pipeline.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("start edge-node");
    Proc(child)
}

pub struct Schemas {
    pub event: jsonschema::Validator,
    pub counts: jsonschema::Validator,
    pub zone_alert: jsonschema::Validator,
    pub node: jsonschema::Validator,
    pub camera: jsonschema::Validator,
    pub stats: jsonschema::Validator,
    pub replay_answer: jsonschema::Validator,
}

fn load_schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/schemas").join(name)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&v)
        .unwrap()
}

pub fn schemas() -> Schemas {
    Schemas {
        event: load_schema("edge-event-7.schema.json"),
        counts: load_schema("edge-counts-1.schema.json"),
        zone_alert: load_schema("edge-zone-alert-3.schema.json"),
        node: load_schema("edge-node-status-4.schema.json"),
        camera: load_schema("edge-camera-status-3.schema.json"),
        stats: load_schema("edge-stats-3.schema.json"),
        replay_answer: load_schema("edge-replay-answer-1.schema.json"),
    }
}

impl Schemas {
    /// Validate every JSON message against its schema; check every snapshot
    /// decodes as a JPEG of the size its event states.
    pub fn validate_all(&self, msgs: &[Msg]) {
        self.validate(msgs, true);
    }

    /// As [`Schemas::validate_all`], without matching each event to the
    /// latest picture on its snapshot topic: for runs where the broker
    /// refused events but not their snapshots, so that an object's later
    /// pictures arrived before its earlier events.
    pub fn validate_schemas(&self, msgs: &[Msg]) {
        self.validate(msgs, false);
    }

    fn validate(&self, msgs: &[Msg], match_snapshots: bool) {
        let mut snaps = std::collections::HashMap::new();
        for m in msgs {
            if m.topic.contains("/snapshot/") {
                snaps.insert(m.topic.clone(), m.payload.clone());
            }
        }
        for m in msgs {
            // An empty retained message deletes a camera's status (camera removed
            // by a reload). Live subscribers get it with the retain flag cleared.
            if m.payload.is_empty() && m.topic.ends_with("/status") {
                continue;
            }
            if m.topic.contains("/snapshot/") {
                let img = image::load_from_memory_with_format(&m.payload, image::ImageFormat::Jpeg)
                    .unwrap_or_else(|e| panic!("{} is not a JPEG: {e}", m.topic));
                assert!(img.width() > 0);
                continue;
            }
            let v = m.json();
            let (validator, kind) = if m.topic.ends_with("/events") {
                (&self.event, "event")
            } else if m.topic.ends_with("/counts") {
                (&self.counts, "counts")
            } else if m.topic.ends_with("/alerts") && v["schema"] == "edge-zone-alert/3" {
                (&self.zone_alert, "zone alert")
            } else if m.topic.ends_with("/alerts") {
                (&self.event, "event")
            } else if m.topic.ends_with("/stats") {
                (&self.stats, "stats")
            } else if m.topic.ends_with("/replayed") {
                (&self.replay_answer, "replay answer")
            } else if v.get("camera").is_some() {
                (&self.camera, "camera status")
            } else {
                (&self.node, "node status")
            };
            let errors: Vec<String> = validator
                .iter_errors(&v)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{kind} on {} breaks its schema: {errors:?}\n{v}",
                m.topic
            );
            if kind == "event"
                && match_snapshots
                && let Some(s) = v.get("snapshot").filter(|s| !s.is_null())
            {
                let topic = s["topic"].as_str().unwrap();
                // The snapshot is published just before its event; the latest one on the topic is ours.
                let jpeg = msgs
                    .iter()
                    .rfind(|x| x.topic == topic && x.at <= m.at)
                    .unwrap_or_else(|| panic!("snapshot {topic} was never received"));
                assert_eq!(
                    jpeg.payload.len() as u64,
                    s["bytes"].as_u64().unwrap(),
                    "snapshot size"
                );
                let img =
                    image::load_from_memory_with_format(&jpeg.payload, image::ImageFormat::Jpeg)
                        .unwrap();
                assert_eq!(img.width() as u64, s["width"].as_u64().unwrap());
                assert_eq!(img.height() as u64, s["height"].as_u64().unwrap());
            }
        }
    }
}

/// Per camera, the event seqs received (with duplicates), in arrival order.
pub fn seqs(msgs: &[Msg]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut m: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for e in events(msgs) {
        m.entry(e["camera"].as_str().unwrap().to_string())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    m
}

pub fn events(msgs: &[Msg]) -> Vec<serde_json::Value> {
    msgs.iter()
        .filter(|m| m.topic.ends_with("/events"))
        .map(|m| m.json())
        .collect()
}

pub fn statuses(msgs: &[Msg], camera: &str) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.topic.ends_with(&format!("/{camera}/status")))
        .map(|m| {
            if m.payload.is_empty() {
                "removed".to_string()
            } else {
                m.json()["state"].as_str().unwrap_or_default().to_string()
            }
        })
        .collect()
}

pub fn last_status(msgs: &[Msg], camera: &str) -> Option<serde_json::Value> {
    msgs.iter()
        .rfind(|m| m.topic.ends_with(&format!("/{camera}/status")))
        .map(|m| m.json())
}

/// The head of a test pipeline: the `[node]` and `[mqtt]` tables and, unless
/// [`PipelineToml::no_detector`], `[detector]` with the NanoDet model. Tests
/// append what they need after it (more `[detector]` keys, other tables,
/// `[[cameras]]`).
///
/// `PipelineToml::new(port)` is node `test-box` in `test-district`, publishing
/// to `mqtt://127.0.0.1:{port}` under the topic prefix `t`.
#[derive(Clone, Debug)]
pub struct PipelineToml {
    id: String,
    district: String,
    scheme: &'static str,
    port: u16,
    prefix: String,
    mqtt: Vec<String>,
    detector: bool,
}

impl PipelineToml {
    pub fn new(port: u16) -> PipelineToml {
        PipelineToml {
            id: "test-box".into(),
            district: "test-district".into(),
            scheme: "mqtt",
            port,
            prefix: "t".into(),
            mqtt: Vec::new(),
            detector: true,
        }
    }

    /// `node.id` and `node.district`.
    pub fn node(mut self, id: &str, district: &str) -> PipelineToml {
        self.id = id.into();
        self.district = district.into();
        self
    }

    /// TLS: `mqtt.url` is `mqtts://127.0.0.1:{port}`.
    pub fn mqtts(mut self) -> PipelineToml {
        self.scheme = "mqtts";
        self
    }

    /// `mqtt.topic_prefix` (the default is `t`).
    pub fn prefix(mut self, prefix: &str) -> PipelineToml {
        self.prefix = prefix.into();
        self
    }

    /// One more `key = value` line in `[mqtt]`.
    pub fn mqtt(mut self, line: &str) -> PipelineToml {
        self.mqtt.push(line.into());
        self
    }

    /// Leave out the `[detector]` table.
    pub fn no_detector(mut self) -> PipelineToml {
        self.detector = false;
        self
    }

    /// The TOML text, ending with a newline; when there is a detector,
    /// whatever follows up to the next table header goes into `[detector]`.
    pub fn build(&self) -> String {
        let mut s = format!(
            "[node]\nid = \"{}\"\ndistrict = \"{}\"\n[mqtt]\nurl = \"{}://127.0.0.1:{}\"\ntopic_prefix = \"{}\"\n",
            self.id, self.district, self.scheme, self.port, self.prefix
        );
        for line in &self.mqtt {
            s.push_str(line);
            s.push('\n');
        }
        if self.detector {
            s.push_str(&format!(
                "[detector]\nmodel = \"{}\"\n",
                repo().join("models/nanodet_g_coco_416.onnx").display()
            ));
        }
        s
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A mosquitto that can be stopped and restarted on the same port, with
/// `persistence true` so persistent sessions and their queued QoS-1
/// messages survive the restart.
pub struct PersistentBroker {
    pub port: u16,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl PersistentBroker {
    pub fn start() -> PersistentBroker {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap().keep();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
                 persistence true\npersistence_location {}/\nautosave_interval 1\n\
                 max_queued_messages 0\nmessage_size_limit 0\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut b = PersistentBroker {
            port,
            conf,
            proc: None,
        };
        b.restart();
        b
    }

    /// (Re)start on the same port and configuration.
    pub fn restart(&mut self) {
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.proc = Some(Proc(child));
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (mosquitto saves its persistent state) and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            assert!(
                p.terminate(Duration::from_secs(10)).is_some(),
                "mosquitto did not stop"
            );
        }
    }
}

impl Subscriber {
    /// A QoS-1 subscriber with a persistent session (`clean_session = false`,
    /// fixed client id): the broker queues messages for it while it is away,
    /// and it reconnects by itself.
    pub fn start_persistent(port: u16, filter: &str, client_id: &str) -> Subscriber {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_clean_session(false);
        o.set_max_packet_size(16 << 20, 16 << 20);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = Client::new(o, 100);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let m2 = msgs.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => m2.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        at: Instant::now(),
                    }),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscription acknowledged");
        Subscriber { msgs, client }
    }
}

/// The demo's pipeline (`pipelines/demo.toml`: its clip, detector and scene
/// rules, which raise alerts within the clip) as node `id` of `district`,
/// publishing to the broker on `port` under `edge`, with absolute paths.
pub fn demo_pipeline_text(id: &str, district: &str, port: u16) -> String {
    let demo = std::fs::read_to_string(repo().join("pipelines/demo.toml")).unwrap();
    let text = demo
        .replace("id = \"demo-box\"", &format!("id = \"{id}\""))
        .replace("district = \"demo\"", &format!("district = \"{district}\""))
        .replace(
            "url = \"embedded\"",
            &format!("url = \"mqtt://127.0.0.1:{port}\""),
        )
        .replace(
            "url = \"../tests/fixtures/vtest_10s_h264.mp4\"",
            &format!("url = \"{}\"", fixture("vtest_10s_h264.mp4").display()),
        )
        .replace(
            "[detector]\n",
            &format!(
                "[detector]\nmodel = \"{}\"\n",
                repo().join("models/nanodet_g_coco_416.onnx").display()
            ),
        );
    assert!(
        text.contains(&format!("mqtt://127.0.0.1:{port}")),
        "demo.toml changed shape"
    );
    text
}
