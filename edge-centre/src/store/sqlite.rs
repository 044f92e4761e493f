//! The embedded store: one SQLite file (WAL, `synchronous = FULL`: a
//! committed batch survives a power cut, so it may be acknowledged).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Committed, Item, Row, Store, StoreError, Totals, millis, severity, wire_millis};
use crate::decode::Record;

/// Schema migrations, in order; `PRAGMA user_version` is how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/0001_init.sql")];

pub struct Sqlite {
    conn: Connection,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(Box::new(e))
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = |e: rusqlite::Error| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                source: Box::new(e),
            })?;
        }
        let mut conn = Connection::open(path).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        let tx = conn.transaction().map_err(open)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(open)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(open)?;
        }
        tx.commit().map_err(open)?;
        Ok(Self { conn })
    }
}

impl Store for Sqlite {
    fn commit(&mut self, items: &[Item]) -> Result<Committed, StoreError> {
        let tx = self.conn.transaction().map_err(db)?;
        let mut done = Committed::default();
        for item in items {
            let n = insert(&tx, item).map_err(db)?;
            if n {
                done.inserted += 1;
            } else {
                done.duplicates += 1;
            }
        }
        tx.commit().map_err(db)?;
        Ok(done)
    }

    fn totals(&mut self) -> Result<Totals, StoreError> {
        let count = |table: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(db)
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

    fn event_keys(&mut self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT node, camera, seq FROM events ORDER BY node, camera, seq")
            .map_err(db)?;
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
    }

    fn alerts(&mut self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT alert_id, kind, camera FROM alerts ORDER BY time DESC, alert_id")
            .map_err(db)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    fn rejected(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT topic, reason FROM rejected ORDER BY id")
            .map_err(db)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    fn camera_states(&mut self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT node, camera, state FROM camera_state WHERE removed = 0 ORDER BY node, camera")
            .map_err(db)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }
}

/// Inserts one row; `false` when it was already there.
fn insert(tx: &Transaction<'_>, item: &Item) -> rusqlite::Result<bool> {
    let at = millis(item.received);
    match &item.row {
        Row::Message(r) => message(tx, r, at),
        Row::Snapshot {
            topic,
            sha256,
            bytes,
            ..
        } => {
            tx.execute(
                "INSERT INTO snapshots (sha256, bytes, received_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sha256) DO UPDATE SET expired_at = NULL, received_at = max(received_at, ?3)",
                params![sha256, *bytes as i64, at],
            )?;
            let n = tx.execute(
                "INSERT INTO snapshot_topics (topic, sha256, received_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic) DO UPDATE SET sha256 = ?2, received_at = ?3
                 WHERE snapshot_topics.sha256 <> ?2",
                params![topic, sha256, at],
            )?;
            // With several instances on a shared subscription the event can
            // be committed (by another instance) before its picture.
            for table in ["events", "alerts"] {
                tx.execute(
                    &format!(
                        "UPDATE {table} SET snapshot_sha = ?2 WHERE snapshot_topic = ?1 AND snapshot_sha IS NULL"
                    ),
                    params![topic, sha256],
                )?;
            }
            Ok(n > 0)
        }
        Row::Rejected {
            topic,
            reason,
            bytes,
        } => {
            tx.execute(
                "INSERT INTO rejected (topic, reason, detail, bytes, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![topic, reason.kind(), reason.to_string(), *bytes as i64, at],
            )?;
            Ok(true)
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn snapshot_sha(tx: &Transaction<'_>, topic: Option<&str>) -> rusqlite::Result<Option<String>> {
    let Some(topic) = topic else { return Ok(None) };
    tx.query_row(
        "SELECT sha256 FROM snapshot_topics WHERE topic = ?1",
        [topic],
        |r| r.get(0),
    )
    .optional()
}

fn message(tx: &Transaction<'_>, r: &Record, at: i64) -> rusqlite::Result<bool> {
    match r {
        Record::Event(e) => event(tx, e, at),
        Record::ZoneAlert(z) => {
            let time = wire_millis(&z.time).unwrap_or(at);
            let kind = z.alerts.first().map_or("crowding", String::as_str);
            if let Some(raised) = kind.strip_suffix("_cleared") {
                return clear(tx, &z.node, &z.camera, raised, Some(&z.zone), time);
            }
            let topic = z.snapshot.as_ref().map(|s| s.topic.as_str());
            let sha = snapshot_sha(tx, topic)?;
            let n = tx.execute(
                "INSERT INTO alerts (alert_id, node, district, camera, kind, severity, time, rule, snapshot_topic,
                                     snapshot_sha, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (alert_id) DO NOTHING",
                params![z.id, z.node, z.district, z.camera, kind, severity(kind), time, z.zone, topic, sha, at, json(z)],
            )?;
            Ok(n > 0)
        }
        Record::CameraAlert(c) => {
            let time = wire_millis(&c.time).unwrap_or(at);
            if let Some(raised) = c.kind.strip_suffix("_cleared") {
                return clear(tx, &c.node, &c.camera, raised, None, time);
            }
            let n = tx.execute(
                "INSERT INTO alerts (alert_id, node, district, camera, kind, severity, time, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (alert_id) DO NOTHING",
                params![c.id, c.node, c.district, c.camera, c.kind, severity(&c.kind), time, at, json(c)],
            )?;
            Ok(n > 0)
        }
        Record::Counts(c) => {
            let start = wire_millis(&c.interval_start).unwrap_or(at);
            let end = wire_millis(&c.interval_end).unwrap_or(at);
            let n = tx.execute(
                "INSERT INTO counts (node, camera, interval_start, interval_end, district, seq, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                params![c.node, c.camera, start, end, c.district, c.seq as i64, at, json(c)],
            )?;
            Ok(n > 0)
        }
        Record::NodeStatus { origin, status } => node_status(tx, &origin.district, status, at),
        Record::CameraStatus { origin, status } => camera_status(tx, &origin.district, status, at),
        Record::CameraRemoved { origin } => {
            let n = tx.execute(
                "UPDATE camera_state SET removed = 1, updated_at = ?3 WHERE node = ?1 AND camera = ?2",
                params![origin.node, origin.camera, at],
            )?;
            Ok(n > 0)
        }
        Record::Stats { origin, json } => {
            let n = tx.execute(
                "UPDATE node_state SET stats = ?2 WHERE node = ?1",
                params![origin.node, json],
            )?;
            Ok(n > 0)
        }
        // Snapshots become `Row::Snapshot` once their file is written.
        Record::Snapshot { .. } => Ok(false),
    }
}

fn node_status(
    tx: &Transaction<'_>,
    district: &str,
    status: &edge_wire::NodeStatusMessage,
    at: i64,
) -> rusqlite::Result<bool> {
    let state = json(&status.state).trim_matches('"').to_string();
    let prev: Option<String> = tx
        .query_row(
            "SELECT state FROM node_state WHERE node = ?1",
            [&status.node],
            |r| r.get(0),
        )
        .optional()?;
    if prev.as_deref() != Some(state.as_str()) {
        tx.execute(
            "INSERT INTO node_history (node, state, at) VALUES (?1, ?2, ?3)",
            params![status.node, state, at],
        )?;
    }
    let since = status.since.as_deref().and_then(wire_millis);
    tx.execute(
        "INSERT INTO node_state (node, district, state, since, version, updated_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (node) DO UPDATE SET district = ?2, state = ?3, since = ?4, version = ?5, updated_at = ?6, payload = ?7",
        params![status.node, district, state, since, status.version, at, json(status)],
    )?;
    Ok(true)
}

/// The camera's current state, and a history row when its state, `since`
/// or health changed.
fn camera_status(
    tx: &Transaction<'_>,
    district: &str,
    status: &edge_wire::CameraStatusMessage,
    at: i64,
) -> rusqlite::Result<bool> {
    let state = json(&status.state).trim_matches('"').to_string();
    let since = wire_millis(&status.since).unwrap_or(at);
    // A status older than the one stored (a late redelivery) changes nothing.
    let time = wire_millis(&status.time).unwrap_or(at);
    let health = status.live.health.join(",");
    tx.execute(
        "INSERT INTO camera_history (node, camera, state, since, last_error, health)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![
            status.node,
            status.camera,
            state,
            since,
            status.last_error,
            health
        ],
    )?;
    tx.execute(
        "INSERT INTO camera_state (node, camera, district, state, since, last_error, health, fps_in, status_time,
                                   updated_at, removed, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11)
         ON CONFLICT (node, camera) DO UPDATE SET district = ?3, state = ?4, since = ?5, last_error = ?6,
           health = ?7, fps_in = ?8, status_time = ?9, updated_at = ?10, removed = 0, payload = ?11
         WHERE camera_state.status_time <= ?9",
        params![status.node, status.camera, district, state, since, status.last_error, health,
                status.live.fps_in, time, at, json(status)],
    )?;
    Ok(true)
}

fn event(tx: &Transaction<'_>, e: &edge_wire::EventMessage, at: i64) -> rusqlite::Result<bool> {
    let time = wire_millis(&e.frame_time).unwrap_or(at);
    let topic = e.snapshot.as_ref().map(|s| s.topic.as_str());
    let sha = snapshot_sha(tx, topic)?;
    let kind = json(&e.kind).trim_matches('"').to_string();
    let omitted = e
        .snapshot_omitted
        .map(|o| json(&o).trim_matches('"').to_string());
    let n = tx.execute(
        "INSERT INTO events (node, camera, seq, district, object_id, type, label, score, frame_time, alerts,
                             snapshot_topic, snapshot_sha, snapshot_omitted, received_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT DO NOTHING",
        params![e.node, e.camera, e.seq as i64, e.district, e.id, kind, e.label, f64::from(e.score), time,
                e.alerts.join(","), topic, sha, omitted, at, json(e)],
    )?;
    if n == 0 {
        return Ok(false);
    }
    // An object alert opens one incident per object and kind.
    for kind in &e.alerts {
        tx.execute(
            "INSERT INTO alerts (alert_id, node, district, camera, kind, severity, time, object_id, label, rule,
                                 snapshot_topic, snapshot_sha, received_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT (alert_id) DO NOTHING",
            params![format!("{}/{kind}", e.id), e.node, e.district, e.camera, kind, severity(kind), time, e.id,
                    e.label, e.alert.as_ref().map(|a| a.rule.clone()), topic, sha, at, json(e)],
        )?;
    }
    Ok(true)
}

/// Closes the open incident of `kind` on a camera (and zone).
fn clear(
    tx: &Transaction<'_>,
    node: &str,
    camera: &str,
    kind: &str,
    rule: Option<&str>,
    time: i64,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE alerts SET cleared_at = ?5 WHERE alert_id = (
             SELECT alert_id FROM alerts WHERE node = ?1 AND camera = ?2 AND kind = ?3
               AND (?4 IS NULL OR rule = ?4) AND cleared_at IS NULL AND time <= ?5
             ORDER BY time DESC LIMIT 1)",
        params![node, camera, kind, rule, time],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    fn fresh() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("db/centre.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn redelivery_is_stored_once() {
        contract::redelivery_is_stored_once(&mut fresh().1);
    }

    #[test]
    fn a_cleared_alarm_closes_its_incident() {
        contract::a_cleared_alarm_closes_its_incident(&mut fresh().1);
    }

    #[test]
    fn an_old_status_does_not_roll_back() {
        contract::an_old_status_does_not_roll_back(&mut fresh().1);
    }

    #[test]
    fn rejected_rows_are_kept_with_their_reason() {
        contract::rejected_rows_are_kept_with_their_reason(&mut fresh().1);
    }

    /// Opening migrates once; a database from a newer edge-centre is refused.
    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let (dir, s) = fresh();
        drop(s);
        let path = dir.path().join("db/centre.db");
        let mut s = Sqlite::open(&path).unwrap();
        assert_eq!(s.totals().unwrap(), Totals::default());
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let Err(e) = Sqlite::open(&path) else {
            panic!("opened a newer schema")
        };
        assert!(e.to_string().contains("upgrade edge-centre"), "{e}");
    }
}
