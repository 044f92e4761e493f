//! Decoding cost of the ingest pipeline (`source`): CPU time (user + system,
//! `getrusage`) of cameras playing a file as fast as possible through the
//! node's own pipeline (`source::spawn_camera`: uridecodebin → rate probe at
//! `detect_fps` 5 → scale to 720 → RGB → frame callback), comparing
//!
//! 1. full-rate against keyframe-only decoding (the `KeyframeGate` set from
//!    the start, as for an idle camera), one camera;
//! 2. FFmpeg `max-threads` 1 against 0 (automatic) at 1, 4 and 12 cameras
//!    side by side: total CPU seconds, CPU per decoded frame, and the frames
//!    decoded per second of wall time (all cameras together).
//!
//! The clip is the bundled vtest clip scaled to 1920×1080, 25 fps, H.264 at
//! 4 Mbit/s with a keyframe every 50 frames (2 s), made with x264enc into
//! `target/decode-bench/` on first use (`--h265` adds the same in H.265).
//! `cargo bench -p edge-node --bench decode` runs everything (`-- --quick`:
//! one pass, 1 and 4 cameras). Under `cargo test --all-targets` it only
//! checks, on a small clip, that keyframe-only decoding delivers keyframes
//! only. Figures: `docs/evaluation.md` (decoders and keyframe-only decoding).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use edge_node::source::{self, KeyframeGate, SourceOptions, SourceState};

fn cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn gst(line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let st = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .status()
        .expect("gst-launch-1.0 runs");
    assert!(st.success(), "gst-launch-1.0 {line}");
}

/// The vtest clip re-encoded at `size`, `fps`, one keyframe per `gop`
/// frames, by `encoder` (`x264enc` / `x265enc` with their properties).
fn make_clip(out: &Path, size: (u32, u32), fps: u32, encoder: &str, parser: &str) -> PathBuf {
    if out.is_file() {
        return out.to_path_buf();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vtest_10s_h264.mp4");
    gst(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videorate ! videoconvert ! \
         videoscale ! video/x-raw,width={},height={},framerate={fps}/1,format=I420,pixel-aspect-ratio=1/1 ! \
         {encoder} ! {parser} ! mp4mux ! filesink location={}",
        src.display(),
        size.0,
        size.1,
        out.display()
    ));
    out.to_path_buf()
}

struct Run {
    cpu_s: f64,
    wall_s: f64,
    frames: u64,
    skipped: u64,
}

/// `cameras` cameras on `clip` at once (realtime = false), each with
/// `threads` and, when `keyframes`, the gate set; waits for them all to end.
fn run(clip: &Path, cameras: usize, threads: u32, keyframes: bool, detect_fps: f64) -> Run {
    let frames = Arc::new(AtomicU64::new(0));
    let (tx, rx) = channel();
    let gates: Vec<KeyframeGate> = (0..cameras).map(|_| KeyframeGate::default()).collect();
    let cpu0 = cpu_s();
    let t0 = Instant::now();
    let handles: Vec<_> = gates
        .iter()
        .enumerate()
        .map(|(i, gate)| {
            gate.set_keyframes_only(keyframes);
            let opts = SourceOptions {
                realtime: false,
                detect_fps,
                decoder_threads: threads,
                keyframe_gate: Some(gate.clone()),
                ..SourceOptions::new(format!("cam{i}"), clip.display().to_string())
            };
            let (n, tx) = (Arc::clone(&frames), tx.clone());
            source::spawn_camera(
                opts,
                Box::new(move |_| {
                    n.fetch_add(1, Ordering::Relaxed);
                }),
                Box::new(move |s| {
                    if matches!(s, SourceState::Ended | SourceState::Failed { .. }) {
                        let _ = tx.send(s);
                    }
                }),
            )
            .expect("camera starts")
        })
        .collect();
    for _ in 0..cameras {
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(SourceState::Ended) => {}
            other => panic!("camera did not end cleanly: {other:?}"),
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu = cpu_s() - cpu0;
    for h in handles {
        h.join();
    }
    Run {
        cpu_s: cpu,
        wall_s,
        frames: frames.load(Ordering::Relaxed),
        skipped: gates.iter().map(KeyframeGate::skipped).sum(),
    }
}

/// Best (least CPU) of `passes` runs: the machine is shared.
fn best(passes: usize, f: impl Fn() -> Run) -> Run {
    (0..passes)
        .map(|_| f())
        .min_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s))
        .expect("one pass")
}

fn smoke() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = make_clip(
        &dir.path().join("small.mp4"),
        (320, 240),
        10,
        "x264enc key-int-max=10 bframes=0 speed-preset=ultrafast",
        "h264parse",
    );
    let r = run(&clip, 1, 1, true, 0.0);
    assert_eq!(r.frames, 10, "keyframes only: one frame per GOP of 10");
    assert_eq!(r.skipped, 90);
    println!("decode bench smoke: ok (10 keyframes, 90 deltas skipped)");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return smoke();
    }
    let quick = args.iter().any(|a| a == "--quick");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/decode-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut clips = vec![(
        "h264",
        make_clip(
            &dir.join("vtest_1080p25_4M_gop50_h264.mp4"),
            (1920, 1080),
            25,
            "x264enc bitrate=4000 key-int-max=50 speed-preset=faster",
            "h264parse",
        ),
    )];
    if args.iter().any(|a| a == "--h265") {
        clips.push((
            "h265",
            make_clip(
                &dir.join("vtest_1080p25_4M_gop50_h265.mp4"),
                (1920, 1080),
                25,
                "x265enc bitrate=4000 key-int-max=50 speed-preset=faster",
                "h265parse",
            ),
        ));
    }
    let passes = if quick { 1 } else { 3 };
    println!(
        "clip: vtest 10 s scaled to 1920x1080, 25 fps, 4 Mbit/s, GOP 50; detect_fps 5; best of {passes}"
    );
    for (codec, clip) in &clips {
        for threads in [1, 0] {
            let full = best(passes, || run(clip, 1, threads, false, 5.0));
            let key = best(passes, || run(clip, 1, threads, true, 5.0));
            println!(
                "{codec} threads={threads}: full {:.2} s CPU ({} frames out), keyframes only {:.2} s CPU ({} frames out, {} skipped): {:.0} % of full",
                full.cpu_s,
                full.frames,
                key.cpu_s,
                key.frames,
                key.skipped,
                100.0 * key.cpu_s / full.cpu_s
            );
        }
    }
    let (_, h264) = &clips[0];
    let counts: &[usize] = if quick { &[1, 4] } else { &[1, 4, 12] };
    for &n in counts {
        for threads in [1, 0] {
            let r = best(if n > 4 { 1 } else { passes }, || {
                run(h264, n, threads, false, 5.0)
            });
            let decoded = n as f64 * 250.0;
            println!(
                "{n:>2} cameras threads={threads}: {:.1} s CPU, {:.1} ms CPU per frame, {:.0} frames/s decoded (all cameras, wall {:.1} s)",
                r.cpu_s,
                1000.0 * r.cpu_s / decoded,
                decoded / r.wall_s,
                r.wall_s
            );
        }
    }
}
