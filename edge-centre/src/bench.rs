//! `edge-centre bench-search`: how fast the console's searches answer on a
//! large database. Fills the configured database with contract-valid
//! lifecycle events (480 boxes × 32 cameras in 30 districts, one simulated
//! day, through the same commit path as the ingest) up to the number asked,
//! then times the queries the Search page and `/api/events` run.

use std::time::{Duration, Instant, SystemTime};

use edge_wire::{EVENT_SCHEMA, EventMessage, EventType, FrameSize, WireBox, rfc3339};

use crate::decode::Record;
use crate::store::console::{ConsoleDb, EventFilter, EventKey};
use crate::store::{Item, Row, Store, StoreError};

const BOXES: u64 = 480;
const CAMERAS: u64 = 32;
const DISTRICTS: u64 = 30;
const DAY_MS: u64 = 86_400_000;
const LABELS: [&str; 6] = ["person", "motorcycle", "car", "bicycle", "bus", "truck"];

/// The `i`th synthetic event: cameras in turn, times spread evenly over the
/// day before `end`.
fn event(i: u64, n: u64, end: SystemTime) -> EventMessage {
    let cam = i % (BOXES * CAMERAS);
    let node = cam / CAMERAS;
    let seq = i / (BOXES * CAMERAS) + 1;
    let kind = match seq % 3 {
        1 => EventType::New,
        2 => EventType::Update,
        _ => EventType::End,
    };
    let t = end - Duration::from_millis(DAY_MS - DAY_MS * i / n.max(1));
    let label = LABELS[usize::try_from((i / 7) % 6).unwrap_or(0)];
    let node_name = format!("box-{node:03}");
    let camera = format!("cam-{:02}", cam % CAMERAS);
    EventMessage {
        schema: EVENT_SCHEMA.into(),
        id: format!("{node_name}.{camera}.19a.{}", seq.div_ceil(3)),
        seq,
        kind,
        node: node_name,
        district: format!("d{:02}", node % DISTRICTS),
        camera,
        label: label.into(),
        class_id: 0,
        track_id: seq.div_ceil(3),
        score: 0.8,
        top_score: 0.9,
        start_time: rfc3339(t),
        end_time: None,
        frame_time: rfc3339(t),
        bbox: WireBox {
            x1: 0.3,
            y1: 0.2,
            x2: 0.4,
            y2: 0.6,
        },
        frame_size: FrameSize {
            width: 1920,
            height: 1080,
        },
        snapshot: None,
        snapshot_omitted: None,
        current_zones: vec!["road".into()],
        entered_zones: vec!["road".into()],
        stationary: false,
        alerts: Vec::new(),
        alert: None,
        end_reason: None,
        replayed: false,
        riders: 0,
    }
}

/// Fills `store` with events until it holds `n`; returns how many were
/// added and how long it took.
pub fn fill(store: &mut dyn Store, n: u64) -> Result<(u64, Duration), StoreError> {
    let start = Instant::now();
    let have = store.totals()?.events;
    let end = SystemTime::now();
    let mut added = 0;
    let mut i = have;
    while i < n {
        let batch: Vec<Item> = (i..n.min(i + 5000))
            .map(|k| Item {
                received: end,
                row: Row::Message(Box::new(Record::Event(Box::new(event(k, n, end))))),
            })
            .collect();
        i += batch.len() as u64;
        added += store.commit(&batch)?.inserted;
    }
    Ok((added, start.elapsed()))
}

/// One search's timings.
pub struct Timed {
    pub name: &'static str,
    pub rows: usize,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// Runs each of the console's typical searches `reps` times (a page of 50,
/// newest first) and returns the median and slowest time of each.
pub fn searches(db: &ConsoleDb, reps: usize) -> Result<Vec<Timed>, StoreError> {
    let now = crate::store::millis(SystemTime::now());
    let hour = 3_600_000;
    let page = |f: EventFilter| EventFilter { limit: 50, ..f };
    let cases: Vec<(&'static str, EventFilter)> = vec![
        ("newest, no filter", page(EventFilter::default())),
        (
            "one district",
            page(EventFilter {
                district: Some("d07".into()),
                ..EventFilter::default()
            }),
        ),
        (
            "one camera",
            page(EventFilter {
                node: Some("box-123".into()),
                camera: Some("cam-17".into()),
                ..EventFilter::default()
            }),
        ),
        (
            "one label",
            page(EventFilter {
                label: Some("bus".into()),
                ..EventFilter::default()
            }),
        ),
        (
            "one type (end)",
            page(EventFilter {
                kind: Some("end".into()),
                ..EventFilter::default()
            }),
        ),
        (
            "an hour, 12 h ago",
            page(EventFilter {
                from: Some(now - 13 * hour),
                to: Some(now - 12 * hour),
                ..EventFilter::default()
            }),
        ),
        (
            "district + label + 2 h",
            page(EventFilter {
                district: Some("d21".into()),
                label: Some("motorcycle".into()),
                from: Some(now - 8 * hour),
                to: Some(now - 6 * hour),
                ..EventFilter::default()
            }),
        ),
        (
            "a page 12 h deep (cursor)",
            page(EventFilter {
                after: Some(EventKey(
                    now - 12 * hour,
                    "box-200".into(),
                    "cam-10".into(),
                    30,
                )),
                ..EventFilter::default()
            }),
        ),
        (
            "a camera that has nothing",
            page(EventFilter {
                node: Some("box-999".into()),
                camera: Some("cam-99".into()),
                ..EventFilter::default()
            }),
        ),
    ];
    let mut out = Vec::new();
    for (name, f) in cases {
        let mut times = Vec::with_capacity(reps);
        let mut rows = 0;
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            rows = db.run(|c| crate::store::console::events(c, &f))?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        out.push(Timed {
            name,
            rows,
            median_ms: times[times.len() / 2],
            max_ms: times[times.len() - 1],
        });
    }
    Ok(out)
}
