//! The `edge-node` command line. `anyhow` lives here only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
#[cfg(feature = "embedded-broker")]
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

use edge_node::config::{self, BrokerUrl, Pipeline};
use edge_node::detect::{self, Detector, RuntimeOptions};
use edge_node::publish::watch::{self, WatchOptions};
use edge_node::{node, snapshot, source};

/// Edge video analytics: camera streams → ONNX detector → tracked events and
/// JPEG snapshots → MQTT.
#[derive(Parser)]
#[command(name = "edge-node", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon on a pipeline config (TOML).
    ///
    /// Runs until SIGINT/SIGTERM. When every camera is a file, it ends by itself once
    /// all files have ended: open events are ended, messages flushed, `stopped` published.
    /// Exit status: 0 on a clean stop, 1 when a camera failed, 2 on a bad config.
    Run {
        /// Pipeline config, e.g. pipelines/demo.toml.
        pipeline: PathBuf,
    },
    /// Validate a pipeline config, load its models, and print what would run.
    ///
    /// Reports every problem `run` would refuse or quietly degrade on (all at
    /// once, each naming the field and the fix), exit 2; warnings are printed
    /// with the plan. Exit 0 when the pipeline would run as written.
    Check {
        pipeline: PathBuf,
        /// Print the plan as JSON (shape in the README).
        #[arg(long)]
        json: bool,
        /// Also connect: open each camera and the broker (credentials, TLS),
        /// waiting at most this many seconds for each (`--probe=SECONDS`, default 10).
        #[arg(
            long,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "10",
            value_name = "SECONDS"
        )]
        probe: Option<u64>,
    },
    /// Run the detector on one image and print what it sees.
    ///
    /// Shows every class the model knows unless --classes narrows it.
    Detect {
        /// ONNX model; default: the bundled NanoDet-g 416.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Minimum score.
        #[arg(long, default_value_t = 0.35)]
        threshold: f32,
        /// Comma-separated class names to keep, e.g. person,car.
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
        /// Print JSON: {"image","width","height","detections":[{"label","class_id","score","box":[x1,y1,x2,y2]}]}.
        #[arg(long)]
        json: bool,
        /// Write the image with its boxes drawn (JPEG).
        #[arg(long)]
        out: Option<PathBuf>,
        /// ONNX Runtime intra-op threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Input pixel budget of a dynamic model, as `[detector] input_pixels`:
        /// standard, detailed, maximum, model (squashed to the declared size) or a count.
        #[arg(long, default_value = "standard", value_parser = detect::InputBudget::parse)]
        input_pixels: detect::InputBudget,
        /// Also detect on overlapping tiles at the image's own resolution.
        #[arg(long)]
        tiles: bool,
        /// ONNX Runtime execution provider, as `[detector] provider`: cpu,
        /// openvino, cuda or tensorrt.
        #[arg(long, default_value = "cpu", value_parser = detect::Provider::parse)]
        provider: detect::Provider,
        /// The provider's device, as `[detector] provider_device`.
        #[arg(long)]
        provider_device: Option<String>,
        image: PathBuf,
    },
    /// The README's demo: the bundled clip, an in-process MQTT broker and a
    /// subscriber that prints each alert and saves the snapshots.
    Demo {
        /// Pipeline to run; default pipelines/demo.toml.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Folder for the snapshots the subscriber receives.
        #[arg(long, default_value = "out/demo-snapshots")]
        out: PathBuf,
        /// Play the clip as fast as possible instead of at its own frame rate.
        #[arg(long)]
        fast: bool,
    },
    /// Subscribe to a broker and print alerts, events, counts and statuses
    /// as readable lines (one per message).
    ///
    /// Connects like the node: `mqtts://` with --ca-file (and --client-cert /
    /// --client-key for mutual TLS), the password from --password-file or
    /// $EDGE_NODE_MQTT_PASSWORD; or take all of that from a pipeline's `[mqtt]`
    /// table with --config. Reconnects forever.
    Watch(WatchArgs),
    /// Serve an H.264 or H.265 MP4 over RTSP on 127.0.0.1 (a stand-in camera for tests and benchmarks).
    ServeRtsp {
        file: PathBuf,
        #[arg(long, default_value_t = 8554)]
        port: u16,
        #[arg(long, default_value = "/test")]
        mount: String,
    },
    /// Measure a model or a whole pipeline on this machine (sizing a box).
    ///
    /// See docs/bench.md for the JSON contracts and how to read the figures.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Grab a current frame from a camera and draw its zones, lines (with
    /// direction arrows), privacy masks and live detections on it.
    Preview {
        pipeline: PathBuf,
        /// Camera id from the pipeline.
        #[arg(long)]
        camera: String,
        /// Where to write the JPEG.
        #[arg(long, default_value = "preview.jpg")]
        out: PathBuf,
        /// Do not run the detector.
        #[arg(long)]
        no_detect: bool,
        /// Give up when no frame arrives within this many seconds.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// Look inside a model: inputs, outputs, metadata, family, pre-processing.
    Model {
        #[command(subcommand)]
        what: ModelCmd,
    },
    /// Exit 0 when the node is healthy, 1 when not, naming why (container HEALTHCHECK).
    ///
    /// Unhealthy: no heartbeat file, a heartbeat older than --max-age (the
    /// node is gone or wedged), an empty one (its state folder cannot be
    /// written), or one that lists problems: outbox failing, delivery
    /// failing, broker unreachable, camera stalled, inference stalled.
    Healthcheck {
        /// Heartbeat file; default $EDGE_NODE_STATE_DIR/heartbeat or /tmp/edge-node/heartbeat.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Largest acceptable age in seconds.
        #[arg(long, default_value_t = 30)]
        max_age: u64,
    },
}

/// The broker and connection options of `edge-node watch`.
#[derive(clap::Args)]
struct WatchArgs {
    /// Broker, mqtt://host[:port] or mqtts://host[:port]; default: the --config
    /// pipeline's, else the demo's broker.
    #[arg(long)]
    url: Option<String>,
    /// Take the broker URL, TLS files and credentials from this pipeline's
    /// `[mqtt]` table (as the node would); the default filter becomes its
    /// `{topic_prefix}/#`. The flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// CA bundle (PEM) the broker's certificate is verified against; needed for mqtts://.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --client-key.
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long)]
    client_key: Option<PathBuf>,
    /// User name (default: $EDGE_NODE_MQTT_USERNAME).
    #[arg(long)]
    username: Option<String>,
    /// File whose first line is the password (default: $EDGE_NODE_MQTT_PASSWORD).
    /// Never printed.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Topic filter; operators who want alerts only: 'PREFIX/+/+/+/alerts'.
    /// Default: '#', or '{topic_prefix}/#' with --config.
    #[arg(long)]
    filter: Option<String>,
    /// Save snapshots into this folder.
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Exit when a node reports `stopped`.
    #[arg(long)]
    until_stopped: bool,
}

/// The broker `watch` uses by default: the demo's (`pipelines/demo.toml`,
/// the embedded broker on its default port).
const DEMO_BROKER: &str = "mqtt://127.0.0.1:18830";

#[derive(Subcommand)]
enum ModelCmd {
    /// Print a model's inputs and outputs, its metadata, the family edge-node
    /// infers for it and the pre-processing it will use.
    Inspect {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Time pre-processing, inference and post-processing of one model, and a
    /// bare session.run loop on the same input (the ceiling).
    Model {
        /// ONNX model; default: the bundled NanoDet-g 416.
        #[arg(long)]
        model: Option<PathBuf>,
        /// An image, a folder of images, or a video; default: the bundled clip.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Comma-separated ONNX Runtime intra-op thread counts.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        threads: Vec<usize>,
        /// Comma-separated square input sizes (the model's own is the budget
        /// `model`). Sizes a fixed-size model cannot take are reported as skipped.
        #[arg(long = "input-size", value_delimiter = ',')]
        input_size: Vec<u32>,
        /// Comma-separated input budgets: `model`, `standard`, `detailed`,
        /// `maximum` or pixel counts (e.g. 173056), each a configuration;
        /// without this and --input-size: the detector's default (standard).
        /// On a fixed-size model every budget is `model` (others are skipped).
        #[arg(long = "input-pixels", value_delimiter = ',', value_parser = detect::InputBudget::parse)]
        input_pixels: Vec<detect::InputBudget>,
        /// Also run every configuration with tiles (a tiled row after each
        /// untiled one), as a camera with `tiles = true`.
        #[arg(long)]
        tiles: bool,
        /// Timed iterations per configuration (the ceiling runs as many).
        #[arg(long, default_value_t = 100)]
        iterations: usize,
        /// Untimed iterations before each configuration.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Videos: frames decoded (held in memory) and cycled through.
        #[arg(long, default_value_t = 50)]
        max_frames: usize,
        /// Let ONNX Runtime's idle threads spin, as `[detector] spinning = true`
        /// does in the node (default off, as in the node).
        #[arg(long)]
        spinning: bool,
        /// Comma-separated execution providers (`[detector] provider`: cpu,
        /// openvino, cuda, tensorrt). Several: each runs in a child process
        /// of its own (one ONNX Runtime library per process), one after the
        /// other, each printing its table; --json and --plot take one.
        #[arg(long, value_delimiter = ',', default_value = "cpu", value_parser = detect::Provider::parse)]
        provider: Vec<detect::Provider>,
        /// The provider's device, as `[detector] provider_device`.
        #[arg(long)]
        provider_device: Option<String>,
        /// Write the report as JSON (`-`: to stdout, the table then goes to stderr).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a latency/throughput chart (SVG).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Run N copies of a config's first camera through the node for S seconds
    /// (looped file, or a loopback RTSP server for rtsp:// cameras; in-process MQTT broker).
    Pipeline {
        pipeline: PathBuf,
        /// Cameras to run (with --find-capacity: where the search starts).
        #[arg(long, default_value_t = 1)]
        cameras: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Detect fps every camera must reach; default: the camera's detect_fps.
        #[arg(long)]
        target_fps: Option<f64>,
        /// Search the largest camera count where every camera holds the target.
        #[arg(long)]
        find_capacity: bool,
        /// A camera holds when its detect fps ≥ this share of the target (tolerance
        /// for the frame in flight at the stop, see docs/bench.md).
        #[arg(long, default_value_t = edge_node::bench::pipeline::DEFAULT_HOLD_RATIO)]
        hold_ratio: f64,
        /// With --find-capacity: the most cameras to try.
        #[arg(long, default_value_t = edge_node::bench::pipeline::MAX_CAMERAS)]
        max_cameras: usize,
        /// Clip served over loopback RTSP when the camera is rtsp://; default: the bundled clip.
        /// Camera-like clips: scripts/make-bench-streams.sh.
        #[arg(long)]
        rtsp_file: Option<PathBuf>,
        /// Clip served as the sub-stream of dual-stream RTSP cameras (their detect_url), e.g.
        /// third_party/bench-streams/sub_360p25_h264.mp4.
        #[arg(long)]
        rtsp_detect_file: Option<PathBuf>,
        /// Run these camera counts (comma-separated) instead of searching, e.g. 1,4,8,12.
        #[arg(long, value_delimiter = ',')]
        sweep: Vec<usize>,
        /// Every camera's model instead of the config's.
        #[arg(long)]
        model: Option<PathBuf>,
        /// ONNX Runtime threads per worker instead of the config's [detector] threads.
        #[arg(long)]
        threads: Option<usize>,
        /// Inference workers instead of the config's [detector] workers.
        #[arg(long)]
        workers: Option<usize>,
        /// Camera k is the config's camera k mod M (bench every camera of the config), not
        /// copies of the first.
        #[arg(long)]
        mix: bool,
        /// With --find-capacity or --sweep: SVG chart of fps per camera and CPU against cameras.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Write the report as JSON (`-`: to stdout, the table then goes to stderr).
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=off,rumqttc=warn".into());
    // Colour only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", said_once(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once. Many of our errors quote their
/// cause in their own words already; anyhow's `{:#}` would repeat it
/// ("cannot read model m.onnx: No such file …: No such file …").
fn said_once(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run { pipeline } => {
            let p = Pipeline::load(&pipeline)?;
            let report = runtime()?.block_on(node::run(p))?;
            eprintln!("{}", report.summary());
            if report.failed_cameras.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("failed cameras: {}", report.failed_cameras.join(", "));
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Check {
            pipeline,
            json,
            probe,
        } => check(&pipeline, json, probe),
        Cmd::Detect {
            model,
            threshold,
            classes,
            json,
            out,
            threads,
            input_pixels,
            tiles,
            provider,
            provider_device,
            image,
        } => detect_image(
            &DetectRun {
                model,
                threshold,
                classes,
                json,
                out,
                threads,
                runtime: RuntimeOptions {
                    provider,
                    device: provider_device,
                    ..RuntimeOptions::default()
                },
                analysis: detect::Analysis {
                    input: input_pixels,
                    tiles,
                },
            },
            &image,
        ),
        Cmd::Demo {
            pipeline,
            out,
            fast,
        } => demo(pipeline, &out, fast),
        Cmd::Watch(args) => watch_cmd(args),
        Cmd::ServeRtsp { file, port, mount } => {
            source::serve_rtsp_blocking(&file, port, &mount)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { what } => bench(what),
        Cmd::Preview {
            pipeline,
            camera,
            out,
            no_detect,
            timeout,
        } => preview(&pipeline, &camera, &out, !no_detect, timeout),
        Cmd::Model {
            what: ModelCmd::Inspect { model, json },
        } => {
            detect::init_runtime(&RuntimeOptions::default())?;
            let report = detect::inspect(&model)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            // A model no family fits is reported, and is an error for scripts.
            Ok(if report.family.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Healthcheck { file, max_age } => healthcheck(file, max_age),
    }
}

/// `edge-node healthcheck`: the daemon's heartbeat file is fresh, not empty,
/// and lists no problem (one line each after the time; see `node::health`).
fn healthcheck(file: Option<PathBuf>, max_age: u64) -> Result<ExitCode> {
    let f = file.unwrap_or_else(|| {
        std::env::var_os("EDGE_NODE_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/edge-node"))
            .join("heartbeat")
    });
    let age = std::fs::metadata(&f)
        .and_then(|m| m.modified())
        .with_context(|| format!("no heartbeat at {}", f.display()))?
        .elapsed()
        .unwrap_or_default();
    if age > Duration::from_secs(max_age) {
        eprintln!("heartbeat {} is {} s old", f.display(), age.as_secs());
        return Ok(ExitCode::from(1));
    }
    let text = std::fs::read_to_string(&f).unwrap_or_default();
    if text.trim().is_empty() {
        eprintln!(
            "heartbeat {} is empty: the node cannot write its state folder (disk full?)",
            f.display()
        );
        return Ok(ExitCode::from(1));
    }
    // The first line is the time; every further line is one health problem.
    let problems: Vec<&str> = text
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("unhealthy: {p}");
        }
        return Ok(ExitCode::from(1));
    }
    println!("healthy: heartbeat {} s old", age.as_secs());
    Ok(ExitCode::SUCCESS)
}

/// `edge-node check`: the plan as text or JSON on stdout; every problem
/// (and the warnings) on stderr, exit 2.
fn check(path: &Path, json: bool, probe: Option<u64>) -> Result<ExitCode> {
    let opts = edge_node::check::CheckOptions {
        probe: probe.map(Duration::from_secs),
    };
    match edge_node::check::check(path, &opts) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

#[derive(Serialize)]
struct JsonDetection {
    label: String,
    class_id: u32,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

#[allow(clippy::too_many_arguments)]
/// The options of `edge-node detect`.
struct DetectRun {
    model: Option<PathBuf>,
    threshold: f32,
    classes: Option<Vec<String>>,
    json: bool,
    out: Option<PathBuf>,
    threads: usize,
    runtime: RuntimeOptions,
    analysis: detect::Analysis,
}

fn detect_image(run: &DetectRun, image: &Path) -> Result<ExitCode> {
    let DetectRun {
        threshold,
        json,
        threads,
        ..
    } = *run;
    let (classes, out) = (run.classes.clone(), run.out.clone());
    let model = run
        .model
        .clone()
        .unwrap_or_else(|| config::default_model(Path::new(".")));
    detect::init_runtime(&run.runtime)?;
    let img = image::open(image)
        .with_context(|| format!("cannot read image {}", image.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let mut det = Detector::load(&detect::DetectorOptions {
        model: model.clone(),
        intra_threads: threads,
        threshold,
        classes,
        ..detect::DetectorOptions::default()
    })?;
    let (dets, _) = det.detect_analysed(img.as_raw(), w, h, run.analysis)?;
    let labels = det.labels().to_vec();
    let label = |c: u32| {
        labels
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| format!("class{c}"))
    };
    if json {
        let v: Vec<JsonDetection> = dets
            .iter()
            .map(|d| JsonDetection {
                label: label(d.class_id),
                class_id: d.class_id,
                score: (d.score * 1e4).round() / 1e4,
                bbox: [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2]
                    .map(|v| (v * 10.0).round() / 10.0),
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"image": image.display().to_string(), "width": w, "height": h, "detections": v})
        );
    } else {
        let (iw, ih) = det.input_size_for(run.analysis.input, w, h);
        let tiles = if run.analysis.tiles {
            " plus tiles"
        } else {
            ""
        };
        println!(
            "{} ({w}x{h}), model {} at {iw}x{ih}{tiles} ({} provider): {} detections",
            image.display(),
            model.display(),
            detect::runtime_provider().unwrap_or_default(),
            dets.len()
        );
        for d in &dets {
            println!(
                "  {:<12} {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]",
                label(d.class_id),
                d.score,
                d.bbox.x1,
                d.bbox.y1,
                d.bbox.x2,
                d.bbox.y2
            );
        }
    }
    if let Some(out) = out {
        let boxes: Vec<_> = dets
            .iter()
            .map(|d| (d.bbox, format!("{} {:.2}", label(d.class_id), d.score)))
            .collect();
        let jpeg = snapshot::annotate(img.as_raw(), w, h, &boxes, 90)?;
        std::fs::write(&out, jpeg).with_context(|| format!("cannot write {}", out.display()))?;
        if !json {
            println!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn preview(
    path: &Path,
    camera: &str,
    out: &Path,
    detect_objects: bool,
    timeout: u64,
) -> Result<ExitCode> {
    let p = Pipeline::load(path)?;
    let Some(i) = p.raw.cameras.iter().position(|c| c.id == camera) else {
        let ids: Vec<&str> = p.raw.cameras.iter().map(|c| c.id.as_str()).collect();
        bail!(
            "no camera {camera:?} in {}; it has: {}",
            path.display(),
            ids.join(", ")
        );
    };
    let c = &p.raw.cameras[i];
    let plan = p.camera_plan(i);
    source::init()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<edge_node::frame::Frame>(1);
    let (stx, srx) = std::sync::mpsc::channel::<source::SourceState>();
    // The camera as the node opens it, but as fast as possible: one frame is wanted.
    let mut opts = plan.source.clone();
    opts.realtime = false;
    let handle = source::spawn_camera(
        opts,
        Box::new(move |f| {
            let _ = tx.try_send(f);
        }),
        Box::new(move |s| {
            let _ = stx.send(s);
        }),
    )?;
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
    let frame = loop {
        if let Ok(f) = rx.recv_timeout(Duration::from_millis(100)) {
            break f;
        }
        if let Ok(source::SourceState::Failed { error, .. }) = srx.try_recv() {
            handle.stop();
            bail!("camera {camera}: {error}");
        }
        if std::time::Instant::now() > deadline {
            handle.stop();
            bail!("camera {camera}: no frame within {timeout} s");
        }
    };
    handle.stop();
    let mut ov = snapshot::Overlay {
        zones: c
            .zones
            .iter()
            .map(|z| (z.name.clone(), z.polygon.clone()))
            .collect(),
        lines: c
            .lines
            .iter()
            .map(|l| (l.name.clone(), l.a, l.b, l.forward.clone()))
            .collect(),
        masks: c.privacy_masks.clone(),
        ignore: c.ignore_zones.clone(),
        boxes: Vec::new(),
    };
    if detect_objects {
        detect::init_runtime(&p.runtime_options())?;
        let mut det = Detector::load(&plan.detector)?;
        // The camera's own input size and tiles, as `run` analyses it.
        let (dets, _) =
            det.detect_analysed(&frame.data, frame.width, frame.height, plan.analysis)?;
        let labels = det.labels().to_vec();
        ov.boxes = dets
            .iter()
            .map(|d| {
                let l = labels.get(d.class_id as usize).cloned().unwrap_or_default();
                (d.bbox, format!("{l} {:.2}", d.score))
            })
            .collect();
    }
    let jpeg = snapshot::preview(&frame.data, frame.width, frame.height, &ov, 90)?;
    std::fs::write(out, jpeg).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: camera {camera} frame {}x{}, {} zones, {} lines, {} masks, {} detections",
        out.display(),
        frame.width,
        frame.height,
        ov.zones.len(),
        ov.lines.len(),
        ov.masks.len(),
        ov.boxes.len()
    );
    handle.join();
    Ok(ExitCode::SUCCESS)
}

/// `edge-node watch`: the connection options resolved like the node's, then
/// the watcher until it is stopped (or sees a node stop, with --until-stopped).
fn watch_cmd(a: WatchArgs) -> Result<ExitCode> {
    let (mut mqtt, default_filter) = match &a.config {
        Some(path) => {
            let p = Pipeline::load(path)?;
            for w in p.warnings.iter().filter(|w| w.starts_with("mqtt.")) {
                eprintln!("warning: {w}");
            }
            let filter = format!("{}/#", p.raw.mqtt.topic_prefix.trim_end_matches('/'));
            (p.raw.mqtt, filter)
        }
        None => (
            // Every other `[mqtt]` setting at its default, as the node has it.
            toml::Table::from_iter([
                ("url".to_string(), toml::Value::from(DEMO_BROKER)),
                ("topic_prefix".to_string(), toml::Value::from("")),
            ])
            .try_into::<config::MqttSection>()
            .context("the default [mqtt] settings")?,
            "#".to_string(),
        ),
    };
    if let Some(u) = a.url {
        mqtt.url = u;
    }
    let flags = [
        (&mut mqtt.ca_file, a.ca_file),
        (&mut mqtt.client_cert, a.client_cert),
        (&mut mqtt.client_key, a.client_key),
        (&mut mqtt.password_file, a.password_file),
    ];
    for (field, flag) in flags {
        if flag.is_some() {
            *field = flag;
        }
    }
    let broker = watch_broker(&mqtt)?;
    if let Some(w) = mqtt
        .password_file
        .as_deref()
        .and_then(|f| config::secret_file_warning("--password-file", f))
    {
        eprintln!("warning: {w}");
    }
    let sum = runtime()?.block_on(watch::watch(
        WatchOptions {
            broker,
            mqtt,
            username: a.username,
            filter: a.filter.unwrap_or(default_filter),
            snapshot_dir: a.snapshots,
            until_stopped: a.until_stopped,
        },
        None,
    ))?;
    eprintln!(
        "{} events, {} object alerts, {} zone alerts, {} camera alerts, {} snapshots",
        sum.events, sum.object_alerts, sum.zone_alerts, sum.camera_alerts, sum.snapshots
    );
    Ok(ExitCode::SUCCESS)
}

/// The broker of `watch`, with the node's rule: TLS files need `mqtts://`
/// (never a silent plaintext connection), `mqtts://` needs a CA.
fn watch_broker(mqtt: &config::MqttSection) -> Result<BrokerUrl> {
    let broker =
        config::parse_broker_url(&mqtt.url, mqtt.embedded_port).map_err(anyhow::Error::msg)?;
    let tls_files =
        mqtt.ca_file.is_some() || mqtt.client_cert.is_some() || mqtt.client_key.is_some();
    match &broker {
        BrokerUrl::Tls { .. } if mqtt.ca_file.is_none() => {
            bail!(
                "{} needs --ca-file: the broker's certificate is always verified",
                mqtt.url
            )
        }
        BrokerUrl::Tcp { .. } | BrokerUrl::Embedded { .. } if tls_files => bail!(
            "--ca-file, --client-cert and --client-key need an mqtts:// URL, not {} (no plaintext fallback)",
            mqtt.url
        ),
        _ => {}
    }
    if mqtt.client_cert.is_some() != mqtt.client_key.is_some() {
        bail!("--client-cert and --client-key go together (mutual TLS needs both)");
    }
    Ok(broker)
}

#[cfg(not(feature = "embedded-broker"))]
fn demo(_pipeline: Option<PathBuf>, _out: &Path, _fast: bool) -> Result<ExitCode> {
    bail!("this build has no embedded broker (cargo feature `embedded-broker`)")
}

#[cfg(feature = "embedded-broker")]
fn demo(pipeline: Option<PathBuf>, out: &Path, fast: bool) -> Result<ExitCode> {
    let path = pipeline.unwrap_or_else(|| PathBuf::from("pipelines/demo.toml"));
    let mut p = Pipeline::load(&path)?;
    if fast {
        for c in &mut p.raw.cameras {
            c.realtime = false;
        }
    }
    let port = match p.broker {
        BrokerUrl::Embedded { port } => port,
        _ => bail!("the demo pipeline must use mqtt.url = \"embedded\""),
    };
    let clip_bytes: u64 = p
        .camera_urls
        .iter()
        .filter_map(|u| std::fs::metadata(u.trim_start_matches("file://")).ok())
        .map(|m| m.len())
        .sum();
    let rt = runtime()?;
    let started = SystemTime::now();
    let snap_dir = out.to_path_buf();
    let (report, seen) = rt.block_on(async move {
        edge_node::publish::embedded::start(port, p.raw.mqtt.max_packet_bytes)?;
        p.broker = BrokerUrl::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let filter = format!("{}/#", p.raw.mqtt.topic_prefix);
        let w = tokio::spawn(watch::watch(
            WatchOptions {
                broker: p.broker.clone(),
                mqtt: p.raw.mqtt.clone(),
                username: None,
                filter,
                snapshot_dir: Some(snap_dir),
                until_stopped: true,
            },
            Some(ready_tx),
        ));
        let _ = tokio::time::timeout(Duration::from_secs(10), ready_rx).await;
        let report = node::run(p).await?;
        let seen = tokio::time::timeout(Duration::from_secs(15), w)
            .await
            .context("the demo subscriber did not see the node stop")???;
        Ok::<_, anyhow::Error>((report, seen))
    })?;
    let wall = started.elapsed().unwrap_or_default();
    println!();
    println!("demo finished in {:.1} s", wall.as_secs_f64());
    println!("node: {}", report.summary());
    println!(
        "subscriber: {} events ({} new, {} update, {} end), {} alerts ({} object, {} zone), {} snapshots ({} B) saved in {}",
        seen.events,
        seen.new,
        seen.updates,
        seen.ends,
        seen.object_alerts + seen.zone_alerts + seen.camera_alerts,
        seen.object_alerts,
        seen.zone_alerts,
        seen.snapshots,
        seen.snapshot_bytes,
        out.display()
    );
    if clip_bytes > 0 {
        println!(
            "central bandwidth: {} B published for a {} B clip ({:.2}% of the video)",
            report.bytes_published,
            clip_bytes,
            100.0 * report.bytes_published as f64 / clip_bytes as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Whether `--json -` asked for the JSON on stdout.
fn json_to_stdout(json: &Option<PathBuf>) -> bool {
    json.as_deref() == Some(Path::new("-"))
}

/// Prints a bench table, on stderr when stdout carries the JSON.
fn print_table(table: &str, json: &Option<PathBuf>) {
    if json_to_stdout(json) {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
}

/// Writes a bench report's JSON to `--json FILE`, or to stdout for `--json -`.
fn emit_json<T: Serialize>(json: &Option<PathBuf>, value: &T) -> Result<()> {
    match json {
        None => Ok(()),
        Some(_) if json_to_stdout(json) => {
            use std::io::Write;
            let text = serde_json::to_string_pretty(value)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").context("cannot write the JSON report to stdout")?;
            out.flush()
                .context("cannot write the JSON report to stdout")
        }
        Some(path) => {
            write_json(path, value)?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

/// `bench model --provider a,b`: the same command once per provider, each
/// in a child process (ONNX Runtime is one library per process), one after
/// the other so they do not share the CPU.
fn bench_providers(providers: &[detect::Provider], file_output: bool) -> Result<ExitCode> {
    if file_output {
        anyhow::bail!(
            "--json and --plot take one provider; run `bench model` once per provider for files"
        );
    }
    // This command's own arguments without its --provider.
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut skip = false;
    for a in std::env::args_os().skip(1) {
        if std::mem::take(&mut skip) {
            continue;
        }
        match a.to_str() {
            Some("--provider") => skip = true,
            Some(s) if s.starts_with("--provider=") => {}
            _ => args.push(a),
        }
    }
    let exe = std::env::current_exe().context("cannot find this program to run it per provider")?;
    let mut failed = Vec::new();
    for p in providers {
        eprintln!("== provider {p}");
        let status = std::process::Command::new(&exe)
            .args(&args)
            .arg("--provider")
            .arg(p.as_str())
            .status()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !status.success() {
            failed.push(p.as_str());
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!("bench model failed for provider {}", failed.join(", "))
    }
}

fn bench(what: BenchCmd) -> Result<ExitCode> {
    use edge_node::bench;
    match what {
        BenchCmd::Model {
            model,
            input,
            threads,
            input_size,
            input_pixels,
            tiles,
            iterations,
            warmup,
            max_frames,
            spinning,
            provider,
            provider_device,
            json,
            plot,
        } => {
            if provider.len() > 1 {
                return bench_providers(&provider, json.is_some() || plot.is_some());
            }
            let model = model.unwrap_or_else(|| config::default_model(Path::new(".")));
            let input = input.unwrap_or_else(|| PathBuf::from("tests/fixtures/vtest_10s_h264.mp4"));
            let opts = bench::ModelBenchOptions {
                threads,
                input_sizes: input_size,
                input_budgets: input_pixels,
                tiles,
                iterations,
                warmup,
                max_frames,
                spinning,
                provider: provider.first().copied().unwrap_or_default(),
                provider_device,
                ..bench::ModelBenchOptions::new(model, input)
            };
            let report = bench::bench_model(&opts)?;
            print_table(&report.table(), &json);
            emit_json(&json, &report)?;
            if let Some(svg) = plot {
                bench::plot::plot_model(&report, &svg)?;
                let note = format!("wrote {}\n", svg.display());
                print_table(&note, &json);
            }
            Ok(ExitCode::SUCCESS)
        }
        what @ BenchCmd::Pipeline { .. } => bench_pipeline(what),
    }
}

/// `edge-node bench pipeline`.
fn bench_pipeline(what: BenchCmd) -> Result<ExitCode> {
    use edge_node::bench;
    let BenchCmd::Pipeline {
        pipeline,
        cameras,
        duration,
        target_fps,
        find_capacity,
        hold_ratio,
        max_cameras,
        rtsp_file,
        rtsp_detect_file,
        sweep,
        model,
        threads,
        workers,
        mix,
        plot,
        json,
    } = what
    else {
        bail!("not a pipeline bench");
    };
    if !(duration.is_finite() && duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    let opts = bench::PipelineBenchOptions {
        pipeline,
        cameras,
        duration: Duration::from_secs_f64(duration),
        target_fps,
        rtsp_file: rtsp_file.unwrap_or_else(|| bench::pipeline::default_rtsp_file(Path::new("."))),
        hold_ratio,
        max_cameras,
        rtsp_detect_file,
        sweep,
        model,
        threads,
        workers,
        mix,
        // The loopback camera server runs as a child process, so its
        // CPU is not counted as the node's.
        harness_exe: std::env::current_exe().ok(),
    };
    if find_capacity || !opts.sweep.is_empty() {
        let report = bench::find_capacity(&opts)?;
        print_table(&report.table(), &json);
        emit_json(&json, &report)?;
        if let Some(svg) = plot {
            bench::plot::plot_capacity(&report, &svg)?;
        }
    } else {
        if plot.is_some() {
            bail!("--plot draws a curve over camera counts: add --find-capacity or --sweep");
        }
        let report = bench::bench_pipeline(&opts)?;
        print_table(&report.table(), &json);
        emit_json(&json, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::said_once;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read model m.onnx: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn a_quoted_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(Quoting { source: io }).context("model m.onnx");
        assert_eq!(
            said_once(&e),
            "model m.onnx: cannot read model m.onnx: No such file"
        );
        let plain = anyhow::anyhow!("disk full").context("cannot write outbox");
        assert_eq!(said_once(&plain), "cannot write outbox: disk full");
    }
}
