//! The typed plan of a camera: every runtime option struct the node builds
//! for it, mapped from the config sections in one place.
//!
//! Every runtime struct here is written as an exhaustive struct literal (no
//! `..Default::default()`), so a field added to one of them fails to compile
//! until it is mapped here. Fields that have no config key take their value
//! from the runtime struct's own `Default` (named `base` below), the one place
//! their default is written.

use std::path::{Path, PathBuf};

use crate::detect::{self, Analysis, DetectorOptions};
use crate::events::EventConfig;
use crate::idle::IdleConfig;
use crate::rules::{LineRule, RulesConfig, ZoneRule};
use crate::snapshot::SnapshotOptions;
use crate::source::{CameraAuth, DecoderChoice, KeyframeGate, MainStreamOptions, SourceOptions};
use crate::tamper::TamperConfig;
use crate::track::TrackerConfig;
use crate::traffic::TrafficConfig;

use super::{
    CameraSection, DetectorSection, EventsSection, LineSection, Pipeline, PrivacySection,
    RulesSection, SnapshotSection, TamperSection, TrackerSection, ZoneSection, is_file_url,
};

/// Where the node keeps its state when neither `[node] state_dir` nor
/// `$EDGE_NODE_STATE_DIR` is set.
pub const DEFAULT_STATE_DIR: &str = "/tmp/edge-node";
/// The environment variable that sets the state folder when the file does not.
pub const STATE_DIR_ENV: &str = "EDGE_NODE_STATE_DIR";

/// Everything the node needs to start one camera, built from the config.
#[derive(Debug, Clone)]
pub struct CameraPlan {
    /// `[[cameras]] id`.
    pub id: String,
    /// The analysed source (URL resolved): `detect_url` for a dual-stream
    /// camera, else `url`.
    pub source: SourceOptions,
    /// Dual-stream cameras: the main stream (`url`), received into a ring
    /// and decoded on demand for snapshots.
    pub main_stream: Option<MainStreamOptions>,
    /// The camera's model (resolved): `[[cameras]] model` or `[detector] model`.
    pub model: PathBuf,
    /// The detector of `model` (`[detector]`).
    pub detector: DetectorOptions,
    /// `input_pixels` and `tiles` (the camera's, else `[detector]`'s): how
    /// its frames are sized for the model.
    pub analysis: Analysis,
    /// `[[cameras]] queue`: frames waiting for the detector.
    pub queue: usize,
    /// A file played as fast as possible: no frame is dropped (the source
    /// waits for the detector instead).
    pub lossless: bool,
    /// `[tracker]`, with `min_hits` and `max_lost_s` taken from `[events]`
    /// (see [`EventConfig::tracker_config`]).
    pub tracker: TrackerConfig,
    /// `[events]`.
    pub events: EventConfig,
    /// `[detector] merge_classes`, `merge_iou`, `pair_riders` and the
    /// camera's `ignore_zones`: the traffic stage before the tracker.
    pub traffic: TrafficConfig,
    /// `[snapshot]` with the camera's privacy masks.
    pub snapshot: SnapshotOptions,
    /// `[rules]` defaults; resolved with the model's labels by [`CameraPlan::rules`].
    pub rule_defaults: RulesSection,
    /// `[[cameras.zones]]`.
    pub zones: Vec<ZoneSection>,
    /// `[[cameras.lines]]`.
    pub lines: Vec<LineSection>,
    /// `[rules] counts_interval_s`.
    pub counts_interval_s: f64,
    /// `Some` when the camera blurs faces (`blur_faces = true`).
    pub faces: Option<FacePlan>,
    /// `[cameras.tamper]`; `None` when `enabled = false`.
    pub tamper: Option<TamperConfig>,
    /// `idle_decode` and `idle_after_s`: `Some` when the camera decodes
    /// keyframes only while idle (its source then has a `keyframe_gate`).
    pub idle: Option<IdleConfig>,
}

/// The face detector of a camera with `blur_faces = true` (`[privacy]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FacePlan {
    /// The CenterFace model (resolved; may not exist: the camera's snapshots
    /// are then withheld, and its status says why).
    pub model: PathBuf,
    /// `[privacy] face_threshold` (default [`detect::face::FACE_THRESHOLD`]).
    pub threshold: f32,
    /// `[privacy] face_max_side` (default [`detect::face::FACE_MAX_SIDE`]).
    pub max_side: u32,
}

impl CameraPlan {
    /// The camera's scene rules with class names resolved against the
    /// model's `labels`, and the class names the model does not know (they
    /// are ignored; the node logs them).
    pub fn rules(&self, labels: &[String]) -> (RulesConfig, Vec<String>) {
        rules_config(&self.rule_defaults, &self.zones, &self.lines, labels)
    }

    /// The zone and line classes the model (`labels`) does not know; the
    /// node refuses such a camera, as it refuses an unknown `detector.classes`.
    pub fn unknown_classes(&self, labels: &[String]) -> Vec<UnknownClass> {
        unknown_rule_classes(&self.zones, &self.lines, labels)
    }
}

/// A zone or line class name the camera's model does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownClass {
    /// The field within the camera, e.g. `zones[0].classes`.
    pub field: String,
    /// The zone or line name.
    pub rule: String,
    /// The class name as written.
    pub class: String,
}

impl std::fmt::Display for UnknownClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {:?}: {:?} is not a class of the model",
            self.field, self.rule, self.class
        )
    }
}

/// Every class name of `zones` and `lines` that is not in `labels`.
pub fn unknown_rule_classes(
    zones: &[ZoneSection],
    lines: &[LineSection],
    labels: &[String],
) -> Vec<UnknownClass> {
    let rules = zones
        .iter()
        .enumerate()
        .map(|(k, z)| (format!("zones[{k}].classes"), &z.name, &z.classes))
        .chain(
            lines
                .iter()
                .enumerate()
                .map(|(k, l)| (format!("lines[{k}].classes"), &l.name, &l.classes)),
        );
    let mut out = Vec::new();
    for (field, rule, classes) in rules {
        for c in classes.iter().filter(|c| !labels.contains(c)) {
            out.push(UnknownClass {
                field: field.clone(),
                rule: rule.clone(),
                class: c.clone(),
            });
        }
    }
    out
}

impl Pipeline {
    /// `[metrics] listen`, parsed (validated at load); `None`: not served.
    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        self.raw.metrics.listen.as_deref()?.parse().ok()
    }

    /// The plan of camera `i` (order of `raw.cameras`), built from the
    /// current `raw`, `camera_urls` and `camera_models` (so callers that edit
    /// those, like `bench`, get plans that follow).
    pub fn camera_plan(&self, i: usize) -> CameraPlan {
        let c = &self.raw.cameras[i];
        let url = &self.camera_urls[i];
        let model = &self.camera_models[i];
        camera_plan(
            &self.raw,
            c,
            url,
            model,
            self.detector_options(model),
            &self.face_model,
        )
    }

    /// The plans of every camera, in order.
    pub fn plans(&self) -> Vec<CameraPlan> {
        (0..self.raw.cameras.len())
            .map(|i| self.camera_plan(i))
            .collect()
    }

    /// Detector options of `model` from the `[detector]` section; ONNX
    /// Runtime's optimised copy goes under [`Pipeline::state_dir`].
    pub fn detector_options(&self, model: &Path) -> DetectorOptions {
        detector_options(
            &self.raw.detector,
            model,
            Some(self.state_dir().join("ort-cache")),
        )
    }

    /// The ONNX Runtime library and execution provider (`[detector]
    /// onnxruntime`, `provider`, `provider_device`; validated at load).
    pub fn runtime_options(&self) -> detect::RuntimeOptions {
        let d = &self.raw.detector;
        detect::RuntimeOptions {
            dylib: self.onnxruntime.clone(),
            provider: detect::Provider::parse(&d.provider).unwrap_or_default(),
            device: d.provider_device.clone(),
        }
    }

    /// The node's writable folder: `[node] state_dir`, `$EDGE_NODE_STATE_DIR`,
    /// or `/tmp/edge-node`.
    pub fn state_dir(&self) -> PathBuf {
        self.raw
            .node
            .state_dir
            .clone()
            .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }
}

/// A camera's plan from its section, the node-wide sections and its
/// resolved URL and model.
pub(super) fn camera_plan(
    raw: &super::PipelineFile,
    c: &CameraSection,
    url: &str,
    model: &Path,
    detector: DetectorOptions,
    face_model: &Path,
) -> CameraPlan {
    let events = event_config(&raw.events);
    let idle = idle_config(c, url);
    let mut source = source_options(c, url);
    source.decoder = camera_decoder(raw, c);
    source.keyframe_gate = idle.map(|_| KeyframeGate::default());
    CameraPlan {
        id: c.id.clone(),
        source,
        main_stream: main_stream_options(c, url),
        model: model.to_path_buf(),
        detector,
        analysis: analysis(&raw.detector, c),
        queue: c.queue,
        lossless: !c.realtime && is_file_url(url),
        tracker: tracker_config(&raw.tracker, &events),
        events,
        traffic: traffic_config(&raw.detector, c),
        snapshot: snapshot_options(&raw.snapshot, &c.privacy_masks),
        rule_defaults: raw.rules.clone(),
        zones: c.zones.clone(),
        lines: c.lines.clone(),
        counts_interval_s: raw.rules.counts_interval_s,
        faces: c
            .blur_faces
            .then(|| face_plan(&raw.privacy, face_model.to_path_buf())),
        tamper: c.tamper.enabled.then(|| tamper_config(&c.tamper)),
        idle,
    }
}

/// The camera's `decoder`, else `[node] decoder` (validated at load; an
/// invalid value, only possible in hand-built files, means `auto`).
pub fn camera_decoder(raw: &super::PipelineFile, c: &CameraSection) -> DecoderChoice {
    DecoderChoice::parse(c.decoder.as_deref().unwrap_or(&raw.node.decoder)).unwrap_or_default()
}

/// `idle_decode`: `keyframes` → `Some`, `full` → `None`, `auto` →
/// `keyframes` for live cameras, `full` for files (a file replayed for a
/// test or a benchmark should not change how it is decoded on its own:
/// events would then depend on how fast the box is).
fn idle_config(c: &CameraSection, url: &str) -> Option<IdleConfig> {
    let keyframes = match c.idle_decode.as_str() {
        "keyframes" => true,
        "full" => false,
        _ => !is_file_url(url),
    };
    keyframes.then_some(IdleConfig {
        after_s: c.idle_after_s,
    })
}

/// The camera's `input_pixels` / `tiles`, else `[detector]`'s (validated
/// at load; an invalid value, only possible in hand-built files, falls back
/// to the default).
pub fn analysis(d: &DetectorSection, c: &CameraSection) -> Analysis {
    let input = c
        .input_pixels
        .as_ref()
        .or(d.input_pixels.as_ref())
        .and_then(|v| v.budget().ok())
        .unwrap_or_default();
    Analysis {
        input,
        tiles: c.tiles.unwrap_or(d.tiles),
    }
}

/// `[detector]` and the camera's `ignore_zones` → its traffic stage.
pub fn traffic_config(d: &DetectorSection, c: &CameraSection) -> TrafficConfig {
    TrafficConfig {
        merge_classes: d.merge_classes.clone(),
        merge_iou: d.merge_iou,
        pair_riders: d.pair_riders,
        lone_riders: d.lone_riders,
        ignore_zones: c.ignore_zones.clone(),
        road_zones: c.road_zones.clone(),
    }
}

/// `[cameras.tamper]` → the camera's tamper checks (whether enabled or not).
pub fn tamper_config(t: &TamperSection) -> TamperConfig {
    TamperConfig {
        interval_s: t.interval_s,
        learn_s: t.learn_s,
        raise_after_s: t.raise_after_s,
        frozen_after_s: t.frozen_after_s,
        clear_after_s: t.clear_after_s,
        ignore_top: t.ignore_top,
        ignore_bottom: t.ignore_bottom,
        frozen_change: t.frozen_change,
        black_std: t.black_std,
        black_level: t.black_level,
        blur_ratio: t.blur_ratio,
        moved_fraction: t.moved_fraction,
    }
}

/// `[detector]` → the detector of `model`.
pub fn detector_options(
    d: &DetectorSection,
    model: &Path,
    optimized_cache: Option<PathBuf>,
) -> DetectorOptions {
    let base = DetectorOptions::default();
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
        max_detections: base.max_detections,
        optimized_cache,
        input: d
            .input_pixels
            .as_ref()
            .and_then(|v| v.budget().ok())
            .unwrap_or_default(),
    }
}

/// `[[cameras]]` → the analysed source, reading `url` (resolved), or
/// `detect_url` (resolved at load) for a dual-stream camera.
pub fn source_options(c: &CameraSection, url: &str) -> SourceOptions {
    let base = SourceOptions::default();
    SourceOptions {
        camera: c.id.clone(),
        url: c.detect_url.clone().unwrap_or_else(|| url.to_string()),
        detect_fps: c.detect_fps,
        max_height: c.max_height,
        realtime: c.realtime,
        loop_file: c.loop_file,
        watchdog_s: c.watchdog_s,
        backoff_initial_s: c.backoff_initial_s,
        backoff_max_s: c.backoff_max_s,
        backoff_reset_s: base.backoff_reset_s,
        rtsp_tcp: base.rtsp_tcp,
        auth: camera_auth(c),
        // The camera's own choice; `camera_plan` falls back to `[node] decoder`.
        decoder: c
            .decoder
            .as_deref()
            .and_then(DecoderChoice::parse)
            .unwrap_or(base.decoder),
        decoder_threads: c.decoder_threads,
        keyframe_gate: None,
        reference_timestamps: c.detect_url.is_some(),
    }
}

/// `[[cameras]]` with `detect_url` → its main stream, `url` (resolved).
pub fn main_stream_options(c: &CameraSection, url: &str) -> Option<MainStreamOptions> {
    c.detect_url.as_ref()?;
    let base = SourceOptions::default();
    Some(MainStreamOptions {
        camera: c.id.clone(),
        url: url.to_string(),
        auth: camera_auth(c),
        rtsp_tcp: base.rtsp_tcp,
        realtime: c.realtime,
        loop_file: c.loop_file,
        ring_s: c.main_ring_s,
        ring_bytes: (c.main_ring_mib as usize) << 20,
        tolerance_s: c.match_tolerance_s,
    })
}

/// `[[cameras]] username_file` / `password_file` / `username_env` /
/// `password_env` → where the source reads the camera's credentials.
pub fn camera_auth(c: &CameraSection) -> CameraAuth {
    CameraAuth {
        username_file: c.username_file.clone(),
        password_file: c.password_file.clone(),
        username_env: c.username_env.clone(),
        password_env: c.password_env.clone(),
    }
}

/// `[events]` → the event engine's settings.
pub fn event_config(e: &EventsSection) -> EventConfig {
    let base = EventConfig::default();
    EventConfig {
        min_hits: e.min_hits,
        end_after_s: e.end_after_s,
        update_min_interval_s: e.update_min_interval_s,
        snapshot_improvement: e.snapshot_improvement,
        max_updates: e.max_updates,
        edge_margin: base.edge_margin,
    }
}

/// `[tracker]` → the tracker's settings, agreeing with the event engine
/// `events` (same `min_hits`; a lost track is forgotten when its event ends).
pub fn tracker_config(t: &TrackerSection, events: &EventConfig) -> TrackerConfig {
    let base = TrackerConfig::default();
    events.tracker_config(TrackerConfig {
        high_thresh: t.high_thresh,
        low_thresh: t.low_thresh,
        new_track_thresh: t.new_track_thresh,
        match_iou: t.match_iou,
        match_buffer: base.match_buffer,
        low_match_iou: base.low_match_iou,
        min_hits: events.min_hits,
        max_lost_s: events.end_after_s,
        reid_speed: base.reid_speed,
        reid_min_gate: base.reid_min_gate,
        reid_max_scale: base.reid_max_scale,
        motion_weight: base.motion_weight,
        motion_tol: base.motion_tol,
        motion_window_s: base.motion_window_s,
        motion_min_speed: base.motion_min_speed,
    })
}

/// `[snapshot]` and a camera's privacy masks → its snapshot settings.
pub fn snapshot_options(s: &SnapshotSection, masks: &[Vec<[f32; 2]>]) -> SnapshotOptions {
    let base = SnapshotOptions::default();
    SnapshotOptions {
        max_height: s.max_height,
        quality: s.quality,
        crop: s.crop,
        crop_margin: base.crop_margin,
        draw_box: s.draw_box,
        masks: masks.to_vec(),
    }
}

/// `[privacy]` → the face detector's settings.
pub fn face_plan(p: &PrivacySection, model: PathBuf) -> FacePlan {
    FacePlan {
        model,
        threshold: p.face_threshold.unwrap_or(detect::face::FACE_THRESHOLD),
        max_side: p.face_max_side.unwrap_or(detect::face::FACE_MAX_SIDE),
    }
}

/// The scene rules of a camera, with class names resolved against the
/// model's `labels` (unknown names are returned, not an error: the model is
/// only known at run time).
pub fn camera_rules(
    rules: &RulesSection,
    cam: &CameraSection,
    labels: &[String],
) -> (RulesConfig, Vec<String>) {
    rules_config(rules, &cam.zones, &cam.lines, labels)
}

/// [`camera_rules`] from the parts.
pub fn rules_config(
    rules: &RulesSection,
    zones: &[ZoneSection],
    lines: &[LineSection],
    labels: &[String],
) -> (RulesConfig, Vec<String>) {
    let mut unknown = Vec::new();
    let mut ids = |names: &[String]| {
        let mut set = std::collections::BTreeSet::new();
        for n in names {
            match labels.iter().position(|l| l == n) {
                Some(i) => {
                    set.insert(i as u32);
                }
                None => unknown.push(n.clone()),
            }
        }
        set
    };
    let pt = |p: [f32; 2]| (p[0], p[1]);
    let zones = zones
        .iter()
        .map(|z| ZoneRule {
            name: z.name.clone(),
            polygon: z.polygon.iter().map(|p| pt(*p)).collect(),
            classes: ids(&z.classes),
            min_area: z.min_area,
            inertia: z.inertia,
            loiter_s: z.loiter_s,
            crowd_min: z.crowd_min,
            crowd_for_s: z.crowd_for_s,
            crowd_clear_s: z.crowd_clear_s,
            cooldown_s: z.cooldown_s,
        })
        .collect();
    let lines = lines
        .iter()
        .map(|l| LineRule {
            name: l.name.clone(),
            a: pt(l.a),
            b: pt(l.b),
            forward: l.forward.clone(),
            backward: l.backward.clone(),
            classes: ids(&l.classes),
            hysteresis: l.hysteresis,
            inertia: l.inertia,
            alert_direction: l.alert_direction.clone(),
            cooldown_s: l.cooldown_s,
        })
        .collect();
    (
        RulesConfig {
            zones,
            lines,
            stationary_s: rules.stationary_s,
            stationary_tolerance: rules.stationary_tolerance,
            cooldown_s: rules.cooldown_s,
            realert_s: rules.realert_s,
            handoff_s: rules.handoff_s,
            handoff_speed: rules.handoff_speed,
        },
        unknown,
    )
}
