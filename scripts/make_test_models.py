#!/usr/bin/env python3
"""Builds the tiny ONNX fixtures under tests/fixtures/models/ (a few KB each).

They exercise the detector's model handling through real ONNX Runtime
sessions without shipping a real second model:

- weird_outputs.onnx: image in, a [1,3] feature vector out. Fits no
  detector family, so loading it must fail with UnknownFamily.
- tiny_yolov8.onnx: an Ultralytics-layout head [1, 4+2, 84] for a 64x64
  input with Ultralytics-style metadata (names dict string, imgsz, task).
  The output ignores the image (0 * mean(image) + constant) and always holds
  two known candidates, so the letterbox undo and the decode can be checked
  end to end.

Usage: python3 scripts/make_test_models.py   (needs the `onnx` and `numpy` packages)
"""

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


def weird_outputs() -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
    ]
    graph = helper.make_graph(nodes, "weird_outputs", [x], [y])
    save(helper.make_model(graph, opset_imports=OPSET, producer_name="edge-node tests"), "weird_outputs.onnx")


def tiny_yolov8() -> None:
    n = 8 * 8 + 4 * 4 + 2 * 2  # strides 8/16/32 on a 64x64 input
    head = np.zeros((1, 6, n), dtype=np.float32)
    # field f of candidate c lives at [0, f, c]
    head[0, :, 0] = [32, 32, 16, 8, 0.9, 0.1]  # person
    head[0, :, 1] = [10, 40, 4, 4, 0.05, 0.6]  # car
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, n])
    inits = [
        numpy_helper.from_array(head, "head"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["head", "z"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "tiny_yolov8", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="edge-node tests")
    for k, v in {
        "names": "{0: 'person', 1: 'car'}",
        "imgsz": "[64, 64]",
        "stride": "32",
        "task": "detect",
        "description": "edge-node test fixture: constant YOLOv8-layout head",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    save(model, "tiny_yolov8.onnx")


if __name__ == "__main__":
    weird_outputs()
    tiny_yolov8()
