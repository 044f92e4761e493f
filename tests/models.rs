//! The detector zoo end to end: one tiny generated ONNX model per family and
//! output layout (`scripts/make_test_models.py`, committed under
//! `tests/fixtures/models/`), loaded with `Detector::load` and run on a
//! synthetic RGB frame, checking the decoded boxes in source pixels; plus
//! `inspect` on every bundled model and fixture.
//!
//! Needs ONNX Runtime: `ORT_DYLIB_PATH` or the default search of
//! `edge_node::detect::init_runtime`.

use std::path::{Path, PathBuf};

use edge_node::detect::{
    ColorOrder, DetectError, Detector, DetectorOptions, Family, ResizeMode, RuntimeOptions,
    SpecSource, init_runtime, inspect,
};
use edge_node::frame::Detection;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

fn load(name: &str) -> Detector {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    Detector::load(&DetectorOptions::new(fixture(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A grey-ish synthetic frame with some structure.
fn frame(w: u32, h: u32) -> Vec<u8> {
    (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect()
}

/// `(label, score, [x1, y1, x2, y2] in source pixels)`, compared to 0.01 px
/// and 1e-4 score, in order.
fn check(dets: &[Detection], labels: &[String], want: &[(&str, f32, [f32; 4])]) {
    let got: Vec<String> = dets
        .iter()
        .map(|d| {
            format!(
                "{} {:.4} [{:.2}, {:.2}, {:.2}, {:.2}]",
                labels[d.class_id as usize], d.score, d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2
            )
        })
        .collect();
    assert_eq!(dets.len(), want.len(), "{got:#?}");
    for (d, (label, score, b)) in dets.iter().zip(want) {
        assert_eq!(labels[d.class_id as usize], *label, "{got:#?}");
        assert!((d.score - score).abs() < 1e-4, "{got:#?}");
        for (a, w) in [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2].iter().zip(b) {
            assert!((a - w).abs() < 0.01, "{got:#?} vs {want:?}");
        }
    }
}

/// Every 64x64 fixture runs on a 128x64 frame: letterbox gain 0.5, content
/// 64x32 at pad_y 16, so source = (x * 2, (y - 16) * 2), clamped.
fn run(det: &mut Detector) -> Vec<Detection> {
    det.detect(&frame(128, 64), 128, 64).expect("detect")
}

#[test]
fn user_provided_ultralytics_model_is_yolov8() {
    // YOLOv8 output layout [1, 4+3, 126] and Ultralytics metadata
    // (names as a Python dict string, imgsz [h, w], stride, task=detect).
    let mut det = load("user_yolov8_ultralytics.onnx");
    let spec = det.spec();
    assert_eq!(spec.family, Family::YoloV8);
    assert_eq!(spec.source, SpecSource::Metadata);
    assert_eq!(spec.input_size, (96, 64));
    assert_eq!(det.labels(), &["person", "car", "bus"]);
    assert_eq!(
        (spec.color, spec.resize, spec.pad_value, spec.std),
        (ColorOrder::Rgb, ResizeMode::Letterbox, 114, [255.0; 3])
    );
    // 192x128 frame -> gain 0.5, no pad. The near-duplicate bus (0.80) is
    // removed by NMS.
    let dets = det.detect(&frame(192, 128), 192, 128).unwrap();
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[
            ("bus", 0.85, [76.0, 24.0, 116.0, 104.0]),
            ("person", 0.7, [32.0, 32.0, 48.0, 48.0]),
        ],
    );
    // A 96x96 frame: gain 2/3, content 64x64 at pad_x 16.
    let dets = det.detect(&frame(96, 96), 96, 96).unwrap();
    check(
        &dets,
        &labels,
        &[
            ("bus", 0.85, [33.0, 18.0, 63.0, 78.0]),
            ("person", 0.7, [0.0, 24.0, 12.0, 36.0]),
        ],
    );
}

#[test]
fn nanodet_layout_is_inferred_and_decoded() {
    // The bundled NanoDet's output layout (cls_sN [1,cells,nc] + reg_sN
    // [1,cells,4*(reg_max+1)]) and metadata (names, strides, reg_max), no
    // manifest: the family and pre-processing come from the model alone.
    let mut det = load("tiny_nanodet.onnx");
    let spec = det.spec();
    assert_eq!(spec.family, Family::NanoDet);
    assert_eq!(spec.source, SpecSource::Metadata);
    assert_eq!(spec.input_size, (64, 64));
    assert_eq!(det.labels(), &["person", "car"]);
    // NanoDet's upstream pre-processing: BGR, ImageNet mean/std, plain resize.
    assert_eq!(
        (spec.color, spec.resize, spec.std),
        (
            ColorOrder::Bgr,
            ResizeMode::Stretch,
            [57.375, 57.12, 58.395]
        )
    );
    // 128x64 frame stretched to 64x64: source = (x * 2, y). The second car
    // (0.6, same box from the stride-8 level) is removed by NMS; the stride-32
    // person at 0.3 is under the 0.35 threshold.
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[
            ("person", 0.9, [40.0, 20.0, 88.0, 52.0]),
            ("car", 0.75, [48.0, 16.0, 112.0, 40.0]),
        ],
    );
}

#[test]
fn yolo_end2end_keeps_overlapping_boxes() {
    let mut det = load("tiny_yolo_e2e.onnx");
    assert_eq!(det.spec().family, Family::YoloEnd2End);
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[
            ("car", 0.92, [16.0, 16.0, 48.0, 48.0]),
            ("car", 0.88, [20.0, 20.0, 52.0, 52.0]),
            ("person", 0.5, [80.0, 8.0, 112.0, 28.0]),
        ],
    );
}

#[test]
fn detr_single_output_with_logits() {
    let mut det = load("tiny_detr.onnx");
    assert_eq!(det.spec().family, Family::Detr);
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    check(
        &dets,
        &labels,
        &[
            ("car", sig(3.0), [48.0, 24.0, 80.0, 40.0]),
            ("person", sig(1.0), [24.0, 48.0, 40.0, 64.0]),
        ],
    );
}

#[test]
fn detr_boxes_scores_pair() {
    let mut det = load("tiny_detr_pair.onnx");
    assert_eq!(det.spec().family, Family::Detr);
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(&dets, &labels, &[("car", 0.75, [32.0, 0.0, 96.0, 64.0])]);
}

#[test]
fn yolox_raw_grid_decode_and_nms() {
    let mut det = load("tiny_yolox.onnx");
    let spec = det.spec();
    assert_eq!(spec.family, Family::Yolox);
    assert_eq!((spec.color, spec.std), (ColorOrder::Bgr, [1.0; 3]));
    assert_eq!(det.labels(), &["class0", "class1"]);
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[("class1", 0.72, [16.0, 24.0, 80.0, 56.0])],
    );
}

#[test]
fn yolox_decoded_declared_by_manifest() {
    let mut det = load("tiny_yolox_decoded.onnx");
    assert_eq!(det.spec().family, Family::Yolox);
    assert!(matches!(det.spec().source, SpecSource::Manifest(_)));
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[("person", 0.72, [16.0, 24.0, 80.0, 56.0])],
    );
}

#[test]
fn nms_rows_default_columns() {
    let mut det = load("tiny_nms.onnx");
    assert_eq!(det.spec().family, Family::NmsRows);
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[
            ("car", 0.9, [16.0, 8.0, 48.0, 56.0]),
            ("person", 0.6, [60.0, 28.0, 80.0, 48.0]),
        ],
    );
}

#[test]
fn nms_rows_columns_from_manifest() {
    let mut det = load("tiny_nms_custom.onnx");
    assert_eq!(det.spec().family, Family::NmsRows);
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[
            ("car", 0.9, [16.0, 8.0, 48.0, 56.0]),
            ("person", 0.6, [60.0, 28.0, 80.0, 48.0]),
        ],
    );
}

#[test]
fn tfod_boxes_scores_classes_num() {
    let mut det = load("tiny_tfod.onnx");
    let spec = det.spec();
    assert_eq!(spec.family, Family::TfOd);
    assert_eq!(spec.resize, ResizeMode::Stretch);
    // Stretch: 128x64 -> 64x64, source = (x * 2, y).
    let dets = run(&mut det);
    let labels = det.labels().to_vec();
    check(
        &dets,
        &labels,
        &[
            ("car", 0.8, [16.0, 16.0, 64.0, 48.0]),
            ("person", 0.55, [64.0, 0.0, 128.0, 16.0]),
        ],
    );
}

#[test]
fn pose_model_is_refused_with_its_task() {
    init_runtime(&RuntimeOptions::default()).expect("ONNX Runtime");
    match Detector::load(&DetectorOptions::new(fixture("tiny_pose.onnx"))) {
        Err(DetectError::SpecMismatch { found, .. }) => assert!(found.contains("pose"), "{found}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_family_lists_outputs_and_metadata() {
    init_runtime(&RuntimeOptions::default()).expect("ONNX Runtime");
    let err = Detector::load(&DetectorOptions::new(fixture("weird_outputs.onnx"))).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DetectError::UnknownFamily { .. }), "{err:?}");
    assert!(text.contains("features [1,3]"), "{text}");
    assert!(text.contains("metadata keys: none"), "{text}");
    assert!(
        text.contains("yolox"),
        "the message lists the families: {text}"
    );
}

fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    v.sort();
    v
}

#[test]
fn inspect_every_bundled_model_and_fixture() {
    init_runtime(&RuntimeOptions::default()).expect("ONNX Runtime");
    let bundled = onnx_files(&root().join("models"));
    let fixtures = onnx_files(&root().join("tests/fixtures/models"));
    assert!(!bundled.is_empty());
    assert!(fixtures.len() >= 13, "{fixtures:?}");
    for path in bundled.iter().chain(&fixtures) {
        let r = inspect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = r.to_string();
        assert_eq!(r.sha256.len(), 64);
        assert!(!r.inputs.is_empty() && !r.outputs.is_empty(), "{text}");
        for o in &r.outputs {
            assert!(text.contains(&o.name), "{text}");
        }
        let json = serde_json::to_value(&r).unwrap();
        for key in ["inputs", "outputs", "metadata", "family", "preprocess"] {
            assert!(json.get(key).is_some(), "{name}: {json}");
        }
        let want_family = match name.as_str() {
            "weird_outputs.onnx" | "tiny_pose.onnx" => None,
            "nanodet_g_coco_416.onnx" | "nanodet_g_coco_416_int8.onnx" | "tiny_nanodet.onnx" => {
                Some("nanodet")
            }
            "tiny_yolov8.onnx" | "user_yolov8_ultralytics.onnx" => Some("yolov8"),
            "tiny_yolo_e2e.onnx" => Some("yolo-e2e"),
            "tiny_detr.onnx" | "tiny_detr_pair.onnx" => Some("detr"),
            "tiny_yolox.onnx" | "tiny_yolox_decoded.onnx" => Some("yolox"),
            "tiny_nms.onnx" | "tiny_nms_custom.onnx" => Some("nms"),
            "tiny_tfod.onnx" => Some("tfod"),
            other => panic!("new fixture {other}: add it to this test"),
        };
        assert_eq!(r.family.as_deref(), want_family, "{text}");
        match want_family {
            Some(_) => {
                let p = r.preprocess.as_ref().expect("preprocessing");
                assert!(p.input_width > 0 && p.input_height > 0);
                assert!(text.contains("preprocess"), "{text}");
                assert!(r.family_error.is_none());
            }
            None => {
                assert!(r.preprocess.is_none());
                let e = r.family_error.as_deref().expect("why no family");
                assert!(text.contains(e), "{text}");
            }
        }
    }

    // Details worth pinning.
    let nanodet = inspect(&root().join("models/nanodet_g_coco_416.onnx")).unwrap();
    let p = nanodet.preprocess.unwrap();
    assert_eq!(
        (p.input_width, p.input_height, p.resize, p.color),
        (416, 416, "stretch", "bgr")
    );
    assert!(p.source.starts_with("manifest"), "{}", p.source);
    assert_eq!(nanodet.names.len(), 80);

    let user = inspect(&fixture("user_yolov8_ultralytics.onnx")).unwrap();
    assert_eq!(user.metadata["task"], "detect");
    assert_eq!(user.names, ["person", "car", "bus"]);
    let p = user.preprocess.as_ref().unwrap();
    assert_eq!(
        (p.input_width, p.input_height, p.resize, p.pad_value),
        (96, 64, "letterbox", Some(114))
    );
    assert_eq!(p.scale, [1.0 / 255.0; 3]);
    // The long `args` value is cut in the text, whole in the JSON.
    let args = &user.metadata["args"];
    assert!(args.len() > 160);
    let text = user.to_string();
    assert!(!text.contains(args.as_str()), "{text}");
    assert!(
        text.contains(&format!("({} chars)", args.chars().count())),
        "{text}"
    );
    assert_eq!(
        serde_json::to_value(&user).unwrap()["metadata"]["args"],
        args.as_str()
    );

    let weird = inspect(&fixture("weird_outputs.onnx")).unwrap();
    let e = weird.family_error.unwrap();
    assert!(
        e.contains("features [1,3]") && e.contains("images [1,3,32,32]"),
        "{e}"
    );
    let pose = inspect(&fixture("tiny_pose.onnx")).unwrap();
    assert!(pose.family_error.unwrap().contains("pose"));
    let tfod = inspect(&fixture("tiny_tfod.onnx")).unwrap();
    assert_eq!(tfod.outputs[2].dtype, "int64");
    assert_eq!(tfod.nms, Some(false));

    // Not a model: an error, not a report.
    assert!(matches!(
        inspect(&root().join("tests/fixtures/README.md")),
        Err(DetectError::ModelInvalid { .. })
    ));
    assert!(matches!(
        inspect(&root().join("tests/fixtures/nope.onnx")),
        Err(DetectError::ModelRead { .. })
    ));
}
