//! Frame slots: the bounded per-camera queues between GStreamer streaming
//! threads and one model's inference workers ([`Pool`]), and each camera's
//! hand-over to its analytics task.
//!
//! Two queues per camera, each bounded, each with a stated full behaviour:
//! - the **slot** (`cameras[].queue` frames): full → [`WhenFull`];
//! - the **hand-over** to the analytics task ([`HANDOVER`] results): a worker
//!   takes a camera's frame only after reserving room in that camera's
//!   hand-over ([`Job::handover`]), so delivering a result never waits. A
//!   camera whose analytics is behind keeps its frames in its own slot (where
//!   the oldest are dropped and counted) and is skipped by the workers until
//!   room appears; the other cameras are served as before.
//!
//! The end of a camera is explicit: [`Pool::close`] (source ended, failed or
//! stopped) lets the slot drain; once it is empty and no frame of the camera
//! is in flight the slot drops the camera's hand-over sender, and the
//! analytics task's receive loop ends after the last result.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};

use super::report::Samples;
use crate::detect::{Analysis, StageTimes};
use crate::frame::{Detection, Frame};
use crate::metrics::{FrameCounts, FrameSource, ModelMetrics};

/// Results a camera's hand-over holds before its frames wait in the slot.
pub(super) const HANDOVER: usize = 8;

/// How often idle workers look again at cameras skipped for a full hand-over.
const HELD_POLL: Duration = Duration::from_millis(5);

/// What a camera slot does when a frame arrives and the slot is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenFull {
    /// Live and paced sources: the oldest queued frame is dropped and counted
    /// (`frames_dropped`); the streaming thread never waits.
    DropOldest,
    /// A file played as fast as possible (`realtime = false`): the streaming
    /// thread waits for room, holding that camera's decoder back, so every
    /// sampled frame is analysed. Only that camera waits.
    WaitForRoom,
}

/// A detector's output for one frame, handed to the camera's analytics task.
pub(super) struct Analysed {
    pub frame: Arc<Frame>,
    pub detections: Vec<Detection>,
    /// When the frame entered the camera slot.
    pub arrived: Instant,
}

/// A camera's receiving end of the hand-over.
pub(super) type Handover = mpsc::Receiver<Analysed>;

/// One frame taken by a worker, with room already reserved in its camera's
/// hand-over: [`Pool::deliver`] cannot block.
pub(super) struct Job {
    pub idx: usize,
    pub frame: Frame,
    /// The camera's input budget and tiling.
    pub analysis: Analysis,
    pub arrived: Instant,
    pub handover: OwnedPermit<Analysed>,
}

struct Slot {
    /// Frames with the time they entered the slot.
    queue: VecDeque<(Frame, Instant)>,
    cap: usize,
    when_full: WhenFull,
    analysis: Analysis,
    busy: bool,
    closed: bool,
    /// Share of the workers this camera is owed relative to the others
    /// (its `detect_fps`): a 10 fps camera is served twice as often as a
    /// 5 fps one when both have frames waiting.
    weight: f64,
    /// Skipped in the current [`Pool::take`] pass: its hand-over is full.
    held: bool,
    /// Start-time fair queuing: the virtual time at which this camera's next
    /// frame may start ([`Pool::take`]).
    vstart: f64,
    /// The camera's only hand-over sender (permits in flight hold clones);
    /// dropped once the camera is closed and drained, which ends its
    /// analytics task.
    tx: Option<mpsc::Sender<Analysed>>,
    frames_in: u64,
    dropped: u64,
    analysed: u64,
    /// Frames the detector failed on (counted in `analysed` too).
    failed: u64,
    first_arrival: Option<Instant>,
    last_arrival: Option<Instant>,
    last_analysed: Option<Instant>,
    detect_latency_ms: Samples,
}

impl Slot {
    /// Drops the hand-over sender once nothing of this camera is left.
    fn release_if_drained(&mut self) {
        if self.closed && self.queue.is_empty() && !self.busy {
            self.tx = None;
        }
    }
}

#[derive(Default)]
struct PoolState {
    slots: Vec<Slot>,
    next: usize,
    /// Virtual time: the start tag of the frame served last.
    vnow: f64,
    stop: bool,
    pre_ms: Samples,
    infer_ms: Samples,
    post_ms: Samples,
    /// When a worker last finished a frame.
    last_done: Option<Instant>,
    /// Since when frames have been waiting with no worker finishing one
    /// (`None` while nothing waits or workers progress).
    waiting_since: Option<Instant>,
}

/// The frames waiting for one model's workers, one slot per camera.
#[derive(Default)]
pub(super) struct Pool {
    state: Mutex<PoolState>,
    cv: Condvar,
    /// The model's stage histograms (`/metrics`), when the node keeps them.
    metrics: Option<Arc<ModelMetrics>>,
}

/// Frame counters of one camera's slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SlotCounters {
    pub frames_in: u64,
    /// Shed because the slot was full.
    pub dropped: u64,
    /// Finished by a worker (including `failed`).
    pub analysed: u64,
    /// The detector failed on the frame.
    pub failed: u64,
    pub last_arrival: Option<Instant>,
    pub last_analysed: Option<Instant>,
}

/// What a slot knows for the camera's report.
pub(super) struct SlotReport {
    pub counters: SlotCounters,
    pub first_arrival: Option<Instant>,
    pub detect_latency_ms: Vec<f64>,
}

/// Stage timings of one model's workers, ms.
#[derive(Default)]
pub(super) struct StageSamples {
    pub pre_ms: Vec<f64>,
    pub infer_ms: Vec<f64>,
    pub post_ms: Vec<f64>,
}

fn slot_counters(slot: &Slot) -> SlotCounters {
    SlotCounters {
        frames_in: slot.frames_in,
        dropped: slot.dropped,
        analysed: slot.analysed,
        failed: slot.failed,
        last_arrival: slot.last_arrival,
        last_analysed: slot.last_analysed,
    }
}

/// The camera to serve next: among those with a frame waiting, not busy and
/// not found held in this pass, the earliest virtual start (never before the
/// node's virtual time); ties go to the first in round-robin order from
/// `next`.
fn pick(s: &PoolState) -> Option<usize> {
    let n = s.slots.len();
    let mut best: Option<(f64, usize)> = None;
    for k in 0..n {
        let i = (s.next + k) % n;
        let slot = &s.slots[i];
        if slot.busy || slot.held || slot.queue.is_empty() {
            continue;
        }
        let start = slot.vstart.max(s.vnow);
        if best.is_none_or(|(b, _)| start < b - 1e-12) {
            best = Some((start, i));
        }
    }
    best.map(|(_, i)| i)
}

impl Pool {
    /// A pool whose stage timings also go to the model's histograms.
    pub fn with_metrics(metrics: Arc<ModelMetrics>) -> Pool {
        Pool {
            metrics: Some(metrics),
            ..Pool::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new camera slot holding `cap` frames; returns its index and the
    /// receiving end of its hand-over.
    pub fn add(&self, cap: usize, when_full: WhenFull, analysis: Analysis) -> (usize, Handover) {
        let (tx, rx) = mpsc::channel(HANDOVER);
        let mut s = self.lock();
        let vstart = s.vnow;
        s.slots.push(Slot {
            queue: VecDeque::with_capacity(cap),
            cap: cap.max(1),
            when_full,
            analysis,
            busy: false,
            closed: false,
            weight: 1.0,
            held: false,
            vstart,
            tx: Some(tx),
            frames_in: 0,
            dropped: 0,
            analysed: 0,
            first_arrival: None,
            last_arrival: None,
            last_analysed: None,
            failed: 0,
            detect_latency_ms: Samples::default(),
        });
        (s.slots.len() - 1, rx)
    }

    /// The camera's share of the workers relative to the others (its
    /// `detect_fps`; default 1). Ignored unless positive and finite.
    pub fn set_weight(&self, idx: usize, weight: f64) {
        if weight.is_finite() && weight > 0.0 {
            self.lock().slots[idx].weight = weight;
        }
    }

    /// Called on a GStreamer streaming thread; see [`WhenFull`].
    pub fn push(&self, idx: usize, frame: Frame) {
        let mut s = self.lock();
        while s.slots[idx].when_full == WhenFull::WaitForRoom
            && !s.slots[idx].closed
            && !s.stop
            && s.slots[idx].queue.len() >= s.slots[idx].cap
        {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let slot = &mut s.slots[idx];
        if slot.closed {
            return;
        }
        slot.frames_in += 1;
        if slot.queue.len() >= slot.cap {
            slot.queue.pop_front();
            slot.dropped += 1;
        }
        let now = Instant::now();
        slot.first_arrival.get_or_insert(now);
        slot.last_arrival = Some(now);
        slot.queue.push_back((frame, now));
        s.waiting_since.get_or_insert(now);
        drop(s);
        self.cv.notify_all();
    }

    /// The camera's source is done (ended, failed or stopped): no more
    /// frames are accepted; queued ones are still analysed, then the
    /// camera's analytics task ends.
    pub fn close(&self, idx: usize) {
        let mut s = self.lock();
        let slot = &mut s.slots[idx];
        slot.closed = true;
        slot.release_if_drained();
        drop(s);
        self.cv.notify_all();
    }

    /// Stops the workers: every slot is closed and emptied.
    pub fn stop(&self) {
        let mut s = self.lock();
        s.stop = true;
        for slot in &mut s.slots {
            slot.closed = true;
            slot.queue.clear();
            slot.release_if_drained();
        }
        drop(s);
        self.cv.notify_all();
    }

    /// The camera's weight ([`Pool::set_weight`]: its `detect_fps`).
    pub fn weight(&self, idx: usize) -> f64 {
        self.lock().slots[idx].weight
    }

    pub fn counters(&self, idx: usize) -> SlotCounters {
        let s = self.lock();
        slot_counters(&s.slots[idx])
    }

    /// How long frames have waited with no worker finishing any (a wedged
    /// worker or analytics), and how many wait; `None` while workers progress.
    pub fn stalled(&self) -> Option<(Duration, usize)> {
        let s = self.lock();
        let waiting: usize = s.slots.iter().map(|x| x.queue.len()).sum();
        let since = s.waiting_since?;
        (waiting > 0).then(|| (since.elapsed(), waiting))
    }

    pub fn report(&self, idx: usize) -> SlotReport {
        let s = self.lock();
        let slot = &s.slots[idx];
        SlotReport {
            counters: slot_counters(slot),
            first_arrival: slot.first_arrival,
            detect_latency_ms: slot.detect_latency_ms.as_slice().to_vec(),
        }
    }

    pub fn stage_samples(&self) -> StageSamples {
        let s = self.lock();
        StageSamples {
            pre_ms: s.pre_ms.as_slice().to_vec(),
            infer_ms: s.infer_ms.as_slice().to_vec(),
            post_ms: s.post_ms.as_slice().to_vec(),
        }
    }

    /// The next frame, at most one in flight per camera, only from cameras
    /// with room in their hand-over; `None` when stopping.
    ///
    /// Which camera: start-time fair queuing over the cameras with a frame
    /// waiting. Each camera carries a virtual start time; serving it moves
    /// the node's virtual time there and its own on by `1 / weight`. The
    /// camera with the earliest start goes first (ties: round-robin order).
    /// A camera whose frames came late (its decoder fell behind, its hand-over
    /// was full) is served first when they arrive, but credit never builds
    /// up: a camera's start is never earlier than the node's virtual time, so
    /// it gains at most one turn. Under overload every camera's analysed rate
    /// therefore falls to the same share of its `detect_fps`, and none
    /// starves; without overload every frame is served anyway.
    pub fn take(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if s.stop {
                return None;
            }
            let mut held = false;
            while let Some(i) = pick(&s) {
                let vnow = s.vnow;
                let slot = &mut s.slots[i];
                let Some(tx) = slot.tx.clone() else {
                    slot.queue.clear();
                    continue;
                };
                let handover = match tx.try_reserve_owned() {
                    Ok(permit) => permit,
                    // Analytics is behind: leave this camera's frames in its slot.
                    Err(TrySendError::Full(_)) => {
                        held = true;
                        slot.held = true;
                        continue;
                    }
                    // The analytics task is gone (camera stopping): nothing to do.
                    Err(TrySendError::Closed(_)) => {
                        slot.dropped += slot.queue.len() as u64;
                        slot.queue.clear();
                        slot.closed = true;
                        slot.release_if_drained();
                        continue;
                    }
                };
                if let Some((frame, arrived)) = slot.queue.pop_front() {
                    slot.busy = true;
                    let start = slot.vstart.max(vnow);
                    slot.vstart = start + 1.0 / slot.weight;
                    let analysis = slot.analysis;
                    s.vnow = start;
                    s.next = i + 1;
                    for x in &mut s.slots {
                        x.held = false;
                    }
                    // A producer waiting for room may go on.
                    self.cv.notify_all();
                    return Some(Job {
                        idx: i,
                        analysis,
                        frame,
                        arrived,
                        handover,
                    });
                }
            }
            for x in &mut s.slots {
                x.held = false;
            }
            s = if held {
                self.cv
                    .wait_timeout(s, HELD_POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            } else {
                self.cv.wait(s).unwrap_or_else(|e| e.into_inner())
            };
        }
    }

    /// Hands a worker's result over (never waits: room was reserved by
    /// [`Pool::take`]) and frees the camera for its next frame. `None`:
    /// the frame failed; nothing is handed over.
    pub fn deliver(&self, job: Job, result: Option<(Vec<Detection>, StageTimes)>) {
        let Job {
            idx,
            frame,
            arrived,
            handover,
            ..
        } = job;
        let times = match result {
            Some((detections, times)) => {
                handover.send(Analysed {
                    frame: Arc::new(frame),
                    detections,
                    arrived,
                });
                Some(times)
            }
            None => None,
        };
        self.done(idx, times, arrived);
    }

    /// Frees the camera's slot after a frame, recording its timings.
    fn done(&self, idx: usize, times: Option<StageTimes>, arrived: Instant) {
        let latency_ms = arrived.elapsed().as_secs_f64() * 1e3;
        if let (Some(m), Some(t)) = (&self.metrics, &times) {
            m.observe(t.pre, t.infer, t.post);
        }
        let mut s = self.lock();
        if let Some(t) = times {
            s.pre_ms.push(t.pre.as_secs_f64() * 1e3);
            s.infer_ms.push(t.infer.as_secs_f64() * 1e3);
            s.post_ms.push(t.post.as_secs_f64() * 1e3);
        }
        let now = Instant::now();
        s.last_done = Some(now);
        // Progress: the stall clock restarts if frames still wait.
        let waiting = s.slots.iter().any(|x| !x.queue.is_empty());
        s.waiting_since = waiting.then_some(now);
        let slot = &mut s.slots[idx];
        slot.busy = false;
        slot.analysed += 1;
        slot.last_analysed = Some(now);
        if times.is_some() {
            slot.detect_latency_ms.push(latency_ms);
        } else {
            slot.failed += 1;
        }
        slot.release_if_drained();
        drop(s);
        self.cv.notify_all();
    }
}

/// A camera's slot as the metrics endpoint reads it.
pub(super) struct SlotView {
    pub pool: Arc<Pool>,
    pub idx: usize,
}

impl FrameSource for SlotView {
    fn frame_counts(&self) -> FrameCounts {
        let c = self.pool.counters(self.idx);
        FrameCounts {
            received: c.frames_in,
            analysed: c.analysed,
            dropped_queue_full: c.dropped,
            failed: c.failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(camera: &str, index: u64) -> Frame {
        Frame {
            camera: camera.into(),
            index,
            t: index as f64 * 0.1,
            wall: SystemTime::now(),
            width: 2,
            height: 2,
            data: vec![0; 12],
        }
    }

    fn ok() -> Option<(Vec<Detection>, StageTimes)> {
        Some((Vec::new(), StageTimes::default()))
    }

    #[test]
    fn a_full_live_slot_drops_its_oldest_frame_and_counts_it() {
        let pool = Pool::default();
        let (a, _rx) = pool.add(2, WhenFull::DropOldest, Analysis::default());
        for i in 0..5 {
            pool.push(a, frame("a", i));
        }
        let c = pool.counters(a);
        assert_eq!((c.frames_in, c.dropped), (5, 3));
        let job = pool.take().unwrap();
        assert_eq!(job.frame.index, 3, "the newest two are kept");
    }

    #[test]
    fn cameras_are_served_round_robin_one_frame_in_flight_each() {
        let pool = Pool::default();
        let (a, _ra) = pool.add(4, WhenFull::DropOldest, Analysis::default());
        let (b, _rb) = pool.add(4, WhenFull::DropOldest, Analysis::default());
        for i in 0..3 {
            pool.push(a, frame("a", i));
            pool.push(b, frame("b", i));
        }
        let j1 = pool.take().unwrap();
        let j2 = pool.take().unwrap();
        assert_ne!(j1.idx, j2.idx, "the second worker gets the other camera");
        // Both cameras are busy: a third worker waits until one is done.
        let p = Arc::new(pool);
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.take().map(|j| (j.idx, j.frame.index)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "no camera has two frames in flight");
        p.deliver(j1, ok());
        let (idx, index) = waiter.join().unwrap().unwrap();
        assert_eq!((idx, index), (a, 1), "camera a's next frame, in order");
        let _ = (b, j2);
    }

    /// One worker serving `rounds` frames while every camera offers
    /// `offer(round, camera)` frames per round; returns frames served per camera.
    /// The hand-overs are drained each round, as the analytics tasks would.
    fn serve(
        pool: &Pool,
        cams: &[usize],
        rx: &mut [Handover],
        rounds: u64,
        offer: impl Fn(u64, usize) -> u64,
    ) -> Vec<u64> {
        let mut served = vec![0u64; cams.len()];
        let mut n = 0u64;
        for r in 0..rounds {
            for (k, &c) in cams.iter().enumerate() {
                for _ in 0..offer(r, k) {
                    n += 1;
                    pool.push(c, frame("x", n));
                }
            }
            // The box analyses one frame per round: overloaded whenever the
            // cameras offer more than one frame per round together.
            let j = pool.take().unwrap();
            served[cams.iter().position(|&c| c == j.idx).unwrap()] += 1;
            pool.deliver(j, ok());
            for r in rx.iter_mut() {
                while r.try_recv().is_ok() {}
            }
        }
        served
    }

    #[test]
    fn under_overload_every_camera_gets_its_share_of_its_detect_fps() {
        let pool = Pool::default();
        let mut cams = Vec::new();
        let mut rx = Vec::new();
        for w in [5.0, 5.0, 5.0, 10.0] {
            let (i, r) = pool.add(2, WhenFull::DropOldest, Analysis::default());
            pool.set_weight(i, w);
            cams.push(i);
            rx.push(r);
        }
        // Every camera offers a frame each round: 4 per round for 1 served.
        let served = serve(&pool, &cams, &mut rx, 2500, |_, _| 1);
        // Weights 5:5:5:10 of 2500 frames: 500, 500, 500, 1000.
        for (k, want) in [500.0, 500.0, 500.0, 1000.0].into_iter().enumerate() {
            let got = served[k] as f64;
            assert!(
                (got - want).abs() <= 2.0,
                "camera {k}: {got} of {want} ({served:?})"
            );
        }
    }

    #[test]
    fn a_camera_whose_frames_come_late_is_served_first_but_gains_no_credit() {
        let pool = Pool::default();
        let mut cams = Vec::new();
        let mut rx = Vec::new();
        for _ in 0..3 {
            let (i, r) = pool.add(2, WhenFull::DropOldest, Analysis::default());
            cams.push(i);
            rx.push(r);
        }
        // Camera 2's decoder delivers only every third round (a third of the
        // others' rate): it gets every frame it offers, as soon as it offers
        // one; the others share the rest evenly.
        let served = serve(&pool, &cams, &mut rx, 300, |r, k| {
            u64::from(k < 2 || r % 3 == 0)
        });
        assert_eq!(served[2], 100, "{served:?}");
        assert!(served[0].abs_diff(served[1]) <= 1, "{served:?}");
        // A camera that was silent for a long time does not take over when it
        // comes back: it rejoins at the node's virtual time.
        let served = serve(&pool, &cams, &mut rx, 30, |_, _| 1);
        assert!(served.iter().all(|&v| v.abs_diff(10) <= 1), "{served:?}");
    }

    #[test]
    fn a_file_slot_that_waits_for_room_loses_nothing() {
        let pool = Arc::new(Pool::default());
        let (a, _rx) = pool.add(1, WhenFull::WaitForRoom, Analysis::default());
        let p2 = pool.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..4 {
                p2.push(a, frame("a", i));
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let job = pool.take().unwrap();
            seen.push(job.frame.index);
            pool.deliver(job, ok());
        }
        producer.join().unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert_eq!(pool.counters(a).dropped, 0);
    }

    #[test]
    fn a_camera_with_a_full_hand_over_is_skipped_not_waited_for() {
        let pool = Pool::default();
        let (a, _held) = pool.add(2, WhenFull::DropOldest, Analysis::default());
        let (b, mut rb) = pool.add(2, WhenFull::DropOldest, Analysis::default());
        // Camera a's analytics never reads: fill its hand-over.
        for i in 0..HANDOVER as u64 {
            pool.push(a, frame("a", i));
            let job = pool.take().unwrap();
            assert_eq!(job.idx, a);
            pool.deliver(job, ok());
        }
        pool.push(a, frame("a", 100));
        for i in 0..3 {
            pool.push(b, frame("b", i));
            let job = pool.take().expect("camera b is served");
            assert_eq!(
                job.idx, b,
                "camera a is skipped while its hand-over is full"
            );
            pool.deliver(job, ok());
            assert_eq!(rb.try_recv().unwrap().frame.index, i);
        }
        // Camera a's waiting frames stay in its slot, bounded and counted.
        pool.push(a, frame("a", 101));
        pool.push(a, frame("a", 102));
        assert_eq!(pool.counters(a).dropped, 1);
    }

    #[test]
    fn closing_a_camera_ends_its_hand_over_after_the_last_frame() {
        let pool = Pool::default();
        let (a, mut rx) = pool.add(2, WhenFull::DropOldest, Analysis::default());
        pool.push(a, frame("a", 0));
        pool.push(a, frame("a", 1));
        let job = pool.take().unwrap();
        pool.close(a);
        pool.push(a, frame("a", 2));
        assert_eq!(
            pool.counters(a).frames_in,
            2,
            "a closed slot takes no frames"
        );
        pool.deliver(job, ok());
        let job = pool.take().unwrap();
        pool.deliver(job, ok());
        assert_eq!(rx.blocking_recv().unwrap().frame.index, 0);
        assert_eq!(rx.blocking_recv().unwrap().frame.index, 1);
        assert!(
            rx.blocking_recv().is_none(),
            "drained and closed: the hand-over ends"
        );
    }
}
