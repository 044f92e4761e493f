//! A real PostgreSQL cluster for the centre's tests: `initdb` in a
//! temporary folder, listening on 127.0.0.1 and a free port only, run as
//! the `postgres` user when the tests run as root (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// The newest installed server's programs (Debian: /usr/lib/postgresql/N/bin).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .expect("PostgreSQL is not installed: run scripts/setup.sh")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql")
        .1
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("edge-pg")
            .tempdir()
            .unwrap()
            .keep();
        let port = crate::common::free_port();
        let me = PgCluster { port, dir, bin };
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&me.dir)
                .status()
                .unwrap();
            assert!(st.success(), "chown the cluster folder to postgres");
        }
        me.run(
            "initdb",
            &[
                "-D",
                "data",
                "-U",
                "edge",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        me.pg_ctl("start");
        let st = Command::new(me.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "edge",
                "-d",
                "postgres",
                "-q",
                "-c",
            ])
            .arg("CREATE DATABASE edge")
            .status()
            .unwrap();
        assert!(st.success(), "create database edge");
        me
    }

    /// A libpq connection string to database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=edge dbname={db}", self.port)
    }

    /// Creates another database.
    pub fn create_db(&self, name: &str) {
        let st = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "edge",
                "-d",
                "postgres",
                "-q",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .status()
            .unwrap();
        assert!(st.success(), "create database {name}");
    }

    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    fn pg_ctl(&self, what: &str) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        match what {
            "start" => self.run(
                "pg_ctl",
                &["-D", "data", "-l", "server.log", "-w", "-o", &opts, "start"],
            ),
            _ => self.run("pg_ctl", &["-D", "data", "-m", "fast", "-w", what]),
        }
    }

    /// Runs one of the server's programs in the cluster folder, as
    /// `postgres` when we are root.
    fn run(&self, prog: &str, args: &[&str]) {
        let exe = self.bin.join(prog);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = c.args(args).current_dir(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = c
            .args(["-D", "data", "-m", "immediate", "stop"])
            .current_dir(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
