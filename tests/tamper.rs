//! Camera tamper alarms end to end: the bundled clips turned bad by
//! GStreamer in the test (frozen, blacked out, blurred, camera moved), each
//! with a good part first (the baseline is learned), the bad part, then good
//! again (it clears); and real traffic with lighting changes that must raise
//! nothing. One real node runs them all as file cameras side by side, to a
//! real mosquitto; every `/alerts` message is checked against its schema.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The generated clips: the bundled vtest clip (10 s at 10 frames per
/// second) scaled to `W` × `H`, frames `BAD` of it turned bad.
const FPS: u32 = 10;
const W: u32 = 384;
const H: u32 = 288;
const FRAMES: usize = 100;
const BAD: std::ops::Range<usize> = 30..70;
/// The bad part starts and ends here (media seconds).
const BAD_FROM: f64 = BAD.start as f64 / FPS as f64;
const BAD_TO: f64 = BAD.end as f64 / FPS as f64;

/// Checks twice a second, a short learning time and short durations, so a
/// 10 s clip holds good, bad and good again.
const TAMPER: &str = r#"[cameras.tamper]
interval_s = 0.5
learn_s = 1.5
raise_after_s = 2.0
frozen_after_s = 2.0
clear_after_s = 1.5
"#;

fn gst(line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let st = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .status()
        .expect("gst-launch-1.0 runs");
    assert!(st.success(), "gst-launch-1.0 {line}");
}

/// Decodes the vtest clip through `effect` (gst-launch elements on the
/// decoded full-size picture) into raw I420 frames at `W` × `H`.
fn raw_frames(out: &Path, effect: &str) -> Vec<u8> {
    gst(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! {effect} ! videoconvert ! videoscale ! \
         video/x-raw,format=I420,width={W},height={H},framerate={FPS}/1,pixel-aspect-ratio=1/1 ! \
         filesink location={}",
        fixture("vtest_10s_h264.mp4").display(),
        out.display()
    ));
    let data = std::fs::read(out).unwrap();
    assert!(
        data.len() >= FRAMES * frame_len(),
        "{}: {} bytes",
        out.display(),
        data.len()
    );
    data
}

fn frame_len() -> usize {
    (W * H * 3 / 2) as usize
}

/// Writes `out`: the vtest clip with frames `BAD` taken from it as turned
/// bad by `bad`, encoded again (H.264 in MP4, timestamps from the frame
/// rate, so the parts join exactly).
fn make_clip(dir: &Path, id: &str, bad: &str) -> PathBuf {
    let n = frame_len();
    let good = raw_frames(&dir.join(format!("{id}-good.raw")), "identity");
    let worse = raw_frames(&dir.join(format!("{id}-bad.raw")), bad);
    let mut all = good[..BAD.start * n].to_vec();
    all.extend_from_slice(&worse[BAD.start * n..BAD.end * n]);
    all.extend_from_slice(&good[BAD.end * n..FRAMES * n]);
    let raw = write_bytes(dir, &format!("{id}.raw"), &all);
    let out = dir.join(format!("{id}.mp4"));
    gst(&format!(
        "filesrc location={} blocksize={n} ! rawvideoparse format=i420 width={W} height={H} framerate={FPS}/1 ! \
         x264enc speed-preset=ultrafast key-int-max=20 ! mp4mux ! filesink location={}",
        raw.display(),
        out.display()
    ));
    for f in [
        format!("{id}-good.raw"),
        format!("{id}-bad.raw"),
        format!("{id}.raw"),
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    out
}

fn write_bytes(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// The bad parts, by camera id: what GStreamer does to the picture.
fn bad_parts() -> Vec<(&'static str, &'static str)> {
    vec![
        // The first frame held (the stream keeps coming, the picture does not change).
        (
            "frozen",
            "identity eos-after=1 ! imagefreeze num-buffers=100",
        ),
        // Blacked out.
        ("black", "videobalance brightness=-1"),
        // Defocused (sigma 12 at the clip's full 768 px width).
        (
            "blurred",
            "videoscale ! video/x-raw,width=384,height=288 ! gaussianblur sigma=6",
        ),
        // Turned and zoomed: a crop scaled back to the full size.
        ("moved", "videocrop left=150 top=20 bottom=90"),
        // Lighting: a brightness step, then a gamma change (no alarm).
        ("lighting", "videobalance brightness=0.15 ! gamma gamma=1.5"),
    ]
}

fn pipeline(port: u16, cameras: &[(String, PathBuf)]) -> String {
    let mut s = PipelineToml::new(port)
        .node("tamper-box", "test-district")
        .build();
    for (id, clip) in cameras {
        s.push_str(&format!(
            "\n[[cameras]]\nid = \"{id}\"\nurl = \"{}\"\ndetect_fps = 4\nrealtime = false\n{TAMPER}",
            clip.display()
        ));
    }
    s
}

/// `(kind, t, duration_s)` of a camera's tamper alerts, in order.
fn alerts(msgs: &[Msg], camera: &str) -> Vec<(String, f64, f64)> {
    msgs.iter()
        .filter(|m| m.topic == format!("t/test-district/tamper-box/{camera}/alerts"))
        .map(|m| {
            let v = m.json();
            assert_eq!(v["schema"], "edge-camera-alert/1", "{v}");
            (
                v["kind"].as_str().unwrap().to_string(),
                v["t"].as_f64().unwrap(),
                v["duration_s"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The `health` lists of a camera's retained status messages, in order, deduplicated.
fn healths(msgs: &[Msg], camera: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for m in msgs
        .iter()
        .filter(|m| m.topic == format!("t/test-district/tamper-box/{camera}/status"))
        .filter(|m| !m.payload.is_empty())
    {
        let h: Vec<String> = m.json()["health"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        if out.last() != Some(&h) {
            out.push(h);
        }
    }
    out
}

#[test]
fn each_bad_picture_raises_its_alarm_and_clears_and_good_footage_raises_none() {
    let dir = tempfile::tempdir().unwrap();
    // Generate the clips side by side (gst-launch is single-threaded enough).
    let mut cameras: Vec<(String, PathBuf)> = std::thread::scope(|s| {
        let jobs: Vec<_> = bad_parts()
            .into_iter()
            .map(|(id, bad)| {
                let dir = dir.path();
                s.spawn(move || (id.to_string(), make_clip(dir, id, bad)))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    // Untouched footage: people walking, and street traffic.
    cameras.push(("vtest".into(), fixture("vtest_10s_h264.mp4")));
    cameras.push(("market".into(), fixture("market_street_10s_h264.mp4")));

    let broker = mosquitto();
    let sub = Subscriber::start(broker.port, "t/#");
    let p = write(dir.path(), "p.toml", &pipeline(broker.port, &cameras));
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let status = node
        .wait(Duration::from_secs(240))
        .expect("edge-node run ends by itself on files");
    let logtext = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status:?}\n{logtext}");
    let msgs = sub.wait_for("node stopped", Duration::from_secs(10), |m| {
        m.iter().any(|x| {
            x.topic == "t/test-district/tamper-box/status" && x.json()["state"] == "stopped"
        })
    });

    // Every message keeps its schema: tamper alerts against theirs, the
    // rest (camera statuses with `health` included) as usual.
    let alert_schema = camera_alert_schema();
    let (tamper, rest): (Vec<Msg>, Vec<Msg>) = msgs
        .iter()
        .cloned()
        .partition(|m| m.topic.ends_with("/alerts") && m.json()["schema"] == "edge-camera-alert/1");
    for m in &tamper {
        let v = m.json();
        let errors: Vec<String> = alert_schema
            .iter_errors(&v)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{} breaks edge-camera-alert/1: {errors:?}\n{v}",
            m.topic
        );
    }
    schemas().validate_all(&rest);

    let mut report = Vec::new();
    for (id, _) in bad_parts() {
        let got = alerts(&msgs, id);
        if id == "lighting" {
            assert!(got.is_empty(), "lighting changes raised {got:?}\n{logtext}");
            continue;
        }
        let kinds: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
        let cleared = format!("{id}_cleared");
        assert_eq!(kinds, [id, cleared.as_str()], "{id}: {got:?}");
        let (raised_t, cleared_t) = (got[0].1, got[1].1);
        assert!(
            raised_t > BAD_FROM && raised_t < BAD_TO,
            "{id} raised at {raised_t}, the bad part is {BAD_FROM}..{BAD_TO}"
        );
        assert!(
            cleared_t > BAD_TO,
            "{id} cleared at {cleared_t}, before the bad part ended"
        );
        // It lasted about as long as the bad part (checks are 0.5 s apart).
        assert!(
            (got[1].2 - (BAD_TO - BAD_FROM)).abs() <= 1.0,
            "{id} lasted {} s",
            got[1].2
        );
        assert_eq!(
            healths(&msgs, id),
            [vec![], vec![id.to_string()], vec![]],
            "{id}: the status's health follows the alarm"
        );
        report.push(format!(
            "{id}: raised {:.1} s after the bad part began, cleared {:.1} s after it ended",
            raised_t - BAD_FROM,
            cleared_t - BAD_TO
        ));
    }
    for id in ["vtest", "market"] {
        let got = alerts(&msgs, id);
        assert!(got.is_empty(), "{id} (untouched footage) raised {got:?}");
        assert_eq!(healths(&msgs, id), [Vec::<String>::new()]);
    }
    eprintln!("{}", report.join("\n"));
}

fn camera_alert_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/schemas/edge-camera-alert-1.schema.json"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&v)
        .unwrap()
}

/// Every invalid `[cameras.tamper]` field is reported at once, by name.
#[test]
fn check_names_every_invalid_tamper_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[cameras]]\nid = \"cam\"\nurl = \"{}\"\n[cameras.tamper]\ninterval_s = 0\nblur_ratio = 2.0\nignore_top = 0.5\nignore_bottom = 0.5\n",
        PipelineToml::new(1883).build(),
        fixture("vtest_10s_h264.mp4").display()
    );
    let p = write(dir.path(), "bad.toml", &text);
    let out = edge_node().arg("check").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    for field in [
        "cameras[0].tamper.interval_s",
        "cameras[0].tamper.blur_ratio",
        "cameras[0].tamper.ignore_bottom",
    ] {
        assert!(err.contains(field), "{field} not named:\n{err}");
    }
    // An unknown key is refused too (deny_unknown_fields).
    let p = write(
        dir.path(),
        "typo.toml",
        &text.replace("interval_s = 0", "intervall_s = 1"),
    );
    let out = edge_node().arg("check").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("intervall_s"), "{err}");
}
