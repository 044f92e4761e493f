#!/usr/bin/env bash
# README command 1: install what is missing, build in release mode, run the
# demo: edge-node on the bundled clip with its embedded broker, and
# edge-centre on SQLite with the operators' console (scripts/run-demo.sh).
#   scripts/demo.sh [--fast] [--once]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p edge-node -p edge-centre
export ORT_DYLIB_PATH="$PWD/third_party/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION:-1.32.0}"
exec scripts/run-demo.sh "$@"
