//! Face blurring before egress, on a real photograph with a face.
//!
//! `tests/fixtures/astronaut.jpg` (NASA portrait, public domain; provenance
//! in tests/fixtures/README.md) through the real CenterFace model
//! (`third_party/models/centerface_dynamic.onnx`, made by
//! `scripts/setup.sh` via `scripts/fetch-centerface.sh`): the face is found
//! where it is, `snapshot::blur_regions` destroys its detail (high-frequency
//! energy drops by far more than 70 %, also after JPEG encoding) and leaves
//! the rest of the frame untouched, and wrong or missing model files are
//! refused with errors naming them.
//!
//! Needs ONNX Runtime: `ORT_DYLIB_PATH` or the default search of
//! `edge_node::detect::init_runtime`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use edge_node::detect::{DetectError, FaceDetector, RuntimeOptions, init_runtime};
use edge_node::frame::BBox;
use edge_node::snapshot::{blur_regions, encode_jpeg};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    let p = root().join("third_party/models/centerface_dynamic.onnx");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup.sh (or scripts/fetch-centerface.sh) to fetch and convert the CenterFace face model",
        p.display()
    );
    p
}

fn face_detector() -> FaceDetector {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    let p = model_path();
    FaceDetector::load(&p, 1).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Image {
    rgb: Vec<u8>,
    width: u32,
    height: u32,
}

fn astronaut() -> Image {
    let img = image::open(root().join("tests/fixtures/astronaut.jpg"))
        .expect("tests/fixtures/astronaut.jpg")
        .to_rgb8();
    let (width, height) = img.dimensions();
    Image {
        rgb: img.into_raw(),
        width,
        height,
    }
}

/// Where the face is (by eye, and the Python reference decoder on the same
/// model gives [181, 58, 270, 178] at 0.93).
const FACE: BBox = BBox::new(181.0, 58.0, 270.0, 178.0);

/// Mean absolute 4-neighbour Laplacian of the luma inside `r` (interior
/// pixels only): high for edges and texture, ~0 for flat colour.
fn laplacian_energy(rgb: &[u8], width: u32, r: BBox) -> f64 {
    let w = width as usize;
    let luma = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        0.299 * rgb[i] as f64 + 0.587 * rgb[i + 1] as f64 + 0.114 * rgb[i + 2] as f64
    };
    let (x0, y0) = (r.x1.max(1.0) as usize, r.y1.max(1.0) as usize);
    let height = rgb.len() / 3 / w;
    let (x1, y1) = ((r.x2 as usize).min(w - 1), (r.y2 as usize).min(height - 1));
    let (mut sum, mut n) = (0.0, 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let lap = 4.0 * luma(x, y)
                - luma(x - 1, y)
                - luma(x + 1, y)
                - luma(x, y - 1)
                - luma(x, y + 1);
            sum += lap.abs();
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

fn region_bytes(rgb: &[u8], width: u32, r: BBox) -> Vec<u8> {
    let w = width as usize;
    let mut out = Vec::new();
    for y in r.y1 as usize..r.y2 as usize {
        out.extend_from_slice(&rgb[(y * w + r.x1 as usize) * 3..(y * w + r.x2 as usize) * 3]);
    }
    out
}

#[test]
fn face_is_found_then_pixelated_in_the_snapshot_and_nothing_else_changes() {
    let mut det = face_detector();
    let img = astronaut();
    // Warm-up run, then time one detection (release build; figure only).
    det.detect(&img.rgb, img.width, img.height).unwrap();
    let t0 = Instant::now();
    let faces = det.detect(&img.rgb, img.width, img.height).unwrap();
    eprintln!(
        "faces on astronaut.jpg {}x{} in {:.1} ms: {faces:?}",
        img.width,
        img.height,
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(faces.len(), 1, "one face in the portrait: {faces:?}");
    let (face, score) = faces[0];
    assert!(score > 0.8, "score {score}");
    assert!(face.iou(&FACE) > 0.7, "{face:?} is not the face {FACE:?}");
    // CenterFace's scale channel 0 is the height: a face box is upright.
    assert!(face.height() > face.width(), "{face:?}");

    let mut blurred = img.rgb.clone();
    blur_regions(&mut blurred, img.width, img.height, &[face]);

    let before = laplacian_energy(&img.rgb, img.width, face);
    let after = laplacian_energy(&blurred, img.width, face);
    let ratio = after / before;
    eprintln!("face Laplacian energy {before:.2} -> {after:.2} (ratio {ratio:.3})");
    assert!(before > 5.0, "the source face has detail: {before}");
    assert!(
        ratio < 0.3,
        "blur kept {:.0} % of the energy",
        ratio * 100.0
    );

    // What leaves the box is the JPEG: encode, decode, measure again.
    let jpeg = encode_jpeg(&blurred, img.width, img.height, 70).unwrap();
    let sent = image::load_from_memory(&jpeg).unwrap().to_rgb8().into_raw();
    let sent_ratio = laplacian_energy(&sent, img.width, face) / before;
    eprintln!("in the encoded snapshot: ratio {sent_ratio:.3}");
    assert!(sent_ratio < 0.3, "snapshot ratio {sent_ratio}");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("privacy_astronaut.jpg");
    std::fs::write(&out, &jpeg).unwrap();
    eprintln!("blurred snapshot: {}", out.display());

    // Away from the face (flag and suit, lower left), not one byte changed,
    // and its energy is what it was.
    let away = BBox::new(0.0, 300.0, 150.0, 512.0);
    assert_eq!(
        region_bytes(&blurred, img.width, away),
        region_bytes(&img.rgb, img.width, away)
    );
    let away_energy = laplacian_energy(&img.rgb, img.width, away);
    assert!(
        away_energy > 1.0,
        "the control region has detail: {away_energy}"
    );

    // Blurring is irreversible: the blurred frame holds no face any more.
    let again = det.detect(&blurred, img.width, img.height).unwrap();
    assert!(again.is_empty(), "a face survived the blur: {again:?}");
}

#[test]
fn large_frames_are_downscaled_and_boxes_come_back_in_frame_pixels() {
    let mut det = face_detector();
    let img = astronaut();
    // The same portrait at 2x (1024x1024): above the 640 default, so the
    // model sees it at 640x640 and the box must be mapped back by 1.6.
    let big = image::imageops::resize(
        &image::RgbImage::from_raw(img.width, img.height, img.rgb.clone()).unwrap(),
        img.width * 2,
        img.height * 2,
        image::imageops::FilterType::Triangle,
    );
    let t0 = Instant::now();
    let faces = det.detect(big.as_raw(), big.width(), big.height()).unwrap();
    eprintln!(
        "faces on 1024x1024 in {:.1} ms: {faces:?}",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let want = BBox::new(FACE.x1 * 2.0, FACE.y1 * 2.0, FACE.x2 * 2.0, FACE.y2 * 2.0);
    assert_eq!(faces.len(), 1, "{faces:?}");
    assert!(faces[0].0.iou(&want) > 0.7, "{faces:?} vs {want:?}");

    // A smaller model input still finds a face this large.
    det.set_max_side(320).unwrap();
    let faces = det.detect(&img.rgb, img.width, img.height).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    assert!(faces[0].0.iou(&FACE) > 0.6, "{faces:?}");

    // The threshold is honoured: above the face's score nothing is found.
    det.set_threshold(0.99).unwrap();
    assert!(
        det.detect(&img.rgb, img.width, img.height)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        det.set_threshold(1.5),
        Err(DetectError::InvalidOption { .. })
    ));
    assert!(matches!(
        det.set_max_side(16),
        Err(DetectError::InvalidOption { .. })
    ));
}

#[test]
fn bad_frames_are_errors_not_panics() {
    let mut det = face_detector();
    for (len, w, h) in [(10usize, 64u32, 64u32), (0, 0, 0), (64 * 64 * 3, 64, 65)] {
        let err = det.detect(&vec![0u8; len], w, h).unwrap_err();
        assert!(matches!(err, DetectError::BadFrame { .. }), "{err:?}");
    }
    // A flat grey frame has no face.
    assert!(
        det.detect(&vec![128u8; 96 * 64 * 3], 96, 64)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn missing_and_corrupt_models_are_refused_naming_the_file() {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    let missing = Path::new("/nonexistent/centerface_dynamic.onnx");
    let err = FaceDetector::load(missing, 1).unwrap_err();
    assert!(matches!(err, DetectError::ModelRead { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("/nonexistent/centerface_dynamic.onnx"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("centerface_truncated.onnx");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let err = FaceDetector::load(&corrupt, 1).unwrap_err();
    assert!(matches!(err, DetectError::ModelInvalid { .. }), "{err:?}");
    assert!(
        err.to_string().contains("centerface_truncated.onnx"),
        "{err}"
    );
}

#[test]
fn an_object_detector_is_not_taken_for_a_face_model() {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    let nanodet = root().join("models/nanodet_g_coco_416.onnx");
    let err = FaceDetector::load(&nanodet, 1).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    match &err {
        DetectError::SpecMismatch {
            path,
            expected,
            found,
        } => {
            assert_eq!(path, &nanodet);
            assert!(
                expected.contains("CenterFace") && expected.contains("537"),
                "{expected}"
            );
            assert!(
                found.contains("images") && found.contains("cls_s8"),
                "{found}"
            );
        }
        other => panic!("expected SpecMismatch, got {other:?}"),
    }
    assert!(msg.contains("nanodet_g_coco_416.onnx"), "{msg}");
}
