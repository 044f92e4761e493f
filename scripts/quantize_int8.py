#!/usr/bin/env python3
"""Static INT8 quantisation of the bundled NanoDet-g 416 detector (U8S8, QDQ).

Writes models/nanodet_g_coco_416_int8.onnx (+ its manifest .json) from
models/nanodet_g_coco_416.onnx, calibrated on real frames of the bundled clips.
Method, variants tried and results: docs/int8.md.

Pinned environment (the output is byte-for-byte reproducible with these):

    python3 -m venv /tmp/venv-int8
    /tmp/venv-int8/bin/pip install onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 pillow==13.0.0
    /tmp/venv-int8/bin/python scripts/quantize_int8.py              # writes the bundled model
    /tmp/venv-int8/bin/python scripts/quantize_int8.py --eval       # + a quick Python agreement check

Also needs `gst-launch-1.0` with the `avdec_h264`, `qtdemux`, `h264parse` and `pngenc` elements (the
same GStreamer the node uses) to decode the clips.

Calibration set (fixed, deterministic): every 4th frame of the FIRST half of each clip,
tests/fixtures/vtest_10s_h264.mp4 (frames 0, 4, ..., 48 of 100) and
tests/fixtures/market_street_10s_h264.mp4 (frames 0, 4, ..., 148 of 302): 51 frames. The second
halves are held out for the agreement check (benches/int8_agreement.rs).

Pre-processing is the Rust detector's (edge-node/src/detect/preprocess.rs, default antialias filter =
Pillow's BILINEAR on a downscale): plain resize of the whole frame to 416x416, RGB -> BGR,
(pixel - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395], NCHW float32. It is taken from
scripts/reference_detect.py, the project's independent reference.

Quantisation: onnxruntime.quantization.quant_pre_process (shape inference + ORT basic graph
optimisation), then quantize_static with QuantFormat.QDQ, activation_type=QUInt8,
weight_type=QInt8 (U8S8: the VNNI u8 x s8 kernel; S8S8 is slower than FP32 on this CPU, see
docs/int8.md), per-channel weights, MinMax calibration. The head (the three last Conv nodes that
produce the concatenated cls+reg maps, and the Split / Sigmoid / Reshape / Transpose after them)
stays in float: the class scores are thresholded at 0.35 and the 11-bin distance logits go through a
softmax, both sensitive to an 8-bit step. The FP32 model's metadata (model, source, license, input,
outputs, strides, reg_max, names) is copied into the INT8 file, so `Detector::load` describes it the
same way; a `quantization` key records how it was made.

Input size: the bundled FP32 model takes any H, W (multiples of 32; `models/nanodet_post.py open`).
The script quantises the fixed 416x416 model it was made from (`nanodet_post.py fix`, byte-identical
to the FP32 model before it was opened, sha256 0c00eece...d9c1), calibrating at 416x416 as before,
and opens the result the same way: the fixed-size INT8 model is byte-identical to the one bundled
before (sha256 5f766367...670f, printed), the written one is its opened version. Quantisation puts
no size-dependent constant in the graph (activations per-tensor, weights per output channel), so
the opened INT8 model runs at any H, W too; `nanodet_post.py compare-open` checks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import reference_detect as ref  # noqa: E402  (pre-processing, decode and NMS of the reference)

sys.path.insert(0, str(ROOT / "models"))
import nanodet_post as post  # noqa: E402  (open / fix: symbolic or 416x416 input size)

FP32 = ROOT / "models" / "nanodet_g_coco_416.onnx"
MANIFEST = ROOT / "models" / "nanodet_g_coco_416.json"
OUT = ROOT / "models" / "nanodet_g_coco_416_int8.onnx"
CLIPS = ["vtest_10s_h264.mp4", "market_street_10s_h264.mp4"]
CALIB_STEP = 4
EXPECTED_VERSIONS = {"onnxruntime": "1.32.0"}

# The GFL head: the three Conv nodes producing [cls(80) | reg(44)] per stride, and what follows.
HEAD_CONVS = ["Conv__176", "Conv__178", "Conv__180"]
HEAD_TAIL_OPS = {"Split", "Sigmoid", "Reshape", "Transpose"}

# The stem: the first convolution (3 input channels: K = 27 is too short for the int8 GEMM to pay,
# and it would need the input quantised first) and its activation.
STEM_NODES = ["Conv__145", "PartitionedCall/onnx_tf_prefix_LeakyRelu_1", "PartitionedCall/MaxPool2d"]

# Variants compared in docs/int8.md; "default" is the bundled model.
_BASE = dict(per_channel=True, exclude_head=True, calib="minmax", reduce_range=False,
             float_stem=True, share_concat=True)
VARIANTS = {
    "default": _BASE,
    "int8_stem": {**_BASE, "float_stem": False},
    "own_concat_scales": {**_BASE, "share_concat": False},
    "v1": {**_BASE, "float_stem": False, "share_concat": False},
    "per_tensor": {**_BASE, "per_channel": False},
    "all_nodes": {**_BASE, "exclude_head": False},
    "percentile": {**_BASE, "calib": "percentile"},
    "entropy": {**_BASE, "calib": "entropy"},
    "reduce_range": {**_BASE, "reduce_range": True},
}


def extract_frames(clip: Path, dest: Path) -> list[Path]:
    """Decodes every frame of `clip` to RGB PNGs with GStreamer (the node's own decoder)."""
    dest.mkdir(parents=True, exist_ok=True)
    pipeline = (
        f"filesrc location={clip} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! "
        f"video/x-raw,format=RGB ! pngenc compression-level=1 ! "
        f"multifilesink location={dest}/f_%04d.png"
    )
    subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], check=True)
    frames = sorted(dest.glob("f_*.png"))
    if not frames:
        raise SystemExit(f"no frames decoded from {clip}")
    return frames


def split_frames(frames: list[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration = every CALIB_STEP-th frame of the first half, held out = the second half)."""
    half = len(frames) // 2
    return frames[:half:CALIB_STEP], frames[half:]


class FrameReader(CalibrationDataReader):
    def __init__(self, frames: list[Path], manifest: dict, input_name: str):
        self.frames = list(frames)
        self.manifest = manifest
        self.input_name = input_name
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.frames):
            return None
        img = Image.open(self.frames[self.pos])
        self.pos += 1
        return {self.input_name: ref.preprocess(img, self.manifest)}

    def rewind(self):
        self.pos = 0


def excluded_nodes(model: onnx.ModelProto, exclude_head: bool) -> list[str]:
    if not exclude_head:
        return []
    names = {n.name for n in model.graph.node}
    missing = [c for c in HEAD_CONVS if c not in names]
    if missing:
        raise SystemExit(f"head convs {missing} not in the graph: was the FP32 model rebuilt?")
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out, todo = list(HEAD_CONVS), list(HEAD_CONVS)
    by_name = {n.name: n for n in model.graph.node}
    while todo:
        for o in by_name[todo.pop()].output:
            for c in consumers.get(o, []):
                if c.op_type in HEAD_TAIL_OPS and c.name not in out:
                    out.append(c.name)
                    todo.append(c.name)
    return out


def pool_before_activation(model: onnx.ModelProto) -> None:
    """Stem rewrite: Conv -> LeakyRelu -> MaxPool becomes Conv -> MaxPool -> LeakyRelu.

    Exact: LeakyReLU (slope > 0) is strictly increasing, so the max of a window commutes with it
    (and MaxPool's padding is ignored, not zero). It is needed to keep the stem in float: ONNX
    Runtime moves a QuantizeLinear that follows a MaxPool above it, and a uint8 MaxPool on the
    208x208 NCHW map (no QLinearConv before it to make it NHWC) costs ~6-10 ms, more than the
    stem conv itself. With the activation last, the first QuantizeLinear sits after it, on the
    pooled 104x104 map, and cannot move.
    """
    nodes = {n.name: n for n in model.graph.node}
    missing = [n for n in STEM_NODES if n not in nodes]
    if missing:
        raise SystemExit(f"stem nodes {missing} not in the graph: was the FP32 model rebuilt?")
    conv, act, pool = (nodes[n] for n in STEM_NODES)
    if act.input[0] != conv.output[0] or pool.input[0] != act.output[0]:
        raise SystemExit("stem is not Conv -> LeakyRelu -> MaxPool")
    if sum(1 for n in model.graph.node for i in n.input if i in (conv.output[0], act.output[0])) != 2:
        raise SystemExit("stem tensors have other consumers; cannot reorder")
    pooled, out = "stem_pooled_preact", pool.output[0]
    old_act_out = act.output[0]
    pool.input[0], pool.output[0] = conv.output[0], pooled
    act.input[0], act.output[0] = pooled, out
    # Keep the node list topologically sorted: the pool now runs before the activation.
    order = list(model.graph.node)
    i, j = order.index(act), order.index(pool)
    order[i], order[j] = order[j], order[i]
    del model.graph.node[:]
    model.graph.node.extend(order)
    keep = [vi for vi in model.graph.value_info if vi.name not in (old_act_out, out)]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)


def fixed_fp32(work: Path) -> Path:
    """The FP32 model at 416x416 (the bundled one is opened: nanodet_post.py fix undoes it)."""
    model = onnx.load(str(FP32))
    dims = post.dims(model.graph.input[0])
    if dims == [1, 3, post.INPUT, post.INPUT]:
        return FP32
    path = work / "nanodet_fp32_416.onnx"
    onnx.save(post.fix_model(model), str(path))
    return path


def quantize(variant: str, calib: list[Path], work: Path, out: Path) -> list[str]:
    v = VARIANTS[variant]
    manifest = json.loads(MANIFEST.read_text())
    fp32 = fixed_fp32(work)
    pre = work / "nanodet_pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    pre_model = onnx.load(str(pre))
    exclude = excluded_nodes(pre_model, v["exclude_head"])
    if v["float_stem"]:
        pool_before_activation(pre_model)
        onnx.save(pre_model, str(pre))
        exclude = STEM_NODES + exclude
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[v["calib"]]
    tmp = work / f"int8_{variant}.onnx"
    quantize_static(
        str(pre),
        str(tmp),
        FrameReader(calib, manifest, pre_model.graph.input[0].name),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=v["per_channel"],
        reduce_range=v["reduce_range"],
        calibrate_method=method,
        nodes_to_exclude=exclude,
        extra_options={"CalibMovingAverage": False},
    )
    # Carry the FP32 model's description over, plus how this file was made.
    src = onnx.load(str(fp32))
    q = onnx.load(str(tmp))
    shared = share_concat_qparams(q) if v["share_concat"] else (0, 0)
    del q.metadata_props[:]
    for p in src.metadata_props:
        q.metadata_props.add(key=p.key, value=p.value)
    note = (
        f"static INT8 by scripts/quantize_int8.py variant={variant}: QDQ, U8S8 "
        f"(activations uint8, weights int8), per_channel={v['per_channel']}, "
        f"reduce_range={v['reduce_range']}, calibration={v['calib']} on {len(calib)} frames "
        f"(every {CALIB_STEP}th of the first half of {', '.join(CLIPS)}); "
        f"concat inputs share the concat's scale: {v['share_concat']} ({shared[0]} inputs, "
        f"{shared[1]} biases requantised)"
        f"; float nodes: "
        f"{', '.join(exclude) if exclude else 'none'}; onnxruntime {ort.__version__}"
    )
    q.metadata_props.add(key="quantization", value=note)
    q.doc_string = "NanoDet-g 416, static INT8 (U8S8 QDQ) of nanodet_g_coco_416.onnx"
    onnx.checker.check_model(q)
    # Written at 416x416 first (the file bundled before the input was opened), then opened.
    fixed = work / f"int8_{variant}_416.onnx"
    onnx.save(q, str(fixed))
    digest = hashlib.sha256(fixed.read_bytes()).hexdigest()
    print(f"fixed 416x416 INT8: {fixed.stat().st_size:,} bytes, sha256 {digest}")
    post.open_model(str(fixed), str(out))
    return exclude


def share_concat_qparams(model: onnx.ModelProto) -> tuple[int, int]:
    """Gives every Concat input the Concat output's scale and zero point.

    MinMax calibrates each tensor on its own, so a Concat's inputs and output get different
    quantisation parameters and ONNX Runtime's QLinearConcat requantises every input byte through a
    lookup table. The output's range is the union of the inputs' ranges, so with the output's
    parameters on the inputs nothing clips (an input with a narrower range loses a little
    precision) and the concatenation becomes a plain copy. An input tensor's Q/DQ pair is changed
    in place, so every other consumer of that tensor sees the same parameters; a Conv that reads
    it has its int32 bias re-quantised to the new input scale x weight scale (ONNX Runtime only
    fuses a QDQ Conv whose bias scale is exactly that product). Returns (inputs changed, biases
    re-quantised).
    """
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    inits = {i.name: i for i in g.initializer}

    def arr(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    def put(name: str, val: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(val.astype(arr(name).dtype), name))

    changed = biases = 0
    for n in g.node:
        outs = cons.get(n.output[0], [])
        if n.op_type != "Concat" or len(outs) != 1 or outs[0].op_type != "QuantizeLinear":
            continue
        s_out, z_out = arr(outs[0].input[1]), arr(outs[0].input[2])
        for i in n.input:
            dq = prod.get(i)
            q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                raise SystemExit(f"{n.name}: input {i} is not a Q -> DQ pair")
            if arr(q.input[1]) == s_out and arr(q.input[2]) == z_out:
                continue
            for name, val in ((q.input[1], s_out), (q.input[2], z_out), (dq.input[1], s_out), (dq.input[2], z_out)):
                if any(u.input[0] not in (q.input[0], q.output[0]) for u in cons[name]):
                    raise SystemExit(f"{name} is shared with another tensor; cannot re-scale {i} alone")
                put(name, val)
            for d in cons[q.output[0]]:
                for c in cons.get(d.output[0], []):
                    if c.op_type != "Conv" or len(c.input) < 3:
                        continue
                    bdq, wdq = prod[c.input[2]], prod[c.input[1]]
                    if bdq.op_type != "DequantizeLinear" or wdq.op_type != "DequantizeLinear":
                        raise SystemExit(f"{c.name}: weight or bias is not dequantised")
                    bias = arr(bdq.input[0]).astype(np.float64) * arr(bdq.input[1]).astype(np.float64)
                    scale = (np.float64(s_out) * arr(wdq.input[1]).astype(np.float64)).astype(np.float32)
                    put(bdq.input[1], scale)
                    put(bdq.input[0], np.round(bias / scale.astype(np.float64)).astype(np.int32))
                    biases += 1
            changed += 1
    return changed, biases


def run_dets(sess: ort.InferenceSession, frame: Path, manifest: dict, meta: dict):
    img = Image.open(frame)
    x = ref.preprocess(img, manifest)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    strides = [int(s) for s in meta["strides"].split(",")]
    w, h = manifest["input_size"]
    boxes, scores, classes = ref.decode(outs, strides, int(meta["reg_max"]), w, h, ref.THRESHOLD)
    keep = ref.nms_class_aware(boxes, scores, classes, ref.NMS_IOU)
    return boxes[keep], classes[keep]


def agreement(a_boxes, a_cls, b_boxes, b_cls, iou=0.5) -> int:
    """Greedy one-to-one matches of b against a (same label, IoU >= iou)."""
    used = np.zeros(len(a_boxes), dtype=bool)
    tp = 0
    for bb, bc in zip(b_boxes, b_cls):
        if len(a_boxes) == 0:
            break
        ious = ref.iou_one_to_many(bb, a_boxes)
        ious[(a_cls != bc) | used] = -1
        j = int(ious.argmax())
        if ious[j] >= iou:
            used[j] = True
            tp += 1
    return tp


def evaluate(model: Path, held_out: dict[str, list[Path]]) -> dict:
    """Quick Python check: INT8 vs FP32 detections on the held-out frames, and 1-thread speed."""
    manifest = json.loads(MANIFEST.read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    fp = ort.InferenceSession(str(FP32), so, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    meta = fp.get_modelmeta().custom_metadata_map
    res = {}
    tot = np.zeros(3, dtype=np.int64)
    for clip, frames in held_out.items():
        c = np.zeros(3, dtype=np.int64)  # tp, n_fp32, n_int8
        for f in frames:
            fb, fc = run_dets(fp, f, manifest, meta)
            qb, qc = run_dets(q, f, manifest, meta)
            c += [agreement(fb, fc, qb, qc), len(fb), len(qb)]
        res[clip] = prf(c)
        tot += c
    res["overall"] = prf(tot)
    x = ref.preprocess(Image.open(held_out[CLIPS[0]][0]), manifest)
    for name, s in (("fp32_ms", fp), ("int8_ms", q)):
        inp = {s.get_inputs()[0].name: x}
        for _ in range(3):
            s.run(None, inp)
        t = []
        for _ in range(15):
            t0 = time.perf_counter()
            s.run(None, inp)
            t.append((time.perf_counter() - t0) * 1e3)
        res[name] = round(float(np.median(t)), 2)
    res["speedup"] = round(res["fp32_ms"] / res["int8_ms"], 2)
    return res


def prf(c) -> dict:
    tp, n_ref, n_q = (int(v) for v in c)
    p = tp / n_q if n_q else 1.0
    r = tp / n_ref if n_ref else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp32": n_ref, "int8": n_q, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    ap.add_argument("--out", type=Path, help=f"output model (default {OUT.relative_to(ROOT)} for the default variant)")
    ap.add_argument("--eval", action="store_true", help="also compare with FP32 on the held-out frames")
    ap.add_argument("--keep-frames", type=Path, help="decode the frames here and keep them")
    args = ap.parse_args()
    if ort.__version__ != EXPECTED_VERSIONS["onnxruntime"]:
        print(f"warning: onnxruntime {ort.__version__}, the bundled model was made with "
              f"{EXPECTED_VERSIONS['onnxruntime']}", file=sys.stderr)
    out = args.out or (OUT if args.variant == "default" else ROOT / "out" / "int8" / f"int8_{args.variant}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="int8-"))
    try:
        frame_root = args.keep_frames or work / "frames"
        calib, held_out = [], {}
        for clip in CLIPS:
            frames = extract_frames(ROOT / "tests" / "fixtures" / clip, frame_root / Path(clip).stem)
            c, h = split_frames(frames)
            print(f"{clip}: {len(frames)} frames, calibration {len(c)} (every {CALIB_STEP}th of the "
                  f"first {len(frames) // 2}), held out {len(h)}")
            calib += c
            held_out[clip] = h
        exclude = quantize(args.variant, calib, work, out)
        print(f"float (not quantised) nodes: {exclude or 'none'}")
        if out == OUT:
            shutil.copyfile(MANIFEST, OUT.with_suffix(".json"))
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        print(f"wrote {out} ({out.stat().st_size:,} bytes, sha256 {digest})")
        if args.eval:
            print(json.dumps(evaluate(out, held_out), indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
