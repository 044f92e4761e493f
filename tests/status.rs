//! The camera status tells the truth (issue 14, problems 2, 3 and 6): one
//! real `edge-node` with a real mosquitto, a real RTSP server
//! (`edge-node serve-rtsp`) and a small HTTP server in this test.
//!
//! - `live`: the RTSP camera. Its retained status is refreshed every
//!   `status_interval_s` with figures that move (frames, fps, last frame
//!   age), names the stream (codec, decoder, size); when its server is
//!   killed it goes `reconnecting` with one `since` and one `outage_since`
//!   for the whole outage, a growing retry count and a worded error; when
//!   the server is back it streams again and `reconnects` is 1.
//! - `refused`, `notfound`, `http404`, `notvideo`: cameras that cannot work,
//!   each with an error naming the URL (password masked), host and port and
//!   what failed, and the library's text in `detail`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

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

/// A tiny HTTP/1.0 server: `/notvideo.mp4` is text, anything else is 404.
fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let reply = if req.starts_with("GET /notvideo.mp4") {
                let body = "hello, this is no video\n".repeat(200);
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

fn camera_statuses(msgs: &[Msg], camera: &str) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m.topic.ends_with(&format!("/{camera}/status")) && !m.payload.is_empty())
        .map(Msg::json)
        .collect()
}

fn error_of(msgs: &[Msg], camera: &str) -> Option<(String, String)> {
    let s = last_status(msgs, camera)?;
    Some((
        s["last_error"].as_str()?.to_string(),
        s["detail"].as_str().unwrap_or_default().to_string(),
    ))
}

#[test]
fn camera_status_is_live_and_its_errors_are_worded() {
    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let rtsp_port = free_port();
    let mut srv = serve_rtsp(rtsp_port);
    wait_port(rtsp_port);
    let http = http_server();
    let closed = free_port();

    let live = "detect_fps = 5\nwatchdog_s = 3\nbackoff_initial_s = 0.5\nbackoff_max_s = 1\n";
    let head = PipelineToml::new(broker.port).build().replacen(
        "[node]\n",
        "[node]\nstatus_interval_s = 1\n",
        1,
    );
    let text = format!(
        r#"{head}
[[cameras]]
id = "live"
url = "rtsp://127.0.0.1:{rtsp_port}/cam"
{live}
[[cameras]]
id = "refused"
url = "rtsp://admin:hunter2@127.0.0.1:{closed}/stream1"
{live}
[[cameras]]
id = "notfound"
url = "rtsp://127.0.0.1:{rtsp_port}/nope"
{live}
[[cameras]]
id = "http404"
url = "http://127.0.0.1:{http}/missing.mp4"
{live}
[[cameras]]
id = "notvideo"
url = "http://127.0.0.1:{http}/notvideo.mp4"
{live}"#
    );
    let p = write(dir.path(), "p.toml", &text);
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);

    // Streaming, refreshed with live figures.
    let m = sub.wait_for(
        "3 streaming refreshes of live",
        Duration::from_secs(60),
        |m| {
            camera_statuses(m, "live")
                .iter()
                .filter(|s| s["state"] == "streaming" && s["fps_analysed"].as_f64() > Some(0.0))
                .count()
                >= 3
        },
    );
    check_streaming(&m);

    // The broken cameras, each worded.
    let m = sub.wait_for(
        "errors of the broken cameras",
        Duration::from_secs(60),
        |m| {
            ["refused", "notfound", "http404", "notvideo"]
                .iter()
                .all(|c| error_of(m, c).is_some())
        },
    );
    check_worded_errors(&m, closed, rtsp_port, http);

    // The RTSP server dies: one outage, one since, a growing retry count.
    let cut = m.len();
    drop(srv);
    let m = sub.wait_for("3 reconnecting refreshes", Duration::from_secs(60), |m| {
        camera_statuses(&m[cut..], "live")
            .iter()
            .filter(|s| s["state"] == "reconnecting")
            .count()
            >= 3
            && camera_statuses(&m[cut..], "live")
                .iter()
                .any(|s| s["retry_attempt"].as_u64() >= Some(3))
    });
    check_outage(&m[cut..], rtsp_port);

    // Back: streaming, the outage is over.
    srv = serve_rtsp(rtsp_port);
    wait_port(rtsp_port);
    let cut = sub.snapshot().len();
    let m = sub.wait_for("live streams again", Duration::from_secs(60), |m| {
        camera_statuses(&m[cut..], "live")
            .iter()
            .any(|s| s["state"] == "streaming")
    });
    let back = camera_statuses(&m[cut..], "live")
        .into_iter()
        .find(|s| s["state"] == "streaming")
        .unwrap();
    assert_eq!(back["outage_since"], Value::Null);
    assert_eq!(back["retry_attempt"], 0);
    assert_eq!(back["reconnects"], 1);

    node.terminate(Duration::from_secs(20));
    drop(srv);
    let all = sub.snapshot();
    schemas().validate_all(
        &all.into_iter()
            .filter(|m| m.topic.ends_with("/status") && !m.payload.is_empty())
            .collect::<Vec<_>>(),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2"), "a camera password in the log");
}

fn check_streaming(m: &[Msg]) {
    let streaming: Vec<Value> = camera_statuses(m, "live")
        .into_iter()
        .filter(|s| s["state"] == "streaming")
        .collect();
    let frames: Vec<u64> = streaming
        .iter()
        .map(|s| s["frames"].as_u64().unwrap())
        .collect();
    assert!(
        frames.windows(2).all(|w| w[0] < w[1]),
        "frames must move while streaming: {frames:?}"
    );
    let since: Vec<&str> = streaming
        .iter()
        .map(|s| s["since"].as_str().unwrap())
        .collect();
    assert!(
        since.windows(2).all(|w| w[0] == w[1]),
        "one since while streaming: {since:?}"
    );
    let last = streaming.last().unwrap();
    assert!(last["fps_in"].as_f64().unwrap() > 1.0, "{last}");
    assert!(last["fps_analysed"].as_f64().unwrap() > 1.0, "{last}");
    assert!(last["last_frame_age_s"].as_f64().unwrap() < 3.0, "{last}");
    assert_eq!(last["stream"]["codec"], "h264", "{last}");
    assert!(
        last["stream"]["decoder"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{last}"
    );
    assert_eq!(
        (
            last["stream"]["width"].as_u64(),
            last["stream"]["height"].as_u64()
        ),
        (Some(768), Some(576)),
        "{last}"
    );
    assert_eq!(last["outage_since"], Value::Null);
    assert_eq!(last["reconnects"], 0);
}

fn check_worded_errors(m: &[Msg], closed: u16, rtsp_port: u16, http: u16) {
    let (e, d) = error_of(m, "refused").unwrap();
    assert_eq!(
        e,
        format!(
            "rtsp://***@127.0.0.1:{closed}/stream1: connection refused by 127.0.0.1:{closed}: nothing listens on that port"
        )
    );
    assert!(
        d.contains("Could not open resource"),
        "detail keeps the library text: {d}"
    );
    let (e, d) = error_of(m, "notfound").unwrap();
    assert!(
        e.contains(&format!("stream not found at 127.0.0.1:{rtsp_port} (404)")),
        "{e}"
    );
    assert!(d.contains("404"), "{d}");
    let (e, _) = error_of(m, "http404").unwrap();
    assert!(
        e.starts_with(&format!(
            "http://127.0.0.1:{http}/missing.mp4: stream not found at 127.0.0.1:{http} (404)"
        )),
        "{e}"
    );
    let (e, _) = error_of(m, "notvideo").unwrap();
    assert!(e.contains("not a video"), "{e}");
}

fn check_outage(m: &[Msg], rtsp_port: u16) {
    let down: Vec<Value> = camera_statuses(m, "live")
        .into_iter()
        .filter(|s| s["state"] == "reconnecting")
        .collect();
    let one = |k: &str| {
        let v: Vec<&Value> = down.iter().map(|s| &s[k]).collect();
        assert!(
            v.windows(2).all(|w| w[0] == w[1]),
            "{k} must not change within one outage: {v:?}"
        );
    };
    one("since");
    one("outage_since");
    assert!(down.iter().all(|s| s["reconnects"] == 1), "{down:?}");
    let outage: Vec<f64> = down
        .iter()
        .map(|s| s["outage_s"].as_f64().unwrap())
        .collect();
    assert!(outage.windows(2).all(|w| w[0] <= w[1]), "{outage:?}");
    let last = down.last().unwrap();
    assert!(
        last["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{rtsp_port}")),
        "the error names host and port: {last}"
    );
}
