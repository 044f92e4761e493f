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
//!   event at `k + 1`); the event may carry a *fallback* payload (the same
//!   event without its snapshot reference) that replaces it if the snapshot
//!   is evicted before it was sent.
//! - Quota: the sum of stored record sizes stays within `quota_bytes`;
//!   snapshots are evicted first (oldest first), then events (oldest first).
//!   Every eviction is counted, durably, in the same transaction.
//! - The last `seq` of every camera is stored with its event, so numbering
//!   continues after a restart and the centre sees gaps, never a reset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const MSGS: TableDefinition<u64, &[u8]> = TableDefinition::new("msgs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT: u8 = 1;
const SEQ_PREFIX: &str = "seq/";

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
    #[error("outbox record {key} is corrupt")]
    Corrupt { key: u64 },
    #[error("the outbox lock is poisoned")]
    Poisoned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Event,
    Snapshot,
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

/// Depth and eviction counters (the evictions survive restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub snapshots: u64,
    pub bytes: u64,
    pub quota_bytes: u64,
    pub evicted_events: u64,
    pub evicted_snapshots: u64,
    pub evicted_bytes: u64,
}

/// What `append` hands over: an event and, optionally, its snapshot.
#[derive(Clone, Debug)]
pub struct Append<'a> {
    pub camera: &'a str,
    pub seq: u64,
    pub event_topic: &'a str,
    pub event: &'a [u8],
    /// `(topic, jpeg, event payload without the snapshot reference)`.
    pub snapshot: Option<(&'a str, &'a [u8], &'a [u8])>,
}

#[derive(Clone, Debug)]
struct Meta {
    camera: Arc<str>,
    class: Class,
    size: u64,
}

#[derive(Debug, Default)]
struct Index {
    all: BTreeMap<u64, Meta>,
    snapshots: BTreeSet<u64>,
    by_camera: BTreeMap<Arc<str>, BTreeSet<u64>>,
    seqs: HashMap<String, u64>,
    next_key: u64,
    bytes: u64,
    evicted_events: u64,
    evicted_snapshots: u64,
    evicted_bytes: u64,
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
    fn camera(&self, name: &str) -> Arc<str> {
        self.by_camera
            .keys()
            .find(|c| &***c == name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }
}

/// The store. Share it with `Arc`; every method takes `&self`.
pub struct Outbox {
    db: Database,
    path: PathBuf,
    quota_bytes: u64,
    index: Mutex<Index>,
}

// ------------------------------------------------------------------ record codec
//
// [format u8][class u8][has_fallback u8][camera u16+bytes][topic u16+bytes]
// [payload u32+bytes][fallback u32+bytes]

fn encode(
    class: Class,
    camera: &str,
    topic: &str,
    payload: &[u8],
    fallback: Option<&[u8]>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        15 + camera.len() + topic.len() + payload.len() + fallback.map_or(0, <[u8]>::len),
    );
    v.push(FORMAT);
    v.push(match class {
        Class::Event => 0,
        Class::Snapshot => 1,
    });
    v.push(u8::from(fallback.is_some()));
    for s in [camera, topic] {
        v.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_le_bytes());
        v.extend_from_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
    }
    for b in [payload, fallback.unwrap_or_default()] {
        v.extend_from_slice(&(b.len() as u32).to_le_bytes());
        v.extend_from_slice(b);
    }
    v
}

struct Decoded<'a> {
    class: Class,
    camera: &'a str,
    topic: &'a str,
    payload: &'a [u8],
    fallback: Option<&'a [u8]>,
}

/// A length-prefixed field (`width` bytes, little endian) off the front of `b`.
fn take<'a>(b: &mut &'a [u8], width: usize) -> Option<&'a [u8]> {
    let mut n = [0u8; 8];
    n[..width].copy_from_slice(b.get(..width)?);
    let n = u64::from_le_bytes(n) as usize;
    let s = b.get(width..width.checked_add(n)?)?;
    *b = &b[width + n..];
    Some(s)
}

fn decode(b: &[u8]) -> Option<Decoded<'_>> {
    let (&fmt, b) = b.split_first()?;
    let (&class, b) = b.split_first()?;
    let (&has_fb, mut b) = b.split_first()?;
    if fmt != FORMAT {
        return None;
    }
    let camera = std::str::from_utf8(take(&mut b, 2)?).ok()?;
    let topic = std::str::from_utf8(take(&mut b, 2)?).ok()?;
    let payload = take(&mut b, 4)?;
    let fallback = take(&mut b, 4)?;
    Some(Decoded {
        class: match class {
            0 => Class::Event,
            1 => Class::Snapshot,
            _ => return None,
        },
        camera,
        topic,
        payload,
        fallback: (has_fb == 1).then_some(fallback),
    })
}

impl Outbox {
    /// Open (or create) `dir/outbox.redb` and rebuild the in-memory index.
    pub fn open(dir: &Path, quota_bytes: u64) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("outbox.redb");
        let db = Database::create(&path).map_err(|e| store_err(&path, e))?;
        let ob = Outbox {
            db,
            path,
            quota_bytes: quota_bytes.max(1),
            index: Mutex::new(Index::default()),
        };
        ob.load()?;
        Ok(ob)
    }

    fn err(&self, e: impl Into<redb::Error>) -> OutboxError {
        store_err(&self.path, e)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Index>, OutboxError> {
        self.index.lock().map_err(|_| OutboxError::Poisoned)
    }

    fn load(&self) -> Result<(), OutboxError> {
        // Create both tables so that read transactions find them.
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            tx.open_table(MSGS).map_err(|e| self.err(e))?;
            tx.open_table(META).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;

        let mut ix = Index::default();
        let rx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = rx.open_table(META).map_err(|e| self.err(e))?;
        for row in meta.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (k, v) = (k.value(), v.value());
            match k {
                "next_key" => ix.next_key = v,
                "evicted_events" => ix.evicted_events = v,
                "evicted_snapshots" => ix.evicted_snapshots = v,
                "evicted_bytes" => ix.evicted_bytes = v,
                _ => {
                    if let Some(cam) = k.strip_prefix(SEQ_PREFIX) {
                        ix.seqs.insert(cam.to_string(), v);
                    }
                }
            }
        }
        let msgs = rx.open_table(MSGS).map_err(|e| self.err(e))?;
        for row in msgs.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let key = k.value();
            let bytes = v.value();
            let d = decode(bytes).ok_or(OutboxError::Corrupt { key })?;
            let camera = ix.camera(d.camera);
            ix.insert(
                key,
                Meta {
                    camera,
                    class: d.class,
                    size: bytes.len() as u64,
                },
            );
            ix.next_key = ix.next_key.max(key + 1);
        }
        *self.lock()? = ix;
        Ok(())
    }

    /// Commit one event (and its snapshot) durably, evicting older records
    /// when the quota would be exceeded. Returns the event's key.
    #[allow(
        clippy::too_many_lines,
        reason = "encoding, choosing victims under the quota and the write, in order under one lock"
    )]
    pub fn append(&self, a: &Append<'_>) -> Result<u64, OutboxError> {
        let mut ix = self.lock()?;
        let mut recs: Vec<(Class, Vec<u8>)> = Vec::with_capacity(2);
        if let Some((topic, jpeg, fallback)) = a.snapshot {
            recs.push((
                Class::Snapshot,
                encode(Class::Snapshot, a.camera, topic, jpeg, None),
            ));
            recs.push((
                Class::Event,
                encode(
                    Class::Event,
                    a.camera,
                    a.event_topic,
                    a.event,
                    Some(fallback),
                ),
            ));
        } else {
            recs.push((
                Class::Event,
                encode(Class::Event, a.camera, a.event_topic, a.event, None),
            ));
        }
        let mut incoming: u64 = recs.iter().map(|(_, r)| r.len() as u64).sum();

        // Choose victims: snapshots oldest first (the stored ones, then the
        // incoming one), and only then events, oldest first. An event is never
        // evicted to make room for a picture.
        let mut victims: Vec<u64> = Vec::new();
        let mut freed = 0u64;
        let quota = self.quota_bytes;
        let total = ix.bytes;
        let over = |freed: u64, incoming: u64| total - freed + incoming > quota;
        for &k in &ix.snapshots {
            if !over(freed, incoming) {
                break;
            }
            victims.push(k);
            freed += ix.all[&k].size;
        }
        let (mut ev_ev, mut ev_snap, mut ev_bytes) = (0u64, 0u64, 0u64);
        if over(freed, incoming)
            && let Some((_, jpeg, fallback)) = a.snapshot
        {
            // Keep the event, without its snapshot.
            recs = vec![(
                Class::Event,
                encode(Class::Event, a.camera, a.event_topic, fallback, None),
            )];
            incoming = recs.iter().map(|(_, r)| r.len() as u64).sum();
            ev_snap += 1;
            ev_bytes += jpeg.len() as u64;
        }
        if over(freed, incoming) {
            for (&k, m) in &ix.all {
                if !over(freed, incoming) {
                    break;
                }
                if m.class == Class::Event {
                    victims.push(k);
                    freed += m.size;
                }
            }
        }

        let first = ix.next_key;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(MSGS).map_err(|e| self.err(e))?;
            for &k in &victims {
                let class = ix.all[&k].class;
                let size = ix.all[&k].size;
                t.remove(k).map_err(|e| self.err(e))?;
                ev_bytes += size;
                match class {
                    Class::Snapshot => {
                        ev_snap += 1;
                        self.use_fallback(&mut t, k + 1, &victims)?;
                    }
                    Class::Event => ev_ev += 1,
                }
            }
            for (i, (_, rec)) in recs.iter().enumerate() {
                t.insert(first + i as u64, rec.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
            let next = first + recs.len() as u64;
            let seq_key = format!("{SEQ_PREFIX}{}", a.camera);
            let seq = ix.seqs.get(a.camera).copied().unwrap_or(0).max(a.seq);
            for (k, v) in [
                ("next_key", next),
                ("evicted_events", ix.evicted_events + ev_ev),
                ("evicted_snapshots", ix.evicted_snapshots + ev_snap),
                ("evicted_bytes", ix.evicted_bytes + ev_bytes),
                (seq_key.as_str(), seq),
            ] {
                m.insert(k, v).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;

        // The commit is durable: now mirror it in memory.
        for &k in &victims {
            ix.remove(k);
        }
        ix.evicted_events += ev_ev;
        ix.evicted_snapshots += ev_snap;
        ix.evicted_bytes += ev_bytes;
        let camera = ix.camera(a.camera);
        for (i, (class, rec)) in recs.iter().enumerate() {
            ix.insert(
                first + i as u64,
                Meta {
                    camera: camera.clone(),
                    class: *class,
                    size: rec.len() as u64,
                },
            );
        }
        ix.next_key = first + recs.len() as u64;
        let s = ix.seqs.entry(a.camera.to_string()).or_insert(0);
        *s = (*s).max(a.seq);
        if ev_ev + ev_snap > 0 {
            tracing::warn!(
                evicted_snapshots = ev_snap,
                evicted_events = ev_ev,
                bytes = ev_bytes,
                quota_bytes = self.quota_bytes,
                "outbox over quota: evicted"
            );
        }
        Ok(first + recs.len() as u64 - 1)
    }

    /// The snapshot before `event_key` was evicted: rewrite that event with
    /// its fallback payload (no snapshot reference), unless it is evicted too.
    fn use_fallback(
        &self,
        t: &mut redb::Table<'_, u64, &'static [u8]>,
        event_key: u64,
        victims: &[u64],
    ) -> Result<(), OutboxError> {
        if victims.contains(&event_key) {
            return Ok(());
        }
        let rewritten = match t.get(event_key).map_err(|e| self.err(e))? {
            Some(v) => match decode(v.value()) {
                Some(d) if d.class == Class::Event => d
                    .fallback
                    .map(|fb| encode(Class::Event, d.camera, d.topic, fb, None)),
                Some(_) => None,
                None => return Err(OutboxError::Corrupt { key: event_key }),
            },
            None => None,
        };
        if let Some(r) = rewritten {
            t.insert(event_key, r.as_slice()).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Read one stored message.
    pub fn get(&self, key: u64) -> Result<Option<Message>, OutboxError> {
        let rx = self.db.begin_read().map_err(|e| self.err(e))?;
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

    /// Remove acknowledged messages, in one transaction. Unknown keys (already
    /// evicted or removed) are ignored. Returns how many were removed.
    pub fn remove(&self, keys: &[u64]) -> Result<usize, OutboxError> {
        let mut ix = self.lock()?;
        let present: Vec<u64> = keys
            .iter()
            .copied()
            .filter(|k| ix.all.contains_key(k))
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(MSGS).map_err(|e| self.err(e))?;
            for &k in &present {
                t.remove(k).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        for &k in &present {
            ix.remove(k);
        }
        Ok(present.len())
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

    /// The highest `seq` ever stored for `camera` (0 if none).
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
            seq,
            event_topic: "t/e",
            event: body,
            snapshot: None,
        }
    }

    #[test]
    fn codec_round_trip() {
        let r = encode(Class::Event, "cam", "a/b", b"xyz", Some(b"fb"));
        let d = decode(&r).unwrap();
        assert_eq!(
            (d.class, d.camera, d.topic, d.payload, d.fallback),
            (Class::Event, "cam", "a/b", &b"xyz"[..], Some(&b"fb"[..]))
        );
        assert!(decode(&r[..r.len() - 1]).is_none());
        assert!(decode(&[]).is_none());
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
                seq,
                event_topic: "t/e",
                event: b"with-snapshot",
                snapshot: Some(("t/s", &jpeg, b"no-snapshot")),
            })
            .unwrap();
        }
        assert_eq!(o.counters().snapshots, 3);
        // The 4th snapshot does not fit: the oldest snapshot goes, no event does.
        o.append(&Append {
            camera: "a",
            seq: 4,
            event_topic: "t/e",
            event: b"with-snapshot",
            snapshot: Some(("t/s", &jpeg, b"no-snapshot")),
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
            seq: 11,
            event_topic: "t/e",
            event: b"with-snapshot",
            snapshot: Some(("t/s", &jpeg, b"no-snapshot")),
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
}
