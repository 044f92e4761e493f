#!/usr/bin/env python3
"""Independent numpy + onnxruntime reference for the bundled NanoDet-g 416 detector.

The Rust `detect` module is checked against the files this script writes
(`tests/parity.rs`). It deliberately shares no code with the Rust side: the
pre-processing uses Pillow, the decode and the class-aware NMS are written
here in numpy from the model description (models/nanodet_g_coco_416.json and
the ONNX metadata), so a bug on one side shows up as a parity failure.

Usage (from the repository root):

    python3 -m venv /tmp/venv-ref
    /tmp/venv-ref/bin/pip install onnxruntime==1.32.0 numpy pillow onnx
    /tmp/venv-ref/bin/python scripts/reference_detect.py                  # 416x416 squashed
    /tmp/venv-ref/bin/python scripts/reference_detect.py --budget 173056  # aspect kept
    /tmp/venv-ref/bin/python scripts/reference_detect.py --size 480x352   # any W x H

Input size (the model's H and W are dynamic, multiples of 32):
    (default)        the manifest's input_size (416x416), every image squashed
                     into it: what `InputBudget::Model` runs
    --size WxH       every image stretched to exactly W x H
    --budget PIXELS  each image at its own aspect ratio within PIXELS input
                     pixels, the rule of `edge_node::detect::aspect_size`
                     (173056 = 416*416 is the detector's default budget,
                     `InputBudget::Declared(1)`; 768x576 -> 480x352)

Outputs (tests/fixtures/parity/):
    dog_input_416.f32          the exact input tensor for dog.jpg, raw little-endian f32, NCHW
    <image>_reference.json     detections in 416-input pixels and in source pixels
    dog_input_<W>x<H>.f32, <image>_<W>x<H>_reference.json
                               the same at another input size (--size / --budget)

To refresh the video frames (tests/fixtures/vtest_f000.png, vtest_f050.png):

    gst-launch-1.0 -q filesrc location=tests/fixtures/vtest_10s_h264.mp4 ! qtdemux ! h264parse ! \
        avdec_h264 ! videoconvert ! video/x-raw,format=RGB ! pngenc ! multifilesink location=/tmp/f_%03d.png
    # then copy /tmp/f_000.png and /tmp/f_050.png (re-saved with Pillow optimize=True)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "nanodet_g_coco_416.onnx"
MANIFEST = ROOT / "models" / "nanodet_g_coco_416.json"
FIXTURES = ROOT / "tests" / "fixtures"
OUT = FIXTURES / "parity"

THRESHOLD = 0.35
NMS_IOU = 0.5

# (fixture file, output stem, also dump the input tensor)
IMAGES = [
    ("dog.jpg", "dog", True),
    ("vtest_f000.png", "vtest_f000", False),
    ("vtest_f050.png", "vtest_f050", False),
]


def load_manifest() -> dict:
    with MANIFEST.open() as f:
        return json.load(f)


def aspect_size(frame_w: int, frame_h: int, pixels: int, stride: int) -> tuple[int, int]:
    """The input size of a frame within a pixel budget at its aspect ratio.

    Written from the description of `edge_node::detect::aspect_size`
    (edge-node/src/detect/geometry.rs): each side scaled by
    sqrt(pixels / (w * h)) and rounded to the nearest multiple of `stride`
    (at least one stride); when the product then exceeds the budget by more
    than 10 %, one side is shrunk by a stride: the one that costs the least
    aspect error (the narrower one on a tie).
    """
    scale = math.sqrt(pixels / (frame_w * frame_h))

    def rnd(v: float) -> int:
        # Rust's f64::round: halves away from zero (Python's round() is banker's).
        return max(int(math.floor(v / stride + 0.5)), 1) * stride

    w, h = rnd(frame_w * scale), rnd(frame_h * scale)
    if w * h > 1.1 * pixels:
        aspect = frame_w / frame_h

        def err(a: int, b: int) -> float:
            return abs(math.log(a / b / aspect))

        narrower = (max(w - stride, stride), h)
        shorter = (w, max(h - stride, stride))
        w, h = narrower if err(*narrower) <= err(*shorter) else shorter
    return w, h


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH (e.g. 480x352)") from None
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise argparse.ArgumentTypeError(f"{text}: both sides must be positive multiples of 32")
    return w, h


def preprocess(img: Image.Image, manifest: dict, size: tuple[int, int]) -> np.ndarray:
    """Plain (stretch) resize to `size` (W, H) with Pillow's bilinear filter, BGR, (x - mean) / std, NCHW."""
    w, h = size
    assert manifest["resize"] == "stretch" and manifest["color"] == "bgr"
    rgb = np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32)
    bgr = rgb[:, :, ::-1]
    mean = np.asarray(manifest["mean"], dtype=np.float32)
    std = np.asarray(manifest["std"], dtype=np.float32)
    norm = (bgr - mean) / std
    return np.ascontiguousarray(norm.transpose(2, 0, 1)[None, :, :, :], dtype=np.float32)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def decode(outputs: dict, strides: list[int], reg_max: int, in_w: int, in_h: int, thr: float):
    """Per-stride GFL decode: argmax class, softmax-expectation distances, anchor centre (c+0.5)*s."""
    boxes, scores, classes = [], [], []
    bins = np.arange(reg_max + 1, dtype=np.float32)
    for s in strides:
        cls = outputs[f"cls_s{s}"][0]  # [n, nc], already sigmoid
        reg = outputs[f"reg_s{s}"][0]  # [n, 4*(reg_max+1)]
        gw = in_w // s
        cid = cls.argmax(axis=1)  # numpy argmax: first index on ties
        score = cls[np.arange(cls.shape[0]), cid]
        keep = np.nonzero(score > thr)[0]
        if keep.size == 0:
            continue
        dist = (softmax(reg[keep].reshape(-1, 4, reg_max + 1), axis=2) * bins).sum(axis=2) * s
        cx = ((keep % gw).astype(np.float32) + 0.5) * s
        cy = ((keep // gw).astype(np.float32) + 0.5) * s
        b = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1)
        boxes.append(b)
        scores.append(score[keep])
        classes.append(cid[keep])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)


def iou_one_to_many(b: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(b[2], others[:, 2]) - np.maximum(b[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(b[3], others[:, 3]) - np.maximum(b[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)
    union = area(b) + area(others) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def nms_class_aware(boxes, scores, classes, iou_thr):
    """Greedy NMS in score order; a box only suppresses boxes of its own class (IoU > thr)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i_pos, i in enumerate(order):
        if suppressed[i_pos]:
            continue
        keep.append(i)
        rest = order[i_pos + 1 :]
        same = classes[rest] == classes[i]
        over = iou_one_to_many(boxes[i], boxes[rest]) > iou_thr
        suppressed[i_pos + 1 :] |= same & over
    return np.asarray(keep, dtype=np.int64)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--size", type=parse_size, metavar="WxH", help="stretch every image to W x H")
    how.add_argument(
        "--budget",
        type=int,
        metavar="PIXELS",
        help="each image at its aspect ratio within PIXELS input pixels (173056 = the default budget)",
    )
    args = ap.parse_args(argv)
    if args.budget is not None and args.budget < 32 * 32:
        ap.error(f"--budget {args.budget}: at least 1024 pixels (one 32x32 cell)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    manifest = load_manifest()
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    names = json.loads(meta["names"])
    strides = [int(s) for s in meta["strides"].split(",")]
    reg_max = int(meta["reg_max"])
    declared = tuple(manifest["input_size"])
    input_name = sess.get_inputs()[0].name
    OUT.mkdir(parents=True, exist_ok=True)
    model_sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()

    for file, stem, dump_input in IMAGES:
        path = FIXTURES / file
        img = Image.open(path)
        src_w, src_h = img.size
        if args.size is not None:
            in_w, in_h = args.size
        elif args.budget is not None:
            in_w, in_h = aspect_size(src_w, src_h, args.budget, max(strides))
        else:
            in_w, in_h = declared
        # The manifest-size (squashed 416x416) files keep their historical names.
        if args.size is None and args.budget is None:
            out_stem, tensor_name = stem, f"{stem}_input_416.f32"
        else:
            out_stem, tensor_name = f"{stem}_{in_w}x{in_h}", f"{stem}_input_{in_w}x{in_h}.f32"
        x = preprocess(img, manifest, (in_w, in_h))
        if dump_input:
            x.astype("<f4").tofile(OUT / tensor_name)
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {input_name: x})))
        boxes, scores, classes = decode(outs, strides, reg_max, in_w, in_h, THRESHOLD)
        keep = nms_class_aware(boxes, scores, classes, NMS_IOU)
        sx, sy = src_w / in_w, src_h / in_h
        dets = []
        for k in keep:
            b = boxes[k]
            src = [
                float(np.clip(b[0] * sx, 0, src_w)),
                float(np.clip(b[1] * sy, 0, src_h)),
                float(np.clip(b[2] * sx, 0, src_w)),
                float(np.clip(b[3] * sy, 0, src_h)),
            ]
            dets.append(
                {
                    "class_id": int(classes[k]),
                    "label": names[int(classes[k])],
                    "score": float(scores[k]),
                    "box_input": [float(v) for v in b],
                    "box_source": src,
                }
            )
        doc = {
            "generator": "scripts/reference_detect.py",
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "model": "models/nanodet_g_coco_416.onnx",
            "model_sha256": model_sha,
            "image": f"tests/fixtures/{file}",
            "width": src_w,
            "height": src_h,
            "input_size": [in_w, in_h],
            "resize": "PIL bilinear stretch",
            "threshold": THRESHOLD,
            "nms_iou": NMS_IOU,
            "classes": "all",
            "input_tensor": f"tests/fixtures/parity/{tensor_name}" if dump_input else None,
            "detections": dets,
        }
        with (OUT / f"{out_stem}_reference.json").open("w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        summary = ", ".join(f"{d['label']} {d['score']:.2f} {[round(v) for v in d['box_source']]}" for d in dets)
        print(f"{file} at {in_w}x{in_h}: {len(dets)} detections: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
