//! The embedded store: one SQLite file (WAL, `synchronous = FULL`: a
//! committed batch survives a power cut, so it may be acknowledged).

use std::path::Path;

use rusqlite::types::{ToSqlOutput, Value as Lite, ValueRef};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::rows::{self, Sql, Val};
use super::{
    Committed, Gap, GapReport, Item, LostRun, ReplayPlan, Request, Store, StoreError, Totals,
    delivery, millis,
};
use std::time::SystemTime;

/// Schema migrations, in order; `PRAGMA user_version` is how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_console.sql"),
    include_str!("../../migrations/sqlite/0003_delivery.sql"),
    include_str!("../../migrations/sqlite/0004_riders.sql"),
];

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
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open)?;
        // IMMEDIATE: the write lock first, so two instances starting at
        // once migrate one after the other instead of failing to upgrade a
        // read lock.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
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
        // IMMEDIATE: several instances may share the file.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let done = rows::commit(&mut Tx(&tx), items).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(done)
    }

    fn totals(&mut self) -> Result<Totals, StoreError> {
        rows::totals(&mut Conn(&self.conn)).map_err(db)
    }

    fn event_keys(&mut self) -> Result<Vec<(String, String, u64)>, StoreError> {
        rows::event_keys(&mut Conn(&self.conn)).map_err(db)
    }

    fn alerts(&mut self) -> Result<Vec<(String, String, String)>, StoreError> {
        rows::alerts(&mut Conn(&self.conn)).map_err(db)
    }

    fn rejected(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        rows::rejected(&mut Conn(&self.conn)).map_err(db)
    }

    fn camera_states(&mut self) -> Result<Vec<(String, String, String)>, StoreError> {
        rows::camera_states(&mut Conn(&self.conn)).map_err(db)
    }

    fn expire_snapshots(
        &mut self,
        now: SystemTime,
        cutoff: SystemTime,
        max_bytes: u64,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let gone = rows::expire_snapshots(&mut Tx(&tx), millis(now), millis(cutoff), max_bytes)
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(gone)
    }

    fn live_snapshots(&mut self) -> Result<Vec<String>, StoreError> {
        rows::live_snapshots(&mut Conn(&self.conn)).map_err(db)
    }

    fn gaps(&mut self) -> Result<Vec<Gap>, StoreError> {
        rows::gaps(&mut Conn(&self.conn)).map_err(db)
    }

    fn replay_scan(
        &mut self,
        now: SystemTime,
        me: &str,
        plan: &ReplayPlan,
    ) -> Result<Vec<Request>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = delivery::scan(&mut Tx(&tx), millis(now), me, plan).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn delivery(&mut self, limit: i64) -> Result<Vec<GapReport>, StoreError> {
        delivery::report(&mut Conn(&self.conn), limit).map_err(db)
    }

    fn lost(&mut self) -> Result<Vec<LostRun>, StoreError> {
        delivery::lost(&mut Conn(&self.conn)).map_err(db)
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Int(Some(i)) => ToSqlOutput::Owned(Lite::Integer(*i)),
            Val::Real(Some(f)) => ToSqlOutput::Owned(Lite::Real(*f)),
            Val::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Int(None) | Val::Real(None) | Val::Text(None) => ToSqlOutput::Owned(Lite::Null),
        })
    }
}

pub(super) fn run(conn: &Connection, sql: &str, params: &[Val]) -> rusqlite::Result<u64> {
    let mut st = conn.prepare_cached(sql)?;
    Ok(st.execute(rusqlite::params_from_iter(params))? as u64)
}

pub(super) fn select(
    conn: &Connection,
    sql: &str,
    params: &[Val],
) -> rusqlite::Result<Vec<Vec<Val>>> {
    let mut st = conn.prepare_cached(sql)?;
    let n = st.column_count();
    let rows = st.query_map(rusqlite::params_from_iter(params), |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Integer(v) => Val::Int(Some(v)),
                    ValueRef::Real(v) => Val::Real(Some(v)),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Val::Text(Some(String::from_utf8_lossy(t).into_owned()))
                    }
                    ValueRef::Null => Val::Text(None),
                })
            })
            .collect::<rusqlite::Result<Vec<Val>>>()
    })?;
    rows.collect()
}

/// Statements inside a transaction.
struct Tx<'a>(&'a Transaction<'a>);
/// Queries outside one.
struct Conn<'a>(&'a Connection);

impl Sql for Tx<'_> {
    type Error = rusqlite::Error;
    fn exec(&mut self, sql: &str, params: &[Val]) -> rusqlite::Result<u64> {
        run(self.0, sql, params)
    }
    fn query(&mut self, sql: &str, params: &[Val]) -> rusqlite::Result<Vec<Vec<Val>>> {
        select(self.0, sql, params)
    }
}

impl Sql for Conn<'_> {
    type Error = rusqlite::Error;
    fn exec(&mut self, sql: &str, params: &[Val]) -> rusqlite::Result<u64> {
        run(self.0, sql, params)
    }
    fn query(&mut self, sql: &str, params: &[Val]) -> rusqlite::Result<Vec<Vec<Val>>> {
        select(self.0, sql, params)
    }
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

    #[test]
    fn a_gap_is_requested_once_then_recovered_or_lost() {
        contract::a_gap_is_requested_once_then_recovered_or_lost(&mut fresh().1);
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
