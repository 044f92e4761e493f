//! The `edge-centre` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Parser, Subcommand};

use edge_centre::config;
use edge_centre::store::console;

#[derive(Parser)]
#[command(
    name = "edge-centre",
    version,
    about = "The city centre of edge-node: ingest, storage and console"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ingest every box's messages into the database until SIGINT/SIGTERM.
    Run {
        /// The centre's config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config and print what it plans; exit 1 with every problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Play many boxes' contract-valid traffic into a broker (load
    /// generator): events with real-size snapshots, alerts, counts, status.
    Simulate {
        /// The broker, mqtt://host:port.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        #[arg(long, default_value = "edge")]
        prefix: String,
        #[arg(long, default_value_t = 480)]
        boxes: usize,
        /// Cameras per box.
        #[arg(long, default_value_t = 32)]
        cameras: usize,
        /// Messages per second, all boxes together (the city's design load
        /// is about 3,400).
        #[arg(long, default_value_t = 3400.0)]
        rate: f64,
        /// How long, e.g. 300s or 5m.
        #[arg(long, default_value = "60s")]
        duration: humantime::Duration,
        /// MQTT connections the boxes are spread over.
        #[arg(long, default_value_t = 8)]
        connections: usize,
    },
    /// List every gap found in each camera's event `seq` and how it ended
    /// (open, recovered by replay, arrived late, lost and why), then the
    /// runs still missing now.
    Gaps {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Time the console's searches on a large database: fill the
    /// configured database with synthetic events up to `--events` (480
    /// boxes x 32 cameras, one day; through the ingest's commit path), then
    /// run each search `--reps` times and print the median and slowest.
    BenchSearch {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
    /// Print how many rows each table holds.
    Stats {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The console's users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// The API's bearer tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user, or set an existing one's password and role. The
    /// password is read from standard input (one line), or from the
    /// environment variable named by --password-env.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// viewer (looks), operator (also acknowledges) or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// List the users and their roles.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an API token for a user and print it (once: only its hash is
    /// stored).
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Run { config } => run(&config),
        Cmd::Check { config } => check(&config),
        Cmd::Simulate {
            broker,
            prefix,
            boxes,
            cameras,
            rate,
            duration,
            connections,
        } => {
            let (host, port) = config::broker(&broker).map_err(anyhow::Error::msg)?;
            let plan = edge_centre::simulate::SimPlan {
                host,
                port,
                prefix,
                boxes,
                cameras,
                rate,
                duration: duration.into(),
                connections,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let r = rt.block_on(edge_centre::simulate::simulate(&plan))?;
            println!(
                "sent {} messages ({} lifecycle events) in {:.1} s: {:.0} msg/s, {:.1} MB/s ({:.0} % snapshots); {} acknowledged",
                r.messages,
                r.events,
                r.seconds,
                r.messages as f64 / r.seconds,
                r.bytes as f64 / r.seconds / 1e6,
                100.0 * r.snapshot_bytes as f64 / r.bytes.max(1) as f64,
                r.acknowledged
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gaps { config } => gaps(&config),
        Cmd::BenchSearch {
            config,
            events,
            reps,
        } => bench_search(&config, events, reps),
        Cmd::Stats { config } => {
            let plan = config::load(&config)?;
            let mut store = edge_centre::open_store(&plan.store)?;
            let t = store.totals()?;
            println!(
                "events {}\nalerts {}\ncounts {}\nsnapshots {}\ncameras {}\nnodes {}\nrejected {}",
                t.events, t.alerts, t.counts, t.snapshots, t.cameras, t.nodes, t.rejected
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::User { cmd } => user(cmd),
        Cmd::Token {
            cmd: TokenCmd::Add { config, name },
        } => {
            let db = console_db(&config)?;
            let token = edge_centre::web::auth::new_token();
            let hash = edge_centre::web::auth::token_hash(&token);
            let now = edge_centre::web::now_ms();
            if !db.run(|db| console::add_token(db, &hash, &name, now))? {
                anyhow::bail!("no user {name:?}: add it first with `edge-centre user add`");
            }
            println!("{token}");
            eprintln!("token for {name} created; it is shown only this once");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The database, migrated, with the console's connections.
fn console_db(config: &std::path::Path) -> anyhow::Result<console::ConsoleDb> {
    let plan = config::load(config)?;
    drop(edge_centre::open_store(&plan.store)?);
    Ok(console::ConsoleDb::open(&plan.store)?)
}

/// `edge-centre user …`.
fn user(cmd: UserCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCmd::Add {
            config,
            name,
            role,
            password_env,
        } => {
            let Some(role) = console::Role::parse(&role) else {
                anyhow::bail!("--role {role:?}: use viewer, operator or admin");
            };
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                anyhow::bail!("--name: 1 to 64 printable characters");
            }
            let password = match &password_env {
                Some(var) => std::env::var(var)
                    .with_context(|| format!("--password-env: ${var} is not set"))?,
                None => {
                    if std::io::stdin().is_terminal() {
                        eprint!("password for {name}: ");
                    }
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.chars().count() < 8 {
                anyhow::bail!("the password is too short: use at least 8 characters");
            }
            let hash =
                edge_centre::web::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
            let db = console_db(&config)?;
            let now = edge_centre::web::now_ms();
            let new = db.run(|db| console::put_user(db, &name, &hash, role, now))?;
            println!(
                "{} {name} ({})",
                if new { "added" } else { "updated" },
                role.name()
            );
            Ok(ExitCode::SUCCESS)
        }
        UserCmd::List { config } => {
            let db = console_db(&config)?;
            for (name, role, _) in db.run(console::users)? {
                println!("{name} {role}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `edge-centre run`.
fn run(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let plan = config::load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stats = rt.block_on(edge_centre::run(&plan, shutdown()))?;
    let (p50, p99, n) = {
        let l = stats
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (l.quantile(0.5), l.quantile(0.99), l.count())
    };
    tracing::info!(
        commit_latency_p50_ms = p50,
        commit_latency_p99_ms = p99,
        events_measured = n,
        received = stats.received.load(Ordering::Relaxed),
        stored = stats.stored.load(Ordering::Relaxed),
        duplicates = stats.duplicates.load(Ordering::Relaxed),
        rejected = stats.rejected.load(Ordering::Relaxed),
        "edge-centre stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// `edge-centre bench-search`.
fn bench_search(config: &std::path::Path, events: u64, reps: usize) -> anyhow::Result<ExitCode> {
    let plan = config::load(config)?;
    let mut store = edge_centre::open_store(&plan.store)?;
    let (added, took) = edge_centre::bench::fill(store.as_mut(), events)?;
    let total = store.totals()?.events;
    if added > 0 {
        println!(
            "filled: {added} events in {:.0} s ({:.0} events/s); the database holds {total}",
            took.as_secs_f64(),
            added as f64 / took.as_secs_f64().max(1e-9)
        );
    } else {
        println!("the database holds {total} events");
    }
    drop(store);
    let db = console::ConsoleDb::open(&plan.store)?;
    println!("search (a page of 50, newest first), {reps} runs each: median / slowest");
    for t in edge_centre::bench::searches(&db, reps)? {
        println!(
            "  {:<28} {:>8.2} ms {:>8.2} ms   ({} rows)",
            t.name, t.median_ms, t.max_ms, t.rows
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `edge-centre gaps`.
fn gaps(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let plan = config::load(config)?;
    let mut store = edge_centre::open_store(&plan.store)?;
    let report = store.delivery(10_000)?;
    for g in &report {
        println!(
            "{} {} seq {}-{} ({} missing when found): {}{}{}",
            g.node,
            g.camera,
            g.first,
            g.last,
            g.last - g.first + 1,
            g.state,
            if g.replayed > 0 {
                format!(", {} recovered by replay", g.replayed)
            } else {
                String::new()
            },
            g.reasons
                .as_ref()
                .map(|r| format!(", {} lost ({r})", g.lost))
                .unwrap_or_default(),
        );
    }
    let holes = store.gaps()?;
    for g in &holes {
        println!(
            "missing now: {} {} seq {}-{} ({})",
            g.node,
            g.camera,
            g.first,
            g.last,
            g.last - g.first + 1
        );
    }
    if report.is_empty() && holes.is_empty() {
        println!("no gaps");
    }
    Ok(ExitCode::SUCCESS)
}

/// `edge-centre check`.
fn check(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let plan = config::load(config)?;
    println!("ok: {}", config.display());
    println!(
        "  broker  mqtt://{}:{} as {:?}, subscribes {}",
        plan.mqtt.host, plan.mqtt.port, plan.mqtt.client_id, plan.mqtt.filter
    );
    match &plan.store {
        config::StorePlan::Sqlite { path } => {
            println!("  store   sqlite {}", path.display());
        }
        config::StorePlan::Postgres { url, password } => println!(
            "  store   postgres {} (password {})",
            edge_centre::store::postgres::redacted(url),
            if password.is_some() {
                "from the environment"
            } else {
                "none"
            }
        ),
    }
    println!(
        "  snapshots {} (kept {} days, at most {} MB)",
        plan.snapshots.dir.display(),
        plan.snapshots.keep.as_secs_f64() / 86_400.0,
        plan.snapshots.max_bytes >> 20
    );
    let r = &plan.replay;
    if r.enabled {
        println!(
            "  replay  gaps requested after {} s, again every {} s, given up (lost: no_answer) after {} s",
            r.grace_ms as f64 / 1000.0,
            r.retry_ms as f64 / 1000.0,
            r.give_up_ms as f64 / 1000.0
        );
    } else {
        println!("  replay  off: gaps are reported, never requested");
    }
    match plan.console.listen {
        Some(addr) => println!(
            "  console http://{addr} (sessions {} h{})",
            plan.console.session.as_secs_f64() / 3600.0,
            if plan.console.secure_cookie {
                ", Secure cookie"
            } else {
                ""
            }
        ),
        None => println!("  console off"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
    tracing::info!("stopping: committing and acknowledging what was received");
}
