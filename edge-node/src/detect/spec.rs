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
///
/// Manifest spellings (`"family"`): `nanodet`; `yolov8` (also `yolov5u`,
/// `yolo11`, `yolov11`: the same `[1, 4+nc, N]` head); `yolo-e2e` (also
/// `yolov10`, `yolo26`); `detr` (also `rtdetr`, `rt-detr`); `yolox`; `nms`;
/// `tfod` (also `tf-od`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Family {
    /// NanoDet / GFL head: per-stride `cls_sN` + `reg_sN` outputs.
    #[serde(rename = "nanodet")]
    NanoDet,
    /// Ultralytics YOLOv5u / YOLOv8 / YOLO11 detection (or segmentation)
    /// head `[1, 4+nc, N]`: cx, cy, w, h in input pixels + sigmoid scores.
    #[serde(
        rename = "yolov8",
        alias = "yolov5u",
        alias = "yolo11",
        alias = "yolov11"
    )]
    YoloV8,
    /// NMS-free end-to-end YOLO (YOLOv10, YOLO26): `[1, K, 6]` rows of
    /// x1, y1, x2, y2, score, class in input pixels.
    #[serde(rename = "yolo-e2e", alias = "yolov10", alias = "yolo26")]
    YoloEnd2End,
    /// DETR-style set prediction: `[1, K, 4+nc]`, or a `[1, K, 4]` boxes +
    /// `[1, K, nc]` scores pair; boxes cx, cy, w, h normalised to 0..1.
    #[serde(rename = "detr", alias = "rtdetr", alias = "rt-detr")]
    Detr,
    /// YOLOX: `[1, N, 5+nc]` over the stride 8/16/32 grids, raw boxes
    /// decoded here (or already decoded, see [`Manifest::decoded`]).
    #[serde(rename = "yolox")]
    Yolox,
    /// A graph that already ran NMS and emits `[N, 7]` rows (default
    /// columns batch, x1, y1, x2, y2, class, score; see [`Manifest::columns`]).
    #[serde(rename = "nms")]
    NmsRows,
    /// TF Object Detection API style: `boxes` `[1, K, 4]` (y1, x1, y2, x2
    /// normalised), `scores` `[1, K]`, `classes` `[1, K]`, optional
    /// `num_detections` `[1]`.
    #[serde(rename = "tfod", alias = "tf-od")]
    TfOd,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::NanoDet,
        Family::YoloV8,
        Family::YoloEnd2End,
        Family::Detr,
        Family::Yolox,
        Family::NmsRows,
        Family::TfOd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::NanoDet => "nanodet",
            Family::YoloV8 => "yolov8",
            Family::YoloEnd2End => "yolo-e2e",
            Family::Detr => "detr",
            Family::Yolox => "yolox",
            Family::NmsRows => "nms",
            Family::TfOd => "tfod",
        }
    }

    /// The output signature this family expects, for error messages.
    pub fn expected_outputs(self) -> &'static str {
        match self {
            Family::NanoDet => "pairs cls_sN [1,cells,nc] + reg_sN [1,cells,4*(reg_max+1)]",
            Family::YoloV8 => "one [1,4+nc,N] output (+ [1,32,h,w] mask prototypes)",
            Family::YoloEnd2End => "one [1,K,6] output (x1,y1,x2,y2,score,class)",
            Family::Detr => "one [1,K,4+nc] output, or [1,K,4] boxes + [1,K,nc] scores",
            Family::Yolox => "one [1,N,5+nc] output, N = grid cells at strides 8/16/32",
            Family::NmsRows => "one [N,C] (or [1,N,C]) output of post-NMS rows, C >= 6",
            Family::TfOd => {
                "outputs named *boxes* [1,K,4], *scores* [1,K], *classes* [1,K] (+ *num_detections* [1])"
            }
        }
    }

    /// Whether the detector runs class-aware NMS on the decoded boxes.
    /// End-to-end and NMS-including graphs already produce final boxes;
    /// a second NMS could only drop legitimate overlapping objects.
    pub fn needs_nms(self) -> bool {
        matches!(self, Family::NanoDet | Family::YoloV8 | Family::Yolox)
    }
}

/// How DETR-style class scores are turned into probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Logits if any value of the frame's score tensor is outside 0..=1
    /// (real logits are mostly large negatives), probabilities otherwise.
    #[default]
    Auto,
    /// Per-class logits: a sigmoid is applied (RT-DETR, Deformable DETR).
    Logits,
    /// Already probabilities (Ultralytics RT-DETR exports).
    Probabilities,
}

/// Column roles of a post-NMS `[N, C]` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NmsColumns {
    /// Batch index column; rows of other batches than 0 are skipped.
    pub batch: Option<usize>,
    pub x1: usize,
    pub y1: usize,
    pub x2: usize,
    pub y2: usize,
    pub class: usize,
    pub score: usize,
    /// Number of columns of the output.
    pub width: usize,
}

impl NmsColumns {
    /// `batch_id, x1, y1, x2, y2, class, score` (YOLOv7 / ORT NMS exports).
    pub const DEFAULT: NmsColumns = NmsColumns {
        batch: Some(0),
        x1: 1,
        y1: 2,
        x2: 3,
        y2: 4,
        class: 5,
        score: 6,
        width: 7,
    };

    /// Parses a manifest `columns` list: each of `x1, y1, x2, y2, class,
    /// score` exactly once, optionally `batch`, anything else as `_`.
    pub fn parse(cols: &[String]) -> Result<Self, String> {
        let find = |role: &str| -> Result<Option<usize>, String> {
            let hits: Vec<usize> = cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c.as_str() == role)
                .map(|(i, _)| i)
                .collect();
            match hits[..] {
                [] => Ok(None),
                [i] => Ok(Some(i)),
                _ => Err(format!("column {role:?} appears {} times", hits.len())),
            }
        };
        for c in cols {
            if !matches!(
                c.as_str(),
                "batch" | "x1" | "y1" | "x2" | "y2" | "class" | "score" | "_"
            ) {
                return Err(format!(
                    "unknown column {c:?} (use batch, x1, y1, x2, y2, class, score or _)"
                ));
            }
        }
        let need = |role: &str| -> Result<usize, String> {
            find(role)?.ok_or_else(|| format!("column {role:?} is missing"))
        };
        Ok(NmsColumns {
            batch: find("batch")?,
            x1: need("x1")?,
            y1: need("y1")?,
            x2: need("x2")?,
            y2: need("y2")?,
            class: need("class")?,
            score: need("score")?,
            width: cols.len(),
        })
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
    /// `nms` family: the role of each output column, e.g.
    /// `["batch","x1","y1","x2","y2","score","class"]`; default
    /// [`NmsColumns::DEFAULT`].
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// `yolox` family: `true` when the export already decoded the boxes
    /// (`decode_in_inference=True`); default: the `decoded` /
    /// `decode_in_inference` metadata, else `false` (YOLOX's export default).
    #[serde(default)]
    pub decoded: Option<bool>,
    /// `yolox` family: grid strides (default `[8, 16, 32]`).
    #[serde(default)]
    pub strides: Option<Vec<u32>>,
    /// `detr` family: `auto` (default), `logits` or `probabilities`.
    #[serde(default)]
    pub scores: Option<ScoreKind>,
    /// Label aliases: a class name of the model → the name the node uses
    /// (`{"xe_may": "motorcycle", "oto": "car"}`), so a model trained with
    /// its own class names feeds the same `[detector] classes`, rules,
    /// counts and events as the bundled COCO model. Every key must be one of
    /// the model's class names.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
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
        if let Some(cols) = &m.columns {
            NmsColumns::parse(cols).map_err(|e| bad(format!("columns: {e}")))?;
        }
        if let Some(strides) = &m.strides
            && (strides.is_empty() || strides.contains(&0))
        {
            return Err(bad(format!("strides {strides:?}: need non-zero strides")));
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
    /// `[1, K, 6]`: x1, y1, x2, y2, score, class (input pixels).
    YoloEnd2End {
        output: String,
    },
    Detr {
        /// `[1, K, 4 + nc]` when `scores` is `None`, else `[1, K, 4]`.
        boxes: String,
        /// `[1, K, nc]` scores of a boxes/scores pair.
        scores: Option<String>,
        /// Values per query in `boxes` (4 + nc, or 4 for a pair).
        fields: usize,
        kind: ScoreKind,
    },
    Yolox {
        output: String,
        /// `5 + nc`.
        fields: usize,
        /// Ascending; the grid of stride `s` is `(W/s) x (H/s)`, see [`yolox_cells`].
        strides: Vec<u32>,
        decoded: bool,
    },
    NmsRows {
        output: String,
        columns: NmsColumns,
    },
    TfOd {
        boxes: String,
        scores: String,
        classes: String,
        num_detections: Option<String>,
    },
}

/// Number of YOLOX anchors (grid cells) for an input: `Σ (W/s) (H/s)`
/// (integer division, as YOLOX's `hsize = H // s`).
pub fn yolox_cells(w: u32, h: u32, strides: &[u32]) -> usize {
    strides
        .iter()
        .filter(|s| **s > 0)
        .map(|s| (w / s) as usize * (h / s) as usize)
        .sum()
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

/// Default YOLOX strides.
const YOLOX_STRIDES: [u32; 3] = [8, 16, 32];
/// DETR-style models predict a fixed, small set of queries (100..900 in
/// practice). A `[1, N, 5+nc]` output with more rows that is not a YOLOX
/// grid (e.g. an original YOLOv5 `[1, 25200, 85]` head, whose decoding is
/// not supported) is refused instead of being decoded as garbage.
const MAX_DETR_QUERIES: i64 = 1000;

/// Largest model input side edge-node runs: one 4096×4096 input tensor is
/// 201 MB of f32; a model declaring more (or a dynamic one whose `imgsz` or
/// manifest says more) is refused at load, before anything is allocated.
pub const MAX_INPUT_SIDE: u32 = 4096;

/// `[b, a, c]` of a float rank-3 output with batch 1 (or dynamic).
fn rank3(o: &TensorInfo) -> Option<(i64, i64)> {
    (o.is_f32 && o.shape.len() == 3 && o.shape[0] <= 1).then(|| (o.shape[1], o.shape[2]))
}

fn yolov8_head(outputs: &[TensorInfo]) -> bool {
    let Some(first) = outputs.first() else {
        return false;
    };
    let extra_ok = outputs[1..].iter().all(|o| o.shape.len() == 4);
    let s = &first.shape;
    let head = s.len() == 3 && s[0] <= 1 && s[1] >= 5 && (s[2] < 0 || s[2] > s[1]);
    first.is_f32 && head && extra_ok
}

/// The TF-OD output names: boxes, scores, classes, num_detections.
type TfOdNames<'a> = (
    &'a TensorInfo,
    &'a TensorInfo,
    &'a TensorInfo,
    Option<&'a TensorInfo>,
);

/// Outputs named like TF-OD's `detection_boxes` / `detection_scores` /
/// `detection_classes` (+ `num_detections`), with matching shapes.
fn tfod_outputs(outputs: &[TensorInfo]) -> Option<TfOdNames<'_>> {
    if !(3..=4).contains(&outputs.len()) {
        return None;
    }
    let named = |part: &str| {
        let hits: Vec<&TensorInfo> = outputs
            .iter()
            .filter(|o| o.name.to_ascii_lowercase().contains(part))
            .collect();
        match hits[..] {
            [one] => Some(one),
            _ => None,
        }
    };
    let boxes = named("box")?;
    let scores = named("score")?;
    let classes = named("class")?;
    let num = named("num");
    if outputs.len() != 3 + usize::from(num.is_some()) {
        return None;
    }
    let k = |o: &TensorInfo| o.shape.get(1).copied().unwrap_or(0);
    let same_k = |a: i64, b: i64| a < 0 || b < 0 || a == b;
    let ok = boxes.is_f32
        && scores.is_f32
        && boxes.shape.len() == 3
        && boxes.shape[0] <= 1
        && boxes.shape[2] == 4
        && scores.shape.len() == 2
        && classes.shape.len() == 2
        && same_k(k(boxes), k(scores))
        && same_k(k(boxes), k(classes))
        && num.is_none_or(|n| n.shape.len() <= 2 && n.shape.iter().all(|d| *d <= 1));
    ok.then_some((boxes, scores, classes, num))
}

/// A DETR `[1,K,4]` boxes + `[1,K,nc]` scores pair: (boxes, scores).
fn detr_pair(outputs: &[TensorInfo]) -> Option<(&TensorInfo, &TensorInfo)> {
    let [a, b] = outputs else { return None };
    let (Some((ka, ca)), Some((kb, cb))) = (rank3(a), rank3(b)) else {
        return None;
    };
    if !(ka < 0 || kb < 0 || ka == kb) || ca <= 0 || cb <= 0 {
        return None;
    }
    let is_box = |o: &TensorInfo| o.name.to_ascii_lowercase().contains("box");
    match (ca == 4, cb == 4) {
        (true, false) => Some((a, b)),
        (false, true) => Some((b, a)),
        (true, true) if is_box(a) && !is_box(b) => Some((a, b)),
        (true, true) if is_box(b) && !is_box(a) => Some((b, a)),
        _ => None,
    }
}

/// `[N, C]` or `[1, N, C]` with `C >= min_cols`.
fn nms_rows(outputs: &[TensorInfo], min_cols: i64) -> Option<&TensorInfo> {
    let [o] = outputs else { return None };
    let s = &o.shape;
    let ok = o.is_f32
        && match s.len() {
            2 => s[1] >= min_cols,
            3 => s[0] <= 1 && s[2] >= min_cols,
            _ => false,
        };
    ok.then_some(o)
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

/// Whether the outputs have the shape `family` needs (manifest check).
pub fn family_fits(family: Family, outputs: &[TensorInfo]) -> bool {
    let single3 = || match outputs {
        [o] => rank3(o),
        _ => None,
    };
    match family {
        Family::NanoDet => nanodet_pairs(outputs).is_some_and(|p| !p.is_empty()),
        Family::YoloV8 => yolov8_head(outputs),
        Family::YoloEnd2End => single3().is_some_and(|(_, c)| c == 6),
        Family::Detr => single3().is_some_and(|(_, c)| c >= 5) || detr_pair(outputs).is_some(),
        Family::Yolox => single3().is_some_and(|(_, c)| c >= 6),
        Family::NmsRows => nms_rows(outputs, 6).is_some(),
        Family::TfOd => tfod_outputs(outputs).is_some(),
    }
}

/// Which family the output signature looks like, if any.
///
/// `input_hw` = `(width, height)` of the model input when known (needed to
/// tell a YOLOX grid from a DETR query set). In order:
/// 1. `cls_sN`/`reg_sN` pairs: NanoDet;
/// 2. outputs named `*box*`, `*score*`, `*class*` (+ `*num*`): TF-OD;
/// 3. one `[1, F, N]` output with `N > F >= 5` (+ 4-D mask prototypes): YOLOv8;
/// 4. one `[N, 7]` output: a graph with NMS (default columns);
/// 5. one `[1, N, F]` output: YOLOX when `N` is the stride 8/16/32 cell
///    count of the input; else YOLO end-to-end when `F == 6`; else DETR
///    when `F >= 5` and `N <= 1000`;
/// 6. a `[1, K, 4]` + `[1, K, nc]` pair: DETR.
///
/// Ambiguous cases (a 2-class DETR `[1, K, 6]` looks end-to-end) are settled
/// by the manifest's `family`.
pub fn infer_family(input_hw: Option<(u32, u32)>, outputs: &[TensorInfo]) -> Option<Family> {
    if nanodet_pairs(outputs).is_some_and(|p| !p.is_empty()) {
        return Some(Family::NanoDet);
    }
    if tfod_outputs(outputs).is_some() {
        return Some(Family::TfOd);
    }
    if yolov8_head(outputs) {
        return Some(Family::YoloV8);
    }
    if let [o] = outputs
        && o.is_f32
        && o.shape.len() == 2
        && o.shape[1] == 7
    {
        return Some(Family::NmsRows);
    }
    if let [o] = outputs
        && let Some((n, f)) = rank3(o)
    {
        let grid = input_hw.map(|(w, h)| yolox_cells(w, h, &YOLOX_STRIDES) as i64);
        if f >= 6 && grid.is_some_and(|g| g == n) {
            return Some(Family::Yolox);
        }
        if f == 6 {
            return Some(Family::YoloEnd2End);
        }
        if f >= 5 && n <= MAX_DETR_QUERIES {
            return Some(Family::Detr);
        }
        return None;
    }
    detr_pair(outputs).map(|_| Family::Detr)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Renames the model's classes by the manifest's `labels` map; a key that
/// is not a class of the model, or an empty name, is an error naming it.
fn apply_label_aliases(
    model: &Path,
    names: Vec<String>,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Vec<String>, DetectError> {
    let Some(labels) = labels else {
        return Ok(names);
    };
    let bad = |reason: String| DetectError::ModelInvalid {
        path: model.to_path_buf(),
        reason,
    };
    for (from, to) in labels {
        if !names.contains(from) {
            return Err(bad(format!(
                "manifest `labels` renames {from:?}, which is not a class of the model (its classes: {})",
                names.join(", ")
            )));
        }
        if to.trim().is_empty() {
            return Err(bad(format!(
                "manifest `labels` renames {from:?} to an empty name; give the name the node should use, e.g. \"motorcycle\""
            )));
        }
    }
    Ok(names
        .into_iter()
        .map(|n| labels.get(&n).cloned().unwrap_or(n))
        .collect())
}

/// Reconciles manifest, metadata and I/O signature into a checked spec.
#[allow(
    clippy::too_many_lines,
    reason = "the reconciliation rules between manifest, metadata and I/O signature read as one ordered list; to be split in a follow-up"
)]
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

    // The input size as far as it is known, for telling families apart.
    let static_hw = match inputs {
        [i] if i.shape.len() == 4 && i.shape[2] > 0 && i.shape[3] > 0 => {
            // Saturate: a side beyond u32 is refused below, not wrapped.
            let side = |d: i64| u32::try_from(d).unwrap_or(u32::MAX);
            Some((side(i.shape[3]), side(i.shape[2])))
        }
        _ => None,
    };
    let meta_hw = metadata.get("imgsz").and_then(|s| parse_imgsz(s));
    let hint_hw = manifest
        .map(|(m, _)| (m.input_size[0], m.input_size[1]))
        .or(meta_hw)
        .or(static_hw);

    // Family: the manifest says (and the shapes must fit), else inference.
    let family = match manifest {
        Some((m, _)) if family_fits(m.family, outputs) => m.family,
        Some((m, mpath)) => {
            return Err(mismatch(
                format!(
                    "{} outputs as declared by {} ({})",
                    m.family.as_str(),
                    mpath.display(),
                    m.family.expected_outputs()
                ),
                found(),
            ));
        }
        None => match infer_family(hint_hw, outputs) {
            Some(f) => f,
            None => {
                return Err(DetectError::UnknownFamily {
                    path: model.to_path_buf(),
                    found: found_with_metadata(&found(), metadata),
                });
            }
        },
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
    let input_size = match (manifest, meta_hw, static_hw) {
        (Some((m, _)), _, _) => (m.input_size[0], m.input_size[1]),
        (None, Some(wh), _) | (None, None, Some(wh)) => wh,
        (None, None, None) => {
            return Err(mismatch(
                "a static input size, `imgsz` metadata or `input_size` in a manifest".into(),
                found(),
            ));
        }
    };
    if input_size.0 > MAX_INPUT_SIDE || input_size.1 > MAX_INPUT_SIDE {
        let (w, h) = input_size;
        let gb = 12.0 * w as f64 * h as f64 / 1e9;
        return Err(mismatch(
            format!(
                "an input of at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} pixels (export the model at a smaller size)"
            ),
            format!("{w}x{h}: one [1,3,{h},{w}] float32 input would take {gb:.1} GB"),
        ));
    }
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

    let ctx = LayoutCtx {
        model,
        outputs,
        metadata,
        manifest: manifest.map(|(m, _)| m),
        input_size,
        found: &found,
    };
    let (layout, num_classes) = match family {
        Family::NanoDet => {
            let (l, n) = nanodet_layout(model, outputs, metadata, input_size, &found)?;
            (l, Some(n))
        }
        Family::YoloV8 => {
            let (l, n) = yolo_layout(model, outputs, names.as_ref().map(Vec::len), &found)?;
            (l, Some(n))
        }
        Family::YoloEnd2End => (
            OutputLayout::YoloEnd2End {
                output: outputs[0].name.clone(),
            },
            None,
        ),
        Family::Detr => detr_layout(&ctx)?,
        Family::Yolox => yolox_layout(&ctx)?,
        Family::NmsRows => nms_rows_layout(&ctx)?,
        Family::TfOd => {
            let Some((b, s, c, n)) = tfod_outputs(outputs) else {
                return Err(mismatch(family.expected_outputs().into(), found()));
            };
            (
                OutputLayout::TfOd {
                    boxes: b.name.clone(),
                    scores: s.name.clone(),
                    classes: c.name.clone(),
                    num_detections: n.map(|n| n.name.clone()),
                },
                None,
            )
        }
    };
    let names_from = || {
        if manifest.is_some_and(|(m, _)| m.names.is_some()) {
            "manifest"
        } else {
            "metadata"
        }
    };
    let names = match (names, num_classes) {
        (Some(n), Some(nc)) if n.len() == nc => n,
        (Some(n), None) => n,
        (Some(n), Some(nc)) => {
            return Err(mismatch(
                format!("{nc} class names (from the model outputs)"),
                format!("{} names in the {}", n.len(), names_from()),
            ));
        }
        (None, Some(nc)) => {
            tracing::warn!(model = %model.display(), num_classes = nc, "model has no class names; using class0..classN");
            (0..nc).map(|i| format!("class{i}")).collect()
        }
        (None, None) => {
            return Err(mismatch(
                format!(
                    "class names (`names` metadata or manifest `names`): {} outputs do not carry the class count",
                    family.as_str()
                ),
                "no names".into(),
            ));
        }
    };

    let names = apply_label_aliases(model, names, manifest.and_then(|(m, _)| m.labels.as_ref()))?;

    let (color, mean, std, resize, pad_value, source) = match manifest {
        Some((m, p)) => (
            m.color,
            m.mean,
            m.std,
            m.resize,
            m.pad_value.unwrap_or(LETTERBOX_PAD),
            SpecSource::Manifest(p.to_path_buf()),
        ),
        None => {
            let (color, mean, std, resize) = family_defaults(family);
            (
                color,
                mean,
                std,
                resize,
                LETTERBOX_PAD,
                SpecSource::Metadata,
            )
        }
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

/// Pre-processing a family gets without a manifest: `(colour, mean, std, resize)`.
///
/// - NanoDet: BGR, ImageNet mean/std in 0..255, stretch (upstream demo).
/// - Ultralytics (YOLOv8/11, v5u, v10, YOLO26), DETR, NMS graphs: RGB,
///   `x / 255`, letterbox with grey 114 (Ultralytics' pre-processing; a
///   DETR or NMS graph trained otherwise needs a manifest).
/// - YOLOX: BGR, raw 0..255 (no mean/std since YOLOX 0.2), letterbox 114.
///   YOLOX pads right/bottom, edge-node centres; boxes are mapped back with
///   the pad actually used, so only the border position differs.
/// - TF-OD: RGB, raw 0..255 (the graphs normalise internally), stretch.
pub fn family_defaults(family: Family) -> (ColorOrder, [f32; 3], [f32; 3], ResizeMode) {
    match family {
        Family::NanoDet => (
            ColorOrder::Bgr,
            NANODET_MEAN,
            NANODET_STD,
            ResizeMode::Stretch,
        ),
        Family::YoloV8 | Family::YoloEnd2End | Family::Detr | Family::NmsRows => {
            (ColorOrder::Rgb, [0.0; 3], [255.0; 3], ResizeMode::Letterbox)
        }
        Family::Yolox => (ColorOrder::Bgr, [0.0; 3], [1.0; 3], ResizeMode::Letterbox),
        Family::TfOd => (ColorOrder::Rgb, [0.0; 3], [1.0; 3], ResizeMode::Stretch),
    }
}

/// The unknown-family message: I/O plus the metadata keys.
fn found_with_metadata(io: &str, metadata: &HashMap<String, String>) -> String {
    let mut keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    keys.sort_unstable();
    format!(
        "{io}; metadata keys: {}",
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.join(", ")
        }
    )
}

/// What the per-family layout builders need.
struct LayoutCtx<'a> {
    model: &'a Path,
    outputs: &'a [TensorInfo],
    metadata: &'a HashMap<String, String>,
    manifest: Option<&'a Manifest>,
    input_size: (u32, u32),
    found: &'a dyn Fn() -> String,
}

impl LayoutCtx<'_> {
    fn mismatch(&self, expected: String) -> DetectError {
        DetectError::SpecMismatch {
            path: self.model.to_path_buf(),
            expected,
            found: (self.found)(),
        }
    }
}

fn detr_layout(ctx: &LayoutCtx<'_>) -> Result<(OutputLayout, Option<usize>), DetectError> {
    let kind = ctx.manifest.and_then(|m| m.scores).unwrap_or_default();
    if let [o] = ctx.outputs
        && let Some((_, f)) = rank3(o)
        && f >= 5
    {
        return Ok((
            OutputLayout::Detr {
                boxes: o.name.clone(),
                scores: None,
                fields: f as usize,
                kind,
            },
            Some(f as usize - 4),
        ));
    }
    let Some((b, s)) = detr_pair(ctx.outputs) else {
        return Err(ctx.mismatch(Family::Detr.expected_outputs().into()));
    };
    let nc = s.shape[2] as usize;
    Ok((
        OutputLayout::Detr {
            boxes: b.name.clone(),
            scores: Some(s.name.clone()),
            fields: 4,
            kind,
        },
        Some(nc),
    ))
}

fn yolox_layout(ctx: &LayoutCtx<'_>) -> Result<(OutputLayout, Option<usize>), DetectError> {
    let [o] = ctx.outputs else {
        return Err(ctx.mismatch(Family::Yolox.expected_outputs().into()));
    };
    let Some((n, f)) = rank3(o).filter(|(_, f)| *f >= 6) else {
        return Err(ctx.mismatch(Family::Yolox.expected_outputs().into()));
    };
    let mut strides: Vec<u32> = match (
        ctx.manifest.and_then(|m| m.strides.clone()),
        ctx.metadata.get("strides"),
    ) {
        (Some(s), _) => s,
        (None, Some(text)) => text
            .trim_matches(|c: char| c == '[' || c == ']' || c.is_whitespace())
            .split(',')
            .map(|x| x.trim().parse().ok().filter(|s| *s > 0))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| DetectError::ModelInvalid {
                path: ctx.model.to_path_buf(),
                reason: format!("metadata 'strides' = {text:?} is not a list of strides"),
            })?,
        (None, None) => YOLOX_STRIDES.to_vec(),
    };
    strides.sort_unstable();
    let (w, h) = ctx.input_size;
    let cells = yolox_cells(w, h, &strides);
    if n >= 0 && n as usize != cells {
        return Err(ctx.mismatch(format!(
            "[1,{cells},5+nc]: {cells} grid cells at strides {strides:?} for a {w}x{h} input"
        )));
    }
    let meta_decoded = ["decoded", "decode_in_inference"]
        .iter()
        .find_map(|k| ctx.metadata.get(*k).and_then(|v| parse_bool(v)));
    let decoded = ctx
        .manifest
        .and_then(|m| m.decoded)
        .or(meta_decoded)
        .unwrap_or(false);
    Ok((
        OutputLayout::Yolox {
            output: o.name.clone(),
            fields: f as usize,
            strides,
            decoded,
        },
        Some(f as usize - 5),
    ))
}

fn nms_rows_layout(ctx: &LayoutCtx<'_>) -> Result<(OutputLayout, Option<usize>), DetectError> {
    let columns = match ctx.manifest.and_then(|m| m.columns.as_ref()) {
        Some(c) => NmsColumns::parse(c).map_err(|e| ctx.mismatch(format!("valid columns: {e}")))?,
        None => NmsColumns::DEFAULT,
    };
    let Some(o) = nms_rows(ctx.outputs, 6) else {
        return Err(ctx.mismatch(Family::NmsRows.expected_outputs().into()));
    };
    let width = *o.shape.last().unwrap_or(&0);
    if width != columns.width as i64 {
        return Err(ctx.mismatch(format!(
            "rows of {} columns ({})",
            columns.width,
            if ctx.manifest.is_some_and(|m| m.columns.is_some()) {
                "manifest columns"
            } else {
                "default batch,x1,y1,x2,y2,class,score; set `columns` in a manifest"
            }
        )));
    }
    Ok((
        OutputLayout::NmsRows {
            output: o.name.clone(),
            columns,
        },
        None,
    ))
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

    /// A model with its own class names feeds the node's names through the
    /// manifest's `labels`; a key the model does not have is refused by name.
    #[test]
    fn manifest_labels_rename_the_models_classes() {
        let (i, o) = nanodet_io(3);
        let text = r#"{"family":"nanodet","input_size":[416,416],"color":"bgr","mean":[1,2,3],"std":[4,5,6],"resize":"stretch","names":["nguoi","xe_may","oto"],"labels":{"nguoi":"person","xe_may":"motorcycle","oto":"car"}}"#;
        let man = Manifest::parse(text, Path::new("x.json")).unwrap();
        let spec = resolve_spec(
            Path::new("x.onnx"),
            &i,
            &o,
            &meta(&[]),
            Some((&man, Path::new("x.json"))),
        )
        .unwrap();
        assert_eq!(spec.names, vec!["person", "motorcycle", "car"]);
        let bad = text.replace("\"oto\":\"car\"", "\"bike\":\"bicycle\"");
        let man = Manifest::parse(&bad, Path::new("x.json")).unwrap();
        let e = resolve_spec(
            Path::new("x.onnx"),
            &i,
            &o,
            &meta(&[]),
            Some((&man, Path::new("x.json"))),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"bike\"") && e.contains("nguoi, xe_may, oto"),
            "{e}"
        );
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

    /// Extremes: a huge declared input (static, from `imgsz` on a dynamic
    /// input, or beyond u32) is refused by name before any buffer exists.
    #[test]
    fn huge_model_input_is_refused() {
        let o = vec![TensorInfo::new("output0", &[1, 84, 8400])];
        let names = (0..80).map(|i| format!("{i}: 'c{i}'")).collect::<Vec<_>>();
        let m = meta(&[("names", &format!("{{{}}}", names.join(", ")))]);
        let refused = |shape: &[i64], meta: &HashMap<String, String>| {
            let i = vec![TensorInfo::new("images", shape)];
            match resolve_spec(Path::new("huge.onnx"), &i, &o, meta, None) {
                Err(DetectError::SpecMismatch {
                    expected, found, ..
                }) => {
                    assert!(expected.contains("at most 4096x4096"), "{expected}");
                    found
                }
                other => panic!("{shape:?}: {other:?}"),
            }
        };
        let found = refused(&[1, 3, 65536, 65536], &m);
        assert!(
            found.contains("65536x65536") && found.contains("GB"),
            "{found}"
        );
        let mut dm = m.clone();
        dm.insert("imgsz".into(), "[65536, 65536]".into());
        refused(&[1, 3, -1, -1], &dm);
        // 2^32 + 640 must not wrap around to 640.
        let found = refused(&[1, 3, (1 << 32) + 640, (1 << 32) + 640], &m);
        assert!(found.contains("4294967295"), "{found}");
        // The limit itself is fine.
        let i = vec![TensorInfo::new("images", &[1, 3, 4096, 4096])];
        assert!(resolve_spec(Path::new("ok.onnx"), &i, &o, &m, None).is_ok());
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
        assert_eq!(infer_family(None, &o), None);
    }

    #[test]
    fn zoo_families_are_inferred_from_shapes() {
        let t = |name: &str, shape: &[i64]| TensorInfo::new(name, shape);
        let hw = Some((640, 640));
        assert_eq!(
            infer_family(hw, &[t("o", &[1, 300, 6])]),
            Some(Family::YoloEnd2End)
        );
        assert_eq!(
            infer_family(hw, &[t("o", &[1, 8400, 85])]),
            Some(Family::Yolox)
        );
        assert_eq!(
            infer_family(None, &[t("o", &[1, 8400, 85])]),
            None,
            "no input size"
        );
        assert_eq!(
            infer_family(hw, &[t("o", &[1, 300, 84])]),
            Some(Family::Detr)
        );
        assert_eq!(
            infer_family(hw, &[t("o", &[1, 84, 8400])]),
            Some(Family::YoloV8)
        );
        // An original YOLOv5 head is not decoded as anything.
        assert_eq!(infer_family(hw, &[t("o", &[1, 25200, 85])]), None);
        assert_eq!(
            infer_family(hw, &[t("dets", &[-1, 7])]),
            Some(Family::NmsRows)
        );
        assert_eq!(
            infer_family(
                hw,
                &[t("pred_boxes", &[1, 100, 4]), t("logits", &[1, 100, 91])]
            ),
            Some(Family::Detr)
        );
        assert_eq!(
            infer_family(
                hw,
                &[t("logits", &[1, 100, 91]), t("pred_boxes", &[1, 100, 4])]
            ),
            Some(Family::Detr)
        );
        let mut classes = t("detection_classes", &[1, 100]);
        classes.is_f32 = false;
        let tfod = [
            t("detection_boxes", &[1, 100, 4]),
            t("detection_scores", &[1, 100]),
            classes,
            t("num_detections", &[1]),
        ];
        assert_eq!(infer_family(hw, &tfod), Some(Family::TfOd));
        assert_eq!(infer_family(hw, &tfod[..3]), Some(Family::TfOd));
        assert!(family_fits(Family::Detr, &[t("o", &[1, 300, 6])]));
        assert!(!family_fits(Family::YoloEnd2End, &[t("o", &[1, 300, 7])]));
    }

    #[test]
    fn zoo_specs_resolve_with_names_and_manifest_overrides() {
        let i = vec![TensorInfo::new("images", &[1, 3, 640, 640])];
        let two = meta(&[("names", "{0: 'a', 1: 'b'}")]);
        let e2e = vec![TensorInfo::new("output0", &[1, 300, 6])];
        let spec = resolve_spec(Path::new("e.onnx"), &i, &e2e, &two, None).unwrap();
        assert_eq!(spec.family, Family::YoloEnd2End);
        assert!(!spec.family.needs_nms());
        assert_eq!(spec.names, ["a", "b"]);
        // Without names the class count is unknown: refused, saying why.
        match resolve_spec(Path::new("e.onnx"), &i, &e2e, &HashMap::new(), None) {
            Err(DetectError::SpecMismatch { expected, .. }) => {
                assert!(expected.contains("class names"), "{expected}");
            }
            other => panic!("{other:?}"),
        }
        // A 2-class DETR looks end-to-end; the manifest settles it.
        let text = r#"{"family":"rt-detr","input_size":[640,640],"color":"rgb","mean":[0,0,0],"std":[255,255,255],"resize":"stretch","scores":"logits"}"#;
        let man = Manifest::parse(text, Path::new("d.json")).unwrap();
        let spec = resolve_spec(
            Path::new("d.onnx"),
            &i,
            &e2e,
            &two,
            Some((&man, Path::new("d.json"))),
        )
        .unwrap();
        assert_eq!(spec.family, Family::Detr);
        assert_eq!(
            spec.layout,
            OutputLayout::Detr {
                boxes: "output0".into(),
                scores: None,
                fields: 6,
                kind: ScoreKind::Logits
            }
        );
        // YOLOX: defaults, decoded flag from metadata, grid checked.
        let yx = vec![TensorInfo::new("output", &[1, 8400, 7])];
        let spec = resolve_spec(
            Path::new("x.onnx"),
            &i,
            &yx,
            &meta(&[("decode_in_inference", "True")]),
            None,
        )
        .unwrap();
        assert_eq!((spec.color, spec.std), (ColorOrder::Bgr, [1.0; 3]));
        assert!(matches!(
            spec.layout,
            OutputLayout::Yolox { decoded: true, .. }
        ));
        let text = r#"{"family":"yolox","input_size":[640,640],"color":"bgr","mean":[0,0,0],"std":[1,1,1],"resize":"letterbox","strides":[8,16,32,64]}"#;
        let man = Manifest::parse(text, Path::new("x.json")).unwrap();
        assert!(matches!(
            resolve_spec(
                Path::new("x.onnx"),
                &i,
                &yx,
                &HashMap::new(),
                Some((&man, Path::new("x.json")))
            ),
            Err(DetectError::SpecMismatch { .. })
        ));
        // NMS rows: the manifest's columns must match the row width.
        let rows = vec![TensorInfo::new("dets", &[-1, 7])];
        let text = r#"{"family":"nms","input_size":[640,640],"color":"rgb","mean":[0,0,0],"std":[255,255,255],"resize":"letterbox","columns":["x1","y1","x2","y2","score","class"]}"#;
        let man = Manifest::parse(text, Path::new("n.json")).unwrap();
        match resolve_spec(
            Path::new("n.onnx"),
            &i,
            &rows,
            &two,
            Some((&man, Path::new("n.json"))),
        ) {
            Err(DetectError::SpecMismatch { expected, .. }) => {
                assert!(expected.contains("6 columns"), "{expected}");
            }
            other => panic!("{other:?}"),
        }
        let spec = resolve_spec(Path::new("n.onnx"), &i, &rows, &two, None).unwrap();
        assert_eq!(
            spec.layout,
            OutputLayout::NmsRows {
                output: "dets".into(),
                columns: NmsColumns::DEFAULT
            }
        );
        // Manifest spellings.
        for f in ["yolov5u", "yolo11", "yolov10", "yolo26", "tf-od", "rtdetr"] {
            let text = format!(
                r#"{{"family":"{f}","input_size":[64,64],"color":"rgb","mean":[0,0,0],"std":[1,1,1],"resize":"stretch"}}"#
            );
            assert!(Manifest::parse(&text, Path::new("f.json")).is_ok(), "{f}");
        }
        let bad_cols = r#"{"family":"nms","input_size":[64,64],"color":"rgb","mean":[0,0,0],"std":[1,1,1],"resize":"stretch","columns":["x1"]}"#;
        assert!(Manifest::parse(bad_cols, Path::new("f.json")).is_err());
        // Unknown family: the message carries the metadata keys too.
        let o = vec![TensorInfo::new("logits", &[1, 1000])];
        match resolve_spec(Path::new("w.onnx"), &i, &o, &meta(&[("author", "x")]), None) {
            Err(DetectError::UnknownFamily { found, .. }) => {
                assert!(found.contains("metadata keys: author"), "{found}");
            }
            other => panic!("{other:?}"),
        }
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
