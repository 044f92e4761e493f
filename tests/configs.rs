//! Every shipped pipeline config is valid: `edge-node check` accepts it.

mod common;

use common::*;

#[test]
fn every_pipeline_passes_check() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        n += 1;
        let out = edge_node().arg("check").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{} fails check:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("OK") && stdout.contains("camera"),
            "{stdout}"
        );
    }
    assert!(
        n >= 3,
        "demo, one RTSP camera and a district box at least; found {n}"
    );
}

#[test]
fn check_json_describes_the_plan() {
    let out = edge_node()
        .args(["check", "--json"])
        .arg(repo().join("pipelines/demo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cameras"][0]["id"], "vtest");
    assert_eq!(v["cameras"][0]["kind"], "file");
    assert_eq!(v["topics"], "edge/demo/demo-box/#");
}

#[test]
fn model_inspect_on_every_bundled_model() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "onnx") {
            continue;
        }
        n += 1;
        let out = edge_node()
            .args(["model", "inspect", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["family"], "nanodet", "{}", path.display());
        assert_eq!(
            v["inputs"][0]["shape"],
            serde_json::json!([1, 3, 416, 416]),
            "{v}"
        );
        let text = edge_node()
            .args(["model", "inspect"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("nanodet") && text.contains("cls_s8"),
            "{text}"
        );
    }
    assert!(n >= 2, "FP32 and INT8 models are bundled; found {n}");
    // A model no family fits: exit 1, and the report says what it found.
    let weird = repo().join("tests/fixtures/models/weird_outputs.onnx");
    let out = edge_node()
        .args(["model", "inspect"])
        .arg(&weird)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("weird"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn preview_draws_rules_and_detections_on_a_real_frame() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("preview.jpg");
    let res = edge_node()
        .args(["preview", "--camera", "vtest", "--out"])
        .arg(&out)
        .arg(repo().join("pipelines/demo.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("1 lines") && stdout.contains("1 zones"),
        "{stdout}"
    );
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (768, 576));
    // The demo's line runs at x = 0.7 of the frame: its colour is on it.
    let (x, y) = ((0.7 * 768.0) as u32, (0.8 * 576.0) as u32);
    let hit = (x - 2..=x + 2).any(|x| {
        let p = img.get_pixel(x, y).0;
        p[0] > 150 && p[1] < 110 && p[2] > 110
    });
    assert!(hit, "line colour near ({x},{y}): {:?}", img.get_pixel(x, y));
    // An unknown camera is refused by name.
    let res = edge_node()
        .args(["preview", "--camera", "nope"])
        .arg(repo().join("pipelines/demo.toml"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("vtest"));
}
