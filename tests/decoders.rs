//! Decoders: H.265 cameras (a file, and over the loopback RTSP server),
//! the decoder choice (`software`, `auto`, and hardware families refused
//! where their elements are missing, as on the CI machine), and
//! keyframe-only decoding (only keyframes reach the frame callback while
//! the gate is set; clearing it restores every frame from the next
//! keyframe). The clips are made from the bundled vtest clip by GStreamer
//! in the test (x264enc / x265enc, one keyframe every `GOP` frames).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_node::config::Pipeline;
use edge_node::frame::Frame;
use edge_node::source::{
    self, CameraHandle, DecoderChoice, KeyframeGate, RtspServer, SourceError, SourceOptions,
    SourceState, StreamInfo,
};

/// The generated clips: 100 frames at 10 fps, 384×288, a keyframe every `GOP`.
const FRAMES: usize = 100;
const GOP: usize = 10;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Re-encodes the vtest clip with `encoder` (`x264enc …` or `x265enc …`)
/// and `parser` into an MP4 in `dir`.
fn clip(dir: &Path, name: &str, encoder: &str, parser: &str) -> PathBuf {
    let out = dir.join(name);
    let line = format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! videoscale ! \
         video/x-raw,width=384,height=288,format=I420 ! {encoder} ! {parser} ! mp4mux ! \
         filesink location={}",
        fixture("vtest_10s_h264.mp4").display(),
        out.display()
    );
    let args: Vec<&str> = line.split_whitespace().collect();
    let st = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .status()
        .expect("gst-launch-1.0 runs");
    assert!(st.success(), "gst-launch-1.0 {line}");
    out
}

fn h264(dir: &Path) -> PathBuf {
    clip(
        dir,
        "gop10_h264.mp4",
        &format!("x264enc key-int-max={GOP} bframes=0 speed-preset=ultrafast bitrate=800"),
        "h264parse",
    )
}

fn h265(dir: &Path) -> PathBuf {
    clip(
        dir,
        "gop10_h265.mp4",
        &format!(
            "x265enc key-int-max={GOP} speed-preset=ultrafast bitrate=800 option-string=bframes=0:scenecut=0:open-gop=0:min-keyint={GOP}"
        ),
        "h265parse",
    )
}

struct Cam {
    frames: Receiver<Frame>,
    states: Receiver<SourceState>,
    _handle: CameraHandle,
}

fn start(opts: SourceOptions) -> Cam {
    let (ftx, frames) = channel();
    let ftx = Mutex::new(ftx);
    start_with(opts, move |f| {
        if let Ok(tx) = ftx.lock() {
            let _ = tx.send(f);
        }
    })
    .unwrap_or_else(|(e, _)| panic!("spawn camera: {e}"))
    .with_frames(frames)
}

struct Started {
    states: Receiver<SourceState>,
    handle: CameraHandle,
}

impl Started {
    fn with_frames(self, frames: Receiver<Frame>) -> Cam {
        Cam {
            frames,
            states: self.states,
            _handle: self.handle,
        }
    }
}

fn start_with(
    opts: SourceOptions,
    on_frame: impl Fn(Frame) + Send + Sync + 'static,
) -> Result<Started, (SourceError, ())> {
    let (stx, states) = channel();
    let stx = Mutex::new(stx);
    source::spawn_camera(
        opts,
        Box::new(on_frame),
        Box::new(move |s| {
            if let Ok(tx) = stx.lock() {
                let _ = tx.send(s);
            }
        }),
    )
    .map(|handle| Started { states, handle })
    .map_err(|e| (e, ()))
}

fn file_opts(path: &Path) -> SourceOptions {
    SourceOptions {
        realtime: false,
        detect_fps: 0.0,
        ..SourceOptions::new("cam", path.display().to_string())
    }
}

/// The stream description of the first `Streaming` state; panics on
/// `Failed` or after `timeout`.
fn streaming(cam: &Cam, timeout: Duration) -> StreamInfo {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match cam.states.recv_timeout(left) {
            Ok(SourceState::Streaming { info }) => return info,
            Ok(SourceState::Failed { error, detail }) => panic!("failed: {error} ({detail:?})"),
            Ok(_) => {}
            Err(e) => panic!("no Streaming state in {timeout:?}: {e}"),
        }
    }
}

/// Frames until the camera ends (a file) or `timeout`.
fn all_frames(cam: &Cam, timeout: Duration) -> Vec<Frame> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match cam
            .frames
            .recv_timeout(left.min(Duration::from_millis(200)))
        {
            Ok(f) => out.push(f),
            Err(_) if Instant::now() >= deadline => return out,
            Err(_) => {
                if cam
                    .states
                    .try_iter()
                    .any(|s| matches!(s, SourceState::Ended | SourceState::Failed { .. }))
                {
                    out.extend(cam.frames.try_iter());
                    return out;
                }
            }
        }
    }
}

/// Frame index (10 fps) of a frame's media time.
fn index(f: &Frame) -> usize {
    (f.t * 10.0).round() as usize
}

#[test]
fn h265_file_decodes_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = h265(dir.path());
    let cam = start(file_opts(&path));
    let info = streaming(&cam, Duration::from_secs(20));
    assert_eq!(info.codec.as_deref(), Some("h265"), "{info:?}");
    assert_eq!(info.decoder.as_deref(), Some("avdec_h265"), "{info:?}");
    let frames = all_frames(&cam, Duration::from_secs(30));
    assert_eq!(frames.len(), FRAMES);
    assert_eq!((frames[0].width, frames[0].height), (384, 288));
}

#[test]
fn h265_over_the_loopback_rtsp_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = h265(dir.path());
    let server = RtspServer::start(&path, 0, "/h265").expect("RTSP server serves H.265");
    let opts = SourceOptions {
        detect_fps: 0.0,
        rtsp_tcp: true,
        ..SourceOptions::new("cam", server.url())
    };
    let cam = start(opts);
    let info = streaming(&cam, Duration::from_secs(20));
    assert_eq!(info.codec.as_deref(), Some("h265"), "{info:?}");
    assert_eq!(info.decoder.as_deref(), Some("avdec_h265"), "{info:?}");
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n < 15 && Instant::now() < deadline {
        if cam.frames.recv_timeout(Duration::from_millis(500)).is_ok() {
            n += 1;
        }
    }
    assert!(n >= 15, "{n} frames over RTSP");
}

#[test]
fn software_and_auto_decode_in_software_here() {
    let dir = tempfile::tempdir().unwrap();
    let path = h264(dir.path());
    // `auto` falls back to software where there is no hardware decoder
    // (the CI machine); elsewhere only `software` is pinned.
    let mut choices = vec![DecoderChoice::Software];
    if source::hardware_decoders().is_empty() {
        choices.push(DecoderChoice::Auto);
    }
    for choice in choices {
        let cam = start(SourceOptions {
            decoder: choice,
            decoder_threads: 0,
            ..file_opts(&path)
        });
        let info = streaming(&cam, Duration::from_secs(20));
        assert_eq!(info.decoder.as_deref(), Some("avdec_h264"), "{choice}");
        assert_eq!(
            all_frames(&cam, Duration::from_secs(30)).len(),
            FRAMES,
            "{choice}"
        );
    }
}

#[test]
fn hardware_families_without_elements_are_refused_by_name() {
    let path = fixture("vtest_10s_h264.mp4");
    for (choice, element, package) in [
        (
            DecoderChoice::Vaapi,
            "vah264dec",
            "gstreamer1.0-plugins-bad",
        ),
        (DecoderChoice::Nvdec, "nvh264dec", "nvcodec"),
        (
            DecoderChoice::V4l2,
            "v4l2h264dec",
            "gstreamer1.0-plugins-good",
        ),
    ] {
        if source::check_decoder(choice).is_ok() {
            continue; // installed on this machine
        }
        let opts = SourceOptions {
            decoder: choice,
            ..file_opts(&path)
        };
        let Err((e, ())) = start_with(opts, |_| {}) else {
            panic!("decoder = {choice} started on a machine without it");
        };
        let text = e.to_string();
        assert!(matches!(e, SourceError::NoDecoder { .. }), "{text}");
        for needle in [&format!("decoder = \"{choice}\""), element, package] {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }
}

#[test]
fn the_config_takes_decoder_and_idle_settings_and_refuses_bad_ones() {
    let head = "[node]\nid = \"n\"\ndistrict = \"d\"\ndecoder = \"software\"\n\
                [mqtt]\nurl = \"embedded\"\ntopic_prefix = \"t\"\n";
    let ok = format!(
        "{head}[[cameras]]\nid = \"a\"\nurl = \"rtsp://cam/a\"\n\
         [[cameras]]\nid = \"b\"\nurl = \"rtsp://cam/b\"\ndecoder = \"auto\"\ndecoder_threads = 0\n\
         idle_decode = \"full\"\n\
         [[cameras]]\nid = \"c\"\nurl = \"{}\"\n\
         [[cameras]]\nid = \"d\"\nurl = \"{}\"\nidle_decode = \"keyframes\"\nidle_after_s = 30\n",
        fixture("vtest_10s_h264.mp4").display(),
        fixture("vtest_10s_h264.mp4").display(),
    );
    let p = Pipeline::from_str(Path::new("t.toml"), &ok).expect("valid");
    let plans = p.plans();
    let got: Vec<(DecoderChoice, u32, Option<f64>, bool)> = plans
        .iter()
        .map(|c| {
            (
                c.source.decoder,
                c.source.decoder_threads,
                c.idle.map(|i| i.after_s),
                c.source.keyframe_gate.is_some(),
            )
        })
        .collect();
    let default_threads = SourceOptions::default().decoder_threads;
    assert_eq!(
        got,
        [
            // Live camera: keyframes while idle by default.
            (DecoderChoice::Software, default_threads, Some(10.0), true),
            (DecoderChoice::Auto, 0, None, false),
            // A file: full-rate by default.
            (DecoderChoice::Software, default_threads, None, false),
            (DecoderChoice::Software, default_threads, Some(30.0), true),
        ]
    );
    let bad = format!(
        "{}[[cameras]]\nid = \"a\"\nurl = \"rtsp://cam/a\"\ndecoder = \"cuda\"\n\
         idle_decode = \"sometimes\"\nidle_after_s = 0\n",
        head.replace("\"software\"", "\"gpu\"")
    );
    let e = Pipeline::from_str(Path::new("t.toml"), &bad).expect_err("invalid");
    let fields: Vec<String> = e.field_errors().into_iter().map(|f| f.field).collect();
    for f in [
        "node.decoder",
        "cameras[0].decoder",
        "cameras[0].idle_decode",
        "cameras[0].idle_after_s",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    assert!(
        e.to_string().contains("auto, software, vaapi, nvdec, v4l2"),
        "{e}"
    );
}

/// Frames through a camera whose gate is set from the start; the frame
/// callback clears it at the frame with index `clear_at` (`None`: never).
fn gated_run(path: &Path, clear_at: Option<usize>) -> (Vec<usize>, u64) {
    let gate = KeyframeGate::default();
    gate.set_keyframes_only(true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (g, s) = (gate.clone(), Arc::clone(&seen));
    let opts = SourceOptions {
        keyframe_gate: Some(gate.clone()),
        decoder_threads: 1,
        ..file_opts(path)
    };
    let started = start_with(opts, move |f| {
        let i = index(&f);
        if let Ok(mut v) = s.lock() {
            v.push(i);
        }
        if clear_at == Some(i) {
            g.set_keyframes_only(false);
        }
    })
    .unwrap_or_else(|(e, _)| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match started.states.recv_timeout(Duration::from_millis(200)) {
            Ok(SourceState::Ended) => break,
            Ok(SourceState::Failed { error, .. }) => panic!("{error}"),
            _ if Instant::now() > deadline => panic!("the file did not end"),
            _ => {}
        }
    }
    let v = seen.lock().unwrap().clone();
    (v, gate.skipped())
}

#[test]
fn keyframes_only_while_gated_and_full_rate_from_the_next_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    for path in [h264(dir.path()), h265(dir.path())] {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Gated all along: one frame per GOP, the keyframes.
        let (frames, skipped) = gated_run(&path, None);
        let keys: Vec<usize> = (0..FRAMES).step_by(GOP).collect();
        assert_eq!(frames, keys, "{name}");
        assert_eq!(skipped as usize, FRAMES - keys.len(), "{name}");
        // Cleared at the keyframe of frame 30: full rate from the next
        // keyframe on (the deltas after frame 30 were dropped before the
        // decoder saw the gate open, or reference a picture it never had).
        let (frames, _) = gated_run(&path, Some(30));
        let resumed = frames
            .windows(2)
            .position(|w| w[1] == w[0] + 1)
            .map(|p| frames[p])
            .unwrap_or_else(|| panic!("{name}: never back to full rate: {frames:?}"));
        assert!(
            resumed == 30 || resumed == 40,
            "{name}: resumed at {resumed}: {frames:?}"
        );
        let expected: Vec<usize> = (0..=resumed)
            .step_by(GOP)
            .chain(resumed + 1..FRAMES)
            .collect();
        assert_eq!(frames, expected, "{name}");
    }
}

/// `edge-node check` refuses what the camera would: a hardware family
/// without its elements, on the field that chose it.
#[test]
fn check_refuses_a_missing_hardware_decoder_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nid = \"n\"\ndistrict = \"d\"\nstate_dir = \"{}\"\ndecoder = \"nvdec\"\n\
             [mqtt]\nurl = \"embedded\"\ntopic_prefix = \"t\"\n\
             [[cameras]]\nid = \"a\"\nurl = \"{}\"\n\
             [[cameras]]\nid = \"b\"\nurl = \"{}\"\ndecoder = \"software\"\n\
             [[cameras]]\nid = \"c\"\nurl = \"{}\"\ndecoder = \"vaapi\"\n",
            dir.path().join("state").display(),
            fixture("vtest_10s_h264.mp4").display(),
            fixture("vtest_10s_h264.mp4").display(),
            fixture("vtest_10s_h264.mp4").display(),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("edge-node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    for needle in [
        "node.decoder",
        "nvh264dec",
        "cameras[2].decoder",
        "vah264dec",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert!(!text.contains("cameras[1].decoder"), "{text}");
}
