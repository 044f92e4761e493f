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
# Without the embedded broker: code only that feature uses must be cfg'd out.
# clippy (a check build) sees every rustc warning too. -D warnings after `--`
# reaches only this workspace's crates (RUSTFLAGS would rebuild every
# dependency); dependencies whose features change without rumqttd (tokio and
# the like) are checked once more, about 2 min on 2 cores, then cached.
step "cargo clippy --no-default-features (no embedded broker, -D warnings)"
cargo clippy --release --locked --workspace --all-targets --no-default-features -- -D warnings
# RUSTDOCFLAGS only reaches rustdoc; --release shares the dependencies'
# metadata with clippy's.
step "cargo doc (no broken intra-doc links, -D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --release --locked --workspace --no-deps
# Licences and bans (deny.toml). Not advisories: the RustSec database is
# on GitHub, which CI cannot reach. cargo-deny has no optional features to
# leave out; its own release profile (fat LTO, one codegen unit) is what
# makes a cold install slow, so it is installed without that.
if ! cargo deny --version >/dev/null 2>&1; then
  step "installing cargo-deny (once)"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked cargo-deny --version "~0.20"
fi
step "cargo deny (licences, bans, sources)"
cargo deny --locked check --hide-inclusion-graph licenses bans sources
step "cargo test (release: unit, parity, configs, end to end, RTSP, bad input, demo, browser, compose)"
cargo test --release --locked --workspace --all-targets
step "Dockerfile and Dockerfile.centre lint (hadolint)"
scripts/lint-docker.sh
step "all checks passed"
