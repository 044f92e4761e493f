//! YOLOX decoder: one `[N, 5 + nc]` tensor over the stride grids.
//!
//! Row `i` belongs to grid cell `(gx, gy)` of a stride `s` level; levels are
//! concatenated in ascending stride order, cells row-major, as in YOLOX's
//! head (`hsize = H // s`, `wsize = W // s`). Columns: `x, y, w, h, obj,
//! cls_0 .. cls_nc-1`, where `obj` and the class scores have already been
//! through a sigmoid inside the graph (YOLOX applies it before export).
//!
//! - Raw export (YOLOX's `export_onnx.py` default, `decode_in_inference
//!   = False`): `cx = (x + gx) s`, `cy = (y + gy) s`, `w = exp(w) s`,
//!   `h = exp(h) s`.
//! - Decoded export: `x, y, w, h` are already `cx, cy, w, h` in input pixels.
//!
//! Score = `obj × best class score`. Since both factors are at most 1, a
//! row whose `obj` is not above the lowest class threshold is skipped
//! without looking at its classes.

use crate::frame::{BBox, Detection};

use super::DetectError;
use super::decode::{ClassGate, argmax_first};
use super::spec::yolox_cells;

/// Decodes YOLOX rows into `out` (appended, input pixels).
#[allow(clippy::too_many_arguments)]
pub fn decode_yolox(
    data: &[f32],
    fields: usize,
    input_w: u32,
    input_h: u32,
    strides: &[u32],
    decoded: bool,
    gate: &ClassGate,
    out: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    let nc = fields.saturating_sub(5);
    let cells = yolox_cells(input_w, input_h, strides);
    if nc == 0 || data.len() != cells * fields || gate.num_classes() != nc || strides.contains(&0) {
        return Err(DetectError::OutputShape {
            output: "yolox head".into(),
            expected: format!(
                "[{cells}, 5 + {}] for a {input_w}x{input_h} input at strides {strides:?}",
                gate.num_classes()
            ),
            found: format!("{} values of {fields} fields", data.len()),
        });
    }
    let min_thr = gate.min_threshold();
    let mut rows = data.chunks_exact(fields);
    for &s in strides {
        let (gw, gh) = ((input_w / s) as usize, (input_h / s) as usize);
        let sf = s as f32;
        for cell in 0..gw * gh {
            let Some(r) = rows.next() else {
                return Ok(());
            };
            let obj = r[4];
            if obj.is_nan() || obj <= min_thr {
                continue;
            }
            let Some((class, cls)) = argmax_first(&r[5..]) else {
                continue;
            };
            let score = obj * cls;
            if !gate.accepts(class, score) {
                continue;
            }
            let (cx, cy, w, h) = if decoded {
                (r[0], r[1], r[2], r[3])
            } else {
                let (gx, gy) = ((cell % gw) as f32, (cell / gw) as f32);
                (
                    (r[0] + gx) * sf,
                    (r[1] + gy) * sf,
                    r[2].exp() * sf,
                    r[3].exp() * sf,
                )
            };
            if ![cx, cy, w, h].iter().all(|v| v.is_finite()) {
                continue;
            }
            out.push(Detection {
                class_id: class as u32,
                score,
                bbox: BBox::new(cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRIDES: [u32; 3] = [8, 16, 32];

    /// 64x64 input: 64 + 16 + 4 = 84 rows of 5 + 2 fields.
    fn empty() -> Vec<f32> {
        vec![0.0; 84 * 7]
    }

    fn close(a: BBox, b: [f32; 4]) {
        for (x, y) in [a.x1, a.y1, a.x2, a.y2].iter().zip(b) {
            assert!((x - y).abs() < 1e-3, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn raw_rows_use_grid_and_stride() {
        let mut d = empty();
        // Stride 16 level starts at row 64; cell (gx 1, gy 2) = 64 + 2*4 + 1 = 73.
        let r = 73 * 7;
        d[r..r + 7].copy_from_slice(&[0.5, 0.25, 2f32.ln(), 0.0, 0.9, 0.1, 0.8]);
        // Stride 8, cell (3, 0): obj high, classes low -> 0.9 * 0.2 < 0.3.
        let r = 3 * 7;
        d[r..r + 7].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.9, 0.2, 0.1]);
        // Stride 32, cell (1, 1) = 80 + 3: obj 0.6 x cls0 0.9 = 0.54.
        let r = 83 * 7;
        d[r..r + 7].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.6, 0.9, 0.0]);
        let mut out = Vec::new();
        decode_yolox(
            &d,
            7,
            64,
            64,
            &STRIDES,
            false,
            &ClassGate::uniform(2, 0.3),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.72).abs() < 1e-6);
        // cx = 1.5 * 16 = 24, cy = 2.25 * 16 = 36, w = 32, h = 16.
        close(out[0].bbox, [8.0, 28.0, 40.0, 44.0]);
        assert_eq!(out[1].class_id, 0);
        // cx = cy = 32, w = h = 32.
        close(out[1].bbox, [16.0, 16.0, 48.0, 48.0]);
    }

    #[test]
    fn decoded_rows_are_taken_as_pixels() {
        let mut d = empty();
        d[10 * 7..11 * 7].copy_from_slice(&[30.0, 20.0, 10.0, 8.0, 0.95, 0.9, 0.1]);
        let mut out = Vec::new();
        decode_yolox(
            &d,
            7,
            64,
            64,
            &STRIDES,
            true,
            &ClassGate::uniform(2, 0.3),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        close(out[0].bbox, [25.0, 16.0, 35.0, 24.0]);
    }

    #[test]
    fn wrong_row_count_is_refused() {
        let d = vec![0.0; 83 * 7];
        assert!(matches!(
            decode_yolox(
                &d,
                7,
                64,
                64,
                &STRIDES,
                false,
                &ClassGate::uniform(2, 0.3),
                &mut Vec::new()
            ),
            Err(DetectError::OutputShape { .. })
        ));
        assert_eq!(yolox_cells(640, 640, &STRIDES), 8400);
        assert_eq!(yolox_cells(416, 416, &STRIDES), 3549);
    }
}
