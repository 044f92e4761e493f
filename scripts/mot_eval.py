#!/usr/bin/env python3
"""MOT evaluation of tracker output against a MOTChallenge ground truth, plus line counts.

    python scripts/mot_eval.py --gt PATH/gt.txt --res out/mot/pets09_10fps.txt [--step 1] [--json OUT]

- CLEAR-MOT (MOTA, MOTP, ID switches, fragmentations) and IDF1 come from py-motmetrics
  (PyPI `motmetrics`), the well-kept reference implementation; this script only feeds it.
- Matching threshold: IoU >= 0.5 (MOTChallenge 2D convention; motmetrics distance 1 - IoU < 0.5).
- GT rows with `consider` (7th column) = 0 are "don't care": they are removed, and so is any
  hypothesis box of that frame matched to one of them at IoU >= 0.5 (Hungarian), as the MOT16+ devkit
  does for ignored regions. Without this, tracking a clearly visible person the GT chose to ignore
  would count as a false positive.
- `--step N` evaluates only frames f with (f - 1) % N == 0 (tracker run on every N-th decoded
  frame; MOT frame f = decoded frame f - 1).
- Line counts: each track's foot point (bottom centre) is followed frame by frame; a crossing is
  counted when the point changes side of the line, with hysteresis (a side only changes once the
  point is more than `--margin` px from the line), and the crossing point lies on the segment.
  The ground truth is counted at full frame rate (the truth), the tracker at its own rate.
  This plain counter is an independent cross-check and the "before" baseline: the figures in
  docs/evaluation.md come from the node's own rules engine, which benches/mot_eval.rs runs
  (side inertia, tentative crossings, fragment hand-off).

The ground truth is CC BY-NC-SA 3.0 (MOTChallenge); it is read from the given path and never copied.
"""

import argparse
import json
import sys
from collections import defaultdict

import numpy as np

# Two lines on the PETS09-S2L1 scene (pixels of the 768x576 frame), each (name, A, B, sides):
# crossing from the side left of A->B to its right is "pos" ... named below per line.
LINES = [
    # Vertical line across the walkway, from the road edge at the top to the bottom of the frame.
    # People walk left/right along the walkway, so this counts them going each way.
    {"name": "vertical_x400", "a": (400.0, 576.0), "b": (400.0, 150.0),
     "dirs": ("left_to_right", "right_to_left")},
    # Horizontal line across the middle of the plaza: counts people walking towards / away from the
    # camera.
    {"name": "horizontal_y300", "a": (0.0, 300.0), "b": (768.0, 300.0),
     "dirs": ("top_to_bottom", "bottom_to_top")},
]


def load(path):
    """MOT text rows -> float array (frame, id, x, y, w, h, conf, ...)."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    return rows


def side(line, p):
    """Signed distance of p from the infinite line A->B (positive = right of A->B in image coords)."""
    (ax, ay), (bx, by) = line["a"], line["b"]
    dx, dy = bx - ax, by - ay
    n = (dx * dx + dy * dy) ** 0.5
    # Image y points down: cross(AB, AP) > 0 means P is clockwise of AB, i.e. on the right.
    return (dx * (p[1] - ay) - dy * (p[0] - ax)) / n


def along(line, p):
    """Position of p's projection along A->B, 0 at A, 1 at B."""
    (ax, ay), (bx, by) = line["a"], line["b"]
    dx, dy = bx - ax, by - ay
    return ((p[0] - ax) * dx + (p[1] - ay) * dy) / (dx * dx + dy * dy)


def count_crossings(tracks, margin):
    """tracks: {id: [(frame, foot_x, foot_y), ...]} -> {line: {dir: count}}."""
    out = {}
    for line in LINES:
        counts = {line["dirs"][0]: 0, line["dirs"][1]: 0}
        for pts in tracks.values():
            pts = sorted(pts)
            state, anchor = 0, None
            for _, x, y in pts:
                d = side(line, (x, y))
                s = 1 if d > margin else (-1 if d < -margin else 0)
                if s == 0:
                    continue
                if state != 0 and s != state:
                    # Where the path from the last firm point to this one meets the line.
                    da = side(line, anchor)
                    u = da / (da - d)
                    cross = (anchor[0] + u * (x - anchor[0]), anchor[1] + u * (y - anchor[1]))
                    if 0.0 <= along(line, cross) <= 1.0:
                        # side < 0 -> > 0 is left -> right of A->B.
                        key = line["dirs"][0] if state < 0 else line["dirs"][1]
                        counts[key] += 1
                state, anchor = s, (x, y)
        out[line["name"]] = counts
    return out


def foot_tracks(rows):
    tracks = defaultdict(list)
    for r in rows:
        tracks[int(r[1])].append((int(r[0]), r[2] + r[4] / 2.0, r[3] + r[5]))
    return tracks


def to_xyxy(b):
    return np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])


def iou_xywh(a, b):
    a, b = to_xyxy(a), to_xyxy(b)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def evaluate(gt, res, step):
    import motmetrics as mm
    from scipy.optimize import linear_sum_assignment

    frames = sorted({int(f) for f in gt[:, 0]} | {int(f) for f in res[:, 0]})
    frames = [f for f in frames if (f - 1) % step == 0]
    gt_by = defaultdict(list)
    for r in gt:
        gt_by[int(r[0])].append(r)
    res_by = defaultdict(list)
    for r in res:
        res_by[int(r[0])].append(r)
    acc = mm.MOTAccumulator(auto_id=False)
    ignored_hyp = 0
    for f in frames:
        g = np.array(gt_by.get(f, []), dtype=float).reshape(-1, 10)
        h = np.array(res_by.get(f, []), dtype=float).reshape(-1, 10)
        care, dont = g[g[:, 6] > 0], g[g[:, 6] <= 0]
        if len(dont) and len(h):
            iou = iou_xywh(dont[:, 2:6], h[:, 2:6])
            ri, ci = linear_sum_assignment(-iou)
            drop = {c for r, c in zip(ri, ci) if iou[r, c] >= 0.5}
            ignored_hyp += len(drop)
            h = h[[i for i in range(len(h)) if i not in drop]]
        dist = mm.distances.iou_matrix(care[:, 2:6], h[:, 2:6], max_iou=0.5)
        acc.update(care[:, 1].astype(int).tolist(), h[:, 1].astype(int).tolist(), dist, frameid=f)
    mh = mm.metrics.create()
    names = ["mota", "motp", "idf1", "idp", "idr", "recall", "precision", "num_switches",
             "num_fragmentations", "num_false_positives", "num_misses", "mostly_tracked",
             "partially_tracked", "mostly_lost", "num_unique_objects", "num_frames"]
    s = mh.compute(acc, metrics=names, name="res")
    m = {k: float(s[k].iloc[0]) for k in names}
    # motmetrics' MOTP is the mean distance (1 - IoU); report the MOTChallenge-style IoU overlap.
    m["motp_iou"] = 1.0 - m.pop("motp")
    m["ignored_hyp_boxes"] = ignored_hyp
    m["num_hyp_ids"] = int(len({int(i) for i in res[:, 1]}))
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gt", required=True, help="MOTChallenge gt.txt of PETS09-S2L1")
    ap.add_argument("--res", required=True, help="tracker output in MOTChallenge format")
    ap.add_argument("--step", type=int, default=1, help="tracker ran on every N-th frame")
    ap.add_argument("--margin", type=float, default=8.0,
                    help="line hysteresis in px (about 10%% of a person's height in this scene; "
                         "detector boxes jitter by ~5%% of the height)")
    ap.add_argument("--json", help="write the figures here as JSON")
    a = ap.parse_args()
    gt = load(a.gt)
    res = load(a.res) if open(a.res).read().strip() else np.zeros((0, 10))
    m = evaluate(gt, res, a.step)
    gt_lines = count_crossings(foot_tracks(gt), a.margin)
    res_lines = count_crossings(foot_tracks(res), a.margin)
    out = {"metrics": m, "lines": {"gt": gt_lines, "tracker": res_lines}, "step": a.step,
           "res": a.res}
    print(f"{a.res} (every {a.step}. frame): MOTA {m['mota'] * 100:.1f}%  IDF1 {m['idf1'] * 100:.1f}%  "
          f"IDsw {int(m['num_switches'])}  Frag {int(m['num_fragmentations'])}  "
          f"FP {int(m['num_false_positives'])}  FN {int(m['num_misses'])}  "
          f"MT/PT/ML {int(m['mostly_tracked'])}/{int(m['partially_tracked'])}/{int(m['mostly_lost'])}  "
          f"recall {m['recall'] * 100:.1f}%  precision {m['precision'] * 100:.1f}%  "
          f"MOTP(IoU) {m['motp_iou'] * 100:.1f}%  hyp ids {m['num_hyp_ids']}")
    worst = 0.0
    for line in LINES:
        for d in line["dirs"]:
            g, r = gt_lines[line["name"]][d], res_lines[line["name"]][d]
            err = (r - g) / g if g else (0.0 if r == 0 else float("inf"))
            worst = max(worst, abs(err))
            print(f"  line {line['name']:<16} {d:<14} GT {g:>3}  tracker {r:>3}  ({err * 100:+.0f}%)")
    out["worst_line_error"] = worst
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
