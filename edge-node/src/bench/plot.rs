//! SVG charts: a model bench's latency (top) and throughput (bottom) per
//! configuration (threads × input size), and a pipeline bench's fps per
//! camera and CPU against the number of cameras. plotters, SVG backend only.

use std::path::Path;

use plotters::prelude::*;

use super::{BenchError, CapacityReport, CapacityStep, ModelBenchReport};

/// A named, coloured line: the value at configuration `i`.
type Series<'a> = (&'a str, RGBColor, Box<dyn Fn(usize) -> f64 + 'a>);

/// Writes the chart to `path`. Fails when there is no result to draw.
#[allow(
    clippy::too_many_lines,
    reason = "one chart, drawn top to bottom with the plotters builder API"
)]
pub fn plot_model(report: &ModelBenchReport, path: &Path) -> Result<(), BenchError> {
    let err = |reason: String| BenchError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    let rs = &report.results;
    if rs.is_empty() {
        return Err(err("no measured configuration to plot".into()));
    }
    let labels: Vec<String> = rs
        .iter()
        .map(|r| format!("{}t {}x{}", r.threads, r.input_wh[0], r.input_wh[1]))
        .collect();
    let n = rs.len();
    let x_max = n as f64 - 0.5;
    let lat_max = rs
        .iter()
        .map(|r| r.total_ms.p99.max(r.ceiling_ms.p99))
        .fold(0.0, f64::max)
        * 1.15;
    let fps_max = rs
        .iter()
        .map(|r| r.fps.max(r.ceiling_fps))
        .fold(0.0, f64::max)
        * 1.15;

    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let title = format!(
        "{} on {} (ONNX Runtime {})",
        Path::new(&report.model)
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_else(|| report.model.clone()),
        report.cpu,
        report.ort_version
    );
    let root = root
        .titled(&title, ("sans-serif", 18))
        .map_err(|e| err(e.to_string()))?;
    let (top, bottom) = root.split_vertically(330);
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };

    let mut lat = ChartBuilder::on(&top)
        .caption("latency per frame (ms)", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..x_max, 0.0..lat_max.max(1e-3))
        .map_err(|e| err(e.to_string()))?;
    lat.configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&label_of)
        .y_desc("ms")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let series: [Series; 4] = [
        ("total p50", BLUE, Box::new(|i| rs[i].total_ms.p50)),
        ("total p99", RED, Box::new(|i| rs[i].total_ms.p99)),
        ("inference p50", GREEN, Box::new(|i| rs[i].infer_ms.p50)),
        ("bare run p50", BLACK, Box::new(|i| rs[i].ceiling_ms.p50)),
    ];
    for (name, color, f) in series.iter() {
        let color = *color;
        let pts: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, f(i))).collect();
        lat.draw_series(LineSeries::new(pts, color.stroke_width(2)).point_size(4))
            .map_err(|e| err(e.to_string()))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    lat.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;

    let mut thr = ChartBuilder::on(&bottom)
        .caption("throughput (frames/s, one stream)", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..x_max, 0.0..fps_max.max(1e-3))
        .map_err(|e| err(e.to_string()))?;
    thr.configure_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&label_of)
        .y_desc("fps")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let fps_series: [Series; 2] = [
        ("pipeline fps", BLUE, Box::new(|i| rs[i].fps)),
        (
            "ceiling (bare run) fps",
            BLACK,
            Box::new(|i| rs[i].ceiling_fps),
        ),
    ];
    for (name, color, f) in fps_series.iter() {
        let color = *color;
        let pts: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, f(i))).collect();
        thr.draw_series(LineSeries::new(pts, color.stroke_width(2)).point_size(4))
            .map_err(|e| err(e.to_string()))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    thr.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A labelled line of `(cameras, value)` points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Draws `lines` on one chart area with a legend.
fn draw_lines(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    x_max: f64,
    lines: &[Line],
    err: &dyn Fn(String) -> BenchError,
) -> Result<(), BenchError> {
    let y_max = lines
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(1e-3))
        .map_err(|e| err(e.to_string()))?;
    // Cameras are whole: label the whole positions only.
    let whole = |x: &f64| {
        if (x - x.round()).abs() < 1e-9 {
            format!("{}", x.round() as i64)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_label_formatter(&whole)
        .x_desc("cameras")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (name, color, pts) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)).point_size(4))
            .map_err(|e| err(e.to_string()))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// `bench pipeline --plot`: analysed fps per camera (slowest, median,
/// fastest, and the target) and CPU against the number of cameras, one point
/// per run of the capacity search or sweep.
pub fn plot_capacity(report: &CapacityReport, path: &Path) -> Result<(), BenchError> {
    let err = |reason: String| BenchError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    let mut steps = report.steps.clone();
    if steps.is_empty() {
        return Err(err("no run to plot".into()));
    }
    steps.sort_by_key(|s| s.cameras);
    let x_max = steps.last().map_or(1.0, |s| s.cameras as f64) * 1.05 + 0.5;
    let pts = |f: &dyn Fn(&CapacityStep) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|s| (s.cameras as f64, f(s))).collect()
    };
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let b = &report.bench;
    let mut stream = b
        .stream
        .as_ref()
        .map_or_else(|| b.source.to_string(), |s| s.summary());
    if let Some(d) = &b.detect_stream {
        stream = format!("main {stream}, analysed {}", d.summary());
    }
    // Two title lines: the streams, then the model, box and result (one
    // line is wider than the picture for a dual-stream camera).
    let title = format!(
        "{} ({} thread × {} worker) on {} — capacity {} at {} fps",
        Path::new(&b.model)
            .file_name()
            .map_or_else(|| b.model.clone(), |f| f.to_string_lossy().to_string()),
        b.detector_threads,
        b.detector_workers,
        b.cpu,
        report.capacity,
        report.target_fps
    );
    let root = root
        .titled(&stream, ("sans-serif", 14))
        .and_then(|r| r.titled(&title, ("sans-serif", 14)))
        .map_err(|e| err(e.to_string()))?;
    let (top, bottom) = root.split_vertically(340);
    let target = report.target_fps;
    let hold = report.target_fps * report.hold_ratio;
    draw_lines(
        &top,
        "analysed frames/s per camera",
        "fps",
        x_max,
        &[
            ("slowest camera", RED, pts(&|s| s.min_fps)),
            ("median camera", BLUE, pts(&|s| s.median_fps)),
            ("fastest camera", GREEN, pts(&|s| s.max_fps)),
            ("target", BLACK, pts(&|_| target)),
            ("hold line", RGBColor(150, 150, 150), pts(&|_| hold)),
        ],
        &err,
    )?;
    draw_lines(
        &bottom,
        "CPU (% of one core)",
        "%",
        x_max,
        &[
            ("process", BLUE, pts(&|s| s.cpu_pct)),
            ("node (harness excluded)", MAGENTA, pts(&|s| s.node_cpu_pct)),
            ("all cores", BLACK, pts(&|_| 100.0 * b.cores as f64)),
        ],
        &err,
    )?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
