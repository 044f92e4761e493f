//! What a video file carries, read from its compressed packets without
//! decoding: codec, size, frame rate, bit rate and keyframe interval. Every
//! capacity figure (`bench pipeline`) states the stream it was measured on.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde::Serialize;

use super::{SourceError, init};

/// A file's video stream as a camera would send it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamFacts {
    /// `h264`, `h265`, … (the parser's output caps, `video/x-` dropped).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second, from the packets' timestamps.
    pub fps: f64,
    /// Mean bit rate of the video packets, kbit/s.
    pub kbit_s: f64,
    /// Median frames from one keyframe to the next (`None`: one keyframe only).
    pub gop_frames: Option<u32>,
    pub frames: u64,
    pub duration_s: f64,
}

impl StreamFacts {
    /// `1920×1080 h264 25 fps 4.0 Mbit/s GOP 50 (2.0 s)`.
    pub fn summary(&self) -> String {
        let gop = match self.gop_frames {
            Some(g) => format!(" GOP {g} ({:.1} s)", f64::from(g) / self.fps.max(1e-9)),
            None => " one keyframe".into(),
        };
        format!(
            "{}×{} {} {:.0} fps {:.2} Mbit/s{gop}",
            self.width,
            self.height,
            self.codec,
            self.fps,
            self.kbit_s / 1000.0
        )
    }
}

fn err(path: &Path, reason: impl std::fmt::Display) -> SourceError {
    SourceError::Describe {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every video packet of `path` (demux and parse only, no decoding).
pub fn describe_file(path: &Path) -> Result<StreamFacts, SourceError> {
    init()?;
    if !path.is_file() {
        return Err(err(path, "no such file"));
    }
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| err(path, e))?;
    let parse = gst::ElementFactory::make("parsebin")
        .build()
        .map_err(|e| err(path, format!("cannot create parsebin: {e}")))?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([&src, &parse, sink.upcast_ref()])
        .map_err(|e| err(path, e))?;
    src.link(&parse).map_err(|e| err(path, e))?;
    let sink_weak = sink.downgrade();
    parse.connect_pad_added(move |_, pad| {
        let video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if let (true, Some(sink)) = (video, sink_weak.upgrade())
            && let Some(sp) = sink.static_pad("sink")
            && !sp.is_linked()
        {
            let _ = pad.link(&sp);
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| err(path, e))?;
    let mut caps: Option<gst::Caps> = None;
    let (mut bytes, mut frames) = (0u64, 0u64);
    let mut pts: Vec<u64> = Vec::new();
    let mut keyframes: Vec<u64> = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if caps.is_none() {
            caps = sample.caps_owned();
        }
        if let Some(buf) = sample.buffer() {
            bytes += buf.size() as u64;
            if !buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                keyframes.push(frames);
            }
            if let Some(t) = buf.pts() {
                pts.push(t.nseconds());
            }
            frames += 1;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let caps = caps.ok_or_else(|| err(path, "no video stream"))?;
    facts(&caps, bytes, frames, &mut pts, &keyframes).ok_or_else(|| err(path, "no video packets"))
}

fn facts(
    caps: &gst::Caps,
    bytes: u64,
    frames: u64,
    pts: &mut [u64],
    keyframes: &[u64],
) -> Option<StreamFacts> {
    let s = caps.structure(0)?;
    let codec = s.name().trim_start_matches("video/x-").to_string();
    let width = s.get::<i32>("width").ok()?.max(0) as u32;
    let height = s.get::<i32>("height").ok()?.max(0) as u32;
    pts.sort_unstable();
    let (first, last) = (*pts.first()?, *pts.last()?);
    // The last frame lasts one frame period too.
    let span = (last - first) as f64 / 1e9;
    let fps = if frames > 1 && span > 0.0 {
        (frames - 1) as f64 / span
    } else {
        0.0
    };
    let duration_s = if fps > 0.0 { span + 1.0 / fps } else { span };
    let mut gaps: Vec<u64> = keyframes.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    Some(StreamFacts {
        codec,
        width,
        height,
        fps: (fps * 100.0).round() / 100.0,
        kbit_s: if duration_s > 0.0 {
            (bytes as f64 * 8.0 / duration_s / 1000.0).round()
        } else {
            0.0
        },
        gop_frames: gaps.get(gaps.len() / 2).map(|&g| g as u32),
        frames,
        duration_s: (duration_s * 1000.0).round() / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_clip_is_described_without_decoding() {
        let clip =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vtest_10s_h264.mp4");
        let f = describe_file(&clip).unwrap();
        assert_eq!(f.codec, "h264");
        assert_eq!((f.width, f.height), (768, 576));
        assert_eq!(f.frames, 100);
        assert!((f.fps - 10.0).abs() < 0.01, "{f:?}");
        assert!((f.duration_s - 10.0).abs() < 0.01, "{f:?}");
        // 693,520 bytes of file, almost all video: ≈ 0.55 Mbit/s.
        assert!(f.kbit_s > 500.0 && f.kbit_s < 560.0, "{f:?}");
        assert!(
            f.summary().starts_with("768×576 h264 10 fps 0.5"),
            "{}",
            f.summary()
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = describe_file(Path::new("/nonexistent/clip.mp4")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/clip.mp4"), "{e}");
    }
}
