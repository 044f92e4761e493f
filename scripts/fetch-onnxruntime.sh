#!/usr/bin/env bash
# Fetch libonnxruntime.so from the PyPI `onnxruntime` wheel (no GitHub, no model hub),
# verify the wheel's sha256, and unpack the library into $DEST/lib.
#
#   scripts/fetch-onnxruntime.sh [DEST]      (default: third_party/onnxruntime)
#
# Idempotent: does nothing when the library is already there.
# ORT_VERSION and ORT_WHEEL_SHA256 may be overridden from the environment.
set -euo pipefail

ORT_VERSION=${ORT_VERSION:-1.32.0}
ORT_WHEEL_SHA256=${ORT_WHEEL_SHA256:-5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d}
DEST=${1:-third_party/onnxruntime}
LIB="$DEST/lib/libonnxruntime.so.$ORT_VERSION"

if [[ -f "$LIB" ]]; then
  echo "onnxruntime $ORT_VERSION already in $DEST/lib"
  exit 0
fi

PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

wheel="onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl"
echo "fetching $wheel from PyPI"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
  "onnxruntime==$ORT_VERSION" -d "$tmp"
echo "$ORT_WHEEL_SHA256  $tmp/$wheel" | sha256sum -c --quiet -

mkdir -p "$DEST/lib"
"$PY" - "$tmp/$wheel" "$DEST/lib" "$ORT_VERSION" <<'PYEOF'
import os, sys, zipfile
wheel, dest, ver = sys.argv[1:4]
members = [f"onnxruntime/capi/libonnxruntime.so.{ver}",
           "onnxruntime/capi/libonnxruntime_providers_shared.so"]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        out = os.path.join(dest, os.path.basename(m))
        tmp = out + ".part"
        with z.open(m) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
PYEOF
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$DEST/lib/libonnxruntime.so.1"
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$DEST/lib/libonnxruntime.so"
echo "onnxruntime $ORT_VERSION installed in $DEST/lib"
