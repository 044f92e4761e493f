//! Event snapshots: one small JPEG per event showing what was detected.
//!
//! A snapshot is the frame (or a crop around the object) with the object's
//! box drawn on it, scaled down and JPEG-encoded. It travels over MQTT to a
//! central site, often over a metered uplink, so the defaults aim for "a
//! person can tell what happened" rather than forensic quality: at most 360
//! lines at quality 70. Measured on 768×576 street frames (→ 480×360): 28 KB
//! for the vtest CCTV frame, 40 KB for the busy `dog.jpg`; a crop around one
//! person is 8–9 KB. The `image` encoder writes baseline 4:4:4 with the
//! standard Huffman tables, so it is larger than libjpeg-turbo (GStreamer
//! `jpegenc`: 29 KB for the same `dog.jpg` snapshot); quality 50 brings the
//! vtest frame to ~21 KB.
//!
//! Everything here is plain CPU work on a packed RGB24 buffer (the layout of
//! [`crate::frame::Frame::data`]). The module never touches MQTT or
//! GStreamer; callers run [`render`] off the async runtime because it takes a
//! few milliseconds.
//!
//! Order of work, and why:
//! 1. crop (a view, no copy) — only the pixels that end up in the JPEG are read;
//! 2. downscale with an own integer area (box) average — it does not alias
//!    when shrinking and needs no f32 pass over the frame, unlike the `image`
//!    crate's generic resampler;
//! 3. draw the box *after* scaling, in output pixels — the outline then has
//!    exactly the intended width and colour instead of being blurred or thinned
//!    away by the resampler;
//! 4. encode with `image`'s JPEG encoder.

use crate::frame::BBox;

/// Outline colour of the object's box: a saturated amber, bright enough to
/// stand out on dark asphalt and saturated enough to stand out on grey
/// concrete and white vehicles. Green/red are avoided: grass and tail lights.
pub const BOX_COLOR: [u8; 3] = [255, 176, 0];

/// Colour of the thin halo drawn around the outline (and of the label text),
/// so the box stays visible on bright, amber-ish backgrounds too.
pub const HALO_COLOR: [u8; 3] = [16, 16, 16];

/// How a snapshot is framed, scaled and compressed.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Largest output height in pixels (aspect ratio is kept; never upscaled).
    pub max_height: u32,
    /// JPEG quality, 1–100.
    pub quality: u8,
    /// Crop around the object's box instead of sending the whole frame.
    pub crop: bool,
    /// Margin added on every side of the box when cropping, as a fraction of
    /// the box's own width (left/right) and height (top/bottom); 0.5 = half
    /// the box size on each side, so the object keeps some context.
    pub crop_margin: f32,
    /// Draw the box outline (and the label tab) onto the snapshot.
    pub draw_box: bool,
    /// Privacy masks: polygons in normalised 0..1 frame coordinates, filled
    /// black in the full-resolution frame before anything is cropped, scaled
    /// or encoded, so no masked pixel can leave the box.
    pub masks: Vec<Polygon>,
}

/// A polygon in normalised 0..1 frame coordinates (x, y).
pub type Polygon = Vec<[f32; 2]>;

impl Default for SnapshotOptions {
    /// Defaults keep central bandwidth low: ~25–40 KB for a whole 768×576
    /// street frame, ~10 KB with `crop` (see the module docs).
    fn default() -> Self {
        Self {
            max_height: 360,
            quality: 70,
            crop: false,
            crop_margin: 0.5,
            draw_box: true,
            masks: Vec::new(),
        }
    }
}

impl SnapshotOptions {
    /// Checks the options as [`render`] does first; does no I/O.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        validate_options(self)
    }
}

/// An encoded snapshot and its pixel size.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Why a snapshot could not be made. All of these are caller errors except
/// [`SnapshotError::Encode`].
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("frame size {width}x{height} is empty or too large")]
    FrameSize { width: u32, height: u32 },
    #[error("frame buffer has {actual} bytes, expected {expected} for {width}x{height} RGB24")]
    BufferSize {
        expected: usize,
        actual: usize,
        width: u32,
        height: u32,
    },
    #[error("box ({x1}, {y1})-({x2}, {y2}) does not overlap the {width}x{height} frame")]
    BoxOutsideFrame {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: u32,
        height: u32,
    },
    #[error("invalid snapshot option: {0}")]
    Options(&'static str),
    #[error("JPEG encoding failed")]
    Encode(#[source] jpeg_encoder::EncodingError),
}

/// Renders a snapshot of `bbox` in the packed RGB24 frame `rgb`
/// (`width * height * 3` bytes, no row padding).
///
/// `label` (e.g. `"person 0.82"`) is written in a small tab on the box's top
/// edge when `opts.draw_box` is set; characters the built-in font lacks are
/// shown as blanks. The box may extend past the frame (it is clipped), but it
/// must overlap it: a box wholly outside the frame is an upstream bug and is
/// reported rather than silently producing a snapshot of nothing.
pub fn render(
    rgb: &[u8],
    width: u32,
    height: u32,
    bbox: BBox,
    label: &str,
    opts: &SnapshotOptions,
) -> Result<Snapshot, SnapshotError> {
    validate_options(opts)?;
    let expected = packed_len(width, height)
        .filter(|&n| n > 0 && width <= u16::MAX as u32 && height <= u16::MAX as u32)
        .ok_or(SnapshotError::FrameSize { width, height })?;
    if rgb.len() != expected {
        return Err(SnapshotError::BufferSize {
            expected,
            actual: rgb.len(),
            width,
            height,
        });
    }

    let outside = || SnapshotError::BoxOutsideFrame {
        x1: bbox.x1,
        y1: bbox.y1,
        x2: bbox.x2,
        y2: bbox.y2,
        width,
        height,
    };
    let coords = [bbox.x1, bbox.y1, bbox.x2, bbox.y2];
    if coords.iter().any(|c| !c.is_finite()) {
        return Err(outside());
    }
    let (fw, fh) = (width as f32, height as f32);
    let clipped = bbox.clamp(fw, fh);
    if clipped.width() <= 0.0 || clipped.height() <= 0.0 {
        return Err(outside());
    }

    let region = if opts.crop {
        crop_region(&clipped, opts.crop_margin, width, height)
    } else {
        Rect {
            x: 0,
            y: 0,
            w: width,
            h: height,
        }
    };

    let (out_w, out_h) = output_size(region.w, region.h, opts.max_height);
    let masked;
    let source = if opts.masks.is_empty() {
        rgb
    } else {
        let mut copy = rgb.to_vec();
        fill_polygons(&mut copy, width, height, &opts.masks);
        masked = copy;
        &masked[..]
    };
    let mut out = scale_region(source, width as usize, &region, out_w, out_h);

    if opts.draw_box {
        let sx = out_w as f32 / region.w as f32;
        let sy = out_h as f32 / region.h as f32;
        let to_out = |x: f32, y: f32| ((x - region.x as f32) * sx, (y - region.y as f32) * sy);
        let (x1, y1) = to_out(clipped.x1, clipped.y1);
        let (x2, y2) = to_out(clipped.x2, clipped.y2);
        let mut canvas = Canvas {
            data: &mut out,
            width: out_w as i32,
            height: out_h as i32,
        };
        // Even coordinates and an even thickness keep the outline on whole
        // 2×2 chroma blocks of the 4:2:0 JPEG, so its colour stays clean.
        let even_down = |v: f32| (v.floor() as i32) & !1;
        let even_up = |v: f32| ((v.ceil() as i32) + 1) & !1;
        let rect = OutRect {
            x1: even_down(x1),
            y1: even_down(y1),
            x2: even_up(x2).max(even_down(x1) + 2),
            y2: even_up(y2).max(even_down(y1) + 2),
        };
        let thickness = if out_h >= 240 { 4 } else { 2 };
        canvas.outline(rect, thickness);
        if !label.is_empty() {
            canvas.label_tab(rect, label);
        }
    }

    let jpeg = encode_jpeg(&out, out_w, out_h, opts.quality)?;
    Ok(Snapshot {
        jpeg,
        width: out_w,
        height: out_h,
    })
}

/// The whole frame at full size with every box (and its label) drawn, as a
/// JPEG: what `edge-node detect --out` writes.
pub fn annotate(
    rgb: &[u8],
    width: u32,
    height: u32,
    boxes: &[(BBox, String)],
    quality: u8,
) -> Result<Vec<u8>, SnapshotError> {
    let ov = Overlay {
        boxes: boxes.to_vec(),
        ..Overlay::default()
    };
    preview(rgb, width, height, &ov, quality)
}

/// Fill polygons (normalised coordinates) black in a packed RGB frame. A pixel
/// is filled when its centre lies inside (even-odd rule); scan line by scan
/// line, so the cost is the polygons' area, not the frame's.
pub fn fill_polygons(rgb: &mut [u8], width: u32, height: u32, polys: &[Polygon]) {
    let (w, h) = (width as usize, height as usize);
    if packed_len(width, height).is_none_or(|n| rgb.len() < n) {
        return;
    }
    let mut xs: Vec<f32> = Vec::new();
    for poly in polys {
        if poly.len() < 3 || poly.iter().flatten().any(|v| !v.is_finite()) {
            continue;
        }
        let pts: Vec<(f32, f32)> = poly
            .iter()
            .map(|p| (p[0] * width as f32, p[1] * height as f32))
            .collect();
        let (ymin, ymax) = pts
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            });
        if !ymin.is_finite() || !ymax.is_finite() {
            continue;
        }
        let y0 = (ymin - 0.5).ceil().max(0.0) as usize;
        let y1 = ((ymax - 0.5).floor().min(h as f32 - 1.0)).max(-1.0);
        if y1 < 0.0 {
            continue;
        }
        for y in y0..=(y1 as usize) {
            let yc = y as f32 + 0.5;
            xs.clear();
            for i in 0..pts.len() {
                let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                if (a.1 <= yc) != (b.1 <= yc) {
                    xs.push(a.0 + (yc - a.1) / (b.1 - a.1) * (b.0 - a.0));
                }
            }
            xs.sort_by(|a, b| a.total_cmp(b));
            for pair in xs.chunks_exact(2) {
                let x0 = (pair[0] - 0.5).ceil().max(0.0) as usize;
                let x1 = (pair[1] - 0.5).floor().min(w as f32 - 1.0);
                if x1 < 0.0 || (x1 as usize) < x0 {
                    continue;
                }
                let row = y * w * 3;
                rgb[row + x0 * 3..row + (x1 as usize + 1) * 3].fill(0);
            }
        }
    }
}

/// How far [`blur_regions`] grows each box on every side, as a fraction of
/// the box's width (left/right) and height (top/bottom): face detectors box
/// the face tightly, hair, ears and chin would otherwise stay sharp.
pub const BLUR_GROW: f32 = 0.15;
/// Smallest pixelation block of [`blur_regions`], in pixels.
pub const BLUR_MIN_BLOCK: u32 = 6;
/// [`blur_regions`] cuts the longer side of a grown box into at most this many
/// blocks: a 6×6 mosaic keeps a face's position, not whose it is.
pub const BLUR_BLOCKS_PER_SIDE: u32 = 6;

/// Irreversibly pixelates each box (pixels of this frame) in a packed RGB
/// frame: the box is grown by [`BLUR_GROW`] on every side, clipped to the
/// frame, every block of `max(BLUR_MIN_BLOCK, longer side / 6)` pixels is
/// replaced by its mean colour, so nothing finer than the block survives, and
/// the mosaic is then box-blurred (radius half a block, inside the grown box
/// only) so its block edges do not add sharp edges of their own.
/// Boxes with non-finite coordinates or wholly outside the frame are
/// ignored; pixels outside the grown boxes are untouched.
pub fn blur_regions(rgb: &mut [u8], width: u32, height: u32, boxes: &[BBox]) {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || packed_len(width, height).is_none_or(|n| rgb.len() < n) {
        return;
    }
    for b in boxes {
        if ![b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()) {
            continue;
        }
        let (bw, bh) = (b.x2 - b.x1, b.y2 - b.y1);
        if bw <= 0.0 || bh <= 0.0 {
            continue;
        }
        let grown = BBox::new(
            b.x1 - bw * BLUR_GROW,
            b.y1 - bh * BLUR_GROW,
            b.x2 + bw * BLUR_GROW,
            b.y2 + bh * BLUR_GROW,
        );
        // Every pixel the grown box touches, clipped to the frame.
        let x0 = grown.x1.floor().clamp(0.0, w as f32) as usize;
        let y0 = grown.y1.floor().clamp(0.0, h as f32) as usize;
        let x1 = grown.x2.ceil().clamp(0.0, w as f32) as usize;
        let y1 = grown.y2.ceil().clamp(0.0, h as f32) as usize;
        if x1 <= x0 || y1 <= y0 {
            continue;
        }
        let side = (x1 - x0).max(y1 - y0) as u32;
        let block = BLUR_MIN_BLOCK.max(side.div_ceil(BLUR_BLOCKS_PER_SIDE)) as usize;
        for by in (y0..y1).step_by(block) {
            let ey = (by + block).min(y1);
            for bx in (x0..x1).step_by(block) {
                let ex = (bx + block).min(x1);
                let mut sum = [0u64; 3];
                for y in by..ey {
                    for px in rgb[(y * w + bx) * 3..(y * w + ex) * 3].chunks_exact(3) {
                        sum[0] += px[0] as u64;
                        sum[1] += px[1] as u64;
                        sum[2] += px[2] as u64;
                    }
                }
                let n = ((ey - by) * (ex - bx)) as u64;
                let mean = sum.map(|s| ((s + n / 2) / n) as u8);
                for y in by..ey {
                    for px in rgb[(y * w + bx) * 3..(y * w + ex) * 3].chunks_exact_mut(3) {
                        px.copy_from_slice(&mean);
                    }
                }
            }
        }
        // Soften the mosaic's hard block edges (which would themselves be
        // sharp detail) into ramps between block colours.
        box_blur_region(rgb, w, (x0, y0, x1, y1), block / 2);
    }
}

/// Separable box blur of radius `r` over the rectangle `x0..x1` × `y0..y1`
/// of a packed RGB frame `w` pixels wide, reading only pixels inside the
/// rectangle (windows are clipped to it), so nothing outside leaks in or
/// changes.
fn box_blur_region(
    rgb: &mut [u8],
    w: usize,
    (x0, y0, x1, y1): (usize, usize, usize, usize),
    r: usize,
) {
    let (rw, rh) = (x1 - x0, y1 - y0);
    if r == 0 || rw == 0 || rh == 0 {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(rw * rh * 3);
    for y in y0..y1 {
        buf.extend_from_slice(&rgb[(y * w + x0) * 3..(y * w + x1) * 3]);
    }
    // One pass along a line of `n` pixels `step` apart (in pixels) from `start`.
    let mut line: Vec<[u8; 3]> = Vec::with_capacity(rw.max(rh));
    let mut pass = |buf: &mut [u8], start: usize, step: usize, n: usize| {
        line.clear();
        line.extend((0..n).map(|i| {
            let j = (start + i * step) * 3;
            [buf[j], buf[j + 1], buf[j + 2]]
        }));
        for i in 0..n {
            let (lo, hi) = (i.saturating_sub(r), (i + r + 1).min(n));
            let mut sum = [0u32; 3];
            for px in &line[lo..hi] {
                sum[0] += px[0] as u32;
                sum[1] += px[1] as u32;
                sum[2] += px[2] as u32;
            }
            let cnt = (hi - lo) as u32;
            let j = (start + i * step) * 3;
            for c in 0..3 {
                buf[j + c] = ((sum[c] + cnt / 2) / cnt) as u8;
            }
        }
    };
    for y in 0..rh {
        pass(&mut buf, y * rw, 1, rw);
    }
    for x in 0..rw {
        pass(&mut buf, x, rw, rh);
    }
    for (row, y) in buf.chunks_exact(rw * 3).zip(y0..y1) {
        rgb[(y * w + x0) * 3..(y * w + x1) * 3].copy_from_slice(row);
    }
}

/// Colour of zones in `preview`.
pub const ZONE_COLOR: [u8; 3] = [0, 200, 255];
/// Colour of ignore zones (outline + "ignored") in `preview`.
pub const IGNORE_COLOR: [u8; 3] = [255, 48, 48];
/// Colour of lines and their direction arrows in `preview`.
pub const LINE_COLOR: [u8; 3] = [255, 0, 200];

/// What `edge-node preview` draws over a frame so people can place rules by
/// looking: zones (outline + name), lines (with an arrow towards the side a
/// `forward` crossing goes to), ignore zones (red outline, labelled
/// "ignored"), privacy masks (filled black, as every image leaving the box
/// has them) and live detections.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    /// Name and polygon (normalised 0..1).
    pub zones: Vec<(String, Polygon)>,
    /// Name, A, B (normalised), and the name of the `forward` direction.
    pub lines: Vec<(String, [f32; 2], [f32; 2], String)>,
    pub masks: Vec<Polygon>,
    /// Ignore zones (normalised 0..1): detections standing there are dropped.
    pub ignore: Vec<Polygon>,
    /// Boxes in frame pixels with their labels.
    pub boxes: Vec<(BBox, String)>,
}

/// The frame with an [`Overlay`] drawn on it, full size, as a JPEG.
pub fn preview(
    rgb: &[u8],
    width: u32,
    height: u32,
    ov: &Overlay,
    quality: u8,
) -> Result<Vec<u8>, SnapshotError> {
    let expected = packed_len(width, height)
        .filter(|&n| n > 0 && width <= u16::MAX as u32 && height <= u16::MAX as u32)
        .ok_or(SnapshotError::FrameSize { width, height })?;
    if rgb.len() != expected {
        return Err(SnapshotError::BufferSize {
            expected,
            actual: rgb.len(),
            width,
            height,
        });
    }
    let mut out = rgb.to_vec();
    fill_polygons(&mut out, width, height, &ov.masks);
    let (fw, fh) = (width as f32, height as f32);
    let px = |p: [f32; 2]| (p[0] * fw, p[1] * fh);
    let mut canvas = Canvas {
        data: &mut out,
        width: width as i32,
        height: height as i32,
    };
    let tab = |x: f32, y: f32| OutRect {
        x1: x as i32,
        y1: y as i32,
        x2: (x as i32).saturating_add(1),
        y2: (y as i32).saturating_add(1),
    };
    for (name, poly) in &ov.zones {
        for i in 0..poly.len() {
            canvas.line(px(poly[i]), px(poly[(i + 1) % poly.len()]), 2, ZONE_COLOR);
        }
        if let Some(p) = poly.first() {
            let (x, y) = px(*p);
            canvas.label_tab(tab(x, y), &format!("zone {name}"));
        }
    }
    for poly in &ov.ignore {
        for i in 0..poly.len() {
            canvas.line(px(poly[i]), px(poly[(i + 1) % poly.len()]), 2, IGNORE_COLOR);
        }
        if let Some(p) = poly.first() {
            let (x, y) = px(*p);
            canvas.label_tab(tab(x, y), "ignored");
        }
    }
    for (name, a, b, forward) in &ov.lines {
        let (pa, pb) = (px(*a), px(*b));
        canvas.line(pa, pb, 3, LINE_COLOR);
        // Forward = from the left of A→B to its right, as seen on screen: the
        // arrow points to the right-hand side, perpendicular at the middle.
        let (dx, dy) = (pb.0 - pa.0, pb.1 - pa.1);
        let len = (dx * dx + dy * dy).sqrt().max(1e-3);
        let (nx, ny) = (-dy / len, dx / len);
        let mid = ((pa.0 + pb.0) / 2.0, (pa.1 + pb.1) / 2.0);
        let arrow = 0.08 * fw.min(fh);
        let tip = (mid.0 + nx * arrow, mid.1 + ny * arrow);
        canvas.line(mid, tip, 3, LINE_COLOR);
        let (ux, uy) = (dx / len, dy / len);
        for s in [1.0f32, -1.0] {
            let head = (
                tip.0 - nx * arrow * 0.35 + s * ux * arrow * 0.25,
                tip.1 - ny * arrow * 0.35 + s * uy * arrow * 0.25,
            );
            canvas.line(tip, head, 3, LINE_COLOR);
        }
        canvas.label_tab(tab(pa.0, pa.1), &format!("line {name}"));
        canvas.label_tab(tab(tip.0, tip.1 + 12.0), forward);
    }
    for (b, label) in &ov.boxes {
        let c = b.clamp(fw, fh);
        if !(c.width() > 0.0 && c.height() > 0.0) {
            continue;
        }
        let r = OutRect {
            x1: c.x1.floor() as i32,
            y1: c.y1.floor() as i32,
            x2: (c.x2.ceil() as i32).max(c.x1.floor() as i32 + 1),
            y2: (c.y2.ceil() as i32).max(c.y1.floor() as i32 + 1),
        };
        canvas.outline(r, 3);
        if !label.is_empty() {
            canvas.label_tab(r, label);
        }
    }
    encode_jpeg(&out, width, height, quality.clamp(1, 100))
}

/// Baseline JPEG with 4:2:0 chroma subsampling, as cameras and browsers use:
/// about a third smaller than the `image` crate's 4:4:4 output at the same
/// quality, and faster (`jpeg-encoder` picks AVX2 at run time).
pub fn encode_jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, SnapshotError> {
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(SnapshotError::FrameSize { width, height }),
    };
    let mut jpeg = Vec::with_capacity(32 * 1024);
    let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(SnapshotError::Encode)?;
    Ok(jpeg)
}

/// Bytes of a packed RGB24 `width`×`height` frame; `None` when that does not
/// fit `usize`. (A plain `w * h * 3` can wrap around to a small number for a
/// bogus size, which would then pass a length check and index out of bounds.)
fn packed_len(width: u32, height: u32) -> Option<usize> {
    (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3))
}

fn validate_options(opts: &SnapshotOptions) -> Result<(), SnapshotError> {
    if opts.max_height == 0 {
        return Err(SnapshotError::Options("max_height must be at least 1"));
    }
    if !(1..=100).contains(&opts.quality) {
        return Err(SnapshotError::Options("quality must be within 1..=100"));
    }
    if !opts.crop_margin.is_finite() || opts.crop_margin < 0.0 {
        return Err(SnapshotError::Options(
            "crop_margin must be a finite number >= 0",
        ));
    }
    Ok(())
}

/// A pixel rectangle inside the source frame (always non-empty).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

/// The box grown by `margin` × its size on each side, clipped to the frame,
/// snapped outward to whole pixels. `clipped` must be inside the frame and
/// non-empty.
fn crop_region(clipped: &BBox, margin: f32, width: u32, height: u32) -> Rect {
    let mx = clipped.width() * margin;
    let my = clipped.height() * margin;
    let x1 = (clipped.x1 - mx).floor().clamp(0.0, width as f32 - 1.0) as u32;
    let y1 = (clipped.y1 - my).floor().clamp(0.0, height as f32 - 1.0) as u32;
    let x2 = ((clipped.x2 + mx).ceil().clamp(0.0, width as f32) as u32).max(x1 + 1);
    let y2 = ((clipped.y2 + my).ceil().clamp(0.0, height as f32) as u32).max(y1 + 1);
    Rect {
        x: x1,
        y: y1,
        w: x2 - x1,
        h: y2 - y1,
    }
}

/// Output size for a `w`×`h` region: height capped at `max_height`, aspect
/// kept, never upscaled, never zero.
fn output_size(w: u32, h: u32, max_height: u32) -> (u32, u32) {
    if h <= max_height {
        return (w, h);
    }
    let out_h = max_height;
    let out_w = ((w as u64 * out_h as u64 + h as u64 / 2) / h as u64).max(1) as u32;
    (out_w, out_h)
}

/// For each of `n_out` output cells, the half-open source span `[a, b)`
/// (relative to the region start) that it averages. Spans cover the source
/// exactly once in order and are never empty, because `n_out <= n_in`.
fn spans(n_in: u32, n_out: u32) -> Vec<(usize, usize)> {
    let (n_in, n_out) = (n_in as u64, n_out as u64);
    (0..n_out)
        .map(|i| {
            let a = (i * n_in / n_out) as usize;
            let b = (((i + 1) * n_in / n_out) as usize).max(a + 1);
            (a, b)
        })
        .collect()
}

/// Copies `region` out of the frame and shrinks it to `out_w`×`out_h` with an
/// area (box) average; a plain copy when no scaling is needed.
fn scale_region(rgb: &[u8], stride_px: usize, region: &Rect, out_w: u32, out_h: u32) -> Vec<u8> {
    let (rx, ry, rw, rh) = (
        region.x as usize,
        region.y as usize,
        region.w as usize,
        region.h as usize,
    );
    let row = |y: usize| {
        let start = ((ry + y) * stride_px + rx) * 3;
        &rgb[start..start + rw * 3]
    };
    if (out_w, out_h) == (region.w, region.h) {
        let mut out = Vec::with_capacity(rw * rh * 3);
        for y in 0..rh {
            out.extend_from_slice(row(y));
        }
        return out;
    }

    let xs = spans(region.w, out_w);
    let ys = spans(region.h, out_h);
    let ow = out_w as usize;
    // Per output pixel, the sum over its whole source area, divided once: a
    // single rounding step. One source row's span fits u32 (65535 × 255);
    // the area sum needs u64 (up to 65535² × 255).
    let mut acc = vec![0u64; ow * 3];
    let mut out = Vec::with_capacity(ow * out_h as usize * 3);
    for &(ya, yb) in &ys {
        acc.iter_mut().for_each(|a| *a = 0);
        for y in ya..yb {
            let src = row(y);
            for (ox, &(xa, xb)) in xs.iter().enumerate() {
                let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
                for px in src[xa * 3..xb * 3].chunks_exact(3) {
                    r += px[0] as u32;
                    g += px[1] as u32;
                    b += px[2] as u32;
                }
                let cell = &mut acc[ox * 3..ox * 3 + 3];
                cell[0] += u64::from(r);
                cell[1] += u64::from(g);
                cell[2] += u64::from(b);
            }
        }
        let rows = (yb - ya) as u64;
        for (ox, &(xa, xb)) in xs.iter().enumerate() {
            let n = rows * (xb - xa) as u64;
            for c in 0..3 {
                out.push(((acc[ox * 3 + c] + n / 2) / n) as u8);
            }
        }
    }
    out
}

/// A box in output pixels, half-open: `[x1, x2) × [y1, y2)`.
#[derive(Clone, Copy, Debug)]
struct OutRect {
    x1: i32,
    y1: i32,
    x2: i32,
    y2: i32,
}

/// Minimal drawing on a packed RGB24 buffer; everything is clipped.
struct Canvas<'a> {
    data: &'a mut [u8],
    width: i32,
    height: i32,
}

impl Canvas<'_> {
    fn fill(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, color: [u8; 3]) {
        let (x1, x2) = (x1.clamp(0, self.width), x2.clamp(0, self.width));
        let (y1, y2) = (y1.clamp(0, self.height), y2.clamp(0, self.height));
        for y in y1..y2 {
            // usize: a 65535-px-wide frame overflows i32 offsets.
            let row = y as usize * self.width as usize;
            let start = (row + x1 as usize) * 3;
            let end = (row + x2 as usize) * 3;
            for px in self.data[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Outline `thickness` px wide on and inside the box edge, plus a 1 px
    /// dark halo outside and inside it. Drawing inward keeps a box that
    /// touches the frame edge fully visible.
    fn outline(&mut self, r: OutRect, thickness: i32) {
        // The halo ring first (outline + 1 px each way), then the colour on top.
        self.ring(
            r.x1 - 1,
            r.y1 - 1,
            r.x2 + 1,
            r.y2 + 1,
            thickness + 2,
            HALO_COLOR,
        );
        self.ring(r.x1, r.y1, r.x2, r.y2, thickness, BOX_COLOR);
    }

    /// A straight segment `t` px thick (squares stamped along it).
    fn line(&mut self, a: (f32, f32), b: (f32, f32), t: i32, color: [u8; 3]) {
        let steps = (b.0 - a.0)
            .abs()
            .max((b.1 - a.1).abs())
            .ceil()
            .clamp(1.0, 1e5) as i32;
        for i in 0..=steps {
            let f = i as f32 / steps as f32;
            let (x, y) = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
            // Saturating: a far-off point (a cast saturates at i32::MIN/MAX)
            // must clip, not overflow.
            let (x, y) = (
                (x.round() as i32).saturating_sub(t / 2),
                (y.round() as i32).saturating_sub(t / 2),
            );
            self.fill(x, y, x.saturating_add(t), y.saturating_add(t), color);
        }
    }

    /// The frame of width `t` just inside `[x1, x2) × [y1, y2)`.
    fn ring(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, t: i32, color: [u8; 3]) {
        let t = t.min((x2 - x1 + 1) / 2).min((y2 - y1 + 1) / 2).max(1);
        self.fill(x1, y1, x2, y1 + t, color);
        self.fill(x1, y2 - t, x2, y2, color);
        self.fill(x1, y1 + t, x1 + t, y2 - t, color);
        self.fill(x2 - t, y1 + t, x2, y2 - t, color);
    }

    /// A filled tab in the box colour with `label` in dark 5×7 glyphs, sitting
    /// on the box's top edge (above it when there is room, else just inside).
    fn label_tab(&mut self, r: OutRect, label: &str) {
        const PAD: i32 = 2;
        let chars: Vec<char> = label.chars().take(24).collect();
        let tab_w = chars.len() as i32 * (GLYPH_W + 1) - 1 + 2 * PAD;
        let tab_h = GLYPH_H + 2 * PAD;
        let x = r.x1.clamp(0, (self.width - tab_w).max(0));
        let y = if r.y1.saturating_sub(tab_h) >= 0 {
            r.y1 - tab_h
        } else {
            r.y1.max(0)
        };
        self.fill(x, y, x + tab_w, y.saturating_add(tab_h), BOX_COLOR);
        for (i, ch) in chars.iter().enumerate() {
            let gx = x + PAD + i as i32 * (GLYPH_W + 1);
            let rows = glyph(*ch);
            for (dy, bits) in rows.iter().enumerate() {
                for dx in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - dx)) != 0 {
                        let (px, py) = (gx + dx, y.saturating_add(PAD + dy as i32));
                        self.fill(px, py, px + 1, py.saturating_add(1), HALO_COLOR);
                    }
                }
            }
        }
    }
}

const GLYPH_W: i32 = 5;
const GLYPH_H: i32 = 7;

/// A 5×7 bitmap for `c` (rows top to bottom, bit 4 = leftmost column).
/// Lower-case letters are drawn as capitals; unknown characters are blank.
/// Hand-made for this module: enough for class names and scores without a
/// font file or a font crate.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    /// A deterministic 768×576 test frame with texture (a gradient plus a
    /// hashed noise pattern), so JPEG sizes are not trivially tiny.
    fn synthetic(width: u32, height: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                let n = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) % 41;
                v.push(((x * 255 / width) as u8).wrapping_add(n as u8) / 2 + 40);
                v.push(((y * 255 / height) as u8) / 2 + 30);
                v.push((((x + y) % 97) as u8) + 60);
            }
        }
        v
    }

    /// The real 768×576 street fixture, decoded to RGB24.
    fn dog_jpg() -> (Vec<u8>, u32, u32) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dog.jpg");
        let img = image::open(&path).expect("dog.jpg").to_rgb8();
        let (w, h) = img.dimensions();
        (img.into_raw(), w, h)
    }

    fn decode(s: &Snapshot) -> image::RgbImage {
        assert_eq!(&s.jpeg[..2], &[0xFF, 0xD8], "JPEG SOI marker");
        image::load_from_memory_with_format(&s.jpeg, image::ImageFormat::Jpeg)
            .expect("decodes as JPEG")
            .to_rgb8()
    }

    fn close(px: &image::Rgb<u8>, want: [u8; 3], tol: i32) -> bool {
        px.0.iter()
            .zip(want)
            .all(|(&a, b)| (a as i32 - b as i32).abs() <= tol)
    }

    #[test]
    fn defaults_whole_frame_decodes_with_stated_size() {
        let (rgb, w, h) = dog_jpg();
        let bbox = BBox::new(108.0, 127.0, 571.0, 425.0);
        let t = Instant::now();
        let s = render(
            &rgb,
            w,
            h,
            bbox,
            "bicycle 0.68",
            &SnapshotOptions::default(),
        )
        .unwrap();
        let took = t.elapsed();
        assert_eq!((s.width, s.height), (480, 360));
        let img = decode(&s);
        assert_eq!(img.dimensions(), (s.width, s.height));
        println!(
            "dog.jpg 768x576 -> {}x{} default options: {} bytes in {:?}",
            s.width,
            s.height,
            s.jpeg.len(),
            took
        );
        // Measured 39,945 B: a busy frame (foliage, spokes) at 480x360 q70 with
        // the image crate's 4:4:4 encoder. The bound guards against regressions
        // such as losing the downscale.
        assert!(
            (10_000..=45_000).contains(&s.jpeg.len()),
            "default snapshot should stay small, got {}",
            s.jpeg.len()
        );
    }

    #[test]
    fn default_size_on_synthetic_frame_is_small() {
        let rgb = synthetic(768, 576);
        let s = render(
            &rgb,
            768,
            576,
            BBox::new(300.0, 200.0, 420.0, 460.0),
            "person 0.82",
            &SnapshotOptions::default(),
        )
        .unwrap();
        println!("synthetic 768x576 default options: {} bytes", s.jpeg.len());
        assert_eq!((s.width, s.height), (480, 360));
        assert!(s.jpeg.len() < 40_000, "{} bytes", s.jpeg.len());
        decode(&s);
    }

    #[test]
    fn box_outline_has_box_colour() {
        // Flat grey frame: the only amber in the output can come from the outline.
        let (w, h) = (768u32, 576u32);
        let rgb = vec![128u8; (w * h * 3) as usize];
        let bbox = BBox::new(192.0, 144.0, 576.0, 432.0);
        let opts = SnapshotOptions {
            quality: 90,
            ..SnapshotOptions::default()
        };
        let s = render(&rgb, w, h, bbox, "", &opts).unwrap();
        let img = decode(&s);
        // Scale 360/576 = 0.625: box -> (120, 90)-(360, 270), 3 px outline inward.
        assert_eq!((s.width, s.height), (480, 360));
        for (x, y) in [(240, 91), (240, 268), (121, 180), (358, 180), (200, 91)] {
            let px = img.get_pixel(x, y);
            assert!(close(px, BOX_COLOR, 40), "outline at ({x},{y}) is {px:?}");
        }
        // Inside and outside the box the frame is untouched grey.
        for (x, y) in [(240, 180), (40, 40), (440, 330), (240, 100)] {
            let px = img.get_pixel(x, y);
            assert!(close(px, [128, 128, 128], 12), "({x},{y}) is {px:?}");
        }
    }

    #[test]
    fn no_box_when_draw_box_is_off() {
        let (w, h) = (320u32, 240u32);
        let rgb = vec![128u8; (w * h * 3) as usize];
        let opts = SnapshotOptions {
            draw_box: false,
            ..SnapshotOptions::default()
        };
        let s = render(
            &rgb,
            w,
            h,
            BBox::new(50.0, 50.0, 150.0, 150.0),
            "car",
            &opts,
        )
        .unwrap();
        assert_eq!(
            (s.width, s.height),
            (320, 240),
            "no upscaling, no downscale"
        );
        let img = decode(&s);
        assert!(img.pixels().all(|p| close(p, [128, 128, 128], 6)));
    }

    #[test]
    fn label_tab_sits_above_the_box() {
        let (w, h) = (640u32, 360u32);
        let rgb = vec![128u8; (w * h * 3) as usize];
        let opts = SnapshotOptions {
            quality: 95,
            ..SnapshotOptions::default()
        };
        let bbox = BBox::new(100.0, 100.0, 300.0, 300.0);
        let s = render(&rgb, w, h, bbox, "CAR", &opts).unwrap();
        let img = decode(&s);
        // Tab: 11 px tall directly above y=100, starting at x=100; its padding row is amber.
        assert!(close(img.get_pixel(104, 90), BOX_COLOR, 40));
        // The text is dark: somewhere in the tab's glyph area there are dark pixels.
        let dark = (91..98)
            .flat_map(|y| (102..120).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 90))
            .count();
        assert!(dark >= 10, "expected dark glyph pixels, found {dark}");
        // No tab without a label.
        let s = render(&rgb, w, h, bbox, "", &opts).unwrap();
        assert!(close(decode(&s).get_pixel(104, 90), [128, 128, 128], 12));
    }

    #[test]
    fn crop_is_smaller_and_centred_on_the_box() {
        let (rgb, w, h) = dog_jpg();
        let bbox = BBox::new(464.0, 85.0, 693.0, 165.0); // the pickup truck
        let opts = SnapshotOptions {
            crop: true,
            ..SnapshotOptions::default()
        };
        let s = render(&rgb, w, h, bbox, "truck 0.37", &opts).unwrap();
        let full = render(&rgb, w, h, bbox, "truck 0.37", &SnapshotOptions::default()).unwrap();
        // Box 229x80 + 50 % each side -> 458x160, clipped at x=768: x 349..768, y 45..205.
        assert_eq!((s.width, s.height), (419, 160));
        assert!(s.width < full.width && s.height < full.height);
        assert!(s.jpeg.len() < full.jpeg.len());
        let img = decode(&s);
        assert_eq!(img.dimensions(), (419, 160));
        // The box is at (115, 40)-(344, 120) in crop pixels; its top edge is amber.
        let px = img.get_pixel(230, 41);
        assert!(close(px, BOX_COLOR, 60), "{px:?}");
        println!(
            "crop {}x{}: {} bytes (full frame {} bytes)",
            s.width,
            s.height,
            s.jpeg.len(),
            full.jpeg.len()
        );
    }

    #[test]
    fn crop_region_arithmetic() {
        let r = crop_region(&BBox::new(100.0, 100.0, 200.0, 140.0), 0.5, 768, 576);
        assert_eq!(
            r,
            Rect {
                x: 50,
                y: 80,
                w: 200,
                h: 80
            }
        );
        let r = crop_region(&BBox::new(0.0, 0.0, 10.0, 10.0), 0.5, 768, 576);
        assert_eq!(
            r,
            Rect {
                x: 0,
                y: 0,
                w: 15,
                h: 15
            }
        );
        let r = crop_region(&BBox::new(5.0, 5.0, 5.5, 5.5), 0.0, 768, 576);
        assert_eq!(
            r,
            Rect {
                x: 5,
                y: 5,
                w: 1,
                h: 1
            }
        );
    }

    #[test]
    fn tall_crop_is_downscaled_to_max_height() {
        let rgb = synthetic(768, 576);
        let opts = SnapshotOptions {
            crop: true,
            crop_margin: 0.0,
            max_height: 100,
            ..SnapshotOptions::default()
        };
        let s = render(
            &rgb,
            768,
            576,
            BBox::new(10.0, 10.0, 110.0, 410.0),
            "p",
            &opts,
        )
        .unwrap();
        assert_eq!((s.width, s.height), (25, 100));
        assert_eq!(decode(&s).dimensions(), (25, 100));
    }

    #[test]
    fn box_filter_averages_areas() {
        // 4x2 frame, left half black, right half white -> 2x1 = black, white.
        let mut rgb = vec![0u8; 4 * 2 * 3];
        for y in 0..2 {
            for x in 2..4 {
                let i = (y * 4 + x) * 3;
                rgb[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let region = Rect {
            x: 0,
            y: 0,
            w: 4,
            h: 2,
        };
        assert_eq!(
            scale_region(&rgb, 4, &region, 2, 1),
            vec![0, 0, 0, 255, 255, 255]
        );
        assert_eq!(scale_region(&rgb, 4, &region, 1, 1), vec![128, 128, 128]);
        // A sub-region copy without scaling.
        let region = Rect {
            x: 1,
            y: 1,
            w: 2,
            h: 1,
        };
        assert_eq!(
            scale_region(&rgb, 4, &region, 2, 1),
            vec![0, 0, 0, 255, 255, 255]
        );
        // Non-integer ratio: every source column is used exactly once.
        let s = spans(576, 360);
        assert_eq!(s.first(), Some(&(0, 1)));
        assert_eq!(s.last().map(|x| x.1), Some(576));
        assert!(s.windows(2).all(|p| p[0].1 == p[1].0));
    }

    #[test]
    fn bad_buffer_length_is_an_error() {
        let rgb = vec![0u8; 100 * 100 * 3 - 1];
        let err = render(
            &rgb,
            100,
            100,
            BBox::new(1.0, 1.0, 5.0, 5.0),
            "",
            &SnapshotOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::BufferSize {
                    expected: 30_000,
                    actual: 29_999,
                    ..
                }
            ),
            "{err}"
        );
        let err = render(
            &[],
            0,
            100,
            BBox::new(1.0, 1.0, 5.0, 5.0),
            "",
            &SnapshotOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, SnapshotError::FrameSize { .. }), "{err}");
    }

    #[test]
    fn box_outside_frame_and_bad_options_are_errors() {
        let rgb = vec![0u8; 64 * 48 * 3];
        let o = SnapshotOptions::default();
        for b in [
            BBox::new(100.0, 10.0, 120.0, 20.0),
            BBox::new(-30.0, -30.0, -1.0, -1.0),
            BBox::new(f32::NAN, 0.0, 10.0, 10.0),
            BBox::new(10.0, 10.0, 10.0, 20.0),
        ] {
            let err = render(&rgb, 64, 48, b, "", &o).unwrap_err();
            assert!(
                matches!(err, SnapshotError::BoxOutsideFrame { .. }),
                "{b:?}: {err}"
            );
        }
        // Partly outside is fine: it is clipped.
        let s = render(&rgb, 64, 48, BBox::new(-10.0, -10.0, 20.0, 20.0), "x", &o).unwrap();
        assert_eq!((s.width, s.height), (64, 48));

        let b = BBox::new(1.0, 1.0, 5.0, 5.0);
        for bad in [
            SnapshotOptions {
                quality: 0,
                ..o.clone()
            },
            SnapshotOptions {
                quality: 101,
                ..o.clone()
            },
            SnapshotOptions {
                max_height: 0,
                ..o.clone()
            },
            SnapshotOptions {
                crop_margin: -0.1,
                ..o.clone()
            },
            SnapshotOptions {
                crop_margin: f32::INFINITY,
                ..o
            },
        ] {
            let err = render(&rgb, 64, 48, b, "", &bad).unwrap_err();
            assert!(matches!(err, SnapshotError::Options(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn privacy_mask_is_black_in_the_snapshot() {
        // A bright frame; mask the left half's middle band.
        let (w, h) = (640u32, 480u32);
        let rgb = vec![200u8; (w * h * 3) as usize];
        let opts = SnapshotOptions {
            masks: vec![vec![[0.0, 0.25], [0.5, 0.25], [0.5, 0.75], [0.0, 0.75]]],
            quality: 90,
            ..SnapshotOptions::default()
        };
        let s = render(&rgb, w, h, BBox::new(400.0, 100.0, 500.0, 300.0), "", &opts).unwrap();
        let img = decode(&s);
        let (ow, oh) = (s.width, s.height);
        // Well inside the mask: black. Outside: untouched.
        for (fx, fy) in [(0.1, 0.4), (0.25, 0.5), (0.45, 0.7)] {
            let px = img.get_pixel((fx * ow as f32) as u32, (fy * oh as f32) as u32);
            assert!(
                px.0.iter().all(|&c| c < 12),
                "masked pixel at ({fx},{fy}) is {px:?}"
            );
        }
        let px = img.get_pixel((0.25 * ow as f32) as u32, (0.1 * oh as f32) as u32);
        assert!(px.0.iter().all(|&c| c > 180), "unmasked pixel is {px:?}");
        // Cropping never brings masked pixels back.
        let crop = SnapshotOptions { crop: true, ..opts };
        let s = render(&rgb, w, h, BBox::new(100.0, 150.0, 200.0, 330.0), "", &crop).unwrap();
        let img = decode(&s);
        let c = img.get_pixel(s.width / 2, s.height / 2);
        assert!(
            c.0.iter().all(|&v| v < 12),
            "masked object crop centre is {c:?}"
        );
    }

    #[test]
    fn preview_outlines_ignore_zones_in_their_own_colour() {
        let (w, h) = (640u32, 480u32);
        let rgb = vec![40u8; (w * h * 3) as usize];
        let zone = vec![[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]];
        let redness = |ov: &Overlay| {
            let jpeg = preview(&rgb, w, h, ov, 90).unwrap();
            let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                .unwrap()
                .to_rgb8();
            // The strongest red along the zone's bottom edge (y = 360).
            (356..=364)
                .map(|y| {
                    let p = img.get_pixel(320, y).0;
                    i32::from(p[0]) - i32::from(p[1])
                })
                .max()
                .unwrap()
        };
        let plain = Overlay::default();
        let ignored = Overlay {
            ignore: vec![zone.clone()],
            ..Overlay::default()
        };
        let as_zone = Overlay {
            zones: vec![("z".to_string(), zone)],
            ..Overlay::default()
        };
        assert!(redness(&plain) < 10);
        assert!(redness(&ignored) > 100, "{}", redness(&ignored));
        assert!(redness(&as_zone) < 10, "zones keep their colour");
    }

    #[test]
    fn fill_polygons_handles_triangles_and_bad_input() {
        let (w, h) = (10u32, 10u32);
        let mut rgb = vec![255u8; 300];
        fill_polygons(&mut rgb, w, h, &[vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]]);
        let black = |x: usize, y: usize, b: &[u8]| b[(y * 10 + x) * 3] == 0;
        assert!(black(0, 0, &rgb) && black(4, 4, &rgb) && !black(9, 9, &rgb) && !black(6, 6, &rgb));
        // Degenerate polygons and NaNs are ignored, never a panic.
        let mut rgb2 = vec![255u8; 300];
        fill_polygons(
            &mut rgb2,
            w,
            h,
            &[
                vec![[0.0, 0.0], [1.0, 1.0]],
                vec![[f32::NAN, 0.0], [1.0, 0.0], [0.0, 1.0]],
            ],
        );
        assert!(
            rgb2.iter().all(|&v| v == 255),
            "degenerate or NaN polygons fill nothing"
        );
        fill_polygons(
            &mut rgb2,
            w,
            h,
            &[vec![[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]]],
        );
        assert!(
            rgb2.iter().all(|&v| v == 0),
            "a polygon larger than the frame blacks it all"
        );
    }

    #[test]
    fn blur_regions_pixelates_only_the_grown_box_and_ignores_bad_boxes() {
        let (w, h) = (64u32, 48u32);
        // A fine checkerboard: maximal detail everywhere.
        let src: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = if (i % w + i / w) % 2 == 0 { 255 } else { 0 };
                [v, v / 2, 255 - v]
            })
            .collect();
        let px = |buf: &[u8], x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            [buf[i], buf[i + 1], buf[i + 2]]
        };

        let mut rgb = src.clone();
        blur_regions(
            &mut rgb,
            w,
            h,
            &[
                BBox::new(f32::NAN, 0.0, 10.0, 10.0),
                BBox::new(100.0, 100.0, 120.0, 120.0),
                BBox::new(5.0, 5.0, 4.0, 9.0),
            ],
        );
        assert_eq!(rgb, src, "NaN, outside and empty boxes change nothing");

        // Box 20x20 at (20, 10): grown by 3 px per side -> 17..43 x 7..33,
        // 26 px -> blocks of max(6, 26/6 -> 5) = 6 px.
        blur_regions(&mut rgb, w, h, &[BBox::new(20.0, 10.0, 40.0, 30.0)]);
        for y in 0..h {
            for x in 0..w {
                let inside = (17..43).contains(&x) && (7..33).contains(&y);
                if !inside {
                    assert_eq!(px(&rgb, x, y), px(&src, x, y), "({x},{y}) outside changed");
                }
            }
        }
        // Inside, the checkerboard is gone: every pixel is its mean colour.
        for y in 7..33 {
            for x in 17..43 {
                let c = px(&rgb, x, y);
                assert!(
                    (126..=129).contains(&c[0]) && (62..=65).contains(&c[1]),
                    "({x},{y}) = {c:?}"
                );
            }
        }

        // A box hanging over the corner is clipped, not a panic.
        let mut rgb = src.clone();
        blur_regions(&mut rgb, w, h, &[BBox::new(-30.0, -30.0, 8.0, 8.0)]);
        assert_ne!(rgb, src);
        assert_eq!(px(&rgb, 20, 20), px(&src, 20, 20));
        // A short buffer is left alone.
        let mut short = vec![7u8; 10];
        blur_regions(&mut short, w, h, &[BBox::new(0.0, 0.0, 8.0, 8.0)]);
        assert_eq!(short, vec![7u8; 10]);
    }
}
