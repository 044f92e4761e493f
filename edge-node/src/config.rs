//! Pipeline configuration: TOML → `PipelineFile` (serde, `deny_unknown_fields`;
//! `file`) → `validate()` (pure, names the field, reports every problem;
//! `validate`) → `Pipeline` (paths resolved) → one `CameraPlan` per camera
//! (the runtime option structs the node starts it with; `plan`).
//!
//! Every field has a default except `node.id`, `node.district`, `mqtt.url`,
//! `mqtt.topic_prefix` and, per camera, `id` and `url`.
//!
//! This module touches no GStreamer, ort or MQTT; it only describes them.

use std::path::{Path, PathBuf};

mod file;
mod plan;
mod validate;

pub use file::*;
pub use plan::{
    CameraPlan, DEFAULT_STATE_DIR, FacePlan, STATE_DIR_ENV, UnknownClass, analysis, camera_auth,
    camera_decoder, camera_rules, detector_options, event_config, face_plan, rules_config,
    snapshot_options, source_options, tamper_config, tracker_config, unknown_rule_classes,
};
use validate::Checks;
pub use validate::{FieldError, valid_id, validate};

/// File name of the bundled default detector.
pub const DEFAULT_MODEL_FILE: &str = "nanodet_g_coco_416.onnx";

/// Most cameras one node takes (`[[cameras]]` tables). One box holds a few
/// dozen streams at most; a config with thousands is a generated or pasted
/// mistake, refused by name instead of starting thousands of pipelines.
pub const MAX_CAMERAS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors and unknown fields; the message carries line, column and a caret.
    #[error("invalid config {file}:\n{message}")]
    Parse { file: PathBuf, message: String },
    /// One invalid value.
    #[error("invalid config {file}: field `{field}`: {problem}. Fix: {hint}")]
    Invalid {
        file: PathBuf,
        field: String,
        problem: String,
        hint: String,
    },
    /// Several invalid values (every one found), in file order; displayed one
    /// per line, each line as [`ConfigError::Invalid`] displays.
    #[error("{}", invalid_lines(file, errors))]
    InvalidList {
        file: PathBuf,
        errors: Vec<FieldError>,
    },
}

fn invalid_lines(file: &Path, errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "invalid config {}: field `{}`: {}. Fix: {}",
                file.display(),
                e.field,
                e.problem,
                e.hint
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// `None` for no problem; one as [`ConfigError::Invalid`], several as
    /// [`ConfigError::InvalidList`] (in the order given).
    pub fn from_fields(file: &Path, mut errors: Vec<FieldError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => {
                let e = errors.remove(0);
                Some(ConfigError::Invalid {
                    file: file.to_path_buf(),
                    field: e.field,
                    problem: e.problem,
                    hint: e.hint,
                })
            }
            _ => Some(ConfigError::InvalidList {
                file: file.to_path_buf(),
                errors,
            }),
        }
    }

    /// The invalid values this error reports (none for read and parse errors).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Invalid {
                field,
                problem,
                hint,
                ..
            } => vec![FieldError {
                field: field.clone(),
                problem: problem.clone(),
                hint: hint.clone(),
            }],
            ConfigError::InvalidList { errors, .. } => errors.clone(),
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------- built form

/// Where the node publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerUrl {
    /// The in-process broker (cargo feature `embedded-broker`) on 127.0.0.1:`port`.
    Embedded {
        port: u16,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
    },
}

/// A validated pipeline with every path resolved. [`Pipeline::camera_plan`]
/// gives what each camera is started with.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub raw: PipelineFile,
    pub broker: BrokerUrl,
    /// Model path per camera, same order as `raw.cameras`.
    pub camera_models: Vec<PathBuf>,
    /// Camera URLs with relative file paths resolved.
    pub camera_urls: Vec<String>,
    pub onnxruntime: Option<PathBuf>,
    /// The face model for cameras with `blur_faces` (resolved; may not exist).
    pub face_model: PathBuf,
    /// Things that are allowed but probably wrong (e.g. a secret file others can
    /// read). `run` logs them, `check` prints them.
    pub warnings: Vec<String>,
}

impl Pipeline {
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_str(path, &text)
    }

    /// Parse, validate and build. `path` is used for messages and to resolve
    /// relative paths. A syntax error or unknown field stops at the parse;
    /// otherwise every invalid value is reported (see [`validate`]), with the
    /// referenced files that do not exist.
    pub fn from_str(path: &Path, text: &str) -> Result<Pipeline, ConfigError> {
        let raw: PipelineFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut ck = Checks::new(path);
        validate::check_file(&mut ck, &raw);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let warnings = check_files(&mut ck, &raw, &dir);
        ck.finish()?;
        build(path, raw, warnings)
    }

    /// Like [`Pipeline::load`], but past invalid values: the pipeline built
    /// as far as it can be, with every field error (empty when valid). For
    /// `check`, which adds its pre-flight findings to the same list so a file
    /// shows all its problems at once. Read and parse errors, and a broker
    /// URL too broken to build anything from, are still errors.
    pub fn load_lenient(path: &Path) -> Result<(Pipeline, Vec<FieldError>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let raw: PipelineFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut ck = Checks::new(path);
        validate::check_file(&mut ck, &raw);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let warnings = check_files(&mut ck, &raw, &dir);
        let errors = ck.into_errors();
        match build(path, raw, warnings) {
            Ok(p) => Ok((p, errors)),
            Err(e) => Err(ConfigError::from_fields(path, errors).unwrap_or(e)),
        }
    }

    /// True when every camera is a file (the run ends when they have all ended).
    pub fn all_files(&self) -> bool {
        self.camera_urls.iter().all(|u| is_file_url(u))
    }
}

/// Parse `mqtt.url`.
pub fn parse_broker_url(url: &str, embedded_port: u16) -> Result<BrokerUrl, String> {
    if url == "embedded" {
        return Ok(BrokerUrl::Embedded {
            port: embedded_port,
        });
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!("{url:?} has no mqtt:// or mqtts:// scheme"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!(
            "{url:?} must be scheme://host[:port] (credentials come from the environment, not the URL)"
        ));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("{url:?} has an invalid port {p:?}"))?;
            (h.trim_matches(['[', ']']).to_string(), port)
        }
        _ => (rest.to_string(), if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(if tls {
        BrokerUrl::Tls { host, port }
    } else {
        BrokerUrl::Tcp { host, port }
    })
}

/// True for `file://` URLs and plain paths (not devices).
pub fn is_file_url(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    !url.contains("://") && !url.starts_with("/dev/video")
}

/// Resolve a relative path against the config's folder first, then the working directory.
/// A camera URL with a relative file path resolved like [`resolve`].
fn resolve_url(config_dir: &Path, url: &str) -> String {
    if let Some(p) = url.strip_prefix("file://") {
        format!("file://{}", resolve(config_dir, Path::new(p)).display())
    } else if is_file_url(url) {
        resolve(config_dir, Path::new(url)).display().to_string()
    } else {
        url.to_string()
    }
}

fn resolve(config_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let beside = config_dir.join(p);
    if beside.exists() {
        return beside;
    }
    let cwd = std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf());
    if cwd.exists() { cwd } else { beside }
}

/// Where the bundled model is looked for when `[detector] model` is not set.
pub fn default_model_candidates(config_dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![
        config_dir.join("../models").join(DEFAULT_MODEL_FILE),
        PathBuf::from("models").join(DEFAULT_MODEL_FILE),
    ];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        v.push(
            dir.join("../share/edge-node/models")
                .join(DEFAULT_MODEL_FILE),
        );
        v.push(dir.join("../../models").join(DEFAULT_MODEL_FILE));
    }
    v.push(PathBuf::from("/usr/share/edge-node/models").join(DEFAULT_MODEL_FILE));
    v
}

/// Where the face model is looked for when `[privacy] face_model` is not set:
/// the copy `scripts/setup.sh` fetches, then the container's.
pub fn default_face_model(config_dir: &Path) -> PathBuf {
    let name = "centerface_dynamic.onnx";
    let mut v = vec![
        config_dir.join("../third_party/models").join(name),
        PathBuf::from("third_party/models").join(name),
    ];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        v.push(dir.join("../../third_party/models").join(name));
    }
    v.push(PathBuf::from("/usr/share/edge-node/models").join(name));
    v.iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| v[1].clone())
}

/// The bundled model: the first candidate that exists (or the first candidate, for the message).
pub fn default_model(config_dir: &Path) -> PathBuf {
    let c = default_model_candidates(config_dir);
    c.iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| c[1].clone())
}

/// The files the config names (TLS and credential files) must exist;
/// returns warnings about secret files others can read.
fn check_files(ck: &mut Checks, raw: &PipelineFile, dir: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    for (field, p, secret) in [
        ("mqtt.ca_file", &raw.mqtt.ca_file, false),
        ("mqtt.client_cert", &raw.mqtt.client_cert, false),
        ("mqtt.client_key", &raw.mqtt.client_key, true),
        ("mqtt.username_file", &raw.mqtt.username_file, false),
        ("mqtt.password_file", &raw.mqtt.password_file, true),
    ] {
        if let Some(p) = p {
            check_file(ck, &mut warnings, field, &resolve(dir, p), secret);
        }
    }
    for (i, c) in raw.cameras.iter().enumerate() {
        for (name, p, secret) in [
            ("username_file", &c.username_file, false),
            ("password_file", &c.password_file, true),
        ] {
            if let Some(p) = p {
                let field = format!("cameras[{i}].{name}");
                check_file(ck, &mut warnings, &field, &resolve(dir, p), secret);
            }
        }
    }
    warnings
}

/// `r` (field `field`) must be a file; a `secret` one others can read is warned about.
fn check_file(ck: &mut Checks, warnings: &mut Vec<String>, field: &str, r: &Path, secret: bool) {
    if !r.is_file() {
        ck.err(
            field,
            format!("{} does not exist or is not a file", r.display()),
            "give the path of an existing file (relative paths are resolved against the config's folder)",
        );
    } else if secret && let Some(w) = secret_file_warning(field, r) {
        warnings.push(w);
    }
}

/// The validated file with its paths resolved.
fn build(file: &Path, raw: PipelineFile, warnings: Vec<String>) -> Result<Pipeline, ConfigError> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let broker = parse_broker_url(&raw.mqtt.url, raw.mqtt.embedded_port).map_err(|problem| {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            field: "mqtt.url".into(),
            problem,
            hint: "see the README".into(),
        }
    })?;
    let node_model = match &raw.detector.model {
        Some(m) => resolve(&dir, m),
        None => default_model(&dir),
    };
    let mut camera_models = Vec::new();
    let mut camera_urls = Vec::new();
    for c in &raw.cameras {
        camera_models.push(
            c.model
                .as_ref()
                .map(|m| resolve(&dir, m))
                .unwrap_or_else(|| node_model.clone()),
        );
        camera_urls.push(resolve_url(&dir, &c.url));
    }
    let onnxruntime = raw.detector.onnxruntime.as_ref().map(|p| resolve(&dir, p));
    let mut raw = raw;
    for p in [
        &mut raw.mqtt.ca_file,
        &mut raw.mqtt.client_cert,
        &mut raw.mqtt.client_key,
        &mut raw.mqtt.username_file,
        &mut raw.mqtt.password_file,
    ]
    .into_iter()
    .flatten()
    {
        *p = resolve(&dir, p);
    }
    for c in &mut raw.cameras {
        if let Some(u) = &mut c.detect_url {
            *u = resolve_url(&dir, u);
        }
        for p in [&mut c.username_file, &mut c.password_file]
            .into_iter()
            .flatten()
        {
            *p = resolve(&dir, p);
        }
    }
    let face_model = match &raw.privacy.face_model {
        Some(m) => resolve(&dir, m),
        None => default_face_model(&dir),
    };
    Ok(Pipeline {
        file: file.to_path_buf(),
        raw,
        broker,
        camera_models,
        camera_urls,
        onnxruntime,
        face_model,
        warnings,
    })
}

/// A warning when a secret file can be read by its group or by others
/// (`chmod 600` fixes it). `None` on non-Unix systems or when it is private.
pub fn secret_file_warning(field: &str, path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o044 != 0 {
            return Some(format!(
                "{field}: {} is readable by {} (mode {:o}); run `chmod 600 {}` so only the node's user can read the secret",
                path.display(),
                if mode & 0o004 != 0 {
                    "every user"
                } else {
                    "its group"
                },
                mode & 0o777,
                path.display()
            ));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = (field, path);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[node]
id = "box-1"
district = "hoan-kiem"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "hanoi"
[[cameras]]
id = "cam-1"
url = "rtsp://127.0.0.1:8554/test"
detect_fps = 5
"#;

    fn load(text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::from_str(Path::new("/tmp/x/pipeline.toml"), text)
    }

    #[test]
    fn zones_and_lines_parse_and_bad_geometry_names_the_field() {
        let good = format!(
            "{MIN}\n[[cameras.lines]]\nname = \"gate\"\na = [0.5, 0.9]\nb = [0.5, 0.1]\n\
             alert_direction = \"backward\"\n\
             [[cameras.zones]]\nname = \"sq\"\npolygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n\
             classes = [\"person\", \"unicorn\"]\nloiter_s = 30\n"
        );
        let p = load(&good).unwrap();
        let c = &p.raw.cameras[0];
        assert_eq!((c.lines.len(), c.zones.len()), (1, 1));
        assert_eq!(p.raw.rules.counts_interval_s, 60.0);
        let labels: Vec<String> = ["person", "car"].iter().map(|s| s.to_string()).collect();
        let (rc, unknown) = camera_rules(&p.raw.rules, c, &labels);
        assert!(rc.validate().is_ok());
        assert_eq!(unknown, ["unicorn"]);
        assert_eq!(rc.zones[0].classes, [0].into());
        assert_eq!(rc.zones[0].inertia, 3);
        // No per-rule cooldown given: the rule falls back to `[rules] cooldown_s`.
        assert_eq!(
            (rc.zones[0].cooldown_s, rc.lines[0].cooldown_s),
            (None, None)
        );
        let per_rule = good.replace("loiter_s = 30", "loiter_s = 30\ncooldown_s = 120");
        let p2 = load(&per_rule).unwrap();
        let (rc2, _) = camera_rules(&p2.raw.rules, &p2.raw.cameras[0], &labels);
        assert_eq!(rc2.zones[0].cooldown_s, Some(120.0));

        // (what is wrong, edited text, field the error must name)
        let cases = [
            (
                "point outside 0..1",
                good.replace("[0.5, 0.9]]", "[1.5, 0.9]]"),
                "cameras[0].zones[0].polygon",
            ),
            (
                "fewer than 3 points",
                good.replace(", [0.5, 0.9]]", "]"),
                "cameras[0].zones[0].polygon",
            ),
            (
                "a == b",
                good.replace("b = [0.5, 0.1]", "b = [0.5, 0.9]"),
                "cameras[0].lines[0].b",
            ),
            (
                "duplicate name",
                good.replace("name = \"sq\"", "name = \"gate\""),
                "cameras[0].lines[0].name",
            ),
            (
                "unknown alert direction",
                good.replace("alert_direction = \"backward\"", "alert_direction = \"up\""),
                "cameras[0].lines[0].alert_direction",
            ),
            (
                "zero inertia",
                good.replace("loiter_s = 30", "inertia = 0"),
                "cameras[0].zones[0].inertia",
            ),
            (
                "negative zone cooldown",
                good.replace("loiter_s = 30", "loiter_s = 30\ncooldown_s = -1"),
                "cameras[0].zones[0].cooldown_s",
            ),
            (
                "line cooldown longer than a day",
                good.replace(
                    "alert_direction = \"backward\"",
                    "alert_direction = \"backward\"\ncooldown_s = 1e9",
                ),
                "cameras[0].lines[0].cooldown_s",
            ),
            (
                "zero counts interval",
                format!("{good}\n[rules]\ncounts_interval_s = 0\n"),
                "rules.counts_interval_s",
            ),
        ];
        for (what, text, field) in cases {
            match load(&text) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{what}"),
                other => panic!("{what}: expected an error naming {field}, got {other:?}"),
            }
        }
        // Unknown fields in a zone are refused (deny_unknown_fields).
        assert!(matches!(
            load(&good.replace("loiter_s = 30", "loiter = 30")),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let p = load(MIN).unwrap();
        assert_eq!(
            p.broker,
            BrokerUrl::Tcp {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        let c = &p.raw.cameras[0];
        assert_eq!(c.detect_fps, 5.0);
        assert_eq!(c.queue, 2);
        assert!(c.realtime);
        assert_eq!(p.raw.detector.threshold, 0.35);
        assert!(!p.all_files());
    }

    #[test]
    fn unknown_field_names_field_and_file() {
        let err = load(&MIN.replace("detect_fps = 5", "detect_fps = 5\nfps = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipeline.toml"), "{err}");
        assert!(err.contains("unknown field `fps`"), "{err}");
    }

    #[test]
    fn bad_values_point_at_the_field() {
        let err = load(&MIN.replace("detect_fps = 5", "detect_fps = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cameras[0].detect_fps"), "{err}");
        assert!(err.contains("Fix:"), "{err}");
        let err = load(&MIN.replace("id = \"cam-1\"", "id = \"Cam 1\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cameras[0].id"), "{err}");
        let err = load(&MIN.replace("mqtt://127.0.0.1:1883", "http://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.url"), "{err}");
        let err = load(&MIN.replace(
            "[[cameras]]\nid = \"cam-1\"\nurl = \"rtsp://127.0.0.1:8554/test\"\ndetect_fps = 5\n",
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("cameras"), "{err}");
    }

    #[test]
    fn duplicate_camera_ids_are_refused() {
        let text = format!("{MIN}\n[[cameras]]\nid = \"cam-1\"\nurl = \"a.mp4\"\n");
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains("cameras[1].id") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("embedded", 7),
            Ok(BrokerUrl::Embedded { port: 7 })
        );
        assert_eq!(
            parse_broker_url("mqtts://broker.city:8884", 0),
            Ok(BrokerUrl::Tls {
                host: "broker.city".into(),
                port: 8884
            })
        );
        assert_eq!(
            parse_broker_url("mqtt://h", 0),
            Ok(BrokerUrl::Tcp {
                host: "h".into(),
                port: 1883
            })
        );
        assert!(parse_broker_url("mqtt://u:p@h", 0).is_err());
        assert!(parse_broker_url("mqtt://h:notaport", 0).is_err());
    }

    #[test]
    fn file_urls() {
        assert!(is_file_url("clip.mp4"));
        assert!(is_file_url("file:///a/b.mp4"));
        assert!(!is_file_url("rtsp://h/x"));
        assert!(!is_file_url("/dev/video0"));
    }

    #[test]
    fn metrics_listen_is_optional_and_must_be_an_address() {
        let cfg = Path::new("p.toml");
        let p = Pipeline::from_str(cfg, MIN).unwrap();
        assert_eq!(p.metrics_listen(), None, "no [metrics]: not served");
        let with = |l: &str| format!("{MIN}\n[metrics]\nlisten = \"{l}\"\n");
        let p = Pipeline::from_str(cfg, &with("127.0.0.1:9464")).unwrap();
        assert_eq!(p.metrics_listen(), Some("127.0.0.1:9464".parse().unwrap()));
        for bad in ["localhost:9464", "127.0.0.1", ":9464"] {
            let e = Pipeline::from_str(cfg, &with(bad)).unwrap_err().to_string();
            assert!(
                e.contains("metrics.listen") && e.contains("127.0.0.1:9464"),
                "{bad}: {e}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn password_file_is_checked_and_a_readable_one_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("pipeline.toml");
        let text = MIN.replace(
            "topic_prefix = \"hanoi\"",
            "topic_prefix = \"hanoi\"\npassword_file = \"secret\"",
        );
        // Missing: refused, naming the field.
        let e = Pipeline::from_str(&cfg, &text).unwrap_err().to_string();
        assert!(e.contains("mqtt.password_file"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = Pipeline::from_str(&cfg, &text).unwrap();
        assert_eq!(p.raw.mqtt.password_file.as_deref(), Some(secret.as_path()));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        let w = &p.warnings[0];
        assert!(
            w.contains("mqtt.password_file") && w.contains("chmod 600"),
            "{w}"
        );
        assert!(w.contains("every user"), "{w}");
        assert!(
            !w.contains("hunter2"),
            "the secret itself is never shown: {w}"
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p = Pipeline::from_str(&cfg, &text).unwrap();
        assert!(p.warnings[0].contains("its group"), "{:?}", p.warnings);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = Pipeline::from_str(&cfg, &text).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn budget_is_optional_positive_and_a_burst_needs_a_rate() {
        let dir = Path::new("/tmp/x/p.toml");
        let p = Pipeline::from_str(dir, MIN).unwrap();
        assert_eq!(p.raw.budget.bucket(), None, "no [budget]: no limit");
        let with = |t: &str| format!("{MIN}\n[budget]\n{t}\n");
        let p = Pipeline::from_str(dir, &with("snapshot_bytes_per_s = 20000")).unwrap();
        assert_eq!(
            p.raw.budget.bucket(),
            Some((20000.0, 200000.0)),
            "burst defaults to 10 s of the rate"
        );
        let p = Pipeline::from_str(dir, &with("snapshot_bytes_per_s = 1000")).unwrap();
        assert_eq!(
            p.raw.budget.bucket(),
            Some((1000.0, 65536.0)),
            "at least 64 KiB"
        );
        for (text, field) in [
            ("snapshot_bytes_per_s = 0", "budget.snapshot_bytes_per_s"),
            ("snapshot_bytes_per_s = -5", "budget.snapshot_bytes_per_s"),
            (
                "snapshot_bytes_per_s = 100\nburst_bytes = 0",
                "budget.burst_bytes",
            ),
            ("burst_bytes = 1000", "budget.burst_bytes"),
        ] {
            let e = Pipeline::from_str(dir, &with(text))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = Pipeline::from_str(dir, &with("bytes_per_s = 5"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes_per_s"), "unknown fields are refused: {e}");
    }

    #[test]
    fn traffic_stage_keys_are_checked_and_mapped() {
        use crate::traffic::TrafficConfig;
        // Defaults: the COCO groups, 0.6, riders paired, no ignore zones.
        let plan = load(MIN).unwrap().camera_plan(0);
        assert_eq!(plan.traffic, TrafficConfig::default());
        assert_eq!(
            plan.traffic.merge_classes,
            [vec!["bicycle", "motorcycle"], vec!["car", "bus", "truck"]]
        );
        let text = MIN.replace(
            "detect_fps = 5",
            "detect_fps = 5\nignore_zones = [[[0, 0.5], [0.5, 0.5], [0, 1]]]\nroad_zones = [[[0, 0.4], [1, 0.4], [1, 1], [0, 1]]]",
        ) + "[detector]\nmerge_classes = []\nmerge_iou = 0.7\npair_riders = false\nlone_riders = true\n";
        let t = load(&text).unwrap().camera_plan(0).traffic;
        assert!(t.merge_classes.is_empty());
        assert_eq!(
            (t.merge_iou, t.pair_riders, t.lone_riders),
            (0.7, false, true)
        );
        assert_eq!(t.ignore_zones, [vec![[0.0, 0.5], [0.5, 0.5], [0.0, 1.0]]]);
        assert_eq!(t.road_zones.len(), 1);
        // Every problem at once, each naming its field.
        let text = MIN.replace(
            "detect_fps = 5",
            "detect_fps = 5\nignore_zones = [[[0, 0], [1, 0]], [[0, 0], [2, 0], [0, 1]]]\nroad_zones = [[[0, 0], [1, 1]]]",
        ) + "[detector]\nmerge_iou = 1.5\nmerge_classes = [[\"car\"], [\"bus\", \"truck\"], [\"truck\", \"car\"]]\n";
        let e = load(&text).unwrap_err();
        let fields: Vec<String> = e.field_errors().into_iter().map(|e| e.field).collect();
        for f in [
            "detector.merge_iou",
            "detector.merge_classes[0]",
            "detector.merge_classes[2]",
            "cameras[0].ignore_zones[0]",
            "cameras[0].ignore_zones[1]",
            "cameras[0].road_zones[0]",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing in {e}");
        }
        assert_eq!(fields.len(), 6, "{e}");
        assert!(
            e.to_string()
                .contains("\"truck\" is in more than one group"),
            "{e}"
        );
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let text = MIN
            .replace("id = \"box-1\"", "id = \"Box 1\"")
            .replace("detect_fps = 5", "detect_fps = 0\nqueue = 0")
            + "\n[snapshot]\nquality = 0\n[rules]\ncooldown_s = -1\n";
        let e = load(&text).unwrap_err();
        let fields: Vec<String> = e.field_errors().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "node.id",
                "snapshot.quality",
                "cameras[0].detect_fps",
                "cameras[0].queue",
                "rules.cooldown_s"
            ],
            "{e}"
        );
        assert!(matches!(e, ConfigError::InvalidList { .. }));
        // One line per problem, each as a single error is written.
        let shown = e.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 5, "{shown}");
        for (line, field) in lines.iter().zip(&fields) {
            assert!(
                line.starts_with("invalid config /tmp/x/pipeline.toml: field `")
                    && line.contains(&format!("`{field}`"))
                    && line.contains(". Fix: "),
                "{line}"
            );
        }
        // A file error and a value error together.
        let text = MIN
            .replace(
                "topic_prefix = \"hanoi\"",
                "topic_prefix = \"hanoi\"\npassword_file = \"/nonexistent/secret\"",
            )
            .replace("detect_fps = 5", "detect_fps = 0");
        let fields: Vec<String> = load(&text)
            .unwrap_err()
            .field_errors()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["cameras[0].detect_fps", "mqtt.password_file"]);
        // One field, one error (the first problem found with it).
        let text = MIN.replace("id = \"cam-1\"", "id = \"Cam 1\"")
            + "[[cameras]]\nid = \"Cam 1\"\nurl = \"a.mp4\"\n";
        let e = load(&text).unwrap_err();
        let fields: Vec<String> = e.field_errors().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["cameras[0].id", "cameras[1].id"], "{e}");
    }

    #[test]
    fn minimal_plan_is_the_runtime_defaults() {
        use crate::events::EventConfig;
        use crate::snapshot::SnapshotOptions;
        use crate::source::SourceOptions;
        use crate::track::TrackerConfig;
        let p = load(&MIN.replace("detect_fps = 5\n", "")).unwrap();
        let plan = p.camera_plan(0);
        let src = SourceOptions::default();
        let s = &plan.source;
        assert_eq!(
            (s.camera.as_str(), s.url.as_str()),
            ("cam-1", "rtsp://127.0.0.1:8554/test")
        );
        assert_eq!(
            (
                s.detect_fps,
                s.max_height,
                s.realtime,
                s.loop_file,
                s.watchdog_s,
                s.backoff_initial_s,
                s.backoff_max_s,
                s.backoff_reset_s,
                s.rtsp_tcp
            ),
            (
                src.detect_fps,
                src.max_height,
                src.realtime,
                src.loop_file,
                src.watchdog_s,
                src.backoff_initial_s,
                src.backoff_max_s,
                src.backoff_reset_s,
                src.rtsp_tcp
            )
        );
        assert_eq!(plan.events, EventConfig::default());
        assert_eq!(
            plan.tracker,
            EventConfig::default().tracker_config(TrackerConfig::default())
        );
        let snap = SnapshotOptions::default();
        let s = &plan.snapshot;
        assert_eq!(
            (s.max_height, s.quality, s.crop, s.crop_margin, s.draw_box),
            (
                snap.max_height,
                snap.quality,
                snap.crop,
                snap.crop_margin,
                snap.draw_box
            )
        );
        assert!(s.masks.is_empty());
        let det = crate::detect::DetectorOptions::default();
        let d = &plan.detector;
        assert_eq!(
            (
                d.intra_threads,
                d.spinning,
                d.threshold,
                d.nms_iou,
                d.max_detections
            ),
            (
                det.intra_threads,
                det.spinning,
                det.threshold,
                det.nms_iou,
                det.max_detections
            )
        );
        assert_eq!(
            d.classes.as_deref().unwrap(),
            crate::detect::DEFAULT_CLASSES
        );
        assert_eq!(d.model, plan.model);
        assert_eq!(d.optimized_cache, Some(p.state_dir().join("ort-cache")));
        assert_eq!((plan.queue, plan.lossless), (DEFAULT_QUEUE, false));
        assert_eq!(plan.counts_interval_s, DEFAULT_COUNTS_INTERVAL_S);
        assert!(plan.faces.is_none());
        let (rules, unknown) = plan.rules(&[]);
        assert!(rules.is_empty() && unknown.is_empty());
        let r = crate::rules::RulesConfig::default();
        assert_eq!(
            (rules.stationary_s, rules.cooldown_s, rules.handoff_s),
            (r.stationary_s, r.cooldown_s, r.handoff_s)
        );
    }

    #[test]
    fn plan_maps_every_section() {
        let text = format!(
            "{}\nrealtime = false\nqueue = 7\nmax_height = 480\nwatchdog_s = 20\n\
             backoff_initial_s = 2\nbackoff_max_s = 60\nloop = true\nblur_faces = true\n\
             privacy_masks = [[[0, 0], [0.5, 0], [0, 0.5]]]\n\
             [[cameras.lines]]\nname = \"gate\"\na = [0.5, 0.9]\nb = [0.5, 0.1]\nclasses = [\"car\"]\n\
             [detector]\nthreads = 2\nspinning = true\nthreshold = 0.4\nnms_iou = 0.6\n\
             classes = [\"car\"]\nclass_thresholds = {{ car = 0.7 }}\n\
             [tracker]\nhigh_thresh = 0.55\nlow_thresh = 0.15\nnew_track_thresh = 0.65\nmatch_iou = 0.3\n\
             [events]\nmin_hits = 4\nend_after_s = 3\nupdate_min_interval_s = 6\n\
             snapshot_improvement = 0.4\nmax_updates = 6\n\
             [snapshot]\nmax_height = 240\nquality = 80\ncrop = true\ndraw_box = false\n\
             [rules]\ncounts_interval_s = 30\ncooldown_s = 5\n\
             [privacy]\nface_threshold = 0.4\nface_max_side = 320\n",
            MIN.replace("url = \"rtsp://127.0.0.1:8554/test\"", "url = \"clip.mp4\"")
                .replace(
                    "district = \"hoan-kiem\"",
                    "district = \"hoan-kiem\"\nstate_dir = \"/var/lib/edge\""
                )
        );
        let p = load(&text).unwrap();
        let plan = p.camera_plan(0);
        assert_eq!(p.plans().len(), 1);
        let s = &plan.source;
        assert!(s.url.ends_with("clip.mp4"), "{}", s.url);
        assert_eq!(
            (
                s.detect_fps,
                s.max_height,
                s.realtime,
                s.loop_file,
                s.watchdog_s,
                s.backoff_initial_s,
                s.backoff_max_s
            ),
            (5.0, 480, false, true, 20.0, 2.0, 60.0)
        );
        assert_eq!((plan.queue, plan.lossless), (7, true));
        let d = &plan.detector;
        assert_eq!(
            (d.intra_threads, d.spinning, d.threshold, d.nms_iou),
            (2, true, 0.4, 0.6)
        );
        assert_eq!(d.classes, Some(vec!["car".to_string()]));
        assert_eq!(d.class_thresholds.get("car"), Some(&0.7));
        assert_eq!(
            d.optimized_cache.as_deref(),
            Some(Path::new("/var/lib/edge/ort-cache"))
        );
        assert_eq!(p.state_dir(), Path::new("/var/lib/edge"));
        let t = &plan.tracker;
        assert_eq!(
            (
                t.high_thresh,
                t.low_thresh,
                t.new_track_thresh,
                t.match_iou,
                t.min_hits,
                t.max_lost_s
            ),
            (0.55, 0.15, 0.65, 0.3, 4, 3.0)
        );
        let e = &plan.events;
        assert_eq!(
            (
                e.min_hits,
                e.end_after_s,
                e.update_min_interval_s,
                e.snapshot_improvement,
                e.max_updates
            ),
            (4, 3.0, 6.0, 0.4, 6)
        );
        let sn = &plan.snapshot;
        assert_eq!(
            (sn.max_height, sn.quality, sn.crop, sn.draw_box),
            (240, 80, true, false)
        );
        assert_eq!(sn.masks, vec![vec![[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]]);
        assert_eq!(plan.counts_interval_s, 30.0);
        let labels: Vec<String> = ["person", "car"].iter().map(|s| s.to_string()).collect();
        let (rules, unknown) = plan.rules(&labels);
        assert!(unknown.is_empty());
        assert_eq!(rules.cooldown_s, 5.0);
        assert_eq!(rules.lines[0].classes, [1].into());
        assert_eq!(
            plan.faces,
            Some(FacePlan {
                model: p.face_model,
                threshold: 0.4,
                max_side: 320
            })
        );
    }

    #[test]
    fn tls_files_with_a_plaintext_url_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let text = MIN.replace(
            "topic_prefix = \"hanoi\"",
            "topic_prefix = \"hanoi\"\nca_file = \"ca.pem\"",
        );
        let e = Pipeline::from_str(&dir.path().join("p.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mqtt.url") && e.contains("plaintext") && e.contains("mqtts://"),
            "{e}"
        );
        let ok = text.replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883");
        Pipeline::from_str(&dir.path().join("p.toml"), &ok).unwrap();
    }

    /// `detect_url`: the analysed source is the sub-stream, the main stream
    /// `url` goes to the main-stream receiver with the camera's settings;
    /// a mixed pair, a fast file pair and a ring out of range are refused,
    /// each naming its field.
    #[test]
    fn dual_stream_camera_plan_and_validation() {
        let dual = MIN.replace(
            "detect_fps = 5\n",
            "detect_fps = 5\ndetect_url = \"rtsp://127.0.0.1:8554/sub\"\nmain_ring_s = 4\n",
        );
        let plan = load(&dual).unwrap().camera_plan(0);
        assert_eq!(plan.source.url, "rtsp://127.0.0.1:8554/sub");
        assert!(plan.source.reference_timestamps);
        let m = plan.main_stream.expect("a main stream");
        assert_eq!(m.url, "rtsp://127.0.0.1:8554/test");
        assert_eq!(
            (m.ring_s, m.ring_bytes, m.tolerance_s),
            (4.0, 32 << 20, 0.1)
        );
        let single = load(MIN).unwrap().camera_plan(0);
        assert!(single.main_stream.is_none() && !single.source.reference_timestamps);

        let fields = |text: &str| -> Vec<String> {
            load(text)
                .unwrap_err()
                .field_errors()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let mixed = MIN.replace(
            "detect_fps = 5\n",
            "detect_url = \"sub.mp4\"\nmain_ring_s = 0\n",
        );
        assert_eq!(
            fields(&mixed),
            ["cameras[0].detect_url", "cameras[0].main_ring_s"]
        );
        let fast = MIN
            .replace("rtsp://127.0.0.1:8554/test", "main.mp4")
            .replace(
                "detect_fps = 5\n",
                "detect_url = \"sub.mp4\"\nrealtime = false\n",
            );
        assert_eq!(fields(&fast), ["cameras[0].realtime"]);
        let files = fast.replace("realtime = false\n", "");
        let plan = load(&files).unwrap().camera_plan(0);
        assert_eq!(plan.source.url, "/tmp/x/sub.mp4");
        assert_eq!(plan.main_stream.unwrap().url, "/tmp/x/main.mp4");
    }
}
