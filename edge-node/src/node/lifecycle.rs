//! How cameras come and go: [`NodeRun`] holds what lives for the whole
//! process (the publisher, one worker pool per model, loaded on first use,
//! the snapshot budget) and the [`RunningCamera`]s. `start_camera` and
//! `stop_camera` are the only ways a camera starts and stops, used at start,
//! at shutdown and by a SIGHUP `reload`. A reload compares per-camera
//! fingerprints and touches only cameras whose fingerprint changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span, info_span, warn};

use super::camera::CameraAnalytics;
use super::emit::{self, Emitter};
use super::health::Board;
use super::pictures::{FacePolicy, Painter, SharedBudget};
use super::report::{CameraReport, Samples};
use super::restart_only_changes;
use super::slots::{Pool, SlotView, WhenFull};
use super::status::{self, StatusTask};
use super::workers;
use crate::config::{CameraPlan, FacePlan, Pipeline};
use crate::detect::{self, DetectorOptions};
use crate::events::EventEngine;
use crate::publish::{CameraError, CameraLive, CameraState, Publisher};
use crate::source::{self, SourceState};
use crate::track::Tracker;
use crate::traffic::TrafficStage;

/// A model's frame pool and class names; `Err` holds why the model is unusable.
type ModelPool = Result<(Arc<Pool>, Arc<Vec<String>>), String>;

/// One running camera: its source, its frame slot and its tasks.
pub(super) struct RunningCamera {
    pub id: String,
    /// What the camera was started with; equal fingerprints survive a reload.
    fingerprint: String,
    pub pool: Arc<Pool>,
    pub idx: usize,
    pub source: source::CameraHandle,
    /// Ends when the camera's hand-over ends (slot closed and drained).
    pub analytics: Option<JoinHandle<()>>,
    /// Ends when the source drops its state callback; yields the camera id if it failed.
    pub status: JoinHandle<Option<String>>,
    publish_latency_ms: Arc<Mutex<Samples>>,
}

impl RunningCamera {
    /// Stops the source and closes the slot: queued frames are still
    /// analysed, then the analytics task ends every open event and ends.
    pub fn stop_source(&self) {
        self.source.stop();
        self.pool.close(self.idx);
    }

    pub fn report(&self, stopping: Instant) -> CameraReport {
        let s = self.pool.report(self.idx);
        CameraReport {
            id: self.id.clone(),
            frames_in: s.counters.frames_in,
            frames_dropped: s.counters.dropped,
            frames_analysed: s.counters.analysed,
            active: s
                .first_arrival
                .map(|t| stopping.saturating_duration_since(t))
                .unwrap_or_default(),
            detect_latency_ms: s.detect_latency_ms,
            publish_latency_ms: self
                .publish_latency_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_slice()
                .to_vec(),
        }
    }
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
pub(super) struct NodeRun {
    pub p: Pipeline,
    pub publisher: Publisher,
    pub pools: BTreeMap<PathBuf, ModelPool>,
    pub workers: Vec<std::thread::JoinHandle<()>>,
    pub runtime_err: Option<String>,
    /// The node's snapshot budget (`[budget]`), shared by every camera.
    pub budget: SharedBudget,
    pub cams: Vec<RunningCamera>,
    /// Reports of cameras stopped by a reload.
    pub stopped: Vec<CameraReport>,
    pub failed: Vec<String>,
    /// What the health rules read about each running camera.
    pub board: Arc<Board>,
    /// The node's figures for `/metrics` (kept whether or not it is served).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What a camera's behaviour depends on, as a comparable string: its own
/// section, its resolved URL and model, and the node-wide sections that are
/// applied per camera. A reload restarts a camera only when this changes.
pub(super) fn camera_fingerprint(p: &Pipeline, i: usize) -> String {
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

impl NodeRun {
    /// The worker pool for `model`, loading its sessions the first time.
    fn pool(&mut self, model: &Path, opts: &DetectorOptions) -> ModelPool {
        if let Some(e) = self.pools.get(model) {
            return e.clone();
        }
        let entry = match &self.runtime_err {
            Some(e) => Err(e.clone()),
            None => {
                let d = &self.p.raw.detector;
                let m = self.metrics.model(&crate::metrics::model_name(model));
                workers::spawn(opts, d.workers, d.threads, m)
                    .map(|w| {
                        self.workers.extend(w.threads);
                        (w.pool, w.labels)
                    })
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = &entry {
            warn!(model = %model.display(), error = %e, "model unusable; its cameras are marked failed");
        }
        self.pools.insert(model.to_path_buf(), entry.clone());
        entry
    }

    /// Records a camera that cannot run and says so on its status topic.
    async fn camera_failed(&mut self, id: &str, span: &Span, error: String) {
        let error = crate::redact::userinfo(&error).into_owned();
        span.in_scope(|| warn!(error = %error, "camera failed"));
        let error = CameraError {
            summary: error,
            detail: None,
        };
        let _ = self
            .publisher
            .camera_status(id, CameraState::Failed, Some(error), CameraLive::default())
            .await;
        self.failed.push(id.to_string());
    }

    /// The inference pool and labels of a camera's model, or why the camera
    /// cannot start: the model does not load, or a rule class the model does
    /// not know would never match (refused, like an unknown
    /// `detector.classes`; `check` names the field).
    fn checked_pool(&mut self, plan: &CameraPlan) -> ModelPool {
        let (pool, labels) = self
            .pool(&plan.model, &plan.detector)
            .map_err(|e| format!("model {}: {e}", plan.model.display()))?;
        let unknown = plan.unknown_classes(&labels);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(ToString::to_string).collect();
            return Err(format!(
                "model {}: {}",
                plan.model.display(),
                list.join("; ")
            ));
        }
        Ok((pool, labels))
    }

    /// The camera's retained status: a task fed the source's states (latest
    /// wins: a watch channel), refreshed every `status_interval_s`; the
    /// camera registered with the health board.
    fn camera_status(
        &self,
        plan: &CameraPlan,
        pool: &Arc<Pool>,
        idx: usize,
        note: Option<String>,
        span: &Span,
    ) -> (watch::Sender<SourceState>, JoinHandle<Option<String>>) {
        let (st_tx, st_rx) = watch::channel(SourceState::Starting);
        let model = plan.model.file_stem().map_or_else(
            || plan.model.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        self.board.register(
            &plan.id,
            model,
            pool.clone(),
            idx,
            Duration::from_secs_f64(plan.source.watchdog_s.max(1.0)),
        );
        let status_task = status::spawn_camera_status(StatusTask {
            camera: plan.id.clone(),
            states: st_rx,
            publisher: self.publisher.clone(),
            pool: pool.clone(),
            idx,
            note,
            interval: Duration::from_secs_f64(self.p.raw.node.status_interval_s.max(0.1)),
            board: self.board.clone(),
            span: span.clone(),
        });
        (st_tx, status_task)
    }

    /// Start camera `i` of the config in force. A camera that cannot start is
    /// reported `failed` on its status topic and recorded; the others go on.
    pub async fn start_camera(&mut self, i: usize) {
        let plan = self.p.camera_plan(i);
        let span = info_span!("camera", camera = %plan.id);
        let (pool, labels) = match self.checked_pool(&plan) {
            Ok(x) => x,
            Err(msg) => return self.camera_failed(&plan.id, &span, msg).await,
        };
        let when_full = if plan.lossless {
            WhenFull::WaitForRoom
        } else {
            WhenFull::DropOldest
        };
        let (idx, handover) = pool.add(plan.queue, when_full, plan.analysis);
        // Under overload each camera keeps the same share of its detect_fps.
        pool.set_weight(idx, plan.source.detect_fps);
        span.in_scope(|| {
            tracing::info!(
                input_pixels = %plan.analysis.input.describe(),
                tiles = plan.analysis.tiles,
                "camera analysis"
            );
        });
        let metrics = self.metrics.camera(&plan.id);
        metrics.attach_gate(plan.source.keyframe_gate.clone());
        metrics.attach(Box::new(SlotView {
            pool: pool.clone(),
            idx,
        }));
        let analytics = camera_analytics(&plan, &labels, &span);
        let faces = face_policy(plan.faces.as_ref(), &span);
        let privacy_note = match &faces {
            FacePolicy::Withheld(why) => Some(why.clone()),
            _ => None,
        };
        let publish_latency_ms = Arc::new(Mutex::new(Samples::default()));
        let main = main_stream(plan.main_stream.clone(), &span);
        let emitter = Emitter {
            id: plan.id.clone(),
            publisher: self.publisher.clone(),
            labels,
            painter: Painter {
                options: plan.snapshot.clone(),
                faces,
                budget: self.budget.clone(),
                main,
            },
            run: self.publisher.camera_run(&plan.id),
            // Numbering continues after a restart or reload (the outbox stores the last seq).
            seq: self.publisher.last_seq(&plan.id),
            counts_seq: 0,
            zone_alert_seq: 0,
            camera_alert_seq: 0,
            publish_latency_ms: publish_latency_ms.clone(),
            metrics: metrics.clone(),
        };
        let analytics_task =
            tokio::spawn(emit::run(analytics, handover, emitter).instrument(span.clone()));

        let (st_tx, status_task) = self.camera_status(&plan, &pool, idx, privacy_note, &span);
        let (pool_f, pool_s) = (pool.clone(), pool.clone());
        let on_frame: source::FrameCallback = Box::new(move |f| pool_f.push(idx, f));
        let on_state: source::StateCallback = Box::new(move |s| {
            // A connection lost (not each retry), as the status counts it.
            if matches!(s, SourceState::Reconnecting { .. })
                && matches!(*st_tx.borrow(), SourceState::Streaming { .. })
            {
                metrics.reconnect();
            }
            // The end of the camera: its slot drains, then its analytics ends.
            if matches!(s, SourceState::Ended | SourceState::Failed { .. }) {
                pool_s.close(idx);
            }
            // Only real changes: the channel already holds `Starting`, which
            // the source reports first, and a repeat would be published again.
            st_tx.send_if_modified(|cur| {
                let changed = *cur != s;
                if changed {
                    *cur = s;
                }
                changed
            });
        });
        match source::spawn_camera(plan.source, on_frame, on_state) {
            Ok(h) => self.cams.push(RunningCamera {
                id: plan.id,
                fingerprint: camera_fingerprint(&self.p, i),
                pool,
                idx,
                source: h,
                analytics: Some(analytics_task),
                status: status_task,
                publish_latency_ms,
            }),
            Err(e) => {
                pool.close(idx);
                let _ = analytics_task.await;
                let _ = status_task.await;
                self.camera_failed(&plan.id, &span, e.to_string()).await;
            }
        }
    }

    /// Stop one camera: its source, then its queued frames, then its open
    /// events (each gets its `end`). Returns its report.
    async fn stop_camera(&mut self, mut cam: RunningCamera, stopping: Instant) -> CameraReport {
        cam.stop_source();
        if let Some(t) = cam.analytics.take() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                warn!(camera = %cam.id, "analytics did not finish before the deadline");
            }
        }
        let report = cam.report(stopping);
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
    pub async fn reload(&mut self, new: Pipeline) -> Result<ReloadOutcome, String> {
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

/// The camera's tracker, event lifecycle and scene rules.
fn camera_analytics(plan: &CameraPlan, labels: &[String], span: &Span) -> CameraAnalytics {
    let (rules, unknown) = plan.rules(labels);
    if !unknown.is_empty() {
        span.in_scope(
            || warn!(classes = ?unknown, "zone/line classes the model does not know are ignored"),
        );
    }
    let (traffic, unknown) = TrafficStage::new(&plan.traffic, labels);
    if !unknown.is_empty() {
        span.in_scope(
            || warn!(classes = ?unknown, "detector.merge_classes the model does not know are ignored"),
        );
    }
    CameraAnalytics::new(
        Tracker::new(plan.tracker),
        EventEngine::new(plan.events.clone()),
        rules,
        plan.counts_interval_s,
    )
    .with_tamper(plan.tamper.clone())
    .with_traffic(traffic)
    .with_idle(plan.idle, plan.source.keyframe_gate.clone())
}

/// The camera's face blurring: off, on with its own CenterFace session, or
/// required but impossible (snapshots withheld, and why).
/// A dual-stream camera's main-stream receiver; one that cannot start is
/// logged and its snapshots come from the analysed stream (marked `sub`).
fn main_stream(
    opts: Option<source::MainStreamOptions>,
    span: &Span,
) -> Option<Arc<source::MainStream>> {
    let opts = opts?;
    match source::MainStream::spawn(opts) {
        Ok(m) => Some(Arc::new(m)),
        Err(e) => {
            span.in_scope(|| {
                warn!(error = %e, "main stream not started: snapshots from the analysed stream");
            });
            None
        }
    }
}

fn face_policy(faces: Option<&FacePlan>, span: &Span) -> FacePolicy {
    let Some(f) = faces else {
        return FacePolicy::Off;
    };
    match detect::FaceDetector::load_with(&f.model, 1, f.threshold, f.max_side) {
        Ok(d) => FacePolicy::On(Arc::new(Mutex::new(d))),
        Err(e) => {
            let why = format!(
                "snapshots withheld: faces must be blurred but the face model is unusable: {e}"
            );
            span.in_scope(|| warn!(error = %why, "privacy"));
            FacePolicy::Withheld(why)
        }
    }
}
