//! Camera errors worded for people.
//!
//! GStreamer says "Could not open resource for reading and writing. (Failed
//! to connect. (Generic error))" for a refused port, an unknown host and a
//! camera that does not answer alike, without the URL. [`Fault`] turns a
//! library error into one line an operator can act on: the camera's URL
//! (password masked), the host and port, and what failed (connection
//! refused, timeout, DNS, authentication, not found, not a video,
//! unsupported codec), keeping the library's own text in `detail`.
//!
//! Where the library's text cannot tell connection failures apart, the
//! supervisor asks the network itself ([`probe_endpoint`]): a DNS lookup and
//! one TCP connect with a short timeout, on the camera's supervisor thread.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::redact;

/// One camera error: what an operator reads, and the library's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// One line: the URL (password masked), what failed, where, and the fix.
    pub summary: String,
    /// The library's own text (GStreamer's message and debug line), if any.
    pub detail: Option<String>,
}

impl Fault {
    /// A fault the node words itself (no library text).
    pub fn plain(summary: impl Into<String>) -> Self {
        Self {
            summary: redact::userinfo(&summary.into()).into_owned(),
            detail: None,
        }
    }
}

/// Where a network camera lives: host and port, default port by scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The host and port of `url` (`rtsp://user:pw@host:port/path`), with the
/// scheme's default port; `None` for files and devices.
pub(crate) fn endpoint(url: &str) -> Option<Endpoint> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "rtsp" | "rtspt" | "rtspu" => 554,
        "rtsps" => 322,
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (hostport.to_string(), None),
        }
    };
    (!host.is_empty()).then(|| Endpoint {
        host,
        port: port.unwrap_or(default),
    })
}

/// What the network says about an endpoint when the library could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The host name does not resolve.
    NoSuchHost(String),
    /// Nothing listens there (TCP RST).
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// Another socket error (network unreachable, …).
    Other(String),
    /// A TCP connection opens: the fault is above TCP.
    Open,
}

/// DNS, then one TCP connect to the first address, within `timeout`.
pub(crate) fn probe_endpoint(ep: &Endpoint, timeout: Duration) -> Reach {
    let addrs: Vec<SocketAddr> = match (ep.host.as_str(), ep.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Reach::NoSuchHost(e.to_string()),
    };
    let Some(addr) = addrs.first() else {
        return Reach::NoSuchHost("no address".into());
    };
    match TcpStream::connect_timeout(addr, timeout) {
        Ok(_) => Reach::Open,
        Err(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Reach::Refused,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Reach::Timeout,
            _ => Reach::Other(e.to_string()),
        },
    }
}

/// The library's error text, split as GStreamer gives it.
#[derive(Clone, Debug, Default)]
pub(crate) struct LibError {
    /// The error message ("Could not open resource for reading and writing.").
    pub message: String,
    /// The last useful line of the debug text ("Failed to connect. (Generic error)").
    pub debug: Option<String>,
    /// The error is GStreamer's "missing plug-in" (no decoder for a codec).
    pub missing_plugin: bool,
}

impl LibError {
    /// `message (debug)`, passwords masked: what `detail` carries.
    pub fn text(&self) -> String {
        let t = match &self.debug {
            Some(d) if !d.is_empty() && *d != self.message => format!("{} ({d})", self.message),
            _ => self.message.clone(),
        };
        redact::userinfo(&t).into_owned()
    }
}

/// An HTTP/RTSP status code quoted in the library text ("Not Found (404)").
fn status_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(4)).find_map(|i| {
        let w = &b[i..i + 5];
        (w[0] == b'(' && w[4] == b')' && w[1..4].iter().all(u8::is_ascii_digit))
            .then(|| text[i + 1..i + 4].parse().ok())
            .flatten()
            .filter(|c| (400..600).contains(c))
    })
}

/// The codec named by a "missing plug-in" error ("Missing decoder: H.265 (Main Profile) (video/x-h265, …)").
fn missing_codec(text: &str) -> Option<String> {
    let (_, tail) = text.split_once("Missing decoder: ")?;
    let name = tail.split(" (").next().unwrap_or(tail).trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Words a camera error. `url` is the camera URL as configured (masked
/// here); `reach` is what the network said, if it was asked.
pub(crate) fn describe(url: &str, lib: &LibError, reach: Option<&Reach>) -> Fault {
    let shown = redact::userinfo(url).into_owned();
    let detail = Some(lib.text());
    let all = format!("{} {}", lib.message, lib.debug.as_deref().unwrap_or(""));
    let at = endpoint(url).map(|e| e.to_string()).unwrap_or_default();
    let what = if let Some(code) = status_code(&all) {
        match code {
            401 | 403 => format!(
                "authentication failed at {at} ({code}): check the camera's username and password"
            ),
            404 => format!("stream not found at {at} (404): check the path in the URL"),
            c if c >= 500 => format!("server error at {at} ({c})"),
            c => format!("request refused by {at} ({c})"),
        }
    } else if lib.missing_plugin || all.contains("Missing decoder") {
        match missing_codec(&all) {
            Some(c) => format!(
                "unsupported codec: no decoder for {c} (install the GStreamer plugin packages or set the camera to H.264)"
            ),
            None => "unsupported codec: no decoder installed for this stream".to_string(),
        }
    } else if all.contains("Could not determine type of stream") {
        "not a video: the data is no stream GStreamer recognises".to_string()
    } else if all.contains("appears to be a text file") {
        "not a video: the source sent text (an error page or a playlist?)".to_string()
    } else {
        match reach {
            Some(Reach::NoSuchHost(e)) => {
                let host = endpoint(url).map(|e| e.host).unwrap_or_default();
                format!("host name {host:?} not found (DNS: {e})")
            }
            Some(Reach::Refused) => {
                format!("connection refused by {at}: nothing listens on that port")
            }
            Some(Reach::Timeout) => format!(
                "no answer from {at} (timeout): camera off, wrong address or blocked by a firewall"
            ),
            Some(Reach::Other(e)) => format!("cannot reach {at}: {e}"),
            Some(Reach::Open) if all.contains("Parse error") => format!(
                "{at} answers, but not as a camera of this URL's protocol (check the scheme and port)"
            ),
            Some(Reach::Open) => format!("{at} answers, but the stream failed"),
            None => {
                return Fault {
                    summary: format!("{shown}: {}", lib.text()),
                    detail: None,
                };
            }
        }
    };
    Fault {
        summary: format!("{shown}: {what}"),
        detail,
    }
}

/// The library text says the connection itself failed (so the network is
/// worth asking why).
pub(crate) fn is_connection_failure(lib: &LibError) -> bool {
    let all = format!("{} {}", lib.message, lib.debug.as_deref().unwrap_or(""));
    status_code(&all).is_none()
        && !lib.missing_plugin
        && (all.contains("Could not open resource")
            || all.contains("Could not read from resource")
            || all.contains("Could not write to resource")
            || all.contains("Failed to connect")
            || all.contains("Could not receive message")
            || all.contains("Could not resolve")
            || all.contains("Connection refused")
            || all.contains("timed out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(message: &str, debug: &str) -> LibError {
        LibError {
            message: message.into(),
            debug: Some(debug.into()),
            missing_plugin: false,
        }
    }

    #[test]
    fn endpoints_with_default_ports_and_credentials() {
        let e = endpoint("rtsp://admin:secret@10.20.1.11/stream1").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.20.1.11", 554));
        let e = endpoint("http://cam.local:8080/video.mjpg").unwrap();
        assert_eq!(e.to_string(), "cam.local:8080");
        let e = endpoint("https://[fe80::1]/x").unwrap();
        assert_eq!(e.to_string(), "[fe80::1]:443");
        assert_eq!(endpoint("file:///a.mp4"), None);
        assert_eq!(endpoint("rtsp://host:notaport/x"), None);
    }

    #[test]
    fn words_status_codes_and_keeps_the_library_text() {
        let url = "rtsp://admin:secret@127.0.0.1:8554/nope";
        let f = describe(url, &lib("Not found", "Not Found (404)"), None);
        assert_eq!(
            f.summary,
            "rtsp://***@127.0.0.1:8554/nope: stream not found at 127.0.0.1:8554 (404): check the path in the URL"
        );
        assert_eq!(f.detail.as_deref(), Some("Not found (Not Found (404))"));
        let f = describe(
            "http://u:p@h/x",
            &lib(
                "Unauthorized",
                "Unauthorized (401), URL: http://u:p@h/x, Redirect to: (NULL)",
            ),
            None,
        );
        assert!(
            f.summary.contains("authentication failed at h:80 (401)"),
            "{}",
            f.summary
        );
        assert!(!f.detail.unwrap().contains("u:p@"), "password in detail");
    }

    #[test]
    fn asks_the_network_for_connection_failures() {
        let url = "rtsp://127.0.0.1:1/x";
        let l = lib(
            "Could not open resource for reading and writing.",
            "Failed to connect. (Generic error)",
        );
        assert!(is_connection_failure(&l));
        let f = describe(url, &l, Some(&Reach::Refused));
        assert_eq!(
            f.summary,
            "rtsp://127.0.0.1:1/x: connection refused by 127.0.0.1:1: nothing listens on that port"
        );
        let f = describe(url, &l, Some(&Reach::Timeout));
        assert!(f.summary.contains("no answer from 127.0.0.1:1 (timeout)"));
        let f = describe(
            "rtsp://cam.invalid/x",
            &l,
            Some(&Reach::NoSuchHost("failed to lookup address".into())),
        );
        assert!(
            f.summary
                .contains("host name \"cam.invalid\" not found (DNS"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn not_a_video_and_unsupported_codecs() {
        let f = describe(
            "http://h/a.txt",
            &lib("Could not determine type of stream.", ""),
            None,
        );
        assert!(
            f.summary
                .ends_with("not a video: the data is no stream GStreamer recognises")
        );
        let f = describe(
            "http://h/a.mp4",
            &lib(
                "This appears to be a text file",
                "decodebin cannot decode plain text files",
            ),
            None,
        );
        assert!(
            f.summary
                .starts_with("http://h/a.mp4: not a video: the source sent text"),
            "{}",
            f.summary
        );
        assert!(f.detail.unwrap().contains("plain text"));
        let l = LibError {
            message: "Your GStreamer installation is missing a plug-in.".into(),
            debug: Some("no suitable plugins found:\nMissing decoder: H.265 (Main Profile) (video/x-h265, stream-format=(string)hvc1)".into()),
            missing_plugin: true,
        };
        assert!(!is_connection_failure(&l));
        let f = describe("rtsp://h/x", &l, None);
        assert!(
            f.summary
                .contains("unsupported codec: no decoder for H.265"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn probes_a_refused_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(probe_endpoint(&ep, Duration::from_secs(2)), Reach::Open);
        drop(l);
        assert_eq!(probe_endpoint(&ep, Duration::from_secs(2)), Reach::Refused);
    }
}
