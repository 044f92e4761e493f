//! Data-driven rule tests on scripted tracks. Each case names what it proves.

use super::*;
use crate::events::{EventConfig, EventEngine, EventKind};

const W: u32 = 1000;
const H: u32 = 1000;
const DT: f64 = 0.2;

/// A confirmed, matched track whose foot point is at (x, y) (normalised),
/// box 0.04 wide and 0.1 tall.
fn at(id: u64, class_id: u32, x: f32, y: f32, t: f64) -> TrackView {
    let (px, py) = (x * W as f32, y * H as f32);
    TrackView {
        id,
        class_id,
        state: TrackState::Confirmed,
        bbox: BBox::new(px - 20.0, py - 100.0, px + 20.0, py),
        score: 0.9,
        matched: true,
        hits: 10,
        first_seen: 0.0,
        last_seen: t,
    }
}

fn line() -> LineRule {
    // Vertical line x = 0.5 from bottom (A) to top (B): forward = moving right.
    LineRule {
        name: "gate".into(),
        a: (0.5, 0.9),
        b: (0.5, 0.1),
        forward: "east".into(),
        backward: "west".into(),
        classes: BTreeSet::new(),
        hysteresis: 0.02,
        inertia: DEFAULT_LINE_INERTIA,
        alert_direction: None,
        cooldown_s: None,
    }
}

fn zone() -> ZoneRule {
    ZoneRule {
        name: "square".into(),
        polygon: vec![(0.2, 0.2), (0.6, 0.2), (0.6, 0.8), (0.2, 0.8)],
        classes: BTreeSet::new(),
        min_area: 0.0,
        inertia: 3,
        loiter_s: None,
        crowd_min: None,
        crowd_for_s: 0.0,
        crowd_clear_s: 0.0,
        cooldown_s: None,
    }
}

fn cfg(zones: Vec<ZoneRule>, lines: Vec<LineRule>) -> RulesConfig {
    let c = RulesConfig {
        zones,
        lines,
        cooldown_s: 0.0,
        ..RulesConfig::default()
    };
    c.validate().expect("valid test config");
    c
}

/// Runs one object along `xs` (foot y fixed at 0.5), one frame per DT.
fn run_path(eng: &mut RulesEngine, id: u64, xs: &[f32]) -> Vec<Alert> {
    let mut out = Vec::new();
    for (i, &x) in xs.iter().enumerate() {
        let t = i as f64 * DT;
        out.extend(eng.on_frame(t, W, H, &[at(id, 0, x, 0.5, t)]));
    }
    out
}

fn line_count(eng: &mut RulesEngine, dir: &str) -> u64 {
    let r = eng.take_counts(100.0);
    r.lines[0]
        .by_class
        .get(&0)
        .and_then(|m| m.get(dir))
        .map_or(0, |c| c.total)
}

#[test]
fn line_crossings_per_direction_and_jitter() {
    struct Case {
        proves: &'static str,
        xs: Vec<f32>,
        east: u64,
        west: u64,
    }
    let cases = [
        Case {
            proves: "left-to-right crossing counts once as forward (east)",
            xs: vec![0.3, 0.4, 0.45, 0.55, 0.6, 0.7],
            east: 1,
            west: 0,
        },
        Case {
            proves: "right-to-left crossing counts once as backward (west)",
            xs: vec![0.7, 0.6, 0.52, 0.45, 0.3],
            east: 0,
            west: 1,
        },
        Case {
            proves: "jitter across the line inside the hysteresis band counts once",
            xs: vec![
                0.3, 0.45, 0.49, 0.51, 0.49, 0.515, 0.49, 0.51, 0.485, 0.51, 0.6, 0.7,
            ],
            east: 1,
            west: 0,
        },
        Case {
            proves: "jitter that never leaves the band counts nothing",
            xs: vec![0.49, 0.51, 0.49, 0.51, 0.495, 0.505],
            east: 0,
            west: 0,
        },
        Case {
            proves: "a foot point beyond the band on the other side for fewer than inertia \
                     (2) frames, e.g. a box cut short by an occluder, is not a crossing",
            xs: vec![0.3, 0.4, 0.45, 0.56, 0.45, 0.4, 0.3],
            east: 0,
            west: 0,
        },
        Case {
            proves: "going over and back counts one each way",
            xs: vec![0.3, 0.45, 0.55, 0.7, 0.55, 0.45, 0.3],
            east: 1,
            west: 1,
        },
    ];
    for c in cases {
        let mut eng = RulesEngine::new(cfg(vec![], vec![line()]), 0.0);
        run_path(&mut eng, 1, &c.xs);
        let east = eng.lines[0]
            .by_class
            .get(&0)
            .and_then(|m| m.get("east"))
            .map_or(0, |c| c.total);
        assert_eq!(east, c.east, "{}", c.proves);
        assert_eq!(line_count(&mut eng, "west"), c.west, "{}", c.proves);
    }
}

#[test]
fn crossing_beyond_the_segment_ends_is_not_counted() {
    // Passing the infinite line below A (y = 0.95 > 0.9) is walking around it.
    let mut eng = RulesEngine::new(cfg(vec![], vec![line()]), 0.0);
    for (i, x) in [0.3f32, 0.45, 0.55, 0.7].iter().enumerate() {
        let t = i as f64 * DT;
        eng.on_frame(t, W, H, &[at(1, 0, *x, 0.95, t)]);
    }
    assert_eq!(line_count(&mut eng, "east"), 0);
}

#[test]
fn only_confirmed_matched_tracks_move_and_classes_filter() {
    let mut l = line();
    l.classes = [2].into();
    let mut eng = RulesEngine::new(cfg(vec![], vec![l]), 0.0);
    run_path(&mut eng, 1, &[0.3, 0.45, 0.55, 0.7]); // class 0: filtered out
    let mut tentative = Vec::new();
    for (i, x) in [0.3f32, 0.45, 0.55, 0.7].iter().enumerate() {
        let t = i as f64 * DT;
        let mut tv = at(2, 2, *x, 0.5, t);
        tv.state = TrackState::Tentative;
        tentative.extend(eng.on_frame(t, W, H, &[tv]));
    }
    let r = eng.take_counts(1.0);
    assert!(r.lines[0].by_class.is_empty(), "{r:?}");
}

#[test]
fn counts_are_cumulative_with_interval_deltas() {
    let mut eng = RulesEngine::new(cfg(vec![], vec![line()]), 0.0);
    run_path(&mut eng, 1, &[0.3, 0.45, 0.55, 0.7]);
    let r1 = eng.take_counts(1.0);
    let c1 = r1.lines[0].by_class[&0]["east"];
    assert_eq!((c1.total, c1.delta), (1, 1));
    assert_eq!((r1.start_t, r1.end_t), (0.0, 1.0));
    let r2 = eng.take_counts(2.0);
    let c2 = r2.lines[0].by_class[&0]["east"];
    assert_eq!((c2.total, c2.delta), (1, 0), "delta resets, total stays");
    assert_eq!(r2.start_t, 1.0);
    run_path(&mut eng, 2, &[0.3, 0.45, 0.55, 0.7]);
    let c3 = eng.take_counts(3.0).lines[0].by_class[&0]["east"];
    assert_eq!((c3.total, c3.delta), (2, 1));
}

#[test]
fn zone_inertia_at_the_edge() {
    struct Case {
        proves: &'static str,
        inertia: u32,
        xs: Vec<f32>,
        inside_at_end: bool,
        entries: u64,
    }
    // Zone edge at x = 0.2.
    let cases = [
        Case {
            proves: "flicker across the edge (in for < inertia frames) never counts as inside",
            inertia: 3,
            xs: vec![0.19, 0.21, 0.19, 0.21, 0.21, 0.19, 0.21, 0.19],
            inside_at_end: false,
            entries: 0,
        },
        Case {
            proves: "inertia consecutive frames inside make it inside, once",
            inertia: 3,
            xs: vec![0.19, 0.21, 0.21, 0.21, 0.19, 0.21, 0.19],
            inside_at_end: true,
            entries: 1,
        },
        Case {
            proves: "inertia 1 follows the foot point frame by frame",
            inertia: 1,
            xs: vec![0.19, 0.21, 0.19, 0.21],
            inside_at_end: true,
            entries: 2,
        },
        Case {
            proves: "leaving also needs inertia frames outside",
            inertia: 2,
            xs: vec![0.3, 0.3, 0.1, 0.1],
            inside_at_end: false,
            entries: 1,
        },
    ];
    for c in cases {
        let mut z = zone();
        z.inertia = c.inertia;
        let mut eng = RulesEngine::new(cfg(vec![z], vec![]), 0.0);
        run_path(&mut eng, 7, &c.xs);
        let o = eng.object(7).expect("live object");
        assert_eq!(o.current_zones.is_empty(), !c.inside_at_end, "{}", c.proves);
        assert_eq!(o.entered_zones.is_empty(), c.entries == 0, "{}", c.proves);
        let r = eng.take_counts(10.0);
        let entries = r.zones[0].entered.get(&0).map_or(0, |c| c.total);
        assert_eq!(entries, c.entries, "{}", c.proves);
    }
}

#[test]
fn zone_class_filter_and_min_area() {
    let mut z = zone();
    z.classes = [2].into();
    let mut small = zone();
    small.name = "big-only".into();
    small.min_area = 0.01; // the test box is 0.04 × 0.1 = 0.004
    let mut eng = RulesEngine::new(cfg(vec![z, small], vec![]), 0.0);
    run_path(&mut eng, 1, &[0.3; 5]);
    assert!(eng.object(1).expect("live").entered_zones.is_empty());
    let r = eng.take_counts(1.0);
    assert!(r.zones.iter().all(|z| z.occupancy.is_empty()));
}

#[test]
fn loitering_just_under_and_just_over_t() {
    struct Case {
        proves: &'static str,
        frames: usize,
        alerts: usize,
    }
    // loiter_s = 10, inertia 1: inside from t = 0, dwell at frame i = i * 0.2.
    let cases = [
        Case {
            proves: "9.8 s inside (just under T) raises nothing",
            frames: 50,
            alerts: 0,
        },
        Case {
            proves: "10.0 s inside (T reached) raises one loitering alert",
            frames: 51,
            alerts: 1,
        },
        Case {
            proves: "staying much longer still raises only one (once per object)",
            frames: 300,
            alerts: 1,
        },
    ];
    for c in cases {
        let mut z = zone();
        z.inertia = 1;
        z.loiter_s = Some(10.0);
        let mut eng = RulesEngine::new(
            RulesConfig {
                stationary_s: 0.0,
                ..cfg(vec![z], vec![])
            },
            0.0,
        );
        let alerts = run_path(&mut eng, 3, &vec![0.3; c.frames]);
        assert_eq!(alerts.len(), c.alerts, "{}: {alerts:?}", c.proves);
        if let Some(a) = alerts.first() {
            assert_eq!(a.kind, AlertKind::Loitering);
            assert_eq!(a.track_id, Some(3));
            assert_eq!(a.rule, "square");
            assert!((a.dwell_s.unwrap_or(0.0) - 10.0).abs() < 1e-6, "{a:?}");
        }
    }
}

#[test]
fn crowd_forming_and_clearing() {
    let mut z = zone();
    z.inertia = 1;
    z.crowd_min = Some(3);
    z.crowd_for_s = 2.0;
    z.crowd_clear_s = 1.0;
    let mut eng = RulesEngine::new(cfg(vec![z], vec![]), 0.0);
    // Frame schedule: how many people are in the zone (others stand outside).
    let mut schedule = Vec::new();
    schedule.extend([2; 10]); // 0.0-1.8 s: 2 people, no crowd
    schedule.extend([3; 12]); // 2.0-4.2 s: 3 people; alert at 4.0 s (2 s held)
    schedule.extend([2, 3]); // dip shorter than clear_s: stays active, no re-alert
    schedule.extend([2; 6]); // 4.8-5.8 s: below for 1 s → cleared at 5.8 s
    let mut alerts = Vec::new();
    for (i, &n) in schedule.iter().enumerate() {
        let t = i as f64 * DT;
        let tracks: Vec<TrackView> = (0..4u64)
            .map(|id| at(id, 0, if id < n { 0.3 } else { 0.9 }, 0.5, t))
            .collect();
        for a in eng.on_frame(t, W, H, &tracks) {
            alerts.push((t, a));
        }
    }
    let kinds: Vec<(AlertKind, f64)> = alerts
        .iter()
        .map(|(t, a)| (a.kind, (t * 10.0).round() / 10.0))
        .collect();
    assert_eq!(
        kinds,
        [
            (AlertKind::Crowding, 4.0),
            (AlertKind::CrowdingCleared, 5.8)
        ],
        "{alerts:?}"
    );
    assert_eq!(alerts[0].1.occupancy, Some(3));
    assert!(!eng.crowd_active("square"));
}

#[test]
fn cooldowns_and_once_per_object() {
    struct Case {
        proves: &'static str,
        cooldown_s: f64,
        /// The line's own cooldown (None: the global one applies).
        line_cooldown_s: Option<f64>,
        realert_s: Option<f64>,
        /// Wrong-way crossings by object 1 then 2, each path one after the other.
        expected: usize,
    }
    let cases = [
        Case {
            proves: "no cooldown, default once-per-object: both objects alert once",
            cooldown_s: 0.0,
            line_cooldown_s: None,
            realert_s: None,
            expected: 2,
        },
        Case {
            proves: "a cooldown longer than the gap suppresses the second object's alert",
            cooldown_s: 30.0,
            line_cooldown_s: None,
            realert_s: None,
            expected: 1,
        },
        Case {
            proves: "realert_s lets one object alert again on a later crossing",
            cooldown_s: 0.0,
            line_cooldown_s: None,
            realert_s: Some(1.0),
            expected: 3,
        },
        Case {
            proves: "a line's own cooldown overrides a shorter global one",
            cooldown_s: 0.0,
            line_cooldown_s: Some(30.0),
            realert_s: None,
            expected: 1,
        },
        Case {
            proves: "a line's own zero cooldown overrides a longer global one",
            cooldown_s: 30.0,
            line_cooldown_s: Some(0.0),
            realert_s: None,
            expected: 2,
        },
    ];
    for c in cases {
        let mut l = line();
        l.alert_direction = Some("west".into());
        l.cooldown_s = c.line_cooldown_s;
        let mut rc = cfg(vec![], vec![l]);
        rc.cooldown_s = c.cooldown_s;
        rc.realert_s = c.realert_s;
        let mut eng = RulesEngine::new(rc, 0.0);
        let mut n = 0;
        let mut t = 0.0;
        // Object 1 goes west, back east, west again; then object 2 goes west.
        let paths: [(u64, &[f32]); 2] = [
            (1, &[0.7, 0.6, 0.4, 0.3, 0.4, 0.6, 0.7, 0.6, 0.4, 0.3]),
            (2, &[0.7, 0.6, 0.4, 0.3]),
        ];
        for (id, xs) in paths {
            for &x in xs {
                n += eng.on_frame(t, W, H, &[at(id, 0, x, 0.5, t)]).len();
                t += DT;
            }
        }
        assert_eq!(n, c.expected, "{}", c.proves);
        assert_eq!(line_count(&mut eng, "west"), 3, "counts ignore cooldowns");
    }
}

#[test]
fn zone_cooldowns_are_per_zone_and_fall_back_to_the_global_one() {
    // Two overlapping zones with a 1 s loitering limit; object 1 stands in
    // both from t = 0, object 2 from t = 4 s. The global cooldown is 30 s.
    let mut a = zone();
    a.name = "global-cooldown".into();
    a.inertia = 1;
    a.loiter_s = Some(1.0);
    let mut b = a.clone();
    b.name = "own-cooldown".into();
    b.cooldown_s = Some(2.0);
    let mut rc = cfg(vec![a, b], vec![]);
    rc.cooldown_s = 30.0;
    let mut eng = RulesEngine::new(rc, 0.0);
    let mut alerts = Vec::new();
    for i in 0..50 {
        let t = i as f64 * DT;
        let mut tracks = vec![at(1, 0, 0.3, 0.5, t)];
        if t >= 4.0 {
            tracks.push(at(2, 0, 0.4, 0.5, t));
        }
        alerts.extend(eng.on_frame(t, W, H, &tracks));
    }
    let got: Vec<(&str, Option<u64>)> = alerts
        .iter()
        .map(|a| (a.rule.as_str(), a.track_id))
        .collect();
    assert_eq!(
        got,
        [
            ("global-cooldown", Some(1)),
            ("own-cooldown", Some(1)),
            // Object 2 loiters at t = 5 s: past own-cooldown's 2 s, within
            // the global 30 s that global-cooldown still uses.
            ("own-cooldown", Some(2)),
        ],
        "{alerts:?}"
    );
}

#[test]
fn stationary_is_announced_once_then_updates_stop_but_loitering_still_fires() {
    // An object parked in a loitering zone: it becomes stationary after 5 s
    // and loiters at 8 s. Run in the node's order (rules, then events told
    // which tracks are stationary).
    //
    // Proves: (a) becoming stationary is announced by exactly one update
    // (Reason::Stationary), after which no update follows although its
    // snapshot keeps improving; (b) a stationary object still raises its
    // first loitering alert (being stationary only stops *re*-alerts).
    // Before the fix this test asserted that a stationary object never
    // loiters, which meant someone standing still at a gate with loiter_s
    // above stationary_s never raised the alert loitering exists for.
    let mut z = zone();
    z.inertia = 1;
    z.loiter_s = Some(8.0);
    let rc = RulesConfig {
        stationary_s: 5.0,
        realert_s: Some(1.0),
        ..cfg(vec![z], vec![])
    };
    let mut rules = RulesEngine::new(rc, 0.0);
    let mut events = EventEngine::<usize>::new(EventConfig {
        update_min_interval_s: 0.0,
        max_updates: 1000,
        ..EventConfig::default()
    });
    let mut updates_before = 0;
    let mut after: Vec<(f64, crate::events::Reason)> = Vec::new();
    let mut alerts = Vec::new();
    let mut became = None;
    for i in 0..150usize {
        let t = i as f64 * DT;
        let mut tv = at(1, 2, 0.3, 0.5, t);
        tv.hits = i as u32 + 1;
        // Score creeps up: a materially better snapshot every few frames.
        tv.score = (0.05 * 1.05f32.powi(i as i32)).min(1.0);
        let tracks = [tv];
        alerts.extend(rules.on_frame(t, W, H, &tracks));
        if became.is_none() && rules.is_stationary(1) {
            became = Some(t);
        }
        let quiet = |id: u64| rules.is_stationary(id);
        for a in events.on_frame_quiet(t, W, H, &tracks, &i, &quiet) {
            if a.kind == EventKind::Update {
                if became.is_some() {
                    after.push((t, a.reason));
                } else {
                    updates_before += 1;
                }
            }
        }
    }
    let became = became.map(|t| (t * 10.0).round() / 10.0);
    assert_eq!(became, Some(5.0));
    assert!(updates_before >= 2, "updates flow before it is stationary");
    assert_eq!(
        after.len(),
        1,
        "one update announces it, then none: {after:?}"
    );
    assert_eq!(after[0].1, crate::events::Reason::Stationary);
    assert_eq!((after[0].0 * 10.0).round() / 10.0, 5.0, "announced at once");
    assert!(rules.object(1).expect("live").stationary);
    // Stationary since 5 s, it still loiters at 8 s, once: realert_s = 1
    // would repeat it every second, but a stationary object does not re-alert.
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::Loitering);
    assert!((alerts[0].t - 8.0).abs() < 1e-6, "{alerts:?}");
    // Moving again ends the stationary state.
    let t = 150.0 * DT;
    rules.on_frame(t, W, H, &[at(1, 2, 0.5, 0.5, t)]);
    assert!(!rules.is_stationary(1));
}

#[test]
fn loitering_longer_than_stationary_s_still_alerts() {
    // Defaults: stationary after 60 s; the gate's loitering limit is 90 s.
    // A person standing still at the gate must raise loitering at 90 s.
    let mut z = zone();
    z.inertia = 1;
    z.loiter_s = Some(90.0);
    let rc = RulesConfig {
        zones: vec![z],
        ..RulesConfig::default()
    };
    assert_eq!(rc.stationary_s, 60.0);
    let mut eng = RulesEngine::new(rc, 0.0);
    let alerts = run_path(&mut eng, 5, &vec![0.3; 500]); // 100 s
    assert!(eng.is_stationary(5));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!((alerts[0].dwell_s.unwrap_or(0.0) - 90.0).abs() < 1e-6);
}

#[test]
fn gone_tracks_keep_their_zones_for_one_frame() {
    let mut z = zone();
    z.inertia = 1;
    let mut eng = RulesEngine::new(cfg(vec![z], vec![]), 0.0);
    run_path(&mut eng, 4, &[0.3, 0.3]);
    eng.on_frame(1.0, W, H, &[]);
    assert_eq!(
        eng.object(4).expect("kept one frame").current_zones,
        ["square"]
    );
    eng.on_frame(1.2, W, H, &[]);
    assert!(eng.object(4).is_none());
}

#[test]
fn validation_rejects_bad_geometry() {
    let mut bad_zone = zone();
    bad_zone.polygon = vec![(0.1, 0.1), (1.2, 0.1), (0.5, 0.5)];
    let mut bad_line = line();
    bad_line.b = bad_line.a;
    let mut dup = line();
    dup.name = "square".into();
    for c in [
        RulesConfig {
            zones: vec![bad_zone],
            ..RulesConfig::default()
        },
        RulesConfig {
            lines: vec![bad_line],
            ..RulesConfig::default()
        },
        RulesConfig {
            zones: vec![zone()],
            lines: vec![dup],
            ..RulesConfig::default()
        },
    ] {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

#[test]
fn point_in_polygon_concave() {
    // An L shape.
    let l = [
        (0.0, 0.0),
        (0.5, 0.0),
        (0.5, 0.5),
        (1.0, 0.5),
        (1.0, 1.0),
        (0.0, 1.0),
    ];
    assert!(point_in_polygon(&l, (0.25, 0.25)));
    assert!(point_in_polygon(&l, (0.75, 0.75)));
    assert!(!point_in_polygon(&l, (0.75, 0.25)));
}

/// One scripted frame of a track for the hand-off cases: `None` = not
/// reported by the tracker; `Some((x, state))`, matched unless `Lost`.
type Step = Option<(f32, TrackState)>;

fn scripted(id: u64, x: f32, state: TrackState, t: f64, first_seen: f64) -> TrackView {
    let mut v = at(id, 0, x, 0.5, t);
    v.state = state;
    v.matched = state != TrackState::Lost;
    v.first_seen = first_seen;
    v
}

/// Runs tracks side by side, one `Step` per frame each; returns (east, west).
fn run_scripts(eng: &mut RulesEngine, scripts: &[(u64, Vec<Step>)]) -> (u64, u64) {
    let frames = scripts.iter().map(|s| s.1.len()).max().unwrap_or(0);
    let mut first: BTreeMap<u64, f64> = BTreeMap::new();
    for i in 0..frames {
        let t = i as f64 * DT;
        let views: Vec<TrackView> = scripts
            .iter()
            .filter_map(|(id, steps)| {
                let (x, st) = steps.get(i).copied().flatten()?;
                let f = *first.entry(*id).or_insert(t);
                Some(scripted(*id, x, st, t, f))
            })
            .collect();
        eng.on_frame(t, W, H, &views);
    }
    (line_count(eng, "east"), line_count(eng, "west"))
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scripted scenario, step by step; splitting it would hide the story"
)]
fn fragment_hand_off_across_an_occlusion_at_the_line() {
    use TrackState::{Confirmed as C, Lost as L, Tentative as T};
    // The line is x = 0.5 (hysteresis 0.02); boxes are 100 px tall in a
    // 1000 px frame; DT = 0.2 s. Track 1 walks east and is lost just
    // before the line (last seen at x = 0.45, t = 0.6 s); track 2 is born
    // later, somewhere.
    let lost_at_045 = || {
        vec![
            Some((0.30, C)),
            Some((0.35, C)),
            Some((0.40, C)),
            Some((0.45, C)),
            Some((0.45, L)),
            Some((0.45, L)),
            Some((0.45, L)),
            Some((0.45, L)),
            Some((0.45, L)),
            Some((0.45, L)),
        ]
    };
    // Born at frame `from` at x0, tentative two frames, then confirmed,
    // walking east 0.02 per frame.
    let born = |from: usize, x0: f32| {
        let mut v: Vec<Step> = vec![None; from];
        for k in 0..6 {
            let st = if k < 2 { T } else { C };
            v.push(Some((x0 + 0.02 * k as f32, st)));
        }
        v
    };
    struct Case {
        proves: &'static str,
        handoff_s: f64,
        scripts: Vec<(u64, Vec<Step>)>,
        east_west: (u64, u64),
    }
    let cases = [
        Case {
            proves: "a track born just past the line 0.8 s after one was lost just before it \
                     takes over its side: one eastward crossing",
            handoff_s: 2.0,
            scripts: vec![(1, lost_at_045()), (2, born(7, 0.56))],
            east_west: (1, 0),
        },
        Case {
            proves: "the same with hand-off off (handoff_s = 0): the fragment loses the crossing",
            handoff_s: 0.0,
            scripts: vec![(1, lost_at_045()), (2, born(7, 0.56))],
            east_west: (0, 0),
        },
        Case {
            proves: "the donor may already be dropped by the tracker",
            handoff_s: 2.0,
            scripts: vec![
                (1, lost_at_045().into_iter().take(5).collect()),
                (2, born(7, 0.56)),
            ],
            east_west: (1, 0),
        },
        Case {
            proves: "born outside the gate (3.5 box heights away after 0.8 s): no hand-off",
            handoff_s: 2.0,
            scripts: vec![(1, lost_at_045()), (2, born(7, 0.8))],
            east_west: (0, 0),
        },
        Case {
            proves: "born after the hand-off window (2.2 s > 2 s): no hand-off",
            handoff_s: 2.0,
            scripts: vec![(1, lost_at_045()), (2, born(14, 0.56))],
            east_west: (0, 0),
        },
        Case {
            proves: "born on the same side as the lost track: nothing crossed",
            handoff_s: 2.0,
            scripts: vec![(1, lost_at_045()), (2, born(7, 0.40))],
            east_west: (0, 0),
        },
        Case {
            proves: "a track born while the other was still seen is a different person",
            handoff_s: 2.0,
            scripts: vec![(1, lost_at_045()), (2, born(2, 0.56))],
            east_west: (0, 0),
        },
        Case {
            proves: "a tentative track that never confirms takes nothing over",
            handoff_s: 2.0,
            scripts: vec![
                (1, lost_at_045()),
                (2, born(7, 0.56).into_iter().take(9).collect()),
            ],
            east_west: (0, 0),
        },
        Case {
            proves: "a donor re-found past the line after handing over does not count again",
            handoff_s: 2.0,
            scripts: vec![
                (
                    1,
                    lost_at_045()
                        .into_iter()
                        .take(9)
                        .chain([Some((0.6, C)), Some((0.62, C))])
                        .collect(),
                ),
                (2, born(7, 0.56)),
            ],
            east_west: (1, 0),
        },
        Case {
            proves: "one lost track hands over to one new track only",
            handoff_s: 2.0,
            scripts: vec![(1, lost_at_045()), (2, born(7, 0.56)), (3, born(7, 0.58))],
            east_west: (1, 0),
        },
    ];
    for c in cases {
        let rc = RulesConfig {
            handoff_s: c.handoff_s,
            ..cfg(vec![], vec![line()])
        };
        let mut eng = RulesEngine::new(rc, 0.0);
        assert_eq!(
            run_scripts(&mut eng, &c.scripts),
            c.east_west,
            "{}",
            c.proves
        );
    }
}

#[test]
fn a_crossing_made_while_tentative_counts_on_confirmation() {
    use TrackState::{Confirmed as C, Tentative as T};
    struct Case {
        proves: &'static str,
        steps: Vec<Step>,
        east_west: (u64, u64),
    }
    let cases = [
        Case {
            proves: "born just before the line, confirmed after it: one crossing",
            steps: vec![
                Some((0.44, T)),
                Some((0.46, T)),
                Some((0.54, C)),
                Some((0.58, C)),
            ],
            east_west: (1, 0),
        },
        Case {
            proves: "the same track never confirmed (flicker): nothing",
            steps: vec![
                Some((0.44, T)),
                Some((0.46, T)),
                Some((0.54, T)),
                Some((0.58, T)),
            ],
            east_west: (0, 0),
        },
        Case {
            proves: "jitter on the line while tentative counts once at most",
            steps: vec![
                Some((0.44, T)),
                Some((0.46, T)),
                Some((0.51, T)),
                Some((0.49, C)),
                Some((0.515, C)),
                Some((0.55, C)),
                Some((0.58, C)),
            ],
            east_west: (1, 0),
        },
    ];
    for c in cases {
        let mut eng = RulesEngine::new(cfg(vec![], vec![line()]), 0.0);
        assert_eq!(
            run_scripts(&mut eng, &[(1, c.steps)]),
            c.east_west,
            "{}",
            c.proves
        );
    }
}
