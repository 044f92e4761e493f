//! The main stream's ring of compressed access units: whole GOPs, bounded
//! by the time they span and by their bytes. Pure data structure (no
//! GStreamer): the payload `P` is the compressed buffer, the GOP context
//! `C` its caps (codec, `codec_data`), both opaque here.
//!
//! - An access unit that is a keyframe starts a new GOP; one that is not is
//!   appended to the newest GOP, or dropped (and counted) while the ring
//!   waits for its first keyframe (after a start, a reconnect or an eviction
//!   that emptied it).
//! - Eviction drops whole GOPs, oldest first: while the GOPs after the
//!   oldest still span `max_span_s`, and while the ring holds more than
//!   `max_bytes` (down to the newest GOP; a GOP that alone exceeds
//!   `max_bytes` is dropped too and the ring waits for the next keyframe).
//! - [`Ring::plan`] answers "which frame is nearest to time `t`, and what
//!   must be decoded to get it": the access units from that frame's GOP
//!   keyframe up to the frame, in decode order.

use std::collections::VecDeque;

/// One compressed access unit (one coded picture).
#[derive(Clone, Debug)]
pub(crate) struct Au<P> {
    /// Match time in seconds (files: media time of the PTS; live: the
    /// capture clock); not monotonic in decode order with B-frames.
    pub t: f64,
    pub key: bool,
    pub bytes: usize,
    pub data: P,
}

#[derive(Debug)]
struct Gop<P, C> {
    /// Unique for the ring's life (clears included), in arrival order.
    id: u64,
    ctx: C,
    aus: Vec<Au<P>>,
    bytes: usize,
}

impl<P, C> Gop<P, C> {
    fn t_min(&self) -> f64 {
        self.aus.iter().map(|a| a.t).fold(f64::INFINITY, f64::min)
    }
    fn t_max(&self) -> f64 {
        self.aus
            .iter()
            .map(|a| a.t)
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// How far past the tolerance a frame may lie and still count as within
/// it (float rounding of nanosecond timestamps).
const TIME_SLACK_S: f64 = 1e-6;

/// What the ring holds and what it has thrown away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub gops: usize,
    pub aus: usize,
    pub bytes: usize,
    /// GOPs evicted (normal operation: the ring is a window).
    pub evicted_gops: u64,
    /// Access units dropped because no keyframe preceded them in the ring
    /// (start, reconnect, or a GOP larger than the byte bound).
    pub dropped_aus: u64,
}

/// The decode job for one wanted frame.
#[derive(Debug)]
pub(crate) struct Plan<P, C> {
    /// The target's GOP ([`Ring`]-unique id) and its context.
    pub gop: u64,
    pub ctx: C,
    /// Keyframe first, up to and including the target, in decode order.
    pub aus: Vec<P>,
    /// The GOP's access units after the target (decode order), for a
    /// decoder that holds pictures back until it has seen more.
    pub rest: Vec<P>,
    /// Index of the target in `aus`.
    pub target: usize,
    /// The target's match time.
    pub t: f64,
    /// `t - wanted`, seconds.
    pub error_s: f64,
}

/// Why the ring cannot give a frame near the wanted time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Miss {
    /// Nothing received yet (or only access units before a keyframe).
    Empty,
    /// The nearest frame is `error_s` away (signed: frame − wanted), more
    /// than the tolerance.
    TooFar { error_s: f64 },
}

#[derive(Debug)]
pub(crate) struct Ring<P, C> {
    gops: VecDeque<Gop<P, C>>,
    max_span_s: f64,
    max_bytes: usize,
    bytes: usize,
    evicted_gops: u64,
    dropped_aus: u64,
    next_id: u64,
}

impl<P: Clone, C: Clone> Ring<P, C> {
    pub fn new(max_span_s: f64, max_bytes: usize) -> Self {
        Self {
            gops: VecDeque::new(),
            max_span_s: max_span_s.max(0.0),
            max_bytes: max_bytes.max(1),
            bytes: 0,
            evicted_gops: 0,
            dropped_aus: 0,
            next_id: 0,
        }
    }

    /// Forgets everything (a new connection: decoding state does not carry over).
    pub fn clear(&mut self) {
        self.gops.clear();
        self.bytes = 0;
    }

    pub fn push(&mut self, au: Au<P>, ctx: &C) {
        let n = au.bytes;
        if au.key {
            self.next_id += 1;
            self.gops.push_back(Gop {
                id: self.next_id,
                ctx: ctx.clone(),
                aus: vec![au],
                bytes: n,
            });
        } else if let Some(g) = self.gops.back_mut() {
            g.aus.push(au);
            g.bytes += n;
        } else {
            self.dropped_aus += 1;
            return;
        }
        self.bytes += n;
        self.evict();
    }

    fn evict(&mut self) {
        let newest = self.gops.back().map_or(f64::NEG_INFINITY, |g| g.t_max());
        while self.gops.len() > 1 {
            let next_start = self.gops.get(1).map_or(f64::INFINITY, |g| g.t_min());
            if newest - next_start >= self.max_span_s || self.bytes > self.max_bytes {
                self.pop_oldest();
            } else {
                break;
            }
        }
        if self.bytes > self.max_bytes
            && let Some(g) = self.gops.pop_back()
        {
            // One GOP over the whole bound: drop it, wait for the next keyframe.
            self.bytes -= g.bytes;
            self.dropped_aus += g.aus.len() as u64;
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(g) = self.gops.pop_front() {
            self.bytes -= g.bytes;
            self.evicted_gops += 1;
        }
    }

    pub fn stats(&self) -> RingStats {
        RingStats {
            gops: self.gops.len(),
            aus: self.gops.iter().map(|g| g.aus.len()).sum(),
            bytes: self.bytes,
            evicted_gops: self.evicted_gops,
            dropped_aus: self.dropped_aus,
        }
    }

    /// The frame nearest to `wanted` (ties: the earlier one), if within
    /// `tolerance_s`, with the access units to decode to reach it.
    pub fn plan(&self, wanted: f64, tolerance_s: f64) -> Result<Plan<P, C>, Miss> {
        let mut best: Option<(usize, usize, f64)> = None;
        for (gi, g) in self.gops.iter().enumerate() {
            for (ai, a) in g.aus.iter().enumerate() {
                let d = a.t - wanted;
                let better = best.is_none_or(|(bg, ba, bd)| {
                    let bt = self.gops[bg].aus[ba].t;
                    d.abs() < bd.abs() || (d.abs() == bd.abs() && a.t < bt)
                });
                if better {
                    best = Some((gi, ai, d));
                }
            }
        }
        let (gi, ai, d) = best.ok_or(Miss::Empty)?;
        // A microsecond of slack: timestamps are nanoseconds turned into
        // seconds, and a frame exactly one tolerance away must not fall
        // back because of the float arithmetic on the way.
        if d.is_nan() || d.abs() > tolerance_s + TIME_SLACK_S {
            return Err(Miss::TooFar { error_s: d });
        }
        let g = &self.gops[gi];
        Ok(Plan {
            gop: g.id,
            ctx: g.ctx.clone(),
            aus: g.aus[..=ai].iter().map(|a| a.data.clone()).collect(),
            rest: g.aus[ai + 1..].iter().map(|a| a.data.clone()).collect(),
            target: ai,
            t: g.aus[ai].t,
            error_s: d,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream at 10 fps, a keyframe every `gop` frames, `bytes` each;
    /// payload = frame number, context = GOP number.
    fn fill(ring: &mut Ring<u32, u32>, frames: u32, gop: u32, bytes: usize) {
        for i in 0..frames {
            let au = Au {
                t: f64::from(i) * 0.1,
                key: i % gop == 0,
                bytes,
                data: i,
            };
            ring.push(au, &(i / gop));
        }
    }

    #[test]
    fn waits_for_a_keyframe_and_counts_what_it_drops() {
        let mut r: Ring<u32, u32> = Ring::new(10.0, 1 << 20);
        for i in 0..3 {
            r.push(
                Au {
                    t: f64::from(i),
                    key: false,
                    bytes: 10,
                    data: i,
                },
                &0,
            );
        }
        assert_eq!(r.plan(1.0, 1.0).unwrap_err(), Miss::Empty);
        assert_eq!(r.stats().dropped_aus, 3);
        fill(&mut r, 5, 5, 10);
        assert_eq!(r.stats().aus, 5);
    }

    #[test]
    fn evicts_whole_gops_by_span() {
        let mut r: Ring<u32, u32> = Ring::new(2.0, 1 << 20);
        // 10 s at 10 fps, GOP of 10 frames (1 s).
        fill(&mut r, 100, 10, 100);
        let s = r.stats();
        // The newest is at 9.9 s; GOPs after the oldest kept span < 2 s.
        assert_eq!(s.gops, 3, "{s:?}");
        assert_eq!(s.aus, 30);
        assert_eq!(s.evicted_gops, 7);
        assert_eq!(s.bytes, 3000);
        // The oldest frame kept starts a GOP (7.0 s).
        let p = r.plan(7.0, 0.01).unwrap();
        assert_eq!((p.aus.clone(), p.target, p.ctx), (vec![70], 0, 7));
        assert!(matches!(r.plan(6.0, 0.5), Err(Miss::TooFar { .. })));
    }

    #[test]
    fn evicts_by_bytes_and_drops_a_gop_larger_than_the_bound() {
        let mut r: Ring<u32, u32> = Ring::new(100.0, 2500);
        fill(&mut r, 50, 10, 100);
        let s = r.stats();
        assert!(s.bytes <= 2500, "{s:?}");
        assert_eq!(s.gops, 2, "{s:?}");
        // A single GOP of 30 × 100 B cannot fit 2500 B: it is dropped as
        // it grows past the bound, and later frames wait for a keyframe.
        let mut r: Ring<u32, u32> = Ring::new(100.0, 2500);
        fill(&mut r, 30, 30, 100);
        let s = r.stats();
        assert_eq!((s.gops, s.bytes), (0, 0), "{s:?}");
        assert_eq!(s.dropped_aus, 30);
    }

    #[test]
    fn plans_from_the_keyframe_to_the_nearest_frame() {
        let mut r: Ring<u32, u32> = Ring::new(100.0, 1 << 20);
        fill(&mut r, 40, 12, 10);
        // 1.64 s → frame 16 (1.6 s) in the GOP that starts at frame 12.
        let p = r.plan(1.64, 0.1).unwrap();
        assert_eq!(p.aus, vec![12, 13, 14, 15, 16]);
        assert_eq!(p.rest, vec![17, 18, 19, 20, 21, 22, 23]);
        assert_eq!(p.target, 4);
        assert_eq!(p.ctx, 1);
        // GOPs are told apart by id, in arrival order.
        assert!(r.plan(0.5, 0.1).unwrap().gop < p.gop);
        assert!(r.plan(2.5, 0.1).unwrap().gop > p.gop);
        assert!((p.error_s - (-0.04)).abs() < 1e-9);
        // 1.66 s → frame 17, error +0.04.
        let p = r.plan(1.66, 0.1).unwrap();
        assert_eq!(*p.aus.last().unwrap(), 17);
        assert!((p.error_s - 0.04).abs() < 1e-9);
        // A tie picks the earlier frame.
        let p = r.plan(1.65, 0.1).unwrap();
        assert_eq!(*p.aus.last().unwrap(), 16);
        // Exactly one tolerance past the newest frame (3.9 s), give or
        // take float rounding: still within it.
        let p = r.plan(3.9 + 0.1 + 1e-9, 0.1).unwrap();
        assert_eq!(*p.aus.last().unwrap(), 39);
        // Past the newest frame (3.9 s) by more than the tolerance.
        match r.plan(5.0, 0.5) {
            Err(Miss::TooFar { error_s }) => assert!((error_s + 1.1).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn b_frames_are_matched_by_time_and_decoded_in_decode_order() {
        // Decode order I0 P3 B1 B2 P6 B4 B5 (times in frame periods).
        let mut r: Ring<u32, u32> = Ring::new(100.0, 1 << 20);
        for (i, (pts, key)) in [(0, true), (3, false), (1, false), (2, false), (6, false)]
            .into_iter()
            .enumerate()
        {
            let au = Au {
                t: f64::from(pts) * 0.04,
                key,
                bytes: 1,
                data: i as u32,
            };
            r.push(au, &0);
        }
        let p = r.plan(0.08, 0.01).unwrap();
        // B2 (pts 2) is the 4th in decode order; I0, P3 and B1 come first.
        assert_eq!(p.aus, vec![0, 1, 2, 3]);
        assert_eq!(p.target, 3);
    }
}
