//! The bundled INT8 model (`models/nanodet_g_coco_416_int8.onnx`, made by
//! `scripts/quantize_int8.py`) loads through `Detector::load` like any other
//! model, is described exactly as the FP32 one, and still finds the bicycle
//! and the dog in `tests/fixtures/dog.jpg` where the FP32 model puts them.
//! Agreement over video and speed: `benches/int8_agreement.rs`.
//!
//! Needs ONNX Runtime: `ORT_DYLIB_PATH` or the default search of
//! `edge_node::detect::init_runtime`.

use std::path::{Path, PathBuf};

use edge_node::detect::{Detector, DetectorOptions, RuntimeOptions, SpecSource, init_runtime};
use edge_node::frame::Detection;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn detector(model: &str) -> Detector {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    let mut o = DetectorOptions::new(root().join(model));
    o.threshold = 0.35;
    o.classes = None;
    Detector::load(&o).unwrap_or_else(|e| panic!("{model}: {e}"))
}

fn find<'a>(dets: &'a [Detection], labels: &[String], name: &str) -> Option<&'a Detection> {
    dets.iter().find(|d| labels[d.class_id as usize] == name)
}

#[test]
fn int8_model_is_described_like_fp32() {
    let fp = detector("models/nanodet_g_coco_416.onnx");
    let q = detector("models/nanodet_g_coco_416_int8.onnx");
    assert_eq!(q.labels().len(), 80);
    assert_eq!(q.labels(), fp.labels());
    let (a, b) = (fp.spec(), q.spec());
    assert_eq!(b.family, a.family);
    assert_eq!(b.input_size, (416, 416));
    assert_eq!((b.color, b.resize), (a.color, a.resize));
    assert_eq!((b.mean, b.std), (a.mean, a.std));
    assert_eq!(b.layout, a.layout);
    assert_eq!(
        b.source,
        SpecSource::Manifest(root().join("models/nanodet_g_coco_416_int8.json"))
    );
    // Much smaller than the FP32 file: the weights really are 8-bit.
    let size = |p: &str| std::fs::metadata(root().join(p)).unwrap().len();
    let (fp_size, q_size) = (
        size("models/nanodet_g_coco_416.onnx"),
        size("models/nanodet_g_coco_416_int8.onnx"),
    );
    assert!(q_size * 3 < fp_size, "INT8 {q_size} B vs FP32 {fp_size} B");
}

#[test]
fn int8_model_finds_the_bicycle_and_the_dog() {
    let img = image::open(root().join("tests/fixtures/dog.jpg"))
        .unwrap()
        .to_rgb8();
    let mut fp = detector("models/nanodet_g_coco_416.onnx");
    let mut q = detector("models/nanodet_g_coco_416_int8.onnx");
    let a = fp.detect(img.as_raw(), img.width(), img.height()).unwrap();
    let b = q.detect(img.as_raw(), img.width(), img.height()).unwrap();
    for name in ["bicycle", "dog"] {
        let want = find(&a, fp.labels(), name).unwrap_or_else(|| panic!("FP32 misses {name}"));
        let got = find(&b, q.labels(), name)
            .unwrap_or_else(|| panic!("INT8 misses the {name}; it found {b:?}"));
        let iou = got.bbox.iou(&want.bbox);
        assert!(
            iou >= 0.8,
            "{name}: INT8 box {:?} vs FP32 {:?} (IoU {iou:.2})",
            got.bbox,
            want.bbox
        );
        assert!(
            (got.score - want.score).abs() < 0.15,
            "{name}: INT8 score {} vs FP32 {}",
            got.score,
            want.score
        );
    }
}
