//! Where the process's CPU goes, stage by stage (`bench pipeline`).
//!
//! Two sources, combined by [`split`]:
//! - **Per-thread CPU** from `/proc/self/task/*/stat` ([`ThreadSample`]),
//!   classified by thread name and by a registry of thread ids: the stage
//!   of a thread that runs only one stage (ONNX Runtime's workers, the
//!   camera's GStreamer streaming thread, the RTP receive threads).
//! - **Stage counters** of thread CPU time (`CLOCK_THREAD_CPUTIME_ID`)
//!   measured around a stage inside a thread that does several
//!   ([`Stage`]: scaling and colour conversion on the streaming thread;
//!   tracking and rules, and snapshot rendering, on the tokio threads).
//!
//! The counters cost two `clock_gettime` calls per frame and stage; they are
//! always on. Linux only: elsewhere every figure reads 0.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

/// A stage measured inside a thread that runs several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Scaling, colour conversion and the copy out of GStreamer, on the
    /// camera's streaming thread (frames kept by the rate limit only).
    ScaleConvert,
    /// Tracking, scene rules, events (the camera's analytics step).
    Analytics,
    /// Snapshot rendering: privacy, box, crop, JPEG encoding.
    Snapshot,
}

const STAGES: usize = 3;

static COUNTERS: [AtomicU64; STAGES] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// CPU time this thread has used, ns (0 where unavailable).
pub fn thread_cpu_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
        if rc == 0 {
            return (ts.tv_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as u64);
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Adds `ns` of thread CPU to `stage`.
pub fn add(stage: Stage, ns: u64) {
    COUNTERS[stage as usize].fetch_add(ns, Ordering::Relaxed);
}

/// Runs `f`, charging the thread CPU it used to `stage`.
pub fn charge<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let t0 = thread_cpu_ns();
    let out = f();
    add(stage, thread_cpu_ns().saturating_sub(t0));
    out
}

/// The stage counters now, ns, indexed by [`Stage`].
pub fn counters() -> [u64; STAGES] {
    [0, 1, 2].map(|i| COUNTERS[i].load(Ordering::Relaxed))
}

/// What a registered thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A camera's GStreamer streaming thread: depayload, parse, decode, then
    /// [`Stage::ScaleConvert`].
    Decode,
}

fn registry() -> &'static Mutex<HashSet<(i32, Role)>> {
    static REG: OnceLock<Mutex<HashSet<(i32, Role)>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashSet::new()))
}

thread_local! {
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records that the calling thread plays `role` (cheap after the first call
/// on a thread).
pub fn register_current(role: Role) {
    if REGISTERED.with(std::cell::Cell::get) {
        return;
    }
    REGISTERED.with(|r| r.set(true));
    if let Some(tid) = current_tid() {
        registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((tid, role));
    }
}

fn current_tid() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        Some(unsafe { libc::gettid() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// One thread's CPU at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCpu {
    pub tid: i32,
    pub name: String,
    /// utime + stime, clock ticks (USER_HZ = 100).
    pub ticks: u64,
}

/// Every thread of this process with its CPU, and the stage counters.
#[derive(Clone, Debug, Default)]
pub struct ThreadSample {
    pub threads: Vec<ThreadCpu>,
    pub counters: [u64; STAGES],
}

/// Reads `/proc/self/task` (empty where there is none).
pub fn sample() -> ThreadSample {
    let mut threads = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let Ok(tid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = parse_stat(&stat) {
                threads.push(ThreadCpu { tid, name, ticks });
            }
        }
    }
    ThreadSample {
        threads,
        counters: counters(),
    }
}

/// `(comm, utime + stime)` of one `stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After ')': field 3 (state) is f[0]; utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The CPU of one run split by stage, in % of one core (100 = one core busy
/// for the whole run). Field names are a contract (docs/bench.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuSplit {
    /// RTP/UDP receive threads (rtspsrc's sockets, RTCP, jitter buffer).
    pub receive_pct: f64,
    /// The cameras' streaming threads less scale/convert: depayload, parse, decode.
    pub decode_pct: f64,
    /// Scaling, colour conversion and the copy of kept frames.
    pub scale_convert_pct: f64,
    /// The detector's pre-processing (resize, normalise).
    pub preprocess_pct: f64,
    /// ONNX Runtime (the session threads) and decoding its output.
    pub inference_pct: f64,
    /// Tracking, rules and events.
    pub analytics_pct: f64,
    /// Snapshot rendering and JPEG encoding.
    pub snapshot_pct: f64,
    /// Dual-stream cameras: decoding the main stream for snapshots (their
    /// `snap-` threads, colour conversion included).
    pub snapshot_decode_pct: f64,
    /// The rest of the async runtime: publishing, outbox, status.
    pub publish_pct: f64,
    /// Everything else in the node (GLib, supervisors, the main thread).
    pub other_pct: f64,
    /// The bench's own harness in this process (the loopback RTSP server
    /// feeding the cameras, the embedded MQTT broker): not the node's cost.
    pub harness_pct: f64,
    /// The process's CPU no thread alive at the end accounts for: threads
    /// that ended during the run (a dual-stream camera's snapshot decodes
    /// run in short-lived pipelines). Set by the bench, which knows the
    /// process total.
    pub ended_threads_pct: f64,
    pub threads_seen: usize,
}

/// Which bucket a thread's CPU goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bucket {
    Receive,
    Decode,
    SnapshotDecode,
    Detect,
    Prep,
    Runtime,
    Harness,
    Other,
}

fn bucket(
    name: &str,
    tid: i32,
    pid: i32,
    roles: &HashSet<(i32, Role)>,
    decode_names: &HashSet<&str>,
) -> Bucket {
    if roles.contains(&(tid, Role::Decode)) {
        return Bucket::Decode;
    }
    let starts = |p: &str| name.starts_with(p);
    if starts("detect-") {
        Bucket::Detect
    } else if starts("snap-") {
        // A dual-stream camera's snapshot thread: the main stream decoded
        // on demand, then converted to RGB.
        Bucket::SnapshotDecode
    } else if starts("prep-") {
        Bucket::Prep
    } else if starts("tokio-") {
        Bucket::Runtime
    } else if decode_names.contains(name) {
        // Threads a decoder spawned (libav's frame and slice threads) inherit
        // the name of the streaming thread that opened it.
        Bucket::Decode
    } else if starts("udpsrc") || starts("rtpsession") || starts("rtpjitterbuf") || starts("tcp") {
        Bucket::Receive
    } else if starts("rtsp-") || starts("mqtt-broker") || starts("router-") || starts("v5-") {
        Bucket::Harness
    } else if name == "edge-node" && tid != pid {
        // Spawned by the main thread: ONNX Runtime's intra-op pool when the
        // session was built there.
        Bucket::Detect
    } else {
        Bucket::Other
    }
}

/// The split between two samples over `wall_s` seconds. `pre_share` is the
/// pre-processing share of the detector threads' time when it runs inline
/// (from the workers' stage timings).
pub fn split(a: &ThreadSample, b: &ThreadSample, wall_s: f64, pre_share: f64) -> CpuSplit {
    let pid = std::process::id() as i32;
    let roles = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let before: BTreeMap<i32, u64> = a.threads.iter().map(|t| (t.tid, t.ticks)).collect();
    let decode_names: HashSet<&str> = b
        .threads
        .iter()
        .filter(|t| roles.contains(&(t.tid, Role::Decode)))
        .map(|t| t.name.as_str())
        .filter(|n| !n.starts_with("edge-node"))
        .collect();
    let mut by: BTreeMap<Bucket, f64> = BTreeMap::new();
    for t in &b.threads {
        let used = t
            .ticks
            .saturating_sub(before.get(&t.tid).copied().unwrap_or(0));
        let k = bucket(&t.name, t.tid, pid, &roles, &decode_names);
        if used > 0 {
            tracing::debug!(tid = t.tid, thread = %t.name, bucket = ?k, cpu_s = used as f64 / 100.0, "cpu split: thread");
        }
        *by.entry(k).or_default() += used as f64 / 100.0;
    }
    let counter =
        |s: Stage| b.counters[s as usize].saturating_sub(a.counters[s as usize]) as f64 / 1e9;
    let pct = |secs: f64| (secs / wall_s.max(1e-9) * 1000.0).round() / 10.0;
    let get = |k: Bucket| by.get(&k).copied().unwrap_or(0.0);
    let scale = counter(Stage::ScaleConvert);
    let analytics = counter(Stage::Analytics);
    let snapshot = counter(Stage::Snapshot);
    let pre_share = pre_share.clamp(0.0, 1.0);
    let detect = get(Bucket::Detect);
    CpuSplit {
        receive_pct: pct(get(Bucket::Receive)),
        decode_pct: pct((get(Bucket::Decode) - scale).max(0.0)),
        scale_convert_pct: pct(scale),
        preprocess_pct: pct(get(Bucket::Prep) + detect * pre_share),
        inference_pct: pct(detect * (1.0 - pre_share)),
        analytics_pct: pct(analytics),
        snapshot_pct: pct(snapshot),
        snapshot_decode_pct: pct(get(Bucket::SnapshotDecode)),
        publish_pct: pct((get(Bucket::Runtime) - analytics - snapshot).max(0.0)),
        other_pct: pct(get(Bucket::Other)),
        harness_pct: pct(get(Bucket::Harness)),
        ended_threads_pct: 0.0,
        threads_seen: b.threads.len(),
    }
}

impl CpuSplit {
    /// The node's stages (harness excluded), % of one core.
    pub fn node_pct(&self) -> f64 {
        let s = self.receive_pct
            + self.decode_pct
            + self.scale_convert_pct
            + self.preprocess_pct
            + self.inference_pct
            + self.analytics_pct
            + self.snapshot_pct
            + self.snapshot_decode_pct
            + self.publish_pct
            + self.other_pct
            + self.ended_threads_pct;
        (s * 10.0).round() / 10.0
    }

    /// One line per stage.
    pub fn table(&self) -> String {
        let rows = [
            ("receive/depayload (RTP threads)", self.receive_pct),
            ("decode (+depayload, parse)", self.decode_pct),
            ("scale/convert/copy", self.scale_convert_pct),
            ("pre-process", self.preprocess_pct),
            ("inference", self.inference_pct),
            ("tracking, rules, events", self.analytics_pct),
            ("snapshot render + JPEG", self.snapshot_pct),
            ("main-stream decode for snapshots", self.snapshot_decode_pct),
            ("publish, outbox, status", self.publish_pct),
            ("other", self.other_pct),
            ("threads that ended during the run", self.ended_threads_pct),
        ];
        let node = self.node_pct();
        let mut out = format!("CPU by stage (% of one core; node total {node:.1}%):\n");
        for (name, v) in rows {
            let share = if node > 0.0 { v / node * 100.0 } else { 0.0 };
            out.push_str(&format!(
                "  {name:<34} {v:>6.1}%  ({share:>4.1}% of the node)\n"
            ));
        }
        out.push_str(&format!(
            "  {:<34} {:>6.1}%  (loopback camera server + broker, not the node)\n",
            "bench harness", self.harness_pct
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let line = "4242 (rtpjitter buf) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("rtpjitter buf".into(), 281)));
    }

    #[test]
    fn thread_cpu_grows_with_work_and_is_charged() {
        let before = counters()[Stage::Snapshot as usize];
        let v = charge(Stage::Snapshot, || {
            let mut x = 0u64;
            for i in 0..3_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x)
        });
        std::hint::black_box(v);
        assert!(counters()[Stage::Snapshot as usize] > before);
    }

    #[test]
    fn threads_are_bucketed_by_role_then_name() {
        let mut roles = HashSet::new();
        roles.insert((7, Role::Decode));
        let names: HashSet<&str> = ["multiqueue0:src"].into();
        let b = |n: &str, tid| bucket(n, tid, 1, &roles, &names);
        assert_eq!(b("rtpjitterbuffer", 7), Bucket::Decode);
        assert_eq!(b("rtpjitterbuffer", 8), Bucket::Receive);
        assert_eq!(b("multiqueue0:src", 9), Bucket::Decode);
        assert_eq!(b("detect-nanodet", 10), Bucket::Detect);
        assert_eq!(b("prep-nanodet", 11), Bucket::Prep);
        assert_eq!(b("tokio-rt-worker", 12), Bucket::Runtime);
        assert_eq!(b("rtsp-feed", 13), Bucket::Harness);
        assert_eq!(b("edge-node", 14), Bucket::Detect);
        assert_eq!(b("edge-node", 1), Bucket::Other);
        assert_eq!(b("gmain", 15), Bucket::Other);
        assert_eq!(b("snap-street-01", 16), Bucket::SnapshotDecode);
    }

    #[test]
    fn the_split_subtracts_measured_stages_from_their_threads() {
        let t = |tid, name: &str, ticks| ThreadCpu {
            tid,
            name: name.into(),
            ticks,
        };
        let a = ThreadSample {
            threads: vec![t(100, "tokio-rt-worker", 0), t(101, "detect-x", 0)],
            counters: [0; STAGES],
        };
        let b = ThreadSample {
            // 1 s of tokio, 2 s of detector over 10 s.
            threads: vec![t(100, "tokio-rt-worker", 100), t(101, "detect-x", 200)],
            // 0.25 s of analytics, 0.25 s of snapshots measured inside tokio.
            counters: [0, 250_000_000, 250_000_000],
        };
        let s = split(&a, &b, 10.0, 0.25);
        assert_eq!(s.analytics_pct, 2.5);
        assert_eq!(s.snapshot_pct, 2.5);
        assert_eq!(s.publish_pct, 5.0);
        assert_eq!(s.preprocess_pct, 5.0);
        assert_eq!(s.inference_pct, 15.0);
        assert_eq!(s.node_pct(), 30.0);
    }
}
