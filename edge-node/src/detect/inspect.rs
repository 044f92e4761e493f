//! `edge-node model inspect`: what a model file is and how edge-node would
//! run it, without running it.
//!
//! [`inspect`] opens the model in ONNX Runtime (no inference), lists its
//! inputs, outputs and metadata, and runs the same resolution as
//! [`super::Detector::load`] (manifest, metadata, shapes). A model that fits
//! no family is not an error here: the report says why, so the operator can
//! write a manifest.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::ValueType;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::geometry::{InputBudget, PRESETS, Sizing};
use super::spec::{ColorOrder, Manifest, ModelSpec, OutputLayout, ResizeMode, SpecSource};
use super::{
    DetectError, RUNTIME, RuntimeOptions, init_runtime, read_metadata, resolve_spec, session_io,
};

/// Metadata values longer than this are cut in the `Display` output (the
/// JSON keeps them whole).
const DISPLAY_VALUE_CHARS: usize = 160;

/// One model input or output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IoReport {
    pub name: String,
    /// ONNX element type in lower case (`float32`, `int64`, ...), or the
    /// value kind for non-tensors.
    pub dtype: String,
    /// `-1` for a dynamic dimension.
    pub shape: Vec<i64>,
}

/// The pre-processing the detector will apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreprocessReport {
    pub input_width: u32,
    pub input_height: u32,
    /// `stretch` or `letterbox`.
    pub resize: &'static str,
    /// Border grey level (letterbox only).
    pub pad_value: Option<u8>,
    /// Channel order fed to the model: `rgb` or `bgr`.
    pub color: &'static str,
    /// Per model channel: `(x - mean) / std` on 0..255 values.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// `1 / std`, the multiplier after subtracting the mean.
    pub scale: [f32; 3],
    /// `manifest <path>` or `defaults for <family>`.
    pub source: String,
    /// The input height and width are dynamic: each frame is sized by the
    /// camera's `input_pixels` at its own aspect ratio (`input_width` x
    /// `input_height` is then the declared, training size).
    pub dynamic_input: bool,
    /// Dynamic sides are multiples of this (the coarsest stride).
    pub stride: u32,
    /// What common camera frames (after the default `max_height` 720) get
    /// at each preset; empty for a fixed-size model.
    pub sizes: Vec<SizeExample>,
}

/// One line of [`PreprocessReport::sizes`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeExample {
    /// `[width, height]` of the analysed frame.
    pub frame: [u32; 2],
    /// `standard`, `detailed` or `maximum`.
    pub preset: &'static str,
    /// `[width, height]` of the model input.
    pub input: [u32; 2],
}

/// Everything [`inspect`] found out about a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelReport {
    pub model: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub inputs: Vec<IoReport>,
    pub outputs: Vec<IoReport>,
    /// ONNX custom metadata (`metadata_props`).
    pub metadata: BTreeMap<String, String>,
    /// `<model>.json` if present.
    pub manifest: Option<PathBuf>,
    /// The family edge-node will decode it as, or `None` (see `family_error`).
    pub family: Option<String>,
    /// Why no family fits, or why the description was refused.
    pub family_error: Option<String>,
    /// How the outputs are read (decoder layout), if resolved.
    pub layout: Option<String>,
    /// Whether class-aware NMS runs after decoding.
    pub nms: Option<bool>,
    /// Class names, index = class id.
    pub names: Vec<String>,
    pub preprocess: Option<PreprocessReport>,
}

/// Lower-case hex sha256 of a file.
pub fn file_sha256(path: &Path) -> Result<String, DetectError> {
    let read_err = |source| DetectError::ModelRead {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn io_report(name: &str, ty: &ValueType) -> IoReport {
    match ty {
        ValueType::Tensor { ty, shape, .. } => IoReport {
            name: name.to_string(),
            dtype: format!("{ty:?}").to_ascii_lowercase(),
            shape: shape.iter().copied().collect(),
        },
        other => IoReport {
            name: name.to_string(),
            dtype: format!("{other:?}")
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("other")
                .to_ascii_lowercase(),
            shape: Vec::new(),
        },
    }
}

fn layout_text(layout: &OutputLayout) -> String {
    match layout {
        OutputLayout::NanoDet { levels, reg_max } => format!(
            "nanodet: strides {:?}, reg_max {reg_max}",
            levels.iter().map(|l| l.stride).collect::<Vec<_>>()
        ),
        OutputLayout::YoloV8 { output, fields } => {
            format!("yolov8: {output} [1,{fields},N] cx,cy,w,h + class scores")
        }
        OutputLayout::YoloEnd2End { output } => {
            format!("yolo-e2e: {output} [1,K,6] x1,y1,x2,y2,score,class (input pixels)")
        }
        OutputLayout::Detr {
            boxes,
            scores,
            fields,
            kind,
        } => match scores {
            None => {
                format!("detr: {boxes} [1,K,{fields}] cx,cy,w,h (0..1) + class scores ({kind:?})")
            }
            Some(s) => format!("detr: {boxes} [1,K,4] cx,cy,w,h (0..1) + {s} [1,K,nc] ({kind:?})"),
        },
        OutputLayout::Yolox {
            output,
            fields,
            strides,
            decoded,
        } => format!(
            "yolox: {output} [1,N,{fields}] strides {strides:?}, boxes {}",
            if *decoded {
                "already decoded"
            } else {
                "raw (grid + stride decode)"
            }
        ),
        OutputLayout::NmsRows { output, columns } => format!(
            "nms: {output} rows of {} columns (batch {:?}, x1 {}, y1 {}, x2 {}, y2 {}, class {}, score {})",
            columns.width,
            columns.batch,
            columns.x1,
            columns.y1,
            columns.x2,
            columns.y2,
            columns.class,
            columns.score
        ),
        OutputLayout::TfOd {
            boxes,
            scores,
            classes,
            num_detections,
        } => format!(
            "tfod: {boxes} (y1,x1,y2,x2 0..1), {scores}, {classes}{}",
            num_detections
                .as_ref()
                .map(|n| format!(", {n}"))
                .unwrap_or_default()
        ),
    }
}

/// Frames the size table shows: 16:9 and 4:3 cameras at the node's default
/// `max_height` (720), and PAL (the bundled clips).
const EXAMPLE_FRAMES: [(u32, u32); 3] = [(1280, 720), (960, 720), (768, 576)];

fn preprocess_report(spec: &ModelSpec, dynamic: bool) -> PreprocessReport {
    let sizing = Sizing {
        dynamic,
        stride: super::coarsest_stride(&spec.layout),
        declared: spec.input_size,
        resize: spec.resize,
    };
    let sizes = if dynamic {
        EXAMPLE_FRAMES
            .iter()
            .flat_map(|&(fw, fh)| {
                PRESETS.iter().map(move |&(preset, factor, _)| {
                    let (w, h, _) = sizing.plan(InputBudget::Declared(factor), fw, fh);
                    SizeExample {
                        frame: [fw, fh],
                        preset,
                        input: [w, h],
                    }
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    PreprocessReport {
        input_width: spec.input_size.0,
        input_height: spec.input_size.1,
        resize: match spec.resize {
            ResizeMode::Stretch => "stretch",
            ResizeMode::Letterbox => "letterbox",
        },
        pad_value: (spec.resize == ResizeMode::Letterbox).then_some(spec.pad_value),
        color: match spec.color {
            ColorOrder::Rgb => "rgb",
            ColorOrder::Bgr => "bgr",
        },
        mean: spec.mean,
        std: spec.std,
        scale: spec.std.map(|s| 1.0 / s),
        source: match &spec.source {
            SpecSource::Manifest(p) => format!("manifest {}", p.display()),
            SpecSource::Metadata => format!("defaults for {}", spec.family.as_str()),
        },
        dynamic_input: dynamic,
        stride: sizing.stride,
        sizes,
    }
}

/// Opens `model` (no inference) and reports what it is; see the module docs.
///
/// Errors only when the file cannot be read or is not a loadable ONNX
/// model (or ONNX Runtime is missing); an unsupported layout is reported in
/// [`ModelReport::family_error`].
pub fn inspect(model: &Path) -> Result<ModelReport, DetectError> {
    init_runtime(&RuntimeOptions::default())?;
    let rt = RUNTIME
        .get()
        .ok_or_else(|| DetectError::Runtime("runtime not initialised".into()))?;
    let bytes = std::fs::read(model).map_err(|source| DetectError::ModelRead {
        path: model.to_path_buf(),
        source,
    })?;
    let sha256 = file_sha256(model)?;
    let session = Session::builder(&rt.env)
        .map_err(|e| DetectError::Runtime(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| DetectError::Runtime(ort::Error::<()>::from(e).to_string()))?
        .commit_from_memory(&bytes)
        .map_err(|e| DetectError::ModelInvalid {
            path: model.to_path_buf(),
            reason: e.to_string(),
        })?;
    let inputs: Vec<IoReport> = session
        .inputs()
        .iter()
        .map(|o| io_report(o.name(), o.dtype()))
        .collect();
    let outputs: Vec<IoReport> = session
        .outputs()
        .iter()
        .map(|o| io_report(o.name(), o.dtype()))
        .collect();
    let (in_info, out_info) = session_io(&session);
    let metadata: HashMap<String, String> = read_metadata(&session);
    let manifest_path = Manifest::path_for(model);
    let mut report = ModelReport {
        model: model.to_path_buf(),
        bytes: bytes.len() as u64,
        sha256,
        inputs,
        outputs,
        metadata: metadata.clone().into_iter().collect(),
        manifest: manifest_path.exists().then_some(manifest_path),
        family: None,
        family_error: None,
        layout: None,
        nms: None,
        names: Vec::new(),
        preprocess: None,
    };
    let resolved = Manifest::load_for(model).and_then(|manifest| {
        resolve_spec(
            model,
            &in_info,
            &out_info,
            &metadata,
            manifest.as_ref().map(|(m, p)| (m, p.as_path())),
        )
    });
    match resolved {
        Ok(spec) => {
            report.family = Some(spec.family.as_str().to_string());
            report.layout = Some(layout_text(&spec.layout));
            report.nms = Some(spec.family.needs_nms());
            let dynamic = in_info
                .first()
                .is_some_and(|i| i.shape.len() == 4 && i.shape[2] < 0 && i.shape[3] < 0);
            report.preprocess = Some(preprocess_report(&spec, dynamic));
            report.names = spec.names;
        }
        Err(e) => report.family_error = Some(e.to_string()),
    }
    Ok(report)
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(","))
}

/// `s` cut to `max` characters with a note of the full length.
fn truncate(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}... ({n} chars)")
    }
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model:    {}", self.model.display())?;
        writeln!(f, "size:     {} bytes, sha256 {}", self.bytes, self.sha256)?;
        for (title, list) in [("inputs:", &self.inputs), ("outputs:", &self.outputs)] {
            writeln!(f, "{title}")?;
            for io in list {
                writeln!(
                    f,
                    "  {:<24} {:<8} {}",
                    io.name,
                    io.dtype,
                    shape_text(&io.shape)
                )?;
            }
        }
        if self.metadata.is_empty() {
            writeln!(f, "metadata: none")?;
        } else {
            writeln!(f, "metadata:")?;
            for (k, v) in &self.metadata {
                let one_line = v.replace('\n', "\\n");
                writeln!(f, "  {k} = {}", truncate(&one_line, DISPLAY_VALUE_CHARS))?;
            }
        }
        if let Some(m) = &self.manifest {
            writeln!(f, "manifest: {}", m.display())?;
        }
        match (&self.family, &self.family_error) {
            (Some(family), _) => {
                writeln!(f, "family:   {family}")?;
                if let Some(l) = &self.layout {
                    writeln!(f, "layout:   {l}")?;
                }
                let head: Vec<&str> = self.names.iter().take(8).map(String::as_str).collect();
                writeln!(
                    f,
                    "classes:  {} ({}{})",
                    self.names.len(),
                    head.join(", "),
                    if self.names.len() > head.len() {
                        ", ..."
                    } else {
                        ""
                    }
                )?;
                if let Some(nms) = self.nms {
                    writeln!(
                        f,
                        "nms:      {}",
                        if nms {
                            "class-aware NMS after decoding"
                        } else {
                            "none (the model's boxes are final)"
                        }
                    )?;
                }
            }
            (None, Some(e)) => writeln!(f, "family:   none: {e}")?,
            (None, None) => writeln!(f, "family:   none")?,
        }
        if let Some(p) = &self.preprocess {
            writeln!(f, "preprocess ({}):", p.source)?;
            writeln!(
                f,
                "  input:     {}x{} (width x height), NCHW float32",
                p.input_width, p.input_height
            )?;
            if p.dynamic_input {
                write_sizes(f, p)?;
            }
            match p.pad_value {
                Some(pad) => writeln!(
                    f,
                    "  resize:    letterbox (aspect kept, centred, pad {pad})"
                )?,
                None => writeln!(f, "  resize:    {} (antialiased bilinear)", p.resize)?,
            }
            writeln!(f, "  colour:    {}", p.color.to_ascii_uppercase())?;
            writeln!(
                f,
                "  normalise: (x - {:?}) / {:?}, i.e. scale {:?}",
                p.mean, p.std, p.scale
            )?;
        }
        Ok(())
    }
}

/// The size table of a dynamic model (see [`PreprocessReport::sizes`]).
fn write_sizes(f: &mut fmt::Formatter<'_>, p: &PreprocessReport) -> fmt::Result {
    writeln!(
        f,
        "  dynamic:   any multiple of {} per side; each frame is sized by the camera's input_pixels at its own aspect ratio (stretched to the multiple):",
        p.stride
    )?;
    for frame in EXAMPLE_FRAMES {
        let row: Vec<String> = p
            .sizes
            .iter()
            .filter(|s| s.frame == [frame.0, frame.1])
            .map(|s| format!("{} {}x{}", s.preset, s.input[0], s.input[1]))
            .collect();
        writeln!(f, "    {}x{} frame: {}", frame.0, frame.1, row.join(", "))?;
    }
    writeln!(
        f,
        "  input_pixels = \"model\" gives the {}x{} above ({}).",
        p.input_width, p.input_height, p.resize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_short_and_cuts_long() {
        assert_eq!(truncate("abc", 5), "abc");
        let long = "x".repeat(300);
        let t = truncate(&long, 10);
        assert!(t.starts_with("xxxxxxxxxx..."), "{t}");
        assert!(t.ends_with("(300 chars)"), "{t}");
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            file_sha256(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(matches!(
            file_sha256(&dir.path().join("missing")),
            Err(DetectError::ModelRead { .. })
        ));
    }

    #[test]
    fn shapes_print_dynamic_dims() {
        assert_eq!(shape_text(&[-1, 3, 640, 640]), "[?,3,640,640]");
    }
}
