//! INT8 vs FP32: detection agreement and inference speed of the bundled
//! NanoDet-g 416 (`models/nanodet_g_coco_416.onnx`) and its static INT8
//! version (`models/nanodet_g_coco_416_int8.onnx`, `scripts/quantize_int8.py`).
//!
//! `cargo bench -p edge-node --bench int8_agreement`
//!
//! Frames: the held-out second half of both bundled clips
//! (`tests/fixtures/vtest_10s_h264.mp4`, `market_street_10s_h264.mp4`; the
//! INT8 model was calibrated on the first halves only), decoded by the node's
//! own `source::spawn_camera` (every frame, not real time). Both models run
//! through `detect::Detector` with all 80 classes, threshold 0.35, NMS 0.5.
//! FP32 is the ground truth: an INT8 detection matches an unmatched FP32
//! detection of the same label with IoU >= 0.5 (greedy, INT8 in score
//! order); precision = matches / INT8 detections, recall = matches / FP32
//! detections. Speed: median ORT `run` wall time (`StageTimes::infer`) of
//! each model with 1 and 2 intra-op threads, all four sessions interleaved
//! frame by frame so background load hits them alike; and, for 1 thread,
//! the median thread CPU time of the whole `detect` call (pre-processing +
//! inference + decode), which time-slicing on a busy box does not inflate.
//!
//! Writes the figures as JSON to `$INT8_AGREEMENT_JSON` or
//! `target/int8_agreement.json`. Without `--bench` (i.e. under
//! `cargo test --all-targets`) it runs a smoke version instead: a few frames,
//! checks that both models load and agree, prints no speed figures.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_node::detect::{Detector, DetectorOptions, RuntimeOptions, init_runtime};
use edge_node::frame::{Detection, Frame};
use edge_node::source::{SourceOptions, SourceState, spawn_camera};
use serde_json::json;

const CLIPS: [&str; 2] = ["vtest_10s_h264.mp4", "market_street_10s_h264.mp4"];
const FP32: &str = "models/nanodet_g_coco_416.onnx";
const INT8: &str = "models/nanodet_g_coco_416_int8.onnx";
const THRESHOLD: f32 = 0.35;
const MATCH_IOU: f32 = 0.5;
/// Frames per clip in the smoke run.
const SMOKE_FRAMES: usize = 4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every frame of a clip, decoded by the node's own source, in order.
fn decode_clip(path: &Path) -> Vec<Frame> {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&frames);
    let (tx, rx) = channel();
    let mut opts = SourceOptions::new("int8", path.to_string_lossy());
    opts.detect_fps = 0.0;
    opts.realtime = false;
    let cam = spawn_camera(
        opts,
        Box::new(move |f| sink.lock().expect("frame list").push(f)),
        Box::new(move |s| {
            let _ = tx.send(s);
        }),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(SourceState::Ended) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(SourceState::Failed { error, .. }) => panic!("{}: {error}", path.display()),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("{}: decode timed out", path.display()),
        }
    }
    cam.join();
    let mut v = std::mem::take(&mut *frames.lock().expect("frame list"));
    v.sort_by_key(|f| f.index);
    v
}

fn load(model: &str, threads: usize) -> Detector {
    let mut o = DetectorOptions::new(root().join(model));
    o.intra_threads = threads;
    o.threshold = THRESHOLD;
    o.classes = None;
    o.nms_iou = 0.5;
    o.max_detections = 1000;
    Detector::load(&o).unwrap_or_else(|e| panic!("{model}: {e}"))
}

/// Counts of one comparison: matched pairs, FP32 and INT8 detections.
#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    matched: usize,
    fp32: usize,
    int8: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.matched += o.matched;
        self.fp32 += o.fp32;
        self.int8 += o.int8;
    }
    fn precision(&self) -> f64 {
        ratio(self.matched, self.int8)
    }
    fn recall(&self) -> f64 {
        ratio(self.matched, self.fp32)
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }
    fn json(&self) -> serde_json::Value {
        json!({
            "matched": self.matched, "fp32_detections": self.fp32, "int8_detections": self.int8,
            "precision": round4(self.precision()), "recall": round4(self.recall()), "f1": round4(self.f1()),
        })
    }
    fn line(&self) -> String {
        format!(
            "precision {:.4}  recall {:.4}  F1 {:.4}  ({} matched, {} FP32, {} INT8 detections)",
            self.precision(),
            self.recall(),
            self.f1(),
            self.matched,
            self.fp32,
            self.int8
        )
    }
}

/// Empty over empty is perfect agreement.
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Greedy one-to-one matching of `int8` (score order) against `fp32`.
fn compare(fp32: &[Detection], int8: &[Detection]) -> Counts {
    let mut used = vec![false; fp32.len()];
    let mut matched = 0;
    let mut order: Vec<&Detection> = int8.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    for d in order {
        let best = fp32
            .iter()
            .enumerate()
            .filter(|(i, g)| !used[*i] && g.class_id == d.class_id)
            .map(|(i, g)| (i, g.bbox.iou(&d.bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, iou)) = best
            && iou >= MATCH_IOU
        {
            used[i] = true;
            matched += 1;
        }
    }
    Counts {
        matched,
        fp32: fp32.len(),
        int8: int8.len(),
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in ms: with
/// one intra-op thread ORT runs the model on the caller, so this is the work
/// of one `detect` call whether or not the core was shared meanwhile.
#[cfg(target_os = "linux")]
fn thread_cpu_ms() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit time_t on the
    // 64-bit Linux targets this project supports); the call writes only it.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ms() -> Option<f64> {
    None
}

fn median_ms(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty(), "no timings");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (m * 100.0).round() / 100.0
}

#[allow(
    clippy::too_many_lines,
    reason = "the whole measurement and its printed report in order, read top to bottom"
)]
fn run(full: bool) {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    let mut fp1 = load(FP32, 1);
    let mut q1 = load(INT8, 1);
    assert_eq!(fp1.labels(), q1.labels(), "INT8 model must keep the names");
    assert_eq!(fp1.spec().input_size, q1.spec().input_size);
    assert_eq!(fp1.spec().layout, q1.spec().layout);
    let mut two = full.then(|| (load(FP32, 2), load(INT8, 2)));

    // ms per model: [fp32 1 thr, int8 1 thr, fp32 2 thr, int8 2 thr]
    let mut times: [Vec<f64>; 4] = Default::default();
    // Thread CPU ms of a 1-thread detect call, [fp32, int8], whole call then
    // inference only (call minus pre/post).
    let mut cpu: [Vec<f64>; 4] = Default::default();
    let mut total = Counts::default();
    let mut per_clip = serde_json::Map::new();
    let mut frames_used = 0;
    for clip in CLIPS {
        let frames = decode_clip(&root().join("tests/fixtures").join(clip));
        assert!(frames.len() >= 20, "{clip}: only {} frames", frames.len());
        let half = frames.len() / 2;
        let held_out = &frames[half..];
        let held_out = if full {
            held_out
        } else {
            &held_out[..SMOKE_FRAMES]
        };
        let mut counts = Counts::default();
        for f in held_out {
            let c0 = thread_cpu_ms();
            let (a, ta) = fp1
                .detect_timed(&f.data, f.width, f.height)
                .expect("fp32 detect");
            let c1 = thread_cpu_ms();
            let (b, tb) = q1
                .detect_timed(&f.data, f.width, f.height)
                .expect("int8 detect");
            let c2 = thread_cpu_ms();
            times[0].push(ta.infer.as_secs_f64() * 1e3);
            times[1].push(tb.infer.as_secs_f64() * 1e3);
            if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
                cpu[0].push(c1 - c0);
                cpu[1].push(c2 - c1);
                // Minus the wall time of pre-processing and decode: the
                // inference's own CPU time (pre/post are short and rarely
                // preempted, so wall ~ CPU for them).
                let side = |t: edge_node::detect::StageTimes| (t.pre + t.post).as_secs_f64() * 1e3;
                cpu[2].push(c1 - c0 - side(ta));
                cpu[3].push(c2 - c1 - side(tb));
            }
            if let Some((fp2, q2)) = two.as_mut() {
                let (_, t) = fp2.detect_timed(&f.data, f.width, f.height).expect("fp32");
                times[2].push(t.infer.as_secs_f64() * 1e3);
                let (_, t) = q2.detect_timed(&f.data, f.width, f.height).expect("int8");
                times[3].push(t.infer.as_secs_f64() * 1e3);
            }
            counts.add(compare(&a, &b));
        }
        println!(
            "{clip}: frames {}..{} of {} (held out): {}",
            half,
            half + held_out.len(),
            frames.len(),
            counts.line()
        );
        frames_used += held_out.len();
        per_clip.insert(
            clip.to_string(),
            json!({"frames": held_out.len(), "first_frame": half, "total_frames": frames.len(), "agreement": counts.json()}),
        );
        total.add(counts);
    }
    println!("overall ({frames_used} frames): {}", total.line());

    if !full {
        // Smoke: the pipeline works and the INT8 model is not garbage.
        assert!(total.fp32 > 0, "FP32 found nothing on the smoke frames");
        assert!(total.int8 > 0, "INT8 found nothing on the smoke frames");
        assert!(
            total.f1() >= 0.6,
            "INT8 disagrees with FP32 on the smoke frames: {}",
            total.line()
        );
        println!("smoke run only; `cargo bench --bench int8_agreement` for the figures");
        return;
    }

    let [f1t, q1t, f2t, q2t] = times.each_mut().map(|v| median_ms(v));
    let ratio1 = f1t / q1t;
    let ratio2 = f2t / q2t;
    let cpu_med = (!cpu[0].is_empty()).then(|| {
        let [a, b, ia, ib] = cpu.each_mut().map(|v| median_ms(v));
        (a, b, a / b, ia, ib, ia / ib)
    });
    println!(
        "median inference, 1 thread:  FP32 {f1t:.2} ms, INT8 {q1t:.2} ms, INT8 {ratio1:.2}x faster"
    );
    println!(
        "median inference, 2 threads: FP32 {f2t:.2} ms, INT8 {q2t:.2} ms, INT8 {ratio2:.2}x faster"
    );
    if let Some((a, b, r, ia, ib, ir)) = cpu_med {
        println!(
            "median thread CPU, 1 thread, whole detect call: FP32 {a:.2} ms, INT8 {b:.2} ms, INT8 {r:.2}x less"
        );
        println!(
            "median thread CPU, 1 thread, inference only:    FP32 {ia:.2} ms, INT8 {ib:.2} ms, INT8 {ir:.2}x less"
        );
    }
    let goal_speed = ratio1 >= 2.0;
    let goal_speed_cpu = cpu_med.is_some_and(|c| c.5 >= 2.0);
    let goal_f1 = total.f1() >= 0.9;
    println!(
        "goals: INT8 >= 2x faster, 1 thread: wall {}, thread CPU (inference) {}; F1 >= 0.9: {}",
        if goal_speed { "met" } else { "NOT met" },
        if goal_speed_cpu { "met" } else { "NOT met" },
        if goal_f1 { "met" } else { "NOT met" }
    );

    let doc = json!({
        "fp32_model": FP32,
        "int8_model": INT8,
        "runtime": edge_node::detect::runtime_version(),
        "threshold": THRESHOLD,
        "match_iou": MATCH_IOU,
        "classes": "all",
        "frames": frames_used,
        "overall": total.json(),
        "per_clip": per_clip,
        "median_infer_ms": {
            "fp32_1_thread": f1t, "int8_1_thread": q1t,
            "fp32_2_threads": f2t, "int8_2_threads": q2t,
        },
        "median_thread_cpu_ms_1_thread": cpu_med.map(|(a, b, r, ia, ib, ir)| json!({
            "detect_call": {"fp32": a, "int8": b, "ratio": round4(r)},
            "inference": {"fp32": ia, "int8": ib, "ratio": round4(ir)},
        })),
        "speedup": {"1_thread": round4(ratio1), "2_threads": round4(ratio2)},
        "load_average_at_end": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
        "goals": {"speedup_2x_1_thread": goal_speed, "speedup_2x_1_thread_cpu": goal_speed_cpu, "f1_0_9": goal_f1},
    });
    let out = std::env::var_os("INT8_AGREEMENT_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/int8_agreement.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let text = serde_json::to_string_pretty(&doc).expect("json");
    std::fs::write(&out, text + "\n").unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("wrote {}", out.display());
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    run(full);
}
