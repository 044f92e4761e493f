//! The input geometry of a frame: at what width and height the model sees it.
//!
//! A model with a fixed input (say 640x640) gets every frame at that size,
//! stretched or letterboxed as its manifest says. A model whose input height
//! and width are dynamic (the bundled NanoDet-g, fully convolutional) gets
//! each frame **at its own aspect ratio** within a **pixel budget**: the
//! largest multiples of the model's coarsest stride whose product is about
//! the budget, so the cost per frame stays what the budget says whatever the
//! camera's shape. The default budget, 173,056 pixels, is 416x416: the same
//! cost as the squashed input before, but a 1920x1080 frame is seen at
//! 544x320 instead of being squeezed to 0.22 x 0.39 of its size, so a
//! motorbike seen from behind keeps its proportions.
//!
//! Pure: no ONNX Runtime, no pixels. [`crate::detect::Detector`] asks
//! [`Sizing::plan`] for every frame.

use super::spec::ResizeMode;

/// The default pixel budget: 416 x 416, the bundled model's training size
/// (and the cost of the squashed input it replaced).
pub const DEFAULT_INPUT_PIXELS: u32 = 173_056;

/// The smallest budget accepted: one 32x32 cell grid.
pub const MIN_INPUT_PIXELS: u32 = 32 * 32;

/// The largest budget accepted: 2560 x 1440 (the tensor alone is 44 MB).
pub const MAX_INPUT_PIXELS: u32 = 2560 * 1440;

/// Named budgets (`input_pixels = "detailed"`), as multiples of the pixels
/// of the model's declared input size: name, factor, what it is for (the
/// sizes are the bundled 416x416 model's).
pub const PRESETS: &[(&str, u32, &str)] = &[
    (
        "standard",
        1,
        "the declared input's pixels (416x416: 1920x1080 -> 544x320): the cost of the squashed input",
    ),
    (
        "detailed",
        2,
        "2x the pixels (1920x1080 -> 800x448): dense traffic, small motorbikes; about 2x the inference time",
    ),
    (
        "maximum",
        5,
        "5x the pixels (1920x1080 -> 1248x704): wide junctions, far objects; about 5x the inference time",
    ),
];

/// How a camera's frames are sized for the model (`input_pixels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputBudget {
    /// The model's declared input size and its manifest's resize mode
    /// (`input_pixels = "model"`): what every model got before budgets.
    Model,
    /// `factor` times the pixels of the model's declared input size, at the
    /// frame's aspect ratio (the presets; the default is factor 1, the cost
    /// of the declared size).
    Declared(u32),
    /// About this many input pixels at the frame's aspect ratio (models with
    /// dynamic input); a fixed-size model ignores it.
    Pixels(u32),
    /// Exactly this `(width, height)` (benchmarks, `bench model --input-size`).
    Exact(u32, u32),
}

impl Default for InputBudget {
    fn default() -> Self {
        InputBudget::Declared(1)
    }
}

impl InputBudget {
    /// Parses a config or command-line value: a preset name, `model`, or a
    /// pixel count. The error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "model" {
            return Ok(InputBudget::Model);
        }
        if let Some((_, factor, _)) = PRESETS.iter().find(|(name, _, _)| *name == t) {
            return Ok(InputBudget::Declared(*factor));
        }
        match t.replace('_', "").parse::<u32>() {
            Ok(px) => Self::pixels(px),
            Err(_) => Err(format!(
                "{text:?} is not a pixel count, \"model\" or a preset ({})",
                preset_names()
            )),
        }
    }

    /// A pixel budget, checked against [`MIN_INPUT_PIXELS`]..=[`MAX_INPUT_PIXELS`].
    pub fn pixels(px: u32) -> Result<Self, String> {
        if (MIN_INPUT_PIXELS..=MAX_INPUT_PIXELS).contains(&px) {
            Ok(InputBudget::Pixels(px))
        } else {
            Err(format!(
                "{px} pixels is outside {MIN_INPUT_PIXELS}..={MAX_INPUT_PIXELS} (e.g. 173056 = 416x416, or a preset: {})",
                preset_names()
            ))
        }
    }

    /// `standard`, `173056 px`, `model`, `640x320`: for logs and reports.
    pub fn describe(self) -> String {
        match self {
            InputBudget::Model => "model".into(),
            InputBudget::Declared(f) => match PRESETS.iter().find(|(_, p, _)| *p == f) {
                Some((name, _, _)) => (*name).to_string(),
                None => format!("{f}x the declared pixels"),
            },
            InputBudget::Pixels(px) => format!("{px} px"),
            InputBudget::Exact(w, h) => format!("{w}x{h}"),
        }
    }
}

/// How one camera's frames are analysed: the input budget and whether
/// tiles are added (`input_pixels`, `tiles`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    pub input: InputBudget,
    pub tiles: bool,
}

/// `standard, detailed, maximum`.
pub fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The input size for a `frame_w` x `frame_h` frame within `pixels`:
/// multiples of `stride` at the frame's aspect ratio, each side rounded to
/// the nearest multiple (at least one stride). The product stays within
/// about ±10 % of the budget, and the aspect ratio within half a stride per
/// side (for 1920x1080 at 416x416's budget: 544x320, 1.70 against 1.78).
pub fn aspect_size(frame_w: u32, frame_h: u32, pixels: u32, stride: u32) -> (u32, u32) {
    let stride = stride.max(1);
    if frame_w == 0 || frame_h == 0 {
        let side = ((f64::from(pixels).sqrt() / f64::from(stride)).round() as u32).max(1) * stride;
        return (side, side);
    }
    let scale = (f64::from(pixels) / (f64::from(frame_w) * f64::from(frame_h))).sqrt();
    let round = |v: f64| ((v / f64::from(stride)).round() as u32).max(1) * stride;
    let (mut w, mut h) = (
        round(f64::from(frame_w) * scale),
        round(f64::from(frame_h) * scale),
    );
    // Rounding both sides up can overshoot the budget by a third of a
    // stride-row; take the side whose shrinking costs the least aspect error
    // back down once when it does by more than 10 %.
    if f64::from(w) * f64::from(h) > 1.1 * f64::from(pixels) {
        let aspect = f64::from(frame_w) / f64::from(frame_h);
        let err = |w: u32, h: u32| (f64::from(w) / f64::from(h) / aspect).ln().abs();
        let narrower = (w.saturating_sub(stride).max(stride), h);
        let shorter = (w, h.saturating_sub(stride).max(stride));
        (w, h) = if err(narrower.0, narrower.1) <= err(shorter.0, shorter.1) {
            narrower
        } else {
            shorter
        };
    }
    (w, h)
}

/// What the detector knows about its model's input: enough to size any frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// The model's input height and width are dynamic.
    pub dynamic: bool,
    /// The coarsest stride the decoder needs (sides must be multiples of it).
    pub stride: u32,
    /// The declared (manifest, metadata or static) input size.
    pub declared: (u32, u32),
    /// The manifest's (or family default) resize mode.
    pub resize: ResizeMode,
}

impl Sizing {
    fn declared_pixels(&self) -> u32 {
        self.declared.0.saturating_mul(self.declared.1)
    }

    /// A budget above the model's own (`detailed`, `maximum`, big counts)
    /// never enlarges a frame past its native pixels: upscaling adds cost,
    /// not detail (a 540x360 clip at `maximum` found half the people it
    /// found at `standard`). Up to the declared size's pixels a small frame
    /// is still enlarged, as the squashed input always did.
    fn cap(&self, px: u32, frame_w: u32, frame_h: u32) -> u32 {
        let native = frame_w.saturating_mul(frame_h);
        px.min(native.max(self.declared_pixels()))
            .min(MAX_INPUT_PIXELS)
    }

    /// The input `(width, height)` and resize mode for a frame under `budget`.
    ///
    /// - fixed-size model, or [`InputBudget::Model`]: the declared size and mode;
    /// - [`InputBudget::Pixels`] / [`InputBudget::Declared`]: [`aspect_size`], stretched into exactly that
    ///   size (the aspect error is at most half a stride per side);
    /// - [`InputBudget::Exact`]: that size (rounded to the stride), stretched.
    pub fn plan(&self, budget: InputBudget, frame_w: u32, frame_h: u32) -> (u32, u32, ResizeMode) {
        if !self.dynamic {
            return (self.declared.0, self.declared.1, self.resize);
        }
        match budget {
            InputBudget::Model => (self.declared.0, self.declared.1, self.resize),
            InputBudget::Declared(factor) => {
                let px = self.declared_pixels().saturating_mul(factor.max(1));
                let (w, h) = aspect_size(
                    frame_w,
                    frame_h,
                    self.cap(px, frame_w, frame_h),
                    self.stride,
                );
                (w, h, ResizeMode::Stretch)
            }
            InputBudget::Pixels(px) => {
                let (w, h) = aspect_size(
                    frame_w,
                    frame_h,
                    self.cap(px, frame_w, frame_h),
                    self.stride,
                );
                (w, h, ResizeMode::Stretch)
            }
            InputBudget::Exact(w, h) => {
                let s = self.stride.max(1);
                let fit = |v: u32| (v.div_ceil(s)).max(1) * s;
                (fit(w), fit(h), ResizeMode::Stretch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn street_shapes_keep_their_aspect_within_the_budget() {
        let cases = [
            ((1920, 1080), (544, 320)),
            ((1280, 720), (544, 320)),
            ((768, 576), (480, 352)),
            ((1568, 778), (576, 288)),
            ((640, 360), (544, 320)),
            ((1080, 1920), (320, 544)),
            ((416, 416), (416, 416)),
        ];
        for ((fw, fh), want) in cases {
            let (w, h) = aspect_size(fw, fh, DEFAULT_INPUT_PIXELS, 32);
            assert_eq!((w, h), want, "{fw}x{fh}");
            assert!(w % 32 == 0 && h % 32 == 0);
            let ratio = f64::from(w * h) / f64::from(DEFAULT_INPUT_PIXELS);
            assert!(
                (0.85..=1.1).contains(&ratio),
                "{fw}x{fh}: {w}x{h} = {ratio}"
            );
            let aspect_err = (f64::from(w) / f64::from(h)) / (f64::from(fw) / f64::from(fh));
            assert!(
                (0.85..=1.18).contains(&aspect_err),
                "{fw}x{fh}: {aspect_err}"
            );
        }
    }

    #[test]
    fn presets_scale_the_cost() {
        for (name, factor, _) in PRESETS {
            let px = DEFAULT_INPUT_PIXELS * factor;
            let (w, h) = aspect_size(1920, 1080, px, 32);
            let ratio = f64::from(w * h) / f64::from(px);
            assert!((0.85..=1.1).contains(&ratio), "{name}: {w}x{h}");
        }
        assert_eq!(
            aspect_size(1920, 1080, 2 * DEFAULT_INPUT_PIXELS, 32),
            (800, 448)
        );
        assert_eq!(
            aspect_size(1920, 1080, 5 * DEFAULT_INPUT_PIXELS, 32),
            (1248, 704)
        );
    }

    #[test]
    fn big_budgets_never_enlarge_a_frame_past_its_own_pixels() {
        let bundled = Sizing {
            dynamic: true,
            stride: 32,
            declared: (416, 416),
            resize: ResizeMode::Stretch,
        };
        // 540x360 (194,400 px): detailed and maximum stop at the frame's own size.
        let (w, h, _) = bundled.plan(InputBudget::Declared(5), 540, 360);
        assert_eq!((w, h), (544, 352));
        assert_eq!(bundled.plan(InputBudget::Declared(2), 540, 360).0, 544);
        // A small frame is still enlarged up to the model's own cost.
        assert_eq!(
            bundled.plan(InputBudget::Declared(1), 320, 240),
            (480, 352, ResizeMode::Stretch)
        );
        assert_eq!(bundled.plan(InputBudget::Declared(5), 320, 240).0, 480);
        // A big frame gets the whole budget.
        assert_eq!(bundled.plan(InputBudget::Declared(5), 1280, 720).0, 1248);
    }

    #[test]
    fn odd_frames_never_give_a_zero_side() {
        assert_eq!(aspect_size(10_000, 4, MIN_INPUT_PIXELS, 32).1, 32);
        assert_eq!(aspect_size(0, 0, DEFAULT_INPUT_PIXELS, 32), (416, 416));
        let (w, h) = aspect_size(1, 1, MAX_INPUT_PIXELS, 0);
        assert!(w > 0 && h > 0);
    }

    #[test]
    fn budgets_parse_from_names_and_numbers() {
        assert_eq!(InputBudget::parse("model"), Ok(InputBudget::Model));
        assert_eq!(InputBudget::parse("detailed"), Ok(InputBudget::Declared(2)));
        assert_eq!(
            InputBudget::parse("173_056"),
            Ok(InputBudget::Pixels(173_056))
        );
        let err = InputBudget::parse("huge").unwrap_err();
        assert!(err.contains("standard, detailed, maximum"), "{err}");
        let err = InputBudget::parse("12").unwrap_err();
        assert!(err.contains("outside"), "{err}");
        assert_eq!(InputBudget::Declared(2).describe(), "detailed");
        assert_eq!(InputBudget::Pixels(200_000).describe(), "200000 px");
    }

    #[test]
    fn fixed_models_ignore_the_budget() {
        let fixed = Sizing {
            dynamic: false,
            stride: 32,
            declared: (640, 640),
            resize: ResizeMode::Letterbox,
        };
        assert_eq!(
            fixed.plan(InputBudget::Pixels(900_000), 1920, 1080),
            (640, 640, ResizeMode::Letterbox)
        );
        let open = Sizing {
            dynamic: true,
            ..fixed
        };
        assert_eq!(
            open.plan(InputBudget::Model, 1920, 1080),
            (640, 640, ResizeMode::Letterbox)
        );
        // The default keeps a 640x640 model's cost: 1920x1080 -> 864x480.
        assert_eq!(
            open.plan(InputBudget::default(), 1920, 1080),
            (864, 480, ResizeMode::Stretch)
        );
        let bundled = Sizing {
            declared: (416, 416),
            ..open
        };
        assert_eq!(
            bundled.plan(InputBudget::default(), 1920, 1080),
            (544, 320, ResizeMode::Stretch)
        );
        assert_eq!(
            open.plan(InputBudget::Exact(300, 200), 1920, 1080),
            (320, 224, ResizeMode::Stretch)
        );
    }
}
