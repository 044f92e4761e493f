//! ByteTrack-style multi-object tracker.
//!
//! **Architecture invariant:** this module is a pure function of
//! `(tracker state, detections, frame time)`. It reads no clock, does no I/O
//! and knows nothing of GStreamer, ONNX Runtime, MQTT or JSON; time comes in
//! as `t`, seconds of media time, so replaying a file is deterministic.
//!
//! Per frame ([`Tracker::update`]):
//! 1. Every live track's Kalman filter (`track/kalman.rs`) is predicted to `t`,
//!    scaled by the real gap since its last frame (frames come at a few fps
//!    and irregularly, so "one step per frame" would be wrong).
//! 2. **First pass:** detections with `score >= high_thresh` are matched to
//!    all tracks (tentative, confirmed and lost) by IoU of the predicted box,
//!    gated at `match_iou`. Both boxes are first grown by `match_buffer` of
//!    their size on every side (the "buffered IoU" of C-BIoU): at 3-5 fps a
//!    walking person moves most of its width between frames, and a track seen
//!    once has no velocity yet, so plain IoU with the last position would
//!    often be zero and the object would restart as a new track every frame.
//!    **Motion consistency** (OC-SORT's observation-centric momentum, as a
//!    speed check): for a track that has been moving steadily (at least
//!    `motion_min_speed` heights/s, measured on its own matched detections
//!    over `motion_window_s`), a pair costs extra when the detection implies
//!    the track lost more than `motion_tol` heights/s of its speed along its
//!    direction of travel since its previous observation, i.e. stopped dead
//!    or turned back within a fraction of a second, which people do not do.
//!    Cost `motion_weight` per height/s beyond the tolerance (the second
//!    pass adds the same cost). This is what
//!    happens when a person walks behind a post and their track is handed
//!    to someone stepping out from behind it the other way: without the
//!    check the track latches onto the other person and the real one comes
//!    back as a new track, already past a counting line.
//! 3. **Second pass:** detections with `low_thresh <= score < high_thresh`
//!    are matched to the confirmed, currently tracked (not lost) tracks left
//!    over, gated at the stricter `low_match_iou`. This is ByteTrack's key
//!    idea: a blurred or half-occluded object scores low, but a low score
//!    right where a known track is predicted is still that object. Lost and
//!    tentative tracks are excluded because a low-score box is not evidence
//!    enough to revive or confirm anything.
//! 4. **Re-identification pass (opt-in, `reid_speed > 0`):** high
//!    detections still unmatched are matched to lost tracks by the distance
//!    of box centres in units of the track's height, gated at `reid_speed`
//!    heights per second since the track was last seen (at least
//!    `reid_min_gate`), heights within a factor `reid_max_scale`. IoU cannot
//!    re-find an object after an occlusion: a person walking behind a post is
//!    seen shrinking (partial boxes) before disappearing, which corrupts the
//!    velocity, and a second later the prediction no longer overlaps it, so
//!    it comes back as a new track (a new event). Off by default because on
//!    PETS09-S2L1 (`docs/evaluation.md`) it cut the number of ids (28 → 24)
//!    but attached some lost tracks to the wrong person, lowering IDF1.
//! 5. Unmatched high detections with `score >= new_track_thresh` start new
//!    tentative tracks.
//!
//! Assignment is optimal (`track/assign.rs`, Hungarian with dummy rows/columns) on
//! cost `1 - IoU`, not greedy. **Matching is class-aware:** a track keeps
//! the class of the detection that started it and only matches detections
//! of that class. The alternative (class-agnostic matching, class by vote)
//! survives detector class flips, but it lets a person track jump onto an
//! overlapping bicycle; downstream events are per class, so a class change
//! would be a different event anyway. Class-aware also splits the problem
//! into small per-class matrices.
//!
//! Lifecycle: `Tentative` until `min_hits` matched frames (a tentative track
//! unmatched even once is deleted, so single-frame flicker never confirms) →
//! `Confirmed`; unmatched → `Lost` (still predicted, can be re-found by the
//! first pass); dropped once lost for more than `max_lost_s` seconds since
//! it was last seen, and such a track is dropped *before* matching, so it
//! is never re-found beyond `max_lost_s` (the event engine has ended its
//! event by then). Ids are `u64`, increasing per tracker, never reused.
//!
//! **Riders** ([`Tracker::update_with_riders`]): the traffic stage folds a
//! `person` riding a motorcycle or bicycle into the vehicle's detection and
//! counts them; a track remembers the **largest** rider count of any
//! detection matched to it over its life ([`Tracker::riders`]). Not the
//! latest: a rider's box is often missed or not paired for a frame (hidden
//! by the driver, cut by the vehicle box), and a second passenger is seen
//! in a few frames at best, so the latest count flickers and would
//! under-count; people rarely get on or off a moving vehicle within a track.
//! The price: a pairing that was wrong for a frame stays (the pairing rule
//! in `traffic.rs` is strict for that reason). Tracks of other classes
//! report 0.

mod assign;
mod kalman;

use std::collections::{BTreeMap, VecDeque};

use crate::frame::{BBox, Detection};
use kalman::KalmanBox;

/// Invalid tracker settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrackConfigError {
    #[error("tracker setting {name} = {value} is out of range")]
    OutOfRange { name: &'static str, value: f64 },
    #[error("tracker low_thresh {low} must not exceed high_thresh {high}")]
    LowAboveHigh { low: f32, high: f32 },
    #[error("tracker max_lost_s = {0} must be finite and >= 0")]
    MaxLost(f64),
    #[error("tracker min_hits must be >= 1")]
    MinHits,
}

/// Tracker settings. Defaults follow ByteTrack, adjusted for a few fps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score take part in the first pass.
    pub high_thresh: f32,
    /// Detections below this score are ignored entirely.
    pub low_thresh: f32,
    /// An unmatched high detection must reach this score to start a track;
    /// higher than `high_thresh` so that borderline boxes can extend tracks
    /// but not create them.
    pub new_track_thresh: f32,
    /// Minimum IoU between a predicted box and a detection in the first
    /// pass (cost `1 - IoU <= 1 - match_iou`). Low, because at a few fps
    /// objects move a good part of their size between frames. 0.13 with
    /// `match_buffer` 0.14 since the aspect-kept input (2026-12-07): two
    /// equal boxes that just touch then score 0.14 / 1.14 = 0.123, below
    /// the gate, so a lost track still cannot take its touching neighbour,
    /// and on PETS09-S2L1 at 5 fps IDF1 went 77.2 % → 86.3 % (ID switches
    /// 24 → 21) on the new detections, 84.5 % → 87.5 % on the squashed
    /// ones (`docs/evaluation.md`).
    pub match_iou: f32,
    /// First-pass boxes are grown by this fraction of their width/height on
    /// each side before the IoU (0 = plain IoU). See the module docs.
    /// 0.14 (with `match_iou` 0.13): 0.3 let a lost track grab a different
    /// person walking right next to it (PETS09-S2L1 at 5 fps, ID switches
    /// 28 → 22, IDF1 75.3 % → 78.1 % with 0.2); the gate must stay above
    /// `b / (1 + b)`, the score of two touching boxes (`docs/evaluation.md`).
    pub match_buffer: f32,
    /// Minimum IoU in the second (low-score) pass: stricter, since the
    /// detection itself is weak evidence.
    pub low_match_iou: f32,
    /// Matched frames needed to turn a tentative track into a confirmed one.
    pub min_hits: u32,
    /// A lost track is dropped (before matching) when
    /// `t - last_seen > max_lost_s`. Keep this
    /// equal to (or below) the event engine's `end_after_s`, so a track is
    /// not re-found after its event has already ended.
    pub max_lost_s: f64,
    /// Re-identification pass: how fast (track heights per second since the
    /// track was last seen) the gate on the centre distance grows. 0 turns
    /// the pass off (the default). A walking person covers about one body
    /// height per second, so 1.0 is a sensible value when it is on.
    pub reid_speed: f32,
    /// Smallest re-identification gate, in track heights.
    pub reid_min_gate: f32,
    /// Largest height ratio (either way) between a track and a detection
    /// re-identified as it.
    pub reid_max_scale: f32,
    /// Motion-consistency cost in the IoU passes, per track height per
    /// second of speed lost along the track's direction beyond
    /// `motion_tol` (0 = off; see the module docs). 3 with the other
    /// defaults: on PETS09-S2L1 it removed the identity switches behind the
    /// lamp post (`docs/evaluation.md`).
    pub motion_weight: f32,
    /// Speed loss along the direction of travel (track heights per second)
    /// tolerated before the motion-consistency cost starts: detector box
    /// jitter plus what a walking person can really change in a fraction
    /// of a second.
    pub motion_tol: f32,
    /// Time span (seconds) of the observations the track's recent velocity
    /// is measured over.
    pub motion_window_s: f64,
    /// The motion-consistency cost only applies to tracks whose measured
    /// speed is at least this (track heights per second): below it, the
    /// "velocity" of a standing or slowly milling person is box jitter.
    pub motion_min_speed: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_thresh: 0.5,
            low_thresh: 0.1,
            new_track_thresh: 0.6,
            match_iou: 0.13,
            match_buffer: 0.14,
            low_match_iou: 0.5,
            min_hits: 3,
            max_lost_s: 2.0,
            reid_speed: 0.0,
            reid_min_gate: 0.5,
            reid_max_scale: 1.5,
            motion_weight: 3.0,
            motion_tol: 0.8,
            motion_window_s: 1.0,
            motion_min_speed: 0.7,
        }
    }
}

impl TrackerConfig {
    /// Checks ranges and ordering; does no I/O.
    pub fn validate(&self) -> Result<(), TrackConfigError> {
        for (name, value) in [
            ("high_thresh", self.high_thresh),
            ("low_thresh", self.low_thresh),
            ("new_track_thresh", self.new_track_thresh),
            ("match_iou", self.match_iou),
            ("low_match_iou", self.low_match_iou),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(TrackConfigError::OutOfRange {
                    name,
                    value: f64::from(value),
                });
            }
        }
        if !(self.match_buffer.is_finite() && (0.0..=2.0).contains(&self.match_buffer)) {
            return Err(TrackConfigError::OutOfRange {
                name: "match_buffer",
                value: f64::from(self.match_buffer),
            });
        }
        for (name, value, lo, hi) in [
            ("reid_speed", self.reid_speed, 0.0, 100.0),
            ("reid_min_gate", self.reid_min_gate, 0.0, 100.0),
            ("reid_max_scale", self.reid_max_scale, 1.0, 100.0),
            ("motion_weight", self.motion_weight, 0.0, 100.0),
            ("motion_tol", self.motion_tol, 0.0, 100.0),
            ("motion_min_speed", self.motion_min_speed, 0.0, 100.0),
        ] {
            if !(value.is_finite() && (lo..=hi).contains(&value)) {
                return Err(TrackConfigError::OutOfRange {
                    name,
                    value: f64::from(value),
                });
            }
        }
        if !(self.motion_window_s.is_finite() && (0.0..=10.0).contains(&self.motion_window_s)) {
            return Err(TrackConfigError::OutOfRange {
                name: "motion_window_s",
                value: self.motion_window_s,
            });
        }
        if self.low_thresh > self.high_thresh {
            return Err(TrackConfigError::LowAboveHigh {
                low: self.low_thresh,
                high: self.high_thresh,
            });
        }
        if !(self.max_lost_s.is_finite() && self.max_lost_s >= 0.0) {
            return Err(TrackConfigError::MaxLost(self.max_lost_s));
        }
        if self.min_hits == 0 {
            return Err(TrackConfigError::MinHits);
        }
        Ok(())
    }
}

/// Where a track is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackState {
    /// Seen in fewer than `min_hits` consecutive frames; may be flicker.
    Tentative,
    /// Confirmed and matched in the latest frame it was updated with.
    Confirmed,
    /// Confirmed earlier, unmatched now; still predicted and re-findable.
    Lost,
}

/// A snapshot of one live track after an update.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackView {
    pub id: u64,
    pub class_id: u32,
    pub state: TrackState,
    /// The matched detection's box in this frame, else the Kalman prediction.
    /// The raw detection (not the filtered estimate) is reported because it is
    /// what the snapshot will show.
    pub bbox: BBox,
    /// This frame's detection score; 0 when unmatched.
    pub score: f32,
    /// Whether a detection was matched to this track in this frame.
    pub matched: bool,
    /// Total matched frames.
    pub hits: u32,
    /// Media time of the first detection.
    pub first_seen: f64,
    /// Media time of the latest matched detection.
    pub last_seen: f64,
}

#[derive(Clone, Debug)]
struct Track {
    id: u64,
    class_id: u32,
    state: TrackState,
    kf: KalmanBox,
    /// Media time the filter state refers to.
    kf_t: f64,
    hits: u32,
    first_seen: f64,
    last_seen: f64,
    /// Matched detection of the latest update, if any.
    det: Option<(BBox, f32)>,
    /// Recent matched observations, oldest first: the last
    /// `motion_window_s` + [`HISTORY_S`] seconds, at most [`HISTORY_MAX`].
    obs: VecDeque<Obs>,
    /// Largest rider count of a detection matched to it (module docs).
    riders: u32,
}

/// One matched observation of a track: media time, box centre and height.
#[derive(Clone, Copy, Debug)]
struct Obs {
    t: f64,
    cx: f64,
    cy: f64,
    h: f64,
}

impl Obs {
    fn of(t: f64, b: &BBox) -> Self {
        let (cx, cy) = b.center();
        Self {
            t,
            cx: f64::from(cx),
            cy: f64::from(cy),
            h: f64::from(b.height()),
        }
    }
}

/// Seconds of observation history kept per track beyond `motion_window_s`
/// (covers the reference gap with room to spare).
const HISTORY_S: f64 = 2.0;
/// At most this many observations are kept per track, whatever the frame
/// rate or the timestamps (a stream whose time stands still must not grow
/// the history without bound). 256 is 8.5 s at 30 fps.
const HISTORY_MAX: usize = 256;
/// The motion check measures the candidate's implied velocity from the
/// track's latest observation at least this long before the current frame,
/// so that at 10 fps a one-frame box jitter is not read as a velocity change.
const MOTION_MIN_DT: f64 = 0.15;

impl Track {
    fn view(&self) -> TrackView {
        let (bbox, score, matched) = match self.det {
            Some((b, s)) => (b, s, true),
            None => (self.kf.bbox(), 0.0, false),
        };
        TrackView {
            id: self.id,
            class_id: self.class_id,
            state: self.state,
            bbox,
            score,
            matched,
            hits: self.hits,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
    }
}

/// The multi-object tracker of one camera.
#[derive(Clone, Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    /// Live tracks, in id order (new ids are appended, removal keeps order).
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// A tracker with no tracks; the first id handed out is 1. The config is
    /// used as given: call [`TrackerConfig::validate`] first to reject nonsense.
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Feeds one frame's detections at media time `t` and returns the views
    /// of all live tracks (lost ones included, flagged), ordered by id.
    ///
    /// Detections with empty or non-finite boxes, or a score below
    /// `low_thresh`, are ignored. A `t` earlier than a track's last update
    /// does not move its prediction. No detection carries riders: see
    /// [`Self::update_with_riders`].
    pub fn update(&mut self, t: f64, dets: &[Detection]) -> Vec<TrackView> {
        self.update_with_riders(t, dets, &[])
    }

    /// [`Self::update`] with the rider count of each detection (`riders[i]`
    /// belongs to `dets[i]`; missing entries count 0), as the traffic stage
    /// makes them. A track keeps the largest count matched to it
    /// ([`Self::riders`]; see the module docs).
    #[allow(
        clippy::too_many_lines,
        reason = "the ByteTrack passes in order over shared scratch state; to be split in a follow-up"
    )]
    pub fn update_with_riders(
        &mut self,
        t: f64,
        dets: &[Detection],
        riders: &[u32],
    ) -> Vec<TrackView> {
        // A lost track whose gap already exceeds `max_lost_s` is dropped
        // before matching: re-finding it now would attach an object to a
        // track (and an event) that has already timed out. Only checking
        // after matching let a track lost for `max_lost_s` plus one frame
        // interval be re-found (at 5 fps: 2.2 s for a 2 s limit).
        let max_lost = self.cfg.max_lost_s;
        self.tracks
            .retain(|tr| !(tr.state == TrackState::Lost && t - tr.last_seen > max_lost));
        for tr in &mut self.tracks {
            if t.is_finite() && t > tr.kf_t {
                tr.kf.predict(t - tr.kf_t);
                tr.kf_t = t;
            }
            tr.det = None;
        }

        let usable = |d: &&Detection| {
            let b = &d.bbox;
            [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite())
                && b.width() > 0.0
                && b.height() > 0.0
                && d.score >= self.cfg.low_thresh
        };
        // Indices into `dets` (and `riders`), split by score.
        let (high_at, low_at): (Vec<usize>, Vec<usize>) = (0..dets.len())
            .filter(|&i| usable(&&dets[i]))
            .partition(|&i| dets[i].score >= self.cfg.high_thresh);
        let high: Vec<&Detection> = high_at.iter().map(|&i| &dets[i]).collect();
        let low: Vec<&Detection> = low_at.iter().map(|&i| &dets[i]).collect();
        let riders_of = |i: usize| riders.get(i).copied().unwrap_or(0);

        let predicted: Vec<BBox> = self.tracks.iter().map(|tr| tr.kf.bbox()).collect();

        // First pass: high detections vs every track.
        let all: Vec<usize> = (0..self.tracks.len()).collect();
        let first = self.associate(
            t,
            &all,
            &predicted,
            &high,
            self.cfg.match_iou,
            self.cfg.match_buffer,
        );
        let mut track_matched = vec![false; self.tracks.len()];
        let mut high_used = vec![false; high.len()];
        for &(ti, di) in &first {
            track_matched[ti] = true;
            high_used[di] = true;
        }

        // Second pass: low detections vs confirmed, not-lost leftovers.
        let leftovers: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&ti| !track_matched[ti] && self.tracks[ti].state == TrackState::Confirmed)
            .collect();
        let second = self.associate(t, &leftovers, &predicted, &low, self.cfg.low_match_iou, 0.0);
        for &(ti, _) in &second {
            track_matched[ti] = true;
        }

        // Re-identification: leftover high detections vs confirmed or lost
        // tracks still unmatched, by centre distance (see the module docs).
        let reid = self.reidentify(t, &track_matched, &predicted, &high, &high_used);
        for &(ti, di) in &reid {
            track_matched[ti] = true;
            high_used[di] = true;
        }

        let min_hits = self.cfg.min_hits;
        let keep_s = self.cfg.motion_window_s + HISTORY_S;
        let matches = first
            .iter()
            .map(|&(ti, di)| (ti, high[di], riders_of(high_at[di])))
            .chain(
                second
                    .iter()
                    .map(|&(ti, di)| (ti, low[di], riders_of(low_at[di]))),
            )
            .chain(
                reid.iter()
                    .map(|&(ti, di)| (ti, high[di], riders_of(high_at[di]))),
            );
        for (ti, det, det_riders) in matches {
            let tr = &mut self.tracks[ti];
            tr.riders = tr.riders.max(det_riders);
            tr.kf.update(&det.bbox);
            tr.hits = tr.hits.saturating_add(1);
            tr.last_seen = t;
            tr.det = Some((det.bbox, det.score));
            tr.obs.push_back(Obs::of(t, &det.bbox));
            while tr.obs.len() > HISTORY_MAX
                || (tr.obs.len() > 1 && tr.obs.front().is_some_and(|o| t - o.t > keep_s))
            {
                tr.obs.pop_front();
            }
            if tr.state == TrackState::Lost || tr.hits >= min_hits {
                tr.state = TrackState::Confirmed;
            }
        }

        // Unmatched: tentative dies, confirmed goes lost, lost may expire.
        let max_lost = self.cfg.max_lost_s;
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (tr, matched) in self.tracks.iter_mut().zip(track_matched) {
            let alive = if matched {
                true
            } else {
                match tr.state {
                    TrackState::Tentative => false,
                    TrackState::Confirmed | TrackState::Lost => {
                        tr.state = TrackState::Lost;
                        let expired = t - tr.last_seen > max_lost;
                        !expired
                    }
                }
            };
            keep.push(alive);
        }
        let mut keep = keep.into_iter();
        self.tracks.retain(|_| keep.next().unwrap_or(false));

        // New tentative tracks from confident leftovers.
        for ((det, _), &at) in high
            .iter()
            .zip(high_used)
            .zip(&high_at)
            .filter(|((d, used), _)| !used && d.score >= self.cfg.new_track_thresh)
        {
            let Some(kf) = KalmanBox::new(&det.bbox) else {
                continue;
            };
            let state = if min_hits <= 1 {
                TrackState::Confirmed
            } else {
                TrackState::Tentative
            };
            self.tracks.push(Track {
                id: self.next_id,
                class_id: det.class_id,
                state,
                kf,
                kf_t: t,
                hits: 1,
                first_seen: t,
                last_seen: t,
                det: Some((det.bbox, det.score)),
                obs: VecDeque::from([Obs::of(t, &det.bbox)]),
                riders: riders_of(at),
            });
            self.next_id += 1;
        }

        self.tracks.iter().map(Track::view).collect()
    }

    /// Views of the live tracks as of the latest update, ordered by id.
    pub fn tracks(&self) -> impl Iterator<Item = TrackView> + '_ {
        self.tracks.iter().map(Track::view)
    }

    /// The rider count of live track `id`: the largest count of a detection
    /// matched to it so far (see the module docs); 0 for a track that never
    /// carried riders and for an unknown id.
    pub fn riders(&self, id: u64) -> u32 {
        self.tracks
            .binary_search_by_key(&id, |tr| tr.id)
            .map_or(0, |i| self.tracks[i].riders)
    }

    /// Number of live tracks (any state).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Optimal class-aware matching of `track_idx` (indices into
    /// `self.tracks`) to `dets`, gated at `min_iou`. Returns
    /// `(track index, detection index)` pairs. Boxes are grown by `buffer`
    /// of their size per side before the IoU.
    fn associate(
        &self,
        t: f64,
        track_idx: &[usize],
        predicted: &[BBox],
        dets: &[&Detection],
        min_iou: f32,
        buffer: f32,
    ) -> Vec<(usize, usize)> {
        // Per-class sub-problems: classes never match across, so this is
        // exact and keeps the matrices small. BTreeMap for determinism.
        let mut by_class: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for &ti in track_idx {
            by_class
                .entry(self.tracks[ti].class_id)
                .or_default()
                .0
                .push(ti);
        }
        for (di, d) in dets.iter().enumerate() {
            if let Some(entry) = by_class.get_mut(&d.class_id) {
                entry.1.push(di);
            }
        }
        let limit = f64::from(1.0 - min_iou);
        let mut out = Vec::new();
        for (rows, cols) in by_class.values() {
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            let cost: Vec<f64> = rows
                .iter()
                .flat_map(|&ti| {
                    cols.iter().map(move |&di| {
                        let (p, d) = (grow(&predicted[ti], buffer), grow(&dets[di].bbox, buffer));
                        let iou_cost = 1.0 - f64::from(p.iou(&d));
                        // Beyond the gate already: the (non-negative)
                        // motion cost cannot change that, skip it.
                        if iou_cost > limit {
                            return iou_cost;
                        }
                        iou_cost + self.motion_penalty(&self.tracks[ti], &dets[di].bbox, t)
                    })
                })
                .collect();
            for (r, c) in assign::solve_gated(&cost, rows.len(), cols.len(), limit) {
                out.push((rows[r], cols[c]));
            }
        }
        out
    }
}

impl Tracker {
    /// Motion-consistency cost of matching `tr` to box `b` at time `t`
    /// (0 when `motion_weight` is 0, or the track is too young to have a
    /// measured velocity, or slower than `motion_min_speed`).
    ///
    /// The track's recent velocity `v_o` is measured on its own matched
    /// observations (observation-centric, as in OC-SORT, not from the Kalman
    /// state, which a single wrong match already bends): from the latest
    /// observation `r` at least [`MOTION_MIN_DT`] before `t` back to the
    /// latest one at least `motion_window_s` before `r`. The velocity the
    /// match implies is `v_c = (b - r) / (t - t_r)`. A person cannot change
    /// velocity by a body height per second within a fifth of a second; when
    /// a match implies that, the track is almost always being handed to a
    /// different object (typically someone walking the other way while the
    /// real object is occluded). Only the speed lost along `v_o` counts
    /// (`|v_o| - v_c · v_o / |v_o|`): sideways box jitter and partial boxes
    /// of people in groups are common, and penalising any velocity change
    /// (tried first) fragmented tracks. The cost is
    /// `motion_weight × max(0, lost / h - motion_tol)`, with `h` the height
    /// at `r` and box centres as positions.
    fn motion_penalty(&self, tr: &Track, b: &BBox, t: f64) -> f64 {
        let c = &self.cfg;
        if c.motion_weight <= 0.0 {
            return 0.0;
        }
        let Some(r) = tr.obs.iter().rev().find(|o| t - o.t >= MOTION_MIN_DT) else {
            return 0.0;
        };
        let Some(o) = tr
            .obs
            .iter()
            .rev()
            .find(|o| r.t - o.t >= c.motion_window_s.max(MOTION_MIN_DT))
        else {
            return 0.0;
        };
        let h = r.h.max(1.0);
        let (dt_o, dt_c) = (r.t - o.t, t - r.t);
        let (vox, voy) = ((r.cx - o.cx) / dt_o, (r.cy - o.cy) / dt_o);
        let (bx, by) = b.center();
        let (vcx, vcy) = ((f64::from(bx) - r.cx) / dt_c, (f64::from(by) - r.cy) / dt_c);
        let so = vox.hypot(voy);
        if so / h < f64::from(c.motion_min_speed) {
            return 0.0;
        }
        let dv = if so > 0.0 {
            (so - (vcx * vox + vcy * voy) / so).max(0.0) / h
        } else {
            0.0
        };
        let p = f64::from(c.motion_weight) * (dv - f64::from(c.motion_tol)).max(0.0);
        if p.is_finite() { p } else { 0.0 }
    }

    /// The re-identification pass: optimal class-aware matching of the
    /// unused `high` detections to the unmatched non-tentative tracks, on
    /// cost = centre distance / track height, gated per track at
    /// `max(reid_min_gate, reid_speed × (t - last_seen))` and by height ratio.
    fn reidentify(
        &self,
        t: f64,
        track_matched: &[bool],
        predicted: &[BBox],
        high: &[&Detection],
        high_used: &[bool],
    ) -> Vec<(usize, usize)> {
        let c = &self.cfg;
        if c.reid_speed <= 0.0 {
            return Vec::new();
        }
        let rows: Vec<usize> = (0..self.tracks.len())
            .filter(|&ti| !track_matched[ti] && self.tracks[ti].state == TrackState::Lost)
            .collect();
        let cols: Vec<usize> = (0..high.len()).filter(|&di| !high_used[di]).collect();
        if rows.is_empty() || cols.is_empty() {
            return Vec::new();
        }
        // Costs above the gate are "impossible"; scale every cost by its
        // row's gate so one gated solve (limit 1) handles per-track gates.
        let mut cost = Vec::with_capacity(rows.len() * cols.len());
        for &ti in &rows {
            let tr = &self.tracks[ti];
            let p = predicted[ti];
            let h = f64::from(p.height()).max(1.0);
            let since = (t - tr.last_seen).max(0.0);
            let gate = f64::from(c.reid_min_gate).max(f64::from(c.reid_speed) * since);
            let (pcx, pcy) = p.center();
            for &di in &cols {
                let d = high[di];
                let scale = f64::from(d.bbox.height()) / h;
                let max_scale = f64::from(c.reid_max_scale);
                let ok = d.class_id == tr.class_id
                    && gate > 0.0
                    && scale.is_finite()
                    && scale <= max_scale
                    && scale >= 1.0 / max_scale;
                let (dcx, dcy) = d.bbox.center();
                let dist = f64::from(dcx - pcx).hypot(f64::from(dcy - pcy)) / h;
                cost.push(if ok { dist / gate } else { f64::INFINITY });
            }
        }
        assign::solve_gated(&cost, rows.len(), cols.len(), 1.0)
            .into_iter()
            .map(|(r, k)| (rows[r], cols[k]))
            .collect()
    }
}

/// `b` grown by `frac` of its width/height on every side.
fn grow(b: &BBox, frac: f32) -> BBox {
    if frac == 0.0 {
        return *b;
    }
    let (dx, dy) = (b.width() * frac, b.height() * frac);
    BBox::new(b.x1 - dx, b.y1 - dy, b.x2 + dx, b.y2 + dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, score: f32, x: f32, y: f32, w: f32, h: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: BBox::new(x, y, x + w, y + h),
        }
    }

    /// Tiny deterministic PRNG (xorshift64*), uniform in [-1, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    #[test]
    fn default_config_is_valid_and_validation_catches_nonsense() {
        assert_eq!(TrackerConfig::default().validate(), Ok(()));
        let bad = TrackerConfig {
            low_thresh: 0.7,
            ..TrackerConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(TrackConfigError::LowAboveHigh { .. })
        ));
        let bad = TrackerConfig {
            match_iou: f32::NAN,
            ..TrackerConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(TrackConfigError::OutOfRange { .. })
        ));
        let bad = TrackerConfig {
            min_hits: 0,
            ..TrackerConfig::default()
        };
        assert_eq!(bad.validate(), Err(TrackConfigError::MinHits));
    }

    #[test]
    fn confirms_after_min_hits_and_keeps_id() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut states = Vec::new();
        for i in 0..6 {
            let v = tr.update(
                i as f64 * 0.2,
                &[det(0, 0.9, 100.0 + 10.0 * i as f32, 100.0, 50.0, 100.0)],
            );
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].id, 1);
            assert!(v[0].matched);
            assert_eq!(v[0].hits, i + 1);
            states.push(v[0].state);
        }
        use TrackState::*;
        assert_eq!(
            states,
            [
                Tentative, Tentative, Confirmed, Confirmed, Confirmed, Confirmed
            ]
        );
    }

    #[test]
    fn two_objects_crossing_keep_their_ids() {
        // Same class, same size, opposite directions, slightly offset in y so
        // the boxes overlap heavily while they pass each other.
        let mut tr = Tracker::new(TrackerConfig::default());
        let a_at = |i: usize| 100.0 + 40.0 * i as f32; // moving right
        let b_at = |i: usize| 900.0 - 40.0 * i as f32; // moving left
        let mut ids = None;
        for i in 0..21 {
            let t = i as f64 * 0.2;
            let v = tr.update(
                t,
                &[
                    det(0, 0.9, a_at(i), 200.0, 60.0, 120.0),
                    det(0, 0.85, b_at(i), 230.0, 60.0, 120.0),
                ],
            );
            assert_eq!(v.len(), 2, "frame {i}: {v:?}");
            assert!(v.iter().all(|x| x.matched));
            // Identify each object by the box nearest to its true corner.
            let nearest = |x: f32, y: f32| {
                v.iter()
                    .min_by(|p, q| {
                        let d = |b: &BBox| (b.x1 - x).abs() + (b.y1 - y).abs();
                        d(&p.bbox).total_cmp(&d(&q.bbox))
                    })
                    .map(|tv| tv.id)
            };
            let (a, b) = (nearest(a_at(i), 200.0), nearest(b_at(i), 230.0));
            assert_ne!(a, b, "frame {i}");
            match ids {
                None => ids = Some((a, b)),
                Some(prev) => assert_eq!(prev, (a, b), "ids swapped at frame {i}"),
            }
        }
    }

    #[test]
    fn missing_frames_keep_id_via_prediction() {
        let mut tr = Tracker::new(TrackerConfig::default());
        // 150 px/s to the right, 5 fps, frames 8 and 9 missing.
        let at = |i: usize| det(2, 0.9, 50.0 + 30.0 * i as f32, 300.0, 40.0, 80.0);
        for i in 0..16 {
            let t = i as f64 * 0.2;
            let dets = if i == 8 || i == 9 {
                vec![]
            } else {
                vec![at(i)]
            };
            let v = tr.update(t, &dets);
            assert_eq!(v.len(), 1, "frame {i}");
            let tv = &v[0];
            assert_eq!(tv.id, 1, "frame {i}");
            if i == 8 || i == 9 {
                assert_eq!(tv.state, TrackState::Lost);
                assert!(!tv.matched);
                assert_eq!(tv.score, 0.0);
                assert_eq!(tv.last_seen, 7.0 * 0.2);
                // The reported box is the prediction and follows the motion.
                assert!(
                    tv.bbox.iou(&at(i).bbox) > 0.6,
                    "pred iou {}",
                    tv.bbox.iou(&at(i).bbox)
                );
            } else if i >= 2 {
                assert_eq!(tv.state, TrackState::Confirmed);
                assert!(tv.matched);
            }
        }
    }

    #[test]
    fn flicker_never_confirms() {
        let mut tr = Tracker::new(TrackerConfig::default());
        for i in 0..20 {
            // A box that appears every other frame (and a one-off at frame 11).
            let mut dets = Vec::new();
            if i % 2 == 0 {
                dets.push(det(0, 0.95, 300.0, 300.0, 50.0, 50.0));
            }
            if i == 11 {
                dets.push(det(1, 0.95, 10.0, 10.0, 30.0, 30.0));
            }
            let v = tr.update(i as f64 * 0.2, &dets);
            assert!(
                v.iter().all(|x| x.state == TrackState::Tentative),
                "frame {i}: {v:?}"
            );
            assert_eq!(v.len(), dets.len());
        }
    }

    #[test]
    fn low_score_second_pass_keeps_track_alive() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let at = |i: usize, s: f32| det(0, s, 100.0 + 20.0 * i as f32, 100.0, 50.0, 100.0);
        for i in 0..5 {
            tr.update(i as f64 * 0.2, &[at(i, 0.9)]);
        }
        // One low-confidence frame (blur): matched, stays confirmed.
        let v = tr.update(1.0, &[at(5, 0.3)]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].id, 1);
        assert!(v[0].matched);
        assert_eq!(v[0].state, TrackState::Confirmed);
        assert!((v[0].score - 0.3).abs() < 1e-6);
        // Below low_thresh it is ignored: the track goes lost.
        let v = tr.update(1.2, &[at(6, 0.05)]);
        assert_eq!(v[0].state, TrackState::Lost);
        // Low scores never start tracks, nor confirm tentative ones.
        let mut tr = Tracker::new(TrackerConfig::default());
        assert!(tr.update(0.0, &[at(0, 0.4)]).is_empty());
        tr.update(0.2, &[at(1, 0.9)]);
        let v = tr.update(0.4, &[at(2, 0.3)]);
        assert!(
            v.is_empty(),
            "tentative track should die without a high match: {v:?}"
        );
    }

    #[test]
    fn low_score_does_not_revive_lost_track() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let at = |i: usize, s: f32| det(0, s, 100.0 + 20.0 * i as f32, 100.0, 50.0, 100.0);
        for i in 0..4 {
            tr.update(i as f64 * 0.2, &[at(i, 0.9)]);
        }
        assert_eq!(tr.update(0.8, &[])[0].state, TrackState::Lost);
        let v = tr.update(1.0, &[at(5, 0.3)]);
        assert_eq!(v[0].state, TrackState::Lost);
        let v = tr.update(1.2, &[at(6, 0.9)]);
        assert_eq!((v[0].id, v[0].state), (1, TrackState::Confirmed));
    }

    #[test]
    fn irregular_dt_is_followed() {
        let mut tr = Tracker::new(TrackerConfig::default());
        // 200 px/s with gaps between 0.05 s and 0.8 s; a 0.8 s gap moves the
        // box by 3.2 widths, so a per-frame motion model would lose it.
        let times = [
            0.0, 0.2, 0.25, 0.6, 0.7, 1.5, 1.55, 1.9, 2.7, 2.8, 3.3, 3.35,
        ];
        for (i, &t) in times.iter().enumerate() {
            let x = 50.0 + 200.0 * t as f32;
            let v = tr.update(t, &[det(0, 0.9, x, 200.0, 50.0, 100.0)]);
            assert_eq!(v.len(), 1, "t={t}: {v:?}");
            assert_eq!(v[0].id, 1, "t={t}");
            assert!(v[0].matched);
            if i >= 2 {
                assert_eq!(v[0].state, TrackState::Confirmed);
            }
        }
        // Out-of-order / duplicate time does not break anything.
        let v = tr.update(3.35, &[det(0, 0.9, 720.0, 200.0, 50.0, 100.0)]);
        assert_eq!((v.len(), v[0].id), (1, 1));
    }

    #[test]
    fn lost_tracks_expire_after_max_lost_s() {
        let cfg = TrackerConfig {
            max_lost_s: 1.0,
            ..TrackerConfig::default()
        };
        let mut tr = Tracker::new(cfg);
        for i in 0..4 {
            tr.update(i as f64 * 0.2, &[det(0, 0.9, 100.0, 100.0, 50.0, 50.0)]);
        }
        // last_seen = 0.6: alive while t - 0.6 <= 1.0.
        assert_eq!(tr.update(1.0, &[]).len(), 1);
        assert_eq!(tr.update(1.6, &[]).len(), 1);
        assert!(tr.update(1.7, &[]).is_empty());
        assert!(tr.is_empty());
        // A new object gets a fresh id.
        tr.update(1.8, &[det(0, 0.9, 100.0, 100.0, 50.0, 50.0)]);
        assert_eq!(tr.tracks().next().map(|v| v.id), Some(2));
    }

    /// A lost track is re-findable while `t - last_seen <= max_lost_s` and
    /// not after, even when the previous frame left it alive: at 4 fps the
    /// update at gap 2.0 s keeps it, and the object reappearing at gap
    /// 2.25 s (beyond the 2 s limit, when the event engine has already
    /// ended its event) must start a new track, not revive the old one.
    #[test]
    fn lost_track_is_not_refound_beyond_max_lost_s() {
        let run = |reappear: f64| {
            let cfg = TrackerConfig {
                max_lost_s: 2.0,
                ..TrackerConfig::default()
            };
            let mut tr = Tracker::new(cfg);
            let d = det(0, 0.9, 100.0, 100.0, 40.0, 100.0);
            for i in 0..3 {
                tr.update(f64::from(i) * 0.25, std::slice::from_ref(&d));
            }
            // last_seen = 0.5; empty frames every 0.25 s up to before `reappear`.
            let mut t = 0.75;
            while t < reappear {
                let v = tr.update(t, &[]);
                assert_eq!(v.len(), 1, "t = {t}");
                assert_eq!(v[0].state, TrackState::Lost);
                t += 0.25;
            }
            let v = tr.update(reappear, std::slice::from_ref(&d));
            assert_eq!(v.len(), 1, "only the reappearing object is live");
            (v[0].id, v[0].state)
        };
        // Gap exactly max_lost_s: re-found.
        assert_eq!(run(2.5), (1, TrackState::Confirmed));
        // Gap beyond max_lost_s (previous update at gap 2.0 kept the track):
        // a new tentative track, the old one is gone.
        assert_eq!(run(2.75), (2, TrackState::Tentative));
    }

    #[test]
    fn matching_is_class_aware() {
        let mut tr = Tracker::new(TrackerConfig::default());
        for i in 0..3 {
            tr.update(i as f64 * 0.2, &[det(0, 0.9, 100.0, 100.0, 50.0, 100.0)]);
        }
        // Same place, different class: the old track goes lost, a new one starts.
        let v = tr.update(0.6, &[det(1, 0.9, 100.0, 100.0, 50.0, 100.0)]);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].id, v[0].class_id, v[0].state),
            (1, 0, TrackState::Lost)
        );
        assert_eq!(
            (v[1].id, v[1].class_id, v[1].state),
            (2, 1, TrackState::Tentative)
        );
    }

    #[test]
    fn ignores_bad_detections_and_new_track_threshold() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let v = tr.update(
            0.0,
            &[
                det(0, 0.9, 10.0, 10.0, 0.0, 10.0),
                det(0, 0.9, f32::NAN, 10.0, 5.0, 10.0),
                det(0, f32::NAN, 10.0, 10.0, 5.0, 10.0),
                det(0, 0.55, 10.0, 10.0, 5.0, 10.0), // high, but below new_track_thresh
            ],
        );
        assert!(v.is_empty());
        let v = tr.update(0.2, &[det(0, 0.6, 10.0, 10.0, 5.0, 10.0)]);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn min_hits_one_confirms_immediately() {
        let mut tr = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        });
        let v = tr.update(0.0, &[det(0, 0.9, 10.0, 10.0, 20.0, 20.0)]);
        assert_eq!(v[0].state, TrackState::Confirmed);
    }

    #[test]
    fn ids_stable_over_noisy_100_frame_run_with_5_objects() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        // (x0, y0, vx, vy px/s, w, h, class)
        let objects = [
            (50.0, 100.0, 60.0, 10.0, 40.0, 90.0, 0u32),
            (900.0, 150.0, -50.0, 5.0, 45.0, 100.0, 0),
            (300.0, 500.0, 80.0, -20.0, 120.0, 70.0, 2),
            (700.0, 450.0, -70.0, 0.0, 110.0, 65.0, 2),
            (500.0, 50.0, 0.0, 40.0, 35.0, 35.0, 16),
        ];
        let mut tr = Tracker::new(TrackerConfig::default());
        // object index -> the id seen for it, once confirmed.
        let mut owner: [Option<u64>; 5] = [None; 5];
        let mut t = 0.0f64;
        for frame in 0..100 {
            // Irregular 4-6 fps.
            t += 0.2 + 0.05 * f64::from(rng.next());
            let mut dets = Vec::new();
            let mut truth = Vec::new();
            for &(x0, y0, vx, vy, w, h, c) in &objects {
                let (x, y) = (x0 + vx * t as f32, y0 + vy * t as f32);
                truth.push(BBox::new(x, y, x + w, y + h));
                // ~7% misses after the first few frames.
                if frame > 4 && rng.next() > 0.86 {
                    continue;
                }
                let jitter = 0.04 * h;
                let score = (0.75 + 0.2 * rng.next()).clamp(0.0, 1.0);
                dets.push(Detection {
                    class_id: c,
                    score,
                    bbox: BBox::new(
                        x + jitter * rng.next(),
                        y + jitter * rng.next(),
                        x + w + jitter * rng.next(),
                        y + h + jitter * rng.next(),
                    ),
                });
            }
            // Clutter: a random one-frame false positive now and then.
            if rng.next() > 0.7 {
                let (x, y) = (600.0 + 500.0 * rng.next(), 400.0 + 300.0 * rng.next());
                dets.push(det(5, 0.7, x, y, 30.0, 30.0));
            }
            let views = tr.update(t, &dets);
            for v in views.iter().filter(|v| v.state == TrackState::Confirmed) {
                let (k, best) = truth
                    .iter()
                    .enumerate()
                    .map(|(k, b)| (k, b.iou(&v.bbox)))
                    .fold(
                        (usize::MAX, 0.0f32),
                        |acc, x| if x.1 > acc.1 { x } else { acc },
                    );
                assert!(
                    best > 0.5,
                    "frame {frame}: confirmed track {} matches no object",
                    v.id
                );
                match owner[k] {
                    None => owner[k] = Some(v.id),
                    Some(id) => assert_eq!(id, v.id, "frame {frame}: object {k} changed id"),
                }
            }
        }
        assert!(owner.iter().all(Option::is_some), "{owner:?}");
        let mut ids: Vec<u64> = owner.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 5);
        // All five are still tracked at the end.
        assert_eq!(
            tr.tracks()
                .filter(|v| v.state != TrackState::Tentative)
                .count(),
            5
        );
    }
    #[test]
    fn lost_track_is_not_handed_to_a_touching_neighbour() {
        // Object A stands still for 5 frames and is then missed (occluded)
        // for one frame, in which object B appears right next to it: boxes
        // touching, plain IoU 0. With too generous a buffer (0.3) B would
        // inherit A's id (an ID switch, seen on PETS09-S2L1); B must start
        // its own track, and A must keep its id when it reappears.
        let mut tr = Tracker::new(TrackerConfig::default());
        let a = det(0, 0.9, 100.0, 100.0, 50.0, 100.0);
        let b = det(0, 0.9, 150.0, 100.0, 50.0, 100.0);
        for i in 0..5 {
            tr.update(i as f64 * 0.2, std::slice::from_ref(&a));
        }
        let v = tr.update(1.0, std::slice::from_ref(&b));
        let a_view = v.iter().find(|x| x.id == 1).expect("A still alive");
        assert_eq!(a_view.state, TrackState::Lost, "{v:?}");
        assert!(!a_view.matched);
        let b_view = v.iter().find(|x| x.id != 1).expect("B gets its own track");
        assert_eq!(b_view.state, TrackState::Tentative);
        let v = tr.update(1.2, &[a.clone(), b.clone()]);
        let at = |id: u64| v.iter().find(|x| x.id == id).map(|x| x.bbox);
        assert_eq!(at(1), Some(a.bbox), "{v:?}");
        assert_eq!(at(b_view.id), Some(b.bbox), "{v:?}");
    }

    /// An object stands still (so its track has no velocity), goes behind an
    /// obstacle for 1 s and comes out `reappear_x - 200` px further right,
    /// too far for any IoU overlap with its predicted box. Returns the ids
    /// of the matched tracks after it reappears.
    fn occlusion_run(cfg: TrackerConfig, reappear_x: f32) -> Vec<u64> {
        let mut tr = Tracker::new(cfg);
        let mut t = 0.0;
        for _ in 0..8 {
            tr.update(t, &[det(0, 0.9, 200.0, 100.0, 40.0, 100.0)]);
            t += 0.2;
        }
        for _ in 0..5 {
            tr.update(t, &[]);
            t += 0.2;
        }
        let mut ids = Vec::new();
        for i in 0..4 {
            let x = reappear_x + 10.0 * i as f32;
            let v = tr.update(t, &[det(0, 0.9, x, 100.0, 40.0, 100.0)]);
            ids.extend(v.iter().filter(|x| x.matched).map(|x| x.id));
            t += 0.2;
        }
        ids
    }

    #[test]
    fn reid_refinds_an_occluded_object_only_when_enabled_and_within_gate() {
        let on = TrackerConfig {
            reid_speed: 1.0,
            ..TrackerConfig::default()
        };
        assert_eq!(on.validate(), Ok(()));
        // Off (default): IoU alone cannot bridge the occlusion, a new id.
        let ids = occlusion_run(TrackerConfig::default(), 280.0);
        assert!(ids.iter().all(|&id| id != 1), "{ids:?}");
        // On: 80 px = 0.8 heights after 1.2 s lost is inside the gate
        // (1.2 heights): the same object keeps id 1.
        let ids = occlusion_run(on, 280.0);
        assert_eq!(ids, [1, 1, 1, 1]);
        // On, but 200 px = 2 heights away: beyond the gate, a new id.
        let ids = occlusion_run(on, 400.0);
        assert!(ids.iter().all(|&id| id != 1), "{ids:?}");
        // Size gate: twice as tall is not the same object.
        let mut tr = Tracker::new(on);
        for i in 0..4 {
            tr.update(i as f64 * 0.2, &[det(0, 0.9, 100.0, 100.0, 40.0, 100.0)]);
        }
        tr.update(0.8, &[]);
        let v = tr.update(1.0, &[det(0, 0.9, 100.0, 300.0, 80.0, 200.0)]);
        assert!(v.iter().all(|x| x.id != 1 || !x.matched), "{v:?}");
        // Class gate.
        let mut tr = Tracker::new(on);
        for i in 0..4 {
            tr.update(i as f64 * 0.2, &[det(0, 0.9, 100.0, 100.0, 40.0, 100.0)]);
        }
        tr.update(0.8, &[]);
        let v = tr.update(1.0, &[det(2, 0.9, 130.0, 100.0, 40.0, 100.0)]);
        assert!(v.iter().all(|x| x.id != 1 || !x.matched), "{v:?}");
        // Validation of the new settings.
        for bad in [
            TrackerConfig {
                reid_max_scale: 0.9,
                ..on
            },
            TrackerConfig {
                reid_speed: f32::NAN,
                ..on
            },
            TrackerConfig {
                reid_min_gate: -1.0,
                ..on
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(TrackConfigError::OutOfRange { .. })),
                "{bad:?}"
            );
        }
    }

    /// Person A walks left at 80 px/s (one height per second, 5 fps) and
    /// disappears behind a post for frames 10-12; at frame 10 person B
    /// steps out from behind the post where A was last seen and then walks
    /// right. Returns, per frame from 13 on, the ids of the tracks matched to
    /// A's box and to B's box.
    fn post_swap_run(cfg: TrackerConfig) -> Vec<(u64, u64)> {
        let a_x = |i: usize| 500.0 - 16.0 * i as f32;
        let b_x = |i: usize| a_x(9) + 16.0 * (i as f32 - 10.0);
        let mut tr = Tracker::new(cfg);
        let mut out = Vec::new();
        for i in 0..20 {
            let mut dets = Vec::new();
            if !(10..=12).contains(&i) {
                dets.push(det(0, 0.9, a_x(i), 200.0, 32.0, 80.0));
            }
            if i >= 10 {
                dets.push(det(0, 0.9, b_x(i), 206.0, 32.0, 80.0));
            }
            let v = tr.update(i as f64 * 0.2, &dets);
            if i >= 13 {
                let id_at = |x: f32| {
                    v.iter()
                        .find(|tv| tv.matched && (tv.bbox.x1 - x).abs() < 0.01)
                        .map_or(0, |tv| tv.id)
                };
                out.push((id_at(a_x(i)), id_at(b_x(i))));
            }
        }
        out
    }

    #[test]
    fn occluded_walker_is_not_handed_to_someone_walking_the_other_way() {
        // Default (motion-consistency cost on): A's track does not take B,
        // whose box implies that A stopped dead within 0.2 s; it coasts
        // behind the post and is re-found on the far side.
        let ids = post_swap_run(TrackerConfig::default());
        assert!(ids.iter().all(|&(a, b)| a == 1 && b > 1), "{ids:?}");
        let b = ids[0].1;
        assert!(ids.iter().all(|&(_, x)| x == b), "{ids:?}");
        // Without it (the previous behaviour) A's id latches onto B, and A
        // comes back as a new track: the swap seen on PETS09-S2L1.
        let off = TrackerConfig {
            motion_weight: 0.0,
            ..TrackerConfig::default()
        };
        let ids = post_swap_run(off);
        assert!(ids.iter().all(|&(a, b)| a != 1 && b == 1), "{ids:?}");
    }

    #[test]
    fn opposite_walkers_crossing_with_a_three_frame_miss_keep_their_ids() {
        // A walks right, B walks left, 1 height/s each at 5 fps, at nearly
        // the same height; B is missed for 3 frames right where they pass.
        let a_x = |i: usize| 100.0 + 16.0 * i as f32;
        let b_x = |i: usize| 420.0 - 16.0 * i as f32;
        let mut tr = Tracker::new(TrackerConfig::default());
        let (mut a_id, mut b_id) = (None, None);
        for i in 0..20 {
            let mut dets = vec![det(0, 0.9, a_x(i), 200.0, 32.0, 80.0)];
            let b_seen = !(9..=11).contains(&i);
            if b_seen {
                dets.push(det(0, 0.9, b_x(i), 204.0, 32.0, 80.0));
            }
            let v = tr.update(i as f64 * 0.2, &dets);
            let id_at = |x: f32| {
                v.iter()
                    .find(|tv| tv.matched && (tv.bbox.x1 - x).abs() < 0.01)
                    .map(|tv| tv.id)
            };
            let a = id_at(a_x(i)).expect("A is always matched");
            assert_eq!(*a_id.get_or_insert(a), a, "frame {i}: A changed id");
            if b_seen {
                let b = id_at(b_x(i)).expect("B matched when seen");
                assert_eq!(*b_id.get_or_insert(b), b, "frame {i}: B changed id");
            }
        }
        assert_ne!(a_id, b_id);
    }

    #[test]
    fn motion_check_allows_starting_stopping_and_jitter() {
        // Plausible motion keeps its id with the check on: a person standing
        // with jittery boxes (too slow for the check) who starts walking
        // abruptly, keeps walking, then slows to a halt over a second.
        let mut rng = Rng(0x5eed_0000_1234_5678);
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut x = 300.0f32;
        let mut v = 0.0f32; // px per frame
        for i in 0..40 {
            v = match i {
                0..=9 => 0.0,
                10..=24 => 16.0,
                _ => (v - 4.0).max(0.0),
            };
            x += v;
            let mut j = || 3.0 * rng.next();
            let d = det(0, 0.9, x + j(), 200.0 + j(), 32.0 + j(), 80.0 + j());
            let views = tr.update(i as f64 * 0.2, &[d]);
            assert_eq!(views.len(), 1, "frame {i}: {views:?}");
            assert_eq!((views[0].id, views[0].matched), (1, true), "frame {i}");
        }
    }

    #[test]
    fn observation_history_is_bounded() {
        // By time at a steady frame rate...
        let mut tr = Tracker::new(TrackerConfig::default());
        for i in 0..200 {
            tr.update(i as f64 * 0.1, &[det(0, 0.9, 100.0, 100.0, 40.0, 80.0)]);
        }
        let keep = TrackerConfig::default().motion_window_s + HISTORY_S;
        let n = tr.tracks[0].obs.len();
        assert!(n >= 10 && n as f64 <= keep / 0.1 + 1.0, "{n}");
        // ...and by count when the stream's time stands still.
        let mut tr = Tracker::new(TrackerConfig::default());
        for _ in 0..1000 {
            tr.update(5.0, &[det(0, 0.9, 100.0, 100.0, 40.0, 80.0)]);
        }
        assert_eq!(tr.tracks[0].obs.len(), HISTORY_MAX);
    }

    #[test]
    fn a_track_keeps_the_largest_rider_count_matched_to_it() {
        // A motorbike (class 3) seen with 1 rider, then 2, then its second
        // passenger hidden (1) and once missed altogether; a pedestrian
        // (class 0) beside it never carries riders. Riders follow their
        // detection's index, whatever the score order.
        let mut tr = Tracker::new(TrackerConfig::default());
        let bike = |i: usize| det(3, 0.8, 100.0 + 10.0 * i as f32, 300.0, 80.0, 60.0);
        let walker = |i: usize| det(0, 0.9, 500.0, 200.0 + 5.0 * i as f32, 30.0, 80.0);
        let script: [Option<u32>; 7] = [Some(1), Some(1), Some(2), Some(1), None, Some(0), Some(1)];
        let mut seen = Vec::new();
        for (i, step) in script.iter().enumerate() {
            let t = i as f64 * 0.2;
            let views = match step {
                Some(n) => tr.update_with_riders(t, &[walker(i), bike(i)], &[0, *n]),
                None => tr.update_with_riders(t, &[walker(i)], &[0]),
            };
            let b = views.iter().find(|v| v.class_id == 3).expect("bike alive");
            let w = views
                .iter()
                .find(|v| v.class_id == 0)
                .expect("walker alive");
            assert_eq!(tr.riders(w.id), 0, "frame {i}");
            seen.push(tr.riders(b.id));
        }
        assert_eq!(seen, [1, 1, 2, 2, 2, 2, 2]);
        // `update` carries none; an unknown id has none; a short slice pads
        // with zeros.
        let mut tr = Tracker::new(TrackerConfig::default());
        let v = tr.update(0.0, &[bike(0)]);
        assert_eq!(tr.riders(v[0].id), 0);
        assert_eq!(tr.riders(999), 0);
        let v = tr.update_with_riders(0.2, &[bike(1), walker(1)], &[2]);
        assert_eq!(v.len(), 2);
        assert_eq!(tr.riders(v[0].id), 2);
        assert_eq!(tr.riders(v[1].id), 0);
    }

    #[test]
    fn motion_settings_are_validated() {
        for bad in [
            TrackerConfig {
                motion_weight: -1.0,
                ..TrackerConfig::default()
            },
            TrackerConfig {
                motion_tol: f32::NAN,
                ..TrackerConfig::default()
            },
            TrackerConfig {
                motion_min_speed: f32::INFINITY,
                ..TrackerConfig::default()
            },
            TrackerConfig {
                motion_window_s: -0.5,
                ..TrackerConfig::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(TrackConfigError::OutOfRange { .. })),
                "{bad:?}"
            );
        }
    }
}
