//! Every model-output decoder on arbitrary tensors of the declared shape
//! (and, now and then, of a wrong one), with NaN, ±Inf and huge values,
//! followed by what the detector does next: NMS and the mapping back to
//! source pixels. The first byte picks the decoder.
//!
//! Invariants checked besides "no panic": a decoder that accepts its input
//! returns at most one detection per candidate row, every score it returns
//! passed the gate, and mapped boxes with finite corners lie in the frame.
#![no_main]

#[path = "common.rs"]
mod common;

use common::Input;
use edge_node::detect::{
    CenterFaceMaps, ClassGate, DetrTensors, InputTransform, NanoDetLevel, NmsColumns, ScoreKind,
    YoloScratch, decode_centerface, decode_detr, decode_nanodet, decode_nms_rows, decode_tfod,
    decode_yolo_end2end, decode_yolov8, decode_yolox, nms,
};
use edge_node::frame::{BBox, Detection};
use libfuzzer_sys::fuzz_target;

/// Per-class thresholds: mostly sane, sometimes switched off (INFINITY) or NaN.
fn gate(inp: &mut Input<'_>, nc: usize) -> ClassGate {
    let t: Vec<f32> = (0..nc)
        .map(|_| match inp.u8() % 8 {
            0 => f32::INFINITY,
            1 => inp.f32(),
            b => b as f32 / 10.0,
        })
        .collect();
    ClassGate::from_thresholds(t)
}

/// `n` values, or (rarely) one more or one less than declared.
fn tensor(inp: &mut Input<'_>, n: usize, wrong: bool) -> Vec<f32> {
    let n = if wrong {
        if inp.bool() {
            n + 1
        } else {
            n.saturating_sub(1)
        }
    } else {
        n
    };
    inp.f32s(n)
}

fn post(inp: &mut Input<'_>, mut dets: Vec<Detection>, candidates: usize, g: Option<&ClassGate>) {
    assert!(
        dets.len() <= candidates,
        "{} detections from {candidates} rows",
        dets.len()
    );
    for d in dets.iter().filter(|_| g.is_some()) {
        let g = g.unwrap();
        assert!(
            g.accepts(d.class_id as usize, d.score),
            "{d:?} did not pass the gate"
        );
    }
    let iou = inp.f32();
    nms(&mut dets, iou);
    let t = InputTransform {
        scale_x: inp.f32(),
        scale_y: inp.f32(),
        pad_x: inp.f32(),
        pad_y: inp.f32(),
        src_w: inp.u32(),
        src_h: inp.u32(),
    };
    for d in &dets {
        let b = t.to_source(&d.bbox);
        let (w, h) = (t.src_w as f32, t.src_h as f32);
        for (v, hi) in [(b.x1, w), (b.y1, h), (b.x2, w), (b.y2, h)] {
            assert!(
                !v.is_finite() || (0.0..=hi).contains(&v),
                "{b:?} outside {w}x{h}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let which = inp.u8() % 9;
    let wrong = inp.u8() == 0xff;
    let mut out = Vec::new();
    match which {
        0 => {
            // NanoDet: levels of [cells, nc] scores and [cells, 4 (reg_max + 1)] sides.
            let nc = 1 + inp.upto(7);
            let reg_max = inp.upto(15);
            let g = gate(&mut inp, nc);
            let n_levels = 1 + inp.upto(2);
            let mut bufs = Vec::new();
            let mut rows = 0;
            for _ in 0..n_levels {
                let stride = inp.upto(64) as u32;
                let grid_w = inp.upto(8);
                let grid_h = inp.upto(8);
                let cells = grid_w * grid_h;
                rows += cells;
                let cls = tensor(&mut inp, cells * nc, wrong);
                let reg = inp.f32s(cells * 4 * (reg_max + 1));
                bufs.push((stride, grid_w, cls, reg));
            }
            let levels: Vec<NanoDetLevel<'_>> = bufs
                .iter()
                .map(|(stride, grid_w, cls, reg)| NanoDetLevel {
                    stride: *stride,
                    grid_w: *grid_w,
                    cls,
                    reg,
                })
                .collect();
            if decode_nanodet(&levels, nc, reg_max, &g, &mut out).is_ok() {
                post(&mut inp, out, rows, Some(&g));
            }
        }
        1 => {
            // YOLOv8 / YOLO11: [1, 4 + nc + extra, N].
            let nc = 1 + inp.upto(7);
            let fields = 4 + nc + inp.upto(3);
            let n = inp.upto(300);
            let g = gate(&mut inp, nc);
            let data = tensor(&mut inp, fields * n, wrong);
            let mut scratch = YoloScratch::default();
            if decode_yolov8(&data, fields, n, nc, &g, &mut scratch, &mut out).is_ok() {
                post(&mut inp, out, n, Some(&g));
            }
        }
        2 | 3 => {
            // DETR: one [K, 4 + nc] tensor, or [K, 4] boxes + [K, nc] scores.
            let nc = 1 + inp.upto(7);
            let k = inp.upto(100);
            let kind = match inp.u8() % 3 {
                0 => ScoreKind::Auto,
                1 => ScoreKind::Logits,
                _ => ScoreKind::Probabilities,
            };
            let (w, h) = (inp.u32(), inp.u32());
            let g = gate(&mut inp, nc);
            let (a, b);
            let t = if which == 2 {
                a = tensor(&mut inp, k * (4 + nc), wrong);
                DetrTensors::single(&a, 4 + nc)
            } else {
                a = tensor(&mut inp, k * 4, wrong);
                b = inp.f32s(k * nc);
                DetrTensors::pair(&a, &b, nc)
            };
            if decode_detr(&t, kind, w, h, &g, &mut out).is_ok() {
                post(&mut inp, out, k + 1, Some(&g));
            }
        }
        4 => {
            // YOLOX: [cells over the stride grids, 5 + nc].
            let nc = 1 + inp.upto(7);
            let (w, h) = (inp.upto(160) as u32, inp.upto(160) as u32);
            let strides: Vec<u32> = (0..1 + inp.upto(3)).map(|_| inp.upto(64) as u32).collect();
            let decoded = inp.bool();
            let g = gate(&mut inp, nc);
            let cells = if strides.contains(&0) {
                inp.upto(50)
            } else {
                edge_node::detect::yolox_cells(w, h, &strides)
            };
            let data = tensor(&mut inp, cells * (5 + nc), wrong);
            if decode_yolox(&data, 5 + nc, w, h, &strides, decoded, &g, &mut out).is_ok() {
                post(&mut inp, out, cells, Some(&g));
            }
        }
        5 => {
            // YOLOv10 / YOLO26 end-to-end: [K, 6].
            let k = inp.upto(200);
            let nc = 1 + inp.upto(7);
            let g = gate(&mut inp, nc);
            let data = tensor(&mut inp, k * 6, wrong);
            if decode_yolo_end2end(&data, &g, &mut out).is_ok() {
                post(&mut inp, out, k, Some(&g));
            }
        }
        6 => {
            // Post-NMS rows [N, C] with arbitrary column roles.
            let width = inp.upto(10);
            let mut col = || inp.upto(10);
            let columns = NmsColumns {
                batch: None,
                x1: col(),
                y1: col(),
                x2: col(),
                y2: col(),
                class: col(),
                score: col(),
                width,
            };
            let columns = NmsColumns {
                batch: inp.bool().then(|| inp.upto(10)),
                ..columns
            };
            let n = inp.upto(200);
            let nc = 1 + inp.upto(7);
            let g = gate(&mut inp, nc);
            let data = tensor(&mut inp, n * width, wrong);
            if decode_nms_rows(&data, &columns, &g, &mut out).is_ok() {
                post(&mut inp, out, n, Some(&g));
            }
        }
        7 => {
            // TF-OD: boxes [K, 4], scores [K], classes [K], num_detections.
            let k = inp.upto(200);
            let num = match inp.u8() % 3 {
                0 => None,
                1 => Some(inp.upto(300)),
                _ => Some(usize::MAX - inp.upto(3)),
            };
            let (w, h) = (inp.u32(), inp.u32());
            let nc = 1 + inp.upto(7);
            let g = gate(&mut inp, nc);
            let boxes = tensor(&mut inp, 4 * k, wrong);
            let scores = inp.f32s(k);
            let classes: Vec<f32> = (0..k)
                .map(|_| {
                    if inp.bool() {
                        inp.upto(9) as f32
                    } else {
                        inp.f32()
                    }
                })
                .collect();
            if decode_tfod(&boxes, &scores, &classes, num, w, h, &g, &mut out).is_ok() {
                post(&mut inp, out, k, Some(&g));
            }
        }
        _ => {
            // CenterFace: heat [gh*gw], scale [2*gh*gw], offset [2*gh*gw].
            let (gw, gh) = (inp.upto(40), inp.upto(40));
            let n = gw * gh;
            let heat = tensor(&mut inp, n, wrong);
            let scale = inp.f32s(2 * n);
            let offset = inp.f32s(2 * n);
            let (threshold, sx, sy) = (inp.f32(), inp.f32(), inp.f32());
            let maps = CenterFaceMaps {
                heat: &heat,
                scale: &scale,
                offset: &offset,
                grid_w: gw,
                grid_h: gh,
            };
            let faces = decode_centerface(&maps, threshold, sx, sy);
            assert!(faces.len() <= n);
            for f in &faces {
                let b: BBox = f.bbox;
                assert!(
                    [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()),
                    "{b:?}"
                );
            }
            // The face threshold is validated by the config; no gate here.
            post(&mut inp, faces, n, None);
        }
    }
});
