#!/usr/bin/env python3
"""Builds the tiny ONNX fixtures under tests/fixtures/models/ (a few KB each, 16 KB for NanoDet).

Every model takes an image input [1,3,H,W] and ignores it: its outputs are
constants (added to 0 * mean(image) so ONNX Runtime cannot fold the input
away) that encode known boxes, so the tests can check each decoder end to
end, letterbox undo included, through a real ONNX Runtime session without
shipping a real model. Expected values are documented next to each model and
asserted in tests/models.rs and edge-node/src/detect.rs.

- weird_outputs.onnx: a [1,3] feature vector. Fits no family (UnknownFamily).
- tiny_nanodet.onnx: the bundled NanoDet's layout and metadata on a 64x64
  input: cls_s8/s16/s32 [1,cells,2] sigmoid scores + reg_sN [1,cells,44]
  (4 sides x 11 bins, reg_max 10), metadata names (JSON list), strides
  "8,16,32", reg_max "10". No manifest: the family is inferred.
- tiny_yolov8.onnx: Ultralytics head [1, 4+2, 84], 64x64, metadata names/imgsz/task.
- user_yolov8_ultralytics.onnx: the "user-provided Ultralytics export" case:
  [1, 4+3, 126] for a 96x64 (w x h) input, with the metadata keys an
  Ultralytics export writes (description, author, date, version, license,
  docs, stride, task, batch, imgsz, names as a Python dict string, args).
- tiny_yolo_e2e.onnx: YOLOv10 / YOLO26 end-to-end [1, 10, 6].
- tiny_detr.onnx: DETR [1, 10, 4+3] with class *logits* (sigmoid applied).
- tiny_detr_pair.onnx: DETR pair pred_boxes [1,4,4] + scores [1,4,2] (probabilities).
- tiny_yolox.onnx: YOLOX raw [1, 84, 5+2] (strides 8/16/32 on 64x64).
- tiny_yolox_decoded.onnx (+ .json manifest: family yolox, decoded true).
- tiny_nms.onnx: post-NMS rows [4, 7] batch,x1,y1,x2,y2,class,score.
- tiny_nms_custom.onnx (+ .json manifest: columns x1,y1,x2,y2,score,class): [3, 6].
- tiny_tfod.onnx: detection_boxes [1,4,4] (y1,x1,y2,x2 normalised),
  detection_scores [1,4], detection_classes [1,4] (int64), num_detections [1].
- tiny_pose.onnx: an Ultralytics pose head (task=pose), refused.

Usage: python3 scripts/make_test_models.py   (needs the `onnx` and `numpy` packages)
"""

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models"
OPSET = [helper.make_opsetid("", 13)]
IR_VERSION = 8  # readable by every ONNX Runtime >= 1.10


def save(model: onnx.ModelProto, name: str) -> None:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(OUT / name))
    print(f"wrote {OUT / name} ({(OUT / name).stat().st_size} bytes)")


def manifest(name: str, body: dict) -> None:
    (OUT / name).write_text(json.dumps(body, indent=2) + "\n")
    print(f"wrote {OUT / name}")


def constant_model(name, outputs, h=64, w=64, metadata=None):
    """outputs: list of (output name, numpy array). Each output = const + 0*mean(image)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    outs = []
    for out_name, arr in outputs:
        const = f"{out_name}_const"
        if arr.dtype == np.float32:
            inits.append(numpy_helper.from_array(arr, const))
            nodes.append(helper.make_node("Add", [const, "z"], [out_name]))
            elem = TensorProto.FLOAT
        else:
            # Integer outputs: cast the zero to the type and add.
            inits.append(numpy_helper.from_array(arr, const))
            nodes.append(helper.make_node("Cast", ["z"], [f"{out_name}_z"], to=TensorProto.INT64))
            nodes.append(helper.make_node("Add", [const, f"{out_name}_z"], [out_name]))
            elem = TensorProto.INT64
        outs.append(helper.make_tensor_value_info(out_name, elem, list(arr.shape)))
    graph = helper.make_graph(nodes, name, [x], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="edge-node tests")
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def weird_outputs() -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
    ]
    graph = helper.make_graph(nodes, "weird_outputs", [x], [y])
    save(helper.make_model(graph, opset_imports=OPSET, producer_name="edge-node tests"), "weird_outputs.onnx")


def nanodet_bins(d: float, reg_max: int = 10) -> np.ndarray:
    """Side logits whose softmax expectation is d (in strides): one peaked bin,
    or two equal peaks for a half-integer. exp(-40) leaves < 1e-16 elsewhere."""
    b = np.zeros(reg_max + 1, dtype=np.float32)
    lo = int(np.floor(d))
    if d == lo:
        b[lo] = 40.0
    else:
        b[lo] = b[lo + 1] = 40.0  # expectation lo + 0.5
    return b


def tiny_nanodet() -> None:
    h = w = 64
    nc, reg_max = 2, 10
    outs = []
    levels = {}
    for s in (8, 16, 32):
        cells = (w // s) * (h // s)
        cls = np.zeros((1, cells, nc), dtype=np.float32)
        cls[0, :, :] = 0.01
        reg = np.zeros((1, cells, 4 * (reg_max + 1)), dtype=np.float32)
        levels[s] = (cls, reg)

    def put(s, col, row, cls_scores, sides):
        cls, reg = levels[s]
        cell = row * (w // s) + col
        cls[0, cell] = cls_scores
        reg[0, cell] = np.concatenate([nanodet_bins(d, reg_max) for d in sides])

    # Stride 8, cell (col 4, row 3): centre (36, 28); sides l,t,r,b = 2,1,1,3 strides
    # -> person 0.9 at (20,20)-(44,52) in input pixels.
    put(8, 4, 3, [0.9, 0.05], [2, 1, 1, 3])
    # Stride 16, cell (col 2, row 1): centre (40, 24); sides 1, 0.5, 1, 1
    # -> car 0.75 at (24,16)-(56,40).
    put(16, 2, 1, [0.1, 0.75], [1, 0.5, 1, 1])
    # Stride 8, cell (col 4, row 2): centre (36, 20); sides 1.5, 0.5, 2.5, 2.5
    # -> the same car box at 0.6: removed by NMS.
    put(8, 4, 2, [0.1, 0.6], [1.5, 0.5, 2.5, 2.5])
    # Stride 32, cell (col 1, row 1): person 0.3, under the default threshold 0.35.
    put(32, 1, 1, [0.3, 0.0], [0.5, 0.5, 0.5, 0.5])
    for s in (8, 16, 32):
        cls, reg = levels[s]
        outs += [(f"cls_s{s}", cls), (f"reg_s{s}", reg)]
    meta = {
        "model": "edge-node test fixture: constant NanoDet (GFL head) outputs, reg_max=10",
        "names": json.dumps(["person", "car"]),
        "strides": "8,16,32",
        "reg_max": str(reg_max),
    }
    save(constant_model("tiny_nanodet", outs, h=h, w=w, metadata=meta), "tiny_nanodet.onnx")


def tiny_yolov8() -> None:
    n = 8 * 8 + 4 * 4 + 2 * 2  # strides 8/16/32 on a 64x64 input
    head = np.zeros((1, 6, n), dtype=np.float32)
    # field f of candidate c lives at [0, f, c]
    head[0, :, 0] = [32, 32, 16, 8, 0.9, 0.1]  # person
    head[0, :, 1] = [10, 40, 4, 4, 0.05, 0.6]  # car
    meta = {
        "names": "{0: 'person', 1: 'car'}",
        "imgsz": "[64, 64]",
        "stride": "32",
        "task": "detect",
        "description": "edge-node test fixture: constant YOLOv8-layout head",
    }
    save(constant_model("tiny_yolov8", [("output0", head)], metadata=meta), "tiny_yolov8.onnx")


def user_yolov8_ultralytics() -> None:
    # 96 wide x 64 high: 12*8 + 6*4 + 3*2 = 126 candidates, 3 classes.
    h, w = 64, 96
    n = (w // 8) * (h // 8) + (w // 16) * (h // 16) + (w // 32) * (h // 32)
    head = np.zeros((1, 7, n), dtype=np.float32)
    head[0, 4:, :] = 0.01
    head[0, :, 5] = [48, 32, 20, 40, 0.02, 0.03, 0.85]  # bus 0.85 at (38,12)-(58,52)
    head[0, :, 6] = [49, 33, 20, 40, 0.02, 0.03, 0.80]  # duplicate, removed by NMS
    head[0, :, 100] = [20, 20, 8, 8, 0.7, 0.1, 0.1]  # person 0.7 at (16,16)-(24,24)
    meta = {
        "description": "Ultralytics YOLOv8n model trained on coco.yaml (layout stand-in: constant outputs)",
        "author": "edge-node tests",
        "date": "2026-11-26T05:30:00",
        "version": "8.3.0",
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": "32",
        "task": "detect",
        "batch": "1",
        "imgsz": "[64, 96]",
        "names": "{0: 'person', 1: 'car', 2: 'bus'}",
        "args": "{'batch': 1, 'fraction': 1.0, 'half': False, 'int8': False, 'dynamic': False, 'simplify': True, "
        "'opset': None, 'workspace': None, 'nms': False, 'format': 'onnx', 'keras': False, 'optimize': False, 'device': 'cpu'}",
    }
    save(constant_model("user_yolov8", [("output0", head)], h=h, w=w, metadata=meta), "user_yolov8_ultralytics.onnx")


def tiny_yolo_e2e() -> None:
    rows = np.zeros((1, 10, 6), dtype=np.float32)
    rows[0, 0] = [8, 24, 24, 40, 0.92, 1]  # car
    rows[0, 1] = [10, 26, 26, 42, 0.88, 1]  # overlapping car: kept (no NMS for e2e)
    rows[0, 2] = [40, 20, 56, 30, 0.5, 0]  # person
    rows[0, 3] = [0, 0, 4, 4, 0.1, 0]  # below threshold
    meta = {"names": "{0: 'person', 1: 'car'}", "imgsz": "[64, 64]", "task": "detect", "stride": "32"}
    save(constant_model("tiny_yolo_e2e", [("output0", rows)], metadata=meta), "tiny_yolo_e2e.onnx")


def tiny_detr() -> None:
    q = np.zeros((1, 10, 7), dtype=np.float32)  # K > 4+nc, like real DETRs (K >= 100)
    q[0, :, 4:] = -6.0  # background logits
    q[0, 0] = [0.5, 0.5, 0.25, 0.125, -4.0, 3.0, -5.0]  # class 1 sigmoid(3)=0.9526
    q[0, 1] = [0.25, 0.75, 0.125, 0.25, 1.0, -2.0, -3.0]  # class 0 sigmoid(1)=0.7311
    meta = {"names": json.dumps(["person", "car", "bus"])}
    save(constant_model("tiny_detr", [("logits_boxes", q)], metadata=meta), "tiny_detr.onnx")


def tiny_detr_pair() -> None:
    boxes = np.full((1, 4, 4), 0.1, dtype=np.float32)
    scores = np.full((1, 4, 2), 0.01, dtype=np.float32)
    boxes[0, 2] = [0.5, 0.5, 0.5, 0.5]
    scores[0, 2] = [0.2, 0.75]  # car 0.75 at (16,16)-(48,48)
    meta = {"names": "{0: 'person', 1: 'car'}"}
    save(constant_model("tiny_detr_pair", [("pred_boxes", boxes), ("scores", scores)], metadata=meta), "tiny_detr_pair.onnx")


def yolox_rows() -> np.ndarray:
    rows = np.zeros((1, 84, 7), dtype=np.float32)
    # Stride 16 level starts at row 64; cell (gx 1, gy 2) = row 64 + 2*4 + 1 = 73.
    rows[0, 73] = [0.5, 0.25, np.log(2.0), 0.0, 0.9, 0.1, 0.8]  # car 0.72: cx 24 cy 36 w 32 h 16
    # Stride 8 cell (2, 2) = row 18, almost the same box: NMS removes it.
    rows[0, 18] = [1.0, 2.5, np.log(4.0), np.log(2.0), 0.8, 0.1, 0.8]  # car 0.64: cx 24 cy 36 w 32 h 16
    return rows


def tiny_yolox() -> None:
    save(constant_model("tiny_yolox", [("output", yolox_rows())]), "tiny_yolox.onnx")


def tiny_yolox_decoded() -> None:
    rows = np.zeros((1, 84, 7), dtype=np.float32)
    rows[0, 5] = [24, 36, 32, 16, 0.9, 0.8, 0.1]  # person 0.72, pixels
    save(constant_model("tiny_yolox_decoded", [("output", rows)]), "tiny_yolox_decoded.onnx")
    manifest(
        "tiny_yolox_decoded.json",
        {
            "family": "yolox",
            "decoded": True,
            "input_size": [64, 64],
            "color": "bgr",
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
            "resize": "letterbox",
            "names": ["person", "car"],
        },
    )


def tiny_nms() -> None:
    rows = np.array(
        [
            [0, 8, 20, 24, 44, 1, 0.9],  # car
            [0, 30, 30, 40, 40, 0, 0.6],  # person
            [1, 8, 20, 24, 44, 1, 0.9],  # second batch image: ignored
            [0, 0, 0, 0, 0, 0, 0.0],  # padding row
        ],
        dtype=np.float32,
    )
    meta = {"names": "{0: 'person', 1: 'car'}"}
    save(constant_model("tiny_nms", [("detections", rows)], metadata=meta), "tiny_nms.onnx")


def tiny_nms_custom() -> None:
    rows = np.array(
        [
            [8, 20, 24, 44, 0.9, 1],  # car
            [30, 30, 40, 40, 0.6, 0],  # person
            [1, 1, 2, 2, 0.2, 0],  # low
        ],
        dtype=np.float32,
    )
    save(constant_model("tiny_nms_custom", [("dets", rows)]), "tiny_nms_custom.onnx")
    manifest(
        "tiny_nms_custom.json",
        {
            "family": "nms",
            "columns": ["x1", "y1", "x2", "y2", "score", "class"],
            "input_size": [64, 64],
            "color": "rgb",
            "mean": [0, 0, 0],
            "std": [255, 255, 255],
            "resize": "letterbox",
            "names": ["person", "car"],
        },
    )


def tiny_tfod() -> None:
    boxes = np.zeros((1, 4, 4), dtype=np.float32)
    boxes[0, 0] = [0.25, 0.125, 0.75, 0.5]  # y1 x1 y2 x2 -> x 8..32, y 16..48
    boxes[0, 1] = [0.0, 0.5, 0.25, 1.0]  # x 32..64, y 0..16
    boxes[0, 2] = [0.0, 0.0, 1.0, 1.0]  # beyond num_detections
    scores = np.array([[0.8, 0.55, 0.99, 0.0]], dtype=np.float32)
    classes = np.array([[2, 1, 1, 0]], dtype=np.int64)  # int64, as some exports write them
    num = np.array([2.0], dtype=np.float32)
    meta = {"names": json.dumps(["background", "person", "car"])}
    save(
        constant_model(
            "tiny_tfod",
            [
                ("detection_boxes", boxes),
                ("detection_scores", scores),
                ("detection_classes", classes),
                ("num_detections", num),
            ],
            metadata=meta,
        ),
        "tiny_tfod.onnx",
    )


def tiny_pose() -> None:
    head = np.zeros((1, 56, 21), dtype=np.float32)  # 32x32 input: 16 + 4 + 1 candidates
    meta = {"names": "{0: 'person'}", "imgsz": "[32, 32]", "task": "pose", "kpt_shape": "[17, 3]"}
    save(constant_model("tiny_pose", [("output0", head)], h=32, w=32, metadata=meta), "tiny_pose.onnx")


if __name__ == "__main__":
    weird_outputs()
    tiny_nanodet()
    tiny_yolov8()
    user_yolov8_ultralytics()
    tiny_yolo_e2e()
    tiny_detr()
    tiny_detr_pair()
    tiny_yolox()
    tiny_yolox_decoded()
    tiny_nms()
    tiny_nms_custom()
    tiny_tfod()
    tiny_pose()
