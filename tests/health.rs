//! Health that means something (issue 14, problem 4): with the broker
//! down for longer than `broker_unhealthy_s` while the outbox grows,
//! `edge-node healthcheck` fails and names the broker, the log names the
//! broker URL and the failure in words, and systemd's watchdog pings (a fake
//! `NOTIFY_SOCKET` bound by this test) stop; when the broker is back they
//! resume and the health check passes again.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Every datagram the node sends to the fake notify socket, with its arrival time.
fn notify_socket(path: &Path) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let sock = UnixDatagram::bind(path).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            g.lock().unwrap().push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    });
    got
}

fn healthcheck(state: &Path) -> (i32, String) {
    let out = edge_node()
        .args(["healthcheck", "--file"])
        .arg(state.join("heartbeat"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn broker_down_fails_the_health_check_and_stops_the_watchdog() {
    let mut broker = PersistentBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sock = dir.path().join("notify.sock");
    let got = notify_socket(&sock);

    let head = PipelineToml::new(broker.port).build().replacen(
        "[node]\n",
        &format!(
            "[node]\nstate_dir = \"{}\"\nbroker_unhealthy_s = 2\n",
            state.display()
        ),
        1,
    );
    let text = format!(
        "{head}\n[[cameras]]\nid = \"cam1\"\nurl = \"{}\"\ndetect_fps = 5\nloop = true\n",
        fixture("vtest_10s_h264.mp4").display()
    );
    let p = write(dir.path(), "p.toml", &text);
    let log = dir.path().join("node.log");
    let sock_s = sock.display().to_string();
    let mut node = run_node_env(
        &p,
        &log,
        &[
            ("NOTIFY_SOCKET", sock_s.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );

    let pings = |since: Instant| {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(t, m)| *t >= since && m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
    };
    let t0 = Instant::now();
    wait_until("READY=1", Duration::from_secs(60), || {
        got.lock()
            .unwrap()
            .iter()
            .any(|(_, m)| m.starts_with("READY=1"))
    });
    wait_until(
        "watchdog pings while healthy",
        Duration::from_secs(30),
        || pings(t0) >= 3,
    );
    wait_until("a healthy heartbeat", Duration::from_secs(30), || {
        healthcheck(&state).0 == 0
    });

    // The broker goes away: past 2 s with events piling up, unhealthy.
    broker.stop();
    let down = Instant::now();
    wait_until("healthcheck fails", Duration::from_secs(60), || {
        healthcheck(&state).0 == 1
    });
    let (code, out) = healthcheck(&state);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("broker unreachable")
            && out.contains(&format!("broker mqtt://127.0.0.1:{}", broker.port)),
        "the health check names the broker: {out}"
    );
    // No ping once unhealthy: wait one ping period, then none may arrive.
    std::thread::sleep(Duration::from_secs(2));
    let quiet = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(pings(quiet), 0, "watchdog pinged while unhealthy");
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .any(|(t, m)| *t >= down && m.contains("STATUS=unhealthy: broker unreachable")),
        "systemd's status says why"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "broker mqtt://127.0.0.1:{}: connection refused",
            broker.port
        )),
        "the log names the broker and the failure in words"
    );

    // Back: healthy again, pings resume.
    broker.restart();
    let back = Instant::now();
    wait_until("healthy again", Duration::from_secs(60), || {
        healthcheck(&state).0 == 0
    });
    wait_until("pings resume", Duration::from_secs(30), || pings(back) >= 2);
    node.terminate(Duration::from_secs(20));
    assert!(
        got.lock().unwrap().iter().any(|(_, m)| m == "STOPPING=1"),
        "STOPPING=1 at a clean stop"
    );
}

/// The systemd unit is what the README says: notify with a watchdog, restart
/// forever, a hardened sandbox, and systemd itself accepts it.
#[test]
fn systemd_unit_is_valid_and_hardened() {
    let unit = std::fs::read_to_string(repo().join("packaging/edge-node.service")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "Restart=always",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=edge-node",
        "LimitNICE=+0",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(has(line), "the unit lacks {line:?}");
    }
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "the unit sets no WatchdogSec"
    );
    // systemd's own check, with ExecStart pointing at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("edge-node.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/edge-node", env!("CARGO_BIN_EXE_edge-node")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd; scripts/setup.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
}
