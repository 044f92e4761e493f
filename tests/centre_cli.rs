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

#[test]
fn user_and_token_commands_check_what_they_are_given() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "centre.toml",
        "[store]\npath = \"centre.db\"\n[console]\nlisten = \"127.0.0.1:8080\"\n",
    );
    let run = |args: &[&str], stdin: &str, env: &[(&str, &str)]| {
        let mut child = centre()
            .args(args)
            .arg("--config")
            .arg(&conf)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A command that refuses its arguments exits without reading its
        // standard input: writing may then meet a closed pipe.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    };
    let out = run(
        &["user", "add", "--name", "a", "--role", "root"],
        "long-enough\n",
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("viewer, operator or admin"));
    let out = run(&["user", "add", "--name", "a"], "short\n", &[]);
    assert!(!out.status.success(), "a short password is refused");
    let out = run(
        &["user", "add", "--name", "a", "--password-env", "NOPE_X"],
        "",
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("$NOPE_X is not set"));
    let out = run(&["token", "add", "--name", "a"], "", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
    let out = run(
        &["user", "add", "--name", "a", "--role", "admin"],
        "long-enough\n",
        &[],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "added a (admin)\n");
    let out = run(
        &[
            "user",
            "add",
            "--name",
            "a",
            "--role",
            "viewer",
            "--password-env",
            "PW",
        ],
        "",
        &[("PW", "another-one")],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "updated a (viewer)\n");
    assert_eq!(
        String::from_utf8_lossy(&run(&["user", "list"], "", &[]).stdout),
        "a viewer\n"
    );
    let t1 = run(&["token", "add", "--name", "a"], "", &[]);
    let t2 = run(&["token", "add", "--name", "a"], "", &[]);
    let (t1, t2) = (
        String::from_utf8_lossy(&t1.stdout),
        String::from_utf8_lossy(&t2.stdout),
    );
    assert_eq!(t1.trim().len(), 64);
    assert_ne!(t1, t2);
    // Only hashes are in the database.
    let mut db = std::fs::read(dir.path().join("centre.db")).unwrap();
    db.extend(std::fs::read(dir.path().join("centre.db-wal")).unwrap_or_default());
    let token_hash = edge_centre::web::auth::token_hash(t1.trim());
    assert!(
        db.windows(64).any(|w| w == token_hash.as_bytes()),
        "the token's hash is stored"
    );
    let has = |s: &str| db.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(!has(t1.trim()) && !has("long-enough") && !has("another-one"));
    let out = centre()
        .args(["check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("console http://127.0.0.1:8080 (sessions 12 h)")
    );
}
