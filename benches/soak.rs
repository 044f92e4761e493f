//! Resource soak: the real `edge-node` binary on looped files at maximum
//! rate (`realtime = false`, `loop = true`, three cameras, the bundled model,
//! snapshots on), publishing to a real mosquitto with a counting subscriber.
//! Every few seconds it samples the node's RSS (`VmRSS` in
//! `/proc/PID/status`) and open fds (`/proc/PID/fd`), then reports the
//! values at the end of warm-up and at the end, and the least-squares slope
//! after warm-up (MB/min, fds/min). It fails if they grow beyond the limits
//! below, if events stop flowing, or if the node does not exit cleanly on
//! SIGTERM.
//!
//! `cargo bench -p edge-node --bench soak` runs 30 minutes (warm-up 5 min,
//! a sample every 5 s); `-- --duration-s N` or `SOAK_DURATION_S=N` sets the
//! length (warm-up: a sixth of it, at least 10 s; `SOAK_WARMUP_S` overrides).
//!
//! `-- --outage-s N` (or `SOAK_OUTAGE_S=N`) stops the broker for N seconds
//! right after warm-up: the outbox fills on disk meanwhile, then drains. The
//! node's RSS must stay bounded through the outage (peak − warm-up level
//! within `outage_mb`) and the leak limits then apply to the samples from
//! one minute after the broker came back.
//! Without `--bench` (i.e. under `cargo test --all-targets`) it runs a short
//! CI version: 40 s, warm-up 15 s, a sample every second, loose limits that
//! only catch a gross leak. `scripts/soak.sh [seconds]` wraps it. Samples go
//! to `$SOAK_CSV` or `target/soak.csv`, the summary as JSON to `$SOAK_JSON`
//! or `target/soak.json`. docs/soak.md has the figures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::json;

use common::*;

struct Limits {
    /// Least-squares RSS slope after warm-up.
    mb_per_min: f64,
    /// RSS growth from the end of warm-up to the end (median of the last
    /// samples against the median around the end of warm-up).
    mb_growth: f64,
    fds_per_min: f64,
    fd_growth: f64,
}

struct Plan {
    duration: Duration,
    warmup: Duration,
    /// The broker is down for this long right after warm-up (zero: never).
    outage: Duration,
    /// RSS may rise this much above its warm-up level during the outage.
    outage_mb: f64,
    every: Duration,
    limits: Limits,
    full: bool,
}

fn env_secs(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn arg_secs(flag: &str) -> Option<f64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn plan() -> Plan {
    let full = std::env::args().any(|a| a == "--bench");
    let duration = arg_secs("--duration-s")
        .or_else(|| env_secs("SOAK_DURATION_S"))
        .unwrap_or(if full { 1800.0 } else { 40.0 });
    let warmup = env_secs("SOAK_WARMUP_S").unwrap_or(if full {
        (duration / 6.0).max(10.0)
    } else {
        15.0
    });
    let outage = arg_secs("--outage-s")
        .or_else(|| env_secs("SOAK_OUTAGE_S"))
        .unwrap_or(0.0);
    Plan {
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup.min(duration * 0.8)),
        outage: Duration::from_secs_f64(outage),
        outage_mb: 48.0,
        every: Duration::from_secs(if full && duration >= 300.0 { 5 } else { 1 }),
        limits: if full {
            Limits {
                mb_per_min: 0.5,
                mb_growth: 32.0,
                fds_per_min: 0.2,
                fd_growth: 4.0,
            }
        } else {
            // 25 s after warm-up on a shared CI box: only a gross leak shows.
            Limits {
                mb_per_min: 60.0,
                mb_growth: 64.0,
                fds_per_min: 20.0,
                fd_growth: 8.0,
            }
        },
        full,
    }
}

#[derive(Clone, Copy)]
struct Sample {
    t_s: f64,
    rss_mb: f64,
    fds: f64,
    events: u64,
    /// Size of the node's outbox files (redb), MB.
    outbox_mb: f64,
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn dir_mb(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len() as f64)
                .sum::<f64>()
        })
        .unwrap_or(0.0)
        / 1e6
}

fn fd_count(pid: u32) -> Option<f64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64)
}

/// Least-squares slope of y over x.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Counts events arriving under `t/#` without keeping them. A persistent
/// session, so that it keeps its subscription across a broker restart.
fn counting_subscriber(port: u16) -> (Client, Arc<AtomicU64>, Arc<AtomicU64>) {
    let mut o = MqttOptions::new(format!("soak-sub-{}", free_port()), "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_max_packet_size(16 << 20, 16 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(o, 100);
    client.subscribe("t/#", QoS::AtLeastOnce).unwrap();
    let events = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let (e2, b2) = (events.clone(), bytes.clone());
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic.ends_with("/events") {
                        e2.fetch_add(1, Ordering::Relaxed);
                    }
                    b2.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    (client, events, bytes)
}

/// RSS and outbox size around a broker outage.
struct Outage {
    outbox_before: f64,
    rss_before: f64,
    rss_peak: f64,
    rss_after: f64,
    outbox_peak: f64,
}

fn outage_figures(plan: &Plan, samples: &[Sample]) -> Option<Outage> {
    if plan.outage.is_zero() {
        return None;
    }
    let (down, up) = (
        plan.warmup.as_secs_f64(),
        (plan.warmup + plan.outage).as_secs_f64(),
    );
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= down && s.t_s < up + 60.0)
        .collect();
    let before = samples.iter().filter(|s| s.t_s < down).map(|s| s.rss_mb);
    Some(Outage {
        outbox_before: samples
            .iter()
            .filter(|s| s.t_s < down)
            .map(|s| s.outbox_mb)
            .fold(0.0, f64::max),
        rss_before: median(before.collect()),
        rss_peak: during.iter().map(|s| s.rss_mb).fold(0.0, f64::max),
        rss_after: samples
            .iter()
            .find(|s| s.t_s >= up + 60.0)
            .map_or(f64::NAN, |s| s.rss_mb),
        outbox_peak: during.iter().map(|s| s.outbox_mb).fold(0.0, f64::max),
    })
}

fn out_path(var: &str, name: &str) -> PathBuf {
    std::env::var(var)
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target").join(name))
}

#[allow(
    clippy::too_many_lines,
    reason = "the soak plan, its run and the report in order; splitting would only pass state around"
)]
fn main() {
    let plan = plan();
    let mut broker = PersistentBroker::start();
    let (_client, events, bytes) = counting_subscriber(broker.port);
    let dir = tempfile::tempdir().unwrap();
    let cam = |id: &str, clip: &str| {
        format!(
            "[[cameras]]\nid = \"{id}\"\nurl = \"{}\"\ndetect_fps = 5\nrealtime = false\nloop = true\n",
            fixture(clip).display()
        )
    };
    let text = format!(
        "[node]\nid = \"soak\"\ndistrict = \"bench\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\ntopic_prefix = \"t\"\n\n[detector]\nmodel = \"{}\"\n\n{}\n{}\n{}",
        broker.port,
        repo().join("models/nanodet_g_coco_416.onnx").display(),
        cam("vtest-a", "vtest_10s_h264.mp4"),
        cam("market", "market_street_10s_h264.mp4"),
        cam("vtest-b", "vtest_10s_h264.mp4"),
    );
    let p = write(dir.path(), "soak.toml", &text);
    let log = dir.path().join("node.log");
    let mut node = run_node(&p, &log);
    let pid = node.0.id();
    println!(
        "soak: {} cameras, {:.0} s (warm-up {:.0} s, sample every {:.0} s){}",
        3,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.every.as_secs_f64(),
        if plan.full {
            ""
        } else {
            " [short CI version; `cargo bench --bench soak` for 30 min]"
        }
    );

    let t0 = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = t0;
    let (down_at, up_at) = (plan.warmup, plan.warmup + plan.outage);
    let mut broker_down = false;
    while t0.elapsed() < plan.duration {
        if !plan.outage.is_zero() {
            let t = t0.elapsed();
            if !broker_down && t >= down_at && t < up_at {
                println!(
                    "  t={:>6.0} s  broker down for {:.0} s",
                    t.as_secs_f64(),
                    plan.outage.as_secs_f64()
                );
                broker.stop();
                broker_down = true;
            } else if broker_down && t >= up_at {
                println!("  t={:>6.0} s  broker up again", t.as_secs_f64());
                broker.restart();
                broker_down = false;
            }
        }
        if let Ok(Some(status)) = node.0.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the node exited during the soak: {status:?}\n{text}");
        }
        let (Some(rss), Some(fds)) = (rss_mb(pid), fd_count(pid)) else {
            panic!("cannot read /proc/{pid}");
        };
        let s = Sample {
            t_s: t0.elapsed().as_secs_f64(),
            rss_mb: rss,
            fds,
            events: events.load(Ordering::Relaxed),
            outbox_mb: dir_mb(&dir.path().join("outbox")),
        };
        if plan.full && samples.len().is_multiple_of(12) {
            println!(
                "  t={:>6.0} s  RSS {:>7.1} MB  fds {:>4.0}  events {}  outbox file {:.2} MB",
                s.t_s, s.rss_mb, s.fds, s.events, s.outbox_mb
            );
        }
        samples.push(s);
        next += plan.every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }

    let status = node
        .terminate(Duration::from_secs(30))
        .expect("the node exits on SIGTERM");
    let logtext = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}\n{logtext}");

    // Figures.
    let warm_s = plan.warmup.as_secs_f64();
    let outage = outage_figures(&plan, &samples);
    // With an outage, the leak limits apply from a minute after it ended.
    let steady_from = if plan.outage.is_zero() {
        warm_s
    } else {
        (up_at.as_secs_f64() + 60.0).min(plan.duration.as_secs_f64() * 0.9)
    };
    let after: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.t_s >= steady_from)
        .collect();
    assert!(after.len() >= 3, "too few samples after warm-up");
    let xs: Vec<f64> = after.iter().map(|s| s.t_s / 60.0).collect();
    let rss_slope = slope(&xs, &after.iter().map(|s| s.rss_mb).collect::<Vec<_>>());
    let fd_slope = slope(&xs, &after.iter().map(|s| s.fds).collect::<Vec<_>>());
    // Robust start/end levels: medians of the first and last fifth after warm-up.
    let k = (after.len() / 5).max(1);
    let head = &after[..k];
    let tail = &after[after.len() - k..];
    let rss_warm = median(head.iter().map(|s| s.rss_mb).collect());
    let rss_end = median(tail.iter().map(|s| s.rss_mb).collect());
    let fd_warm = median(head.iter().map(|s| s.fds).collect());
    let fd_end = median(tail.iter().map(|s| s.fds).collect());
    let first = samples[0];
    let last = *samples.last().unwrap();
    let rss_peak = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    let events_after_warmup = last.events - after[0].events;
    let minutes = plan.duration.as_secs_f64() / 60.0;

    println!(
        "RSS: start {:.1} MB, end of warm-up {rss_warm:.1} MB, end {rss_end:.1} MB, peak {rss_peak:.1} MB; slope after warm-up {rss_slope:+.3} MB/min",
        first.rss_mb
    );
    println!(
        "fds: start {:.0}, end of warm-up {fd_warm:.0}, end {fd_end:.0}; slope after warm-up {fd_slope:+.3} fds/min",
        first.fds
    );
    println!(
        "events received: {} ({:.0}/min), {} after warm-up; {:.1} MB received",
        last.events,
        last.events as f64 / minutes,
        events_after_warmup,
        bytes.load(Ordering::Relaxed) as f64 / 1e6
    );

    let csv = out_path("SOAK_CSV", "soak.csv");
    let mut text = String::from("t_s,rss_mb,fds,events,outbox_mb\n");
    for s in &samples {
        text.push_str(&format!(
            "{:.1},{:.2},{:.0},{},{:.3}\n",
            s.t_s, s.rss_mb, s.fds, s.events, s.outbox_mb
        ));
    }
    let summary = json!({
        "full": plan.full,
        "duration_s": plan.duration.as_secs_f64(),
        "warmup_s": warm_s,
        "cameras": 3,
        "rss_mb": {"start": first.rss_mb, "warm": rss_warm, "end": rss_end, "peak": rss_peak, "slope_per_min": rss_slope},
        "fds": {"start": first.fds, "warm": fd_warm, "end": fd_end, "slope_per_min": fd_slope},
        "events": last.events,
        "outbox_file_mb": {"warm": after[0].outbox_mb, "end": last.outbox_mb},
        "outage": outage.as_ref().map(|o| json!({"seconds": plan.outage.as_secs_f64(),
            "rss_before_mb": o.rss_before, "rss_peak_mb": o.rss_peak, "rss_after_mb": o.rss_after,
            "outbox_peak_mb": o.outbox_peak, "limit_mb": plan.outage_mb})),
        "limits": {"mb_per_min": plan.limits.mb_per_min, "mb_growth": plan.limits.mb_growth,
                   "fds_per_min": plan.limits.fds_per_min, "fd_growth": plan.limits.fd_growth},
    });
    let jpath = out_path("SOAK_JSON", "soak.json");
    if let Some(d) = csv.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(&csv, text);
    let _ = std::fs::write(&jpath, serde_json::to_string_pretty(&summary).unwrap());
    println!(
        "outbox file: {:.2} MB at the end of warm-up, {:.2} MB at the end",
        after[0].outbox_mb, last.outbox_mb
    );
    println!("samples: {}, summary: {}", csv.display(), jpath.display());

    if let Some(o) = &outage {
        println!(
            "outage {:.0} s: RSS {:.1} MB before, peak {:.1} MB during, {:.1} MB a minute after; outbox file peak {:.2} MB",
            plan.outage.as_secs_f64(),
            o.rss_before,
            o.rss_peak,
            o.rss_after,
            o.outbox_peak
        );
        assert!(
            o.outbox_peak > o.outbox_before + 0.1,
            "the outbox file did not grow during the outage ({:.2} → {:.2} MB): was the broker really down?",
            o.outbox_before,
            o.outbox_peak
        );
        assert!(
            o.rss_peak - o.rss_before <= plan.outage_mb,
            "RSS rose {:.1} MB during the outage (limit {})",
            o.rss_peak - o.rss_before,
            plan.outage_mb
        );
    }
    let l = &plan.limits;
    assert!(
        events_after_warmup > 0,
        "no events after warm-up: the node stopped working"
    );
    assert!(
        rss_slope <= l.mb_per_min,
        "RSS grows {rss_slope:.3} MB/min after warm-up (limit {})",
        l.mb_per_min
    );
    assert!(
        rss_end - rss_warm <= l.mb_growth,
        "RSS grew {:.1} MB after warm-up (limit {})",
        rss_end - rss_warm,
        l.mb_growth
    );
    assert!(
        fd_slope <= l.fds_per_min,
        "open fds grow {fd_slope:.3}/min after warm-up (limit {})",
        l.fds_per_min
    );
    assert!(
        fd_end - fd_warm <= l.fd_growth,
        "open fds grew by {} after warm-up (limit {})",
        fd_end - fd_warm,
        l.fd_growth
    );
    println!("soak passed");
}
