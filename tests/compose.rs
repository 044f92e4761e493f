//! `compose.yaml`, checked without a container engine (the build machines
//! have none): every service has an image or a build whose context and
//! Dockerfile exist, images are pinned (no `latest`, no untagged), every
//! file it mounts is in the repository, named volumes and secrets are
//! declared (and every declared one used), published ports are the ones
//! the README documents, `depends_on` names services (with a healthcheck
//! where it waits for `service_healthy`), and the mounted configs pass the
//! real `edge-centre check` and `edge-node check`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo;
use yaml_rust2::{Yaml, YamlLoader};

fn compose() -> Yaml {
    let path = repo().join("compose.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("compose.yaml is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "compose.yaml holds one document");
    docs.remove(0)
}

fn services(doc: &Yaml) -> Vec<(String, &Yaml)> {
    let services = doc["services"]
        .as_hash()
        .expect("compose.yaml has a services mapping");
    assert!(!services.is_empty(), "no services");
    services
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("service names are strings").to_string(),
                v,
            )
        })
        .collect()
}

/// A list of strings (`[]` when absent); panics naming `what` otherwise.
fn strings<'a>(v: &'a Yaml, what: &str) -> Vec<&'a str> {
    match v {
        Yaml::BadValue | Yaml::Null => Vec::new(),
        Yaml::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .unwrap_or_else(|| panic!("{what}: {i:?} is not a string"))
            })
            .collect(),
        _ => panic!("{what}: expected a list, got {v:?}"),
    }
}

/// The names a top-level mapping (`volumes`, `secrets`) declares.
fn declared(doc: &Yaml, key: &str) -> BTreeSet<String> {
    doc[key]
        .as_hash()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str().unwrap().to_string())
        .collect()
}

/// A service's mounts as (source, target): short syntax `src:dst[:mode]`.
fn mounts<'a>(name: &str, svc: &'a Yaml) -> Vec<(&'a str, &'a str)> {
    strings(&svc["volumes"], &format!("{name}.volumes"))
        .into_iter()
        .map(|m| {
            let mut parts = m.split(':');
            let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
                panic!("{name}.volumes: {m:?} is not source:target[:mode]");
            };
            (src, dst)
        })
        .collect()
}

fn is_bind(src: &str) -> bool {
    src.starts_with('.') || src.starts_with('/')
}

#[test]
fn every_service_builds_or_pulls_a_pinned_image() {
    let doc = compose();
    for (name, svc) in services(&doc) {
        let image = svc["image"].as_str();
        let build = &svc["build"];
        assert!(
            image.is_some() || !build.is_badvalue(),
            "service {name} has neither image nor build"
        );
        if let Some(image) = image {
            let last = image.rsplit('/').next().unwrap();
            let tag = last.split_once(':').map(|(_, t)| t);
            assert!(
                tag.is_some_and(|t| t != "latest" && t.chars().any(|c| c.is_ascii_digit())),
                "service {name}: image {image:?} is not pinned to a version tag"
            );
        }
        if build.is_badvalue() {
            continue;
        }
        let (context, dockerfile) = match build {
            Yaml::String(c) => (c.as_str(), "Dockerfile"),
            _ => (
                build["context"].as_str().unwrap_or("."),
                build["dockerfile"].as_str().unwrap_or("Dockerfile"),
            ),
        };
        let context = repo().join(context);
        assert!(
            context.is_dir(),
            "service {name}: no build context {}",
            context.display()
        );
        let file = context.join(dockerfile);
        assert!(file.is_file(), "service {name}: no {}", file.display());
        // scripts/lint-docker.sh must lint every Dockerfile compose builds.
        let lint = std::fs::read_to_string(repo().join("scripts/lint-docker.sh")).unwrap();
        assert!(
            lint.contains(dockerfile),
            "scripts/lint-docker.sh does not lint {dockerfile} (service {name})"
        );
    }
}

#[test]
fn mounted_files_volumes_and_secrets_exist() {
    let doc = compose();
    let volumes = declared(&doc, "volumes");
    let secrets = declared(&doc, "secrets");
    let (mut used_volumes, mut used_secrets) = (BTreeSet::new(), BTreeSet::new());
    for (name, svc) in services(&doc) {
        for (src, dst) in mounts(&name, svc) {
            assert!(
                dst.starts_with('/'),
                "service {name}: mount target {dst:?} is not absolute"
            );
            if is_bind(src) {
                assert!(
                    src.starts_with("./"),
                    "service {name}: bind mount {src:?} must be a path in the repository (./…)"
                );
                let p = repo().join(src);
                assert!(
                    p.exists(),
                    "service {name} mounts {src}, which is not in the repository"
                );
            } else {
                assert!(
                    volumes.contains(src),
                    "service {name} mounts volume {src:?}, not declared under volumes:"
                );
                used_volumes.insert(src.to_string());
            }
        }
        for s in strings(&svc["secrets"], &format!("{name}.secrets")) {
            assert!(
                secrets.contains(s),
                "service {name} uses secret {s:?}, not declared"
            );
            used_secrets.insert(s.to_string());
        }
        for f in strings(&svc["env_file"], &format!("{name}.env_file")) {
            assert!(
                repo().join(f).is_file(),
                "service {name}: env_file {f} missing"
            );
        }
    }
    assert_eq!(
        used_volumes, volumes,
        "declared volumes that no service mounts"
    );
    assert_eq!(
        used_secrets, secrets,
        "declared secrets that no service uses"
    );
    for s in &secrets {
        let def = &doc["secrets"][s.as_str()];
        if let Some(f) = def["file"].as_str() {
            assert!(repo().join(f).is_file(), "secret {s}: file {f} missing");
        } else {
            assert!(
                def["environment"].as_str().is_some(),
                "secret {s}: neither file nor environment"
            );
        }
    }
}

/// The README's "Running with docker compose" section.
fn readme_compose_section() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Running with docker compose")
        .expect("README has a \"Running with docker compose\" section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

#[test]
fn ports_are_documented_and_dependencies_exist() {
    let doc = compose();
    let section = readme_compose_section();
    let all = services(&doc);
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for (name, svc) in &all {
        for p in strings(&svc["ports"], &format!("{name}.ports")) {
            assert!(
                section.contains(&format!("`{p}`")),
                "service {name} publishes {p:?}, which README's \"Running with docker compose\" \
                 does not document (as `{p}`)"
            );
        }
        let deps: Vec<(&str, Option<&str>)> = match &svc["depends_on"] {
            Yaml::Hash(h) => h
                .iter()
                .map(|(k, v)| (k.as_str().unwrap(), v["condition"].as_str()))
                .collect(),
            v => strings(v, &format!("{name}.depends_on"))
                .into_iter()
                .map(|d| (d, None))
                .collect(),
        };
        for (dep, condition) in deps {
            assert!(
                names.contains(dep),
                "service {name} depends on unknown service {dep:?}"
            );
            assert_ne!(dep, name, "service {name} depends on itself");
            if condition == Some("service_healthy") {
                let target = all.iter().find(|(n, _)| n == dep).unwrap().1;
                assert!(
                    !target["healthcheck"].is_badvalue(),
                    "service {name} waits for {dep} to be healthy, which has no healthcheck"
                );
            }
        }
    }
}

/// The repository file mounted at a `.toml` target of `service` that its
/// command names (the config the service really runs with).
fn mounted_config(doc: &Yaml, service: &str) -> (PathBuf, String) {
    let svc = &doc["services"][service];
    assert!(!svc.is_badvalue(), "compose.yaml has no service {service}");
    let command = strings(&svc["command"], &format!("{service}.command")).join(" ");
    let (src, dst) = mounts(service, svc)
        .into_iter()
        .find(|(src, dst)| is_bind(src) && dst.ends_with(".toml") && command.contains(dst))
        .unwrap_or_else(|| panic!("service {service}: no mounted .toml that its command names"));
    (repo().join(src.trim_start_matches("./")), dst.to_string())
}

fn run_check(cmd: &mut Command, what: &Path) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "check {} failed:\n{text}",
        what.display()
    );
    text
}

#[test]
fn the_centre_config_passes_edge_centre_check() {
    let doc = compose();
    let (config, _) = mounted_config(&doc, "edge-centre");
    // Built beside edge-node by `cargo test --workspace` (edge-centre
    // declares tests of its own), as tests/centre.rs relies on.
    let bin = Path::new(env!("CARGO_BIN_EXE_edge-node")).with_file_name("edge-centre");
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release -p edge-centre",
        bin.display()
    );
    let text = run_check(
        Command::new(&bin)
            .args(["check", "--config"])
            .arg(&config)
            .env("EDGE_CENTRE_DB_PASSWORD", "not-the-password"),
        &config,
    );
    assert!(
        text.contains("postgres postgres:5432/edge (password from the environment)"),
        "{text}"
    );
    assert!(text.contains("mqtt://mosquitto:1883"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    // The snapshots folder is on a volume, not in the container's layer.
    let plan: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let dir = plan["snapshots"]["dir"].as_str().expect("[snapshots] dir");
    let svc = &doc["services"]["edge-centre"];
    assert!(
        mounts("edge-centre", svc)
            .iter()
            .any(|(src, dst)| !is_bind(src) && dir.starts_with(dst)),
        "edge-centre's snapshots dir {dir} is on no volume"
    );
    // The password variable the config names is the one the service sets.
    let var = plan["store"]["password_env"].as_str().unwrap();
    let command = strings(&svc["command"], "edge-centre.command").join(" ");
    assert!(
        command.contains(&format!("{var}=")),
        "edge-centre's command does not set {var}"
    );
}

#[test]
fn the_node_config_passes_edge_node_check() {
    let doc = compose();
    let (config, target) = mounted_config(&doc, "edge-node");
    // The container mirrors the repository's layout under one root, so the
    // config's relative paths (the clip) resolve alike in both places.
    let rel = config.strip_prefix(repo()).unwrap().to_str().unwrap();
    let root = target
        .strip_suffix(rel)
        .unwrap_or_else(|| panic!("{target} is not <root>/{rel}"));
    for (src, dst) in mounts("edge-node", &doc["services"]["edge-node"]) {
        if let Some(src) = src.strip_prefix("./") {
            assert_eq!(
                dst,
                format!("{root}{src}"),
                "edge-node mounts {src} out of the repo's layout"
            );
        }
    }
    let state = tempfile::tempdir().unwrap();
    let text = run_check(
        Command::new(env!("CARGO_BIN_EXE_edge-node"))
            .arg("check")
            .arg(&config)
            .env("ORT_DYLIB_PATH", common::ort_dylib())
            .env("EDGE_NODE_STATE_DIR", state.path()),
        &config,
    );
    assert!(text.contains("MQTT mqtt://mosquitto:1883"), "{text}");
    assert!(text.contains("vtest_10s_h264.mp4"), "{text}");
}
