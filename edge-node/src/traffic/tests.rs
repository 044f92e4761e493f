//! Scripted detections through the traffic stage.

use super::*;

const PERSON: u32 = 0;
const BICYCLE: u32 = 1;
const CAR: u32 = 2;
const MOTORCYCLE: u32 = 3;
const BUS: u32 = 4;
const TRUCK: u32 = 5;

fn labels() -> Vec<String> {
    ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

fn det(class_id: u32, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
    Detection {
        class_id,
        score,
        bbox: BBox::new(x1, y1, x2, y2),
    }
}

fn stage(cfg: &TrafficConfig) -> TrafficStage {
    let (s, unknown) = TrafficStage::new(cfg, &labels());
    assert!(unknown.is_empty(), "{unknown:?}");
    s
}

fn classes(out: &[TrafficDetection]) -> Vec<(u32, u32)> {
    out.iter()
        .map(|d| (d.detection.class_id, d.riders))
        .collect()
}

#[test]
fn confused_classes_on_one_object_become_the_higher_score() {
    let mut s = stage(&TrafficConfig::default());
    // One scooter as motorcycle 0.7 and bicycle 0.5 (IoU 0.9): one motorcycle.
    // One minibus as bus 0.6 and car 0.4: one bus, with the bus's box.
    let dets = [
        det(BICYCLE, 0.5, 100.0, 100.0, 200.0, 200.0),
        det(MOTORCYCLE, 0.7, 100.0, 100.0, 200.0, 190.0),
        det(CAR, 0.4, 400.0, 100.0, 600.0, 260.0),
        det(BUS, 0.6, 400.0, 100.0, 600.0, 250.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(MOTORCYCLE, 0), (BUS, 0)]);
    assert_eq!(out[1].detection.bbox, BBox::new(400.0, 100.0, 600.0, 250.0));
    assert_eq!(s.counts().merged, 2);
}

#[test]
fn merging_needs_the_same_group_and_enough_overlap() {
    let mut s = stage(&TrafficConfig::default());
    let dets = [
        // car and motorcycle are in different groups: both stay.
        det(CAR, 0.8, 0.0, 0.0, 100.0, 100.0),
        det(MOTORCYCLE, 0.6, 0.0, 0.0, 100.0, 100.0),
        // truck and bus side by side, IoU 1/3 < 0.6: both stay.
        det(TRUCK, 0.8, 300.0, 0.0, 400.0, 100.0),
        det(BUS, 0.7, 350.0, 0.0, 450.0, 100.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(out.len(), 4);
    assert_eq!(s.counts().merged, 0);
}

#[test]
fn an_empty_merge_list_disables_merging() {
    let cfg = TrafficConfig {
        merge_classes: Vec::new(),
        ..TrafficConfig::default()
    };
    let mut s = stage(&cfg);
    let dets = [
        det(BICYCLE, 0.5, 100.0, 100.0, 200.0, 200.0),
        det(MOTORCYCLE, 0.7, 100.0, 100.0, 200.0, 200.0),
    ];
    assert_eq!(s.apply(1000, 1000, &dets).len(), 2);
}

#[test]
fn merge_iou_is_configurable() {
    let dets = [
        det(CAR, 0.8, 0.0, 0.0, 100.0, 100.0),
        det(TRUCK, 0.7, 0.0, 0.0, 100.0, 70.0), // IoU 0.7
    ];
    let mut loose = stage(&TrafficConfig::default());
    assert_eq!(classes(&loose.apply(1000, 1000, &dets)), vec![(CAR, 0)]);
    let strict = TrafficConfig {
        merge_iou: 0.8,
        ..TrafficConfig::default()
    };
    assert_eq!(stage(&strict).apply(1000, 1000, &dets).len(), 2);
}

#[test]
fn a_rider_on_a_bike_is_one_motorcycle_with_one_rider() {
    let mut s = stage(&TrafficConfig::default());
    // Motorcycle 100..200 × 200..400; the rider's box 120..180 × 120..350:
    // centre x 150 inside, bottom 350 ≤ 200 + 0.8 × 200 = 360, IoA 150/230.
    let dets = [
        det(PERSON, 0.8, 120.0, 120.0, 180.0, 350.0),
        det(MOTORCYCLE, 0.7, 100.0, 200.0, 200.0, 400.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(MOTORCYCLE, 1)]);
    assert_eq!(out[0].detection, dets[1]);
    assert_eq!(s.counts().riders, 1);
}

#[test]
fn a_pedestrian_next_to_a_bike_is_kept() {
    let mut s = stage(&TrafficConfig::default());
    let dets = [
        // Beside it: centre x 240 is outside the bike's 100..200.
        det(PERSON, 0.8, 210.0, 150.0, 270.0, 400.0),
        // Behind it, overlapping, but standing on the ground: bottom 405 is
        // below the bike's upper 80 % (≤ 360).
        det(PERSON, 0.8, 130.0, 160.0, 190.0, 405.0),
        det(BICYCLE, 0.7, 100.0, 200.0, 200.0, 400.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(PERSON, 0), (PERSON, 0), (BICYCLE, 0)]);
    assert_eq!(s.counts().riders, 0);
}

#[test]
fn two_riders_on_one_bike_are_one_motorcycle_with_two_riders() {
    let mut s = stage(&TrafficConfig::default());
    let dets = [
        det(PERSON, 0.8, 110.0, 120.0, 170.0, 340.0),
        det(PERSON, 0.6, 140.0, 130.0, 195.0, 345.0),
        det(MOTORCYCLE, 0.7, 100.0, 200.0, 200.0, 400.0),
        // Someone walking far away stays a person.
        det(PERSON, 0.9, 600.0, 100.0, 650.0, 300.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(MOTORCYCLE, 2), (PERSON, 0)]);
    assert_eq!(s.counts().riders, 2);
}

#[test]
fn a_rider_goes_to_the_vehicle_holding_more_of_them_and_is_never_counted_twice() {
    let mut s = stage(&TrafficConfig::default());
    let dets = [
        det(PERSON, 0.8, 140.0, 120.0, 200.0, 340.0),
        // Holds the whole lower part of the person.
        det(MOTORCYCLE, 0.7, 100.0, 200.0, 230.0, 400.0),
        // Overlaps less (IoU with the first < 0.6, so not merged).
        det(BICYCLE, 0.6, 150.0, 230.0, 300.0, 420.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(MOTORCYCLE, 1), (BICYCLE, 0)]);
}

#[test]
fn pairing_can_be_turned_off() {
    let cfg = TrafficConfig {
        pair_riders: false,
        ..TrafficConfig::default()
    };
    let dets = [
        det(PERSON, 0.8, 120.0, 120.0, 180.0, 350.0),
        det(MOTORCYCLE, 0.7, 100.0, 200.0, 200.0, 400.0),
    ];
    let out = stage(&cfg).apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(PERSON, 0), (MOTORCYCLE, 0)]);
}

#[test]
fn detections_standing_in_an_ignore_zone_are_dropped_and_counted() {
    // The left half of the frame's bottom half (a parking strip).
    let cfg = TrafficConfig {
        ignore_zones: vec![vec![[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]],
        ..TrafficConfig::default()
    };
    let mut s = stage(&cfg);
    let dets = [
        // Foot point (0.2, 0.9): ignored.
        det(CAR, 0.9, 100.0, 700.0, 300.0, 900.0),
        // Box centre (0.2, 0.45) is outside, but its foot (0.2, 0.6) is in:
        // ignored (the foot point decides).
        det(TRUCK, 0.9, 100.0, 300.0, 300.0, 600.0),
        // Foot point (0.7, 0.9): kept.
        det(CAR, 0.9, 600.0, 700.0, 800.0, 900.0),
        // Top half, foot point (0.2, 0.4): kept.
        det(PERSON, 0.9, 180.0, 200.0, 220.0, 400.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(CAR, 0), (PERSON, 0)]);
    assert_eq!(out[0].detection.bbox.x1, 600.0);
    assert_eq!(s.counts().ignored, 2);
    s.apply(1000, 1000, &dets);
    assert_eq!(s.counts().ignored, 4);
}

#[test]
fn class_names_the_model_lacks_are_reported_and_the_rest_still_works() {
    let labels: Vec<String> = ["person", "car", "bus"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    let (mut s, unknown) = TrafficStage::new(&TrafficConfig::default(), &labels);
    assert_eq!(unknown, vec!["bicycle", "motorcycle", "truck"]);
    let dets = [
        det(1, 0.5, 0.0, 0.0, 100.0, 100.0),
        det(2, 0.7, 0.0, 0.0, 100.0, 100.0),
        det(0, 0.9, 10.0, 0.0, 90.0, 90.0),
    ];
    // car/bus merged; no vehicle to ride, so the person stays.
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(classes(&out), vec![(2, 0), (0, 0)]);
}

/// The road: the bottom 60 % of the frame.
fn lone_cfg() -> TrafficConfig {
    TrafficConfig {
        lone_riders: true,
        road_zones: vec![vec![[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]],
        ..TrafficConfig::default()
    }
}

#[test]
fn a_rider_whose_bike_was_missed_counts_as_a_motorcycle_on_the_road() {
    let mut s = stage(&lone_cfg());
    let dets = [
        // Seated rider seen from behind, no bike box: 60 wide, 90 tall
        // (1.5), feet at y 0.8 on the road -> motorcycle with one rider.
        det(PERSON, 0.7, 100.0, 710.0, 160.0, 800.0),
        // A pedestrian on the road: 40 wide, 120 tall (3.0) -> stays a person.
        det(PERSON, 0.8, 400.0, 680.0, 440.0, 800.0),
        // Rider-shaped but on the pavement above the road (feet at y 0.3).
        det(PERSON, 0.6, 600.0, 210.0, 660.0, 300.0),
    ];
    let out = s.apply(1000, 1000, &dets);
    assert_eq!(
        classes(&out),
        vec![(MOTORCYCLE, 1), (PERSON, 0), (PERSON, 0)]
    );
    // The box stays the rider's: that is what was seen.
    assert_eq!(out[0].detection.bbox, BBox::new(100.0, 710.0, 160.0, 800.0));
    assert_eq!(s.counts().lone_riders, 1);
}

#[test]
fn lone_riders_need_the_switch_and_road_zones_and_pairing_comes_first() {
    let rider = det(PERSON, 0.7, 100.0, 710.0, 160.0, 800.0);
    // Off by default, and without road zones nothing is known about the road.
    let mut off = stage(&TrafficConfig::default());
    assert_eq!(
        classes(&off.apply(1000, 1000, std::slice::from_ref(&rider))),
        vec![(PERSON, 0)]
    );
    let no_road = TrafficConfig {
        road_zones: Vec::new(),
        ..lone_cfg()
    };
    assert_eq!(
        classes(&stage(&no_road).apply(1000, 1000, std::slice::from_ref(&rider))),
        vec![(PERSON, 0)]
    );
    // A rider on a detected bike is paired, not doubled.
    let dets = [rider, det(MOTORCYCLE, 0.6, 90.0, 730.0, 170.0, 860.0)];
    let mut s = stage(&lone_cfg());
    assert_eq!(classes(&s.apply(1000, 1000, &dets)), vec![(MOTORCYCLE, 1)]);
    assert_eq!(s.counts().lone_riders, 0);
}

#[test]
fn lone_rider_shape_rule() {
    assert!(is_lone_rider(&BBox::new(0.0, 0.0, 60.0, 90.0)));
    assert!(is_lone_rider(&BBox::new(0.0, 0.0, 50.0, 100.0)));
    assert!(!is_lone_rider(&BBox::new(0.0, 0.0, 40.0, 120.0)));
    assert!(!is_lone_rider(&BBox::new(0.0, 0.0, 100.0, 60.0)));
    assert!(!is_lone_rider(&BBox::new(0.0, 0.0, 0.0, 60.0)));
}
