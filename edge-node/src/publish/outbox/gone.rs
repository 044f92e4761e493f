//! Why a camera's `seq` is no longer in the outbox: runs of `seq` with a
//! reason, per camera, merged when adjacent, and bounded ([`MAX_RUNS`] per
//! camera: past it the runs of the lowest `seq` are forgotten, and those
//! `seq` become unknown). Stored as one row per camera in the `gone` table:
//!
//! ```text
//! [first u64][last u64][reason u8] × n, little endian
//! ```

use std::collections::BTreeMap;

/// At most this many runs are remembered per camera.
pub(super) const MAX_RUNS: usize = 4096;
const RUN_BYTES: usize = 17;

/// Why a `seq` left the outbox without being kept in its delivered window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gone {
    /// Removed to stay within the quota (delivered or not).
    Evicted,
    /// Delivered longer ago than the delivered window keeps.
    Expired,
    /// Never stored: a storage fault when it was made.
    NotStored,
}

impl Gone {
    fn code(self) -> u8 {
        match self {
            Gone::Evicted => 0,
            Gone::Expired => 1,
            Gone::NotStored => 2,
        }
    }
    fn from_code(c: u8) -> Option<Gone> {
        Some(match c {
            0 => Gone::Evicted,
            1 => Gone::Expired,
            2 => Gone::NotStored,
            _ => return None,
        })
    }
}

/// One camera's runs: first → (last, reason); runs never overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Runs(BTreeMap<u64, (u64, Gone)>);

impl Runs {
    /// The run holding `seq`, if any.
    fn holding(&self, seq: u64) -> Option<(u64, u64, Gone)> {
        let (&first, &(last, why)) = self.0.range(..=seq).next_back()?;
        (seq <= last).then_some((first, last, why))
    }

    pub(super) fn reason(&self, seq: u64) -> Option<Gone> {
        self.holding(seq).map(|r| r.2)
    }

    /// `seq` is gone for `why`; a different earlier reason is replaced.
    pub(super) fn mark(&mut self, seq: u64, why: Gone) {
        if let Some((first, last, old)) = self.holding(seq) {
            if old == why {
                return;
            }
            self.0.remove(&first);
            if first < seq {
                self.0.insert(first, (seq - 1, old));
            }
            if seq < last {
                self.0.insert(seq + 1, (last, old));
            }
        }
        let mut first = seq;
        let mut last = seq;
        if let Some(before) = seq.checked_sub(1)
            && let Some((f, _, w)) = self.holding(before)
            && w == why
        {
            self.0.remove(&f);
            first = f;
        }
        if let Some(after) = seq.checked_add(1)
            && let Some(&(l, w)) = self.0.get(&after)
            && w == why
        {
            self.0.remove(&after);
            last = l;
        }
        self.0.insert(first, (last, why));
        while self.0.len() > MAX_RUNS {
            self.0.pop_first();
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() * RUN_BYTES);
        for (&first, &(last, why)) in &self.0 {
            v.extend_from_slice(&first.to_le_bytes());
            v.extend_from_slice(&last.to_le_bytes());
            v.push(why.code());
        }
        v
    }

    /// `None` when the row is corrupt.
    pub(super) fn decode(b: &[u8]) -> Option<Runs> {
        if !b.len().is_multiple_of(RUN_BYTES) {
            return None;
        }
        let mut r = Runs::default();
        for c in b.chunks_exact(RUN_BYTES) {
            let first = u64::from_le_bytes(c[..8].try_into().ok()?);
            let last = u64::from_le_bytes(c[8..16].try_into().ok()?);
            let why = Gone::from_code(c[16])?;
            if last < first {
                return None;
            }
            r.0.insert(first, (last, why));
        }
        Some(r)
    }

    #[cfg(test)]
    pub(super) fn runs(&self) -> Vec<(u64, u64, Gone)> {
        self.0.iter().map(|(&f, &(l, w))| (f, l, w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_split_and_round_trip() {
        let mut r = Runs::default();
        for s in [3, 1, 2, 5] {
            r.mark(s, Gone::Expired);
        }
        assert_eq!(r.runs(), [(1, 3, Gone::Expired), (5, 5, Gone::Expired)]);
        r.mark(4, Gone::Expired);
        assert_eq!(r.runs(), [(1, 5, Gone::Expired)]);
        // A different reason splits the run.
        r.mark(3, Gone::Evicted);
        assert_eq!(
            r.runs(),
            [
                (1, 2, Gone::Expired),
                (3, 3, Gone::Evicted),
                (4, 5, Gone::Expired)
            ]
        );
        assert_eq!(r.reason(3), Some(Gone::Evicted));
        assert_eq!(r.reason(5), Some(Gone::Expired));
        assert_eq!(r.reason(6), None);
        r.mark(0, Gone::NotStored);
        r.mark(u64::MAX, Gone::NotStored);
        let back = Runs::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert!(Runs::decode(&[1, 2, 3]).is_none());
    }

    #[test]
    fn runs_are_bounded() {
        let mut r = Runs::default();
        for s in 0..(MAX_RUNS as u64 + 10) {
            r.mark(s * 2, Gone::Evicted);
        }
        assert_eq!(r.runs().len(), MAX_RUNS);
        assert_eq!(r.reason(0), None, "the lowest runs are forgotten");
        assert_eq!(r.reason(2 * (MAX_RUNS as u64 + 9)), Some(Gone::Evicted));
    }
}
