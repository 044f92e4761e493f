//! Traffic post-processing between the detector and the tracker: pure
//! functions of one frame's detections, no I/O, no clock.
//!
//! Four steps, in this order (`TrafficStage::apply`):
//! 1. **cross-class merge**: the detector's NMS is class-aware, so one
//!    scooter may come out as both `motorcycle` and `bicycle`, one minibus as
//!    `car` and `bus`. Within a group of confusable classes, a box that
//!    overlaps a higher-scoring box of another class of the group with IoU
//!    above `merge_iou` is dropped (the higher score's class and box stay);
//! 2. **rider pairing**: a `person` sitting on a `motorcycle` or `bicycle`
//!    (see [`is_rider`]) is folded into the vehicle, which carries a rider
//!    count, so a line counts the vehicle once and no pedestrian is invented;
//! 3. **lone riders** (opt-in, cameras with `road_zones`): a `person` left
//!    unpaired whose box has a seated rider's proportions (see
//!    [`is_lone_rider`]) and whose foot point lies on the road becomes a
//!    `motorcycle` with one rider: the bike under a rider seen from behind
//!    is often not detected at all;
//! 4. **ignore zones**: a detection whose foot point (bottom-centre, the
//!    point the rules use for zones and lines: where the object meets the
//!    ground, so a tall box in perspective is placed where it stands, not
//!    over the region behind it) lies in one of the camera's ignore polygons
//!    is dropped and counted.

use crate::frame::{BBox, Detection};
use crate::rules::{Pt, foot_point, point_in_polygon};

/// The classes the detector confuses on one object, by default (COCO names).
pub const DEFAULT_MERGE_CLASSES: [&[&str]; 2] =
    [&["bicycle", "motorcycle"], &["car", "bus", "truck"]];
/// Default IoU above which two boxes of one merge group are one object.
pub const DEFAULT_MERGE_IOU: f32 = 0.6;
/// The person class that rides, and the vehicles ridden (COCO names).
pub const RIDER_CLASS: &str = "person";
pub const RIDDEN_CLASSES: [&str; 2] = ["bicycle", "motorcycle"];
/// A rider's feet (the person box's bottom edge) lie in this upper fraction
/// of the vehicle box: a pedestrian beside a bike stands on the ground, at
/// or below the wheels' bottom.
pub const RIDER_FOOT_FRACTION: f32 = 0.8;
/// At least this fraction of the person box lies inside the vehicle box.
pub const RIDER_MIN_IOA: f32 = 0.3;
/// A lone rider's box is at most this tall for its width: a walking or
/// standing pedestrian's box is 2.3–3.5 times as tall as wide, a rider
/// seated on a scooter (legs bent, the bike below mostly hidden or cut)
/// 1.2–2.0.
pub const LONE_RIDER_MAX_ASPECT: f32 = 2.0;
/// ... and at least this tall for its width (a wider box is a group or a
/// vehicle part, not one seated person).
pub const LONE_RIDER_MIN_ASPECT: f32 = 0.9;
/// The class a lone rider becomes.
pub const LONE_RIDER_CLASS: &str = "motorcycle";

/// The stage's settings by class *name*, as configured
/// (`[detector] merge_classes`, `merge_iou`, `pair_riders`,
/// `[[cameras]] ignore_zones`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficConfig {
    pub merge_classes: Vec<Vec<String>>,
    pub merge_iou: f32,
    pub pair_riders: bool,
    /// Count an unpaired rider-shaped `person` on the road as a motorcycle
    /// (`[detector] lone_riders`; only where `road_zones` say where the road is).
    pub lone_riders: bool,
    /// Polygons in normalised 0..1 frame coordinates.
    pub ignore_zones: Vec<Vec<[f32; 2]>>,
    /// Where the road is (normalised polygons; `[[cameras]] road_zones`).
    pub road_zones: Vec<Vec<[f32; 2]>>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            merge_classes: DEFAULT_MERGE_CLASSES
                .iter()
                .map(|g| g.iter().map(|s| (*s).to_string()).collect())
                .collect(),
            merge_iou: DEFAULT_MERGE_IOU,
            pair_riders: true,
            lone_riders: false,
            ignore_zones: Vec::new(),
            road_zones: Vec::new(),
        }
    }
}

/// A detection after the stage: the vehicles carry their riders.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficDetection {
    pub detection: Detection,
    /// Persons folded into this (motorcycle or bicycle) detection.
    pub riders: u32,
}

/// Detections removed by each step, counted over the camera's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Boxes merged into a higher-scoring box of a confusable class.
    pub merged: u64,
    /// Persons folded into the vehicle they ride.
    pub riders: u64,
    /// Unpaired rider-shaped persons on the road counted as motorcycles.
    pub lone_riders: u64,
    /// Detections whose foot point lay in an ignore zone.
    pub ignored: u64,
}

/// The stage resolved against a model's class names.
#[derive(Clone, Debug, Default)]
pub struct TrafficStage {
    /// Merge group of each class id (`None`: never merged).
    group_of: Vec<Option<usize>>,
    merge_iou: f32,
    /// `Some((person, vehicles))` when riders are paired.
    riders: Option<(u32, Vec<u32>)>,
    /// `Some((person, motorcycle, roads))` when lone riders are counted.
    lone: Option<(u32, u32, Vec<Vec<Pt>>)>,
    ignore: Vec<Vec<Pt>>,
    counts: TrafficCounts,
}

impl TrafficStage {
    /// The stage for a model with `labels`; also the configured class names
    /// the model does not know (ignored).
    pub fn new(cfg: &TrafficConfig, labels: &[String]) -> (Self, Vec<String>) {
        let id = |name: &str| labels.iter().position(|l| l == name);
        let mut unknown = Vec::new();
        let mut group_of = vec![None; labels.len()];
        for (g, names) in cfg.merge_classes.iter().enumerate() {
            for n in names {
                match id(n) {
                    Some(c) => group_of[c] = Some(g),
                    None => unknown.push(n.clone()),
                }
            }
        }
        let riders = cfg
            .pair_riders
            .then(|| {
                let person = u32::try_from(id(RIDER_CLASS)?).ok()?;
                let vehicles: Vec<u32> = RIDDEN_CLASSES
                    .iter()
                    .filter_map(|n| u32::try_from(id(n)?).ok())
                    .collect();
                (!vehicles.is_empty()).then_some((person, vehicles))
            })
            .flatten();
        let polygons = |zones: &[Vec<[f32; 2]>]| -> Vec<Vec<Pt>> {
            zones
                .iter()
                .map(|p| p.iter().map(|q| (q[0], q[1])).collect())
                .collect()
        };
        let ignore = polygons(&cfg.ignore_zones);
        let lone = (cfg.lone_riders && !cfg.road_zones.is_empty())
            .then(|| {
                let person = u32::try_from(id(RIDER_CLASS)?).ok()?;
                let bike = u32::try_from(id(LONE_RIDER_CLASS)?).ok()?;
                Some((person, bike, polygons(&cfg.road_zones)))
            })
            .flatten();
        let stage = Self {
            group_of,
            merge_iou: cfg.merge_iou,
            riders,
            lone,
            ignore,
            counts: TrafficCounts::default(),
        };
        (stage, unknown)
    }

    /// What the stage has removed so far.
    pub fn counts(&self) -> TrafficCounts {
        self.counts
    }

    /// One frame's detections (`width` × `height` pixels) → the detections
    /// the tracker sees, each with its rider count.
    pub fn apply(&mut self, width: u32, height: u32, dets: &[Detection]) -> Vec<TrafficDetection> {
        let merged = merge_cross_class(dets, &self.group_of, self.merge_iou);
        self.counts.merged += (dets.len() - merged.len()) as u64;
        let paired = match &self.riders {
            Some((person, vehicles)) => pair_riders(merged, *person, vehicles),
            None => merged
                .into_iter()
                .map(|detection| TrafficDetection {
                    detection,
                    riders: 0,
                })
                .collect(),
        };
        self.counts.riders += paired.iter().map(|d| u64::from(d.riders)).sum::<u64>();
        let mut paired = paired;
        if let Some((person, bike, roads)) = &self.lone {
            for d in paired
                .iter_mut()
                .filter(|d| d.detection.class_id == *person)
            {
                let foot = foot_point(&d.detection.bbox, width, height);
                if is_lone_rider(&d.detection.bbox)
                    && roads.iter().any(|r| point_in_polygon(r, foot))
                {
                    d.detection.class_id = *bike;
                    d.riders = 1;
                    self.counts.lone_riders += 1;
                }
            }
        }
        let before = paired.len();
        let kept: Vec<TrafficDetection> = paired
            .into_iter()
            .filter(|d| {
                let p = foot_point(&d.detection.bbox, width, height);
                !self.ignore.iter().any(|z| point_in_polygon(z, p))
            })
            .collect();
        self.counts.ignored += (before - kept.len()) as u64;
        kept
    }
}

/// Greedy cross-class NMS inside merge groups: visited best score first
/// (stable on ties), a box is dropped when a kept box of a *different* class
/// of its group overlaps it with IoU > `iou`. Returns the kept boxes in
/// their input order.
pub fn merge_cross_class(
    dets: &[Detection],
    group_of: &[Option<usize>],
    iou: f32,
) -> Vec<Detection> {
    let group = |d: &Detection| group_of.get(d.class_id as usize).copied().flatten();
    let mut order: Vec<usize> = (0..dets.len()).collect();
    order.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
    let mut keep = vec![true; dets.len()];
    let mut kept: Vec<usize> = Vec::with_capacity(dets.len());
    for i in order {
        let d = &dets[i];
        if let Some(g) = group(d) {
            let absorbed = kept.iter().any(|&k| {
                let o = &dets[k];
                o.class_id != d.class_id && group(o) == Some(g) && o.bbox.iou(&d.bbox) > iou
            });
            if absorbed {
                keep[i] = false;
                continue;
            }
        }
        kept.push(i);
    }
    dets.iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(d, _)| d.clone())
        .collect()
}

/// Fraction of `inner`'s area that lies inside `outer` (0 for an empty box).
pub fn ioa(inner: &BBox, outer: &BBox) -> f32 {
    let ix = (inner.x2.min(outer.x2) - inner.x1.max(outer.x1)).max(0.0);
    let iy = (inner.y2.min(outer.y2) - inner.y1.max(outer.y1)).max(0.0);
    let a = inner.area();
    if a <= 0.0 { 0.0 } else { ix * iy / a }
}

/// Whether `person` rides `vehicle`: all three hold
/// - the person box's horizontal centre lies within the vehicle box's x range;
/// - the person box's bottom edge lies within the vehicle box's upper
///   [`RIDER_FOOT_FRACTION`] (between its top and 80 % of its height);
/// - at least [`RIDER_MIN_IOA`] of the person box's area lies inside the
///   vehicle box.
pub fn is_rider(person: &BBox, vehicle: &BBox) -> bool {
    let cx = (person.x1 + person.x2) * 0.5;
    let foot_max = vehicle.y1 + RIDER_FOOT_FRACTION * vehicle.height();
    (vehicle.x1..=vehicle.x2).contains(&cx)
        && (vehicle.y1..=foot_max).contains(&person.y2)
        && ioa(person, vehicle) >= RIDER_MIN_IOA
}

/// Whether an unpaired `person` box has a seated rider's proportions:
/// height / width within [`LONE_RIDER_MIN_ASPECT`]..=[`LONE_RIDER_MAX_ASPECT`].
/// The stage also wants its foot point on the road (`road_zones`): a
/// person sitting on a bench or crouching on the pavement has the same
/// shape.
pub fn is_lone_rider(person: &BBox) -> bool {
    let (w, h) = (person.width(), person.height());
    w > 0.0 && (LONE_RIDER_MIN_ASPECT..=LONE_RIDER_MAX_ASPECT).contains(&(h / w))
}

/// Folds every `person` that rides a vehicle (class in `vehicles`) into it:
/// each person goes to the vehicle it rides with the largest share of its box
/// (then the higher score, then the first); the vehicle keeps its own class,
/// score and box and counts the riders. Order: input order, riders removed.
pub fn pair_riders(dets: Vec<Detection>, person: u32, vehicles: &[u32]) -> Vec<TrafficDetection> {
    let mut riders = vec![0u32; dets.len()];
    let mut folded = vec![false; dets.len()];
    for (p, pd) in dets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.class_id == person)
    {
        let best = dets
            .iter()
            .enumerate()
            .filter(|(_, v)| vehicles.contains(&v.class_id) && is_rider(&pd.bbox, &v.bbox))
            .max_by(|(a, va), (b, vb)| {
                ioa(&pd.bbox, &va.bbox)
                    .total_cmp(&ioa(&pd.bbox, &vb.bbox))
                    .then(va.score.total_cmp(&vb.score))
                    .then(b.cmp(a))
            })
            .map(|(v, _)| v);
        if let Some(v) = best {
            riders[v] += 1;
            folded[p] = true;
        }
    }
    dets.into_iter()
        .zip(riders)
        .zip(folded)
        .filter(|(_, f)| !f)
        .map(|((detection, riders), _)| TrafficDetection { detection, riders })
        .collect()
}

#[cfg(test)]
mod tests;
