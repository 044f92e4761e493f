//! What `edge-node check` prints: the plan of a valid pipeline, for people
//! (text) and for scripts (`--json`, this structure; documented in the
//! README). Plain data: every URL in it has its user info masked, every
//! path is normalised.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Probes;
use crate::config::{self, BrokerUrl, CameraSection, Pipeline, ZoneSection};
use crate::detect;
use crate::publish::{BrokerProbe, Topics};
use crate::redact;
use crate::source::ProbeReport;

/// The plan of a pipeline that passed every check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    /// The config file (normalised path).
    pub pipeline: String,
    pub node: String,
    pub district: String,
    pub mqtt: MqttPlan,
    /// Each model the cameras use, once.
    pub models: Vec<ModelPlan>,
    pub cameras: Vec<CameraReport>,
    pub budget: BudgetPlan,
    /// Allowed but probably wrong (e.g. a secret file others can read).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttPlan {
    /// `mqtt.url` (user info masked; `embedded` for the in-process broker).
    pub url: String,
    pub tls: bool,
    /// The node's topic filter, e.g. `hanoi/hoan-kiem/box-1/#`.
    pub topics: String,
    pub client_id: String,
    /// Where the user name and password come from: `files`, `environment`
    /// or `none` (the secrets themselves are never shown).
    pub credentials: String,
    /// Filled by `--probe`.
    pub probe: Option<BrokerProbe>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPlan {
    pub path: String,
    /// Decoder family, e.g. `nanodet`, `yolov8`.
    pub family: String,
    /// `[width, height]` of the model input as declared.
    pub input: [u32; 2],
    /// The input height and width are dynamic: frames are sized by each
    /// camera's `input_pixels` at their own aspect ratio.
    pub dynamic_input: bool,
    /// Input sides are multiples of this (the model's coarsest stride).
    pub stride: u32,
    /// `letterbox` or `stretch`.
    pub resize: String,
    /// `rgb` or `bgr`.
    pub color: String,
    /// How many classes the model knows.
    pub classes: usize,
    /// The classes the node reports (`detector.classes`).
    pub detects: Vec<String>,
    pub threshold: f32,
    pub class_thresholds: BTreeMap<String, f32>,
    pub nms_iou: f32,
    /// The ONNX Runtime execution provider it loaded with
    /// (`detector.provider`): `cpu`, `openvino`, `cuda`, `tensorrt`.
    #[serde(default)]
    pub provider: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraReport {
    pub id: String,
    /// `file` (ends) or `live` (reconnects).
    pub kind: String,
    /// The URL (user info masked) or the normalised file path.
    pub url: String,
    /// Where the camera's credentials come from: `files`, `environment`,
    /// `url` (masked above) or `none`.
    pub credentials: String,
    pub detect_fps: f64,
    pub max_height: u32,
    /// Path of the camera's model (one of `models`).
    pub model: String,
    /// The camera's input budget: `standard`, `detailed`, `maximum`,
    /// `model` or `N px`.
    pub input_pixels: String,
    /// Tiled detection on (`tiles`).
    pub tiles: bool,
    /// The model input `[width, height]` the camera's frames will get: for
    /// fixed-size models always, for dynamic ones when the frame size is
    /// known (`--probe`).
    pub input_size: Option<[u32; 2]>,
    /// What a dynamic model's input will be for common frame shapes at
    /// the camera's `max_height`, e.g. `1280x720 -> 544x320` (when the
    /// frame size is not known).
    pub input_examples: Vec<String>,
    pub zones: Vec<ZonePlan>,
    pub lines: Vec<LinePlan>,
    pub privacy: PrivacyPlan,
    /// The picture checks (`[cameras.tamper]`); `None` when switched off.
    pub tamper: Option<TamperPlan>,
    /// A dual-stream camera (`detect_url`): `url` is the main stream,
    /// received for snapshots only; `None` for a single-stream camera.
    #[serde(default)]
    pub dual_stream: Option<DualStreamPlan>,
    /// Filled by `--probe`.
    pub probe: Option<ProbeReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePlan {
    pub name: String,
    pub points: usize,
    /// Empty: every detected class.
    pub classes: Vec<String>,
    /// The alerts the zone raises, e.g. `loiter after 30 s`.
    pub alerts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinePlan {
    pub name: String,
    /// Empty: every detected class.
    pub classes: Vec<String>,
    pub forward: String,
    pub backward: String,
    /// The direction that raises an alert, if any.
    pub alert_direction: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyPlan {
    /// Privacy masks filled before anything leaves the box.
    pub masks: usize,
    pub blur_faces: bool,
    /// The face model, when faces are blurred.
    pub face_model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TamperPlan {
    /// Seconds of media time between two checks.
    pub interval_s: f64,
    /// Seconds a still picture lasts before `frozen` is raised.
    pub frozen_after_s: f64,
    /// Seconds `black`, `blurred` or `moved` last before they are raised.
    pub raise_after_s: f64,
    /// Seconds a condition is gone before it clears.
    pub clear_after_s: f64,
    /// Fractions of the picture height left out at the top and bottom.
    pub ignore_top: f32,
    pub ignore_bottom: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetPlan {
    /// Snapshot bytes per second for the whole node; `None`: no limit.
    pub snapshot_bytes_per_s: Option<f64>,
    pub burst_bytes: Option<f64>,
}

/// The node's MQTT client id (`mqtt.client_id` or `edge-node-{node.id}`).
pub(super) fn client_id(p: &Pipeline) -> String {
    p.raw
        .mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| format!("edge-node-{}", p.raw.node.id))
}

/// The plan of a pipeline that passed: `models` from the pre-flight (by
/// model path), `probes` from `--probe`.
pub(super) fn build(
    p: &Pipeline,
    models: &BTreeMap<PathBuf, ModelPlan>,
    probes: Probes,
    warnings: Vec<String>,
) -> CheckReport {
    let m = &p.raw.mqtt;
    let credentials = if m.username_file.is_some() || m.password_file.is_some() {
        "files"
    } else if std::env::var_os(&m.username_env).is_some()
        || std::env::var_os(&m.password_env).is_some()
    {
        "environment"
    } else {
        "none"
    };
    let mut camera_probes = probes.cameras.into_iter();
    let cameras = p
        .raw
        .cameras
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let model = models.get(&p.camera_models[i]);
            camera(p, i, c, model, camera_probes.next().flatten())
        })
        .collect();
    CheckReport {
        pipeline: normalise(&p.file),
        node: p.raw.node.id.clone(),
        district: p.raw.node.district.clone(),
        mqtt: MqttPlan {
            url: redact::userinfo(&m.url).into_owned(),
            tls: matches!(p.broker, BrokerUrl::Tls { .. }),
            topics: Topics::new(&m.topic_prefix, &p.raw.node.district, &p.raw.node.id).all(),
            client_id: client_id(p),
            credentials: credentials.into(),
            probe: probes.broker,
        },
        models: models.values().cloned().collect(),
        cameras,
        budget: BudgetPlan {
            snapshot_bytes_per_s: p.raw.budget.bucket().map(|b| b.0),
            burst_bytes: p.raw.budget.bucket().map(|b| b.1),
        },
        warnings,
    }
}

fn zone_alerts(z: &ZoneSection) -> Vec<String> {
    let mut alerts = Vec::new();
    if let Some(s) = z.loiter_s {
        alerts.push(format!("loitering after {s} s"));
    }
    if let Some(n) = z.crowd_min {
        alerts.push(format!(
            "crowd of {n} or more for {} s (clears after {} s)",
            z.crowd_for_s, z.crowd_clear_s
        ));
    }
    alerts
}

/// The frame size the source hands on for a `w` x `h` stream under
/// `max_height` (downscaled keeping the aspect ratio, never upscaled).
fn analysed_frame(w: u32, h: u32, max_height: u32) -> (u32, u32) {
    if h <= max_height || h == 0 {
        return (w, h);
    }
    let sw = (f64::from(w) * f64::from(max_height) / f64::from(h)).round() as u32;
    (sw.max(1), max_height)
}

/// `(input_size, input_examples)` of a camera: see [`CameraReport`].
fn input_plan(
    model: Option<&ModelPlan>,
    analysis: detect::Analysis,
    max_height: u32,
    probe: Option<&ProbeReport>,
) -> (Option<[u32; 2]>, Vec<String>) {
    let Some(m) = model else {
        return (None, Vec::new());
    };
    let sizing = detect::Sizing {
        dynamic: m.dynamic_input,
        stride: m.stride,
        declared: (m.input[0], m.input[1]),
        resize: detect::ResizeMode::Stretch,
    };
    let size = |w: u32, h: u32| {
        let (fw, fh) = analysed_frame(w, h, max_height);
        let (iw, ih, _) = sizing.plan(analysis.input, fw, fh);
        ((fw, fh), [iw, ih])
    };
    if !m.dynamic_input {
        return (Some(m.input), Vec::new());
    }
    if let Some(pr) = probe {
        return (Some(size(pr.width, pr.height).1), Vec::new());
    }
    let examples = [(1920, 1080), (1600, 1200)]
        .iter()
        .map(|&(w, h)| {
            let ((fw, fh), [iw, ih]) = size(w, h);
            format!("{fw}x{fh} -> {iw}x{ih}")
        })
        .collect();
    (None, examples)
}

fn camera(
    p: &Pipeline,
    i: usize,
    c: &CameraSection,
    model: Option<&ModelPlan>,
    probe: Option<ProbeReport>,
) -> CameraReport {
    let analysis = config::analysis(&p.raw.detector, c);
    let (input_size, input_examples) = input_plan(model, analysis, c.max_height, probe.as_ref());
    let url = &p.camera_urls[i];
    let file = config::is_file_url(url);
    let auth = config::camera_auth(c);
    let url_has_user = url.split_once("://").is_some_and(|(_, rest)| {
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .contains('@')
    });
    let credentials = if c.username_file.is_some() || c.password_file.is_some() {
        "files"
    } else if auth.is_set() {
        "environment"
    } else if url_has_user {
        "url"
    } else {
        "none"
    };
    let shown = if file {
        normalise(Path::new(url.strip_prefix("file://").unwrap_or(url)))
    } else {
        redact::userinfo(url).into_owned()
    };
    CameraReport {
        id: c.id.clone(),
        kind: if file { "file" } else { "live" }.into(),
        url: shown,
        credentials: credentials.into(),
        detect_fps: c.detect_fps,
        max_height: c.max_height,
        model: normalise(&p.camera_models[i]),
        input_pixels: analysis.input.describe(),
        tiles: analysis.tiles,
        input_size,
        input_examples,
        zones: c
            .zones
            .iter()
            .map(|z| ZonePlan {
                name: z.name.clone(),
                points: z.polygon.len(),
                classes: z.classes.clone(),
                alerts: zone_alerts(z),
            })
            .collect(),
        lines: c
            .lines
            .iter()
            .map(|l| LinePlan {
                name: l.name.clone(),
                classes: l.classes.clone(),
                forward: l.forward.clone(),
                backward: l.backward.clone(),
                alert_direction: l.alert_direction.clone(),
            })
            .collect(),
        privacy: PrivacyPlan {
            masks: c.privacy_masks.len(),
            blur_faces: c.blur_faces,
            face_model: c.blur_faces.then(|| normalise(&p.face_model)),
        },
        tamper: c.tamper.enabled.then_some(TamperPlan {
            interval_s: c.tamper.interval_s,
            frozen_after_s: c.tamper.frozen_after_s,
            raise_after_s: c.tamper.raise_after_s,
            clear_after_s: c.tamper.clear_after_s,
            ignore_top: c.tamper.ignore_top,
            ignore_bottom: c.tamper.ignore_bottom,
        }),
        dual_stream: dual_stream(c),
        probe,
    }
}

/// `p` without `.` and `a/..` components (lexically; nothing is resolved
/// on disk), e.g. `pipelines/../models/m.onnx` → `models/m.onnx`, and
/// relative to the working directory when it lies below it.
pub fn normalise(p: &Path) -> String {
    let lexical = lexical(p);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            let rel = Path::new(&lexical).strip_prefix(cwd).ok()?;
            (!rel.as_os_str().is_empty()).then(|| rel.display().to_string())
        })
        .unwrap_or(lexical)
}

fn lexical(p: &Path) -> String {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        ".".into()
    } else {
        out.display().to_string()
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "every class".into()
    } else {
        names.join(", ")
    }
}

impl fmt::Display for ModelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {}: {}, input {}×{} ({}, {}), {} classes, provider {}",
            self.path,
            self.family,
            self.input[0],
            self.input[1],
            if self.dynamic_input {
                format!("dynamic: any multiple of {}", self.stride)
            } else {
                self.resize.clone()
            },
            self.color,
            self.classes,
            self.provider
        )?;
        let per_class: Vec<String> = self
            .class_thresholds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let per_class = if per_class.is_empty() {
            String::new()
        } else {
            format!(" ({})", per_class.join(", "))
        };
        write!(
            f,
            "  detects {}; score > {}{per_class}, NMS IoU {}",
            list(&self.detects),
            self.threshold,
            self.nms_iou
        )
    }
}

/// A dual-stream camera's sub-stream and main-stream ring, for `check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DualStreamPlan {
    /// The analysed sub-stream (user info masked, or the normalised path).
    pub detect_url: String,
    pub main_ring_s: f64,
    pub main_ring_mib: u32,
    pub match_tolerance_s: f64,
}

fn dual_stream(c: &CameraSection) -> Option<DualStreamPlan> {
    let d = c.detect_url.as_deref()?;
    let shown = if config::is_file_url(d) {
        normalise(Path::new(d.strip_prefix("file://").unwrap_or(d)))
    } else {
        redact::userinfo(d).into_owned()
    };
    Some(DualStreamPlan {
        detect_url: shown,
        main_ring_s: c.main_ring_s,
        main_ring_mib: c.main_ring_mib,
        match_tolerance_s: c.match_tolerance_s,
    })
}

impl fmt::Display for CameraReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "camera {} ({}) {}: {} fps, frames ≤ {} px high, model {}",
            self.id, self.kind, self.url, self.detect_fps, self.max_height, self.model
        )?;
        if let Some(d) = &self.dual_stream {
            write!(
                f,
                "\n  dual stream: detects on {}; snapshots from the main stream above \
                 (ring {} s / {} MiB, matched within {} s)",
                d.detect_url, d.main_ring_s, d.main_ring_mib, d.match_tolerance_s
            )?;
        }
        let tiles = if self.tiles { ", plus tiles" } else { "" };
        match self.input_size {
            Some([w, h]) => write!(
                f,
                "\n  model input {w}×{h} (input_pixels {}{tiles})",
                self.input_pixels
            )?,
            None => write!(
                f,
                "\n  model input at the frame's aspect (input_pixels {}{tiles}): {}",
                self.input_pixels,
                self.input_examples.join(", ")
            )?,
        }
        if self.credentials != "none" {
            write!(f, ", credentials from {}", self.credentials)?;
        }
        for z in &self.zones {
            write!(
                f,
                "\n  zone {:?} ({} points): {}",
                z.name,
                z.points,
                list(&z.classes)
            )?;
            if !z.alerts.is_empty() {
                write!(f, "; alerts: {}", z.alerts.join(", "))?;
            }
        }
        for l in &self.lines {
            write!(
                f,
                "\n  line {:?}: {}; forward {:?}, backward {:?}",
                l.name,
                list(&l.classes),
                l.forward,
                l.backward
            )?;
            if let Some(d) = &l.alert_direction {
                write!(f, "; alert on {d:?}")?;
            }
        }
        let p = &self.privacy;
        let faces = match (&p.blur_faces, &p.face_model) {
            (true, Some(m)) => format!("faces blurred ({m})"),
            (true, None) => "faces blurred".into(),
            (false, _) => "faces not blurred".into(),
        };
        let masks = match p.masks {
            0 => "no masks".to_string(),
            1 => "1 mask".to_string(),
            n => format!("{n} masks"),
        };
        write!(f, "\n  privacy: {masks}, {faces}")?;
        match &self.tamper {
            Some(t) => write!(
                f,
                "\n  tamper: checked every {} s; frozen after {} s, black/blurred/moved after {} s, cleared after {} s; top {:.0} %, bottom {:.0} % ignored",
                t.interval_s,
                t.frozen_after_s,
                t.raise_after_s,
                t.clear_after_s,
                t.ignore_top * 100.0,
                t.ignore_bottom * 100.0
            )?,
            None => write!(f, "\n  tamper: off")?,
        }
        if let Some(pr) = &self.probe {
            let fps = pr
                .fps
                .map_or_else(|| "unknown fps".into(), |v| format!("{v:.2} fps"));
            write!(
                f,
                "\n  probe: {} {}×{} at {fps}, decoder {}",
                pr.codec, pr.width, pr.height, pr.decoder
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: OK", self.pipeline)?;
        let m = &self.mqtt;
        writeln!(
            f,
            "node {} in district {}; MQTT {} ({}, client id {}, credentials: {}) under {}",
            self.node,
            self.district,
            m.url,
            if m.tls { "TLS" } else { "plaintext" },
            m.client_id,
            m.credentials,
            m.topics
        )?;
        if let Some(b) = &m.probe {
            let max = b
                .max_packet_bytes
                .map_or_else(String::new, |v| format!(", broker packet limit {v} B"));
            writeln!(f, "  probe: broker {} answered CONNACK{max}", b.addr)?;
        }
        for model in &self.models {
            writeln!(f, "{model}")?;
        }
        for c in &self.cameras {
            writeln!(f, "{c}")?;
        }
        match (self.budget.snapshot_bytes_per_s, self.budget.burst_bytes) {
            (Some(rate), Some(burst)) => writeln!(
                f,
                "budget: snapshots {rate} B/s for the node, bursts up to {burst} B"
            )?,
            _ => writeln!(f, "budget: snapshots not limited")?,
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_lexically() {
        for (raw, want) in [
            ("pipelines/../models/m.onnx", "models/m.onnx"),
            ("./a/./b", "a/b"),
            ("../x/../y", "../y"),
            ("/abs/p/../q", "/abs/q"),
            (".", "."),
        ] {
            assert_eq!(lexical(Path::new(raw)), want, "{raw}");
        }
    }
}
