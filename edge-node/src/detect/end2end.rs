//! Decoders for graphs whose boxes are already final: NMS-free end-to-end
//! YOLO heads (YOLOv10, YOLO26), graphs with an NMS node emitting `[N, C]`
//! rows, and TF Object Detection API style `boxes`/`scores`/`classes`.
//!
//! They only gate by score and class, convert to `x1, y1, x2, y2` in model
//! input pixels and drop malformed rows (non-finite values, negative or
//! fractional-garbage class ids); the detector runs no second NMS on them
//! (see [`super::Family::needs_nms`]).

use crate::frame::{BBox, Detection};

use super::DetectError;
use super::decode::ClassGate;
use super::spec::NmsColumns;

/// A class id stored as a float: must be finite, non-negative and within
/// 0.01 of an integer (exports cast `int64` class ids to float).
#[inline]
fn class_of(v: f32) -> Option<u32> {
    let r = v.round();
    (v.is_finite() && r >= 0.0 && (v - r).abs() < 0.01 && r < u32::MAX as f32).then_some(r as u32)
}

#[inline]
fn push_box(
    gate: &ClassGate,
    class: Option<u32>,
    score: f32,
    b: [f32; 4],
    out: &mut Vec<Detection>,
) {
    let Some(class) = class else { return };
    if !gate.accepts(class as usize, score) || b.iter().any(|v| !v.is_finite()) {
        return;
    }
    out.push(Detection {
        class_id: class,
        score,
        bbox: BBox::new(b[0], b[1], b[2], b[3]),
    });
}

/// Decodes a YOLOv10 / YOLO26 end-to-end head: `data` is `[K, 6]` rows of
/// `x1, y1, x2, y2, score, class` in input pixels (batch 1).
pub fn decode_yolo_end2end(
    data: &[f32],
    gate: &ClassGate,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    if !data.len().is_multiple_of(6) {
        return Err(DetectError::OutputShape {
            output: "yolo end-to-end head".into(),
            expected: "[1, K, 6]".into(),
            found: format!("{} values", data.len()),
        });
    }
    for r in data.chunks_exact(6) {
        push_box(gate, class_of(r[5]), r[4], [r[0], r[1], r[2], r[3]], out);
    }
    Ok(())
}

/// Decodes post-NMS rows `[N, columns.width]` (input pixels). Rows whose
/// batch column (if any) is not 0 are skipped.
pub fn decode_nms_rows(
    data: &[f32],
    columns: &NmsColumns,
    gate: &ClassGate,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    let w = columns.width;
    let max_col = [
        columns.x1,
        columns.y1,
        columns.x2,
        columns.y2,
        columns.class,
        columns.score,
    ]
    .into_iter()
    .chain(columns.batch)
    .max()
    .unwrap_or(0);
    if w == 0 || max_col >= w || !data.len().is_multiple_of(w) {
        return Err(DetectError::OutputShape {
            output: "nms rows".into(),
            expected: format!("[N, {w}] with every column index below {w}"),
            found: format!("{} values, highest column index {max_col}", data.len()),
        });
    }
    for r in data.chunks_exact(w) {
        if let Some(b) = columns.batch
            && class_of(r[b]) != Some(0)
        {
            continue;
        }
        push_box(
            gate,
            class_of(r[columns.class]),
            r[columns.score],
            [r[columns.x1], r[columns.y1], r[columns.x2], r[columns.y2]],
            out,
        );
    }
    Ok(())
}

/// Decodes TF-OD style outputs: `boxes` `[K, 4]` as `y1, x1, y2, x2`
/// normalised to 0..1 of the model input, `scores` `[K]`, `classes` `[K]`
/// (class ids as floats, used as given: a 1-based label map needs a
/// placeholder name at index 0), and the number of valid rows `num`
/// (`None`: all K). Boxes come out in input pixels.
#[allow(clippy::too_many_arguments)]
pub fn decode_tfod(
    boxes: &[f32],
    scores: &[f32],
    classes: &[f32],
    num: Option<usize>,
    input_w: u32,
    input_h: u32,
    gate: &ClassGate,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    let k = scores.len();
    if boxes.len() != 4 * k || classes.len() != k {
        return Err(DetectError::OutputShape {
            output: "tf-od boxes/scores/classes".into(),
            expected: format!("[{k}, 4] / [{k}] / [{k}]"),
            found: format!(
                "{} / {} / {} values",
                boxes.len(),
                scores.len(),
                classes.len()
            ),
        });
    }
    let n = num.unwrap_or(k).min(k);
    let (w, h) = (input_w as f32, input_h as f32);
    for i in 0..n {
        let b = &boxes[4 * i..4 * i + 4];
        push_box(
            gate,
            class_of(classes[i]),
            scores[i],
            [b[1] * w, b[0] * h, b[3] * w, b[2] * h],
            out,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> ClassGate {
        ClassGate::from_thresholds(vec![0.3, 0.3, f32::INFINITY])
    }

    #[test]
    fn end2end_rows_decode_and_gate() {
        let data = [
            10.0,
            20.0,
            30.0,
            60.0,
            0.9,
            1.0, // kept
            0.0,
            0.0,
            5.0,
            5.0,
            0.2,
            0.0, // below threshold
            1.0,
            1.0,
            2.0,
            2.0,
            0.95,
            2.0, // class switched off
            1.0,
            1.0,
            2.0,
            2.0,
            0.95,
            7.0, // class outside the names
            1.0,
            1.0,
            2.0,
            2.0,
            0.95,
            -1.0, // garbage class
            f32::NAN,
            1.0,
            2.0,
            2.0,
            0.95,
            0.0, // garbage box
            4.0,
            4.0,
            8.0,
            8.0,
            0.5,
            0.0, // kept
        ];
        let mut out = Vec::new();
        decode_yolo_end2end(&data, &gate(), &mut out).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].class_id, 1);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[0].bbox, BBox::new(10.0, 20.0, 30.0, 60.0));
        assert_eq!(out[1].bbox, BBox::new(4.0, 4.0, 8.0, 8.0));
        assert!(matches!(
            decode_yolo_end2end(&data[..5], &gate(), &mut out),
            Err(DetectError::OutputShape { .. })
        ));
    }

    #[test]
    fn nms_rows_default_and_custom_columns() {
        let data = [
            0.0, 10.0, 20.0, 30.0, 40.0, 1.0, 0.8, // batch 0: kept
            1.0, 10.0, 20.0, 30.0, 40.0, 1.0, 0.8, // batch 1: skipped
            0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.1, // low score
        ];
        let mut out = Vec::new();
        decode_nms_rows(&data, &NmsColumns::DEFAULT, &gate(), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].class_id, out[0].score, out[0].bbox),
            (1, 0.8, BBox::new(10.0, 20.0, 30.0, 40.0))
        );

        let cols: Vec<String> = ["x1", "y1", "x2", "y2", "score", "class"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cols = NmsColumns::parse(&cols).unwrap();
        assert_eq!(
            (cols.batch, cols.score, cols.class, cols.width),
            (None, 4, 5, 6)
        );
        let data = [5.0, 6.0, 7.0, 8.0, 0.7, 0.0, 1.0, 1.0, 2.0, 2.0, 0.9, 1.0];
        out.clear();
        decode_nms_rows(&data, &cols, &gate(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].class_id, out[0].score), (0, 0.7));
        assert_eq!((out[1].class_id, out[1].score), (1, 0.9));
        // Wrong row width.
        assert!(decode_nms_rows(&data[..7], &cols, &gate(), &mut out).is_err());
        // Column list errors.
        let bad =
            |c: &[&str]| NmsColumns::parse(&c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(
            bad(&["x1", "y1", "x2", "y2", "score"])
                .unwrap_err()
                .contains("class")
        );
        assert!(bad(&["x1", "x1", "y1", "x2", "y2", "score", "class"]).is_err());
        assert!(
            bad(&["x1", "y1", "x2", "y2", "score", "label"])
                .unwrap_err()
                .contains("label")
        );
        assert!(bad(&["_", "x1", "y1", "x2", "y2", "score", "class"]).is_ok());
    }

    #[test]
    fn tfod_boxes_are_yx_normalised_and_num_limits_rows() {
        // Input 200x100.
        let boxes = [
            0.1, 0.2, 0.5, 0.6, // y1 x1 y2 x2
            0.0, 0.0, 1.0, 1.0, //
            0.0, 0.0, 0.5, 0.5, // beyond num_detections
        ];
        let scores = [0.9, 0.4, 0.99];
        let classes = [1.0, 0.0, 0.0];
        let mut out = Vec::new();
        decode_tfod(
            &boxes,
            &scores,
            &classes,
            Some(2),
            200,
            100,
            &gate(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        let b = out[0].bbox;
        for (a, w) in [b.x1, b.y1, b.x2, b.y2]
            .iter()
            .zip([40.0, 10.0, 120.0, 50.0])
        {
            assert!((a - w).abs() < 1e-4, "{b:?}");
        }
        assert_eq!(out[0].class_id, 1);
        assert_eq!(out[1].bbox, BBox::new(0.0, 0.0, 200.0, 100.0));
        out.clear();
        decode_tfod(&boxes, &scores, &classes, None, 200, 100, &gate(), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(
            decode_tfod(
                &boxes[..8],
                &scores,
                &classes,
                None,
                1,
                1,
                &gate(),
                &mut out
            )
            .is_err()
        );
    }
}
