//! edge-centre with real parts: a real mosquitto on 127.0.0.1, real
//! `edge-node` processes on the bundled clip, and real `edge-centre`
//! processes storing into SQLite. The centre's binary is the workspace's
//! (`cargo test --workspace` builds it next to `edge-node`).

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mosquitto, Proc, Subscriber};
use edge_centre::config::StorePlan;

fn centre_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_edge-node")).with_file_name("edge-centre");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A centre config for the broker on `port`, storing under `dir`.
fn centre_conf(dir: &Path, id: &str, port: u16) -> PathBuf {
    centre_conf_with(dir, id, port, "path = \"centre.db\"")
}

/// The same with other `[store]` lines.
fn centre_conf_with(dir: &Path, id: &str, port: u16, store: &str) -> PathBuf {
    common::write(
        dir,
        &format!("{id}.toml"),
        &format!(
            "[centre]\nid = \"{id}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic_prefix = \"edge\"\n\
             [store]\n{store}\nbatch_wait_ms = 20\n[snapshots]\ndir = \"snapshots\"\n"
        ),
    )
}

/// Starts `edge-centre run` and waits until it has subscribed.
fn start_centre(conf: &Path, log: &Path) -> Proc {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let before = std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("subscribed")
        .count();
    let child = Command::new(centre_bin())
        .arg("run")
        .arg("--config")
        .arg(conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("start edge-centre");
    let p = Proc(child);
    wait_until("the centre subscribed", Duration::from_secs(20), || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("subscribed")
            .count()
            > before
    });
    p
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The demo's pipeline (its clip, detector and scene rules, which raise
/// alerts within the clip) as node `id` of `district`, publishing to the
/// broker on `port` under `edge`.
fn node_pipeline(dir: &Path, id: &str, district: &str, port: u16) -> PathBuf {
    let text = common::demo_pipeline_text(id, district, port);
    let d = dir.join(id);
    std::fs::create_dir_all(&d).unwrap();
    common::write(&d, "pipeline.toml", &text)
}

/// What the broker delivered: every (node, camera, seq) of `/events`.
fn truth(sub: &Subscriber) -> BTreeSet<(String, String, u64)> {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/events"))
        .map(|m| {
            let v = m.json();
            (
                v["node"].as_str().unwrap().to_string(),
                v["camera"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn store(dir: &Path) -> Box<dyn edge_centre::store::Store> {
    edge_centre::open_store(&StorePlan::Sqlite {
        path: dir.join("centre.db"),
    })
    .unwrap()
}

fn stored_keys(dir: &Path) -> Vec<(String, String, u64)> {
    store(dir).event_keys().unwrap()
}

/// Runs two nodes on the demo clip; returns when both have ended.
fn run_two_nodes(dir: &Path, mq: &Mosquitto, during: impl FnOnce()) {
    let a = node_pipeline(dir, "box-a", "d1", mq.port);
    let b = node_pipeline(dir, "box-b", "d2", mq.port);
    let mut na = common::run_node(&a, &dir.join("box-a.log"));
    let mut nb = common::run_node(&b, &dir.join("box-b.log"));
    during();
    for (n, name) in [(&mut na, "box-a"), (&mut nb, "box-b")] {
        let st = n
            .wait(Duration::from_secs(90))
            .unwrap_or_else(|| panic!("{name} did not end"));
        assert!(
            st.success(),
            "{name} failed: see {}",
            dir.join(format!("{name}.log")).display()
        );
    }
}

/// Fault 1: the centre is stopped for 30 s while two nodes publish, then
/// restarted: every event reaches the database exactly once (the broker
/// held them in the centre's persistent session).
#[test]
fn a_centre_stopped_for_30_s_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mq = common::mosquitto();
    let sub = Subscriber::start(mq.port, "edge/+/+/+/events");
    let conf = centre_conf(dir.path(), "centre-1", mq.port);
    let log = dir.path().join("centre.log");
    let mut centre = start_centre(&conf, &log);
    let stopped_at = std::cell::Cell::new(None);
    run_two_nodes(dir.path(), &mq, || {
        std::thread::sleep(Duration::from_secs(3));
        let st = centre
            .terminate(Duration::from_secs(20))
            .expect("the centre stops on SIGTERM");
        assert!(st.success(), "centre exit: {st:?}");
        stopped_at.set(Some(Instant::now()));
    });
    let before = stored_keys(dir.path()).len();
    let want = truth(&sub);
    assert!(
        want.len() > 20,
        "the nodes published only {} events",
        want.len()
    );
    let rest = Duration::from_secs(30).saturating_sub(stopped_at.get().unwrap().elapsed());
    std::thread::sleep(rest);
    let _centre = start_centre(&conf, &log);
    wait_until("every event stored", Duration::from_secs(60), || {
        stored_keys(dir.path()).len() >= want.len()
    });
    let got = stored_keys(dir.path());
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "an event stored twice");
    assert_eq!(
        unique, want,
        "stored events differ from what the broker delivered"
    );
    assert_eq!(store(dir.path()).gaps().unwrap(), vec![], "no seq gap");
    assert!(
        before < want.len(),
        "the outage did not hold anything back ({before} of {})",
        want.len()
    );
    let t = store(dir.path()).totals().unwrap();
    assert_eq!((t.nodes, t.cameras), (2, 2), "{t:?}");
    assert!(
        t.alerts >= 2,
        "the demo rules raise alerts on both nodes: {t:?}"
    );
    assert!(t.snapshots > 0, "{t:?}");
    assert_eq!(t.rejected, 0, "{t:?}");
    let files = walk(&dir.path().join("snapshots"));
    assert_eq!(files as u64, t.snapshots, "one file per stored snapshot");
    eprintln!(
        "fault 1: {} events published, {} stored before the outage, {} after, 0 duplicates; {t:?}",
        want.len(),
        before,
        got.len()
    );
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|x| x == "jpg"))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Fault 4: two centre instances share the subscription; one is killed
/// with SIGKILL mid-run and restarted: nothing lost, nothing stored twice.
#[test]
fn killing_one_of_two_centres_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mq = common::mosquitto();
    let sub = Subscriber::start(mq.port, "edge/+/+/+/events");
    let conf_a = centre_conf(dir.path(), "centre-a", mq.port);
    let conf_b = centre_conf(dir.path(), "centre-b", mq.port);
    let log_a = dir.path().join("centre-a.log");
    let mut a = start_centre(&conf_a, &log_a);
    let _b = start_centre(&conf_b, &dir.path().join("centre-b.log"));
    let mut a2 = None;
    run_two_nodes(dir.path(), &mq, || {
        std::thread::sleep(Duration::from_secs(5));
        a.0.kill().unwrap();
        a.0.wait().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        a2 = Some(start_centre(&conf_a, &log_a));
    });
    let want = truth(&sub);
    wait_until("every event stored", Duration::from_secs(60), || {
        stored_keys(dir.path()).len() >= want.len()
    });
    let got = stored_keys(dir.path());
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "an event stored twice");
    assert_eq!(unique, want);
    assert_eq!(store(dir.path()).gaps().unwrap(), vec![], "no seq gap");
    let a_log = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        a_log.contains("session_present=true"),
        "the restarted instance resumed its session:\n{a_log}"
    );
    eprintln!(
        "fault 4: {} events published, {} stored, 0 duplicates",
        want.len(),
        got.len()
    );
}

/// Fault 6: bad input on the wire is counted, logged with its topic and
/// skipped; the next good message is stored.
#[test]
fn bad_messages_are_recorded_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mq = common::mosquitto();
    let conf = centre_conf(dir.path(), "centre-1", mq.port);
    let log = dir.path().join("centre.log");
    let _centre = start_centre(&conf, &log);
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 10_000_000]).unwrap();
    let pubs: Vec<(&str, Vec<&str>)> = vec![
        (
            "edge/d1/box-1/cam-1/events",
            vec!["-m", "{\"schema\": \"edge-event/4\", \"seq\": "],
        ),
        (
            "edge/d1/box-1/cam-1/events",
            vec!["-m", "{\"schema\":\"edge-event/99\"}"],
        ),
        ("edge/d1/box-1/cam-1/weather", vec!["-m", "{}"]),
        (
            "edge/d1/box-1/cam-1/events",
            vec!["-f", big.to_str().unwrap()],
        ),
        ("edge/d1/box-1/cam-1/events", vec!["-m", EXAMPLE_EVENT]),
    ];
    for (topic, args) in &pubs {
        let st = Command::new("mosquitto_pub")
            .args([
                "-p",
                &mq.port.to_string(),
                "-q",
                "1",
                "-V",
                "mqttv5",
                "-t",
                topic,
            ])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "mosquitto_pub {topic}");
    }
    wait_until("the good event stored", Duration::from_secs(20), || {
        !stored_keys(dir.path()).is_empty()
    });
    let rejected = store(dir.path()).rejected().unwrap();
    let reasons: Vec<(&str, &str)> = rejected
        .iter()
        .map(|(t, r)| (t.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("edge/d1/box-1/cam-1/events", "not_json"),
            ("edge/d1/box-1/cam-1/events", "unknown_schema"),
            ("edge/d1/box-1/cam-1/weather", "outside_tree"),
            ("edge/d1/box-1/cam-1/events", "too_large"),
        ]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    for needle in [
        "message skipped: not JSON",
        "unknown schema \"edge-event/99\"",
        "topic=edge/d1/box-1/cam-1/weather",
        "payload of 10000000 bytes is over the limit",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
}

const EXAMPLE_EVENT: &str = r#"{"schema":"edge-event/4","id":"box-1.cam-1.19a.7","seq":1,"type":"new","node":"box-1","district":"d1","camera":"cam-1","label":"person","class_id":0,"track_id":7,"score":0.8,"top_score":0.8,"start_time":"2026-12-07T08:00:00.000Z","end_time":null,"frame_time":"2026-12-07T08:00:00.000Z","box":{"x1":0.1,"y1":0.1,"x2":0.2,"y2":0.3},"frame_size":{"width":640,"height":480},"snapshot":null,"snapshot_omitted":null,"current_zones":[],"entered_zones":[],"stationary":false,"alerts":[],"alert":null,"end_reason":null}"#;

/// The storage suite, against both databases: SQLite and a real
/// PostgreSQL cluster.
#[test]
fn both_databases_pass_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    edge_centre::store::contract::all(|| {
        n += 1;
        Box::new(
            edge_centre::store::sqlite::Sqlite::open(&dir.path().join(format!("c{n}.db"))).unwrap(),
        )
    });
    let pg = pg::PgCluster::start();
    let mut n = 0;
    edge_centre::store::contract::all(|| {
        n += 1;
        let name = format!("contract{n}");
        pg.create_db(&name);
        Box::new(edge_centre::store::postgres::Postgres::open(&pg.url(&name), None).unwrap())
    });
}

/// Fault 5: PostgreSQL is restarted while nodes publish. The centre retries
/// its commits with backoff, acknowledges nothing it has not committed, and
/// catches up: every event stored once.
#[test]
fn a_postgres_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg::PgCluster::start();
    let mq = common::mosquitto();
    let sub = Subscriber::start(mq.port, "edge/+/+/+/events");
    let conf = centre_conf_with(
        dir.path(),
        "centre-pg",
        mq.port,
        &format!("kind = \"postgres\"\nurl = \"{}\"", pg.url("edge")),
    );
    let log = dir.path().join("centre.log");
    let _centre = start_centre(&conf, &log);
    run_two_nodes(dir.path(), &mq, || {
        std::thread::sleep(Duration::from_secs(4));
        pg.stop();
        std::thread::sleep(Duration::from_secs(5));
        pg.start_again();
    });
    let want = truth(&sub);
    let mut db = edge_centre::store::postgres::Postgres::open(&pg.url("edge"), None).unwrap();
    use edge_centre::store::Store as _;
    wait_until("every event stored", Duration::from_secs(60), || {
        db.event_keys().unwrap().len() >= want.len()
    });
    let got = db.event_keys().unwrap();
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "an event stored twice");
    assert_eq!(unique, want);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("commit failed") && text.contains("database writable again"),
        "the outage was not seen, or not recovered from:\n{text}"
    );
    assert!(!text.contains("password"), "{text}");
    eprintln!(
        "fault 5: {} events published, {} stored, 0 duplicates",
        want.len(),
        got.len()
    );
}

/// A centre config that asks for gaps quickly (the defaults wait 30 s).
fn replay_centre_conf(dir: &Path, id: &str, port: u16) -> PathBuf {
    let conf = centre_conf(dir, id, port);
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("[replay]\ngrace_s = 2\nretry_s = 4\nscan_every_s = 0.5\n");
    std::fs::write(&conf, text).unwrap();
    conf
}

/// The demo pipeline on a looping clip (the node keeps publishing and
/// answering replay requests until stopped), with `extra` appended.
fn looping_node(dir: &Path, id: &str, district: &str, port: u16, extra: &str) -> PathBuf {
    let p = node_pipeline(dir, id, district, port);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("detect_fps = 5\n", "detect_fps = 5\nloop = true\n");
    assert!(text.contains("loop = true"), "demo.toml changed shape");
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

/// Each camera's stored `seq`, which must run 1, 2, 3, … with no hole
/// (minus the runs in `lost`, given as (node, camera, first, last)).
fn assert_contiguous(keys: &[(String, String, u64)], lost: &[(String, String, u64, u64)]) {
    let mut by: std::collections::BTreeMap<(&str, &str), Vec<u64>> = Default::default();
    for (n, c, s) in keys {
        by.entry((n, c)).or_default().push(*s);
    }
    for (n, c, a, b) in lost {
        by.entry((n, c)).or_default().extend(*a..=*b);
    }
    assert!(!by.is_empty());
    for ((n, c), mut seqs) in by {
        seqs.sort_unstable();
        let max = *seqs.last().unwrap();
        assert_eq!(
            seqs,
            (1..=max).collect::<Vec<_>>(),
            "{n}/{c}: seq not 1..={max} once each"
        );
    }
}

/// Waits (up to 3 minutes) until the centre has found at least one gap
/// and every gap it found is closed; on timeout, fails with the report and
/// the centre's log.
fn wait_for_gaps_closed(dir: &Path, log: &Path) {
    let end = Instant::now() + Duration::from_secs(180);
    loop {
        let report = store(dir).delivery(1000).unwrap();
        if !report.is_empty() && report.iter().all(|g| g.state != "open") {
            return;
        }
        assert!(
            Instant::now() < end,
            "gaps not found or still open: {report:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A mosquitto on `port` without persistence (restarting it loses what it
/// held).
fn plain_broker(port: u16) -> Mosquitto {
    common::mosquitto_with(
        port,
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
}

/// Stops the centre, lets the nodes publish into its queue at the broker,
/// restarts the broker WITHOUT persistence (the queue is gone), starts the
/// centre again; returns the new centre and broker.
fn lose_the_brokers_queue(
    conf: &Path,
    log: &Path,
    centre: &mut Proc,
    port: u16,
    mq: Mosquitto,
) -> (Proc, Mosquitto) {
    std::thread::sleep(Duration::from_secs(4));
    let st = centre
        .terminate(Duration::from_secs(20))
        .expect("centre stops");
    assert!(st.success(), "centre exit: {st:?}");
    std::thread::sleep(Duration::from_secs(4));
    drop(mq);
    let mq = plain_broker(port);
    (start_centre(conf, log), mq)
}

/// Fault 2: the broker is restarted without persistence while nodes
/// publish (the centre is away, so the broker holds their messages for it
/// and then drops them). The centre finds the gaps, asks the boxes, the
/// boxes replay from their delivered window, and every event is stored
/// once; the delivery report shows the gaps as recovered.
#[test]
fn a_broker_restart_without_persistence_is_recovered_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mq = plain_broker(port);
    let conf = replay_centre_conf(dir.path(), "centre-1", port);
    let log = dir.path().join("centre.log");
    let mut centre = start_centre(&conf, &log);
    let a = looping_node(dir.path(), "box-a", "d1", port, "");
    let b = looping_node(dir.path(), "box-b", "d2", port, "");
    let mut na = common::run_node(&a, &dir.path().join("box-a.log"));
    let mut nb = common::run_node(&b, &dir.path().join("box-b.log"));
    let (_centre, _mq) = lose_the_brokers_queue(&conf, &log, &mut centre, port, mq);
    // The nodes publish on (they must be running to answer): once the
    // gaps the restart made are found and closed, stop them; what they send
    // last comes without a gap, so a complete store means every gap was
    // recovered.
    wait_for_gaps_closed(dir.path(), &log);
    for n in [&mut na, &mut nb] {
        n.terminate(Duration::from_secs(30)).expect("node stops");
    }
    wait_until("every event stored", Duration::from_secs(60), || {
        store(dir.path()).gaps().unwrap().is_empty()
    });
    let mut s = store(dir.path());
    let report = s.delivery(1000).unwrap();
    let keys = s.event_keys().unwrap();
    assert_contiguous(&keys, &[]);
    let replayed: i64 = report.iter().map(|g| g.replayed).sum();
    assert!(replayed > 0, "nothing was replayed: {report:?}");
    assert!(
        report.iter().all(|g| g.lost == 0 && g.state != "lost"),
        "{report:?}"
    );
    assert!(report.iter().any(|g| g.state == "recovered"), "{report:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("replay requested"), "{text}");
    let missing: u64 = report.iter().map(|g| g.last - g.first + 1).sum();
    eprintln!(
        "fault 2: {} events stored once (seq 1..max per camera, no hole); {} gaps ({missing} seq) found, \
         {replayed} recovered by replay, 0 lost",
        keys.len(),
        report.len()
    );
}

/// Fault 3: the boxes' delivered window no longer holds the missing range
/// (kept 1 s only): each box answers that it no longer has them, and the
/// centre records the range as lost with the box's reason; no gap is left
/// open and nothing waits forever.
#[test]
fn a_range_the_box_no_longer_has_is_recorded_lost_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mq = plain_broker(port);
    let conf = replay_centre_conf(dir.path(), "centre-1", port);
    let log = dir.path().join("centre.log");
    let mut centre = start_centre(&conf, &log);
    let tiny = "[outbox]\nkeep_delivered_s = 1\n";
    let a = looping_node(dir.path(), "box-a", "d1", port, tiny);
    let mut na = common::run_node(&a, &dir.path().join("box-a.log"));
    let (_centre, _mq) = lose_the_brokers_queue(&conf, &log, &mut centre, port, mq);
    // The runs recorded lost stay missing from `events`; every gap row
    // must be closed while the node runs (it answers).
    wait_for_gaps_closed(dir.path(), &log);
    na.terminate(Duration::from_secs(30)).expect("node stops");
    let mut s = store(dir.path());
    let report = s.delivery(1000).unwrap();
    let lost: i64 = report.iter().map(|g| g.lost).sum();
    assert!(lost > 0, "{report:?}");
    assert!(
        report
            .iter()
            .filter(|g| g.state == "lost")
            .all(|g| g.reasons.as_deref().is_some_and(|r| r.contains("expired"))),
        "lost without the box's reason: {report:?}"
    );
    // Stored and lost together account for every seq.
    let lost_runs = lost_runs(dir.path());
    assert_contiguous(&s.event_keys().unwrap(), &lost_runs);
    eprintln!(
        "fault 3: {} gaps found, {lost} seq recorded lost (reason expired), {} replayed, none open",
        report.len(),
        report.iter().map(|g| g.replayed).sum::<i64>()
    );
}

/// The runs recorded lost.
fn lost_runs(dir: &Path) -> Vec<(String, String, u64, u64)> {
    store(dir)
        .lost()
        .unwrap()
        .into_iter()
        .map(|l| (l.node, l.camera, l.first, l.last))
        .collect()
}

/// The README's demo of the whole system (`scripts/run-demo.sh --once`,
/// which `scripts/demo.sh` runs after building): a node on the bundled clip
/// with its embedded broker and a centre on SQLite with the console; it ends
/// by itself once the centre has stored every event the node published.
#[test]
fn the_system_demo_runs_unattended() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::repo().join("scripts/run-demo.sh"))
        .arg("--once")
        .env("EDGE_DEMO_BIN", centre_bin().parent().unwrap())
        .env("EDGE_DEMO_OUT", dir.path().join("demo"))
        .env("EDGE_DEMO_BROKER_PORT", common::free_port().to_string())
        .env("EDGE_DEMO_CONSOLE_PORT", common::free_port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("login: operator    password: "), "{stdout}");
    let stored = stdout
        .lines()
        .find_map(|l| l.strip_prefix("the centre stored "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let (got, want) = stored
        .trim_end_matches(" events:")
        .split_once(" of ")
        .unwrap();
    assert_eq!(got, want, "{stdout}");
    assert!(want.parse::<u32>().unwrap() >= 10, "{stdout}");
    assert!(
        stdout.contains("alerts 3"),
        "the demo's three alerts: {stdout}"
    );
    assert!(stdout.contains("demo finished (--once)"), "{stdout}");
}
