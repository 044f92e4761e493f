//! DETR-style set prediction decoder (DETR, Deformable DETR, RT-DETR, ...).
//!
//! Each of the K queries carries one box `cx, cy, w, h` normalised to 0..1
//! of the model input and one score per class. The class is the first
//! argmax; scores are per-class logits (a sigmoid is applied to the winner)
//! or already probabilities, see [`ScoreKind`]. No NMS is needed: set
//! prediction is trained to emit one query per object.
//!
//! Not handled: the original DETR's softmax over `nc + 1` columns with a
//! trailing "no object" class (its class count would not match the names).

use crate::frame::{BBox, Detection};

use super::DetectError;
use super::decode::{ClassGate, argmax_first};
use super::spec::ScoreKind;

/// Where the decoder reads one query's box and scores.
#[derive(Clone, Copy, Debug)]
pub struct DetrTensors<'a> {
    /// Query `q`'s box at `boxes[q * box_stride ..][..4]`.
    pub boxes: &'a [f32],
    pub box_stride: usize,
    /// Query `q`'s scores at `scores[q * score_stride ..][..num_classes]`.
    pub scores: &'a [f32],
    pub score_stride: usize,
    pub queries: usize,
    pub num_classes: usize,
}

impl<'a> DetrTensors<'a> {
    /// One `[K, 4 + nc]` tensor.
    pub fn single(data: &'a [f32], fields: usize) -> Self {
        let nc = fields.saturating_sub(4);
        let queries = data.len().checked_div(fields).unwrap_or(0);
        Self {
            boxes: data,
            box_stride: fields,
            scores: data.get(4..).unwrap_or(&[]),
            score_stride: fields,
            queries,
            num_classes: nc,
        }
    }

    /// A `[K, 4]` boxes + `[K, nc]` scores pair.
    pub fn pair(boxes: &'a [f32], scores: &'a [f32], num_classes: usize) -> Self {
        Self {
            boxes,
            box_stride: 4,
            scores,
            score_stride: num_classes,
            queries: boxes.len() / 4,
            num_classes,
        }
    }

    fn check(&self) -> Result<(), DetectError> {
        let q = self.queries;
        let nc = self.num_classes;
        let ok = nc > 0
            && self.box_stride >= 4
            && self.score_stride >= nc
            && (q == 0
                || ((q - 1) * self.box_stride + 4 <= self.boxes.len()
                    && (q - 1) * self.score_stride + nc <= self.scores.len()));
        if ok && self.boxes.len() == q * self.box_stride {
            Ok(())
        } else {
            Err(DetectError::OutputShape {
                output: "detr boxes/scores".into(),
                expected: format!("{q} queries x (4 box values + {nc} scores)"),
                found: format!(
                    "{} box values (stride {}), {} score values (stride {})",
                    self.boxes.len(),
                    self.box_stride,
                    self.scores.len(),
                    self.score_stride
                ),
            })
        }
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Whether scores must go through a sigmoid: [`ScoreKind::Auto`] decides
/// per frame by looking for any value outside 0..=1.
pub fn scores_are_logits(t: &DetrTensors<'_>, kind: ScoreKind) -> bool {
    match kind {
        ScoreKind::Logits => true,
        ScoreKind::Probabilities => false,
        ScoreKind::Auto => (0..t.queries).any(|q| {
            let s = &t.scores[q * t.score_stride..q * t.score_stride + t.num_classes];
            s.iter().any(|v| !(0.0..=1.0).contains(v))
        }),
    }
}

/// Decodes DETR queries into `out` (appended, input pixels).
pub fn decode_detr(
    t: &DetrTensors<'_>,
    kind: ScoreKind,
    input_w: u32,
    input_h: u32,
    gate: &ClassGate,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    t.check()?;
    if gate.num_classes() != t.num_classes {
        return Err(DetectError::OutputShape {
            output: "detr scores".into(),
            expected: format!("{} classes (names)", gate.num_classes()),
            found: format!("{} classes", t.num_classes),
        });
    }
    let logits = scores_are_logits(t, kind);
    let (w, h) = (input_w as f32, input_h as f32);
    for q in 0..t.queries {
        let s = &t.scores[q * t.score_stride..q * t.score_stride + t.num_classes];
        let Some((class, raw)) = argmax_first(s) else {
            continue;
        };
        let score = if logits { sigmoid(raw) } else { raw };
        if !gate.accepts(class, score) {
            continue;
        }
        let b = &t.boxes[q * t.box_stride..q * t.box_stride + 4];
        let (cx, cy, bw, bh) = (b[0] * w, b[1] * h, b[2] * w, b[3] * h);
        if ![cx, cy, bw, bh].iter().all(|v| v.is_finite()) {
            continue;
        }
        out.push(Detection {
            class_id: class as u32,
            score,
            bbox: BBox::new(cx - bw * 0.5, cy - bh * 0.5, cx + bw * 0.5, cy + bh * 0.5),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: BBox, b: [f32; 4]) {
        for (x, y) in [a.x1, a.y1, a.x2, a.y2].iter().zip(b) {
            assert!((x - y).abs() < 1e-3, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn single_tensor_with_probabilities() {
        // 3 queries, 2 classes, input 200x100.
        let data = [
            0.5, 0.5, 0.2, 0.4, 0.1, 0.8, // class 1 @ 0.8: (80,30)-(120,70)
            0.1, 0.1, 0.1, 0.1, 0.2, 0.1, // below
            0.25, 0.75, 0.1, 0.1, 0.6, 0.6, // tie -> class 0
        ];
        let t = DetrTensors::single(&data, 6);
        assert!(!scores_are_logits(&t, ScoreKind::Auto));
        let mut out = Vec::new();
        decode_detr(
            &t,
            ScoreKind::Auto,
            200,
            100,
            &ClassGate::uniform(2, 0.3),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].class_id, out[0].score), (1, 0.8));
        close(out[0].bbox, [80.0, 30.0, 120.0, 70.0]);
        assert_eq!(out[1].class_id, 0);
        close(out[1].bbox, [40.0, 70.0, 60.0, 80.0]);
    }

    #[test]
    fn pair_with_logits_gets_a_sigmoid() {
        let boxes = [0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5];
        // logit 2.0 -> 0.8808; logit -3 -> 0.047.
        let scores = [-5.0, 2.0, -3.0, -4.0];
        let t = DetrTensors::pair(&boxes, &scores, 2);
        assert!(scores_are_logits(&t, ScoreKind::Auto));
        let mut out = Vec::new();
        decode_detr(
            &t,
            ScoreKind::Auto,
            64,
            64,
            &ClassGate::uniform(2, 0.5),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.880_797).abs() < 1e-5);
        close(out[0].bbox, [0.0, 0.0, 64.0, 64.0]);
        // Forced probabilities: raw 2.0 passes as is.
        out.clear();
        decode_detr(
            &t,
            ScoreKind::Probabilities,
            64,
            64,
            &ClassGate::uniform(2, 0.5),
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0].score, 2.0);
        // Forced logits on values inside 0..1.
        let p = [0.9, 0.1, 0.1, 0.1];
        let t = DetrTensors::pair(&boxes, &p, 2);
        assert!(!scores_are_logits(&t, ScoreKind::Auto));
        assert!(scores_are_logits(&t, ScoreKind::Logits));
    }

    #[test]
    fn shape_errors() {
        let boxes = [0.5f32; 8];
        let scores = [0.5f32; 3];
        let t = DetrTensors::pair(&boxes, &scores, 2);
        assert!(matches!(
            decode_detr(
                &t,
                ScoreKind::Auto,
                1,
                1,
                &ClassGate::uniform(2, 0.1),
                &mut Vec::new()
            ),
            Err(DetectError::OutputShape { .. })
        ));
        let data = [0.5f32; 12];
        let t = DetrTensors::single(&data, 6);
        // Gate for the wrong class count.
        assert!(
            decode_detr(
                &t,
                ScoreKind::Auto,
                1,
                1,
                &ClassGate::uniform(3, 0.1),
                &mut Vec::new()
            )
            .is_err()
        );
    }
}
