//! Detector parity against the independent numpy + onnxruntime reference
//! (`scripts/reference_detect.py`, outputs in `tests/fixtures/parity/`).
//!
//! 1. Same input tensor -> the Rust decode + NMS must reproduce the
//!    reference exactly (1 px, 1e-3 score, same labels, same count). This
//!    isolates the decoder from the resize.
//! 2. Image file -> `Detector::detect` (Rust image decode + our resize) must
//!    agree with the reference in source pixels at F1 >= 0.95 (IoU 0.7, same
//!    label): the JPEG decoders and float paths differ slightly, so this one
//!    is a tolerance test.
//!
//! Both at two input geometries: the squashed 416x416 input
//! (`<stem>_reference.json`, `InputBudget::Model`, what every frame got
//! before pixel budgets) and the default budget at the frame's own aspect
//! ratio (`<stem>_480x352_reference.json`, `InputBudget::Declared(1)`: the
//! fixtures are all 768x576).
//!
//! Needs ONNX Runtime: `ORT_DYLIB_PATH` or the default search of
//! `edge_node::detect::init_runtime`.

use std::path::{Path, PathBuf};

use edge_node::detect::geometry::DEFAULT_INPUT_PIXELS;
use edge_node::detect::{
    Detector, DetectorOptions, InputBudget, RuntimeOptions, aspect_size, init_runtime,
};
use edge_node::frame::{BBox, Detection};
use ndarray::Array4;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The references of the default budget: the fixtures are 768x576, so
/// 173,056 pixels at 4:3 in multiples of 32 is 480x352.
const ASPECT: &str = "480x352";

struct RefDet {
    label: String,
    class_id: u32,
    score: f32,
    src: BBox,
}

struct Reference {
    width: u32,
    height: u32,
    /// The model input the reference ran: (width, height).
    input_size: (u32, u32),
    /// The reference's input tensor (`[1,3,H,W]` f32 LE), where one was saved.
    input_tensor: Option<PathBuf>,
    threshold: f32,
    nms_iou: f32,
    dets: Vec<RefDet>,
}

fn load_reference(stem: &str) -> Reference {
    let path = root().join(format!("tests/fixtures/parity/{stem}_reference.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let f = |x: &Value| x.as_f64().unwrap() as f32;
    let u = |x: &Value| x.as_u64().unwrap() as u32;
    let dets = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b = d["box_source"].as_array().unwrap();
            RefDet {
                label: d["label"].as_str().unwrap().to_string(),
                class_id: u(&d["class_id"]),
                score: f(&d["score"]),
                src: BBox::new(f(&b[0]), f(&b[1]), f(&b[2]), f(&b[3])),
            }
        })
        .collect();
    Reference {
        width: u(&v["width"]),
        height: u(&v["height"]),
        input_size: (u(&v["input_size"][0]), u(&v["input_size"][1])),
        input_tensor: v["input_tensor"].as_str().map(|p| root().join(p)),
        threshold: f(&v["threshold"]),
        nms_iou: f(&v["nms_iou"]),
        dets,
    }
}

/// The bundled model with the reference's threshold and NMS, all classes,
/// sizing frames by `budget` (`None`: the options' default budget).
fn detector(reference: &Reference, budget: Option<InputBudget>) -> Detector {
    init_runtime(&RuntimeOptions::default())
        .expect("ONNX Runtime must be available (set ORT_DYLIB_PATH)");
    let mut o = DetectorOptions::new(root().join("models/nanodet_g_coco_416.onnx"));
    o.threshold = reference.threshold;
    o.nms_iou = reference.nms_iou;
    o.classes = None; // the reference covers all 80 classes
    o.max_detections = 1000;
    if let Some(budget) = budget {
        o.input = budget;
    }
    Detector::load(&o).expect("bundled model loads")
}

fn fmt(dets: &[Detection], labels: &[String]) -> String {
    dets.iter()
        .map(|d| {
            format!(
                "{} {:.3} [{:.1},{:.1},{:.1},{:.1}]",
                labels[d.class_id as usize], d.score, d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs the reference's saved input tensor through `Detector::detect_tensor`
/// and requires the reference's detections exactly (count, labels, order,
/// scores to 1e-3, boxes to 1 source pixel).
fn same_tensor(stem: &str) {
    let reference = load_reference(stem);
    let mut det = detector(&reference, None);
    let path = reference
        .input_tensor
        .as_ref()
        .unwrap_or_else(|| panic!("{stem}: the reference saved no input tensor"));
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let floats: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (in_w, in_h) = reference.input_size;
    let input = Array4::from_shape_vec((1, 3, in_h as usize, in_w as usize), floats).unwrap();
    let got = det
        .detect_tensor(input.view(), reference.width, reference.height)
        .unwrap();
    let labels = det.labels().to_vec();
    eprintln!("{stem} rust: {}", fmt(&got, &labels));
    assert_eq!(
        got.len(),
        reference.dets.len(),
        "{stem} detection count; rust: {}",
        fmt(&got, &labels)
    );
    // Both sides are sorted by score; scores are far enough apart that the order is stable.
    for (g, r) in got.iter().zip(&reference.dets) {
        assert_eq!(labels[g.class_id as usize], r.label);
        assert_eq!(g.class_id, r.class_id);
        assert!(
            (g.score - r.score).abs() < 1e-3,
            "{stem} score {} vs {}",
            g.score,
            r.score
        );
        for (a, b) in [
            (g.bbox.x1, r.src.x1),
            (g.bbox.y1, r.src.y1),
            (g.bbox.x2, r.src.x2),
            (g.bbox.y2, r.src.y2),
        ] {
            assert!(
                (a - b).abs() <= 1.0,
                "{stem} {} box {:?} vs reference {:?}",
                r.label,
                g.bbox,
                r.src
            );
        }
    }
}

#[test]
fn same_tensor_gives_same_detections() {
    same_tensor("dog");
}

/// The same at the default budget's non-square input (480x352, stretched):
/// the grids follow the tensor's size and the boxes go back through a
/// stretch of 768/480 by 576/352.
#[test]
fn same_tensor_gives_same_detections_at_aspect_size() {
    let reference = load_reference(&format!("dog_{ASPECT}"));
    assert_eq!(reference.input_size, (480, 352));
    same_tensor(&format!("dog_{ASPECT}"));
}

/// Greedy one-to-one matching (reference in score order, best IoU partner
/// with the same label); returns (matched, precision, recall, f1).
fn f1(got: &[Detection], reference: &[RefDet], iou: f32) -> (usize, f32, f32, f32) {
    let mut used = vec![false; got.len()];
    let mut matched = 0;
    for r in reference {
        let best = got
            .iter()
            .enumerate()
            .filter(|(i, g)| !used[*i] && g.class_id == r.class_id)
            .map(|(i, g)| (i, g.bbox.iou(&r.src)))
            .filter(|(_, v)| *v >= iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            used[i] = true;
            matched += 1;
        }
    }
    let p = if got.is_empty() {
        1.0
    } else {
        matched as f32 / got.len() as f32
    };
    let r = if reference.is_empty() {
        1.0
    } else {
        matched as f32 / reference.len() as f32
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (matched, p, r, f)
}

/// Image file -> `Detector::detect` under `budget` (`None`: the detector's
/// default) against the reference `stem`; checks the input size the
/// detector picks is the reference's. Returns (matched, rust, reference).
fn end_to_end(file: &str, stem: &str, budget: Option<InputBudget>) -> (usize, usize, usize) {
    let reference = load_reference(stem);
    let mut det = detector(&reference, budget);
    let img = image::open(root().join("tests/fixtures").join(file))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        (img.width(), img.height()),
        (reference.width, reference.height)
    );
    assert_eq!(
        det.input_size_for(det.input_budget(), img.width(), img.height()),
        reference.input_size,
        "{file}: the detector's input size is the reference's"
    );
    let got = det.detect(img.as_raw(), img.width(), img.height()).unwrap();
    let (m, p, r, f) = f1(&got, &reference.dets, 0.7);
    eprintln!(
        "{file} ({stem}): rust {} dets, reference {}, matched {m}, P {p:.3} R {r:.3} F1 {f:.3}",
        got.len(),
        reference.dets.len()
    );
    eprintln!("  rust: {}", fmt(&got, det.labels()));
    // Every box is inside the frame and the list is sorted.
    for d in &got {
        assert!(d.bbox.x1 >= 0.0 && d.bbox.y1 >= 0.0);
        assert!(d.bbox.x2 <= img.width() as f32 && d.bbox.y2 <= img.height() as f32);
    }
    assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
    (m, got.len(), reference.dets.len())
}

fn f1_of(m: usize, got: usize, want: usize) -> f32 {
    2.0 * m as f32 / (got + want) as f32
}

/// The vtest frames under `budget` against the references `<stem><suffix>`:
/// F1 >= 0.95 each, and real detections in all.
fn vtest_frames(budget: Option<InputBudget>, suffix: &str) {
    let mut total = (0, 0, 0);
    for (file, stem) in [
        ("vtest_f000.png", "vtest_f000"),
        ("vtest_f050.png", "vtest_f050"),
    ] {
        let (m, g, w) = end_to_end(file, &format!("{stem}{suffix}"), budget);
        let f = f1_of(m, g, w);
        assert!(
            f >= 0.95,
            "{file}{suffix} F1 {f:.3} ({m} matched of {g} rust / {w} reference)"
        );
        total = (total.0 + m, total.1 + g, total.2 + w);
    }
    assert!(total.2 >= 10, "the fixtures carry real detections");
}

/// The squashed 416x416 input (`InputBudget::Model`) against the 416x416 reference.
#[test]
fn dog_jpg_end_to_end_matches_reference() {
    let (m, g, w) = end_to_end("dog.jpg", "dog", Some(InputBudget::Model));
    let f = f1_of(m, g, w);
    assert!(
        f >= 0.95,
        "dog.jpg F1 {f:.3} ({m} matched of {g} rust / {w} reference)"
    );
}

/// The squashed 416x416 input (`InputBudget::Model`) against the 416x416 references.
#[test]
fn vtest_frames_end_to_end_match_reference() {
    vtest_frames(Some(InputBudget::Model), "");
}

/// The default budget: 768x576 -> 480x352 (the rule of `aspect_size`,
/// which the reference script re-implements), not 416x416.
#[test]
fn default_budget_sizes_the_fixtures_at_their_aspect() {
    let reference = load_reference(&format!("dog_{ASPECT}"));
    assert_eq!(InputBudget::default(), InputBudget::Declared(1));
    assert_eq!(
        aspect_size(768, 576, DEFAULT_INPUT_PIXELS, 32),
        reference.input_size
    );
    let det = detector(&reference, None);
    assert_eq!(det.input_budget(), InputBudget::default());
    assert!(det.has_dynamic_input());
    assert_eq!(det.input_size_for(InputBudget::Model, 768, 576), (416, 416));
    assert_eq!(
        det.input_size_for(InputBudget::default(), 768, 576),
        (480, 352)
    );
}

/// Image -> `Detector` at its default budget (aspect kept, 480x352) against
/// the reference made at 480x352; and a camera's own budget
/// (`detect_timed_as`) on a detector whose default is `Model` gives the
/// very same detections.
#[test]
fn dog_jpg_end_to_end_matches_reference_at_default_budget() {
    let stem = format!("dog_{ASPECT}");
    let (m, g, w) = end_to_end("dog.jpg", &stem, None);
    let f = f1_of(m, g, w);
    assert!(
        f >= 0.95,
        "dog.jpg at {ASPECT} F1 {f:.3} ({m} matched of {g} rust / {w} reference)"
    );
    let reference = load_reference(&stem);
    let img = image::open(root().join("tests/fixtures/dog.jpg"))
        .unwrap()
        .to_rgb8();
    let (iw, ih) = img.dimensions();
    let want = detector(&reference, None)
        .detect(img.as_raw(), iw, ih)
        .unwrap();
    let mut squashed = detector(&reference, Some(InputBudget::Model));
    let (got, _) = squashed
        .detect_timed_as(img.as_raw(), iw, ih, InputBudget::default())
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn vtest_frames_end_to_end_match_reference_at_default_budget() {
    vtest_frames(None, &format!("_{ASPECT}"));
}

#[test]
fn dog_jpg_matches_documented_anchors() {
    // models-and-media.md §2.6: bicycle 0.68 [108,127,571,425], dog 0.47 [131,221,360,541],
    // at the squashed 416x416 input.
    let reference = load_reference("dog");
    let mut det = detector(&reference, Some(InputBudget::Model));
    let img = image::open(root().join("tests/fixtures/dog.jpg"))
        .unwrap()
        .to_rgb8();
    let got = det.detect(img.as_raw(), img.width(), img.height()).unwrap();
    let find = |label: &str| {
        got.iter()
            .find(|d| det.labels()[d.class_id as usize] == label)
            .unwrap_or_else(|| panic!("no {label} in {}", fmt(&got, det.labels())))
    };
    let bike = find("bicycle");
    assert!((bike.score - 0.68).abs() < 0.02, "{}", bike.score);
    assert!(bike.bbox.iou(&BBox::new(108.0, 127.0, 571.0, 425.0)) > 0.9);
    let dog = find("dog");
    assert!((dog.score - 0.47).abs() < 0.03, "{}", dog.score);
    assert!(dog.bbox.iou(&BBox::new(131.0, 221.0, 360.0, 541.0)) > 0.9);
}

/// The optimised-model cache: the first load saves ONNX Runtime's optimised
/// graph, the second loads it, and both give the same detections (the saved
/// graph keeps the model's metadata: class names, strides).
#[test]
fn optimized_model_cache_is_saved_and_reused() {
    init_runtime(&RuntimeOptions::default()).expect("ONNX Runtime");
    let cache = std::env::temp_dir().join(format!("edge-node-ort-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let img = image::open(root().join("tests/fixtures/dog.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = img.dimensions();
    let opts = DetectorOptions {
        optimized_cache: Some(cache.clone()),
        ..DetectorOptions::new(root().join("models/nanodet_g_coco_416.onnx"))
    };
    let t0 = std::time::Instant::now();
    let mut first = Detector::load(&opts).unwrap();
    let cold = t0.elapsed();
    let saved: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "one optimised model saved: {saved:?}");
    assert!(
        saved[0].to_string_lossy().ends_with(".ort-optimized.onnx"),
        "{saved:?}"
    );
    let t1 = std::time::Instant::now();
    let mut second = Detector::load(&opts).unwrap();
    let warm = t1.elapsed();
    println!("load: {cold:?} optimising and saving, {warm:?} from the saved graph");
    assert_eq!(first.labels(), second.labels());
    let a = first.detect(img.as_raw(), w, h).unwrap();
    let b = second.detect(img.as_raw(), w, h).unwrap();
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.class_id, y.class_id);
        assert!(
            (x.score - y.score).abs() < 1e-3 && x.bbox.iou(&y.bbox) > 0.99,
            "{x:?} vs {y:?}"
        );
    }
    // A damaged cache falls back to the original model instead of failing.
    std::fs::write(&saved[0], b"garbage").unwrap();
    let mut third = Detector::load(&opts).unwrap();
    assert_eq!(third.detect(img.as_raw(), w, h).unwrap().len(), a.len());
    let _ = std::fs::remove_dir_all(&cache);
}

/// The workers' split path (`FramePrep::prepare` on one thread,
/// `Detector::detect_prepared` on another) gives exactly the detections of
/// the one-call `detect`; an input that was never prepared, or whose
/// preparation failed, is refused with an error, not run. At the squashed
/// 416x416 input and at the default budget's 480x352.
#[test]
fn prepared_input_on_another_thread_matches_detect() {
    for budget in [Some(InputBudget::Model), None] {
        prepared_matches_detect(budget);
    }
}

fn prepared_matches_detect(budget: Option<InputBudget>) {
    let reference = load_reference("dog");
    let mut det = detector(&reference, budget);
    let img = image::open(root().join("tests/fixtures/dog.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = (img.width(), img.height());
    let want = det.detect(img.as_raw(), w, h).unwrap();
    assert!(!want.is_empty());

    let mut blank = det.new_prepared();
    let err = det.detect_prepared(&blank).unwrap_err().to_string();
    assert!(err.contains("pre-processed"), "{err}");

    let mut prep = det.frame_prep();
    let raw = img.as_raw().clone();
    let prepared = std::thread::spawn(move || {
        prep.prepare(&raw, w, h, &mut blank).unwrap();
        // A bad frame leaves the buffer marked unprepared.
        let mut other = blank.clone();
        assert!(prep.prepare(&raw[..10], w, h, &mut other).is_err());
        (blank, other)
    })
    .join()
    .unwrap();
    let (good, failed) = prepared;
    let (got, times) = det.detect_prepared(&good).unwrap();
    assert!(times.pre > std::time::Duration::ZERO);
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a.class_id, b.class_id);
        assert_eq!(a.score, b.score);
        assert_eq!(a.bbox, b.bbox);
    }
    assert!(det.detect_prepared(&failed).is_err());
}
