//! The outbox pump: the task that drains the durable outbox to the client
//! at a bounded rate (round robin over cameras, each camera in key order,
//! a bounded window of unacknowledged messages), skips cameras whose queue
//! waits after a refusal, quarantines records larger than a packet limit,
//! deletes acknowledged records in batches, and re-announces the node status
//! when the outbox's health changes. See `docs/outbox.md`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::client::Sent;
use super::{PublishError, Publisher};

/// At most this many outbox messages are in flight (handed out, not acked).
const WINDOW: usize = 64;

/// Bytes an MQTT 5 PUBLISH adds to its topic and payload (fixed header,
/// remaining length, topic length, packet id, empty properties).
pub(super) const PUBLISH_OVERHEAD: usize = 10;

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
                if link.is_held(&cam, Instant::now()) {
                    idle_rounds += 1;
                    continue;
                }
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
            let size = m.topic.len() + m.payload.len() + PUBLISH_OVERHEAD;
            if let Some((limit, whose)) = self.packet_limit().filter(|l| size > l.0) {
                self.quarantine(
                    key,
                    &format!("its {size}-byte packet exceeds {whose} ({limit} bytes)"),
                );
                continue;
            }
            let tag = Sent {
                key,
                camera: cam.clone(),
                topic: m.topic.clone(),
            };
            if !self.push(Some(tag), m.topic, m.payload, false) {
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

    /// Take record `key` out of the queue for good (kept in the outbox's
    /// quarantine table and counted), saying which record and why.
    pub(super) fn quarantine(&self, key: u64, why: &str) {
        let ob = &self.shared.outbox;
        let (camera, topic) = match ob.get(key) {
            Ok(Some(m)) => (m.camera, m.topic),
            _ => (String::new(), String::new()),
        };
        match ob.quarantine(key) {
            Ok(true) => {
                tracing::error!(key, camera = %camera, topic = %topic, reason = %why,
                    "outbox: record quarantined, it can never be delivered; it is kept on the node and counted");
                self.announce_node();
            }
            Ok(false) => {}
            Err(e) => tracing::error!(key, error = %e, "outbox: cannot quarantine a record"),
        }
    }
}

/// Delete acknowledged records; what cannot be deleted now (the store is
/// failing) is kept and deleted later.
async fn remove_acked(p: &Publisher, pending: &mut Vec<u64>) {
    if let Ok(mut l) = p.shared.link.lock() {
        pending.append(&mut l.acked);
    }
    let ob = p.shared.outbox.clone();
    let keys = std::mem::take(pending);
    let (keys, r) = match tokio::task::spawn_blocking(move || {
        let r = ob.remove(&keys);
        (keys, r)
    })
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "outbox: remove task failed");
            return;
        }
    };
    if let Err(e) = r {
        if e.fault().is_none() {
            tracing::error!(error = %e, "outbox: cannot remove acknowledged messages");
        }
        *pending = keys;
    }
}

/// How often the delivered window is swept for records kept too long.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Delete the delivered records kept longer than `[outbox] keep_delivered_s`.
async fn sweep_delivered(p: &Publisher) {
    let ob = p.shared.outbox.clone();
    match tokio::task::spawn_blocking(move || ob.sweep_delivered()).await {
        Ok(Ok(n)) if n > 0 => {
            tracing::debug!(
                expired = n,
                "outbox: delivered records past keep_delivered_s deleted"
            );
        }
        Ok(Ok(_)) => {}
        // A storage fault is logged once by the outbox; the next sweep retries.
        Ok(Err(e)) if e.fault().is_some() => {}
        Ok(Err(e)) => tracing::error!(error = %e, "outbox: cannot sweep the delivered window"),
        Err(e) => tracing::error!(error = %e, "outbox: sweep task failed"),
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
    let mut unremoved: Vec<u64> = Vec::new();
    let mut health = None;
    let mut reported_replayed = 0;
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        remove_acked(&p, &mut unremoved).await;
        if tokio::time::Instant::now() >= next_sweep {
            next_sweep = tokio::time::Instant::now() + SWEEP_EVERY;
            sweep_delivered(&p).await;
        }
        let now = tokio::time::Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        last = now;
        if tokens >= 1.0 {
            match p.pump_once(tokens as usize) {
                Ok(n) => tokens -= n as f64,
                // A storage fault is logged once by the outbox, and shown in the status.
                Err(PublishError::Outbox(e)) if e.fault().is_some() => {}
                Err(e) => tracing::error!(error = %e, "outbox: cannot read a message"),
            }
        }
        let now_health = p.shared.outbox.health().map(|f| f.reason);
        if now_health != health {
            health = now_health;
            p.announce_node();
            p.publish_stats();
        }
        if p.shared.outbox.is_empty()
            && let Ok(mut l) = p.shared.link.lock()
            && l.replaying
            && l.handed == 0
            && l.connected
        {
            l.replaying = false;
            let total = p.shared.stats.replayed.load(Ordering::Relaxed);
            let replayed = total - reported_replayed;
            reported_replayed = total;
            if replayed > 0 {
                tracing::info!(replayed, "outbox drained");
            }
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
