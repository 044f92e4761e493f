//! What a model file is and how to feed it: the manifest, the ONNX metadata
//! and the shapes, reconciled into one [`ModelSpec`] at load time.
//!
//! Sources, most explicit first:
//! 1. a manifest `<model>.json` next to the model (see [`Manifest`]);
//! 2. the model's own metadata: `names`, `strides`, `reg_max` (the bundled
//!    NanoDet), Ultralytics' `names`, `imgsz`, `task`;
//! 3. the output shapes: six `cls_sN`/`reg_sN` tensors mean NanoDet, one
//!    `[1, 4 + nc, N]` tensor means a YOLOv8/YOLO11 head.
//!
//! Whatever the source, the description is checked against the real input
//! and output shapes, and a mismatch is refused with "expected X, found Y":
//! a wrong model must fail at start-up, not produce garbage boxes at 3 a.m.
//! This file is pure (no ONNX Runtime); the detector hands it the I/O
//! signature it read from the session.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::DetectError;

/// Model family = which decoder to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Family {
    /// NanoDet / GFL head: per-stride `cls_sN` + `reg_sN` outputs.
    #[serde(rename = "nanodet")]
    NanoDet,
    /// Ultralytics YOLOv8 / YOLO11 detection (or segmentation) head.
    #[serde(rename = "yolov8")]
    YoloV8,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::NanoDet => "nanodet",
            Family::YoloV8 => "yolov8",
        }
    }
}

/// Channel order of the model input (frames are always RGB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// How a frame is fitted into the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Plain resize of the whole frame; aspect ratio not kept.
    Stretch,
    /// Aspect-preserving resize, centred, padded with `pad_value`.
    Letterbox,
}

/// `<model>.json`: the explicit description of a model.
///
/// Unknown fields are refused so a typo (`"colour"`) is an error instead of
/// a silently ignored setting.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub family: Family,
    /// `[width, height]` of the model input.
    pub input_size: [u32; 2],
    pub color: ColorOrder,
    /// Per input channel, in the model's channel order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resize: ResizeMode,
    /// Class names; default: the model's `names` metadata.
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// Letterbox border grey level (default 114, Ultralytics' value).
    #[serde(default)]
    pub pad_value: Option<u8>,
}

impl Manifest {
    /// Parses a manifest; `path` is only used in the error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DetectError> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| DetectError::ManifestInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let bad = |reason: String| DetectError::ManifestInvalid {
            path: path.to_path_buf(),
            reason,
        };
        if m.input_size.contains(&0) {
            return Err(bad(format!(
                "input_size {:?} has a zero dimension",
                m.input_size
            )));
        }
        if m.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || m.mean.iter().any(|v| !v.is_finite())
        {
            return Err(bad(format!(
                "mean {:?} / std {:?}: std must be non-zero and all finite",
                m.mean, m.std
            )));
        }
        if let Some(names) = &m.names
            && names.is_empty()
        {
            return Err(bad("names is empty".into()));
        }
        Ok(m)
    }

    /// The manifest path for a model: same name, `.json` extension.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    /// Reads `<model>.json` if it exists.
    pub fn load_for(model: &Path) -> Result<Option<(Self, PathBuf)>, DetectError> {
        let path = Self::path_for(model);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some((Self::parse(&text, &path)?, path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DetectError::ManifestInvalid {
                path,
                reason: e.to_string(),
            }),
        }
    }
}

/// One model input or output as ONNX Runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// `-1` for a dynamic dimension.
    pub shape: Vec<i64>,
    /// Element type is float32 (the only one the decoders read).
    pub is_f32: bool,
}

impl TensorInfo {
    pub fn new(name: &str, shape: &[i64]) -> Self {
        Self {
            name: name.to_string(),
            shape: shape.to_vec(),
            is_f32: true,
        }
    }
}

/// One NanoDet pyramid level and the output names that carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NanoDetLevelSpec {
    pub stride: u32,
    pub cls: String,
    pub reg: String,
    pub grid_w: usize,
    pub cells: usize,
}

/// Where the decoder finds its tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputLayout {
    NanoDet {
        /// Sorted by stride, ascending.
        levels: Vec<NanoDetLevelSpec>,
        reg_max: usize,
    },
    YoloV8 {
        output: String,
        /// `4 + nc (+ 32 mask coefficients for segmentation exports)`.
        fields: usize,
    },
}

/// Where the description came from (for logs and error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecSource {
    Manifest(PathBuf),
    Metadata,
}

/// Everything the detector needs to know about a model, checked against it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub family: Family,
    pub input_name: String,
    /// `(width, height)` of the model input.
    pub input_size: (u32, u32),
    pub color: ColorOrder,
    /// Per input channel, in `color` order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resize: ResizeMode,
    pub pad_value: u8,
    /// Class names, index = class id; length = the model's class count.
    pub names: Vec<String>,
    pub layout: OutputLayout,
    pub source: SpecSource,
}

impl ModelSpec {
    pub fn num_classes(&self) -> usize {
        self.names.len()
    }
}

/// `inputs: images [1,3,416,416]; outputs: cls_s8 [1,2704,80], ...` for errors.
pub fn describe_io(inputs: &[TensorInfo], outputs: &[TensorInfo]) -> String {
    let list = |ts: &[TensorInfo]| {
        let mut s = String::new();
        for (i, t) in ts.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let dims: Vec<String> = t
                .shape
                .iter()
                .map(|d| {
                    if *d < 0 {
                        "?".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect();
            let _ = write!(
                s,
                "{} [{}]{}",
                t.name,
                dims.join(","),
                if t.is_f32 { "" } else { " (not f32)" }
            );
        }
        if s.is_empty() { "none".to_string() } else { s }
    };
    format!("inputs: {}; outputs: {}", list(inputs), list(outputs))
}

/// Parses a class-name list: a JSON list (`["person", ...]`), or the
/// Python-dict string Ultralytics writes (`{0: 'person', 1: 'bicycle'}`),
/// whose keys must be exactly 0..n.
pub fn parse_names(text: &str) -> Result<Vec<String>, String> {
    let t = text.trim();
    if t.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(t).map_err(|e| format!("names JSON list: {e}"));
    }
    if !t.starts_with('{') {
        return Err("names is neither a JSON list nor a {id: name} dict".into());
    }
    let mut p = DictParser {
        s: t.as_bytes(),
        i: 1,
    };
    let mut map = BTreeMap::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.key()?;
        p.ws();
        if !p.eat(b':') {
            return Err(format!("expected ':' at byte {}", p.i));
        }
        p.ws();
        let value = p.string()?;
        if map.insert(key, value).is_some() {
            return Err(format!("duplicate class id {key}"));
        }
        p.ws();
        if p.eat(b',') {
            continue;
        }
        p.ws();
        if p.eat(b'}') {
            break;
        }
        return Err(format!("expected ',' or '}}' at byte {}", p.i));
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing text at byte {}", p.i));
    }
    let n = map.len();
    if map.keys().enumerate().any(|(i, k)| *k != i) {
        return Err(format!("class ids are not exactly 0..{n}"));
    }
    if n == 0 {
        return Err("names dict is empty".into());
    }
    Ok(map.into_values().collect())
}

struct DictParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl DictParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// An integer key, bare (`0`) or quoted (`"0"`, as in a JSON object).
    fn key(&mut self) -> Result<usize, String> {
        if matches!(self.s.get(self.i), Some(b'"' | b'\'')) {
            let k = self.string()?;
            return k
                .trim()
                .parse()
                .map_err(|_| format!("class id {k:?} is not an integer"));
        }
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("expected an integer class id at byte {start}"))
    }

    /// A single- or double-quoted string with backslash escapes.
    fn string(&mut self) -> Result<String, String> {
        let Some(&q) = self.s.get(self.i).filter(|c| matches!(c, b'"' | b'\'')) else {
            return Err(format!("expected a quoted name at byte {}", self.i));
        };
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { break };
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                }
                c if c == q => {
                    return String::from_utf8(out).map_err(|_| "name is not UTF-8".to_string());
                }
                c => out.push(c),
            }
        }
        Err("unterminated quoted name".into())
    }
}

/// NanoDet's upstream normalisation (BGR, ImageNet mean/std in 0..255).
const NANODET_MEAN: [f32; 3] = [103.53, 116.28, 123.675];
const NANODET_STD: [f32; 3] = [57.375, 57.12, 58.395];
const LETTERBOX_PAD: u8 = 114;

/// Which family the output signature looks like, if any.
pub fn infer_family(outputs: &[TensorInfo]) -> Option<Family> {
    if nanodet_pairs(outputs).is_some_and(|p| !p.is_empty()) {
        return Some(Family::NanoDet);
    }
    let first = outputs.first()?;
    let extra_ok = outputs[1..].iter().all(|o| o.shape.len() == 4);
    let s = &first.shape;
    let head = s.len() == 3 && s[0] <= 1 && s[1] >= 5 && (s[2] < 0 || s[2] > s[1]);
    (first.is_f32 && head && extra_ok).then_some(Family::YoloV8)
}

/// `(stride, cls, reg)` for outputs named `cls_sN` / `reg_sN`, if every
/// output is one of a complete pair.
fn nanodet_pairs(outputs: &[TensorInfo]) -> Option<Vec<(u32, &TensorInfo, &TensorInfo)>> {
    let stride_of =
        |name: &str, prefix: &str| -> Option<u32> { name.strip_prefix(prefix)?.parse().ok() };
    let mut pairs = Vec::new();
    for o in outputs {
        if let Some(s) = stride_of(&o.name, "cls_s") {
            let reg = outputs
                .iter()
                .find(|r| stride_of(&r.name, "reg_s") == Some(s))?;
            pairs.push((s, o, reg));
        } else if stride_of(&o.name, "reg_s").is_none() {
            return None;
        }
    }
    if pairs.len() * 2 != outputs.len() || pairs.iter().any(|(s, _, _)| *s == 0) {
        return None;
    }
    pairs.sort_by_key(|(s, _, _)| *s);
    Some(pairs)
}

/// Reconciles manifest, metadata and I/O signature into a checked spec.
pub fn resolve_spec(
    model: &Path,
    inputs: &[TensorInfo],
    outputs: &[TensorInfo],
    metadata: &HashMap<String, String>,
    manifest: Option<(&Manifest, &Path)>,
) -> Result<ModelSpec, DetectError> {
    let found = || describe_io(inputs, outputs);
    let mismatch = |expected: String, found: String| DetectError::SpecMismatch {
        path: model.to_path_buf(),
        expected,
        found,
    };

    // Family: the manifest says, the shapes must agree.
    let inferred = infer_family(outputs);
    let family = match (manifest, inferred) {
        (Some((m, _)), Some(f)) if m.family == f => f,
        (Some((m, mpath)), _) => {
            return Err(mismatch(
                format!(
                    "{} outputs as declared by {} ({})",
                    m.family.as_str(),
                    mpath.display(),
                    match m.family {
                        Family::NanoDet =>
                            "pairs cls_sN [1,cells,nc] + reg_sN [1,cells,4*(reg_max+1)]",
                        Family::YoloV8 => "one [1,4+nc,N] output (+ [1,32,h,w] mask prototypes)",
                    }
                ),
                found(),
            ));
        }
        (None, Some(f)) => f,
        (None, None) => {
            return Err(DetectError::UnknownFamily {
                path: model.to_path_buf(),
                found: found(),
            });
        }
    };
    if let Some(task) = metadata.get("task")
        && !matches!(task.as_str(), "detect" | "segment")
    {
        return Err(mismatch(
            "an Ultralytics 'detect' or 'segment' model".into(),
            format!("task '{task}'"),
        ));
    }

    // Input: one float image tensor [1|?, 3, H|?, W|?].
    let [input] = inputs else {
        return Err(mismatch(
            "exactly one input [1,3,H,W] float32".into(),
            found(),
        ));
    };
    let is = &input.shape;
    if !input.is_f32 || is.len() != 4 || is[0] > 1 || (is[1] >= 0 && is[1] != 3) {
        return Err(mismatch("input [1,3,H,W] float32".into(), found()));
    }
    let static_hw = (is[2] > 0 && is[3] > 0).then_some((is[3] as u32, is[2] as u32));
    let meta_hw = metadata.get("imgsz").and_then(|s| parse_imgsz(s));
    let input_size = match (manifest, meta_hw, static_hw) {
        (Some((m, _)), _, _) => (m.input_size[0], m.input_size[1]),
        (None, Some(wh), _) => wh,
        (None, None, Some(wh)) => wh,
        (None, None, None) => {
            return Err(mismatch(
                "a static input size, `imgsz` metadata or `input_size` in a manifest".into(),
                found(),
            ));
        }
    };
    if let Some((w, h)) = static_hw
        && (w, h) != input_size
    {
        return Err(mismatch(
            format!(
                "input [1,3,{},{}] (from the {})",
                input_size.1,
                input_size.0,
                if manifest.is_some() {
                    "manifest"
                } else {
                    "imgsz metadata"
                }
            ),
            found(),
        ));
    }

    // Class names: manifest, then metadata; checked against the outputs below.
    let names: Option<Vec<String>> = match manifest.and_then(|(m, _)| m.names.clone()) {
        Some(n) => Some(n),
        None => match metadata.get("names") {
            Some(text) => Some(
                parse_names(text).map_err(|reason| DetectError::ModelInvalid {
                    path: model.to_path_buf(),
                    reason: format!("metadata 'names': {reason}"),
                })?,
            ),
            None => None,
        },
    };

    let (layout, num_classes) = match family {
        Family::NanoDet => nanodet_layout(model, outputs, metadata, input_size, &found)?,
        Family::YoloV8 => yolo_layout(model, outputs, names.as_ref().map(Vec::len), &found)?,
    };
    let names = match names {
        Some(n) if n.len() == num_classes => n,
        Some(n) => {
            return Err(mismatch(
                format!("{} class names (from the {})", num_classes, "model outputs"),
                format!(
                    "{} names in the {}",
                    n.len(),
                    if manifest.is_some_and(|(m, _)| m.names.is_some()) {
                        "manifest"
                    } else {
                        "metadata"
                    }
                ),
            ));
        }
        None => {
            tracing::warn!(model = %model.display(), num_classes, "model has no class names; using class0..classN");
            (0..num_classes).map(|i| format!("class{i}")).collect()
        }
    };

    let (color, mean, std, resize, pad_value, source) = match manifest {
        Some((m, p)) => (
            m.color,
            m.mean,
            m.std,
            m.resize,
            m.pad_value.unwrap_or(LETTERBOX_PAD),
            SpecSource::Manifest(p.to_path_buf()),
        ),
        None => match family {
            Family::NanoDet => (
                ColorOrder::Bgr,
                NANODET_MEAN,
                NANODET_STD,
                ResizeMode::Stretch,
                LETTERBOX_PAD,
                SpecSource::Metadata,
            ),
            Family::YoloV8 => (
                ColorOrder::Rgb,
                [0.0; 3],
                [255.0; 3],
                ResizeMode::Letterbox,
                LETTERBOX_PAD,
                SpecSource::Metadata,
            ),
        },
    };

    Ok(ModelSpec {
        family,
        input_name: input.name.clone(),
        input_size,
        color,
        mean,
        std,
        resize,
        pad_value,
        names,
        layout,
        source,
    })
}

/// Ultralytics `imgsz`: `[640, 640]` (height, width) or a single `640`.
fn parse_imgsz(s: &str) -> Option<(u32, u32)> {
    let nums: Vec<u32> = s
        .trim_matches(|c: char| c == '[' || c == ']' || c == '(' || c == ')' || c.is_whitespace())
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    match nums[..] {
        [n] if n > 0 => Some((n, n)),
        [h, w] if h > 0 && w > 0 => Some((w, h)),
        _ => None,
    }
}

fn nanodet_layout(
    model: &Path,
    outputs: &[TensorInfo],
    metadata: &HashMap<String, String>,
    (w, h): (u32, u32),
    found: &dyn Fn() -> String,
) -> Result<(OutputLayout, usize), DetectError> {
    let mismatch = |expected: String| DetectError::SpecMismatch {
        path: model.to_path_buf(),
        expected,
        found: found(),
    };
    let pairs = nanodet_pairs(outputs).unwrap_or_default();
    let strides: Vec<u32> = pairs.iter().map(|(s, _, _)| *s).collect();
    if let Some(meta) = metadata.get("strides") {
        let declared: Option<Vec<u32>> = meta.split(',').map(|x| x.trim().parse().ok()).collect();
        match declared {
            Some(mut d) => {
                d.sort_unstable();
                if d != strides {
                    return Err(mismatch(format!(
                        "outputs for strides {d:?} (metadata 'strides')"
                    )));
                }
            }
            None => {
                return Err(DetectError::ModelInvalid {
                    path: model.to_path_buf(),
                    reason: format!("metadata 'strides' = {meta:?} is not a comma-separated list"),
                });
            }
        }
    }
    let meta_reg_max: Option<usize> = match metadata.get("reg_max") {
        Some(v) => Some(v.trim().parse().map_err(|_| DetectError::ModelInvalid {
            path: model.to_path_buf(),
            reason: format!("metadata 'reg_max' = {v:?} is not an integer"),
        })?),
        None => None,
    };
    let mut nc = None;
    let mut reg_max = meta_reg_max;
    let mut levels = Vec::new();
    for (s, cls, reg) in pairs {
        if !cls.is_f32 || !reg.is_f32 || cls.shape.len() != 3 || reg.shape.len() != 3 {
            return Err(mismatch("float32 cls_sN/reg_sN outputs of rank 3".into()));
        }
        if w % s != 0 || h % s != 0 {
            return Err(mismatch(format!(
                "input size {w}x{h} divisible by stride {s}"
            )));
        }
        let (gw, gh) = ((w / s) as usize, (h / s) as usize);
        let cells = gw * gh;
        let c = cls.shape[2];
        let r = reg.shape[2];
        let static_ok = |d: i64, want: usize| d < 0 || d as usize == want;
        if c <= 0 || r <= 0 || r % 4 != 0 {
            return Err(mismatch(format!(
                "static class/bin dims in {} / {}",
                cls.name, reg.name
            )));
        }
        let (c, bins) = (c as usize, r as usize / 4);
        if *nc.get_or_insert(c) != c {
            return Err(mismatch(format!(
                "the same class count on every level ({} on the first)",
                nc.unwrap_or(0)
            )));
        }
        if bins < 2 || *reg_max.get_or_insert(bins - 1) != bins - 1 {
            return Err(mismatch(format!(
                "reg outputs with 4 x (reg_max + 1) = {} bins (reg_max {})",
                4 * (reg_max.unwrap_or(0) + 1),
                reg_max.unwrap_or(0)
            )));
        }
        if !static_ok(cls.shape[1], cells) || !static_ok(reg.shape[1], cells) {
            return Err(mismatch(format!(
                "{cells} cells at stride {s} ({gw}x{gh} for a {w}x{h} input)"
            )));
        }
        levels.push(NanoDetLevelSpec {
            stride: s,
            cls: cls.name.clone(),
            reg: reg.name.clone(),
            grid_w: gw,
            cells,
        });
    }
    let (Some(nc), Some(reg_max)) = (nc, reg_max) else {
        return Err(mismatch("at least one cls_sN/reg_sN output pair".into()));
    };
    Ok((OutputLayout::NanoDet { levels, reg_max }, nc))
}

fn yolo_layout(
    model: &Path,
    outputs: &[TensorInfo],
    names: Option<usize>,
    found: &dyn Fn() -> String,
) -> Result<(OutputLayout, usize), DetectError> {
    let head = &outputs[0];
    let fields = head.shape[1] as usize;
    let protos = outputs.iter().skip(1).find(|o| o.shape.len() == 4);
    let mask_coeffs = protos
        .map(|p| p.shape[1])
        .filter(|d| *d > 0)
        .map(|d| d as usize)
        .unwrap_or(0);
    let nc = match names {
        Some(n) if fields == 4 + n => n,
        Some(n) if mask_coeffs > 0 && fields == 4 + n + mask_coeffs => n,
        Some(n) => {
            return Err(DetectError::SpecMismatch {
                path: model.to_path_buf(),
                expected: format!(
                    "output {} with 4 + {n} classes{} = {} fields",
                    head.name,
                    if mask_coeffs > 0 {
                        format!(" (+ {mask_coeffs} mask coefficients)")
                    } else {
                        String::new()
                    },
                    4 + n + mask_coeffs
                ),
                found: found(),
            });
        }
        None => fields - 4 - mask_coeffs.min(fields.saturating_sub(5)),
    };
    Ok((
        OutputLayout::YoloV8 {
            output: head.name.clone(),
            fields,
        },
        nc,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanodet_io(nc: i64) -> (Vec<TensorInfo>, Vec<TensorInfo>) {
        let inputs = vec![TensorInfo::new("images", &[1, 3, 416, 416])];
        let outputs = vec![
            TensorInfo::new("cls_s8", &[1, 2704, nc]),
            TensorInfo::new("reg_s8", &[1, 2704, 44]),
            TensorInfo::new("cls_s16", &[1, 676, nc]),
            TensorInfo::new("reg_s16", &[1, 676, 44]),
            TensorInfo::new("cls_s32", &[1, 169, nc]),
            TensorInfo::new("reg_s32", &[1, 169, 44]),
        ];
        (inputs, outputs)
    }

    fn meta(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names_json(n: usize) -> String {
        serde_json::to_string(&(0..n).map(|i| format!("c{i}")).collect::<Vec<_>>()).unwrap()
    }

    const BUNDLED_MANIFEST: &str = include_str!("../../../models/nanodet_g_coco_416.json");

    #[test]
    fn bundled_manifest_parses() {
        let m = Manifest::parse(BUNDLED_MANIFEST, Path::new("m.json")).unwrap();
        assert_eq!(m.family, Family::NanoDet);
        assert_eq!(m.input_size, [416, 416]);
        assert_eq!(m.color, ColorOrder::Bgr);
        assert_eq!(m.resize, ResizeMode::Stretch);
        assert_eq!(m.mean, NANODET_MEAN);
        assert_eq!(m.std, NANODET_STD);
        assert_eq!(m.names, None);
    }

    #[test]
    fn manifest_rejects_unknown_fields_and_bad_values() {
        let base = r#""family":"yolov8","input_size":[640,640],"color":"rgb","mean":[0,0,0],"std":[255,255,255],"resize":"letterbox""#;
        assert!(Manifest::parse(&format!("{{{base}}}"), Path::new("a.json")).is_ok());
        let typo = Manifest::parse(
            &format!("{{{base},\"colour\":\"rgb\"}}"),
            Path::new("a.json"),
        );
        match typo {
            Err(DetectError::ManifestInvalid { path, reason }) => {
                assert_eq!(path, Path::new("a.json"));
                assert!(reason.contains("colour"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let bad_family = base.replace("yolov8", "yolov5");
        assert!(matches!(
            Manifest::parse(&format!("{{{bad_family}}}"), Path::new("a.json")),
            Err(DetectError::ManifestInvalid { .. })
        ));
        let zero_std = base.replace("[255,255,255]", "[255,0,255]");
        assert!(Manifest::parse(&format!("{{{zero_std}}}"), Path::new("a.json")).is_err());
        let missing = r#"{"family":"nanodet","input_size":[416,416]}"#;
        assert!(Manifest::parse(missing, Path::new("a.json")).is_err());
    }

    #[test]
    fn names_parse_json_and_python_dict() {
        assert_eq!(
            parse_names(r#"["person", "bicycle"]"#).unwrap(),
            vec!["person", "bicycle"]
        );
        assert_eq!(
            parse_names("{0: 'person', 1: 'bicycle', 2: \"traffic light\"}").unwrap(),
            vec!["person", "bicycle", "traffic light"]
        );
        assert_eq!(parse_names("{1: 'b', 0: 'a'}").unwrap(), vec!["a", "b"]);
        assert_eq!(
            parse_names(r#"{"0": "a", "1": "b"}"#).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(parse_names(r"{0: 'it\'s'}").unwrap(), vec!["it's"]);
        assert!(parse_names("{0: 'a', 2: 'c'}").is_err(), "gap in ids");
        assert!(parse_names("{0: 'a', 0: 'b'}").is_err(), "duplicate");
        assert!(parse_names("{0: 'a'").is_err());
        assert!(parse_names("person,bicycle").is_err());
        assert!(parse_names("{}").is_err());
    }

    #[test]
    fn imgsz_parses() {
        assert_eq!(parse_imgsz("[640, 640]"), Some((640, 640)));
        assert_eq!(parse_imgsz("[384, 640]"), Some((640, 384)));
        assert_eq!(parse_imgsz("320"), Some((320, 320)));
        assert_eq!(parse_imgsz("[a]"), None);
    }

    #[test]
    fn nanodet_from_metadata() {
        let (i, o) = nanodet_io(80);
        let m = meta(&[
            ("names", &names_json(80)),
            ("strides", "8,16,32"),
            ("reg_max", "10"),
        ]);
        let spec = resolve_spec(Path::new("m.onnx"), &i, &o, &m, None).unwrap();
        assert_eq!(spec.family, Family::NanoDet);
        assert_eq!(spec.input_size, (416, 416));
        assert_eq!(spec.color, ColorOrder::Bgr);
        assert_eq!(spec.resize, ResizeMode::Stretch);
        assert_eq!(spec.num_classes(), 80);
        let OutputLayout::NanoDet { levels, reg_max } = &spec.layout else {
            panic!()
        };
        assert_eq!(*reg_max, 10);
        assert_eq!(
            levels
                .iter()
                .map(|l| (l.stride, l.grid_w, l.cells))
                .collect::<Vec<_>>(),
            vec![(8, 52, 2704), (16, 26, 676), (32, 13, 169)]
        );
        assert_eq!(spec.source, SpecSource::Metadata);
    }

    #[test]
    fn nanodet_mismatches_are_refused() {
        let (i, o) = nanodet_io(80);
        // Too few names.
        let m = meta(&[("names", &names_json(79))]);
        let e = resolve_spec(Path::new("m.onnx"), &i, &o, &m, None).unwrap_err();
        match &e {
            DetectError::SpecMismatch {
                expected, found, ..
            } => {
                assert!(expected.contains("80"), "{expected}");
                assert!(found.contains("79"), "{found}");
            }
            other => panic!("{other:?}"),
        }
        // Metadata strides disagree with the outputs.
        let m = meta(&[("strides", "8,16,32,64")]);
        assert!(matches!(
            resolve_spec(Path::new("m.onnx"), &i, &o, &m, None),
            Err(DetectError::SpecMismatch { .. })
        ));
        // reg_max disagrees with 44 = 4 x 11 bins.
        let m = meta(&[("reg_max", "7")]);
        assert!(matches!(
            resolve_spec(Path::new("m.onnx"), &i, &o, &m, None),
            Err(DetectError::SpecMismatch { .. })
        ));
        // Manifest claims a different input size.
        let mut man = Manifest::parse(BUNDLED_MANIFEST, Path::new("m.json")).unwrap();
        man.input_size = [320, 320];
        let e = resolve_spec(
            Path::new("m.onnx"),
            &i,
            &o,
            &HashMap::new(),
            Some((&man, Path::new("m.json"))),
        )
        .unwrap_err();
        match e {
            DetectError::SpecMismatch {
                expected, found, ..
            } => {
                assert!(expected.contains("320"), "{expected}");
                assert!(found.contains("416"), "{found}");
            }
            other => panic!("{other:?}"),
        }
        // Manifest claims yolov8 for a nanodet model.
        let mut man = Manifest::parse(BUNDLED_MANIFEST, Path::new("m.json")).unwrap();
        man.family = Family::YoloV8;
        let e = resolve_spec(
            Path::new("m.onnx"),
            &i,
            &o,
            &HashMap::new(),
            Some((&man, Path::new("m.json"))),
        );
        assert!(matches!(e, Err(DetectError::SpecMismatch { .. })));
        // Cells that do not match the grid.
        let (i2, mut o2) = nanodet_io(80);
        o2[0].shape[1] = 2700;
        assert!(matches!(
            resolve_spec(Path::new("m.onnx"), &i2, &o2, &HashMap::new(), None),
            Err(DetectError::SpecMismatch { .. })
        ));
    }

    #[test]
    fn manifest_overrides_preprocessing_and_names() {
        let (i, o) = nanodet_io(2);
        let text = r#"{"family":"nanodet","input_size":[416,416],"color":"rgb","mean":[1,2,3],"std":[4,5,6],"resize":"letterbox","names":["a","b"],"pad_value":0}"#;
        let man = Manifest::parse(text, Path::new("x.json")).unwrap();
        let spec = resolve_spec(
            Path::new("x.onnx"),
            &i,
            &o,
            &meta(&[("names", "[\"q\"]")]),
            Some((&man, Path::new("x.json"))),
        )
        .unwrap();
        assert_eq!(spec.names, vec!["a", "b"]);
        assert_eq!(
            (spec.color, spec.resize, spec.pad_value),
            (ColorOrder::Rgb, ResizeMode::Letterbox, 0)
        );
        assert_eq!(spec.mean, [1.0, 2.0, 3.0]);
        assert_eq!(spec.source, SpecSource::Manifest(PathBuf::from("x.json")));
    }

    #[test]
    fn yolov8_from_ultralytics_metadata() {
        let i = vec![TensorInfo::new("images", &[1, 3, 640, 640])];
        let o = vec![TensorInfo::new("output0", &[1, 84, 8400])];
        let names: String = format!(
            "{{{}}}",
            (0..80)
                .map(|k| format!("{k}: 'n{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let m = meta(&[
            ("names", &names),
            ("imgsz", "[640, 640]"),
            ("task", "detect"),
            ("stride", "32"),
        ]);
        let spec = resolve_spec(Path::new("y.onnx"), &i, &o, &m, None).unwrap();
        assert_eq!(spec.family, Family::YoloV8);
        assert_eq!(
            (spec.color, spec.resize, spec.std),
            (ColorOrder::Rgb, ResizeMode::Letterbox, [255.0; 3])
        );
        assert_eq!(spec.names[79], "n79");
        assert_eq!(
            spec.layout,
            OutputLayout::YoloV8 {
                output: "output0".into(),
                fields: 84
            }
        );

        // Segmentation export: 4 + 6 + 32 fields plus prototypes.
        let o = vec![
            TensorInfo::new("output0", &[1, 42, 8400]),
            TensorInfo::new("output1", &[1, 32, 160, 160]),
        ];
        let m6 = meta(&[
            ("names", "{0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e', 5: 'f'}"),
            ("task", "segment"),
        ]);
        let spec = resolve_spec(Path::new("s.onnx"), &i, &o, &m6, None).unwrap();
        assert_eq!(spec.num_classes(), 6);

        // Names that do not fit the head.
        let m3 = meta(&[("names", "{0: 'a', 1: 'b', 2: 'c'}")]);
        let e = resolve_spec(Path::new("s.onnx"), &i, &o[..1], &m3, None).unwrap_err();
        assert!(matches!(e, DetectError::SpecMismatch { .. }), "{e:?}");
        // Pose models are not detection models.
        let mp = meta(&[("task", "pose")]);
        assert!(matches!(
            resolve_spec(Path::new("p.onnx"), &i, &o[..1], &mp, None),
            Err(DetectError::SpecMismatch { .. })
        ));
        // Dynamic input dims: imgsz decides; without it there is nothing to go on.
        let dyn_in = vec![TensorInfo::new("images", &[-1, 3, -1, -1])];
        let spec = resolve_spec(
            Path::new("d.onnx"),
            &dyn_in,
            &o[..1],
            &meta(&[("imgsz", "[320, 480]")]),
            None,
        )
        .unwrap();
        assert_eq!(spec.input_size, (480, 320));
        assert_eq!(spec.names.len(), 38);
        assert!(
            resolve_spec(Path::new("d.onnx"), &dyn_in, &o[..1], &HashMap::new(), None).is_err()
        );
    }

    #[test]
    fn unknown_family_lists_what_was_found() {
        let i = vec![TensorInfo::new("data", &[1, 3, 32, 32])];
        let o = vec![TensorInfo::new("logits", &[1, 1000])];
        match resolve_spec(Path::new("w.onnx"), &i, &o, &HashMap::new(), None) {
            Err(DetectError::UnknownFamily { path, found }) => {
                assert_eq!(path, Path::new("w.onnx"));
                assert!(found.contains("logits [1,1000]"), "{found}");
                assert!(found.contains("data [1,3,32,32]"), "{found}");
            }
            other => panic!("{other:?}"),
        }
        // Unpaired nanodet-like outputs are not NanoDet.
        let o = vec![
            TensorInfo::new("cls_s8", &[1, 4, 2]),
            TensorInfo::new("reg_s16", &[1, 1, 8]),
        ];
        assert_eq!(infer_family(&o), None);
    }

    #[test]
    fn bad_input_is_refused() {
        let (_, o) = nanodet_io(80);
        let i = vec![TensorInfo::new("images", &[1, 416, 416, 3])];
        assert!(matches!(
            resolve_spec(Path::new("m.onnx"), &i, &o, &HashMap::new(), None),
            Err(DetectError::SpecMismatch { .. })
        ));
        let two = vec![
            TensorInfo::new("a", &[1, 3, 416, 416]),
            TensorInfo::new("b", &[1]),
        ];
        assert!(matches!(
            resolve_spec(Path::new("m.onnx"), &two, &o, &HashMap::new(), None),
            Err(DetectError::SpecMismatch { .. })
        ));
    }
}
