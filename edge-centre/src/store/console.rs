//! The operators' console's path to the database, apart from the writer:
//! its own connections (SQLite: read/write connections to the same WAL
//! file; PostgreSQL: a few clients, reconnected when found dead), used from
//! blocking threads only, so a slow page never holds up a commit. Every
//! statement is parameterised (`?N`, rewritten for PostgreSQL as in
//! `rows.rs`); filters are values, never SQL text.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::StoreError;
use super::rows::{Sql, Val};
use crate::config::StorePlan;

/// Idle connections kept for the next request.
const KEEP_IDLE: usize = 4;

/// A camera whose status is older than this is shown as "node offline"
/// (the nodes refresh their status far more often).
pub const STALE_MS: i64 = 5 * 60 * 1000;

fn err<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Db(Box::new(e))
}

/// The console's connections.
pub struct ConsoleDb {
    backend: Backend,
}

enum Backend {
    Sqlite {
        path: PathBuf,
        idle: Mutex<Vec<rusqlite::Connection>>,
    },
    Postgres {
        config: Box<postgres::Config>,
        idle: Mutex<Vec<postgres::Client>>,
    },
}

/// A connection as the console's queries use it.
pub struct Db<'a>(&'a mut dyn Sql<Error = StoreError>);

impl Sql for Db<'_> {
    type Error = StoreError;
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        self.0.exec(sql, params)
    }
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, StoreError> {
        self.0.query(sql, params)
    }
}

struct Lite<'a>(&'a rusqlite::Connection);

impl Sql for Lite<'_> {
    type Error = StoreError;
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        super::sqlite::run(self.0, sql, params).map_err(err)
    }
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, StoreError> {
        super::sqlite::select(self.0, sql, params).map_err(err)
    }
}

struct PgDb<'a>(&'a mut postgres::Client);

impl Sql for PgDb<'_> {
    type Error = StoreError;
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        super::postgres::Pg(self.0, None)
            .exec(sql, params)
            .map_err(err)
    }
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, StoreError> {
        super::postgres::Pg(self.0, None)
            .query(sql, params)
            .map_err(err)
    }
}

impl ConsoleDb {
    /// Prepares connections to the planned database (already created and
    /// migrated by [`crate::open_store`]); connects on first use.
    pub fn open(plan: &StorePlan) -> Result<Self, StoreError> {
        let backend = match plan {
            StorePlan::Sqlite { path } => Backend::Sqlite {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
            },
            StorePlan::Postgres { url, password } => {
                let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Open {
                    path: "the [store] url".into(),
                    source: Box::new(e),
                })?;
                if let Some(p) = password {
                    config.password(p);
                }
                config.connect_timeout(std::time::Duration::from_secs(5));
                Backend::Postgres {
                    config: Box::new(config),
                    idle: Mutex::new(Vec::new()),
                }
            }
        };
        Ok(Self { backend })
    }

    /// Runs `f` on a connection (blocking: call from a blocking thread).
    /// Each statement commits on its own; a connection that failed is not
    /// reused.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite { path, idle } => {
                let conn = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let conn = match conn {
                    Some(c) => c,
                    None => {
                        let c = rusqlite::Connection::open(path).map_err(err)?;
                        c.busy_timeout(std::time::Duration::from_secs(5))
                            .map_err(err)?;
                        c
                    }
                };
                let out = f(&mut Db(&mut Lite(&conn)));
                let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
                if out.is_ok() && idle.len() < KEEP_IDLE {
                    idle.push(conn);
                }
                out
            }
            Backend::Postgres { config, idle } => {
                let client = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let mut client = match client.filter(|c| !c.is_closed()) {
                    Some(c) => c,
                    None => config.connect(postgres::NoTls).map_err(err)?,
                };
                let out = f(&mut Db(&mut PgDb(&mut client)));
                let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
                if !client.is_closed() && idle.len() < KEEP_IDLE {
                    idle.push(client);
                }
                out
            }
        }
    }
}

// ---- values ---------------------------------------------------------------

fn int(v: Option<&Val>) -> Option<i64> {
    match v {
        Some(Val::Int(i)) => *i,
        Some(Val::Real(Some(f))) => Some(*f as i64),
        Some(Val::Text(Some(s))) => s.parse().ok(),
        _ => None,
    }
}

fn real(v: Option<&Val>) -> f64 {
    match v {
        Some(Val::Real(Some(f))) => *f,
        Some(Val::Int(Some(i))) => *i as f64,
        _ => 0.0,
    }
}

fn text(v: Option<&Val>) -> Option<String> {
    match v {
        Some(Val::Text(s)) => s.clone(),
        Some(Val::Int(Some(i))) => Some(i.to_string()),
        _ => None,
    }
}

fn string(v: Option<&Val>) -> String {
    text(v).unwrap_or_default()
}

fn opt(s: Option<&str>) -> Val {
    Val::Text(s.filter(|s| !s.is_empty()).map(str::to_string))
}

fn one_int(rows: &[Vec<Val>]) -> i64 {
    int(rows.first().and_then(|r| r.first())).unwrap_or(0)
}

// ---- accounts ---------------------------------------------------------------

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
}

/// Creates a user, or replaces its password and role; `true` when new.
pub fn put_user(
    db: &mut Db<'_>,
    name: &str,
    hash: &str,
    role: Role,
    now: i64,
) -> Result<bool, StoreError> {
    let n = db.exec(
        "UPDATE users SET hash = ?2, role = ?3 WHERE name = ?1",
        &[Val::text(name), Val::text(hash), Val::text(role.name())],
    )?;
    if n > 0 {
        return Ok(false);
    }
    db.exec(
        "INSERT INTO users (name, hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        &[
            Val::text(name),
            Val::text(hash),
            Val::text(role.name()),
            Val::from(now),
        ],
    )?;
    Ok(true)
}

/// A user's password hash and role.
pub fn user_hash(db: &mut Db<'_>, name: &str) -> Result<Option<(String, Role)>, StoreError> {
    let rows = db.query(
        "SELECT hash, role FROM users WHERE name = ?1",
        &[Val::text(name)],
    )?;
    Ok(rows
        .first()
        .and_then(|r| Some((string(r.first()), Role::parse(&string(r.get(1)))?))))
}

/// Every user as (name, role, created), by name.
pub fn users(db: &mut Db<'_>) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(db
        .query(
            "SELECT name, role, created_at FROM users ORDER BY name",
            &[],
        )?
        .iter()
        .map(|r| {
            (
                string(r.first()),
                string(r.get(1)),
                int(r.get(2)).unwrap_or(0),
            )
        })
        .collect())
}

/// Records a login (by its token's hash); drops expired ones.
pub fn add_session(
    db: &mut Db<'_>,
    token_hash: &str,
    user: &str,
    now: i64,
    expires: i64,
) -> Result<(), StoreError> {
    db.exec(
        "DELETE FROM sessions WHERE expires_at <= ?1",
        &[Val::from(now)],
    )?;
    db.exec(
        "INSERT INTO sessions (token_hash, user_name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        &[
            Val::text(token_hash),
            Val::text(user),
            Val::from(now),
            Val::from(expires),
        ],
    )?;
    Ok(())
}

/// The user of a live session.
pub fn session_user(
    db: &mut Db<'_>,
    token_hash: &str,
    now: i64,
) -> Result<Option<User>, StoreError> {
    let rows = db.query(
        "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.user_name
         WHERE s.token_hash = ?1 AND s.expires_at > ?2",
        &[Val::text(token_hash), Val::from(now)],
    )?;
    Ok(user_of(&rows))
}

fn user_of(rows: &[Vec<Val>]) -> Option<User> {
    rows.first().and_then(|r| {
        Some(User {
            name: string(r.first()),
            role: Role::parse(&string(r.get(1)))?,
        })
    })
}

pub fn end_session(db: &mut Db<'_>, token_hash: &str) -> Result<(), StoreError> {
    db.exec(
        "DELETE FROM sessions WHERE token_hash = ?1",
        &[Val::text(token_hash)],
    )?;
    Ok(())
}

/// Records an API token (by its hash); `false` when the user does not exist.
pub fn add_token(
    db: &mut Db<'_>,
    token_hash: &str,
    user: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if user_hash(db, user)?.is_none() {
        return Ok(false);
    }
    db.exec(
        "INSERT INTO api_tokens (token_hash, user_name, created_at) VALUES (?1, ?2, ?3)",
        &[Val::text(token_hash), Val::text(user), Val::from(now)],
    )?;
    Ok(true)
}

/// The user of an API token.
pub fn token_user(db: &mut Db<'_>, token_hash: &str) -> Result<Option<User>, StoreError> {
    let rows = db.query(
        "SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.name = t.user_name
         WHERE t.token_hash = ?1",
        &[Val::text(token_hash)],
    )?;
    Ok(user_of(&rows))
}

// ---- alerts -----------------------------------------------------------------

/// One incident of the review queue.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub node: String,
    pub district: String,
    pub camera: String,
    pub kind: String,
    pub severity: String,
    /// Milliseconds since the epoch (UTC).
    pub time: i64,
    pub object_id: Option<String>,
    pub label: Option<String>,
    pub rule: Option<String>,
    pub snapshot_sha: Option<String>,
    pub snapshot_expired: bool,
    pub cleared_at: Option<i64>,
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
}

/// Which incidents to list (empty fields match everything).
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub district: Option<String>,
    pub node: Option<String>,
    pub camera: Option<String>,
    pub label: Option<String>,
    pub kind: Option<String>,
    /// Only those not acknowledged.
    pub open_only: bool,
    pub limit: i64,
}

const ALERT_COLUMNS: &str =
    "a.alert_id, a.node, a.district, a.camera, a.kind, a.severity, a.time, a.object_id,
    a.label, a.rule, a.shown_sha, CASE WHEN s.expired_at IS NULL THEN 0 ELSE 1 END, a.cleared_at,
    a.acked_by, a.acked_at";

/// Incidents with the picture to show: their own, else their object's
/// latest (an alert raised by an update often has none of its own).
const ALERT_FROM: &str = "(SELECT a.*, coalesce(a.snapshot_sha, (SELECT e.snapshot_sha FROM events e
        WHERE e.object_id = a.object_id AND e.snapshot_sha IS NOT NULL ORDER BY e.seq DESC LIMIT 1)) AS shown_sha
    FROM alerts a) a LEFT JOIN snapshots s ON s.sha256 = a.shown_sha";

fn alert_of(r: &[Val]) -> Alert {
    Alert {
        alert_id: string(r.first()),
        node: string(r.get(1)),
        district: string(r.get(2)),
        camera: string(r.get(3)),
        kind: string(r.get(4)),
        severity: string(r.get(5)),
        time: int(r.get(6)).unwrap_or(0),
        object_id: text(r.get(7)),
        label: text(r.get(8)),
        rule: text(r.get(9)),
        snapshot_sha: text(r.get(10)),
        snapshot_expired: int(r.get(11)) == Some(1),
        cleared_at: int(r.get(12)),
        acked_by: text(r.get(13)),
        acked_at: int(r.get(14)),
    }
}

/// Incidents, newest first.
pub fn alerts(db: &mut Db<'_>, f: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM {ALERT_FROM}
         WHERE (CAST(?1 AS TEXT) IS NULL OR a.district = ?1)
           AND (CAST(?2 AS TEXT) IS NULL OR a.camera = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR a.label = ?3)
           AND (CAST(?4 AS TEXT) IS NULL OR a.kind = ?4)
           AND (CAST(?5 AS BIGINT) = 0 OR a.acked_at IS NULL)
           AND (CAST(?7 AS TEXT) IS NULL OR a.node = ?7)
         ORDER BY a.time DESC, a.alert_id LIMIT ?6"
    );
    Ok(db
        .query(
            &sql,
            &[
                opt(f.district.as_deref()),
                opt(f.camera.as_deref()),
                opt(f.label.as_deref()),
                opt(f.kind.as_deref()),
                Val::from(i64::from(f.open_only)),
                Val::from(f.limit.clamp(1, 1000)),
                opt(f.node.as_deref()),
            ],
        )?
        .iter()
        .map(|r| alert_of(r))
        .collect())
}

/// One incident.
pub fn alert(db: &mut Db<'_>, id: &str) -> Result<Option<Alert>, StoreError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM {ALERT_FROM}
         WHERE a.alert_id = ?1"
    );
    Ok(db
        .query(&sql, &[Val::text(id)])?
        .first()
        .map(|r| alert_of(r)))
}

/// The incidents of one object.
pub fn object_alerts(db: &mut Db<'_>, object_id: &str) -> Result<Vec<Alert>, StoreError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM {ALERT_FROM}
         WHERE a.object_id = ?1 ORDER BY a.time"
    );
    Ok(db
        .query(&sql, &[Val::text(object_id)])?
        .iter()
        .map(|r| alert_of(r))
        .collect())
}

/// Incidents nobody has acknowledged yet.
pub fn unacked(db: &mut Db<'_>) -> Result<i64, StoreError> {
    Ok(one_int(&db.query(
        "SELECT count(*) FROM alerts WHERE acked_at IS NULL",
        &[],
    )?))
}

/// What acknowledging did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acked {
    Now,
    Already,
    NoSuchAlert,
}

/// Acknowledges an incident (the first acknowledgement stands).
pub fn ack(db: &mut Db<'_>, id: &str, user: &str, now: i64) -> Result<Acked, StoreError> {
    let n = db.exec(
        "UPDATE alerts SET acked_by = ?2, acked_at = ?3 WHERE alert_id = ?1 AND acked_at IS NULL",
        &[Val::text(id), Val::text(user), Val::from(now)],
    )?;
    if n > 0 {
        return Ok(Acked::Now);
    }
    let rows = db.query(
        "SELECT count(*) FROM alerts WHERE alert_id = ?1",
        &[Val::text(id)],
    )?;
    Ok(if one_int(&rows) > 0 {
        Acked::Already
    } else {
        Acked::NoSuchAlert
    })
}

// ---- events -----------------------------------------------------------------

/// One message of an object's lifecycle.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub node: String,
    pub camera: String,
    pub seq: i64,
    pub district: String,
    pub object_id: String,
    /// new, update or end.
    #[serde(rename = "type")]
    pub kind: String,
    pub label: String,
    pub score: f64,
    /// Milliseconds since the epoch (UTC).
    pub frame_time: i64,
    pub alerts: Vec<String>,
    pub snapshot_sha: Option<String>,
    pub snapshot_expired: bool,
    pub snapshot_omitted: Option<String>,
    pub current_zones: Vec<String>,
    pub entered_zones: Vec<String>,
    /// Persons seen riding the object (edge-event/6; 0 for other classes
    /// and for older schemas).
    pub riders: i64,
}

/// Which events to list (empty fields match everything); newest first,
/// `after` continuing a page (keyset: the last row's key).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub district: Option<String>,
    pub node: Option<String>,
    pub camera: Option<String>,
    pub label: Option<String>,
    /// new, update or end.
    pub kind: Option<String>,
    pub object_id: Option<String>,
    pub limit: i64,
    pub after: Option<EventKey>,
}

/// Where a page of events ends: (`frame_time`, node, camera, seq).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EventKey(pub i64, pub String, pub String, pub i64);

const EVENT_COLUMNS: &str =
    "e.node, e.camera, e.seq, e.district, e.object_id, e.type, e.label, e.score,
    e.frame_time, e.alerts, e.snapshot_sha, CASE WHEN s.expired_at IS NULL THEN 0 ELSE 1 END,
    e.snapshot_omitted, e.payload, e.riders";

fn event_of(r: &[Val]) -> Event {
    let payload: serde_json::Value =
        serde_json::from_str(&string(r.get(13))).unwrap_or(serde_json::Value::Null);
    let list = |k: &str| -> Vec<String> {
        payload[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Event {
        node: string(r.first()),
        camera: string(r.get(1)),
        seq: int(r.get(2)).unwrap_or(0),
        district: string(r.get(3)),
        object_id: string(r.get(4)),
        kind: string(r.get(5)),
        label: string(r.get(6)),
        score: real(r.get(7)),
        frame_time: int(r.get(8)).unwrap_or(0),
        alerts: string(r.get(9))
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        snapshot_sha: text(r.get(10)),
        snapshot_expired: int(r.get(11)) == Some(1),
        snapshot_omitted: text(r.get(12)),
        current_zones: list("current_zones"),
        entered_zones: list("entered_zones"),
        riders: int(r.get(14)).unwrap_or(0),
    }
}

/// Events matching `f`, newest first.
///
/// The WHERE clause names only the filters that are set (each a bound
/// parameter, never SQL text), so the database can use the index of the
/// most selective one (`events_district_time`, `events_camera_time`,
/// `events_label_time`, `events_type_time`, `events_time`) and walk it in
/// time order; the page cursor bounds `frame_time` first for the same
/// reason. `edge-centre bench-search` times these on a large database.
pub fn events(db: &mut Db<'_>, f: &EventFilter) -> Result<Vec<Event>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Val> = Vec::new();
    let mut add = |clause: &str, vals: Vec<Val>| {
        let mut c = clause.to_string();
        for (k, v) in vals.into_iter().enumerate() {
            c = c.replace(&format!("${k}"), &format!("?{}", params.len() + 1));
            params.push(v);
        }
        clauses.push(c);
    };
    let text = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(Val::from);
    if let Some(from) = f.from {
        add("e.frame_time >= $0", vec![Val::from(from)]);
    }
    if let Some(to) = f.to {
        add("e.frame_time < $0", vec![Val::from(to)]);
    }
    for (column, value) in [
        ("e.district", &f.district),
        ("e.node", &f.node),
        ("e.camera", &f.camera),
        ("e.label", &f.label),
        ("e.type", &f.kind),
        ("e.object_id", &f.object_id),
    ] {
        if let Some(v) = text(value) {
            add(&format!("{column} = $0"), vec![v]);
        }
    }
    if let Some(k) = &f.after {
        add(
            "e.frame_time <= $0 AND (e.frame_time < $0 OR (e.node, e.camera, e.seq) < ($1, $2, $3))",
            vec![
                Val::from(k.0),
                Val::from(k.1.as_str()),
                Val::from(k.2.as_str()),
                Val::from(k.3),
            ],
        );
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    params.push(Val::from(f.limit.clamp(1, 1000)));
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e LEFT JOIN snapshots s ON s.sha256 = e.snapshot_sha
         {filter}
         ORDER BY e.frame_time DESC, e.node DESC, e.camera DESC, e.seq DESC LIMIT ?{}",
        params.len()
    );
    Ok(db
        .query(&sql, &params)?
        .iter()
        .map(|r| event_of(r))
        .collect())
}

/// One lifecycle message by its key.
pub fn event(
    db: &mut Db<'_>,
    node: &str,
    camera: &str,
    seq: i64,
) -> Result<Option<Event>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e LEFT JOIN snapshots s ON s.sha256 = e.snapshot_sha
         WHERE e.node = ?1 AND e.camera = ?2 AND e.seq = ?3"
    );
    Ok(db
        .query(&sql, &[Val::text(node), Val::text(camera), Val::from(seq)])?
        .first()
        .map(|r| event_of(r)))
}

/// An object's lifecycle, in order.
pub fn object_events(db: &mut Db<'_>, object_id: &str) -> Result<Vec<Event>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e LEFT JOIN snapshots s ON s.sha256 = e.snapshot_sha
         WHERE e.object_id = ?1 ORDER BY e.seq"
    );
    Ok(db
        .query(&sql, &[Val::text(object_id)])?
        .iter()
        .map(|r| event_of(r))
        .collect())
}

// ---- cameras ----------------------------------------------------------------

/// A camera as the console shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Camera {
    pub district: String,
    pub node: String,
    pub camera: String,
    /// What the camera reported: streaming, reconnecting, failed, …
    pub state: String,
    /// What the console shows: the camera's state, or "node offline" when
    /// its node says so or its status is stale.
    pub shown: String,
    /// Whether it needs someone (not streaming).
    pub broken: bool,
    pub since: i64,
    pub last_error: Option<String>,
    pub health: Vec<String>,
    pub fps_in: f64,
    pub status_time: i64,
    pub node_state: Option<String>,
    pub last_event: Option<i64>,
    /// How long it has been out of `streaming`, in seconds (0 when fine).
    pub outage_s: i64,
}

/// Every camera (removed ones left out): broken ones first, then by
/// district, node and camera.
pub fn cameras(db: &mut Db<'_>, now: i64) -> Result<Vec<Camera>, StoreError> {
    let rows = db.query(
        "SELECT c.district, c.node, c.camera, c.state, c.since, c.last_error, c.health, c.fps_in,
                c.status_time, c.updated_at, n.state,
                (SELECT max(e.frame_time) FROM events e WHERE e.node = c.node AND e.camera = c.camera)
         FROM camera_state c LEFT JOIN node_state n ON n.node = c.node
         WHERE c.removed = 0 ORDER BY c.district, c.node, c.camera",
        &[],
    )?;
    let mut out: Vec<Camera> = rows
        .iter()
        .map(|r| {
            let state = string(r.get(3));
            let since = int(r.get(4)).unwrap_or(0);
            let updated = int(r.get(9)).unwrap_or(0);
            let node_state = text(r.get(10));
            let node_down = matches!(node_state.as_deref(), Some("offline" | "stopped"));
            let shown = if node_down || now - updated > STALE_MS {
                "node offline".to_string()
            } else {
                state.clone()
            };
            let health: Vec<String> = string(r.get(6))
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            // Needs an operator: not delivering pictures when it should
            // (a file that ended, or a camera starting, does not), or a
            // health alarm (tamper, stalled) while it streams.
            let broken = matches!(
                shown.as_str(),
                "reconnecting" | "failed" | "stopped" | "node offline"
            ) || !health.is_empty();
            // A silent node's cameras are out since its last word.
            let status_time = int(r.get(8)).unwrap_or(0);
            let out_since = if shown == state {
                since
            } else {
                status_time.max(since)
            };
            Camera {
                district: string(r.first()),
                node: string(r.get(1)),
                camera: string(r.get(2)),
                state,
                shown,
                broken,
                since,
                last_error: text(r.get(5)),
                health,
                fps_in: real(r.get(7)),
                status_time,
                node_state,
                last_event: int(r.get(11)),
                outage_s: if broken {
                    (now - out_since).max(0) / 1000
                } else {
                    0
                },
            }
        })
        .collect();
    out.sort_by_key(|c| !c.broken);
    Ok(out)
}

// ---- counts -----------------------------------------------------------------

/// One interval's count of one (line, class, direction).
#[derive(Clone, Debug, Serialize)]
pub struct CountPoint {
    pub line: String,
    pub class: String,
    pub direction: String,
    pub interval_start: i64,
    pub interval_end: i64,
    /// Crossings in the interval, from the difference of the cumulative
    /// totals (the message's `delta` where the totals restarted).
    pub count: u64,
    pub total: u64,
}

/// A camera's line counts over its last `limit` intervals, oldest first.
pub fn counts(
    db: &mut Db<'_>,
    node: &str,
    camera: &str,
    limit: i64,
) -> Result<Vec<CountPoint>, StoreError> {
    let rows = db.query(
        "SELECT interval_start, interval_end, payload FROM counts WHERE node = ?1 AND camera = ?2
         ORDER BY interval_start DESC LIMIT ?3",
        &[
            Val::text(node),
            Val::text(camera),
            Val::from(limit.clamp(1, 5000)),
        ],
    )?;
    let mut last: std::collections::HashMap<(String, String, String), u64> =
        std::collections::HashMap::new();
    let mut out = Vec::new();
    for r in rows.iter().rev() {
        let Ok(m) = serde_json::from_str::<edge_wire::CountsMessage>(&string(r.get(2))) else {
            continue;
        };
        for (line, l) in &m.lines {
            for (class, dirs) in &l.counts {
                for (dir, c) in dirs {
                    let key = (line.clone(), class.clone(), dir.clone());
                    let count = match last.get(&key) {
                        Some(prev) if c.total >= *prev => c.total - prev,
                        _ => c.delta,
                    };
                    last.insert(key, c.total);
                    out.push(CountPoint {
                        line: line.clone(),
                        class: class.clone(),
                        direction: dir.clone(),
                        interval_start: int(r.first()).unwrap_or(0),
                        interval_end: int(r.get(1)).unwrap_or(0),
                        count,
                        total: c.total,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The cameras that sent counts, as (node, camera).
pub fn counted_cameras(db: &mut Db<'_>) -> Result<Vec<(String, String)>, StoreError> {
    Ok(db
        .query(
            "SELECT DISTINCT node, camera FROM counts ORDER BY node, camera",
            &[],
        )?
        .iter()
        .map(|r| (string(r.first()), string(r.get(1))))
        .collect())
}

/// One state a camera was in, and for how long: its history answers
/// "which cameras were down last night, for how long".
#[derive(Clone, Debug, Serialize)]
pub struct StateSpan {
    pub state: String,
    /// When it began (ms since the epoch).
    pub since: i64,
    /// When the next state began; `None` for the current one.
    pub until: Option<i64>,
    /// How long it lasted (until now for the current one), seconds.
    pub seconds: i64,
    pub last_error: Option<String>,
    pub health: Vec<String>,
}

/// A camera's state changes, newest first (at most `limit`), each with its
/// length, from `camera_history`.
pub fn camera_history(
    db: &mut Db<'_>,
    node: &str,
    camera: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<StateSpan>, StoreError> {
    let rows = db.query(
        "SELECT state, since, last_error, health FROM camera_history
         WHERE node = ?1 AND camera = ?2 ORDER BY since DESC, state LIMIT ?3",
        &[
            Val::from(node),
            Val::from(camera),
            Val::from(limit.clamp(1, 1000)),
        ],
    )?;
    let mut out: Vec<StateSpan> = Vec::with_capacity(rows.len());
    let mut next: Option<i64> = None;
    for r in &rows {
        let since = int(r.get(1)).unwrap_or(0);
        let health: Vec<String> = string(r.get(3))
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let state = string(r.first());
        // A health change within the same state is a row of its own; the
        // span ends where the next row begins.
        out.push(StateSpan {
            seconds: (next.unwrap_or(now) - since).max(0) / 1000,
            until: next,
            state,
            since,
            last_error: text(r.get(2)),
            health,
        });
        next = Some(since);
    }
    Ok(out)
}

// ---- delivery and snapshots -------------------------------------------------

/// A run of lifecycle messages the centre found missing, and how it
/// ended (see `store::delivery`): `open` (waiting; maybe requested),
/// `recovered` (complete, some by replay), `arrived` (complete, late, no
/// replay needed) or `lost` (`lost` of them, `reasons` per reason).
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryGap {
    pub node: String,
    pub camera: String,
    pub district: String,
    pub first: u64,
    pub last: u64,
    pub missing: u64,
    pub state: String,
    /// When the gap was found (ms since the epoch).
    pub found_at: i64,
    /// Replay requests sent for it.
    pub requests: i64,
    /// Messages recovered by replay.
    pub replayed: i64,
    /// Messages the box could not send again.
    pub lost: i64,
    /// Why they are lost, per reason: `expired: 12, evicted: 3`.
    pub reason: Option<String>,
    pub closed_at: Option<i64>,
}

/// The newest 1,000 gaps, open and closed.
pub fn delivery(db: &mut Db<'_>) -> Result<Vec<DeliveryGap>, StoreError> {
    Ok(super::delivery::report(db, 1000)?
        .into_iter()
        .map(|g| DeliveryGap {
            missing: g.last.saturating_sub(g.first) + 1,
            node: g.node,
            camera: g.camera,
            district: g.district,
            first: g.first,
            last: g.last,
            state: g.state,
            found_at: g.found_at,
            requests: g.requests,
            replayed: g.replayed,
            lost: g.lost,
            reason: g.reasons,
            closed_at: g.closed_at,
        })
        .collect())
}

/// A snapshot's row: `Some(expired)`, or `None` when never received.
pub fn snapshot(db: &mut Db<'_>, sha256: &str) -> Result<Option<bool>, StoreError> {
    Ok(db
        .query(
            "SELECT CASE WHEN expired_at IS NULL THEN 0 ELSE 1 END FROM snapshots WHERE sha256 = ?1",
            &[Val::text(sha256)],
        )?
        .first()
        .map(|r| int(r.first()) == Some(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::event;
    use crate::store::{Item, Row, Store};

    fn fresh() -> (tempfile::TempDir, ConsoleDb) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut s = crate::store::sqlite::Sqlite::open(&path).unwrap();
        let items: Vec<Item> = (1..=5)
            .map(|seq| {
                let alerts = if seq == 2 { r#""loitering""# } else { "" };
                let r = crate::decode::decode(
                    "edge",
                    "edge/d1/box-1/cam-1/events",
                    event(seq, 7, "update", alerts).as_bytes(),
                    1 << 20,
                )
                .unwrap()
                .unwrap();
                Item {
                    received: std::time::SystemTime::now(),
                    row: Row::Message(Box::new(r)),
                }
            })
            .collect();
        s.commit(&items).unwrap();
        (dir, ConsoleDb::open(&StorePlan::Sqlite { path }).unwrap())
    }

    #[test]
    fn sessions_expire_and_users_are_replaced_not_duplicated() {
        let (_dir, db) = fresh();
        db.run(|db| {
            assert!(put_user(db, "alice", "h1", Role::Viewer, 0)?);
            assert!(!put_user(db, "alice", "h2", Role::Operator, 0)?);
            assert_eq!(user_hash(db, "alice")?, Some(("h2".into(), Role::Operator)));
            assert_eq!(user_hash(db, "bob")?, None);
            add_session(db, "s1", "alice", 100, 200)?;
            let alice = Some(User {
                name: "alice".into(),
                role: Role::Operator,
            });
            assert_eq!(session_user(db, "s1", 150)?, alice);
            assert_eq!(session_user(db, "s1", 200)?, None, "expired");
            end_session(db, "s1")?;
            assert_eq!(session_user(db, "s1", 150)?, None, "logged out");
            assert!(!add_token(db, "t0", "bob", 0)?, "no such user");
            assert!(add_token(db, "t1", "alice", 0)?);
            assert_eq!(token_user(db, "t1")?, alice);
            assert_eq!(token_user(db, "t2")?, None);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn the_first_acknowledgement_stands() {
        let (_dir, db) = fresh();
        db.run(|db| {
            let id = "box-1.cam-1.19a.7/loitering";
            assert_eq!(unacked(db)?, 1);
            assert_eq!(ack(db, id, "alice", 10)?, Acked::Now);
            assert_eq!(ack(db, id, "bob", 20)?, Acked::Already);
            assert_eq!(ack(db, "nope", "bob", 20)?, Acked::NoSuchAlert);
            let a = alert(db, id)?.unwrap();
            assert_eq!(
                (a.acked_by.as_deref(), a.acked_at),
                (Some("alice"), Some(10))
            );
            assert_eq!(unacked(db)?, 0);
            let open = AlertFilter {
                open_only: true,
                limit: 10,
                ..Default::default()
            };
            assert!(alerts(db, &open)?.is_empty());
            Ok(())
        })
        .unwrap();
    }

    /// Pages of events follow each other without gaps or repeats.
    #[test]
    fn keyset_pages_cover_every_event_once() {
        let (_dir, db) = fresh();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let f = EventFilter {
                limit: 2,
                after: after.clone(),
                ..Default::default()
            };
            let page = db.run(|db| events(db, &f)).unwrap();
            seen.extend(page.iter().map(|e| e.seq));
            match page.last() {
                Some(e) if page.len() == 2 => {
                    after = Some(EventKey(
                        e.frame_time,
                        e.node.clone(),
                        e.camera.clone(),
                        e.seq,
                    ));
                }
                _ => break,
            }
        }
        assert_eq!(seen, vec![5, 4, 3, 2, 1]);
        let f = EventFilter {
            label: Some("person' OR '1'='1".into()),
            limit: 10,
            ..Default::default()
        };
        assert!(db.run(|db| events(db, &f)).unwrap().is_empty());
    }

    /// An `edge-event/6` motorcycle's riders are stored and read back (the
    /// console's lists and the object page show them); `/4` events read 0.
    #[test]
    fn riders_are_stored_and_read_back() {
        let (dir, db) = fresh();
        let mut s = crate::store::sqlite::Sqlite::open(&dir.path().join("c.db")).unwrap();
        let items: Vec<Item> = [(6, "new", 1), (7, "update", 2), (8, "end", 2)]
            .into_iter()
            .map(|(seq, kind, riders)| {
                let json = crate::store::contract::event6(seq, 9, kind, riders);
                let r = crate::decode::decode(
                    "edge",
                    "edge/d1/box-1/cam-1/events",
                    json.as_bytes(),
                    1 << 20,
                )
                .unwrap()
                .unwrap();
                Item {
                    received: std::time::SystemTime::now(),
                    row: Row::Message(Box::new(r)),
                }
            })
            .collect();
        s.commit(&items).unwrap();
        db.run(|db| {
            let bike = object_events(db, "box-1.cam-1.19a.9")?;
            let got: Vec<(&str, &str, i64)> = bike
                .iter()
                .map(|e| (e.kind.as_str(), e.label.as_str(), e.riders))
                .collect();
            assert_eq!(
                got,
                [
                    ("new", "motorcycle", 1),
                    ("update", "motorcycle", 2),
                    ("end", "motorcycle", 2)
                ]
            );
            assert_eq!(
                super::event(db, "box-1", "cam-1", 8)?.map(|e| e.riders),
                Some(2)
            );
            let person = object_events(db, "box-1.cam-1.19a.7")?;
            assert_eq!(person.len(), 5);
            assert!(person.iter().all(|e| e.riders == 0), "{person:?}");
            Ok(())
        })
        .unwrap();
    }

    /// A camera whose status went silent shows as "node offline", broken
    /// ones come first, and a streaming camera is not broken.
    #[test]
    fn silent_cameras_show_node_offline_first() {
        let (dir, db) = fresh();
        let status = |cam: &str| {
            format!(
                r#"{{"schema":"edge-camera-status/3","node":"box-1","camera":"{cam}","state":"streaming","since":"2026-12-07T08:00:00.000Z","time":"2026-12-07T08:00:00.000Z","last_error":null,"detail":null,"frames":1,"frames_analysed":1,"frames_dropped":0,"drops":{{"queue_full":0,"inference_failed":0}},"fps_in":5.0,"fps_analysed":5.0,"last_frame_age_s":0.1,"reconnects":0,"retry_attempt":0,"outage_since":null,"outage_s":null,"stream":null,"health":[]}}"#
            )
        };
        let now = std::time::SystemTime::now();
        let item = |cam: &str, received| {
            let r = crate::decode::decode(
                "edge",
                &format!("edge/d1/box-1/{cam}/status"),
                status(cam).as_bytes(),
                1 << 20,
            )
            .unwrap()
            .unwrap();
            Item {
                received,
                row: Row::Message(Box::new(r)),
            }
        };
        let mut s = crate::store::sqlite::Sqlite::open(&dir.path().join("c.db")).unwrap();
        s.commit(&[
            item("cam-a", now),
            item("cam-b", now - std::time::Duration::from_secs(600)),
        ])
        .unwrap();
        let cams = db.run(|db| cameras(db, crate::store::millis(now))).unwrap();
        let shown: Vec<(&str, &str, bool)> = cams
            .iter()
            .map(|c| (c.camera.as_str(), c.shown.as_str(), c.broken))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("cam-b", "node offline", true),
                ("cam-a", "streaming", false)
            ]
        );
        assert!(cams[0].outage_s >= 599, "{}", cams[0].outage_s);
    }

    /// A file that ended is not broken; a streaming camera with a health
    /// alarm (tamper) is, and comes first.
    #[test]
    fn an_ended_file_is_fine_and_a_health_alarm_is_not() {
        let (dir, db) = fresh();
        let status = |cam: &str, state: &str, health: &str| {
            format!(
                r#"{{"schema":"edge-camera-status/3","node":"box-1","camera":"{cam}","state":"{state}","since":"2026-12-07T08:00:00.000Z","time":"2026-12-07T08:00:00.000Z","last_error":null,"detail":null,"frames":1,"frames_analysed":1,"frames_dropped":0,"drops":{{"queue_full":0,"inference_failed":0}},"fps_in":5.0,"fps_analysed":5.0,"last_frame_age_s":0.1,"reconnects":0,"retry_attempt":0,"outage_since":null,"outage_s":null,"stream":null,"health":[{health}]}}"#
            )
        };
        let now = std::time::SystemTime::now();
        let item = |cam: &str, state: &str, health: &str| {
            let r = crate::decode::decode(
                "edge",
                &format!("edge/d1/box-1/{cam}/status"),
                status(cam, state, health).as_bytes(),
                1 << 20,
            )
            .unwrap()
            .unwrap();
            Item {
                received: now,
                row: Row::Message(Box::new(r)),
            }
        };
        let mut s = crate::store::sqlite::Sqlite::open(&dir.path().join("c.db")).unwrap();
        s.commit(&[
            item("a-file", "ended", ""),
            item("b-ok", "streaming", ""),
            item("c-black", "streaming", r#""black""#),
        ])
        .unwrap();
        let cams = db.run(|db| cameras(db, crate::store::millis(now))).unwrap();
        let shown: Vec<(&str, bool)> = cams.iter().map(|c| (c.camera.as_str(), c.broken)).collect();
        assert_eq!(shown[0], ("c-black", true), "{shown:?}");
        assert!(
            shown.contains(&("a-file", false)) && shown.contains(&("b-ok", false)),
            "{shown:?}"
        );
    }

    /// The history says how long each state lasted: an outage of 60 s,
    /// then streaming until now.
    #[test]
    fn camera_history_has_each_states_length() {
        let (dir, db) = fresh();
        let status = |state: &str, since: &str| {
            format!(
                r#"{{"schema":"edge-camera-status/3","node":"box-1","camera":"cam-1","state":"{state}","since":"{since}","time":"{since}","last_error":null,"detail":null,"frames":1,"frames_analysed":1,"frames_dropped":0,"drops":{{"queue_full":0,"inference_failed":0}},"fps_in":5.0,"fps_analysed":5.0,"last_frame_age_s":0.1,"reconnects":0,"retry_attempt":0,"outage_since":null,"outage_s":null,"stream":null,"health":[]}}"#
            )
        };
        let item = |state: &str, since: &str| {
            let r = crate::decode::decode(
                "edge",
                "edge/d1/box-1/cam-1/status",
                status(state, since).as_bytes(),
                1 << 20,
            )
            .unwrap()
            .unwrap();
            Item {
                received: std::time::SystemTime::now(),
                row: Row::Message(Box::new(r)),
            }
        };
        let mut s = crate::store::sqlite::Sqlite::open(&dir.path().join("c.db")).unwrap();
        s.commit(&[
            item("streaming", "2026-12-07T08:00:00.000Z"),
            item("reconnecting", "2026-12-07T09:00:00.000Z"),
            item("streaming", "2026-12-07T09:01:00.000Z"),
        ])
        .unwrap();
        let t = |s: &str| crate::store::wire_millis(s).unwrap();
        let now = t("2026-12-07T10:01:00.000Z");
        let h = db
            .run(|db| camera_history(db, "box-1", "cam-1", now, 50))
            .unwrap();
        let spans: Vec<(&str, i64, Option<i64>)> = h
            .iter()
            .map(|x| (x.state.as_str(), x.seconds, x.until))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("streaming", 3600, None),
                ("reconnecting", 60, Some(t("2026-12-07T09:01:00.000Z"))),
                ("streaming", 3600, Some(t("2026-12-07T09:00:00.000Z"))),
            ]
        );
    }
}
