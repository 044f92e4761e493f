//! What a row means, written once for every backend: the inserts of each
//! kind of message and the queries, in SQL that SQLite and PostgreSQL both
//! accept (parameters `?1`, `?2`, … are rewritten to `$1`, … for
//! PostgreSQL; typed values, so a NULL knows its column's type).

use super::{Committed, Gap, Item, Row, Totals, millis, severity, wire_millis};
use crate::decode::Record;

/// A parameter or column value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl Val {
    pub fn text(s: impl Into<String>) -> Val {
        Val::Text(Some(s.into()))
    }
    fn int(self) -> i64 {
        match self {
            Val::Int(Some(i)) => i,
            _ => 0,
        }
    }
    fn string(self) -> String {
        match self {
            Val::Text(Some(s)) => s,
            _ => String::new(),
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(Some(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(Some(v.to_string()))
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(Some(v.clone()))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(Some(v))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::Text(v)
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        Val::Text(v.map(str::to_string))
    }
}
impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Self {
        Val::Text(v.clone())
    }
}

macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$(Val::from($v)),*] };
}

/// A connection (inside a transaction) that runs SQL with typed values.
pub trait Sql {
    type Error;
    /// Runs a statement; returns the rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, Self::Error>;
    /// Runs a query; each row's columns as values.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, Self::Error>;
    /// What locks the rows a `SELECT` reads until the transaction ends
    /// (` FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write
    /// transactions already exclude each other).
    fn for_update(&self) -> &'static str {
        ""
    }
}

/// Inserts every item; counts inserted and duplicate rows.
pub fn commit<S: Sql>(db: &mut S, items: &[Item]) -> Result<Committed, S::Error> {
    let mut done = Committed::default();
    let mut seen = Vec::new();
    for item in items {
        if insert(db, item)? {
            done.inserted += 1;
        } else {
            done.duplicates += 1;
        }
        if let Row::Message(r) = &item.row
            && let Record::Event(e) = r.as_ref()
        {
            seen.push(super::delivery::Seen {
                node: &e.node,
                camera: &e.camera,
                district: &e.district,
                seq: e.seq,
            });
        }
    }
    if !seen.is_empty() {
        let at = items.first().map_or(0, |i| millis(i.received));
        super::delivery::track(db, &seen, at, super::ReplayPlan::default().max_range)?;
    }
    Ok(done)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A unit enum's wire name (`"new"`, `"streaming"`).
fn name<T: serde::Serialize>(v: &T) -> String {
    json(v).trim_matches('"').to_string()
}

/// Inserts one row; `false` when it was already there.
fn insert<S: Sql>(db: &mut S, item: &Item) -> Result<bool, S::Error> {
    let at = millis(item.received);
    match &item.row {
        Row::Message(r) => message(db, r, at),
        Row::Snapshot {
            topic,
            sha256,
            bytes,
            ..
        } => {
            db.exec(
                "INSERT INTO snapshots (sha256, bytes, received_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sha256) DO UPDATE SET expired_at = NULL, received_at = ?3",
                vals![sha256, i64::try_from(*bytes).unwrap_or(i64::MAX), at],
            )?;
            let n = db.exec(
                "INSERT INTO snapshot_topics (topic, sha256, received_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic) DO UPDATE SET sha256 = ?2, received_at = ?3
                 WHERE snapshot_topics.sha256 <> ?2",
                vals![topic, sha256, at],
            )?;
            // With several instances on a shared subscription the event can
            // be committed (by another instance) before its picture.
            for table in ["events", "alerts"] {
                db.exec(
                    &format!(
                        "UPDATE {table} SET snapshot_sha = ?2 WHERE snapshot_topic = ?1 AND snapshot_sha IS NULL"
                    ),
                    vals![topic, sha256],
                )?;
            }
            Ok(n > 0)
        }
        Row::Rejected {
            topic,
            reason,
            bytes,
        } => {
            db.exec(
                "INSERT INTO rejected (topic, reason, detail, bytes, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                vals![
                    topic,
                    reason.kind(),
                    reason.to_string(),
                    i64::try_from(*bytes).unwrap_or(i64::MAX),
                    at
                ],
            )?;
            Ok(true)
        }
    }
}

fn snapshot_sha<S: Sql>(db: &mut S, topic: Option<&str>) -> Result<Option<String>, S::Error> {
    let Some(topic) = topic else { return Ok(None) };
    let rows = db.query(
        "SELECT sha256 FROM snapshot_topics WHERE topic = ?1",
        vals![topic],
    )?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .map(Val::string))
}

fn message<S: Sql>(db: &mut S, r: &Record, at: i64) -> Result<bool, S::Error> {
    match r {
        Record::Event(e) => event(db, e, at),
        Record::ReplayAnswer(a) => super::delivery::answer(db, a, at),
        Record::ZoneAlert(z) => {
            let time = wire_millis(&z.time).unwrap_or(at);
            let kind = z.alerts.first().map_or("crowding", String::as_str);
            if let Some(raised) = kind.strip_suffix("_cleared") {
                return clear(db, &z.node, &z.camera, raised, Some(&z.zone), time);
            }
            let topic = z.snapshot.as_ref().map(|s| s.topic.as_str());
            let sha = snapshot_sha(db, topic)?;
            let n = db.exec(
                "INSERT INTO alerts (alert_id, node, district, camera, kind, severity, time, rule, snapshot_topic,
                                     snapshot_sha, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (alert_id) DO NOTHING",
                vals![&z.id, &z.node, &z.district, &z.camera, kind, severity(kind), time, &z.zone, topic, sha, at, json(z)],
            )?;
            Ok(n > 0)
        }
        Record::CameraAlert(c) => {
            let time = wire_millis(&c.time).unwrap_or(at);
            if let Some(raised) = c.kind.strip_suffix("_cleared") {
                return clear(db, &c.node, &c.camera, raised, None, time);
            }
            let n = db.exec(
                "INSERT INTO alerts (alert_id, node, district, camera, kind, severity, time, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (alert_id) DO NOTHING",
                vals![&c.id, &c.node, &c.district, &c.camera, &c.kind, severity(&c.kind), time, at, json(c)],
            )?;
            Ok(n > 0)
        }
        Record::Counts(c) => {
            let start = wire_millis(&c.interval_start).unwrap_or(at);
            let end = wire_millis(&c.interval_end).unwrap_or(at);
            let n = db.exec(
                "INSERT INTO counts (node, camera, interval_start, interval_end, district, seq, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                vals![&c.node, &c.camera, start, end, &c.district, seq(c.seq), at, json(c)],
            )?;
            Ok(n > 0)
        }
        Record::NodeStatus { origin, status } => node_status(db, &origin.district, status, at),
        Record::CameraStatus { origin, status } => camera_status(db, &origin.district, status, at),
        Record::CameraRemoved { origin } => {
            let n = db.exec(
                "UPDATE camera_state SET removed = 1, updated_at = ?3 WHERE node = ?1 AND camera = ?2",
                vals![&origin.node, &origin.camera, at],
            )?;
            Ok(n > 0)
        }
        Record::Stats { origin, json } => {
            let n = db.exec(
                "UPDATE node_state SET stats = ?2 WHERE node = ?1",
                vals![&origin.node, json],
            )?;
            Ok(n > 0)
        }
        // Snapshots become `Row::Snapshot` once their file is written.
        Record::Snapshot { .. } => Ok(false),
    }
}

fn seq(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn node_status<S: Sql>(
    db: &mut S,
    district: &str,
    status: &edge_wire::NodeStatusMessage,
    at: i64,
) -> Result<bool, S::Error> {
    let state = name(&status.state);
    let prev = db.query(
        "SELECT state FROM node_state WHERE node = ?1",
        vals![&status.node],
    )?;
    let prev = prev.into_iter().next().and_then(|r| r.into_iter().next());
    if prev != Some(Val::text(state.as_str())) {
        db.exec(
            "INSERT INTO node_history (node, state, at) VALUES (?1, ?2, ?3)",
            vals![&status.node, state.as_str(), at],
        )?;
    }
    let since = status.since.as_deref().and_then(wire_millis);
    db.exec(
        "INSERT INTO node_state (node, district, state, since, version, updated_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (node) DO UPDATE SET district = ?2, state = ?3, since = ?4, version = ?5, updated_at = ?6, payload = ?7",
        vals![&status.node, district, state, since, &status.version, at, json(status)],
    )?;
    Ok(true)
}

/// The camera's current state, and a history row when its state, `since`
/// or health changed.
fn camera_status<S: Sql>(
    db: &mut S,
    district: &str,
    status: &edge_wire::CameraStatusMessage,
    at: i64,
) -> Result<bool, S::Error> {
    let state = name(&status.state);
    let since = wire_millis(&status.since).unwrap_or(at);
    // A status older than the one stored (a late redelivery) changes nothing.
    let time = wire_millis(&status.time).unwrap_or(at);
    let health = status.live.health.join(",");
    db.exec(
        "INSERT INTO camera_history (node, camera, state, since, last_error, health)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        vals![
            &status.node,
            &status.camera,
            state.as_str(),
            since,
            &status.last_error,
            health.as_str()
        ],
    )?;
    db.exec(
        "INSERT INTO camera_state (node, camera, district, state, since, last_error, health, fps_in, status_time,
                                   updated_at, removed, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11)
         ON CONFLICT (node, camera) DO UPDATE SET district = ?3, state = ?4, since = ?5, last_error = ?6,
           health = ?7, fps_in = ?8, status_time = ?9, updated_at = ?10, removed = 0, payload = ?11
         WHERE camera_state.status_time <= ?9",
        vals![&status.node, &status.camera, district, state, since, &status.last_error, health,
              status.live.fps_in, time, at, json(status)],
    )?;
    Ok(true)
}

fn event<S: Sql>(db: &mut S, e: &edge_wire::EventMessage, at: i64) -> Result<bool, S::Error> {
    let time = wire_millis(&e.frame_time).unwrap_or(at);
    let topic = e.snapshot.as_ref().map(|s| s.topic.as_str());
    let sha = snapshot_sha(db, topic)?;
    let omitted = e.snapshot_omitted.map(|o| name(&o));
    let n = db.exec(
        "INSERT INTO events (node, camera, seq, district, object_id, type, label, score, frame_time, alerts,
                             snapshot_topic, snapshot_sha, snapshot_omitted, received_at, payload, replayed, riders)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT DO NOTHING",
        vals![&e.node, &e.camera, seq(e.seq), &e.district, &e.id, name(&e.kind), &e.label, f64::from(e.score), time,
              e.alerts.join(","), topic, sha.clone(), omitted, at, json(e), i64::from(e.replayed),
              i64::from(e.riders)],
    )?;
    if n == 0 {
        return Ok(false);
    }
    // An object alert opens one incident per object and kind.
    for kind in &e.alerts {
        db.exec(
            "INSERT INTO alerts (alert_id, node, district, camera, kind, severity, time, object_id, label, rule,
                                 snapshot_topic, snapshot_sha, received_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT (alert_id) DO NOTHING",
            vals![format!("{}/{kind}", e.id), &e.node, &e.district, &e.camera, kind, severity(kind), time, &e.id,
                  &e.label, e.alert.as_ref().map(|a| a.rule.clone()), topic, sha.clone(), at, json(e)],
        )?;
    }
    Ok(true)
}

/// Closes the open incident of `kind` on a camera (and zone).
fn clear<S: Sql>(
    db: &mut S,
    node: &str,
    camera: &str,
    kind: &str,
    rule: Option<&str>,
    time: i64,
) -> Result<bool, S::Error> {
    let n = db.exec(
        "UPDATE alerts SET cleared_at = ?5 WHERE alert_id = (
             SELECT alert_id FROM alerts WHERE node = ?1 AND camera = ?2 AND kind = ?3
               AND (CAST(?4 AS TEXT) IS NULL OR rule = ?4) AND cleared_at IS NULL AND time <= ?5
             ORDER BY time DESC LIMIT 1)",
        vals![node, camera, kind, rule, time],
    )?;
    Ok(n > 0)
}

/// Row counts of every table.
pub fn totals<S: Sql>(db: &mut S) -> Result<Totals, S::Error> {
    let mut count = |table: &str| -> Result<u64, S::Error> {
        let rows = db.query(&format!("SELECT count(*) FROM {table}"), &[])?;
        let n = rows.into_iter().next().and_then(|r| r.into_iter().next());
        Ok(u64::try_from(n.map_or(0, Val::int)).unwrap_or(0))
    };
    Ok(Totals {
        events: count("events")?,
        alerts: count("alerts")?,
        counts: count("counts")?,
        snapshots: count("snapshots")?,
        cameras: count("camera_state")?,
        nodes: count("node_state")?,
        rejected: count("rejected")?,
    })
}

fn strings<S: Sql, const N: usize>(db: &mut S, sql: &str) -> Result<Vec<[String; N]>, S::Error> {
    Ok(db
        .query(sql, &[])?
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            std::array::from_fn(|_| match it.next() {
                Some(Val::Int(Some(i))) => i.to_string(),
                Some(v) => v.string(),
                None => String::new(),
            })
        })
        .collect())
}

pub fn event_keys<S: Sql>(db: &mut S) -> Result<Vec<(String, String, u64)>, S::Error> {
    Ok(strings::<S, 3>(
        db,
        "SELECT node, camera, seq FROM events ORDER BY node, camera, seq",
    )?
    .into_iter()
    .map(|[n, c, s]| (n, c, s.parse().unwrap_or(0)))
    .collect())
}

pub fn alerts<S: Sql>(db: &mut S) -> Result<Vec<(String, String, String)>, S::Error> {
    Ok(strings::<S, 3>(
        db,
        "SELECT alert_id, kind, camera FROM alerts ORDER BY time DESC, alert_id",
    )?
    .into_iter()
    .map(|[a, k, c]| (a, k, c))
    .collect())
}

pub fn rejected<S: Sql>(db: &mut S) -> Result<Vec<(String, String)>, S::Error> {
    Ok(
        strings::<S, 2>(db, "SELECT topic, reason FROM rejected ORDER BY id")?
            .into_iter()
            .map(|[t, r]| (t, r))
            .collect(),
    )
}

pub fn camera_states<S: Sql>(db: &mut S) -> Result<Vec<(String, String, String)>, S::Error> {
    Ok(strings::<S, 3>(
        db,
        "SELECT node, camera, state FROM camera_state WHERE removed = 0 ORDER BY node, camera",
    )?
    .into_iter()
    .map(|[n, c, s]| (n, c, s))
    .collect())
}

/// Marks snapshots expired: those received before `cutoff`, then the
/// oldest until the live ones total at most `max_bytes`. Returns the
/// SHA-256 of each, for the caller to delete its file once committed.
pub fn expire_snapshots<S: Sql>(
    db: &mut S,
    now: i64,
    cutoff: i64,
    max_bytes: u64,
) -> Result<Vec<String>, S::Error> {
    let mut gone: Vec<String> = db
        .query(
            "UPDATE snapshots SET expired_at = ?1 WHERE expired_at IS NULL AND received_at < ?2 RETURNING sha256",
            vals![now, cutoff],
        )?
        .into_iter()
        .filter_map(|r| r.into_iter().next().map(Val::string))
        .collect();
    let live = db.query(
        "SELECT CAST(coalesce(sum(bytes), 0) AS BIGINT) FROM snapshots WHERE expired_at IS NULL",
        &[],
    )?;
    let live = live
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .map_or(0, Val::int);
    let mut excess = live - i64::try_from(max_bytes).unwrap_or(i64::MAX);
    while excess > 0 {
        let oldest = db.query(
            "SELECT sha256, bytes FROM snapshots WHERE expired_at IS NULL ORDER BY received_at, sha256 LIMIT 500",
            &[],
        )?;
        if oldest.is_empty() {
            break;
        }
        for row in oldest {
            if excess <= 0 {
                break;
            }
            let mut it = row.into_iter();
            let sha = it.next().map(Val::string).unwrap_or_default();
            excess -= it.next().map_or(0, Val::int);
            db.exec(
                "UPDATE snapshots SET expired_at = ?1 WHERE sha256 = ?2",
                vals![now, sha.as_str()],
            )?;
            gone.push(sha);
        }
    }
    Ok(gone)
}

pub fn live_snapshots<S: Sql>(db: &mut S) -> Result<Vec<String>, S::Error> {
    Ok(strings::<S, 1>(
        db,
        "SELECT sha256 FROM snapshots WHERE expired_at IS NULL ORDER BY received_at, sha256",
    )?
    .into_iter()
    .map(|[s]| s)
    .collect())
}

pub fn gaps<S: Sql>(db: &mut S) -> Result<Vec<Gap>, S::Error> {
    Ok(strings::<S, 4>(
        db,
        "SELECT node, camera, seq + 1, next - 1 FROM (
             SELECT node, camera, seq, lead(seq) OVER (PARTITION BY node, camera ORDER BY seq) AS next
             FROM events) g
         WHERE next > seq + 1 ORDER BY node, camera, seq",
    )?
    .into_iter()
    .map(|[node, camera, first, last]| Gap {
        node,
        camera,
        first: first.parse().unwrap_or(0),
        last: last.parse().unwrap_or(0),
    })
    .collect())
}
