#!/usr/bin/env bash
# Fetch libonnxruntime.so from a PyPI ONNX Runtime wheel (no GitHub, no model hub),
# verify the wheel's sha256, and unpack the libraries into $DEST/lib.
#
#   scripts/fetch-onnxruntime.sh [--flavour cpu|openvino|gpu] [DEST]
#
#   flavour   wheel                        default DEST                       `[detector] provider`
#   cpu       onnxruntime 1.32.0           third_party/onnxruntime            cpu (the default)
#   openvino  onnxruntime-openvino 1.24.1  third_party/onnxruntime-openvino   openvino
#   gpu       onnxruntime-gpu 1.31.1       third_party/onnxruntime-gpu        cuda, tensorrt
#
# The openvino flavour keeps everything the OpenVINO provider loads next to
# libonnxruntime (libonnxruntime_providers_openvino.so, libopenvino*, its CPU,
# GPU and NPU plugins, TBB); every library there finds the others through
# RUNPATH $ORIGIN, so no LD_LIBRARY_PATH is needed. The gpu flavour (about
# 250 MB, not fetched by scripts/setup.sh) holds the CUDA and TensorRT
# providers but not CUDA, cuDNN or TensorRT themselves: install those on the
# GPU machine (CUDA 12, cuDNN 9, TensorRT 10) so the loader finds them.
#
# Idempotent: does nothing when the library is already there.
# ORT_VERSION and ORT_WHEEL_SHA256 override the flavour's version and hash.
set -euo pipefail

FLAVOUR=cpu
if [[ ${1:-} == --flavour ]]; then
  FLAVOUR=${2:?--flavour needs cpu, openvino or gpu}
  shift 2
elif [[ ${1:-} == --flavour=* ]]; then
  FLAVOUR=${1#--flavour=}
  shift
fi

case $FLAVOUR in
  cpu)
    PACKAGE=onnxruntime
    DEF_VERSION=1.32.0
    DEF_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
    DEF_DEST=third_party/onnxruntime
    ;;
  openvino)
    PACKAGE=onnxruntime-openvino
    DEF_VERSION=1.24.1
    DEF_SHA256=3007c803634cc69c6d52af1dea7ce729d9bb62b9a11070fd2f959119199007a8
    DEF_DEST=third_party/onnxruntime-openvino
    ;;
  gpu)
    PACKAGE=onnxruntime-gpu
    DEF_VERSION=1.31.1
    DEF_SHA256=e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6
    DEF_DEST=third_party/onnxruntime-gpu
    ;;
  *)
    echo "unknown flavour '$FLAVOUR'; use cpu, openvino or gpu" >&2
    exit 2
    ;;
esac

ORT_VERSION=${ORT_VERSION:-$DEF_VERSION}
ORT_WHEEL_SHA256=${ORT_WHEEL_SHA256:-$DEF_SHA256}
DEST=${1:-$DEF_DEST}
LIB="$DEST/lib/libonnxruntime.so.$ORT_VERSION"

if [[ -f "$LIB" ]]; then
  echo "$PACKAGE $ORT_VERSION already in $DEST/lib"
  exit 0
fi

PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetching $PACKAGE $ORT_VERSION (cp311, manylinux x86_64) from PyPI"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
  "$PACKAGE==$ORT_VERSION" -d "$tmp"
wheels=("$tmp"/*.whl)
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "expected one wheel in $tmp" >&2; exit 1; }
wheel=${wheels[0]}
echo "$ORT_WHEEL_SHA256  $wheel" | sha256sum -c --quiet -

mkdir -p "$DEST/lib"
"$PY" - "$wheel" "$DEST/lib" "$ORT_VERSION" <<'PYEOF'
import os, sys, zipfile, zlib
wheel, dest, ver = sys.argv[1:4]
prefix = "onnxruntime/capi/"
main = f"libonnxruntime.so.{ver}"
# Every shared library of the wheel but the Python binding and OpenVINO's C
# API; wheels carry copies, not links, of libfoo.so / .so.N / .so.X.Y.Z:
# one file per content, the other names as links to it.
with zipfile.ZipFile(wheel) as z:
    infos = [i for i in z.infolist()
             if i.filename.startswith(prefix) and ".so" in i.filename
             and "/" not in i.filename[len(prefix):]
             and "pybind11" not in i.filename and "libopenvino_c." not in i.filename]
    names = {os.path.basename(i.filename) for i in infos}
    if main not in names:
        sys.exit(f"{main} not in {wheel}")
    groups = {}
    for i in infos:
        groups.setdefault((i.file_size, i.CRC), []).append(i)
    for group in groups.values():
        group.sort(key=lambda i: (-len(i.filename), i.filename))
        real = group[0]
        out = os.path.join(dest, os.path.basename(real.filename))
        tmp = out + ".part"
        with z.open(real) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
        for other in group[1:]:
            link = os.path.join(dest, os.path.basename(other.filename))
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.basename(real.filename), link)
PYEOF
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$DEST/lib/libonnxruntime.so.1"
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$DEST/lib/libonnxruntime.so"
echo "$PACKAGE $ORT_VERSION installed in $DEST/lib"
