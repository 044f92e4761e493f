//! Which video decoder a camera uses, how many threads it gets, and
//! keyframe-only decoding while the camera is idle.
//!
//! **Decoder choice** (`[node] decoder`, `[[cameras]] decoder`): GStreamer's
//! `uridecodebin` (or `decodebin` for v4l2) asks `autoplug-sort` for the
//! order in which to try the factories that can handle a stream. The handler
//! here rewrites that list: `software` removes hardware decoders, a hardware
//! family (`vaapi`, `nvdec`, `v4l2`) keeps only that family's decoders (any
//! rank: GStreamer 1.22 registers its `va` decoders at rank none), and `auto`
//! puts every hardware decoder GStreamer has for the stream first, then the
//! software ones. A hardware family with no decoder element installed at all
//! is refused when the camera starts ([`check_choice`]), naming the elements
//! and the package. With `auto`, a hardware decoder that fails is remembered
//! and the camera reconnects at once with the next one (software last),
//! logged as a warning.
//!
//! **Threads** (`[[cameras]] decoder_threads`): set as `max-threads` on the
//! FFmpeg decoders (`avdec_*`), the only software decoders that thread.
//!
//! **Keyframe-only decoding** ([`KeyframeGate`]): a pad probe on the
//! decoder's sink pad drops compressed delta units (`DELTA_UNIT`: P and B
//! frames) while the gate is set, so the decoder only sees keyframes. The
//! camera's analytics sets and clears the gate (see `node::idle`). Once a
//! delta unit has been dropped, the following ones reference a picture the
//! decoder never had, so after the gate is cleared deltas stay dropped until
//! the next keyframe: full-rate decoding resumes at the next GOP. A stream
//! with no keyframe for [`MAX_GOP_S`] (periodic intra refresh, a broken
//! encoder) would starve; the probe then stops dropping on that connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::SourceError;
use super::pipeline::ConnStats;

/// A stream without a keyframe for this long (PTS) is decoded in full even
/// while its camera is idle: dropping its deltas would leave no picture.
pub const MAX_GOP_S: f64 = 10.0;

/// Which decoders a camera may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecoderChoice {
    /// Hardware decoders GStreamer finds first, software otherwise.
    #[default]
    Auto,
    /// Software decoders only (FFmpeg's `avdec_*` and the like).
    Software,
    /// VA-API (Intel, AMD): `vah264dec`… or `vaapih264dec`….
    Vaapi,
    /// NVIDIA NVDEC: `nvh264dec`….
    Nvdec,
    /// V4L2 memory-to-memory (Raspberry Pi, many ARM boards): `v4l2h264dec`….
    V4l2,
}

/// A hardware decoder family, by element name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Vaapi,
    Nvdec,
    V4l2,
    /// Other hardware (Intel Media SDK / QSV, Direct3D, OpenMAX…).
    OtherHardware,
}

impl DecoderChoice {
    /// The accepted setting values, in the order the docs list them.
    pub const NAMES: [&'static str; 5] = ["auto", "software", "vaapi", "nvdec", "v4l2"];

    /// Parses a setting value (`auto`, `software`, `vaapi`, `nvdec`, `v4l2`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "software" => Self::Software,
            "vaapi" => Self::Vaapi,
            "nvdec" => Self::Nvdec,
            "v4l2" => Self::V4l2,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Software => "software",
            Self::Vaapi => "vaapi",
            Self::Nvdec => "nvdec",
            Self::V4l2 => "v4l2",
        }
    }

    fn family(self) -> Option<Family> {
        match self {
            Self::Vaapi => Some(Family::Vaapi),
            Self::Nvdec => Some(Family::Nvdec),
            Self::V4l2 => Some(Family::V4l2),
            Self::Auto | Self::Software => None,
        }
    }

    /// The elements and the package a hardware family needs, for the refusal.
    fn needs(self) -> &'static str {
        match self {
            Self::Vaapi => {
                "vah264dec / vah265dec (GStreamer's `va` plugin, gstreamer1.0-plugins-bad) or \
                 vaapih264dec / vaapih265dec (gstreamer1.0-vaapi), and a VA-API driver \
                 (intel-media-va-driver, mesa-va-drivers) with /dev/dri"
            }
            Self::Nvdec => {
                "nvh264dec / nvh265dec (GStreamer's `nvcodec` plugin, gstreamer1.0-plugins-bad), \
                 registered only where the NVIDIA driver's libnvcuvid and libcuda load"
            }
            Self::V4l2 => {
                "v4l2h264dec / v4l2h265dec (GStreamer's `video4linux2` plugin, \
                 gstreamer1.0-plugins-good), registered only where a V4L2 memory-to-memory \
                 decoder device exists (/dev/video*)"
            }
            Self::Auto | Self::Software => "",
        }
    }
}

impl std::fmt::Display for DecoderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The hardware family of a decoder element, by its factory name; `None`
/// for software decoders.
fn family_of(factory: &gst::ElementFactory) -> Option<Family> {
    let n = factory.name();
    let n = n.as_str();
    if n.starts_with("vaapi") || (n.starts_with("va") && n.ends_with("dec")) {
        Some(Family::Vaapi)
    } else if n.starts_with("nv") {
        Some(Family::Nvdec)
    } else if n.starts_with("v4l2") {
        Some(Family::V4l2)
    } else if [
        "msdk", "qsv", "d3d11", "d3d12", "vtdec", "amc", "omx", "mpp",
    ]
    .iter()
    .any(|p| n.starts_with(p))
        || factory.klass().contains("Hardware")
    {
        Some(Family::OtherHardware)
    } else {
        None
    }
}

fn is_video_decoder(factory: &gst::ElementFactory) -> bool {
    let k = factory.klass();
    k.contains("Decoder") && k.contains("Video")
}

/// Every video decoder element registered, highest rank first.
fn video_decoders() -> Vec<gst::ElementFactory> {
    let mut v: Vec<gst::ElementFactory> = gst::ElementFactory::factories_with_type(
        gst::ElementFactoryType::DECODER | gst::ElementFactoryType::MEDIA_VIDEO,
        gst::Rank::NONE,
    )
    .into_iter()
    .filter(is_video_decoder)
    .collect();
    v.sort_by_key(|f| std::cmp::Reverse(f.rank()));
    v
}

/// The hardware video decoders installed (element names), for the log.
pub fn hardware_decoders() -> Vec<String> {
    video_decoders()
        .iter()
        .filter(|f| family_of(f).is_some())
        .map(|f| f.name().to_string())
        .collect()
}

/// Refuses a hardware family with no decoder element installed; for `auto`
/// says once per process which hardware decoders there are.
pub(crate) fn check_choice(choice: DecoderChoice) -> Result<(), SourceError> {
    let Some(family) = choice.family() else {
        if choice == DecoderChoice::Auto {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                let hw = hardware_decoders();
                if hw.is_empty() {
                    tracing::info!(
                        decoder = "auto",
                        "no hardware video decoder installed; cameras decode in software"
                    );
                } else {
                    tracing::info!(decoder = "auto", hardware = ?hw, "hardware video decoders found; tried first");
                }
            });
        }
        return Ok(());
    };
    if video_decoders()
        .iter()
        .any(|f| family_of(f) == Some(family))
    {
        return Ok(());
    }
    Err(SourceError::NoDecoder {
        choice: choice.name(),
        needs: choice.needs(),
    })
}

/// A camera's decoder policy, shared by its connections: the choice, the
/// thread count and the hardware decoders that failed (skipped by `auto`).
#[derive(Debug)]
pub(crate) struct DecoderPolicy {
    pub choice: DecoderChoice,
    /// `max-threads` of `avdec_*`; 0 = FFmpeg's automatic count.
    pub threads: u32,
    failed: Mutex<Vec<String>>,
}

impl DecoderPolicy {
    pub fn new(choice: DecoderChoice, threads: u32) -> Self {
        Self {
            choice,
            threads,
            failed: Mutex::new(Vec::new()),
        }
    }

    fn failed(&self, name: &str) -> bool {
        self.failed
            .lock()
            .map(|f| f.iter().any(|n| n == name))
            .unwrap_or(false)
    }

    /// After a bus error from `element`: with `auto`, a hardware decoder
    /// that failed is skipped from now on; true when the camera should
    /// reconnect at once to try the next decoder.
    pub fn on_error(&self, camera: &str, element: Option<&gst::Element>, error: &str) -> bool {
        if self.choice != DecoderChoice::Auto {
            return false;
        }
        let Some(f) = element.and_then(gst::Element::factory) else {
            return false;
        };
        if !is_video_decoder(&f) || family_of(&f).is_none() {
            return false;
        }
        let name = f.name().to_string();
        let Ok(mut failed) = self.failed.lock() else {
            return false;
        };
        if failed.contains(&name) {
            return false;
        }
        tracing::warn!(camera, decoder = %name, error, "hardware decoder failed; falling back to the next decoder (software last)");
        failed.push(name);
        true
    }

    /// The `autoplug-sort` answer: the factories to try for `caps`, in
    /// order; `None` keeps GStreamer's list.
    fn sort(
        &self,
        caps: &gst::Caps,
        given: &[gst::ElementFactory],
    ) -> Option<Vec<gst::ElementFactory>> {
        let encoded_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/") && s.name() != "video/x-raw");
        if !encoded_video {
            return None;
        }
        let (decoders, others): (Vec<_>, Vec<_>) =
            given.iter().cloned().partition(is_video_decoder);
        let accepts =
            |f: &gst::ElementFactory| f.can_sink_any_caps(caps) && !self.failed(&f.name());
        let chosen: Vec<gst::ElementFactory> = match self.choice {
            DecoderChoice::Software => decoders
                .into_iter()
                .filter(|f| family_of(f).is_none())
                .collect(),
            DecoderChoice::Auto => {
                let mut hw: Vec<_> = video_decoders()
                    .into_iter()
                    .filter(|f| family_of(f).is_some() && accepts(f))
                    .collect();
                hw.extend(
                    decoders
                        .into_iter()
                        .filter(|f| family_of(f).is_none() && accepts(f)),
                );
                hw
            }
            DecoderChoice::Vaapi | DecoderChoice::Nvdec | DecoderChoice::V4l2 => {
                let family = self.choice.family();
                let v: Vec<_> = video_decoders()
                    .into_iter()
                    .filter(|f| family_of(f) == family && f.can_sink_any_caps(caps))
                    .collect();
                if v.is_empty() {
                    tracing::warn!(decoder = self.choice.name(), caps = %caps, needs = self.choice.needs(), "no decoder of the chosen family for this stream");
                }
                v
            }
        };
        // GStreamer's order otherwise: parsers ranked above the decoders
        // (h264parse) stay before them.
        let first = given
            .iter()
            .position(is_video_decoder)
            .unwrap_or(given.len());
        let mut out: Vec<gst::ElementFactory> = given[..first].to_vec();
        out.extend(chosen);
        out.extend(others.into_iter().filter(|f| !given[..first].contains(f)));
        Some(out)
    }

    /// Installs the policy on a `uridecodebin` or `decodebin`.
    pub fn attach(self: &Arc<Self>, bin: &gst::Element) {
        let policy = Arc::clone(self);
        bin.connect("autoplug-sort", false, move |args| {
            let keep = || Some(None::<glib::ValueArray>.to_value());
            let Some(caps) = args.get(2).and_then(|v| v.get::<gst::Caps>().ok()) else {
                return keep();
            };
            let Some(list) = args.get(3).and_then(|v| v.get::<glib::ValueArray>().ok()) else {
                return keep();
            };
            let given: Vec<gst::ElementFactory> =
                list.iter().filter_map(|v| v.get().ok()).collect();
            match policy.sort(&caps, &given) {
                Some(order) => Some(
                    glib::ValueArray::from_values(order.iter().map(ToValue::to_value)).to_value(),
                ),
                None => keep(),
            }
        });
    }
}

/// Shared between a camera's source and its analytics: while set, only
/// keyframes reach the decoder. Cheap to clone (one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct KeyframeGate(Arc<GateInner>);

#[derive(Debug, Default)]
struct GateInner {
    on: AtomicBool,
    skipped: AtomicU64,
}

impl KeyframeGate {
    /// Keyframes only (true) or every frame (false); takes effect at the
    /// next compressed frame (full rate from the next keyframe).
    pub fn set_keyframes_only(&self, on: bool) {
        self.0.on.store(on, Ordering::Relaxed);
    }

    pub fn keyframes_only(&self) -> bool {
        self.0.on.load(Ordering::Relaxed)
    }

    /// Compressed frames dropped before the decoder so far.
    pub fn skipped(&self) -> u64 {
        self.0.skipped.load(Ordering::Relaxed)
    }
}

/// What the probe on one decoder's sink pad remembers.
#[derive(Default)]
struct ProbeState {
    /// A delta unit was dropped since the last keyframe: the next deltas
    /// cannot be decoded until a keyframe passes.
    hole: bool,
    /// PTS (ns) of the last keyframe seen.
    last_key: Option<u64>,
    /// No keyframe for MAX_GOP_S: stop dropping on this connection.
    given_up: bool,
}

/// Drops delta units before `decoder` while `gate` is set (see the module
/// doc); each drop counts as a sign of life for the watchdog.
fn add_gate_probe(
    decoder: &gst::Element,
    gate: &KeyframeGate,
    stats: &Arc<ConnStats>,
    camera: &str,
) {
    let Some(pad) = decoder.static_pad("sink") else {
        return;
    };
    let (gate, stats, camera) = (gate.clone(), Arc::clone(stats), camera.to_string());
    let state = Mutex::new(ProbeState::default());
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let Ok(mut st) = state.lock() else {
            return gst::PadProbeReturn::Ok;
        };
        let flags = buf.flags();
        let pts = buf.pts().or(buf.dts()).map(gst::ClockTime::nseconds);
        if !flags.contains(gst::BufferFlags::DELTA_UNIT) || flags.contains(gst::BufferFlags::HEADER) {
            if !flags.contains(gst::BufferFlags::DELTA_UNIT) {
                st.hole = false;
                st.last_key = pts.or(st.last_key);
            }
            return gst::PadProbeReturn::Ok;
        }
        if st.given_up || !(gate.keyframes_only() || st.hole) {
            return gst::PadProbeReturn::Ok;
        }
        if let (Some(p), Some(k)) = (pts, st.last_key)
            && p.saturating_sub(k) as f64 * 1e-9 > MAX_GOP_S
        {
            st.given_up = true;
            tracing::warn!(camera = %camera, max_gop_s = MAX_GOP_S, "no keyframe in the stream for too long; keyframe-only decoding off on this connection");
            return gst::PadProbeReturn::Ok;
        }
        st.hole = true;
        gate.0.skipped.fetch_add(1, Ordering::Relaxed);
        stats.touch();
        // `Handled`, not `Drop`: see the rate probe in `pipeline.rs`.
        gst::PadProbeReturn::Handled
    });
}

/// Sets up every video decoder the pipeline plugs: its thread count and,
/// when the camera has a gate, the keyframe probe.
pub(crate) fn watch_decoders(
    pipeline: &gst::Pipeline,
    policy: &Arc<DecoderPolicy>,
    gate: Option<&KeyframeGate>,
    stats: &Arc<ConnStats>,
    camera: &str,
) {
    let (policy, gate, stats, camera) = (
        Arc::clone(policy),
        gate.cloned(),
        Arc::clone(stats),
        camera.to_string(),
    );
    pipeline.connect_deep_element_added(move |_, _, element| {
        let Some(f) = element.factory() else { return };
        if !is_video_decoder(&f) {
            return;
        }
        if f.name().starts_with("avdec_") && element.find_property("max-threads").is_some() {
            element.set_property("max-threads", i32::try_from(policy.threads).unwrap_or(0));
        }
        if let Some(gate) = &gate {
            add_gate_probe(element, gate, &stats, &camera);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        for n in DecoderChoice::NAMES {
            assert_eq!(DecoderChoice::parse(n).map(DecoderChoice::name), Some(n));
        }
        assert_eq!(DecoderChoice::parse("cuda"), None);
    }

    #[test]
    fn families_by_element_name() {
        super::super::init().unwrap();
        let fam = |n: &str| gst::ElementFactory::find(n).map(|f| family_of(&f));
        assert_eq!(fam("avdec_h264"), Some(None), "FFmpeg is software");
        assert_eq!(fam("avdec_h265"), Some(None));
        // Absent here, so the families only matter for the refusal.
        assert!(check_choice(DecoderChoice::Software).is_ok());
        assert!(check_choice(DecoderChoice::Auto).is_ok());
    }

    /// The `autoplug-sort` answer: parsers stay, decoders follow the choice.
    #[test]
    fn the_sort_keeps_parsers_and_filters_decoders() {
        super::super::init().unwrap();
        let f = |n: &str| gst::ElementFactory::find(n).unwrap();
        let given = [f("h264parse"), f("avdec_h264")];
        let caps = gst::Caps::builder("video/x-h264").build();
        let names = |choice: DecoderChoice| -> Vec<String> {
            let p = DecoderPolicy::new(choice, 1);
            p.sort(&caps, &given)
                .unwrap()
                .iter()
                .map(|f| f.name().to_string())
                .collect()
        };
        assert_eq!(names(DecoderChoice::Software), ["h264parse", "avdec_h264"]);
        assert_eq!(names(DecoderChoice::Auto), ["h264parse", "avdec_h264"]);
        // No VA-API decoder here: only the parser is left, so GStreamer
        // reports the decoder missing rather than using FFmpeg.
        assert_eq!(names(DecoderChoice::Vaapi), ["h264parse"]);
        // Raw video is none of its business.
        let raw = gst::Caps::builder("video/x-raw").build();
        assert!(
            DecoderPolicy::new(DecoderChoice::Vaapi, 1)
                .sort(&raw, &given)
                .is_none()
        );
    }
}
