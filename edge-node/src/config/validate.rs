//! Validation: every check of a file, collected (one error per field), so
//! `check` and `run` report all problems of a file at once. The config's own
//! range checks come first; then each module's `validate()` runs on the
//! values the node would build, as a backstop, its errors named by the
//! config field they come from.

use std::collections::HashSet;
use std::path::Path;

use super::plan::{camera_rules, event_config, snapshot_options, tamper_config, tracker_config};
use super::{
    BrokerUrl, CameraSection, ConfigError, InputPixels, MAX_CAMERAS, PipelineFile, parse_broker_url,
};
use crate::events::EventConfigError;
use crate::rules::RulesError;
use crate::snapshot::SnapshotError;
use crate::source::DecoderChoice;
use crate::tamper::TamperError;
use crate::track::TrackConfigError;

/// One problem of a config file: the field, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
    pub hint: String,
}

/// The problems found so far in one file.
pub(super) struct Checks {
    file: std::path::PathBuf,
    errors: Vec<FieldError>,
}

impl Checks {
    pub(super) fn new(file: &Path) -> Checks {
        Checks {
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    /// Records a problem of `field`, unless that field already has one.
    pub(super) fn err(
        &mut self,
        field: impl Into<String>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let field = field.into();
        if self.errors.iter().any(|e| e.field == field) {
            return;
        }
        self.errors.push(FieldError {
            field,
            problem: problem.into(),
            hint: hint.into(),
        });
    }

    /// A module's error, recorded only when no field under `sections`
    /// already has one (the config's own check then said it better).
    fn module(
        &mut self,
        sections: &[&str],
        field: impl Into<String>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) {
        if self
            .errors
            .iter()
            .any(|e| sections.iter().any(|s| e.field.starts_with(s)))
        {
            return;
        }
        self.err(field, problem, hint);
    }

    fn id(&mut self, field: &str, value: &str) {
        if !valid_id(value) {
            self.err(
                field,
                format!("{value:?} is not a valid id"),
                "use 1 to 64 characters from a-z, 0-9, '-' and '_' (it becomes an MQTT topic level)",
            );
        }
    }

    fn range<T: PartialOrd + std::fmt::Display + Copy>(&mut self, field: &str, v: T, lo: T, hi: T) {
        if v >= lo && v <= hi {
            return;
        }
        self.err(
            field,
            format!("{v} is out of range"),
            format!("use a value from {lo} to {hi}"),
        );
    }

    /// The problems found, in the order found.
    pub(super) fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// `Ok` when nothing was found; one problem as [`ConfigError::Invalid`],
    /// several as [`ConfigError::InvalidList`].
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        match ConfigError::from_fields(&self.file, self.errors) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// Ids go into MQTT topic levels: no `/`, `+`, `#`, spaces or capitals.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Tracker settings that have a key in `[tracker]`.
/// `[outbox] keep_delivered_s` at most: 30 days.
const MAX_KEEP_DELIVERED_S: f64 = 30.0 * 86400.0;

const TRACKER_KEYS: &[&str] = &["high_thresh", "low_thresh", "new_track_thresh", "match_iou"];

/// Each module's own `validate()` on what the node builds from the file:
/// the tracker, the event engine, the snapshot encoder and each camera's
/// rules. Their errors are named by the config field they come from.
fn check_modules(ck: &mut Checks, p: &PipelineFile) {
    let events = event_config(&p.events);
    if let Err(e) = events.validate() {
        let field = match &e {
            EventConfigError::Negative { name, .. } => format!("events.{name}"),
            EventConfigError::MinHits => "events.min_hits".into(),
            EventConfigError::EdgeMargin(_) => "events".into(),
        };
        ck.module(
            &["events."],
            field,
            e.to_string(),
            "use a value the event engine accepts (see the README's [events] row)",
        );
    }
    if let Err(e) = tracker_config(&p.tracker, &events).validate() {
        let field = match &e {
            TrackConfigError::OutOfRange { name, .. } if TRACKER_KEYS.contains(name) => {
                format!("tracker.{name}")
            }
            TrackConfigError::OutOfRange { .. } => "tracker".into(),
            TrackConfigError::LowAboveHigh { .. } => "tracker.low_thresh".into(),
            TrackConfigError::MaxLost(_) => "events.end_after_s".into(),
            TrackConfigError::MinHits => "events.min_hits".into(),
        };
        ck.module(
            &["tracker.", "events."],
            field,
            e.to_string(),
            "use a value the tracker accepts (see the README's [tracker] and [events] rows)",
        );
    }
    if let Err(e) = snapshot_options(&p.snapshot, &[]).validate() {
        let field = match &e {
            SnapshotError::Options(msg) => match msg.split(' ').next() {
                Some(k @ ("max_height" | "quality" | "crop" | "draw_box")) => {
                    format!("snapshot.{k}")
                }
                _ => "snapshot".into(),
            },
            _ => "snapshot".into(),
        };
        ck.module(
            &["snapshot."],
            field,
            e.to_string(),
            "use a value the snapshot encoder accepts (see the README's [snapshot] row)",
        );
    }
    for (i, c) in p.cameras.iter().enumerate() {
        if let Err(e) = tamper_config(&c.tamper).validate() {
            let field = match &e {
                TamperError::OutOfRange { name, .. } => format!("cameras[{i}].tamper.{name}"),
                TamperError::Bands(_) => format!("cameras[{i}].tamper.ignore_bottom"),
            };
            ck.module(
                &[&format!("cameras[{i}].tamper.")],
                field,
                e.to_string(),
                "use a value the tamper checks accept (see the README's [cameras.tamper] row)",
            );
        }
        let (rules, _) = camera_rules(&p.rules, c, &[]);
        if let Err(e) = rules.validate() {
            let RulesError::Invalid { rule, .. } = &e;
            let field = if let Some(k) = c.zones.iter().position(|z| &z.name == rule) {
                format!("cameras[{i}].zones[{k}]")
            } else if let Some(k) = c.lines.iter().position(|l| &l.name == rule) {
                format!("cameras[{i}].lines[{k}]")
            } else {
                "rules".into()
            };
            let zones = format!("cameras[{i}].zones");
            let lines = format!("cameras[{i}].lines");
            ck.module(
                &[&zones, &lines, "rules."],
                field,
                e.to_string(),
                "fix the zone or line as the README's scene rules section describes",
            );
        }
    }
}

/// Pure checks: no file system, no network. Every problem is reported, not
/// only the first (one per field): a single one as [`ConfigError::Invalid`],
/// several as [`ConfigError::InvalidList`].
pub fn validate(file: &Path, p: &PipelineFile) -> Result<(), ConfigError> {
    let mut ck = Checks::new(file);
    check_file(&mut ck, p);
    ck.finish()
}

/// [`validate`] into `ck`: the config's own checks, then each module's
/// `validate()` on the values the node would build from the file.
pub(super) fn check_file(ck: &mut Checks, p: &PipelineFile) {
    check_node_and_mqtt(ck, p);
    check_sections(ck, p);
    check_cameras(ck, p);
    check_node_wide(ck, p);
    check_modules(ck, p);
}

/// `[node]` and `[mqtt]`.
fn check_node_and_mqtt(ck: &mut Checks, p: &PipelineFile) {
    ck.id("node.id", &p.node.id);
    ck.id("node.district", &p.node.district);
    check_decoder(ck, "node.decoder", &p.node.decoder);
    let prefix = &p.mqtt.topic_prefix;
    if prefix.starts_with('$') {
        ck.err(
            "mqtt.topic_prefix",
            format!("{prefix:?} starts with '$': brokers keep such topics for themselves ($SYS) and drop what clients publish there"),
            "use a prefix that starts with a letter or digit, e.g. \"hanoi\"",
        );
    } else if prefix.is_empty()
        || prefix
            .split('/')
            .any(|l| l.is_empty() || l.contains(['+', '#', ' ']) || l.chars().any(char::is_control))
    {
        ck.err(
            "mqtt.topic_prefix",
            format!("{prefix:?} is not a usable topic prefix"),
            "use one or more non-empty topic levels without '+', '#', spaces or control characters, e.g. \"hanoi\"",
        );
    }
    match parse_broker_url(&p.mqtt.url, p.mqtt.embedded_port) {
        Err(problem) => ck.err(
            "mqtt.url",
            problem,
            "use \"mqtt://host:1883\", \"mqtts://host:8883\" or \"embedded\"",
        ),
        Ok(BrokerUrl::Tcp { .. }) if p.mqtt.ca_file.is_some() || p.mqtt.client_cert.is_some() => ck
            .err(
                "mqtt.url",
                format!(
                    "{:?} is plaintext MQTT but TLS files (ca_file / client_cert) are configured",
                    p.mqtt.url
                ),
                "use an mqtts:// URL (a node configured for TLS never falls back to plaintext), \
                 or remove the TLS files",
            ),
        Ok(BrokerUrl::Tls { .. }) if p.mqtt.ca_file.is_none() => ck.err(
            "mqtt.ca_file",
            "mqtts:// needs a CA file to verify the broker",
            "set mqtt.ca_file to the PEM of the CA that signed the broker's certificate",
        ),
        Ok(_) => {}
    }
    if p.mqtt.client_cert.is_some() != p.mqtt.client_key.is_some() {
        ck.err(
            "mqtt.client_cert",
            "client_cert and client_key must be given together",
            "set both mqtt.client_cert and mqtt.client_key, or neither",
        );
    }
    ck.range(
        "mqtt.max_packet_bytes",
        p.mqtt.max_packet_bytes,
        64 << 10,
        256 << 20,
    );
    ck.range("mqtt.keep_alive_s", p.mqtt.keep_alive_s, 5, 3600);
}

/// `[detector] merge_classes`: groups of two or more names, each name in
/// one group only.
fn check_merge_classes(ck: &mut Checks, groups: &[Vec<String>]) {
    let mut seen = HashSet::new();
    for (g, names) in groups.iter().enumerate() {
        let field = format!("detector.merge_classes[{g}]");
        if names.len() < 2 {
            ck.err(
                &field,
                format!("a group needs at least 2 class names, got {}", names.len()),
                "list the classes the model confuses on one object, e.g. [\"car\", \"bus\", \"truck\"], or remove the group",
            );
        }
        for n in names {
            if !seen.insert(n.as_str()) {
                ck.err(
                    &field,
                    format!("class {n:?} is in more than one group"),
                    "put each class in one group only (join the groups instead)",
                );
            }
        }
    }
}

/// `input_pixels`: a pixel count in range, `"model"` or a preset name.
fn check_input_pixels(ck: &mut Checks, field: &str, v: Option<&InputPixels>) {
    if let Some(v) = v
        && let Err(problem) = v.budget()
    {
        ck.err(
            field,
            problem,
            "e.g. input_pixels = 173056 (416x416 worth, the bundled model's cost), \"detailed\" for small motorbikes, or remove it for the default (\"standard\")",
        );
    }
}

/// `[detector] provider` and `provider_device`.
fn check_provider(ck: &mut Checks, provider: &str, device: Option<&str>) {
    let provider = match crate::detect::Provider::parse(provider) {
        Ok(p) => p,
        Err(problem) => {
            ck.err(
                "detector.provider",
                problem,
                "e.g. provider = \"openvino\" (after scripts/fetch-onnxruntime.sh --flavour openvino), or remove it for the default (\"cpu\")",
            );
            return;
        }
    };
    if let Some(device) = device
        && let Err(problem) = provider.check_device(device)
    {
        ck.err(
            "detector.provider_device",
            problem,
            "e.g. provider_device = \"GPU\" with provider = \"openvino\", \"1\" with cuda or tensorrt, or remove it for the provider's default",
        );
    }
}

/// `[detector]`, `[tracker]`, `[events]`, `[snapshot]`.
fn check_sections(ck: &mut Checks, p: &PipelineFile) {
    let d = &p.detector;
    ck.range("detector.threads", d.threads, 1, 64);
    ck.range("detector.workers", d.workers, 1, 64);
    ck.range("detector.threshold", d.threshold, 0.0, 1.0);
    ck.range("detector.nms_iou", d.nms_iou, 0.0, 1.0);
    for (k, v) in &d.class_thresholds {
        ck.range(&format!("detector.class_thresholds.{k}"), *v, 0.0, 1.0);
    }
    ck.range("detector.merge_iou", d.merge_iou, 0.0, 1.0);
    check_merge_classes(ck, &d.merge_classes);
    check_input_pixels(ck, "detector.input_pixels", d.input_pixels.as_ref());
    check_provider(ck, &d.provider, d.provider_device.as_deref());
    if let Some(c) = &d.classes
        && c.is_empty()
    {
        ck.err("detector.classes",
            "the list is empty, so nothing would ever be detected",
            "list at least one class name, or remove the field for the default (person, bicycle, car, motorcycle, bus, truck)",
        );
    }

    let t = &p.tracker;
    ck.range("tracker.high_thresh", t.high_thresh, 0.0, 1.0);
    ck.range("tracker.low_thresh", t.low_thresh, 0.0, t.high_thresh);
    ck.range("tracker.new_track_thresh", t.new_track_thresh, 0.0, 1.0);
    ck.range("tracker.match_iou", t.match_iou, 0.01, 1.0);

    let e = &p.events;
    ck.range("events.min_hits", e.min_hits, 1, 1000);
    ck.range("events.end_after_s", e.end_after_s, 0.1, 3600.0);
    ck.range(
        "events.update_min_interval_s",
        e.update_min_interval_s,
        0.0,
        86400.0,
    );
    ck.range(
        "events.snapshot_improvement",
        e.snapshot_improvement,
        0.0,
        100.0,
    );

    let s = &p.snapshot;
    ck.range("snapshot.max_height", s.max_height, 32, 4320);
    ck.range("snapshot.quality", s.quality, 1, 100);
}

/// `[[cameras]]`: how many, unique ids, then each camera.
fn check_cameras(ck: &mut Checks, p: &PipelineFile) {
    if p.cameras.is_empty() {
        ck.err(
            "cameras",
            "no camera is configured",
            "add at least one [[cameras]] table with id, url and detect_fps",
        );
    }
    if p.cameras.len() > MAX_CAMERAS {
        ck.err(
            "cameras",
            format!(
                "{} cameras are configured, more than the limit of {MAX_CAMERAS} per node",
                p.cameras.len()
            ),
            format!("split the cameras over several nodes, at most {MAX_CAMERAS} each"),
        );
    }
    let mut seen = HashSet::new();
    for (i, c) in p.cameras.iter().enumerate() {
        let f = |name: &str| format!("cameras[{i}].{name}");
        ck.id(&f("id"), &c.id);
        if !seen.insert(c.id.as_str()) {
            ck.err(
                f("id"),
                format!("camera id {:?} is used twice", c.id),
                "give every camera its own id",
            );
        }
        check_camera(ck, i, c);
    }
}

/// One camera's fields, its rules and its privacy masks.
fn check_camera(ck: &mut Checks, i: usize, c: &CameraSection) {
    let f = |name: &str| format!("cameras[{i}].{name}");
    if c.url.trim().is_empty() {
        ck.err(
            f("url"),
            "the url is empty",
            "give an rtsp://, http(s)://, file:// URL, a path or /dev/videoN",
        );
    }
    check_camera_url(ck, i, c);
    check_dual_stream(ck, i, c);
    ck.range(&f("detect_fps"), c.detect_fps, 0.1, 60.0);
    ck.range(&f("max_height"), c.max_height, 64, 4320);
    ck.range(&f("watchdog_s"), c.watchdog_s, 1.0, 3600.0);
    ck.range(&f("backoff_initial_s"), c.backoff_initial_s, 0.05, 3600.0);
    ck.range(
        &f("backoff_max_s"),
        c.backoff_max_s,
        c.backoff_initial_s,
        86400.0,
    );
    ck.range(&f("queue"), c.queue, 1, 64);
    check_input_pixels(ck, &f("input_pixels"), c.input_pixels.as_ref());
    check_rules(ck, i, c);
    check_tamper(ck, i, c);
    if let Some(d) = &c.decoder {
        check_decoder(ck, &f("decoder"), d);
    }
    ck.range(&f("decoder_threads"), c.decoder_threads, 0, 64);
    if !["auto", "keyframes", "full"].contains(&c.idle_decode.as_str()) {
        ck.err(
            f("idle_decode"),
            format!("{:?} is not an idle decoding mode", c.idle_decode),
            "use \"auto\" (keyframes for live cameras, full for files), \"keyframes\" or \"full\"",
        );
    }
    ck.range(&f("idle_after_s"), c.idle_after_s, 1.0, 86400.0);
    for (k, poly) in c.privacy_masks.iter().enumerate() {
        check_polygon(
            ck,
            &format!("cameras[{i}].privacy_masks[{k}]"),
            "a mask",
            poly,
        );
    }
    for (k, poly) in c.road_zones.iter().enumerate() {
        check_polygon(
            ck,
            &format!("cameras[{i}].road_zones[{k}]"),
            "a road zone",
            poly,
        );
    }
    for (k, poly) in c.ignore_zones.iter().enumerate() {
        check_polygon(
            ck,
            &format!("cameras[{i}].ignore_zones[{k}]"),
            "an ignore zone",
            poly,
        );
    }
}

/// A decoder choice (`source::DecoderChoice`); whether its elements are
/// installed is checked when the camera starts (and by `check --probe`).
fn check_decoder(ck: &mut Checks, field: &str, value: &str) {
    if DecoderChoice::parse(value).is_none() {
        ck.err(
            field,
            format!("{value:?} is not a decoder choice"),
            format!("use one of {}", DecoderChoice::NAMES.join(", ")),
        );
    }
}

/// A polygon in normalised frame coordinates: at least 3 points, all in 0..1.
fn check_polygon(ck: &mut Checks, field: &str, what: &str, poly: &[[f32; 2]]) {
    if poly.len() < 3 {
        ck.err(
            field,
            format!("{what} needs at least 3 points, got {}", poly.len()),
            "give the polygon's corners as [[x, y], ...] in 0..1 of the frame",
        );
    }
    if poly
        .iter()
        .flatten()
        .any(|v| !(v.is_finite() && (0.0..=1.0).contains(v)))
    {
        ck.err(
            field,
            "a point lies outside 0..1",
            "coordinates are fractions of the frame width and height, from 0 to 1",
        );
    }
}

/// The URL's syntax and scheme (the same parser the source opens it with),
/// and the camera's credentials: from the URL or from files/variables, not both.
fn check_camera_url(ck: &mut Checks, i: usize, c: &CameraSection) {
    let f = |name: &str| format!("cameras[{i}].{name}");
    if c.url.trim().is_empty() {
        return;
    }
    if let Err(e) = crate::source::validate_url(&c.url) {
        ck.err(
            f("url"),
            e.to_string(),
            "use rtsp://host/path, http(s)://host/path, file:///abs/path, a path, /dev/videoN or v4l2:///dev/videoN",
        );
        return;
    }
    let from_fields =
        |file: &Option<std::path::PathBuf>, env: &Option<String>| file.is_some() || env.is_some();
    let has_user = from_fields(&c.username_file, &c.username_env);
    let has_pass = from_fields(&c.password_file, &c.password_env);
    if !(has_user || has_pass) {
        return;
    }
    let field = if has_pass {
        if c.password_file.is_some() {
            f("password_file")
        } else {
            f("password_env")
        }
    } else if c.username_file.is_some() {
        f("username_file")
    } else {
        f("username_env")
    };
    let live = crate::source::classify(&c.url) == crate::source::SourceKind::Live;
    let userinfo = c
        .url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .and_then(|auth| auth.rsplit_once('@').map(|(u, _)| u));
    if !live || c.url.starts_with("/dev/") || c.url.starts_with("v4l2:") {
        ck.err(
            field,
            "credentials are configured for a camera that is not an rtsp:// or http(s):// stream",
            "remove the credential fields, or give the camera's network URL",
        );
    } else if let Some(u) = userinfo {
        let what = if u.contains(':') {
            "a user name and password"
        } else {
            "a user name"
        };
        ck.err(
            field,
            format!("the camera URL already carries {what} (user info before '@') and the credential fields give them again"),
            "remove the user info from the URL and keep the secret in username_file/password_file (or the variables)",
        );
    } else if has_pass && !has_user {
        ck.err(
            field,
            "a password is configured but no user name",
            "set username_file or username_env too",
        );
    }
}

/// A dual-stream camera (`detect_url`): both URLs valid and of one kind
/// (two files, or two network streams: their clocks must be comparable),
/// not a device; files played at their own rate; the ring and the
/// tolerance in range.
fn check_dual_stream(ck: &mut Checks, i: usize, c: &CameraSection) {
    use crate::source::{SourceKind, classify, validate_url};
    let f = |name: &str| format!("cameras[{i}].{name}");
    let Some(d) = &c.detect_url else {
        return;
    };
    let device = |u: &str| u.starts_with("/dev/") || u.starts_with("v4l2:");
    if let Err(e) = validate_url(d) {
        ck.err(
            f("detect_url"),
            e.to_string(),
            "give the camera's sub-stream: rtsp://host/path, http(s)://host/path, file:///abs/path or a path",
        );
    } else if device(d) || device(&c.url) {
        ck.err(
            f("detect_url"),
            "a video device cannot be one stream of a dual-stream camera",
            "remove detect_url, or give two network streams (or two files)",
        );
    } else if classify(d) != classify(&c.url) {
        ck.err(
            f("detect_url"),
            "url and detect_url are not of one kind (one is a file, the other a network stream): their times cannot be matched",
            "give two streams of the same camera, or two files cut from the same recording",
        );
    } else if classify(d) == SourceKind::File && !c.realtime {
        ck.err(
            f("realtime"),
            "a dual-stream file camera must play at its own rate: the main stream's ring follows the clock, not the analysis",
            "set realtime = true, or remove detect_url",
        );
    }
    ck.range(&f("main_ring_s"), c.main_ring_s, 1.0, 120.0);
    ck.range(&f("main_ring_mib"), c.main_ring_mib, 1, 1024);
    ck.range(&f("match_tolerance_s"), c.match_tolerance_s, 0.001, 2.0);
}

/// `[cameras.tamper]`: every setting in its range (the ranges are the
/// tamper module's own), and the ignored bands leave enough picture.
fn check_tamper(ck: &mut Checks, i: usize, c: &CameraSection) {
    let t = tamper_config(&c.tamper);
    for (name, value, lo, hi) in t.ranges() {
        // f32 settings are shown as written, not as their nearest f64.
        let value = (value * 1e6).round() / 1e6;
        ck.range(&format!("cameras[{i}].tamper.{name}"), value, lo, hi);
    }
    let bands = f64::from(c.tamper.ignore_top) + f64::from(c.tamper.ignore_bottom);
    if bands > 0.8 {
        ck.err(
            format!("cameras[{i}].tamper.ignore_bottom"),
            format!("ignore_top + ignore_bottom = {bands:.2} leaves too little of the picture"),
            "keep the two ignored bands at 0.8 of the picture height or less together",
        );
    }
}

/// `[privacy]`, `[rules]`, `[outbox]`, `[budget]`, `[metrics]`.
fn check_node_wide(ck: &mut Checks, p: &PipelineFile) {
    if let Some(t) = p.privacy.face_threshold {
        ck.range("privacy.face_threshold", t, 0.01, 1.0);
    }
    if let Some(m) = p.privacy.face_max_side {
        ck.range("privacy.face_max_side", m, 32, 4096);
    }
    let r = &p.rules;
    ck.range("rules.counts_interval_s", r.counts_interval_s, 0.1, 86400.0);
    ck.range("rules.cooldown_s", r.cooldown_s, 0.0, 86400.0);
    if let Some(v) = r.realert_s {
        ck.range("rules.realert_s", v, 0.0, 86400.0);
    }
    ck.range("rules.stationary_s", r.stationary_s, 0.0, 86400.0);
    ck.range(
        "rules.stationary_tolerance",
        r.stationary_tolerance,
        0.0,
        1.0,
    );
    ck.range("rules.handoff_s", r.handoff_s, 0.0, 60.0);
    ck.range("rules.handoff_speed", r.handoff_speed, 0.0, 100.0);
    for (field, v) in [
        ("node.status_interval_s", p.node.status_interval_s),
        ("node.broker_unhealthy_s", p.node.broker_unhealthy_s),
        ("node.stall_unhealthy_s", p.node.stall_unhealthy_s),
    ] {
        if !(v.is_finite() && v > 0.0) {
            ck.err(
                field,
                format!("{v} is not a positive number"),
                "use a positive number of seconds (see the README's health rules)",
            );
        }
    }
    let o = &p.outbox;
    for (field, v) in [
        ("outbox.quota_mb", o.quota_mb),
        ("outbox.replay_rate", o.replay_rate),
        ("outbox.stats_interval_s", o.stats_interval_s),
    ] {
        if !(v.is_finite() && v > 0.0) {
            ck.err(
                field,
                format!("{v} is not a positive number"),
                "use a positive number (see docs/outbox.md)",
            );
        }
    }
    ck.range(
        "outbox.keep_delivered_s",
        o.keep_delivered_s,
        0.0,
        MAX_KEEP_DELIVERED_S,
    );
    let b = &p.budget;
    for (field, v) in [
        ("budget.snapshot_bytes_per_s", b.snapshot_bytes_per_s),
        ("budget.burst_bytes", b.burst_bytes),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            ck.err(
                field,
                format!("{v} is not a positive number of bytes"),
                "use a positive number (e.g. 20000 for 20 kB/s), or remove [budget] for no limit",
            );
        }
    }
    if let Some(l) = &p.metrics.listen
        && l.parse::<std::net::SocketAddr>().is_err()
    {
        ck.err(
            "metrics.listen",
            format!("{l:?} is not an IP address and port"),
            "use e.g. \"127.0.0.1:9464\" (loopback: only this box can scrape), or remove [metrics]",
        );
    }
    if b.burst_bytes.is_some() && b.snapshot_bytes_per_s.is_none() {
        ck.err(
            "budget.burst_bytes",
            "a burst without a rate",
            "set budget.snapshot_bytes_per_s too (the burst is what may be saved up of that rate)",
        );
    }
}

fn check_rules(ck: &mut Checks, i: usize, c: &CameraSection) {
    let unit = |p: &[f32; 2]| p.iter().all(|v| (0.0..=1.0).contains(v));
    let mut names = HashSet::new();
    for (k, z) in c.zones.iter().enumerate() {
        let f = |name: &str| format!("cameras[{i}].zones[{k}].{name}");
        ck.id(&f("name"), &z.name);
        if !names.insert(z.name.as_str()) {
            ck.err(
                f("name"),
                format!("zone/line name {:?} is used twice on this camera", z.name),
                "give every zone and line of a camera its own name",
            );
        }
        if z.polygon.len() < 3 {
            ck.err(
                f("polygon"),
                format!("{} points do not make an area", z.polygon.len()),
                "give at least 3 [x, y] points",
            );
        }
        if let Some(p) = z.polygon.iter().find(|p| !unit(p)) {
            ck.err(
                f("polygon"),
                format!("point {p:?} is outside the frame"),
                "use normalised coordinates: x and y from 0 to 1 (0,0 = top left)",
            );
        }
        ck.range(&f("min_area"), z.min_area, 0.0, 1.0);
        ck.range(&f("inertia"), z.inertia, 1, 1000);
        if let Some(v) = z.loiter_s {
            ck.range(&f("loiter_s"), v, 0.1, 86400.0);
        }
        if let Some(v) = z.crowd_min {
            ck.range(&f("crowd_min"), v, 1, 10000);
        }
        ck.range(&f("crowd_for_s"), z.crowd_for_s, 0.0, 86400.0);
        ck.range(&f("crowd_clear_s"), z.crowd_clear_s, 0.0, 86400.0);
        if let Some(v) = z.cooldown_s {
            ck.range(&f("cooldown_s"), v, 0.0, 86400.0);
        }
    }
    for (k, l) in c.lines.iter().enumerate() {
        let f = |name: &str| format!("cameras[{i}].lines[{k}].{name}");
        ck.id(&f("name"), &l.name);
        if !names.insert(l.name.as_str()) {
            ck.err(
                f("name"),
                format!("zone/line name {:?} is used twice on this camera", l.name),
                "give every zone and line of a camera its own name",
            );
        }
        for (field, p) in [("a", &l.a), ("b", &l.b)] {
            if !unit(p) {
                ck.err(
                    f(field),
                    format!("point {p:?} is outside the frame"),
                    "use normalised coordinates: x and y from 0 to 1 (0,0 = top left)",
                );
            }
        }
        if l.a == l.b {
            ck.err(
                f("b"),
                "a and b are the same point, so there is no line",
                "give two distinct points",
            );
        }
        ck.id(&f("forward"), &l.forward);
        ck.id(&f("backward"), &l.backward);
        if l.forward == l.backward {
            ck.err(
                f("backward"),
                "both directions have the same name",
                "name the two directions differently, e.g. \"in\" and \"out\"",
            );
        }
        ck.range(&f("hysteresis"), l.hysteresis, 0.0, 0.5);
        ck.range(&f("inertia"), l.inertia, 1, 1000);
        if let Some(d) = &l.alert_direction
            && d != &l.forward
            && d != &l.backward
        {
            ck.err(
                f("alert_direction"),
                format!("{d:?} is neither {:?} nor {:?}", l.forward, l.backward),
                "use one of the line's two direction names",
            );
        }
        if let Some(v) = l.cooldown_s {
            ck.range(&f("cooldown_s"), v, 0.0, 86400.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> PipelineFile {
        toml::from_str(
            r#"
[node]
id = "box-1"
district = "d"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "p"
[[cameras]]
id = "cam-1"
url = "rtsp://127.0.0.1:8554/test"
[[cameras.lines]]
name = "gate"
a = [0.5, 0.9]
b = [0.5, 0.1]
"#,
        )
        .unwrap()
    }

    fn module_fields(p: &PipelineFile) -> Vec<String> {
        let mut ck = Checks::new(Path::new("p.toml"));
        check_modules(&mut ck, p);
        ck.errors.into_iter().map(|e| e.field).collect()
    }

    /// The modules' own checks run on what the node builds, and their errors
    /// name the config field (the config's checks are stricter, so these are
    /// called directly here).
    #[test]
    fn module_validate_errors_name_the_config_field() {
        let good = file();
        assert!(module_fields(&good).is_empty());
        let mut p = good.clone();
        p.events.end_after_s = -1.0;
        p.snapshot.quality = 0;
        p.cameras[0].lines[0].b = p.cameras[0].lines[0].a;
        assert_eq!(
            module_fields(&p),
            [
                "events.end_after_s",
                "snapshot.quality",
                "cameras[0].lines[0]"
            ]
        );
        let mut p = good.clone();
        p.tracker.low_thresh = 0.9;
        assert_eq!(module_fields(&p), ["tracker.low_thresh"]);
        let mut p = good;
        p.events.min_hits = 0;
        p.rules.handoff_s = f64::NAN;
        assert_eq!(module_fields(&p), ["events.min_hits", "rules"]);
    }

    /// A module's error is dropped when the config already named a field of
    /// that section: one problem, one message.
    #[test]
    fn module_errors_do_not_repeat_the_config_checks() {
        let mut p = file();
        p.snapshot.quality = 0;
        p.cameras[0].lines[0].b = p.cameras[0].lines[0].a;
        let mut ck = Checks::new(Path::new("p.toml"));
        check_file(&mut ck, &p);
        let fields: Vec<String> = ck.errors.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["snapshot.quality", "cameras[0].lines[0].b"]);
    }

    /// Brokers drop what clients publish under `$…` (`$SYS`), and a control
    /// character makes the broker close the connection: both are refused.
    #[test]
    fn topic_prefix_refuses_dollar_and_control_characters() {
        let fields = |prefix: &str| {
            let mut p = file();
            p.mqtt.topic_prefix = prefix.into();
            let mut ck = Checks::new(Path::new("p.toml"));
            check_node_and_mqtt(&mut ck, &p);
            ck.errors
                .into_iter()
                .map(|e| (e.field, e.problem))
                .collect::<Vec<_>>()
        };
        assert!(fields("hanoi/north").is_empty());
        for bad in ["$SYS", "$share/x", "ha\u{7}noi", "a/\tb", "a//b", "a/+", ""] {
            let errs = fields(bad);
            assert_eq!(errs.len(), 1, "{bad:?}: {errs:?}");
            assert_eq!(errs[0].0, "mqtt.topic_prefix");
        }
        assert!(fields("$SYS")[0].1.contains("$SYS"));
    }
}
