//! Absurd inputs get a clear refusal or a bounded degradation, never a crash
//! or an unbounded allocation (issue 5, "Bad input"). Regression tests for
//! crashes found by the fuzz targets (`fuzz/`, docs/fuzzing.md) live here
//! too. Other extremes are tested next to the code that owns them:
//! a 16K and a 16000-px-wide frame, and a zero-fps (`framerate=0/1`)
//! stream in `source::tests::huge_and_zero_fps_frames_are_bounded`; a model
//! declaring a 65536×65536 input in
//! `detect::spec::tests::huge_model_input_is_refused`; `detect_fps = 0` in
//! `config::tests`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use edge_node::config::{MAX_CAMERAS, Pipeline};
use edge_node::frame::BBox;
use edge_node::publish::{EventRecord, EventType, NodeIdentity, OutboxOptions, Publisher};
use edge_node::snapshot::{
    Overlay, SnapshotError, SnapshotOptions, blur_regions, fill_polygons, preview, render,
};

fn cameras(n: usize) -> String {
    let mut s = PipelineToml::new(1883)
        .node("box-1", "d1")
        .prefix("city")
        .no_detector()
        .build();
    for i in 0..n {
        s.push_str(&format!(
            "[[cameras]]\nid = \"cam-{i}\"\nurl = \"rtsp://127.0.0.1:8554/c{i}\"\ndetect_fps = 5\n"
        ));
    }
    s
}

#[test]
fn camera_limit_is_accepted() {
    let p = Pipeline::from_str(Path::new("max.toml"), &cameras(MAX_CAMERAS)).unwrap();
    assert_eq!(p.raw.cameras.len(), 256);
}

/// `edge-node check` on 10,000 cameras refuses quickly, naming the field and
/// the limit, instead of planning 10,000 pipelines.
#[test]
fn ten_thousand_cameras_are_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "many.toml", &cameras(10_000));
    let t0 = Instant::now();
    let out = edge_node().arg("check").arg(&path).output().unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted:\n{err}");
    assert!(
        err.contains("cameras") && err.contains("10000 cameras") && err.contains("256"),
        "{err}"
    );
    // Parsing 10,000 tables is quick even on a loaded machine.
    assert!(took < Duration::from_secs(20), "check took {took:?}");
}

fn frame(w: u32, h: u32) -> Vec<u8> {
    (0..w * h * 3).map(|i| (i % 251) as u8).collect()
}

/// A box that sticks out of the frame is clipped; one wholly outside, inverted
/// or not finite is refused with `BoxOutsideFrame` (the node then sends the
/// event without a snapshot), never a panic.
#[test]
fn snapshot_boxes_outside_the_frame() {
    let (w, h) = (320, 240);
    let rgb = frame(w, h);
    for crop in [false, true] {
        let opts = SnapshotOptions {
            crop,
            ..SnapshotOptions::default()
        };
        let s = render(
            &rgb,
            w,
            h,
            BBox::new(-500.0, 200.0, 40.0, 9000.0),
            "person",
            &opts,
        )
        .unwrap();
        assert!(s.width <= w && s.height <= h, "{}x{}", s.width, s.height);
        if crop {
            // The crop is around the clipped box (0..40 × 200..240) plus margins.
            assert!(s.width <= 60 && s.height <= 60, "{}x{}", s.width, s.height);
        }
        for b in [
            BBox::new(400.0, 10.0, 500.0, 100.0),
            BBox::new(-100.0, -100.0, -1.0, -1.0),
            BBox::new(200.0, 200.0, 100.0, 100.0),
            BBox::new(f32::NAN, 0.0, 10.0, 10.0),
            BBox::new(0.0, 0.0, f32::INFINITY, 10.0),
        ] {
            match render(&rgb, w, h, b, "x", &opts) {
                Err(SnapshotError::BoxOutsideFrame { .. }) => {}
                other => panic!("{b:?}: {other:?}"),
            }
        }
    }
}

/// On the events path the box on the wire is clamped to the frame
/// (normalised 0..1) even when the tracker's box sticks out of it. The
/// publisher commits to its outbox without a broker, so none is needed.
#[tokio::test]
async fn event_box_outside_the_frame_is_clamped_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let opts = rumqttc::v5::MqttOptions::new("bad-input", "127.0.0.1", free_port());
    let (publisher, _h) = Publisher::start(
        opts,
        NodeIdentity {
            node: "box-1".into(),
            district: "d1".into(),
            prefix: "city".into(),
            cameras: vec!["cam".into()],
        },
        OutboxOptions {
            dir: dir.path().join("outbox"),
            quota_bytes: 1 << 20,
            replay_rate: 10.0,
            stats_interval: Duration::from_secs(3600),
            keep_delivered: Duration::ZERO,
            max_packet_bytes: 1 << 20,
            puback_timeout: Duration::from_secs(30),
        },
    )
    .unwrap();
    let now = SystemTime::now();
    let rec = EventRecord {
        run: 1,
        kind: EventType::New,
        track_id: 1,
        class_id: 0,
        label: "person".into(),
        score: 0.9,
        top_score: 0.9,
        start: now,
        end: None,
        frame: now,
        bbox: BBox::new(-50.0, 100.0, 900.0, 5000.0),
        frame_size: (640, 480),
        current_zones: vec![],
        entered_zones: vec![],
        stationary: false,
        riders: 0,
        alert: None,
    };
    let msg = publisher.event("cam", 1, &rec, None).await.unwrap();
    let b = msg.bbox;
    assert_eq!((b.x1, b.x2, b.y2), (0.0, 1.0, 1.0), "{b:?}");
    assert!((b.y1 - 100.0 / 480.0).abs() < 1e-3, "{b:?}");
}

// ------------------------------------------------------- fuzz regressions

/// Found by `fuzz/fuzz_targets/snapshot.rs` (crash-fbfd5a6b…, an overflow
/// panic in `blur_regions`): a frame size that does not match the buffer
/// must be ignored (`blur_regions`, `fill_polygons`) or refused (`preview`).
/// `w * h * 3` overflowed: a panic with overflow checks, and without them
/// (release) 2900561549 × 4239809835 × 3 wraps to 13 bytes, passed the length
/// check and indexed out of bounds.
#[test]
fn frame_size_that_overflows_is_not_trusted() {
    let full = vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]];
    let boxes = [BBox::new(0.0, 0.0, 10.0, 10.0)];
    for (w, h, len) in [
        (2_900_561_549u32, 4_239_809_835u32, 13usize),
        (u32::MAX, u32::MAX, 30),
        (1 << 31, 1 << 31, 12),
    ] {
        let mut rgb = vec![7u8; len];
        blur_regions(&mut rgb, w, h, &boxes);
        fill_polygons(&mut rgb, w, h, &full);
        assert!(rgb.iter().all(|&v| v == 7), "{w}x{h}: buffer changed");
        let ov = Overlay {
            masks: full.clone(),
            boxes: vec![(boxes[0], "x".into())],
            ..Overlay::default()
        };
        match preview(&rgb, w, h, &ov, 70) {
            Err(SnapshotError::FrameSize { .. }) => {}
            other => panic!("{w}x{h}: {other:?}"),
        }
    }
}

/// Found by the snapshot fuzz target (crash-888c4c07…, "attempt to subtract
/// with overflow" in the line drawing of `preview`): zone, line and box
/// coordinates far outside the frame (the float-to-int cast saturates at
/// i32::MIN/MAX, and the pen offset then overflowed) are clipped. This test
/// fails without the fix in builds with overflow checks (`cargo test` in the
/// dev profile, the fuzz build); release builds wrapped around silently.
#[test]
fn preview_with_far_off_coordinates_is_clipped() {
    let (w, h) = (64, 48);
    let rgb = frame(w, h);
    let far = [
        [-1e30, 0.5],
        [f32::MAX, f32::MAX],
        [f32::MIN, 2.0],
        [f32::NAN, f32::INFINITY],
    ];
    let ov = Overlay {
        zones: vec![("far".into(), far.to_vec())],
        lines: vec![
            ("l1".into(), far[0], far[1], "in".into()),
            ("l2".into(), far[2], [0.5, 0.5], "out".into()),
            ("l3".into(), [0.5, 0.5], [0.5, 1e12], "down".into()),
        ],
        masks: vec![far.to_vec()],
        ignore: vec![far.to_vec()],
        boxes: vec![(BBox::new(-1e30, -1e30, 1e30, 1e30), "everything".into())],
    };
    let jpeg = preview(&rgb, w, h, &ov, 70).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
}

/// A missing model is said once (issue 14, problem 6): the error used to
/// end in "No such file or directory (os error 2): No such file or
/// directory (os error 2)", its cause printed twice.
#[test]
fn missing_model_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    let out = edge_node()
        .args(["bench", "model", "--model"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "the cause is said once: {line}"
    );
}
