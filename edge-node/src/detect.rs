//! Object detection: the only module that touches ONNX Runtime (`ort`).
//!
//! A [`Detector`] owns one ONNX Runtime session plus every buffer a frame
//! needs, so the streaming path allocates nothing but the returned
//! `Vec<Detection>`. It is `Send`, not shared: `Session::run` takes
//! `&mut self`, so each inference thread owns its own detector.
//!
//! Per frame: [`preprocess`] (resize + normalise into the reused input
//! tensor) -> `Session::run` -> the family's decoder in [`decode`] (boxes in
//! model-input pixels) -> class-aware [`nms`] -> map back to source pixels,
//! clamp, cap at `max_detections`. The pure parts live in submodules and are
//! re-exported here so benches and tests can call them without a model.
//!
//! What a model *is* (family, input size, colour order, normalisation,
//! class names) is resolved once at load time by [`spec`] and checked
//! against the model's real inputs and outputs.

pub mod decode;
pub mod detr;
pub mod end2end;
pub mod face;
pub mod geometry;
pub mod inspect;
pub mod preprocess;
pub mod provider;
pub mod spec;
pub mod tiles;
pub mod yolox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ndarray::{Array4, ArrayView4};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::frame::Detection;

pub use decode::{
    ClassGate, InputTransform, NanoDetLevel, YoloScratch, any_above, argmax_first, decode_nanodet,
    decode_yolov8, nms, softmax_expectation,
};
pub use detr::{DetrTensors, decode_detr};
pub use end2end::{decode_nms_rows, decode_tfod, decode_yolo_end2end};
pub use face::{CenterFaceMaps, FaceDetector, decode_centerface, face_input_size};
pub use geometry::{Analysis, InputBudget, Sizing, aspect_size};
pub use inspect::{IoReport, ModelReport, PreprocessReport, file_sha256, inspect};
pub use preprocess::{PreprocessConfig, Preprocessor, ResizeFilter, SimdLevel, letterbox_geometry};
pub use provider::Provider;
pub use spec::{
    ColorOrder, Family, Manifest, ModelSpec, NanoDetLevelSpec, NmsColumns, OutputLayout,
    ResizeMode, ScoreKind, SpecSource, TensorInfo, describe_io, family_defaults, family_fits,
    infer_family, parse_names, resolve_spec, yolox_cells,
};
pub use yolox::decode_yolox;

/// The traffic-relevant COCO classes, the product's default class filter.
pub const DEFAULT_CLASSES: &[&str] = &["person", "bicycle", "car", "motorcycle", "bus", "truck"];

/// Everything that can go wrong in this module, each variant naming the
/// thing at fault so the operator can fix it without reading code.
#[derive(thiserror::Error, Debug)]
pub enum DetectError {
    #[error(
        "ONNX Runtime library not found or not loadable; tried: {}. Set ORT_DYLIB_PATH or run scripts/fetch-onnxruntime.sh",
        tried.join("; ")
    )]
    RuntimeNotFound { tried: Vec<String> },
    #[error(
        "provider {provider}: no ONNX Runtime library with the {provider} execution provider found; tried: {}. Run {}, or point detector.onnxruntime (or ORT_DYLIB_PATH) at such a libonnxruntime.so",
        tried.join("; "),
        provider.fetch_hint()
    )]
    ProviderLibrary {
        provider: Provider,
        tried: Vec<String>,
    },
    #[error("provider {provider} cannot run here: {reason}")]
    ProviderUnavailable { provider: Provider, reason: String },
    #[error("ONNX Runtime failed to start: {0}")]
    Runtime(String),
    #[error("cannot read model {}: {source}", path.display())]
    ModelRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model {} is not a valid ONNX model: {reason}", path.display())]
    ModelInvalid { path: PathBuf, reason: String },
    #[error("model manifest {} is invalid: {reason}", path.display())]
    ManifestInvalid { path: PathBuf, reason: String },
    #[error(
        "model {} fits no known detector family (nanodet: cls_sN/reg_sN pairs; yolov8/v5u/11: one [1,4+nc,N]; yolo-e2e (v10/26): one [1,K,6]; yolox: [1,N,5+nc] over the stride 8/16/32 grid; detr: [1,K,4+nc] with K <= 1000 or [1,K,4] + [1,K,nc]; nms: [N,7]; tfod: *boxes*/*scores*/*classes*; or name one with `family` in <model>.json); found {found}",
        path.display()
    )]
    UnknownFamily { path: PathBuf, found: String },
    #[error("model {} does not match its description: expected {expected}, found {found}", path.display())]
    SpecMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("unknown class {name:?}; the model knows {known}")]
    UnknownClass { name: String, known: String },
    #[error("invalid detector option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("bad frame {width}x{height} with {len} bytes: {reason}")]
    BadFrame {
        width: u32,
        height: u32,
        len: usize,
        reason: String,
    },
    #[error(
        "no frame was pre-processed into this input buffer (FramePrep::prepare must succeed first)"
    )]
    NotPrepared,
    #[error("input tensor has shape {found:?}, expected {expected:?} (standard layout)")]
    BadTensor {
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("model output {output} has an unexpected shape: expected {expected}, found {found}")]
    OutputShape {
        output: String,
        expected: String,
        found: String,
    },
}

/// Where to find `libonnxruntime.so`, and which execution provider the
/// process's sessions register.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Explicit library path (`[detector] onnxruntime`). `None`:
    /// `ORT_DYLIB_PATH`, then the provider's flavour under `third_party/`
    /// and `/opt/` ([`provider::search_paths`]). For a provider other than
    /// `cpu`, a library counts only with the provider's own library next to
    /// it, so a CPU-only `ORT_DYLIB_PATH` is passed over.
    pub dylib: Option<PathBuf>,
    /// `[detector] provider`: process-wide, like the library.
    pub provider: Provider,
    /// `[detector] provider_device`: the OpenVINO device (`CPU`, `GPU`,
    /// `NPU`, …) or the CUDA device number; `None`: the provider's default.
    pub device: Option<String>,
}

struct Runtime {
    env: Environment,
    version: String,
    path: PathBuf,
    provider: Provider,
    device: Option<String>,
}

/// ONNX Runtime allows one environment per process, even after the first is
/// dropped, so it lives in a static for the life of the process.
static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serialises first-time initialisation (a failed attempt may be retried).
static INIT: Mutex<()> = Mutex::new(());

fn candidate_paths(opts: &RuntimeOptions) -> Vec<PathBuf> {
    if let Some(p) = &opts.dylib {
        return vec![p.clone()];
    }
    let env = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let cwd = std::env::current_dir().ok();
    provider::search_paths(opts.provider, env, cwd.as_deref())
}

/// The libraries [`init_runtime`] would try for `opts`, in order: those
/// that exist and, for a provider other than `cpu`, have the provider's
/// library next to them. Looks at files only (loads nothing), so it can
/// say what is missing even after another library was loaded.
pub fn library_candidates(opts: &RuntimeOptions) -> Result<Vec<PathBuf>, DetectError> {
    let mut tried = Vec::new();
    let mut ok = Vec::new();
    for path in candidate_paths(opts) {
        match provider::usable_for(opts.provider, &path) {
            Ok(()) => ok.push(path),
            Err(why) => tried.push(format!("{} ({why})", path.display())),
        }
    }
    if ok.is_empty() {
        return Err(not_found(opts.provider, tried));
    }
    Ok(ok)
}

fn not_found(provider: Provider, tried: Vec<String>) -> DetectError {
    if provider == Provider::Cpu {
        DetectError::RuntimeNotFound { tried }
    } else {
        DetectError::ProviderLibrary { provider, tried }
    }
}

/// Loads ONNX Runtime and creates the process-wide environment.
///
/// Idempotent (later calls return `Ok` without looking at the library
/// options; a later call asking for another provider than `cpu`, the
/// default, is refused, as one process runs one library) and never panics:
/// a missing library is [`DetectError::RuntimeNotFound`] (or, for another
/// provider, [`DetectError::ProviderLibrary`]) listing every path tried, so
/// the node can report it instead of aborting.
pub fn init_runtime(opts: &RuntimeOptions) -> Result<(), DetectError> {
    if let Some(rt) = RUNTIME.get() {
        return already_loaded(rt, opts);
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return already_loaded(rt, opts);
    }
    let mut tried = Vec::new();
    for path in candidate_paths(opts) {
        if let Err(why) = provider::usable_for(opts.provider, &path) {
            tried.push(format!("{} ({why})", path.display()));
            continue;
        }
        let builder = match ort::init_from(&path) {
            Ok(b) => b,
            Err(e) => {
                tried.push(format!("{} ({e})", path.display()));
                continue;
            }
        };
        let env = builder
            .with_name("edge-node")
            .with_telemetry(false)
            .build()
            .map_err(|e| DetectError::Runtime(e.to_string()))?;
        let version = version_of(&path);
        tracing::info!(path = %path.display(), version = %version, provider = %opts.provider, "ONNX Runtime loaded");
        // Cannot already be set: we hold the init lock and checked above.
        let _ = RUNTIME.set(Runtime {
            env,
            version,
            path,
            provider: opts.provider,
            device: opts.device.clone(),
        });
        return Ok(());
    }
    Err(not_found(opts.provider, tried))
}

fn already_loaded(rt: &Runtime, opts: &RuntimeOptions) -> Result<(), DetectError> {
    if opts.provider == Provider::Cpu || opts.provider == rt.provider {
        return Ok(());
    }
    Err(DetectError::ProviderUnavailable {
        provider: opts.provider,
        reason: format!(
            "this process already runs ONNX Runtime {} with the {} provider (one library per process); restart it",
            rt.path.display(),
            rt.provider
        ),
    })
}

/// The execution provider of the loaded runtime, `None` before
/// [`init_runtime`].
pub fn runtime_provider() -> Option<Provider> {
    RUNTIME.get().map(|r| r.provider)
}

/// Version of the loaded ONNX Runtime, `None` before [`init_runtime`].
pub fn runtime_version() -> Option<String> {
    RUNTIME.get().map(|r| r.version.clone())
}

/// Path of the loaded ONNX Runtime library, `None` before [`init_runtime`].
pub fn runtime_path() -> Option<PathBuf> {
    RUNTIME.get().map(|r| r.path.clone())
}

/// ORT's build-info string carries the release branch (`git-branch=rel-1.32.0`);
/// fall back to the versioned file name the symlink points to.
fn version_of(path: &Path) -> String {
    let info = ort::info();
    if let Some(v) = info
        .split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
        .filter(|v| !v.is_empty())
    {
        return v.to_string();
    }
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    resolved
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(".so.").map(|(_, v)| v.to_string()))
        .unwrap_or_else(|| info.trim().to_string())
}

/// How to build a [`Detector`].
#[derive(Clone, Debug)]
pub struct DetectorOptions {
    pub model: PathBuf,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default: all cores).
    pub intra_threads: usize,
    /// Let ORT worker threads busy-wait between ops. Off by default: on a
    /// 2-core box spinning steals CPU from the video decoders.
    pub spinning: bool,
    /// Score threshold (strictly above) for classes without their own.
    pub threshold: f32,
    /// Per-class thresholds by class name.
    pub class_thresholds: HashMap<String, f32>,
    /// Classes to report, by name; `None` = all classes of the model.
    pub classes: Option<Vec<String>>,
    /// IoU above which a lower-scored box of the same class is dropped.
    pub nms_iou: f32,
    /// Cap on detections per frame, highest scores kept.
    pub max_detections: usize,
    /// Folder for ONNX Runtime's optimised copy of the model. The first load
    /// optimises the graph and saves it there; later loads (every restart of
    /// the box) read the saved copy and skip most of the optimisation work.
    /// `None`: optimise on every load.
    pub optimized_cache: Option<PathBuf>,
    /// How frames are sized for the model when the caller does not say
    /// (`[detector] input_pixels`); see [`geometry`].
    pub input: InputBudget,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            model: PathBuf::from("models/nanodet_g_coco_416.onnx"),
            intra_threads: 1,
            spinning: false,
            threshold: 0.35,
            class_thresholds: HashMap::new(),
            classes: None,
            nms_iou: 0.5,
            max_detections: 100,
            optimized_cache: None,
            input: InputBudget::default(),
        }
    }
}

impl DetectorOptions {
    /// Defaults for the given model file.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }
}

/// Where the optimised copy of `model` lives in `dir`: keyed by the model's
/// content, the ONNX Runtime version, the provider and the CPU, because an
/// optimised graph may use kernels specific to each. (Only the `cpu`
/// provider saves one; the key holds the provider all the same, so a graph
/// never crosses providers.)
fn optimized_cache_path(dir: &Path, model: &Path, bytes: &[u8]) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(runtime_version().unwrap_or_default().as_bytes());
    h.update(runtime_provider().unwrap_or_default().as_str().as_bytes());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    h.update(cpu.as_bytes());
    let digest = h.finalize();
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    dir.join(format!("{stem}.{key}.ort-optimized.onnx"))
}

/// ONNX Runtime's own graph optimisations: all of them for its CPU and CUDA
/// kernels; none before OpenVINO, which optimises the whole graph for its
/// device itself and takes standard ONNX operators better than ONNX
/// Runtime's fused ones (those would fall back to the CPU provider).
fn optimization_level(provider: Provider) -> GraphOptimizationLevel {
    match provider {
        Provider::OpenVino => GraphOptimizationLevel::Disable,
        Provider::Cpu | Provider::Cuda | Provider::TensorRt => GraphOptimizationLevel::All,
    }
}

/// Registers the runtime's execution provider on a session, so a provider
/// that cannot start is an error, never a silent fall-back to the CPU.
/// `cpu`: nothing to register. `threads` becomes OpenVINO's thread count;
/// `cache` (the `ort-cache` folder) gets a sub-folder per provider for
/// OpenVINO's compiled blobs and TensorRT's engines.
fn register_provider(
    builder: &mut ort::session::builder::SessionBuilder,
    rt: &Runtime,
    threads: usize,
    cache: Option<&Path>,
) -> Result<(), DetectError> {
    use ort::ep::{self, ExecutionProvider};
    let provider = rt.provider;
    let device = rt.device.as_deref();
    let sub_cache = |name: &str| {
        cache
            .map(|c| c.join(name))
            .filter(|c| std::fs::create_dir_all(c).is_ok())
            .map(|c| c.display().to_string())
    };
    let gpu_id = || -> Result<i32, DetectError> {
        if !nvidia_driver_present() {
            return Err(DetectError::ProviderUnavailable {
                provider,
                reason: "no NVIDIA GPU on this machine (no driver: /proc/driver/nvidia/version and /dev/nvidiactl are missing)".into(),
            });
        }
        device
            .map(str::parse)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|_| DetectError::ProviderUnavailable {
                provider,
                reason: format!("provider_device {device:?} is not a CUDA device number"),
            })
    };
    let unavailable = |e: ort::Error, hint: &str| DetectError::ProviderUnavailable {
        provider,
        reason: format!("ONNX Runtime {} refused it: {e}{hint}", rt.path.display()),
    };
    const CUDA_HINT: &str = "; it needs an NVIDIA GPU with its driver, and the CUDA 12 and cuDNN 9 libraries where the loader finds them (LD_LIBRARY_PATH)";
    match provider {
        Provider::Cpu => Ok(()),
        Provider::OpenVino => {
            let mut ov = ep::OpenVINO::default()
                .with_device_type(device.unwrap_or("CPU"))
                .with_num_threads(threads.max(1))
                .with_num_streams(1);
            if let Some(dir) = sub_cache("openvino") {
                ov = ov.with_cache_dir(dir);
            }
            ov.register(builder).map_err(|e| unavailable(e, ""))
        }
        Provider::Cuda => {
            let id = gpu_id()?;
            ep::CUDA::default()
                .with_device_id(id)
                .register(builder)
                .map_err(|e| unavailable(e, CUDA_HINT))
        }
        Provider::TensorRt => {
            let id = gpu_id()?;
            let mut trt = ep::TensorRT::default().with_device_id(id);
            if let Some(dir) = sub_cache("tensorrt") {
                trt = trt.with_engine_cache(true).with_engine_cache_path(dir);
            }
            trt.register(builder).map_err(|e| {
                unavailable(e, "; it needs TensorRT 10 besides CUDA 12 and cuDNN 9 where the loader finds them")
            })?;
            // Nodes TensorRT does not take run on CUDA, not on the CPU.
            ep::CUDA::default()
                .with_device_id(id)
                .register(builder)
                .map_err(|e| unavailable(e, CUDA_HINT))
        }
    }
}

/// Whether an NVIDIA driver is loaded (a container with a GPU passed
/// through sees the same files).
fn nvidia_driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidiactl").exists()
}

/// Wall time of the three stages of one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    pub pre: Duration,
    pub infer: Duration,
    pub post: Duration,
}

/// The pre-processing half of a [`Detector`] ([`Detector::frame_prep`]):
/// plain CPU work, no ONNX Runtime, so it can run on its own thread and fill
/// the next frame's input while the session runs the current one. The
/// inference workers and `bench model` pipeline this way.
#[derive(Clone, Debug)]
pub struct FramePrep {
    shaper: Shaper,
}

impl FramePrep {
    /// Resizes and normalises a packed RGB24 frame into `into`, reusing its
    /// buffer, and records the time it took.
    pub fn prepare(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        into: &mut PreparedInput,
    ) -> Result<(), DetectError> {
        let budget = self.shaper.budget;
        self.prepare_as(rgb, width, height, budget, into)
    }

    /// [`Self::prepare`] with the frame sized by `budget` (a camera's own
    /// `input_pixels`) instead of the detector's.
    pub fn prepare_as(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        budget: InputBudget,
        into: &mut PreparedInput,
    ) -> Result<(), DetectError> {
        let t0 = Instant::now();
        into.transform = None;
        let pre = self.shaper.get(budget, width, height);
        fit_buffer(&mut into.input, pre.config());
        let transform = pre.run(rgb, width, height, &mut into.input)?;
        into.transform = Some(transform);
        into.pre = t0.elapsed();
        Ok(())
    }
}

/// A model input filled by [`FramePrep::prepare`], for
/// [`Detector::detect_prepared`]. Buffers are reused frame after frame.
#[derive(Clone, Debug)]
pub struct PreparedInput {
    input: Array4<f32>,
    /// `None` until a frame was prepared (or after a failed prepare).
    transform: Option<InputTransform>,
    pre: Duration,
}

/// One loaded model plus its reusable buffers. Move it into the inference
/// thread that uses it.
pub struct Detector {
    session: Session,
    spec: ModelSpec,
    model_path: PathBuf,
    gate: ClassGate,
    nms_iou: f32,
    max_detections: usize,
    shaper: Shaper,
    input: Array4<f32>,
    yolo: Scratch,
    candidates: Vec<Detection>,
    /// One tile's pixels (tiled detection, [`Detector::add_tiles`]).
    tile_rgb: Vec<u8>,
}

/// The pre-processors of one model, one per input size in use (at most
/// [`Shaper::KEEP`], most recent first): cameras of different shapes
/// served by one worker each keep their resize plan.
#[derive(Clone, Debug)]
struct Shaper {
    sizing: Sizing,
    /// The detector's default budget.
    budget: InputBudget,
    /// Colour, normalisation, padding and filter; size and mode per entry.
    base: PreprocessConfig,
    simd: SimdLevel,
    cache: Vec<Preprocessor>,
}

impl Shaper {
    /// Sizes in use at once before the least recent plan is rebuilt.
    const KEEP: usize = 4;

    fn new(sizing: Sizing, budget: InputBudget, base: PreprocessConfig) -> Self {
        let simd = Preprocessor::new(base.clone()).simd();
        Shaper {
            sizing,
            budget,
            base,
            simd,
            cache: Vec::new(),
        }
    }

    /// The pre-processor for a `w` x `h` frame under `budget`.
    fn get(&mut self, budget: InputBudget, w: u32, h: u32) -> &mut Preprocessor {
        let (dw, dh, resize) = self.sizing.plan(budget, w, h);
        let hit = self.cache.iter().position(|p| {
            let c = p.config();
            (c.dst_w, c.dst_h, c.resize) == (dw, dh, resize)
        });
        match hit {
            Some(0) => {}
            Some(i) => {
                let p = self.cache.remove(i);
                self.cache.insert(0, p);
            }
            None => {
                let cfg = PreprocessConfig {
                    dst_w: dw,
                    dst_h: dh,
                    resize,
                    ..self.base.clone()
                };
                self.cache
                    .insert(0, Preprocessor::new(cfg).with_simd(self.simd));
                self.cache.truncate(Self::KEEP);
            }
        }
        &mut self.cache[0]
    }

    /// Drops the cached plans (after a change of filter or SIMD level).
    fn reset(&mut self) {
        self.cache.clear();
    }
}

/// Copies `tile`'s pixels of a packed RGB24 frame `width` wide into `out`.
fn crop_rgb(rgb: &[u8], width: u32, tile: &tiles::Tile, out: &mut Vec<u8>) {
    let (stride, row) = (width as usize * 3, tile.w as usize * 3);
    out.clear();
    for y in tile.y as usize..(tile.y + tile.h) as usize {
        let start = y * stride + tile.x as usize * 3;
        // The plan keeps tiles inside the frame; a short row is skipped
        // rather than panicking (the tile then fails its size check).
        if let Some(px) = rgb.get(start..start + row) {
            out.extend_from_slice(px);
        }
    }
}

/// Reshapes `buf` to `cfg`'s `[1, 3, H, W]` when it is another size.
fn fit_buffer(buf: &mut Array4<f32>, cfg: &PreprocessConfig) {
    let want = [1, 3, cfg.dst_h as usize, cfg.dst_w as usize];
    if buf.shape() != want {
        *buf = Array4::zeros((1, 3, want[2], want[3]));
    }
}

/// Reusable decode buffers.
#[derive(Debug, Default)]
struct Scratch {
    yolo: YoloScratch,
    /// Integer outputs (class ids, counts) converted to f32.
    classes: Vec<f32>,
    count: Vec<f32>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.model_path)
            .field("family", &self.spec.family)
            .field("input_size", &self.spec.input_size)
            .field("classes", &self.spec.names.len())
            .finish_non_exhaustive()
    }
}

/// Builds the class gate from the options: unknown names are errors (a typo
/// in `classes = ["preson"]` would otherwise silently detect nothing).
fn build_gate(opts: &DetectorOptions, names: &[String]) -> Result<ClassGate, DetectError> {
    let check_thr = |name: &'static str, v: f32| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(DetectError::InvalidOption {
                name,
                reason: format!("{v} is outside 0..=1"),
            })
        }
    };
    check_thr("threshold", opts.threshold)?;
    let index = |name: &str| -> Result<usize, DetectError> {
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| DetectError::UnknownClass {
                name: name.to_string(),
                known: known_sample(names),
            })
    };
    let mut thr = vec![opts.threshold; names.len()];
    for (name, &v) in &opts.class_thresholds {
        check_thr("class_thresholds", v)?;
        thr[index(name)?] = v;
    }
    if let Some(classes) = &opts.classes {
        let mut enabled = vec![false; names.len()];
        for name in classes {
            enabled[index(name)?] = true;
        }
        for (t, on) in thr.iter_mut().zip(enabled) {
            if !on {
                *t = f32::INFINITY;
            }
        }
    }
    Ok(ClassGate::from_thresholds(thr))
}

/// First few class names, for "unknown class" messages.
fn known_sample(names: &[String]) -> String {
    let head: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
    if names.len() > head.len() {
        format!("{} classes: {}, ...", names.len(), head.join(", "))
    } else {
        format!("{} classes: {}", names.len(), head.join(", "))
    }
}

/// The session's inputs and outputs, as the spec code describes them.
fn session_io(session: &Session) -> (Vec<TensorInfo>, Vec<TensorInfo>) {
    let list =
        |v: &[ort::value::Outlet]| v.iter().map(|o| tensor_info(o.name(), o.dtype())).collect();
    (list(session.inputs()), list(session.outputs()))
}

fn tensor_info(name: &str, ty: &ValueType) -> TensorInfo {
    match ty {
        ValueType::Tensor { ty, shape, .. } => TensorInfo {
            name: name.to_string(),
            shape: shape.iter().copied().collect(),
            is_f32: *ty == TensorElementType::Float32,
        },
        _ => TensorInfo {
            name: name.to_string(),
            shape: Vec::new(),
            is_f32: false,
        },
    }
}

impl Detector {
    /// Loads and checks a model. Initialises ONNX Runtime with the default
    /// search if [`init_runtime`] was not called first.
    #[allow(
        clippy::too_many_lines,
        reason = "option checks, model spec, session set-up in load order; to be split in a follow-up"
    )]
    pub fn load(opts: &DetectorOptions) -> Result<Detector, DetectError> {
        init_runtime(&RuntimeOptions::default())?;
        let rt = RUNTIME
            .get()
            .ok_or_else(|| DetectError::Runtime("runtime not initialised".into()))?;
        if !(opts.nms_iou > 0.0 && opts.nms_iou <= 1.0) {
            return Err(DetectError::InvalidOption {
                name: "nms_iou",
                reason: format!("{} is outside (0, 1]", opts.nms_iou),
            });
        }
        if opts.max_detections == 0 {
            return Err(DetectError::InvalidOption {
                name: "max_detections",
                reason: "must be at least 1".into(),
            });
        }
        let path = opts.model.clone();
        let manifest = Manifest::load_for(&path)?;
        let bytes = std::fs::read(&path).map_err(|source| DetectError::ModelRead {
            path: path.clone(),
            source,
        })?;

        let builder_err = |e: ort::Error<ort::session::builder::SessionBuilder>| {
            DetectError::Runtime(ort::Error::<()>::from(e).to_string())
        };
        // Session tuning for a small CPU box (see docs/performance.md):
        // - intra-op threads as configured, one inter-op thread and sequential
        //   execution: detector graphs are a single chain, parallel execution
        //   only adds scheduling;
        // - no spinning: idle ORT threads would steal CPU from the decoders;
        // - all graph optimisations, and the optimised graph saved once so a
        //   restart does not pay for them again.
        //   The saved graph is the CPU provider's: the others compile the
        //   graph for their device and keep their own cache (OpenVINO's
        //   blobs, TensorRT's engines) in a folder of their own next to it.
        let cached = opts
            .optimized_cache
            .as_ref()
            .filter(|_| rt.provider == Provider::Cpu)
            .map(|dir| optimized_cache_path(dir, &path, &bytes));
        let reuse = cached.as_ref().filter(|c| c.exists()).cloned();
        let mut builder = Session::builder(&rt.env)
            .map_err(|e| DetectError::Runtime(e.to_string()))?
            .with_intra_threads(opts.intra_threads)
            .map_err(builder_err)?
            .with_inter_threads(1)
            .map_err(builder_err)?
            .with_parallel_execution(false)
            .map_err(builder_err)?
            .with_intra_op_spinning(opts.spinning)
            .map_err(builder_err)?
            .with_inter_op_spinning(opts.spinning)
            .map_err(builder_err)?
            .with_optimization_level(optimization_level(rt.provider))
            .map_err(builder_err)?;
        register_provider(
            &mut builder,
            rt,
            opts.intra_threads,
            opts.optimized_cache.as_deref(),
        )?;
        let mut saving = None;
        if reuse.is_none()
            && let Some(c) = &cached
            && let Some(dir) = c.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let tmp = c.with_extension(format!("{}.part", std::process::id()));
            builder = builder
                .with_optimized_model_path(&tmp)
                .map_err(builder_err)?;
            saving = Some((tmp, c.clone()));
        }
        let committed = match &reuse {
            Some(c) => builder.commit_from_file(c),
            None => builder.commit_from_memory(&bytes),
        };
        let session = match committed {
            Ok(s) => s,
            Err(e) if reuse.is_some() => {
                // A damaged cache must never take a camera down: drop it and
                // load the original model.
                tracing::warn!(cache = ?reuse, error = %e, "optimised model cache unusable; loading the original");
                if let Some(c) = &reuse {
                    let _ = std::fs::remove_file(c);
                }
                let mut retry = opts.clone();
                retry.optimized_cache = None;
                return Self::load(&retry);
            }
            Err(e) if rt.provider != Provider::Cpu => {
                return Err(DetectError::ModelInvalid {
                    path,
                    reason: format!("with the {} provider: {e}", rt.provider),
                });
            }
            Err(e) => {
                return Err(DetectError::ModelInvalid {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        if let Some((tmp, fin)) = saving {
            // Publish the saved graph atomically; losing a race with another
            // worker loading the same model is harmless.
            if std::fs::rename(&tmp, &fin).is_err() {
                let _ = std::fs::remove_file(&tmp);
            } else {
                tracing::info!(cache = %fin.display(), "saved the optimised model");
            }
        }
        drop(bytes);

        let (inputs, outputs) = session_io(&session);
        let dynamic_hw = inputs
            .first()
            .is_some_and(|i| i.shape.len() == 4 && i.shape[2] < 0 && i.shape[3] < 0);
        let metadata = read_metadata(&session);
        let spec = resolve_spec(
            &path,
            &inputs,
            &outputs,
            &metadata,
            manifest.as_ref().map(|(m, p)| (m, p.as_path())),
        )?;
        let gate = build_gate(opts, &spec.names)?;
        let sizing = Sizing {
            dynamic: dynamic_hw,
            stride: coarsest_stride(&spec.layout),
            declared: spec.input_size,
            resize: spec.resize,
        };
        let shaper = Shaper::new(
            sizing,
            opts.input,
            PreprocessConfig {
                dst_w: spec.input_size.0,
                dst_h: spec.input_size.1,
                resize: spec.resize,
                color: spec.color,
                mean: spec.mean,
                std: spec.std,
                pad_value: spec.pad_value,
                filter: ResizeFilter::Antialias,
            },
        );
        let input = Array4::zeros((1, 3, spec.input_size.1 as usize, spec.input_size.0 as usize));
        tracing::info!(
            model = %path.display(),
            family = spec.family.as_str(),
            input_w = spec.input_size.0,
            input_h = spec.input_size.1,
            dynamic_input = dynamic_hw,
            input_pixels = %opts.input.describe(),
            classes = spec.names.len(),
            enabled = (0..spec.names.len()).filter(|&c| gate.threshold(c).is_finite()).count(),
            source = ?spec.source,
            intra_threads = opts.intra_threads,
            provider = %rt.provider,
            "detector loaded"
        );
        Ok(Detector {
            session,
            spec,
            model_path: path,
            gate,
            nms_iou: opts.nms_iou,
            max_detections: opts.max_detections,
            shaper,
            input,
            yolo: Scratch::default(),
            candidates: Vec::with_capacity(256),
            tile_rgb: Vec::new(),
        })
    }

    /// True when the model accepts any input height and width (dynamic dims),
    /// so frames are sized by their [`InputBudget`].
    pub fn has_dynamic_input(&self) -> bool {
        self.shaper.sizing.dynamic
    }

    /// What the detector knows to size frames (declared size, stride, dynamic).
    pub fn sizing(&self) -> Sizing {
        self.shaper.sizing
    }

    /// The detector's default budget (`[detector] input_pixels`).
    pub fn input_budget(&self) -> InputBudget {
        self.shaper.budget
    }

    /// Sets the default budget for frames that do not bring their own.
    pub fn set_input_budget(&mut self, budget: InputBudget) {
        self.shaper.budget = budget;
    }

    /// The input `(width, height)` a `frame_w` x `frame_h` frame gets under
    /// `budget` (what `check` and `bench` report per camera).
    pub fn input_size_for(&self, budget: InputBudget, frame_w: u32, frame_h: u32) -> (u32, u32) {
        let (w, h, _) = self.shaper.sizing.plan(budget, frame_w, frame_h);
        (w, h)
    }

    /// Runs the model at `width` x `height` for every frame instead of its
    /// budget. The declared size is always accepted; another size only when
    /// the model's spatial dims are dynamic and the size is a multiple of
    /// its coarsest stride. On error the detector is unchanged.
    pub fn set_input_size(&mut self, width: u32, height: u32) -> Result<(), DetectError> {
        let (w0, h0) = self.spec.input_size;
        if (width, height) == (w0, h0) {
            self.shaper.budget = InputBudget::Model;
            return Ok(());
        }
        if !self.shaper.sizing.dynamic {
            return Err(DetectError::SpecMismatch {
                path: self.model_path.clone(),
                expected: format!("dynamic input dims to run at {width}x{height}"),
                found: format!("a fixed input size {w0}x{h0}"),
            });
        }
        if width == 0 || height == 0 {
            return Err(DetectError::InvalidOption {
                name: "input_size",
                reason: format!("{width}x{height} has a zero dimension"),
            });
        }
        if width > spec::MAX_INPUT_SIDE || height > spec::MAX_INPUT_SIDE {
            return Err(DetectError::InvalidOption {
                name: "input_size",
                reason: format!(
                    "{width}x{height} is larger than {0}x{0}",
                    spec::MAX_INPUT_SIDE
                ),
            });
        }
        let stride = self.shaper.sizing.stride;
        if !width.is_multiple_of(stride) || !height.is_multiple_of(stride) {
            return Err(DetectError::InvalidOption {
                name: "input_size",
                reason: format!("{width}x{height} is not divisible by stride {stride}"),
            });
        }
        self.shaper.budget = InputBudget::Exact(width, height);
        Ok(())
    }

    /// Times `iterations` bare `Session::run` calls on the input tensor as it
    /// is now (the last pre-processed frame, or zeros): no pre-processing, no
    /// decoding. The ceiling a pipeline around this model can reach.
    pub fn run_bare(&mut self, iterations: usize) -> Result<Vec<Duration>, DetectError> {
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t0 = Instant::now();
            let tensor = TensorRef::from_array_view(self.input.view())
                .map_err(|e| DetectError::Inference(e.to_string()))?;
            let outputs = self
                .session
                .run(ort::inputs![tensor])
                .map_err(|e| DetectError::Inference(e.to_string()))?;
            drop(outputs);
            times.push(t0.elapsed());
        }
        Ok(times)
    }

    /// Class names, index = `Detection::class_id`.
    pub fn labels(&self) -> &[String] {
        &self.spec.names
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Switches the resampling filter (default [`ResizeFilter::Antialias`],
    /// Pillow-compatible, what the parity reference uses). `Bilinear` costs
    /// about half on big downscales but aliases; see [`preprocess`].
    pub fn set_resize_filter(&mut self, filter: ResizeFilter) {
        self.shaper.base.filter = filter;
        self.shaper.reset();
    }

    pub fn resize_filter(&self) -> ResizeFilter {
        self.shaper.base.filter
    }

    /// Detects objects in a tightly packed RGB24 frame. Boxes are in source
    /// pixels, clamped to the frame, sorted by score (descending).
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<Vec<Detection>, DetectError> {
        self.detect_timed(rgb, width, height).map(|(d, _)| d)
    }

    /// [`Self::detect`] plus the time spent in each stage.
    pub fn detect_timed(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        let budget = self.shaper.budget;
        self.detect_timed_as(rgb, width, height, budget)
    }

    /// [`Self::detect_timed`] with the frame sized by `budget` (a camera's
    /// own `input_pixels`) instead of the detector's default.
    pub fn detect_timed_as(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        budget: InputBudget,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        let t0 = Instant::now();
        let pre = self.shaper.get(budget, width, height);
        fit_buffer(&mut self.input, pre.config());
        let transform = pre.run(rgb, width, height, &mut self.input)?;
        let pre = t0.elapsed();
        let Self {
            session,
            input,
            spec,
            gate,
            yolo,
            candidates,
            ..
        } = self;
        let (infer, decode) = run_and_decode(session, input.view(), spec, gate, yolo, candidates)?;
        let t1 = Instant::now();
        let dets = self.finish(&transform);
        let post = decode + t1.elapsed();
        Ok((dets, StageTimes { pre, infer, post }))
    }

    /// [`Self::detect_timed_as`] plus, when `analysis.tiles` is on,
    /// [`Self::add_tiles`]: what a node worker runs for a camera.
    pub fn detect_analysed(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        analysis: Analysis,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        let (full, times) = self.detect_timed_as(rgb, width, height, analysis.input)?;
        if analysis.tiles {
            self.add_tiles(full, times, rgb, width, height)
        } else {
            Ok((full, times))
        }
    }

    /// Tiled detection's second half: runs the model on overlapping tiles
    /// of the frame at its own resolution (tiles of the model's declared
    /// input size, 20 % overlap, [`tiles::TilePlan::for_model`]) and merges
    /// their boxes with the full-frame pass's `full` ([`tiles::merge`]:
    /// duplicates and pieces of objects cut by tile borders are folded).
    /// A frame no larger than one tile gets no tiles. `times` grows by the
    /// tiles' stages. Costs one inference per tile: a 1280x720 frame is 8
    /// tiles of 416x416.
    pub fn add_tiles(
        &mut self,
        full: Vec<Detection>,
        mut times: StageTimes,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        let plan = tiles::TilePlan::for_model(
            width,
            height,
            self.spec.input_size,
            tiles::default_overlap(),
        );
        if plan.tiles.len() <= 1 || rgb.len() != width as usize * height as usize * 3 {
            return Ok((full, times));
        }
        let mut found = Vec::with_capacity(plan.tiles.len());
        let mut buf = std::mem::take(&mut self.tile_rgb);
        for tile in &plan.tiles {
            crop_rgb(rgb, width, tile, &mut buf);
            let budget = InputBudget::Exact(tile.w, tile.h);
            let (dets, t) = match self.detect_timed_as(&buf, tile.w, tile.h, budget) {
                Ok(r) => r,
                Err(e) => {
                    self.tile_rgb = buf;
                    return Err(e);
                }
            };
            times.pre += t.pre;
            times.infer += t.infer;
            times.post += t.post;
            let dets = dets
                .into_iter()
                .map(|d| Detection {
                    bbox: tile.to_frame(d.bbox),
                    ..d
                })
                .collect();
            found.push((*tile, dets));
        }
        self.tile_rgb = buf;
        let t0 = Instant::now();
        let opts = tiles::MergeOptions {
            iou: self.nms_iou,
            max_detections: self.max_detections,
            ..tiles::MergeOptions::default()
        };
        let merged = tiles::merge(full, &found, width, height, &opts);
        times.post += t0.elapsed();
        Ok((merged, times))
    }

    /// The pre-processing half of this detector, to run on another thread
    /// (see [`FramePrep`]). Take it after the last
    /// [`Self::set_input_size`] / [`Self::set_resize_filter`]: a prepared
    /// input of another size is refused by [`Self::detect_prepared`].
    pub fn frame_prep(&self) -> FramePrep {
        let mut shaper = self.shaper.clone();
        shaper.reset();
        FramePrep { shaper }
    }

    /// An empty input buffer for [`FramePrep::prepare`] (resized there to
    /// each frame's input size).
    pub fn new_prepared(&self) -> PreparedInput {
        PreparedInput {
            input: self.input.clone(),
            transform: None,
            pre: Duration::ZERO,
        }
    }

    /// [`Self::detect_timed`] for a frame already pre-processed by
    /// [`FramePrep::prepare`]: runs the session and decodes. `pre` in the
    /// returned times is the preparing thread's.
    pub fn detect_prepared(
        &mut self,
        prepared: &PreparedInput,
    ) -> Result<(Vec<Detection>, StageTimes), DetectError> {
        let Some(transform) = prepared.transform else {
            return Err(DetectError::NotPrepared);
        };
        self.check_input(prepared.input.view())?;
        let (dets, infer, post) = self.run_view(prepared.input.view(), &transform)?;
        Ok((
            dets,
            StageTimes {
                pre: prepared.pre,
                infer,
                post,
            },
        ))
    }

    /// Refuses an input view that is not `[1, 3, H, W]` of this model in
    /// standard layout.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "an ndarray view is a borrowed handle, passed by value like a slice"
    )]
    fn check_input(&self, input: ArrayView4<'_, f32>) -> Result<(), DetectError> {
        let sizing = self.shaper.sizing;
        let (w, h) = (sizing.declared.0 as usize, sizing.declared.1 as usize);
        let shape = input.shape();
        let fits = if sizing.dynamic {
            let s = sizing.stride.max(1) as usize;
            let side =
                |v: usize| v > 0 && v.is_multiple_of(s) && v <= spec::MAX_INPUT_SIDE as usize;
            shape.len() == 4 && shape[..2] == [1, 3] && side(shape[2]) && side(shape[3])
        } else {
            shape == [1, 3, h, w]
        };
        if !fits || !input.is_standard_layout() {
            return Err(DetectError::BadTensor {
                expected: vec![1, 3, h, w],
                found: shape.to_vec(),
            });
        }
        Ok(())
    }

    /// Runs the session on an input that is not `self.input` (checked with
    /// [`Self::check_input`]) and maps the boxes back through `transform`:
    /// detections, inference time, post-processing time.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "an ndarray view is a borrowed handle, passed by value like a slice"
    )]
    fn run_view(
        &mut self,
        input: ArrayView4<'_, f32>,
        transform: &InputTransform,
    ) -> Result<(Vec<Detection>, Duration, Duration), DetectError> {
        let Self {
            session,
            spec,
            gate,
            yolo,
            candidates,
            ..
        } = self;
        let (infer, decode) = run_and_decode(session, input, spec, gate, yolo, candidates)?;
        let t1 = Instant::now();
        let dets = self.finish(transform);
        Ok((dets, infer, decode + t1.elapsed()))
    }

    /// Runs an already pre-processed input tensor (`[1, 3, H, W]`, standard
    /// layout) and maps boxes to a `src_w` x `src_h` frame as this model's
    /// resize mode would have. For parity tests against a reference tensor.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "an ndarray view is a borrowed handle, passed by value like a slice"
    )]
    pub fn detect_tensor(
        &mut self,
        input: ArrayView4<'_, f32>,
        src_w: u32,
        src_h: u32,
    ) -> Result<Vec<Detection>, DetectError> {
        self.check_input(input)?;
        if src_w == 0 || src_h == 0 {
            return Err(DetectError::BadFrame {
                width: src_w,
                height: src_h,
                len: 0,
                reason: "empty frame".into(),
            });
        }
        let (in_w, in_h) = (input.shape()[3] as u32, input.shape()[2] as u32);
        let resize = if (in_w, in_h) == self.spec.input_size {
            self.spec.resize
        } else {
            ResizeMode::Stretch
        };
        let transform = Preprocessor::new(PreprocessConfig {
            dst_w: in_w,
            dst_h: in_h,
            resize,
            ..self.shaper.base.clone()
        })
        .transform_for(src_w, src_h);
        Ok(self.run_view(input, &transform)?.0)
    }

    /// NMS in model-input space (like the reference; only for families
    /// that need it), then cap, map, clamp.
    fn finish(&mut self, transform: &InputTransform) -> Vec<Detection> {
        if self.spec.family.needs_nms() {
            nms(&mut self.candidates, self.nms_iou);
        } else {
            self.candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
        self.candidates.truncate(self.max_detections);
        self.candidates
            .drain(..)
            .map(|d| Detection {
                bbox: transform.to_source(&d.bbox),
                ..d
            })
            .collect()
    }
}

/// The coarsest stride of a layout: a dynamic input's sides must be
/// multiples of it (32 for families that do not say).
fn coarsest_stride(layout: &OutputLayout) -> u32 {
    let max = match layout {
        OutputLayout::NanoDet { levels, .. } => levels.iter().map(|l| l.stride).max(),
        OutputLayout::Yolox { strides, .. } => strides.iter().copied().max(),
        _ => None,
    };
    max.unwrap_or(32).max(1)
}

fn read_metadata(session: &Session) -> HashMap<String, String> {
    let mut map = HashMap::new();
    match session.metadata() {
        Ok(meta) => {
            for key in meta.custom_keys().unwrap_or_default() {
                if let Some(v) = meta.custom(&key) {
                    map.insert(key, v);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read model metadata"),
    }
    map
}

/// Runs the session and decodes into `out` (cleared first, input pixels).
/// Returns (inference time, decode time).
#[allow(
    clippy::needless_pass_by_value,
    reason = "an ndarray view is a borrowed handle, passed by value like a slice"
)]
fn run_and_decode(
    session: &mut Session,
    input: ArrayView4<'_, f32>,
    spec: &ModelSpec,
    gate: &ClassGate,
    yolo: &mut Scratch,
    out: &mut Vec<Detection>,
) -> Result<(Duration, Duration), DetectError> {
    out.clear();
    // The grids follow the input actually run (dynamic models change size).
    let (in_w, in_h) = (input.shape()[3] as u32, input.shape()[2] as u32);
    let t0 = Instant::now();
    let tensor =
        TensorRef::from_array_view(input).map_err(|e| DetectError::Inference(e.to_string()))?;
    let outputs = session
        .run(ort::inputs![tensor])
        .map_err(|e| DetectError::Inference(e.to_string()))?;
    let infer = t0.elapsed();
    let t1 = Instant::now();
    decode_outputs(&outputs, spec, (in_w, in_h), gate, yolo, out)?;
    Ok((infer, t1.elapsed()))
}

fn output_f32<'a>(
    outputs: &'a SessionOutputs<'_>,
    name: &str,
) -> Result<(Vec<i64>, &'a [f32]), DetectError> {
    let value = outputs
        .get(name)
        .ok_or_else(|| DetectError::Inference(format!("model produced no output {name:?}")))?;
    let (shape, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| DetectError::Inference(format!("output {name:?}: {e}")))?;
    Ok((shape.iter().copied().collect(), data))
}

/// Copies a numeric output (f32, f64, i64, i32) into `buf` as f32; returns
/// its shape. For small outputs such as class ids and detection counts,
/// which exports store in any of these types.
fn output_numbers(
    outputs: &SessionOutputs<'_>,
    name: &str,
    buf: &mut Vec<f32>,
) -> Result<Vec<i64>, DetectError> {
    let value = outputs
        .get(name)
        .ok_or_else(|| DetectError::Inference(format!("model produced no output {name:?}")))?;
    buf.clear();
    if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
        buf.extend_from_slice(data);
        return Ok(shape.iter().copied().collect());
    }
    if let Ok((shape, data)) = value.try_extract_tensor::<i64>() {
        buf.extend(data.iter().map(|&v| v as f32));
        return Ok(shape.iter().copied().collect());
    }
    if let Ok((shape, data)) = value.try_extract_tensor::<i32>() {
        buf.extend(data.iter().map(|&v| v as f32));
        return Ok(shape.iter().copied().collect());
    }
    let (shape, data) = value
        .try_extract_tensor::<f64>()
        .map_err(|e| DetectError::Inference(format!("output {name:?}: not numeric ({e})")))?;
    buf.extend(data.iter().map(|&v| v as f32));
    Ok(shape.iter().copied().collect())
}

fn shape_error(output: &str, expected: String, shape: &[i64]) -> DetectError {
    DetectError::OutputShape {
        output: output.to_string(),
        expected,
        found: format!("{shape:?}"),
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one match arm per output layout, each a short decoder call; to be split in a follow-up"
)]
fn decode_outputs(
    outputs: &SessionOutputs<'_>,
    spec: &ModelSpec,
    (in_w, in_h): (u32, u32),
    gate: &ClassGate,
    scratch: &mut Scratch,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    let nc = spec.num_classes();
    match &spec.layout {
        OutputLayout::NanoDet { levels, reg_max } => {
            for l in levels {
                let (cs, cls) = output_f32(outputs, &l.cls)?;
                let (rs, reg) = output_f32(outputs, &l.reg)?;
                let grid_w = (in_w / l.stride.max(1)) as usize;
                let cells = grid_w * (in_h / l.stride.max(1)) as usize;
                let want_c = [1, cells as i64, nc as i64];
                let want_r = [1, cells as i64, 4 * (*reg_max as i64 + 1)];
                if cs != want_c || rs != want_r {
                    return Err(DetectError::OutputShape {
                        output: format!("{} / {}", l.cls, l.reg),
                        expected: format!("{want_c:?} / {want_r:?}"),
                        found: format!("{cs:?} / {rs:?}"),
                    });
                }
                let level = NanoDetLevel {
                    stride: l.stride,
                    grid_w,
                    cls,
                    reg,
                };
                decode_nanodet(&[level], nc, *reg_max, gate, out)?;
            }
        }
        OutputLayout::YoloV8 { output, fields } => {
            let (shape, data) = output_f32(outputs, output)?;
            if shape.len() != 3 || shape[0] != 1 || shape[1] != *fields as i64 || shape[2] < 0 {
                return Err(shape_error(output, format!("[1, {fields}, N]"), &shape));
            }
            decode_yolov8(
                data,
                *fields,
                shape[2] as usize,
                nc,
                gate,
                &mut scratch.yolo,
                out,
            )?;
        }
        OutputLayout::YoloEnd2End { output } => {
            let (shape, data) = output_f32(outputs, output)?;
            if shape.len() != 3 || shape[0] != 1 || shape[2] != 6 {
                return Err(shape_error(output, "[1, K, 6]".into(), &shape));
            }
            decode_yolo_end2end(data, gate, out)?;
        }
        OutputLayout::Detr {
            boxes,
            scores,
            fields,
            kind,
        } => {
            let (bshape, bdata) = output_f32(outputs, boxes)?;
            if bshape.len() != 3 || bshape[0] != 1 || bshape[2] != *fields as i64 {
                return Err(shape_error(boxes, format!("[1, K, {fields}]"), &bshape));
            }
            let tensors = match scores {
                None => DetrTensors::single(bdata, *fields),
                Some(scores) => {
                    let (sshape, sdata) = output_f32(outputs, scores)?;
                    if sshape != [1, bshape[1], nc as i64] {
                        return Err(shape_error(
                            scores,
                            format!("[1, {}, {nc}]", bshape[1]),
                            &sshape,
                        ));
                    }
                    DetrTensors::pair(bdata, sdata, nc)
                }
            };
            decode_detr(&tensors, *kind, in_w, in_h, gate, out)?;
        }
        OutputLayout::Yolox {
            output,
            fields,
            strides,
            decoded,
        } => {
            let (shape, data) = output_f32(outputs, output)?;
            if shape.len() != 3 || shape[0] != 1 || shape[2] != *fields as i64 {
                return Err(shape_error(output, format!("[1, N, {fields}]"), &shape));
            }
            decode_yolox(data, *fields, in_w, in_h, strides, *decoded, gate, out)?;
        }
        OutputLayout::NmsRows { output, columns } => {
            let (shape, data) = output_f32(outputs, output)?;
            let ok = match shape.len() {
                2 => true,
                3 => shape[0] == 1,
                _ => false,
            } && shape.last() == Some(&(columns.width as i64));
            if !ok {
                return Err(shape_error(
                    output,
                    format!("[N, {}] or [1, N, {}]", columns.width, columns.width),
                    &shape,
                ));
            }
            decode_nms_rows(data, columns, gate, out)?;
        }
        OutputLayout::TfOd {
            boxes,
            scores,
            classes,
            num_detections,
        } => {
            let (bshape, bdata) = output_f32(outputs, boxes)?;
            let (sshape, sdata) = output_f32(outputs, scores)?;
            let cshape = output_numbers(outputs, classes, &mut scratch.classes)?;
            let k = sshape.get(1).copied().unwrap_or(-1);
            if bshape != [1, k, 4] || sshape.len() != 2 || cshape != sshape {
                return Err(DetectError::OutputShape {
                    output: format!("{boxes} / {scores} / {classes}"),
                    expected: "[1, K, 4] / [1, K] / [1, K]".into(),
                    found: format!("{bshape:?} / {sshape:?} / {cshape:?}"),
                });
            }
            let num = match num_detections {
                Some(name) => {
                    output_numbers(outputs, name, &mut scratch.count)?;
                    match scratch.count.first() {
                        Some(n) if n.is_finite() && *n >= 0.0 => Some(*n as usize),
                        _ => {
                            return Err(DetectError::OutputShape {
                                output: name.clone(),
                                expected: "one non-negative count".into(),
                                found: format!("{:?}", scratch.count),
                            });
                        }
                    }
                }
                None => None,
            };
            decode_tfod(bdata, sdata, &scratch.classes, num, in_w, in_h, gate, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detector_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Detector>();
    }

    #[test]
    fn gate_from_options() {
        let labels = names(&["person", "bicycle", "car", "dog"]);
        let mut o = DetectorOptions::new("x.onnx");
        o.classes = Some(names(&["person", "car"]));
        o.class_thresholds.insert("car".into(), 0.6);
        let g = build_gate(&o, &labels).unwrap();
        assert_eq!(g.threshold(0), 0.35);
        assert_eq!(g.threshold(1), f32::INFINITY);
        assert_eq!(g.threshold(2), 0.6);
        assert_eq!(g.threshold(3), f32::INFINITY);

        o.classes = Some(names(&["preson"]));
        match build_gate(&o, &labels) {
            Err(DetectError::UnknownClass { name, known }) => {
                assert_eq!(name, "preson");
                assert!(known.contains("person"), "{known}");
            }
            other => panic!("{other:?}"),
        }
        let mut o = DetectorOptions::new("x.onnx");
        o.class_thresholds.insert("cat".into(), 0.5);
        assert!(matches!(
            build_gate(&o, &labels),
            Err(DetectError::UnknownClass { .. })
        ));
        o.class_thresholds.clear();
        o.threshold = 1.5;
        assert!(matches!(
            build_gate(&o, &labels),
            Err(DetectError::InvalidOption { .. })
        ));
        // None = all classes.
        let g = build_gate(&DetectorOptions::new("x.onnx"), &labels).unwrap();
        assert!((0..4).all(|c| g.threshold(c) == 0.35));
    }

    #[test]
    fn default_classes_are_coco_names() {
        let coco = [
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
        ];
        assert!(DEFAULT_CLASSES.iter().all(|c| coco.contains(c)));
    }

    #[test]
    fn candidate_paths_prefer_explicit() {
        let o = RuntimeOptions {
            dylib: Some(PathBuf::from("/x/libonnxruntime.so")),
            ..RuntimeOptions::default()
        };
        assert_eq!(
            candidate_paths(&o),
            vec![PathBuf::from("/x/libonnxruntime.so")]
        );
        let d = candidate_paths(&RuntimeOptions::default());
        assert_eq!(d.last(), Some(&PathBuf::from("libonnxruntime.so")));
        assert!(d.contains(&PathBuf::from("/opt/onnxruntime/lib/libonnxruntime.so")));
    }

    // --- Tests below need the ONNX Runtime library (ORT_DYLIB_PATH or the default search). ---

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    fn runtime() {
        init_runtime(&RuntimeOptions::default())
            .expect("ONNX Runtime must be available for this test (set ORT_DYLIB_PATH)");
    }

    #[test]
    fn runtime_init_is_idempotent_and_reports_version() {
        runtime();
        init_runtime(&RuntimeOptions {
            dylib: Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
            ..RuntimeOptions::default()
        })
        .unwrap();
        // Another provider than the loaded one is refused, not ignored.
        let e = init_runtime(&RuntimeOptions {
            provider: Provider::OpenVino,
            ..RuntimeOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("provider openvino") && e.contains("one library per process"),
            "{e}"
        );
        assert_eq!(runtime_provider(), Some(Provider::Cpu));
        let v = runtime_version().unwrap();
        eprintln!("ONNX Runtime {v} from {:?}", runtime_path());
        assert!(v.starts_with("1."), "{v}");
        assert!(runtime_path().is_some());
    }

    #[test]
    fn corrupt_model_is_model_invalid_naming_the_path() {
        runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.onnx");
        // Deterministic pseudo-random bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(&path, bytes).unwrap();
        let err = Detector::load(&DetectorOptions::new(&path)).unwrap_err();
        match &err {
            DetectError::ModelInvalid { path: p, .. } => assert_eq!(p, &path),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("garbage.onnx"), "{err}");
    }

    #[test]
    fn missing_model_is_model_read() {
        runtime();
        let err = Detector::load(&DetectorOptions::new("/nonexistent/model.onnx")).unwrap_err();
        assert!(matches!(err, DetectError::ModelRead { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/model.onnx"));
    }

    #[test]
    fn weird_outputs_are_unknown_family() {
        runtime();
        let path = fixture("tests/fixtures/models/weird_outputs.onnx");
        match Detector::load(&DetectorOptions::new(&path)) {
            Err(DetectError::UnknownFamily { path: p, found }) => {
                assert_eq!(p, path);
                assert!(found.contains("features [1,3]"), "{found}");
                assert!(found.contains("images [1,3,32,32]"), "{found}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tiny_yolov8_runs_end_to_end_with_letterbox() {
        runtime();
        // The model ignores its input and always emits two candidates (see
        // scripts/make_test_models.py): person 0.9 at cx,cy,w,h = 32,32,16,8
        // and car 0.6 at 10,40,4,4, in a 64x64 input.
        let path = fixture("tests/fixtures/models/tiny_yolov8.onnx");
        let mut det = Detector::load(&DetectorOptions::new(&path)).unwrap();
        assert_eq!(det.spec().family, Family::YoloV8);
        assert_eq!(det.labels(), &["person", "car"]);
        assert_eq!(det.spec().resize, ResizeMode::Letterbox);
        // 128x64 frame -> gain 0.5, content 64x32, pad_y 16.
        let frame = vec![0u8; 128 * 64 * 3];
        let (dets, times) = det.detect_timed(&frame, 128, 64).unwrap();
        assert!(times.infer > Duration::ZERO);
        assert_eq!(dets.len(), 2, "{dets:?}");
        assert_eq!(dets[0].class_id, 0);
        assert!((dets[0].score - 0.9).abs() < 1e-6);
        let b = dets[0].bbox;
        let want = [
            (32.0 - 8.0) * 2.0,
            (32.0 - 4.0 - 16.0) * 2.0,
            (32.0 + 8.0) * 2.0,
            (32.0 + 4.0 - 16.0) * 2.0,
        ];
        for (a, w) in [b.x1, b.y1, b.x2, b.y2].iter().zip(want) {
            assert!((a - w).abs() < 1e-3, "{b:?} vs {want:?}");
        }
        assert_eq!(dets[1].class_id, 1);

        // Class filter and per-class thresholds apply.
        let mut o = DetectorOptions::new(&path);
        o.classes = Some(vec!["car".into()]);
        let mut det = Detector::load(&o).unwrap();
        let dets = det.detect(&frame, 128, 64).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        o.classes = None;
        o.class_thresholds.insert("car".into(), 0.7);
        let mut det = Detector::load(&o).unwrap();
        assert_eq!(det.detect(&frame, 128, 64).unwrap().len(), 1);
        o.class_thresholds.clear();
        o.max_detections = 1;
        let mut det = Detector::load(&o).unwrap();
        let dets = det.detect(&frame, 128, 64).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 0);
        // Bad frames are errors, not panics.
        assert!(matches!(
            det.detect(&frame[1..], 128, 64),
            Err(DetectError::BadFrame { .. })
        ));
    }

    #[test]
    fn manifest_mismatch_is_refused_at_load() {
        runtime();
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::copy(fixture("tests/fixtures/models/tiny_yolov8.onnx"), &model).unwrap();
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"family":"yolov8","input_size":[640,640],"color":"rgb","mean":[0,0,0],"std":[255,255,255],"resize":"letterbox"}"#,
        )
        .unwrap();
        match Detector::load(&DetectorOptions::new(&model)) {
            Err(DetectError::SpecMismatch {
                expected, found, ..
            }) => {
                assert!(expected.contains("640"), "{expected}");
                assert!(found.contains("[1,3,64,64]"), "{found}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"family":"nanodet","input_size":[64,64],"color":"rgb","mean":[0,0,0],"std":[255,255,255],"resize":"letterbox"}"#,
        )
        .unwrap();
        assert!(matches!(
            Detector::load(&DetectorOptions::new(&model)),
            Err(DetectError::SpecMismatch { .. })
        ));
        std::fs::write(dir.path().join("m.json"), r#"{"family":"yolov8"}"#).unwrap();
        assert!(matches!(
            Detector::load(&DetectorOptions::new(&model)),
            Err(DetectError::ManifestInvalid { .. })
        ));
        // Names in the manifest that do not fit the head.
        std::fs::write(
            dir.path().join("m.json"),
            r#"{"family":"yolov8","input_size":[64,64],"color":"rgb","mean":[0,0,0],"std":[255,255,255],"resize":"letterbox","names":["a","b","c"]}"#,
        )
        .unwrap();
        assert!(matches!(
            Detector::load(&DetectorOptions::new(&model)),
            Err(DetectError::SpecMismatch { .. })
        ));
    }

    #[test]
    fn bundled_model_loads_with_its_manifest() {
        runtime();
        let det = Detector::load(&DetectorOptions::new(fixture(
            "models/nanodet_g_coco_416.onnx",
        )))
        .unwrap();
        let spec = det.spec();
        assert_eq!(spec.family, Family::NanoDet);
        assert_eq!(spec.input_size, (416, 416));
        assert_eq!(spec.color, ColorOrder::Bgr);
        assert!(matches!(spec.source, SpecSource::Manifest(_)));
        assert_eq!(det.labels().len(), 80);
        assert_eq!(det.labels()[7], "truck");
        let mut o = DetectorOptions::new(fixture("models/nanodet_g_coco_416.onnx"));
        o.classes = Some(DEFAULT_CLASSES.iter().map(|s| s.to_string()).collect());
        assert!(Detector::load(&o).is_ok());
    }
}
