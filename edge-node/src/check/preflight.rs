//! The pre-flight: the checks of a config that touch files and load
//! models, each through the code `run` uses for the same thing. Every
//! problem is added to the same list as the config's own, by field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::add_error;
use super::report::{ModelPlan, normalise};
use crate::config::{self, BrokerUrl, FieldError, Pipeline};
use crate::detect::{self, DetectError, Detector};
use crate::{publish, source};

/// Runs every pre-flight check; returns the plan of each model that loaded.
pub(super) fn run(
    p: &Pipeline,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> BTreeMap<PathBuf, ModelPlan> {
    camera_files(p, errors, warnings);
    decoders(p, errors);
    camera_secrets(p, errors);
    tls(p, errors);
    state_dir(p, errors);
    let runtime = p.runtime_options();
    if let Err(e) = detect::init_runtime(&runtime) {
        let (field, fix) = match e {
            DetectError::ProviderLibrary { provider, .. } => (
                "detector.provider",
                format!("run {}, or set provider = \"cpu\"", provider.fetch_hint()),
            ),
            DetectError::ProviderUnavailable { .. } => (
                "detector.provider",
                "set provider = \"cpu\" (or remove it) on this machine".into(),
            ),
            _ => (
                "detector.onnxruntime",
                "install ONNX Runtime (scripts/setup.sh), set ORT_DYLIB_PATH, or set detector.onnxruntime to libonnxruntime.so".into(),
            ),
        };
        add_error(errors, field, e.to_string(), fix);
        return BTreeMap::new();
    }
    let (plans, labels) = models(p, errors);
    rule_classes(p, &labels, &plans, errors, warnings);
    faces(p, errors);
    plans
}

/// The field that names camera `i`'s model.
fn model_field(p: &Pipeline, i: usize) -> String {
    if p.raw.cameras[i].model.is_some() {
        format!("cameras[{i}].model")
    } else {
        "detector.model".into()
    }
}

/// Each model loads as `run` loads it (same detector options); its plan,
/// and its class names, by path.
fn models(
    p: &Pipeline,
    errors: &mut Vec<FieldError>,
) -> (BTreeMap<PathBuf, ModelPlan>, BTreeMap<PathBuf, Vec<String>>) {
    let mut plans = BTreeMap::new();
    let mut labels = BTreeMap::new();
    let mut tried = BTreeSet::new();
    for (i, model) in p.camera_models.iter().enumerate() {
        if !tried.insert(model.clone()) {
            continue;
        }
        let field = model_field(p, i);
        if !model.is_file() {
            add_error(
                errors,
                field,
                format!("model {} does not exist", normalise(model)),
                "give the path of an ONNX model (relative paths are resolved against the config's folder), or run scripts/setup.sh for the bundled one",
            );
            continue;
        }
        let opts = p.detector_options(model);
        match Detector::load(&opts) {
            Ok(d) => {
                let spec = d.spec();
                let lower = |s: String| s.to_ascii_lowercase();
                plans.insert(
                    model.clone(),
                    ModelPlan {
                        path: normalise(model),
                        family: spec.family.as_str().to_string(),
                        input: [spec.input_size.0, spec.input_size.1],
                        dynamic_input: d.has_dynamic_input(),
                        stride: d.sizing().stride,
                        resize: lower(format!("{:?}", spec.resize)),
                        color: lower(format!("{:?}", spec.color)),
                        classes: spec.names.len(),
                        detects: opts.classes.clone().unwrap_or_default(),
                        threshold: opts.threshold,
                        class_thresholds: opts
                            .class_thresholds
                            .iter()
                            .map(|(k, v)| (k.clone(), *v))
                            .collect(),
                        nms_iou: opts.nms_iou,
                        provider: detect::runtime_provider().unwrap_or_default().to_string(),
                    },
                );
                labels.insert(model.clone(), spec.names.clone());
            }
            Err(DetectError::UnknownClass { name, known }) => {
                let field = if p.raw.detector.class_thresholds.contains_key(&name) {
                    format!("detector.class_thresholds.{name}")
                } else {
                    "detector.classes".into()
                };
                add_error(
                    errors,
                    field,
                    format!("{name:?} is not a class of model {}", normalise(model)),
                    format!("use the model's class names: {known}"),
                );
            }
            Err(e @ DetectError::ProviderUnavailable { .. }) => add_error(
                errors,
                "detector.provider",
                e.to_string(),
                "set provider = \"cpu\" (or remove it) on this machine",
            ),
            Err(e) => add_error(
                errors,
                field,
                format!("model {} cannot be used: {e}", normalise(model)),
                "give an ONNX detector edge-node supports (see `edge-node model inspect` and docs/models.md)",
            ),
        }
    }
    (plans, labels)
}

/// Zone and line classes the camera's model does not know are errors (as
/// in `run`); classes the model knows but `detector.classes` drops are
/// warnings (the rule would never see them).
fn rule_classes(
    p: &Pipeline,
    labels: &BTreeMap<PathBuf, Vec<String>>,
    plans: &BTreeMap<PathBuf, ModelPlan>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) {
    for (i, c) in p.raw.cameras.iter().enumerate() {
        let model = &p.camera_models[i];
        let (Some(names), Some(plan)) = (labels.get(model), plans.get(model)) else {
            continue;
        };
        let mut by_field: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for u in config::unknown_rule_classes(&c.zones, &c.lines, names) {
            by_field
                .entry(format!("cameras[{i}].{}", u.field))
                .or_default()
                .push(format!("{:?}", u.class));
        }
        let some: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
        for (field, bad) in by_field {
            add_error(
                errors,
                field,
                format!(
                    "{} {} not a class of model {}",
                    bad.join(", "),
                    if bad.len() == 1 { "is" } else { "are" },
                    plan.path
                ),
                format!(
                    "use the model's class names, e.g. {}{}",
                    some.join(", "),
                    if names.len() > some.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            );
        }
        let rules = c
            .zones
            .iter()
            .enumerate()
            .map(|(k, z)| (format!("cameras[{i}].zones[{k}].classes"), &z.classes))
            .chain(
                c.lines
                    .iter()
                    .enumerate()
                    .map(|(k, l)| (format!("cameras[{i}].lines[{k}].classes"), &l.classes)),
            );
        for (field, classes) in rules {
            for name in classes
                .iter()
                .filter(|n| names.contains(n) && !plan.detects.contains(n))
            {
                warnings.push(format!(
                    "{field}: {name:?} is never detected: detector.classes does not list it ({})",
                    plan.detects.join(", ")
                ));
            }
        }
    }
}

/// Cameras with `blur_faces`: the face model loads with the `[privacy]`
/// settings, as the node loads it; otherwise `run` would withhold every
/// snapshot of those cameras.
fn faces(p: &Pipeline, errors: &mut Vec<FieldError>) {
    let Some(i) = p.raw.cameras.iter().position(|c| c.blur_faces) else {
        return;
    };
    let plan = config::face_plan(&p.raw.privacy, p.face_model.clone());
    if let Err(e) = detect::FaceDetector::load_with(&plan.model, 1, plan.threshold, plan.max_side) {
        let field = if p.raw.privacy.face_model.is_some() {
            "privacy.face_model".to_string()
        } else {
            format!("cameras[{i}].blur_faces")
        };
        add_error(
            errors,
            field,
            format!(
                "faces must be blurred but the face model {} is unusable: {e}",
                normalise(&plan.model)
            ),
            "run scripts/setup.sh (it fetches third_party/models/centerface_dynamic.onnx) or set [privacy] face_model to a CenterFace ONNX; without it these cameras' snapshots are withheld",
        );
    }
}

/// File cameras: the file exists. Devices: a missing one is a warning (it
/// may be plugged in later; `run` retries).
fn camera_files(p: &Pipeline, errors: &mut Vec<FieldError>, warnings: &mut Vec<String>) {
    for (i, url) in p.camera_urls.iter().enumerate() {
        let field = format!("cameras[{i}].url");
        match source::local_path(url) {
            Ok(Some(path)) if !path.is_file() => {
                let shown = normalise(Path::new(url.strip_prefix("file://").unwrap_or(url)));
                let what = if path.exists() {
                    "is not a file"
                } else {
                    "does not exist"
                };
                add_error(
                    errors,
                    field,
                    format!("{shown} {what}"),
                    "give the path of a video file (relative paths are resolved against the config's folder, then the working directory)",
                );
            }
            Ok(_) => {
                let device = url.strip_prefix("v4l2://").unwrap_or(url);
                if device.starts_with("/dev/") && !Path::new(device).exists() {
                    warnings.push(format!(
                        "{field}: device {device} does not exist now; run retries until it appears"
                    ));
                }
            }
            // The config's own check reported the URL.
            Err(_) => {}
        }
    }
}

/// Each camera's decoder choice, as the source refuses it at start: a
/// hardware family needs one of its elements installed. Reported on the
/// camera's own `decoder`, or once on `node.decoder`.
fn decoders(p: &Pipeline, errors: &mut Vec<FieldError>) {
    let mut node_done = false;
    for (i, c) in p.raw.cameras.iter().enumerate() {
        let field = if c.decoder.is_some() {
            format!("cameras[{i}].decoder")
        } else if node_done {
            continue;
        } else {
            node_done = true;
            "node.decoder".to_string()
        };
        if let Err(e) = source::check_decoder(config::camera_decoder(&p.raw, c)) {
            add_error(
                errors,
                field,
                e.to_string(),
                "install the decoder's plugin and driver, or use decoder = \"auto\" or \"software\"",
            );
        }
    }
}

/// Camera credentials from the environment: the variables are set. The
/// source then reads them as this does ([`source::CameraAuth::resolve`]).
fn camera_secrets(p: &Pipeline, errors: &mut Vec<FieldError>) {
    for (i, c) in p.raw.cameras.iter().enumerate() {
        for (name, env, file, file_name) in [
            (
                "username_env",
                &c.username_env,
                &c.username_file,
                "username_file",
            ),
            (
                "password_env",
                &c.password_env,
                &c.password_file,
                "password_file",
            ),
        ] {
            if let (None, Some(var)) = (file, env)
                && std::env::var(var).is_err()
            {
                add_error(
                    errors,
                    format!("cameras[{i}].{name}"),
                    format!("environment variable {var} is not set (or not UTF-8)"),
                    format!("set it in the node's environment, or use {file_name}"),
                );
            }
        }
        let named = errors
            .iter()
            .any(|e| e.field.starts_with(&format!("cameras[{i}].")));
        if !named && let Err(e) = config::camera_auth(c).resolve() {
            add_error(
                errors,
                format!("cameras[{i}].password_file"),
                e,
                "make the secret files readable by the node's user",
            );
        }
    }
}

/// `mqtts://`: the CA, certificate and key parse as `run` parses them.
fn tls(p: &Pipeline, errors: &mut Vec<FieldError>) {
    if !matches!(p.broker, BrokerUrl::Tls { .. })
        || errors.iter().any(|e| e.field.starts_with("mqtt."))
    {
        return;
    }
    if let Err(e) = publish::tls_config(&p.raw.mqtt) {
        let field = match &e {
            publish::PublishError::Tls { what, .. }
            | publish::PublishError::ReadPem { what, .. } => match *what {
                "client certificate" => "mqtt.client_cert",
                "client key" => "mqtt.client_key",
                _ => "mqtt.ca_file",
            },
            _ => "mqtt.ca_file",
        };
        add_error(
            errors,
            field,
            e.to_string(),
            "give PEM files (-----BEGIN CERTIFICATE----- / -----BEGIN PRIVATE KEY-----); the CA is the one that signed the broker's certificate, the key the client certificate's",
        );
    }
}

/// The state folder and the outbox folder can be made and written, as
/// `run` makes them (`create_dir_all`, then files inside): what exists of
/// each path is a folder, and the deepest existing folder takes a file.
fn state_dir(p: &Pipeline, errors: &mut Vec<FieldError>) {
    let state = p.state_dir();
    let outbox = p.raw.outbox.dir.clone();
    for (field, dir) in [
        ("node.state_dir", Some(state.clone())),
        ("outbox.dir", outbox.clone()),
    ] {
        let Some(dir) = dir else { continue };
        if let Err(problem) = writable_dir(&dir) {
            let hint = if field == "node.state_dir" {
                "give a folder the node's user can write (or set EDGE_NODE_STATE_DIR)"
            } else {
                "give a folder the node's user can write, or leave outbox.dir out ({state_dir}/outbox)"
            };
            add_error(errors, field, problem, hint);
        }
    }
    if outbox.is_none()
        && !errors.iter().any(|e| e.field == "node.state_dir")
        && let Err(problem) = writable_dir(&state.join("outbox"))
    {
        add_error(
            errors,
            "node.state_dir",
            problem,
            "the outbox goes to {state_dir}/outbox: make it a writable folder, or set outbox.dir",
        );
    }
}

/// `dir` is a folder or can be made, and files can be written in it (or in
/// its deepest existing ancestor); a probe file is made and removed.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let shown = normalise(dir);
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(up) if !up.as_os_str().is_empty() => existing = up,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(if existing == dir {
            format!("{shown} exists and is not a folder")
        } else {
            format!(
                "{shown} cannot be made: {} is not a folder",
                normalise(existing)
            )
        });
    }
    let probe = existing.join(format!(".edge-node-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if existing == dir => Err(format!("{shown} is not writable: {e}")),
        Err(e) => Err(format!(
            "{shown} cannot be made: {} is not writable: {e}",
            normalise(existing)
        )),
    }
}
