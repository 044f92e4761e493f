//! Optimal linear assignment for the tracker's small cost matrices.
//!
//! The solver is the shortest-augmenting-path form of the Hungarian method
//! (the same family as Jonker-Volgenant): rows are inserted one at a time,
//! and each insertion runs a Dijkstra-like search over reduced costs
//! `c[i][j] - u[i] - v[j]` to find the cheapest way to re-route the current
//! matching. Dual potentials `u`, `v` keep every reduced cost non-negative, so
//! each search is exact and the whole solve is `O(rows² · cols)`.
//!
//! Why not greedy: greedy "best IoU first" is wrong exactly when two objects
//! are close, which is when identity switches happen. The matrices here are
//! tiny (one class of one frame), so the cubic cost is irrelevant.

/// A cost that no real pair is allowed to reach. Kept finite so the solver's
/// arithmetic never sees `inf - inf`.
const FORBIDDEN: f64 = 1.0e9;

/// Minimum-total-cost assignment of a dense `rows × cols` matrix (row-major).
///
/// Returns, for every row, the column it is assigned to. When `rows <= cols`
/// every row gets a column; otherwise only `cols` rows do (the problem is
/// solved on the transpose). Non-finite costs are treated as forbidden.
pub(crate) fn solve(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    if rows == 0 || cols == 0 || cost.len() != rows * cols {
        return vec![None; rows];
    }
    let at = |r: usize, c: usize| {
        let v = cost[r * cols + c];
        if v.is_finite() { v } else { FORBIDDEN }
    };
    if rows <= cols {
        solve_wide(rows, cols, at)
    } else {
        // Solve on the transpose (cols rows, rows columns) and invert the map.
        let by_col = solve_wide(cols, rows, |c, r| at(r, c));
        let mut by_row = vec![None; rows];
        for (c, r) in by_col.into_iter().enumerate() {
            if let Some(r) = r {
                by_row[r] = Some(c);
            }
        }
        by_row
    }
}

/// The core solver for `n <= m`. Index 0 of `col_owner`/`prev_col` is a
/// virtual column that holds the row currently being inserted, which lets
/// the augmenting-path walk end uniformly.
fn solve_wide(n: usize, m: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<Option<usize>> {
    // Potentials: row_pot[1..=n], col_pot[0..=m] (1-based, 0 = virtual).
    let mut row_pot = vec![0.0f64; n + 1];
    let mut col_pot = vec![0.0f64; m + 1];
    // col_owner[j] = row (1-based) matched to column j, 0 = free.
    let mut col_owner = vec![0usize; m + 1];
    // prev_col[j] = previous column on the shortest path to column j.
    let mut prev_col = vec![0usize; m + 1];

    for row in 1..=n {
        col_owner[0] = row;
        let mut cur_col = 0usize;
        let mut dist = vec![f64::INFINITY; m + 1];
        let mut done = vec![false; m + 1];
        loop {
            done[cur_col] = true;
            let r = col_owner[cur_col];
            let mut best = f64::INFINITY;
            let mut best_col = 0usize;
            for j in 1..=m {
                if done[j] {
                    continue;
                }
                let reduced = cost(r - 1, j - 1) - row_pot[r] - col_pot[j];
                if reduced < dist[j] {
                    dist[j] = reduced;
                    prev_col[j] = cur_col;
                }
                if dist[j] < best {
                    best = dist[j];
                    best_col = j;
                }
            }
            if best_col == 0 || !best.is_finite() {
                // Cannot happen with finite costs and n <= m; bail out
                // rather than loop forever on corrupt input.
                break;
            }
            // Shift potentials so the newly reached column has reduced cost 0.
            for j in 0..=m {
                if done[j] {
                    row_pot[col_owner[j]] += best;
                    col_pot[j] -= best;
                } else {
                    dist[j] -= best;
                }
            }
            cur_col = best_col;
            if col_owner[cur_col] == 0 {
                break;
            }
        }
        // Flip the matching along the path back to the virtual column.
        while cur_col != 0 {
            let p = prev_col[cur_col];
            col_owner[cur_col] = col_owner[p];
            cur_col = p;
        }
    }

    let mut by_row = vec![None; n];
    for (j, &r) in col_owner.iter().enumerate().skip(1) {
        if r != 0 {
            by_row[r - 1] = Some(j - 1);
        }
    }
    by_row
}

/// Gated assignment: pairs may match only if their cost is `<= limit`, and
/// leaving a row or a column unmatched costs `limit / 2` each.
///
/// This is the usual "augment with dummy rows and columns" construction: a
/// pair with cost `c` is worth matching only if `c` beats leaving both sides
/// single (`limit`). It also means one excellent match is preferred to two
/// mediocre ones, unlike a cardinality-first matching, which is what keeps
/// ids from swapping when boxes overlap. Returns `(row, col)` pairs sorted
/// by row.
pub(crate) fn solve_gated(
    cost: &[f64],
    rows: usize,
    cols: usize,
    limit: f64,
) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 || cost.len() != rows * cols || !limit.is_finite() {
        return Vec::new();
    }
    // A hair above limit/2 so that a pair costing exactly `limit` still wins.
    let single = limit * 0.5 + 1e-9;
    let size = rows + cols;
    let mut big = vec![0.0f64; size * size];
    for r in 0..size {
        for c in 0..size {
            big[r * size + c] = match (r < rows, c < cols) {
                (true, true) => {
                    let v = cost[r * cols + c];
                    if v.is_finite() && v <= limit {
                        v
                    } else {
                        FORBIDDEN
                    }
                }
                (true, false) | (false, true) => single,
                (false, false) => 0.0,
            };
        }
    }
    solve(&big, size, size)
        .into_iter()
        .take(rows)
        .enumerate()
        .filter_map(|(r, c)| c.filter(|&c| c < cols).map(|c| (r, c)))
        .filter(|&(r, c)| cost[r * cols + c] <= limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cost: &[f64], cols: usize, a: &[Option<usize>]) -> f64 {
        a.iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| cost[r * cols + c]))
            .sum()
    }

    /// Exhaustive minimum over all injective row->col maps (rows <= cols).
    fn brute(cost: &[f64], rows: usize, cols: usize) -> f64 {
        fn rec(cost: &[f64], rows: usize, cols: usize, r: usize, used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    let v = cost[r * cols + c] + rec(cost, rows, cols, r + 1, used);
                    used[c] = false;
                    best = best.min(v);
                }
            }
            best
        }
        rec(cost, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn hand_checked_3x3() {
        // Optimum: r0->c1 (1) + r1->c0 (2) + r2->c2 (2) = 5, unique.
        let m = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let a = solve(&m, 3, 3);
        assert_eq!(a, vec![Some(1), Some(0), Some(2)]);
        assert_eq!(total(&m, 3, &a), 5.0);
    }

    #[test]
    fn beats_greedy() {
        // Greedy takes the 1 and is then forced into the 100.
        let m = [1.0, 2.0, 2.0, 100.0];
        assert_eq!(solve(&m, 2, 2), vec![Some(1), Some(0)]);
    }

    #[test]
    fn rectangular_both_ways() {
        // 2x3: r0->c2 (1), r1->c0 (1).
        let m = [5.0, 4.0, 1.0, 1.0, 6.0, 2.0];
        assert_eq!(solve(&m, 2, 3), vec![Some(2), Some(0)]);
        // Its transpose, 3x2: c2->r0, c0->r1, c1 unassigned.
        let t = [5.0, 1.0, 4.0, 6.0, 1.0, 2.0];
        assert_eq!(solve(&t, 3, 2), vec![Some(1), None, Some(0)]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 1000) as f64 / 10.0
        };
        for (rows, cols) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (5, 5),
            (3, 5),
            (2, 6),
            (6, 6),
        ] {
            for _ in 0..30 {
                let m: Vec<f64> = (0..rows * cols).map(|_| next()).collect();
                let a = solve(&m, rows, cols);
                let mut seen = vec![false; cols];
                for c in a.iter() {
                    let c = c.expect("every row assigned when rows <= cols");
                    assert!(!seen[c], "column used twice");
                    seen[c] = true;
                }
                let got = total(&m, cols, &a);
                let want = brute(&m, rows, cols);
                assert!((got - want).abs() < 1e-9, "{rows}x{cols}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn gated_prefers_one_good_match_over_two_poor_ones() {
        // rows = tracks A, B; cols = dets 1, 2; cost = 1 - IoU, limit 0.8.
        // A-1 is excellent (0.1); B-1 and A-2 are poor (0.75).
        let m = [0.1, 0.75, 0.75, f64::INFINITY];
        assert_eq!(solve_gated(&m, 2, 2, 0.8), vec![(0, 0)]);
    }

    #[test]
    fn gated_respects_limit_and_empty_inputs() {
        let m = [0.9, 0.85, 0.2, 0.95];
        assert_eq!(solve_gated(&m, 2, 2, 0.8), vec![(1, 0)]);
        // Exactly at the limit still matches (cost <= limit).
        assert_eq!(solve_gated(&[0.8], 1, 1, 0.8), vec![(0, 0)]);
        assert!(solve_gated(&[], 0, 3, 0.8).is_empty());
        assert!(solve_gated(&[f64::NAN], 1, 1, 0.8).is_empty());
    }
}
