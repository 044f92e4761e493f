//! Output decoders (one per model family), score gating and class-aware NMS.
//!
//! Everything here works on plain `&[f32]` slices plus their shapes, so it is
//! unit-testable with synthetic tensors and benchmarkable without ONNX
//! Runtime. Decoders produce boxes in *model-input* pixels; mapping back to
//! the source frame is [`InputTransform`]'s job, because it depends on how
//! the frame was resized, not on the model family.

use crate::frame::{BBox, Detection};

use super::DetectError;

/// Per-class score thresholds, with "class switched off" encoded as an
/// infinite threshold.
///
/// Folding the class filter into the thresholds keeps the decoders' hot loop
/// to one comparison per candidate and makes `classes = ["car"]` and
/// "car: 0.5" compose without special cases.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassGate {
    thresholds: Vec<f32>,
    min: f32,
}

impl ClassGate {
    /// Same threshold for all `num_classes` classes.
    pub fn uniform(num_classes: usize, threshold: f32) -> Self {
        Self::from_thresholds(vec![threshold; num_classes])
    }

    /// One threshold per class; `f32::INFINITY` switches a class off.
    pub fn from_thresholds(thresholds: Vec<f32>) -> Self {
        let min = thresholds.iter().copied().fold(f32::INFINITY, f32::min);
        Self { thresholds, min }
    }

    pub fn num_classes(&self) -> usize {
        self.thresholds.len()
    }

    /// Threshold of `class`; classes outside the table are never accepted.
    pub fn threshold(&self, class: usize) -> f32 {
        self.thresholds.get(class).copied().unwrap_or(f32::INFINITY)
    }

    /// Lowest threshold over all enabled classes (`INFINITY` if none is).
    /// A candidate whose best score is not above it can be skipped early.
    pub fn min_threshold(&self) -> f32 {
        self.min
    }

    /// `score > threshold(class)`: strictly above, like the reference decoder.
    #[inline]
    pub fn accepts(&self, class: usize, score: f32) -> bool {
        score > self.threshold(class)
    }
}

/// Index and value of the largest element; ties go to the FIRST index.
///
/// `Iterator::max_by` returns the *last* maximum, which would make the class
/// of a tied anchor depend on the class order in a surprising way and differ
/// from numpy's `argmax`, the reference. NaN never wins.
#[inline]
pub fn argmax_first(xs: &[f32]) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in xs.iter().enumerate() {
        match best {
            Some((_, b)) if v <= b || v.is_nan() => {}
            None if v.is_nan() => {}
            _ => best = Some((i, v)),
        }
    }
    best
}

/// `true` if any element is strictly above `t` (NaN never is).
#[inline]
pub fn any_above(xs: &[f32], t: f32) -> bool {
    xs.iter().fold(false, |acc, &v| acc | (v > t))
}

/// One NanoDet pyramid level: per-cell class scores (already sigmoid) and
/// per-cell side distributions, both row-major over the `grid_w`-wide grid.
#[derive(Clone, Copy, Debug)]
pub struct NanoDetLevel<'a> {
    pub stride: u32,
    pub grid_w: usize,
    /// `[cells, num_classes]`
    pub cls: &'a [f32],
    /// `[cells, 4 * (reg_max + 1)]`, sides left, top, right, bottom, side-major.
    pub reg: &'a [f32],
}

/// Expected value of the softmax distribution over `bins` (0, 1, ..., n-1).
///
/// GFL heads regress each side as a discrete distribution; the expectation
/// is the distance in units of the stride.
#[inline]
pub fn softmax_expectation(bins: &[f32]) -> f32 {
    let max = bins.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    let mut weighted = 0.0f32;
    for (j, &b) in bins.iter().enumerate() {
        let e = (b - max).exp();
        sum += e;
        weighted += e * j as f32;
    }
    if sum > 0.0 { weighted / sum } else { 0.0 }
}

/// Decodes NanoDet (GFL head) outputs into `out` (appended, input pixels).
///
/// Per cell: class = first argmax of the scores; kept when the gate accepts
/// it; each side distance = softmax expectation × stride, measured from the
/// anchor centre `((col + 0.5) s, (row + 0.5) s)`.
pub fn decode_nanodet(
    levels: &[NanoDetLevel<'_>],
    num_classes: usize,
    reg_max: usize,
    gate: &ClassGate,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    let bins = reg_max + 1;
    let reg_w = 4 * bins;
    if num_classes == 0 || gate.num_classes() != num_classes {
        return Err(DetectError::OutputShape {
            output: "nanodet cls".into(),
            expected: format!("{} classes (gate)", gate.num_classes()),
            found: format!("{num_classes} classes"),
        });
    }
    let min_thr = gate.min_threshold();
    for level in levels {
        let cells = level.cls.len() / num_classes;
        if level.cls.len() != cells * num_classes
            || level.reg.len() != cells * reg_w
            || level.grid_w == 0
            || !cells.is_multiple_of(level.grid_w)
        {
            return Err(DetectError::OutputShape {
                output: format!("stride {}", level.stride),
                expected: format!(
                    "cls [cells, {num_classes}] and reg [cells, {reg_w}] with cells a multiple of grid width {}",
                    level.grid_w
                ),
                found: format!(
                    "cls {} values, reg {} values",
                    level.cls.len(),
                    level.reg.len()
                ),
            });
        }
        let s = level.stride as f32;
        for (cell, scores) in level.cls.chunks_exact(num_classes).enumerate() {
            // Nearly every cell is background: a branch-free "any score
            // above the lowest threshold" scan (vectorised) skips the
            // argmax for them.
            if !any_above(scores, min_thr) {
                continue;
            }
            let Some((class, score)) = argmax_first(scores) else {
                continue;
            };
            if score <= min_thr || !gate.accepts(class, score) {
                continue;
            }
            let reg = &level.reg[cell * reg_w..(cell + 1) * reg_w];
            let mut d = [0.0f32; 4];
            for (k, side) in reg.chunks_exact(bins).enumerate() {
                d[k] = softmax_expectation(side) * s;
            }
            let cx = ((cell % level.grid_w) as f32 + 0.5) * s;
            let cy = ((cell / level.grid_w) as f32 + 0.5) * s;
            out.push(Detection {
                class_id: class as u32,
                score,
                bbox: BBox::new(cx - d[0], cy - d[1], cx + d[2], cy + d[3]),
            });
        }
    }
    Ok(())
}

/// Reusable per-candidate best-class buffers for [`decode_yolov8`].
#[derive(Debug, Default)]
pub struct YoloScratch {
    best_score: Vec<f32>,
    best_class: Vec<u32>,
}

/// Decodes an Ultralytics-style YOLOv8/YOLO11 head `[1, fields, N]` into
/// `out` (appended, input pixels).
///
/// Field `f` of candidate `c` is at `data[c + f * N]`; fields 0..4 are
/// `cx, cy, w, h`, fields `4..4 + num_classes` the class scores (already
/// sigmoid); any further fields (segmentation mask coefficients) are ignored.
/// The class argmax walks the tensor class-row by class-row, which reads
/// memory sequentially instead of striding by `N` for each candidate; the
/// strict `>` keeps the first class on ties.
pub fn decode_yolov8(
    data: &[f32],
    num_fields: usize,
    num_candidates: usize,
    num_classes: usize,
    gate: &ClassGate,
    scratch: &mut YoloScratch,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    let n = num_candidates;
    if num_classes == 0
        || num_fields < 4 + num_classes
        || data.len() != num_fields * n
        || gate.num_classes() != num_classes
    {
        return Err(DetectError::OutputShape {
            output: "yolov8 head".into(),
            expected: format!(
                "[1, >= {}, N] with {} values and a gate for {num_classes} classes",
                4 + num_classes,
                num_fields * n
            ),
            found: format!(
                "{num_fields} fields, {n} candidates, {} values, gate for {} classes",
                data.len(),
                gate.num_classes()
            ),
        });
    }
    scratch.best_score.clear();
    scratch.best_score.resize(n, f32::NEG_INFINITY);
    scratch.best_class.clear();
    scratch.best_class.resize(n, 0);
    best_classes(
        &data[4 * n..(4 + num_classes) * n],
        n,
        &mut scratch.best_score,
        &mut scratch.best_class,
    );
    let min_thr = gate.min_threshold();
    for (c, (&score, &class)) in scratch
        .best_score
        .iter()
        .zip(&scratch.best_class)
        .enumerate()
    {
        if score <= min_thr || !gate.accepts(class as usize, score) {
            continue;
        }
        let (cx, cy, w, h) = (data[c], data[c + n], data[c + 2 * n], data[c + 3 * n]);
        out.push(Detection {
            class_id: class,
            score,
            bbox: BBox::new(cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5),
        });
    }
    Ok(())
}

/// Per candidate, the first class with the highest score, over class rows
/// `rows = [num_classes][n]`. Walks the tensor class-row by class-row (reads
/// memory sequentially instead of striding by `n` per candidate); the strict
/// `>` keeps the first class on ties. Uses AVX2 when the CPU has it.
fn best_classes(rows: &[f32], n: usize, best: &mut [f32], class: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { best_classes_avx2(rows, n, best, class) };
        return;
    }
    best_classes_impl(rows, n, best, class);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn best_classes_avx2(rows: &[f32], n: usize, best: &mut [f32], class: &mut [u32]) {
    best_classes_impl(rows, n, best, class);
}

#[inline(always)]
fn best_classes_impl(rows: &[f32], n: usize, best: &mut [f32], class: &mut [u32]) {
    if n == 0 {
        return;
    }
    for (c, row) in rows.chunks_exact(n).enumerate() {
        for ((b, bc), &v) in best.iter_mut().zip(class.iter_mut()).zip(row) {
            // Branch-free selects so the compiler vectorises across candidates.
            let gt = v > *b;
            *b = if gt { v } else { *b };
            *bc = if gt { c as u32 } else { *bc };
        }
    }
}

/// Class-aware greedy NMS, in place.
///
/// Boxes are visited in descending score order; a box is dropped when it
/// overlaps an already kept box *of the same class* with IoU > `iou`. Boxes
/// of different classes never suppress each other (a pickup may legitimately
/// be both "car" and "truck" for the downstream tracker to sort out).
/// On return `dets` is sorted by score, descending; equal scores keep their
/// input order. Working per class makes the cost Σ n_c² instead of n².
pub fn nms(dets: &mut Vec<Detection>, iou: f32) {
    // Group by class, best first inside each class; the stable sort keeps
    // input order among equal scores so results are deterministic.
    dets.sort_by(|a, b| {
        a.class_id
            .cmp(&b.class_id)
            .then(b.score.total_cmp(&a.score))
    });
    let mut kept = 0usize;
    let mut class_start = 0usize; // index in the kept prefix where this class begins
    let mut current_class = None;
    for i in 0..dets.len() {
        let cand = dets[i].clone();
        if current_class != Some(cand.class_id) {
            current_class = Some(cand.class_id);
            class_start = kept;
        }
        let suppressed = dets[class_start..kept]
            .iter()
            .any(|k| k.bbox.iou(&cand.bbox) > iou);
        if !suppressed {
            dets[kept] = cand;
            kept += 1;
        }
    }
    dets.truncate(kept);
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// How a source frame was mapped onto the model input, to map boxes back.
///
/// `input = source * scale + pad` per axis. A stretch resize has
/// `scale_x != scale_y` and no pad; a letterbox has equal-ish scales and a
/// pad on one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputTransform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    pub src_w: u32,
    pub src_h: u32,
}

impl InputTransform {
    /// Box in model-input pixels -> box in source pixels, clamped to the frame.
    pub fn to_source(&self, b: &BBox) -> BBox {
        BBox::new(
            (b.x1 - self.pad_x) / self.scale_x,
            (b.y1 - self.pad_y) / self.scale_y,
            (b.x2 - self.pad_x) / self.scale_x,
            (b.y2 - self.pad_y) / self.scale_y,
        )
        .clamp(self.src_w as f32, self.src_h as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u32, score: f32, b: [f32; 4]) -> Detection {
        Detection {
            class_id: class,
            score,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
        }
    }

    /// Logits whose softmax expectation over 0..=reg_max is exactly `d`
    /// (for integer d): one huge bin at `d`.
    fn peaked_bins(d: usize, reg_max: usize) -> Vec<f32> {
        (0..=reg_max)
            .map(|j| if j == d { 50.0 } else { -50.0 })
            .collect()
    }

    #[test]
    fn argmax_ties_take_first_index() {
        assert_eq!(argmax_first(&[0.1, 0.7, 0.7, 0.2]), Some((1, 0.7)));
        assert_eq!(argmax_first(&[0.5, 0.5]), Some((0, 0.5)));
        assert_eq!(argmax_first(&[f32::NAN, 0.3, 0.3]), Some((1, 0.3)));
        assert_eq!(argmax_first(&[]), None);
        // The std iterator would pick the last one; make sure we differ.
        let last = [0.1f32, 0.7, 0.7]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(last, Some(2));
    }

    #[test]
    fn any_above_is_strict_and_ignores_nan() {
        assert!(any_above(&[0.1, 0.5, 0.2], 0.4));
        assert!(!any_above(&[0.1, 0.4, 0.2], 0.4));
        assert!(!any_above(&[f32::NAN, 0.1], 0.2));
        assert!(!any_above(&[], 0.0));
    }

    #[test]
    fn softmax_expectation_known_values() {
        assert!((softmax_expectation(&peaked_bins(3, 10)) - 3.0).abs() < 1e-4);
        // Uniform over 0..=10 -> mean 5.
        assert!((softmax_expectation(&[0.0; 11]) - 5.0).abs() < 1e-5);
        // Two equal peaks at 2 and 4 -> 3.
        let mut b = vec![-40.0f32; 11];
        b[2] = 10.0;
        b[4] = 10.0;
        assert!((softmax_expectation(&b) - 3.0).abs() < 1e-4);
    }

    #[test]
    fn nanodet_decodes_known_box() {
        // 2 classes, reg_max 3 (4 bins), one stride-8 level with a 4x2 grid (8 cells).
        let (nc, reg_max, grid_w, cells) = (2usize, 3usize, 4usize, 8usize);
        let mut cls = vec![0.0f32; cells * nc];
        let mut reg = vec![0.0f32; cells * 4 * (reg_max + 1)];
        // Cell 6 = row 1, col 2 -> centre (20, 12). Class 1 at 0.9.
        cls[6 * nc + 1] = 0.9;
        cls[6 * nc] = 0.2;
        let sides = [1usize, 0, 2, 3]; // l, t, r, b in bins
        for (k, &d) in sides.iter().enumerate() {
            let off = 6 * 16 + k * 4;
            reg[off..off + 4].copy_from_slice(&peaked_bins(d, reg_max));
        }
        // Cell 0: below threshold; cell 1: tie between classes at 0.6 -> class 0.
        cls[0] = 0.3;
        cls[nc] = 0.6;
        cls[nc + 1] = 0.6;
        let level = NanoDetLevel {
            stride: 8,
            grid_w,
            cls: &cls,
            reg: &reg,
        };
        let mut out = Vec::new();
        decode_nanodet(
            &[level],
            nc,
            reg_max,
            &ClassGate::uniform(nc, 0.35),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        let tie = &out[0];
        assert_eq!((tie.class_id, tie.score), (0, 0.6));
        let d = &out[1];
        assert_eq!(d.class_id, 1);
        assert!((d.score - 0.9).abs() < 1e-6);
        let want = BBox::new(20.0 - 8.0, 12.0 - 0.0, 20.0 + 16.0, 12.0 + 24.0);
        for (a, b) in [
            (d.bbox.x1, want.x1),
            (d.bbox.y1, want.y1),
            (d.bbox.x2, want.x2),
            (d.bbox.y2, want.y2),
        ] {
            assert!((a - b).abs() < 1e-3, "{:?} vs {:?}", d.bbox, want);
        }
    }

    #[test]
    fn nanodet_gate_filters_classes_and_thresholds() {
        let (nc, reg_max) = (3usize, 1usize);
        let cls = vec![
            0.5, 0.1, 0.1, /* cell 1 */ 0.1, 0.45, 0.1, /* cell 2 */ 0.1, 0.1, 0.9,
        ];
        let reg = vec![0.0f32; 3 * 8];
        let level = NanoDetLevel {
            stride: 16,
            grid_w: 3,
            cls: &cls,
            reg: &reg,
        };
        // class 0 needs > 0.6, class 1 > 0.4, class 2 disabled.
        let gate = ClassGate::from_thresholds(vec![0.6, 0.4, f32::INFINITY]);
        let mut out = Vec::new();
        decode_nanodet(&[level], nc, reg_max, &gate, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        // A disabled class that is the argmax does not fall back to the runner-up.
        assert!(out.iter().all(|d| d.class_id != 2));
    }

    #[test]
    fn nanodet_rejects_bad_lengths() {
        let cls = vec![0.0f32; 7];
        let reg = vec![0.0f32; 8];
        let level = NanoDetLevel {
            stride: 8,
            grid_w: 1,
            cls: &cls,
            reg: &reg,
        };
        let err = decode_nanodet(&[level], 2, 1, &ClassGate::uniform(2, 0.3), &mut Vec::new());
        assert!(matches!(err, Err(DetectError::OutputShape { .. })));
    }

    #[test]
    fn yolov8_decodes_known_boxes_and_undoes_letterbox() {
        // 3 candidates, 2 classes, 1 extra (mask-like) field: fields = 4 + 2 + 1.
        let n = 3usize;
        let fields = 7usize;
        let mut data = vec![0.0f32; fields * n];
        let mut set = |c: usize, f: usize, v: f32| data[c + f * n] = v;
        // Candidate 0: box centre (320, 320) size 100x50, class 1 @ 0.8.
        for (f, v) in [
            (0, 320.0),
            (1, 320.0),
            (2, 100.0),
            (3, 50.0),
            (4, 0.1),
            (5, 0.8),
            (6, 9.0),
        ] {
            set(0, f, v);
        }
        // Candidate 1: tie 0.5/0.5 -> class 0.
        for (f, v) in [
            (0, 100.0),
            (1, 200.0),
            (2, 20.0),
            (3, 40.0),
            (4, 0.5),
            (5, 0.5),
        ] {
            set(1, f, v);
        }
        // Candidate 2: below threshold.
        for (f, v) in [(0, 10.0), (1, 10.0), (2, 5.0), (3, 5.0), (4, 0.2), (5, 0.1)] {
            set(2, f, v);
        }
        let mut out = Vec::new();
        let mut scratch = YoloScratch::default();
        decode_yolov8(
            &data,
            fields,
            n,
            2,
            &ClassGate::uniform(2, 0.25),
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].class_id, 1);
        assert_eq!(out[0].bbox, BBox::new(270.0, 295.0, 370.0, 345.0));
        assert_eq!((out[1].class_id, out[1].score), (0, 0.5));
        assert_eq!(out[1].bbox, BBox::new(90.0, 180.0, 110.0, 220.0));

        // 1280x720 letterboxed into 640x640: gain 0.5, content 640x360, pad_y 140.
        let t = InputTransform {
            scale_x: 0.5,
            scale_y: 0.5,
            pad_x: 0.0,
            pad_y: 140.0,
            src_w: 1280,
            src_h: 720,
        };
        let src = t.to_source(&out[0].bbox);
        assert_eq!(src, BBox::new(540.0, 310.0, 740.0, 410.0));
        // Boxes reaching into the pad are clamped to the frame.
        let clamped = t.to_source(&BBox::new(-10.0, 100.0, 700.0, 600.0));
        assert_eq!(clamped, BBox::new(0.0, 0.0, 1280.0, 720.0));
    }

    #[test]
    fn yolov8_rejects_mismatched_shape() {
        let data = vec![0.0f32; 10];
        let mut s = YoloScratch::default();
        let err = decode_yolov8(
            &data,
            6,
            2,
            2,
            &ClassGate::uniform(2, 0.3),
            &mut s,
            &mut Vec::new(),
        );
        assert!(matches!(err, Err(DetectError::OutputShape { .. })));
        let data = vec![0.0f32; 12];
        let err = decode_yolov8(
            &data,
            6,
            2,
            3,
            &ClassGate::uniform(3, 0.3),
            &mut s,
            &mut Vec::new(),
        );
        assert!(
            matches!(err, Err(DetectError::OutputShape { .. })),
            "fields < 4 + nc"
        );
    }

    #[test]
    fn nms_is_class_aware_and_respects_iou() {
        let mut d = vec![
            det(0, 0.6, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.9, [1.0, 0.0, 11.0, 10.0]), // IoU with first = 9/11 = 0.818
            det(1, 0.7, [0.0, 0.0, 10.0, 10.0]), // other class: survives
            det(0, 0.5, [0.0, 0.0, 10.0, 15.0]), // IoU with kept 0.9 box = 90/160 = 0.5625
            det(0, 0.4, [50.0, 50.0, 60.0, 60.0]), // far away: survives
        ];
        nms(&mut d, 0.5);
        let got: Vec<(u32, f32)> = d.iter().map(|x| (x.class_id, x.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.7), (0, 0.4)]);

        // IoU 0.5625 is not > 0.6, so at a looser threshold it survives.
        let mut d = vec![
            det(0, 0.9, [1.0, 0.0, 11.0, 10.0]),
            det(0, 0.5, [0.0, 0.0, 10.0, 15.0]),
        ];
        nms(&mut d, 0.6);
        assert_eq!(d.len(), 2);
        // Exactly-equal IoU is not suppressed (strict >).
        let mut d = vec![
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.8, [0.0, 0.0, 10.0, 10.0]),
        ];
        nms(&mut d, 1.0);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn nms_suppression_is_greedy_on_kept_boxes_only() {
        // A suppresses B, B would suppress C, but A and C do not overlap enough:
        // C must survive because B was not kept.
        let mut d = vec![
            det(2, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(2, 0.8, [4.0, 0.0, 14.0, 10.0]), // IoU(A,B) = 60/140 = 0.43
            det(2, 0.7, [8.0, 0.0, 18.0, 10.0]), // IoU(B,C) = 0.43, IoU(A,C) = 20/180
        ];
        nms(&mut d, 0.4);
        let scores: Vec<f32> = d.iter().map(|x| x.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }

    #[test]
    fn nms_output_sorted_desc() {
        let mut d: Vec<Detection> = (0..50)
            .map(|i| {
                det(
                    i % 3,
                    (i as f32 * 0.37).fract(),
                    [i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0],
                )
            })
            .collect();
        nms(&mut d, 0.5);
        assert_eq!(d.len(), 50);
        assert!(d.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn gate_thresholds() {
        let g = ClassGate::from_thresholds(vec![0.5, f32::INFINITY, 0.2]);
        assert_eq!(g.min_threshold(), 0.2);
        assert!(g.accepts(0, 0.51));
        assert!(!g.accepts(0, 0.5));
        assert!(!g.accepts(1, 1.0));
        assert!(!g.accepts(7, 1.0));
    }
}
