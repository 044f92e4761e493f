//! `edge-centre`'s command line, run as a user would: `check` on good and
//! bad configs, `stats` on a fresh database.

use std::path::Path;
use std::process::Command;

fn centre() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-centre"))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_prints_the_plan_without_the_database_password() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "centre.toml",
        "[mqtt]\nurl = \"mqtt://10.0.0.5:1883\"\ngroup = \"city\"\n\
         [store]\nkind = \"postgres\"\nurl = \"postgresql://edge:hunter2@db.city:5433/edge\"\n",
    );
    let out = centre()
        .args(["check", "--config"])
        .arg(&conf)
        .env("EDGE_CENTRE_DB_PASSWORD", "s3cret")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("$share/city/edge/#"), "{text}");
    assert!(
        text.contains("postgres db.city:5433/edge (password from the environment)"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn check_names_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "bad.toml",
        "[mqtt]\nurl = \"http://x\"\ngroup = \"a/b\"\n[store]\nkind = \"postgres\"\n",
    );
    let out = centre()
        .args(["check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in ["3 problem(s)", "mqtt.url", "mqtt.group", "store.url"] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    let typo = write(dir.path(), "typo.toml", "[stor]\nkind = \"sqlite\"\n");
    let out = centre()
        .args(["check", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stor"), "{err}");
}

#[test]
fn stats_on_a_fresh_database_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "centre.toml",
        "[store]\npath = \"db/centre.db\"\n",
    );
    let out = centre()
        .args(["stats", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("events 0\nalerts 0\n"), "{text}");
    assert!(dir.path().join("db/centre.db").exists());
    let out = centre()
        .args(["gaps", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no gaps\n");
}
