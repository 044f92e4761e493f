//! The snapshot path on arbitrary frames, boxes and options: `render`
//! (masks, crop, downscale, box and label, JPEG), `blur_regions`,
//! `fill_polygons` and `preview`. Frames are small (at most 96 000 pixels,
//! including 0, 1 and odd sizes) to keep each run fast; now and then the
//! declared size does not match the buffer (up to `u32::MAX` each way),
//! which must be refused or ignored, never trusted.
#![no_main]

#[path = "common.rs"]
mod common;

use common::Input;
use edge_node::frame::BBox;
use edge_node::snapshot::{
    Overlay, Polygon, SnapshotOptions, blur_regions, fill_polygons, preview, render,
};
use libfuzzer_sys::fuzz_target;

fn bbox(inp: &mut Input<'_>) -> BBox {
    BBox::new(inp.f32(), inp.f32(), inp.f32(), inp.f32())
}

fn polygon(inp: &mut Input<'_>) -> Polygon {
    (0..inp.upto(9)).map(|_| [inp.f32(), inp.f32()]).collect()
}

fn text(inp: &mut Input<'_>) -> String {
    let bytes: Vec<u8> = (0..inp.upto(30)).map(|_| inp.u8()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let (mut w, mut h) = (inp.upto(400) as u32, inp.upto(400) as u32);
    if w as u64 * h as u64 > 96_000 {
        h = (96_000 / w.max(1)).max(1);
    }
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    let seed = inp.u8();
    for (i, b) in rgb.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    // Sometimes lie about the size: the buffer stays as it is.
    if inp.u8() == 0xff {
        (w, h) = match inp.u8() % 4 {
            0 => (u32::MAX, u32::MAX),
            1 => (inp.u32(), inp.u32()),
            2 => (w + 1, h),
            _ => (w, h.saturating_sub(1)),
        };
    }
    let opts = SnapshotOptions {
        max_height: inp.upto(500) as u32,
        quality: inp.u8(),
        crop: inp.bool(),
        crop_margin: inp.f32(),
        draw_box: inp.bool(),
        masks: (0..inp.upto(3)).map(|_| polygon(&mut inp)).collect(),
    };
    let b = bbox(&mut inp);
    let label = text(&mut inp);
    if let Ok(s) = render(&rgb, w, h, b, &label, &opts) {
        assert!(s.width >= 1 && s.height >= 1 && s.height <= opts.max_height.max(1));
        assert!(
            s.width <= w && s.height <= h,
            "{}x{} from {w}x{h}",
            s.width,
            s.height
        );
        assert!(!s.jpeg.is_empty());
    }

    let boxes: Vec<BBox> = (0..inp.upto(4)).map(|_| bbox(&mut inp)).collect();
    blur_regions(&mut rgb, w, h, &boxes);
    let masks: Vec<Polygon> = (0..inp.upto(3)).map(|_| polygon(&mut inp)).collect();
    fill_polygons(&mut rgb, w, h, &masks);

    if inp.bool() {
        let ov = Overlay {
            zones: (0..inp.upto(2))
                .map(|_| (text(&mut inp), polygon(&mut inp)))
                .collect(),
            lines: (0..inp.upto(2))
                .map(|_| {
                    let name = text(&mut inp);
                    let a = [inp.f32(), inp.f32()];
                    let b = [inp.f32(), inp.f32()];
                    (name, a, b, text(&mut inp))
                })
                .collect(),
            ignore: (0..inp.upto(2)).map(|_| polygon(&mut inp)).collect(),
            masks,
            boxes: boxes.into_iter().map(|b| (b, text(&mut inp))).collect(),
        };
        let quality = inp.u8();
        let _ = preview(&rgb, w, h, &ov, quality);
    }
});
