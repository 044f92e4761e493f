//! PostgreSQL, for a city: the same rows as SQLite (`rows.rs`), one
//! transaction per batch. A lost connection (a restarted server) is
//! reopened at the next commit; until then commits fail and the writer
//! retries them with backoff, acknowledging nothing.

use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

use super::rows::{self, Sql, Val};
use super::{
    Committed, Gap, GapReport, Item, LostRun, ReplayPlan, Request, Store, StoreError, Totals,
    delivery, millis,
};
use std::time::SystemTime;

/// Schema migrations, in order; `schema_migrations` records those run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_console.sql"),
    include_str!("../../migrations/postgres/0003_delivery.sql"),
    include_str!("../../migrations/postgres/0004_riders.sql"),
];

/// Any number held only by this program, for the migration lock.
const MIGRATION_LOCK: i64 = 0x0edc_e17e;

pub struct Postgres {
    /// libpq-style connection string, password excluded.
    config: postgres::Config,
    /// What logs and errors call the database (host, port, name; never the
    /// password).
    name: String,
    client: Option<Client>,
    /// Statements prepared on `client`, by their SQL (cleared when it is
    /// replaced): the ingest runs the same few statements for every row.
    cache: Cache,
}

/// Prepared statements of one connection, by their SQL text.
pub(super) type Cache = std::collections::HashMap<String, postgres::Statement>;

fn db(e: postgres::Error) -> StoreError {
    StoreError::Db(Box::new(e))
}

impl Postgres {
    /// Connects and migrates. `url` is a `postgresql://` URL or a libpq
    /// `key=value` string; `password`, when given, overrides one in it.
    pub fn open(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|e| StoreError::Open {
            path: "the [store] url".into(),
            source: Box::new(e),
        })?;
        if let Some(p) = password {
            config.password(p);
        }
        config.connect_timeout(std::time::Duration::from_secs(5));
        let name = describe(&config);
        let mut me = Self {
            config,
            name,
            client: None,
            cache: Cache::new(),
        };
        let name = me.name.clone();
        me.connect().map_err(|e| StoreError::Open {
            path: name,
            source: Box::new(e),
        })?;
        me.migrate()?;
        Ok(me)
    }

    fn connect(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.cache.clear();
            let c = self.config.connect(NoTls)?;
            tracing::info!(database = %self.name, "connected to PostgreSQL");
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let c = self.connect().map_err(db)?;
        let mut tx = c.transaction().map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db)?;
        tx.batch_execute(
            "SET LOCAL client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
        )
        .map_err(db)?;
        let version: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(db)?
            .get(0);
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql).map_err(db)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// Runs `f` on a live connection; a connection found dead is dropped,
    /// so the next call reconnects.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.with_cache(|c, _| f(c))
    }

    /// [`Self::with`], also lending the connection's statement cache.
    fn with_cache<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &mut Cache) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.connect().map_err(db)?;
        let Self { client, cache, .. } = self;
        let Some(c) = client.as_mut() else {
            return Err(StoreError::Db("not connected".into()));
        };
        let out = f(c, cache);
        if out.is_err() && self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        out.map_err(db)
    }
}

/// `host:port/dbname` for logs.
fn describe(c: &postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.get_dbname().unwrap_or_default())
}

impl Store for Postgres {
    fn commit(&mut self, items: &[Item]) -> Result<Committed, StoreError> {
        self.with_cache(|c, cache| {
            let mut tx = c.transaction()?;
            let done = rows::commit(&mut Pg(&mut tx, Some(cache)), items)?;
            tx.commit()?;
            Ok(done)
        })
    }

    fn totals(&mut self) -> Result<Totals, StoreError> {
        self.with(|c| rows::totals(&mut Pg(c, None)))
    }

    fn event_keys(&mut self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.with(|c| rows::event_keys(&mut Pg(c, None)))
    }

    fn alerts(&mut self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.with(|c| rows::alerts(&mut Pg(c, None)))
    }

    fn rejected(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| rows::rejected(&mut Pg(c, None)))
    }

    fn camera_states(&mut self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.with(|c| rows::camera_states(&mut Pg(c, None)))
    }

    fn expire_snapshots(
        &mut self,
        now: SystemTime,
        cutoff: SystemTime,
        max_bytes: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let gone = rows::expire_snapshots(
                &mut Pg(&mut tx, None),
                millis(now),
                millis(cutoff),
                max_bytes,
            )?;
            tx.commit()?;
            Ok(gone)
        })
    }

    fn live_snapshots(&mut self) -> Result<Vec<String>, StoreError> {
        self.with(|c| rows::live_snapshots(&mut Pg(c, None)))
    }

    fn gaps(&mut self) -> Result<Vec<Gap>, StoreError> {
        self.with(|c| rows::gaps(&mut Pg(c, None)))
    }

    fn replay_scan(
        &mut self,
        now: SystemTime,
        me: &str,
        plan: &ReplayPlan,
    ) -> Result<Vec<Request>, StoreError> {
        self.with_cache(|c, cache| {
            let mut tx = c.transaction()?;
            let out = delivery::scan(&mut Pg(&mut tx, Some(cache)), millis(now), me, plan)?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn delivery(&mut self, limit: i64) -> Result<Vec<GapReport>, StoreError> {
        self.with(|c| delivery::report(&mut Pg(c, None), limit))
    }

    fn lost(&mut self) -> Result<Vec<LostRun>, StoreError> {
        self.with(|c| delivery::lost(&mut Pg(c, None)))
    }
}

/// The connection string as logs may show it: host, port and database.
pub fn redacted(url: &str) -> String {
    url.parse::<postgres::Config>()
        .map_or_else(|_| "(unparsable url)".into(), |c| describe(&c))
}

/// `?1` → `$1` (the SQL of `rows.rs` is written for both databases).
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn to_sql(v: &Val) -> &(dyn ToSql + Sync) {
    match v {
        Val::Int(i) => i,
        Val::Real(f) => f,
        Val::Text(s) => s,
    }
}

/// A connection or transaction, as rows.rs uses it.
/// A connection (or transaction) as `rows` uses it, with the connection's
/// statement cache when there is one.
pub(super) struct Pg<'a, C: postgres::GenericClient>(
    pub(super) &'a mut C,
    pub(super) Option<&'a mut Cache>,
);

impl<C: postgres::GenericClient> Pg<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(cache) = self.1.as_deref_mut() {
            if let Some(st) = cache.get(sql) {
                return Ok(st.clone());
            }
            let st = self.0.prepare(&dollars(sql))?;
            cache.insert(sql.to_string(), st.clone());
            return Ok(st);
        }
        self.0.prepare(&dollars(sql))
    }
}

impl<C: postgres::GenericClient> Sql for Pg<'_, C> {
    type Error = postgres::Error;

    fn for_update(&self) -> &'static str {
        " FOR UPDATE"
    }
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(to_sql).collect();
        self.0.execute(&st, &p)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, postgres::Error> {
        let st = self.statement(sql)?;
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(to_sql).collect();
        let rows = self.0.query(&st, &p)?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..r.len())
                    // A column of a type rows.rs never selects reads as NULL
                    // rather than panicking.
                    .map(|i| match *r.columns()[i].type_() {
                        Type::INT8 => Val::Int(r.try_get(i).unwrap_or(None)),
                        Type::INT4 => Val::Int(
                            r.try_get::<_, Option<i32>>(i)
                                .unwrap_or(None)
                                .map(i64::from),
                        ),
                        Type::FLOAT8 => Val::Real(r.try_get(i).unwrap_or(None)),
                        _ => Val::Text(r.try_get(i).unwrap_or(None)),
                    })
                    .collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_for_postgres() {
        assert_eq!(
            dollars("a = ?1 AND b = ?12 OR c = '?' "),
            "a = $1 AND b = $12 OR c = '?' "
        );
    }
}
