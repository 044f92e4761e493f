//! Privacy before egress, end to end through the real node and a real broker:
//! masked pixels are black in every snapshot received, and a camera that must
//! blur faces but has no usable face model sends no snapshot at all.

mod common;

use std::time::Duration;

use common::*;

fn run(port: u16, extra_camera: &str, extra: &str) -> Vec<Msg> {
    run_on(port, &fixture("vtest_10s_h264.mp4"), extra_camera, extra)
}

fn run_on(port: u16, clip: &std::path::Path, extra_camera: &str, extra: &str) -> Vec<Msg> {
    let sub = Subscriber::start(port, "t/#");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{head}{extra}
[[cameras]]
id = "vtest"
url = "{clip}"
detect_fps = 5
realtime = false
{extra_camera}
"#,
        head = PipelineToml::new(port)
            .node("priv-box", "test-district")
            .build(),
        clip = clip.display(),
    );
    let p = write(dir.path(), "p.toml", &text);
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let st = node
        .wait(Duration::from_secs(120))
        .expect("file pipeline ends");
    assert!(
        st.success(),
        "{st:?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let msgs = sub.wait_for("stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == "t/test-district/priv-box/status" && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);
    msgs
}

#[test]
fn masked_area_is_black_in_every_snapshot() {
    let broker = mosquitto();
    // Mask the top 40 % of the frame: the building, the parked van and the far path.
    let msgs = run(
        broker.port,
        "privacy_masks = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.4], [0.0, 0.4]]]",
        "[snapshot]\ndraw_box = false",
    );
    let snaps: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.topic.contains("/snapshot/"))
        .collect();
    assert!(snaps.len() >= 3, "snapshots were sent: {}", snaps.len());
    for s in snaps {
        let img = image::load_from_memory(&s.payload).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        let mut worst = 0u8;
        // Every pixel well inside the mask (JPEG may smear 1-2 px at its edge).
        for y in 0..(h as f32 * 0.4) as u32 - 3 {
            for x in 0..w {
                worst = worst.max(*img.get_pixel(x, y).0.iter().max().unwrap());
            }
        }
        assert!(worst <= 24, "{}: a masked pixel reached {worst}", s.topic);
        // And the unmasked part still shows the scene.
        let below = img.get_pixel(w / 2, (h as f32 * 0.8) as u32);
        assert!(
            below.0.iter().any(|&c| c > 40),
            "{}: the scene below the mask is visible",
            s.topic
        );
    }
}

#[test]
fn blur_required_without_face_model_withholds_snapshots() {
    let broker = mosquitto();
    let msgs = run(
        broker.port,
        "blur_faces = true",
        "[privacy]\nface_model = \"/nonexistent/centerface.onnx\"",
    );
    assert!(
        !msgs.iter().any(|m| m.topic.contains("/snapshot/")),
        "no snapshot may leave the box without face blurring"
    );
    let evs = events(&msgs);
    assert!(evs.iter().any(|e| e["type"] == "new"), "events still go");
    assert!(evs.iter().all(|e| e["snapshot"].is_null()));
    let why: Vec<String> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/vtest/status"))
        .filter_map(|m| m.json()["last_error"].as_str().map(str::to_string))
        .collect();
    assert!(
        why.iter().any(|e| e.contains("snapshots withheld") && e.contains("/nonexistent/centerface.onnx")),
        "the camera status says why: {why:?}"
    );
}

#[test]
fn blurred_faces_with_the_real_model_still_send_snapshots() {
    let model = repo().join("third_party/models/centerface_dynamic.onnx");
    assert!(
        model.exists(),
        "{} is missing: run scripts/setup.sh",
        model.display()
    );
    let broker = mosquitto();
    let msgs = run(broker.port, "blur_faces = true", "");
    assert!(
        msgs.iter().any(|m| m.topic.contains("/snapshot/")),
        "snapshots go when faces can be blurred"
    );
}

/// Mean absolute 4-neighbour Laplacian of the luma inside a rectangle.
fn laplacian(img: &image::RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
    let l = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
    };
    let (mut sum, mut n) = (0.0, 0);
    for y in y0.max(1)..y1.min(img.height() - 1) {
        for x in x0.max(1)..x1.min(img.width() - 1) {
            sum += (4.0 * l(x, y) - l(x - 1, y) - l(x + 1, y) - l(x, y - 1) - l(x, y + 1)).abs();
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// A camera that must blur faces: a still of a real face (tests/fixtures/astronaut.jpg, public
/// domain) goes through the node; the face region of the received snapshot has lost its detail,
/// compared with the same camera without blurring.
#[test]
fn a_face_in_the_camera_frame_is_blurred_in_the_received_snapshot() {
    let model = repo().join("third_party/models/centerface_dynamic.onnx");
    assert!(
        model.exists(),
        "{} is missing: run scripts/setup.sh",
        model.display()
    );
    let still = fixture("astronaut.jpg");
    let opts = "[events]\nmin_hits = 1\n[snapshot]\ndraw_box = false\nmax_height = 512";
    let snapshot_of = |camera_extra: &str| {
        let broker = mosquitto();
        let msgs = run_on(broker.port, &still, camera_extra, opts);
        let s = msgs
            .iter()
            .find(|m| m.topic.contains("/snapshot/"))
            .expect("the person in the still is an event with a snapshot");
        image::load_from_memory(&s.payload).unwrap().to_rgb8()
    };
    let plain = snapshot_of("");
    let blurred = snapshot_of("blur_faces = true");
    assert_eq!(plain.dimensions(), (512, 512));
    // The face is at about [181, 58, 270, 178] in the 512x512 still (see tests/privacy.rs).
    let (a, b) = (
        laplacian(&plain, 185, 62, 266, 174),
        laplacian(&blurred, 185, 62, 266, 174),
    );
    assert!(b < 0.3 * a, "face detail {a:.2} -> {b:.2}: not blurred");
    // Away from the face the picture is the same.
    let (c, d) = (
        laplacian(&plain, 20, 300, 150, 480),
        laplacian(&blurred, 20, 300, 150, 480),
    );
    eprintln!("face detail {a:.2} -> {b:.2}; control {c:.2} -> {d:.2}");
    assert!(
        (c - d).abs() < 0.15 * c.max(1.0),
        "control region {c:.2} vs {d:.2}"
    );
}
