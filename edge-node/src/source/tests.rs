//! Tests on the real fixture clips and a real loopback RTSP server.

use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::*;

const VTEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/vtest_10s_h264.mp4"
);
const MARKET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/market_street_10s_h264.mp4"
);

struct Cam {
    frames: Receiver<Frame>,
    states: Receiver<SourceState>,
    handle: CameraHandle,
}

fn start(opts: SourceOptions) -> Cam {
    let (ftx, frames) = channel();
    let (stx, states) = channel();
    let handle = spawn_camera(
        opts,
        Box::new(move |f| {
            let _ = ftx.send(f);
        }),
        Box::new(move |s| {
            let _ = stx.send(s);
        }),
    )
    .expect("spawn camera");
    Cam {
        frames,
        states,
        handle,
    }
}

fn file_opts(url: &str) -> SourceOptions {
    SourceOptions {
        realtime: false,
        ..SourceOptions::new("cam", url)
    }
}

/// Waits for a state matching `pred`; returns it, or panics with what was seen.
fn wait_state(cam: &Cam, timeout: Duration, pred: impl Fn(&SourceState) -> bool) -> SourceState {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match cam.states.recv_timeout(left) {
            Ok(s) if pred(&s) => return s,
            Ok(s) => seen.push(s),
            Err(_) => panic!("state not reached in {timeout:?}; seen {seen:?}"),
        }
    }
}

/// Collects frames until `n` arrived or `timeout` passed.
fn take_frames(cam: &Cam, n: usize, timeout: Duration) -> Vec<Frame> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match cam.frames.recv_timeout(left) {
            Ok(f) => out.push(f),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    out
}

fn drain(frames: &Receiver<Frame>) -> Vec<Frame> {
    frames.try_iter().collect()
}

fn assert_monotonic(frames: &[Frame]) {
    for w in frames.windows(2) {
        assert!(
            w[1].t > w[0].t,
            "t not increasing: {} then {}",
            w[0].t,
            w[1].t
        );
        assert_eq!(w[1].index, w[0].index + 1);
    }
}

#[test]
fn vtest_fast_sampled_to_5fps() {
    let t0 = Instant::now();
    let cam = start(SourceOptions {
        detect_fps: 5.0,
        ..file_opts(VTEST)
    });
    assert_eq!(
        cam.states.recv_timeout(Duration::from_secs(5)).unwrap(),
        SourceState::Starting
    );
    wait_state(&cam, Duration::from_secs(20), |s| *s == SourceState::Ended);
    let elapsed = t0.elapsed();
    cam.handle.join();
    let frames = drain(&cam.frames);
    eprintln!(
        "vtest 10 s clip, detect_fps 5, realtime=false: {} frames in {:.3} s",
        frames.len(),
        elapsed.as_secs_f64()
    );
    assert!(
        (48..=52).contains(&frames.len()),
        "got {} frames",
        frames.len()
    );
    for f in &frames {
        assert_eq!((f.width, f.height), (768, 576));
        assert_eq!(f.data.len(), 768 * 576 * 3);
        assert_eq!(&*f.camera, "cam");
    }
    assert_eq!(frames[0].index, 0);
    assert!(frames[0].t < 0.05, "first t {}", frames[0].t);
    assert_monotonic(&frames);
    // 5 fps sampling: consecutive frames 0.2 s apart in media time.
    for w in frames.windows(2) {
        let dt = w[1].t - w[0].t;
        assert!((0.15..0.25).contains(&dt), "dt {dt}");
    }
    // Real picture content, not a blank buffer.
    let mean =
        frames[10].data.iter().map(|&b| b as f64).sum::<f64>() / frames[10].data.len() as f64;
    assert!(mean > 20.0 && mean < 235.0, "mean {mean}");
    // Files: wall = start + t.
    let dw = frames[5]
        .wall
        .duration_since(frames[0].wall)
        .unwrap()
        .as_secs_f64();
    assert!((dw - (frames[5].t - frames[0].t)).abs() < 1e-3);
    // Not paced: 10 s of video in well under 10 s.
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn realtime_paces_at_native_rate() {
    let cam = start(SourceOptions {
        realtime: true,
        ..file_opts(VTEST)
    });
    let t0 = Instant::now();
    let frames = take_frames(&cam, 8, Duration::from_secs(10));
    let elapsed = t0.elapsed();
    cam.handle.stop();
    cam.handle.join();
    assert_eq!(frames.len(), 8);
    // 8 frames at 5 fps span 1.4 s of media; unpaced they would take ~0.1 s.
    assert!(
        elapsed >= Duration::from_millis(1100),
        "too fast: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(6), "too slow: {elapsed:?}");
}

#[test]
fn loop_file_keeps_time_increasing() {
    let cam = start(SourceOptions {
        loop_file: true,
        ..file_opts(VTEST)
    });
    let frames = take_frames(&cam, 130, Duration::from_secs(20));
    cam.handle.stop();
    cam.handle.join();
    assert_eq!(frames.len(), 130, "clip has 50 sampled frames per pass");
    assert_monotonic(&frames);
    // Two full loops of a 10 s clip: t passes 20 s.
    assert!(frames[129].t > 20.0, "last t {}", frames[129].t);
    assert!(frames[129].t < 30.0, "last t {}", frames[129].t);
    let states: Vec<_> = cam.states.try_iter().collect();
    assert!(!states.contains(&SourceState::Ended), "{states:?}");
}

#[test]
fn missing_file_fails_naming_path() {
    let path = "/nonexistent/dir/no_such_clip.mp4";
    let cam = start(file_opts(path));
    let state = wait_state(&cam, Duration::from_secs(5), |s| {
        !matches!(s, SourceState::Starting)
    });
    match state {
        SourceState::Failed { error, .. } => {
            assert!(error.contains(path), "{error}");
            assert!(error.contains("not found"), "{error}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    cam.handle.join();
}

#[test]
fn text_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "this is not a video\n".repeat(200)).unwrap();
    let cam = start(file_opts(path.to_str().unwrap()));
    let state = wait_state(&cam, Duration::from_secs(10), |s| {
        !matches!(s, SourceState::Starting)
    });
    match state {
        SourceState::Failed { error, .. } => {
            assert!(error.contains("notes.txt"), "{error}");
            eprintln!("text file error: {error}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    cam.handle.join();
    assert!(drain(&cam.frames).is_empty());
}

/// A file cut short (index at the front, so the prefix plays): GStreamer
/// ends it with a plain EOS. It must fail naming the truncation, after
/// handing on the frames it had, instead of looking like a clip that ended.
#[test]
fn truncated_file_fails_after_its_frames() {
    init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("fast.mp4");
    run_to_eos(
        &format!(
            "filesrc location={VTEST} ! qtdemux ! h264parse ! mp4mux faststart=true ! filesink location={}",
            fast.display()
        ),
        30,
    );
    let bytes = std::fs::read(&fast).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 4 / 10]).unwrap();

    let cam = start(file_opts(cut.to_str().unwrap()));
    let state = wait_state(&cam, Duration::from_secs(30), |s| {
        matches!(s, SourceState::Failed { .. } | SourceState::Ended)
    });
    match state {
        SourceState::Failed { error, .. } => {
            assert!(error.contains("truncated"), "{error}");
            assert!(error.contains("cut.mp4"), "{error}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    cam.handle.join();
    let frames = drain(&cam.frames);
    assert!(frames.len() >= 10, "{} frames before the cut", frames.len());
    // The whole clip still ends normally.
    let whole = start(file_opts(fast.to_str().unwrap()));
    let state = wait_state(&whole, Duration::from_secs(30), |s| {
        matches!(s, SourceState::Failed { .. } | SourceState::Ended)
    });
    assert_eq!(state, SourceState::Ended);
    whole.handle.join();
}

#[test]
fn market_street_b_frames_decode_fully() {
    let cam = start(SourceOptions {
        detect_fps: 0.0,
        ..file_opts(MARKET)
    });
    wait_state(&cam, Duration::from_secs(30), |s| *s == SourceState::Ended);
    cam.handle.join();
    let frames = drain(&cam.frames);
    assert!((295..=305).contains(&frames.len()), "got {}", frames.len());
    assert!(frames.iter().all(|f| (f.width, f.height) == (540, 360)));
    assert_monotonic(&frames);
}

#[test]
fn downscale_keeps_aspect_and_packs_rows() {
    let a = start(SourceOptions {
        max_height: 288,
        ..file_opts(VTEST)
    });
    // 133 px wide: RGB rows are padded to 400 bytes in GStreamer, 399 packed.
    let b = start(SourceOptions {
        max_height: 100,
        ..file_opts(VTEST)
    });
    let fa = take_frames(&a, 3, Duration::from_secs(10));
    let fb = take_frames(&b, 3, Duration::from_secs(10));
    a.handle.stop();
    b.handle.stop();
    a.handle.join();
    b.handle.join();
    assert_eq!(fa.len(), 3);
    assert_eq!((fa[0].width, fa[0].height), (384, 288));
    assert_eq!(fa[0].data.len(), 384 * 288 * 3);
    assert_eq!(fb.len(), 3);
    assert_eq!((fb[0].width, fb[0].height), (133, 100));
    assert_eq!(fb[0].data.len(), 133 * 100 * 3);
    // A packed copy keeps the picture aligned: the same pixel of both
    // downscales is similar (a stride bug shears rows and breaks this).
    let px = |f: &Frame, x: u32, y: u32| {
        let i = ((y * f.width + x) * 3) as usize;
        f.data[i..i + 3].iter().map(|&v| v as i32).sum::<i32>()
    };
    let mut diff = 0i64;
    for (x, y) in [(10u32, 90u32), (120, 90), (60, 50), (120, 10)] {
        let xa = x * 384 / 133;
        let ya = y * 288 / 100;
        diff += (px(&fa[0], xa, ya) - px(&fb[0], x, y)).abs() as i64;
    }
    assert!(diff < 4 * 3 * 60, "pixels differ too much: {diff}");
}

#[test]
fn unreachable_rtsp_keeps_reconnecting() {
    let cam = start(SourceOptions {
        backoff_initial_s: 0.2,
        backoff_max_s: 0.4,
        ..SourceOptions::new("cam", "rtsp://127.0.0.1:1/nothing")
    });
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while errors.len() < 3 && Instant::now() < deadline {
        match cam.states.recv_timeout(Duration::from_millis(200)) {
            Ok(SourceState::Reconnecting {
                error, retry_in_s, ..
            }) => errors.push((error, retry_in_s)),
            Ok(SourceState::Failed { error, .. }) => panic!("live source failed: {error}"),
            _ => {}
        }
    }
    let t0 = Instant::now();
    cam.handle.stop();
    cam.handle.join();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t0.elapsed()
    );
    eprintln!("unreachable rtsp: {errors:?}");
    assert!(errors.len() >= 3, "{errors:?}");
    assert!(errors.iter().all(|(e, _)| !e.is_empty()));
    // Backoff doubles, capped.
    assert!((errors[0].1 - 0.2).abs() < 1e-9);
    assert!((errors[1].1 - 0.4).abs() < 1e-9);
    assert!((errors[2].1 - 0.4).abs() < 1e-9);
}

#[test]
fn watchdog_reconnects_a_silent_live_source() {
    // An HTTP "camera" that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let cam = start(SourceOptions {
        watchdog_s: 1.0,
        backoff_initial_s: 0.2,
        ..SourceOptions::new("cam", format!("http://127.0.0.1:{port}/stream.mjpeg"))
    });
    let t0 = Instant::now();
    let state = wait_state(&cam, Duration::from_secs(6), |s| {
        matches!(
            s,
            SourceState::Reconnecting { .. } | SourceState::Failed { .. }
        )
    });
    let waited = t0.elapsed();
    cam.handle.stop();
    cam.handle.join();
    match state {
        SourceState::Reconnecting { error, .. } => assert!(error.contains("watchdog"), "{error}"),
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[test]
fn rtsp_stream_survives_server_restart() {
    let server = RtspServer::start(Path::new(VTEST), 0, "/test").unwrap();
    let url = server.url().to_string();
    let port: u16 = url
        .trim_start_matches("rtsp://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let cam = start(SourceOptions {
        watchdog_s: 3.0,
        backoff_initial_s: 0.5,
        backoff_max_s: 1.0,
        ..SourceOptions::new("rtsp-cam", url)
    });
    wait_state(&cam, Duration::from_secs(10), |s| {
        matches!(s, SourceState::Streaming { .. })
    });
    let frames = take_frames(&cam, 5, Duration::from_secs(5));
    assert_eq!(frames.len(), 5);
    assert_eq!((frames[0].width, frames[0].height), (768, 576));
    assert_monotonic(&frames);

    server.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open after stop"
    );
    let state = wait_state(&cam, Duration::from_secs(8), |s| {
        matches!(s, SourceState::Reconnecting { .. })
    });
    eprintln!("after server stop: {state:?}");
    let last_t = drain(&cam.frames).last().map_or(frames[4].t, |f| f.t);

    let server = RtspServer::start(Path::new(VTEST), port, "/test").unwrap();
    wait_state(&cam, Duration::from_secs(10), |s| {
        matches!(s, SourceState::Streaming { .. })
    });
    let again = take_frames(&cam, 5, Duration::from_secs(5));
    assert_eq!(again.len(), 5);
    assert!(again[0].t > last_t, "time went back across reconnect");
    cam.handle.stop();
    cam.handle.join();
    server.stop();
}

#[test]
fn rtsp_server_loops_the_clip() {
    // The 10 s clip keeps playing past its end as one stream (no EOS, no
    // reconnect). Over TCP interleaved, to cover `rtsp_tcp` too.
    let server = RtspServer::start(Path::new(VTEST), 0, "looped").unwrap();
    assert!(server.url().ends_with("/looped"));
    let cam = start(SourceOptions {
        detect_fps: 2.0,
        rtsp_tcp: true,
        ..SourceOptions::new("tcp-cam", server.url())
    });
    wait_state(&cam, Duration::from_secs(10), |s| {
        matches!(s, SourceState::Streaming { .. })
    });
    let first = take_frames(&cam, 1, Duration::from_secs(5));
    assert_eq!(first.len(), 1);
    let mut last_t = first[0].t;
    let mut n = 1;
    while last_t - first[0].t < 12.0 {
        let f = take_frames(&cam, 1, Duration::from_secs(3));
        assert_eq!(
            f.len(),
            1,
            "stream stalled after {:.1} s",
            last_t - first[0].t
        );
        last_t = f[0].t;
        n += 1;
    }
    cam.handle.stop();
    cam.handle.join();
    server.stop();
    let states: Vec<_> = cam.states.try_iter().collect();
    assert!(
        !states
            .iter()
            .any(|s| matches!(s, SourceState::Reconnecting { .. })),
        "{states:?}"
    );
    // About 2 fps over 12 s.
    assert!((20..=30).contains(&n), "{n} frames");
}

#[test]
fn rtsp_server_rejects_missing_file_and_busy_port() {
    assert!(RtspServer::start(Path::new("/no/such.mp4"), 0, "/x").is_err());
    let server = RtspServer::start(Path::new(VTEST), 0, "/x").unwrap();
    let port: u16 = server.url()[17..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(RtspServer::start(Path::new(VTEST), port, "/x").is_err());
    server.stop();
}

#[test]
fn stop_is_prompt_for_a_paced_file() {
    let cam = start(SourceOptions {
        realtime: true,
        ..file_opts(VTEST)
    });
    wait_state(&cam, Duration::from_secs(5), |s| {
        matches!(s, SourceState::Streaming { .. })
    });
    let t0 = Instant::now();
    cam.handle.stop();
    cam.handle.join();
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[test]
fn spawn_rejects_bad_url() {
    let r = spawn_camera(
        SourceOptions::new("cam", "ftp://x/y"),
        Box::new(|_| {}),
        Box::new(|_| {}),
    );
    assert!(matches!(r, Err(SourceError::InvalidUrl { .. })));
}

#[test]
fn fractional_and_non_integer_rates() {
    // 10 fps clip at 2.5 fps: every 4th frame; 29.97 fps clip at 5 fps: ~every 6th.
    let a = start(SourceOptions {
        detect_fps: 2.5,
        ..file_opts(VTEST)
    });
    let b = start(SourceOptions {
        detect_fps: 5.0,
        ..file_opts(MARKET)
    });
    wait_state(&a, Duration::from_secs(20), |s| *s == SourceState::Ended);
    wait_state(&b, Duration::from_secs(20), |s| *s == SourceState::Ended);
    a.handle.join();
    b.handle.join();
    let fa = drain(&a.frames);
    let fb = drain(&b.frames);
    assert_eq!(fa.len(), 25);
    for w in fa.windows(2) {
        assert!((w[1].t - w[0].t - 0.4).abs() < 0.01);
    }
    // 302 frames = 10.08 s.
    assert!((50..=52).contains(&fb.len()), "{}", fb.len());
    for w in fb.windows(2) {
        let dt = w[1].t - w[0].t;
        assert!((0.19..0.24).contains(&dt), "dt {dt}");
    }
}

/// Runs a `gst-launch`-style pipeline to its end (test media making);
/// fails the test on an error or after `timeout_s`.
pub(super) fn run_to_eos(desc: &str, timeout_s: u64) {
    init().unwrap();
    let p = gst::parse::launch(desc).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(timeout_s),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap_or_else(|| panic!("{desc}: no end within {timeout_s} s"));
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
}

/// Writes a `width`×`height` PNG (a GStreamer test pattern) to `path`.
fn write_png(path: &Path, width: u32, height: u32) {
    let desc = format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width={width},height={height} \
         ! pngenc compression-level=1 ! filesink location={}",
        path.display()
    );
    run_to_eos(&desc, 60);
}

/// Extremes: a 16K picture (15360×8640) comes out at `max_height` (1280×720),
/// and a 16000×500 panorama, which no height cap touches, is capped at
/// `MAX_FRAME_WIDTH` (7680×240), so a frame buffer is bounded whatever the
/// camera sends. A still image's caps say `framerate=0/1` (a zero-fps
/// stream): its one frame is still delivered and the camera ends cleanly.
#[test]
fn huge_and_zero_fps_frames_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    for ((w, h), want) in [((15360, 8640), (1280, 720)), ((16000, 500), (7680, 240))] {
        let path = dir.path().join(format!("{w}x{h}.png"));
        write_png(&path, w, h);
        let cam = start(SourceOptions {
            max_height: 720,
            ..file_opts(path.to_str().unwrap())
        });
        wait_state(&cam, Duration::from_secs(60), |s| *s == SourceState::Ended);
        cam.handle.join();
        let frames = drain(&cam.frames);
        assert_eq!(frames.len(), 1, "{w}x{h}");
        assert_eq!((frames[0].width, frames[0].height), want, "{w}x{h}");
        assert_eq!(frames[0].data.len(), (want.0 * want.1 * 3) as usize);
    }
}
