//! `[detector] provider`: the setting is checked, a missing library or
//! device is refused in words a person can act on, and the OpenVINO
//! provider (its library fetched by `scripts/setup.sh`) finds what the CPU
//! one finds on the bundled models.
//!
//! ONNX Runtime is one library per process, so everything that loads a
//! provider's library runs the `edge-node` binary; this test process itself
//! loads none. No test needs a GPU: `cuda` and `tensorrt` are checked for
//! their refusal here.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use edge_node::detect::{DetectError, Provider, RuntimeOptions, library_candidates};

/// The OpenVINO flavour, as `scripts/fetch-onnxruntime.sh --flavour openvino`
/// (run by `scripts/setup.sh`) unpacks it.
fn openvino_lib() -> PathBuf {
    let lib = repo().join("third_party/onnxruntime-openvino/lib/libonnxruntime.so");
    assert!(
        lib.exists(),
        "{} is missing: run scripts/fetch-onnxruntime.sh --flavour openvino (scripts/setup.sh does)",
        lib.display()
    );
    lib
}

fn write_config(dir: &Path, detector: &str) -> PathBuf {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[node]
id = "box-1"
district = "d"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "p"
[detector]
{detector}
[[cameras]]
id = "cam-1"
url = "rtsp://127.0.0.1:8554/test"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_unknown_provider_or_device_is_refused_naming_the_field_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "provider = \"gpu\"");
    let out = edge_node().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("field `detector.provider`"), "{stderr}");
    assert!(stderr.contains("cpu, openvino, cuda, tensorrt"), "{stderr}");

    let path = write_config(
        dir.path(),
        "provider = \"openvino\"\nprovider_device = \"gpu0\"",
    );
    let out = edge_node().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("field `detector.provider_device`") && stderr.contains("CPU, GPU"),
        "{stderr}"
    );
    let path = write_config(dir.path(), "provider_device = \"GPU\"");
    let out = edge_node().arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("field `detector.provider_device`")
            && stderr.contains("cpu provider takes no device"),
        "{stderr}"
    );
}

#[test]
fn a_missing_provider_library_is_a_clear_error() {
    let missing = PathBuf::from("/nonexistent/onnxruntime-openvino/lib/libonnxruntime.so");
    let err = library_candidates(&RuntimeOptions {
        dylib: Some(missing),
        provider: Provider::OpenVino,
        device: None,
    })
    .unwrap_err();
    assert!(
        matches!(err, DetectError::ProviderLibrary { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    for part in [
        "provider openvino",
        "/nonexistent/onnxruntime-openvino/lib/libonnxruntime.so (no such file)",
        "scripts/fetch-onnxruntime.sh --flavour openvino",
    ] {
        assert!(msg.contains(part), "{part:?} not in: {msg}");
    }
    // The CPU build is not taken for OpenVINO: it lacks the provider.
    let err = library_candidates(&RuntimeOptions {
        dylib: Some(PathBuf::from(ort_dylib())),
        provider: Provider::OpenVino,
        device: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no libonnxruntime_providers_openvino.so next to it"),
        "{err}"
    );
    // The flavour's folder is found without being named.
    openvino_lib();
    let found = library_candidates(&RuntimeOptions {
        provider: Provider::OpenVino,
        ..RuntimeOptions::default()
    })
    .unwrap();
    assert!(
        found[0].ends_with("onnxruntime-openvino/lib/libonnxruntime.so"),
        "{found:?}"
    );
}

/// `check` with a provider whose library is not there fails on
/// `detector.provider` and says what to run.
#[test]
fn check_refuses_a_provider_without_its_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "provider = \"openvino\"\nonnxruntime = \"/nonexistent/lib/libonnxruntime.so\"",
    );
    let out = edge_node().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("field `detector.provider`")
            && stderr.contains("scripts/fetch-onnxruntime.sh --flavour openvino"),
        "{stderr}"
    );
}

/// `check` loads the models with the configured provider and says which.
#[test]
fn check_names_the_provider_of_each_model() {
    openvino_lib();
    let demo = std::fs::read_to_string(repo().join("pipelines/demo.toml"))
        .unwrap()
        .replace("\"../tests/", "\"tests/");
    assert!(demo.contains("\n[detector]\n"));
    for (provider, line) in [("cpu", ""), ("openvino", "provider = \"openvino\"\n")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.toml");
        std::fs::write(
            &path,
            demo.replace("\n[detector]\n", &format!("\n[detector]\n{line}")),
        )
        .unwrap();
        // Relative paths fall back to the working directory (the repo).
        let out = edge_node()
            .args(["check", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["models"][0]["provider"], provider, "{v}");
    }
}

/// `detect --provider cuda|tensorrt` on a machine without their library
/// (searched from an empty folder, `ORT_DYLIB_PATH` unset): refused, naming
/// the fetch; with a library that claims the provider but no NVIDIA GPU
/// (or a GPU but a fake provider library): refused as unable to run here.
#[test]
fn cuda_and_tensorrt_are_refused_without_their_library_or_device() {
    let empty = tempfile::tempdir().unwrap();
    // A GPU machine with the library installed system-wide finds it.
    let installed = Path::new("/opt/onnxruntime-gpu/lib/libonnxruntime.so").exists();
    for p in ["cuda", "tensorrt"].into_iter().filter(|_| !installed) {
        let out = edge_node()
            .current_dir(empty.path())
            .env_remove("ORT_DYLIB_PATH")
            .args(["detect", "--provider", p, "--model"])
            .arg(repo().join("models/nanodet_g_coco_416.onnx"))
            .arg(fixture("dog.jpg"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "provider {p}: no ONNX Runtime library with the {p} execution provider"
            )) && stderr.contains("scripts/fetch-onnxruntime.sh --flavour gpu"),
            "{stderr}"
        );
    }
    // A folder that looks like the gpu flavour: the CPU build plus an empty
    // provider library. It loads; the provider cannot start.
    let fake = tempfile::tempdir().unwrap();
    let lib = fake.path().join("libonnxruntime.so");
    std::os::unix::fs::symlink(std::fs::canonicalize(ort_dylib()).unwrap(), &lib).unwrap();
    for name in [
        "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_tensorrt.so",
    ] {
        std::fs::write(fake.path().join(name), b"").unwrap();
    }
    for p in ["cuda", "tensorrt"] {
        let out = edge_node()
            .env("ORT_DYLIB_PATH", &lib)
            .args(["detect", "--provider", p])
            .arg(fixture("dog.jpg"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("provider {p} cannot run here")),
            "{stderr}"
        );
        if !Path::new("/proc/driver/nvidia/version").exists()
            && !Path::new("/dev/nvidiactl").exists()
        {
            assert!(stderr.contains("no NVIDIA GPU on this machine"), "{stderr}");
        }
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Det {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

fn detect_json(model: &str, image: &str, provider: &str) -> (Vec<Det>, String) {
    let out = edge_node()
        .args([
            "detect",
            "--json",
            "--threshold",
            "0.3",
            "--model",
            model,
            "--provider",
            provider,
        ])
        .arg(fixture(image))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{provider} {model} {image}: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        serde_json::from_value(v["detections"].clone()).unwrap(),
        stderr,
    )
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// The bundled FP32 and INT8 models on the test images through OpenVINO
/// (in its own process, its own library) find the CPU provider's boxes:
/// same class, IoU ≥ 0.9 and score within 0.03 for FP32; INT8 runs
/// OpenVINO's own integer kernels, so IoU ≥ 0.6 and scores within 0.06.
/// A box only one side finds must be within that score margin of the
/// threshold.
#[test]
fn openvino_finds_what_the_cpu_provider_finds() {
    openvino_lib();
    let threshold = 0.3;
    for (model, min_iou, max_diff) in [
        ("models/nanodet_g_coco_416.onnx", 0.9, 0.03),
        ("models/nanodet_g_coco_416_int8.onnx", 0.6, 0.06),
    ] {
        for image in ["dog.jpg", "vtest_f000.png", "vtest_f050.png"] {
            let (cpu, _) = detect_json(model, image, "cpu");
            let (ov, log) = detect_json(model, image, "openvino");
            assert!(
                log.contains("onnxruntime-openvino") && log.contains("provider=openvino"),
                "OpenVINO's library was not the one loaded: {log}"
            );
            assert!(!cpu.is_empty(), "{model} {image}: nothing found on the CPU");
            let mut unmatched_ov: Vec<&Det> = ov.iter().collect();
            let mut matched = 0;
            let (mut worst, mut worst_iou) = (0.0f32, 1.0f32);
            for c in &cpu {
                let best = unmatched_ov
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.label == c.label)
                    .map(|(i, o)| (i, iou(&c.bbox, &o.bbox)))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                match best {
                    Some((i, v)) if v >= min_iou => {
                        let o = unmatched_ov.remove(i);
                        worst = worst.max((o.score - c.score).abs());
                        worst_iou = worst_iou.min(v);
                        assert!(
                            (o.score - c.score).abs() <= max_diff,
                            "{model} {image}: {} score cpu {} openvino {}",
                            c.label,
                            c.score,
                            o.score
                        );
                        matched += 1;
                    }
                    _ => assert!(
                        c.score - threshold <= max_diff,
                        "{model} {image}: openvino misses {c:?}; openvino found {ov:?}"
                    ),
                }
            }
            for o in unmatched_ov {
                assert!(
                    o.score - threshold <= max_diff,
                    "{model} {image}: openvino adds {o:?}; cpu found {cpu:?}"
                );
            }
            eprintln!(
                "{model} {image}: {matched} of {} cpu / {} openvino boxes matched, IoU ≥ {worst_iou:.3}, score diff ≤ {worst:.4}",
                cpu.len(),
                ov.len()
            );
        }
    }
}
