//! `edge-node check`: everything `run` would refuse or quietly degrade on,
//! found before it runs, and the plan of what would run.
//!
//! Three stages, all problems of a file reported at once (one per field):
//! the config's own validation (`config::validate`, pure), the pre-flight
//! (`check/preflight.rs`: files exist and parse, models and the face model
//! load, rule classes are known to the model, secrets are where the config
//! says), and, with `--probe`, connections (each camera through
//! [`source::probe`], the broker through [`publish::probe_broker`]). Each
//! check calls the code `run` uses for the same thing, so the two cannot
//! drift. The plan ([`CheckReport`]) masks every URL's user info.

mod preflight;
mod report;

use std::path::Path;
use std::time::Duration;

pub use self::report::{
    BudgetPlan, CameraReport, CheckReport, LinePlan, ModelPlan, MqttPlan, PrivacyPlan, ZonePlan,
    normalise,
};
use crate::config::{self, ConfigError, FieldError, Pipeline};
use crate::{publish, redact, source};

/// What `check` does besides validating.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Also connect: open each camera and the broker, waiting at most this long for each.
    pub probe: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The config cannot be read or parsed, so nothing else can be checked.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Every problem found (config and pre-flight), then the warnings.
    #[error("{errors}{}", warning_lines(warnings))]
    Invalid {
        errors: ConfigError,
        warnings: Vec<String>,
    },
}

fn warning_lines(warnings: &[String]) -> String {
    warnings.iter().map(|w| format!("\nwarning: {w}")).collect()
}

impl CheckError {
    /// The field errors reported (none for a read or parse error).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            CheckError::Config(e) | CheckError::Invalid { errors: e, .. } => e.field_errors(),
        }
    }
}

/// Records a problem of `field` unless that field already has one.
pub(crate) fn add_error(
    errors: &mut Vec<FieldError>,
    field: impl Into<String>,
    problem: impl Into<String>,
    hint: impl Into<String>,
) {
    let field = field.into();
    if errors.iter().any(|e| e.field == field) {
        return;
    }
    errors.push(FieldError {
        field,
        problem: redact::userinfo(&problem.into()).into_owned(),
        hint: hint.into(),
    });
}

/// Checks the pipeline at `path`: the plan when `run` would start it as
/// written, or every problem found.
pub fn check(path: &Path, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let (p, mut errors) = Pipeline::load_lenient(path)?;
    let mut warnings = p.warnings.clone();
    let models = preflight::run(&p, &mut errors, &mut warnings);
    let mut probes = Probes::default();
    if let Some(timeout) = opts.probe
        && errors.is_empty()
    {
        probes = probe(&p, timeout, &mut errors);
    }
    if let Some(e) = ConfigError::from_fields(&p.file, errors) {
        return Err(CheckError::Invalid {
            errors: e,
            warnings,
        });
    }
    Ok(report::build(&p, &models, probes, warnings))
}

/// What `--probe` found.
#[derive(Default)]
pub(crate) struct Probes {
    pub broker: Option<publish::BrokerProbe>,
    /// Per camera, in config order.
    pub cameras: Vec<Option<source::ProbeReport>>,
}

/// Opens every camera (in parallel) and connects to the broker.
fn probe(p: &Pipeline, timeout: Duration, errors: &mut Vec<FieldError>) -> Probes {
    let results: Vec<Result<source::ProbeReport, source::SourceError>> = std::thread::scope(|s| {
        let handles: Vec<_> = p
            .raw
            .cameras
            .iter()
            .zip(&p.camera_urls)
            .map(|(c, url)| {
                let auth = config::camera_auth(c);
                let decoder = config::camera_decoder(&p.raw, c);
                s.spawn(move || source::probe(url, &auth, decoder, timeout))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(source::SourceError::Probe {
                        url: String::new(),
                        reason: "the probe thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut cameras = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(report) => cameras.push(Some(report)),
            Err(e) => {
                add_error(
                    errors,
                    format!("cameras[{i}].url"),
                    format!("probe failed: {e}"),
                    "check that the camera is reachable from this box, the URL's path and the camera's credentials",
                );
                cameras.push(None);
            }
        }
    }
    let broker = match &p.broker {
        config::BrokerUrl::Embedded { .. } => None,
        broker => {
            let client_id = report::client_id(p);
            let res = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| publish::PublishError::ClientGone(e.to_string()))
                .and_then(|rt| {
                    rt.block_on(publish::probe_broker(
                        &p.raw.mqtt,
                        broker,
                        &client_id,
                        timeout,
                    ))
                });
            match res {
                Ok(b) => Some(b),
                Err(e) => {
                    add_error(
                        errors,
                        "mqtt.url",
                        format!("probe failed: {e}"),
                        "check that the broker runs and listens there, the TLS files and the MQTT credentials",
                    );
                    None
                }
            }
        }
    };
    Probes { broker, cameras }
}
