//! Frame -> model input tensor: resize (stretch or letterbox), channel order,
//! mean/std normalisation, HWC u8 -> NCHW f32, into a reused buffer.
//!
//! The resize is separable: a vertical pass blends source rows into one f32
//! row buffer, then a horizontal pass blends that buffer's pixels straight
//! into the three output planes, normalising on the way out. The source
//! indices and weights of both passes depend only on (source size, input
//! size, mode, filter), so they are computed once and cached; a camera's
//! frame size rarely changes. Nothing is allocated per frame.
//!
//! Two filters share the code (only the tap tables differ):
//! - [`ResizeFilter::Antialias`] is Pillow's `BILINEAR`: a triangle filter
//!   whose support widens with the downscale factor, so every source pixel
//!   contributes. This is the detector's default because the parity
//!   reference (and the model's documented checks) resize with Pillow, and
//!   on `dog.jpg` a plain 2-tap bilinear loses the 0.35 "car" and invents a
//!   "bench".
//! - [`ResizeFilter::Bilinear`] is the classic 2-tap bilinear (OpenCV
//!   `INTER_LINEAR`, half-pixel centres): cheaper, aliases on big downscales.
//!
//! Precision: the vertical pass runs in fixed point (Q14 weights that sum
//! to exactly 1, exact i32 sums of u8 x i16 products, `vpmaddwd` on AVX2),
//! so the AVX2 and portable builds give bit-identical rows; the rounding of
//! the weights moves a value by at most `k * 255 / 2^14` grey levels (0.09
//! for 1080 -> 416, about 0.0016 after NanoDet's normalisation). Weights
//! that are multiples of 2^-14 (1, 1/2, 3/8, ...) are exact. The horizontal
//! pass stays in f32 with the exact weights. The float vertical pass is kept
//! as the reference the unit tests compare against.
//!
//! Speed: the build targets baseline x86-64 (SSE2), so the passes come in
//! three builds picked at run time ([`SimdLevel`]):
//! - AVX2 + FMA: the horizontal pass treats each RGB pixel as one 4-lane
//!   vector (the fourth lane is ignored), blends two taps per 256-bit FMA
//!   with the tap loop unrolled for the common tap counts, parks each result
//!   as RGBX in a scratch row and normalises 8 pixels per step into the
//!   planes.
//! - AVX-512 (F + BW + VNNI): the vertical pass runs 96 columns per block
//!   (`vpdpwssd` multiplies and accumulates the weight pairs) and
//!   writes the row as RGBX (one permute per 4 pixels), so the horizontal
//!   pass loads four taps with one plain 512-bit load, and the partial sums
//!   of four output pixels are folded by one 4x4 transpose of 128-bit lanes.
//!   Same integer vertical arithmetic, so the same rows bit for bit (left
//!   in Q14; the 2^-14 is folded into the normalisation). Output rows go
//!   in pairs, so each spread of the horizontal weights serves two rows,
//!   and the planes are written with streaming stores: the 2 MB tensor is
//!   not in cache, and plain stores would read every line of it first.
//! - portable: plain Rust.
//!
//! See `benches/detect.rs` for figures (it times every level in one run).

use ndarray::Array4;

use super::DetectError;
use super::decode::InputTransform;
use super::spec::{ColorOrder, ResizeMode};

/// Resampling kernel, see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    /// Pillow-compatible bilinear: triangle filter widened by the scale factor.
    #[default]
    Antialias,
    /// 2-tap bilinear with half-pixel centres (OpenCV `INTER_LINEAR`).
    Bilinear,
}

/// Which build of the resampling kernels runs. The crate targets baseline
/// x86-64 (SSE2), so the wider builds are picked at run time from what the
/// CPU reports; [`SimdLevel::detect`] is the default and
/// [`Preprocessor::with_simd`] can only lower it (benches compare levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Plain Rust (auto-vectorised for the baseline target).
    Portable,
    /// AVX2 + FMA: 256-bit kernels.
    Avx2,
    /// AVX-512 F + BW + VNNI (plus AVX2/FMA): 512-bit kernels.
    Avx512,
}

impl SimdLevel {
    /// The widest level this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                    return SimdLevel::Avx512;
                }
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Portable
    }

    /// Lower-case name for logs and bench output.
    pub fn as_str(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// Everything that decides how a frame becomes the model input.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    pub dst_w: u32,
    pub dst_h: u32,
    pub resize: ResizeMode,
    /// Channel order the model expects (the frame is always RGB).
    pub color: ColorOrder,
    /// Per model-input channel (i.e. already in `color` order).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Grey level of the letterbox border, before normalisation.
    pub pad_value: u8,
    pub filter: ResizeFilter,
}

/// Precomputed taps of one axis: output `i` reads source pixels
/// `start[i] .. start[i] + k` with weights `w[i*k .. (i+1)*k]`.
/// Every output has exactly `k` taps (zero-padded) so the inner loops have
/// a fixed trip count; `start[i] + k <= src` always holds.
#[derive(Clone, Debug, PartialEq)]
struct Taps {
    start: Vec<usize>,
    k: usize,
    w: Vec<f32>,
    /// `w` with every weight repeated 4 times: one 256-bit load yields the
    /// broadcast weights of two taps for the AVX2 horizontal pass.
    w4: Vec<f32>,
    /// `w` with each output's taps zero-padded to `k.next_multiple_of(4)`
    /// (AVX-512 pass: one 128-bit load yields four taps' weights, spread
    /// over the RGBX lanes in registers). A quarter of the bytes of a
    /// pre-spread table, so a 1080p row's weights stay in L1.
    wpad: Vec<f32>,
    /// The largest of `start`, so kernels check their reads once per row.
    max_start: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Tap table for resampling `src` pixels onto `dst` pixels (pixel centres at
/// +0.5, Pillow's coefficient rule: weights normalised to sum to 1).
fn compute_taps(src: usize, dst: usize, filter: ResizeFilter) -> Taps {
    let scale = src as f64 / dst as f64;
    let filterscale = match filter {
        ResizeFilter::Antialias => scale.max(1.0),
        ResizeFilter::Bilinear => 1.0,
    };
    let support = filterscale; // the triangle's support is 1
    let mut spans: Vec<(usize, Vec<f64>)> = Vec::with_capacity(dst);
    for i in 0..dst {
        let center = (i as f64 + 0.5) * scale;
        let lo = ((center - support + 0.5).floor().max(0.0) as usize).min(src - 1);
        let hi = ((center + support + 0.5).floor() as usize).clamp(lo + 1, src);
        let mut ws: Vec<f64> = (lo..hi)
            .map(|x| triangle((x as f64 - center + 0.5) / filterscale))
            .collect();
        let sum: f64 = ws.iter().sum();
        if sum > 0.0 {
            ws.iter_mut().for_each(|w| *w /= sum);
        } else {
            // Cannot happen for sane sizes; fall back to nearest.
            ws.iter_mut().for_each(|w| *w = 0.0);
            let nearest = (center.floor() as usize).clamp(lo, hi - 1);
            ws[nearest - lo] = 1.0;
        }
        // Trim zero-weight ends so the fixed tap count stays small.
        let first = ws.iter().position(|&w| w != 0.0).unwrap_or(0);
        let last = ws.iter().rposition(|&w| w != 0.0).unwrap_or(0);
        spans.push((lo + first, ws[first..=last].to_vec()));
    }
    let k = spans
        .iter()
        .map(|(_, w)| w.len())
        .max()
        .unwrap_or(1)
        .min(src);
    let mut start = Vec::with_capacity(dst);
    let mut w = vec![0.0f32; dst * k];
    for (i, (lo, ws)) in spans.iter().enumerate() {
        let s = (*lo).min(src - k);
        let off = lo - s;
        for (j, &v) in ws.iter().enumerate() {
            w[i * k + off + j] = v as f32;
        }
        start.push(s);
    }
    let w4 = w.iter().flat_map(|&v| [v; 4]).collect();
    let k4 = k.next_multiple_of(4);
    let mut wpad = vec![0.0f32; dst * k4];
    for (i, ws) in w.chunks_exact(k).enumerate() {
        wpad[i * k4..i * k4 + k].copy_from_slice(ws);
    }
    let max_start = start.iter().copied().max().unwrap_or(0);
    Taps {
        start,
        k,
        w,
        w4,
        wpad,
        max_start,
    }
}

/// The cached resampling plan for one source size.
#[derive(Clone, Debug)]
struct Plan {
    src_w: usize,
    src_h: usize,
    /// Where the resized content lands in the input: x0, y0, w, h.
    inner: (usize, usize, usize, usize),
    x: Taps,
    y: Taps,
    /// `y` in Q14 fixed point, packed in tap pairs, see [`q14_pairs`].
    yq: Vec<i32>,
    transform: InputTransform,
}

/// Geometry of a letterbox: content size and top-left offset inside `dst`.
///
/// The gain keeps the aspect ratio; the content is centred (the odd pixel of
/// padding goes right/bottom).
pub fn letterbox_geometry(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> (u32, u32, u32, u32) {
    let gain = (dst_w as f64 / src_w as f64).min(dst_h as f64 / src_h as f64);
    let nw = ((src_w as f64 * gain).round() as u32).clamp(1, dst_w);
    let nh = ((src_h as f64 * gain).round() as u32).clamp(1, dst_h);
    ((dst_w - nw) / 2, (dst_h - nh) / 2, nw, nh)
}

/// Reusable pre-processor; owns the cached plan and the row buffer.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    cfg: PreprocessConfig,
    /// `x * scale + offset` per model channel, i.e. `(x - mean) / std`.
    scale: [f32; 3],
    offset: [f32; 3],
    plan: Option<Plan>,
    row: Vec<f32>,
    /// Horizontal-pass results of one output row as RGBX, in the slot order
    /// of [`pixel_slot`] (SIMD paths only).
    px: Vec<f32>,
    simd: SimdLevel,
}

impl Preprocessor {
    pub fn new(cfg: PreprocessConfig) -> Self {
        let scale = [1.0 / cfg.std[0], 1.0 / cfg.std[1], 1.0 / cfg.std[2]];
        let offset = [
            -cfg.mean[0] * scale[0],
            -cfg.mean[1] * scale[1],
            -cfg.mean[2] * scale[2],
        ];
        Self {
            cfg,
            scale,
            offset,
            plan: None,
            row: Vec::new(),
            px: Vec::new(),
            simd: SimdLevel::detect(),
        }
    }

    /// Caps the kernels at `level` (never above what the CPU supports).
    /// For benchmarks and tests that compare the builds.
    pub fn with_simd(mut self, level: SimdLevel) -> Self {
        self.simd = level.min(SimdLevel::detect());
        self
    }

    /// The kernel build in use.
    pub fn simd(&self) -> SimdLevel {
        self.simd
    }

    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// A zeroed `[1, 3, H, W]` buffer of the right shape for [`Self::run`].
    pub fn make_buffer(&self) -> Array4<f32> {
        Array4::zeros((1, 3, self.cfg.dst_h as usize, self.cfg.dst_w as usize))
    }

    /// The source -> input mapping for a frame of this size (no pixels needed).
    pub fn transform_for(&self, src_w: u32, src_h: u32) -> InputTransform {
        let (dw, dh) = (self.cfg.dst_w, self.cfg.dst_h);
        match self.cfg.resize {
            ResizeMode::Stretch => InputTransform {
                scale_x: dw as f32 / src_w as f32,
                scale_y: dh as f32 / src_h as f32,
                pad_x: 0.0,
                pad_y: 0.0,
                src_w,
                src_h,
            },
            ResizeMode::Letterbox => {
                let (px, py, nw, nh) = letterbox_geometry(src_w, src_h, dw, dh);
                InputTransform {
                    scale_x: nw as f32 / src_w as f32,
                    scale_y: nh as f32 / src_h as f32,
                    pad_x: px as f32,
                    pad_y: py as f32,
                    src_w,
                    src_h,
                }
            }
        }
    }

    /// Makes sure the cached plan fits a `src_w` x `src_h` frame.
    fn ensure_plan(&mut self, src_w: usize, src_h: usize) {
        let stale = self
            .plan
            .as_ref()
            .is_none_or(|p| p.src_w != src_w || p.src_h != src_h);
        if stale {
            let (dw, dh) = (self.cfg.dst_w, self.cfg.dst_h);
            let inner = match self.cfg.resize {
                ResizeMode::Stretch => (0, 0, dw as usize, dh as usize),
                ResizeMode::Letterbox => {
                    let (px, py, nw, nh) = letterbox_geometry(src_w as u32, src_h as u32, dw, dh);
                    (px as usize, py as usize, nw as usize, nh as usize)
                }
            };
            tracing::debug!(src_w, src_h, dst_w = dw, dst_h = dh, "building resize plan");
            let y = compute_taps(src_h, inner.3, self.cfg.filter);
            self.plan = Some(Plan {
                src_w,
                src_h,
                inner,
                x: compute_taps(src_w, inner.2, self.cfg.filter),
                yq: q14_pairs(&y),
                y,
                transform: self.transform_for(src_w as u32, src_h as u32),
            });
            self.row.clear();
            // Two rows (the AVX-512 path works on pairs): RGB (3 floats per
            // pixel) or, for AVX-512, RGBX (4), plus slack for the 4-lane
            // loads of `horizontal_pass` (1 float) and the 4-pixel groups of
            // the AVX-512 pass (at most 3 pixels past the last tap). The
            // slack stays zero, i.e. finite.
            self.row.resize(2 * row_len(src_w) + ALIGN_SLACK, 0.0);
            // One RGBX pixel per output column, rounded up to whole groups
            // of 16, for each of the two rows.
            self.px.clear();
            self.px.resize(2 * px_len(inner.2) + ALIGN_SLACK, 0.0);
        }
    }

    /// Fills `out` (`[1, 3, H, W]`, standard layout) from a tightly packed
    /// RGB24 frame and returns the mapping back to source pixels.
    #[allow(
        clippy::too_many_lines,
        reason = "the dispatch to the SIMD kernels and their scalar fallbacks, kept in one place on purpose (hot path, tuned by A/B runs)"
    )]
    pub fn run(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Array4<f32>,
    ) -> Result<InputTransform, DetectError> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() != w * h * 3 {
            return Err(DetectError::BadFrame {
                width,
                height,
                len: rgb.len(),
                reason: format!(
                    "expected {} bytes of packed RGB24 and a non-empty frame",
                    w * h * 3
                ),
            });
        }
        let (dw, dh) = (self.cfg.dst_w as usize, self.cfg.dst_h as usize);
        if out.shape() != [1, 3, dh, dw] {
            return Err(DetectError::BadTensor {
                expected: vec![1, 3, dh, dw],
                found: out.shape().to_vec(),
            });
        }
        let (scale, offset, color, pad_value, simd) = (
            self.scale,
            self.offset,
            self.cfg.color,
            self.cfg.pad_value,
            self.simd,
        );
        self.ensure_plan(w, h);
        // Split borrows: the plan is read-only, the row buffer is scratch.
        let Self { plan, row, px, .. } = self;
        // Cache-line aligned scratch rows: the SIMD kernels' 32- and 64-byte
        // stores then never straddle two lines (1080p -> 416 with AVX-512:
        // about 5 % in alternating runs). The slack stays zero.
        let (row_off, px_off) = (
            row.as_ptr().align_offset(64).min(ALIGN_SLACK),
            px.as_ptr().align_offset(64).min(ALIGN_SLACK),
        );
        let Some(plan) = plan.as_ref() else {
            return Err(DetectError::BadFrame {
                width,
                height,
                len: rgb.len(),
                reason: "no resize plan for this frame size".into(),
            });
        };
        let (row, row_b) = row[row_off..].split_at_mut(row_len(w));
        let (px, px_b) = px[px_off..].split_at_mut(px_len(plan.inner.2));
        let Some(buf) = out.as_slice_mut() else {
            return Err(DetectError::BadTensor {
                expected: vec![1, 3, dh, dw],
                found: out.shape().to_vec(),
            });
        };
        let plane_len = dw * dh;
        let (p0, rest) = buf.split_at_mut(plane_len);
        let (p1, p2) = rest.split_at_mut(plane_len);
        let mut planes = [p0, p1, p2];
        // Model channel c reads source channel src_ch[c].
        let src_ch = match color {
            ColorOrder::Rgb => [0usize, 1, 2],
            ColorOrder::Bgr => [2usize, 1, 0],
        };
        let (x0, y0, nw, nh) = plan.inner;
        if (nw, nh) != (dw, dh) {
            fill_padding(&mut planes, dw, dh, plan.inner, pad_value, scale, offset);
        }
        let stride = w * 3;
        let (xk, yk) = (plan.x.k, plan.y.k);
        let np = yk.div_ceil(2);
        let yq = |yy: usize| &plan.yq[yy * np..(yy + 1) * np];
        let taps = HTaps {
            starts: &plan.x.start,
            w: &plan.x.w,
            w4: &plan.x.w4,
            wpad: &plan.x.wpad,
            max_start: plan.x.max_start,
            k: xk,
        };
        #[cfg(target_arch = "x86_64")]
        if simd == SimdLevel::Avx512 {
            // The AVX-512 vertical kernel leaves its sums in Q14: the 2^-14
            // is folded into the normalisation's scale.
            let q14 = 1.0 / (1u32 << Q14_BITS) as f32;
            let norm = Norm::new(src_ch, scale.map(|s| s * q14), offset);
            let mut yy = 0;
            while yy < nh {
                let pair = yy + 1 < nh;
                // SAFETY: `SimdLevel::detect` (the cap of `self.simd`) saw
                // AVX-512 F/BW/VNNI, AVX2 and FMA on this CPU.
                unsafe {
                    vertical_q14_avx512_rgbx(rgb, stride, plan.y.start[yy], yk, yq(yy), row);
                    if pair {
                        let (ys, q) = (plan.y.start[yy + 1], yq(yy + 1));
                        vertical_q14_avx512_rgbx(rgb, stride, ys, yk, q, row_b);
                        horizontal2_rgbx_avx512([&*row, &*row_b], &taps, [&mut *px, &mut *px_b]);
                    } else {
                        horizontal_rgbx_avx512(row, &taps, px);
                    }
                }
                let rows = if pair { 2 } else { 1 };
                for (i, p) in [&*px, &*px_b].into_iter().enumerate().take(rows) {
                    let [o0, o1, o2] = plane_rows(&mut planes, y0 + yy + i, dw, (x0, nw), color);
                    // SAFETY: as above.
                    unsafe { write_planes_avx512(p, &norm, o0, o1, o2) };
                }
                yy += rows;
            }
            // The plane writer's streaming stores are weakly ordered: fence
            // them before the tensor can reach the session thread.
            // SAFETY: SSE is part of the x86-64 baseline.
            unsafe { std::arch::x86_64::_mm_sfence() };
            return Ok(plan.transform);
        }
        let norm = Norm::new(src_ch, scale, offset);
        for yy in 0..nh {
            let ys = plan.y.start[yy];
            let yq = yq(yy);
            let [o0, o1, o2] = plane_rows(&mut planes, y0 + yy, dw, (x0, nw), color);
            match simd {
                #[cfg(target_arch = "x86_64")]
                SimdLevel::Avx2 => {
                    vertical_pass_q14(simd, rgb, stride, ys, yk, yq, row);
                    // SAFETY: `SimdLevel::detect` saw AVX2 and FMA.
                    unsafe {
                        horizontal_to_slots_avx2(row, &taps, px);
                        write_planes_avx2(px, &norm, o0, o1, o2);
                    }
                }
                _ => {
                    vertical_pass_q14(simd, rgb, stride, ys, yk, yq, row);
                    horizontal_pass(row, &taps, &norm, o0, o1, o2);
                }
            }
        }
        Ok(plan.transform)
    }
}

/// Floats of zeroed slack after the row buffer's pixels, see `ensure_plan`.
const ROW_SLACK: usize = 16;

/// Floats of one scratch row for `src_w` source pixels: RGBX plus slack,
/// rounded to whole cache lines so the second row stays 64-byte aligned.
fn row_len(src_w: usize) -> usize {
    (src_w * 4 + ROW_SLACK).next_multiple_of(16)
}

/// Floats of one RGBX output row of `nw` pixels (whole groups of 16).
fn px_len(nw: usize) -> usize {
    nw.next_multiple_of(16) * 4
}

/// The three output rows of model-input row `y` (columns `x0 .. x0 + nw`),
/// in *source* channel order (R, G, B).
fn plane_rows<'a>(
    planes: &'a mut [&mut [f32]; 3],
    y: usize,
    dw: usize,
    (x0, nw): (usize, usize),
    color: ColorOrder,
) -> [&'a mut [f32]; 3] {
    let base = y * dw + x0;
    let [q0, q1, q2] = planes;
    let (m0, m1, m2) = (
        &mut q0[base..base + nw],
        &mut q1[base..base + nw],
        &mut q2[base..base + nw],
    );
    match color {
        ColorOrder::Rgb => [m0, m1, m2],
        ColorOrder::Bgr => [m2, m1, m0],
    }
}

/// Floats of room in front of the scratch rows so they can start on a
/// 64-byte boundary.
const ALIGN_SLACK: usize = 16;

/// Fixed-point scale of the vertical weights: 1.0 == `1 << Q14_BITS`.
const Q14_BITS: u32 = 14;

/// Quantises the vertical tap table to Q14 and packs each output's taps in
/// pairs `(t, t + 1)` as `w_t | w_{t+1} << 16` (two i16 in one i32), the
/// operand layout of `_mm256_madd_epi16`. Every output gets `k.div_ceil(2)`
/// pairs; an odd last tap is paired with a zero weight.
///
/// The rounded weights of one output are corrected to sum to exactly
/// `1 << 14` (the rounding error goes to the largest weight), so flat areas
/// stay exact; weights that are multiples of 2^-14 (1, 1/2, 3/8, ...) are
/// kept exactly. The largest error per weight is 2^-15, i.e. at most about
/// 0.05 grey levels on the sum of a 6-tap 1080p -> 416 window.
fn q14_pairs(t: &Taps) -> Vec<i32> {
    let one = 1i32 << Q14_BITS;
    let np = t.k.div_ceil(2);
    let mut out = Vec::with_capacity(t.start.len() * np);
    let mut q = vec![0i32; 2 * np];
    for ws in t.w.chunks_exact(t.k) {
        q.fill(0);
        for (d, &w) in q.iter_mut().zip(ws) {
            *d = (f64::from(w) * f64::from(one)).round() as i32;
        }
        let sum: i32 = q.iter().sum();
        if let Some(big) = (0..q.len()).max_by_key(|&i| q[i]) {
            q[big] += one - sum;
        }
        for p in q.chunks_exact(2) {
            // Weights are in [0, 1 << 14], so both halves fit an i16.
            out.push((p[0] & 0xffff) | (p[1] << 16));
        }
    }
    out
}

/// The two Q14 weights packed in one [`q14_pairs`] entry.
#[inline(always)]
fn unpack_pair(p: i32) -> (i32, i32) {
    (i32::from(p as i16), p >> 16)
}

/// `out[i] = (Σ_t w_t * src[(start + t) * stride + i]) / 2^14` with Q14
/// integer weights (`pairs`, see [`q14_pairs`]) and an exact i32 sum, so the
/// AVX2 and portable builds give bit-identical rows.
#[inline]
fn vertical_pass_q14(
    simd: SimdLevel,
    src: &[u8],
    stride: usize,
    start: usize,
    k: usize,
    pairs: &[i32],
    out: &mut [f32],
) {
    match simd.min(SimdLevel::detect()) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 (checked just above; AVX-512 has
        // its own RGBX kernel, `vertical_q14_avx512_rgbx`).
        SimdLevel::Avx2 | SimdLevel::Avx512 => unsafe {
            vertical_q14_avx2(src, stride, start, k, pairs, out);
        },
        _ => vertical_q14_portable(src, stride, start, k, pairs, out, 0),
    }
}

/// Portable [`vertical_pass_q14`] for columns `from..`; blocks of 32
/// columns keep their accumulators in registers (auto-vectorised).
fn vertical_q14_portable(
    src: &[u8],
    stride: usize,
    start: usize,
    k: usize,
    pairs: &[i32],
    out: &mut [f32],
    from: usize,
) {
    const LANES: usize = 32;
    let inv = 1.0 / (1u32 << Q14_BITS) as f32;
    let len = out.len().min(stride);
    if from >= len || (start + k) * stride > src.len() || pairs.len() * 2 < k {
        return;
    }
    let weight = |t: usize| {
        let (lo, hi) = unpack_pair(pairs[t / 2]);
        if t.is_multiple_of(2) { lo } else { hi }
    };
    let row = |t: usize| &src[(start + t) * stride..(start + t + 1) * stride];
    let mut col = from;
    while col + LANES <= len {
        let mut acc = [0i32; LANES];
        for t in 0..k {
            let (wt, r) = (weight(t), &row(t)[col..col + LANES]);
            for (a, &x) in acc.iter_mut().zip(r) {
                *a += wt * i32::from(x);
            }
        }
        for (o, a) in out[col..col + LANES].iter_mut().zip(acc) {
            *o = a as f32 * inv;
        }
        col += LANES;
    }
    for (i, o) in out.iter_mut().enumerate().take(len).skip(col) {
        let acc: i32 = (0..k).map(|t| weight(t) * i32::from(row(t)[i])).sum();
        *o = acc as f32 * inv;
    }
}

/// AVX2 [`vertical_pass_q14`]: per pair of source rows, 16 pixels of each
/// are widened to i16, interleaved (`a0 b0 a1 b1 ...`) and multiplied with
/// the packed weight pair by `vpmaddwd`, 16 multiply-adds per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_q14_avx2(
    src: &[u8],
    stride: usize,
    start: usize,
    k: usize,
    pairs: &[i32],
    out: &mut [f32],
) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_cvtepi32_ps,
        _mm256_cvtepu8_epi16, _mm256_madd_epi16, _mm256_mul_ps, _mm256_permute2x128_si256,
        _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_si256, _mm256_storeu_ps,
        _mm256_unpackhi_epi16, _mm256_unpacklo_epi16,
    };
    const BLOCK: usize = 32;
    let len = out.len().min(stride);
    if (start + k) * stride > src.len() || pairs.len() * 2 < k || k == 0 {
        vertical_q14_portable(src, stride, start, k, pairs, out, 0);
        return;
    }
    let blocks = len / BLOCK;
    let full = k / 2;
    let inv = _mm256_set1_ps(1.0 / (1u32 << Q14_BITS) as f32);
    // SAFETY: rows start .. start + k exist (checked above), and every load
    // reads columns col .. col + 32 <= len <= stride of one of them; stores
    // write out[col .. col + 32] with col + 32 <= len <= out.len().
    unsafe {
        let base = src.as_ptr().add(start * stride);
        let load = |p: *const u8| _mm256_cvtepu8_epi16(_mm_loadu_si128(p.cast::<__m128i>()));
        for b in 0..blocks {
            let col = b * BLOCK;
            let mut acc: [__m256i; 4] = [_mm256_setzero_si256(); 4];
            let mut step = |a0: __m256i, a1: __m256i, b0: __m256i, b1: __m256i, p: i32| {
                let wp = _mm256_set1_epi32(p);
                acc[0] =
                    _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_unpacklo_epi16(a0, b0), wp));
                acc[1] =
                    _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_unpackhi_epi16(a0, b0), wp));
                acc[2] =
                    _mm256_add_epi32(acc[2], _mm256_madd_epi16(_mm256_unpacklo_epi16(a1, b1), wp));
                acc[3] =
                    _mm256_add_epi32(acc[3], _mm256_madd_epi16(_mm256_unpackhi_epi16(a1, b1), wp));
            };
            for (j, &p) in pairs.iter().enumerate().take(full) {
                let ra = base.add(2 * j * stride + col);
                let rb = ra.add(stride);
                step(load(ra), load(ra.add(16)), load(rb), load(rb.add(16)), p);
            }
            if k % 2 == 1 {
                let ra = base.add((k - 1) * stride + col);
                let z = _mm256_setzero_si256();
                step(load(ra), load(ra.add(16)), z, z, pairs[full]);
            }
            // acc[0] holds columns 0-3 | 8-11, acc[1] 4-7 | 12-15 (the
            // unpacks work per 128-bit lane); likewise acc[2], acc[3] + 16.
            let o = out.as_mut_ptr().add(col);
            let put = |o: *mut f32, v: __m256i| {
                _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(v), inv));
            };
            put(o, _mm256_permute2x128_si256::<0x20>(acc[0], acc[1]));
            put(o.add(8), _mm256_permute2x128_si256::<0x31>(acc[0], acc[1]));
            put(o.add(16), _mm256_permute2x128_si256::<0x20>(acc[2], acc[3]));
            put(o.add(24), _mm256_permute2x128_si256::<0x31>(acc[2], acc[3]));
        }
    }
    vertical_q14_portable(src, stride, start, k, pairs, out, blocks * BLOCK);
}

/// AVX-512 vertical pass into an **RGBX** row: the AVX2 kernel's integer
/// arithmetic (so the same values as [`vertical_q14_portable`], bit for
/// bit, times 2^14: the sums are left in Q14 and the caller folds the
/// 2^-14 into the normalisation, one multiply per 16 columns less) at 512
/// bits, 96 columns (32 pixels) per block, and each pixel is
/// stored as four floats (R, G, B, B again) so that the horizontal pass can
/// load four taps with one plain 512-bit load. `out` holds `4 * width`
/// floats (plus slack); columns past the last whole block go through the
/// portable kernel.
///
/// The in-lane unpacks leave an accumulator's columns in 4-column runs from
/// every 128-bit lane; one two-source permute per 16 columns restores column
/// order, and one more per 4 pixels spreads RGB into RGBX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn vertical_q14_avx512_rgbx(
    src: &[u8],
    stride: usize,
    start: usize,
    k: usize,
    pairs: &[i32],
    out: &mut [f32],
) {
    use std::arch::x86_64::{
        __m256i, __m512, __m512i, _mm256_loadu_si256, _mm512_cvtepi32_ps, _mm512_cvtepu8_epi16,
        _mm512_dpwssd_epi32, _mm512_permutex2var_ps, _mm512_set1_epi32, _mm512_setr_epi32,
        _mm512_setzero_ps, _mm512_setzero_si512, _mm512_storeu_ps, _mm512_unpackhi_epi16,
        _mm512_unpacklo_epi16,
    };
    const BLOCK: usize = 96;
    let width = stride / 3;
    if (start + k) * stride > src.len() || pairs.len() * 2 < k || k == 0 || out.len() < 4 * width {
        return;
    }
    let blocks = (width * 3) / BLOCK;
    let full = k / 2;
    // lo = columns [0-3 | 8-11 | 16-19 | 24-27], hi = [4-7 | 12-15 | ...]:
    // columns 0-15 are lo.0 hi.0 lo.1 hi.1, columns 16-31 lo.2 hi.2 lo.3 hi.3.
    let first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    // Pixels 4j .. 4j + 4 are columns 12j .. 12j + 12, i.e. offset
    // o = 12j mod 16 in column vector q = 12j / 16 (and q + 1); lane 4t + c
    // takes column 3t + min(c, 2) (X repeats B, so the block is closed).
    let spread = |o: i32| {
        let l = |t: i32, c: i32| o + 3 * t + c.min(2);
        _mm512_setr_epi32(
            l(0, 0),
            l(0, 1),
            l(0, 2),
            l(0, 3),
            l(1, 0),
            l(1, 1),
            l(1, 2),
            l(1, 3),
            l(2, 0),
            l(2, 1),
            l(2, 2),
            l(2, 3),
            l(3, 0),
            l(3, 1),
            l(3, 2),
            l(3, 3),
        )
    };
    let spreads = [spread(0), spread(12), spread(8), spread(4)];
    // SAFETY: rows start .. start + k exist (checked above) and every load
    // reads columns col .. col + 96 <= 3 * width = stride of one of them;
    // block b stores out[128 b .. 128 b + 128] with 128 (b + 1) <= 4 width
    // <= out.len().
    unsafe {
        let base = src.as_ptr().add(start * stride);
        let load = |p: *const u8| _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.cast::<__m256i>()));
        for b in 0..blocks {
            let col = b * BLOCK;
            let mut acc: [__m512i; 6] = [_mm512_setzero_si512(); 6];
            let mut step = |a: [__m512i; 3], c: [__m512i; 3], p: i32| {
                let wp = _mm512_set1_epi32(p);
                // VNNI: multiply the i16 pairs and add into the i32
                // accumulators in one instruction.
                for i in 0..3 {
                    acc[2 * i] =
                        _mm512_dpwssd_epi32(acc[2 * i], _mm512_unpacklo_epi16(a[i], c[i]), wp);
                    acc[2 * i + 1] =
                        _mm512_dpwssd_epi32(acc[2 * i + 1], _mm512_unpackhi_epi16(a[i], c[i]), wp);
                }
            };
            for (j, &p) in pairs.iter().enumerate().take(full) {
                let ra = base.add(2 * j * stride + col);
                let rb = ra.add(stride);
                step(
                    [load(ra), load(ra.add(32)), load(ra.add(64))],
                    [load(rb), load(rb.add(32)), load(rb.add(64))],
                    p,
                );
            }
            if k % 2 == 1 {
                let ra = base.add((k - 1) * stride + col);
                let z = _mm512_setzero_si512();
                step(
                    [load(ra), load(ra.add(32)), load(ra.add(64))],
                    [z; 3],
                    pairs[full],
                );
            }
            let f = acc.map(|v| _mm512_cvtepi32_ps(v));
            let mut n: [__m512; 7] = [_mm512_setzero_ps(); 7];
            for i in 0..3 {
                n[2 * i] = _mm512_permutex2var_ps(f[2 * i], first, f[2 * i + 1]);
                n[2 * i + 1] = _mm512_permutex2var_ps(f[2 * i], second, f[2 * i + 1]);
            }
            let o = out.as_mut_ptr().add(4 * (col / 3));
            for j in 0..8 {
                let q = 12 * j / 16;
                let v = _mm512_permutex2var_ps(n[q], spreads[j % 4], n[q + 1]);
                _mm512_storeu_ps(o.add(16 * j), v);
            }
        }
    }
    // The last pixels (fewer than 32), portable, through the scratch tail
    // of the same integer sums.
    let done = blocks * BLOCK / 3;
    let weight = |t: usize| {
        let (lo, hi) = unpack_pair(pairs[t / 2]);
        if t.is_multiple_of(2) { lo } else { hi }
    };
    for px in done..width {
        for c in 0..3 {
            let col = 3 * px + c;
            let acc: i32 = (0..k)
                .map(|t| weight(t) * i32::from(src[(start + t) * stride + col]))
                .sum();
            out[4 * px + c] = acc as f32;
        }
        out[4 * px + 3] = out[4 * px + 2];
    }
}

/// AVX-512 horizontal pass over an RGBX row (see
/// [`vertical_q14_avx512_rgbx`]): four taps per 512-bit load and FMA with
/// the weights of `wpad` (zero-padded to whole groups of four, spread over
/// the RGBX lanes by one permute per group), then the four
/// partial sums of four output pixels are added by one 4x4 transpose of
/// 128-bit lanes. Results go to `px` as RGBX in column order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn horizontal_rgbx_avx512(row: &[f32], taps: &HTaps<'_>, px: &mut [f32]) {
    horizontal_rows_avx512::<1>([row], taps, [px]);
}

/// [`horizontal_rgbx_avx512`] over two rows at once: each spread of a
/// group's weights (the pass's most frequent shuffle) serves both rows.
/// Same arithmetic, so the same results bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn horizontal2_rgbx_avx512(rows: [&[f32]; 2], taps: &HTaps<'_>, px: [&mut [f32]; 2]) {
    horizontal_rows_avx512::<2>(rows, taps, px);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn horizontal_rows_avx512<const R: usize>(
    rows: [&[f32]; R],
    taps: &HTaps<'_>,
    px: [&mut [f32]; R],
) {
    // A compile-time group count unrolls the tap loop (1080p -> 416 has 3).
    match taps.k.div_ceil(4) {
        1 => h_rgbx512::<1, R>(rows, taps, px),
        2 => h_rgbx512::<2, R>(rows, taps, px),
        3 => h_rgbx512::<3, R>(rows, taps, px),
        4 => h_rgbx512::<4, R>(rows, taps, px),
        _ => h_rgbx512::<0, R>(rows, taps, px),
    }
}

/// [`horizontal_rgbx_avx512`] for `NG == k.div_ceil(4)` groups (0: any)
/// and `R` rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn h_rgbx512<const NG: usize, const R: usize>(
    rows: [&[f32]; R],
    taps: &HTaps<'_>,
    px: [&mut [f32]; R],
) {
    use std::arch::x86_64::{
        __m512, _mm_loadu_ps, _mm512_add_ps, _mm512_castps128_ps512, _mm512_fmadd_ps,
        _mm512_loadu_ps, _mm512_mul_ps, _mm512_permutexvar_ps, _mm512_setr_epi32,
        _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps,
    };
    let groups = taps.k.div_ceil(4);
    let n = taps.starts.len();
    let src_px = rows.iter().map(|r| r.len()).min().unwrap_or(0) / 4;
    // Every output reads pixels s .. s + 4 * groups (s + k <= width, and
    // the row has ROW_SLACK >= 12 floats of zeros past the last pixel).
    let fits = taps.max_start + 4 * groups <= src_px;
    let room = px.iter().all(|p| p.len() >= n.next_multiple_of(4) * 4);
    if !fits || !room || taps.wpad.len() < n * groups * 4 {
        return;
    }
    let ng = if NG == 0 { groups } else { NG };
    let r = rows.map(|row| row.as_ptr());
    let out = px.map(|p| p.as_mut_ptr());
    // SAFETY: AVX-512F/AVX2/FMA are enabled for this function (the caller
    // checked the CPU). Output x loads row[4 s .. 4 (s + 4 groups)] of every
    // row (checked by `fits`) and wpad[4 groups x .. 4 groups (x + 1)]
    // (length checked); the store of outputs x .. x + 4 writes
    // px[4x .. 4x + 16] of every row with x + 4 <= n rounded up to 4
    // (checked by `room`).
    unsafe {
        let w = taps.wpad.as_ptr();
        // Lane 4t + c takes the weight of tap t.
        let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        let weights =
            |p: *const f32| _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(p)));
        let one = |x: usize| -> [__m512; R] {
            if x >= n {
                return [_mm512_setzero_ps(); R];
            }
            let s = 4 * *taps.starts.get_unchecked(x);
            let wx = w.add(4 * groups * x);
            let w0 = weights(wx);
            let mut acc = r.map(|p| _mm512_mul_ps(_mm512_loadu_ps(p.add(s)), w0));
            for g in 1..ng {
                let wg = weights(wx.add(4 * g));
                for (a, p) in acc.iter_mut().zip(r) {
                    *a = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(s + 16 * g)), wg, *a);
                }
            }
            acc
        };
        // [a0 a2 b0 b2] + [a1 a3 b1 b3] = [a01 a23 b01 b23], same for c, d;
        // then [a01 b01 c01 d01] + [a23 b23 c23 d23] = [a b c d].
        let fold = |a: __m512, b: __m512, c: __m512, d: __m512| {
            let ab = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            );
            let cd = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(c, d),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(c, d),
            );
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(ab, cd),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(ab, cd),
            )
        };
        let mut x = 0;
        while x < n {
            let (a, b, c, d) = (one(x), one(x + 1), one(x + 2), one(x + 3));
            for (i, o) in out.iter().enumerate() {
                _mm512_storeu_ps(o.add(4 * x), fold(a[i], b[i], c[i], d[i]));
            }
            x += 4;
        }
    }
}

/// Normalises an RGBX row in column order (from [`horizontal_rgbx_avx512`])
/// into the three planes (source channel order), 16 pixels per step: two
/// rounds of two-source permutes deinterleave R, G and B.
///
/// The planes are written with non-temporal (streaming) stores when the
/// three rows share their alignment, which is the case in every model
/// input whose planes are a multiple of 64 bytes (416 x 416, 640 x 640):
/// the 2 MB tensor is not in cache when a frame starts, and plain stores
/// would first read every line of it (read-for-ownership). The first few
/// pixels of a row go through the scalar path to reach a 64-byte boundary;
/// it rounds like the vector path (fused multiply-add), so the values do
/// not depend on the tensor's alignment.
/// The caller must `sfence` before handing the tensor to another thread,
/// see [`Preprocessor::run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn write_planes_avx512(px: &[f32], norm: &Norm, o0: &mut [f32], o1: &mut [f32], o2: &mut [f32]) {
    let n = o0.len().min(o1.len()).min(o2.len());
    let mis = o0.as_ptr() as usize % 64;
    let stream = mis.is_multiple_of(4)
        && o1.as_ptr() as usize % 64 == mis
        && o2.as_ptr() as usize % 64 == mis;
    if stream {
        let head = ((64 - mis) % 64 / 4).min(n);
        planes_avx512::<true>(px, norm, o0, o1, o2, head);
    } else {
        planes_avx512::<false>(px, norm, o0, o1, o2, 0);
    }
}

/// [`write_planes_avx512`] with the vector loop starting at pixel `head`;
/// `STREAM` stores with `vmovntps`, which needs `o*[head]` to be 64-byte
/// aligned (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn planes_avx512<const STREAM: bool>(
    px: &[f32],
    norm: &Norm,
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    head: usize,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_permutex2var_ps, _mm512_set1_ps,
        _mm512_setr_epi32, _mm512_storeu_ps, _mm512_stream_ps,
    };
    let n = o0.len().min(o1.len()).min(o2.len());
    if px.len() < 4 * n || head > n {
        return;
    }
    let groups = (n - head) / 16;
    // The pixels before `head` and after the last whole group, one loop
    // (a closure called from two loops was not inlined). Fused
    // multiply-add, like the vector loop: which pixels take this path
    // depends on the tensor's alignment, so it must round the same way or
    // the input (and the scores) would depend on where the buffer lies.
    for x in (0..head).chain(head + groups * 16..n) {
        let q = 4 * x;
        o0[x] = px[q].mul_add(norm.scale[0], norm.offset[0]);
        o1[x] = px[q + 1].mul_add(norm.scale[1], norm.offset[1]);
        o2[x] = px[q + 2].mul_add(norm.scale[2], norm.offset[2]);
    }
    let s = norm.scale.map(|v| _mm512_set1_ps(v));
    let o = norm.offset.map(|v| _mm512_set1_ps(v));
    // From 8 RGBX pixels (two vectors): R0..R7 then G0..G7; and B0..B7 twice.
    let rg = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    let bb = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 2, 6, 10, 14, 18, 22, 26, 30);
    // Low halves of two vectors, then high halves.
    let lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    let hi = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    // SAFETY (both): AVX-512F is enabled; `x + 16 <= n`, and with `STREAM`
    // the caller made `o*[head]`, hence every `o*[x]` here, 64-byte aligned.
    let put = |d: *mut f32, v: __m512| unsafe {
        if STREAM {
            _mm512_stream_ps(d, v);
        } else {
            _mm512_storeu_ps(d, v);
        }
    };
    for g in 0..groups {
        let x = head + 16 * g;
        // SAFETY: AVX-512F is enabled (the caller checked the CPU); loads
        // read px[4x .. 4x + 64] <= 4n <= px.len(), stores write
        // o*[x .. x + 16] with x + 16 <= n.
        unsafe {
            let p = px.as_ptr().add(4 * x);
            let (p0, p1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            let (p2, p3) = (_mm512_loadu_ps(p.add(32)), _mm512_loadu_ps(p.add(48)));
            let (rg01, rg23) = (
                _mm512_permutex2var_ps(p0, rg, p1),
                _mm512_permutex2var_ps(p2, rg, p3),
            );
            let (b01, b23) = (
                _mm512_permutex2var_ps(p0, bb, p1),
                _mm512_permutex2var_ps(p2, bb, p3),
            );
            let r = _mm512_permutex2var_ps(rg01, lo, rg23);
            let gr = _mm512_permutex2var_ps(rg01, hi, rg23);
            let b = _mm512_permutex2var_ps(b01, lo, b23);
            put(o0.as_mut_ptr().add(x), _mm512_fmadd_ps(r, s[0], o[0]));
            put(o1.as_mut_ptr().add(x), _mm512_fmadd_ps(gr, s[1], o[1]));
            put(o2.as_mut_ptr().add(x), _mm512_fmadd_ps(b, s[2], o[2]));
        }
    }
}

/// Where output column `x` is parked in the RGBX scratch row: within each
/// group of 8, the order that makes [`write_planes_avx2`]'s in-lane
/// transpose come out in column order.
#[inline(always)]
fn pixel_slot(x: usize) -> usize {
    const SLOT: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
    (x & !7) | SLOT[x & 7]
}

/// The tap loop of [`horizontal_pass`] (two taps per 256-bit FMA), storing
/// each output pixel as one RGBX vector at `px[4 * pixel_slot(x)..]`
/// instead of normalising it lane by lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn horizontal_to_slots_avx2(row: &[f32], taps: &HTaps<'_>, px: &mut [f32]) {
    // A compile-time pair count unrolls the tap loop (1080p -> 416 has 5).
    match taps.k / 2 {
        1 => h_slots::<1>(row, taps, px),
        2 => h_slots::<2>(row, taps, px),
        3 => h_slots::<3>(row, taps, px),
        4 => h_slots::<4>(row, taps, px),
        5 => h_slots::<5>(row, taps, px),
        6 => h_slots::<6>(row, taps, px),
        7 => h_slots::<7>(row, taps, px),
        8 => h_slots::<8>(row, taps, px),
        _ => h_slots::<0>(row, taps, px),
    }
}

/// [`horizontal_to_slots_avx2`] for `NP == k / 2` tap pairs (0: any `k`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn h_slots<const NP: usize>(row: &[f32], taps: &HTaps<'_>, px: &mut [f32]) {
    use std::arch::x86_64::{
        _mm_add_ps, _mm_fmadd_ps, _mm_loadu_ps, _mm_set1_ps, _mm_storeu_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu2_m128,
        _mm256_setzero_ps,
    };
    let k = taps.k;
    let n = taps.starts.len();
    if px.len() < n.next_multiple_of(8) * 4 || taps.w.len() < n * k || taps.w4.len() < n * k * 4 {
        return;
    }
    for (x, ((&s, ws), w4)) in taps
        .starts
        .iter()
        .zip(taps.w.chunks_exact(k))
        .zip(taps.w4.chunks_exact(4 * k))
        .enumerate()
    {
        let Some(p) = row.get(s * 3..(s + k) * 3 + 1) else {
            continue;
        };
        // SAFETY: AVX2/FMA are enabled for this function (the caller checked
        // the CPU). Loads of tap t read p[3t .. 3t + 4] (in range because
        // p.len() == 3k + 1) and w4[4t .. 4t + 8] only for t + 1 < k
        // (w4.len() == 4k); the store writes px[4 slot .. 4 slot + 4] with
        // slot < n rounded up to 8 (px.len() checked above).
        unsafe {
            let p = p.as_ptr();
            let np = if NP == 0 { k / 2 } else { NP };
            let mut acc8 = _mm256_setzero_ps();
            for j in 0..np {
                let v = _mm256_loadu2_m128(p.add(6 * j + 3), p.add(6 * j));
                let w = _mm256_loadu_ps(w4.as_ptr().add(8 * j));
                acc8 = _mm256_fmadd_ps(v, w, acc8);
            }
            let mut acc = _mm_add_ps(
                _mm256_castps256_ps128(acc8),
                _mm256_extractf128_ps::<1>(acc8),
            );
            if k % 2 == 1 {
                let t = k - 1;
                acc = _mm_fmadd_ps(_mm_loadu_ps(p.add(3 * t)), _mm_set1_ps(ws[t]), acc);
            }
            _mm_storeu_ps(px.as_mut_ptr().add(4 * pixel_slot(x)), acc);
        }
    }
}

/// Normalises the RGBX scratch row into the three planes (source channel
/// order), 8 pixels per step: a 4x4 in-lane transpose of four 2-pixel
/// vectors gives R, G and B of 8 pixels in column order (see
/// [`pixel_slot`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn write_planes_avx2(px: &[f32], norm: &Norm, o0: &mut [f32], o1: &mut [f32], o2: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };
    let n = o0.len().min(o1.len()).min(o2.len());
    if px.len() < n.next_multiple_of(8) * 4 {
        return;
    }
    let groups = n / 8;
    let s = norm.scale.map(|v| _mm256_set1_ps(v));
    let o = norm.offset.map(|v| _mm256_set1_ps(v));
    for g in 0..groups {
        // SAFETY: AVX2/FMA are enabled (the caller checked the CPU); the
        // loads read px[32g .. 32g + 32] (px.len() >= 4 * n rounded up to 8)
        // and the stores write o*[8g .. 8g + 8] with 8g + 8 <= n.
        unsafe {
            let p = px.as_ptr().add(32 * g);
            let (p0, p1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            let (p2, p3) = (_mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24)));
            let (t0, t1) = (_mm256_unpacklo_ps(p0, p1), _mm256_unpackhi_ps(p0, p1));
            let (t2, t3) = (_mm256_unpacklo_ps(p2, p3), _mm256_unpackhi_ps(p2, p3));
            let r = _mm256_shuffle_ps::<0x44>(t0, t2);
            let gr = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let b = _mm256_shuffle_ps::<0x44>(t1, t3);
            _mm256_storeu_ps(o0.as_mut_ptr().add(8 * g), _mm256_fmadd_ps(r, s[0], o[0]));
            _mm256_storeu_ps(o1.as_mut_ptr().add(8 * g), _mm256_fmadd_ps(gr, s[1], o[1]));
            _mm256_storeu_ps(o2.as_mut_ptr().add(8 * g), _mm256_fmadd_ps(b, s[2], o[2]));
        }
    }
    for x in groups * 8..n {
        let q = 4 * pixel_slot(x);
        norm.write(
            [px[q], px[q + 1], px[q + 2], 0.0],
            &mut o0[x],
            &mut o1[x],
            &mut o2[x],
        );
    }
}

/// `out[i] = Σ_k w[k] * src[(start + k) * stride + i]`, u8 -> f32.
///
/// Dispatches to an AVX2 build of the same code when the CPU has it (the
/// crate is compiled for baseline x86-64, i.e. SSE2, so this doubles the
/// vector width on any recent x86 without a `-C target-cpu` flag).
#[cfg(test)]
#[inline]
fn vertical_pass(src: &[u8], stride: usize, start: usize, w: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if SimdLevel::detect() >= SimdLevel::Avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { vertical_pass_avx2(src, stride, start, w, out) };
            return;
        }
    }
    vertical_pass_generic(src, stride, start, w, out);
}

#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn vertical_pass_avx2(src: &[u8], stride: usize, start: usize, w: &[f32], out: &mut [f32]) {
    vertical_pass_impl::<true>(src, stride, start, w, out);
}

/// The portable build (baseline SSE2, no FMA).
#[cfg(test)]
#[inline]
fn vertical_pass_generic(src: &[u8], stride: usize, start: usize, w: &[f32], out: &mut [f32]) {
    vertical_pass_impl::<false>(src, stride, start, w, out);
}

/// Column blocks of `LANES` accumulate every tap in registers and are stored
/// once, instead of re-reading and re-writing the row buffer per tap.
///
/// `FMA` selects fused multiply-adds; only instantiate it with `true` inside
/// a function compiled with the `fma` target feature, otherwise `mul_add`
/// becomes a slow libm call.
#[cfg(test)]
#[inline(always)]
fn vertical_pass_impl<const FMA: bool>(
    src: &[u8],
    stride: usize,
    start: usize,
    w: &[f32],
    out: &mut [f32],
) {
    const LANES: usize = 32;
    let row = |k: usize| &src[(start + k) * stride..(start + k + 1) * stride];
    let len = out.len().min(stride);
    let blocks = len / LANES;
    for b in 0..blocks {
        let base = b * LANES;
        let mut acc = [0.0f32; LANES];
        for (k, &wk) in w.iter().enumerate() {
            let r = &row(k)[base..base + LANES];
            for j in 0..LANES {
                let x = f32::from(r[j]);
                acc[j] = if FMA {
                    x.mul_add(wk, acc[j])
                } else {
                    acc[j] + wk * x
                };
            }
        }
        out[base..base + LANES].copy_from_slice(&acc);
    }
    for (i, o) in out.iter_mut().enumerate().take(len).skip(blocks * LANES) {
        let mut acc = 0.0f32;
        for (k, &wk) in w.iter().enumerate() {
            acc += wk * f32::from(row(k)[i]);
        }
        *o = acc;
    }
}

/// The horizontal tap table of a plan, borrowed for one row.
struct HTaps<'a> {
    starts: &'a [usize],
    w: &'a [f32],
    w4: &'a [f32],
    wpad: &'a [f32],
    /// See [`Taps::max_start`].
    max_start: usize,
    k: usize,
}

/// Channel reorder + `(x - mean) / std` folded into `x * scale + offset`.
/// Kept in *source* channel order so the per-pixel write uses fixed lane
/// indices; the caller hands the output planes over in the same order.
struct Norm {
    scale: [f32; 3],
    offset: [f32; 3],
}

impl Norm {
    /// `src_ch[m]` = source channel feeding model channel `m`.
    fn new(src_ch: [usize; 3], scale: [f32; 3], offset: [f32; 3]) -> Self {
        let mut n = Norm {
            scale: [1.0; 3],
            offset: [0.0; 3],
        };
        for m in 0..3 {
            n.scale[src_ch[m]] = scale[m];
            n.offset[src_ch[m]] = offset[m];
        }
        n
    }

    #[inline(always)]
    fn write(&self, acc: [f32; 4], r: &mut f32, g: &mut f32, b: &mut f32) {
        *r = acc[0] * self.scale[0] + self.offset[0];
        *g = acc[1] * self.scale[1] + self.offset[1];
        *b = acc[2] * self.scale[2] + self.offset[2];
    }
}

/// Blends the interleaved RGB row buffer horizontally and writes normalised
/// values into the three model-channel planes.
///
/// Each tap loads four floats (R, G, B and the next pixel's R) and
/// accumulates them as one 4-lane vector; the fourth lane is ignored. That
/// needs one float of slack at the end of `row`, which [`Preprocessor`]
/// keeps.
#[inline]
fn horizontal_pass(
    row: &[f32],
    taps: &HTaps<'_>,
    norm: &Norm,
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
) {
    let k = taps.k;
    for ((&s, ws), ((a, b), c)) in taps
        .starts
        .iter()
        .zip(taps.w.chunks_exact(k))
        .zip(o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()))
    {
        // Always in range by construction of the taps; `get` keeps it safe.
        let Some(px) = row.get(s * 3..(s + k) * 3 + 1) else {
            continue;
        };
        norm.write(blend4(px, ws), a, b, c);
    }
}

/// [`horizontal_pass`] with two taps per 256-bit FMA: the low half holds
/// tap `t`, the high half tap `t + 1`; the halves are summed at the end.
#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn horizontal_pass_avx2(
    row: &[f32],
    taps: &HTaps<'_>,
    norm: &Norm,
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
) {
    use std::arch::x86_64::{
        _mm_add_ps, _mm_fmadd_ps, _mm_loadu_ps, _mm_set1_ps, _mm_storeu_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu2_m128,
        _mm256_setzero_ps,
    };
    let k = taps.k;
    for (((&s, ws), w4), ((a, b), c)) in taps
        .starts
        .iter()
        .zip(taps.w.chunks_exact(k))
        .zip(taps.w4.chunks_exact(4 * k))
        .zip(o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()))
    {
        let Some(px) = row.get(s * 3..(s + k) * 3 + 1) else {
            continue;
        };
        let mut out = [0.0f32; 4];
        // SAFETY: AVX2/FMA are enabled for this function (the caller checked
        // the CPU). Loads of tap t read px[3t .. 3t + 4] (in range because
        // px.len() == 3k + 1) and w4[4t .. 4t + 8] only for t + 1 < k
        // (w4.len() == 4k).
        unsafe {
            let p = px.as_ptr();
            let mut acc8 = _mm256_setzero_ps();
            let mut t = 0;
            while t + 1 < k {
                let v = _mm256_loadu2_m128(p.add(3 * t + 3), p.add(3 * t));
                let w = _mm256_loadu_ps(w4.as_ptr().add(4 * t));
                acc8 = _mm256_fmadd_ps(v, w, acc8);
                t += 2;
            }
            let mut acc = _mm_add_ps(
                _mm256_castps256_ps128(acc8),
                _mm256_extractf128_ps::<1>(acc8),
            );
            if t < k {
                acc = _mm_fmadd_ps(_mm_loadu_ps(p.add(3 * t)), _mm_set1_ps(ws[t]), acc);
            }
            _mm_storeu_ps(out.as_mut_ptr(), acc);
        }
        norm.write(out, a, b, c);
    }
}

/// `Σ_t ws[t] * px[3t .. 3t + 4]` as one 4-lane accumulator.
/// `px.len()` must be `3 * ws.len() + 1` (checked).
#[inline(always)]
fn blend4(px: &[f32], ws: &[f32]) -> [f32; 4] {
    let mut out = [0.0f32; 4];
    if px.len() < 3 * ws.len() + 1 {
        return out;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_add_ps, _mm_loadu_ps, _mm_mul_ps, _mm_set1_ps, _mm_setzero_ps, _mm_storeu_ps,
        };
        // SAFETY: SSE is part of the x86_64 baseline; every load reads
        // px[3t .. 3t + 4] with 3t + 4 <= 3 * ws.len() + 1 <= px.len().
        unsafe {
            let mut acc = _mm_setzero_ps();
            for (t, &w) in ws.iter().enumerate() {
                let v = _mm_loadu_ps(px.as_ptr().add(t * 3));
                acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(w), v));
            }
            _mm_storeu_ps(out.as_mut_ptr(), acc);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (t, &w) in ws.iter().enumerate() {
        for j in 0..4 {
            out[j] += w * px[t * 3 + j];
        }
    }
    out
}

/// Writes the normalised pad value around the content rectangle.
fn fill_padding(
    planes: &mut [&mut [f32]; 3],
    dw: usize,
    dh: usize,
    (x0, y0, nw, nh): (usize, usize, usize, usize),
    pad: u8,
    scale: [f32; 3],
    offset: [f32; 3],
) {
    for (c, plane) in planes.iter_mut().enumerate() {
        let v = f32::from(pad) * scale[c] + offset[c];
        plane[..y0 * dw].fill(v);
        plane[(y0 + nh) * dw..dh * dw].fill(v);
        for y in y0..y0 + nh {
            plane[y * dw..y * dw + x0].fill(v);
            plane[y * dw + x0 + nw..(y + 1) * dw].fill(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dst_w: u32, dst_h: u32, resize: ResizeMode, color: ColorOrder) -> PreprocessConfig {
        PreprocessConfig {
            dst_w,
            dst_h,
            resize,
            color,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad_value: 114,
            filter: ResizeFilter::Antialias,
        }
    }

    fn image(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> u8) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    v.push(f(x, y, c));
                }
            }
        }
        v
    }

    #[test]
    fn taps_are_normalised_and_in_range() {
        for (src, dst) in [
            (1920, 416),
            (768, 416),
            (576, 416),
            (416, 416),
            (100, 640),
            (3, 7),
            (1, 5),
            (7, 1),
        ] {
            for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
                let t = compute_taps(src, dst, filter);
                assert_eq!(t.start.len(), dst);
                for i in 0..dst {
                    assert!(t.start[i] + t.k <= src, "{src}->{dst} {filter:?} out {i}");
                    let s: f32 = t.w[i * t.k..(i + 1) * t.k].iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{src}->{dst} {filter:?}: sum {s}");
                }
            }
        }
        // 2x downscale with the antialias filter: centre 1.0 -> taps 0,1,2 at 1/4, 1/2, 1/4 ... shifted by half-pixels.
        let t = compute_taps(8, 4, ResizeFilter::Antialias);
        // Output 1 centre = 3.0 in source coords; pixels 1..=4 (centres 1.5..4.5) weights 1/8,3/8,3/8,1/8.
        let i = 1;
        let lo = t.start[i];
        let w = &t.w[i * t.k..(i + 1) * t.k];
        let mut full = [0.0f32; 8];
        for (j, &v) in w.iter().enumerate() {
            full[lo + j] += v;
        }
        let want = [0.0, 0.125, 0.375, 0.375, 0.125, 0.0, 0.0, 0.0];
        for (a, b) in full.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{full:?}");
        }
        // Same size: identity.
        let t = compute_taps(5, 5, ResizeFilter::Antialias);
        for i in 0..5 {
            let w = &t.w[i * t.k..(i + 1) * t.k];
            let pos = t.start[i] + w.iter().position(|&v| v == 1.0).unwrap();
            assert_eq!(pos, i);
        }
    }

    #[test]
    fn identity_size_copies_pixels_with_channel_swap_and_norm() {
        let (w, h) = (4usize, 3usize);
        let img = image(w, h, |x, y, c| (10 * x + 50 * y + c) as u8);
        let mut c = cfg(4, 3, ResizeMode::Stretch, ColorOrder::Bgr);
        c.mean = [1.0, 2.0, 3.0];
        c.std = [2.0, 4.0, 0.5];
        let mut p = Preprocessor::new(c);
        let mut out = p.make_buffer();
        let t = p.run(&img, 4, 3, &mut out).unwrap();
        assert_eq!(
            (t.scale_x, t.scale_y, t.pad_x, t.pad_y),
            (1.0, 1.0, 0.0, 0.0)
        );
        for y in 0..h {
            for x in 0..w {
                let r = (10 * x + 50 * y) as f32;
                let (g, b) = (r + 1.0, r + 2.0);
                assert!((out[[0, 0, y, x]] - (b - 1.0) / 2.0).abs() < 1e-4);
                assert!((out[[0, 1, y, x]] - (g - 2.0) / 4.0).abs() < 1e-4);
                assert!((out[[0, 2, y, x]] - (r - 3.0) / 0.5).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn stretch_downscale_averages_known_pixels() {
        // 4x2 -> 2x1: each output pixel averages a 2x2 block with weights
        // (1/8, 3/8, 3/8, 1/8) horizontally over 4 columns ... with only 4
        // columns the taps are renormalised. Use a constant-per-block image
        // where the answer is exact: left half 100, right half 200.
        let img = image(4, 2, |x, _, _| if x < 2 { 100 } else { 200 });
        let mut p = Preprocessor::new(cfg(2, 1, ResizeMode::Stretch, ColorOrder::Rgb));
        let mut out = p.make_buffer();
        p.run(&img, 4, 2, &mut out).unwrap();
        // Output 0: centre 1.0, pixels 0,1,2 at weights 3/8,3/8,1/8 (pixel -1 cut) -> renormalised over 7/8.
        let want0 = (100.0 * 0.375 + 100.0 * 0.375 + 200.0 * 0.125) / 0.875;
        let want1 = (100.0 * 0.125 + 200.0 * 0.375 + 200.0 * 0.375) / 0.875;
        for c in 0..3 {
            assert!(
                (out[[0, c, 0, 0]] - want0).abs() < 1e-3,
                "{}",
                out[[0, c, 0, 0]]
            );
            assert!((out[[0, c, 0, 1]] - want1).abs() < 1e-3);
        }
        // 2-tap bilinear samples at x = 0.5 and 2.5 -> exactly 100 and 200.
        let mut c = cfg(2, 1, ResizeMode::Stretch, ColorOrder::Rgb);
        c.filter = ResizeFilter::Bilinear;
        let mut p = Preprocessor::new(c);
        p.run(&img, 4, 2, &mut out).unwrap();
        assert!((out[[0, 0, 0, 0]] - 100.0).abs() < 1e-3);
        assert!((out[[0, 0, 0, 1]] - 200.0).abs() < 1e-3);
    }

    #[test]
    fn upscale_interpolates_linearly() {
        // 2x1 -> 4x1: outputs at source x = 0.25 -> clamp 0, 0.75, 1.25, 1.75.
        let img = image(2, 1, |x, _, _| if x == 0 { 0 } else { 200 });
        let mut p = Preprocessor::new(cfg(4, 1, ResizeMode::Stretch, ColorOrder::Rgb));
        let mut out = p.make_buffer();
        p.run(&img, 2, 1, &mut out).unwrap();
        let got: Vec<f32> = (0..4).map(|x| out[[0, 0, 0, x]]).collect();
        let want = [0.0, 50.0, 150.0, 200.0];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-3, "{got:?}");
        }
    }

    #[test]
    fn letterbox_pads_and_places_content() {
        // 8x4 into 8x8: gain 1, content 8x4 at y 2..6, pad 114 elsewhere.
        let img = image(8, 4, |x, y, c| (x + 10 * y + 100 * c) as u8);
        let mut c = cfg(8, 8, ResizeMode::Letterbox, ColorOrder::Rgb);
        c.std = [255.0; 3];
        let mut p = Preprocessor::new(c);
        let mut out = p.make_buffer();
        out.fill(-7.0); // stale values must be overwritten
        let t = p.run(&img, 8, 4, &mut out).unwrap();
        assert_eq!(
            (t.scale_x, t.scale_y, t.pad_x, t.pad_y),
            (1.0, 1.0, 0.0, 2.0)
        );
        let pad = 114.0 / 255.0;
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    let v = out[[0, c, y, x]];
                    if (2..6).contains(&y) {
                        let want = (x + 10 * (y - 2) + 100 * c) as f32 / 255.0;
                        assert!((v - want).abs() < 1e-5, "c{c} y{y} x{x}: {v} vs {want}");
                    } else {
                        assert!((v - pad).abs() < 1e-6);
                    }
                }
            }
        }
        // Portrait: 4x8 into 8x8 -> content 4 wide at x 2..6.
        let img = image(4, 8, |_, _, _| 0);
        let t = p.run(&img, 4, 8, &mut out).unwrap();
        assert_eq!((t.pad_x, t.pad_y), (2.0, 0.0));
        assert!((out[[0, 0, 3, 1]] - pad).abs() < 1e-6);
        assert!(out[[0, 0, 3, 2]].abs() < 1e-6);
        assert!((out[[0, 0, 3, 6]] - pad).abs() < 1e-6);
    }

    #[test]
    fn letterbox_geometry_matches_expectations() {
        assert_eq!(letterbox_geometry(1920, 1080, 640, 640), (0, 140, 640, 360));
        assert_eq!(letterbox_geometry(1080, 1920, 640, 640), (140, 0, 360, 640));
        assert_eq!(letterbox_geometry(640, 640, 640, 640), (0, 0, 640, 640));
        assert_eq!(letterbox_geometry(768, 576, 416, 416), (0, 52, 416, 312));
    }

    /// The AVX2 paths (taken on this CPU by `run`) and the portable paths
    /// must agree, so a machine without AVX2 gets the same tensor.
    #[test]
    fn simd_and_portable_paths_agree() {
        let (sw, dw) = (97usize, 23usize);
        let src: Vec<u8> = (0..sw * 3 * 5).map(|i| (i * 37 % 251) as u8).collect();
        for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
            let x = compute_taps(sw, dw, filter);
            let y = compute_taps(5, 2, filter);
            let mut row_a = vec![0.0f32; sw * 3 + 1];
            let mut row_b = row_a.clone();
            vertical_pass(&src, sw * 3, y.start[1], &y.w[y.k..2 * y.k], &mut row_a);
            vertical_pass_generic(&src, sw * 3, y.start[1], &y.w[y.k..2 * y.k], &mut row_b);
            for (a, b) in row_a.iter().zip(&row_b) {
                assert!((a - b).abs() < 1e-3);
            }
            let taps = HTaps {
                starts: &x.start,
                w: &x.w,
                w4: &x.w4,
                wpad: &x.wpad,
                max_start: x.max_start,
                k: x.k,
            };
            // BGR model: model channel 0 (blue) has scale 0.5 / offset 1.
            let norm = Norm::new([2, 1, 0], [0.5, 1.0, 2.0], [1.0, 0.0, -1.0]);
            let mut portable = vec![vec![0.0f32; dw]; 3];
            let [p0, p1, p2] = &mut portable[..] else {
                unreachable!()
            };
            horizontal_pass(&row_a, &taps, &norm, p0, p1, p2);
            // The portable result against a direct evaluation of the formula.
            for xo in 0..dw {
                let ws = &x.w[xo * x.k..(xo + 1) * x.k];
                let blue: f32 = ws
                    .iter()
                    .enumerate()
                    .map(|(t, w)| w * row_a[(x.start[xo] + t) * 3 + 2])
                    .sum();
                // Planes are in source order: blue is the third.
                assert!((portable[2][xo] - (blue * 0.5 + 1.0)).abs() < 1e-3);
            }
            #[cfg(target_arch = "x86_64")]
            if SimdLevel::detect() >= SimdLevel::Avx2 {
                let mut simd = vec![vec![0.0f32; dw]; 3];
                let [s0, s1, s2] = &mut simd[..] else {
                    unreachable!()
                };
                // SAFETY: checked just above.
                unsafe { horizontal_pass_avx2(&row_a, &taps, &norm, s0, s1, s2) };
                for (a, b) in portable.iter().flatten().zip(simd.iter().flatten()) {
                    assert!((a - b).abs() < 1e-3, "{a} vs {b}");
                }
            }
        }
    }

    /// Deterministic pseudo-random bytes (64-bit LCG, high bits).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn q14_weights_sum_to_one_and_keep_dyadic_weights() {
        for (src, dst) in [
            (1080, 416),
            (1920, 640),
            (5, 2),
            (8, 4),
            (3, 7),
            (97, 23),
            (4, 4),
        ] {
            for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
                let t = compute_taps(src, dst, filter);
                let q = q14_pairs(&t);
                let np = t.k.div_ceil(2);
                assert_eq!(q.len(), dst * np);
                for (i, pairs) in q.chunks_exact(np).enumerate() {
                    let ws: Vec<i32> = pairs
                        .iter()
                        .flat_map(|&p| {
                            let (a, b) = unpack_pair(p);
                            [a, b]
                        })
                        .collect();
                    assert_eq!(ws.iter().sum::<i32>(), 1 << 14, "{src}->{dst} out {i}");
                    assert!(ws.iter().all(|&w| (0..=1 << 14).contains(&w)));
                    if t.k % 2 == 1 {
                        assert_eq!(ws[t.k], 0, "odd tap pairs with a zero weight");
                    }
                    for (j, &w) in t.w[i * t.k..(i + 1) * t.k].iter().enumerate() {
                        let err = (f64::from(ws[j]) / 16384.0 - f64::from(w)).abs();
                        assert!(err <= t.k as f64 / 16384.0, "{src}->{dst} out {i} tap {j}");
                    }
                }
            }
        }
        // 2:1 weights (1/2, 1/2) and identity (1) are exact in Q14.
        let q = q14_pairs(&compute_taps(2, 1, ResizeFilter::Antialias));
        assert_eq!(unpack_pair(q[0]), (8192, 8192));
        let q = q14_pairs(&compute_taps(3, 3, ResizeFilter::Antialias));
        assert!(q.iter().all(|&p| unpack_pair(p) == (16384, 0)));
    }

    /// The AVX2 fixed-point vertical pass and the portable one are the same
    /// integer arithmetic, so the rows must be bit-identical; both stay
    /// within the Q14 rounding bound of the float reference.
    #[test]
    fn q14_vertical_pass_is_portable_and_close_to_float() {
        for (sw, sh, dh) in [
            (97usize, 13usize, 5usize),
            (11, 9, 4),
            (64, 30, 7),
            (43, 6, 11),
            // 1920 * 3 is a whole number of 64-column blocks; 150 * 3 is not.
            (1920, 40, 15),
            (150, 21, 8),
        ] {
            let stride = sw * 3;
            let src = noise(stride * sh, (sw * sh) as u64);
            for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
                let t = compute_taps(sh, dh, filter);
                let q = q14_pairs(&t);
                let np = t.k.div_ceil(2);
                let bound = t.k as f32 * 255.0 / 16384.0 + 1e-3;
                for i in 0..dh {
                    let pairs = &q[i * np..(i + 1) * np];
                    let mut fast = vec![0.0f32; stride + 1];
                    let mut portable = fast.clone();
                    let mut float = fast.clone();
                    vertical_q14_portable(&src, stride, t.start[i], t.k, pairs, &mut portable, 0);
                    let mut got = vec![0.0f32; stride + 1];
                    vertical_pass_q14(
                        SimdLevel::Avx2,
                        &src,
                        stride,
                        t.start[i],
                        t.k,
                        pairs,
                        &mut got,
                    );
                    assert_eq!(got, portable, "AVX2 {sw}x{sh}->{dh} {filter:?} row {i}");
                    #[cfg(target_arch = "x86_64")]
                    if SimdLevel::detect() == SimdLevel::Avx512 {
                        let mut rgbx = vec![f32::NAN; sw * 4 + ROW_SLACK];
                        // SAFETY: AVX-512 F/BW checked just above.
                        unsafe {
                            vertical_q14_avx512_rgbx(
                                &src, stride, t.start[i], t.k, pairs, &mut rgbx,
                            );
                        };
                        // The AVX-512 row holds the Q14 sums themselves:
                        // 2^14 times the portable row, exactly (both are
                        // integers below 2^24, or those over 2^14).
                        for (px, (x, want)) in rgbx
                            .chunks_exact(4)
                            .zip(portable.chunks_exact(3))
                            .enumerate()
                        {
                            let want = want.iter().map(|v| v * 16384.0).collect::<Vec<_>>();
                            assert_eq!(
                                &x[..3],
                                &want[..],
                                "AVX-512 {sw}x{sh}->{dh} {filter:?} row {i} px {px}"
                            );
                            assert_eq!(x[3], want[2], "X repeats B");
                        }
                    }
                    vertical_pass_q14(
                        SimdLevel::detect(),
                        &src,
                        stride,
                        t.start[i],
                        t.k,
                        pairs,
                        &mut fast,
                    );
                    vertical_pass_generic(
                        &src,
                        stride,
                        t.start[i],
                        &t.w[i * t.k..(i + 1) * t.k],
                        &mut float,
                    );
                    assert_eq!(fast, portable, "{sw}x{sh}->{dh} {filter:?} row {i}");
                    for (a, b) in fast.iter().zip(&float) {
                        assert!((a - b).abs() <= bound, "{a} vs float {b} (bound {bound})");
                    }
                }
            }
        }
    }

    /// The slot-scratch horizontal pass + vectorised plane writer against
    /// the portable per-pixel pass, on widths that are not multiples of 8.
    #[test]
    fn slot_scratch_horizontal_pass_matches_portable() {
        #[cfg(target_arch = "x86_64")]
        if SimdLevel::detect() >= SimdLevel::Avx2 {
            // (300, 10): 61 taps, beyond the unrolled group counts.
            for (sw, dw) in [
                (97usize, 23usize),
                (1920, 416),
                (1920, 640),
                (50, 37),
                (7, 13),
                (40, 8),
                (300, 10),
            ] {
                let mut row: Vec<f32> = noise(sw * 3 + 1, sw as u64)
                    .iter()
                    .map(|&v| f32::from(v) * 0.9)
                    .collect();
                row.resize(sw * 3 + ROW_SLACK, 0.0);
                for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
                    let x = compute_taps(sw, dw, filter);
                    let taps = HTaps {
                        starts: &x.start,
                        w: &x.w,
                        w4: &x.w4,
                        wpad: &x.wpad,
                        max_start: x.max_start,
                        k: x.k,
                    };
                    let norm = Norm::new([2, 1, 0], [0.5, 1.0, 2.0], [1.0, 0.0, -1.0]);
                    let mut want = vec![vec![0.0f32; dw]; 3];
                    let [p0, p1, p2] = &mut want[..] else {
                        unreachable!()
                    };
                    horizontal_pass(&row, &taps, &norm, p0, p1, p2);
                    for level in [SimdLevel::Avx2, SimdLevel::Avx512] {
                        if level > SimdLevel::detect() {
                            continue;
                        }
                        let mut got = vec![vec![0.0f32; dw]; 3];
                        let [g0, g1, g2] = &mut got[..] else {
                            unreachable!()
                        };
                        let mut px = vec![0.0f32; dw.next_multiple_of(8) * 4];
                        // SAFETY: the level is supported (checked just above).
                        unsafe {
                            if level == SimdLevel::Avx512 {
                                // The AVX-512 pass reads an RGBX row.
                                let mut rgbx = vec![0.0f32; sw * 4 + ROW_SLACK];
                                for (i, p) in row[..sw * 3].chunks_exact(3).enumerate() {
                                    rgbx[4 * i..4 * i + 3].copy_from_slice(p);
                                    rgbx[4 * i + 3] = p[2];
                                }
                                px.resize(dw.next_multiple_of(16) * 4, 0.0);
                                horizontal_rgbx_avx512(&rgbx, &taps, &mut px);
                                write_planes_avx512(&px, &norm, g0, g1, g2);
                                // Two rows at once: the same sums, bit for bit.
                                let other: Vec<f32> = rgbx.iter().map(|v| 255.0 - v).collect();
                                let mut single = px.clone();
                                horizontal_rgbx_avx512(&other, &taps, &mut single);
                                let (mut pa, mut pb) =
                                    (vec![f32::NAN; px.len()], vec![f32::NAN; px.len()]);
                                horizontal2_rgbx_avx512([&rgbx, &other], &taps, [&mut pa, &mut pb]);
                                assert_eq!(
                                    &pa[..dw * 4],
                                    &px[..dw * 4],
                                    "{sw}->{dw} {filter:?}: pair, row a"
                                );
                                assert_eq!(
                                    &pb[..dw * 4],
                                    &single[..dw * 4],
                                    "{sw}->{dw} {filter:?}: pair, row b"
                                );
                            } else {
                                horizontal_to_slots_avx2(&row, &taps, &mut px);
                                write_planes_avx2(&px, &norm, g0, g1, g2);
                            }
                        }
                        for (c, (a, b)) in want.iter().zip(&got).enumerate() {
                            for (xo, (u, v)) in a.iter().zip(b).enumerate() {
                                assert!(
                                    (u - v).abs() < 1e-3,
                                    "{level:?} {sw}->{dw} {filter:?} c{c} x{xo}: {u} vs {v}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The AVX-512 plane writer streams (non-temporal stores) when the
    /// three rows share their alignment: the same values at every
    /// alignment and length, streamed or not, including the scalar head
    /// that reaches the 64-byte boundary.
    #[test]
    fn plane_writer_is_alignment_independent() {
        #[cfg(target_arch = "x86_64")]
        if SimdLevel::detect() == SimdLevel::Avx512 {
            // NanoDet's normalisation (BGR model) and fractional levels, so
            // a separate multiply and add would round differently from FMA.
            let (scale, offset) = (
                [1.0 / 57.375, 1.0 / 57.12, 1.0 / 58.395],
                [-1.8, -2.04, -2.12],
            );
            let norm = Norm::new([2, 1, 0], scale, offset);
            for n in [1usize, 15, 16, 17, 40, 416] {
                let px: Vec<f32> = noise(px_len(n), n as u64)
                    .iter()
                    .map(|&v| f32::from(v) * 0.973 + 0.0137)
                    .collect();
                let want: Vec<[f32; 3]> = (0..n)
                    .map(|x| {
                        let p = &px[4 * x..4 * x + 3];
                        // Source order: R feeds model channel 2, B channel 0.
                        [0, 1, 2].map(|c| p[c] * scale[2 - c] + offset[2 - c])
                    })
                    .collect();
                let mut first: Option<Vec<[f32; 3]>> = None;
                for shift in [0usize, 1, 3, 4, 13] {
                    // Three planes of one buffer; `shift` floats past a
                    // cache line, and plane 2 one float further when
                    // `shift` is odd (alignments differ: plain stores).
                    let stride = (n + 64).next_multiple_of(16);
                    let mut buf = vec![f32::NAN; 3 * stride + 32];
                    let off = buf.as_ptr().align_offset(64);
                    let skew = shift % 2;
                    let at = [
                        off + shift,
                        off + stride + shift,
                        off + 2 * stride + shift + skew,
                    ];
                    let (a, rest) = buf.split_at_mut(at[1]);
                    let (b, c) = rest.split_at_mut(at[2] - at[1]);
                    let (o0, o1, o2) = (&mut a[at[0]..at[0] + n], &mut b[..n], &mut c[..n]);
                    // SAFETY: AVX-512 checked just above.
                    unsafe { write_planes_avx512(&px, &norm, o0, o1, o2) };
                    let got: Vec<[f32; 3]> = (0..n).map(|x| [o0[x], o1[x], o2[x]]).collect();
                    for (x, (g, w)) in got.iter().zip(&want).enumerate() {
                        for (a, b) in g.iter().zip(w) {
                            assert!(
                                (a - b).abs() <= 1e-4,
                                "n {n} shift {shift} x {x}: {g:?} vs {w:?}"
                            );
                        }
                    }
                    // Bit for bit the same at every alignment: the tensor
                    // must not depend on where its buffer lies.
                    match &first {
                        None => first = Some(got),
                        Some(f) => assert_eq!(f, &got, "n {n} shift {shift}"),
                    }
                }
            }
        }
    }

    /// The whole fast path (`run`) against a direct f64 evaluation of the
    /// separable filter with the exact weights, on random images of odd
    /// sizes, both modes, both filters and both channel orders. The bound is
    /// the Q14 rounding of the vertical weights: at most `k_y * 255 / 2^14`
    /// grey levels (0.09 for 1080 -> 416), i.e. far below 1/255 after the
    /// usual normalisation.
    #[test]
    fn fast_path_matches_float_reference_on_random_images() {
        for (sw, sh, dw, dh) in [
            (97usize, 61usize, 23usize, 29usize),
            (33, 17, 40, 40),
            (250, 141, 64, 48),
            (19, 23, 7, 31),
            // A row of 3 * 160 = 480 bytes: 7 whole 64-column blocks + tail.
            (160, 90, 41, 37),
        ] {
            let img = noise(sw * sh * 3, (sw * 31 + sh) as u64);
            for resize in [ResizeMode::Stretch, ResizeMode::Letterbox] {
                for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
                    for color in [ColorOrder::Rgb, ColorOrder::Bgr] {
                        let mut c = cfg(dw as u32, dh as u32, resize, color);
                        c.filter = filter;
                        c.mean = [10.0, 20.0, 30.0];
                        c.std = [2.0, 1.0, 0.5];
                        for level in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512] {
                            let mut p = Preprocessor::new(c.clone()).with_simd(level);
                            let mut out = p.make_buffer();
                            p.run(&img, sw as u32, sh as u32, &mut out).unwrap();
                            let (x0, y0, nw, nh) = match resize {
                                ResizeMode::Stretch => (0, 0, dw, dh),
                                ResizeMode::Letterbox => {
                                    let g = letterbox_geometry(
                                        sw as u32, sh as u32, dw as u32, dh as u32,
                                    );
                                    (g.0 as usize, g.1 as usize, g.2 as usize, g.3 as usize)
                                }
                            };
                            let (tx, ty) =
                                (compute_taps(sw, nw, filter), compute_taps(sh, nh, filter));
                            let bound = ty.k as f64 * 255.0 / 16384.0 + 1e-3;
                            let src_ch = match color {
                                ColorOrder::Rgb => [0usize, 1, 2],
                                ColorOrder::Bgr => [2, 1, 0],
                            };
                            let mut worst = 0.0f64;
                            for m in 0..3 {
                                for yo in 0..dh {
                                    for xo in 0..dw {
                                        let inside = (y0..y0 + nh).contains(&yo)
                                            && (x0..x0 + nw).contains(&xo);
                                        let level = if inside {
                                            let (i, j) = (yo - y0, xo - x0);
                                            let mut acc = 0.0f64;
                                            for a in 0..ty.k {
                                                for b in 0..tx.k {
                                                    let (sy, sx) =
                                                        (ty.start[i] + a, tx.start[j] + b);
                                                    acc += f64::from(ty.w[i * ty.k + a])
                                                        * f64::from(tx.w[j * tx.k + b])
                                                        * f64::from(
                                                            img[(sy * sw + sx) * 3 + src_ch[m]],
                                                        );
                                                }
                                            }
                                            acc
                                        } else {
                                            114.0
                                        };
                                        let got = f64::from(out[[0, m, yo, xo]])
                                            * f64::from(c.std[m])
                                            + f64::from(c.mean[m]);
                                        worst = worst.max((got - level).abs());
                                    }
                                }
                            }
                            assert!(
                                worst <= bound,
                                "{level:?} {sw}x{sh}->{dw}x{dh} {resize:?} {filter:?} {color:?}: off by {worst} levels (bound {bound})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Grey levels of a direct f64 evaluation of the separable filter with
    /// the exact weights (no Q14, no SIMD): `[source channel][y][x]` of a
    /// `dw` x `dh` input whose content lies at `inner` (x0, y0, w, h) and
    /// whose border is `pad`.
    fn direct_levels(
        img: &[u8],
        (sw, sh): (usize, usize),
        (dw, dh): (usize, usize),
        (x0, y0, nw, nh): (usize, usize, usize, usize),
        filter: ResizeFilter,
        pad: f64,
    ) -> Vec<f64> {
        let (tx, ty) = (compute_taps(sw, nw, filter), compute_taps(sh, nh, filter));
        let mut out = vec![pad; 3 * dw * dh];
        let mut col = vec![0.0f64; sw * 3];
        for i in 0..nh {
            col.fill(0.0);
            for a in 0..ty.k {
                let w = f64::from(ty.w[i * ty.k + a]);
                let row = &img[(ty.start[i] + a) * sw * 3..][..sw * 3];
                for (acc, &v) in col.iter_mut().zip(row) {
                    *acc += w * f64::from(v);
                }
            }
            for j in 0..nw {
                let ws = &tx.w[j * tx.k..(j + 1) * tx.k];
                for ch in 0..3 {
                    out[(ch * dh + y0 + i) * dw + x0 + j] = ws
                        .iter()
                        .enumerate()
                        .map(|(b, &w)| f64::from(w) * col[(tx.start[j] + b) * 3 + ch])
                        .sum();
                }
            }
        }
        out
    }

    /// The largest distance in grey levels between a normalised tensor and
    /// [`direct_levels`] (`NaN` if any element was never written).
    fn worst_level_error(out: &Array4<f32>, c: &PreprocessConfig, levels: &[f64]) -> f64 {
        let (dw, dh) = (c.dst_w as usize, c.dst_h as usize);
        let src_ch = match c.color {
            ColorOrder::Rgb => [0usize, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        let mut worst = 0.0f64;
        for (m, plane) in out.outer_iter().next().unwrap().outer_iter().enumerate() {
            let want = &levels[src_ch[m] * dw * dh..][..dw * dh];
            for (v, l) in plane.iter().zip(want) {
                let got = f64::from(*v) * f64::from(c.std[m]) + f64::from(c.mean[m]);
                let err = (got - l).abs();
                if err.is_nan() {
                    return f64::NAN;
                }
                worst = worst.max(err);
            }
        }
        worst
    }

    /// Non-square input sizes, as the pixel budgets give them
    /// (`geometry::aspect_size`) or as the squashed declared size gives
    /// them: `(frame w, h, input w, h, budget factor of 416x416 if any)`.
    const NON_SQUARE: &[(usize, usize, usize, usize, Option<u32>)] = &[
        // 16:9 and 4:3 at the default budget.
        (1280, 720, 544, 320, Some(1)),
        (768, 576, 480, 352, Some(1)),
        // 1080p at "detailed" and "maximum".
        (1920, 1080, 800, 448, Some(2)),
        (1920, 1080, 1248, 704, Some(5)),
        // 640x360: a mild downscale at the default budget (0.85 x 0.89),
        // an upscale on both axes at "detailed".
        (640, 360, 544, 320, Some(1)),
        (640, 360, 800, 448, Some(2)),
        // CIF at the default budget: upscale on both axes.
        (352, 288, 448, 384, Some(1)),
        // Squashed into 416x416: down in x and up in y, then the reverse.
        (640, 360, 416, 416, None),
        (360, 640, 416, 416, None),
        // Portrait.
        (720, 1280, 320, 544, Some(1)),
    ];

    /// Every kernel build (`SimdLevel::detect()` and each level below it,
    /// via `with_simd`) against the portable build and against a direct
    /// f64 evaluation, on the non-square inputs the aspect-kept budgets
    /// produce: both filters, both channel orders, stretch (what the
    /// budgets run) and letterbox, with NanoDet's normalisation. Same
    /// tolerances as the square tests: 1e-3 between builds (the vertical
    /// pass is the same integer arithmetic; only the horizontal sums' order
    /// differs), and the Q14 bound `k_y * 255 / 2^14` grey levels against
    /// the float evaluation.
    #[test]
    fn simd_levels_agree_on_non_square_outputs() {
        use crate::detect::geometry::{DEFAULT_INPUT_PIXELS, aspect_size};
        let levels: Vec<SimdLevel> = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|&l| l <= SimdLevel::detect())
            .collect();
        for &(sw, sh, dw, dh, factor) in NON_SQUARE {
            if let Some(f) = factor {
                let px = DEFAULT_INPUT_PIXELS * f;
                assert_eq!(
                    aspect_size(sw as u32, sh as u32, px, 32),
                    (dw as u32, dh as u32),
                    "{sw}x{sh} at {f}x 416x416"
                );
            }
            let img = noise(sw * sh * 3, (sw * 7 + sh * 3 + dw) as u64);
            for resize in [ResizeMode::Stretch, ResizeMode::Letterbox] {
                let inner = match resize {
                    ResizeMode::Stretch => (0, 0, dw, dh),
                    ResizeMode::Letterbox => {
                        let g = letterbox_geometry(sw as u32, sh as u32, dw as u32, dh as u32);
                        (g.0 as usize, g.1 as usize, g.2 as usize, g.3 as usize)
                    }
                };
                for filter in [ResizeFilter::Antialias, ResizeFilter::Bilinear] {
                    let want = direct_levels(&img, (sw, sh), (dw, dh), inner, filter, 114.0);
                    let bound = compute_taps(sh, inner.3, filter).k as f64 * 255.0 / 16384.0 + 1e-3;
                    for color in [ColorOrder::Rgb, ColorOrder::Bgr] {
                        let mut c = cfg(dw as u32, dh as u32, resize, color);
                        c.filter = filter;
                        c.mean = [103.53, 116.28, 123.675];
                        c.std = [57.375, 57.12, 58.395];
                        let what = format!("{sw}x{sh}->{dw}x{dh} {resize:?} {filter:?} {color:?}");
                        let frame = (&img[..], sw as u32, sh as u32);
                        check_levels_agree(frame, &c, &levels, &want, bound, &what);
                    }
                }
            }
        }
    }

    /// Runs `img` through each of `levels` (the first is the portable
    /// build) into a NaN-filled tensor; each must be within `bound` grey
    /// levels of `want` and, past the first, within 1e-3 of the portable
    /// tensor.
    fn check_levels_agree(
        (img, w, h): (&[u8], u32, u32),
        c: &PreprocessConfig,
        levels: &[SimdLevel],
        want: &[f64],
        bound: f64,
        what: &str,
    ) {
        let mut portable: Option<Array4<f32>> = None;
        for &level in levels {
            let mut p = Preprocessor::new(c.clone()).with_simd(level);
            assert_eq!(p.simd(), level, "{what}: the build asked for runs");
            let mut out = p.make_buffer();
            out.fill(f32::NAN);
            p.run(img, w, h, &mut out).unwrap();
            let worst = worst_level_error(&out, c, want);
            assert!(
                worst <= bound,
                "{level:?} {what}: off by {worst} levels from the direct evaluation (bound {bound})"
            );
            match &portable {
                None => portable = Some(out),
                Some(base) => {
                    let diff = base
                        .iter()
                        .zip(&out)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    assert!(
                        diff < 1e-3,
                        "{level:?} {what}: {diff} from the portable build"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_frames_and_buffers_are_rejected() {
        let mut p = Preprocessor::new(cfg(4, 4, ResizeMode::Stretch, ColorOrder::Rgb));
        let mut out = p.make_buffer();
        assert!(matches!(
            p.run(&[0u8; 11], 2, 2, &mut out),
            Err(DetectError::BadFrame { .. })
        ));
        assert!(matches!(
            p.run(&[], 0, 0, &mut out),
            Err(DetectError::BadFrame { .. })
        ));
        let mut wrong = Array4::<f32>::zeros((1, 3, 4, 5));
        assert!(matches!(
            p.run(&[0u8; 12], 2, 2, &mut wrong),
            Err(DetectError::BadTensor { .. })
        ));
    }

    #[test]
    fn plan_is_rebuilt_when_frame_size_changes() {
        let mut p = Preprocessor::new(cfg(4, 4, ResizeMode::Stretch, ColorOrder::Rgb));
        let mut out = p.make_buffer();
        let a = image(8, 8, |_, _, _| 10);
        let b = image(2, 2, |_, _, _| 20);
        let ta = p.run(&a, 8, 8, &mut out).unwrap();
        assert!((out[[0, 1, 2, 2]] - 10.0).abs() < 1e-4);
        let tb = p.run(&b, 2, 2, &mut out).unwrap();
        assert!((out[[0, 1, 2, 2]] - 20.0).abs() < 1e-4);
        assert_eq!((ta.scale_x, tb.scale_x), (0.5, 2.0));
    }
}
