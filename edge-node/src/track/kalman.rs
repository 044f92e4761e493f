//! Constant-velocity Kalman filter on `(cx, cy, aspect, h)`.
//!
//! State `x = [cx, cy, a, h, vcx, vcy, va, vh]` where `a = w / h`; the
//! measurement is the first four components, so `H = [I₄ 0]`. Velocities are
//! per **second** (not per frame) because frames arrive at a few fps with
//! irregular gaps: the transition is `F(dt) = [[I, dt·I], [0, I]]` and the
//! process noise grows linearly with `dt` (a random-walk model: variance
//! accumulates with elapsed time, so a long gap widens the prediction instead
//! of pretending nothing could have happened).
//!
//! Noise for the position-like components scales with the box height, as in
//! SORT/ByteTrack: a detector's pixel error is proportional to object size,
//! and a near (large) object moves more pixels per second than a far one.
//!
//! Because `H` selects the first four state components, `H P Hᵀ` is the
//! top-left 4×4 block of `P` and `P Hᵀ` is its first four columns; the code
//! uses those blocks directly instead of multiplying by `H`.

// Index loops below mirror the matrix formulas they implement; iterator
// chains over rows *and* columns would hide the algebra.
#![allow(clippy::needless_range_loop)]

use crate::frame::BBox;

type Mat8 = [[f64; 8]; 8];
type Mat4 = [[f64; 4]; 4];

/// Measurement noise std of cx, cy, h, as a fraction of h. Detector boxes
/// jitter by a few percent of the object size.
const MEAS_POS: f64 = 0.05;
/// Measurement noise std of the aspect ratio (unitless). Aspect is noisy for
/// articulated objects (people), so it is trusted less than position.
const MEAS_ASPECT: f64 = 0.1;
/// Process noise of cx, cy, h: std per √s, fraction of h.
const PROC_POS: f64 = 0.1;
/// Process noise of the aspect: std per √s.
const PROC_ASPECT: f64 = 0.02;
/// Process noise of the velocities of cx, cy, h: std (h per second) per √s.
/// Large enough that a pedestrian turning or a car braking between two frames
/// 0.2-0.5 s apart is followed within a couple of updates.
const PROC_VEL: f64 = 0.5;
/// Process noise of the aspect velocity: std (per second) per √s.
const PROC_ASPECT_VEL: f64 = 0.01;
/// Initial std of cx, cy, h (fraction of h) and of the aspect.
const INIT_POS: f64 = 0.1;
const INIT_ASPECT: f64 = 0.05;
/// Initial std of the velocities, h per second: unknown motion, so wide.
/// Objects seen at a few fps can cross a good part of their height per second.
const INIT_VEL: f64 = 2.0;
const INIT_ASPECT_VEL: f64 = 0.05;
/// Floors that keep the box (and the height-scaled noise) non-degenerate.
const MIN_H: f64 = 1.0;
const MIN_ASPECT: f64 = 1e-3;

/// One track's filter.
#[derive(Clone, Debug)]
pub(crate) struct KalmanBox {
    x: [f64; 8],
    p: Mat8,
}

/// `(cx, cy, a, h)` of a box, or `None` when the box is empty or not finite.
fn measure(b: &BBox) -> Option<[f64; 4]> {
    let (w, h) = (f64::from(b.x2 - b.x1), f64::from(b.y2 - b.y1));
    let (cx, cy) = b.center();
    let z = [f64::from(cx), f64::from(cy), w / h, h];
    (w > 0.0 && h > 0.0 && z.iter().all(|v| v.is_finite())).then_some(z)
}

impl KalmanBox {
    /// A filter initialised at the box with zero velocity and wide velocity
    /// uncertainty. `None` for a degenerate box.
    pub(crate) fn new(b: &BBox) -> Option<Self> {
        let z = measure(b)?;
        let h = z[3];
        let std = [
            INIT_POS * h,
            INIT_POS * h,
            INIT_ASPECT,
            INIT_POS * h,
            INIT_VEL * h,
            INIT_VEL * h,
            INIT_ASPECT_VEL,
            INIT_VEL * h,
        ];
        let mut p = [[0.0; 8]; 8];
        for (i, s) in std.iter().enumerate() {
            p[i][i] = s * s;
        }
        Some(Self {
            x: [z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0],
            p,
        })
    }

    /// Advances the state by `dt` seconds. A non-positive or non-finite `dt`
    /// (duplicate or out-of-order timestamps) leaves the state unchanged.
    pub(crate) fn predict(&mut self, dt: f64) {
        if !(dt.is_finite() && dt > 0.0) {
            return;
        }
        let h = self.x[3].max(MIN_H);
        for i in 0..4 {
            self.x[i] += dt * self.x[i + 4];
        }
        // P' = F P Fᵀ. First FP: rows 0..4 gain dt × the matching velocity row.
        let mut fp = self.p;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] += dt * self.p[i + 4][j];
            }
        }
        // Then (FP) Fᵀ: columns 0..4 gain dt × the matching velocity column.
        let mut next = fp;
        for row in next.iter_mut() {
            for j in 0..4 {
                row[j] += dt * row[j + 4];
            }
        }
        let q = [
            PROC_POS * h,
            PROC_POS * h,
            PROC_ASPECT,
            PROC_POS * h,
            PROC_VEL * h,
            PROC_VEL * h,
            PROC_ASPECT_VEL,
            PROC_VEL * h,
        ];
        for (i, s) in q.iter().enumerate() {
            next[i][i] += s * s * dt;
        }
        self.p = next;
        self.clamp_shape();
    }

    /// Corrects the state with a measured box. Returns `false` (and leaves
    /// the state alone) if the box is degenerate or the innovation covariance
    /// is not positive definite, which only happens on corrupt numbers.
    pub(crate) fn update(&mut self, b: &BBox) -> bool {
        let Some(z) = measure(b) else {
            return false;
        };
        let h = self.x[3].max(MIN_H);
        let r = [MEAS_POS * h, MEAS_POS * h, MEAS_ASPECT, MEAS_POS * h];
        // S = H P Hᵀ + R: the top-left block plus measurement noise.
        let mut s: Mat4 = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.p[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(l) = cholesky4(&s) else {
            return false;
        };
        // K = P Hᵀ S⁻¹; since S is symmetric, row k of K solves S kᵀ = (row k of P Hᵀ)ᵀ.
        let mut k = [[0.0; 4]; 8];
        for (row_k, row_p) in k.iter_mut().zip(self.p.iter()) {
            *row_k = chol_solve4(&l, [row_p[0], row_p[1], row_p[2], row_p[3]]);
        }
        let innov = [
            z[0] - self.x[0],
            z[1] - self.x[1],
            z[2] - self.x[2],
            z[3] - self.x[3],
        ];
        for (xi, row_k) in self.x.iter_mut().zip(k.iter()) {
            *xi += (0..4).map(|j| row_k[j] * innov[j]).sum::<f64>();
        }
        // P = P - K (H P), with H P = the first four rows of P.
        let old = self.p;
        for i in 0..8 {
            for j in 0..8 {
                let kh: f64 = (0..4).map(|m| k[i][m] * old[m][j]).sum();
                self.p[i][j] = old[i][j] - kh;
            }
        }
        // Re-symmetrise so rounding cannot accumulate into an indefinite P.
        for i in 0..8 {
            for j in (i + 1)..8 {
                let avg = 0.5 * (self.p[i][j] + self.p[j][i]);
                self.p[i][j] = avg;
                self.p[j][i] = avg;
            }
        }
        self.clamp_shape();
        true
    }

    /// The current state as a pixel box.
    pub(crate) fn bbox(&self) -> BBox {
        let [cx, cy, a, h, ..] = self.x;
        let w = a * h;
        BBox::new(
            (cx - w / 2.0) as f32,
            (cy - h / 2.0) as f32,
            (cx + w / 2.0) as f32,
            (cy + h / 2.0) as f32,
        )
    }

    /// Estimated velocity of the centre, pixels per second.
    #[cfg(test)]
    pub(crate) fn velocity(&self) -> (f64, f64) {
        (self.x[4], self.x[5])
    }

    /// Keeps height and aspect positive: a shrinking prediction over a long
    /// gap must not flip the box inside out.
    fn clamp_shape(&mut self) {
        if self.x[3] < MIN_H {
            self.x[3] = MIN_H;
            self.x[7] = self.x[7].max(0.0);
        }
        if self.x[2] < MIN_ASPECT {
            self.x[2] = MIN_ASPECT;
            self.x[6] = self.x[6].max(0.0);
        }
    }
}

/// Lower-triangular `L` with `L Lᵀ = s`, or `None` if `s` is not positive definite.
fn cholesky4(s: &Mat4) -> Option<Mat4> {
    let mut l = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = s[i][i] - dot;
                if !(d.is_finite() && d > 0.0) {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (s[i][j] - dot) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `L Lᵀ x = b` by forward then back substitution.
fn chol_solve4(l: &Mat4, b: [f64; 4]) -> [f64; 4] {
    let mut y = [0.0; 4];
    for i in 0..4 {
        let dot: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - dot) / l[i][i];
    }
    let mut x = [0.0; 4];
    for i in (0..4).rev() {
        let dot: f64 = ((i + 1)..4).map(|k| l[k][i] * x[k]).sum();
        x[i] = (y[i] - dot) / l[i][i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves() {
        let s = [
            [4.0, 1.0, 0.0, 0.5],
            [1.0, 3.0, 0.2, 0.0],
            [0.0, 0.2, 2.0, 0.1],
            [0.5, 0.0, 0.1, 5.0],
        ];
        let l = cholesky4(&s).expect("positive definite");
        let x = chol_solve4(&l, [1.0, 2.0, 3.0, 4.0]);
        for i in 0..4 {
            let got: f64 = (0..4).map(|j| s[i][j] * x[j]).sum();
            assert!((got - [1.0, 2.0, 3.0, 4.0][i]).abs() < 1e-9);
        }
        assert!(cholesky4(&[[0.0; 4]; 4]).is_none());
    }

    #[test]
    fn learns_velocity_with_irregular_dt() {
        // Box moving at +100 px/s in x, -20 px/s in y, sampled irregularly.
        let times = [0.0, 0.2, 0.35, 0.9, 1.0, 1.45, 1.6, 2.3, 2.5, 2.7, 3.3];
        let at = |t: f64| {
            let (x, y) = (100.0 + 100.0 * t, 300.0 - 20.0 * t);
            BBox::new(x as f32, y as f32, x as f32 + 50.0, y as f32 + 100.0)
        };
        let mut kf = KalmanBox::new(&at(0.0)).expect("valid box");
        let mut prev = 0.0;
        for &t in &times[1..] {
            kf.predict(t - prev);
            kf.update(&at(t));
            prev = t;
        }
        let (vx, vy) = kf.velocity();
        assert!((vx - 100.0).abs() < 10.0, "vx {vx}");
        assert!((vy + 20.0).abs() < 10.0, "vy {vy}");
        // A 0.7 s blind prediction lands close to the truth.
        kf.predict(0.7);
        let (p, truth) = (kf.bbox(), at(4.0));
        assert!(p.iou(&truth) > 0.8, "iou {}", p.iou(&truth));
    }

    #[test]
    fn degenerate_inputs_are_rejected_or_ignored() {
        assert!(KalmanBox::new(&BBox::new(10.0, 10.0, 10.0, 30.0)).is_none());
        assert!(KalmanBox::new(&BBox::new(f32::NAN, 0.0, 1.0, 1.0)).is_none());
        let b = BBox::new(0.0, 0.0, 10.0, 20.0);
        let mut kf = KalmanBox::new(&b).expect("valid");
        kf.predict(-1.0);
        kf.predict(f64::NAN);
        assert_eq!(kf.bbox(), b);
        assert!(!kf.update(&BBox::new(5.0, 5.0, 4.0, 4.0)));
    }
}
