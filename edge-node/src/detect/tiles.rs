//! Sliced ("tiled") inference for small objects: which tiles to run the
//! detector on, and how to merge what the tiles and the full-frame pass found.
//!
//! A detector trained at 416x416 sees a 1920x1080 frame shrunk 4.6x: a
//! motorbike 40 px wide in the frame is under 9 px at the model input, below
//! what the smallest stride can resolve. Running the model on overlapping
//! crops at *native* resolution (tile size = the model's input size, so no
//! scaling at all) keeps small objects at their real size, while the
//! full-frame pass still catches objects larger than a tile.
//!
//! The price is one extra inference per tile, on top of the full-frame pass.
//! At 416x416 tiles with the default 0.2 overlap (step 333 px, last tile in a
//! row or column pushed flush against the frame's edge):
//!
//! | frame     | tiles (cols x rows) | inferences per frame (tiles + full pass) |
//! |-----------|---------------------|------------------------------------------|
//! | 1280x720  | 8 (4 x 2)           | 9                                        |
//! | 1920x1080 | 18 (6 x 3)          | 19                                       |
//! | 768x576   | 6 (3 x 2)           | 7                                        |
//!
//! (`tests::tile_counts_in_module_doc` asserts these numbers.) Budget the
//! inference thread accordingly: tiling a 1080p camera costs about as much
//! as 19 untiled cameras.
//!
//! Merging ([`merge`]) has to cope with two artefacts of slicing: the same
//! object found several times (by the full pass and by one or more tiles,
//! at slightly different boxes), and objects *cut* by a tile border, which a
//! tile reports as a partial box. Its rules are documented on [`merge`].
//!
//! Pure code: no ONNX Runtime, no pixels; the caller crops, runs the model
//! and maps each tile's boxes to frame pixels (see [`Tile::to_frame`]).

use crate::frame::{BBox, Detection};

/// Overlap used when the configuration names none.
const DEFAULT_OVERLAP: f32 = 0.2;

/// Largest overlap accepted: at 0.9 a tile already steps by a tenth of its
/// size (100x the tiles of no overlap); anything closer to 1 would make the
/// plan explode, and 1 itself would never advance.
const MAX_OVERLAP: f32 = 0.9;

/// The default fraction of a tile shared with its neighbour (0.2).
///
/// 20% of a 416 px tile is 83 px: any object up to that size is whole in at
/// least one tile, which is what the small-object pass is for; larger
/// objects are the full-frame pass's job. A function so that it can serve as
/// a `#[serde(default = "...")]`.
pub fn default_overlap() -> f32 {
    DEFAULT_OVERLAP
}

/// One crop of the frame, in frame pixels: columns `x..x + w`, rows `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Tile {
    /// Left column (inclusive).
    pub x: u32,
    /// Top row (inclusive).
    pub y: u32,
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
}

impl Tile {
    /// First column right of the tile (`x + w`).
    pub const fn right(&self) -> u32 {
        self.x.saturating_add(self.w)
    }

    /// First row below the tile (`y + h`).
    pub const fn bottom(&self) -> u32 {
        self.y.saturating_add(self.h)
    }

    /// Maps a box found in this tile's crop (tile pixels) to frame pixels.
    ///
    /// Tiles are cut at native resolution, so this is a pure translation.
    pub fn to_frame(&self, bbox: BBox) -> BBox {
        let (dx, dy) = (self.x as f32, self.y as f32);
        BBox::new(bbox.x1 + dx, bbox.y1 + dy, bbox.x2 + dx, bbox.y2 + dy)
    }

    /// Whether `bbox` (frame pixels) is probably a partial object: it reaches
    /// to within `edge_px` of one of this tile's edges that is not also an
    /// edge of the `frame_w` x `frame_h` frame.
    ///
    /// A box touching a frame edge is cut by the camera, not by the tiling:
    /// no other tile can see more of it, so it counts as whole.
    pub fn is_cut(&self, bbox: &BBox, frame_w: u32, frame_h: u32, edge_px: f32) -> bool {
        let r = self.as_bbox();
        let left = self.x > 0 && bbox.x1 <= r.x1 + edge_px;
        let top = self.y > 0 && bbox.y1 <= r.y1 + edge_px;
        let right = self.right() < frame_w && bbox.x2 >= r.x2 - edge_px;
        let bottom = self.bottom() < frame_h && bbox.y2 >= r.y2 - edge_px;
        left || top || right || bottom
    }

    /// The tile as a box in frame pixels.
    fn as_bbox(&self) -> BBox {
        BBox::new(
            self.x as f32,
            self.y as f32,
            self.right() as f32,
            self.bottom() as f32,
        )
    }
}

/// The tiles of one frame size, row by row, left to right.
///
/// Depends only on the frame size, tile size and overlap, so the pipeline
/// computes it once per camera (and again when the stream's size changes).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TilePlan {
    /// Every tile, row-major (top row first, left to right inside a row).
    pub tiles: Vec<Tile>,
}

impl TilePlan {
    /// Overlapping `tile_w` x `tile_h` tiles covering every pixel of a
    /// `frame_w` x `frame_h` frame.
    ///
    /// - Neighbouring tiles start `round(tile * (1 - overlap))` pixels apart
    ///   (at least 1). `overlap` is clamped to `0..=0.9`; NaN means
    ///   [`default_overlap`].
    /// - The last tile of each row and column is aligned to the frame's
    ///   right or bottom edge instead of sticking out of the frame or being
    ///   a thin sliver: every tile has the full tile size, it merely
    ///   overlaps its neighbour more.
    /// - Where the frame is smaller than a tile (or `tile_w`/`tile_h` is 0),
    ///   that dimension has a single tile of the frame's size: upscaling a
    ///   crop would not show the model anything new.
    /// - A frame with no pixels gets no tiles.
    pub fn new(frame_w: u32, frame_h: u32, tile_w: u32, tile_h: u32, overlap: f32) -> Self {
        let overlap = if overlap.is_nan() {
            DEFAULT_OVERLAP
        } else {
            overlap.clamp(0.0, MAX_OVERLAP)
        };
        let cols = axis_spans(frame_w, tile_w, overlap);
        let rows = axis_spans(frame_h, tile_h, overlap);
        let tiles = rows
            .iter()
            .flat_map(|&(y, h)| cols.iter().map(move |&(x, w)| Tile { x, y, w, h }))
            .collect();
        Self { tiles }
    }

    /// The plan for a model whose input is `model_input` (`(width, height)`,
    /// e.g. `ModelSpec::input_size`): tiles of [`tile_size_for`].
    pub fn for_model(frame_w: u32, frame_h: u32, model_input: (u32, u32), overlap: f32) -> Self {
        let (tw, th) = tile_size_for(model_input, frame_w, frame_h);
        Self::new(frame_w, frame_h, tw, th, overlap)
    }
}

/// Tile size for a model trained at `model_input` (`(width, height)`; the
/// bundled model's is 416x416), clamped to the frame.
///
/// The tile is exactly the model's input so that a tile reaches the model
/// unscaled: objects keep the pixel size they have in the frame, which is
/// the point of tiling. Larger tiles would be shrunk again (losing the small
/// objects); smaller ones would be upscaled (more tiles, no new detail).
pub fn tile_size_for(model_input: (u32, u32), frame_w: u32, frame_h: u32) -> (u32, u32) {
    (model_input.0.min(frame_w), model_input.1.min(frame_h))
}

/// `(start, length)` of each tile along one axis of `frame` pixels.
fn axis_spans(frame: u32, tile: u32, overlap: f32) -> Vec<(u32, u32)> {
    if frame == 0 {
        return Vec::new();
    }
    if tile == 0 || tile >= frame {
        return vec![(0, frame)];
    }
    // `as u32` saturates; the value is in 1..=tile anyway.
    let step = ((tile as f32 * (1.0 - overlap)).round() as u32).clamp(1, tile);
    let last = frame - tile;
    let mut spans = Vec::with_capacity((last / step + 2) as usize);
    let mut start = 0;
    loop {
        spans.push((start, tile));
        if start >= last {
            return spans;
        }
        start = start.saturating_add(step).min(last);
    }
}

/// Thresholds of [`merge`]; [`Default`] gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MergeOptions {
    /// Whole boxes of one class with IoU at or above this are duplicates (0.5).
    pub iou: f32,
    /// Whole boxes of one class whose intersection over the smaller box is
    /// at or above this are duplicates (0.8).
    pub ios: f32,
    /// A cut box whose intersection over the smaller box with a kept box of
    /// its class is at or above this belongs to that box (0.5); the same
    /// threshold joins cut pieces of one object.
    pub cut_ios: f32,
    /// A box within this many pixels of an inner tile edge is cut (2.0).
    pub edge_px: f32,
    /// At most this many detections come out, best first (100).
    pub max_detections: usize,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self {
            iou: 0.5,
            ios: 0.8,
            cut_ios: 0.5,
            edge_px: 2.0,
            max_detections: 100,
        }
    }
}

/// A detection that one tile saw cut by one of its inner edges.
struct CutPiece {
    /// Index of its tile in `merge`'s `tiles`.
    tile_index: usize,
    tile: Tile,
    det: Detection,
}

/// Merges the full-frame pass (`full`) with the tile passes (`tiles`: each
/// tile with its detections, already mapped to frame pixels) into one list
/// for a `frame_w` x `frame_h` frame.
///
/// Rules, all class-aware (only boxes of the same `class_id` interact;
/// cross-class clean-up is a later stage's job):
///
/// 1. **Sanitise.** Detections with a non-finite score or coordinate are
///    dropped; boxes are clipped to the frame, and those left with no area
///    are dropped. Garbage from one tile must not cost a frame (nor panic).
/// 2. **Classify.** A tile detection within `opts.edge_px` of an edge of its
///    tile that is not a frame edge is *cut*: the tile only saw part of the
///    object ([`Tile::is_cut`]). Full-pass boxes and uncut tile boxes are
///    *whole*.
/// 3. **Whole boxes**: greedy NMS, highest score first. A box is suppressed
///    by an already kept box when their IoU is at least `opts.iou`, or when
///    their intersection over the *smaller* box (IoS) is at least
///    `opts.ios`. IoU alone misses two cases tiling creates: the same object
///    seen whole by two tiles and the full pass at slightly different boxes
///    of different sizes, and a part of an object (a wheel, a torso)
///    detected inside the object's own box.
/// 4. **Cut boxes** are dropped when their IoS with a kept whole box is at
///    least `opts.cut_ios`: the object was seen whole elsewhere (by the full
///    pass, or by the neighbouring tile thanks to the overlap), and a
///    partial box is mostly inside the whole one.
/// 5. The remaining cut boxes are objects nobody saw whole. Pieces from
///    different, overlapping tiles are joined (transitively, so an object
///    on a corner of four tiles becomes one) when their IoS is at least
///    `opts.cut_ios`, measured either over the whole boxes or over their
///    parts inside the region both tiles saw. The second measure is what
///    makes wide objects join: a piece only overlaps its neighbour in the
///    overlap band, so its plain IoS shrinks as the object grows, while in
///    the band both tiles saw the same pixels and the pieces coincide. A
///    joined object gets the union of its pieces' extents and their best
///    score; it is dropped too if it falls under rule 4. A cut box that
///    joins nothing stays as it is: a partial box beats a missed object.
/// 6. Everything kept, sorted by score (best first, ties in input order,
///    full pass first), at most `opts.max_detections`.
pub fn merge(
    full: Vec<Detection>,
    tiles: &[(Tile, Vec<Detection>)],
    frame_w: u32,
    frame_h: u32,
    opts: &MergeOptions,
) -> Vec<Detection> {
    let (fw, fh) = (frame_w as f32, frame_h as f32);
    let mut whole: Vec<Detection> = full
        .into_iter()
        .filter_map(|d| sanitize(d, fw, fh))
        .collect();
    let mut cut = Vec::new();
    for (tile_index, (tile, dets)) in tiles.iter().enumerate() {
        for det in dets.iter().filter_map(|d| sanitize(d.clone(), fw, fh)) {
            if tile.is_cut(&det.bbox, frame_w, frame_h, opts.edge_px) {
                cut.push(CutPiece {
                    tile_index,
                    tile: *tile,
                    det,
                });
            } else {
                whole.push(det);
            }
        }
    }

    let mut kept = suppress_whole(whole, opts);
    cut.retain(|p| !covered(&kept, &p.det, opts.cut_ios));
    let joined: Vec<Detection> = join_cut(&cut, opts.cut_ios)
        .into_iter()
        .filter(|d| !covered(&kept, d, opts.cut_ios))
        .collect();
    kept.extend(joined);
    sort_by_score(&mut kept);
    kept.truncate(opts.max_detections);
    kept
}

/// `det` clipped to the frame, or `None` when it is unusable: a non-finite
/// score or coordinate, or no area left inside the frame.
fn sanitize(mut det: Detection, frame_w: f32, frame_h: f32) -> Option<Detection> {
    let b = det.bbox;
    let finite = [det.score, b.x1, b.y1, b.x2, b.y2]
        .iter()
        .all(|v| v.is_finite());
    if !finite {
        return None;
    }
    det.bbox = b.clamp(frame_w, frame_h);
    (det.bbox.area() > 0.0).then_some(det)
}

/// Best first; the stable sort keeps input order among equal scores, so the
/// result does not depend on anything but the input.
fn sort_by_score(dets: &mut [Detection]) {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// Intersection over the smaller box's area; 0 when either box is empty.
fn ios(a: &BBox, b: &BBox) -> f32 {
    let smaller = a.area().min(b.area());
    if smaller > 0.0 {
        intersection(a, b).map_or(0.0, |i| i.area() / smaller)
    } else {
        0.0
    }
}

/// The overlap of two boxes, `None` when they do not overlap.
fn intersection(a: &BBox, b: &BBox) -> Option<BBox> {
    let i = BBox::new(
        a.x1.max(b.x1),
        a.y1.max(b.y1),
        a.x2.min(b.x2),
        a.y2.min(b.y2),
    );
    (i.area() > 0.0).then_some(i)
}

/// The smallest box containing both.
fn union_box(a: &BBox, b: &BBox) -> BBox {
    BBox::new(
        a.x1.min(b.x1),
        a.y1.min(b.y1),
        a.x2.max(b.x2),
        a.y2.max(b.y2),
    )
}

/// Rule 3 of [`merge`]: class-aware greedy NMS with the extra IoS test.
fn suppress_whole(mut dets: Vec<Detection>, opts: &MergeOptions) -> Vec<Detection> {
    sort_by_score(&mut dets);
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len());
    for det in dets {
        let duplicate = kept.iter().any(|k| {
            k.class_id == det.class_id
                && (k.bbox.iou(&det.bbox) >= opts.iou || ios(&k.bbox, &det.bbox) >= opts.ios)
        });
        if !duplicate {
            kept.push(det);
        }
    }
    kept
}

/// Rule 4 of [`merge`]: whether a kept box of `det`'s class covers it.
fn covered(kept: &[Detection], det: &Detection, cut_ios: f32) -> bool {
    kept.iter()
        .any(|k| k.class_id == det.class_id && ios(&k.bbox, &det.bbox) >= cut_ios)
}

/// Whether two cut pieces look like parts of one object (rule 5 of [`merge`]).
fn same_object(a: &CutPiece, b: &CutPiece, cut_ios: f32) -> bool {
    if a.det.class_id != b.det.class_id || a.tile_index == b.tile_index {
        return false;
    }
    let Some(shared) = intersection(&a.tile.as_bbox(), &b.tile.as_bbox()) else {
        return false;
    };
    if ios(&a.det.bbox, &b.det.bbox) >= cut_ios {
        return true;
    }
    match (
        intersection(&a.det.bbox, &shared),
        intersection(&b.det.bbox, &shared),
    ) {
        (Some(pa), Some(pb)) => ios(&pa, &pb) >= cut_ios,
        _ => false,
    }
}

/// Rule 5 of [`merge`]: joins the pieces of each object (union-find over
/// all pairs; cut boxes are few) into one box per object.
fn join_cut(pieces: &[CutPiece], cut_ios: f32) -> Vec<Detection> {
    let mut parent: Vec<usize> = (0..pieces.len()).collect();
    for (i, a) in pieces.iter().enumerate() {
        for (j, b) in pieces.iter().enumerate().skip(i + 1) {
            if same_object(a, b, cut_ios) {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                // The lower index becomes the root: output order follows input.
                parent[ri.max(rj)] = ri.min(rj);
            }
        }
    }
    let mut objects: Vec<Option<Detection>> = vec![None; pieces.len()];
    for (i, piece) in pieces.iter().enumerate() {
        let root = find(&mut parent, i);
        if let Some(obj) = &mut objects[root] {
            obj.bbox = union_box(&obj.bbox, &piece.det.bbox);
            obj.score = obj.score.max(piece.det.score);
        } else {
            objects[root] = Some(piece.det.clone());
        }
    }
    objects.into_iter().flatten().collect()
}

/// Root of `i`'s set, halving the path on the way.
fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAR: u32 = 2;
    const MOTORBIKE: u32 = 3;
    const PERSON: u32 = 0;
    const BICYCLE: u32 = 1;

    /// 1280x720 at 416 tiles, 0.2 overlap: columns start at 0, 333, 666,
    /// 864; rows at 0, 304.
    const FW: u32 = 1280;
    const FH: u32 = 720;
    const A: Tile = Tile {
        x: 0,
        y: 0,
        w: 416,
        h: 416,
    };
    const B: Tile = Tile {
        x: 333,
        y: 0,
        w: 416,
        h: 416,
    };
    const C: Tile = Tile {
        x: 666,
        y: 0,
        w: 416,
        h: 416,
    };
    const A2: Tile = Tile {
        x: 0,
        y: 304,
        w: 416,
        h: 416,
    };
    const B2: Tile = Tile {
        x: 333,
        y: 304,
        w: 416,
        h: 416,
    };

    fn det(class_id: u32, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: BBox::new(x1, y1, x2, y2),
        }
    }

    fn run(full: Vec<Detection>, tiles: &[(Tile, Vec<Detection>)]) -> Vec<Detection> {
        merge(full, tiles, FW, FH, &MergeOptions::default())
    }

    fn assert_covers_every_pixel(plan: &TilePlan, w: u32, h: u32) {
        let mut seen = vec![false; (w * h) as usize];
        for t in &plan.tiles {
            for y in t.y..t.bottom() {
                for x in t.x..t.right() {
                    seen[(y * w + x) as usize] = true;
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "{w}x{h}: uncovered pixels");
    }

    #[test]
    fn plan_covers_every_pixel_with_full_size_tiles_inside_the_frame() {
        for (w, h, tw, th, overlap) in [
            (1280, 720, 416, 416, 0.2),
            (1920, 1080, 416, 416, 0.2),
            (768, 576, 416, 416, 0.2),
            (1000, 500, 320, 256, 0.0),
            (1001, 417, 416, 416, 0.5),
            (640, 480, 416, 416, 0.9),
        ] {
            let plan = TilePlan::new(w, h, tw, th, overlap);
            assert_covers_every_pixel(&plan, w, h);
            for t in &plan.tiles {
                assert!(
                    t.right() <= w && t.bottom() <= h,
                    "{t:?} sticks out of {w}x{h}"
                );
                assert_eq!((t.w, t.h), (tw, th), "{t:?} in {w}x{h}");
            }
        }
    }

    #[test]
    fn plan_steps_by_tile_times_one_minus_overlap_and_aligns_the_last_tile() {
        let plan = TilePlan::new(FW, FH, 416, 416, 0.2);
        let xs: Vec<u32> = plan
            .tiles
            .iter()
            .filter(|t| t.y == 0)
            .map(|t| t.x)
            .collect();
        let ys: Vec<u32> = plan
            .tiles
            .iter()
            .filter(|t| t.x == 0)
            .map(|t| t.y)
            .collect();
        assert_eq!(xs, [0, 333, 666, 864]);
        assert_eq!(ys, [0, 304]);
        assert_eq!(&plan.tiles[..3], &[A, B, C]);
        assert_eq!(plan.tiles[4], A2);
        assert_eq!(plan.tiles[5], B2);
    }

    #[test]
    fn tile_counts_in_module_doc() {
        let count = |w, h| {
            TilePlan::for_model(w, h, (416, 416), default_overlap())
                .tiles
                .len()
        };
        assert_eq!(count(1280, 720), 8);
        assert_eq!(count(1920, 1080), 18);
        assert_eq!(count(768, 576), 6);
    }

    #[test]
    fn small_frame_gives_one_tile_of_the_frame_size() {
        let plan = TilePlan::for_model(320, 240, (416, 416), 0.2);
        assert_eq!(
            plan.tiles,
            [Tile {
                x: 0,
                y: 0,
                w: 320,
                h: 240
            }]
        );
        assert_eq!(TilePlan::new(416, 416, 416, 416, 0.2).tiles.len(), 1);
        // Smaller in one dimension only: one row of full-height tiles.
        let wide = TilePlan::for_model(1280, 300, (416, 416), 0.2);
        assert_eq!(wide.tiles.len(), 4);
        assert!(
            wide.tiles
                .iter()
                .all(|t| t.y == 0 && t.h == 300 && t.w == 416)
        );
        assert_covers_every_pixel(&wide, 1280, 300);
    }

    #[test]
    fn degenerate_plan_inputs() {
        assert!(TilePlan::new(0, 720, 416, 416, 0.2).tiles.is_empty());
        assert!(TilePlan::new(1280, 0, 416, 416, 0.2).tiles.is_empty());
        assert_eq!(
            TilePlan::new(1280, 720, 0, 0, 0.2).tiles,
            [Tile {
                x: 0,
                y: 0,
                w: 1280,
                h: 720
            }]
        );
        let nan = TilePlan::new(FW, FH, 416, 416, f32::NAN);
        assert_eq!(nan, TilePlan::new(FW, FH, 416, 416, default_overlap()));
        // Overlap 1 (or more) is clamped rather than looping forever.
        let dense = TilePlan::new(FW, FH, 416, 416, 1.5);
        assert_eq!(dense, TilePlan::new(FW, FH, 416, 416, 0.9));
        assert_covers_every_pixel(&dense, FW, FH);
        // Negative overlap: no gaps, just adjacent tiles.
        let apart = TilePlan::new(832, 416, 416, 416, -0.5);
        assert_eq!(apart.tiles.len(), 2);
    }

    #[test]
    fn tile_size_follows_the_model_clamped_to_the_frame() {
        assert_eq!(tile_size_for((416, 416), 1920, 1080), (416, 416));
        assert_eq!(tile_size_for((640, 384), 1920, 1080), (640, 384));
        assert_eq!(tile_size_for((416, 416), 320, 1080), (320, 416));
    }

    #[test]
    fn to_frame_translates() {
        assert_eq!(
            B2.to_frame(BBox::new(1.0, 2.0, 3.0, 4.0)),
            BBox::new(334.0, 306.0, 336.0, 308.0)
        );
    }

    #[test]
    fn touching_a_frame_edge_is_not_cut() {
        let is_cut = |t: &Tile, b: BBox| t.is_cut(&b, FW, FH, 2.0);
        // Tile A's left and top are frame edges, its right and bottom are not.
        assert!(!is_cut(&A, BBox::new(0.0, 0.0, 50.0, 60.0)));
        assert!(is_cut(&A, BBox::new(0.0, 0.0, 415.0, 60.0)));
        assert!(is_cut(&A, BBox::new(10.0, 300.0, 50.0, 414.5)));
        assert!(!is_cut(&A, BBox::new(10.0, 300.0, 50.0, 413.0)));
        // Bottom-right tile: right and bottom are frame edges.
        let last = Tile {
            x: 864,
            y: 304,
            w: 416,
            h: 416,
        };
        assert!(!is_cut(&last, BBox::new(1200.0, 650.0, 1280.0, 720.0)));
        assert!(is_cut(&last, BBox::new(865.0, 650.0, 900.0, 720.0)));
        assert!(is_cut(&last, BBox::new(900.0, 305.0, 950.0, 400.0)));
    }

    #[test]
    fn box_at_a_frame_edge_is_judged_as_whole_not_cut() {
        // IoS 0.58 with the full-pass box, IoU 0.28: a cut box would be
        // dropped (>= cut_ios 0.5), a whole one is a different object.
        let full = det(PERSON, 0.6, 25.0, 100.0, 125.0, 200.0);
        let at_frame_edge = det(PERSON, 0.9, 0.0, 100.0, 60.0, 200.0);
        let out = run(vec![full.clone()], &[(A, vec![at_frame_edge.clone()])]);
        assert_eq!(out, [at_frame_edge, full]);

        // The same geometry against tile B's inner left edge is cut, and goes.
        let full = det(PERSON, 0.6, 358.0, 100.0, 458.0, 200.0);
        let at_tile_edge = det(PERSON, 0.9, 333.0, 100.0, 393.0, 200.0);
        let out = run(vec![full.clone()], &[(B, vec![at_tile_edge])]);
        assert_eq!(out, [full]);
    }

    #[test]
    fn car_seen_whole_by_the_full_pass_and_cut_by_two_tiles_is_one_car() {
        let full = det(CAR, 0.8, 300.0, 100.0, 500.0, 200.0);
        let tiles = [
            (A, vec![det(CAR, 0.9, 301.0, 101.0, 416.0, 199.0)]),
            (B, vec![det(CAR, 0.85, 333.0, 99.0, 499.0, 201.0)]),
        ];
        assert_eq!(run(vec![full.clone()], &tiles), [full]);
    }

    #[test]
    fn small_motorbike_whole_in_two_overlapping_tiles_is_one() {
        let in_a = det(MOTORBIKE, 0.7, 350.0, 100.0, 390.0, 160.0);
        let in_b = det(MOTORBIKE, 0.75, 351.5, 101.0, 392.0, 163.0);
        let out = run(Vec::new(), &[(A, vec![in_a]), (B, vec![in_b.clone()])]);
        assert_eq!(out, [in_b]);
    }

    #[test]
    fn smaller_box_inside_a_kept_one_is_suppressed_by_ios() {
        // IoU 0.36 (< 0.5), but the small box lies entirely inside the big one.
        let big = det(MOTORBIKE, 0.8, 350.0, 100.0, 400.0, 170.0);
        let part = det(MOTORBIKE, 0.6, 355.0, 120.0, 385.0, 162.0);
        assert_eq!(run(vec![big.clone()], &[(B, vec![part])]), [big]);
    }

    #[test]
    fn object_only_seen_cut_in_two_adjacent_tiles_becomes_one_spanning_box() {
        // True extent 300..450: A sees 300..416, B sees 333..450.
        let tiles = [
            (A, vec![det(CAR, 0.55, 300.0, 100.0, 416.0, 150.0)]),
            (B, vec![det(CAR, 0.65, 333.0, 101.0, 450.0, 151.0)]),
        ];
        assert_eq!(
            run(Vec::new(), &tiles),
            [det(CAR, 0.65, 300.0, 100.0, 450.0, 151.0)]
        );
    }

    #[test]
    fn wide_object_cut_across_three_tiles_joins_through_the_shared_band() {
        // True extent 200..700. A's piece (216 px) and B's (367 px) share
        // only the 83 px band, plain IoS 0.38; inside the band they
        // coincide. C sees the last 34 px, all inside B's piece.
        let tiles = [
            (A, vec![det(CAR, 0.5, 200.0, 50.0, 416.0, 150.0)]),
            (B, vec![det(CAR, 0.6, 333.0, 50.0, 700.0, 150.0)]),
            (C, vec![det(CAR, 0.4, 666.0, 52.0, 701.0, 149.0)]),
        ];
        assert_eq!(
            run(Vec::new(), &tiles),
            [det(CAR, 0.6, 200.0, 50.0, 701.0, 150.0)]
        );
        // Without the band measure A and B would stay apart.
        assert!(ios(&tiles[0].1[0].bbox, &tiles[1].1[0].bbox) < 0.5);
    }

    #[test]
    fn object_on_a_four_tile_corner_becomes_one() {
        // True extent 300..450 x 280..450, around the corner region of A, B,
        // A2 and B2 (x 333..416, y 304..416): each tile sees a quarter-ish,
        // cut on the two edges facing the others.
        let tiles = [
            (A, vec![det(BICYCLE, 0.5, 300.0, 280.0, 416.0, 416.0)]),
            (B, vec![det(BICYCLE, 0.7, 333.0, 281.0, 450.0, 416.0)]),
            (A2, vec![det(BICYCLE, 0.6, 301.0, 304.0, 416.0, 450.0)]),
            (B2, vec![det(BICYCLE, 0.4, 333.0, 304.0, 451.0, 449.0)]),
        ];
        assert_eq!(
            run(Vec::new(), &tiles),
            [det(BICYCLE, 0.7, 300.0, 280.0, 451.0, 450.0)]
        );
    }

    #[test]
    fn cut_pieces_of_different_objects_stay_apart() {
        // Two cars crossing the A|B border, one above the other.
        let tiles = [
            (
                A,
                vec![
                    det(CAR, 0.6, 300.0, 50.0, 416.0, 100.0),
                    det(CAR, 0.5, 300.0, 200.0, 416.0, 250.0),
                ],
            ),
            (
                B,
                vec![
                    det(CAR, 0.7, 333.0, 50.0, 450.0, 100.0),
                    det(CAR, 0.4, 333.0, 200.0, 450.0, 250.0),
                ],
            ),
        ];
        let out = run(Vec::new(), &tiles);
        assert_eq!(
            out,
            [
                det(CAR, 0.7, 300.0, 50.0, 450.0, 100.0),
                det(CAR, 0.5, 300.0, 200.0, 450.0, 250.0),
            ]
        );
    }

    #[test]
    fn cut_box_seen_whole_by_the_neighbour_tile_goes() {
        let whole_in_b = det(MOTORBIKE, 0.6, 380.0, 100.0, 430.0, 160.0);
        let cut_in_a = det(MOTORBIKE, 0.9, 380.0, 100.0, 416.0, 160.0);
        let out = run(
            Vec::new(),
            &[(A, vec![cut_in_a]), (B, vec![whole_in_b.clone()])],
        );
        assert_eq!(out, [whole_in_b]);
    }

    #[test]
    fn two_motorbikes_side_by_side_are_both_kept() {
        let left = det(MOTORBIKE, 0.8, 340.0, 100.0, 372.0, 160.0);
        let right = det(MOTORBIKE, 0.7, 360.0, 100.0, 392.0, 160.0); // IoU 0.23, IoS 0.375
        let tiles = [
            (A, vec![left.clone(), right.clone()]),
            (
                B,
                vec![
                    det(MOTORBIKE, 0.75, 341.0, 101.0, 372.0, 161.0),
                    det(MOTORBIKE, 0.65, 361.0, 100.0, 393.0, 159.0),
                ],
            ),
        ];
        assert_eq!(run(Vec::new(), &tiles), [left, right]);
    }

    #[test]
    fn different_classes_overlapping_are_both_kept() {
        let person = det(PERSON, 0.9, 100.0, 100.0, 140.0, 200.0);
        let bicycle = det(BICYCLE, 0.8, 100.0, 100.0, 140.0, 200.0);
        let cut_bicycle = det(BICYCLE, 0.95, 333.0, 100.0, 380.0, 200.0);
        let cut_person = det(PERSON, 0.3, 333.0, 100.0, 380.0, 200.0);
        let out = run(
            vec![person.clone(), bicycle.clone()],
            &[(B, vec![cut_bicycle.clone(), cut_person.clone()])],
        );
        assert_eq!(out, [cut_bicycle, person, bicycle, cut_person]);
    }

    #[test]
    fn degenerate_detections_do_not_panic_and_are_dropped() {
        let good = det(CAR, 0.5, 10.0, 10.0, 50.0, 50.0);
        let junk = vec![
            det(CAR, f32::NAN, 10.0, 10.0, 50.0, 50.0),
            det(CAR, f32::INFINITY, 10.0, 10.0, 50.0, 50.0),
            det(CAR, 0.9, f32::NAN, 10.0, 50.0, 50.0),
            det(CAR, 0.9, 10.0, 10.0, f32::INFINITY, 50.0),
            det(CAR, 0.9, 20.0, 20.0, 20.0, 40.0), // zero width
            det(CAR, 0.9, 50.0, 50.0, 10.0, 10.0), // inverted
            det(CAR, 0.9, 2000.0, 10.0, 2100.0, 50.0), // outside the frame
        ];
        let mut full = junk.clone();
        full.push(good.clone());
        let tiles = [(A, junk.clone()), (B, junk.clone()), (A2, Vec::new())];
        assert_eq!(run(full, &tiles), [good]);
        assert!(run(Vec::new(), &[]).is_empty());
        assert!(merge(junk.clone(), &[(A, junk)], 0, 0, &MergeOptions::default()).is_empty());
        // Nonsense thresholds: no panic either.
        let nan = MergeOptions {
            iou: f32::NAN,
            ios: f32::NAN,
            cut_ios: f32::NAN,
            edge_px: f32::NAN,
            max_detections: 10,
        };
        let some = vec![
            det(CAR, 0.5, 0.0, 0.0, 9.0, 9.0),
            det(CAR, 0.4, 1.0, 1.0, 9.0, 9.0),
        ];
        let cut = vec![det(CAR, 0.5, 333.0, 0.0, 350.0, 9.0)];
        let out = merge(some, &[(B, cut.clone()), (A, cut)], FW, FH, &nan);
        assert!(out.len() <= 10);
    }

    #[test]
    fn boxes_are_clipped_to_the_frame() {
        let out = run(vec![det(CAR, 0.5, -10.0, 700.0, 30.0, 800.0)], &[]);
        assert_eq!(out, [det(CAR, 0.5, 0.0, 700.0, 30.0, 720.0)]);
    }

    #[test]
    fn result_is_capped_at_max_detections_best_first() {
        // 150 small separate people on a grid over the frame.
        let full: Vec<Detection> = (0..150u16)
            .map(|i| {
                let (x, y) = (f32::from(i % 15) * 80.0, f32::from(i / 15) * 70.0);
                det(PERSON, f32::from(i) / 150.0, x, y, x + 20.0, y + 40.0)
            })
            .collect();
        let out = run(full, &[]);
        assert_eq!(out.len(), 100);
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
        assert!((out[0].score - 149.0 / 150.0).abs() < 1e-6);
        let opts = MergeOptions {
            max_detections: 3,
            ..MergeOptions::default()
        };
        let few = merge(out, &[], FW, FH, &opts);
        assert_eq!(few.len(), 3);
    }
}
