//! Synthetic pictures: a textured scene with sensor noise and a passing
//! "vehicle", turned bad in each way the monitor looks for.

use super::*;

const W: usize = 160;
const H: usize = 120;

/// Deterministic noise in -1..1 from a seed.
fn noise(seed: u64) -> f32 {
    let x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// The scene at `t`, seen through a camera shifted by `shift` pixels, with
/// a dark box driving across, brightness `gain` and `offset`.
fn scene(t: f64, shift: usize, gain: f32, offset: f32) -> Thumbnail {
    let car_x = ((t * 25.0) as usize) % (W + 30);
    let mut grey = Vec::with_capacity(W * H);
    for y in 0..H {
        for x in 0..W {
            let (sx, sy) = ((x + shift) as f32, y as f32);
            let mut v = 120.0
                + 50.0 * (sx * 0.31).sin() * (sy * 0.23).cos()
                + 30.0 * ((sx + 2.0 * sy) * 0.71).sin()
                + 20.0 * (((sx * 0.05).floor() + (sy * 0.08).floor()) % 2.0);
            if (55..75).contains(&y) && x + 30 >= car_x && x < car_x {
                v = 40.0;
            }
            let n = noise((t * 1000.0) as u64 * 100_000 + (y * W + x) as u64);
            grey.push((v * gain + offset + n).clamp(0.0, 255.0));
        }
    }
    Thumbnail {
        width: W,
        height: H,
        grey,
    }
}

/// A defocus: a binomial 3 × 3 filter applied `n` times (near Gaussian).
fn blur(t: &Thumbnail, n: usize) -> Thumbnail {
    let mut g = t.grey.clone();
    for _ in 0..n {
        let src = g.clone();
        for y in 0..H {
            for x in 0..W {
                let at = |xx: usize, yy: usize| src[yy.min(H - 1) * W + xx.min(W - 1)];
                let (xl, yu) = (x.saturating_sub(1), y.saturating_sub(1));
                let row = |yy| at(xl, yy) + 2.0 * at(x, yy) + at(x + 1, yy);
                g[y * W + x] = (row(yu) + 2.0 * row(y) + row(y + 1)) / 16.0;
            }
        }
    }
    Thumbnail {
        grey: g,
        ..t.clone()
    }
}

fn cfg() -> TamperConfig {
    TamperConfig {
        learn_s: 5.0,
        raise_after_s: 3.0,
        frozen_after_s: 3.0,
        clear_after_s: 3.0,
        ..TamperConfig::default()
    }
}

/// Runs the monitor once a second over `0..end` with `pic(t)`; the
/// transitions as `(t, "kind" or "kind_cleared")`.
fn run(end: u32, mut pic: impl FnMut(f64) -> Thumbnail) -> Vec<(f64, String)> {
    let mut m = TamperMonitor::new(cfg());
    let mut out = Vec::new();
    for i in 0..end * 5 {
        let t = f64::from(i) * 0.2;
        if !m.due(t) {
            continue;
        }
        let (tr, _) = m.check(&pic(t), t);
        for x in tr {
            let name = if x.raised {
                x.kind.name().to_string()
            } else {
                format!("{}_cleared", x.kind.name())
            };
            out.push((x.t, name));
        }
    }
    out
}

fn names(v: &[(f64, String)]) -> Vec<&str> {
    v.iter().map(|(_, n)| n.as_str()).collect()
}

#[test]
fn a_live_scene_with_traffic_and_a_lighting_change_raises_nothing() {
    let out = run(60, |t| {
        if t < 30.0 {
            scene(t, 0, 1.0, 0.0)
        } else {
            scene(t, 0, 0.6, 25.0)
        }
    });
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_frozen_picture_raises_after_its_duration_and_clears_when_it_moves_again() {
    let still = scene(12.0, 0, 1.0, 0.0);
    let out = run(40, |t| {
        if (12.0..25.0).contains(&t) {
            still.clone()
        } else {
            scene(t, 0, 1.0, 0.0)
        }
    });
    assert_eq!(names(&out), ["frozen", "frozen_cleared"], "{out:?}");
    // First identical check at 13 s, raised 3 s later; cleared 3 s after 25 s.
    assert_eq!(out[0].0, 16.0);
    assert_eq!(out[1].0, 28.0);
}

#[test]
fn a_black_picture_is_black_not_frozen_and_a_uniform_grey_one_too() {
    let out = run(40, |t| {
        if (10.0..20.0).contains(&t) {
            Thumbnail {
                width: W,
                height: H,
                grey: vec![0.0; W * H],
            }
        } else if (26.0..34.0).contains(&t) {
            Thumbnail {
                width: W,
                height: H,
                grey: vec![128.0; W * H],
            }
        } else {
            scene(t, 0, 1.0, 0.0)
        }
    });
    assert_eq!(
        names(&out),
        ["black", "black_cleared", "black", "black_cleared"],
        "{out:?}"
    );
}

#[test]
fn a_blurred_picture_is_blurred_not_moved() {
    let out = run(40, |t| {
        let s = scene(t, 0, 1.0, 0.0);
        if (10.0..25.0).contains(&t) {
            blur(&s, 4)
        } else {
            s
        }
    });
    assert_eq!(names(&out), ["blurred", "blurred_cleared"], "{out:?}");
}

#[test]
fn a_moved_camera_is_moved_not_blurred() {
    let out = run(40, |t| {
        scene(t, if (10.0..25.0).contains(&t) { 12 } else { 0 }, 1.0, 0.0)
    });
    assert_eq!(names(&out), ["moved", "moved_cleared"], "{out:?}");
}

#[test]
fn a_camera_that_keeps_panning_is_not_moved() {
    // From the cable car: the view drifts on all the time and never settles.
    let out = run(40, |t| {
        let shift = if t < 8.0 {
            0
        } else {
            ((t - 8.0) * 4.0) as usize
        };
        scene(t, shift, 1.0, 0.0)
    });
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_condition_that_comes_and_goes_within_its_duration_never_raises() {
    let black = Thumbnail {
        width: W,
        height: H,
        grey: vec![0.0; W * H],
    };
    // Black every other second (headlights, a bus passing close).
    let out = run(40, |t| {
        if (t as u32) % 2 == 1 {
            black.clone()
        } else {
            scene(t, 0, 1.0, 0.0)
        }
    });
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_top_band_is_ignored() {
    // A clock in the top band changes every second while the rest is frozen.
    let still = scene(0.0, 0, 1.0, 0.0);
    let out = run(20, |t| {
        let mut p = still.clone();
        for v in &mut p.grey[..W * 8] {
            *v = (t * 40.0) as f32 % 255.0;
        }
        p
    });
    assert_eq!(names(&out), ["frozen"], "{out:?}");
}

#[test]
fn thumbnail_is_an_area_average_of_luma() {
    // 320 × 240: left half white, right half black, one red pixel.
    let (w, h) = (320usize, 240usize);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w / 2 {
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&[255, 255, 255]);
        }
    }
    let t = Thumbnail::from_rgb(w as u32, h as u32, &rgb).unwrap();
    assert_eq!((t.width, t.height), (160, 120));
    assert!((t.grey[0] - 255.0).abs() < 0.01);
    assert_eq!(t.grey[159], 0.0);
    assert!(Thumbnail::from_rgb(w as u32, h as u32, &rgb[1..]).is_none());
    // Narrower than the thumbnail: kept as is.
    let t = Thumbnail::from_rgb(2, 2, &[255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!((t.width, t.height), (2, 2));
    assert!((t.grey[0] - 77.0 * 255.0 / 256.0).abs() < 0.01);
}

#[test]
fn config_ranges_are_checked() {
    assert_eq!(TamperConfig::default().validate(), Ok(()));
    let bad = TamperConfig {
        interval_s: 0.0,
        ..TamperConfig::default()
    };
    assert!(matches!(
        bad.validate(),
        Err(TamperError::OutOfRange {
            name: "interval_s",
            ..
        })
    ));
    let bands = TamperConfig {
        ignore_top: 0.5,
        ignore_bottom: 0.5,
        ..TamperConfig::default()
    };
    assert!(matches!(bands.validate(), Err(TamperError::Bands(_))));
}
