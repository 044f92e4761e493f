//! Where an inference worker's pre-processing runs, and at what CPU priority.
//!
//! A worker owns one ONNX Runtime session. Pre-processing the next frame
//! (resize, normalise) can overlap the session's run on another thread, the
//! `prep-…` companion, but only pays if that thread does not steal CPU from
//! the session's own intra-op threads:
//! - [`PrepMode::Companion`]: ONNX Runtime's threads leave a core free
//!   (`threads × workers < cores`), the companion runs at normal priority.
//! - [`PrepMode::Background`]: every core already runs intra-op threads. The
//!   companion runs under Linux's `SCHED_IDLE` policy, so it only gets the
//!   gaps where ONNX Runtime leaves a core idle (its serial operators:
//!   concatenations, transposes, re-quantisation). A nice value is not
//!   enough: a niced thread still delays the session's worker when it wakes,
//!   an idle-policy one is preempted at once (`bench model`, INT8 at 2
//!   threads on 2 cores: ≈ 99 % of the bare ceiling against ≈ 93 % at nice
//!   0 to 19). An idle-policy thread can starve behind busy decoders, so the
//!   moment the session thread would block on it, [`Handshake::recv`] lifts
//!   it back to `SCHED_OTHER` until the frame is handed over. Leaving
//!   `SCHED_IDLE` needs `CAP_SYS_NICE` (or `RLIMIT_NICE`); without it the
//!   mode is not used.
//! - [`PrepMode::Inline`]: the session thread pre-processes itself.
//!
//! The policy calls are the only `unsafe` here: plain `libc` system calls on
//! thread ids this process owns.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Where a worker's pre-processing runs, see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepMode {
    /// On the session's thread, between runs.
    Inline,
    /// On a companion thread at normal priority (a core is left free).
    Companion,
    /// On a companion thread under `SCHED_IDLE`, lifted while it is waited for.
    Background,
}

impl PrepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PrepMode::Inline => "inline",
            PrepMode::Companion => "companion",
            PrepMode::Background => "background",
        }
    }

    /// Whether a `prep-…` thread runs.
    pub fn has_thread(self) -> bool {
        self != PrepMode::Inline
    }
}

/// The mode for `workers` workers of `intra_threads` threads each on this
/// machine.
pub fn prep_mode(intra_threads: usize, workers: usize) -> PrepMode {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    prep_mode_for(cores, intra_threads, workers, background_available())
}

/// [`prep_mode`] as a pure function of the machine (tested).
pub fn prep_mode_for(
    cores: usize,
    intra_threads: usize,
    workers: usize,
    background_ok: bool,
) -> PrepMode {
    if intra_threads.max(1) * workers.max(1) < cores {
        PrepMode::Companion
    } else if background_ok && cores > 1 {
        PrepMode::Background
    } else {
        PrepMode::Inline
    }
}

/// Whether this process may put a thread under `SCHED_IDLE` and take it
/// back out (probed once, on a scratch thread).
pub fn background_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        std::thread::Builder::new()
            .name("sched-probe".into())
            .spawn(|| {
                let tid = current_tid();
                set_policy(tid, Policy::Idle) && set_policy(tid, Policy::Normal)
            })
            .ok()
            .and_then(|h| h.join().ok())
            .unwrap_or(false)
    })
}

/// Lowers the calling thread's CPU priority to `nice` (0 normal, 19
/// lowest), for work that may wait while the analysis runs: decoding the
/// main stream for a snapshot. On Linux a nice value is per thread.
/// Raising it again needs privileges, so threads that do this are ones
/// that keep the role. `false` where it could not be set.
pub fn lower_current_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let tid = current_tid();
        // SAFETY: setpriority on a thread id of this process; `tid` is the
        // caller's own id, so it is alive for the call.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice.clamp(0, 19)) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// The scheduling policy of a thread as this module sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`, the default.
    Normal,
    /// `SCHED_IDLE`: runs only when a core has nothing else to do.
    Idle,
}

#[cfg(target_os = "linux")]
fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(not(target_os = "linux"))]
fn current_tid() -> i32 {
    0
}

#[cfg(target_os = "linux")]
fn set_policy(tid: i32, policy: Policy) -> bool {
    let p = libc::sched_param { sched_priority: 0 };
    let which = match policy {
        Policy::Normal => libc::SCHED_OTHER,
        Policy::Idle => libc::SCHED_IDLE,
    };
    // SAFETY: `p` is a valid sched_param for the call's duration; `tid` is a
    // thread of this process (an exited one only makes the call fail).
    unsafe { libc::sched_setscheduler(tid, which, &p) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn set_policy(_tid: i32, _policy: Policy) -> bool {
    false
}

/// The policy a thread of this process runs under, `None` if unknown.
pub fn policy_of(tid: i32) -> Option<Policy> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getscheduler only reads the thread's policy.
        match unsafe { libc::sched_getscheduler(tid) } {
            libc::SCHED_OTHER => Some(Policy::Normal),
            libc::SCHED_IDLE => Some(Policy::Idle),
            _ => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// How long [`Handshake::recv`] polls for a companion that is mid-frame.
const SPIN: std::time::Duration = std::time::Duration::from_millis(2);

/// The priority hand-shake between a session thread and its `prep-…`
/// companion in [`PrepMode::Background`] (inert in the other modes).
///
/// The companion calls [`Self::before_prepare`] before each frame: it drops
/// to `SCHED_IDLE` unless the session thread is already waiting for it. The
/// session thread wraps every blocking wait for a prepared frame in
/// [`Self::recv`], which raises the companion to `SCHED_OTHER` first. Both
/// sides write their half (policy, flag) before reading the other's, so
/// whichever order they run in, a waited-for companion ends up normal.
#[derive(Debug)]
pub struct Handshake {
    background: bool,
    prep_tid: AtomicI32,
    waiting: AtomicBool,
    /// The companion is pre-processing a frame (between `before_prepare`
    /// and `after_prepare`).
    busy: AtomicBool,
}

impl Handshake {
    pub fn new(mode: PrepMode) -> Self {
        Self {
            background: mode == PrepMode::Background,
            prep_tid: AtomicI32::new(0),
            waiting: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        }
    }

    /// The companion, before it pre-processes a frame.
    pub fn before_prepare(&self) {
        if !self.background {
            return;
        }
        let tid = current_tid();
        self.prep_tid.store(tid, Ordering::SeqCst);
        self.busy.store(true, Ordering::SeqCst);
        set_policy(tid, Policy::Idle);
        if self.waiting.load(Ordering::SeqCst) {
            set_policy(tid, Policy::Normal);
        }
    }

    /// The companion, when the frame is prepared (before handing it over).
    pub fn after_prepare(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// The companion: [`Self::before_prepare`], `f` (the pre-processing),
    /// [`Self::after_prepare`].
    pub fn preparing<T>(&self, f: impl FnOnce() -> T) -> T {
        self.before_prepare();
        let out = f();
        self.after_prepare();
        out
    }

    /// The session thread, waiting for the next prepared frame on `rx`.
    ///
    /// In background mode the companion is lifted to `SCHED_OTHER` first.
    /// If it is in the middle of a frame (well under a millisecond of work
    /// left once it has a core), the session thread polls for up to
    /// `SPIN` instead of sleeping: waking a sleeping thread costs tens of
    /// microseconds on a virtual CPU, on every frame.
    pub fn recv<T>(
        &self,
        rx: &std::sync::mpsc::Receiver<T>,
    ) -> Result<T, std::sync::mpsc::RecvError> {
        use std::sync::mpsc::TryRecvError;
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(std::sync::mpsc::RecvError),
            Err(TryRecvError::Empty) => {}
        }
        if !self.background {
            return rx.recv();
        }
        self.waiting.store(true, Ordering::SeqCst);
        let tid = self.prep_tid.load(Ordering::SeqCst);
        if tid != 0 {
            set_policy(tid, Policy::Normal);
        }
        let mut out = None;
        if self.busy.load(Ordering::SeqCst) {
            let start = std::time::Instant::now();
            while start.elapsed() < SPIN {
                match rx.try_recv() {
                    Ok(v) => {
                        out = Some(Ok(v));
                        break;
                    }
                    Err(TryRecvError::Disconnected) => {
                        out = Some(Err(std::sync::mpsc::RecvError));
                        break;
                    }
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                }
            }
        }
        let out = out.unwrap_or_else(|| rx.recv());
        self.waiting.store(false, Ordering::SeqCst);
        out
    }

    /// The companion's thread id once it has prepared a frame (0 before).
    pub fn prep_tid(&self) -> i32 {
        self.prep_tid.load(Ordering::SeqCst)
    }
}

/// The double-buffered pre-processing → session loop of an inference
/// worker, shared by the node's workers and `bench model`.
///
/// A `prep_name` thread (scoped, so it ends before this returns) takes a
/// free buffer, and `prepare` fills it with the next frame: `Some(job)`, or
/// `None` to stop (it should wrap only the pre-processing itself in
/// [`Handshake::preparing`], not the wait for a frame). This thread receives
/// each `(job, buffer)` (a rendezvous: a prepared frame waits until the
/// session is free) through [`Handshake::recv`] and calls `consume`, which
/// hands the buffer back through `give_back` as soon as the session is done
/// with it and returns `false` to stop. Two buffers circulate, so at most
/// two frames are in flight. Returns the job the companion could not hand
/// over because this thread had stopped, or the error of spawning it
/// (nothing has run then).
pub fn run_pipelined<B, J, P, C>(
    mode: PrepMode,
    prep_name: &str,
    buffers: [B; 2],
    mut prepare: P,
    mut consume: C,
) -> std::io::Result<Option<J>>
where
    B: Send,
    J: Send,
    P: FnMut(&Handshake, &mut B) -> Option<J> + Send,
    C: FnMut(J, B, &mut dyn FnMut(B)) -> bool,
{
    use std::sync::mpsc::sync_channel;
    let hs = Handshake::new(mode);
    let (job_tx, job_rx) = sync_channel::<(J, B)>(0);
    let (free_tx, free_rx) = sync_channel::<B>(2);
    for b in buffers {
        let _ = free_tx.send(b);
    }
    std::thread::scope(|s| {
        let hs = &hs;
        let companion = std::thread::Builder::new()
            .name(prep_name.to_string())
            .spawn_scoped(s, move || {
                while let Ok(mut buf) = free_rx.recv() {
                    let job = prepare(hs, &mut buf)?;
                    if let Err(e) = job_tx.send((job, buf)) {
                        return Some(e.0.0);
                    }
                }
                None
            })?;
        let mut give_back = |b: B| {
            let _ = free_tx.send(b);
        };
        while let Ok((job, buf)) = hs.recv(&job_rx) {
            if !consume(job, buf, &mut give_back) {
                break;
            }
        }
        // Unblock the companion (its send or its wait for a buffer fails).
        drop(job_rx);
        drop(free_tx);
        Ok(companion.join().unwrap_or(None))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_free_cores_and_permission() {
        // A free core: a normal companion, whatever the permission.
        assert_eq!(prep_mode_for(2, 1, 1, false), PrepMode::Companion);
        assert_eq!(prep_mode_for(4, 1, 2, true), PrepMode::Companion);
        // Every core busy: background if the policy can be lifted again.
        assert_eq!(prep_mode_for(2, 2, 1, true), PrepMode::Background);
        assert_eq!(prep_mode_for(2, 1, 2, true), PrepMode::Background);
        assert_eq!(prep_mode_for(2, 2, 1, false), PrepMode::Inline);
        // One core: nothing to overlap with.
        assert_eq!(prep_mode_for(1, 1, 1, true), PrepMode::Inline);
        // Zero threads or workers count as one.
        assert_eq!(prep_mode_for(2, 0, 0, false), PrepMode::Companion);
        assert!(PrepMode::Background.has_thread() && !PrepMode::Inline.has_thread());
    }

    /// Blocks until the session thread is inside `Handshake::recv`.
    fn until_waiting(hs: &Handshake) {
        while !hs.waiting.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }

    #[test]
    fn background_companion_is_idle_until_waited_for() {
        let hs = Handshake::new(PrepMode::Background);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel(0);
        let (before, during) = std::thread::scope(|s| {
            s.spawn(|| {
                hs.before_prepare();
                ready_tx.send(policy_of(current_tid())).unwrap();
                // Still "preparing" when the session thread starts waiting.
                until_waiting(&hs);
                // The flag goes up just before the policy is lifted (so a
                // companion starting a frame meanwhile stays lifted): give
                // the session thread a moment to make the system call.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
                let mut during = policy_of(current_tid());
                while during != Some(Policy::Normal) && std::time::Instant::now() < deadline {
                    std::thread::yield_now();
                    during = policy_of(current_tid());
                }
                hs.after_prepare();
                job_tx.send(during).unwrap();
            });
            let before = ready_rx.recv().unwrap();
            (before, hs.recv(&job_rx).unwrap())
        });
        assert_ne!(hs.prep_tid(), 0, "the companion registered its thread id");
        if background_available() {
            assert_eq!(
                before,
                Some(Policy::Idle),
                "the companion drops to SCHED_IDLE"
            );
            assert_eq!(during, Some(Policy::Normal), "waiting for it lifts it back");
        } else {
            // Not permitted here: the hand-shake leaves the thread alone.
            assert_eq!(before, Some(Policy::Normal));
        }
        assert!(!hs.waiting.load(Ordering::SeqCst), "the flag is cleared");
    }

    #[test]
    fn waited_for_companion_stays_normal() {
        // The session thread waits first; a companion that starts a frame
        // then must not drop to SCHED_IDLE.
        let hs = Handshake::new(PrepMode::Background);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel(0);
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                until_waiting(&hs);
                hs.before_prepare();
                let p = policy_of(current_tid());
                hs.after_prepare();
                job_tx.send(p).unwrap();
            });
            hs.recv(&job_rx).unwrap()
        });
        assert_eq!(seen, Some(Policy::Normal));
    }

    #[test]
    fn other_modes_leave_the_thread_alone() {
        for mode in [PrepMode::Companion, PrepMode::Inline] {
            let hs = Handshake::new(mode);
            let (tx, rx) = std::sync::mpsc::sync_channel(0);
            let seen = std::thread::scope(|s| {
                s.spawn(|| {
                    hs.before_prepare();
                    hs.after_prepare();
                    tx.send(policy_of(current_tid())).unwrap();
                });
                hs.recv(&rx).unwrap()
            });
            assert_eq!(hs.prep_tid(), 0);
            assert_eq!(seen, Some(Policy::Normal), "{mode:?}");
        }
    }

    #[test]
    fn pipelined_loop_keeps_order_recycles_buffers_and_returns_the_unsent_job() {
        for mode in [PrepMode::Companion, PrepMode::Background] {
            let mut next = 0u32;
            let mut seen = Vec::new();
            let unsent = run_pipelined(
                mode,
                "test-prep",
                [Vec::new(), Vec::new()],
                |hs, buf: &mut Vec<u32>| {
                    if next == 10 {
                        return None;
                    }
                    hs.preparing(|| {
                        buf.clear();
                        buf.push(next);
                    });
                    next += 1;
                    Some(next - 1)
                },
                |job, buf, give_back| {
                    assert_eq!(buf, [job], "the buffer carries its own frame");
                    seen.push(job);
                    give_back(buf);
                    job < 3
                },
            )
            .expect("spawn");
            assert_eq!(seen, [0, 1, 2, 3], "{mode:?}");
            assert_eq!(
                unsent,
                Some(4),
                "the frame prepared after the stop comes back"
            );
        }
        // Run to the end: every job, nothing unsent.
        let mut next = 0u32;
        let mut seen = Vec::new();
        let unsent = run_pipelined(
            PrepMode::Companion,
            "test-prep",
            [(), ()],
            |_, _| {
                next += 1;
                (next <= 5).then_some(next)
            },
            |job, buf, give_back| {
                seen.push(job);
                give_back(buf);
                true
            },
        )
        .expect("spawn");
        assert_eq!((seen, unsent), (vec![1, 2, 3, 4, 5], None));
    }

    #[test]
    fn recv_reports_a_closed_channel() {
        for mode in [PrepMode::Background, PrepMode::Companion] {
            let hs = Handshake::new(mode);
            let (tx, rx) = std::sync::mpsc::sync_channel::<u8>(0);
            drop(tx);
            assert!(hs.recv(&rx).is_err(), "{mode:?}");
        }
    }
}
