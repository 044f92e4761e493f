//! Inference workers: the `detect-<model>-<n>` threads, each owning one
//! detector (one ONNX Runtime session), and their `prep-<model>-<n>`
//! pre-processing companions.
//!
//! Workers serve one model's [`Pool`] round-robin, at most one frame per
//! camera in flight, so frames of a camera stay in order and a slow model
//! lowers every camera's rate evenly. With a companion, the next frame is
//! pre-processed while the session runs the current one (two input buffers,
//! rendezvous hand-over): at normal priority when ONNX Runtime's threads
//! leave a core free, under `SCHED_IDLE` (lifted while waited for) when they
//! do not, inline when neither is possible ([`sched::prep_mode`]). Results go
//! to the camera through [`Pool::deliver`], which never waits.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::slots::{Job, Pool};
use crate::detect::{self, Detector, DetectorOptions};
use crate::frame::Detection;
use crate::metrics::ModelMetrics;
use crate::sched::{self, PrepMode};

/// A model's workers: the frame pool they serve, the model's class names
/// and the threads.
pub(super) struct ModelWorkers {
    pub pool: Arc<Pool>,
    pub labels: Arc<Vec<String>>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Loads `workers` sessions of the model in `opts` and starts one
/// `detect-…` thread (and, per [`sched::prep_mode`], one `prep-…`
/// companion) for each. Fails when the model cannot be loaded. Stage
/// timings also go to `metrics`.
pub(super) fn spawn(
    opts: &DetectorOptions,
    workers: usize,
    threads: usize,
    metrics: Arc<ModelMetrics>,
) -> Result<ModelWorkers, detect::DetectError> {
    let mut dets = Vec::new();
    for _ in 0..workers {
        dets.push(Detector::load(opts)?);
    }
    let labels = Arc::new(
        dets.first()
            .map(|d| d.labels().to_vec())
            .unwrap_or_default(),
    );
    let pool = Arc::new(Pool::with_metrics(metrics));
    let mode = sched::prep_mode(threads, workers);
    info!(
        model = %opts.model.display(),
        workers,
        threads,
        prep = mode.as_str(),
        "inference workers"
    );
    let mut handles = Vec::new();
    for (n, d) in dets.into_iter().enumerate() {
        match spawn_worker(&opts.model, n, pool.clone(), d, mode) {
            Ok(h) => handles.push(h),
            Err(e) => warn!(error = %e, "cannot start inference thread"),
        }
    }
    Ok(ModelWorkers {
        pool,
        labels,
        threads: handles,
    })
}

/// Starts worker `n` of `model` on its own thread.
pub(super) fn spawn_worker(
    model: &Path,
    n: usize,
    pool: Arc<Pool>,
    det: Detector,
    mode: PrepMode,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    // Linux thread names hold 15 bytes.
    let name: String = format!("detect-{stem}-{n}").chars().take(15).collect();
    let prep_name: String = format!("prep-{stem}-{n}").chars().take(15).collect();
    std::thread::Builder::new().name(name).spawn(move || {
        if mode.has_thread() {
            run_pipelined(&pool, det, &prep_name, mode);
        } else {
            run_inline(&pool, det);
        }
    })
}

/// Hands a result over, or logs why the frame has none.
fn deliver(
    pool: &Pool,
    job: Job,
    result: Result<(Vec<Detection>, detect::StageTimes), detect::DetectError>,
) {
    match result {
        Ok(r) => pool.deliver(job, Some(r)),
        Err(e) => {
            warn!(camera = %job.frame.camera, error = %e, "inference failed on a frame");
            pool.deliver(job, None);
        }
    }
}

/// One inference worker without a companion: take a frame, pre-process,
/// infer, decode, deliver, all on this thread.
fn run_inline(pool: &Pool, mut det: Detector) {
    while let Some(job) = pool.take() {
        let f = &job.frame;
        let result = det.detect_analysed(&f.data, f.width, f.height, job.analysis);
        deliver(pool, job, result);
    }
}

/// One inference worker with a companion (see [`sched::prep_mode`]): this
/// thread owns the session; a `prep-…` thread takes the next frame from the
/// pool and pre-processes it while the session runs the current one (double
/// buffering: two input buffers circulate, the hand-over is a rendezvous, so
/// at most two frames are in a worker and each camera still has at most one
/// in flight). In [`PrepMode::Background`] the companion runs under
/// `SCHED_IDLE` except while this thread waits for it ([`sched::Handshake`]).
fn run_pipelined(pool: &Pool, mut det: Detector, prep_name: &str, mode: PrepMode) {
    let mut prep = det.frame_prep();
    let buffers = [det.new_prepared(), det.new_prepared()];
    let ran = sched::run_pipelined(
        mode,
        prep_name,
        buffers,
        |hs, input| {
            // Keep the buffer across frames that fail to pre-process.
            loop {
                let job = pool.take()?;
                let f = &job.frame;
                let budget = job.analysis.input;
                match hs.preparing(|| prep.prepare_as(&f.data, f.width, f.height, budget, input)) {
                    Ok(()) => return Some(job),
                    Err(e) => {
                        warn!(camera = %f.camera, error = %e, "pre-processing failed on a frame");
                        pool.deliver(job, None);
                    }
                }
            }
        },
        |job, input, give_back| {
            let result = det.detect_prepared(&input);
            // Hand the buffer back before delivering, so the next frame is
            // being prepared while this one's result goes out.
            give_back(input);
            // Tiles (if the camera wants them) run here, after the
            // full-frame pass the companion prepared.
            let f = &job.frame;
            let result = match result {
                Ok((full, times)) if job.analysis.tiles => {
                    det.add_tiles(full, times, &f.data, f.width, f.height)
                }
                other => other,
            };
            deliver(pool, job, result);
            true
        },
    );
    match ran {
        // The inference loop never stops first, but a frame the companion
        // could not hand over goes back to its camera's slot.
        Ok(unsent) => {
            if let Some(job) = unsent {
                pool.deliver(job, None);
            }
        }
        Err(e) => {
            warn!(thread = %prep_name, error = %e, "cannot start the pre-processing thread; the worker runs without it");
            run_inline(pool, det);
        }
    }
}
