//! The `edge-centre` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Parser, Subcommand};

use edge_centre::config;

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
    /// Print how many rows each table holds.
    Stats {
        #[arg(long, short)]
        config: PathBuf,
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
        Cmd::Run { config } => {
            let plan = config::load(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let stats = rt.block_on(edge_centre::run(&plan, shutdown()))?;
            tracing::info!(
                received = stats.received.load(Ordering::Relaxed),
                stored = stats.stored.load(Ordering::Relaxed),
                duplicates = stats.duplicates.load(Ordering::Relaxed),
                rejected = stats.rejected.load(Ordering::Relaxed),
                "edge-centre stopped"
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { config } => {
            let plan = config::load(&config)?;
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
            Ok(ExitCode::SUCCESS)
        }
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
    }
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
