//! Metrics a fleet can scrape: a registry of counters, gauges and histograms
//! with bounded label sets, rendered in the Prometheus text format and
//! served on `[metrics] listen` (`/metrics`, `/healthz`, `/readyz`).
//!
//! Figures that already exist elsewhere are read from there at scrape time,
//! never counted twice: each camera slot's frame counters (through
//! [`FrameSource`]), the publisher's byte, delivery, outbox, budget and
//! camera-state figures ([`Publisher::view`]). The registry itself counts
//! only what nothing else keeps: inference time per model and stage, the
//! frame-to-publish latency, events by type and class, alerts by type and
//! camera reconnects.
//!
//! Label values are bounded: `camera` from the config, `model` the configured
//! models' file stems, `class` the model's class list, `stage`, `cause`,
//! `type`, `state`, `outcome` and `class` of traffic from closed enums.
//!
//! Files: `metrics/histogram.rs` (atomic histograms), `metrics/text.rs` (the
//! exposition format), `metrics/http.rs` (the endpoint),
//! `metrics/families.rs` (what `/metrics` says, family by family).

mod families;
pub mod histogram;
mod http;
pub mod text;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::events::EventKind;
use crate::publish::{CameraState, Publisher};
use crate::source::KeyframeGate;
use histogram::{Histogram, LATENCY_BUCKETS, STAGE_BUCKETS};

pub use families::METRIC_NAMES;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "[metrics] listen = \"{addr}\": cannot listen there: {source} (pick a free port, or remove [metrics])"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Frame counters of one camera, read from where they are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames that entered the camera's slot.
    pub received: u64,
    /// Frames a detector finished (failed ones included).
    pub analysed: u64,
    /// Dropped because the slot was full (the oldest goes).
    pub dropped_queue_full: u64,
    /// Frames whose inference or pre-processing failed.
    pub failed: u64,
}

impl std::ops::Add for FrameCounts {
    type Output = FrameCounts;
    fn add(self, o: FrameCounts) -> FrameCounts {
        FrameCounts {
            received: self.received + o.received,
            analysed: self.analysed + o.analysed,
            dropped_queue_full: self.dropped_queue_full + o.dropped_queue_full,
            failed: self.failed + o.failed,
        }
    }
}

/// Where a camera's frame counters live (its slot in a worker pool).
pub trait FrameSource: Send + Sync {
    fn frame_counts(&self) -> FrameCounts;
}

/// Event types, in the order they are rendered.
const EVENT_TYPES: [EventKind; 3] = [EventKind::New, EventKind::Update, EventKind::End];

fn event_type(k: EventKind) -> &'static str {
    match k {
        EventKind::New => "new",
        EventKind::Update => "update",
        EventKind::End => "end",
    }
}

/// Alert types (`rules::AlertKind` wire names).
const ALERT_TYPES: [crate::rules::AlertKind; 4] = [
    crate::rules::AlertKind::Loitering,
    crate::rules::AlertKind::WrongWay,
    crate::rules::AlertKind::Crowding,
    crate::rules::AlertKind::CrowdingCleared,
];

/// Frame counters of a camera: what earlier runs of it counted (a reload
/// gives a restarted camera a new slot) plus its current slot.
#[derive(Default)]
struct Frames {
    base: FrameCounts,
    source: Option<Box<dyn FrameSource>>,
}

/// One camera's figures.
pub struct CameraMetrics {
    frames: Mutex<Frames>,
    /// `(type, class)` → events handed over.
    events: Mutex<BTreeMap<(&'static str, String), u64>>,
    alerts: [AtomicU64; ALERT_TYPES.len()],
    reconnects: AtomicU64,
    frame_to_publish: Histogram,
    /// The source's keyframe-only switch, read at each scrape (cameras
    /// with `idle_decode` only).
    gate: Mutex<Option<KeyframeGate>>,
}

impl Default for CameraMetrics {
    fn default() -> Self {
        CameraMetrics {
            frames: Mutex::default(),
            events: Mutex::default(),
            alerts: Default::default(),
            reconnects: AtomicU64::new(0),
            frame_to_publish: Histogram::new(LATENCY_BUCKETS),
            gate: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CameraMetrics {
    /// The camera (re)started on a new slot: the old slot's counts are kept
    /// as the base, so the counters never go back.
    pub fn attach(&self, source: Box<dyn FrameSource>) {
        let mut f = lock(&self.frames);
        if let Some(old) = f.source.take() {
            f.base = f.base + old.frame_counts();
        }
        f.source = Some(source);
    }

    pub fn frame_counts(&self) -> FrameCounts {
        let f = lock(&self.frames);
        f.base
            + f.source
                .as_ref()
                .map(|s| s.frame_counts())
                .unwrap_or_default()
    }

    /// An event handed to the publisher (stored in the outbox).
    pub fn event(&self, kind: EventKind, class: &str) {
        *lock(&self.events)
            .entry((event_type(kind), class.to_string()))
            .or_default() += 1;
    }

    /// An alert handed to the publisher (an object's or a zone's); `kind`
    /// is its wire name. Unknown names are not counted (bounded labels).
    pub fn alert(&self, kind: &str) {
        if let Some(i) = ALERT_TYPES.iter().position(|a| a.name() == kind) {
            self.alerts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The camera's keyframe-only switch (`idle_decode`); its figures are
    /// read at each scrape. A restarted camera's new switch replaces the
    /// old one (its count starts again).
    pub fn attach_gate(&self, gate: Option<KeyframeGate>) {
        *lock(&self.gate) = gate;
    }

    /// Idle (decoding keyframes only) now, and compressed frames not
    /// decoded so far; `None` without keyframe-only decoding.
    pub fn idle_decoding(&self) -> Option<(bool, u64)> {
        lock(&self.gate)
            .as_ref()
            .map(|g| (g.keyframes_only(), g.skipped()))
    }

    /// The camera lost its connection (`streaming` → `reconnecting`; not each retry).
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// An event caused by a frame captured at `wall` was handed over now.
    pub fn published_frame(&self, wall: SystemTime) {
        let d = SystemTime::now()
            .duration_since(wall)
            .unwrap_or(Duration::ZERO);
        self.frame_to_publish.observe(d);
    }
}

/// Inference stages, in the order they are rendered.
pub const STAGES: [&str; 3] = ["pre", "infer", "post"];

/// One model's inference timings per stage.
pub struct ModelMetrics {
    stages: [Histogram; 3],
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics {
            stages: std::array::from_fn(|_| Histogram::new(STAGE_BUCKETS)),
        }
    }
}

impl ModelMetrics {
    /// One frame's pre-processing, session run and decoding times.
    pub fn observe(&self, pre: Duration, infer: Duration, post: Duration) {
        self.stages[0].observe(pre);
        self.stages[1].observe(infer);
        self.stages[2].observe(post);
    }
}

/// The node's registry. Shared (`Arc`) by the node's parts and the endpoint.
#[derive(Default)]
pub struct Metrics {
    cameras: Mutex<BTreeMap<String, Arc<CameraMetrics>>>,
    models: Mutex<BTreeMap<String, Arc<ModelMetrics>>>,
    publisher: OnceLock<Publisher>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Where the delivery, outbox, budget and camera-state figures come from.
    pub fn set_publisher(&self, p: Publisher) {
        let _ = self.publisher.set(p);
    }

    /// The figures of camera `id` (created on first use).
    pub fn camera(&self, id: &str) -> Arc<CameraMetrics> {
        lock(&self.cameras)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// The figures of the model named `name` (its file stem).
    pub fn model(&self, name: &str) -> Arc<ModelMetrics> {
        lock(&self.models)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The `/metrics` page.
    pub fn render(&self) -> String {
        let cameras: Vec<(String, Arc<CameraMetrics>)> = lock(&self.cameras)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let models: Vec<(String, Arc<ModelMetrics>)> = lock(&self.models)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let view = self.publisher.get().map(Publisher::view);
        families::render(&cameras, &models, view.as_ref())
    }

    /// `/readyz`: ready when the broker is connected and every configured
    /// camera is streaming; otherwise why not, one line per reason.
    pub fn readiness(&self) -> Result<(), String> {
        let Some(p) = self.publisher.get() else {
            return Err("broker: not started\n".into());
        };
        let v = p.view();
        let mut why = String::new();
        if !v.connected {
            why.push_str("broker: not connected\n");
        }
        for (camera, state) in &v.cameras {
            match state {
                Some(CameraState::Streaming) => {}
                Some(s) => why.push_str(&format!("camera {camera}: {}\n", state_name(*s))),
                None => why.push_str(&format!("camera {camera}: no state yet\n")),
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

/// Camera states, in the order they are rendered.
const CAMERA_STATES: [CameraState; 6] = [
    CameraState::Starting,
    CameraState::Streaming,
    CameraState::Reconnecting,
    CameraState::Failed,
    CameraState::Ended,
    CameraState::Stopped,
];

fn state_name(s: CameraState) -> &'static str {
    match s {
        CameraState::Starting => "starting",
        CameraState::Streaming => "streaming",
        CameraState::Reconnecting => "reconnecting",
        CameraState::Failed => "failed",
        CameraState::Ended => "ended",
        CameraState::Stopped => "stopped",
    }
}

/// A model's name in the `model` label: its file stem.
pub fn model_name(model: &std::path::Path) -> String {
    model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Binds `addr` and serves the endpoint until the returned task is aborted.
/// An address other than loopback is allowed but warned about: the figures
/// name every camera.
pub async fn start(addr: SocketAddr, m: Arc<Metrics>) -> Result<JoinHandle<()>, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    if addr.ip().is_loopback() {
        info!(listen = %bound, "metrics endpoint listening (/metrics, /healthz, /readyz)");
    } else {
        warn!(
            listen = %bound,
            "metrics endpoint listening on a non-loopback address: anyone who can reach it reads the node's figures and camera ids"
        );
    }
    Ok(tokio::spawn(http::serve(listener, m)))
}

/// This process's resident memory (bytes) and open file descriptors, from
/// `/proc/self` (`None` where it cannot be read).
fn process_figures() -> (Option<u64>, Option<u64>) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size());
    let fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count().saturating_sub(1) as u64);
    (rss, fds)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(FrameCounts);
    impl FrameSource for Fixed {
        fn frame_counts(&self) -> FrameCounts {
            self.0
        }
    }

    #[test]
    fn a_restarted_camera_keeps_counting_from_its_old_slot() {
        let m = Metrics::new();
        let c = m.camera("a");
        let n = |received| FrameCounts {
            received,
            analysed: received,
            ..FrameCounts::default()
        };
        c.attach(Box::new(Fixed(n(10))));
        c.attach(Box::new(Fixed(n(3))));
        assert_eq!(c.frame_counts(), n(13));
    }

    #[test]
    fn events_alerts_and_stages_appear_with_bounded_labels() {
        let m = Metrics::new();
        let c = m.camera("cam-1");
        c.event(EventKind::New, "person");
        c.event(EventKind::New, "person");
        c.event(EventKind::End, "car");
        c.alert("loitering");
        c.alert("not-a-kind");
        m.model("nanodet").observe(
            Duration::from_millis(1),
            Duration::from_millis(20),
            Duration::from_micros(100),
        );
        let t = m.render();
        for line in [
            "edge_node_events_total{camera=\"cam-1\",type=\"new\",class=\"person\"} 2",
            "edge_node_events_total{camera=\"cam-1\",type=\"end\",class=\"car\"} 1",
            "edge_node_alerts_total{camera=\"cam-1\",type=\"loitering\"} 1",
            "edge_node_alerts_total{camera=\"cam-1\",type=\"wrong_way\"} 0",
            "edge_node_inference_duration_seconds_count{model=\"nanodet\",stage=\"infer\"} 1",
            "edge_node_inference_duration_seconds_bucket{model=\"nanodet\",stage=\"infer\",le=\"0.025\"} 1",
            "edge_node_inference_duration_seconds_bucket{model=\"nanodet\",stage=\"infer\",le=\"0.01\"} 0",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing in\n{t}");
        }
        assert!(!t.contains("not-a-kind"));
    }

    #[test]
    fn idle_figures_come_from_the_cameras_gate() {
        let m = Metrics::new();
        m.camera("quiet").attach_gate(Some(KeyframeGate::default()));
        m.camera("busy").attach_gate(None);
        let t = m.render();
        assert!(
            t.contains("edge_node_camera_idle{camera=\"quiet\"} 0"),
            "{t}"
        );
        assert!(!t.contains("edge_node_camera_idle{camera=\"busy\""), "{t}");
        let gate = KeyframeGate::default();
        gate.set_keyframes_only(true);
        m.camera("quiet").attach_gate(Some(gate));
        let t = m.render();
        assert!(
            t.contains("edge_node_camera_idle{camera=\"quiet\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("edge_node_frames_not_decoded_total{camera=\"quiet\"} 0"),
            "{t}"
        );
    }

    #[test]
    fn every_listed_name_has_a_family_and_every_family_is_listed() {
        let t = Metrics::new().render();
        let typed: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        // Without a publisher the publisher's families are absent.
        for n in &typed {
            assert!(METRIC_NAMES.contains(n), "{n} not in METRIC_NAMES");
        }
        for n in METRIC_NAMES {
            assert!(n.starts_with("edge_node_"), "{n}");
        }
    }
}
