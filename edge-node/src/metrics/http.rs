//! The metrics endpoint: a minimal HTTP/1.1 server on tokio. `GET /metrics`
//! (the text format), `GET /healthz` (200 while the process serves),
//! `GET /readyz` (200 when every camera streams and the broker is
//! connected, else 503 saying why); 404 for other paths, 405 for other
//! methods. One task per connection, one request per connection
//! (`Connection: close`), the request head at most [`MAX_REQUEST`] bytes,
//! the whole exchange at most [`CONN_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::Metrics;
use super::text::CONTENT_TYPE;

/// The longest request head read; longer ones get 431.
pub const MAX_REQUEST: usize = 8192;
/// The longest a connection may take, from accept to the last byte written.
pub const CONN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(CONN_TIMEOUT, handle(stream, &m))
                .await
                .is_err()
            {
                debug!(peer = %peer, "metrics endpoint: connection timed out");
            }
            drop(permit);
        });
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Get { path: String, head_only: bool },
    BadMethod,
    Malformed,
    TooLarge,
}

/// Reads the request head (up to the blank line).
async fn read_request(stream: &mut TcpStream) -> Request {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&buf) {
            return parse(&buf[..end]);
        }
        if buf.len() >= MAX_REQUEST {
            return Request::TooLarge;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Request::Malformed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The request line: method, target, version.
fn parse(head: &[u8]) -> Request {
    let Ok(text) = std::str::from_utf8(head) else {
        return Request::Malformed;
    };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Request::Malformed;
    }
    let path = target.split('?').next().unwrap_or_default().to_string();
    match method {
        "GET" => Request::Get {
            path,
            head_only: false,
        },
        "HEAD" => Request::Get {
            path,
            head_only: true,
        },
        _ => Request::BadMethod,
    }
}

/// One response: status line, headers, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

fn route(m: &Metrics, req: Request) -> (Response, bool) {
    match req {
        Request::Get { path, head_only } => {
            let r = match path.as_str() {
                "/metrics" => Response {
                    status: "200 OK",
                    content_type: CONTENT_TYPE,
                    body: m.render(),
                },
                "/healthz" => Response::text("200 OK", "ok\n"),
                "/readyz" => match m.readiness() {
                    Ok(()) => Response::text("200 OK", "ready\n"),
                    Err(why) => Response::text("503 Service Unavailable", why),
                },
                _ => Response::text(
                    "404 Not Found",
                    "not found: try /metrics, /healthz or /readyz\n",
                ),
            };
            (r, head_only)
        }
        Request::BadMethod => (
            Response::text("405 Method Not Allowed", "only GET and HEAD\n"),
            false,
        ),
        Request::Malformed => (Response::text("400 Bad Request", "bad request\n"), false),
        Request::TooLarge => (
            Response::text(
                "431 Request Header Fields Too Large",
                "request head too large\n",
            ),
            false,
        ),
    }
}

async fn handle(mut stream: TcpStream, m: &Metrics) {
    let req = read_request(&mut stream).await;
    let (r, head_only) = route(m, req);
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&r.body);
    }
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Request::Get {
                path: "/metrics".into(),
                head_only: false
            }
        );
        assert_eq!(
            parse(b"HEAD /readyz HTTP/1.0"),
            Request::Get {
                path: "/readyz".into(),
                head_only: true
            }
        );
        assert_eq!(parse(b"POST /metrics HTTP/1.1"), Request::BadMethod);
        assert_eq!(parse(b"GET /metrics"), Request::Malformed);
        assert_eq!(parse(b"GET / SPDY/3"), Request::Malformed);
        assert_eq!(parse(&[0xff, 0xfe]), Request::Malformed);
    }

    #[tokio::test]
    async fn serves_paths_and_refuses_oversized_heads() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(serve(l, Arc::new(Metrics::default())));
        let get = |req: Vec<u8>| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&req).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let r = get(b"GET /healthz HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok\n"),
            "{r}"
        );
        let r = get(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            r.contains("version=0.0.4") && r.contains("# TYPE edge_node_process_open_fds gauge"),
            "{r}"
        );
        // No publisher yet: not ready, and it says why.
        let r = get(b"GET /readyz HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(r.starts_with("HTTP/1.1 503") && r.contains("broker"), "{r}");
        let r = get(b"GET /nope HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_REQUEST * 2));
        let r = get(big).await;
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        task.abort();
    }
}
