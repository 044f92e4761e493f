//! The browser harness (`tests/common/browser.rs`) against a real headless
//! Chromium: a page served from a loopback `TcpListener` with a form whose
//! button changes a text in JavaScript and a server-sent-events stream that
//! pushes a line one second after the page subscribes. The test types,
//! clicks, waits for both changes and saves a screenshot in
//! `target/test-artefacts/browser-smoke.png`, which it decodes and checks.

#[path = "common/browser.rs"]
mod browser;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use browser::Browser;
use serde_json::json;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>browser smoke</title>
<style>
  body { font: 18px sans-serif; margin: 40px; background: #fff; color: #111; }
  #greeting { font-size: 48px; font-weight: bold; color: rgb(0, 170, 85); }
  #live { font-size: 32px; color: rgb(200, 30, 30); }
</style>
</head>
<body>
<h1>edge-centre browser smoke</h1>
<form id="form">
  <label>Name <input id="name" name="name" autocomplete="off"></label>
  <button id="greet" type="submit">Greet</button>
</form>
<p id="greeting">nobody greeted yet</p>
<p>Live: <span id="live">waiting</span></p>
<script>
  document.getElementById("form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = document.getElementById("name").value;
    document.getElementById("greeting").textContent = "Hello, " + name + "!";
  });
  const events = new EventSource("/events");
  events.onmessage = (e) => {
    document.getElementById("live").textContent = e.data;
  };
</script>
</body>
</html>
"#;

/// The line the event stream pushes; it is in no page, so seeing it proves
/// the stream reached the page.
const PUSHED: &str = "camera 7 is back";

/// A tiny HTTP/1.1 server on 127.0.0.1: `/` the page, `/events` the stream
/// (one line after 1 s, then held open until the server stops).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    streams: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(AtomicUsize::new(0));
        let (stop2, streams2) = (stop.clone(), streams.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let (stop3, streams3) = (stop2.clone(), streams2.clone());
                std::thread::spawn(move || serve(conn, &stop3, &streams3));
            }
        });
        Server {
            port,
            stop,
            streams,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, stop: &AtomicBool, streams: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Skip the headers; no request here has a body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    match path {
        "/" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                PAGE.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(PAGE.as_bytes());
        }
        "/events" => {
            streams.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                  Cache-Control: no-cache\r\nConnection: close\r\n\r\n: hello\n\n",
            );
            std::thread::sleep(Duration::from_secs(1));
            let _ = conn.write_all(format!("data: {PUSHED}\n\n").as_bytes());
            // Hold the stream open (a comment every 200 ms) until the test
            // ends or the browser goes away, so EventSource does not reconnect.
            while !stop.load(Ordering::SeqCst) && conn.write_all(b": tick\n\n").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        _ => {
            let _ = conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

/// Pixels of the PNG within 40 of `rgb` on every channel.
fn pixels_near(png: &[u8], rgb: [u8; 3]) -> (u32, u32, usize) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("sane PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "screenshot is not in colour: {info:?}");
    let near = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 40))
        .count();
    (info.width, info.height, near)
}

#[test]
fn headless_chromium_types_clicks_and_sees_a_live_update() {
    let server = Server::start();
    let b = Browser::start();
    b.goto(&server.url("/"));
    assert_eq!(b.current_url(), server.url("/"));
    assert_eq!(
        b.execute_script("return document.title", &[]),
        json!("browser smoke")
    );
    assert_eq!(b.find_all("form input, form button").len(), 2);
    assert!(b.try_find("#no-such-thing").is_none());

    let name = b.wait_for("#name", Duration::from_secs(5));
    b.send_keys(&name, "Ada");
    assert_eq!(
        b.execute_script("return arguments[0].value", &[name.to_json()]),
        json!("Ada"),
        "typed text is the input's value"
    );
    let button = b.find("#greet");
    assert_eq!(b.attribute(&button, "type").as_deref(), Some("submit"));
    assert_eq!(b.attribute(&button, "data-missing"), None);
    assert_eq!(b.text(&button), "Greet");
    assert_eq!(b.text(&b.find("#greeting")), "nobody greeted yet");
    b.click(&button);
    b.wait_for_text("#greeting", "Hello, Ada!", Duration::from_secs(5));
    // The form's submit was handled in the page, not by a navigation.
    assert_eq!(b.current_url(), server.url("/"));

    let waited = Instant::now();
    b.wait_for_text("#live", PUSHED, Duration::from_secs(15));
    assert!(
        server.streams.load(Ordering::SeqCst) >= 1,
        "the page opened the event stream"
    );
    eprintln!("live update seen after {:?} more", waited.elapsed());

    let path = browser::artefacts_dir().join("browser-smoke.png");
    let png = b.screenshot_png(&path);
    assert_eq!(std::fs::read(&path).unwrap(), png);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let viewport = b.execute_script(
        "return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]",
        &[],
    );
    let (width, height, green) = pixels_near(&png, [0, 170, 85]);
    assert_eq!(
        json!([width, height]),
        viewport,
        "screenshot is the viewport"
    );
    assert_eq!(width, 1440, "--window-size=1440,900");
    // "Hello, Ada!" in 48 px bold green: a rendering, not a blank page.
    assert!(green > 500, "{green} green pixels in {}", path.display());
    let (_, _, red) = pixels_near(&png, [200, 30, 30]);
    assert!(
        red > 200,
        "{red} red pixels (the live line) in {}",
        path.display()
    );
}

#[test]
fn a_missing_driver_fails_naming_the_package() {
    let missing = Path::new("/nonexistent/chromedriver");
    let err =
        std::panic::catch_unwind(|| Browser::start_with(missing, Path::new(browser::CHROMIUM)))
            .err()
            .expect("no browser without a driver");
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("chromium-driver"), "{text}");
    let err = std::panic::catch_unwind(|| {
        Browser::start_with(
            Path::new(browser::CHROMEDRIVER),
            Path::new("/nonexistent/chromium"),
        )
    })
    .err()
    .expect("no browser without chromium");
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("/nonexistent/chromium not found")
            && text.contains("apt-get install chromium,"),
        "{text}"
    );
}

#[test]
fn a_failing_browser_test_leaves_a_screenshot() {
    let server = Server::start();
    let shot = browser::artefacts_dir().join(format!("browser-failure-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&shot);
    let url = server.url("/");
    let err = std::panic::catch_unwind(|| {
        let b = Browser::start();
        b.goto(&url);
        b.wait_for("#never-there", Duration::from_millis(300));
    })
    .expect_err("wait_for gives up");
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("#never-there") && text.contains(&url),
        "{text}"
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, _, green) = pixels_near(&png, [0, 170, 85]);
    assert_eq!(width, 1440);
    // The page as it was ("nobody greeted yet" in green), not a blank one.
    assert!(green > 500, "{green} green pixels in {}", shot.display());
    let _ = std::fs::remove_file(&shot);
}
