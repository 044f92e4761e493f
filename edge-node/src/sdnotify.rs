//! systemd's service notification protocol (`sd_notify`), written
//! directly: one datagram of `KEY=value` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//!
//! The node sends `READY=1` once its cameras are started, `WATCHDOG=1`
//! from the heartbeat only while healthy (so systemd restarts a node that
//! stays unhealthy for `WatchdogSec=`), `STATUS=…` with the reason, and
//! `STOPPING=1` at a clean stop. Without `$NOTIFY_SOCKET` (not under
//! systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go; `None` when not started by systemd.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

#[derive(thiserror::Error, Debug)]
pub enum NotifyError {
    #[error("systemd notification socket {socket:?}: {source}")]
    Socket {
        socket: String,
        source: std::io::Error,
    },
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; `Ok(None)` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(s) if !s.is_empty() => Self::new(&s.to_string_lossy()).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `socket` (a path, or `@name` for an abstract socket).
    pub fn new(socket: &str) -> Result<Self, NotifyError> {
        let err = |source| NotifyError::Socket {
            socket: socket.to_string(),
            source,
        };
        let target = match socket.strip_prefix('@') {
            Some(name) => Target::Abstract(name.as_bytes().to_vec()),
            None => Target::Path(socket.into()),
        };
        let socket = UnixDatagram::unbound().map_err(err)?;
        Ok(Self { socket, target })
    }

    /// Sends `text` (`KEY=value` lines) as one datagram.
    pub fn send(&self, text: &str) -> std::io::Result<()> {
        match &self.target {
            Target::Path(p) => self.socket.send_to(text.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(text.as_bytes(), &addr).map(|_| ())
            }
        }
    }
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC` (systemd's
/// `WatchdogSec=`), `None` when systemd set no watchdog for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // WATCHDOG_PID, when set, must be this process.
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// One `STATUS=` line: newlines would start new keys.
pub fn status_line(text: &str) -> String {
    let one: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={one}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(&path.display().to_string()).unwrap();
        n.send("READY=1\nSTATUS=ok").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("edge-node-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .send("WATCHDOG=1")
            .unwrap();
        let mut buf = [0u8; 16];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(status_line("a\nb"), "STATUS=a b");
    }
}
