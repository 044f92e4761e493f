//! The node's snapshot byte budget: a token bucket (bytes per second with a
//! burst) shared by every camera, and the degradation ladder a snapshot goes
//! down when the budget is short.
//!
//! Events are never dropped for budget; only their pictures get cheaper:
//!
//! 0. `full`: the configured `[snapshot]` options;
//! 1. `quality`: JPEG quality lowered to [`LOW_QUALITY`];
//! 2. `height`: also half the height (at least [`MIN_HEIGHT`] px);
//! 3. `crop`: also cropped to the object and its surroundings;
//! 4. no snapshot: the event goes without one, marked
//!    `"snapshot_omitted": "budget"` on the wire.
//!
//! Pure logic over sizes and time (the caller passes `now`), so the policy is
//! tested without clocks or images. Zone-level pictures (crowding) are whole
//! frames by definition and skip the `crop` step.

use std::time::Instant;

use crate::snapshot::SnapshotOptions;

/// JPEG quality of the `quality` step and below.
pub const LOW_QUALITY: u8 = 40;
/// The `height` step never goes below this many pixels.
pub const MIN_HEIGHT: u32 = 120;

/// A rung of the ladder (`publish` writes its wire name, `snapshot.degraded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Full,
    Quality,
    Height,
    Crop,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Full, Step::Quality, Step::Height, Step::Crop];

    /// Index in counters (`[full, quality, height, crop]`).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The options of `step`, derived from the configured ones. `whole_frame`
/// pictures have no `crop` step (returns `None`).
pub fn options_for(
    base: &SnapshotOptions,
    step: Step,
    whole_frame: bool,
) -> Option<SnapshotOptions> {
    let mut o = base.clone();
    if step >= Step::Quality {
        o.quality = o.quality.min(LOW_QUALITY);
    }
    if step >= Step::Height {
        o.max_height = (o.max_height / 2).max(MIN_HEIGHT).min(o.max_height);
    }
    if step >= Step::Crop {
        if whole_frame || base.crop {
            // Nothing left to take away: whole frames cannot be cropped, and
            // an already cropped snapshot is as small as the crop step makes it.
            return None;
        }
        o.crop = true;
    }
    Some(o)
}

/// A token bucket of bytes: `rate` bytes per second, at most `burst` saved up.
/// Starts full.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl ByteBudget {
    pub fn new(rate_bytes_per_s: f64, burst_bytes: f64, now: Instant) -> Self {
        let burst = burst_bytes.max(0.0);
        Self {
            rate: rate_bytes_per_s.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Bytes that may be spent now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.max(0.0) as u64
    }

    /// Spend `bytes` if the bucket holds them; false (and nothing spent) otherwise.
    pub fn try_take(&mut self, bytes: u64, now: Instant) -> bool {
        self.refill(now);
        if bytes as f64 <= self.tokens {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn burst(&self) -> f64 {
        self.burst
    }
}

/// Walk the ladder: `render(options)` encodes a candidate and returns its
/// size in bytes and the candidate; the first candidate the bucket can pay
/// for is kept (and paid). `None`: nothing fits, send the event without a
/// picture. `render` errors stop the walk and are returned.
pub fn choose<T, E>(
    budget: &mut ByteBudget,
    base: &SnapshotOptions,
    whole_frame: bool,
    now: impl Fn() -> Instant,
    mut render: impl FnMut(&SnapshotOptions) -> Result<(u64, T), E>,
) -> Result<Option<(Step, T)>, E> {
    for step in Step::ALL {
        let Some(o) = options_for(base, step, whole_frame) else {
            break;
        };
        let (n, out) = render(&o)?;
        if budget.try_take(n, now()) {
            return Ok(Some((step, out)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_starts_full_refills_at_its_rate_and_caps_at_the_burst() {
        let t0 = Instant::now();
        let mut b = ByteBudget::new(1000.0, 5000.0, t0);
        assert_eq!(b.available(t0), 5000);
        assert!(b.try_take(4000, t0));
        assert!(!b.try_take(1001, t0), "only 1000 left");
        assert_eq!(b.available(t0), 1000, "a refused take spends nothing");
        assert_eq!(b.available(t0 + Duration::from_secs(2)), 3000);
        assert_eq!(
            b.available(t0 + Duration::from_secs(60)),
            5000,
            "never more than the burst"
        );
    }

    #[test]
    fn each_step_is_cheaper_than_the_one_before() {
        let base = SnapshotOptions::default(); // 360 px, quality 70, whole frame
        let q = options_for(&base, Step::Quality, false).unwrap();
        assert_eq!((q.quality, q.max_height, q.crop), (LOW_QUALITY, 360, false));
        let h = options_for(&base, Step::Height, false).unwrap();
        assert_eq!((h.quality, h.max_height, h.crop), (LOW_QUALITY, 180, false));
        let c = options_for(&base, Step::Crop, false).unwrap();
        assert_eq!((c.quality, c.max_height, c.crop), (LOW_QUALITY, 180, true));
        // Whole-frame pictures and already-cropped snapshots stop at `height`.
        assert!(options_for(&base, Step::Crop, true).is_none());
        let cropped = SnapshotOptions {
            crop: true,
            ..SnapshotOptions::default()
        };
        assert!(options_for(&cropped, Step::Crop, false).is_none());
        // Small heights are not shrunk below MIN_HEIGHT, nor ever enlarged.
        let small = SnapshotOptions {
            max_height: 100,
            ..SnapshotOptions::default()
        };
        assert_eq!(
            options_for(&small, Step::Height, false).unwrap().max_height,
            100
        );
        // A low configured quality is kept.
        let low = SnapshotOptions {
            quality: 20,
            ..SnapshotOptions::default()
        };
        assert_eq!(options_for(&low, Step::Quality, false).unwrap().quality, 20);
    }

    /// Sizes a fake encoder returns per step: full 30 kB, quality 18 kB,
    /// height 6 kB, crop 2 kB.
    fn fake(o: &SnapshotOptions) -> Result<(u64, &'static str), ()> {
        Ok(match (o.quality, o.max_height, o.crop) {
            (70, 360, false) => (30_000, "full"),
            (LOW_QUALITY, 360, false) => (18_000, "quality"),
            (LOW_QUALITY, 180, false) => (6_000, "height"),
            (LOW_QUALITY, 180, true) => (2_000, "crop"),
            _ => panic!("unexpected options {o:?}"),
        })
    }

    #[test]
    fn a_shrinking_budget_walks_down_the_ladder_then_omits() {
        let t0 = Instant::now();
        let base = SnapshotOptions::default();
        // No refill: 57 kB in the bucket.
        let mut b = ByteBudget::new(0.0, 57_000.0, t0);
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(
                choose(&mut b, &base, false, || t0, fake)
                    .unwrap()
                    .map(|(s, _)| s),
            );
        }
        // 57 → 27 (full) → 9 (quality) → 3 (height) → 1 (crop) → none → none.
        assert_eq!(
            got,
            vec![
                Some(Step::Full),
                Some(Step::Quality),
                Some(Step::Height),
                Some(Step::Crop),
                None,
                None
            ]
        );
        // Time refills it: full quality again once 30 kB are saved up.
        let mut b2 = ByteBudget::new(10_000.0, 60_000.0, t0);
        assert_eq!(
            choose(&mut b2, &base, false, || t0, fake)
                .unwrap()
                .unwrap()
                .0,
            Step::Full
        );
        assert_eq!(
            choose(&mut b2, &base, false, || t0, fake)
                .unwrap()
                .unwrap()
                .0,
            Step::Full
        );
        assert_eq!(
            choose(&mut b2, &base, false, || t0, fake).unwrap(),
            None,
            "0 bytes left, nothing fits"
        );
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            choose(&mut b2, &base, false, || later, fake)
                .unwrap()
                .unwrap()
                .0,
            Step::Full
        );
    }

    #[test]
    fn whole_frames_skip_the_crop_step() {
        let t0 = Instant::now();
        let base = SnapshotOptions::default();
        // 4 kB: only the crop step would fit, and whole frames have none.
        let mut b = ByteBudget::new(0.0, 4_000.0, t0);
        assert_eq!(choose(&mut b, &base, true, || t0, fake).unwrap(), None);
        assert_eq!(b.available(t0), 4_000, "nothing was spent");
    }

    #[test]
    fn render_errors_stop_the_walk() {
        let t0 = Instant::now();
        let mut b = ByteBudget::new(0.0, 1.0, t0);
        let r: Result<Option<(Step, ())>, &str> = choose(
            &mut b,
            &SnapshotOptions::default(),
            false,
            || t0,
            |_| Err("boom"),
        );
        assert_eq!(r, Err("boom"));
    }
}
