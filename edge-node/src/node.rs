//! Wiring: cameras → frame slots → inference workers → per-camera analytics
//! → publisher. Owns thread and task lifetimes, signals and shutdown.
//!
//! Threads and queues:
//! - GStreamer streaming threads only copy a frame and push it into the
//!   camera's slot (bounded, drops the oldest frame, counts drops).
//! - `detect-<model>-<n>` OS threads each own one detector (one ONNX Runtime
//!   session). They serve cameras round-robin, at most one frame per camera
//!   in flight, so frames of a camera stay in order and a slow model lowers
//!   every camera's rate evenly. Each has a `prep-<model>-<n>` companion
//!   that takes the next frame and pre-processes it while the session runs
//!   (two input buffers, rendezvous hand-over), so pre-processing is off the
//!   inference critical path: at normal priority when ONNX Runtime's threads
//!   leave a core free, under `SCHED_IDLE` (lifted while waited for) when
//!   they do not, inline when neither is possible ([`sched::prep_mode`]).
//! - Per camera, a tokio task runs tracker and event lifecycle (pure) and
//!   publishes; JPEG encoding runs on the blocking pool.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info, info_span, warn};

use crate::budget::ByteBudget;
use crate::config::{self, Pipeline};
use crate::detect::{self, Detector, DetectorOptions, RuntimeOptions};
use crate::events::{EventAction, EventConfig, EventEngine, EventKind};
use crate::frame::{Detection, Frame};
use crate::publish::{
    self, AlertDetail, CameraState, CountsMessage, EventRecord, EventType, LineCountsWire,
    NodeIdentity, Publisher, SnapshotPayload, WireCounter, ZoneCountsWire,
};
use crate::rules::{Alert, AlertKind, CountsReport, ObjectRules, RulesConfig, RulesEngine};
use crate::sched::{self, PrepMode};
use crate::snapshot::{self, SnapshotOptions};
use crate::source::{self, SourceOptions, SourceState};
use crate::track::{Tracker, TrackerConfig};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("no camera could start: {0}")]
    NothingToRun(String),
}

/// Counters and timings of one run, printed at the end and used by the demo.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub wall: Duration,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    pub events: u64,
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    pub bytes_published: u64,
    pub messages_published: u64,
    pub messages_acked: u64,
    pub pre_ms: Vec<f64>,
    pub infer_ms: Vec<f64>,
    pub post_ms: Vec<f64>,
    pub failed_cameras: Vec<String>,
    /// Per camera counters and latency samples (for `edge-node bench`).
    pub cameras: Vec<CameraReport>,
}

/// One camera's share of a [`RunReport`].
#[derive(Debug, Default, Clone)]
pub struct CameraReport {
    pub id: String,
    /// Frames the source handed on (after `detect_fps` sampling).
    pub frames_in: u64,
    pub frames_dropped: u64,
    pub frames_analysed: u64,
    /// From the first frame's arrival to the end of the run.
    pub active: Duration,
    /// Per analysed frame: arrival in the camera slot → detections ready (ms).
    pub detect_latency_ms: Vec<f64>,
    /// Per event published from a frame: that frame's arrival → the event
    /// handed to the MQTT client (ms). Events are sparse; `end` events sent
    /// at shutdown are not counted.
    pub publish_latency_ms: Vec<f64>,
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

impl RunReport {
    pub fn summary(&self) -> String {
        format!(
            "wall {:.1} s; frames analysed {} dropped {}; events {} snapshots {} ({} B); \
             published {} messages, {} B, acked {}; median ms pre {:.2} infer {:.2} post {:.2}",
            self.wall.as_secs_f64(),
            self.frames_analysed,
            self.frames_dropped,
            self.events,
            self.snapshots,
            self.snapshot_bytes,
            self.messages_published,
            self.bytes_published,
            self.messages_acked,
            median(&self.pre_ms),
            median(&self.infer_ms),
            median(&self.post_ms),
        )
    }
}

// ------------------------------------------------------------------ frame slots

/// A detector's output for one frame, sent to the camera's analytics task.
struct Analysed {
    frame: Arc<Frame>,
    detections: Vec<Detection>,
    /// When the frame entered the camera slot.
    arrived: Instant,
}

struct Slot {
    /// Frames with the time they entered the slot.
    queue: VecDeque<(Frame, Instant)>,
    cap: usize,
    /// Fast file playback: the producer waits for room instead of dropping.
    lossless: bool,
    busy: bool,
    closed: bool,
    /// Dropped (set to None) once the source has ended and the queue is drained:
    /// that is how the analytics task learns the camera is done.
    tx: Option<mpsc::Sender<Analysed>>,
    frames_in: u64,
    dropped: u64,
    analysed: u64,
    first_arrival: Option<Instant>,
    detect_latency_ms: Samples,
}

#[derive(Default)]
struct PoolState {
    slots: Vec<Slot>,
    next: usize,
    stop: bool,
    pre_ms: Samples,
    infer_ms: Samples,
    post_ms: Samples,
}

/// The frames waiting for one model's workers.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    cv: Condvar,
}

/// Timing samples kept per series (pre/infer/post per model, latencies per
/// camera): the latest ones, for percentiles in reports and benchmarks.
const MAX_TIMINGS: usize = 20_000;

/// The latest [`MAX_TIMINGS`] samples of a timing series: a ring once full,
/// so a node that runs for months keeps its statistics in constant memory
/// (at most 160 KB per series).
#[derive(Debug, Default, Clone)]
struct Samples {
    v: Vec<f64>,
    /// Where the next sample goes once the ring is full.
    next: usize,
}

impl Samples {
    fn push(&mut self, x: f64) {
        if self.v.len() < MAX_TIMINGS {
            self.v.push(x);
        } else {
            self.v[self.next] = x;
            self.next = (self.next + 1) % MAX_TIMINGS;
        }
    }

    fn as_slice(&self) -> &[f64] {
        &self.v
    }
}

impl Pool {
    fn add(&self, cap: usize, lossless: bool, tx: mpsc::Sender<Analysed>) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.slots.push(Slot {
            queue: VecDeque::with_capacity(cap),
            cap,
            lossless,
            busy: false,
            closed: false,
            tx: Some(tx),
            frames_in: 0,
            dropped: 0,
            analysed: 0,
            first_arrival: None,
            detect_latency_ms: Samples::default(),
        });
        s.slots.len() - 1
    }

    /// Called on a GStreamer streaming thread. Live and paced sources never
    /// wait: the oldest frame is dropped and counted. A file played as fast as
    /// possible waits for room, so every sampled frame is analysed.
    fn push(&self, idx: usize, frame: Frame) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.slots[idx].lossless
            && !s.slots[idx].closed
            && !s.stop
            && s.slots[idx].queue.len() >= s.slots[idx].cap
        {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let slot = &mut s.slots[idx];
        if slot.closed {
            return;
        }
        slot.frames_in += 1;
        if slot.queue.len() >= slot.cap {
            slot.queue.pop_front();
            slot.dropped += 1;
        }
        let now = Instant::now();
        slot.first_arrival.get_or_insert(now);
        slot.queue.push_back((frame, now));
        drop(s);
        self.cv.notify_one();
    }

    fn close(&self, idx: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut s.slots[idx];
        slot.closed = true;
        if slot.queue.is_empty() && !slot.busy {
            slot.tx = None;
        }
        drop(s);
        self.cv.notify_all();
    }

    fn stop(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.stop = true;
        for slot in &mut s.slots {
            slot.closed = true;
            slot.queue.clear();
            if !slot.busy {
                slot.tx = None;
            }
        }
        drop(s);
        self.cv.notify_all();
    }

    fn counters(&self, idx: usize) -> (u64, u64, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &s.slots[idx];
        (slot.frames_in, slot.dropped, slot.analysed)
    }

    /// Take the next frame, round-robin over cameras; `None` when stopping.
    fn take(&self) -> Option<(usize, Frame, Instant, mpsc::Sender<Analysed>)> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.stop {
                return None;
            }
            let n = s.slots.len();
            for k in 0..n {
                let i = (s.next + k) % n;
                let slot = &mut s.slots[i];
                if slot.busy || slot.queue.is_empty() {
                    continue;
                }
                let Some(tx) = slot.tx.clone() else {
                    slot.queue.clear();
                    continue;
                };
                if let Some((frame, arrived)) = slot.queue.pop_front() {
                    slot.busy = true;
                    s.next = i + 1;
                    // A lossless producer may be waiting for this room.
                    self.cv.notify_all();
                    return Some((i, frame, arrived, tx));
                }
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self, idx: usize, times: Option<detect::StageTimes>, arrived: Instant) {
        let latency_ms = arrived.elapsed().as_secs_f64() * 1e3;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = times {
            s.pre_ms.push(t.pre.as_secs_f64() * 1e3);
            s.infer_ms.push(t.infer.as_secs_f64() * 1e3);
            s.post_ms.push(t.post.as_secs_f64() * 1e3);
        }
        let slot = &mut s.slots[idx];
        slot.busy = false;
        slot.analysed += 1;
        if times.is_some() {
            slot.detect_latency_ms.push(latency_ms);
        }
        if slot.closed && slot.queue.is_empty() {
            slot.tx = None;
        }
        drop(s);
        self.cv.notify_all();
    }
}

/// A frame taken from the pool and pre-processed, on its way to inference.
struct Prepared {
    idx: usize,
    frame: Frame,
    arrived: Instant,
    tx: mpsc::Sender<Analysed>,
}

/// Sends a worker's result to the camera's analytics task, or reports the
/// failure, and frees the camera's slot.
fn deliver(
    pool: &Pool,
    idx: usize,
    frame: Frame,
    arrived: Instant,
    tx: &mpsc::Sender<Analysed>,
    result: Result<(Vec<Detection>, detect::StageTimes), detect::DetectError>,
) {
    let camera = frame.camera.clone();
    match result {
        Ok((detections, times)) => {
            pool.done(idx, Some(times), arrived);
            let a = Analysed {
                frame: Arc::new(frame),
                detections,
                arrived,
            };
            // Analytics is cheap; if it is stuck (e.g. the broker is down and the
            // client queue is full) wait briefly, then drop this result rather
            // than stall the other cameras this worker serves.
            match tx.try_send(a) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(a)) => {
                    if tx.blocking_send(a).is_err() {
                        warn!(camera = %camera, "analytics task gone");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        Err(e) => {
            pool.done(idx, None, arrived);
            warn!(camera = %camera, error = %e, "inference failed on a frame");
        }
    }
}

/// One inference worker without a companion: take a frame, pre-process,
/// infer, decode, deliver, all on this thread.
fn run_worker(pool: Arc<Pool>, mut det: Detector) {
    while let Some((idx, frame, arrived, tx)) = pool.take() {
        let result = det.detect_timed(&frame.data, frame.width, frame.height);
        deliver(&pool, idx, frame, arrived, &tx, result);
    }
}

/// One inference worker with a companion (see [`sched::prep_mode`]): this
/// thread owns the session; a `prep-…` thread takes the next frame from the
/// pool and pre-processes it while the session runs the current one (double
/// buffering: two input buffers circulate, the hand-over is a rendezvous, so
/// at most two frames are in a worker and each camera still has at most one
/// in flight). In [`PrepMode::Background`] the companion runs under
/// `SCHED_IDLE` except while this thread waits for it ([`sched::Handshake`]).
fn run_worker_pipelined(pool: Arc<Pool>, mut det: Detector, prep_name: String, mode: PrepMode) {
    let mut prep = det.frame_prep();
    let buffers = [det.new_prepared(), det.new_prepared()];
    let prep_pool = pool.clone();
    let ran = sched::run_pipelined(
        mode,
        &prep_name,
        buffers,
        |hs, input| {
            // Keep the buffer across frames that fail to pre-process.
            loop {
                let (idx, frame, arrived, tx) = prep_pool.take()?;
                match hs.preparing(|| prep.prepare(&frame.data, frame.width, frame.height, input)) {
                    Ok(()) => {
                        return Some(Prepared {
                            idx,
                            frame,
                            arrived,
                            tx,
                        });
                    }
                    Err(e) => {
                        prep_pool.done(idx, None, arrived);
                        warn!(camera = %frame.camera, error = %e, "pre-processing failed on a frame");
                    }
                }
            }
        },
        |job, input, give_back| {
            let result = det.detect_prepared(&input);
            // Hand the buffer back before publishing, so the next frame is
            // being prepared while this one's result goes out.
            give_back(input);
            deliver(&pool, job.idx, job.frame, job.arrived, &job.tx, result);
            true
        },
    );
    match ran {
        // The inference loop never stops first, but a frame the companion
        // could not hand over would go back to its camera's slot.
        Ok(unsent) => {
            if let Some(job) = unsent {
                pool.done(job.idx, None, job.arrived);
            }
        }
        Err(e) => {
            warn!(thread = %prep_name, error = %e, "cannot start the pre-processing thread; the worker runs without it");
            run_worker(pool, det);
        }
    }
}

// ------------------------------------------------------------------ analytics

/// Face blurring for one camera's snapshots.
#[derive(Clone)]
enum FacePolicy {
    Off,
    /// One CenterFace session per camera; snapshots are rare, so a mutex is enough.
    On(Arc<Mutex<detect::FaceDetector>>),
    /// Blurring is required but impossible: snapshots are withheld (events
    /// still go) and the camera status says why.
    Withheld(String),
}

/// The node's snapshot byte budget, shared by its cameras (`None`: no limit).
type SharedBudget = Option<Arc<Mutex<ByteBudget>>>;

/// A snapshot that was due: the picture, or why there is none (the wire's
/// `snapshot_omitted`: `privacy`, `budget`, `error`).
type Rendered = Result<SnapshotPayload, &'static str>;

/// The snapshot of `frame` with every privacy rule applied, on a blocking
/// thread: faces blurred (when required), masks filled, then crop/scale/JPEG,
/// then the budget: the first rung of the degradation ladder the node's
/// byte budget can pay for (see `budget.rs`). `whole_frame` pictures have no
/// crop rung.
async fn render_private(
    frame: Arc<Frame>,
    bbox: crate::frame::BBox,
    label: String,
    opts: SnapshotOptions,
    faces: FacePolicy,
    budget: SharedBudget,
    whole_frame: bool,
) -> Rendered {
    let r = tokio::task::spawn_blocking(move || {
        let blurred;
        let data: &[u8] = match &faces {
            FacePolicy::Off => &frame.data,
            FacePolicy::Withheld(_) => return Ok(Err("privacy")),
            FacePolicy::On(det) => {
                let found = det
                    .lock()
                    .map_err(|_| "face detector poisoned".to_string())?
                    .detect(&frame.data, frame.width, frame.height)
                    .map_err(|e| format!("face detection failed, snapshot withheld: {e}"))?;
                let boxes: Vec<_> = found.into_iter().map(|(b, _)| b).collect();
                let mut copy = frame.data.clone();
                snapshot::blur_regions(&mut copy, frame.width, frame.height, &boxes);
                blurred = copy;
                &blurred
            }
        };
        let render = |o: &SnapshotOptions| {
            snapshot::render(data, frame.width, frame.height, bbox, &label, o)
                .map(|s| (s.jpeg.len() as u64, s))
                .map_err(|e| e.to_string())
        };
        let Some(budget) = budget else {
            return render(&opts).map(|(_, s)| Ok((s, None)));
        };
        // Held while the ladder is walked, so two cameras never spend the
        // same bytes; snapshots are rare (a few per second per node) and an
        // encode is a few ms, so serialising them costs little.
        let mut b = budget
            .lock()
            .map_err(|_| "snapshot budget poisoned".to_string())?;
        Ok(
            match crate::budget::choose(&mut b, &opts, whole_frame, Instant::now, render)? {
                Some((step, s)) => Ok((s, step.degraded())),
                None => Err("budget"),
            },
        )
    })
    .await;
    match r {
        Ok(Ok(Ok((s, degraded)))) => Ok(SnapshotPayload {
            jpeg: s.jpeg,
            width: s.width,
            height: s.height,
            degraded,
        }),
        Ok(Ok(Err(why))) => Err(why),
        Ok(Err(e)) => {
            warn!(error = %e, "snapshot not sent");
            Err("error")
        }
        Err(e) => {
            warn!(error = %e, "snapshot task failed");
            Err("error")
        }
    }
}

struct CameraCtx {
    faces: FacePolicy,
    budget: SharedBudget,
    id: String,
    publisher: Publisher,
    labels: Arc<Vec<String>>,
    snapshot: SnapshotOptions,
    seq: u64,
    /// Frame arrival → event handed to the MQTT client, ms (see [`CameraReport`]).
    publish_latency_ms: Arc<Mutex<Samples>>,
    /// Scene rules of this camera (may be empty).
    rules: RulesConfig,
    counts_interval_s: f64,
    counts_seq: u64,
    zone_alert_seq: u64,
}

/// Media time → wall clock, using a frame as the anchor.
fn wall_at(anchor: &Frame, t: f64) -> SystemTime {
    let d = anchor.t - t;
    if d >= 0.0 {
        anchor
            .wall
            .checked_sub(Duration::from_secs_f64(d))
            .unwrap_or(anchor.wall)
    } else {
        anchor.wall + Duration::from_secs_f64(-d)
    }
}

impl CameraCtx {
    /// `arrived`: when the frame that caused this action entered its slot.
    async fn handle(
        &mut self,
        act: EventAction<Arc<Frame>>,
        anchor: &Frame,
        arrived: Option<Instant>,
        obj: Option<ObjectRules>,
        alert: Option<AlertDetail>,
    ) {
        let obj = obj.unwrap_or_default();
        let label = self
            .labels
            .get(act.class_id as usize)
            .cloned()
            .unwrap_or_else(|| format!("class{}", act.class_id));
        let (snap, snapshot_omitted) = match act.snapshot {
            Some(choice) => match render_private(
                choice.handle.clone(),
                choice.bbox,
                label.clone(),
                self.snapshot.clone(),
                self.faces.clone(),
                self.budget.clone(),
                false,
            )
            .await
            {
                Ok(s) => (Some(s), None),
                Err(why) => (None, Some(why.to_string())),
            },
            None => (None, None),
        };
        let rec = EventRecord {
            kind: match act.kind {
                EventKind::New => EventType::New,
                EventKind::Update => EventType::Update,
                EventKind::End => EventType::End,
            },
            track_id: act.track_id,
            class_id: act.class_id,
            label,
            score: act.score,
            top_score: act.top_score,
            start: wall_at(anchor, act.start_t),
            end: act.end_t.map(|t| wall_at(anchor, t)),
            frame: wall_at(anchor, act.frame_t),
            bbox: act.bbox,
            frame_size: act.frame_size,
            current_zones: obj.current_zones,
            entered_zones: obj.entered_zones,
            stationary: obj.stationary,
            alert,
            snapshot_omitted,
        };
        self.seq += 1;
        match self
            .publisher
            .event(&self.id, self.seq, &rec, snap.as_ref())
            .await
        {
            Ok(m) => {
                if let Some(a) = arrived {
                    let mut v = self
                        .publish_latency_ms
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    v.push(a.elapsed().as_secs_f64() * 1e3);
                }
                info!(kind = ?m.kind, id = %m.id, label = %m.label, score = m.score, "event")
            }
            Err(e) => warn!(error = %e, "publish failed"),
        }
    }
}

async fn analytics(
    mut ctx: CameraCtx,
    mut rx: mpsc::Receiver<Analysed>,
    mut tracker: Tracker,
    mut engine: EventEngine<Arc<Frame>>,
) {
    let mut last: Option<Arc<Frame>> = None;
    // Created at the first frame: the first counts interval starts there.
    let mut rules: Option<RulesEngine> = None;
    while let Some(a) = rx.recv().await {
        let f = a.frame.clone();
        let tracks = tracker.update(f.t, &a.detections);
        let r = rules.get_or_insert_with(|| RulesEngine::new(ctx.rules.clone(), f.t));
        // Rules first, so the events see this frame's stationary state (the
        // update announcing it carries `stationary: true`).
        let alerts = r.on_frame(f.t, f.width, f.height, &tracks);
        let actions = {
            let quiet = |id: u64| r.is_stationary(id);
            engine.on_frame_quiet(f.t, f.width, f.height, &tracks, &f, &quiet)
        };
        for act in actions {
            let obj = r.object(act.track_id);
            ctx.handle(act, &f, Some(a.arrived), obj, None).await;
        }
        for al in alerts {
            ctx.alert(al, r, &mut engine, &f).await;
        }
        if !ctx.rules.is_empty() && f.t - r.interval_start() >= ctx.counts_interval_s {
            let report = r.take_counts(f.t);
            ctx.counts(&report, &f).await;
        }
        last = Some(f);
    }
    if let Some(f) = last {
        for act in engine.finish(f.t) {
            let obj = rules.as_ref().and_then(|r| r.object(act.track_id));
            ctx.handle(act, &f, None, obj, None).await;
        }
        if let Some(r) = rules.as_mut()
            && !ctx.rules.is_empty()
            && f.t > r.interval_start()
        {
            let report = r.take_counts(f.t);
            ctx.counts(&report, &f).await;
        }
    }
}

impl CameraCtx {
    fn label(&self, class_id: u32) -> String {
        self.labels
            .get(class_id as usize)
            .cloned()
            .unwrap_or_else(|| format!("class{class_id}"))
    }

    /// Publishes one rule alert: per-object alerts as an `update` of the
    /// object's event (on /events and /alerts), zone alerts on /alerts.
    async fn alert(
        &mut self,
        al: Alert,
        rules: &RulesEngine,
        engine: &mut EventEngine<Arc<Frame>>,
        f: &Arc<Frame>,
    ) {
        match al.track_id {
            Some(id) => {
                let Some(act) = engine.alert(id, f.t, f) else {
                    info!(
                        track = id,
                        alert = al.kind.name(),
                        "alert for an object without an open event; not sent"
                    );
                    return;
                };
                let detail = AlertDetail {
                    kind: al.kind.name().to_string(),
                    rule: al.rule.clone(),
                    dwell_s: al.dwell_s.map(|d| (d * 1e3).round() / 1e3),
                    direction: al.direction.clone(),
                };
                self.handle(act, f, None, rules.object(id), Some(detail))
                    .await;
            }
            None => {
                let (snap, omitted) = if al.kind == AlertKind::Crowding {
                    match self.whole_frame(f).await {
                        Ok(s) => (Some(s), None),
                        Err(why) => (None, Some(why.to_string())),
                    }
                } else {
                    (None, None)
                };
                self.zone_alert_seq += 1;
                match self
                    .publisher
                    .zone_alert(
                        &self.id,
                        self.zone_alert_seq,
                        &al.rule,
                        al.kind.name(),
                        al.occupancy.unwrap_or(0),
                        al.dwell_s,
                        wall_at(f, al.t),
                        snap.as_ref(),
                        omitted,
                    )
                    .await
                {
                    Ok(m) => {
                        info!(zone = %m.zone, alert = %al.kind.name(), occupancy = m.occupancy, "zone alert")
                    }
                    Err(e) => warn!(error = %e, "publish failed"),
                }
            }
        }
    }

    /// The whole frame as a JPEG (crowding evidence), no box drawn.
    async fn whole_frame(&self, f: &Arc<Frame>) -> Rendered {
        let opts = SnapshotOptions {
            crop: false,
            draw_box: false,
            ..self.snapshot.clone()
        };
        let bbox = crate::frame::BBox::new(0.0, 0.0, f.width as f32, f.height as f32);
        render_private(
            f.clone(),
            bbox,
            String::new(),
            opts,
            self.faces.clone(),
            self.budget.clone(),
            true,
        )
        .await
    }

    async fn counts(&mut self, r: &CountsReport, anchor: &Frame) {
        let wire = |c: &crate::rules::Counter| WireCounter {
            total: c.total,
            delta: c.delta,
        };
        let lines = r
            .lines
            .iter()
            .map(|l| {
                let counts = l
                    .by_class
                    .iter()
                    .map(|(cls, dirs)| {
                        (
                            self.label(*cls),
                            dirs.iter().map(|(d, c)| (d.clone(), wire(c))).collect(),
                        )
                    })
                    .collect();
                (
                    l.name.clone(),
                    LineCountsWire {
                        directions: [l.forward.clone(), l.backward.clone()],
                        counts,
                    },
                )
            })
            .collect();
        let zones = r
            .zones
            .iter()
            .map(|z| {
                (
                    z.name.clone(),
                    ZoneCountsWire {
                        occupancy: z
                            .occupancy
                            .iter()
                            .map(|(c, n)| (self.label(*c), *n))
                            .collect(),
                        peak: z.peak,
                        entered: z
                            .entered
                            .iter()
                            .map(|(c, n)| (self.label(*c), wire(n)))
                            .collect(),
                    },
                )
            })
            .collect();
        self.counts_seq += 1;
        let msg = CountsMessage {
            schema: String::new(),
            node: String::new(),
            district: String::new(),
            camera: self.id.clone(),
            seq: self.counts_seq,
            interval_start: publish::rfc3339(wall_at(anchor, r.start_t)),
            interval_end: publish::rfc3339(wall_at(anchor, r.end_t)),
            lines,
            zones,
        };
        match self.publisher.counts(msg).await {
            Ok(bytes) => info!(seq = self.counts_seq, bytes, "counts"),
            Err(e) => warn!(error = %e, "publish failed"),
        }
    }
}

// ------------------------------------------------------------------ run

/// A model's frame pool and class names; `Err` holds why the model is unusable.
type ModelPool = (Arc<Pool>, Arc<Vec<String>>);

/// Detector options of a camera's model, from the `[detector]` section.
pub fn detector_options(p: &Pipeline, model: &Path) -> DetectorOptions {
    let d = &p.raw.detector;
    DetectorOptions {
        model: model.to_path_buf(),
        intra_threads: d.threads,
        spinning: d.spinning,
        threshold: d.threshold,
        class_thresholds: d
            .class_thresholds
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        classes: Some(d.classes.clone().unwrap_or_else(|| {
            detect::DEFAULT_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect()
        })),
        nms_iou: d.nms_iou,
        max_detections: 100,
        optimized_cache: Some(state_dir(p).join("ort-cache")),
    }
}

/// The node's writable folder: `[node] state_dir`, `$EDGE_NODE_STATE_DIR`, or /tmp/edge-node.
pub fn state_dir(p: &Pipeline) -> PathBuf {
    p.raw
        .node
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("EDGE_NODE_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/tmp/edge-node"))
}

fn heartbeat_path(p: &Pipeline) -> PathBuf {
    state_dir(p).join("heartbeat")
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut t) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = t.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn camera_state(s: &SourceState) -> (CameraState, Option<String>) {
    match s {
        SourceState::Starting => (CameraState::Starting, None),
        SourceState::Streaming => (CameraState::Streaming, None),
        SourceState::Reconnecting { error, .. } => (CameraState::Reconnecting, Some(error.clone())),
        SourceState::Failed { error } => (CameraState::Failed, Some(error.clone())),
        SourceState::Ended => (CameraState::Ended, None),
    }
}

/// Run a pipeline until every file camera has ended (all-file pipelines) or
/// SIGTERM / Ctrl-C arrives. SIGHUP reloads the config file (see [`ReloadOutcome`]).
/// Publishes `stopped` and flushes before returning.
pub async fn run(p: Pipeline) -> Result<RunReport, NodeError> {
    let (tx, rx) = mpsc::channel(4);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A full channel means a reload is already pending.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot listen for SIGHUP; config reload disabled"),
    }
    #[cfg(not(unix))]
    drop(tx);
    let stop = async {
        shutdown_signal().await;
        // A hard deadline for the clean stop below. Nothing is lost by it:
        // every event and snapshot not yet acknowledged is already in the outbox.
        let _ = std::thread::Builder::new()
            .name("stop-deadline".into())
            .spawn(|| {
                std::thread::sleep(SHUTDOWN_DEADLINE);
                tracing::error!(
                    deadline_s = SHUTDOWN_DEADLINE.as_secs(),
                    "clean stop took too long; exiting now (unacknowledged messages stay in the outbox)"
                );
                std::process::exit(1);
            });
    };
    run_inner(p, stop, rx).await
}

/// The longest a stop (SIGTERM / SIGINT) may take before the process exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// [`run`], stopping when `stop` completes instead of on a signal (timed runs,
/// `edge-node bench`). All-file pipelines still end by themselves. No reload.
pub async fn run_until(
    p: Pipeline,
    stop: impl std::future::Future<Output = ()>,
) -> Result<RunReport, NodeError> {
    let (_tx, rx) = mpsc::channel(1);
    run_inner(p, stop, rx).await
}

/// One running camera: its source, its frame slot and its tasks.
struct RunningCamera {
    id: String,
    /// What the camera was started with; equal fingerprints survive a reload.
    fingerprint: String,
    pool: Arc<Pool>,
    idx: usize,
    source: source::CameraHandle,
    analytics: Option<tokio::task::JoinHandle<()>>,
    /// Ends when the source drops its state callback; yields the camera id if it failed.
    status: tokio::task::JoinHandle<Option<String>>,
    publish_latency_ms: Arc<Mutex<Samples>>,
}

/// What a camera's behaviour depends on, as a comparable string: its own
/// section, its resolved URL and model, and the node-wide sections that are
/// applied per camera. A reload restarts a camera only when this changes.
fn camera_fingerprint(p: &Pipeline, i: usize) -> String {
    let r = &p.raw;
    serde_json::json!({
        "camera": r.cameras[i],
        "url": p.camera_urls[i],
        "model": p.camera_models[i],
        "tracker": r.tracker,
        "events": r.events,
        "snapshot": r.snapshot,
        "rules": r.rules,
        "privacy": r.privacy,
        "face_model": p.face_model,
    })
    .to_string()
}

/// Sections a running node can apply on reload; every other section (node,
/// mqtt, detector, outbox, and any added later) needs a restart.
const RELOADABLE: &[&str] = &[
    "cameras", "tracker", "events", "snapshot", "rules", "privacy",
];

/// Top-level sections that differ between two configs and cannot be reloaded.
pub fn restart_only_changes(old: &config::PipelineFile, new: &config::PipelineFile) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["(config not comparable)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !RELOADABLE.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| format!("[{k}]"))
        .collect()
}

/// What a reload did, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub kept: Vec<String>,
    pub restarted: Vec<String>,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

/// The long-lived parts of a running node and its cameras.
struct NodeRun {
    p: Pipeline,
    publisher: Publisher,
    pools: BTreeMap<PathBuf, Result<ModelPool, String>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    runtime_err: Option<String>,
    /// The node's snapshot budget (`[budget]`), shared by every camera.
    budget: SharedBudget,
    cams: Vec<RunningCamera>,
    /// Reports of cameras stopped by a reload.
    stopped: Vec<CameraReport>,
    failed: Vec<String>,
}

impl NodeRun {
    /// The worker pool for `model`, loading its sessions the first time.
    fn pool(&mut self, model: &Path) -> Result<ModelPool, String> {
        if let Some(e) = self.pools.get(model) {
            return e.clone();
        }
        let entry = match &self.runtime_err {
            Some(e) => Err(e.clone()),
            None => self.load_pool(model),
        };
        if let Err(e) = &entry {
            warn!(model = %model.display(), error = %e, "model unusable; its cameras are marked failed");
        }
        self.pools.insert(model.to_path_buf(), entry.clone());
        entry
    }

    fn load_pool(&mut self, model: &Path) -> Result<ModelPool, String> {
        let dopts = detector_options(&self.p, model);
        let mut dets = Vec::new();
        for _ in 0..self.p.raw.detector.workers {
            dets.push(Detector::load(&dopts).map_err(|e| e.to_string())?);
        }
        let labels = Arc::new(
            dets.first()
                .map(|d| d.labels().to_vec())
                .unwrap_or_default(),
        );
        let pool = Arc::new(Pool::default());
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let d = &self.p.raw.detector;
        let mode = sched::prep_mode(d.threads, d.workers);
        info!(
            model = %model.display(),
            workers = d.workers,
            threads = d.threads,
            prep = mode.as_str(),
            "inference workers"
        );
        for (n, d) in dets.into_iter().enumerate() {
            let pool2 = pool.clone();
            let name: String = format!("detect-{}-{n}", stem).chars().take(15).collect();
            let prep_name: String = format!("prep-{}-{n}", stem).chars().take(15).collect();
            match std::thread::Builder::new().name(name).spawn(move || {
                if mode.has_thread() {
                    run_worker_pipelined(pool2, d, prep_name, mode)
                } else {
                    run_worker(pool2, d)
                }
            }) {
                Ok(h) => self.workers.push(h),
                Err(e) => warn!(error = %e, "cannot start inference thread"),
            }
        }
        Ok((pool, labels))
    }

    /// Start camera `i` of the config in force. A camera that cannot start is
    /// reported `failed` on its status topic and recorded; the others go on.
    async fn start_camera(&mut self, i: usize) {
        let c = self.p.raw.cameras[i].clone();
        let raw = self.p.raw.clone();
        let span = info_span!("camera", camera = %c.id);
        let model = self.p.camera_models[i].clone();
        let (pool, labels) = match self.pool(&model) {
            Ok(x) => x,
            Err(e) => {
                let msg = format!("model {}: {e}", model.display());
                span.in_scope(|| warn!(error = %msg, "camera failed"));
                let _ = self
                    .publisher
                    .camera_status(&c.id, CameraState::Failed, Some(msg), 0, 0)
                    .await;
                self.failed.push(c.id.clone());
                return;
            }
        };
        let (tx, rx) = mpsc::channel::<Analysed>(8);
        let publish_latency_ms = Arc::new(Mutex::new(Samples::default()));
        let lossless = !c.realtime && config::is_file_url(&self.p.camera_urls[i]);
        let idx = pool.add(c.queue, lossless, tx);
        let tcfg = &raw.tracker;
        let ecfg = &raw.events;
        let ev_cfg = EventConfig {
            min_hits: ecfg.min_hits,
            end_after_s: ecfg.end_after_s,
            update_min_interval_s: ecfg.update_min_interval_s,
            snapshot_improvement: ecfg.snapshot_improvement,
            max_updates: ecfg.max_updates,
            ..EventConfig::default()
        };
        // The tracker forgets a lost object when its event ends (same clock, same timeout).
        let tracker = Tracker::new(ev_cfg.tracker_config(TrackerConfig {
            high_thresh: tcfg.high_thresh,
            low_thresh: tcfg.low_thresh,
            new_track_thresh: tcfg.new_track_thresh,
            match_iou: tcfg.match_iou,
            ..TrackerConfig::default()
        }));
        let engine = EventEngine::new(ev_cfg);
        let (rules_cfg, unknown) = config::camera_rules(&raw.rules, &c, &labels);
        if !unknown.is_empty() {
            span.in_scope(|| warn!(classes = ?unknown, "zone/line classes the model does not know are ignored"));
        }
        let faces = if !c.blur_faces {
            FacePolicy::Off
        } else {
            let pr = &raw.privacy;
            match detect::FaceDetector::load(&self.p.face_model, 1).and_then(|mut d| {
                if let Some(t) = pr.face_threshold {
                    d.set_threshold(t)?;
                }
                if let Some(m) = pr.face_max_side {
                    d.set_max_side(m)?;
                }
                Ok(d)
            }) {
                Ok(d) => FacePolicy::On(Arc::new(Mutex::new(d))),
                Err(e) => {
                    let why = format!(
                        "snapshots withheld: faces must be blurred but the face model is unusable: {e}"
                    );
                    span.in_scope(|| warn!(error = %why, "privacy"));
                    FacePolicy::Withheld(why)
                }
            }
        };
        let privacy_note = match &faces {
            FacePolicy::Withheld(why) => Some(why.clone()),
            _ => None,
        };
        let ctx = CameraCtx {
            faces,
            budget: self.budget.clone(),
            id: c.id.clone(),
            publisher: self.publisher.clone(),
            labels,
            snapshot: SnapshotOptions {
                max_height: raw.snapshot.max_height,
                quality: raw.snapshot.quality,
                crop: raw.snapshot.crop,
                draw_box: raw.snapshot.draw_box,
                masks: c.privacy_masks.iter().map(|p| p.to_vec()).collect(),
                ..SnapshotOptions::default()
            },
            // Numbering continues after a restart or reload (the outbox stores the last seq).
            seq: self.publisher.last_seq(&c.id),
            publish_latency_ms: publish_latency_ms.clone(),
            rules: rules_cfg,
            counts_interval_s: raw.rules.counts_interval_s,
            counts_seq: 0,
            zone_alert_seq: 0,
        };
        let analytics_task =
            tokio::spawn(analytics(ctx, rx, tracker, engine).instrument(span.clone()));

        // Source state → retained camera status (latest state wins: a watch channel).
        let (st_tx, mut st_rx) = watch::channel(SourceState::Starting);
        let pub2 = self.publisher.clone();
        let pool2 = pool.clone();
        let cam_id = c.id.clone();
        let status_task = tokio::spawn(
            async move {
                let mut failed = None;
                loop {
                    let s = st_rx.borrow_and_update().clone();
                    if let SourceState::Failed { .. } = s {
                        failed = Some(cam_id.clone());
                    }
                    let (state, err) = camera_state(&s);
                    // A privacy refusal stays visible while the source is fine.
                    let err = err.or_else(|| privacy_note.clone());
                    if matches!(s, SourceState::Ended | SourceState::Failed { .. }) {
                        pool2.close(idx);
                    }
                    let (fin, dropped, _) = pool2.counters(idx);
                    match &err {
                        Some(e) => warn!(state = ?state, error = %e, "camera state"),
                        None => info!(state = ?state, "camera state"),
                    }
                    let _ = pub2.camera_status(&cam_id, state, err, fin, dropped).await;
                    if st_rx.changed().await.is_err() {
                        break;
                    }
                }
                failed
            }
            .instrument(span.clone()),
        );

        let opts = SourceOptions {
            camera: c.id.clone(),
            url: self.p.camera_urls[i].clone(),
            detect_fps: c.detect_fps,
            max_height: c.max_height,
            realtime: c.realtime,
            loop_file: c.loop_file,
            watchdog_s: c.watchdog_s,
            backoff_initial_s: c.backoff_initial_s,
            backoff_max_s: c.backoff_max_s,
            ..SourceOptions::default()
        };
        let pool3 = pool.clone();
        let on_frame: source::FrameCallback = Box::new(move |f| pool3.push(idx, f));
        // Only real changes: the channel already holds `Starting`, which the
        // source reports first, and a repeat would be published again.
        let on_state: source::StateCallback = Box::new(move |s| {
            st_tx.send_if_modified(|cur| {
                let changed = *cur != s;
                if changed {
                    *cur = s;
                }
                changed
            });
        });
        match source::spawn_camera(opts, on_frame, on_state) {
            Ok(h) => self.cams.push(RunningCamera {
                id: c.id.clone(),
                fingerprint: camera_fingerprint(&self.p, i),
                pool,
                idx,
                source: h,
                analytics: Some(analytics_task),
                status: status_task,
                publish_latency_ms,
            }),
            Err(e) => {
                span.in_scope(|| warn!(error = %e, "camera failed to start"));
                pool.close(idx);
                let _ = analytics_task.await;
                let _ = status_task.await;
                let _ = self
                    .publisher
                    .camera_status(&c.id, CameraState::Failed, Some(e.to_string()), 0, 0)
                    .await;
                self.failed.push(c.id.clone());
            }
        }
    }

    /// Stop one camera: its source, then its queued frames, then its open
    /// events (each gets its `end`). Returns its report.
    async fn stop_camera(&mut self, mut cam: RunningCamera, stopping: Instant) -> CameraReport {
        cam.source.stop();
        cam.pool.close(cam.idx);
        if let Some(t) = cam.analytics.take() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                warn!(camera = %cam.id, "analytics did not finish before the deadline");
            }
        }
        let report = camera_report(&cam, stopping);
        let src = cam.source;
        let _ = tokio::task::spawn_blocking(move || src.join()).await;
        if let Ok(Ok(Some(id))) = tokio::time::timeout(Duration::from_secs(2), cam.status).await {
            self.failed.push(id);
        }
        report
    }

    /// Apply a new config: cameras whose settings are unchanged keep running;
    /// changed ones restart; new ones start; removed ones stop (their retained
    /// status is cleared). Refused, with nothing changed, when a restart-only
    /// section differs.
    async fn reload(&mut self, new: Pipeline) -> Result<ReloadOutcome, String> {
        let fixed = restart_only_changes(&self.p.raw, &new.raw);
        if !fixed.is_empty() {
            return Err(format!(
                "{} changed; these sections are applied only at start: restart the node \
                 (or undo the change) and reload again",
                fixed.join(", ")
            ));
        }
        let mut out = ReloadOutcome::default();
        let wanted: BTreeMap<String, (usize, String)> = (0..new.raw.cameras.len())
            .map(|i| {
                (
                    new.raw.cameras[i].id.clone(),
                    (i, camera_fingerprint(&new, i)),
                )
            })
            .collect();
        let now = Instant::now();
        let mut keep = Vec::new();
        for cam in std::mem::take(&mut self.cams) {
            match wanted.get(&cam.id) {
                Some((_, fp)) if *fp == cam.fingerprint => {
                    out.kept.push(cam.id.clone());
                    keep.push(cam);
                }
                Some(_) => {
                    out.restarted.push(cam.id.clone());
                    let r = self.stop_camera(cam, now).await;
                    self.stopped.push(r);
                }
                None => {
                    out.stopped.push(cam.id.clone());
                    let id = cam.id.clone();
                    let r = self.stop_camera(cam, now).await;
                    self.stopped.push(r);
                    let _ = self.publisher.camera_removed(&id).await;
                }
            }
        }
        self.cams = keep;
        self.failed.retain(|id| !wanted.contains_key(id));
        self.p = new;
        for (id, (i, _)) in &wanted {
            if !out.kept.contains(id) {
                if !out.restarted.contains(id) {
                    out.started.push(id.clone());
                }
                self.start_camera(*i).await;
            }
        }
        // Config order, for the node status.
        let order: Vec<String> = self.p.raw.cameras.iter().map(|c| c.id.clone()).collect();
        self.cams
            .sort_by_key(|c| order.iter().position(|o| *o == c.id).unwrap_or(usize::MAX));
        self.publisher.set_cameras(order).await;
        Ok(out)
    }
}

fn camera_report(cam: &RunningCamera, stopping: Instant) -> CameraReport {
    let (frames_in, dropped, analysed) = cam.pool.counters(cam.idx);
    let s = cam.pool.state.lock().unwrap_or_else(|e| e.into_inner());
    let slot = &s.slots[cam.idx];
    CameraReport {
        id: cam.id.clone(),
        frames_in,
        frames_dropped: dropped,
        frames_analysed: analysed,
        active: slot
            .first_arrival
            .map(|t| stopping.saturating_duration_since(t))
            .unwrap_or_default(),
        detect_latency_ms: slot.detect_latency_ms.as_slice().to_vec(),
        publish_latency_ms: cam
            .publish_latency_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_slice()
            .to_vec(),
    }
}

async fn run_inner(
    p: Pipeline,
    stop: impl std::future::Future<Output = ()>,
    mut reloads: mpsc::Receiver<()>,
) -> Result<RunReport, NodeError> {
    let started = Instant::now();
    for w in &p.warnings {
        warn!(warning = %w, "config");
    }
    let raw = &p.raw;
    #[cfg(feature = "embedded-broker")]
    if let crate::config::BrokerUrl::Embedded { port } = p.broker {
        publish::embedded::start(port, raw.mqtt.max_packet_bytes)?;
        info!(port, "embedded MQTT broker listening on 127.0.0.1");
    }
    #[cfg(not(feature = "embedded-broker"))]
    if let crate::config::BrokerUrl::Embedded { .. } = p.broker {
        return Err(publish::PublishError::NoEmbeddedBroker.into());
    }
    let client_id = raw
        .mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| format!("edge-node-{}", raw.node.id));
    let opts = publish::mqtt_options(&raw.mqtt, &p.broker, &client_id)?;
    let cameras: Vec<String> = raw.cameras.iter().map(|c| c.id.clone()).collect();
    let state_dir = heartbeat_path(&p)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let (publisher, mqtt_task) = Publisher::start(
        opts,
        NodeIdentity {
            node: raw.node.id.clone(),
            district: raw.node.district.clone(),
            prefix: raw.mqtt.topic_prefix.clone(),
            cameras,
        },
        publish::OutboxOptions {
            dir: raw.outbox.dir.clone().unwrap_or(state_dir.join("outbox")),
            quota_bytes: (raw.outbox.quota_mb * 1024.0 * 1024.0) as u64,
            replay_rate: raw.outbox.replay_rate,
            stats_interval: Duration::from_secs_f64(raw.outbox.stats_interval_s),
        },
    )?;

    // Heartbeat for the container health check.
    let hb = heartbeat_path(&p);
    let hb_task = tokio::spawn(async move {
        if let Some(d) = hb.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        loop {
            let _ = std::fs::write(&hb, publish::rfc3339(SystemTime::now()));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });

    let runtime_err = detect::init_runtime(&RuntimeOptions {
        dylib: p.onnxruntime.clone(),
    })
    .err()
    .map(|e| e.to_string());

    let _ = source::init();
    let n = p.raw.cameras.len();
    let budget: SharedBudget = p.raw.budget.bucket().map(|(rate, burst)| {
        info!(bytes_per_s = rate, burst_bytes = burst, "snapshot budget");
        Arc::new(Mutex::new(ByteBudget::new(rate, burst, Instant::now())))
    });
    if let Some(b) = &budget {
        publisher.set_budget(b.clone());
    }
    let mut node = NodeRun {
        budget,
        p,
        publisher: publisher.clone(),
        pools: BTreeMap::new(),
        workers: Vec::new(),
        runtime_err,
        cams: Vec::new(),
        stopped: Vec::new(),
        failed: Vec::new(),
    };
    for i in 0..n {
        node.start_camera(i).await;
    }
    if node.cams.is_empty() {
        warn!("no camera could start");
    }

    // Wait: all-file pipelines end by themselves; otherwise wait for a signal.
    // SIGHUP reloads in between.
    tokio::pin!(stop);
    enum Wake {
        Done,
        Stop,
        Reload,
    }
    loop {
        let all_files = node.p.all_files();
        let wake = {
            let all_done = async {
                for c in node.cams.iter_mut() {
                    if let Some(h) = &mut c.analytics {
                        let _ = h.await;
                        c.analytics = None;
                    }
                }
            };
            tokio::select! {
                _ = all_done, if all_files => Wake::Done,
                _ = &mut stop => Wake::Stop,
                Some(()) = reloads.recv() => Wake::Reload,
            }
        };
        match wake {
            Wake::Done => {
                info!("every file camera has ended");
                break;
            }
            Wake::Stop => {
                info!("stop requested; stopping");
                break;
            }
            Wake::Reload => {
                let file = node.p.file.clone();
                info!(file = %file.display(), "SIGHUP: reloading the config");
                let res = match Pipeline::load(&file) {
                    Ok(new) => {
                        for w in &new.warnings {
                            warn!(warning = %w, "config");
                        }
                        node.reload(new).await
                    }
                    Err(e) => Err(e.to_string()),
                };
                match res {
                    Ok(o) => info!(
                        kept = ?o.kept, restarted = ?o.restarted, started = ?o.started,
                        stopped = ?o.stopped, "config reloaded"
                    ),
                    Err(e) => warn!(
                        error = %e,
                        "config reload refused; the running config stays in force"
                    ),
                }
            }
        }
    }
    let stopping = Instant::now();

    // Stop sources, let in-flight frames finish, end open events.
    for c in &node.cams {
        c.source.stop();
        c.pool.close(c.idx);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for c in node.cams.iter_mut() {
        if let Some(t) = c.analytics.take()
            && tokio::time::timeout_at(deadline, t).await.is_err()
        {
            warn!(camera = %c.id, "analytics did not finish before the shutdown deadline");
        }
    }
    let mut report = RunReport::default();
    let mut seen_pools: HashMap<*const Pool, ()> = HashMap::new();
    let mut cam_reports = std::mem::take(&mut node.stopped);
    for c in &node.cams {
        cam_reports.push(camera_report(c, stopping));
        if seen_pools.insert(Arc::as_ptr(&c.pool), ()).is_none() {
            let s = c.pool.state.lock().unwrap_or_else(|e| e.into_inner());
            report.pre_ms.extend_from_slice(s.pre_ms.as_slice());
            report.infer_ms.extend_from_slice(s.infer_ms.as_slice());
            report.post_ms.extend_from_slice(s.post_ms.as_slice());
        }
    }
    for r in &cam_reports {
        report.frames_dropped += r.frames_dropped;
        report.frames_analysed += r.frames_analysed;
    }
    report.cameras = cam_reports;
    let cams = std::mem::take(&mut node.cams);
    let mut handles = Vec::new();
    for c in cams {
        // The state watch closes when the source thread drops its callback.
        if let Ok(Ok(Some(cam))) = tokio::time::timeout(Duration::from_secs(2), c.status).await {
            node.failed.push(cam);
        }
        handles.push(c.source);
    }
    for pool in node.pools.values().flatten() {
        pool.0.stop();
    }
    let ok = publisher.shutdown(Duration::from_secs(10)).await;
    if !ok {
        warn!("not every message was acknowledged before the shutdown deadline");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), mqtt_task).await;
    hb_task.abort();
    for h in handles {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    for w in std::mem::take(&mut node.workers) {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
    let st = publisher.stats();
    report.events = st.events.load(Ordering::Relaxed);
    report.snapshots = st.snapshots.load(Ordering::Relaxed);
    report.snapshot_bytes = st.snapshot_bytes.load(Ordering::Relaxed);
    report.bytes_published = st.bytes.load(Ordering::Relaxed);
    report.messages_published = st.sent.load(Ordering::Relaxed);
    report.messages_acked = st.acked.load(Ordering::Relaxed);
    node.failed.sort();
    node.failed.dedup();
    report.failed_cameras = node.failed;
    report.wall = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[node]
id = "box-1"
district = "d"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "t"
[[cameras]]
id = "a"
url = "rtsp://127.0.0.1:8554/a"
[[cameras]]
id = "b"
url = "rtsp://127.0.0.1:8554/b"
"#;

    fn load(text: &str) -> Pipeline {
        Pipeline::from_str(Path::new("/tmp/x/pipeline.toml"), text).unwrap()
    }

    #[test]
    fn timing_samples_are_a_bounded_ring_of_the_latest() {
        let mut s = Samples::default();
        for i in 0..MAX_TIMINGS {
            s.push(i as f64);
        }
        assert_eq!(s.as_slice().len(), MAX_TIMINGS);
        let cap = s.v.capacity();
        // A month of frames later: same length, same allocation, latest kept.
        for i in MAX_TIMINGS..3 * MAX_TIMINGS + 7 {
            s.push(i as f64);
        }
        assert_eq!(s.as_slice().len(), MAX_TIMINGS);
        assert_eq!(s.v.capacity(), cap, "no growth once full");
        let min = s.as_slice().iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(
            min,
            (2 * MAX_TIMINGS + 7) as f64,
            "only the latest are kept"
        );
    }

    #[test]
    fn reload_sees_which_cameras_changed_and_which_sections_need_a_restart() {
        let old = load(BASE);
        // Camera b gets another rate; a is untouched.
        let new = load(&BASE.replace("8554/b\"", "8554/b\"\ndetect_fps = 2"));
        assert_eq!(camera_fingerprint(&old, 0), camera_fingerprint(&new, 0));
        assert_ne!(camera_fingerprint(&old, 1), camera_fingerprint(&new, 1));
        assert!(restart_only_changes(&old.raw, &new.raw).is_empty());
        // A tracker change applies to every camera, without a restart.
        let tr = load(&format!("{BASE}[tracker]\nmatch_iou = 0.5\n"));
        assert_ne!(camera_fingerprint(&old, 0), camera_fingerprint(&tr, 0));
        assert!(restart_only_changes(&old.raw, &tr.raw).is_empty());
        // MQTT and detector changes need a restart, and are named.
        let mq = load(
            &BASE
                .replace("topic_prefix = \"t\"", "topic_prefix = \"u\"")
                .replace(
                    "[[cameras]]\nid = \"a\"",
                    "[detector]\nthreshold = 0.5\n[[cameras]]\nid = \"a\"",
                ),
        );
        assert_eq!(
            restart_only_changes(&old.raw, &mq.raw),
            vec!["[detector]".to_string(), "[mqtt]".to_string()]
        );
    }
}
