//! Byte and snapshot statistics: what `edge-stats/3` reports per class of
//! traffic and per camera, the publisher's counters, and the task that
//! publishes the retained stats message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use edge_wire::{
    BudgetStats, CameraState, CameraStats, ClassBytes, OutboxStats, STATS_SCHEMA, SentStats,
    SnapshotCounts, StatsMessage, TopicClass, rfc3339,
};

use super::Publisher;
use super::record::OmitReason;
use crate::budget::Step;

/// Count what became of a snapshot that was due.
fn count_outcome(c: &mut SnapshotCounts, outcome: Result<Step, OmitReason>) {
    match outcome {
        Ok(Step::Full) => c.full += 1,
        Ok(Step::Quality) => c.quality += 1,
        Ok(Step::Height) => c.height += 1,
        Ok(Step::Crop) => c.crop += 1,
        Err(OmitReason::Budget) => c.omitted_budget += 1,
        Err(OmitReason::Privacy) => c.omitted_privacy += 1,
        Err(OmitReason::TooLarge) => c.omitted_too_large += 1,
        Err(OmitReason::Error) => {}
    }
}

/// Counters shared with the event loop task.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// QoS-1 publishes handed to the client (replays included).
    pub sent: AtomicU64,
    /// PUBACKs received.
    pub acked: AtomicU64,
    pub bytes: AtomicU64,
    /// Events and snapshots accepted into the outbox.
    pub events: AtomicU64,
    pub snapshots: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub connected: AtomicBool,
    pub reconnects: AtomicU64,
    /// Outbox messages handed to the client after a (re)connect or a restart
    /// while a backlog existed.
    pub replayed: AtomicU64,
    /// PUBACKs with a failure reason code.
    pub refused: AtomicU64,
    /// Connections dropped because the broker stopped acknowledging.
    pub puback_timeouts: AtomicU64,
    /// Replay requests received, refused (malformed, another schema, an
    /// unknown camera, too large a range, the queue full) and not served (the
    /// outbox failing), and lifecycle messages queued again for them.
    pub replay_requests: AtomicU64,
    pub replay_refused: AtomicU64,
    pub replay_failed: AtomicU64,
    pub replay_resent: AtomicU64,
    /// Replay requests answered (the answer is in the outbox).
    pub replay_served: AtomicU64,
}

/// Replay requests (the metrics' view of [`PublishStats`]'s `replay_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayView {
    pub served: u64,
    pub refused: u64,
    pub failed: u64,
    /// Lifecycle messages queued again for them.
    pub resent: u64,
}

/// Bytes per class (node-wide) and per camera, counted in `Publisher::push`.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    pub node: ClassBytes,
    pub cameras: BTreeMap<String, CameraStats>,
}

impl Traffic {
    /// `n` payload bytes published on a topic of `class` (for `camera`, if any).
    pub(super) fn add(&mut self, camera: Option<&str>, class: TopicClass, n: u64) {
        self.node.add(class, n);
        if let Some(c) = camera {
            self.cameras
                .entry(c.to_string())
                .or_default()
                .bytes
                .add(class, n);
        }
    }
}

impl Publisher {
    /// Count what became of a snapshot that was due (`edge-stats/3`).
    pub(super) fn count_snapshot(&self, camera: &str, outcome: Option<Result<Step, OmitReason>>) {
        let Some(outcome) = outcome else {
            return;
        };
        let Ok(mut t) = self.shared.traffic.lock() else {
            return;
        };
        let camera = t.cameras.entry(camera.to_string()).or_default();
        count_outcome(&mut camera.snapshots, outcome);
    }

    fn stats_message(&self) -> StatsMessage {
        let c = self.shared.outbox.counters();
        // Read the traffic before `sent` so that their sums agree at rest.
        let (bytes, cameras) = self
            .shared
            .traffic
            .lock()
            .map(|t| (t.node, t.cameras.clone()))
            .unwrap_or_default();
        let budget = self
            .shared
            .budget
            .lock()
            .ok()
            .and_then(|b| b.clone())
            .and_then(|b| {
                let mut b = b.lock().ok()?;
                Some(BudgetStats {
                    snapshot_bytes_per_s: b.rate(),
                    burst_bytes: b.burst(),
                    available_bytes: b.available(std::time::Instant::now()),
                })
            });
        let s = &self.shared.stats;
        StatsMessage {
            schema: STATS_SCHEMA.into(),
            node: self.shared.node.clone(),
            district: self.shared.district.clone(),
            time: rfc3339(SystemTime::now()),
            outbox: OutboxStats {
                events: c.events,
                snapshots: c.snapshots,
                bytes: c.bytes,
                quota_bytes: c.quota_bytes,
                evicted_events: c.evicted_events,
                evicted_snapshots: c.evicted_snapshots,
                evicted_bytes: c.evicted_bytes,
                lost_events: c.lost_events,
                quarantined: c.quarantined,
                store_error: self.shared.outbox.health().map(|f| f.reason),
                delivery_error: self.delivery_error(),
            },
            sent: SentStats {
                messages: s.sent.load(Ordering::Relaxed),
                acked: s.acked.load(Ordering::Relaxed),
                bytes: s.bytes.load(Ordering::Relaxed),
                replayed: s.replayed.load(Ordering::Relaxed),
                reconnects: s.reconnects.load(Ordering::Relaxed),
                refused: s.refused.load(Ordering::Relaxed),
                puback_timeouts: s.puback_timeouts.load(Ordering::Relaxed),
            },
            bytes,
            cameras,
            budget,
        }
    }

    /// Publish the retained stats message now (dropped while disconnected).
    pub(super) fn publish_stats(&self) {
        if let Ok(body) = serde_json::to_vec(&self.stats_message()) {
            let _ = self.push(None, self.shared.topics.stats(), body, true);
        }
    }
}

/// The snapshot budget as the metrics endpoint reads it, bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetView {
    pub rate_bytes_per_s: f64,
    pub burst_bytes: f64,
    pub available_bytes: f64,
}

/// What the publisher knows, read by the metrics endpoint at each scrape
/// (`crate::metrics`); internal figures, not the wire schema.
#[derive(Clone, Debug, Default)]
pub struct PublisherView {
    pub connected: bool,
    /// Broker reconnections.
    pub reconnects: u64,
    /// QoS-1 publishes handed to the client, PUBACKs, refusals.
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    /// Payload bytes handed to the client per class, node-wide.
    pub bytes: ClassBytes,
    /// The configured cameras, in config order, with their last published state.
    pub cameras: Vec<(String, Option<CameraState>)>,
    /// Snapshot outcomes per camera.
    pub snapshots: BTreeMap<String, SnapshotCounts>,
    pub outbox: super::outbox::Counters,
    pub budget: Option<BudgetView>,
    /// The node's latest load assessment (`None` before the first window).
    pub load: Option<super::NodeLoad>,
    pub replay: ReplayView,
}

impl Publisher {
    /// The figures the metrics endpoint exports.
    pub fn view(&self) -> PublisherView {
        let sh = &self.shared;
        let states = sh
            .camera_status
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.state))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        let cameras = sh
            .cameras
            .lock()
            .map(|c| {
                c.iter()
                    .map(|id| (id.clone(), states.get(id).copied()))
                    .collect()
            })
            .unwrap_or_default();
        let (bytes, snapshots) = sh
            .traffic
            .lock()
            .map(|t| {
                (
                    t.node,
                    t.cameras
                        .iter()
                        .map(|(k, v)| (k.clone(), v.snapshots))
                        .collect(),
                )
            })
            .unwrap_or_default();
        let budget = sh.budget.lock().ok().and_then(|b| b.clone()).and_then(|b| {
            let mut b = b.lock().ok()?;
            Some(BudgetView {
                rate_bytes_per_s: b.rate(),
                burst_bytes: b.burst(),
                available_bytes: b.available(std::time::Instant::now()) as f64,
            })
        });
        let s = &sh.stats;
        PublisherView {
            connected: s.connected.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            bytes,
            cameras,
            snapshots,
            outbox: sh.outbox.counters(),
            budget,
            load: sh.load.lock().ok().and_then(|l| l.clone()),
            replay: ReplayView {
                served: s.replay_served.load(Ordering::Relaxed),
                refused: s.replay_refused.load(Ordering::Relaxed),
                failed: s.replay_failed.load(Ordering::Relaxed),
                resent: s.replay_resent.load(Ordering::Relaxed),
            },
        }
    }
}

/// Publish the retained stats message every `stats_interval`.
pub(super) async fn stats_loop(p: Publisher) {
    loop {
        tokio::time::sleep(p.shared.opts.stats_interval).await;
        if p.client_closed() {
            return;
        }
        p.publish_stats();
    }
}
