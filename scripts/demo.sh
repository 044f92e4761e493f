#!/usr/bin/env bash
# README command 1: install what is missing, build in release mode, run the demo.
#   scripts/demo.sh [--fast]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p edge-node
export ORT_DYLIB_PATH="$PWD/third_party/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION:-1.32.0}"
exec target/release/edge-node demo "$@"
