//! Camera faults end to end (issue 5, test 4): one real `edge-node` process
//! carrying several cameras at once, a real mosquitto, real RTSP servers
//! (`edge-node serve-rtsp` processes) and the bundled clip. Each fault must
//! show on that camera's retained status topic, and leave the other cameras
//! alone:
//!
//! - `good`: the clip, looped in real time; never leaves `streaming`;
//! - `restart`: its RTSP server is killed and started again on the same port
//!   (streaming → reconnecting → streaming, events resume);
//! - `stall`: RTSP over TCP (`rtspt://`) through a proxy in this test that
//!   stops forwarding the server's bytes but keeps both sockets open; the
//!   watchdog must fire (reconnecting, last_error names the watchdog), and
//!   once the proxy forwards again the camera streams again;
//! - `corrupt`: a copy of the clip with its index moved to the front (so it
//!   is playable), cut at 40 % and with bytes flipped inside the media data:
//!   the frames before the cut still give events, then `failed` with an
//!   error saying the file is truncated;
//! - `truncated`: the clip cut at 40 % as is (index at the end, now gone):
//!   `failed` with GStreamer's "no playable streams" and the path;
//! - `gone`: its RTSP server is killed for good; stays `reconnecting` with
//!   backoff and a last_error, while the node keeps running.
//!
//! Per camera the test prints "lost / sent": events the node stored in its
//! outbox (its last `seq`) against distinct seqs the subscriber received.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use edge_node::publish::outbox::Outbox;

const NODE_STATUS: &str = "t/test-district/test-box/status";

fn serve_rtsp(port: u16) -> Proc {
    Proc(
        edge_node()
            .args(["serve-rtsp", "--port", &port.to_string(), "--mount", "/cam"])
            .arg(fixture("vtest_10s_h264.mp4"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start edge-node serve-rtsp"),
    )
}

fn wait_port(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy to `127.0.0.1:upstream`. While `stalled` is set it stops
/// forwarding what the server sends (it holds the bytes, both sockets stay
/// open); the client's bytes always pass.
struct StallProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, gate: Option<Arc<AtomicBool>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while gate.as_ref().is_some_and(|g| g.load(Ordering::SeqCst)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn stall_proxy(upstream: u16) -> StallProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(AtomicBool::new(false));
    let gate = stalled.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            pump(client, server, None);
            pump(s2, c2, Some(gate.clone()));
        }
    });
    StallProxy { port, stalled }
}

/// The clip with its `moov` box moved before `mdat` (chunk offsets shifted),
/// so that a prefix of the file is still playable.
fn faststart(mp4: &[u8]) -> Vec<u8> {
    let mut boxes = Vec::new();
    let mut i = 0;
    while i + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[i..i + 4].try_into().unwrap()) as usize;
        assert!(size >= 8, "the fixture uses no 64-bit or open-ended boxes");
        boxes.push((mp4[i + 4..i + 8].to_vec(), i, size));
        i += size;
    }
    let find = |t: &[u8]| boxes.iter().find(|b| b.0 == t).unwrap().clone();
    let (_, mo, ms) = find(b"moov");
    let mut moov = mp4[mo..mo + ms].to_vec();
    fn shift(buf: &mut [u8], start: usize, end: usize, delta: u32) {
        let mut i = start;
        while i + 8 <= end {
            let size = u32::from_be_bytes(buf[i..i + 4].try_into().unwrap()) as usize;
            match &buf[i + 4..i + 8] {
                b"trak" | b"mdia" | b"minf" | b"stbl" => shift(buf, i + 8, i + size, delta),
                b"stco" => {
                    let n = u32::from_be_bytes(buf[i + 12..i + 16].try_into().unwrap()) as usize;
                    for k in 0..n {
                        let o = i + 16 + 4 * k;
                        let v = u32::from_be_bytes(buf[o..o + 4].try_into().unwrap());
                        buf[o..o + 4].copy_from_slice(&(v + delta).to_be_bytes());
                    }
                }
                b"co64" => panic!("64-bit chunk offsets are not handled"),
                _ => {}
            }
            i += size;
        }
    }
    let len = moov.len();
    shift(&mut moov, 8, len, len as u32);
    let mut out = Vec::with_capacity(mp4.len());
    for (t, o, s) in &boxes {
        if t == b"mdat" {
            out.extend_from_slice(&moov);
        }
        if t != b"moov" {
            out.extend_from_slice(&mp4[*o..o + s]);
        }
    }
    out
}

/// `corrupt.mp4` (faststart, cut at 40 %, bytes flipped in the media data)
/// and `truncated.mp4` (cut at 40 %, index lost).
fn corrupt_copies(dir: &Path) -> (PathBuf, PathBuf) {
    let clip = std::fs::read(fixture("vtest_10s_h264.mp4")).unwrap();
    let truncated = dir.join("truncated.mp4");
    std::fs::write(&truncated, &clip[..clip.len() * 4 / 10]).unwrap();
    let fast = faststart(&clip);
    let mut cut = fast[..fast.len() * 4 / 10].to_vec();
    // Flip every 7th byte of 4 KB, a fifth of the way into the media data
    // (the moov is ~1.3 KB at the front).
    let mid = cut.len() / 5;
    for b in cut[mid..mid + 4096].iter_mut().step_by(7) {
        *b ^= 0xff;
    }
    let corrupt = dir.join("corrupt.mp4");
    std::fs::write(&corrupt, &cut).unwrap();
    (corrupt, truncated)
}

/// True if `want` appears in `seen` in this order (not necessarily adjacent).
fn has_sequence(seen: &[String], want: &[&str]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|w| it.any(|s| s == w))
}

fn camera_events(msgs: &[Msg], camera: &str) -> Vec<serde_json::Value> {
    events(msgs)
        .into_iter()
        .filter(|e| e["camera"] == camera)
        .collect()
}

fn status_since(msgs: &[Msg], from: usize, camera: &str) -> Vec<String> {
    statuses(&msgs[from.min(msgs.len())..], camera)
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario: a single node run whose phases are asserted in order"
)]
fn camera_faults_show_on_their_status_and_spare_the_others() {
    let t0 = Instant::now();
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let (corrupt, truncated) = corrupt_copies(dir.path());

    let (restart_port, stall_port, gone_port) = (free_port(), free_port(), free_port());
    let mut restart_srv = serve_rtsp(restart_port);
    let _stall_srv = serve_rtsp(stall_port);
    let mut gone_srv = serve_rtsp(gone_port);
    for p in [restart_port, stall_port, gone_port] {
        wait_port(p);
    }
    let proxy = stall_proxy(stall_port);

    // Short watchdog and backoff so that faults show within seconds.
    let live = "detect_fps = 5\nwatchdog_s = 3\nbackoff_initial_s = 0.5\nbackoff_max_s = 2\n";
    let text = format!(
        r#"{head}
[[cameras]]
id = "good"
url = "{clip}"
detect_fps = 5
loop = true

[[cameras]]
id = "restart"
url = "rtsp://127.0.0.1:{restart_port}/cam"
{live}
[[cameras]]
id = "stall"
url = "rtspt://127.0.0.1:{proxy}/cam"
{live}
[[cameras]]
id = "corrupt"
url = "{corrupt}"
detect_fps = 5

[[cameras]]
id = "truncated"
url = "{truncated}"

[[cameras]]
id = "gone"
url = "rtsp://127.0.0.1:{gone_port}/cam"
{live}"#,
        head = PipelineToml::new(broker.port).build(),
        clip = fixture("vtest_10s_h264.mp4").display(),
        proxy = proxy.port,
        corrupt = corrupt.display(),
        truncated = truncated.display(),
    );
    let p = write(dir.path(), "p.toml", &text);
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);

    // Phase 1: every live camera streams, `good` and `restart` give events.
    sub.wait_for("all live cameras streaming", Duration::from_secs(60), |m| {
        ["good", "restart", "stall", "gone"]
            .iter()
            .all(|c| statuses(m, c).contains(&"streaming".into()))
            && !camera_events(m, "good").is_empty()
            && !camera_events(m, "restart").is_empty()
    });

    // Phase 2: the faults, all at once.
    let faults_at = sub.snapshot().len();
    let _ = gone_srv.0.kill();
    let _ = gone_srv.0.wait();
    let _ = restart_srv.0.kill();
    let _ = restart_srv.0.wait();
    proxy.stalled.store(true, Ordering::SeqCst);
    let m = sub.wait_for(
        "restart, stall and gone reconnecting",
        Duration::from_secs(30),
        |m| {
            ["restart", "stall", "gone"]
                .iter()
                .all(|c| status_since(m, faults_at, c).contains(&"reconnecting".into()))
        },
    );
    let stall_err = m[faults_at..]
        .iter()
        .filter(|x| x.topic.ends_with("/stall/status"))
        .map(|x| x.json())
        .find(|s| s["state"] == "reconnecting")
        .unwrap();
    let err = stall_err["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("watchdog"),
        "a stalled stream is reported as a watchdog stall: {stall_err}"
    );
    // Keep the stall over a second watchdog period: a reconnect attempt
    // through the stalled proxy (its RTSP handshake gets no answer) must
    // time out too, not hang the camera's supervisor.
    sub.wait_for("stall retried", Duration::from_secs(20), |m| {
        status_since(m, faults_at, "stall")
            .iter()
            .filter(|s| *s == "reconnecting")
            .count()
            >= 2
    });

    // Phase 3: the restarted server and the freed proxy bring their cameras back.
    let recover_at = sub.snapshot().len();
    let _restart_srv2 = serve_rtsp(restart_port);
    proxy.stalled.store(false, Ordering::SeqCst);
    sub.wait_for(
        "restart and stall streaming again, good and restart with new events",
        Duration::from_secs(60),
        |m| {
            let tail = &m[recover_at.min(m.len())..];
            statuses(tail, "restart").contains(&"streaming".into())
                && statuses(tail, "stall").contains(&"streaming".into())
                && !camera_events(tail, "restart").is_empty()
                && !camera_events(tail, "good").is_empty()
        },
    );
    sub.wait_for(
        "corrupt and truncated final",
        Duration::from_secs(30),
        |m| {
            ["corrupt", "truncated"].iter().all(|c| {
                last_status(m, c).is_some_and(|s| s["state"] == "failed" || s["state"] == "ended")
            })
        },
    );

    // `gone` is still retried, with backoff, while the node runs.
    let m = sub.snapshot();
    let gone_retries = status_since(&m, faults_at, "gone")
        .iter()
        .filter(|s| *s == "reconnecting")
        .count();
    let gone_last = last_status(&m, "gone").unwrap();
    assert_eq!(gone_last["state"], "reconnecting", "{gone_last}");
    assert!(gone_last["last_error"].is_string(), "{gone_last}");
    assert!(gone_retries >= 2, "gone retried {gone_retries} times");
    // `since` is when the outage began, not the latest retry (issue 14, 3).
    let gone_since: BTreeSet<String> = m[faults_at..]
        .iter()
        .filter(|x| x.topic.ends_with("/gone/status") && !x.payload.is_empty())
        .map(Msg::json)
        .filter(|s| s["state"] == "reconnecting")
        .map(|s| s["since"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        gone_since.len(),
        1,
        "every retry of one outage keeps its since: {gone_since:?}"
    );
    assert!(
        node.0.try_wait().unwrap().is_none(),
        "the node keeps running"
    );

    // Stop: SIGTERM, a clean exit well within the 30 s hard deadline, and
    // `stopped` on the node status. The exit status is 1 because two file
    // cameras failed (README: "1 when a camera failed").
    let stop_at = Instant::now();
    let status = node
        .terminate(Duration::from_secs(30))
        .expect("the node exits on SIGTERM");
    let stop_s = stop_at.elapsed().as_secs_f64();
    let logtext = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "exit {status:?}\n{logtext}");
    assert!(
        logtext.contains("failed cameras: corrupt, truncated") && stop_s < 20.0,
        "stopped in {stop_s:.1} s\n{logtext}"
    );
    assert!(!logtext.contains("panicked"), "{logtext}");
    let msgs = sub.wait_for("node stopped", Duration::from_secs(15), |m| {
        m.iter()
            .any(|x| x.topic == NODE_STATUS && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);

    // Status transitions, per camera.
    let st = |c: &str| statuses(&msgs, c);
    for c in ["good", "restart", "stall", "corrupt", "truncated", "gone"] {
        eprintln!(
            "{c}: {:?} last_error={}",
            st(c),
            last_status(&msgs, c).unwrap()["last_error"]
        );
    }
    let good = st("good");
    let (last, before) = good.split_last().unwrap();
    assert!(
        before.iter().all(|s| s == "starting" || s == "streaming"),
        "good is unaffected: {good:?}"
    );
    // A clean stop leaves no live camera saying it streams (issue 14, 1).
    assert_eq!(last, "stopped", "{good:?}");
    assert_eq!(st("gone").last().unwrap(), "stopped");
    assert!(has_sequence(
        &st("restart"),
        &["streaming", "reconnecting", "streaming"]
    ));
    assert!(has_sequence(
        &st("stall"),
        &["streaming", "reconnecting", "streaming"]
    ));
    assert!(has_sequence(&st("gone"), &["streaming", "reconnecting"]));
    assert!(
        !st("gone").contains(&"failed".into()),
        "live cameras never give up"
    );

    let corrupt_last = last_status(&msgs, "corrupt").unwrap();
    assert_eq!(corrupt_last["state"], "failed", "{corrupt_last}");
    let e = corrupt_last["last_error"].as_str().unwrap();
    assert!(
        e.contains("truncated") && e.contains("corrupt.mp4"),
        "corrupt: {e}"
    );
    assert!(
        corrupt_last["frames"].as_u64().unwrap() > 0,
        "{corrupt_last}"
    );
    assert!(has_sequence(&st("corrupt"), &["streaming", "failed"]));
    let trunc_last = last_status(&msgs, "truncated").unwrap();
    assert_eq!(trunc_last["state"], "failed", "{trunc_last}");
    let e = trunc_last["last_error"].as_str().unwrap();
    assert!(e.contains("truncated.mp4"), "truncated: {e}");

    // Lost / sent, per camera: the outbox's last seq against what arrived.
    let ob = Outbox::open(&dir.path().join("outbox"), 1 << 30).unwrap();
    assert!(ob.is_empty(), "the outbox is flushed on SIGTERM");
    let mut received: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events(&msgs) {
        received
            .entry(e["camera"].as_str().unwrap().to_string())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    for c in ["good", "restart", "stall", "corrupt", "truncated", "gone"] {
        let sent = ob.last_seq(c);
        let got = received.remove(c).unwrap_or_default();
        let uniq: BTreeSet<u64> = got.iter().copied().collect();
        let lost = (1..=sent).filter(|s| !uniq.contains(s)).count();
        eprintln!("fault {c}: messages lost {lost} / messages sent {sent}");
        assert_eq!(lost, 0, "{c}: seqs lost");
        assert!(
            uniq.iter().all(|&s| s <= sent),
            "{c}: seq above the stored last"
        );
        let mut seen = BTreeSet::new();
        let firsts: Vec<u64> = got.iter().copied().filter(|s| seen.insert(*s)).collect();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "{c}: events out of seq order"
        );
    }
    for c in ["good", "restart", "stall", "corrupt"] {
        assert!(ob.last_seq(c) > 0, "{c} produced events");
    }
    eprintln!(
        "camera faults test took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
