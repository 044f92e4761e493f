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
