//! The centre's TOML config: parsed (`deny_unknown_fields`), validated with
//! every problem reported at once (each naming the field and the fix), then
//! built into a typed [`Plan`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What went wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has {} problem(s):\n{}", .problems.len(), Problems(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    centre: CentreSection,
    #[serde(default)]
    mqtt: MqttSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    snapshots: SnapshotSection,
    #[serde(default)]
    console: ConsoleSection,
    #[serde(default)]
    replay: ReplaySection,
}

/// `[replay]`: asking boxes for the events the centre is missing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ReplaySection {
    enabled: bool,
    grace_s: f64,
    retry_s: f64,
    give_up_s: f64,
    scan_every_s: f64,
}

impl Default for ReplaySection {
    fn default() -> Self {
        Self {
            enabled: true,
            grace_s: 30.0,
            retry_s: 60.0,
            give_up_s: 86_400.0,
            scan_every_s: 5.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CentreSection {
    id: String,
}

impl Default for CentreSection {
    fn default() -> Self {
        Self {
            id: "centre-1".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MqttSection {
    url: String,
    topic_prefix: String,
    group: String,
    client_id: Option<String>,
    keep_alive_s: u64,
    session_expiry_s: u32,
    receive_maximum: u16,
    max_payload_bytes: usize,
    username_env: String,
    password_env: String,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            topic_prefix: "edge".into(),
            group: "edge-centre".into(),
            client_id: None,
            keep_alive_s: 30,
            session_expiry_s: 7 * 24 * 3600,
            receive_maximum: 1000,
            max_payload_bytes: 8 << 20,
            username_env: "EDGE_CENTRE_MQTT_USERNAME".into(),
            password_env: "EDGE_CENTRE_MQTT_PASSWORD".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StoreSection {
    kind: String,
    path: PathBuf,
    url: Option<String>,
    password_env: String,
    batch_max: usize,
    batch_wait_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            kind: "sqlite".into(),
            path: "centre.db".into(),
            url: None,
            password_env: "EDGE_CENTRE_DB_PASSWORD".into(),
            batch_max: 500,
            batch_wait_ms: 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SnapshotSection {
    dir: PathBuf,
    keep_days: f64,
    max_mb: u64,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        Self {
            dir: "snapshots".into(),
            keep_days: 30.0,
            max_mb: 100_000,
        }
    }
}

/// `[console]`: the operators' web console (off unless `listen` is set).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ConsoleSection {
    listen: Option<String>,
    session_hours: f64,
    secure_cookie: bool,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self {
            listen: None,
            session_hours: 12.0,
            secure_cookie: false,
        }
    }
}

/// The operators' console.
#[derive(Clone, Debug)]
pub struct ConsolePlan {
    /// Where it listens; `None`: no console.
    pub listen: Option<std::net::SocketAddr>,
    /// How long a login lasts.
    pub session: Duration,
    /// Mark the session cookie `Secure` (served behind a TLS proxy).
    pub secure_cookie: bool,
}

/// The broker connection of the ingest.
#[derive(Clone, Debug)]
pub struct MqttPlan {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    /// `$share/{group}/{prefix}/#`.
    pub filter: String,
    pub client_id: String,
    pub keep_alive: Duration,
    pub session_expiry_s: u32,
    pub receive_maximum: u16,
    pub max_payload_bytes: usize,
    /// User name and password, from the environment (never logged).
    pub login: Option<(String, String)>,
}

/// Where rows go.
#[derive(Clone, Debug)]
pub enum StorePlan {
    Sqlite {
        path: PathBuf,
    },
    /// `url`: a `postgresql://` URL or libpq `key=value` string, without
    /// the password; `password` from `[store] password_env`.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct SnapshotPlan {
    pub dir: PathBuf,
    pub keep: Duration,
    pub max_bytes: u64,
}

/// A validated config.
#[derive(Clone, Debug)]
pub struct Plan {
    pub id: String,
    pub mqtt: MqttPlan,
    pub store: StorePlan,
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub snapshots: SnapshotPlan,
    pub replay: crate::store::ReplayPlan,
    pub console: ConsolePlan,
}

/// Reads, validates and plans `path`; relative paths in it are relative to
/// the file's folder.
pub fn load(path: &Path) -> Result<Plan, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| match e {
        Invalid::Parse(message) => ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        },
        Invalid::Problems(problems) => ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        },
    })
}

/// Why a config text is not valid.
#[derive(Debug)]
pub enum Invalid {
    Parse(String),
    Problems(Vec<String>),
}

/// Parses and validates a config text; `base` resolves relative paths.
pub fn parse(text: &str, base: &Path) -> Result<Plan, Invalid> {
    let file: File = toml::from_str(text).map_err(|e| Invalid::Parse(e.to_string()))?;
    let mut problems = Vec::new();
    let m = &file.mqtt;
    let (host, port) = match broker(&m.url) {
        Ok(hp) => hp,
        Err(p) => {
            problems.push(p);
            (String::new(), 0)
        }
    };
    let prefix = m.topic_prefix.trim_end_matches('/').to_string();
    if prefix.is_empty() || prefix.contains(['+', '#']) {
        problems.push(format!(
            "mqtt.topic_prefix {:?}: must be a non-empty topic level without wildcards, as the nodes' `mqtt.topic_prefix` (e.g. \"edge\")",
            m.topic_prefix
        ));
    }
    check_mqtt(m, &mut problems);
    let store = match file.store.kind.as_str() {
        "sqlite" => StorePlan::Sqlite {
            path: base.join(&file.store.path),
        },
        "postgres" => match &file.store.url {
            Some(url) if !url.is_empty() => StorePlan::Postgres {
                url: url.clone(),
                password: std::env::var(&file.store.password_env).ok(),
            },
            _ => {
                problems.push("store.url: kind = \"postgres\" needs the database, e.g. url = \"postgresql://edge@127.0.0.1:5432/edge\" (the password goes in $EDGE_CENTRE_DB_PASSWORD, not here)".into());
                StorePlan::Sqlite {
                    path: PathBuf::new(),
                }
            }
        },
        other => {
            problems.push(format!(
                "store.kind {other:?}: unknown; use \"sqlite\" (embedded) or \"postgres\""
            ));
            StorePlan::Sqlite {
                path: PathBuf::new(),
            }
        }
    };
    if file.store.batch_max == 0 {
        problems.push("store.batch_max: must be at least 1 (500 is a good start)".into());
    }
    let s = &file.snapshots;
    if !(s.keep_days > 0.0 && s.keep_days.is_finite()) {
        problems.push(format!(
            "snapshots.keep_days {}: must be a positive number of days",
            s.keep_days
        ));
    }
    let replay = replay_plan(&file.replay, &mut problems);
    if file.centre.id.is_empty() || file.centre.id.contains(['/', '+', '#']) {
        problems.push(format!(
            "centre.id {:?}: must be a non-empty name without '/', '+' or '#'",
            file.centre.id
        ));
    }
    let console = check_console(&file.console, &mut problems);
    if !problems.is_empty() {
        return Err(Invalid::Problems(problems));
    }
    let login = match (
        std::env::var(&m.username_env),
        std::env::var(&m.password_env),
    ) {
        (Ok(u), Ok(p)) => Some((u, p)),
        _ => None,
    };
    Ok(Plan {
        id: file.centre.id.clone(),
        mqtt: MqttPlan {
            host,
            port,
            filter: format!("$share/{}/{prefix}/#", m.group),
            topic_prefix: prefix,
            client_id: m
                .client_id
                .clone()
                .unwrap_or_else(|| format!("edge-centre-{}", file.centre.id)),
            keep_alive: Duration::from_secs(m.keep_alive_s),
            session_expiry_s: m.session_expiry_s,
            receive_maximum: m.receive_maximum,
            max_payload_bytes: m.max_payload_bytes,
            login,
        },
        store,
        batch_max: file.store.batch_max,
        batch_wait: Duration::from_millis(file.store.batch_wait_ms),
        snapshots: SnapshotPlan {
            dir: base.join(&s.dir),
            keep: Duration::from_secs_f64(s.keep_days * 86_400.0),
            max_bytes: s.max_mb.saturating_mul(1 << 20),
        },
        replay,
        console,
    })
}

/// `[replay]`, checked; problems are added to `problems`.
fn replay_plan(r: &ReplaySection, problems: &mut Vec<String>) -> crate::store::ReplayPlan {
    for (name, v, min) in [
        ("grace_s", r.grace_s, 0.0),
        ("retry_s", r.retry_s, 0.1),
        ("give_up_s", r.give_up_s, 1.0),
        ("scan_every_s", r.scan_every_s, 0.1),
    ] {
        if !(v >= min && v.is_finite()) {
            problems.push(format!(
                "replay.{name} {v}: must be a number of seconds, at least {min}"
            ));
        }
    }
    let ms = |s: f64| (s * 1000.0) as i64;
    crate::store::ReplayPlan {
        enabled: r.enabled,
        grace_ms: ms(r.grace_s),
        retry_ms: ms(r.retry_s),
        give_up_ms: ms(r.give_up_s),
        scan_every_ms: ms(r.scan_every_s),
        ..crate::store::ReplayPlan::default()
    }
}

/// The `[console]` checks.
fn check_console(c: &ConsoleSection, problems: &mut Vec<String>) -> ConsolePlan {
    let listen = match c.listen.as_deref() {
        None => None,
        Some(a) => match a.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(format!(
                    "console.listen {a:?}: not an address; use ip:port, e.g. \"127.0.0.1:8080\" (put a TLS proxy in front for other machines)"
                ));
                None
            }
        },
    };
    let ok = c.session_hours > 0.0 && c.session_hours.is_finite() && c.session_hours <= 24.0 * 31.0;
    if !ok {
        problems.push(format!(
            "console.session_hours {}: must be a positive number of hours, at most 744 (a shift is 8 to 12)",
            c.session_hours
        ));
    }
    ConsolePlan {
        listen,
        session: Duration::from_secs_f64(if ok { c.session_hours * 3600.0 } else { 3600.0 }),
        secure_cookie: c.secure_cookie,
    }
}

/// The `[mqtt]` checks that need no parsing.
fn check_mqtt(m: &MqttSection, problems: &mut Vec<String>) {
    if m.group.is_empty() || m.group.contains(['/', '+', '#']) {
        problems.push(format!(
            "mqtt.group {:?}: the shared-subscription group must be one topic level without wildcards (e.g. \"edge-centre\")",
            m.group
        ));
    }
    if m.receive_maximum == 0 {
        problems.push("mqtt.receive_maximum: must be at least 1 (messages in flight to this instance; 1000 is a good start)".into());
    }
    if m.max_payload_bytes < 1024 {
        problems.push(format!(
            "mqtt.max_payload_bytes {}: too small for a snapshot; use at least the nodes' `mqtt.max_packet_bytes` (4 MiB by default)",
            m.max_payload_bytes
        ));
    }
    if m.keep_alive_s < 5 {
        problems.push(format!(
            "mqtt.keep_alive_s {}: use 5 s or more",
            m.keep_alive_s
        ));
    }
}

/// `mqtt://host:port` → host and port.
pub fn broker(url: &str) -> Result<(String, u16), String> {
    let fix = "use mqtt://host:port (e.g. \"mqtt://127.0.0.1:1883\")";
    let Some(rest) = url.strip_prefix("mqtt://") else {
        return Err(format!("mqtt.url {url:?}: unsupported scheme; {fix}"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h, p),
            _ => {
                return Err(format!(
                    "mqtt.url {url:?}: port {p:?} is not a port number; {fix}"
                ));
            }
        },
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains(['/', '@']) {
        return Err(format!("mqtt.url {url:?}: no host; {fix}"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_plan_a_shared_subscription() {
        let p = parse("", Path::new("/etc/centre")).unwrap();
        assert_eq!(p.mqtt.filter, "$share/edge-centre/edge/#");
        assert_eq!((p.mqtt.host.as_str(), p.mqtt.port), ("127.0.0.1", 1883));
        assert_eq!(p.mqtt.client_id, "edge-centre-centre-1");
        let StorePlan::Sqlite { path } = &p.store else {
            panic!("{:?}", p.store)
        };
        assert_eq!(path, Path::new("/etc/centre/centre.db"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r##"
            [mqtt]
            url = "rstp://x"
            group = "a/b"
            topic_prefix = "#"
            [store]
            kind = "oracle"
            batch_max = 0
        "##;
        let Err(Invalid::Problems(p)) = parse(text, Path::new(".")) else {
            panic!("expected problems");
        };
        assert_eq!(p.len(), 5, "{p:#?}");
        for (field, i) in [
            ("mqtt.url", 0),
            ("mqtt.topic_prefix", 1),
            ("mqtt.group", 2),
            ("store.kind", 3),
            ("store.batch_max", 4),
        ] {
            assert!(p[i].starts_with(field), "{}", p[i]);
        }
    }

    #[test]
    fn the_console_is_off_by_default_and_checked_when_on() {
        let p = parse("", Path::new(".")).unwrap();
        assert!(p.console.listen.is_none());
        let p = parse(
            "[console]\nlisten = \"127.0.0.1:8080\"\nsession_hours = 8\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(p.console.listen.unwrap().port(), 8080);
        assert_eq!(p.console.session, Duration::from_secs(8 * 3600));
        let Err(Invalid::Problems(p)) = parse(
            "[console]\nlisten = \"everywhere\"\nsession_hours = -1\n",
            Path::new("."),
        ) else {
            panic!("expected problems");
        };
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].starts_with("console.listen") && p[1].starts_with("console.session_hours"));
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let Err(Invalid::Parse(m)) = parse("[mqtt]\nurll = \"x\"\n", Path::new(".")) else {
            panic!("expected a parse error");
        };
        assert!(m.contains("urll"), "{m}");
    }
}
