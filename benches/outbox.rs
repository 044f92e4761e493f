//! Outbox cost on this disk (release build): one durable commit per event
//! (redb `Durability::Immediate`, i.e. fsync), with and without a 20 KB
//! snapshot in the same transaction; the batched delete that a PUBACK batch
//! costs; and reading the oldest message of a camera for replay.
//!
//! `cargo bench -p edge-node --bench outbox -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_node::publish::outbox::{Append, Outbox};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path(), 1 << 30).unwrap();
    let event = vec![b'x'; 600];
    let jpeg = vec![0x5au8; 20_000];
    let mut seq = 0u64;
    let mut g = c.benchmark_group("outbox");
    g.bench_function("append event 600 B (one commit)", |b| {
        b.iter(|| {
            seq += 1;
            black_box(
                ob.append(&Append {
                    camera: "cam",
                    seq: Some(seq),
                    event_topic: "t/d/n/cam/events",
                    event: &event,
                    snapshot: None,
                    copy_topic: None,
                    open: None,
                })
                .unwrap(),
            )
        });
    });
    g.bench_function("append event + 20 KB snapshot (one commit)", |b| {
        b.iter(|| {
            seq += 1;
            black_box(
                ob.append(&Append {
                    camera: "cam",
                    seq: Some(seq),
                    event_topic: "t/d/n/cam/events",
                    event: &event,
                    snapshot: Some(("t/d/n/cam/snapshot/x", &jpeg, &event)),
                    copy_topic: None,
                    open: None,
                })
                .unwrap(),
            )
        });
    });
    g.bench_function("replay read: oldest message of a camera", |b| {
        b.iter(|| {
            let k = ob.next_key("cam", None).unwrap();
            black_box(ob.get(k).unwrap())
        });
    });
    g.bench_function("remove 32 acknowledged (one commit)", |b| {
        b.iter_batched(
            || {
                let mut keys = Vec::with_capacity(32);
                for _ in 0..32 {
                    seq += 1;
                    keys.push(
                        ob.append(&Append {
                            camera: "del",
                            seq: Some(seq),
                            event_topic: "t/d/n/del/events",
                            event: &event,
                            snapshot: None,
                            copy_topic: None,
                            open: None,
                        })
                        .unwrap(),
                    );
                }
                keys
            },
            |keys| black_box(ob.remove(&keys).unwrap()),
            criterion::BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
