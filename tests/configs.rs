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
    assert_eq!(v["mqtt"]["topics"], "edge/demo/demo-box/#");
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
        // Dynamic height and width (any multiple of 32), trained at 416x416.
        assert_eq!(
            v["inputs"][0]["shape"],
            serde_json::json!([1, 3, -1, -1]),
            "{v}"
        );
        let pre = &v["preprocess"];
        assert_eq!(pre["input_width"], 416, "{v}");
        assert_eq!(pre["dynamic_input"], true, "{v}");
        assert!(
            pre["sizes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["frame"] == serde_json::json!([1280, 720])
                    && s["preset"] == "standard"
                    && s["input"] == serde_json::json!([544, 320])),
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
        assert!(
            text.contains("1280x720 frame: standard 544x320, detailed 800x448, maximum 1248x704"),
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
        stdout.contains("1 lines") && stdout.contains("2 zones"),
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

/// A file with several independent mistakes: `check` names every one of
/// them (one line each), not only the first, and exits non-zero.
#[test]
fn check_reports_every_invalid_field_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"
[node]
id = "Box 1"
district = "hoan-kiem"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "hanoi"
[snapshot]
quality = 0
[detector]
input_pixels = "huge"
[rules]
cooldown_s = -1
[outbox]
keep_delivered_s = -1
[[cameras]]
id = "cam-1"
url = "rtsp://127.0.0.1:8554/test"
detect_fps = 0
input_pixels = 100
"#,
    )
    .unwrap();
    let out = edge_node().arg("check").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fields = [
        "node.id",
        "snapshot.quality",
        "cameras[0].detect_fps",
        "rules.cooldown_s",
        "outbox.keep_delivered_s",
        "detector.input_pixels",
        "cameras[0].input_pixels",
    ];
    for f in fields {
        assert!(stderr.contains(&format!("field `{f}`")), "{f}: {stderr}");
    }
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("invalid config") && l.contains("Fix:"))
        .collect();
    assert_eq!(lines.len(), fields.len(), "one line per problem: {stderr}");
}

/// The README's config table documents every field of every section with
/// the default the code gives it (each default is written once in code: the
/// config takes the runtime structs' `Default`s).
#[test]
fn readme_config_table_matches_the_code_defaults() {
    use edge_node::config::PipelineFile;
    use toml::Value;

    // Only what is required (and one zone and line, for their defaults).
    let minimal = r#"
[node]
id = "box-1"
district = "d"
[mqtt]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "p"
[[cameras]]
id = "cam-1"
url = "rtsp://127.0.0.1:8554/test"
[[cameras.zones]]
name = "z"
polygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]
[[cameras.lines]]
name = "l"
a = [0.5, 0.9]
b = [0.5, 0.1]
"#;
    let given: Value = toml::from_str(minimal).unwrap();
    let file: PipelineFile = toml::from_str(minimal).unwrap();
    let code = Value::try_from(&file).unwrap();

    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| Section | Field (default) |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() >= 12, "README config table not found: {rows:?}");

    // Defaults the file leaves unset (`None`) but the node fills in.
    let classes = edge_node::detect::DEFAULT_CLASSES.join(", ");
    let mut problems = Vec::new();
    let mut documented = std::collections::BTreeSet::new();
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let section = backticked(cells[0].trim_start_matches("| ")).unwrap();
        let path: Vec<&str> = section.trim_matches(['[', ']']).split('.').collect();
        let at = |v: &Value| -> Option<Value> {
            let mut v = v.clone();
            for k in &path {
                v = v.get(k)?.clone();
                if let Value::Array(a) = v {
                    v = a.first()?.clone();
                }
            }
            Some(v)
        };
        let code_table = at(&code).unwrap_or_else(|| panic!("{section}: not in the code"));
        let given_table = at(&given);
        let code_table = code_table.as_table().unwrap();
        for (field, doc) in fields(cells[1]) {
            let key = format!("{}.{field}", path.join("."));
            documented.insert(key.clone());
            let is_given = given_table
                .as_ref()
                .and_then(|t| t.get(field.as_str()))
                .is_some();
            let value = code_table.get(field.as_str());
            let literal = doc.as_deref().and_then(literal);
            check_default(
                &key,
                is_given,
                value,
                doc.as_deref(),
                literal.as_ref(),
                &classes,
                &mut problems,
            );
        }
        // Every field the code has is documented.
        for k in code_table.keys() {
            let key = format!("{}.{k}", path.join("."));
            if !documented.contains(&key) {
                problems.push(format!("{key}: not in the README table"));
            }
        }
    }
    // Every section the code has is documented.
    for k in code.as_table().unwrap().keys() {
        if !documented.iter().any(|d| d.starts_with(&format!("{k}."))) {
            problems.push(format!("[{k}]: no README row"));
        }
    }
    assert!(
        problems.is_empty(),
        "README vs code:\n{}",
        problems.join("\n")
    );
}

/// One documented field: the README's default (`literal`, from `doc`)
/// against the code's `value`, or the node's own default when the file
/// leaves the field unset. Mismatches go into `problems`.
fn check_default(
    key: &str,
    is_given: bool,
    value: Option<&toml::Value>,
    doc: Option<&str>,
    literal: Option<&toml::Value>,
    classes: &str,
    problems: &mut Vec<String>,
) {
    use toml::Value;
    match (is_given, value, literal) {
        (false, Some(v @ (Value::Array(_) | Value::Table(_))), Some(l)) if v != l => {
            problems.push(format!("{key}: README {l}, code {v}"));
        }
        (false, Some(v), Some(l))
            if !matches!(v, Value::Array(_) | Value::Table(_)) && !same(v, l) =>
        {
            problems.push(format!("{key}: README {l}, code {v}"));
        }
        (false, Some(v), None) if !matches!(v, Value::Array(_) | Value::Table(_)) => {
            problems.push(format!(
                "{key}: README gives no default ({doc:?}), code {v}"
            ));
        }
        (false, None, _) => {
            // Unset in the file: the node's own default.
            match (node_default(key, doc, classes, problems), literal) {
                (Some(v), Some(l)) if !same(&v, l) => {
                    problems.push(format!("{key}: README {l}, code {v}"));
                }
                (Some(v), None) => {
                    problems.push(format!("{key}: README gives no default, code {v}"));
                }
                (None, Some(l @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_)))) => {
                    problems.push(format!("{key}: README {l}, code has no default"));
                }
                _ => {}
            }
        }
        // Given in the minimal file, a table or list documented in words,
        // or a matching default.
        _ => {}
    }
}

/// The default the node fills in for a field the file leaves unset, where
/// one is a plain value; fields documented in words are checked here.
fn node_default(
    key: &str,
    doc: Option<&str>,
    classes: &str,
    problems: &mut Vec<String>,
) -> Option<toml::Value> {
    use toml::Value;
    match key {
        "privacy.face_threshold" => Some(Value::Float(f64::from(
            edge_node::detect::face::FACE_THRESHOLD,
        ))),
        "privacy.face_max_side" => Some(Value::Integer(i64::from(
            edge_node::detect::face::FACE_MAX_SIDE,
        ))),
        "detector.classes" => {
            if doc != Some(classes) {
                problems.push(format!("{key}: README {doc:?}, code {classes}"));
            }
            None
        }
        "node.state_dir" => {
            let d = doc.unwrap_or_default();
            if !(d.contains(edge_node::config::DEFAULT_STATE_DIR)
                && d.contains(edge_node::config::STATE_DIR_ENV))
            {
                problems.push(format!("{key}: README {d:?}"));
            }
            None
        }
        _ => None,
    }
}

/// The first `` `...` `` in `s`.
fn backticked(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

/// `` `name` (default text) `` items of a README cell, in order; the text is
/// `None` when the field has no parenthesis (a required field or one
/// described elsewhere).
fn fields(cell: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let Some(len) = rest[start + 1..].find('`') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        rest = &rest[start + 2 + len..];
        let mut doc = None;
        if let Some(inner) = rest.strip_prefix(" (") {
            let mut depth = 1;
            let end = inner
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap_or(inner.len());
            doc = Some(inner[..end].to_string());
            rest = &inner[end..];
        }
        // Backticked words inside a description are not fields.
        if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.push((name.to_string(), doc));
        }
    }
    out
}

/// The literal default a README text starts with: a number (with an
/// optional KiB / MiB unit), true / false, `{}` / `[]`, or a `` `string` ``.
/// `None` for a description ("bundled NanoDet-g 416", "none: no limit").
fn literal(doc: &str) -> Option<toml::Value> {
    use toml::Value;
    if let Some(s) = doc.strip_prefix('`') {
        let s = &s[..s.find('`')?];
        return Some(match s {
            "{}" => Value::Table(Default::default()),
            "[]" => Value::Array(Vec::new()),
            _ => Value::String(s.to_string()),
        });
    }
    let mut words = doc.split_whitespace();
    let first = words.next()?.trim_end_matches([',', ':', ';']);
    match first {
        "true" => return Some(Value::Boolean(true)),
        "false" => return Some(Value::Boolean(false)),
        _ => {}
    }
    let n: f64 = first.parse().ok()?;
    let unit = match words.next().map(|w| w.trim_end_matches([',', ':', ';'])) {
        Some("KiB") => 1024.0,
        Some("MiB") => 1024.0 * 1024.0,
        _ => 1.0,
    };
    Some(Value::Float(n * unit))
}

/// Equal as TOML values, numbers compared as numbers (f32 defaults come out
/// of serde as the nearest f64).
fn same(code: &toml::Value, doc: &toml::Value) -> bool {
    use toml::Value;
    let num = |v: &Value| match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (num(code), num(doc)) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        _ => code == doc,
    }
}
