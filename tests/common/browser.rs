//! Headless Chromium for the system tests, driven over W3C WebDriver.
//!
//! `Browser::start()` runs `chromedriver` (Debian package `chromium-driver`)
//! on a free loopback port, opens a session with headless Chromium
//! (`chromium`) and speaks the WebDriver REST protocol to it: JSON over
//! HTTP/1.1 on a plain `TcpStream`, one request per connection. Dropping the
//! `Browser` deletes the session (Chromium exits) and kills chromedriver;
//! when the test is failing it first saves what the browser showed in
//! `target/test-artefacts/browser-failure-<pid>.png`.
//! A missing browser or driver fails the test with the package to install;
//! nothing is skipped.
//!
//! Include it from a test file with
//!
//! ```ignore
//! #[path = "common/browser.rs"]
//! mod browser;
//! ```
//!
//! (it needs only `serde_json`, `base64` and `std`, so the centre's tests can
//! use it without the node's harness in `common/mod.rs`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Ubuntu's `chromium-browser` (a snap wrapper) puts it.
pub const CHROMIUM_UBUNTU: &str = "/usr/bin/chromium-browser";
/// Where Debian's `chromium-driver` (and Ubuntu's `chromium-chromedriver`)
/// puts the driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Longest a single WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// An element of the current page, as the WebDriver session knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub id: String,
}

impl Element {
    /// The element as a script argument (`execute_script`'s `args`).
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}

/// A WebDriver error answer (`error` is the W3C code, e.g. `no such element`).
#[derive(Debug)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}: {}", self.status, self.error, self.message)
    }
}

/// `target/test-artefacts/` of this repository (screenshots and the like),
/// created on first use.
pub fn artefacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artefacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// chromedriver and one headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    /// chromedriver and Chromium from Debian's packages (Ubuntu's when
    /// Debian's browser is absent), headless, 1440×900.
    pub fn start() -> Browser {
        let chromium = [CHROMIUM, CHROMIUM_UBUNTU]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or(CHROMIUM);
        Self::start_with(Path::new(CHROMEDRIVER), Path::new(chromium))
    }

    /// Like `start`, with the programs at these paths. Panics naming the
    /// package to install when either is missing.
    pub fn start_with(chromedriver: &Path, chromium: &Path) -> Browser {
        assert!(
            chromedriver.is_file(),
            "{} not found: install Debian's chromium-driver package \
             (apt-get install chromium-driver, or run scripts/setup.sh)",
            chromedriver.display()
        );
        assert!(
            chromium.is_file(),
            "{} not found: install Debian's chromium package \
             (apt-get install chromium, or run scripts/setup.sh)",
            chromium.display()
        );
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        // From here on a panic kills the driver (Drop with no session).
        let mut me = Browser {
            driver,
            port,
            session: String::new(),
        };
        me.wait_for_driver();
        me.session = me.new_session(chromium);
        me
    }

    /// chromedriver answers `GET /status` with `ready: true` once it listens.
    fn wait_for_driver(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = request(self.port, "GET", "/status", None)
                && v["ready"] == true
            {
                return;
            }
            if let Ok(Some(st)) = self.driver.try_wait() {
                panic!("chromedriver exited at start ({st}) on port {}", self.port);
            }
            assert!(
                Instant::now() < end,
                "chromedriver did not answer on 127.0.0.1:{} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn new_session(&self, chromium: &Path) -> String {
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.to_str().expect("UTF-8 path"),
                        // --no-sandbox: the tests run as root, where
                        // Chromium's sandbox refuses to start.
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--window-size=1440,900",
                            "--disable-dev-shm-usage",
                        ],
                    },
                },
            },
        });
        let v = request(self.port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("new WebDriver session with {}: {e}", chromium.display()));
        v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {v}"))
            .to_string()
    }

    /// One command of this session: `path` is below `/session/{id}`.
    pub fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        request(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    /// Like `command`, panicking with what was asked on an error.
    fn must(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Loads `url` and waits for its `load` event.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(&json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        string(self.must("GET", "/url", None))
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": css });
        match self.command("POST", "/element", Some(&body)) {
            Ok(v) => Some(element(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css:?}: {e}"),
        }
    }

    /// The first element matching `css`; panics when there is none.
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element matches {css:?} on {}", self.current_url()))
    }

    /// Every element matching `css`, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({ "using": "css selector", "value": css });
        match self.must("POST", "/elements", Some(&body)) {
            Value::Array(items) => items.iter().map(element).collect(),
            v => panic!("find_all {css:?}: not a list: {v}"),
        }
    }

    /// Polls (every 50 ms) until `check` gives a value; panics naming
    /// `what` after `timeout`.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "waited {timeout:?} for {what} on {}",
                self.current_url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until an element matches `css`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        self.wait_until(&format!("an element matching {css:?}"), timeout, |b| {
            b.try_find(css)
        })
    }

    /// Waits until the first element matching `css` has exactly the text
    /// `expected` (looked up afresh at each poll, so a re-rendered element
    /// is fine).
    pub fn wait_for_text(&self, css: &str, expected: &str, timeout: Duration) -> Element {
        self.wait_until(&format!("{css:?} to read {expected:?}"), timeout, |b| {
            let el = b.try_find(css)?;
            match b.command("GET", &format!("/element/{}/text", el.id), None) {
                Ok(Value::String(t)) if t == expected => Some(el),
                _ => None,
            }
        })
    }

    /// The rendered text of an element (what a user sees).
    pub fn text(&self, el: &Element) -> String {
        string(self.must("GET", &format!("/element/{}/text", el.id), None))
    }

    pub fn click(&self, el: &Element) {
        self.must(
            "POST",
            &format!("/element/{}/click", el.id),
            Some(&json!({})),
        );
    }

    /// Types `text` into an element, as key presses.
    pub fn send_keys(&self, el: &Element, text: &str) {
        let body = json!({ "text": text });
        self.must("POST", &format!("/element/{}/value", el.id), Some(&body));
    }

    /// An attribute as written in the document (`None` when absent). A
    /// form field's current value is its `value` property: use
    /// `execute_script("return arguments[0].value", ..)`.
    pub fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        let v = self.must("GET", &format!("/element/{}/attribute/{name}", el.id), None);
        v.as_str().map(str::to_string)
    }

    /// Runs `script` as a function body in the page (`arguments[i]` are
    /// `args`; pass `Element::to_json` for elements) and returns its result.
    pub fn execute_script(&self, script: &str, args: &[Value]) -> Value {
        let body = json!({ "script": script, "args": args });
        self.must("POST", "/execute/sync", Some(&body))
    }

    /// Saves a PNG of the viewport at `path` (folders created) and returns
    /// its bytes.
    pub fn screenshot_png(&self, path: &Path) -> Vec<u8> {
        let b64 = string(self.must("GET", "/screenshot", None));
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failing test leaves a picture of what the browser showed.
        if std::thread::panicking() && !self.session.is_empty() {
            let path = artefacts_dir().join(format!("browser-failure-{}.png", std::process::id()));
            if let Ok(Value::String(b64)) = self.command("GET", "/screenshot", None)
                && let Ok(png) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())
                && std::fs::write(&path, png).is_ok()
            {
                eprintln!("browser: screenshot at failure: {}", path.display());
            }
        }
        if !self.session.is_empty() {
            // Chromium exits with its session.
            let _ = request(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        v => panic!("expected a string from WebDriver, got {v}"),
    }
}

fn element(v: &Value) -> Element {
    let id = v[ELEMENT_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("not an element reference: {v}"));
    Element { id: id.to_string() }
}

/// One WebDriver request to chromedriver on 127.0.0.1:`port`: the `value`
/// of a success answer, or the W3C error. Transport failures are errors
/// with `status` 0.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, WebDriverError> {
    let transport = |e: std::io::Error| WebDriverError {
        status: 0,
        error: "transport".into(),
        message: format!("{method} {path} on 127.0.0.1:{port}: {e}"),
    };
    let (status, bytes) = http(port, method, path, body).map_err(transport)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| WebDriverError {
        status,
        error: "not JSON".into(),
        message: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
    })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let text = |k: &str| value[k].as_str().unwrap_or_default().to_string();
    Err(WebDriverError {
        status,
        error: text("error"),
        message: text("message"),
    })
}

/// HTTP/1.1, one request per connection (`Connection: close`): the status
/// and the body, read by `Content-Length`, chunked, or to the end.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    let mut r = BufReader::new(stream);
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| bad(format!("{line:?}")))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                break;
            }
            let start = out.len();
            out.resize(start + size, 0);
            r.read_exact(&mut out[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, out))
}
