//! When a camera is idle, and when it wakes up: the decision behind
//! keyframe-only decoding (`[[cameras]] idle_decode`).
//!
//! A camera is idle once it has had no tracked object and no scene change
//! for `after_s` seconds of media time. While idle its source decodes
//! keyframes only (one analysed frame per GOP, 2 s on a typical camera); the
//! first analysed frame that shows something wakes it up: a detection, a
//! track, or a picture that differs from the previous analysed one (share
//! of the pixels of a grey thumbnail that moved by more than
//! [`CHANGE_LEVEL`] grey levels at least [`CHANGE_SHARE`]).
//!
//! What it can miss: an object that enters and leaves between two
//! keyframes (within one GOP) is never decoded; one that stays longer is
//! seen late (up to a GOP to be noticed, and decoding returns to full rate
//! at the keyframe after that), so its event opens later and its track
//! starts where it was then.
//!
//! Pure: thumbnails and media time in, a decision out; no clock, no I/O.

use crate::tamper::Thumbnail;

/// A thumbnail pixel changed when its grey level moved by more than this
/// (compression noise on a still picture stays under it).
pub const CHANGE_LEVEL: f32 = 12.0;
/// A picture changed when at least this share of its thumbnail pixels
/// changed (0.3 %: about 40 pixels of a 160×90 thumbnail, a person of
/// 70×200 px in a 1080p frame).
pub const CHANGE_SHARE: f32 = 0.003;
/// While decoding in full, the scene is compared at most this often.
pub const COMPARE_EVERY_S: f64 = 1.0;

/// `[[cameras]] idle_after_s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdleConfig {
    /// Seconds without a tracked object or a scene change before idling.
    pub after_s: f64,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self { after_s: 10.0 }
    }
}

/// A change of decoding mode, with why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleChange {
    /// Idle: keyframes only from now.
    Enter,
    /// Awake: full rate from the next keyframe, because of `cause`.
    Leave(WakeCause),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeCause {
    /// A detection or a track on the frame.
    Object,
    /// The picture changed against the previous analysed frame.
    Change,
}

impl WakeCause {
    pub fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Change => "change",
        }
    }
}

/// One camera's idle state.
#[derive(Debug)]
pub struct IdleDetector {
    cfg: IdleConfig,
    idle: bool,
    /// Media time of the last object or scene change (the first frame's, at start).
    last_activity: Option<f64>,
    /// The last compared thumbnail and its media time.
    reference: Option<(Thumbnail, f64)>,
    /// Media time at which the current idle spell began.
    idle_since: f64,
    /// Seconds spent idle in finished spells.
    idle_total_s: f64,
    /// Times the camera went idle.
    spells: u64,
}

impl IdleDetector {
    pub fn new(cfg: IdleConfig) -> Self {
        Self {
            cfg,
            idle: false,
            last_activity: None,
            reference: None,
            idle_since: 0.0,
            idle_total_s: 0.0,
            spells: 0,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Seconds of media time spent idle up to `t`, and how many spells.
    pub fn idle_time(&self, t: f64) -> (f64, u64) {
        let open = if self.idle {
            (t - self.idle_since).max(0.0)
        } else {
            0.0
        };
        (self.idle_total_s + open, self.spells)
    }

    /// Whether this frame needs a thumbnail (`observe`'s `thumb`): every
    /// frame while idle, at most every [`COMPARE_EVERY_S`] otherwise.
    pub fn wants_thumbnail(&self, t: f64) -> bool {
        self.idle
            || self
                .reference
                .as_ref()
                .is_none_or(|(_, at)| t - at >= COMPARE_EVERY_S)
    }

    /// One analysed frame at media time `t`: `busy` when it has a
    /// detection or a track, `thumb` its grey thumbnail (when
    /// [`Self::wants_thumbnail`] said so). Returns the change of mode, if any.
    pub fn observe(&mut self, t: f64, busy: bool, thumb: Option<Thumbnail>) -> Option<IdleChange> {
        let changed = thumb.and_then(|th| {
            let c = self
                .reference
                .as_ref()
                .is_some_and(|(r, _)| differs(r, &th));
            self.reference = Some((th, t));
            c.then_some(WakeCause::Change)
        });
        let cause = if busy {
            Some(WakeCause::Object)
        } else {
            changed
        };
        let last = *self.last_activity.get_or_insert(t);
        if let Some(cause) = cause {
            self.last_activity = Some(t);
            if self.idle {
                self.idle = false;
                self.idle_total_s += (t - self.idle_since).max(0.0);
                return Some(IdleChange::Leave(cause));
            }
            return None;
        }
        if !self.idle && t - last >= self.cfg.after_s {
            self.idle = true;
            self.idle_since = t;
            self.spells += 1;
            return Some(IdleChange::Enter);
        }
        None
    }
}

/// True when at least [`CHANGE_SHARE`] of the pixels moved by more than
/// [`CHANGE_LEVEL`]; pictures of different sizes (a reconnect) differ.
pub fn differs(a: &Thumbnail, b: &Thumbnail) -> bool {
    if a.width != b.width || a.height != b.height {
        return true;
    }
    let n = a
        .grey
        .iter()
        .zip(&b.grey)
        .filter(|(x, y)| (**x - **y).abs() > CHANGE_LEVEL)
        .count();
    n as f32 >= CHANGE_SHARE * a.grey.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(level: f32, blob: usize) -> Thumbnail {
        let mut grey = vec![level; 160 * 90];
        for g in grey.iter_mut().take(blob) {
            *g = 255.0;
        }
        Thumbnail {
            width: 160,
            height: 90,
            grey,
        }
    }

    #[test]
    fn goes_idle_after_quiet_time_and_wakes_on_an_object() {
        let mut d = IdleDetector::new(IdleConfig { after_s: 10.0 });
        let mut changes = Vec::new();
        // Busy for 5 s, then quiet, at 4 fps.
        for i in 0..200 {
            let t = f64::from(i) * 0.25;
            let th = d.wants_thumbnail(t).then(|| thumb(100.0, 0));
            if let Some(c) = d.observe(t, i < 20, th) {
                changes.push((i, c));
            }
        }
        // Last busy frame at 4.75 s: idle at 14.75 s = frame 59.
        assert_eq!(changes, [(59, IdleChange::Enter)]);
        assert!(d.is_idle());
        // Keyframes every 2 s: one shows a person.
        let c = d.observe(42.0, true, Some(thumb(100.0, 0)));
        assert_eq!(c, Some(IdleChange::Leave(WakeCause::Object)));
        let (idle_s, spells) = d.idle_time(50.0);
        assert!((idle_s - (42.0 - 14.75)).abs() < 1e-9, "{idle_s}");
        assert_eq!(spells, 1);
    }

    #[test]
    fn a_scene_change_wakes_and_noise_does_not() {
        let mut d = IdleDetector::new(IdleConfig { after_s: 4.0 });
        for k in 0..2 {
            let t = f64::from(k) * 2.0;
            d.observe(t, false, Some(thumb(100.0, 0)));
        }
        assert_eq!(
            d.observe(4.0, false, Some(thumb(100.0, 0))),
            Some(IdleChange::Enter)
        );
        // Noise: every pixel 5 levels off, and a dozen pixels flipped.
        assert_eq!(d.observe(6.0, false, Some(thumb(105.0, 12))), None);
        assert!(d.is_idle());
        // Something the size of a far person (60 pixels of the thumbnail).
        assert_eq!(
            d.observe(8.0, false, Some(thumb(105.0, 60))),
            Some(IdleChange::Leave(WakeCause::Change))
        );
        // Back to full rate: it takes after_s of quiet again.
        assert_eq!(d.observe(9.0, false, Some(thumb(105.0, 60))), None);
        assert!(!d.is_idle());
    }

    #[test]
    fn thumbnails_are_asked_for_once_a_second_at_full_rate_and_every_frame_idle() {
        let mut d = IdleDetector::new(IdleConfig { after_s: 3.0 });
        let mut asked = 0;
        for i in 0..8 {
            let t = f64::from(i) * 0.25;
            if d.wants_thumbnail(t) {
                asked += 1;
                d.observe(t, true, Some(thumb(100.0, 0)));
            } else {
                d.observe(t, true, None);
            }
        }
        assert_eq!(asked, 2, "t = 0 and t = 1");
    }
}
