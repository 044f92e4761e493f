//! The replay server: the centre asks (`edge-replay-request/1` on
//! `{prefix}/{district}/{node}/replay`) for a camera's lifecycle messages
//! `first..=last` by `seq`; each one still in the outbox's delivered window
//! is queued again through the outbox (marked `"replayed": true`, its
//! snapshot too when kept), so it goes with the same retries, acks and
//! `replay_rate` as any message; then the answer (`edge-replay-answer/1` on
//! `{base}/{camera}/replayed`, through the outbox as well, after the
//! messages it announces) says what was sent again, what is still queued
//! (`pending`) and what is missing and why.
//!
//! Requests wait in a bounded queue ([`QUEUE`]; full: the request is
//! dropped, logged and counted, the centre asks again). A request larger
//! than [`MAX_RANGE`] `seq`, malformed, of another schema or for a camera
//! the node does not have is refused with a log line and counted; nothing
//! else stops.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use edge_wire::{
    EVENT_SCHEMA, EventMessage, MissingRange, MissingReason, REPLAY_ANSWER_SCHEMA,
    REPLAY_REQUEST_SCHEMA, ReplayAnswer, ReplayRequest, rfc3339,
};
use tokio::sync::mpsc;

use super::outbox::{Append, Gone, KeptGroup, Outbox, OutboxError, SeqState};
use super::{Publisher, Record};

/// Requests waiting to be served, at most.
pub(super) const QUEUE: usize = 16;
/// The most `seq` one request may cover (`last - first + 1`); a larger one
/// is refused: the centre asks in smaller ranges.
pub const MAX_RANGE: u64 = 10_000;

/// A request as received: its topic and payload.
pub(super) struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why a request was refused (logged and counted; the centre gets no answer).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("not an edge-replay-request/1 message: {0}")]
    Malformed(String),
    #[error("schema {0:?}, expected {REPLAY_REQUEST_SCHEMA}")]
    Schema(String),
    #[error("camera {0:?} is not a camera of this node")]
    UnknownCamera(String),
    #[error("first {first} is after last {last}")]
    Reversed { first: u64, last: u64 },
    #[error("{n} seq asked (first {first}, last {last}); at most {MAX_RANGE} per request")]
    TooLarge { first: u64, last: u64, n: u64 },
}

/// What serving one request found.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("the outbox task failed: {0}")]
    Task(String),
}

impl Publisher {
    /// A message on the replay topic (from the event loop task): queue it,
    /// never waiting.
    pub(super) fn replay_request(&self, topic: &str, payload: &[u8]) {
        let st = &self.shared.stats;
        st.replay_requests.fetch_add(1, Ordering::Relaxed);
        let req = Incoming {
            topic: topic.to_string(),
            payload: payload.to_vec(),
        };
        if self.shared.replay_tx.try_send(req).is_err() {
            st.replay_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                topic,
                queue = QUEUE,
                "replay request dropped: too many requests waiting; the centre asks again"
            );
        }
    }

    /// Check a request: parsed, this schema, a camera of this node, a sane range.
    fn vet(&self, payload: &[u8]) -> Result<ReplayRequest, Refused> {
        let req: ReplayRequest =
            serde_json::from_slice(payload).map_err(|e| Refused::Malformed(e.to_string()))?;
        if req.schema != REPLAY_REQUEST_SCHEMA {
            return Err(Refused::Schema(req.schema));
        }
        let known = self
            .shared
            .cameras
            .lock()
            .map(|c| c.contains(&req.camera))
            .unwrap_or(false);
        if !known {
            return Err(Refused::UnknownCamera(req.camera));
        }
        let (first, last) = (req.first, req.last);
        if first > last {
            return Err(Refused::Reversed { first, last });
        }
        let n = (last - first).saturating_add(1);
        if n > MAX_RANGE {
            return Err(Refused::TooLarge { first, last, n });
        }
        Ok(req)
    }

    /// Serve one request: queue the kept messages again, then the answer.
    async fn serve_one(&self, inc: Incoming) {
        let st = &self.shared.stats;
        let req = match self.vet(&inc.payload) {
            Ok(r) => r,
            Err(e) => {
                st.replay_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %inc.topic, error = %e, "replay request refused");
                return;
            }
        };
        let ob = self.shared.outbox.clone();
        let (camera, first, last) = (req.camera.clone(), req.first, req.last);
        let done = tokio::task::spawn_blocking(move || resend(&ob, &camera, first, last))
            .await
            .map_err(|e| ServeError::Task(e.to_string()))
            .and_then(|r| r.map_err(ServeError::from));
        let (states, replayed) = match done {
            Ok(x) => x,
            Err(e) => {
                st.replay_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(topic = %inc.topic, request_id = %req.request_id,
                    camera = %req.camera, error = %e,
                    "replay request not served: the outbox cannot be read or written; the centre asks again");
                return;
            }
        };
        st.replay_resent.fetch_add(replayed, Ordering::Relaxed);
        let answer = self.answer(&req, &states, replayed);
        let body = match serde_json::to_vec(&answer) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(request_id = %req.request_id, error = %e, "replay answer not serialisable");
                return;
            }
        };
        tracing::info!(request_id = %req.request_id, camera = %req.camera, first = req.first,
            last = req.last, replayed, pending = answer.pending.len(),
            missing = answer.missing.len(), "replay request served");
        let rec = Record {
            camera: req.camera.clone(),
            seq: None,
            topic: self.shared.topics.replay_answer(&req.camera),
            body,
            snapshot: None,
            copy_topic: None,
            open: None,
        };
        match self.store(std::sync::Arc::new(rec)).await {
            Ok(()) => {
                st.replay_served.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                st.replay_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(request_id = %req.request_id, camera = %req.camera, error = %e,
                    "replay answer could not be stored; the centre asks again");
            }
        }
    }

    fn answer(&self, req: &ReplayRequest, states: &[SeqState], replayed: u64) -> ReplayAnswer {
        let (pending, missing) = runs(req.first, states);
        ReplayAnswer {
            schema: REPLAY_ANSWER_SCHEMA.into(),
            request_id: req.request_id.clone(),
            node: self.shared.node.clone(),
            district: self.shared.district.clone(),
            camera: req.camera.clone(),
            first: req.first,
            last: req.last,
            replayed,
            pending,
            missing,
            time: rfc3339(SystemTime::now()),
        }
    }
}

/// Serve requests one at a time until the publisher stops.
pub(super) async fn serve(p: Publisher, mut rx: mpsc::Receiver<Incoming>) {
    while let Some(inc) = rx.recv().await {
        if p.client_closed() {
            return;
        }
        p.serve_one(inc).await;
    }
}

/// Queue again every kept `seq` of `camera` in `first..=last`. Returns the
/// final state of each `seq` (a kept one sent again stays `Kept`) and how
/// many were sent again.
fn resend(
    ob: &Outbox,
    camera: &str,
    first: u64,
    last: u64,
) -> Result<(Vec<SeqState>, u64), OutboxError> {
    let mut states = ob.seq_states(camera, first, last)?;
    let mut replayed = 0;
    for (seq, state) in (first..=last).zip(states.iter_mut()) {
        if *state != SeqState::Kept {
            continue;
        }
        let requeued = match ob.delivered_group(camera, seq)? {
            Some(g) => requeue(ob, camera, seq, &g)?,
            None => false,
        };
        if requeued {
            replayed += 1;
        } else {
            // Evicted or expired meanwhile (or unreadable): say what it is now.
            *state = match ob.seq_states(camera, seq, seq)?.first() {
                Some(SeqState::Kept) | None => SeqState::Unknown,
                Some(s) => *s,
            };
        }
    }
    Ok((states, replayed))
}

/// Queue one kept group again, its event (and copy) marked `replayed`;
/// without its snapshot (no longer kept) the event goes as it would have
/// without it (`snapshot_omitted: "evicted"`). Returns false when the
/// stored event cannot be read back as an event.
fn requeue(ob: &Outbox, camera: &str, seq: u64, g: &KeptGroup) -> Result<bool, OutboxError> {
    let Some((topic, payload, fallback)) = &g.event else {
        return Ok(false);
    };
    let mark = |b: &[u8]| match mark_replayed(b) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(camera, seq, error = %e, "replay: a kept event is unreadable; reported unknown");
            None
        }
    };
    let (event, snapshot) = match (&g.snapshot, fallback) {
        (Some((st, jpeg)), fb) => {
            let Some(ev) = mark(payload) else {
                return Ok(false);
            };
            let Some(fb) = mark(fb.as_deref().unwrap_or(payload)) else {
                return Ok(false);
            };
            (ev, Some((st.as_str(), jpeg.as_slice(), fb)))
        }
        (None, fb) => match mark(fb.as_deref().unwrap_or(payload)) {
            Some(ev) => (ev, None),
            None => return Ok(false),
        },
    };
    let a = Append {
        camera,
        seq: Some(seq),
        event_topic: topic,
        event: &event,
        snapshot: snapshot.as_ref().map(|(t, j, f)| (*t, *j, f.as_slice())),
        copy_topic: g.copy_topic.as_deref(),
        open: None,
    };
    ob.requeue(&a, &g.keys)?;
    Ok(true)
}

/// An event payload sent again: `replayed: true`, in the current schema.
fn mark_replayed(payload: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut m: EventMessage = serde_json::from_slice(payload)?;
    m.schema = EVENT_SCHEMA.into();
    m.replayed = true;
    serde_json::to_vec(&m)
}

fn reason(g: Gone) -> MissingReason {
    match g {
        Gone::Evicted => MissingReason::Evicted,
        Gone::Expired => MissingReason::Expired,
        Gone::NotStored => MissingReason::NotStored,
    }
}

/// The states of `first, first + 1, …` as runs: pending ones, and missing
/// ones with their reason (kept ones were sent again and are in neither).
fn runs(first: u64, states: &[SeqState]) -> (Vec<(u64, u64)>, Vec<MissingRange>) {
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let mut missing: Vec<MissingRange> = Vec::new();
    for (seq, s) in (first..).zip(states) {
        let why = match s {
            SeqState::Kept => continue,
            SeqState::Pending => {
                match pending.last_mut() {
                    Some(r) if r.1 + 1 == seq => r.1 = seq,
                    _ => pending.push((seq, seq)),
                }
                continue;
            }
            SeqState::Gone(g) => reason(*g),
            SeqState::Unknown => MissingReason::Unknown,
        };
        match missing.last_mut() {
            Some(r) if r.last + 1 == seq && r.reason == why => r.last = seq,
            _ => missing.push(MissingRange {
                first: seq,
                last: seq,
                reason: why,
            }),
        }
    }
    (pending, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_become_runs() {
        let s = [
            SeqState::Gone(Gone::Expired),
            SeqState::Gone(Gone::Expired),
            SeqState::Kept,
            SeqState::Pending,
            SeqState::Pending,
            SeqState::Gone(Gone::Evicted),
            SeqState::Unknown,
            SeqState::Unknown,
            SeqState::Pending,
        ];
        let (pending, missing) = runs(10, &s);
        assert_eq!(pending, [(13, 14), (18, 18)]);
        let m: Vec<(u64, u64, MissingReason)> = missing
            .iter()
            .map(|r| (r.first, r.last, r.reason))
            .collect();
        assert_eq!(
            m,
            [
                (10, 11, MissingReason::Expired),
                (15, 15, MissingReason::Evicted),
                (16, 17, MissingReason::Unknown)
            ]
        );
    }

    #[test]
    fn a_replayed_event_says_so_in_the_current_schema() {
        let v4 = br#"{"schema":"edge-event/4","id":"b.c.1.1","seq":3,"type":"new","node":"b","district":"d","camera":"c","label":"person","class_id":0,"track_id":1,"score":0.9,"top_score":0.9,"start_time":"2026-01-01T00:00:00.000Z","end_time":null,"frame_time":"2026-01-01T00:00:00.000Z","box":{"x1":0.1,"y1":0.1,"x2":0.2,"y2":0.2},"frame_size":{"width":640,"height":480},"snapshot":null,"snapshot_omitted":null,"current_zones":[],"entered_zones":[],"stationary":false,"alerts":[],"alert":null,"end_reason":null}"#;
        let out: serde_json::Value = serde_json::from_slice(&mark_replayed(v4).unwrap()).unwrap();
        assert_eq!(out["replayed"], true);
        assert_eq!(out["schema"], EVENT_SCHEMA);
        // `/4` had no riders: 0 in the current schema.
        assert_eq!(out["riders"], 0);
        assert_eq!(out["seq"], 3);
        assert!(mark_replayed(b"{}").is_err());
    }
}
