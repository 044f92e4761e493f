//! `edge-node check --probe`: open a camera for a few seconds and say what
//! it sends (codec, resolution, frame rate) and which decoder GStreamer
//! picked. Same URL parsing, source set-up (credentials, RTSP options) and
//! decoder choice (`decoder`, see `source/decode.rs`) as the ingest pipeline,
//! so the decoder it names is the one the camera will use.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::{Deserialize, Serialize};

use super::decode::{DecoderChoice, DecoderPolicy, check_choice};
use super::url::{Target, parse};
use super::{CameraAuth, SourceError, check_elements, init};
use crate::redact;

/// What a camera sent during a probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeReport {
    /// Encoded format before decoding, e.g. `h264` (from the decoder's input caps).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second the stream declares; `None` when it declares none.
    pub fps: Option<f64>,
    /// The GStreamer decoder element, e.g. `avdec_h264`.
    pub decoder: String,
}

fn probe_error(url: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Probe {
        url: redact::userinfo(url).into_owned(),
        reason: redact::userinfo(&reason.into()).into_owned(),
    }
}

/// Opens `url` (with the camera's `auth` and `decoder` choice), waits up
/// to `timeout` for the first decoded frame, and reports what it was.
/// Errors name the URL with its user info masked.
pub fn probe(
    url: &str,
    auth: &CameraAuth,
    decoder: DecoderChoice,
    timeout: Duration,
) -> Result<ProbeReport, SourceError> {
    init()?;
    let target = parse(url)?;
    check_elements(&target)?;
    check_choice(decoder)?;
    if let Target::File(p) = &target
        && !p.is_file()
    {
        return Err(probe_error(url, format!("{} does not exist", p.display())));
    }
    let creds = auth.resolve().map_err(|e| probe_error(url, e))?;
    let decoder_choice = decoder;
    let pipeline = gst::Pipeline::new();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .map_err(|e| probe_error(url, e.to_string()))?;
    pipeline
        .add(&sink)
        .map_err(|e| probe_error(url, e.to_string()))?;
    let decoder = match &target {
        Target::File(path) => {
            let uri = gst::glib::filename_to_uri(path, None)
                .map_err(|e| probe_error(url, e.to_string()))?;
            super::pipeline::uridecodebin(uri.as_str(), false, creds)
        }
        Target::Uri(uri) => super::pipeline::uridecodebin(uri, false, creds),
        Target::V4l2(device) => gst::ElementFactory::make("v4l2src")
            .property("device", device)
            .build()
            .map_err(|e| e.to_string())
            .and_then(|src| {
                let dec = gst::ElementFactory::make("decodebin")
                    .build()
                    .map_err(|e| e.to_string())?;
                pipeline.add_many([&src, &dec]).map_err(|e| e.to_string())?;
                src.link(&dec).map_err(|e| e.to_string())?;
                Ok(dec)
            }),
    }
    .map_err(|e| probe_error(url, e))?;
    if decoder.parent().is_none() {
        pipeline
            .add(&decoder)
            .map_err(|e| probe_error(url, e.to_string()))?;
    }
    Arc::new(DecoderPolicy::new(decoder_choice, 0)).attach(&decoder);
    let result = run_probe(&pipeline, &decoder, &sink, timeout);
    let _ = pipeline.set_state(gst::State::Null);
    result.map_err(|e| probe_error(url, e))
}

/// The video decoders GStreamer plugs, in order.
fn watch_decoders(pipeline: &gst::Pipeline) -> Arc<Mutex<Vec<gst::Element>>> {
    let decoders = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&decoders);
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_decoder = element.factory().is_some_and(|f| {
            let klass = f.klass();
            klass.contains("Decoder") && klass.contains("Video")
        });
        if is_decoder && let Ok(mut v) = seen.lock() {
            v.push(element.clone());
        }
    });
    decoders
}

fn run_probe(
    pipeline: &gst::Pipeline,
    decoder: &gst::Element,
    sink: &gst::Element,
    timeout: Duration,
) -> Result<ProbeReport, String> {
    let decoders = watch_decoders(pipeline);
    let sink_pad = sink.static_pad("sink").ok_or("fakesink has no sink pad")?;
    let (tx, rx) = mpsc::channel::<gst::Caps>();
    let tx = Mutex::new(Some(tx));
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
        if let (Some(caps), Ok(mut tx)) = (pad.current_caps(), tx.lock())
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(caps);
        }
        gst::PadProbeReturn::Ok
    });
    let sink_weak = sink.downgrade();
    decoder.connect_pad_added(move |_, pad| {
        let Some(sink) = sink_weak.upgrade().and_then(|s| s.static_pad("sink")) else {
            return;
        };
        let is_video = pad
            .current_caps()
            .unwrap_or_else(|| pad.query_caps(None))
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        if is_video && !sink.is_linked() {
            let _ = pad.link(&sink);
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    let bus = pipeline.bus().ok_or("pipeline has no bus")?;
    let deadline = Instant::now() + timeout;
    let caps = loop {
        if let Ok(caps) = rx.try_recv() {
            break caps;
        }
        if Instant::now() >= deadline {
            return Err(format!("no video frame within {} s", timeout.as_secs_f64()));
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    return Err(format!("{}{debug}", e.error()));
                }
                gst::MessageView::Eos(_) => return Err("the stream ended before a frame".into()),
                _ => {}
            }
        }
    };
    let s = caps.structure(0).ok_or("decoded caps are empty")?;
    let dim = |k: &str| s.get::<i32>(k).ok().and_then(|v| u32::try_from(v).ok());
    let fps = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map(|f| f64::from(f.numer()) / f64::from(f.denom()));
    let dec = decoders.lock().ok().and_then(|v| v.last().cloned());
    let codec = dec
        .as_ref()
        .and_then(|d| d.static_pad("sink"))
        .and_then(|p| p.current_caps())
        .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
        .map(|n| {
            n.trim_start_matches("video/x-")
                .trim_start_matches("video/")
                .to_string()
        })
        .unwrap_or_else(|| "raw".into());
    Ok(ProbeReport {
        codec,
        width: dim("width").unwrap_or(0),
        height: dim("height").unwrap_or(0),
        fps,
        decoder: dec
            .and_then(|d| d.factory())
            .map(|f| f.name().to_string())
            .unwrap_or_else(|| "none (raw video)".into()),
    })
}
