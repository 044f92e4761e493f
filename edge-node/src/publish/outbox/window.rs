//! The delivered window: lifecycle records the broker acknowledged, kept
//! for `keep_delivered` so that they can be sent again on request, and the
//! answer to "where is `seq` n of this camera".

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::codec::decode;
use super::{
    Append, Class, DELIVERED, Gone, Index, Kept, META, Meta, Outbox, OutboxError, Res, Role, TAGS,
    Tag, now_ms, plan,
};

/// Where one `seq` of a camera is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqState {
    /// Delivered, and kept: it can be sent again.
    Kept,
    /// Still queued: not yet delivered once.
    Pending,
    /// Gone for good, and why.
    Gone(Gone),
    /// No record of it at all.
    Unknown,
}

/// A kept lifecycle event, as it was stored: what a requeue sends again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeptGroup {
    /// The kept records (a requeue replaces them).
    pub keys: Vec<u64>,
    /// `(topic, jpeg)`.
    pub snapshot: Option<(String, Vec<u8>)>,
    /// `(topic, payload, payload without the snapshot reference)`.
    pub event: Option<(String, Vec<u8>, Option<Vec<u8>>)>,
    /// The topic of the event's copy (the alerts-only topic), if it had one.
    pub copy_topic: Option<String>,
}

/// Read the kept records into the index (at open).
pub(super) fn read_kept(
    ix: &mut Index,
    rx: &ReadTransaction,
    tags: &HashMap<u64, Tag>,
) -> Result<(), redb::Error> {
    let t = rx.open_table(DELIVERED)?;
    for row in t.iter()? {
        let (k, v) = row?;
        let key = k.value();
        let bytes = v.value();
        let Some((at, rec)) = bytes.split_first_chunk::<8>() else {
            tracing::warn!(key, "outbox: unreadable delivered record; ignored");
            continue;
        };
        let Some(d) = decode(rec) else {
            tracing::warn!(key, "outbox: unreadable delivered record; ignored");
            continue;
        };
        let camera = ix.camera(d.camera);
        let meta = Meta {
            camera,
            class: d.class,
            size: bytes.len() as u64,
            tag: tags.get(&key).copied(),
        };
        ix.keep(
            key,
            Kept {
                meta,
                at_ms: u64::from_le_bytes(*at),
            },
        );
        ix.next_key = ix.next_key.max(key + 1);
    }
    Ok(())
}

impl Outbox {
    /// How long delivered lifecycle records are kept.
    pub fn keep_delivered(&self) -> std::time::Duration {
        self.keep_delivered
    }

    /// Delete the kept records delivered longer ago than the window (all of
    /// them when it is off); their `seq` is remembered as expired. Returns
    /// how many were deleted.
    pub fn sweep_delivered(&self) -> Res<usize> {
        let mut ix = self.lock()?;
        let cutoff = now_ms().saturating_sub(self.keep_delivered.as_millis() as u64);
        let due: Vec<u64> = ix
            .kept_by_time
            .iter()
            .take_while(|(at, _)| *at < cutoff || self.keep_delivered.is_zero())
            .map(|&(_, k)| k)
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        for k in &due {
            if let Some(m) = ix.kept.get(k).map(|k| k.meta.clone()) {
                ix.mark_meta(&m, Gone::Expired);
            }
        }
        self.write(&mut ix, |db, ix| {
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut d = tx.open_table(DELIVERED).map_err(|e| self.err(e))?;
                let mut tags = tx.open_table(TAGS).map_err(|e| self.err(e))?;
                for &k in &due {
                    d.remove(k).map_err(|e| self.err(e))?;
                    tags.remove(k).map_err(|e| self.err(e))?;
                }
                let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
                m.insert("expired_delivered", ix.expired_delivered + due.len() as u64)
                    .map_err(|e| self.err(e))?;
                self.save_seqs(&mut m, ix, "", None)?;
                self.save_gone(&tx, ix)?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            ix.unsaved_seqs.clear();
            ix.gone_dirty.clear();
            for &k in &due {
                ix.unkeep(k);
            }
            ix.expired_delivered += due.len() as u64;
            Ok(due.len())
        })
    }

    /// Where each `seq` of `camera` from `first` to `last` is (one state
    /// per `seq`, in order), judged by the record of its event (not its
    /// snapshot or copy). The caller bounds the range.
    pub fn seq_states(&self, camera: &str, first: u64, last: u64) -> Res<Vec<SeqState>> {
        let ix = self.lock()?;
        let mut pending = BTreeSet::new();
        if let Some(keys) = ix.by_camera.get(camera) {
            for k in keys {
                if let Some(t) = ix.all[k].tag
                    && t.role == Role::Event
                    && (first..=last).contains(&t.seq)
                {
                    pending.insert(t.seq);
                }
            }
        }
        let empty = BTreeMap::new();
        let kept = ix.kept_by_seq.get(camera).unwrap_or(&empty);
        let gone = ix.gone.get(camera);
        let is_kept = |seq: u64| {
            kept.get(&seq).is_some_and(|keys| {
                keys.iter()
                    .any(|k| ix.kept[k].meta.tag.is_some_and(|t| t.role == Role::Event))
            })
        };
        Ok((first..=last)
            .map(|seq| {
                if pending.contains(&seq) {
                    SeqState::Pending
                } else if is_kept(seq) {
                    SeqState::Kept
                } else if let Some(why) = gone.and_then(|g| g.reason(seq)) {
                    SeqState::Gone(why)
                } else {
                    SeqState::Unknown
                }
            })
            .collect())
    }

    /// The kept records of `seq` of `camera`, as stored (`None`: none kept).
    pub fn delivered_group(&self, camera: &str, seq: u64) -> Res<Option<KeptGroup>> {
        let keys: Vec<u64> = {
            let ix = self.lock()?;
            match ix.kept_by_seq.get(camera).and_then(|s| s.get(&seq)) {
                Some(k) => k.iter().copied().collect(),
                None => return Ok(None),
            }
        };
        let g = self.db.read().map_err(|_| OutboxError::Poisoned)?;
        let Some(db) = g.as_ref() else {
            drop(g);
            return Err(self.unavailable());
        };
        let rx = db.begin_read().map_err(|e| self.err(e))?;
        let t = rx.open_table(DELIVERED).map_err(|e| self.err(e))?;
        let tags = rx.open_table(TAGS).map_err(|e| self.err(e))?;
        let mut group = KeptGroup::default();
        for key in keys {
            let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
                continue; // evicted or expired meanwhile
            };
            let role = tags
                .get(key)
                .map_err(|e| self.err(e))?
                .and_then(|t| Tag::unpack(t.value()))
                .map(|t| t.role);
            let rec = v.value().get(8..).ok_or(OutboxError::Corrupt { key })?;
            let d = decode(rec).ok_or(OutboxError::Corrupt { key })?;
            match (role, d.class) {
                (Some(Role::Snapshot), Class::Snapshot) => {
                    group.snapshot = Some((d.topic.to_string(), d.payload.to_vec()));
                }
                (Some(Role::Event), Class::Event) => {
                    group.event = Some((
                        d.topic.to_string(),
                        d.payload.to_vec(),
                        d.fallback.map(<[u8]>::to_vec),
                    ));
                }
                (Some(Role::Copy), Class::Event) => group.copy_topic = Some(d.topic.to_string()),
                _ => return Err(OutboxError::Corrupt { key }),
            }
            group.keys.push(key);
        }
        Ok((!group.keys.is_empty()).then_some(group))
    }

    /// Queue a kept lifecycle event again (`a`, as rewritten by the
    /// caller), replacing its kept records `replaces` in the same
    /// transaction: it is delivered like any queued record, and kept again
    /// when acknowledged. Returns the event's key.
    pub fn requeue(&self, a: &Append<'_>, replaces: &[u64]) -> Res<u64> {
        let mut ix = self.lock()?;
        let replaces: Vec<u64> = replaces
            .iter()
            .copied()
            .filter(|k| ix.kept.contains_key(k))
            .collect();
        let plan = plan(&ix, a, self.quota_bytes, &replaces);
        self.write(&mut ix, |db, ix| self.commit(db, ix, a, &plan, &replaces))
    }
}
