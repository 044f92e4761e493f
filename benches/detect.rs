//! Microbenchmarks of the detector's CPU stages (release build, one thread).
//!
//! `cargo bench -p edge-node --bench detect -- --warm-up-time 1 --measurement-time 2`
//!
//! - preprocess: 1080p RGB -> 416x416 stretch (NanoDet) with both filters,
//!   and -> 640x640 letterbox (YOLO); the resize plan is cached, as in the
//!   streaming path.
//! - nms: 100 / 1000 / 5000 clustered candidates over 6 classes.
//! - decode: NanoDet 416 (3549 cells x 80 classes), YOLOv8 640
//!   (84 x 8400), YOLOX 640 (8400 x 85, raw), DETR (300 queries x 80
//!   logits), YOLO end-to-end (300 x 6), NMS rows (100 x 7) and TF-OD
//!   (100 boxes) on synthetic tensors with realistic score sparsity.
//! - detector: the bundled model end to end on dog.jpg, if ONNX Runtime is
//!   available (ORT_DYLIB_PATH or the default search); skipped otherwise.

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edge_node::detect::{
    ClassGate, ColorOrder, Detector, DetectorOptions, DetrTensors, NanoDetLevel, NmsColumns,
    PreprocessConfig, Preprocessor, ResizeFilter, ResizeMode, RuntimeOptions, ScoreKind, SimdLevel,
    YoloScratch, decode_detr, decode_nanodet, decode_nms_rows, decode_tfod, decode_yolo_end2end,
    decode_yolov8, decode_yolox, init_runtime, nms,
};
use edge_node::frame::{BBox, Detection};

/// Small deterministic PRNG (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn frame_1080p() -> Vec<u8> {
    let (w, h) = (1920usize, 1080usize);
    let mut rng = Rng(7);
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let noise = (rng.next_u64() & 15) as usize;
            v.push(((x / 4 + noise) & 255) as u8);
            v.push(((y / 3 + noise) & 255) as u8);
            v.push((((x + y) / 8 + noise) & 255) as u8);
        }
    }
    v
}

fn bench_preprocess(c: &mut Criterion) {
    let frame = frame_1080p();
    let mut g = c.benchmark_group("preprocess");
    let nanodet = |filter| PreprocessConfig {
        dst_w: 416,
        dst_h: 416,
        resize: ResizeMode::Stretch,
        color: ColorOrder::Bgr,
        mean: [103.53, 116.28, 123.675],
        std: [57.375, 57.12, 58.395],
        pad_value: 114,
        filter,
    };
    for (name, cfg) in [
        (
            "1080p_to_416_stretch_antialias",
            nanodet(ResizeFilter::Antialias),
        ),
        (
            "1080p_to_416_stretch_bilinear",
            nanodet(ResizeFilter::Bilinear),
        ),
        (
            "1080p_to_640_letterbox_antialias",
            PreprocessConfig {
                dst_w: 640,
                dst_h: 640,
                resize: ResizeMode::Letterbox,
                color: ColorOrder::Rgb,
                mean: [0.0; 3],
                std: [255.0; 3],
                pad_value: 114,
                filter: ResizeFilter::Antialias,
            },
        ),
    ] {
        let mut pre = Preprocessor::new(cfg);
        let mut out = pre.make_buffer();
        bench_one(&mut g, name, &frame, &mut pre, &mut out);
        // The same resize with the narrower kernel builds, for the ratio.
        if name == "1080p_to_416_stretch_antialias" {
            for level in [SimdLevel::Avx2, SimdLevel::Portable] {
                if level < pre.simd() {
                    let mut p = pre.clone().with_simd(level);
                    bench_one(
                        &mut g,
                        &format!("{name}_{}", level.as_str()),
                        &frame,
                        &mut p,
                        &mut out,
                    );
                }
            }
        }
    }
    g.finish();
}

fn bench_one(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    frame: &[u8],
    pre: &mut Preprocessor,
    out: &mut ndarray::Array4<f32>,
) {
    {
        g.bench_function(name, |b| {
            b.iter(|| {
                let t = pre
                    .run(black_box(frame), 1920, 1080, out)
                    .expect("valid frame");
                black_box(t);
            });
        });
    }
}

/// `n` candidates in clusters of ~8 jittered boxes, like a detector's raw output.
fn candidates(n: usize) -> Vec<Detection> {
    let mut rng = Rng(42 + n as u64);
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let (cx, cy) = (rng.f32() * 1800.0 + 60.0, rng.f32() * 960.0 + 60.0);
        let (w, h) = (rng.f32() * 100.0 + 20.0, rng.f32() * 200.0 + 20.0);
        let class = (rng.next_u64() % 6) as u32;
        for _ in 0..8.min(n - v.len()) {
            let j = |r: &mut Rng| (r.f32() - 0.5) * 10.0;
            let (dx, dy) = (j(&mut rng), j(&mut rng));
            v.push(Detection {
                class_id: class,
                score: 0.35 + rng.f32() * 0.6,
                bbox: BBox::new(
                    cx - w / 2.0 + dx,
                    cy - h / 2.0 + dy,
                    cx + w / 2.0 + dx,
                    cy + h / 2.0 + dy,
                ),
            });
        }
    }
    v
}

fn bench_nms(c: &mut Criterion) {
    let mut g = c.benchmark_group("nms");
    for n in [100usize, 1000, 5000] {
        let input = candidates(n);
        g.bench_function(format!("{n}_candidates"), |b| {
            b.iter_batched(
                || input.clone(),
                |mut d| {
                    nms(&mut d, 0.5);
                    d
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

#[allow(
    clippy::too_many_lines,
    reason = "one criterion group: each output layout's set-up next to its bench_function"
)]
fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    // NanoDet 416: strides 8/16/32, 80 classes, reg_max 10. Scores mostly
    // background (< 0.1) with ~0.5% of cells above threshold.
    let mut rng = Rng(3);
    let nc = 80usize;
    let levels: Vec<(u32, usize, Vec<f32>, Vec<f32>)> = [8u32, 16, 32]
        .iter()
        .map(|&s| {
            let gw = 416 / s as usize;
            let cells = gw * gw;
            let cls: Vec<f32> = (0..cells * nc)
                .map(|_| {
                    let r = rng.f32();
                    if r > 0.99995 {
                        0.5 + rng.f32() * 0.4
                    } else {
                        r * 0.1
                    }
                })
                .collect();
            let reg: Vec<f32> = (0..cells * 44).map(|_| rng.f32() * 6.0 - 3.0).collect();
            (s, gw, cls, reg)
        })
        .collect();
    let gate = ClassGate::uniform(nc, 0.35);
    let mut out = Vec::with_capacity(1024);
    g.bench_function("nanodet_416_80cls", |b| {
        b.iter(|| {
            out.clear();
            for (s, gw, cls, reg) in &levels {
                let level = NanoDetLevel {
                    stride: *s,
                    grid_w: *gw,
                    cls,
                    reg,
                };
                decode_nanodet(&[level], nc, 10, &gate, &mut out).expect("shapes match");
            }
            black_box(out.len())
        });
    });

    let n = 8400usize;
    let fields = 84usize;
    let mut data: Vec<f32> = (0..fields * n).map(|_| rng.f32() * 0.05).collect();
    for c in 0..n {
        data[c] = rng.f32() * 640.0;
        data[c + n] = rng.f32() * 640.0;
        data[c + 2 * n] = rng.f32() * 100.0 + 4.0;
        data[c + 3 * n] = rng.f32() * 100.0 + 4.0;
        if c % 200 == 0 {
            data[c + (4 + c % 80) * n] = 0.8;
        }
    }
    let mut scratch = YoloScratch::default();
    g.bench_function("yolov8_640_80cls", |b| {
        b.iter(|| {
            out.clear();
            decode_yolov8(&data, fields, n, 80, &gate, &mut scratch, &mut out)
                .expect("shapes match");
            black_box(out.len())
        });
    });

    // YOLOX 640 raw: 8400 rows of 85, objectness mostly low.
    let yx: Vec<f32> = (0..n * 85)
        .map(|i| match i % 85 {
            0 | 1 => rng.f32(),
            2 | 3 => rng.f32() * 2.0 - 1.0,
            4 => {
                if i / 85 % 200 == 0 {
                    0.9
                } else {
                    rng.f32() * 0.05
                }
            }
            _ => rng.f32() * 0.9,
        })
        .collect();
    g.bench_function("yolox_640_80cls_raw", |b| {
        b.iter(|| {
            out.clear();
            decode_yolox(&yx, 85, 640, 640, &[8, 16, 32], false, &gate, &mut out)
                .expect("shapes match");
            black_box(out.len())
        });
    });

    // DETR: 300 queries x (4 + 80) logits, a few objects.
    let detr: Vec<f32> = (0..300 * 84)
        .map(|i| match i % 84 {
            0..=3 => rng.f32(),
            c if (i / 84) % 30 == 0 && c == 4 + (i / 84) % 80 => 3.0,
            _ => -4.0 - rng.f32() * 4.0,
        })
        .collect();
    g.bench_function("detr_300q_80cls_logits", |b| {
        b.iter(|| {
            out.clear();
            let t = DetrTensors::single(&detr, 84);
            decode_detr(&t, ScoreKind::Auto, 640, 640, &gate, &mut out).expect("shapes match");
            black_box(out.len())
        });
    });

    // YOLO end-to-end: 300 rows, scores sorted descending like the export.
    let e2e: Vec<f32> = (0..300)
        .flat_map(|r| {
            let x = rng.f32() * 600.0;
            let y = rng.f32() * 600.0;
            [
                x,
                y,
                x + 30.0,
                y + 60.0,
                1.0 - r as f32 / 300.0,
                (r % 80) as f32,
            ]
        })
        .collect();
    g.bench_function("yolo_e2e_300", |b| {
        b.iter(|| {
            out.clear();
            decode_yolo_end2end(&e2e, &gate, &mut out).expect("shapes match");
            black_box(out.len())
        });
    });

    let rows: Vec<f32> = (0..100)
        .flat_map(|r| {
            let x = rng.f32() * 600.0;
            [0.0, x, x, x + 30.0, x + 60.0, (r % 80) as f32, rng.f32()]
        })
        .collect();
    g.bench_function("nms_rows_100", |b| {
        b.iter(|| {
            out.clear();
            decode_nms_rows(&rows, &NmsColumns::DEFAULT, &gate, &mut out).expect("shapes match");
            black_box(out.len())
        });
    });

    let boxes: Vec<f32> = (0..400).map(|_| rng.f32()).collect();
    let scores: Vec<f32> = (0..100).map(|_| rng.f32()).collect();
    let classes: Vec<f32> = (0..100).map(|i| (i % 80) as f32).collect();
    g.bench_function("tfod_100", |b| {
        b.iter(|| {
            out.clear();
            decode_tfod(
                &boxes,
                &scores,
                &classes,
                Some(100),
                640,
                640,
                &gate,
                &mut out,
            )
            .expect("shapes match");
            black_box(out.len())
        });
    });
    g.finish();
}

fn bench_detector(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = init_runtime(&RuntimeOptions::default()) {
        eprintln!("skipping detector benches: {e}");
        return;
    }
    let img = match image::open(root.join("tests/fixtures/dog.jpg")) {
        Ok(i) => i.to_rgb8(),
        Err(e) => {
            eprintln!("skipping detector benches: dog.jpg: {e}");
            return;
        }
    };
    let mut det = match Detector::load(&DetectorOptions::new(
        root.join("models/nanodet_g_coco_416.onnx"),
    )) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping detector benches: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("detector");
    g.sample_size(20);
    g.bench_function("nanodet_416_dog_1thread", |b| {
        b.iter(|| {
            black_box(
                det.detect(img.as_raw(), img.width(), img.height())
                    .expect("detect"),
            )
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_preprocess,
    bench_nms,
    bench_decode,
    bench_detector
);
criterion_main!(benches);
