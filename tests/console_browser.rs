//! The operators' console in a real browser, with real parts on 127.0.0.1:
//! a mosquitto, the `edge-centre` binary (SQLite, console on a free port,
//! an operator and a viewer made with its command line), headless Chromium
//! over WebDriver, and — started only once the browser sits on the live
//! queue — a real `edge-node` on the demo clip, plus a camera whose RTSP
//! server does not exist.
//!
//! The operator sees the node's first incident appear without a reload,
//! the unacknowledged count rise, opens the object (its snapshot loads),
//! acknowledges (name shown, count falls), filters, and visits Cameras
//! (the dead camera first and marked), a camera, Search, Counts and
//! Delivery; a viewer, in a fresh browser, cannot acknowledge. Every page
//! is saved as `target/test-artefacts/console/<page>.png` for people to
//! look at.
//!
//! Needs `target/release/edge-centre` next to `edge-node`:
//! `cargo build --release -p edge-centre` first.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use browser::Browser;
use common::Proc;
use serde_json::Value;

/// Generous: the CI machine has two busy cores.
const T: Duration = Duration::from_secs(60);
const OPERATOR: (&str, &str) = ("olga", "olga-secret-1");
const VIEWER: (&str, &str) = ("vic", "vic-secret-1");

fn centre_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_edge-node")).with_file_name("edge-centre");
    assert!(
        p.exists(),
        "{} is missing: cargo build --release -p edge-centre",
        p.display()
    );
    p
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `edge-centre user add` with the password in the environment.
fn add_user(conf: &Path, name: &str, role: &str, password: &str) {
    let out = Command::new(centre_bin())
        .args(["user", "add", "--name", name, "--role", role])
        .args(["--password-env", "CONSOLE_PW", "--config"])
        .arg(conf)
        .env("CONSOLE_PW", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The centre on SQLite with its console on a free loopback port; returns
/// it and the console's base URL.
fn start_centre(dir: &Path, mqtt: u16) -> (Proc, String) {
    let http = common::free_port();
    let conf = common::write(
        dir,
        "centre.toml",
        &format!(
            "[centre]\nid = \"centre-ui\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\ntopic_prefix = \"edge\"\n\
             [store]\npath = \"centre.db\"\nbatch_wait_ms = 20\n[snapshots]\ndir = \"snapshots\"\n\
             [console]\nlisten = \"127.0.0.1:{http}\"\nsession_hours = 1\n"
        ),
    );
    add_user(&conf, OPERATOR.0, "operator", OPERATOR.1);
    add_user(&conf, VIEWER.0, "viewer", VIEWER.1);
    let log = dir.join("centre.log");
    let child = Command::new(centre_bin())
        .arg("run")
        .arg("--config")
        .arg(&conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start edge-centre");
    let p = Proc(child);
    wait_until("the centre subscribed and listening", T, || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        l.contains("subscribed") && l.contains("console listening")
    });
    (p, format!("http://127.0.0.1:{http}"))
}

/// The demo's pipeline (clip, detector, scene rules that raise alerts
/// within the clip) as node `box-a` of `d1`, plus camera `gate` whose RTSP
/// server is a closed port.
fn node_pipeline(dir: &Path, mqtt: u16) -> PathBuf {
    let mut text = common::demo_pipeline_text("box-a", "d1", mqtt);
    text.push_str(&format!(
        "\n[[cameras]]\nid = \"gate\"\nurl = \"rtsp://127.0.0.1:{}/x\"\nbackoff_initial_s = 0.5\nbackoff_max_s = 2\n",
        common::free_port()
    ));
    let d = dir.join("box-a");
    std::fs::create_dir_all(&d).unwrap();
    common::write(&d, "pipeline.toml", &text)
}

fn shot(b: &Browser, page: &str) {
    let path = browser::artefacts_dir().join(format!("console/{page}.png"));
    let png = b.screenshot_png(&path);
    assert!(png.len() > 1000, "{page}: a {} byte screenshot", png.len());
    eprintln!("screenshot: {}", path.display());
}

fn js(b: &Browser, script: &str) -> Value {
    b.execute_script(script, &[])
}

fn unacked(b: &Browser) -> i64 {
    let t = b.text(&b.find("#unacked-count"));
    t.trim()
        .parse()
        .unwrap_or_else(|_| panic!("#unacked-count reads {t:?}"))
}

fn alert_count(b: &Browser) -> usize {
    b.find_all("li.alert-item").len()
}

/// Logs in through the form (a screenshot of it when `picture`) and waits
/// for the queue with its live stream connected.
fn login(b: &Browser, base: &str, (name, password): (&str, &str), picture: bool) {
    b.goto(&format!("{base}/login"));
    let field = b.wait_for("#login-name", T);
    if picture {
        shot(b, "login");
    }
    b.send_keys(&field, name);
    b.send_keys(&b.find("#login-password"), password);
    b.click(&b.find("#login-submit"));
    b.wait_until("the alerts page after logging in", T, |b| {
        b.current_url().ends_with("/alerts").then_some(())
    });
    b.wait_for("#live.on", T);
    assert!(b.text(&b.find("#user")).contains(name));
}

/// What the camera `camera` of the API shows (`streaming`, `ended`, ...).
fn camera_state(b: &Browser, camera: &str) -> Option<String> {
    let v = b.execute_script(
        "return fetch('/api/cameras', {credentials: 'same-origin'}).then(r => r.json())\
         .then(j => (j.cameras.find(c => c.camera === arguments[0]) || {}).shown || null);",
        &[Value::from(camera)],
    );
    v.as_str().map(str::to_string)
}

/// Steps 2 and 3: the queue is empty and live; the node starts; its first
/// incident appears without a reload and the count rises. Returns the
/// node (it runs until dropped: the dead camera keeps retrying).
fn live_alert_arrives(b: &Browser, base: &str, dir: &Path, mqtt: u16) -> Proc {
    login(b, base, OPERATOR, true);
    assert_eq!(alert_count(b), 0, "a fresh centre has no incidents");
    assert_eq!(unacked(b), 0);
    let empty = b.text(&b.find("#no-alerts"));
    assert!(empty.contains("appear here"), "{empty}");
    js(
        b,
        "window.__marker = 'loaded-before-the-node'; return null;",
    );
    let started = Instant::now();
    let node = common::run_node(&node_pipeline(dir, mqtt), &dir.join("box-a.log"));
    b.wait_for("li.alert-item", Duration::from_secs(180));
    eprintln!(
        "first incident shown live {:.1} s after the node started",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        js(b, "return window.__marker || null;"),
        Value::from("loaded-before-the-node"),
        "the page was reloaded: the incident did not arrive live"
    );
    assert!(b.try_find("#no-alerts").is_none(), "the empty note stayed");
    b.wait_until("the unacknowledged count to rise", T, |b| {
        (unacked(b) > 0).then_some(())
    });
    // The clip lasts 10 s: wait for its end so no incident arrives
    // between reading the count and acknowledging.
    b.wait_until("the clip's camera to end", Duration::from_secs(180), |b| {
        (camera_state(b, "vtest").as_deref() == Some("ended")).then_some(())
    });
    wait_until("the queue to catch up with the count", T, || {
        alert_count(b) as i64 >= unacked(b)
    });
    eprintln!(
        "{} incidents shown live, {} unacknowledged; the clip ended {:.1} s after the node started",
        alert_count(b),
        unacked(b),
        started.elapsed().as_secs_f64()
    );
    shot(b, "alerts");
    node
}

/// Step 4: an incident's object page shows its snapshot, loaded.
fn object_page(b: &Browser) {
    let link = b.find("li.alert-item a.object-link");
    let href = b.attribute(&link, "href").unwrap();
    b.click(&link);
    b.wait_until("the object page", T, |b| {
        b.current_url().contains("/objects/").then_some(())
    });
    assert!(b.current_url().ends_with(&href), "{href}");
    b.wait_for("#lifecycle li", T);
    let img = b.wait_for("img.snap.full", T);
    js(
        b,
        "document.querySelector('img.snap.full').scrollIntoView(); return null;",
    );
    b.wait_until("the snapshot to load", T, |b| {
        let w = b.execute_script(
            "return arguments[0].complete ? arguments[0].naturalWidth : 0;",
            &[img.to_json()],
        );
        (w.as_u64().unwrap_or(0) > 0).then_some(())
    });
    js(b, "window.scrollTo(0, 0); return null;");
    shot(b, "object");
}

/// Step 5: acknowledging marks the item with the operator's name and the
/// count falls.
fn acknowledge(b: &Browser, base: &str) {
    b.goto(&format!("{base}/alerts"));
    b.wait_for("#live.on", T);
    let before = unacked(b);
    assert!(before > 0);
    let id = b
        .attribute(&b.find("li.alert-item.open"), "data-alert-id")
        .unwrap();
    let sel = format!("li.alert-item[data-alert-id=\"{id}\"]");
    b.click(&b.find(&format!("{sel} button.ack")));
    b.wait_for(&format!("{sel}.acked .acked-by"), T);
    let kinds = js(
        b,
        "return [...document.querySelectorAll('li.alert-item .kind')].map(k => k.textContent);",
    );
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .all(|k| !k.as_str().unwrap().contains('_')),
        "kinds read as words: {kinds}"
    );
    let said = b.text(&b.find(&format!("{sel} .acked-by")));
    assert!(
        said.contains("acknowledged by") && said.contains(OPERATOR.0),
        "{said:?}"
    );
    assert!(b.try_find(&format!("{sel} button.ack")).is_none());
    b.wait_until("the count to fall", T, |b| {
        (unacked(b) == before - 1).then_some(())
    });
    // And it stays so after a reload (stored, with who).
    b.goto(&format!("{base}/alerts"));
    let said = b.text(&b.wait_for(&format!("{sel}.acked .acked-by"), T));
    assert!(said.contains(OPERATOR.0), "{said:?}");
    assert_eq!(unacked(b), before - 1);
}

/// Step 6: filtering by kind leaves only that kind.
fn filter(b: &Browser) {
    let kinds: Vec<String> = b
        .find_all("li.alert-item")
        .iter()
        .map(|e| b.attribute(e, "data-kind").unwrap())
        .collect();
    let kind = kinds[0].clone();
    let field = b.find("#filter-kind");
    b.send_keys(&field, &kind);
    b.click(&b.find("#filter-submit"));
    b.wait_until("the filtered queue", T, |b| {
        b.current_url()
            .contains(&format!("kind={kind}"))
            .then_some(())
    });
    b.wait_for("#live.on", T);
    let shown: Vec<String> = b
        .find_all("li.alert-item")
        .iter()
        .map(|e| b.attribute(e, "data-kind").unwrap())
        .collect();
    let want = kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(shown.len(), want, "{kind}: {shown:?} of {kinds:?}");
    assert!(shown.iter().all(|k| *k == kind), "{shown:?}");
    eprintln!(
        "filter kind={kind}: {} of {} incidents",
        shown.len(),
        kinds.len()
    );
    shot(b, "alerts-filtered");
}

/// Step 7: Cameras (the dead camera first and marked), a camera, Search.
fn cameras_and_search(b: &Browser, base: &str) {
    b.click(&b.find("#nav-cameras"));
    let gate = b.wait_for(".camera-row[data-camera=\"box-a/gate\"]", T);
    let class = b.attribute(&gate, "class").unwrap();
    assert!(class.contains("broken"), "{class}");
    let rows = b.find_all(".camera-row");
    let broken: Vec<bool> = rows
        .iter()
        .map(|r| b.attribute(r, "class").unwrap().contains("broken"))
        .collect();
    assert!(broken[0], "a broken camera comes first: {broken:?}");
    assert!(
        broken.windows(2).all(|w| w[0] || !w[1]),
        "broken ones first: {broken:?}"
    );
    let state = b.text(&b.find(".camera-row[data-camera=\"box-a/gate\"] .state"));
    assert_ne!(state, "streaming");
    let summary = b.text(&b.find("#camera-summary"));
    assert!(summary.contains("need attention"), "{summary}");
    shot(b, "cameras");

    b.click(&b.find(".camera-row[data-camera=\"box-a/vtest\"] a"));
    b.wait_for(".event-row", T);
    assert!(b.current_url().ends_with("/cameras/box-a/vtest"));
    assert!(
        b.try_find("table.cameras th").is_some(),
        "the state has column names"
    );
    shot(b, "camera");

    b.goto(&format!("{base}/search"));
    b.send_keys(&b.wait_for("#filter-camera", T), "vtest");
    b.send_keys(&b.find("#filter-kind"), "new");
    b.click(&b.find("#filter-submit"));
    b.wait_until("the search results", T, |b| {
        b.current_url().contains("kind=new").then_some(())
    });
    let rows = js(
        b,
        "return [...document.querySelectorAll('.event-row')]\
         .map(r => r.cells[1].textContent + ' ' + r.cells[5].textContent);",
    );
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty(), "the clip's objects began");
    assert!(
        rows.iter().all(|r| r == "new vtest"),
        "only vtest's new events: {rows:?}"
    );
    shot(b, "search");
}

/// Step 7 continued: Counts and Delivery.
fn counts_and_delivery(b: &Browser) {
    b.click(&b.find("#nav-counts"));
    b.wait_for("#count-cameras", T);
    if let Some(a) = b.try_find("#count-cameras a") {
        b.click(&a);
        b.wait_until("a camera's counts", T, |b| {
            b.current_url().contains("camera=").then_some(())
        });
    }
    shot(b, "counts");
    b.click(&b.find("#nav-delivery"));
    let s = b.text(&b.wait_for("#delivery-summary", T));
    eprintln!("delivery: {s}");
    shot(b, "delivery");
}

/// Step 7, last: a viewer, in a fresh browser, has no ack button, and the
/// centre refuses the request made by hand.
fn viewer_cannot_acknowledge(base: &str) {
    let b = Browser::start();
    login(&b, base, VIEWER, false);
    assert!(alert_count(&b) > 0);
    assert!(
        b.try_find("button.ack").is_none(),
        "a viewer sees Acknowledge"
    );
    let id = b
        .attribute(&b.find("li.alert-item.open"), "data-alert-id")
        .unwrap();
    let status = b.execute_script(
        "return fetch('/alerts/' + encodeURIComponent(arguments[0]) + '/ack', {method: 'POST', \
         credentials: 'same-origin', headers: {'X-CSRF-Token': document.body.dataset.csrf}})\
         .then(r => r.status);",
        &[Value::from(id.as_str())],
    );
    assert_eq!(status, Value::from(403), "a viewer's acknowledgement");
    b.goto(&format!("{base}/alerts"));
    let item = b.wait_for(&format!("li.alert-item[data-alert-id=\"{id}\"]"), T);
    assert!(b.attribute(&item, "class").unwrap().contains("open"));
}

#[test]
fn the_console_in_a_browser_follows_a_real_node() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mq = common::mosquitto();
    let (_centre, base) = start_centre(dir.path(), mq.port);
    let b = Browser::start();
    let _node = live_alert_arrives(&b, &base, dir.path(), mq.port);
    object_page(&b);
    acknowledge(&b, &base);
    filter(&b);
    cameras_and_search(&b, &base);
    counts_and_delivery(&b);
    drop(b);
    viewer_cannot_acknowledge(&base);
    eprintln!("console in a browser: {:.1} s", t0.elapsed().as_secs_f64());
}
