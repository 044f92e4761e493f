//! Tracker evaluation against a public ground truth: PETS09-S2L1 (MOTChallenge 2015).
//!
//! ```sh
//! scripts/fetch-pets09.sh                       # full vtest.avi from Debian opencv-doc
//! python3 -m venv /work/venv-mot && /work/venv-mot/bin/pip install \
//!     motmetrics==1.4.0 'numpy<2' 'pandas<2.3' 'scipy<1.15'
//! EDGE_MOT_PYTHON=/work/venv-mot/bin/python \
//!   cargo bench -p edge-node --bench mot_eval -- --gt /path/to/PETS09-S2L1/gt/gt.txt
//! ```
//!
//! The ground truth (CC BY-NC-SA 3.0, not in this repository) comes from the
//! MOTChallenge 2015 training set, sequence "PETS09-S2L1"; see
//! `docs/evaluation.md`. Its path is `--gt PATH` or `$EDGE_MOT_GT`. Without
//! it, or without the video, the bench says how to get them and exits 0.
//! Without `--bench` (under `cargo test --all-targets`) it only prints a line.
//!
//! Pipeline: the node's own `source::spawn_camera` decodes the full 795-frame
//! clip (`--video PATH`, `$EDGE_MOT_VIDEO`, default
//! `third_party/pets09/vtest.avi`; not real time, `detect_fps` = 10 = every
//! frame); the bundled NanoDet-g 416 (`detect::Detector`, class `person`,
//! the node's default threshold and NMS) finds people; `track::Tracker` runs
//! with exactly the config the node builds (`EventConfig::tracker_config`
//! over the `[tracker]` section defaults), once on every frame (10 fps) and
//! once on every second frame (5 fps, the node's default `detect_fps`).
//! `EDGE_MOT_INPUT` sets the detector's input budget (any value
//! `InputBudget::parse` accepts: `model`, `standard`, `detailed`, `maximum`,
//! a pixel count; default: the detector's default, `standard`); `model` is
//! the squashed 416x416 input the node used before pixel budgets.
//! Detections are cached in `out/mot/pets09_dets_<input>.txt` (one file per
//! input budget); `EDGE_MOT_DETS=reuse` skips decoding and inference and
//! replays the cache (for tuning).
//!
//! Variants: `node` (the node's config), `before` (the previous default,
//! `motion_weight` 0, i.e. no motion-consistency cost), `reid`
//! (re-identification pass on), plus any given
//! as `EDGE_MOT_CFG="name:key=value,key=value;name2:..."` for tuning.
//!
//! Output per run: `out/mot/pets09_<variant>_<fps>fps.txt` in MOTChallenge
//! format (`frame,id,x,y,w,h,conf,-1,-1,-1`; confirmed tracks matched in that
//! frame, MOT frame = decoded frame + 1), then `scripts/mot_eval.py`
//! (py-motmetrics; `$EDGE_MOT_PYTHON`, default `python3`) prints MOTA, IDF1,
//! ID switches and fragmentations.
//!
//! Line counts: the tracker's output of every processed frame (all live
//! tracks, as the node hands them over) goes through the node's own
//! `rules::RulesEngine` with the evaluation's two lines ([`eval_lines`]);
//! the ground-truth tracks go through the same engine at the full 10 fps.
//! Both are printed per line and direction with the error, next to the
//! counts of `scripts/mot_eval.py`'s plain crossing counter (an independent
//! re-implementation, no fragment hand-off), and all figures go to
//! `out/mot/summary.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

use edge_node::config::{DetectorSection, TrackerSection};
use edge_node::detect::{Detector, DetectorOptions, InputBudget, RuntimeOptions, init_runtime};
use edge_node::events::EventConfig;
use edge_node::frame::{BBox, Detection, Frame};
use edge_node::rules::{LineRule, RulesConfig, RulesEngine};
use edge_node::source::{SourceOptions, SourceState, spawn_camera};
use edge_node::track::{TrackState, TrackView, Tracker, TrackerConfig};

const MODEL: &str = "models/nanodet_g_coco_416.onnx";
const CLIP_FPS: f64 = 10.0;
const FRAMES: usize = 795;
/// Frame size of the sequence.
const W: u32 = 768;
const H: u32 = 576;
/// Line hysteresis in pixels: about 10 % of a person's height here
/// (detector boxes jitter by ~5 % of the height).
const HYST_PX: f32 = 8.0;

/// The node's default line inertia, or `$EDGE_MOT_LINE_INERTIA` (tuning).
fn line_inertia() -> u32 {
    std::env::var("EDGE_MOT_LINE_INERTIA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(edge_node::rules::DEFAULT_LINE_INERTIA)
}

/// The evaluation's two lines as the node's rules (pixels → 0..1). The same
/// lines are defined in `scripts/mot_eval.py`.
///
/// - `vertical_x400`: x = 400 from the bottom edge (A) up to y = 150 (B),
///   across the walkway; `left_to_right` = moving right on screen. It runs
///   right next to the lamp post and sign (x ≈ 413–445), the scene's main
///   occluder.
/// - `horizontal_y300`: y = 300 from the left edge (A) to the right (B),
///   across the plaza; `top_to_bottom` = moving down on screen.
fn eval_lines() -> Vec<LineRule> {
    let (w, h) = (W as f32, H as f32);
    let line = |name: &str, a: (f32, f32), b: (f32, f32), fw: &str, bw: &str, hyst: f32| LineRule {
        name: name.into(),
        a: (a.0 / w, a.1 / h),
        b: (b.0 / w, b.1 / h),
        forward: fw.into(),
        backward: bw.into(),
        classes: Default::default(),
        hysteresis: hyst,
        inertia: line_inertia(),
        alert_direction: None,
        cooldown_s: None,
    };
    vec![
        // The distance to a vertical line is in units of the frame width,
        // to a horizontal one in units of its height.
        line(
            "vertical_x400",
            (400.0, h),
            (400.0, 150.0),
            "left_to_right",
            "right_to_left",
            HYST_PX / w,
        ),
        line(
            "horizontal_y300",
            (0.0, 300.0),
            (w, 300.0),
            "top_to_bottom",
            "bottom_to_top",
            HYST_PX / h,
        ),
    ]
}

/// The node's rules (defaults) with the evaluation lines; `handoff` false
/// turns the fragment hand-off off (`handoff_s = 0`) for comparison.
fn eval_rules(t0: f64, handoff: bool) -> RulesEngine {
    let mut cfg = RulesConfig {
        lines: eval_lines(),
        ..RulesConfig::default()
    };
    if !handoff {
        cfg.handoff_s = 0.0;
    }
    cfg.validate().expect("evaluation lines are valid");
    RulesEngine::new(cfg, t0)
}

/// Line name → direction → crossings (all classes), from the engine.
type LineTotals = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

/// Crossings counted in the frame just processed, as `frame,line,direction`
/// lines (resets the engine's interval deltas, which the bench does not use).
fn crossings_now(eng: &mut RulesEngine, t: f64, frame: usize, out: &mut String) {
    for l in eng.take_counts(t).lines {
        for by_dir in l.by_class.values() {
            for (d, c) in by_dir {
                for _ in 0..c.delta {
                    let _ = writeln!(out, "{frame},{},{d}", l.name);
                }
            }
        }
    }
}

fn line_totals(eng: &mut RulesEngine, t: f64) -> LineTotals {
    let r = eng.take_counts(t);
    r.lines
        .iter()
        .map(|l| {
            let mut dirs: std::collections::BTreeMap<String, u64> =
                [(l.forward.clone(), 0), (l.backward.clone(), 0)].into();
            for by_dir in l.by_class.values() {
                for (d, c) in by_dir {
                    *dirs.entry(d.clone()).or_default() += c.total;
                }
            }
            (l.name.clone(), dirs)
        })
        .collect()
}

/// The ground-truth tracks through the node's rules engine, every frame.
/// Rows: `frame,id,x,y,w,h,...` (MOT frame f at t = (f - 1) / 10 s).
fn gt_line_counts(gt: &Path) -> LineTotals {
    let text = std::fs::read_to_string(gt).unwrap_or_else(|e| panic!("{}: {e}", gt.display()));
    let mut by_frame: std::collections::BTreeMap<u64, Vec<TrackView>> = Default::default();
    for line in text.lines() {
        let v: Vec<f64> = line
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        let [f, id, x, y, bw, bh, ..] = v.as_slice() else {
            continue;
        };
        let t = (*f - 1.0) / CLIP_FPS;
        by_frame.entry(*f as u64).or_default().push(TrackView {
            id: *id as u64,
            class_id: 0,
            state: TrackState::Confirmed,
            bbox: BBox::new(*x as f32, *y as f32, (*x + *bw) as f32, (*y + *bh) as f32),
            score: 1.0,
            matched: true,
            hits: 100,
            first_seen: 0.0,
            last_seen: t,
        });
    }
    let mut eng = eval_rules(0.0, true);
    let mut last_t = 0.0;
    let mut log = String::new();
    for (f, views) in &by_frame {
        last_t = (*f as f64 - 1.0) / CLIP_FPS;
        eng.on_frame(last_t, W, H, views);
        crossings_now(&mut eng, last_t, *f as usize, &mut log);
    }
    let path = root().join("out/mot/pets09_gt_crossings.txt");
    std::fs::write(&path, log).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    line_totals(&mut eng, last_t)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `--name VALUE` from the command line, else the environment variable.
fn arg_or_env(args: &[String], name: &str, env: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

/// The tracker config the node builds from a pipeline with default
/// `[tracker]` and `[events]` sections (see `node.rs`).
fn node_tracker_config() -> TrackerConfig {
    let t = TrackerSection::default();
    EventConfig::default().tracker_config(TrackerConfig {
        high_thresh: t.high_thresh,
        low_thresh: t.low_thresh,
        new_track_thresh: t.new_track_thresh,
        match_iou: t.match_iou,
        ..TrackerConfig::default()
    })
}

/// One decoded frame's detections, at media time `t`.
struct FrameDets {
    index: usize,
    t: f64,
    dets: Vec<Detection>,
}

/// The detector's input budget: `$EDGE_MOT_INPUT` (as `InputBudget::parse`
/// reads it), default the detector's default. Panics on a bad value.
fn input_budget() -> InputBudget {
    match std::env::var("EDGE_MOT_INPUT") {
        Ok(v) if !v.trim().is_empty() => {
            InputBudget::parse(&v).unwrap_or_else(|e| panic!("EDGE_MOT_INPUT: {e}"))
        }
        _ => DetectorOptions::default().input,
    }
}

/// The input budget as a file-name part: `model`, `standard`, `173056`, ...
fn input_tag(input: InputBudget) -> String {
    input
        .describe()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .replace("_px", "")
}

fn detect_clip(video: &Path, input: InputBudget) -> Vec<FrameDets> {
    if let Err(e) = init_runtime(&RuntimeOptions::default()) {
        panic!("ONNX Runtime: {e} (set ORT_DYLIB_PATH)");
    }
    let d = DetectorSection::default();
    let mut o = DetectorOptions::new(root().join(MODEL));
    o.threshold = d.threshold;
    o.nms_iou = d.nms_iou;
    o.classes = Some(vec!["person".to_string()]);
    o.intra_threads = 2;
    o.input = input;
    let mut det = Detector::load(&o).unwrap_or_else(|e| panic!("{MODEL}: {e}"));
    let (iw, ih) = det.input_size_for(input, W, H);
    println!(
        "mot_eval: {W}x{H} frames -> {iw}x{ih} model input ({})",
        input.describe()
    );

    // A small blocking queue: a file source that is not real time simply
    // waits for the detector, so no frame is dropped.
    let (ftx, frx) = sync_channel::<Frame>(4);
    let (stx, srx) = sync_channel::<SourceState>(16);
    let mut opts = SourceOptions::new("pets09", video.to_string_lossy());
    opts.detect_fps = CLIP_FPS;
    opts.realtime = false;
    let cam = spawn_camera(
        opts,
        Box::new(move |f| {
            let _ = ftx.send(f);
        }),
        Box::new(move |s| {
            let _ = stx.try_send(s);
        }),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", video.display()));
    let out = run_detector(&mut det, &frx, &srx);
    cam.join();
    out
}

fn run_detector(
    det: &mut Detector,
    frx: &Receiver<Frame>,
    srx: &Receiver<SourceState>,
) -> Vec<FrameDets> {
    let mut out = Vec::with_capacity(FRAMES);
    loop {
        match frx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(f) => {
                let dets = det
                    .detect(&f.data, f.width, f.height)
                    .unwrap_or_else(|e| panic!("detect: {e}"));
                let index = (f.t * CLIP_FPS).round() as usize;
                out.push(FrameDets {
                    index,
                    t: f.t,
                    dets,
                });
                if out.len() % 100 == 0 {
                    eprintln!("  {} frames", out.len());
                }
            }
            Err(_) => match srx.try_recv() {
                Ok(SourceState::Failed { error, .. }) => panic!("decode failed: {error}"),
                Ok(SourceState::Ended) | Err(TryRecvError::Disconnected) => {
                    // Drain what is left.
                    while let Ok(f) = frx.try_recv() {
                        let dets = det.detect(&f.data, f.width, f.height).unwrap_or_default();
                        let index = (f.t * CLIP_FPS).round() as usize;
                        out.push(FrameDets {
                            index,
                            t: f.t,
                            dets,
                        });
                    }
                    break;
                }
                Ok(_) | Err(TryRecvError::Empty) => {}
            },
        }
    }
    out.sort_by_key(|f| f.index);
    out
}

fn write_dets(path: &Path, frames: &[FrameDets]) {
    let mut s = String::new();
    for f in frames {
        let _ = writeln!(s, "{},{}", f.index, f.t);
        for d in &f.dets {
            let b = d.bbox;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{}",
                f.index, f.t, d.class_id, d.score, b.x1, b.y1, b.x2, b.y2
            );
        }
    }
    std::fs::write(path, s).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read_dets(path: &Path) -> Option<Vec<FrameDets>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut out: Vec<FrameDets> = Vec::new();
    for line in text.lines() {
        let v: Vec<f64> = line.split(',').filter_map(|x| x.parse().ok()).collect();
        match v.as_slice() {
            [i, t] => out.push(FrameDets {
                index: *i as usize,
                t: *t,
                dets: Vec::new(),
            }),
            [_, _, c, s, x1, y1, x2, y2] => out.last_mut()?.dets.push(Detection {
                class_id: *c as u32,
                score: *s as f32,
                bbox: BBox::new(*x1 as f32, *y1 as f32, *x2 as f32, *y2 as f32),
            }),
            _ => return None,
        }
    }
    Some(out)
}

/// What one tracker run produced.
struct Run {
    /// MOTChallenge rows (confirmed tracks matched in that frame).
    rows: String,
    /// Every track view the node would hand over, for diagnosis:
    /// `frame,id,state,matched,x1,y1,x2,y2,first_seen`.
    views: String,
    /// Crossings as the node's rules count them, per frame.
    crossings: String,
    /// Line counts of the node's rules, and with the hand-off off.
    lines: LineTotals,
    lines_no_handoff: LineTotals,
}

/// Runs the tracker on every `step`-th frame, and the node's rules engine
/// on its output (MOT frame = decoded frame + 1).
fn track(frames: &[FrameDets], cfg: &TrackerConfig, step: usize) -> Run {
    let mut tr = Tracker::new(*cfg);
    let mut rules = eval_rules(0.0, true);
    let mut plain = eval_rules(0.0, false);
    let mut s = String::new();
    let mut views_log = String::new();
    let mut crossings = String::new();
    let mut last_t = 0.0;
    for f in frames.iter().filter(|f| f.index % step == 0) {
        let views = tr.update(f.t, &f.dets);
        rules.on_frame(f.t, W, H, &views);
        plain.on_frame(f.t, W, H, &views);
        crossings_now(&mut rules, f.t, f.index + 1, &mut crossings);
        last_t = f.t;
        for v in &views {
            let b = v.bbox;
            let _ = writeln!(
                views_log,
                "{},{},{:?},{},{:.1},{:.1},{:.1},{:.1},{:.1}",
                f.index + 1,
                v.id,
                v.state,
                v.matched,
                b.x1,
                b.y1,
                b.x2,
                b.y2,
                v.first_seen
            );
        }
        for v in views {
            if v.state != TrackState::Confirmed || !v.matched {
                continue;
            }
            let b = v.bbox;
            let _ = writeln!(
                s,
                "{},{},{:.2},{:.2},{:.2},{:.2},{:.3},-1,-1,-1",
                f.index + 1,
                v.id,
                b.x1,
                b.y1,
                b.width(),
                b.height(),
                v.score
            );
        }
    }
    Run {
        rows: s,
        views: views_log,
        crossings,
        lines: line_totals(&mut rules, last_t),
        lines_no_handoff: line_totals(&mut plain, last_t),
    }
}

/// `base` with `key=value` pairs (comma separated) applied; unknown keys panic.
fn with_overrides(base: &TrackerConfig, kvs: &str) -> TrackerConfig {
    let mut c = *base;
    for kv in kvs.split(',').filter(|k| !k.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let f: f64 = v.parse().unwrap_or_else(|_| panic!("bad value in {kv}"));
        match k {
            "high_thresh" => c.high_thresh = f as f32,
            "low_thresh" => c.low_thresh = f as f32,
            "new_track_thresh" => c.new_track_thresh = f as f32,
            "match_iou" => c.match_iou = f as f32,
            "match_buffer" => c.match_buffer = f as f32,
            "low_match_iou" => c.low_match_iou = f as f32,
            "min_hits" => c.min_hits = f as u32,
            "max_lost_s" => c.max_lost_s = f,
            "reid_speed" => c.reid_speed = f as f32,
            "reid_min_gate" => c.reid_min_gate = f as f32,
            "reid_max_scale" => c.reid_max_scale = f as f32,
            "motion_weight" => c.motion_weight = f as f32,
            "motion_tol" => c.motion_tol = f as f32,
            "motion_window_s" => c.motion_window_s = f,
            "motion_min_speed" => c.motion_min_speed = f as f32,
            _ => panic!("unknown tracker setting {k}"),
        }
    }
    c
}

#[allow(
    clippy::too_many_lines,
    reason = "argument handling, the evaluation runs and the report in order; splitting would only pass state around"
)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("mot_eval: run with `cargo bench -p edge-node --bench mot_eval -- --gt PATH`");
        return;
    }
    let root = root();
    let Some(gt) = arg_or_env(&args, "--gt", "EDGE_MOT_GT")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        println!(
            "mot_eval: no ground truth. Download the MOTChallenge 2015 training set \
             (https://motchallenge.net/data/2D_MOT_2015/, CC BY-NC-SA 3.0) and pass \
             PETS09-S2L1/gt/gt.txt with `-- --gt PATH` or EDGE_MOT_GT. See docs/evaluation.md."
        );
        return;
    };
    let video = arg_or_env(&args, "--video", "EDGE_MOT_VIDEO")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("third_party/pets09/vtest.avi"));
    let out_dir = root.join("out/mot");
    std::fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("{}: {e}", out_dir.display()));
    let input = input_budget();
    println!("mot_eval: detector input {}", input.describe());
    let cache = out_dir.join(format!("pets09_dets_{}.txt", input_tag(input)));

    let reuse = std::env::var("EDGE_MOT_DETS").is_ok_and(|v| v == "reuse");
    let frames = match reuse.then(|| read_dets(&cache)).flatten() {
        Some(f) => {
            println!("mot_eval: replaying {} cached frames", f.len());
            f
        }
        None => {
            if !video.is_file() {
                println!(
                    "mot_eval: no video at {}; run scripts/fetch-pets09.sh",
                    video.display()
                );
                return;
            }
            println!("mot_eval: decoding and detecting {}", video.display());
            let f = detect_clip(&video, input);
            write_dets(&cache, &f);
            f
        }
    };
    assert_eq!(
        frames.len(),
        FRAMES,
        "expected every frame of the clip (MOT frame f = decoded frame f - 1)"
    );
    let ndet: usize = frames.iter().map(|f| f.dets.len()).sum();
    println!(
        "mot_eval: {} frames, {ndet} person detections",
        frames.len()
    );

    let python = std::env::var("EDGE_MOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = root.join("scripts/mot_eval.py");
    let node = node_tracker_config();
    println!("tracker config (as the node builds it): {node:?}");
    // `node`: what the node runs. `before`: the previous default (no
    // motion-consistency cost), kept for the before/after comparison.
    // `reid`: the opt-in re-identification pass on.
    let mut variants = vec![
        ("node".to_string(), node),
        (
            "before".to_string(),
            with_overrides(&node, "motion_weight=0"),
        ),
        ("reid".to_string(), with_overrides(&node, "reid_speed=1")),
    ];
    if let Ok(spec) = std::env::var("EDGE_MOT_CFG") {
        // Extra variants for tuning: `name:key=v,key=v;name2:key=v`.
        for part in spec.split(';').filter(|p| !p.is_empty()) {
            let (name, kvs) = part.split_once(':').unwrap_or((part, ""));
            let cfg = with_overrides(&node, kvs);
            println!("variant {name}: {cfg:?}");
            variants.push((name.to_string(), cfg));
        }
    }
    let gt_lines = gt_line_counts(&gt);
    let mut summary = serde_json::Map::new();
    summary.insert("gt_lines_engine".into(), serde_json::json!(gt_lines));
    let mut table = String::new();
    for ((name, cfg), (fps, step)) in variants
        .iter()
        .flat_map(|v| [(10, 1), (5, 2)].map(|fs| (v, fs)))
    {
        let run = track(&frames, cfg, step);
        let lines = &run.lines;
        let res = out_dir.join(format!("pets09_{name}_{fps}fps.txt"));
        for (path, text) in [
            (res.clone(), &run.rows),
            (
                out_dir.join(format!("pets09_{name}_{fps}fps_views.txt")),
                &run.views,
            ),
            (
                out_dir.join(format!("pets09_{name}_{fps}fps_crossings.txt")),
                &run.crossings,
            ),
        ] {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let json = out_dir.join(format!("pets09_{name}_{fps}fps.json"));
        let status = Command::new(&python)
            .arg(&script)
            .arg("--gt")
            .arg(&gt)
            .arg("--res")
            .arg(&res)
            .arg("--step")
            .arg(step.to_string())
            .arg("--json")
            .arg(&json)
            .status();
        match status {
            Ok(s) if s.success() => {
                let mut v: serde_json::Value = std::fs::read_to_string(&json)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let plain = v["lines"]["tracker"].clone();
                let _ = writeln!(
                    table,
                    "{name}, {fps} fps (node RulesEngine; [hand-off off | scripts/mot_eval.py plain counter]):"
                );
                let mut worst = 0.0f64;
                for (line, dirs) in &gt_lines {
                    for (dir, &g) in dirs {
                        let r = lines[line][dir];
                        let err = if g == 0 {
                            if r == 0 { 0.0 } else { f64::INFINITY }
                        } else {
                            (r as f64 - g as f64) / g as f64
                        };
                        worst = worst.max(err.abs());
                        let _ = writeln!(
                            table,
                            "  {line:<16} {dir:<14} GT {g:>3}  tracker {r:>3} ({:+.0} %)  [{} | {}]",
                            err * 100.0,
                            run.lines_no_handoff[line][dir],
                            plain[line][dir]
                        );
                    }
                }
                let _ = writeln!(table, "  worst line error {:.0} %", worst * 100.0);
                v["lines_engine"] = serde_json::json!({
                    "gt": gt_lines,
                    "tracker": lines,
                    "tracker_no_handoff": run.lines_no_handoff,
                });
                v["worst_line_error_engine"] = serde_json::json!(worst);
                summary.insert(format!("{name}_{fps}fps"), v);
            }
            other => {
                println!(
                    "mot_eval: {python} {} failed ({other:?}); it needs py-motmetrics, see \
                     docs/evaluation.md. Tracker output is in {}",
                    script.display(),
                    res.display()
                );
                return;
            }
        }
    }
    println!("line counts, ground truth (10 fps) vs tracker, both through the node's RulesEngine:");
    print!("{table}");
    let path = out_dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("mot_eval: figures in {}", path.display());
}
