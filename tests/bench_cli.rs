//! `edge-node bench`: smoke runs of the real binary. Checks the JSON contract
//! (shape and keys) and the SVG chart, never speed.

mod common;

use std::process::Stdio;

use serde_json::Value;

fn run_ok(args: &[&str]) -> String {
    let out = common::edge_node()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edge-node");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "edge-node {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("JSON report written");
    serde_json::from_str(&text).expect("report is JSON")
}

fn assert_percentiles(v: &Value, what: &str) {
    for k in ["p50", "p90", "p99"] {
        let x = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}.{k} is not a number: {v}"));
        assert!(x >= 0.0 && x.is_finite(), "{what}.{k} = {x}");
    }
    assert!(v["p50"].as_f64() <= v["p90"].as_f64() && v["p90"].as_f64() <= v["p99"].as_f64());
}

/// `--input-size 416,320` on the bundled model: its spatial dims are
/// dynamic (it runs at 320 too) or, in older checkouts, fixed (320 is
/// skipped, with a `SKIPPED` line).
fn assert_sizes_416_320(v: &Value, stdout: &str) {
    let dynamic = v["dynamic_input"].as_bool().expect("dynamic_input");
    assert_eq!(
        stdout.contains("SKIPPED"),
        !dynamic,
        "a skip line only for a fixed-size model, which cannot run at 320:\n{stdout}"
    );
    let results = v["results"].as_array().expect("results array");
    let sizes: Vec<(u64, Value)> = results
        .iter()
        .map(|r| (r["input_size"].as_u64().unwrap(), r["input_wh"].clone()))
        .collect();
    let skipped = v["skipped"].as_array().expect("skipped array");
    if dynamic {
        let want = [
            (416, serde_json::json!([416, 416])),
            (320, serde_json::json!([320, 320])),
        ];
        assert_eq!(sizes, want, "{v}");
        assert_eq!(results[1]["budget"], "320x320", "{v}");
        assert!(skipped.is_empty(), "{v}");
    } else {
        let want = [(416, serde_json::json!([416, 416]))];
        assert_eq!(sizes, want, "only 416 runs on a fixed 416 model: {v}");
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0]["input_size"], 320);
        assert_eq!(skipped[0]["budget"], "320x320");
    }
}

#[test]
fn bench_model_json_table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("model.json");
    let svg = dir.path().join("model.svg");
    let stdout = run_ok(&[
        "bench",
        "model",
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--max-frames",
        "4",
        "--input-size",
        "416,320",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("infer ms"),
        "table header missing:\n{stdout}"
    );
    let v = read_json(&json);
    assert_sizes_416_320(&v, &stdout);
    for k in ["model", "model_sha256", "cpu", "ort_version"] {
        assert!(v[k].is_string(), "top-level {k} missing: {v}");
    }
    let sha = v["model_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert!(sha.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(v["ort_version"], "1.32.0");
    assert_eq!(v["frames"], 4);
    let results = v["results"].as_array().expect("results array");
    let r = &results[0];
    assert_eq!(r["threads"], 1);
    assert_eq!(r["input_size"], 416);
    assert_eq!(
        r["budget"], "model",
        "the declared size is the `model` budget: {r}"
    );
    assert_eq!(r["tiles"], false);
    assert_eq!(r["frames_counted"], 4);
    assert!(r["detections"].is_object(), "{r}");
    assert_eq!(r["iterations"], 5);
    assert_eq!(v["spinning"], false, "off unless asked, as in the node");
    for k in ["pre_ms", "infer_ms", "post_ms", "total_ms"] {
        assert_percentiles(&r[k], k);
    }
    for k in ["fps", "sequential_fps", "pipelined_fps", "ceiling_fps"] {
        assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {r}");
    }
    // fps is the loop a node worker with these threads would run.
    let mode = if r["prep_thread"].as_bool().expect("prep_thread") {
        "pipelined_fps"
    } else {
        "sequential_fps"
    };
    assert_eq!(r["fps"], r[mode], "{r}");
    let prep_mode = r["prep_mode"].as_str().expect("prep_mode");
    assert!(
        ["inline", "companion", "background"].contains(&prep_mode),
        "{r}"
    );
    assert_eq!(
        prep_mode != "inline",
        r["prep_thread"].as_bool().unwrap(),
        "{r}"
    );
    assert!(r["overhead_pct"].as_f64().is_some(), "overhead_pct: {r}");

    let chart = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(chart.trim_start().starts_with("<svg"), "not an SVG");
    assert!(chart.contains("<polyline") || chart.contains("<path"));
    assert!(
        chart.contains("1t 416x416"),
        "configuration label on the x axis"
    );
}

/// `bench model` on the bundled model and clip (768x576) with few
/// iterations: `args` added; the JSON report and the table.
fn bench_model_clip(args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("model.json");
    let model = common::repo().join("models/nanodet_g_coco_416.onnx");
    let clip = common::fixture("vtest_10s_h264.mp4");
    let mut all = vec![
        "bench",
        "model",
        "--model",
        model.to_str().unwrap(),
        "--input",
        clip.to_str().unwrap(),
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--max-frames",
        "5",
        "--json",
        json.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let stdout = run_ok(&all);
    (read_json(&json), stdout)
}

/// `detections` of a result row: class name → count.
fn detections(r: &Value) -> &serde_json::Map<String, Value> {
    r["detections"]
        .as_object()
        .unwrap_or_else(|| panic!("detections is not an object: {r}"))
}

#[test]
fn bench_model_input_pixels_rows() {
    let (v, stdout) = bench_model_clip(&["--input-pixels", "model,standard"]);
    assert_eq!(v["frame_wh"], serde_json::json!([768, 576]), "{v}");
    let dynamic = v["dynamic_input"].as_bool().expect("dynamic_input");
    let results = v["results"].as_array().expect("results array");
    let skipped = v["skipped"].as_array().expect("skipped array");
    let row = |budget: &str| {
        results
            .iter()
            .find(|r| r["budget"] == budget)
            .unwrap_or_else(|| panic!("no {budget} row: {v}"))
    };
    let model = row("model");
    assert_eq!(model["input_wh"], serde_json::json!([416, 416]), "{model}");
    if dynamic {
        // 768x576 at 416x416's pixels, at the frame's aspect ratio.
        assert_eq!(results.len(), 2, "{v}");
        let standard = row("standard");
        assert_eq!(
            standard["input_wh"],
            serde_json::json!([480, 352]),
            "{standard}"
        );
        assert_eq!(standard["input_whs"], serde_json::json!([[480, 352]]));
        assert!(skipped.is_empty(), "{v}");
        assert!(
            stdout.contains("standard 480x352: "),
            "summary line:\n{stdout}"
        );
    } else {
        // A fixed-size model runs `standard` exactly as `model`: skipped, with the reason.
        assert_eq!(results.len(), 1, "{v}");
        assert_eq!(skipped.len(), 1, "{v}");
        assert_eq!(skipped[0]["budget"], "standard");
        assert!(
            skipped[0]["reason"].as_str().unwrap().contains("fixed"),
            "{v}"
        );
    }
    for r in results {
        assert_eq!(r["tiles"], false, "{r}");
        assert_eq!(r["tiles_per_frame"], 0.0, "{r}");
        assert_eq!(r["input_size"], 416, "the model's width for a budget: {r}");
        assert_eq!(r["frames_counted"], 5, "{r}");
        let people = detections(r).get("person").and_then(Value::as_u64);
        assert!(people.is_some_and(|n| n > 0), "vtest has people: {r}");
        assert!(
            detections(r)
                .values()
                .all(|n| n.as_u64().is_some_and(|n| n > 0))
        );
    }
    assert!(
        stdout.contains("model 416x416: person "),
        "summary line:\n{stdout}"
    );
    assert!(stdout.contains("(5 frames)"), "{stdout}");
    assert_eq!(v["threshold"], 0.35, "DetectorOptions' default: {v}");
}

#[test]
fn bench_model_tiles_rows() {
    let (v, stdout) = bench_model_clip(&["--input-pixels", "standard", "--tiles"]);
    let results = v["results"].as_array().expect("results array");
    let tiled: Vec<bool> = results
        .iter()
        .map(|r| r["tiles"].as_bool().unwrap())
        .collect();
    assert_eq!(tiled, [false, true], "an untiled then a tiled row: {v}");
    let (plain, tiles) = (&results[0], &results[1]);
    assert_eq!(plain["budget"], "standard");
    assert_eq!(tiles["budget"], "standard");
    assert_eq!(
        plain["input_wh"], tiles["input_wh"],
        "the full-frame pass is the same"
    );
    // 768x576 in 416x416 tiles, 20 % overlap: 3 columns x 2 rows.
    assert_eq!(tiles["tiles_per_frame"], 6.0, "{tiles}");
    assert_eq!(plain["tiles_per_frame"], 0.0, "{plain}");
    for r in results {
        for k in ["pre_ms", "infer_ms", "post_ms", "total_ms", "ceiling_ms"] {
            assert_percentiles(&r[k], k);
        }
        for k in ["fps", "sequential_fps", "pipelined_fps", "ceiling_fps"] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {r}");
        }
        assert_eq!(r["frames_counted"], 5, "{r}");
        let people = detections(r).get("person").and_then(Value::as_u64);
        assert!(people.is_some_and(|n| n > 0), "vtest has people: {r}");
    }
    assert!(
        stdout.contains("standard+tiles "),
        "summary line:\n{stdout}"
    );
    assert!(
        stdout.contains(" (6 tiles): person "),
        "summary line:\n{stdout}"
    );
}

#[test]
fn bench_model_on_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("img.json");
    let img = common::fixture("dog.jpg");
    run_ok(&[
        "bench",
        "model",
        "--input",
        img.to_str().unwrap(),
        "--threads",
        "1,2",
        "--iterations",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    let v = read_json(&json);
    assert_eq!(v["frames"], 1);
    let threads: Vec<u64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, [1, 2]);
}

#[test]
fn bench_model_rejects_a_missing_input() {
    let out = common::edge_node()
        .args(["bench", "model", "--input", "no/such/clip.mp4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/clip.mp4"));
}

#[test]
fn bench_pipeline_two_cameras_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("pipeline.json");
    let stdout = run_ok(&[
        "bench",
        "pipeline",
        "pipelines/demo.toml",
        "--cameras",
        "2",
        "--duration",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(stdout.contains("frame→detect"), "table missing:\n{stdout}");
    let v = read_json(&json);
    for k in ["pipeline", "model", "model_sha256", "cpu", "ort_version"] {
        assert!(v[k].is_string(), "top-level {k} missing: {v}");
    }
    let run = &v["run"];
    assert_eq!(run["cameras"], 2);
    assert_eq!(run["target_fps"], 5.0);
    assert!(run["cpu_pct"].as_f64().is_some_and(|x| x > 0.0), "{run}");
    assert!(
        run["peak_rss_mib"].as_f64().is_some_and(|x| x > 1.0),
        "{run}"
    );
    assert!(run["holds"].is_boolean());
    let cams = run["per_camera"].as_array().expect("per_camera");
    assert_eq!(cams.len(), 2);
    let ids: Vec<&str> = cams.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["vtest-0", "vtest-1"]);
    for c in cams {
        // Shape, not speed: every camera analysed something in 5 s.
        assert!(c["frames_analysed"].as_u64().unwrap() > 0, "{c}");
        assert!(c["detect_fps"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["frames_dropped"].is_u64());
        assert_percentiles(&c["frame_to_detection_ms"], "frame_to_detection_ms");
        // Events are sparse: the publish latency is null or percentiles.
        if !c["frame_to_publish_ms"].is_null() {
            assert_percentiles(&c["frame_to_publish_ms"], "frame_to_publish_ms");
        }
        assert!(c["events_timed"].is_u64());
    }
}

/// `--json -`: the JSON alone on stdout (parsable as a whole), the table on stderr.
fn run_json_stdout(args: &[&str]) -> (Value, String) {
    let out = common::edge_node()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edge-node");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "edge-node {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    (v, stderr)
}

#[test]
fn bench_model_json_to_stdout() {
    let img = common::fixture("dog.jpg");
    let (v, stderr) = run_json_stdout(&[
        "bench",
        "model",
        "--input",
        img.to_str().unwrap(),
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--spinning",
        "--json",
        "-",
    ]);
    assert!(stderr.contains("infer ms"), "table on stderr:\n{stderr}");
    assert!(stderr.contains("spinning on"), "table on stderr:\n{stderr}");
    assert_eq!(v["spinning"], true, "{v}");
    assert_eq!(v["frames"], 1);
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(!std::path::Path::new(&common::repo()).join("-").exists());
}

#[test]
fn bench_pipeline_find_capacity_json_to_stdout() {
    // Shape, not speed: two short steps at most (1, then 2 if 1 held), a
    // hold ratio that any working box reaches in 2 s.
    let (v, stderr) = run_json_stdout(&[
        "bench",
        "pipeline",
        "pipelines/demo.toml",
        "--find-capacity",
        "--duration",
        "2",
        "--max-cameras",
        "2",
        "--hold-ratio",
        "0.5",
        "--json",
        "-",
    ]);
    assert!(
        stderr.contains("capacity search") && stderr.contains("≥ 50%"),
        "table on stderr:\n{stderr}"
    );
    for k in ["pipeline", "model", "model_sha256", "cpu", "ort_version"] {
        assert!(v[k].is_string(), "top-level {k} missing: {v}");
    }
    assert_eq!(v["target_fps"], 5.0);
    assert_eq!(v["hold_ratio"], 0.5);
    assert_eq!(v["max_cameras"], 2);
    let capacity = v["capacity"].as_u64().expect("capacity");
    assert!(capacity <= 2, "{v}");
    let steps = v["steps"].as_array().expect("steps");
    assert!(!steps.is_empty() && steps.len() <= 2, "{v}");
    assert_eq!(steps[0]["cameras"], 1);
    for s in steps {
        assert!(s["cameras"].as_u64().is_some_and(|n| (1..=2).contains(&n)));
        assert!(s["holds"].is_boolean());
        assert!(s["min_fps"].as_f64().is_some_and(|x| x >= 0.0), "{s}");
        assert!(s["cpu_pct"].as_f64().is_some(), "{s}");
        assert!(s["peak_rss_mib"].as_f64().is_some(), "{s}");
    }
    // The search is consistent with its steps: the capacity is the largest N that held.
    let held = steps
        .iter()
        .filter(|s| s["holds"] == true)
        .map(|s| s["cameras"].as_u64().unwrap())
        .max()
        .unwrap_or(0);
    assert_eq!(capacity, held, "{v}");
    let run = &v["run"];
    assert_eq!(run["hold_ratio"], 0.5);
    assert_eq!(run["duration_s"], 2.0);
    let cams = run["per_camera"].as_array().expect("per_camera");
    assert_eq!(Some(cams.len() as u64), run["cameras"].as_u64());
}

#[test]
fn bench_pipeline_rtsp_loopback_json() {
    // An rtsp:// camera is replaced by a loopback RTSP server the bench starts.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rtsp.json");
    let stdout = run_ok(&[
        "bench",
        "pipeline",
        "pipelines/rtsp-camera.toml",
        "--cameras",
        "1",
        "--duration",
        "4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(stdout.contains("rtsp-loopback"), "table:\n{stdout}");
    let v = read_json(&json);
    assert_eq!(v["source"], "rtsp-loopback");
    let url = v["camera_url"].as_str().expect("camera_url");
    assert!(url.starts_with("rtsp://127.0.0.1:"), "{url}");
    assert!(
        !url.ends_with(":8554/test"),
        "the config's own URL was used: {url}"
    );
    let run = &v["run"];
    assert_eq!(run["cameras"], 1);
    assert_eq!(run["hold_ratio"], 0.95);
    let cams = run["per_camera"].as_array().expect("per_camera");
    assert_eq!(cams.len(), 1);
    assert_eq!(cams[0]["id"], "cam-01-0");
    assert!(
        cams[0]["frames_analysed"].as_u64().unwrap() > 0,
        "no frame came over RTSP: {}",
        cams[0]
    );
    assert_percentiles(&cams[0]["frame_to_detection_ms"], "frame_to_detection_ms");
}

#[test]
fn bench_pipeline_rejects_a_hold_ratio_out_of_range() {
    let out = common::edge_node()
        .args([
            "bench",
            "pipeline",
            "pipelines/demo.toml",
            "--hold-ratio",
            "1.5",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--hold-ratio") && stderr.contains("1.5"),
        "{stderr}"
    );
}
