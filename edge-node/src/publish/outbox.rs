//! The durable outbox: every event and snapshot is committed here before it
//! is published, and removed only when the broker has acknowledged it.
//!
//! Pure storage, no MQTT: a record is a topic, a payload and a few facts the
//! eviction policy needs (class, camera). Backed by [redb] (pure Rust,
//! copy-on-write B-trees, a commit is durable when `commit()` returns), so it
//! survives `kill -9` and power loss; see `docs/outbox.md` for the choice.
//!
//! - Keys are one increasing `u64` per node: key order is publish order, and
//!   so per-camera order.
//! - A snapshot and its event are written in one transaction (snapshot at `k`,
//!   event at `k + 1`, its alerts-topic copy at `k + 2`); the event may carry
//!   a *fallback* payload (the same event without its snapshot reference)
//!   that replaces it if the snapshot is evicted before it was sent.
//! - Quota: the sum of stored record sizes stays within `quota_bytes`;
//!   snapshots are evicted first (oldest first), then events (oldest first).
//!   Every eviction is counted, durably, in the same transaction.
//! - The last `seq` of every camera is stored with its event, so numbering
//!   continues after a restart and the centre sees gaps, never a reset. A
//!   message that could not be stored ([`Outbox::lost`]) still consumes its
//!   `seq`: the high-water mark and the loss counter go to disk with the next
//!   commit that succeeds.
//! - Objects with a `new` and no `end` are kept in a table (`open`) with their
//!   latest message, in the same transaction as the message, so that after a
//!   crash the node can end them ([`Outbox::open_objects`]).
//! - Storage faults: after an I/O error (a full disk, a failing device) redb
//!   refuses every later write until the database is reopened. The store is
//!   closed on such an error and reopened on the next write, with a backoff
//!   (0.1 s doubling to 5 s); [`Outbox::health`] says why it is failing until
//!   a commit succeeds again.
//! - A record that can never be delivered (larger than a packet limit) is
//!   moved to a `quarantine` table ([`Outbox::quarantine`]): kept, counted,
//!   and out of the queue.
//! - Delivered window (`keep_delivered`, see `outbox/window.rs`): when the
//!   broker acknowledges a record of a lifecycle event (the event, its
//!   alerts-topic copy, its snapshot: the records appended with a `seq`), it
//!   is moved to the `delivered` table instead of being deleted, so that it
//!   can be sent again on request ([`Outbox::seq_states`],
//!   [`Outbox::delivered_group`], [`Outbox::requeue`]). Kept records count
//!   against the quota and are evicted first (oldest first, whole `seq`
//!   groups) before any record not yet delivered; a sweep
//!   ([`Outbox::sweep_delivered`]) deletes those kept longer than the
//!   window. Every `seq` whose event leaves for good is remembered with why
//!   (table `gone`: evicted, expired, not stored), so that a request for it
//!   can be answered.

mod codec;
mod gone;
mod window;

pub use gone::Gone;
pub use window::{KeptGroup, SeqState};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use codec::{decode, encode};

const MSGS: TableDefinition<u64, &[u8]> = TableDefinition::new("msgs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Objects with a `new` and no `end` yet: event id → its latest message.
const OPEN: TableDefinition<&str, &[u8]> = TableDefinition::new("open");
/// Records taken out of the queue because they can never be delivered.
const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");
/// Delivered records kept for replay: key → `[delivered at, ms since the
/// epoch, u64 LE][record]`.
const DELIVERED: TableDefinition<u64, &[u8]> = TableDefinition::new("delivered");
/// The `seq` and role of every record (queued or delivered) of a lifecycle
/// event: key → `seq << 2 | role`.
const TAGS: TableDefinition<u64, u64> = TableDefinition::new("tags");
/// Per camera: the runs of `seq` gone for good, and why (`outbox/gone.rs`).
const GONE: TableDefinition<&str, &[u8]> = TableDefinition::new("gone");
const SEQ_PREFIX: &str = "seq/";
/// redb's page cache. Its default (1 GiB) lets the node's memory follow the
/// outbox up during an outage and stay there.
const CACHE_BYTES: usize = 16 << 20;
/// Reopen backoff after a storage fault.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create the outbox folder {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox store {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("the outbox store {path} is closed after a storage fault ({reason}); reopening it")]
    Unavailable { path: String, reason: String },
    #[error("outbox record {key} is corrupt")]
    Corrupt { key: u64 },
    #[error("the outbox lock is poisoned")]
    Poisoned,
}

impl OutboxError {
    /// Why the storage failed, in words (`disk full`, `I/O error: …`), when
    /// this is a storage fault: the store is then closed and reopened.
    pub fn fault(&self) -> Option<String> {
        match self {
            OutboxError::Store { source, .. } => match &**source {
                redb::Error::Io(e) => Some(io_reason(e)),
                redb::Error::PreviousIo => Some("I/O error".into()),
                _ => None,
            },
            OutboxError::Unavailable { reason, .. } => Some(reason.clone()),
            _ => None,
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC) {
        "disk full".into()
    } else {
        format!("I/O error: {e}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Event,
    Snapshot,
}

/// A record's part in its lifecycle event's group (appended together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Snapshot,
    Event,
    /// The event's copy on a second topic (the alerts-only topic).
    Copy,
}

/// The `seq` of the lifecycle event a record belongs to, and its part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag {
    seq: u64,
    role: Role,
}

impl Tag {
    fn pack(self) -> u64 {
        (self.seq << 2)
            | match self.role {
                Role::Snapshot => 0,
                Role::Event => 1,
                Role::Copy => 2,
            }
    }
    fn unpack(v: u64) -> Option<Tag> {
        let role = match v & 3 {
            0 => Role::Snapshot,
            1 => Role::Event,
            2 => Role::Copy,
            _ => return None,
        };
        Some(Tag { seq: v >> 2, role })
    }
}

/// One stored message, ready to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub key: u64,
    pub class: Class,
    pub camera: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Depth, eviction, loss and quarantine counters (all but the depth survive
/// restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub snapshots: u64,
    pub bytes: u64,
    pub quota_bytes: u64,
    pub evicted_events: u64,
    pub evicted_snapshots: u64,
    pub evicted_bytes: u64,
    /// Messages that could not be stored (storage fault); their `seq` is consumed.
    pub lost_events: u64,
    /// Records taken out of the queue because they can never be delivered.
    pub quarantined: u64,
    /// Delivered records kept for replay, and their size (counted in the quota).
    pub delivered: u64,
    pub delivered_bytes: u64,
    /// Kept delivered records evicted for room, and deleted by age.
    pub evicted_delivered: u64,
    pub expired_delivered: u64,
}

/// The store is failing: why, since when, and how many writes failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub since: SystemTime,
    pub failed_writes: u64,
}

/// An object's open state, changed in the same transaction as its message.
#[derive(Clone, Copy, Debug)]
pub enum OpenObject<'a> {
    /// A `new` or `update`: the object is open; `last` is its latest message.
    Set { id: &'a str, last: &'a [u8] },
    /// Its `end`.
    Clear { id: &'a str },
}

/// What `append` hands over: an event and, optionally, its snapshot.
#[derive(Clone, Debug)]
pub struct Append<'a> {
    pub camera: &'a str,
    /// The camera's event `seq`, stored as its high-water mark; `None` for
    /// messages numbered apart (zone alerts, counts).
    pub seq: Option<u64>,
    pub event_topic: &'a str,
    pub event: &'a [u8],
    /// `(topic, jpeg, event payload without the snapshot reference)`.
    pub snapshot: Option<(&'a str, &'a [u8], &'a [u8])>,
    /// A copy of the event on a second topic (the alerts-only topic), stored
    /// right after it.
    pub copy_topic: Option<&'a str>,
    pub open: Option<OpenObject<'a>>,
}

#[derive(Clone, Debug)]
struct Meta {
    camera: Arc<str>,
    class: Class,
    size: u64,
    tag: Option<Tag>,
}

/// A delivered record kept for replay.
#[derive(Clone, Debug)]
struct Kept {
    meta: Meta,
    /// Delivered at, ms since the epoch.
    at_ms: u64,
}

#[derive(Debug, Default)]
struct Index {
    all: BTreeMap<u64, Meta>,
    snapshots: BTreeSet<u64>,
    by_camera: BTreeMap<Arc<str>, BTreeSet<u64>>,
    seqs: HashMap<String, u64>,
    /// Cameras whose `seq` high-water mark moved without a commit (a lost message).
    unsaved_seqs: BTreeSet<String>,
    next_key: u64,
    bytes: u64,
    evicted_events: u64,
    evicted_snapshots: u64,
    evicted_bytes: u64,
    lost_events: u64,
    quarantined: u64,
    /// The delivered window: key → record, by delivery time, and per camera
    /// by `seq`.
    kept: BTreeMap<u64, Kept>,
    kept_by_time: BTreeSet<(u64, u64)>,
    kept_by_seq: HashMap<String, BTreeMap<u64, BTreeSet<u64>>>,
    kept_bytes: u64,
    evicted_delivered: u64,
    expired_delivered: u64,
    /// Per camera: the `seq` gone for good, and why.
    gone: HashMap<String, gone::Runs>,
    /// Cameras whose `gone` runs changed since the last commit.
    gone_dirty: BTreeSet<String>,
}

impl Index {
    fn insert(&mut self, key: u64, m: Meta) {
        self.bytes += m.size;
        if m.class == Class::Snapshot {
            self.snapshots.insert(key);
        }
        self.by_camera
            .entry(m.camera.clone())
            .or_default()
            .insert(key);
        self.all.insert(key, m);
    }
    fn remove(&mut self, key: u64) -> Option<Meta> {
        let m = self.all.remove(&key)?;
        self.bytes -= m.size;
        self.snapshots.remove(&key);
        if let Some(s) = self.by_camera.get_mut(&m.camera) {
            s.remove(&key);
            if s.is_empty() {
                self.by_camera.remove(&m.camera);
            }
        }
        Some(m)
    }
    fn keep(&mut self, key: u64, k: Kept) {
        self.kept_bytes += k.meta.size;
        self.kept_by_time.insert((k.at_ms, key));
        if let Some(t) = k.meta.tag {
            self.kept_by_seq
                .entry(k.meta.camera.to_string())
                .or_default()
                .entry(t.seq)
                .or_default()
                .insert(key);
        }
        self.kept.insert(key, k);
    }
    fn unkeep(&mut self, key: u64) -> Option<Kept> {
        let k = self.kept.remove(&key)?;
        self.kept_bytes -= k.meta.size;
        self.kept_by_time.remove(&(k.at_ms, key));
        if let Some(t) = k.meta.tag
            && let Some(by_seq) = self.kept_by_seq.get_mut(&*k.meta.camera)
        {
            if let Some(keys) = by_seq.get_mut(&t.seq) {
                keys.remove(&key);
                if keys.is_empty() {
                    by_seq.remove(&t.seq);
                }
            }
            if by_seq.is_empty() {
                self.kept_by_seq.remove(&*k.meta.camera);
            }
        }
        Some(k)
    }
    /// `seq` of `camera` is gone for good, for `why` (on disk with the next commit).
    fn mark(&mut self, camera: &str, seq: u64, why: Gone) {
        self.gone
            .entry(camera.to_string())
            .or_default()
            .mark(seq, why);
        self.gone_dirty.insert(camera.to_string());
    }
    /// A record left for good: if it was a lifecycle event, its `seq` is gone for `why`.
    fn mark_meta(&mut self, m: &Meta, why: Gone) {
        if let Some(t) = m.tag.filter(|t| t.role == Role::Event) {
            let cam = m.camera.clone();
            self.mark(&cam, t.seq, why);
        }
    }
    fn camera(&self, name: &str) -> Arc<str> {
        self.by_camera
            .keys()
            .find(|c| &***c == name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }
    /// After a reopen: the disk is the truth for the records; counters and
    /// `seq` marks keep whatever is higher (in memory: not yet committed).
    fn merge_memory(&mut self, mem: &Index) {
        for (cam, &s) in &mem.seqs {
            let e = self.seqs.entry(cam.clone()).or_insert(0);
            *e = (*e).max(s);
        }
        self.unsaved_seqs.clone_from(&mem.unsaved_seqs);
        self.next_key = self.next_key.max(mem.next_key);
        self.evicted_events = self.evicted_events.max(mem.evicted_events);
        self.evicted_snapshots = self.evicted_snapshots.max(mem.evicted_snapshots);
        self.evicted_bytes = self.evicted_bytes.max(mem.evicted_bytes);
        self.lost_events = self.lost_events.max(mem.lost_events);
        self.quarantined = self.quarantined.max(mem.quarantined);
        self.evicted_delivered = self.evicted_delivered.max(mem.evicted_delivered);
        self.expired_delivered = self.expired_delivered.max(mem.expired_delivered);
        // The disk's runs were all written from memory: memory has them all.
        self.gone.clone_from(&mem.gone);
        self.gone_dirty.clone_from(&mem.gone_dirty);
    }
}

#[derive(Debug)]
struct Health {
    failing: Option<Failure>,
    next_try: Instant,
    backoff: Duration,
}

/// What an append will write: its records, and what it evicts to stay
/// within the quota.
struct Plan {
    recs: Vec<(Class, Option<Tag>, Vec<u8>)>,
    victims: Vec<u64>,
    /// Kept delivered records evicted (whole `seq` groups), oldest first.
    kept_victims: Vec<u64>,
    evicted_events: u64,
    evicted_snapshots: u64,
    evicted_bytes: u64,
}

/// The store. Share it with `Arc`; every method takes `&self`.
pub struct Outbox {
    /// `None` while closed after a storage fault.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    quota_bytes: u64,
    /// How long delivered lifecycle records are kept (zero: deleted when acknowledged).
    keep_delivered: Duration,
    index: Mutex<Index>,
    health: Mutex<Health>,
}

type Res<T> = Result<T, OutboxError>;

impl Outbox {
    /// Open (or create) `dir/outbox.redb` and rebuild the in-memory index;
    /// delivered records are deleted, not kept (see [`Outbox::open_keeping`]).
    pub fn open(dir: &Path, quota_bytes: u64) -> Res<Outbox> {
        Self::open_keeping(dir, quota_bytes, Duration::ZERO)
    }

    /// [`Outbox::open`] with a delivered window: acknowledged lifecycle
    /// records are kept for `keep_delivered` (zero: deleted at once).
    pub fn open_keeping(dir: &Path, quota_bytes: u64, keep_delivered: Duration) -> Res<Outbox> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("outbox.redb");
        let db = open_db(&path)?;
        let ix = read_index(&path, &db)?;
        Ok(Outbox {
            db: RwLock::new(Some(db)),
            path,
            quota_bytes: quota_bytes.max(1),
            keep_delivered,
            index: Mutex::new(ix),
            health: Mutex::new(Health {
                failing: None,
                next_try: Instant::now(),
                backoff: RETRY_MIN,
            }),
        })
    }

    fn err(&self, e: impl Into<redb::Error>) -> OutboxError {
        store_err(&self.path, e)
    }

    fn lock(&self) -> Res<MutexGuard<'_, Index>> {
        self.index.lock().map_err(|_| OutboxError::Poisoned)
    }

    fn unavailable(&self) -> OutboxError {
        let reason = self
            .health()
            .map_or_else(|| "closed".to_string(), |f| f.reason);
        OutboxError::Unavailable {
            path: self.path.display().to_string(),
            reason,
        }
    }

    /// Reopen the store if it was closed by a fault and the backoff allows.
    fn ensure_open(&self, ix: &mut Index) -> Res<()> {
        if self.db.read().map_err(|_| OutboxError::Poisoned)?.is_some() {
            return Ok(());
        }
        {
            let h = self.health.lock().map_err(|_| OutboxError::Poisoned)?;
            if Instant::now() < h.next_try {
                drop(h);
                return Err(self.unavailable());
            }
        }
        let reopened = open_db(&self.path).and_then(|db| {
            let fresh = read_index(&self.path, &db)?;
            Ok((db, fresh))
        });
        match reopened {
            Ok((db, mut fresh)) => {
                fresh.merge_memory(ix);
                *ix = fresh;
                *self.db.write().map_err(|_| OutboxError::Poisoned)? = Some(db);
                tracing::info!(path = %self.path.display(), "outbox store reopened");
                Ok(())
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// A write failed with `e`: on a storage fault, close the store (redb
    /// refuses every later write until it is reopened) and back off.
    fn failed(&self, e: &OutboxError) {
        let reason = e.fault().unwrap_or_else(|| e.to_string());
        if matches!(e, OutboxError::Store { .. })
            && let Ok(mut db) = self.db.write()
        {
            *db = None;
        }
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        let now = Instant::now();
        h.next_try = now + h.backoff;
        h.backoff = (h.backoff * 2).min(RETRY_MAX);
        match &mut h.failing {
            Some(f) => {
                f.failed_writes += 1;
                f.reason = reason;
            }
            None => {
                tracing::error!(path = %self.path.display(), reason = %reason, error = %e,
                    "outbox store failing: messages cannot be stored until it recovers");
                h.failing = Some(Failure {
                    reason,
                    since: SystemTime::now(),
                    failed_writes: 1,
                });
            }
        }
    }

    fn succeeded(&self) {
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        h.backoff = RETRY_MIN;
        if let Some(f) = h.failing.take() {
            let secs = f.since.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
            tracing::info!(path = %self.path.display(), failed_writes = f.failed_writes,
                failing_s = secs, "outbox store recovered");
        }
    }

    /// Run one write against the open store, reopening it first if a fault
    /// closed it; a storage fault closes it again.
    fn write<T>(&self, ix: &mut Index, f: impl FnOnce(&Database, &mut Index) -> Res<T>) -> Res<T> {
        self.ensure_open(ix)?;
        let r = {
            let g = self.db.read().map_err(|_| OutboxError::Poisoned)?;
            match g.as_ref() {
                Some(db) => f(db, ix),
                None => Err(self.unavailable()),
            }
        };
        match &r {
            Ok(_) => self.succeeded(),
            Err(e) if e.fault().is_some() => self.failed(e),
            Err(_) => {}
        }
        r
    }

    /// The store is failing (and why), or `None` when it is healthy.
    pub fn health(&self) -> Option<Failure> {
        self.health.lock().ok().and_then(|h| h.failing.clone())
    }

    /// Commit one event (with its snapshot, its alerts copy and its open
    /// state) durably, evicting older records when the quota would be
    /// exceeded. Returns the event's key.
    pub fn append(&self, a: &Append<'_>) -> Res<u64> {
        let mut ix = self.lock()?;
        let plan = plan(&ix, a, self.quota_bytes, &[]);
        self.write(&mut ix, |db, ix| self.commit(db, ix, a, &plan, &[]))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one write transaction and its mirror in memory, kept side by side"
    )]
    fn commit(
        &self,
        db: &Database,
        ix: &mut Index,
        a: &Append<'_>,
        plan: &Plan,
        replaces: &[u64],
    ) -> Res<u64> {
        let first = ix.next_key;
        let next = first + plan.recs.len() as u64;
        let seq = a
            .seq
            .map(|s| ix.seqs.get(a.camera).copied().unwrap_or(0).max(s));
        // Marked before the commit: a mark of a record still stored (the
        // commit failed) is never read, records are looked up first.
        for k in &plan.victims {
            if let Some(m) = ix.all.get(k).cloned() {
                ix.mark_meta(&m, Gone::Evicted);
            }
        }
        for k in &plan.kept_victims {
            if let Some(m) = ix.kept.get(k).map(|k| k.meta.clone()) {
                ix.mark_meta(&m, Gone::Evicted);
            }
        }
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(MSGS).map_err(|e| self.err(e))?;
            let mut tags = tx.open_table(TAGS).map_err(|e| self.err(e))?;
            for &k in &plan.victims {
                t.remove(k).map_err(|e| self.err(e))?;
                tags.remove(k).map_err(|e| self.err(e))?;
                if ix.all[&k].class == Class::Snapshot {
                    self.use_fallback(&mut t, k, &plan.victims)?;
                }
            }
            let mut d = tx.open_table(DELIVERED).map_err(|e| self.err(e))?;
            for &k in plan.kept_victims.iter().chain(replaces) {
                d.remove(k).map_err(|e| self.err(e))?;
                tags.remove(k).map_err(|e| self.err(e))?;
            }
            for (i, (_, tag, rec)) in plan.recs.iter().enumerate() {
                let key = first + i as u64;
                t.insert(key, rec.as_slice()).map_err(|e| self.err(e))?;
                if let Some(tag) = tag {
                    tags.insert(key, tag.pack()).map_err(|e| self.err(e))?;
                }
            }
            let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
            let counters = [
                ("next_key", next),
                ("evicted_events", ix.evicted_events + plan.evicted_events),
                (
                    "evicted_snapshots",
                    ix.evicted_snapshots + plan.evicted_snapshots,
                ),
                ("evicted_bytes", ix.evicted_bytes + plan.evicted_bytes),
                ("lost_events", ix.lost_events),
                (
                    "evicted_delivered",
                    ix.evicted_delivered + plan.kept_victims.len() as u64,
                ),
            ];
            for (k, v) in counters {
                m.insert(k, v).map_err(|e| self.err(e))?;
            }
            self.save_seqs(&mut m, ix, a.camera, seq)?;
            self.save_gone(&tx, ix)?;
            if let Some(o) = a.open {
                let mut t = tx.open_table(OPEN).map_err(|e| self.err(e))?;
                match o {
                    OpenObject::Set { id, last } => t.insert(id, last).map(|_| ()),
                    OpenObject::Clear { id } => t.remove(id).map(|_| ()),
                }
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;

        // The commit is durable: now mirror it in memory.
        for &k in &plan.victims {
            ix.remove(k);
        }
        for &k in plan.kept_victims.iter().chain(replaces) {
            ix.unkeep(k);
        }
        ix.evicted_events += plan.evicted_events;
        ix.evicted_snapshots += plan.evicted_snapshots;
        ix.evicted_bytes += plan.evicted_bytes;
        ix.evicted_delivered += plan.kept_victims.len() as u64;
        let camera = ix.camera(a.camera);
        for (i, (class, tag, rec)) in plan.recs.iter().enumerate() {
            ix.insert(
                first + i as u64,
                Meta {
                    camera: camera.clone(),
                    class: *class,
                    size: rec.len() as u64,
                    tag: *tag,
                },
            );
        }
        ix.next_key = next;
        ix.unsaved_seqs.clear();
        ix.gone_dirty.clear();
        if let Some(s) = seq {
            ix.seqs.insert(a.camera.to_string(), s);
        }
        if plan.evicted_events + plan.evicted_snapshots > 0 || !plan.kept_victims.is_empty() {
            tracing::warn!(
                evicted_snapshots = plan.evicted_snapshots,
                evicted_events = plan.evicted_events,
                evicted_delivered = plan.kept_victims.len(),
                bytes = plan.evicted_bytes,
                quota_bytes = self.quota_bytes,
                "outbox over quota: evicted"
            );
        }
        Ok(next - 1)
    }

    /// Write the `gone` runs of every camera whose runs changed.
    fn save_gone(&self, tx: &redb::WriteTransaction, ix: &Index) -> Res<()> {
        if ix.gone_dirty.is_empty() {
            return Ok(());
        }
        let mut g = tx.open_table(GONE).map_err(|e| self.err(e))?;
        for cam in &ix.gone_dirty {
            if let Some(runs) = ix.gone.get(cam) {
                g.insert(cam.as_str(), runs.encode().as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// Write the `seq` high-water marks: `camera`'s (this commit) and every
    /// one a lost message moved.
    fn save_seqs(
        &self,
        m: &mut redb::Table<'_, &'static str, u64>,
        ix: &Index,
        camera: &str,
        seq: Option<u64>,
    ) -> Res<()> {
        for cam in &ix.unsaved_seqs {
            if let Some(&s) = ix.seqs.get(cam) {
                m.insert(format!("{SEQ_PREFIX}{cam}").as_str(), s)
                    .map_err(|e| self.err(e))?;
            }
        }
        if let Some(s) = seq {
            m.insert(format!("{SEQ_PREFIX}{camera}").as_str(), s)
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The snapshot at `snap_key` was evicted: rewrite its event and the
    /// event's alerts copy (the next keys, written in the same transaction)
    /// with their fallback payload (no snapshot reference), unless they are
    /// evicted too.
    fn use_fallback(
        &self,
        t: &mut redb::Table<'_, u64, &'static [u8]>,
        snap_key: u64,
        victims: &[u64],
    ) -> Res<()> {
        for key in [snap_key + 1, snap_key + 2] {
            if victims.contains(&key) {
                continue;
            }
            let rewritten = match t.get(key).map_err(|e| self.err(e))? {
                Some(v) => match decode(v.value()) {
                    Some(d) if d.class == Class::Event => d
                        .fallback
                        .map(|fb| encode(Class::Event, d.camera, d.topic, fb, None)),
                    Some(_) => return Ok(()), // the next message's snapshot
                    None => return Err(OutboxError::Corrupt { key }),
                },
                None => None,
            };
            if let Some(r) = rewritten {
                t.insert(key, r.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// A message of `camera` could not be stored: count it as lost and keep
    /// its `seq` consumed (the centre sees the gap). Both reach the disk with
    /// the next commit that succeeds.
    pub fn lost(&self, camera: &str, seq: Option<u64>) {
        let Ok(mut ix) = self.lock() else {
            return;
        };
        ix.lost_events += 1;
        if let Some(s) = seq {
            ix.mark(camera, s, Gone::NotStored);
            let e = ix.seqs.entry(camera.to_string()).or_insert(0);
            if s > *e {
                *e = s;
                ix.unsaved_seqs.insert(camera.to_string());
            }
        }
    }

    /// Read one stored message.
    pub fn get(&self, key: u64) -> Res<Option<Message>> {
        let g = self.db.read().map_err(|_| OutboxError::Poisoned)?;
        let Some(db) = g.as_ref() else {
            drop(g);
            return Err(self.unavailable());
        };
        let rx = db.begin_read().map_err(|e| self.err(e))?;
        let t = rx.open_table(MSGS).map_err(|e| self.err(e))?;
        let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let d = decode(v.value()).ok_or(OutboxError::Corrupt { key })?;
        Ok(Some(Message {
            key,
            class: d.class,
            camera: d.camera.to_string(),
            topic: d.topic.to_string(),
            payload: d.payload.to_vec(),
        }))
    }

    /// Acknowledged messages leave the queue, in one transaction: a
    /// lifecycle event's records (appended with a `seq`) move to the
    /// delivered window when it is on, every other record is deleted.
    /// Unknown keys (already evicted or removed) are ignored. Returns how
    /// many left the queue.
    pub fn remove(&self, keys: &[u64]) -> Res<usize> {
        let mut ix = self.lock()?;
        let present: Vec<u64> = keys
            .iter()
            .copied()
            .filter(|k| ix.all.contains_key(k))
            .collect();
        if present.is_empty() && ix.unsaved_seqs.is_empty() && ix.gone_dirty.is_empty() {
            return Ok(0);
        }
        let keep = !self.keep_delivered.is_zero();
        let at_ms = now_ms();
        for k in &present {
            if let Some(m) = ix.all.get(k).cloned()
                && !(keep && m.tag.is_some())
            {
                ix.mark_meta(&m, Gone::Expired);
            }
        }
        self.write(&mut ix, |db, ix| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            let mut kept = Vec::new();
            {
                let mut t = tx.open_table(MSGS).map_err(|e| self.err(e))?;
                let mut d = tx.open_table(DELIVERED).map_err(|e| self.err(e))?;
                let mut tags = tx.open_table(TAGS).map_err(|e| self.err(e))?;
                for &k in &present {
                    let rec = t
                        .remove(k)
                        .map_err(|e| self.err(e))?
                        .map(|v| v.value().to_vec());
                    match rec {
                        Some(rec) if keep && ix.all[&k].tag.is_some() => {
                            let mut v = Vec::with_capacity(8 + rec.len());
                            v.extend_from_slice(&at_ms.to_le_bytes());
                            v.extend_from_slice(&rec);
                            d.insert(k, v.as_slice()).map_err(|e| self.err(e))?;
                            kept.push(k);
                        }
                        _ => {
                            tags.remove(k).map_err(|e| self.err(e))?;
                        }
                    }
                }
                let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
                m.insert("lost_events", ix.lost_events)
                    .map_err(|e| self.err(e))?;
                self.save_seqs(&mut m, ix, "", None)?;
                self.save_gone(&tx, ix)?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            ix.unsaved_seqs.clear();
            ix.gone_dirty.clear();
            for &k in &present {
                if let Some(meta) = ix.remove(k)
                    && kept.contains(&k)
                {
                    ix.keep(k, Kept { meta, at_ms });
                }
            }
            Ok(present.len())
        })
    }

    /// Take record `key` out of the queue for good: it can never be
    /// delivered (larger than a packet limit). It is kept in the quarantine
    /// table and counted; a quarantined snapshot's event goes without it.
    /// Returns whether the record was there.
    pub fn quarantine(&self, key: u64) -> Res<bool> {
        let mut ix = self.lock()?;
        let Some(class) = ix.all.get(&key).map(|m| m.class) else {
            return Ok(false);
        };
        self.write(&mut ix, |db, ix| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = tx.open_table(MSGS).map_err(|e| self.err(e))?;
                let rec = t
                    .remove(key)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec());
                if let Some(rec) = rec {
                    let mut q = tx.open_table(QUARANTINE).map_err(|e| self.err(e))?;
                    q.insert(key, rec.as_slice()).map_err(|e| self.err(e))?;
                }
                let mut tags = tx.open_table(TAGS).map_err(|e| self.err(e))?;
                tags.remove(key).map_err(|e| self.err(e))?;
                if class == Class::Snapshot {
                    self.use_fallback(&mut t, key, &[])?;
                }
                let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
                m.insert("quarantined", ix.quarantined + 1)
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            ix.remove(key);
            ix.quarantined += 1;
            Ok(true)
        })
    }

    /// The latest message of every object that has a `new` and no `end`
    /// (after a crash: the objects the previous run left open), oldest id first.
    pub fn open_objects(&self) -> Res<Vec<(String, Vec<u8>)>> {
        let g = self.db.read().map_err(|_| OutboxError::Poisoned)?;
        let Some(db) = g.as_ref() else {
            drop(g);
            return Err(self.unavailable());
        };
        let rx = db.begin_read().map_err(|e| self.err(e))?;
        let t = rx.open_table(OPEN).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Forget an open object without a message (its stored message is unreadable).
    pub fn forget_open(&self, id: &str) -> Res<()> {
        let mut ix = self.lock()?;
        self.write(&mut ix, |db, _| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut t = tx.open_table(OPEN).map_err(|e| self.err(e))?;
                t.remove(id).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// Cameras with stored messages.
    pub fn cameras(&self) -> Vec<String> {
        self.lock()
            .map(|ix| ix.by_camera.keys().map(|c| c.to_string()).collect())
            .unwrap_or_default()
    }

    /// The oldest stored key of `camera` after `after` (or the oldest at all).
    pub fn next_key(&self, camera: &str, after: Option<u64>) -> Option<u64> {
        let ix = self.lock().ok()?;
        let keys = ix.by_camera.get(camera)?;
        match after {
            Some(a) => keys.range(a + 1..).next().copied(),
            None => keys.first().copied(),
        }
    }

    /// The highest `seq` ever handed out for `camera` (0 if none): stored, or
    /// consumed by a lost message.
    pub fn last_seq(&self, camera: &str) -> u64 {
        self.lock()
            .ok()
            .and_then(|ix| ix.seqs.get(camera).copied())
            .unwrap_or(0)
    }

    pub fn counters(&self) -> Counters {
        let Ok(ix) = self.lock() else {
            return Counters::default();
        };
        Counters {
            events: (ix.all.len() - ix.snapshots.len()) as u64,
            snapshots: ix.snapshots.len() as u64,
            bytes: ix.bytes,
            quota_bytes: self.quota_bytes,
            evicted_events: ix.evicted_events,
            evicted_snapshots: ix.evicted_snapshots,
            evicted_bytes: ix.evicted_bytes,
            lost_events: ix.lost_events,
            quarantined: ix.quarantined,
            delivered: ix.kept.len() as u64,
            delivered_bytes: ix.kept_bytes,
            evicted_delivered: ix.evicted_delivered,
            expired_delivered: ix.expired_delivered,
        }
    }

    /// Stored messages, all classes.
    pub fn len(&self) -> usize {
        self.lock().map(|ix| ix.all.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Open (or create) the database with a bounded cache, and make sure every
/// table exists so that read transactions find them.
fn open_db(path: &Path) -> Res<Database> {
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| store_err(path, e))?;
    let tx = db.begin_write().map_err(|e| store_err(path, e))?;
    {
        tx.open_table(MSGS).map_err(|e| store_err(path, e))?;
        tx.open_table(META).map_err(|e| store_err(path, e))?;
        tx.open_table(OPEN).map_err(|e| store_err(path, e))?;
        tx.open_table(QUARANTINE).map_err(|e| store_err(path, e))?;
        tx.open_table(DELIVERED).map_err(|e| store_err(path, e))?;
        tx.open_table(TAGS).map_err(|e| store_err(path, e))?;
        tx.open_table(GONE).map_err(|e| store_err(path, e))?;
    }
    tx.commit().map_err(|e| store_err(path, e))?;
    Ok(db)
}

/// The in-memory index, from the store.
fn read_index(path: &Path, db: &Database) -> Res<Index> {
    let err = |e: redb::Error| store_err(path, e);
    let mut ix = Index::default();
    let rx = db.begin_read().map_err(|e| err(e.into()))?;
    let meta = rx.open_table(META).map_err(|e| err(e.into()))?;
    for row in meta.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let (k, v) = (k.value(), v.value());
        match k {
            "next_key" => ix.next_key = v,
            "evicted_events" => ix.evicted_events = v,
            "evicted_snapshots" => ix.evicted_snapshots = v,
            "evicted_bytes" => ix.evicted_bytes = v,
            "lost_events" => ix.lost_events = v,
            "quarantined" => ix.quarantined = v,
            "evicted_delivered" => ix.evicted_delivered = v,
            "expired_delivered" => ix.expired_delivered = v,
            _ => {
                if let Some(cam) = k.strip_prefix(SEQ_PREFIX) {
                    ix.seqs.insert(cam.to_string(), v);
                }
            }
        }
    }
    let mut tags = HashMap::new();
    let tag_rows = rx.open_table(TAGS).map_err(|e| err(e.into()))?;
    for row in tag_rows.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        if let Some(t) = Tag::unpack(v.value()) {
            tags.insert(k.value(), t);
        }
    }
    let msgs = rx.open_table(MSGS).map_err(|e| err(e.into()))?;
    for row in msgs.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let key = k.value();
        let bytes = v.value();
        let d = decode(bytes).ok_or(OutboxError::Corrupt { key })?;
        let camera = ix.camera(d.camera);
        let meta = Meta {
            camera,
            class: d.class,
            size: bytes.len() as u64,
            tag: tags.get(&key).copied(),
        };
        ix.insert(key, meta);
        ix.next_key = ix.next_key.max(key + 1);
    }
    window::read_kept(&mut ix, &rx, &tags).map_err(err)?;
    let gone = rx.open_table(GONE).map_err(|e| err(e.into()))?;
    for row in gone.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        match gone::Runs::decode(v.value()) {
            Some(r) => {
                ix.gone.insert(k.value().to_string(), r);
            }
            None => tracing::warn!(camera = k.value(), "outbox: unreadable gone runs; ignored"),
        }
    }
    Ok(ix)
}

/// Choose what an append writes and evicts: first kept delivered records
/// (oldest first, whole `seq` groups), then snapshots oldest first (the
/// stored ones, then the incoming one), and only then events, oldest first.
/// An event is never evicted to make room for a picture. `replaces`: kept
/// records the append deletes anyway (a requeue), counted as freed.
fn plan(ix: &Index, a: &Append<'_>, quota: u64, replaces: &[u64]) -> Plan {
    let tag = |role| a.seq.map(|seq| Tag { seq, role });
    let records = |with_snapshot: bool| {
        let mut recs = Vec::with_capacity(3);
        let (event, fallback) = match a.snapshot {
            Some((topic, jpeg, fb)) if with_snapshot => {
                recs.push((
                    Class::Snapshot,
                    tag(Role::Snapshot),
                    encode(Class::Snapshot, a.camera, topic, jpeg, None),
                ));
                (a.event, Some(fb))
            }
            Some((_, _, fb)) => (fb, None),
            None => (a.event, None),
        };
        let topics = std::iter::once((a.event_topic, Role::Event))
            .chain(a.copy_topic.map(|t| (t, Role::Copy)));
        for (topic, role) in topics {
            recs.push((
                Class::Event,
                tag(role),
                encode(Class::Event, a.camera, topic, event, fallback),
            ));
        }
        recs
    };
    let size = |recs: &[(Class, Option<Tag>, Vec<u8>)]| {
        recs.iter().map(|(_, _, r)| r.len() as u64).sum::<u64>()
    };
    let mut recs = records(true);
    let mut incoming = size(&recs);
    let total = ix.bytes + ix.kept_bytes;
    let over = |freed: u64, incoming: u64| total.saturating_sub(freed) + incoming > quota;
    let mut p = Plan {
        recs: Vec::new(),
        victims: Vec::new(),
        kept_victims: Vec::new(),
        evicted_events: 0,
        evicted_snapshots: 0,
        evicted_bytes: 0,
    };
    let mut freed = kept_victims(ix, replaces, &mut p.kept_victims, |freed| {
        over(freed, incoming)
    });
    for &k in &ix.snapshots {
        if !over(freed, incoming) {
            break;
        }
        p.victims.push(k);
        freed += ix.all[&k].size;
    }
    if over(freed, incoming)
        && let Some((_, jpeg, _)) = a.snapshot
    {
        // Keep the event, without its snapshot.
        recs = records(false);
        incoming = size(&recs);
        p.evicted_snapshots += 1;
        p.evicted_bytes += jpeg.len() as u64;
    }
    if over(freed, incoming) {
        for (&k, m) in &ix.all {
            if !over(freed, incoming) {
                break;
            }
            if m.class == Class::Event {
                p.victims.push(k);
                freed += m.size;
            }
        }
    }
    for k in &p.victims {
        let m = &ix.all[k];
        p.evicted_bytes += m.size;
        match m.class {
            Class::Snapshot => p.evicted_snapshots += 1,
            Class::Event => p.evicted_events += 1,
        }
    }
    p.recs = recs;
    p
}

/// Kept delivered records to evict, whole `seq` groups, oldest first, while
/// `over(freed)`; `replaces` are freed anyway. Returns the bytes freed.
fn kept_victims(
    ix: &Index,
    replaces: &[u64],
    victims: &mut Vec<u64>,
    over: impl Fn(u64) -> bool,
) -> u64 {
    let mut freed: u64 = replaces
        .iter()
        .filter_map(|k| ix.kept.get(k))
        .map(|k| k.meta.size)
        .sum();
    let mut chosen: BTreeSet<u64> = replaces.iter().copied().collect();
    for (&k, kept) in &ix.kept {
        if !over(freed) {
            break;
        }
        if chosen.contains(&k) {
            continue;
        }
        let group = kept
            .meta
            .tag
            .and_then(|t| ix.kept_by_seq.get(&*kept.meta.camera)?.get(&t.seq));
        for g in group.into_iter().flatten().copied().chain([k]) {
            if chosen.insert(g) {
                victims.push(g);
                freed += ix.kept[&g].meta.size;
            }
        }
    }
    freed
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn store_err(path: &Path, e: impl Into<redb::Error>) -> OutboxError {
    OutboxError::Store {
        path: path.display().to_string(),
        source: Box::new(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(cam: &'a str, seq: u64, body: &'a [u8]) -> Append<'a> {
        Append {
            camera: cam,
            seq: Some(seq),
            event_topic: "t/e",
            event: body,
            snapshot: None,
            copy_topic: None,
            open: None,
        }
    }

    #[test]
    fn survives_reopen_in_order_and_keeps_seq() {
        let d = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(d.path(), 1 << 20).unwrap();
            o.append(&ev("a", 1, b"a1")).unwrap();
            o.append(&ev("b", 1, b"b1")).unwrap();
            o.append(&ev("a", 2, b"a2")).unwrap();
            let k = o.next_key("a", None).unwrap();
            assert_eq!(o.remove(&[k]).unwrap(), 1);
        }
        let o = Outbox::open(d.path(), 1 << 20).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o.last_seq("a"), 2);
        assert_eq!(o.last_seq("b"), 1);
        assert_eq!(o.last_seq("c"), 0);
        let k = o.next_key("a", None).unwrap();
        assert_eq!(o.get(k).unwrap().unwrap().payload, b"a2");
        assert_eq!(o.next_key("a", Some(k)), None);
        // New keys continue after the old ones.
        let k2 = o.append(&ev("a", 3, b"a3")).unwrap();
        assert!(k2 > k);
    }

    #[test]
    fn quota_evicts_snapshots_first_and_uses_the_fallback() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path(), 4_000).unwrap();
        let jpeg = vec![0u8; 1_000];
        for seq in 1..=3 {
            o.append(&Append {
                camera: "a",
                seq: Some(seq),
                event_topic: "t/e",
                event: b"with-snapshot",
                snapshot: Some(("t/s", &jpeg, b"no-snapshot")),
                copy_topic: None,
                open: None,
            })
            .unwrap();
        }
        assert_eq!(o.counters().snapshots, 3);
        // The 4th snapshot does not fit: the oldest snapshot goes, no event does.
        o.append(&Append {
            camera: "a",
            seq: Some(4),
            event_topic: "t/e",
            event: b"with-snapshot",
            snapshot: Some(("t/s", &jpeg, b"no-snapshot")),
            copy_topic: None,
            open: None,
        })
        .unwrap();
        let c = o.counters();
        assert_eq!((c.evicted_snapshots, c.evicted_events), (1, 0));
        assert_eq!(c.events, 4);
        assert!(c.bytes <= c.quota_bytes);
        // The first event now has no snapshot reference.
        let k = o.next_key("a", None).unwrap();
        let m = o.get(k).unwrap().unwrap();
        assert_eq!(
            (m.class, m.payload.as_slice()),
            (Class::Event, &b"no-snapshot"[..])
        );
        // Only events left to evict: many small events push out the oldest.
        for seq in 5..200 {
            o.append(&ev("a", seq, &[1u8; 100])).unwrap();
        }
        let c = o.counters();
        assert_eq!(c.snapshots, 0);
        assert!(c.evicted_events > 0);
        assert!(c.bytes <= c.quota_bytes);
        drop(o);
        // The counters are durable.
        let o = Outbox::open(d.path(), 4_000).unwrap();
        assert_eq!(o.counters().evicted_snapshots, 4);
        assert_eq!(o.counters().evicted_events, c.evicted_events);
    }

    /// Regression: with only events stored, a new snapshot that does not fit
    /// used to evict older *events* (seen as lost seqs in the quota fault
    /// test). The new snapshot must be the one dropped.
    #[test]
    fn no_event_is_evicted_to_make_room_for_a_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path(), 3_000).unwrap();
        for seq in 1..=10 {
            o.append(&ev("a", seq, &[7u8; 150])).unwrap();
        }
        let before = o.counters();
        assert_eq!((before.events, before.evicted_events), (10, 0));
        let jpeg = vec![0u8; 2_500];
        o.append(&Append {
            camera: "a",
            seq: Some(11),
            event_topic: "t/e",
            event: b"with-snapshot",
            snapshot: Some(("t/s", &jpeg, b"no-snapshot")),
            copy_topic: None,
            open: None,
        })
        .unwrap();
        let c = o.counters();
        assert_eq!(c.evicted_events, 0, "{c:?}");
        assert_eq!(c.evicted_snapshots, 1, "{c:?}");
        assert_eq!((c.events, c.snapshots), (11, 0), "{c:?}");
        assert!(c.bytes <= c.quota_bytes);
        // The new event is stored without its snapshot reference.
        let mut k = o.next_key("a", None);
        let mut last = None;
        while let Some(key) = k {
            last = o.get(key).unwrap();
            k = o.next_key("a", Some(key));
        }
        let m = last.unwrap();
        assert_eq!(
            (m.class, m.payload.as_slice()),
            (Class::Event, &b"no-snapshot"[..])
        );
    }

    /// Every key of `camera`, oldest first.
    fn keys(o: &Outbox, cam: &str) -> Vec<u64> {
        let mut out = Vec::new();
        let mut k = o.next_key(cam, None);
        while let Some(key) = k {
            out.push(key);
            k = o.next_key(cam, Some(key));
        }
        out
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn delivered_records_are_kept_and_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        let jpeg = vec![9u8; 300];
        {
            let o = Outbox::open_keeping(d.path(), 1 << 20, HOUR).unwrap();
            o.append(&ev("a", 1, b"a1")).unwrap();
            o.append(&Append {
                camera: "a",
                seq: Some(2),
                event_topic: "t/e",
                event: b"a2-with-snapshot",
                snapshot: Some(("t/s", &jpeg, b"a2-no-snapshot")),
                copy_topic: Some("t/alerts"),
                open: None,
            })
            .unwrap();
            // Not a lifecycle event (no seq): deleted when acknowledged.
            o.append(&Append {
                seq: None,
                event_topic: "t/counts",
                ..ev("a", 0, b"counts")
            })
            .unwrap();
            o.append(&ev("a", 3, b"a3")).unwrap();
            let all = keys(&o, "a");
            assert_eq!(all.len(), 6);
            // Everything but seq 3 is acknowledged.
            assert_eq!(o.remove(&all[..5]).unwrap(), 5);
            assert_eq!(o.len(), 1, "only seq 3 is still queued");
            let c = o.counters();
            assert_eq!(
                c.delivered, 4,
                "seq 1, and seq 2's snapshot, event and copy"
            );
            assert!(c.delivered_bytes > 300);
        }
        let o = Outbox::open_keeping(d.path(), 1 << 20, HOUR).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o.counters().delivered, 4);
        assert_eq!(
            o.seq_states("a", 1, 5).unwrap(),
            [
                SeqState::Kept,
                SeqState::Kept,
                SeqState::Pending,
                SeqState::Unknown,
                SeqState::Unknown
            ]
        );
        assert_eq!(o.seq_states("b", 1, 1).unwrap(), [SeqState::Unknown]);
        let g = o.delivered_group("a", 2).unwrap().unwrap();
        assert_eq!(g.keys.len(), 3);
        assert_eq!(g.snapshot, Some(("t/s".into(), jpeg)));
        assert_eq!(
            g.event,
            Some((
                "t/e".into(),
                b"a2-with-snapshot".to_vec(),
                Some(b"a2-no-snapshot".to_vec())
            ))
        );
        assert_eq!(g.copy_topic.as_deref(), Some("t/alerts"));
        assert_eq!(o.delivered_group("a", 3).unwrap(), None, "seq 3 is queued");
        // New keys never reuse a kept record's key.
        let k = o.append(&ev("a", 4, b"a4")).unwrap();
        assert!(g.keys.iter().all(|&g| g < k));
    }

    #[test]
    fn requeued_group_is_pending_then_kept_again() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open_keeping(d.path(), 1 << 20, HOUR).unwrap();
        o.append(&ev("a", 1, b"a1")).unwrap();
        o.remove(&keys(&o, "a")).unwrap();
        let g = o.delivered_group("a", 1).unwrap().unwrap();
        let k = o.requeue(&ev("a", 1, b"a1-again"), &g.keys).unwrap();
        assert_eq!(o.seq_states("a", 1, 1).unwrap(), [SeqState::Pending]);
        assert_eq!(o.counters().delivered, 0, "the kept copy was replaced");
        assert_eq!(o.get(k).unwrap().unwrap().payload, b"a1-again");
        assert_eq!(o.last_seq("a"), 1);
        o.remove(&[k]).unwrap();
        assert_eq!(o.seq_states("a", 1, 1).unwrap(), [SeqState::Kept]);
        let g = o.delivered_group("a", 1).unwrap().unwrap();
        assert_eq!(g.event.unwrap().1, b"a1-again");
    }

    #[test]
    fn delivered_records_expire_and_say_so() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open_keeping(d.path(), 1 << 20, Duration::from_millis(50)).unwrap();
        for seq in 1..=3 {
            o.append(&ev("a", seq, b"x")).unwrap();
        }
        o.remove(&keys(&o, "a")).unwrap();
        assert_eq!(o.sweep_delivered().unwrap(), 0, "not yet due");
        assert_eq!(o.seq_states("a", 1, 3).unwrap(), [SeqState::Kept; 3]);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(o.sweep_delivered().unwrap(), 3);
        assert_eq!(
            o.seq_states("a", 1, 3).unwrap(),
            [SeqState::Gone(Gone::Expired); 3]
        );
        assert_eq!(o.counters().expired_delivered, 3);
        assert_eq!(o.counters().delivered, 0);
        drop(o);
        // With the window off, an acknowledged event is gone at once: expired.
        let o = Outbox::open(d.path(), 1 << 20).unwrap();
        assert_eq!(o.counters().expired_delivered, 3, "durable");
        o.append(&ev("a", 4, b"x")).unwrap();
        o.remove(&keys(&o, "a")).unwrap();
        assert_eq!(o.counters().delivered, 0);
        assert_eq!(
            o.seq_states("a", 1, 4).unwrap(),
            [SeqState::Gone(Gone::Expired); 4]
        );
    }

    #[test]
    fn kept_records_are_evicted_first() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open_keeping(d.path(), 4_000, HOUR).unwrap();
        for seq in 1..=10 {
            o.append(&ev("a", seq, &[1u8; 200])).unwrap();
        }
        o.remove(&keys(&o, "a")).unwrap();
        assert_eq!(o.counters().delivered, 10);
        // Queued records need room: the oldest kept ones go, no queued one.
        for seq in 11..=20 {
            o.append(&ev("a", seq, &[2u8; 200])).unwrap();
        }
        let c = o.counters();
        assert_eq!((c.events, c.evicted_events), (10, 0), "{c:?}");
        assert!(c.evicted_delivered > 0, "{c:?}");
        assert!(c.bytes + c.delivered_bytes <= c.quota_bytes, "{c:?}");
        let states = o.seq_states("a", 1, 20).unwrap();
        let evicted = c.evicted_delivered as usize;
        assert!(
            states[..evicted]
                .iter()
                .all(|s| *s == SeqState::Gone(Gone::Evicted)),
            "{states:?}"
        );
        assert!(states[evicted..10].iter().all(|s| *s == SeqState::Kept));
        assert!(states[10..].iter().all(|s| *s == SeqState::Pending));
        // Once nothing is kept, queued events are evicted as before, and say so.
        for seq in 21..=40 {
            o.append(&ev("a", seq, &[3u8; 200])).unwrap();
        }
        let c = o.counters();
        assert_eq!(c.delivered, 0);
        assert!(c.evicted_events > 0);
        assert_eq!(
            o.seq_states("a", 11, 11).unwrap(),
            [SeqState::Gone(Gone::Evicted)]
        );
        drop(o);
        let o = Outbox::open_keeping(d.path(), 4_000, HOUR).unwrap();
        assert_eq!(o.counters().evicted_delivered, c.evicted_delivered);
        assert_eq!(
            o.seq_states("a", 1, 1).unwrap(),
            [SeqState::Gone(Gone::Evicted)],
            "reasons survive a reopen"
        );
    }

    #[test]
    fn lost_seq_is_not_stored_and_remembered() {
        let d = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open_keeping(d.path(), 1 << 20, HOUR).unwrap();
            o.append(&ev("a", 1, b"x")).unwrap();
            o.lost("a", Some(2));
            o.lost("a", Some(3));
            assert_eq!(
                o.seq_states("a", 2, 3).unwrap(),
                [SeqState::Gone(Gone::NotStored); 2]
            );
            // Reaches the disk with the next commit.
            o.append(&ev("a", 4, b"x")).unwrap();
        }
        let o = Outbox::open_keeping(d.path(), 1 << 20, HOUR).unwrap();
        assert_eq!(
            o.seq_states("a", 1, 5).unwrap(),
            [
                SeqState::Pending,
                SeqState::Gone(Gone::NotStored),
                SeqState::Gone(Gone::NotStored),
                SeqState::Pending,
                SeqState::Unknown
            ]
        );
        assert_eq!(o.last_seq("a"), 4);
    }
}
