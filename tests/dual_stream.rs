//! Dual-stream cameras end to end: two files made here from the same
//! street clip at two resolutions (main 1536×1152, sub 768×576, same
//! timestamps), a camera with `url` = main and `detect_url` = sub, through
//! the real binary and the bundled model to a real mosquitto.
//!
//! - Every snapshot of the dual camera is rendered from the main stream
//!   (`source = "main"`), at its resolution, with a matching error of at
//!   most one frame period; the picture shows the analysed moment (it
//!   matches, scaled down, the sub-stream frame the event's time implies
//!   far better than frames half a second away) and the object inside its
//!   box (the box region matches the sub frame's).
//! - A camera whose main stream holds only the first second falls back to
//!   the analysed frame (`source = "sub"`, sub resolution) for later
//!   moments, stating how far the nearest main frame was.

mod common;

use std::path::Path;
use std::sync::mpsc::channel;
use std::time::{Duration, SystemTime};

use common::*;
use gstreamer as gst;
use gstreamer::prelude::*;

const SUB: (u32, u32) = (768, 576);
const MAIN: (u32, u32) = (1536, 1152);
/// The fixture's frame period (10 fps).
const PERIOD_S: f64 = 0.1;
/// The cameras' analysis period (`detect_fps = 5`).
const ANALYSIS_PERIOD_S: f64 = 0.2;

/// Re-encodes the street clip at `w`×`h` (H.264, a keyframe every 20
/// frames), keeping its timestamps; `frames`: only the first ones.
fn make_clip(out: &Path, (w, h): (u32, u32), frames: Option<u32>) {
    gst::init().unwrap();
    let cut = frames.map_or(String::new(), |n| format!("identity eos-after={n} ! "));
    let desc = format!(
        "filesrc location={src} ! decodebin ! {cut}videoconvert ! videoscale \
         ! video/x-raw,format=I420,width={w},height={h} \
         ! x264enc key-int-max=20 bframes=0 speed-preset=ultrafast ! h264parse ! mp4mux \
         ! filesink location={out}",
        src = fixture("vtest_10s_h264.mp4").display(),
        out = out.display()
    );
    let p = gst::parse::launch(&desc).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("encoder finishes");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
}

/// Every frame of `path` as the node's source decodes it: `(t, rgb)`.
fn decode_all(path: &Path) -> Vec<(f64, Vec<u8>)> {
    let (tx, rx) = channel();
    let opts = edge_node::source::SourceOptions {
        realtime: false,
        detect_fps: 0.0,
        ..edge_node::source::SourceOptions::new("sub", path.display().to_string())
    };
    let cam = edge_node::source::spawn_camera(
        opts,
        Box::new(move |f| {
            let _ = tx.send((f.t, f.data));
        }),
        Box::new(|_| {}),
    )
    .unwrap();
    let mut out = Vec::new();
    while let Ok(f) = rx.recv_timeout(Duration::from_secs(10)) {
        out.push(f);
    }
    cam.join();
    out
}

/// The JPEG shrunk 2×2 → 1 (main → sub resolution), RGB.
fn halve(img: &image::RgbImage) -> Vec<u8> {
    let (w, h) = (img.width() / 2, img.height() / 2);
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let s: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| u32::from(img.get_pixel(2 * x + dx, 2 * y + dy)[c]))
                    .sum();
                out.push(((s + 2) / 4) as u8);
            }
        }
    }
    out
}

/// Mean absolute difference of two RGB pictures `w` wide over a rectangle.
fn diff(a: &[u8], b: &[u8], w: u32, (x1, y1, x2, y2): (u32, u32, u32, u32)) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in y1..y2 {
        let row = (y * w * 3) as usize;
        let (s, e) = (row + (x1 * 3) as usize, row + (x2 * 3) as usize);
        for (p, q) in a[s..e].iter().zip(&b[s..e]) {
            sum += u64::from(p.abs_diff(*q));
            n += 1;
        }
    }
    sum as f64 / n.max(1) as f64
}

/// The drawn box's bottom edge near `y` (main-stream pixels): the x
/// extent of the amber outline on the row around `y` that has most of it.
fn bottom_edge(img: &image::RgbImage, y: f64) -> (f64, f64) {
    let amber = |p: &image::Rgb<u8>| p[0] > 200 && (110..230).contains(&p[1]) && p[2] < 90;
    let lo = (y as u32).saturating_sub(8);
    let hi = (y as u32 + 8).min(img.height());
    let count = |r: u32| {
        (0..img.width())
            .filter(|&x| amber(img.get_pixel(x, r)))
            .count()
    };
    let best = (lo..hi).max_by_key(|&r| count(r)).unwrap();
    let xs: Vec<u32> = (0..img.width())
        .filter(|&x| amber(img.get_pixel(x, best)))
        .collect();
    (
        f64::from(*xs.first().unwrap_or(&0)),
        f64::from(*xs.last().unwrap_or(&0)),
    )
}

fn secs(rfc3339: &str) -> f64 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Each event with a snapshot: the event and its JPEG.
fn with_pictures(msgs: &[Msg], camera: &str) -> Vec<(serde_json::Value, image::RgbImage)> {
    let mut out = Vec::new();
    for m in msgs
        .iter()
        .filter(|m| m.topic.ends_with(&format!("/{camera}/events")))
    {
        let e = m.json();
        let Some(topic) = e["snapshot"]["topic"].as_str() else {
            continue;
        };
        let jpeg = msgs
            .iter()
            .rfind(|x| x.topic == topic && x.at <= m.at)
            .unwrap_or_else(|| panic!("snapshot {topic} never received"));
        let img = image::load_from_memory_with_format(&jpeg.payload, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        out.push((e, img));
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[test]
fn dual_stream_snapshots_come_from_the_main_stream_at_the_analysed_moment() {
    let dir = tempfile::tempdir().unwrap();
    let (main, sub, short) = (
        dir.path().join("main.mp4"),
        dir.path().join("sub.mp4"),
        dir.path().join("main_first_second.mp4"),
    );
    make_clip(&main, MAIN, None);
    make_clip(&sub, SUB, None);
    make_clip(&short, MAIN, Some(10));
    let subs = decode_all(&sub);
    assert_eq!(subs.len(), 100);

    let broker = mosquitto();
    let subscriber = Subscriber::start(broker.port, "t/#");
    let text = format!(
        "{head}\n[snapshot]\ncrop = false\nmax_height = 1152\nquality = 90\n\n\
         [[cameras]]\nid = \"dual\"\nurl = \"{main}\"\ndetect_url = \"{sub}\"\ndetect_fps = 5\n\n\
         [[cameras]]\nid = \"short\"\nurl = \"{short}\"\ndetect_url = \"{sub}\"\ndetect_fps = 5\n",
        head = PipelineToml::new(broker.port).build(),
        main = main.display(),
        sub = sub.display(),
        short = short.display(),
    );
    let p = write(dir.path(), "p.toml", &text);
    let check = edge_node().arg("check").arg(&p).output().unwrap();
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check_out}");
    assert!(
        check_out.contains("detect"),
        "check names the sub-stream:\n{check_out}"
    );
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let status = node
        .wait(Duration::from_secs(120))
        .expect("edge-node ends by itself on files");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{logtext}");
    let msgs = subscriber.wait_for("node stopped", Duration::from_secs(10), |m| {
        m.iter()
            .any(|x| x.topic == "t/test-district/test-box/status" && x.json()["state"] == "stopped")
    });
    schemas().validate_all(&msgs);

    check_main_pictures(&msgs, &subs, &logtext);
    check_fallback(&msgs, &logtext);
}

/// The dual camera: every picture from the main stream, at its size, of
/// an analysed moment, its box drawn where the object is.
fn check_main_pictures(msgs: &[Msg], subs: &[(f64, Vec<u8>)], logtext: &str) {
    let pics = with_pictures(msgs, "dual");
    assert!(pics.len() >= 3, "pictures: {}\n{logtext}", pics.len());
    let mut errors = Vec::new();
    let mut offsets = Vec::new();
    for (e, img) in &pics {
        let s = &e["snapshot"];
        assert_eq!(s["source"], "main", "{e}");
        assert_eq!((img.width(), img.height()), MAIN, "{e}");
        assert_eq!(e["frame_size"]["width"], SUB.0, "{e}");
        let err = s["match_error_ms"].as_f64().unwrap();
        assert!(err.abs() <= PERIOD_S * 1e3, "matching error {err} ms: {e}");
        errors.push(err.abs());
        // Which sub-stream frame the picture shows.
        let small = halve(img);
        let full = (0, 0, SUB.0, SUB.1);
        let d: Vec<f64> = subs
            .iter()
            .map(|(_, f)| diff(&small, f, SUB.0, full))
            .collect();
        let best = (0..d.len()).min_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap();
        // People walk: half a second away the picture is clearly different.
        for far in [best.saturating_sub(5), (best + 5).min(d.len() - 1)] {
            if far != best {
                assert!(
                    d[far] > d[best] * 1.3,
                    "frame {best}: {} vs {} at {far}",
                    d[best],
                    d[far]
                );
            }
        }
        offsets.push((
            secs(e["frame_time"].as_str().unwrap()) - subs[best].0,
            e.clone(),
            img,
            best,
        ));
    }
    // The event's `frame_time` is its latest analysed frame; its picture
    // shows the best analysed frame so far, on the same 5 fps grid: so
    // frame_time − (the shown frame's t) is a whole number of analysis
    // periods. A picture one main-stream frame off would be 0.1 s off grid.
    let base = offsets.iter().map(|o| o.0).fold(f64::INFINITY, f64::min);
    let mut same_frame = 0;
    for (off, e, img, best) in &offsets {
        let k = (off - base) / ANALYSIS_PERIOD_S;
        assert!(
            (k - k.round()).abs() < 0.05,
            "off the analysed grid by {k}: {e}"
        );
        if k.round() != 0.0 {
            continue;
        }
        // The picture is of the event's own frame: its box is the wire's,
        // drawn (scaled ×2) where the object is.
        same_frame += 1;
        let b = &e["box"];
        let px = |k: &str, n: u32| b[k].as_f64().unwrap() * f64::from(n);
        let (x1, y1, x2, y2) = (
            px("x1", MAIN.0),
            px("y1", MAIN.1),
            px("x2", MAIN.0),
            px("y2", MAIN.1),
        );
        let (ax1, ax2) = bottom_edge(img, y2);
        assert!(
            (ax1 - x1).abs() <= 8.0 && (ax2 - x2).abs() <= 8.0,
            "box drawn at x {ax1}..{ax2}, wire box {x1}..{x2}: {e}"
        );
        // Inside the box, the picture is the sub frame's content.
        let small = halve(img);
        let inner = |v: f64, d: f64| (v / 2.0 + d).max(0.0) as u32;
        let rect = (
            inner(x1, 4.0),
            inner(y1, 4.0),
            inner(x2, -4.0).max(inner(x1, 4.0) + 1),
            inner(y2, -4.0).max(inner(y1, 4.0) + 1),
        );
        let inside = diff(&small, &subs[*best].1, SUB.0, rect);
        assert!(inside < 12.0, "box region differs by {inside}: {e}");
    }
    assert!(same_frame >= 1, "no picture of its event's own frame");
    let worst = errors.iter().copied().fold(0.0, f64::max);
    println!(
        "dual: {} main-stream pictures, matching error median {:.1} ms, worst {:.1} ms",
        pics.len(),
        median(&mut errors),
        worst
    );
}

/// The camera whose main stream stops after a second: later pictures are
/// the analysed frames, marked `sub`.
fn check_fallback(msgs: &[Msg], logtext: &str) {
    let pics = with_pictures(msgs, "short");
    let fallback: Vec<_> = pics
        .iter()
        .filter(|(e, _)| e["snapshot"]["source"] == "sub")
        .collect();
    assert!(!fallback.is_empty(), "no fallback picture\n{logtext}");
    for (e, img) in &fallback {
        assert_eq!((img.width(), img.height()), SUB, "{e}");
        let err = e["snapshot"]["match_error_ms"].as_f64().unwrap();
        assert!(
            err <= -PERIOD_S * 1e3,
            "the nearest main frame is more than the tolerance in the past: {e}"
        );
    }
    for (e, img) in pics
        .iter()
        .filter(|(e, _)| e["snapshot"]["source"] == "main")
    {
        assert_eq!((img.width(), img.height()), MAIN, "{e}");
    }
}
