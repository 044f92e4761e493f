//! Byte and snapshot statistics: what `edge-stats/3` reports per class of
//! traffic and per camera, the publisher's counters, and the task that
//! publishes the retained stats message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Publisher;
use super::record::OmitReason;
use super::topics::TopicClass;
use super::wire::{
    BudgetStats, CameraState, OutboxStats, STATS_SCHEMA, SentStats, StatsMessage, rfc3339,
};
use crate::budget::Step;

/// Payload bytes sent per class of traffic (`edge-stats/3`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClassBytes {
    pub events: u64,
    pub alerts: u64,
    pub snapshots: u64,
    pub counts: u64,
    pub status: u64,
    pub stats: u64,
}

impl ClassBytes {
    pub(super) fn add(&mut self, class: TopicClass, n: u64) {
        let slot = match class {
            TopicClass::Events => &mut self.events,
            TopicClass::Alerts => &mut self.alerts,
            TopicClass::Snapshots => &mut self.snapshots,
            TopicClass::Counts => &mut self.counts,
            TopicClass::Status => &mut self.status,
            TopicClass::Stats => &mut self.stats,
        };
        *slot += n;
    }

    pub fn total(&self) -> u64 {
        self.events + self.alerts + self.snapshots + self.counts + self.status + self.stats
    }
}

/// Snapshots of one camera by what the budget made of them (`edge-stats/3`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Sent at the configured quality.
    pub full: u64,
    /// Sent degraded, per step.
    pub quality: u64,
    pub height: u64,
    pub crop: u64,
    /// Due but not sent because the budget was spent.
    pub omitted_budget: u64,
    /// Due but withheld for privacy (face model unusable).
    pub omitted_privacy: u64,
    /// Due but larger than the MQTT packet limit.
    #[serde(default)]
    pub omitted_too_large: u64,
}

impl SnapshotCounts {
    /// Count what became of a snapshot that was due.
    pub(super) fn count(&mut self, outcome: Result<Step, OmitReason>) {
        match outcome {
            Ok(Step::Full) => self.full += 1,
            Ok(Step::Quality) => self.quality += 1,
            Ok(Step::Height) => self.height += 1,
            Ok(Step::Crop) => self.crop += 1,
            Err(OmitReason::Budget) => self.omitted_budget += 1,
            Err(OmitReason::Privacy) => self.omitted_privacy += 1,
            Err(OmitReason::TooLarge) => self.omitted_too_large += 1,
            Err(OmitReason::Error) => {}
        }
    }
}

/// Per-camera part of `edge-stats/3`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CameraStats {
    /// Payload bytes handed to the broker, per class.
    pub bytes: ClassBytes,
    pub snapshots: SnapshotCounts,
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
        t.cameras
            .entry(camera.to_string())
            .or_default()
            .snapshots
            .count(outcome);
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
