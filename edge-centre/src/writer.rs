//! The writer thread: takes received messages off a bounded queue, decodes
//! them, writes snapshot files, commits a batch in one transaction and only
//! then hands the batch's acknowledgement tokens back to the ingest. A batch
//! that cannot be committed is retried with backoff and never acknowledged,
//! so a crash or a database outage loses nothing (the broker redelivers).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::{Receiver, error::TryRecvError};
use tracing::{debug, error, info, warn};

use crate::decode::{self, Record};
use crate::snapshots::Snapshots;
use crate::store::{Item, ReplayPlan, Row, Store};

/// A message as received, with the token that acknowledges it.
pub struct Incoming<T> {
    pub topic: String,
    pub payload: Vec<u8>,
    pub received: SystemTime,
    pub token: T,
}

/// Counters of the ingest (all since start).
#[derive(Debug, Default)]
pub struct IngestStats {
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Publish-to-commit latency of events (commit time minus the event's
    /// `frame_time`, which a node sets when it sees the frame).
    pub latency: Mutex<Latency>,
}

/// Latencies in milliseconds: a histogram since start (1 ms buckets up to
/// 60 s, the last bucket holding everything longer).
#[derive(Debug)]
pub struct Latency {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: vec![0; 60_001],
            count: 0,
        }
    }
}

impl Latency {
    pub fn record(&mut self, ms: i64) {
        let i = usize::try_from(ms.max(0))
            .unwrap_or(usize::MAX)
            .min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The `q` quantile (0..1) in milliseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        Some(self.buckets.len() as u64 - 1)
    }
}

/// Called with each committed batch, after its acknowledgement (the
/// console's live updates); must not block.
pub type OnCommit = Arc<dyn Fn(&[Item]) + Send + Sync>;

pub struct Writer {
    pub store: Box<dyn Store>,
    pub snapshots: Snapshots,
    pub prefix: String,
    pub max_payload: usize,
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub stats: Arc<IngestStats>,
    /// Set to stop retrying a failing commit (shutdown); the batch is then
    /// left unacknowledged.
    pub stop: Arc<AtomicBool>,
    /// Snapshot retention: by age, then by total size (oldest first).
    pub keep: Duration,
    pub max_snapshot_bytes: u64,
    /// The runtime the queue belongs to (waiting on it with a timeout).
    pub handle: tokio::runtime::Handle,
    /// Gap recovery: who this instance is, how to ask, and where to send
    /// the requests (`None`: off).
    pub replay: Option<Replayer>,
    /// What to tell about each committed batch (the console's live feed).
    pub on_commit: Option<OnCommit>,
}

/// Asks boxes for missing events (see `store::delivery`).
pub struct Replayer {
    /// This instance's lease name (its MQTT client id).
    pub me: String,
    pub plan: ReplayPlan,
    pub acker: crate::ingest::Acker,
}

/// How often expired snapshots are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Writer {
    /// Runs until the queue's senders are gone and it is drained (or `stop`
    /// is set while a commit keeps failing).
    pub fn run<T>(mut self, mut rx: Receiver<Incoming<T>>, mut ack: impl FnMut(Vec<T>)) {
        let mut next_sweep = Instant::now();
        let scan_every = self.replay.as_ref().map_or(SWEEP_EVERY, |r| {
            Duration::from_millis(u64::try_from(r.plan.scan_every_ms).unwrap_or(5000))
        });
        let mut next_scan = Instant::now() + scan_every;
        loop {
            if Instant::now() >= next_sweep {
                self.sweep(SystemTime::now());
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            if Instant::now() >= next_scan {
                self.scan(SystemTime::now());
                next_scan = Instant::now() + scan_every;
            }
            let wait = next_sweep
                .min(next_scan)
                .saturating_duration_since(Instant::now());
            // The timer is made inside the runtime's context (block_on).
            let first = match self
                .handle
                .block_on(async { tokio::time::timeout(wait, rx.recv()).await })
            {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => continue,
            };
            let mut batch = vec![first];
            let start = Instant::now();
            while batch.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(TryRecvError::Empty) if start.elapsed() < self.batch_wait => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => break,
                }
            }
            let (items, tokens) = self.rows(batch);
            if !self.commit(&items) {
                info!("writer stopped with a batch not committed (it will be redelivered)");
                return;
            }
            self.measure(&items);
            ack(tokens);
            if let Some(tell) = &self.on_commit {
                tell(&items);
            }
        }
        debug!("writer queue closed and drained");
    }

    /// Expires snapshots past their retention and deletes their files (the
    /// rows stay, marked expired).
    pub fn sweep(&mut self, now: SystemTime) {
        let cutoff = now.checked_sub(self.keep).unwrap_or(std::time::UNIX_EPOCH);
        match self
            .store
            .expire_snapshots(now, cutoff, self.max_snapshot_bytes)
        {
            Ok(gone) if gone.is_empty() => {}
            Ok(gone) => {
                let mut failed = 0;
                for sha in &gone {
                    if let Err(e) = self.snapshots.remove(sha) {
                        failed += 1;
                        warn!(error = %e, "cannot delete an expired snapshot");
                    }
                }
                info!(expired = gone.len(), failed, "snapshots expired");
            }
            Err(e) => warn!(error = %e, "cannot expire snapshots; will try again"),
        }
    }

    /// Closes complete gaps and publishes the replay requests this instance
    /// holds the lease of.
    pub fn scan(&mut self, now: SystemTime) {
        let Some(r) = &self.replay else { return };
        let requests = match self.store.replay_scan(now, &r.me, &r.plan) {
            Ok(q) => q,
            Err(e) => {
                warn!(error = %e, "cannot scan for gaps; will try again");
                return;
            }
        };
        for q in requests {
            let topic = edge_wire::Topics::new(&self.prefix, &q.district, &q.node).replay();
            let msg = edge_wire::ReplayRequest {
                schema: edge_wire::REPLAY_REQUEST_SCHEMA.into(),
                request_id: q.request_id.clone(),
                camera: q.camera.clone(),
                first: q.first,
                last: q.last,
                time: edge_wire::rfc3339(now),
            };
            let payload = serde_json::to_vec(&msg).unwrap_or_default();
            if r.acker.publish(topic, payload) {
                info!(node = %q.node, camera = %q.camera, first = q.first, last = q.last,
                    request_id = %q.request_id, "replay requested");
            }
        }
    }

    /// Records the publish-to-commit latency of the batch's events.
    fn measure(&self, items: &[Item]) {
        let now = crate::store::millis(SystemTime::now());
        let mut lat = self
            .stats
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for item in items {
            if let Row::Message(r) = &item.row
                && let Record::Event(e) = r.as_ref()
                && let Some(t) = crate::store::wire_millis(&e.frame_time)
            {
                lat.record(now - t);
            }
        }
    }

    /// Decodes a batch into rows (snapshot files written and synced).
    fn rows<T>(&mut self, batch: Vec<Incoming<T>>) -> (Vec<Item>, Vec<T>) {
        let st = &self.stats;
        st.received.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut items = Vec::with_capacity(batch.len());
        let mut tokens = Vec::with_capacity(batch.len());
        for m in batch {
            tokens.push(m.token);
            let bytes = m.payload.len() as u64;
            let row = match decode::decode(&self.prefix, &m.topic, &m.payload, self.max_payload) {
                Ok(None) => continue,
                Ok(Some(Record::Snapshot {
                    origin,
                    topic,
                    jpeg,
                    ..
                })) => match self.put_snapshot(&jpeg) {
                    Some(sha256) => Row::Snapshot {
                        origin,
                        topic,
                        sha256,
                        bytes,
                    },
                    None => continue,
                },
                Ok(Some(r)) => Row::Message(Box::new(r)),
                Err(reason) => {
                    st.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(topic = %m.topic, bytes, reason = reason.kind(), "message skipped: {reason}");
                    Row::Rejected {
                        topic: m.topic,
                        reason,
                        bytes,
                    }
                }
            };
            items.push(Item {
                received: m.received,
                row,
            });
        }
        (items, tokens)
    }

    /// Writes a snapshot file, retrying with backoff until it works or the
    /// writer stops (`None`).
    fn put_snapshot(&self, jpeg: &[u8]) -> Option<String> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.snapshots.put(jpeg) {
                Ok(sha) => return Some(sha),
                Err(e) => {
                    error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot write a snapshot");
                    if self.stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Commits, retrying with backoff; `false` if stopped before it worked.
    fn commit(&mut self, items: &[Item]) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            match self.store.commit(items) {
                Ok(c) => {
                    let st = &self.stats;
                    st.stored.fetch_add(c.inserted, Ordering::Relaxed);
                    st.duplicates.fetch_add(c.duplicates, Ordering::Relaxed);
                    st.batches.fetch_add(1, Ordering::Relaxed);
                    if failing {
                        info!(
                            rows = items.len(),
                            "database writable again; batch committed"
                        );
                    }
                    return true;
                }
                Err(e) => {
                    self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                    error!(error = %e, rows = items.len(), retry_in_ms = backoff.as_millis() as u64,
                        "commit failed; nothing of this batch is acknowledged");
                    failing = true;
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Origin;

    /// A sweep deletes the files of expired snapshots and keeps the rest.
    #[test]
    fn a_sweep_deletes_expired_snapshot_files() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let snapshots = Snapshots::open(&dir.path().join("snaps")).unwrap();
        let old = snapshots.put(b"\xff\xd8\xff old").unwrap();
        let new = snapshots.put(b"\xff\xd8\xff new").unwrap();
        let mut store = crate::store::sqlite::Sqlite::open(&dir.path().join("c.db")).unwrap();
        let t0 = SystemTime::now();
        let row = |sha: &str, received| Item {
            received,
            row: Row::Snapshot {
                origin: Origin {
                    district: "d".into(),
                    node: "n".into(),
                    camera: Some("c".into()),
                },
                topic: format!("t/{sha}"),
                sha256: sha.into(),
                bytes: 10,
            },
        };
        Store::commit(
            &mut store,
            &[row(&old, t0 - Duration::from_secs(7200)), row(&new, t0)],
        )
        .unwrap();
        let mut w = Writer {
            store: Box::new(store),
            snapshots: Snapshots::open(&dir.path().join("snaps")).unwrap(),
            prefix: "edge".into(),
            max_payload: 1 << 20,
            batch_max: 10,
            batch_wait: Duration::ZERO,
            stats: Arc::default(),
            stop: Arc::default(),
            keep: Duration::from_secs(3600),
            max_snapshot_bytes: u64::MAX,
            handle: rt.handle().clone(),
            replay: None,
            on_commit: None,
        };
        w.sweep(t0);
        assert!(!snapshots.path(&old).exists(), "expired file kept");
        assert!(snapshots.path(&new).exists(), "live file deleted");
        assert_eq!(w.store.live_snapshots().unwrap(), vec![new]);
    }

    #[test]
    fn latency_quantiles() {
        let mut l = Latency::default();
        assert_eq!(l.quantile(0.5), None);
        for ms in 1..=100 {
            l.record(ms);
        }
        l.record(1_000_000);
        assert_eq!(l.quantile(0.5), Some(51));
        assert_eq!(l.quantile(0.99), Some(100));
        assert_eq!(l.quantile(1.0), Some(60_000));
        assert_eq!(l.count(), 101);
    }
}
