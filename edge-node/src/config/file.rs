//! The file's layout: one serde struct per TOML table, with the defaults of
//! every field. Each default number is written once: fields that map onto a
//! runtime option struct default to that struct's `Default`; the others to a
//! const or `d_*` function here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::detect::{DetectorOptions, InputBudget};
use crate::events::EventConfig;
use crate::idle::IdleConfig;
use crate::rules::RulesConfig;
use crate::snapshot::SnapshotOptions;
use crate::source::{MainStreamOptions, SourceOptions};
use crate::tamper::TamperConfig;
use crate::track::TrackerConfig;
use crate::traffic::TrafficConfig;

/// `[rules] counts_interval_s`: seconds between two counts messages.
pub const DEFAULT_COUNTS_INTERVAL_S: f64 = 60.0;
/// `[[cameras.zones]] inertia`: analysed frames in (out) before an object counts as in (out).
pub const DEFAULT_ZONE_INERTIA: u32 = 3;
/// `[[cameras.zones]] crowd_for_s` and `crowd_clear_s`.
pub const DEFAULT_CROWD_FOR_S: f64 = 10.0;
/// `[[cameras.lines]] hysteresis`: dead band either side of a line, fraction of the frame.
pub const DEFAULT_LINE_HYSTERESIS: f32 = 0.02;
/// `[detector] workers`: inference threads per model.
pub const DEFAULT_WORKERS: usize = 1;
/// `[[cameras]] queue`: frames waiting for the detector.
pub const DEFAULT_QUEUE: usize = 2;
/// `[cameras.tamper] enabled`: the tamper checks run unless switched off.
pub const DEFAULT_TAMPER_ENABLED: bool = true;

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
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[metrics]`: the Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`).
/// Absent: not served.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `address:port` to listen on, e.g. `127.0.0.1:9464`; a non-loopback
    /// address is served but warned about.
    #[serde(default)]
    pub listen: Option<String>,
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
    /// Seconds between refreshes of each camera's retained status (live figures).
    #[serde(default = "d_status_interval_s")]
    pub status_interval_s: f64,
    /// The node is unhealthy once its broker has been unreachable this long
    /// while its outbox grows.
    #[serde(default = "d_broker_unhealthy_s")]
    pub broker_unhealthy_s: f64,
    /// The node is unhealthy once frames have waited this long with no
    /// inference worker finishing any.
    #[serde(default = "d_stall_unhealthy_s")]
    pub stall_unhealthy_s: f64,
    /// Video decoders the cameras may use: `auto` (hardware first, software
    /// otherwise), `software`, `vaapi`, `nvdec` or `v4l2`. Cameras may override it.
    #[serde(default = "d_decoder")]
    pub decoder: String,
}

fn d_status_interval_s() -> f64 {
    30.0
}
fn d_broker_unhealthy_s() -> f64 {
    300.0
}
fn d_stall_unhealthy_s() -> f64 {
    60.0
}
fn d_decoder() -> String {
    SourceOptions::default().decoder.name().to_string()
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

/// `input_pixels = 173056` or `input_pixels = "detailed"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum InputPixels {
    Count(u64),
    Name(String),
}

impl InputPixels {
    /// The budget it names, or what is wrong with it.
    pub fn budget(&self) -> Result<InputBudget, String> {
        match self {
            InputPixels::Count(n) => InputBudget::pixels(u32::try_from(*n).unwrap_or(u32::MAX)),
            InputPixels::Name(s) => InputBudget::parse(s),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    /// ONNX model path; relative paths are resolved against the config file's folder, then the
    /// working directory. Default: the bundled NanoDet-g 416.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per inference worker.
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Inference worker threads per model (each owns one ONNX Runtime session).
    #[serde(default = "d_workers")]
    pub workers: usize,
    /// Let ONNX Runtime's worker threads spin while idle (steals CPU from decoding; off by default).
    #[serde(default = "d_spinning")]
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
    /// Groups of classes the model confuses on one object (cross-class NMS
    /// after the detector, see `traffic.rs`); `[]` turns merging off.
    #[serde(default = "d_merge_classes")]
    pub merge_classes: Vec<Vec<String>>,
    /// IoU above which two boxes of one `merge_classes` group are one object.
    #[serde(default = "d_merge_iou")]
    pub merge_iou: f32,
    /// Fold a `person` riding a `motorcycle` or `bicycle` into the vehicle.
    #[serde(default = "d_pair_riders")]
    pub pair_riders: bool,
    /// Count an unpaired `person` with a seated rider's proportions whose
    /// foot point lies in one of its camera's `road_zones` as a motorcycle
    /// with one rider (the bike was not detected). Cameras without road
    /// zones are not affected.
    #[serde(default)]
    pub lone_riders: bool,
    /// Input pixel budget of models with dynamic input: a count (173056 =
    /// 416x416), `"standard"` (the model's declared size's pixels, the
    /// default), `"detailed"` (2x), `"maximum"` (5x), or `"model"` (the
    /// declared size, stretched or letterboxed as the manifest says).
    /// Frames keep their aspect ratio. Cameras may override it.
    #[serde(default)]
    pub input_pixels: Option<InputPixels>,
    /// Also detect on overlapping tiles at the analysed frame's own
    /// resolution (small, far objects; costs one inference per tile).
    /// Cameras may override it.
    #[serde(default)]
    pub tiles: bool,
    /// Path of `libonnxruntime.so`; default: `ORT_DYLIB_PATH`, then the usual places.
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// ONNX Runtime execution provider for every model of the node: `cpu`
    /// (default), `openvino`, `cuda` or `tensorrt`. Node-wide: one ONNX
    /// Runtime library per process, and the others come with their own
    /// (`scripts/fetch-onnxruntime.sh --flavour openvino|gpu`).
    #[serde(default = "d_provider")]
    pub provider: String,
    /// The provider's device: OpenVINO `CPU` (default), `GPU`, `NPU`, …;
    /// a CUDA device number (default 0) for `cuda` and `tensorrt`.
    #[serde(default)]
    pub provider_device: Option<String>,
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
    #[serde(default = "d_crop")]
    pub crop: bool,
    #[serde(default = "d_draw_box")]
    pub draw_box: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// Camera id, used in MQTT topics: `[a-z0-9_-]`, 1..64 chars.
    pub id: String,
    /// `rtsp://…`, `http(s)://…`, `file://…`, a plain path, or a v4l2 device (`/dev/video0`).
    pub url: String,
    /// Dual-stream camera: the sub-stream that is decoded and analysed;
    /// `url` (the main stream) is then only received, and decoded on
    /// demand for full-resolution snapshots. Same credentials as `url`.
    #[serde(default)]
    pub detect_url: Option<String>,
    /// Dual-stream cameras: seconds of the main stream kept (whole GOPs).
    #[serde(default = "d_main_ring_s")]
    pub main_ring_s: f64,
    /// Dual-stream cameras: most MiB of the main stream kept.
    #[serde(default = "d_main_ring_mib")]
    pub main_ring_mib: u32,
    /// Dual-stream cameras: a main-stream frame farther than this from the
    /// analysed frame is no match (the snapshot uses the analysed frame).
    #[serde(default = "d_match_tolerance_s")]
    pub match_tolerance_s: f64,
    #[serde(default = "d_detect_fps")]
    pub detect_fps: f64,
    /// Frames are downscaled (never upscaled) to at most this height before analysis.
    #[serde(default = "d_frame_height")]
    pub max_height: u32,
    /// Files only: play at the clip's own frame rate (true) or as fast as possible (false).
    #[serde(default = "d_realtime")]
    pub realtime: bool,
    /// Files only: start again at the end instead of ending.
    #[serde(default = "d_loop", rename = "loop")]
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
    /// This camera's input pixel budget; default: `[detector] input_pixels`.
    #[serde(default)]
    pub input_pixels: Option<InputPixels>,
    /// Tiled detection for this camera; default: `[detector] tiles`.
    #[serde(default)]
    pub tiles: Option<bool>,
    #[serde(default)]
    pub zones: Vec<ZoneSection>,
    #[serde(default)]
    pub lines: Vec<LineSection>,
    /// Privacy masks: polygons in normalised 0..1 frame coordinates, filled
    /// black in every image that leaves the box.
    #[serde(default)]
    pub privacy_masks: Vec<Vec<[f32; 2]>>,
    /// Ignore zones: polygons in normalised 0..1 frame coordinates; a
    /// detection whose foot point (bottom-centre) lies in one is dropped
    /// before tracking (and counted).
    #[serde(default)]
    pub ignore_zones: Vec<Vec<[f32; 2]>>,
    /// Where the road is: polygons in normalised 0..1 frame coordinates,
    /// for `[detector] lone_riders`.
    #[serde(default)]
    pub road_zones: Vec<Vec<[f32; 2]>>,
    /// Blur faces (CenterFace) in every snapshot before it is encoded. If the
    /// face model cannot be used, this camera's snapshots are withheld (its
    /// events still go) and its status says why.
    #[serde(default)]
    pub blur_faces: bool,
    /// File holding the camera's user name (one line; surrounding whitespace
    /// trimmed). Handed to the RTSP/HTTP source, never put into a printed URL.
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// File holding the camera's password (one line; a trailing newline is
    /// dropped), e.g. a Docker or systemd secret. The loader warns when group
    /// or others can read it. A URL that carries a password too is refused.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the camera's user name (`username_file` wins).
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable holding the camera's password (`password_file` wins).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Camera tamper and picture-quality alarms (frozen, black, blurred, moved).
    #[serde(default)]
    pub tamper: TamperSection,
    /// This camera's decoder choice; default: `[node] decoder`.
    #[serde(default)]
    pub decoder: Option<String>,
    /// Threads per software decoder (FFmpeg `max-threads`); 0: FFmpeg's
    /// automatic count (one per core, and a frame of delay per thread).
    #[serde(default = "d_decoder_threads")]
    pub decoder_threads: u32,
    /// While the camera is idle (no tracked object, no scene change for
    /// `idle_after_s`): `keyframes` decodes keyframes only, `full` every
    /// frame; `auto` is `keyframes` for live cameras and `full` for files.
    #[serde(default = "d_idle_decode")]
    pub idle_decode: String,
    /// Seconds of media time without a tracked object or a scene change
    /// before the camera counts as idle.
    #[serde(default = "d_idle_after")]
    pub idle_after_s: f64,
}

/// `[cameras.tamper]`: the camera's tamper checks (see `tamper.rs`);
/// defaults from [`TamperConfig::default`].
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TamperSection {
    #[serde(default = "d_tamper_enabled")]
    pub enabled: bool,
    /// Seconds of media time between two checks (one thumbnail each).
    #[serde(default = "d_tamper_interval")]
    pub interval_s: f64,
    /// Seconds from the start during which the sharpness and the scene are learned.
    #[serde(default = "d_tamper_learn")]
    pub learn_s: f64,
    /// Seconds `black`, `blurred` or `moved` must last before it is raised.
    #[serde(default = "d_tamper_raise")]
    pub raise_after_s: f64,
    /// Seconds `frozen` must last before it is raised.
    #[serde(default = "d_tamper_frozen")]
    pub frozen_after_s: f64,
    /// Seconds a raised condition must be gone before it clears.
    #[serde(default = "d_tamper_clear")]
    pub clear_after_s: f64,
    /// Fraction of the picture height ignored at the top (a clock overlay).
    #[serde(default = "d_tamper_top")]
    pub ignore_top: f32,
    /// Fraction of the picture height ignored at the bottom.
    #[serde(default = "d_tamper_bottom")]
    pub ignore_bottom: f32,
    /// Share of pixels that changed between two checks under which the picture is frozen.
    #[serde(default = "d_tamper_frozen_change")]
    pub frozen_change: f32,
    /// Grey-level standard deviation under which the picture is uniform (covered).
    #[serde(default = "d_tamper_black_std")]
    pub black_std: f32,
    /// Mean grey level under which the picture is black.
    #[serde(default = "d_tamper_black_level")]
    pub black_level: f32,
    /// Sharpness against the learned baseline under which the picture is blurred.
    #[serde(default = "d_tamper_blur_ratio")]
    pub blur_ratio: f32,
    /// Share of textured cells no longer matching the learned scene: moved.
    #[serde(default = "d_tamper_moved_fraction")]
    pub moved_fraction: f32,
}

impl Default for TamperSection {
    fn default() -> Self {
        Self {
            enabled: d_tamper_enabled(),
            interval_s: d_tamper_interval(),
            learn_s: d_tamper_learn(),
            raise_after_s: d_tamper_raise(),
            frozen_after_s: d_tamper_frozen(),
            clear_after_s: d_tamper_clear(),
            ignore_top: d_tamper_top(),
            ignore_bottom: d_tamper_bottom(),
            frozen_change: d_tamper_frozen_change(),
            black_std: d_tamper_black_std(),
            black_level: d_tamper_black_level(),
            blur_ratio: d_tamper_blur_ratio(),
            moved_fraction: d_tamper_moved_fraction(),
        }
    }
}

fn d_tamper_enabled() -> bool {
    DEFAULT_TAMPER_ENABLED
}
fn d_tamper_interval() -> f64 {
    TamperConfig::default().interval_s
}
fn d_tamper_learn() -> f64 {
    TamperConfig::default().learn_s
}
fn d_tamper_raise() -> f64 {
    TamperConfig::default().raise_after_s
}
fn d_tamper_frozen() -> f64 {
    TamperConfig::default().frozen_after_s
}
fn d_tamper_clear() -> f64 {
    TamperConfig::default().clear_after_s
}
fn d_tamper_top() -> f32 {
    TamperConfig::default().ignore_top
}
fn d_tamper_bottom() -> f32 {
    TamperConfig::default().ignore_bottom
}
fn d_tamper_frozen_change() -> f32 {
    TamperConfig::default().frozen_change
}
fn d_tamper_black_std() -> f32 {
    TamperConfig::default().black_std
}
fn d_tamper_black_level() -> f32 {
    TamperConfig::default().black_level
}
fn d_tamper_blur_ratio() -> f32 {
    TamperConfig::default().blur_ratio
}
fn d_tamper_moved_fraction() -> f32 {
    TamperConfig::default().moved_fraction
}

fn d_counts_interval() -> f64 {
    DEFAULT_COUNTS_INTERVAL_S
}
fn d_cooldown() -> f64 {
    RulesConfig::default().cooldown_s
}
fn d_stationary() -> f64 {
    RulesConfig::default().stationary_s
}
fn d_stationary_tol() -> f32 {
    RulesConfig::default().stationary_tolerance
}
fn d_handoff() -> f64 {
    RulesConfig::default().handoff_s
}
fn d_handoff_speed() -> f32 {
    RulesConfig::default().handoff_speed
}
fn d_inertia() -> u32 {
    DEFAULT_ZONE_INERTIA
}
fn d_crowd_for() -> f64 {
    DEFAULT_CROWD_FOR_S
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
    DEFAULT_LINE_HYSTERESIS
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
fn d_threads() -> usize {
    DetectorOptions::default().intra_threads
}
fn d_provider() -> String {
    crate::detect::Provider::default().as_str().into()
}
fn d_workers() -> usize {
    DEFAULT_WORKERS
}
fn d_spinning() -> bool {
    DetectorOptions::default().spinning
}
fn d_threshold() -> f32 {
    DetectorOptions::default().threshold
}
fn d_nms_iou() -> f32 {
    DetectorOptions::default().nms_iou
}
fn d_merge_classes() -> Vec<Vec<String>> {
    TrafficConfig::default().merge_classes
}
fn d_merge_iou() -> f32 {
    TrafficConfig::default().merge_iou
}
fn d_pair_riders() -> bool {
    TrafficConfig::default().pair_riders
}
fn d_high() -> f32 {
    TrackerConfig::default().high_thresh
}
fn d_low() -> f32 {
    TrackerConfig::default().low_thresh
}
fn d_new_track() -> f32 {
    TrackerConfig::default().new_track_thresh
}
fn d_match_iou() -> f32 {
    TrackerConfig::default().match_iou
}
fn d_min_hits() -> u32 {
    EventConfig::default().min_hits
}
fn d_end_after() -> f64 {
    EventConfig::default().end_after_s
}
fn d_update_interval() -> f64 {
    EventConfig::default().update_min_interval_s
}
fn d_improvement() -> f32 {
    EventConfig::default().snapshot_improvement
}
fn d_max_updates() -> u32 {
    EventConfig::default().max_updates
}
fn d_snap_height() -> u32 {
    SnapshotOptions::default().max_height
}
fn d_quality() -> u8 {
    SnapshotOptions::default().quality
}
fn d_crop() -> bool {
    SnapshotOptions::default().crop
}
fn d_draw_box() -> bool {
    SnapshotOptions::default().draw_box
}
fn d_realtime() -> bool {
    SourceOptions::default().realtime
}
fn d_loop() -> bool {
    SourceOptions::default().loop_file
}
fn d_detect_fps() -> f64 {
    SourceOptions::default().detect_fps
}
fn d_frame_height() -> u32 {
    SourceOptions::default().max_height
}
fn d_watchdog() -> f64 {
    SourceOptions::default().watchdog_s
}
fn d_backoff_initial() -> f64 {
    SourceOptions::default().backoff_initial_s
}
fn d_backoff_max() -> f64 {
    SourceOptions::default().backoff_max_s
}
fn d_main_ring_s() -> f64 {
    MainStreamOptions::default().ring_s
}
fn d_main_ring_mib() -> u32 {
    u32::try_from(MainStreamOptions::default().ring_bytes >> 20).unwrap_or(u32::MAX)
}
fn d_match_tolerance_s() -> f64 {
    MainStreamOptions::default().tolerance_s
}
fn d_queue() -> usize {
    DEFAULT_QUEUE
}
fn d_decoder_threads() -> u32 {
    SourceOptions::default().decoder_threads
}
fn d_idle_decode() -> String {
    "auto".to_string()
}
fn d_idle_after() -> f64 {
    IdleConfig::default().after_s
}

impl Default for DetectorSection {
    fn default() -> Self {
        Self {
            model: None,
            threads: d_threads(),
            workers: d_workers(),
            spinning: d_spinning(),
            threshold: d_threshold(),
            class_thresholds: BTreeMap::new(),
            classes: None,
            nms_iou: d_nms_iou(),
            merge_classes: d_merge_classes(),
            merge_iou: d_merge_iou(),
            pair_riders: d_pair_riders(),
            lone_riders: false,
            input_pixels: None,
            tiles: false,
            onnxruntime: None,
            provider: d_provider(),
            provider_device: None,
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
            crop: d_crop(),
            draw_box: d_draw_box(),
        }
    }
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
    /// Seconds a delivered lifecycle event (with its snapshot) is kept, so
    /// that the centre can ask for it again (replay requests); 0: not kept.
    /// Kept records count against `quota_mb` and are evicted first.
    #[serde(default = "d_outbox_keep_delivered_s")]
    pub keep_delivered_s: f64,
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
fn d_outbox_keep_delivered_s() -> f64 {
    86400.0
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            dir: None,
            quota_mb: d_outbox_quota_mb(),
            replay_rate: d_outbox_replay_rate(),
            stats_interval_s: d_outbox_stats_s(),
            keep_delivered_s: d_outbox_keep_delivered_s(),
        }
    }
}
