//! Node wiring tests: reload fingerprints, and the stall test (one camera's
//! held-up analytics never stalls another camera on the same worker), with
//! the real bundled model on a real worker thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::camera::{CameraAnalytics, Outgoing};
use super::lifecycle::camera_fingerprint;
use super::restart_only_changes;
use super::slots::{HANDOVER, Pool, WhenFull};
use super::workers;
use crate::config::Pipeline;
use crate::detect::{self, Analysis, Detector, DetectorOptions, RuntimeOptions};
use crate::events::{EventConfig, EventEngine, EventKind};
use crate::frame::Frame;
use crate::rules::RulesConfig;
use crate::sched::PrepMode;
use crate::track::{Tracker, TrackerConfig};

const BASE: &str = r#"
[node]
id = "box-1"
district = "d"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "t"
[[cameras]]
id = "a"
url = "rtsp://127.0.0.1:8554/a"
[[cameras]]
id = "b"
url = "rtsp://127.0.0.1:8554/b"
"#;

fn load(text: &str) -> Pipeline {
    Pipeline::from_str(Path::new("/tmp/x/pipeline.toml"), text).unwrap()
}

#[test]
fn reload_sees_which_cameras_changed_and_which_sections_need_a_restart() {
    let old = load(BASE);
    // Camera b gets another rate; a is untouched.
    let new = load(&BASE.replace("8554/b\"", "8554/b\"\ndetect_fps = 2"));
    assert_eq!(camera_fingerprint(&old, 0), camera_fingerprint(&new, 0));
    assert_ne!(camera_fingerprint(&old, 1), camera_fingerprint(&new, 1));
    assert!(restart_only_changes(&old.raw, &new.raw).is_empty());
    // A tracker change applies to every camera, without a restart.
    let tr = load(&format!("{BASE}[tracker]\nmatch_iou = 0.5\n"));
    assert_ne!(camera_fingerprint(&old, 0), camera_fingerprint(&tr, 0));
    assert!(restart_only_changes(&old.raw, &tr.raw).is_empty());
    // MQTT and detector changes need a restart, and are named.
    let mq = load(
        &BASE
            .replace("topic_prefix = \"t\"", "topic_prefix = \"u\"")
            .replace(
                "[[cameras]]\nid = \"a\"",
                "[detector]\nthreshold = 0.5\n[[cameras]]\nid = \"a\"",
            ),
    );
    assert_eq!(
        restart_only_changes(&old.raw, &mq.raw),
        vec!["[detector]".to_string(), "[mqtt]".to_string()]
    );
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Pushes `n` copies of `rgb` into slot `idx`, one every `every`.
fn feed(
    pool: &Arc<Pool>,
    idx: usize,
    camera: &str,
    rgb: &image::RgbImage,
    n: u64,
    every: Duration,
) {
    let t0 = Instant::now();
    for i in 0..n {
        pool.push(
            idx,
            Frame {
                camera: camera.into(),
                index: i,
                t: i as f64 * every.as_secs_f64(),
                wall: SystemTime::now(),
                width: rgb.width(),
                height: rgb.height(),
                data: rgb.as_raw().clone(),
            },
        );
        let next = t0 + every * (i as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Two cameras on one inference worker. Camera a's analytics is held up (its
/// hand-over is never read) for the whole test; camera b, fed at 10 fps, must
/// get every frame analysed and its objects must become events meanwhile.
/// Before the hand-over reserved room ahead of inference, the worker blocked
/// on camera a's full channel and camera b got nothing.
#[test]
fn a_camera_with_held_up_analytics_never_stalls_another_on_the_same_worker() {
    detect::init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available for this test (set ORT_DYLIB_PATH)");
    let model = repo("models/nanodet_g_coco_416.onnx");
    let det = Detector::load(&DetectorOptions::new(&model)).unwrap();
    let pool = Arc::new(Pool::default());
    let worker = workers::spawn_worker(&model, 0, pool.clone(), det, PrepMode::Inline).unwrap();
    let rgb = image::open(repo("tests/fixtures/vtest_f000.png"))
        .unwrap()
        .to_rgb8();
    let every = Duration::from_millis(100);

    // Camera a alone: its analytics never reads, so its hand-over fills.
    let (a, held) = pool.add(2, WhenFull::DropOldest, Analysis::default());
    feed(&pool, a, "a", &rgb, 20, every);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.counters(a).analysed < HANDOVER as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        pool.counters(a).analysed,
        HANDOVER as u64,
        "camera a's hand-over is full"
    );

    // Camera b joins, with real analytics, while camera a stays held up.
    const B_FRAMES: u64 = 30;
    let (b, mut rx_b) = pool.add(B_FRAMES as usize, WhenFull::DropOldest, Analysis::default());
    let b_analytics = std::thread::spawn(move || {
        let ev = EventConfig::default();
        let tracker = Tracker::new(ev.tracker_config(TrackerConfig::default()));
        let mut an =
            CameraAnalytics::new(tracker, EventEngine::new(ev), RulesConfig::default(), 60.0);
        let (mut frames, mut new_events) = (0u64, 0u64);
        while let Some(r) = rx_b.blocking_recv() {
            frames += 1;
            for o in an.on_frame(&r.frame, &r.detections) {
                if let Outgoing::Event { action, .. } = o
                    && action.kind == EventKind::New
                {
                    new_events += 1;
                }
            }
            if frames == B_FRAMES {
                break;
            }
        }
        (frames, new_events)
    });
    let start = Instant::now();
    let (pa, pb) = (pool.clone(), pool.clone());
    let (ra, rb) = (rgb.clone(), rgb);
    let feed_a = std::thread::spawn(move || feed(&pa, a, "a", &ra, B_FRAMES, every));
    let feed_b = std::thread::spawn(move || feed(&pb, b, "b", &rb, B_FRAMES, every));
    feed_a.join().unwrap();
    feed_b.join().unwrap();
    let fed_s = start.elapsed().as_secs_f64();
    let in_window = pool.counters(b).analysed;
    // Let camera b's last frames finish (camera a is still held up).
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.counters(b).analysed < B_FRAMES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cb = pool.counters(b);
    eprintln!(
        "stall test: camera b analysed {in_window} of {B_FRAMES} frames in the {fed_s:.1} s it was fed \
         ({:.1} fps against 10 fps sent) while camera a was held up; {} in all, {} dropped",
        in_window as f64 / fed_s,
        cb.analysed,
        cb.dropped
    );
    assert_eq!(
        (cb.analysed, cb.dropped),
        (B_FRAMES, 0),
        "camera b must keep its frame rate while camera a's analytics is held up"
    );
    let (frames, new_events) = b_analytics.join().unwrap();
    assert_eq!(frames, B_FRAMES);
    assert!(
        new_events >= 1,
        "camera b's objects become events meanwhile"
    );
    assert_eq!(
        pool.counters(a).analysed,
        HANDOVER as u64,
        "camera a waited in its slot"
    );
    assert!(
        pool.counters(a).dropped > 0,
        "camera a's waiting frames are dropped and counted"
    );

    pool.stop();
    drop(held);
    worker.join().unwrap();
}
