//! `edge-node bench`: the figures engineers use to size a box.
//!
//! - [`model`]: one model on decoded frames, pre-processing / inference /
//!   post-processing timed separately per thread count and input size, against
//!   a bare `Session::run` loop on the same input (the ceiling).
//! - [`pipeline`]: N copies of a config's first camera through the real node
//!   (sources, detector workers, tracker, events, MQTT to an in-process broker)
//!   for S seconds: achieved detect fps, drops, latencies, CPU and peak RSS;
//!   optionally the largest N that holds a target fps.
//! - [`plot`]: an SVG latency/throughput chart of a model bench (plotters).
//!
//! The JSON reports are contracts for scripts: fields may be added, never
//! removed or renamed (see `docs/bench.md`).

pub mod model;
pub mod pipeline;
pub mod plot;

use std::path::PathBuf;

use serde::Serialize;

pub use model::{ModelBenchOptions, ModelBenchReport, ModelResult, Skipped, bench_model};
pub use pipeline::{
    CameraResult, CapacityReport, CapacityStep, PipelineBenchOptions, PipelineBenchReport,
    PipelineRun, bench_pipeline, find_capacity,
};

/// Everything that can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("input {}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    #[error("invalid option {name}: {reason}")]
    Option { name: &'static str, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the pre-processing thread: {0}")]
    Thread(std::io::Error),
    #[error("plot {}: {reason}", path.display())]
    Plot { path: PathBuf, reason: String },
}

/// Nearest-rank percentiles of a sample, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// `None` for an empty sample.
    pub fn of(samples: &[f64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of the sample at or below it.
            let rank = (q * s.len() as f64).ceil() as usize;
            round3(s[rank.clamp(1, s.len()) - 1])
        };
        Some(Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
        })
    }
}

/// Rounds to 3 decimals (µs resolution on milliseconds) for readable JSON.
pub fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// Arithmetic mean; 0 for an empty sample.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The machine a figure was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `model name` of the first processor in /proc/cpuinfo.
    pub cpu: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
}

pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Machine { cpu, cores }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &std::path::Path) -> Result<String, BenchError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v).unwrap();
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        let one = Percentiles::of(&[7.0]).unwrap();
        assert_eq!((one.p50, one.p90, one.p99), (7.0, 7.0, 7.0));
        assert!(Percentiles::of(&[]).is_none());
        // Order of the input does not matter.
        let p2 = Percentiles::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((p2.p50, p2.p99), (2.0, 3.0));
    }

    #[test]
    fn mean_and_rounding() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(round3(1.23456), 1.235);
    }
}
