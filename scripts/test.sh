#!/usr/bin/env bash
# README command 2: the same set-up, then every check and the whole test suite.
# Tests start their own mosquitto and RTSP server on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ORT_DYLIB_PATH="$PWD/third_party/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION:-1.32.0}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (release profile, all targets, -D warnings)"
cargo clippy --release --locked --workspace --all-targets -- -D warnings
step "cargo test (release: unit, parity, configs, end to end, RTSP, bad input, demo)"
cargo test --release --locked --workspace --all-targets
step "Dockerfile lint (hadolint)"
scripts/lint-docker.sh
step "all checks passed"
