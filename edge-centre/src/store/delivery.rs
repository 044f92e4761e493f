//! Gap recovery, written once for both databases (like `rows`): which event
//! `seq` numbers are missing, which centre instance asks the box for them,
//! and how each gap ended (recovered by replay, arrived late, or lost with
//! the box's reason).
//!
//! - [`track`] runs inside every commit: an event above the camera's highest
//!   stored `seq` + 1 opens a gap row (the camera's row in `seq_state` is
//!   locked, so two instances never open the same gap twice).
//! - [`scan`] runs every few seconds on each instance: a gap older than the
//!   grace period that is still missing messages is requested by whichever
//!   instance takes its lease (an `UPDATE … WHERE lease_until <= now`, so
//!   one instance per gap per lease); a gap whose every `seq` is stored or
//!   recorded lost is closed.
//! - [`answer`] stores a box's `edge-replay-answer/1`: its missing runs go
//!   to `lost` with the box's reason; the replayed messages arrive as
//!   ordinary events marked `replayed`.

use std::collections::BTreeMap;

use super::rows::{Sql, Val};
use super::{GapReport, LostRun, ReplayPlan, Request};

macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$(Val::from($v)),*] };
}

fn int(v: Option<&Val>) -> i64 {
    match v {
        Some(Val::Int(Some(i))) => *i,
        Some(Val::Real(Some(f))) => *f as i64,
        Some(Val::Text(Some(s))) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: Option<&Val>) -> String {
    match v {
        Some(Val::Text(Some(s))) => s.clone(),
        Some(Val::Int(Some(i))) => i.to_string(),
        _ => String::new(),
    }
}

fn opt_int(v: Option<&Val>) -> Option<i64> {
    match v {
        Some(Val::Int(Some(i))) => Some(*i),
        _ => None,
    }
}

fn seq(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// One stored event's place in its camera's numbering.
pub struct Seen<'a> {
    pub node: &'a str,
    pub camera: &'a str,
    pub district: &'a str,
    pub seq: u64,
}

/// Opens a gap row for every run of `seq` skipped by the batch's events, and
/// moves each camera's highest `seq` up. A camera's history starts at the
/// first event the centre receives, except that numbering starting at 1 is
/// expected: a first event with `seq` ≤ `max_range` + 1 opens the gap
/// `1..seq-1` (the box's first messages were lost before the centre saw
/// any).
pub fn track<S: Sql>(
    db: &mut S,
    seen: &[Seen<'_>],
    at: i64,
    max_range: u64,
) -> Result<(), S::Error> {
    let mut by_camera: BTreeMap<(&str, &str), (&str, Vec<u64>)> = BTreeMap::new();
    for s in seen {
        by_camera
            .entry((s.node, s.camera))
            .or_insert_with(|| (s.district, Vec::new()))
            .1
            .push(s.seq);
    }
    let lock = db.for_update();
    for ((node, camera), (district, mut seqs)) in by_camera {
        seqs.sort_unstable();
        seqs.dedup();
        let rows = db.query(
            &format!("SELECT max_seq FROM seq_state WHERE node = ?1 AND camera = ?2{lock}"),
            vals![node, camera],
        )?;
        let stored = rows.first().map(|r| int(r.first()));
        let mut known = match stored {
            Some(m) => u64::try_from(m).unwrap_or(0),
            None if seqs[0] <= max_range + 1 => 0,
            None => seqs[0] - 1,
        };
        let before = known;
        for &s in &seqs {
            if s <= known {
                continue;
            }
            if s > known + 1 {
                db.exec(
                    "INSERT INTO gaps (node, camera, first, last, district, found_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    vals![node, camera, seq(known + 1), seq(s - 1), district, at],
                )?;
            }
            known = s;
        }
        if stored.is_none() || known > before {
            db.exec(
                "INSERT INTO seq_state (node, camera, district, max_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (node, camera) DO UPDATE SET max_seq = excluded.max_seq, district = excluded.district
                 WHERE seq_state.max_seq < excluded.max_seq",
                vals![node, camera, district, seq(known)],
            )?;
        }
    }
    Ok(())
}

/// Stores a box's answer: each missing run becomes a `lost` row with the
/// box's reason; the gaps it covers note when the box answered.
pub fn answer<S: Sql>(db: &mut S, a: &edge_wire::ReplayAnswer, at: i64) -> Result<bool, S::Error> {
    for m in &a.missing {
        let reason = serde_json::to_string(&m.reason).unwrap_or_default();
        db.exec(
            "INSERT INTO lost (node, camera, first, last, reason, request_id, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            vals![
                &a.node,
                &a.camera,
                seq(m.first),
                seq(m.last),
                reason.trim_matches('"'),
                &a.request_id,
                at
            ],
        )?;
    }
    db.exec(
        "UPDATE gaps SET answered_at = ?5 WHERE node = ?1 AND camera = ?2 AND state = 'open'
           AND first <= ?4 AND last >= ?3",
        vals![&a.node, &a.camera, seq(a.first), seq(a.last), at],
    )?;
    Ok(true)
}

/// A gap's numbers as the database holds them now.
struct Progress {
    /// Runs neither stored nor recorded lost.
    missing: Vec<(u64, u64)>,
    replayed: i64,
    lost: i64,
    reasons: BTreeMap<String, i64>,
}

fn progress<S: Sql>(
    db: &mut S,
    node: &str,
    camera: &str,
    first: u64,
    last: u64,
) -> Result<Progress, S::Error> {
    let stored = db.query(
        "SELECT seq, replayed FROM events WHERE node = ?1 AND camera = ?2 AND seq >= ?3 AND seq <= ?4 ORDER BY seq",
        vals![node, camera, seq(first), seq(last)],
    )?;
    let lost_rows = db.query(
        "SELECT first, last, reason FROM lost WHERE node = ?1 AND camera = ?2 AND last >= ?3 AND first <= ?4
         ORDER BY first",
        vals![node, camera, seq(first), seq(last)],
    )?;
    let mut p = Progress {
        missing: Vec::new(),
        replayed: 0,
        lost: 0,
        reasons: BTreeMap::new(),
    };
    // Every covered seq, as sorted runs: stored ones, then lost ones.
    let mut covered: Vec<(u64, u64)> = Vec::with_capacity(stored.len() + lost_rows.len());
    for r in &stored {
        let s = u64::try_from(int(r.first())).unwrap_or(0);
        p.replayed += i64::from(int(r.get(1)) != 0);
        covered.push((s, s));
    }
    for r in &lost_rows {
        let a = u64::try_from(int(r.first())).unwrap_or(0).max(first);
        let b = u64::try_from(int(r.get(1))).unwrap_or(0).min(last);
        if a > b {
            continue;
        }
        covered.push((a, b));
    }
    covered.sort_unstable();
    let mut next = first;
    for (a, b) in covered {
        if a > next {
            p.missing.push((next, a - 1));
        }
        next = next.max(b.saturating_add(1));
    }
    if next <= last {
        p.missing.push((next, last));
    }
    // Lost counts: what is lost and not stored after all.
    for r in &lost_rows {
        let a = u64::try_from(int(r.first())).unwrap_or(0).max(first);
        let b = u64::try_from(int(r.get(1))).unwrap_or(0).min(last);
        if a > b {
            continue;
        }
        let in_run = stored
            .iter()
            .filter(|s| (a..=b).contains(&u64::try_from(int(s.first())).unwrap_or(0)))
            .count() as i64;
        let n = i64::try_from(b - a + 1).unwrap_or(i64::MAX) - in_run;
        if n > 0 {
            p.lost += n;
            *p.reasons.entry(text(r.get(2))).or_default() += n;
        }
    }
    Ok(p)
}

fn reasons_text(r: &BTreeMap<String, i64>) -> Option<String> {
    (!r.is_empty()).then(|| {
        r.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Closes the gaps that are complete, gives up on those past
/// `plan.give_up_ms` (their missing runs are recorded lost, `no_answer`),
/// and takes the lease of the rest that are due: returns the requests to
/// publish for those.
pub fn scan<S: Sql>(
    db: &mut S,
    now: i64,
    me: &str,
    plan: &ReplayPlan,
) -> Result<Vec<Request>, S::Error> {
    let due = db.query(
        "SELECT node, camera, first, last, district, found_at, requests, lease_until FROM gaps
         WHERE state = 'open' AND found_at <= ?1 ORDER BY found_at LIMIT 500",
        vals![now - plan.grace_ms],
    )?;
    let mut out = Vec::new();
    for r in due {
        let (node, camera) = (text(r.first()), text(r.get(1)));
        let first = u64::try_from(int(r.get(2))).unwrap_or(0);
        let last = u64::try_from(int(r.get(3))).unwrap_or(0);
        let district = text(r.get(4));
        let found_at = int(r.get(5));
        let requests = int(r.get(6));
        let lease_until = opt_int(r.get(7));
        let key = vals![&node, &camera, seq(first)];
        let mut p = progress(db, &node, &camera, first, last)?;
        if !p.missing.is_empty() && now - found_at >= plan.give_up_ms {
            for &(a, b) in &p.missing {
                db.exec(
                    "INSERT INTO lost (node, camera, first, last, reason, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, 'no_answer', ?5) ON CONFLICT DO NOTHING",
                    vals![&node, &camera, seq(a), seq(b), now],
                )?;
            }
            p = progress(db, &node, &camera, first, last)?;
        }
        if p.missing.is_empty() {
            let state = if p.lost > 0 {
                "lost"
            } else if p.replayed > 0 {
                "recovered"
            } else {
                "arrived"
            };
            db.exec(
                "UPDATE gaps SET state = ?4, replayed = ?5, lost = ?6, reasons = ?7, closed_at = ?8,
                   lease_owner = NULL, lease_until = NULL
                 WHERE node = ?1 AND camera = ?2 AND first = ?3 AND state = 'open'",
                &[key[0].clone(), key[1].clone(), key[2].clone(), Val::from(state), Val::from(p.replayed),
                  Val::from(p.lost), Val::from(reasons_text(&p.reasons)), Val::from(now)],
            )?;
            continue;
        }
        if lease_until.is_some_and(|t| t > now) {
            continue;
        }
        let request_id = format!("{me}.{node}.{camera}.{first}.{}", requests + 1);
        let took = db.exec(
            "UPDATE gaps SET lease_owner = ?4, lease_until = ?5, requests = requests + 1, request_id = ?6,
               requested_at = ?7, replayed = ?8, lost = ?9, reasons = ?10
             WHERE node = ?1 AND camera = ?2 AND first = ?3 AND state = 'open'
               AND (lease_until IS NULL OR lease_until <= ?7)",
            &[key[0].clone(), key[1].clone(), key[2].clone(), Val::from(me), Val::from(now + plan.retry_ms),
              Val::from(request_id.as_str()), Val::from(now), Val::from(p.replayed), Val::from(p.lost),
              Val::from(reasons_text(&p.reasons))],
        )?;
        if took == 0 {
            continue;
        }
        for (a, b) in p.missing.into_iter().take(plan.max_runs) {
            // A long run is asked for in pieces of at most `max_range`.
            let mut start = a;
            while start <= b {
                let end = b.min(start.saturating_add(plan.max_range - 1));
                out.push(Request {
                    district: district.clone(),
                    node: node.clone(),
                    camera: camera.clone(),
                    first: start,
                    last: end,
                    request_id: request_id.clone(),
                });
                start = end.saturating_add(1);
            }
        }
    }
    Ok(out)
}

/// The newest gaps first (at most `limit`), open and closed.
pub fn report<S: Sql>(db: &mut S, limit: i64) -> Result<Vec<GapReport>, S::Error> {
    Ok(db
        .query(
            "SELECT node, camera, district, first, last, state, found_at, requests, replayed, lost, reasons,
                    closed_at, answered_at
             FROM gaps ORDER BY found_at DESC, node, camera, first LIMIT ?1",
            vals![limit],
        )?
        .into_iter()
        .map(|r| GapReport {
            node: text(r.first()),
            camera: text(r.get(1)),
            district: text(r.get(2)),
            first: u64::try_from(int(r.get(3))).unwrap_or(0),
            last: u64::try_from(int(r.get(4))).unwrap_or(0),
            state: text(r.get(5)),
            found_at: int(r.get(6)),
            requests: int(r.get(7)),
            replayed: int(r.get(8)),
            lost: int(r.get(9)),
            reasons: match r.get(10) {
                Some(Val::Text(Some(s))) => Some(s.clone()),
                _ => None,
            },
            closed_at: opt_int(r.get(11)),
            answered_at: opt_int(r.get(12)),
        })
        .collect())
}

/// Every run recorded lost, oldest first by camera and `seq`.
pub fn lost<S: Sql>(db: &mut S) -> Result<Vec<LostRun>, S::Error> {
    Ok(db
        .query(
            "SELECT node, camera, first, last, reason, recorded_at FROM lost ORDER BY node, camera, first",
            &[],
        )?
        .into_iter()
        .map(|r| LostRun {
            node: text(r.first()),
            camera: text(r.get(1)),
            first: u64::try_from(int(r.get(2))).unwrap_or(0),
            last: u64::try_from(int(r.get(3))).unwrap_or(0),
            reason: text(r.get(4)),
            recorded_at: int(r.get(5)),
        })
        .collect())
}
