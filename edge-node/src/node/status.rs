//! What the node says about itself outside MQTT events: each camera's
//! retained status (from its source's state, latest state wins), and the
//! heartbeat file the container health check reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span, debug, info, warn};

use super::health::{self, Board, BrokerObs, Limits, Observed};
use super::load::{self, LoadMeter};
use super::slots::{Pool, SlotCounters};
use crate::publish::{
    self, CameraError, CameraLive, CameraState, DropCounts, Publisher, StreamDesc,
};
use crate::sdnotify::{self, Notifier};
use crate::source::SourceState;

/// How a source state reads on the camera status topic.
fn camera_state(s: &SourceState) -> (CameraState, Option<CameraError>) {
    let err = |summary: &String, detail: &Option<String>| {
        Some(CameraError {
            summary: summary.clone(),
            detail: detail.clone(),
        })
    };
    match s {
        SourceState::Starting => (CameraState::Starting, None),
        SourceState::Streaming { .. } => (CameraState::Streaming, None),
        SourceState::Reconnecting { error, detail, .. } => {
            (CameraState::Reconnecting, err(error, detail))
        }
        SourceState::Failed { error, detail } => (CameraState::Failed, err(error, detail)),
        SourceState::Ended => (CameraState::Ended, None),
    }
}

/// What one camera's status task carries between publishes: the live
/// figures that are not in the slot counters.
struct Live {
    /// Counters and time at the previous publish, for the rates.
    prev: Option<(SlotCounters, Instant)>,
    reconnects: u64,
    attempt: u32,
    outage_since: Option<(SystemTime, Instant)>,
    stream: Option<StreamDesc>,
    was_streaming: bool,
}

impl Live {
    fn new() -> Self {
        Self {
            prev: None,
            reconnects: 0,
            attempt: 0,
            // Not streaming yet: the outage clock starts with the camera.
            outage_since: Some((SystemTime::now(), Instant::now())),
            stream: None,
            was_streaming: false,
        }
    }

    /// Follows a state change: reconnect count, outage, stream.
    fn on_state(&mut self, s: &SourceState) {
        match s {
            SourceState::Streaming { info } => {
                self.was_streaming = true;
                self.attempt = 0;
                self.outage_since = None;
                self.stream = Some(StreamDesc {
                    codec: info.codec.clone(),
                    decoder: info.decoder.clone(),
                    width: info.width,
                    height: info.height,
                    fps: info.fps,
                });
            }
            SourceState::Reconnecting { attempt, .. } => {
                if self.was_streaming {
                    self.reconnects += 1;
                    self.was_streaming = false;
                }
                self.attempt = *attempt;
                self.outage_since
                    .get_or_insert((SystemTime::now(), Instant::now()));
            }
            SourceState::Starting => {}
            SourceState::Failed { .. } => {
                self.was_streaming = false;
                self.outage_since
                    .get_or_insert((SystemTime::now(), Instant::now()));
            }
            // A file that ended is done, not down.
            SourceState::Ended => self.was_streaming = false,
        }
    }

    /// The figures now, from the slot's counters.
    fn figures(&mut self, c: SlotCounters, streaming: bool) -> CameraLive {
        let now = Instant::now();
        let rate = |n: u64, p: u64, dt: f64| {
            if dt > 0.0 {
                ((n.saturating_sub(p)) as f64 / dt * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        let (fps_in, fps_analysed) = match self.prev {
            Some((p, t)) => {
                let dt = now.duration_since(t).as_secs_f64();
                (
                    rate(c.frames_in, p.frames_in, dt),
                    rate(c.analysed, p.analysed, dt),
                )
            }
            None => (0.0, 0.0),
        };
        self.prev = Some((c, now));
        let round = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        let outage = if streaming { None } else { self.outage_since };
        CameraLive {
            frames: c.frames_in,
            frames_analysed: c.analysed.saturating_sub(c.failed),
            frames_dropped: c.dropped + c.failed,
            drops: DropCounts {
                queue_full: c.dropped,
                inference_failed: c.failed,
            },
            fps_in,
            fps_analysed,
            last_frame_age_s: c.last_arrival.map(|t| round(t.elapsed())),
            reconnects: self.reconnects,
            retry_attempt: self.attempt,
            outage_since: outage.map(|(w, _)| publish::rfc3339(w)),
            outage_s: outage.map(|(_, i)| round(i.elapsed())),
            stream: self.stream.clone(),
            health: Vec::new(),
        }
    }
}

/// One camera's status task: what it publishes, and where it reports.
pub(super) struct StatusTask {
    pub camera: String,
    pub states: watch::Receiver<SourceState>,
    pub publisher: Publisher,
    pub pool: Arc<Pool>,
    pub idx: usize,
    /// A privacy refusal: the error shown while the source is fine.
    pub note: Option<String>,
    /// `[node] status_interval_s`.
    pub interval: Duration,
    pub board: Arc<Board>,
    pub span: Span,
}

/// The camera status task: publishes every state change of the camera's
/// source (retained), and refreshes it every `interval` with the live
/// figures. A privacy refusal (`note`) stays visible as the error while the
/// source is fine. Ends when the source drops its state sender; yields the
/// camera id if it failed.
pub(super) fn spawn_camera_status(t: StatusTask) -> JoinHandle<Option<String>> {
    let span = t.span.clone();
    tokio::spawn(run_camera_status(t).instrument(span))
}

async fn run_camera_status(mut t: StatusTask) -> Option<String> {
    let mut failed = None;
    let mut live = Live::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + t.interval, t.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changed = true;
    loop {
        let s = t.states.borrow_and_update().clone();
        if changed {
            live.on_state(&s);
        }
        if let SourceState::Failed { .. } = s {
            failed = Some(t.camera.clone());
        }
        let streaming = matches!(s, SourceState::Streaming { .. });
        t.board.set_streaming(&t.camera, streaming);
        let (state, err) = camera_state(&s);
        let err = err.or_else(|| {
            t.note.clone().map(|n| CameraError {
                summary: n,
                detail: None,
            })
        });
        if changed {
            match &err {
                Some(e) => {
                    warn!(state = ?state, error = %crate::redact::userinfo(&e.summary), "camera state");
                }
                None => info!(state = ?state, "camera state"),
            }
        }
        let figures = live.figures(t.pool.counters(t.idx), streaming);
        if !changed {
            debug!(
                state = ?state,
                frames = figures.frames,
                fps_in = figures.fps_in,
                fps_analysed = figures.fps_analysed,
                dropped = figures.frames_dropped,
                "camera figures"
            );
        }
        let _ = t
            .publisher
            .camera_status(&t.camera, state, err, figures)
            .await;
        tokio::select! {
            r = t.states.changed() => {
                if r.is_err() {
                    break;
                }
                changed = true;
            }
            _ = tick.tick() => changed = false,
        }
    }
    t.board.remove(&t.camera);
    failed
}

/// Writes the current time to `path` every 5 s (more often when systemd's
/// watchdog asks), for the container health check, then one line per
/// health problem (`kind: text`, see [`super::health`]); `edge-node
/// healthcheck` fails while there is any. Pings systemd's watchdog only
/// while there is none.
pub(super) fn spawn_heartbeat(
    path: PathBuf,
    publisher: Publisher,
    board: Arc<Board>,
    limits: Limits,
    notifier: Option<Arc<Notifier>>,
) -> JoinHandle<()> {
    let period = sdnotify::watchdog_interval()
        .filter(|_| notifier.is_some())
        .map_or(Duration::from_secs(5), |w| w.min(Duration::from_secs(5)));
    tokio::spawn(async move {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let mut was_healthy = true;
        let mut meter = LoadMeter::default();
        loop {
            let was_overloaded = publisher.load().is_some_and(|l| l.overloaded);
            if let Some(load) = meter.update(Instant::now(), board.counts()) {
                match load::transition(was_overloaded, &load) {
                    Some(line) if load.overloaded => warn!(
                        shortfall_fps = load.shortfall_fps,
                        shed_pct = load.shed_pct,
                        analysed_fps = load.analysed_fps,
                        delivered_fps = load.delivered_fps,
                        "{line}"
                    ),
                    Some(line) => info!(analysed_fps = load.analysed_fps, "{line}"),
                    None => {}
                }
                publisher.set_load(load).await;
            }
            let problems = health::problems(&observe(&publisher, &board), &limits);
            let mut text = publish::rfc3339(SystemTime::now());
            for p in &problems {
                text.push('\n');
                text.push_str(&p.to_string());
            }
            text.push('\n');
            let _ = std::fs::write(&path, text);
            let healthy = health::may_ping(&problems);
            if healthy != was_healthy {
                match problems.first() {
                    Some(p) => warn!(problem = %p, "node unhealthy"),
                    None => info!("node healthy again"),
                }
                was_healthy = healthy;
            }
            if let Some(n) = &notifier {
                let msg = match problems.first() {
                    None => format!("WATCHDOG=1\n{}", sdnotify::status_line("healthy")),
                    Some(p) => sdnotify::status_line(&format!("unhealthy: {p}")),
                };
                if let Err(e) = n.send(&msg) {
                    debug!(error = %e, "systemd notify failed");
                }
            }
            tokio::time::sleep(period).await;
        }
    })
}

/// What the health rules look at, read now.
fn observe(publisher: &Publisher, board: &Board) -> Observed {
    let (cameras, stalls) = board.observe();
    Observed {
        outbox_failure: publisher.outbox_failure().map(|f| {
            format!(
                "{} (since {}, {} failed writes)",
                f.reason,
                publish::rfc3339(f.since),
                f.failed_writes
            )
        }),
        delivery_error: publisher.delivery_error(),
        broker: publisher.broker_down().map(|d| BrokerObs {
            down_for: d.since_instant.elapsed(),
            error: d.error,
            outbox_growth: publisher.outbox_len() as i64 - d.outbox_at_start as i64,
        }),
        cameras,
        stalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::StreamInfo;

    fn streaming() -> SourceState {
        SourceState::Streaming {
            info: StreamInfo::default(),
        }
    }

    fn retry(attempt: u32) -> SourceState {
        SourceState::Reconnecting {
            error: "down".into(),
            detail: None,
            retry_in_s: 1.0,
            attempt,
        }
    }

    #[test]
    fn one_outage_is_one_reconnect_and_keeps_its_start() {
        let mut l = Live::new();
        l.on_state(&streaming());
        assert_eq!(l.outage_since, None);
        l.on_state(&retry(1));
        let began = l.outage_since;
        assert!(began.is_some());
        l.on_state(&retry(2));
        l.on_state(&retry(3));
        assert_eq!((l.reconnects, l.attempt), (1, 3));
        assert_eq!(l.outage_since, began, "retries keep the outage's start");
        l.on_state(&streaming());
        assert_eq!((l.reconnects, l.attempt, l.outage_since), (1, 0, None));
    }

    #[test]
    fn a_file_that_ended_is_not_down() {
        let mut l = Live::new();
        l.on_state(&streaming());
        l.on_state(&SourceState::Ended);
        assert_eq!(l.outage_since, None);
        l.on_state(&SourceState::Failed {
            error: "gone".into(),
            detail: None,
        });
        assert!(l.outage_since.is_some());
    }
}
