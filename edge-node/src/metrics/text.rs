//! The Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once
//! per family, then its samples; histograms as `_bucket{le=…}`, `_sum` and
//! `_count`. Label values are escaped (`\\`, `\"`, `\n`).

use std::fmt::Write;

use super::histogram::HistogramReading;

/// The content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The page being written.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a family (its help and type lines).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of an integer figure.
    pub fn int(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.name_labels(name, labels, None);
        let _ = writeln!(self.out, " {v}");
    }

    /// One sample of a real figure.
    pub fn real(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.name_labels(name, labels, None);
        let _ = writeln!(self.out, " {}", number(v));
    }

    /// A histogram's series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramReading) {
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.cumulative {
            self.name_labels(&bucket, labels, Some(&number(*le)));
            let _ = writeln!(self.out, " {n}");
        }
        self.real(&format!("{name}_sum"), labels, h.sum_s);
        self.int(&format!("{name}_count"), labels, h.count);
    }

    fn name_labels(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            let _ = write!(self.out, "{k}=\"{}\"", escape_value(v));
        }
        self.out.push('}');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A number as the format writes it (`+Inf`, `-Inf`, `NaN`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::Histogram;

    #[test]
    fn families_samples_and_histograms_in_the_text_format() {
        let mut t = Text::default();
        t.family("x_total", Kind::Counter, "Things.");
        t.int("x_total", &[("camera", "a\"b\\c\nd")], 3);
        t.family("g", Kind::Gauge, "A gauge.");
        t.real("g", &[], 0.5);
        let h = Histogram::new(&[0.5]);
        h.observe(std::time::Duration::from_millis(250));
        t.family("h_seconds", Kind::Histogram, "Latency.");
        t.histogram("h_seconds", &[("stage", "pre")], &h.read());
        assert_eq!(
            t.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{camera=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 0.5\n\
             # HELP h_seconds Latency.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{stage=\"pre\",le=\"0.5\"} 1\n\
             h_seconds_bucket{stage=\"pre\",le=\"+Inf\"} 1\n\
             h_seconds_sum{stage=\"pre\"} 0.25\n\
             h_seconds_count{stage=\"pre\"} 1\n"
        );
    }
}
