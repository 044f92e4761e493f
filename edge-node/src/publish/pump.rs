//! The outbox pump: the task that drains the durable outbox to the client
//! at a bounded rate (round robin over cameras, each camera in key order,
//! a bounded window of unacknowledged messages) and deletes acknowledged
//! records in batches. See `docs/outbox.md`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{PublishError, Publisher};

/// At most this many outbox messages are in flight (handed out, not acked).
const WINDOW: usize = 64;

impl Publisher {
    /// Hand the next outbox messages to the client: round robin over cameras,
    /// each camera in key order, at most `budget` of them and never more than
    /// [`WINDOW`] unacknowledged. Returns how many were handed out.
    fn pump_once(&self, budget: usize) -> Result<usize, PublishError> {
        let ob = &self.shared.outbox;
        let cameras = ob.cameras();
        if cameras.is_empty() {
            return Ok(0);
        }
        let mut sent = 0;
        let mut idle_rounds = 0;
        while sent < budget && idle_rounds < cameras.len() {
            let (cam, after) = {
                let Ok(mut link) = self.shared.link.lock() else {
                    return Ok(sent);
                };
                if !link.connected || link.handed >= WINDOW {
                    return Ok(sent);
                }
                let cam = cameras[link.turn % cameras.len()].clone();
                link.turn = link.turn.wrapping_add(1);
                let after = link.cursors.get(&cam).copied();
                (cam, after)
            };
            let Some(key) = ob.next_key(&cam, after) else {
                idle_rounds += 1;
                continue;
            };
            idle_rounds = 0;
            let Some(m) = ob.get(key)? else {
                continue; // evicted meanwhile
            };
            if !self.push(Some(key), m.topic, m.payload, false) {
                return Ok(sent);
            }
            let Ok(mut link) = self.shared.link.lock() else {
                return Ok(sent);
            };
            link.cursors.insert(cam, key);
            if link.replaying {
                self.shared.stats.replayed.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
        }
        Ok(sent)
    }
}

/// Drain the outbox to the client at no more than `replay_rate` messages per
/// second (a token bucket holding half a second of tokens, so live events go
/// out at once when there is no backlog), and delete acknowledged records in
/// batches.
pub(super) async fn pump(p: Publisher) {
    let rate = p.shared.opts.replay_rate.max(1.0);
    let burst = (rate / 2.0).max(1.0);
    let mut tokens = burst;
    let mut last = tokio::time::Instant::now();
    loop {
        let acked: Vec<u64> = p
            .shared
            .link
            .lock()
            .map(|mut l| std::mem::take(&mut l.acked))
            .unwrap_or_default();
        if !acked.is_empty() {
            let ob = p.shared.outbox.clone();
            match tokio::task::spawn_blocking(move || ob.remove(&acked)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "outbox: cannot remove acknowledged messages");
                }
                Err(e) => tracing::error!(error = %e, "outbox: remove task failed"),
            }
        }
        let now = tokio::time::Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        last = now;
        if tokens >= 1.0 {
            match p.pump_once(tokens as usize) {
                Ok(n) => tokens -= n as f64,
                Err(e) => tracing::error!(error = %e, "outbox: cannot read a message"),
            }
        }
        if p.shared.outbox.is_empty()
            && let Ok(mut l) = p.shared.link.lock()
            && l.replaying
            && l.handed == 0
        {
            l.replaying = false;
            tracing::info!(
                replayed = p.shared.stats.replayed.load(Ordering::Relaxed),
                "outbox drained"
            );
        }
        if p.client_closed() {
            return;
        }
        let wait = if tokens < 1.0 {
            Duration::from_secs_f64((1.0 - tokens) / rate).max(Duration::from_millis(1))
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            _ = p.shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
