//! Pipeline configuration: TOML → `PipelineFile` (serde, `deny_unknown_fields`)
//! → `validate()` (pure, names the field) → `Pipeline` (paths resolved).
//!
//! Every field has a default except `node.id`, `node.district`, `mqtt.url`,
//! `mqtt.topic_prefix` and, per camera, `id` and `url`.
//!
//! This module touches no GStreamer, ort or MQTT; it only describes them.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the bundled default detector.
pub const DEFAULT_MODEL_FILE: &str = "nanodet_g_coco_416.onnx";

/// Most cameras one node takes (`[[cameras]]` tables). One box holds a few
/// dozen streams at most; a config with thousands is a generated or pasted
/// mistake, refused by name instead of starting thousands of pipelines.
pub const MAX_CAMERAS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors and unknown fields; the message carries line, column and a caret.
    #[error("invalid config {file}:\n{message}")]
    Parse { file: PathBuf, message: String },
    #[error("invalid config {file}: field `{field}`: {problem}. Fix: {hint}")]
    Invalid {
        file: PathBuf,
        field: String,
        problem: String,
        hint: String,
    },
}

// ---------------------------------------------------------------- file layout

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub node: NodeSection,
    pub mqtt: MqttSection,
    #[serde(default)]
    pub detector: DetectorSection,
    #[serde(default)]
    pub tracker: TrackerSection,
    #[serde(default)]
    pub events: EventsSection,
    #[serde(default)]
    pub snapshot: SnapshotSection,
    #[serde(default)]
    pub rules: RulesSection,
    #[serde(default)]
    pub cameras: Vec<CameraSection>,
    #[serde(default)]
    pub outbox: OutboxSection,
    #[serde(default)]
    pub privacy: PrivacySection,
    #[serde(default)]
    pub budget: BudgetSection,
}

/// `[budget]`: the node's byte budget for snapshots, shared by its cameras
/// (a token bucket; see `budget.rs`). Absent: no limit.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    /// Sustained snapshot bytes per second for the whole node.
    #[serde(default)]
    pub snapshot_bytes_per_s: Option<f64>,
    /// Bytes that may be saved up and spent at once (default: 10 s of the rate,
    /// at least 64 KiB so one full snapshot fits).
    #[serde(default)]
    pub burst_bytes: Option<f64>,
}

impl BudgetSection {
    /// `(rate, burst)` in bytes, or `None` when there is no budget.
    pub fn bucket(&self) -> Option<(f64, f64)> {
        let rate = self.snapshot_bytes_per_s?;
        Some((rate, self.burst_bytes.unwrap_or((rate * 10.0).max(65536.0))))
    }
}

/// `[privacy]`: the face model used by cameras with `blur_faces = true`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// CenterFace ONNX (dynamic shapes); default: the copy `scripts/setup.sh`
    /// fetches into `third_party/models/centerface_dynamic.onnx`.
    #[serde(default)]
    pub face_model: Option<PathBuf>,
    /// Face score threshold (default 0.5).
    #[serde(default)]
    pub face_threshold: Option<f32>,
    /// Frames are shrunk so their long side is at most this before face
    /// detection (default 640).
    #[serde(default)]
    pub face_max_side: Option<u32>,
}

/// `[rules]`: defaults of the scene rules (zones and lines are per camera).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// Seconds between two messages on the counts topic (media time).
    #[serde(default = "d_counts_interval")]
    pub counts_interval_s: f64,
    /// No two alerts of one rule (zone or line) within this many seconds.
    #[serde(default = "d_cooldown")]
    pub cooldown_s: f64,
    /// Unset: at most one alert per object per rule. Set: again after this many seconds.
    #[serde(default)]
    pub realert_s: Option<f64>,
    /// Seconds an object's box must barely move to become stationary; 0 = off.
    #[serde(default = "d_stationary")]
    pub stationary_s: f64,
    /// "Barely moves": centre within this fraction of the frame diagonal.
    #[serde(default = "d_stationary_tol")]
    pub stationary_tolerance: f32,
    /// Line counts: a new track may take over the side of a track lost at
    /// most this many seconds earlier on the other side of a line; 0 = off.
    #[serde(default = "d_handoff")]
    pub handoff_s: f64,
    /// ... if it appears within 0.5 + this many box heights per second of
    /// the gap from where the lost one was last seen.
    #[serde(default = "d_handoff_speed")]
    pub handoff_speed: f32,
}

impl Default for RulesSection {
    fn default() -> Self {
        Self {
            counts_interval_s: d_counts_interval(),
            cooldown_s: d_cooldown(),
            realert_s: None,
            stationary_s: d_stationary(),
            stationary_tolerance: d_stationary_tol(),
            handoff_s: d_handoff(),
            handoff_speed: d_handoff_speed(),
        }
    }
}

/// `[[cameras.zones]]`: a polygon in 0..1 frame coordinates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSection {
    pub name: String,
    /// `[[x, y], ...]`, at least 3 points, each within 0..1.
    pub polygon: Vec<[f32; 2]>,
    /// Class names counted; empty = all.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Ignore boxes smaller than this fraction of the frame area.
    #[serde(default)]
    pub min_area: f32,
    /// Consecutive analysed frames in (out) before an object counts as in (out).
    #[serde(default = "d_inertia")]
    pub inertia: u32,
    /// Loitering alert after this many seconds inside.
    #[serde(default)]
    pub loiter_s: Option<f64>,
    /// Crowding alert when at least this many objects are inside …
    #[serde(default)]
    pub crowd_min: Option<u32>,
    /// … for this many seconds.
    #[serde(default = "d_crowd_for")]
    pub crowd_for_s: f64,
    /// The crowd clears after occupancy stayed below crowd_min this long.
    #[serde(default = "d_crowd_for")]
    pub crowd_clear_s: f64,
    /// No two alerts of this zone within this many seconds; unset: `[rules] cooldown_s`.
    #[serde(default)]
    pub cooldown_s: Option<f64>,
}

/// `[[cameras.lines]]`: a tripwire from `a` to `b` (0..1 coordinates).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineSection {
    pub name: String,
    pub a: [f32; 2],
    pub b: [f32; 2],
    /// Name of crossing from the left of A→B to its right (as seen on screen).
    #[serde(default = "d_forward")]
    pub forward: String,
    #[serde(default = "d_backward")]
    pub backward: String,
    #[serde(default)]
    pub classes: Vec<String>,
    /// Dead band either side of the line, fraction of the frame.
    #[serde(default = "d_hysteresis")]
    pub hysteresis: f32,
    /// Analysed frames beyond the dead band on the other side before a
    /// crossing counts (box jitter from partial occlusion is not a crossing).
    #[serde(default = "d_line_inertia")]
    pub inertia: u32,
    /// A crossing in this direction raises a `wrong_way` alert.
    #[serde(default)]
    pub alert_direction: Option<String>,
    /// No two alerts of this line within this many seconds; unset: `[rules] cooldown_s`.
    #[serde(default)]
    pub cooldown_s: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node id, used in MQTT topics: `[a-z0-9_-]`, 1..64 chars.
    pub id: String,
    /// District id, used in MQTT topics: same rule as `id`.
    pub district: String,
    /// Folder for the heartbeat file the container health check reads.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://host[:port]`, `mqtts://host[:port]` or `"embedded"`.
    pub url: String,
    /// First level of every topic, e.g. `"hanoi"`.
    pub topic_prefix: String,
    /// Defaults to `edge-node-{node.id}`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default = "d_keep_alive")]
    pub keep_alive_s: u64,
    /// Environment variable holding the user name (read at start, never stored in the file).
    #[serde(default = "d_user_env")]
    pub username_env: String,
    /// Environment variable holding the password.
    #[serde(default = "d_pass_env")]
    pub password_env: String,
    /// File holding the user name (one line; surrounding whitespace trimmed).
    /// Takes precedence over `username_env`.
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// File holding the password (one line; a trailing newline is dropped), e.g. a
    /// Docker or systemd secret. Takes precedence over `password_env`. The loader
    /// warns when group or others can read it.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle for `mqtts://` (default: the system's roots are not bundled; a CA file is required).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Largest MQTT packet, in bytes, both ways (snapshots need more than rumqttc's 10 KiB default).
    #[serde(default = "d_max_packet")]
    pub max_packet_bytes: usize,
    /// Port of the in-process broker when `url = "embedded"`.
    #[serde(default = "d_embedded_port")]
    pub embedded_port: u16,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    /// ONNX model path; relative paths are resolved against the config file's folder, then the
    /// working directory. Default: the bundled NanoDet-g 416.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per inference worker.
    #[serde(default = "d_one")]
    pub threads: usize,
    /// Inference worker threads per model (each owns one ONNX Runtime session).
    #[serde(default = "d_one")]
    pub workers: usize,
    /// Let ONNX Runtime's worker threads spin while idle (steals CPU from decoding; off by default).
    #[serde(default)]
    pub spinning: bool,
    #[serde(default = "d_threshold")]
    pub threshold: f32,
    /// Per-class score thresholds, e.g. `{ person = 0.45 }`.
    #[serde(default)]
    pub class_thresholds: BTreeMap<String, f32>,
    /// Classes to keep. Default: person, bicycle, car, motorcycle, bus, truck.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    #[serde(default = "d_nms_iou")]
    pub nms_iou: f32,
    /// Path of `libonnxruntime.so`; default: `ORT_DYLIB_PATH`, then the usual places.
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSection {
    #[serde(default = "d_high")]
    pub high_thresh: f32,
    #[serde(default = "d_low")]
    pub low_thresh: f32,
    #[serde(default = "d_new_track")]
    pub new_track_thresh: f32,
    #[serde(default = "d_match_iou")]
    pub match_iou: f32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// Frames an object must be seen in before it becomes an event.
    #[serde(default = "d_min_hits")]
    pub min_hits: u32,
    /// An event ends once its object has been lost this long.
    #[serde(default = "d_end_after")]
    pub end_after_s: f64,
    /// At most one `update` per event per this many seconds.
    #[serde(default = "d_update_interval")]
    pub update_min_interval_s: f64,
    /// Relative snapshot-quality gain that justifies an `update` (0.3 = 30 % better).
    #[serde(default = "d_improvement")]
    pub snapshot_improvement: f32,
    #[serde(default = "d_max_updates")]
    pub max_updates: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSection {
    #[serde(default = "d_snap_height")]
    pub max_height: u32,
    #[serde(default = "d_quality")]
    pub quality: u8,
    #[serde(default)]
    pub crop: bool,
    #[serde(default = "d_true")]
    pub draw_box: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// Camera id, used in MQTT topics: `[a-z0-9_-]`, 1..64 chars.
    pub id: String,
    /// `rtsp://…`, `http(s)://…`, `file://…`, a plain path, or a v4l2 device (`/dev/video0`).
    pub url: String,
    #[serde(default = "d_detect_fps")]
    pub detect_fps: f64,
    /// Frames are downscaled (never upscaled) to at most this height before analysis.
    #[serde(default = "d_frame_height")]
    pub max_height: u32,
    /// Files only: play at the clip's own frame rate (true) or as fast as possible (false).
    #[serde(default = "d_true")]
    pub realtime: bool,
    /// Files only: start again at the end instead of ending.
    #[serde(default, rename = "loop")]
    pub loop_file: bool,
    /// Live sources: seconds without a frame before the stream is declared stalled.
    #[serde(default = "d_watchdog")]
    pub watchdog_s: f64,
    #[serde(default = "d_backoff_initial")]
    pub backoff_initial_s: f64,
    #[serde(default = "d_backoff_max")]
    pub backoff_max_s: f64,
    /// Frames waiting for the detector; when full the oldest is dropped (and counted).
    #[serde(default = "d_queue")]
    pub queue: usize,
    /// A model for this camera only; default: `[detector] model`.
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub zones: Vec<ZoneSection>,
    #[serde(default)]
    pub lines: Vec<LineSection>,
    /// Privacy masks: polygons in normalised 0..1 frame coordinates, filled
    /// black in every image that leaves the box.
    #[serde(default)]
    pub privacy_masks: Vec<Vec<[f32; 2]>>,
    /// Blur faces (CenterFace) in every snapshot before it is encoded. If the
    /// face model cannot be used, this camera's snapshots are withheld (its
    /// events still go) and its status says why.
    #[serde(default)]
    pub blur_faces: bool,
}

fn d_counts_interval() -> f64 {
    60.0
}
fn d_cooldown() -> f64 {
    10.0
}
fn d_stationary() -> f64 {
    60.0
}
fn d_stationary_tol() -> f32 {
    0.02
}
fn d_handoff() -> f64 {
    crate::rules::RulesConfig::default().handoff_s
}
fn d_handoff_speed() -> f32 {
    crate::rules::RulesConfig::default().handoff_speed
}
fn d_inertia() -> u32 {
    3
}
fn d_crowd_for() -> f64 {
    10.0
}
fn d_forward() -> String {
    "forward".into()
}
fn d_backward() -> String {
    "backward".into()
}
fn d_line_inertia() -> u32 {
    crate::rules::DEFAULT_LINE_INERTIA
}
fn d_hysteresis() -> f32 {
    0.02
}

/// The scene rules of a camera, with class names resolved against the
/// model's `labels` (unknown names are returned, not an error: the model is
/// only known at run time).
pub fn camera_rules(
    rules: &RulesSection,
    cam: &CameraSection,
    labels: &[String],
) -> (crate::rules::RulesConfig, Vec<String>) {
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
    let zones = cam
        .zones
        .iter()
        .map(|z| crate::rules::ZoneRule {
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
    let lines = cam
        .lines
        .iter()
        .map(|l| crate::rules::LineRule {
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
        crate::rules::RulesConfig {
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

fn validate_rules(file: &Path, i: usize, c: &CameraSection) -> Result<(), ConfigError> {
    let unit = |p: &[f32; 2]| p.iter().all(|v| (0.0..=1.0).contains(v));
    let mut names = HashSet::new();
    for (k, z) in c.zones.iter().enumerate() {
        let f = |name: &str| format!("cameras[{i}].zones[{k}].{name}");
        check_id(file, &f("name"), &z.name)?;
        if !names.insert(z.name.as_str()) {
            return Err(invalid(
                file,
                f("name"),
                format!("zone/line name {:?} is used twice on this camera", z.name),
                "give every zone and line of a camera its own name",
            ));
        }
        if z.polygon.len() < 3 {
            return Err(invalid(
                file,
                f("polygon"),
                format!("{} points do not make an area", z.polygon.len()),
                "give at least 3 [x, y] points",
            ));
        }
        if let Some(p) = z.polygon.iter().find(|p| !unit(p)) {
            return Err(invalid(
                file,
                f("polygon"),
                format!("point {p:?} is outside the frame"),
                "use normalised coordinates: x and y from 0 to 1 (0,0 = top left)",
            ));
        }
        check_range(file, &f("min_area"), z.min_area, 0.0, 1.0)?;
        check_range(file, &f("inertia"), z.inertia, 1, 1000)?;
        if let Some(v) = z.loiter_s {
            check_range(file, &f("loiter_s"), v, 0.1, 86400.0)?;
        }
        if let Some(v) = z.crowd_min {
            check_range(file, &f("crowd_min"), v, 1, 10000)?;
        }
        check_range(file, &f("crowd_for_s"), z.crowd_for_s, 0.0, 86400.0)?;
        check_range(file, &f("crowd_clear_s"), z.crowd_clear_s, 0.0, 86400.0)?;
        if let Some(v) = z.cooldown_s {
            check_range(file, &f("cooldown_s"), v, 0.0, 86400.0)?;
        }
    }
    for (k, l) in c.lines.iter().enumerate() {
        let f = |name: &str| format!("cameras[{i}].lines[{k}].{name}");
        check_id(file, &f("name"), &l.name)?;
        if !names.insert(l.name.as_str()) {
            return Err(invalid(
                file,
                f("name"),
                format!("zone/line name {:?} is used twice on this camera", l.name),
                "give every zone and line of a camera its own name",
            ));
        }
        for (field, p) in [("a", &l.a), ("b", &l.b)] {
            if !unit(p) {
                return Err(invalid(
                    file,
                    f(field),
                    format!("point {p:?} is outside the frame"),
                    "use normalised coordinates: x and y from 0 to 1 (0,0 = top left)",
                ));
            }
        }
        if l.a == l.b {
            return Err(invalid(
                file,
                f("b"),
                "a and b are the same point, so there is no line",
                "give two distinct points",
            ));
        }
        check_id(file, &f("forward"), &l.forward)?;
        check_id(file, &f("backward"), &l.backward)?;
        if l.forward == l.backward {
            return Err(invalid(
                file,
                f("backward"),
                "both directions have the same name",
                "name the two directions differently, e.g. \"in\" and \"out\"",
            ));
        }
        check_range(file, &f("hysteresis"), l.hysteresis, 0.0, 0.5)?;
        check_range(file, &f("inertia"), l.inertia, 1, 1000)?;
        if let Some(d) = &l.alert_direction
            && d != &l.forward
            && d != &l.backward
        {
            return Err(invalid(
                file,
                f("alert_direction"),
                format!("{d:?} is neither {:?} nor {:?}", l.forward, l.backward),
                "use one of the line's two direction names",
            ));
        }
        if let Some(v) = l.cooldown_s {
            check_range(file, &f("cooldown_s"), v, 0.0, 86400.0)?;
        }
    }
    Ok(())
}

fn d_keep_alive() -> u64 {
    30
}
fn d_user_env() -> String {
    "EDGE_NODE_MQTT_USERNAME".into()
}
fn d_pass_env() -> String {
    "EDGE_NODE_MQTT_PASSWORD".into()
}
fn d_max_packet() -> usize {
    4 << 20
}
fn d_embedded_port() -> u16 {
    18830
}
fn d_one() -> usize {
    1
}
fn d_threshold() -> f32 {
    0.35
}
fn d_nms_iou() -> f32 {
    0.5
}
fn d_high() -> f32 {
    0.5
}
fn d_low() -> f32 {
    0.1
}
fn d_new_track() -> f32 {
    0.6
}
fn d_match_iou() -> f32 {
    0.2
}
fn d_min_hits() -> u32 {
    3
}
fn d_end_after() -> f64 {
    2.0
}
fn d_update_interval() -> f64 {
    5.0
}
fn d_improvement() -> f32 {
    0.3
}
fn d_max_updates() -> u32 {
    5
}
fn d_snap_height() -> u32 {
    360
}
fn d_quality() -> u8 {
    70
}
fn d_true() -> bool {
    true
}
fn d_detect_fps() -> f64 {
    5.0
}
fn d_frame_height() -> u32 {
    720
}
fn d_watchdog() -> f64 {
    10.0
}
fn d_backoff_initial() -> f64 {
    1.0
}
fn d_backoff_max() -> f64 {
    30.0
}
fn d_queue() -> usize {
    2
}

impl Default for DetectorSection {
    fn default() -> Self {
        Self {
            model: None,
            threads: 1,
            workers: 1,
            spinning: false,
            threshold: d_threshold(),
            class_thresholds: BTreeMap::new(),
            classes: None,
            nms_iou: d_nms_iou(),
            onnxruntime: None,
        }
    }
}

impl Default for TrackerSection {
    fn default() -> Self {
        Self {
            high_thresh: d_high(),
            low_thresh: d_low(),
            new_track_thresh: d_new_track(),
            match_iou: d_match_iou(),
        }
    }
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            min_hits: d_min_hits(),
            end_after_s: d_end_after(),
            update_min_interval_s: d_update_interval(),
            snapshot_improvement: d_improvement(),
            max_updates: d_max_updates(),
        }
    }
}

impl Default for SnapshotSection {
    fn default() -> Self {
        Self {
            max_height: d_snap_height(),
            quality: d_quality(),
            crop: false,
            draw_box: true,
        }
    }
}

// ---------------------------------------------------------------- built form

/// Where the node publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerUrl {
    /// The in-process broker (cargo feature `embedded-broker`) on 127.0.0.1:`port`.
    Embedded {
        port: u16,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
    },
}

/// `[outbox]`: the durable store-and-forward queue (docs/outbox.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Default: `{state_dir}/outbox`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Disk quota for stored events and snapshots, MiB.
    #[serde(default = "d_outbox_quota_mb")]
    pub quota_mb: f64,
    /// Messages per second handed to the broker at most (replay after an outage).
    #[serde(default = "d_outbox_replay_rate")]
    pub replay_rate: f64,
    /// Seconds between retained `stats` messages.
    #[serde(default = "d_outbox_stats_s")]
    pub stats_interval_s: f64,
}

fn d_outbox_quota_mb() -> f64 {
    256.0
}
fn d_outbox_replay_rate() -> f64 {
    200.0
}
fn d_outbox_stats_s() -> f64 {
    30.0
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            dir: None,
            quota_mb: d_outbox_quota_mb(),
            replay_rate: d_outbox_replay_rate(),
            stats_interval_s: d_outbox_stats_s(),
        }
    }
}

/// A validated pipeline with every path resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub raw: PipelineFile,
    pub broker: BrokerUrl,
    /// Model path per camera, same order as `raw.cameras`.
    pub camera_models: Vec<PathBuf>,
    /// Camera URLs with relative file paths resolved.
    pub camera_urls: Vec<String>,
    pub onnxruntime: Option<PathBuf>,
    /// The face model for cameras with `blur_faces` (resolved; may not exist).
    pub face_model: PathBuf,
    /// Things that are allowed but probably wrong (e.g. a secret file others can
    /// read). `run` logs them, `check` prints them.
    pub warnings: Vec<String>,
}

impl Pipeline {
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_str(path, &text)
    }

    /// Parse, validate and build. `path` is used for messages and to resolve relative paths.
    pub fn from_str(path: &Path, text: &str) -> Result<Pipeline, ConfigError> {
        let raw: PipelineFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        validate(path, &raw)?;
        build(path, raw)
    }

    /// True when every camera is a file (the run ends when they have all ended).
    pub fn all_files(&self) -> bool {
        self.camera_urls.iter().all(|u| is_file_url(u))
    }
}

fn invalid(
    file: &Path,
    field: impl Into<String>,
    problem: impl Into<String>,
    hint: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        field: field.into(),
        problem: problem.into(),
        hint: hint.into(),
    }
}

/// Ids go into MQTT topic levels: no `/`, `+`, `#`, spaces or capitals.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_id(file: &Path, field: &str, value: &str) -> Result<(), ConfigError> {
    if valid_id(value) {
        Ok(())
    } else {
        Err(invalid(
            file,
            field,
            format!("{value:?} is not a valid id"),
            "use 1 to 64 characters from a-z, 0-9, '-' and '_' (it becomes an MQTT topic level)",
        ))
    }
}

fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    file: &Path,
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(invalid(
            file,
            field,
            format!("{v} is out of range"),
            format!("use a value from {lo} to {hi}"),
        ))
    }
}

/// Pure checks: no file system, no network.
pub fn validate(file: &Path, p: &PipelineFile) -> Result<(), ConfigError> {
    check_id(file, "node.id", &p.node.id)?;
    check_id(file, "node.district", &p.node.district)?;
    if p.mqtt.topic_prefix.is_empty()
        || p.mqtt
            .topic_prefix
            .split('/')
            .any(|l| l.is_empty() || l.contains(['+', '#', ' ']))
    {
        return Err(invalid(
            file,
            "mqtt.topic_prefix",
            format!("{:?} is not a usable topic prefix", p.mqtt.topic_prefix),
            "use one or more non-empty topic levels without '+', '#' or spaces, e.g. \"hanoi\"",
        ));
    }
    parse_broker_url(&p.mqtt.url, p.mqtt.embedded_port).map_err(|problem| {
        invalid(
            file,
            "mqtt.url",
            problem,
            "use \"mqtt://host:1883\", \"mqtts://host:8883\" or \"embedded\"",
        )
    })?;
    if p.mqtt.client_cert.is_some() != p.mqtt.client_key.is_some() {
        return Err(invalid(
            file,
            "mqtt.client_cert",
            "client_cert and client_key must be given together",
            "set both mqtt.client_cert and mqtt.client_key, or neither",
        ));
    }
    check_range(
        file,
        "mqtt.max_packet_bytes",
        p.mqtt.max_packet_bytes,
        64 << 10,
        256 << 20,
    )?;
    check_range(file, "mqtt.keep_alive_s", p.mqtt.keep_alive_s, 5, 3600)?;

    let d = &p.detector;
    check_range(file, "detector.threads", d.threads, 1, 64)?;
    check_range(file, "detector.workers", d.workers, 1, 64)?;
    check_range(file, "detector.threshold", d.threshold, 0.0, 1.0)?;
    check_range(file, "detector.nms_iou", d.nms_iou, 0.0, 1.0)?;
    for (k, v) in &d.class_thresholds {
        check_range(
            file,
            &format!("detector.class_thresholds.{k}"),
            *v,
            0.0,
            1.0,
        )?;
    }
    if let Some(c) = &d.classes
        && c.is_empty()
    {
        return Err(invalid(
            file,
            "detector.classes",
            "the list is empty, so nothing would ever be detected",
            "list at least one class name, or remove the field for the default (person, bicycle, car, motorcycle, bus, truck)",
        ));
    }

    let t = &p.tracker;
    check_range(file, "tracker.high_thresh", t.high_thresh, 0.0, 1.0)?;
    check_range(file, "tracker.low_thresh", t.low_thresh, 0.0, t.high_thresh)?;
    check_range(
        file,
        "tracker.new_track_thresh",
        t.new_track_thresh,
        0.0,
        1.0,
    )?;
    check_range(file, "tracker.match_iou", t.match_iou, 0.01, 1.0)?;

    let e = &p.events;
    check_range(file, "events.min_hits", e.min_hits, 1, 1000)?;
    check_range(file, "events.end_after_s", e.end_after_s, 0.1, 3600.0)?;
    check_range(
        file,
        "events.update_min_interval_s",
        e.update_min_interval_s,
        0.0,
        86400.0,
    )?;
    check_range(
        file,
        "events.snapshot_improvement",
        e.snapshot_improvement,
        0.0,
        100.0,
    )?;

    let s = &p.snapshot;
    check_range(file, "snapshot.max_height", s.max_height, 32, 4320)?;
    check_range(file, "snapshot.quality", s.quality, 1, 100)?;

    if p.cameras.is_empty() {
        return Err(invalid(
            file,
            "cameras",
            "no camera is configured",
            "add at least one [[cameras]] table with id, url and detect_fps",
        ));
    }
    if p.cameras.len() > MAX_CAMERAS {
        return Err(invalid(
            file,
            "cameras",
            format!(
                "{} cameras are configured, more than the limit of {MAX_CAMERAS} per node",
                p.cameras.len()
            ),
            format!("split the cameras over several nodes, at most {MAX_CAMERAS} each"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in p.cameras.iter().enumerate() {
        let f = |name: &str| format!("cameras[{i}].{name}");
        check_id(file, &f("id"), &c.id)?;
        if !seen.insert(c.id.as_str()) {
            return Err(invalid(
                file,
                f("id"),
                format!("camera id {:?} is used twice", c.id),
                "give every camera its own id",
            ));
        }
        if c.url.trim().is_empty() {
            return Err(invalid(
                file,
                f("url"),
                "the url is empty",
                "give an rtsp://, http(s)://, file:// URL, a path or /dev/videoN",
            ));
        }
        check_range(file, &f("detect_fps"), c.detect_fps, 0.1, 60.0)?;
        check_range(file, &f("max_height"), c.max_height, 64, 4320)?;
        check_range(file, &f("watchdog_s"), c.watchdog_s, 1.0, 3600.0)?;
        check_range(
            file,
            &f("backoff_initial_s"),
            c.backoff_initial_s,
            0.05,
            3600.0,
        )?;
        check_range(
            file,
            &f("backoff_max_s"),
            c.backoff_max_s,
            c.backoff_initial_s,
            86400.0,
        )?;
        check_range(file, &f("queue"), c.queue, 1, 64)?;
        validate_rules(file, i, c)?;
        for (k, poly) in c.privacy_masks.iter().enumerate() {
            let field = format!("cameras[{i}].privacy_masks[{k}]");
            if poly.len() < 3 {
                return Err(invalid(
                    file,
                    field,
                    format!("a mask needs at least 3 points, got {}", poly.len()),
                    "give the polygon's corners as [[x, y], ...] in 0..1 of the frame",
                ));
            }
            if poly
                .iter()
                .flatten()
                .any(|v| !(v.is_finite() && (0.0..=1.0).contains(v)))
            {
                return Err(invalid(
                    file,
                    field,
                    "a point lies outside 0..1",
                    "coordinates are fractions of the frame width and height, from 0 to 1",
                ));
            }
        }
    }
    if let Some(t) = p.privacy.face_threshold {
        check_range(file, "privacy.face_threshold", t, 0.01, 1.0)?;
    }
    if let Some(m) = p.privacy.face_max_side {
        check_range(file, "privacy.face_max_side", m, 32, 4096)?;
    }
    let r = &p.rules;
    check_range(
        file,
        "rules.counts_interval_s",
        r.counts_interval_s,
        0.1,
        86400.0,
    )?;
    check_range(file, "rules.cooldown_s", r.cooldown_s, 0.0, 86400.0)?;
    if let Some(v) = r.realert_s {
        check_range(file, "rules.realert_s", v, 0.0, 86400.0)?;
    }
    check_range(file, "rules.stationary_s", r.stationary_s, 0.0, 86400.0)?;
    check_range(
        file,
        "rules.stationary_tolerance",
        r.stationary_tolerance,
        0.0,
        1.0,
    )?;
    check_range(file, "rules.handoff_s", r.handoff_s, 0.0, 60.0)?;
    check_range(file, "rules.handoff_speed", r.handoff_speed, 0.0, 100.0)?;
    let o = &p.outbox;
    for (field, v) in [
        ("outbox.quota_mb", o.quota_mb),
        ("outbox.replay_rate", o.replay_rate),
        ("outbox.stats_interval_s", o.stats_interval_s),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(invalid(
                file,
                field,
                format!("{v} is not a positive number"),
                "use a positive number (see docs/outbox.md)",
            ));
        }
    }
    let b = &p.budget;
    for (field, v) in [
        ("budget.snapshot_bytes_per_s", b.snapshot_bytes_per_s),
        ("budget.burst_bytes", b.burst_bytes),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(invalid(
                file,
                field,
                format!("{v} is not a positive number of bytes"),
                "use a positive number (e.g. 20000 for 20 kB/s), or remove [budget] for no limit",
            ));
        }
    }
    if b.burst_bytes.is_some() && b.snapshot_bytes_per_s.is_none() {
        return Err(invalid(
            file,
            "budget.burst_bytes",
            "a burst without a rate",
            "set budget.snapshot_bytes_per_s too (the burst is what may be saved up of that rate)",
        ));
    }
    Ok(())
}

/// Parse `mqtt.url`.
pub fn parse_broker_url(url: &str, embedded_port: u16) -> Result<BrokerUrl, String> {
    if url == "embedded" {
        return Ok(BrokerUrl::Embedded {
            port: embedded_port,
        });
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!("{url:?} has no mqtt:// or mqtts:// scheme"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!(
            "{url:?} must be scheme://host[:port] (credentials come from the environment, not the URL)"
        ));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("{url:?} has an invalid port {p:?}"))?;
            (h.trim_matches(['[', ']']).to_string(), port)
        }
        _ => (rest.to_string(), if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(if tls {
        BrokerUrl::Tls { host, port }
    } else {
        BrokerUrl::Tcp { host, port }
    })
}

/// True for `file://` URLs and plain paths (not devices).
pub fn is_file_url(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    !url.contains("://") && !url.starts_with("/dev/video")
}

/// Resolve a relative path against the config's folder first, then the working directory.
fn resolve(config_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let beside = config_dir.join(p);
    if beside.exists() {
        return beside;
    }
    let cwd = std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf());
    if cwd.exists() { cwd } else { beside }
}

/// Where the bundled model is looked for when `[detector] model` is not set.
pub fn default_model_candidates(config_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![
        config_dir.join("../models").join(DEFAULT_MODEL_FILE),
        PathBuf::from("models").join(DEFAULT_MODEL_FILE),
    ];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        v.push(
            dir.join("../share/edge-node/models")
                .join(DEFAULT_MODEL_FILE),
        );
        v.push(dir.join("../../models").join(DEFAULT_MODEL_FILE));
    }
    v.push(PathBuf::from("/usr/share/edge-node/models").join(DEFAULT_MODEL_FILE));
    v
}

/// Where the face model is looked for when `[privacy] face_model` is not set:
/// the copy `scripts/setup.sh` fetches, then the container's.
pub fn default_face_model(config_dir: &Path) -> PathBuf {
    let name = "centerface_dynamic.onnx";
    let mut v = vec![
        config_dir.join("../third_party/models").join(name),
        PathBuf::from("third_party/models").join(name),
    ];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        v.push(dir.join("../../third_party/models").join(name));
    }
    v.push(PathBuf::from("/usr/share/edge-node/models").join(name));
    v.iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| v[1].clone())
}

/// The bundled model: the first candidate that exists (or the first candidate, for the message).
pub fn default_model(config_dir: &Path) -> PathBuf {
    let c = default_model_candidates(config_dir);
    c.iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| c[1].clone())
}

fn build(file: &Path, raw: PipelineFile) -> Result<Pipeline, ConfigError> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let broker = parse_broker_url(&raw.mqtt.url, raw.mqtt.embedded_port)
        .map_err(|p| invalid(file, "mqtt.url", p, "see the README"))?;
    let node_model = match &raw.detector.model {
        Some(m) => resolve(&dir, m),
        None => default_model(&dir),
    };
    let mut camera_models = Vec::new();
    let mut camera_urls = Vec::new();
    for c in &raw.cameras {
        camera_models.push(
            c.model
                .as_ref()
                .map(|m| resolve(&dir, m))
                .unwrap_or_else(|| node_model.clone()),
        );
        let url = if let Some(p) = c.url.strip_prefix("file://") {
            format!("file://{}", resolve(&dir, Path::new(p)).display())
        } else if is_file_url(&c.url) {
            resolve(&dir, Path::new(&c.url)).display().to_string()
        } else {
            c.url.clone()
        };
        camera_urls.push(url);
    }
    let mut warnings = Vec::new();
    for (field, p, secret) in [
        ("mqtt.ca_file", &raw.mqtt.ca_file, false),
        ("mqtt.client_cert", &raw.mqtt.client_cert, false),
        ("mqtt.client_key", &raw.mqtt.client_key, true),
        ("mqtt.username_file", &raw.mqtt.username_file, false),
        ("mqtt.password_file", &raw.mqtt.password_file, true),
    ] {
        if let Some(p) = p {
            let r = resolve(&dir, p);
            if !r.is_file() {
                return Err(invalid(
                    file,
                    field,
                    format!("{} does not exist or is not a file", r.display()),
                    "give the path of an existing file (relative paths are resolved against the config's folder)",
                ));
            }
            if secret && let Some(w) = secret_file_warning(field, &r) {
                warnings.push(w);
            }
        }
    }
    if matches!(broker, BrokerUrl::Tcp { .. })
        && (raw.mqtt.ca_file.is_some() || raw.mqtt.client_cert.is_some())
    {
        return Err(invalid(
            file,
            "mqtt.url",
            format!(
                "{:?} is plaintext MQTT but TLS files (ca_file / client_cert) are configured",
                raw.mqtt.url
            ),
            "use an mqtts:// URL (a node configured for TLS never falls back to plaintext), \
             or remove the TLS files",
        ));
    }
    if matches!(broker, BrokerUrl::Tls { .. }) && raw.mqtt.ca_file.is_none() {
        return Err(invalid(
            file,
            "mqtt.ca_file",
            "mqtts:// needs a CA file to verify the broker",
            "set mqtt.ca_file to the PEM of the CA that signed the broker's certificate",
        ));
    }
    let onnxruntime = raw.detector.onnxruntime.as_ref().map(|p| resolve(&dir, p));
    let mut raw = raw;
    for p in [
        &mut raw.mqtt.ca_file,
        &mut raw.mqtt.client_cert,
        &mut raw.mqtt.client_key,
        &mut raw.mqtt.username_file,
        &mut raw.mqtt.password_file,
    ]
    .into_iter()
    .flatten()
    {
        *p = resolve(&dir, p);
    }
    let face_model = match &raw.privacy.face_model {
        Some(m) => resolve(&dir, m),
        None => default_face_model(&dir),
    };
    Ok(Pipeline {
        file: file.to_path_buf(),
        raw,
        broker,
        camera_models,
        camera_urls,
        onnxruntime,
        face_model,
        warnings,
    })
}

/// A warning when a secret file can be read by its group or by others
/// (`chmod 600` fixes it). `None` on non-Unix systems or when it is private.
pub fn secret_file_warning(field: &str, path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o044 != 0 {
            return Some(format!(
                "{field}: {} is readable by {} (mode {:o}); run `chmod 600 {}` so only the node's user can read the secret",
                path.display(),
                if mode & 0o004 != 0 {
                    "every user"
                } else {
                    "its group"
                },
                mode & 0o777,
                path.display()
            ));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = (field, path);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[node]
id = "box-1"
district = "hoan-kiem"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "hanoi"
[[cameras]]
id = "cam-1"
url = "rtsp://127.0.0.1:8554/test"
detect_fps = 5
"#;

    fn load(text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::from_str(Path::new("/tmp/x/pipeline.toml"), text)
    }

    #[test]
    fn zones_and_lines_parse_and_bad_geometry_names_the_field() {
        let good = format!(
            "{MIN}\n[[cameras.lines]]\nname = \"gate\"\na = [0.5, 0.9]\nb = [0.5, 0.1]\n\
             alert_direction = \"backward\"\n\
             [[cameras.zones]]\nname = \"sq\"\npolygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n\
             classes = [\"person\", \"unicorn\"]\nloiter_s = 30\n"
        );
        let p = load(&good).unwrap();
        let c = &p.raw.cameras[0];
        assert_eq!((c.lines.len(), c.zones.len()), (1, 1));
        assert_eq!(p.raw.rules.counts_interval_s, 60.0);
        let labels: Vec<String> = ["person", "car"].iter().map(|s| s.to_string()).collect();
        let (rc, unknown) = camera_rules(&p.raw.rules, c, &labels);
        assert!(rc.validate().is_ok());
        assert_eq!(unknown, ["unicorn"]);
        assert_eq!(rc.zones[0].classes, [0].into());
        assert_eq!(rc.zones[0].inertia, 3);
        // No per-rule cooldown given: the rule falls back to `[rules] cooldown_s`.
        assert_eq!(
            (rc.zones[0].cooldown_s, rc.lines[0].cooldown_s),
            (None, None)
        );
        let per_rule = good.replace("loiter_s = 30", "loiter_s = 30\ncooldown_s = 120");
        let p2 = load(&per_rule).unwrap();
        let (rc2, _) = camera_rules(&p2.raw.rules, &p2.raw.cameras[0], &labels);
        assert_eq!(rc2.zones[0].cooldown_s, Some(120.0));

        // (what is wrong, edited text, field the error must name)
        let cases = [
            (
                "point outside 0..1",
                good.replace("[0.5, 0.9]]", "[1.5, 0.9]]"),
                "cameras[0].zones[0].polygon",
            ),
            (
                "fewer than 3 points",
                good.replace(", [0.5, 0.9]]", "]"),
                "cameras[0].zones[0].polygon",
            ),
            (
                "a == b",
                good.replace("b = [0.5, 0.1]", "b = [0.5, 0.9]"),
                "cameras[0].lines[0].b",
            ),
            (
                "duplicate name",
                good.replace("name = \"sq\"", "name = \"gate\""),
                "cameras[0].lines[0].name",
            ),
            (
                "unknown alert direction",
                good.replace("alert_direction = \"backward\"", "alert_direction = \"up\""),
                "cameras[0].lines[0].alert_direction",
            ),
            (
                "zero inertia",
                good.replace("loiter_s = 30", "inertia = 0"),
                "cameras[0].zones[0].inertia",
            ),
            (
                "negative zone cooldown",
                good.replace("loiter_s = 30", "loiter_s = 30\ncooldown_s = -1"),
                "cameras[0].zones[0].cooldown_s",
            ),
            (
                "line cooldown longer than a day",
                good.replace(
                    "alert_direction = \"backward\"",
                    "alert_direction = \"backward\"\ncooldown_s = 1e9",
                ),
                "cameras[0].lines[0].cooldown_s",
            ),
            (
                "zero counts interval",
                format!("{good}\n[rules]\ncounts_interval_s = 0\n"),
                "rules.counts_interval_s",
            ),
        ];
        for (what, text, field) in cases {
            match load(&text) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{what}"),
                other => panic!("{what}: expected an error naming {field}, got {other:?}"),
            }
        }
        // Unknown fields in a zone are refused (deny_unknown_fields).
        assert!(matches!(
            load(&good.replace("loiter_s = 30", "loiter = 30")),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let p = load(MIN).unwrap();
        assert_eq!(
            p.broker,
            BrokerUrl::Tcp {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        let c = &p.raw.cameras[0];
        assert_eq!(c.detect_fps, 5.0);
        assert_eq!(c.queue, 2);
        assert!(c.realtime);
        assert_eq!(p.raw.detector.threshold, 0.35);
        assert!(!p.all_files());
    }

    #[test]
    fn unknown_field_names_field_and_file() {
        let err = load(&MIN.replace("detect_fps = 5", "detect_fps = 5\nfps = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipeline.toml"), "{err}");
        assert!(err.contains("unknown field `fps`"), "{err}");
    }

    #[test]
    fn bad_values_point_at_the_field() {
        let err = load(&MIN.replace("detect_fps = 5", "detect_fps = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cameras[0].detect_fps"), "{err}");
        assert!(err.contains("Fix:"), "{err}");
        let err = load(&MIN.replace("id = \"cam-1\"", "id = \"Cam 1\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cameras[0].id"), "{err}");
        let err = load(&MIN.replace("mqtt://127.0.0.1:1883", "http://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.url"), "{err}");
        let err = load(&MIN.replace(
            "[[cameras]]\nid = \"cam-1\"\nurl = \"rtsp://127.0.0.1:8554/test\"\ndetect_fps = 5\n",
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("cameras"), "{err}");
    }

    #[test]
    fn duplicate_camera_ids_are_refused() {
        let text = format!("{MIN}\n[[cameras]]\nid = \"cam-1\"\nurl = \"a.mp4\"\n");
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains("cameras[1].id") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("embedded", 7),
            Ok(BrokerUrl::Embedded { port: 7 })
        );
        assert_eq!(
            parse_broker_url("mqtts://broker.city:8884", 0),
            Ok(BrokerUrl::Tls {
                host: "broker.city".into(),
                port: 8884
            })
        );
        assert_eq!(
            parse_broker_url("mqtt://h", 0),
            Ok(BrokerUrl::Tcp {
                host: "h".into(),
                port: 1883
            })
        );
        assert!(parse_broker_url("mqtt://u:p@h", 0).is_err());
        assert!(parse_broker_url("mqtt://h:notaport", 0).is_err());
    }

    #[test]
    fn file_urls() {
        assert!(is_file_url("clip.mp4"));
        assert!(is_file_url("file:///a/b.mp4"));
        assert!(!is_file_url("rtsp://h/x"));
        assert!(!is_file_url("/dev/video0"));
    }

    #[cfg(unix)]
    #[test]
    fn password_file_is_checked_and_a_readable_one_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("pipeline.toml");
        let text = MIN.replace(
            "topic_prefix = \"hanoi\"",
            "topic_prefix = \"hanoi\"\npassword_file = \"secret\"",
        );
        // Missing: refused, naming the field.
        let e = Pipeline::from_str(&cfg, &text).unwrap_err().to_string();
        assert!(e.contains("mqtt.password_file"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = Pipeline::from_str(&cfg, &text).unwrap();
        assert_eq!(p.raw.mqtt.password_file.as_deref(), Some(secret.as_path()));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        let w = &p.warnings[0];
        assert!(
            w.contains("mqtt.password_file") && w.contains("chmod 600"),
            "{w}"
        );
        assert!(w.contains("every user"), "{w}");
        assert!(
            !w.contains("hunter2"),
            "the secret itself is never shown: {w}"
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p = Pipeline::from_str(&cfg, &text).unwrap();
        assert!(p.warnings[0].contains("its group"), "{:?}", p.warnings);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = Pipeline::from_str(&cfg, &text).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn budget_is_optional_positive_and_a_burst_needs_a_rate() {
        let dir = Path::new("/tmp/x/p.toml");
        let p = Pipeline::from_str(dir, MIN).unwrap();
        assert_eq!(p.raw.budget.bucket(), None, "no [budget]: no limit");
        let with = |t: &str| format!("{MIN}\n[budget]\n{t}\n");
        let p = Pipeline::from_str(dir, &with("snapshot_bytes_per_s = 20000")).unwrap();
        assert_eq!(
            p.raw.budget.bucket(),
            Some((20000.0, 200000.0)),
            "burst defaults to 10 s of the rate"
        );
        let p = Pipeline::from_str(dir, &with("snapshot_bytes_per_s = 1000")).unwrap();
        assert_eq!(
            p.raw.budget.bucket(),
            Some((1000.0, 65536.0)),
            "at least 64 KiB"
        );
        for (text, field) in [
            ("snapshot_bytes_per_s = 0", "budget.snapshot_bytes_per_s"),
            ("snapshot_bytes_per_s = -5", "budget.snapshot_bytes_per_s"),
            (
                "snapshot_bytes_per_s = 100\nburst_bytes = 0",
                "budget.burst_bytes",
            ),
            ("burst_bytes = 1000", "budget.burst_bytes"),
        ] {
            let e = Pipeline::from_str(dir, &with(text))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = Pipeline::from_str(dir, &with("bytes_per_s = 5"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes_per_s"), "unknown fields are refused: {e}");
    }

    #[test]
    fn tls_files_with_a_plaintext_url_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let text = MIN.replace(
            "topic_prefix = \"hanoi\"",
            "topic_prefix = \"hanoi\"\nca_file = \"ca.pem\"",
        );
        let e = Pipeline::from_str(&dir.path().join("p.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mqtt.url") && e.contains("plaintext") && e.contains("mqtts://"),
            "{e}"
        );
        let ok = text.replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883");
        Pipeline::from_str(&dir.path().join("p.toml"), &ok).unwrap();
    }
}
