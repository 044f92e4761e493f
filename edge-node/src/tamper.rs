//! Camera tamper and picture-quality checks: a frozen picture, a black or
//! covered lens, a blurred (defocused) picture, a moved camera (the scene
//! no longer matches the one learned at start).
//!
//! Pure: a small grey [`Thumbnail`] of a frame and its media time in,
//! [`Transition`]s out. No I/O, no clock, no GStreamer. The node builds a
//! thumbnail every [`TamperConfig::interval_s`] of media time
//! ([`TamperMonitor::due`]) and publishes the transitions.
//!
//! How each condition is measured, on the thumbnail less the ignored top
//! and bottom bands (a clock overlay):
//! - `black`: the picture is uniform (grey-level standard deviation under
//!   `black_std`, a covered lens) or dark (mean under `black_level`).
//! - `frozen`: the share of pixels that changed by more than
//!   [`CHANGE_LEVEL`] grey levels since the previous check is under
//!   `frozen_change` (decoded frames of a frozen stream are identical; a
//!   live scene changes somewhere).
//! - `blurred`: per cell of a [`GRID_COLS`] × [`GRID_ROWS`] grid, the mean
//!   absolute Laplacian (fine detail) divided by the picture's contrast (standard
//!   deviation: a brightness or gain change cancels out), against the same
//!   figure learned during the first `learn_s`; the median ratio over the
//!   textured cells under `blur_ratio`.
//! - `moved`: per textured cell, the normalised correlation of the gradient
//!   field (of the picture smoothed a little) with the learned reference
//!   scene (the mean of the learning thumbnails, so passing traffic fades
//!   out of it); judged only when the picture is not blurred; the share of cells
//!   that no longer match (correlation under [`MOVED_CORRELATION`]) at or
//!   over `moved_fraction`. Gradients, not brightness, so lighting changes
//!   do not count; a share of cells, so traffic covering a few does not.
//!   The new view must also hold still: each check while it builds up is
//!   compared the same way with the picture of its first check, and a
//!   share of cells at or over [`SETTLED_MISMATCH`] starts it over (a
//!   camera on a moving vehicle, or a patrolling PTZ, sees an ever-changing
//!   scene; a turned or knocked camera sees a new steady one).
//!
//! A condition raises once it has been seen at every check for
//! `raise_after_s` (`frozen_after_s` for `frozen`) and clears once it has
//! been absent at every check for `clear_after_s`.

use std::fmt;

/// Thumbnails are at most this wide (area-average downscale).
pub const THUMB_WIDTH: usize = 160;
/// Cells across the picture for `blurred` and `moved`.
pub const GRID_COLS: usize = 8;
/// Cells down the picture (within the bands kept).
pub const GRID_ROWS: usize = 6;
/// A pixel changed between two checks when its grey level moved by more than this.
pub const CHANGE_LEVEL: f32 = 3.0;
/// A cell matches the reference scene when its gradient correlation is at least this.
pub const MOVED_CORRELATION: f32 = 0.35;
/// `moved` builds up only while the share of cells that differ from the
/// first picture of the new view stays under this (the view holds still).
pub const SETTLED_MISMATCH: f32 = 0.3;

/// A small grey picture: row-major grey levels 0..255.
#[derive(Clone, Debug, PartialEq)]
pub struct Thumbnail {
    pub width: usize,
    pub height: usize,
    pub grey: Vec<f32>,
}

impl Thumbnail {
    /// Area-average downscale of tightly packed RGB24 to at most
    /// [`THUMB_WIDTH`] wide, aspect kept. `None` when `rgb` is shorter than
    /// `width × height × 3` or the frame is empty.
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Option<Thumbnail> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() < w * h * 3 {
            return None;
        }
        let tw = w.min(THUMB_WIDTH);
        let th = ((h * tw + w / 2) / w).clamp(1, h);
        let col: Vec<usize> = (0..w).map(|x| x * tw / w).collect();
        let mut sum = vec![0u32; tw * th];
        let mut count = vec![0u32; tw * th];
        for (y, row) in rgb.chunks_exact(w * 3).take(h).enumerate() {
            let base = (y * th / h) * tw;
            for (px, &c) in row.chunks_exact(3).zip(&col) {
                // BT.601 luma, integer weights summing to 256.
                let l = 77 * u32::from(px[0]) + 150 * u32::from(px[1]) + 29 * u32::from(px[2]);
                sum[base + c] += l;
                count[base + c] += 256;
            }
        }
        let grey = sum
            .iter()
            .zip(&count)
            .map(|(&s, &n)| s as f32 / n.max(1) as f32)
            .collect();
        Some(Thumbnail {
            width: tw,
            height: th,
            grey,
        })
    }
}

/// The tamper checks of one camera (`[cameras.tamper]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TamperConfig {
    /// Seconds of media time between two checks.
    pub interval_s: f64,
    /// Seconds from the first check during which the sharpness baseline and
    /// the reference scene are learned (`blurred` and `moved` wait for it).
    pub learn_s: f64,
    /// Seconds `black`, `blurred` or `moved` must last before it raises.
    pub raise_after_s: f64,
    /// Seconds `frozen` must last before it raises.
    pub frozen_after_s: f64,
    /// Seconds a raised condition must be gone before it clears.
    pub clear_after_s: f64,
    /// Fraction of the picture height at the top that is ignored (clock overlay).
    pub ignore_top: f32,
    /// Fraction of the picture height at the bottom that is ignored.
    pub ignore_bottom: f32,
    /// `frozen`: share of pixels that changed, under which the picture is frozen.
    pub frozen_change: f32,
    /// `black`: grey-level standard deviation under which the picture is uniform.
    pub black_std: f32,
    /// `black`: mean grey level under which the picture is black.
    pub black_level: f32,
    /// `blurred`: sharpness against the learned baseline under which it is blurred.
    pub blur_ratio: f32,
    /// `moved`: share of textured cells that no longer match the reference scene.
    pub moved_fraction: f32,
}

impl Default for TamperConfig {
    fn default() -> Self {
        Self {
            interval_s: 1.0,
            learn_s: 10.0,
            raise_after_s: 10.0,
            frozen_after_s: 30.0,
            clear_after_s: 5.0,
            ignore_top: 0.1,
            ignore_bottom: 0.0,
            frozen_change: 0.002,
            black_std: 8.0,
            black_level: 12.0,
            blur_ratio: 0.5,
            moved_fraction: 0.5,
        }
    }
}

/// A tamper setting out of its range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TamperError {
    #[error("{name} = {value} is out of range {lo}..={hi}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        lo: f64,
        hi: f64,
    },
    #[error("ignore_top + ignore_bottom = {0} leaves too little of the picture (at most 0.8)")]
    Bands(f64),
}

impl TamperConfig {
    /// Every setting within its range (the config checks the same, per field).
    pub fn validate(&self) -> Result<(), TamperError> {
        for (name, value, lo, hi) in self.ranges() {
            if !(value >= lo && value <= hi) {
                return Err(TamperError::OutOfRange {
                    name,
                    value,
                    lo,
                    hi,
                });
            }
        }
        let bands = f64::from(self.ignore_top) + f64::from(self.ignore_bottom);
        if bands > 0.8 {
            return Err(TamperError::Bands(bands));
        }
        Ok(())
    }

    /// `(name, value, lo, hi)` of every setting.
    pub fn ranges(&self) -> [(&'static str, f64, f64, f64); 12] {
        [
            ("interval_s", self.interval_s, 0.1, 60.0),
            ("learn_s", self.learn_s, 0.0, 3600.0),
            ("raise_after_s", self.raise_after_s, 0.0, 3600.0),
            ("frozen_after_s", self.frozen_after_s, 0.0, 3600.0),
            ("clear_after_s", self.clear_after_s, 0.0, 3600.0),
            ("ignore_top", f64::from(self.ignore_top), 0.0, 0.8),
            ("ignore_bottom", f64::from(self.ignore_bottom), 0.0, 0.8),
            ("frozen_change", f64::from(self.frozen_change), 0.0, 1.0),
            ("black_std", f64::from(self.black_std), 0.0, 128.0),
            ("black_level", f64::from(self.black_level), 0.0, 255.0),
            ("blur_ratio", f64::from(self.blur_ratio), 0.0, 1.0),
            ("moved_fraction", f64::from(self.moved_fraction), 0.01, 1.0),
        ]
    }
}

/// One tamper condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TamperKind {
    Frozen,
    Black,
    Blurred,
    Moved,
}

impl TamperKind {
    pub const ALL: [TamperKind; 4] = [
        TamperKind::Frozen,
        TamperKind::Black,
        TamperKind::Blurred,
        TamperKind::Moved,
    ];

    /// The condition's name on the wire and in the camera's `health`.
    pub fn name(self) -> &'static str {
        match self {
            TamperKind::Frozen => "frozen",
            TamperKind::Black => "black",
            TamperKind::Blurred => "blurred",
            TamperKind::Moved => "moved",
        }
    }
}

impl fmt::Display for TamperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A condition raised or cleared at a check.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub kind: TamperKind,
    /// `true`: raised; `false`: cleared.
    pub raised: bool,
    /// Media time of the check that decided it.
    pub t: f64,
    /// Raised: seconds it has been seen; cleared: seconds it lasted (from
    /// its first check to the first check without it).
    pub duration_s: f64,
    /// The measure at that check (see the module doc) and its threshold.
    pub score: f64,
    pub threshold: f64,
}

/// What one check measured; `None` where a measure does not apply (no
/// previous thumbnail, no baseline yet, a black picture).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub mean: f32,
    pub std: f32,
    pub changed: Option<f32>,
    pub sharpness: Option<f32>,
    pub mismatch: Option<f32>,
}

/// Hysteresis of one condition.
#[derive(Clone, Debug, Default)]
struct Hysteresis {
    bad_since: Option<f64>,
    good_since: Option<f64>,
    active: bool,
}

impl Hysteresis {
    /// One check: `Some(bad)`, or `None` when the condition could not be
    /// judged (no progress either way). Returns `(raised, duration)` on a transition.
    fn step(&mut self, bad: Option<bool>, t: f64, raise: f64, clear: f64) -> Option<(bool, f64)> {
        match bad {
            Some(true) => {
                self.good_since = None;
                let since = *self.bad_since.get_or_insert(t);
                if !self.active && t - since >= raise {
                    self.active = true;
                    return Some((true, t - since));
                }
            }
            Some(false) if self.active => {
                let good = *self.good_since.get_or_insert(t);
                if t - good >= clear {
                    let lasted = good - self.bad_since.unwrap_or(good);
                    *self = Hysteresis::default();
                    return Some((false, lasted));
                }
            }
            None if self.active => self.good_since = None,
            Some(false) | None => self.bad_since = None,
        }
        None
    }
}

/// The rows kept (bands removed) of a `height`-row picture.
fn rows(cfg: &TamperConfig, height: usize) -> (usize, usize) {
    let h = height as f32;
    let r0 = (h * cfg.ignore_top).floor() as usize;
    let r1 = height - (h * cfg.ignore_bottom).floor() as usize;
    if r1 > r0 + 2 { (r0, r1) } else { (0, height) }
}

/// Gradients of one picture (central differences inside the rows kept)
/// and its per-cell fine detail.
struct Gradients {
    /// Per pixel `(gx, gy)`, zero outside the interior.
    g: Vec<(f32, f32)>,
    /// Per cell: mean absolute Laplacian (4-neighbour), the finest detail,
    /// which a defocus takes away first.
    cell_mag: Vec<f32>,
}

fn cell_of(x: usize, y: usize, w: usize, r0: usize, r1: usize) -> usize {
    let row = (y - r0) * GRID_ROWS / (r1 - r0);
    row * GRID_COLS + x * GRID_COLS / w
}

fn gradients(t: &Thumbnail, r0: usize, r1: usize) -> Gradients {
    let w = t.width;
    let mut g = vec![(0.0, 0.0); w * t.height];
    let mut sum = [0.0f32; GRID_COLS * GRID_ROWS];
    let mut n = [0u32; GRID_COLS * GRID_ROWS];
    if w >= 3 {
        for y in r0 + 1..r1 - 1 {
            for x in 1..w - 1 {
                let i = y * w + x;
                let gx = (t.grey[i + 1] - t.grey[i - 1]) * 0.5;
                let gy = (t.grey[i + w] - t.grey[i - w]) * 0.5;
                g[i] = (gx, gy);
                let lap =
                    4.0 * t.grey[i] - t.grey[i - 1] - t.grey[i + 1] - t.grey[i - w] - t.grey[i + w];
                let c = cell_of(x, y, w, r0, r1);
                sum[c] += lap.abs();
                n[c] += 1;
            }
        }
    }
    let cell_mag = sum
        .iter()
        .zip(&n)
        .map(|(&s, &k)| if k == 0 { 0.0 } else { s / k as f32 })
        .collect();
    Gradients { g, cell_mag }
}

/// Mean and standard deviation of the rows kept.
fn mean_std(t: &Thumbnail, r0: usize, r1: usize) -> (f32, f32) {
    let px = &t.grey[r0 * t.width..r1 * t.width];
    let n = px.len().max(1) as f64;
    let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = px
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean as f32, var.sqrt() as f32)
}

/// Learning in progress: the sum of the thumbnails and of per-cell sharpness.
struct Learning {
    sum: Vec<f32>,
    sharp: Vec<f32>,
    n: u32,
}

/// What was learned: the reference scene's gradients and per-cell sharpness.
struct Baseline {
    width: usize,
    r0: usize,
    r1: usize,
    reference: Vec<(f32, f32)>,
    /// Per cell: `Σ |g_ref|²`.
    ref_energy: Vec<f32>,
    sharp: Vec<f32>,
    /// Cells with at least the median baseline sharpness.
    textured: Vec<usize>,
}

impl Baseline {
    /// The same geometry with `g` as the reference scene: the first
    /// picture of a possible new view, to check that it holds still.
    fn with_reference(&self, g: Gradients) -> Baseline {
        let mut ref_energy = vec![0.0f32; GRID_COLS * GRID_ROWS];
        for_interior(self.width, self.r0, self.r1, |i, c| {
            let (gx, gy) = g.g[i];
            ref_energy[c] += gx * gx + gy * gy;
        });
        Baseline {
            width: self.width,
            r0: self.r0,
            r1: self.r1,
            reference: g.g,
            ref_energy,
            sharp: self.sharp.clone(),
            textured: self.textured.clone(),
        }
    }
}

/// The tamper state of one camera.
pub struct TamperMonitor {
    cfg: TamperConfig,
    first_t: Option<f64>,
    next_t: f64,
    prev: Option<Thumbnail>,
    learning: Option<Learning>,
    baseline: Option<Baseline>,
    /// `moved` building up: the first picture of the new view.
    new_view: Option<Baseline>,
    conds: [Hysteresis; 4],
}

impl TamperMonitor {
    pub fn new(cfg: TamperConfig) -> Self {
        Self {
            cfg,
            first_t: None,
            next_t: f64::NEG_INFINITY,
            prev: None,
            learning: None,
            baseline: None,
            new_view: None,
            conds: Default::default(),
        }
    }

    pub fn config(&self) -> &TamperConfig {
        &self.cfg
    }

    /// Whether a frame at media time `t` should be checked.
    pub fn due(&self, t: f64) -> bool {
        t >= self.next_t
    }

    /// Whether the baseline and reference scene have been learned.
    pub fn learned(&self) -> bool {
        self.baseline.is_some()
    }

    /// The conditions raised now, in [`TamperKind::ALL`] order.
    pub fn active(&self) -> Vec<TamperKind> {
        TamperKind::ALL
            .into_iter()
            .zip(&self.conds)
            .filter(|(_, c)| c.active)
            .map(|(k, _)| k)
            .collect()
    }

    /// One check of the thumbnail at media time `t`: the transitions it
    /// decides, and what it measured.
    pub fn check(&mut self, thumb: &Thumbnail, t: f64) -> (Vec<Transition>, Scores) {
        self.next_t = t + self.cfg.interval_s;
        if self
            .prev
            .as_ref()
            .is_some_and(|p| (p.width, p.height) != (thumb.width, thumb.height))
        {
            // The resolution changed (a reconnect): learn again.
            self.prev = None;
            self.learning = None;
            self.baseline = None;
            self.new_view = None;
            self.first_t = None;
        }
        let first = *self.first_t.get_or_insert(t);
        let (r0, r1) = rows(&self.cfg, thumb.height);
        let (mean, std) = mean_std(thumb, r0, r1);
        let black = std < self.cfg.black_std || mean < self.cfg.black_level;
        let mut s = Scores {
            mean,
            std,
            changed: self.prev.as_ref().map(|p| changed(p, thumb, r0, r1)),
            ..Scores::default()
        };
        let grad = gradients(thumb, r0, r1);
        let sharp: Vec<f32> = grad.cell_mag.iter().map(|m| m / (std + 1.0)).collect();
        if !black {
            if let Some(b) = &self.baseline {
                s.sharpness = Some(sharpness(b, &sharp));
                // A blurred picture cannot be matched: `blurred` says it.
                if s.sharpness.is_some_and(|v| v >= self.cfg.blur_ratio) {
                    let smooth = gradients(&smoothed(thumb), r0, r1);
                    s.mismatch = Some(mismatch_of(b, &smooth));
                }
            } else {
                self.learn(thumb, &sharp, t - first >= self.cfg.learn_s, r0, r1);
            }
        }
        let moved = self.moved(s.mismatch, thumb, r0, r1);
        let cfg = &self.cfg;
        let judged = [
            (
                (!black)
                    .then_some(())
                    .and(s.changed)
                    .map(|c| c < cfg.frozen_change),
                s.changed.unwrap_or(0.0),
                cfg.frozen_change,
                cfg.frozen_after_s,
            ),
            (Some(black), std, cfg.black_std, cfg.raise_after_s),
            (
                s.sharpness.map(|v| v < cfg.blur_ratio),
                s.sharpness.unwrap_or(0.0),
                cfg.blur_ratio,
                cfg.raise_after_s,
            ),
            (
                moved,
                s.mismatch.unwrap_or(0.0),
                cfg.moved_fraction,
                cfg.raise_after_s,
            ),
        ];
        let mut out = Vec::new();
        for ((kind, cond), (bad, score, threshold, raise)) in
            TamperKind::ALL.into_iter().zip(&mut self.conds).zip(judged)
        {
            if let Some((raised, duration_s)) = cond.step(bad, t, raise, cfg.clear_after_s) {
                out.push(Transition {
                    kind,
                    raised,
                    t,
                    duration_s,
                    score: f64::from(score),
                    threshold: f64::from(threshold),
                });
            }
        }
        self.prev = Some(thumb.clone());
        (out, s)
    }

    /// `moved` at this check, from the mismatch with the reference scene:
    /// while it builds up (not raised yet) the new view must hold still
    /// against its first picture, or it starts over from this one.
    fn moved(
        &mut self,
        mismatch: Option<f32>,
        thumb: &Thumbnail,
        r0: usize,
        r1: usize,
    ) -> Option<bool> {
        let Some(m) = mismatch else {
            self.new_view = None;
            return None;
        };
        let cond = &mut self.conds[3];
        if m < self.cfg.moved_fraction || cond.active {
            self.new_view = None;
            return Some(m >= self.cfg.moved_fraction);
        }
        let smooth = gradients(&smoothed(thumb), r0, r1);
        let settled = self
            .new_view
            .as_ref()
            .is_some_and(|v| mismatch_of(v, &smooth) < SETTLED_MISMATCH);
        if !settled {
            // A new view begins here (or the last one did not hold still).
            cond.bad_since = None;
            self.new_view = self.baseline.as_ref().map(|b| b.with_reference(smooth));
        }
        Some(true)
    }

    /// Adds a thumbnail to the learning; `done`: the learning time is over,
    /// the baseline is built.
    fn learn(&mut self, thumb: &Thumbnail, sharp: &[f32], done: bool, r0: usize, r1: usize) {
        let l = self.learning.get_or_insert_with(|| Learning {
            sum: vec![0.0; thumb.grey.len()],
            sharp: vec![0.0; sharp.len()],
            n: 0,
        });
        for (a, v) in l.sum.iter_mut().zip(&thumb.grey) {
            *a += v;
        }
        for (a, v) in l.sharp.iter_mut().zip(sharp) {
            *a += v;
        }
        l.n += 1;
        if !done {
            return;
        }
        let Some(l) = self.learning.take() else {
            return;
        };
        let n = l.n as f32;
        let mean = Thumbnail {
            width: thumb.width,
            height: thumb.height,
            grey: l.sum.iter().map(|v| v / n).collect(),
        };
        let reference = gradients(&smoothed(&mean), r0, r1).g;
        let mut ref_energy = vec![0.0f32; GRID_COLS * GRID_ROWS];
        for_interior(thumb.width, r0, r1, |i, c| {
            let (gx, gy) = reference[i];
            ref_energy[c] += gx * gx + gy * gy;
        });
        let sharp: Vec<f32> = l.sharp.iter().map(|v| v / n).collect();
        let mut sorted = sharp.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let textured = (0..sharp.len())
            .filter(|&c| sharp[c] >= median && sharp[c] > 0.0 && ref_energy[c] > 0.0)
            .collect();
        self.baseline = Some(Baseline {
            width: thumb.width,
            r0,
            r1,
            reference,
            ref_energy,
            sharp,
            textured,
        });
    }
}

/// The picture smoothed by a binomial 3 × 3 filter, twice: the scene match
/// then compares shapes, not the finest detail a slight defocus removes.
fn smoothed(t: &Thumbnail) -> Thumbnail {
    let (w, h) = (t.width, t.height);
    let mut a = t.grey.clone();
    let mut b = vec![0.0f32; a.len()];
    for _ in 0..2 {
        for y in 0..h {
            for x in 0..w {
                let l = a[y * w + x.saturating_sub(1)];
                let r = a[y * w + (x + 1).min(w - 1)];
                b[y * w + x] = (l + 2.0 * a[y * w + x] + r) * 0.25;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let u = b[y.saturating_sub(1) * w + x];
                let d = b[(y + 1).min(h - 1) * w + x];
                a[y * w + x] = (u + 2.0 * b[y * w + x] + d) * 0.25;
            }
        }
    }
    Thumbnail {
        width: w,
        height: h,
        grey: a,
    }
}

/// Calls `f(pixel index, cell)` for every interior pixel of the rows kept.
fn for_interior(w: usize, r0: usize, r1: usize, mut f: impl FnMut(usize, usize)) {
    if w < 3 {
        return;
    }
    for y in r0 + 1..r1 - 1 {
        for x in 1..w - 1 {
            f(y * w + x, cell_of(x, y, w, r0, r1));
        }
    }
}

/// Share of the pixels kept that changed by more than [`CHANGE_LEVEL`].
fn changed(a: &Thumbnail, b: &Thumbnail, r0: usize, r1: usize) -> f32 {
    let (s, e) = (r0 * a.width, r1 * a.width);
    let n = a.grey[s..e]
        .iter()
        .zip(&b.grey[s..e])
        .filter(|(x, y)| (*x - *y).abs() > CHANGE_LEVEL)
        .count();
    n as f32 / (e - s).max(1) as f32
}

/// Median over the textured cells of sharpness / baseline sharpness.
fn sharpness(b: &Baseline, sharp: &[f32]) -> f32 {
    let mut r: Vec<f32> = b.textured.iter().map(|&c| sharp[c] / b.sharp[c]).collect();
    if r.is_empty() {
        return 1.0;
    }
    r.sort_by(f32::total_cmp);
    r[r.len() / 2]
}

/// Share of the textured cells whose gradients no longer match the reference.
fn mismatch_of(b: &Baseline, g: &Gradients) -> f32 {
    let cells = GRID_COLS * GRID_ROWS;
    let mut dot = vec![0.0f32; cells];
    let mut energy = vec![0.0f32; cells];
    for_interior(b.width, b.r0, b.r1, |i, c| {
        let ((rx, ry), (cx, cy)) = (b.reference[i], g.g[i]);
        dot[c] += rx * cx + ry * cy;
        energy[c] += cx * cx + cy * cy;
    });
    if b.textured.is_empty() {
        return 0.0;
    }
    let off = b
        .textured
        .iter()
        .filter(|&&c| {
            let denom = (b.ref_energy[c] * energy[c]).sqrt();
            denom <= 0.0 || dot[c] / denom < MOVED_CORRELATION
        })
        .count();
    off as f32 / b.textured.len() as f32
}

#[cfg(test)]
mod tests;
