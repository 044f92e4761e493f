//! Every system test and bench is built: `edge-node/Cargo.toml` has
//! `autotests = false` and `autobenches = false` (the files live outside the
//! crate, in `tests/` and `benches/`), so a new `tests/*.rs` or `benches/*.rs`
//! that is not declared as a `[[test]]` or `[[bench]]` would silently never
//! run. This test fails instead, and names the TOML to add.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `path`s of the manifest's `[[kind]]` targets.
fn declared(manifest: &toml::Table, kind: &str) -> BTreeSet<String> {
    manifest
        .get(kind)
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("path").and_then(toml::Value::as_str))
        .map(str::to_string)
        .collect()
}

/// `*.rs` directly in `dir` (modules in sub-folders, like `tests/common/`, are not targets).
fn sources(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}/: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn missing(manifests: &[&toml::Table], kind: &str, dir: &str, extra: &str) -> Vec<String> {
    let declared: BTreeSet<String> = manifests.iter().flat_map(|m| declared(m, kind)).collect();
    sources(dir)
        .into_iter()
        .filter(|f| !declared.contains(&format!("../{dir}/{f}")))
        .map(|f| {
            let name = f.trim_end_matches(".rs");
            format!(
                "{dir}/{f}: add\n\n[[{kind}]]\nname = \"{name}\"\npath = \"../{dir}/{f}\"\n{extra}"
            )
        })
        .collect()
}

#[test]
fn every_test_and_bench_file_is_declared_in_the_manifest() {
    let path = repo().join("edge-node/Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    // The centre's own command-line tests are targets of its package (so
    // cargo builds its binary for them).
    let centre: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("edge-centre/Cargo.toml")).unwrap())
            .unwrap();
    let mut problems = missing(&[&manifest, &centre], "test", "tests", "");
    problems.extend(missing(
        &[&manifest],
        "bench",
        "benches",
        "harness = false\n",
    ));
    assert!(
        problems.is_empty(),
        "not built or run because neither edge-node/Cargo.toml nor edge-centre/Cargo.toml \
         declares them (autotests/autobenches are off):\n\n{}\nto edge-node/Cargo.toml",
        problems.join("\n"),
    );
    // And the check looks at the right place.
    assert!(declared(&manifest, "test").contains("../tests/manifest.rs"));
    assert!(!declared(&manifest, "bench").is_empty());
}

/// The crates `edge-wire` may depend on: small and pure, so that a program
/// that only reads the wire contract (the centre) does not pull in
/// GStreamer, ONNX Runtime, tokio or an MQTT client.
const WIRE_ALLOWED: [&str; 3] = ["serde", "serde_json", "humantime"];

/// Every crate a dependent of the manifest builds: `[dependencies]` and
/// `[build-dependencies]`, also per `[target.'cfg(..)']` (dev-dependencies are
/// only built for the crate's own tests).
fn built_dependencies(manifest: &toml::Table) -> BTreeSet<String> {
    let tables = |t: &toml::Table| -> Vec<String> {
        ["dependencies", "build-dependencies"]
            .iter()
            .filter_map(|k| t.get(*k).and_then(toml::Value::as_table))
            .flat_map(|d| d.keys().cloned())
            .collect()
    };
    let mut deps: BTreeSet<String> = tables(manifest).into_iter().collect();
    let targets = manifest.get("target").and_then(toml::Value::as_table);
    for t in targets.into_iter().flat_map(|t| t.values()) {
        if let Some(t) = t.as_table() {
            deps.extend(tables(t));
        }
    }
    deps
}

#[test]
fn the_wire_crate_depends_only_on_small_pure_crates() {
    let path = repo().join("edge-wire/Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let deps = built_dependencies(&manifest);
    assert!(deps.contains("serde"), "edge-wire without serde? {deps:?}");
    let extra: Vec<&String> = deps
        .iter()
        .filter(|d| !WIRE_ALLOWED.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "edge-wire/Cargo.toml depends on {extra:?}: the wire contract may use only \
         {WIRE_ALLOWED:?}; move whatever needs more into edge-node (publish/wire.rs)"
    );
}

/// The centre speaks the wire contract only: it must not pull in GStreamer,
/// ONNX Runtime or the node (a centre host needs neither a video stack nor
/// an inference runtime).
#[test]
fn the_centre_does_not_depend_on_the_video_or_inference_stack() {
    let path = repo().join("edge-centre/Cargo.toml");
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let deps = built_dependencies(&manifest);
    assert!(deps.contains("edge-wire"), "{deps:?}");
    let banned: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("gstreamer") || d.starts_with("ort") || *d == "edge-node")
        .collect();
    assert!(
        banned.is_empty(),
        "edge-centre/Cargo.toml depends on {banned:?}: the centre must build without GStreamer and ONNX Runtime"
    );
}
