#!/usr/bin/env bash
# Resource soak (docs/soak.md): the node on three looped files at maximum
# rate, RSS and open fds sampled, flat after warm-up or it fails.
#   scripts/soak.sh            30 minutes
#   scripts/soak.sh 600        10 minutes
# Samples: target/soak.csv; summary: target/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/third_party/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION:-1.32.0}}"
exec cargo bench -p edge-node --bench soak -- --duration-s "${1:-1800}"
