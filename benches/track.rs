//! Tracker update cost (release build, one thread).
//!
//! `cargo bench -p edge-node --bench track -- --warm-up-time 1 --measurement-time 2`
//!
//! `N` synthetic objects move at constant, distinct velocities on a 1920x1080
//! frame at 5 fps with a little box jitter and score noise; one in ten frames
//! misses each object in turn (so lost/re-found paths run) and one low-score
//! clutter box per ten objects appears. The tracker is warmed up for 50
//! frames, then each iteration is one `Tracker::update` of the next frame
//! (the 200-frame sequence wraps around; objects bounce off the frame edges,
//! so the wrap is one jump per object that the tracker absorbs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_node::frame::{BBox, Detection};
use edge_node::track::{Tracker, TrackerConfig};

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

const FPS: f64 = 5.0;
const FRAMES: usize = 200;

/// One synthetic object: position, size, velocity (px per frame), class.
type Object = ([f32; 2], [f32; 2], [f32; 2], u32);

/// `frames[f]` = detections of frame `f` for `n` objects.
fn scene(n: usize) -> Vec<Vec<Detection>> {
    let mut rng = Rng(11 + n as u64);
    // Objects on a grid so they overlap little, each with its own velocity.
    let cols = (n as f32).sqrt().ceil() as usize;
    let objs: Vec<Object> = (0..n)
        .map(|i| {
            let (gx, gy) = ((i % cols) as f32, (i / cols) as f32);
            let cell = (1800.0 / cols as f32, 1000.0 / cols as f32);
            let pos = [40.0 + gx * cell.0, 40.0 + gy * cell.1];
            let size = [cell.0 * 0.4 + 10.0, cell.1 * 0.6 + 10.0];
            let vel = [(rng.f32() - 0.5) * 20.0, (rng.f32() - 0.5) * 10.0];
            (pos, size, vel, (i % 3) as u32)
        })
        .collect();
    (0..FRAMES)
        .map(|f| {
            let mut dets = Vec::with_capacity(n + n / 10);
            for (i, (pos, size, vel, class)) in objs.iter().enumerate() {
                if (f + i) % 10 == 0 {
                    continue; // missed this frame
                }
                // Bounce inside the frame: a triangle wave of the travel.
                let travel = |p: f32, v: f32, lim: f32| {
                    let x = (p + v * f as f32).rem_euclid(2.0 * lim);
                    if x > lim { 2.0 * lim - x } else { x }
                };
                let x = travel(pos[0], vel[0], 1900.0 - size[0]);
                let y = travel(pos[1], vel[1], 1070.0 - size[1]);
                let j = |r: &mut Rng| (r.f32() - 0.5) * 3.0;
                dets.push(Detection {
                    class_id: *class,
                    score: 0.6 + rng.f32() * 0.35,
                    bbox: BBox::new(
                        x + j(&mut rng),
                        y + j(&mut rng),
                        x + size[0] + j(&mut rng),
                        y + size[1] + j(&mut rng),
                    ),
                });
            }
            for _ in 0..n / 10 {
                let (x, y) = (rng.f32() * 1800.0, rng.f32() * 1000.0);
                dets.push(Detection {
                    class_id: 0,
                    score: 0.15 + rng.f32() * 0.2,
                    bbox: BBox::new(x, y, x + 30.0, y + 60.0),
                });
            }
            dets
        })
        .collect()
}

fn bench_track(c: &mut Criterion) {
    let mut g = c.benchmark_group("track");
    for n in [10usize, 100] {
        let frames = scene(n);
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut f = 0usize;
        let mut t = 0.0f64;
        for _ in 0..50 {
            black_box(tracker.update(t, &frames[f % FRAMES]));
            f += 1;
            t += 1.0 / FPS;
        }
        let live = tracker.len();
        assert!(
            live >= n * 9 / 10,
            "warm-up should track most of the {n} objects, has {live}"
        );
        g.bench_function(format!("update_{n}_objects"), |b| {
            b.iter(|| {
                let views = tracker.update(t, black_box(&frames[f % FRAMES]));
                f += 1;
                t += 1.0 / FPS;
                black_box(views)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_track);
criterion_main!(benches);
