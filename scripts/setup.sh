#!/usr/bin/env bash
# One-time (and every-time) set-up for building and testing edge-node on
# Debian 12 / Ubuntu 24.04:
#
#   1. installs the missing apt packages (GStreamer dev + plugins, mosquitto,
#      prometheus (tests/metrics.rs scrapes the node with it), postgresql
#      (tests/centre.rs), chromium and chromium-driver (the console's browser
#      tests, tests/common/browser.rs),
#      pkg-config, libssl-dev; python3-venv only when `python3 -m venv` fails),
#   2. checks for cargo and GStreamer >= 1.22,
#   3. fetches libonnxruntime into third_party/onnxruntime (scripts/fetch-onnxruntime.sh),
#      and its OpenVINO build into third_party/onnxruntime-openvino (--flavour openvino),
#   4. prints the ORT_DYLIB_PATH to export.
#
#   scripts/setup.sh                   progress on stderr, one `export` line on stdout
#   eval "$(scripts/setup.sh)"         set up and export ORT_DYLIB_PATH in this shell
#
# Works from any directory. ORT_DEST (default third_party/onnxruntime, relative
# to the repo) and ORT_VERSION may be overridden from the environment.
#
# Idempotent and quick when everything is present: apt is only touched when
# dpkg-query reports a package missing, and the ONNX Runtime fetch is a no-op
# once the library is there. Uses sudo when not run as root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

ORT_VERSION=${ORT_VERSION:-1.32.0}
ORT_DEST=${ORT_DEST:-third_party/onnxruntime}
GST_MIN=1.22

# Everything but the final export line goes to stderr so that stdout can be eval'ed.
say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- 1. apt packages ----------------------------------------------------------
packages=(
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  mosquitto mosquitto-clients prometheus openssl pkg-config libssl-dev
)
# systemd-analyze checks packaging/edge-node.service (tests/health.rs).
packages+=(systemd)
# The centre's PostgreSQL store: tests/centre.rs starts its own cluster
# (initdb in a temporary folder, 127.0.0.1 only).
packages+=(postgresql)
# Headless Chromium driven over WebDriver by the browser tests
# (tests/common/browser.rs: chromedriver on a loopback port). Ubuntu has no
# `chromium`/`chromium-driver` packages: its Chromium comes as a snap, through
# the `chromium-browser` and `chromium-chromedriver` wrapper packages.
if grep -qx 'ID=ubuntu' /etc/os-release 2>/dev/null; then
  packages+=(chromium-browser chromium-chromedriver)
else
  packages+=(chromium chromium-driver)
fi

# A C linker: rustup does not bring one, and build scripts compile C.
command -v cc >/dev/null 2>&1 || packages+=(gcc libc6-dev)

# Python: fetch-onnxruntime.sh needs `python3 -m pip download`; the lint and
# model scripts need `python3 -m venv`. Debian splits both out of python3, a
# pyenv or upstream Python has them built in (then the Debian packages would be
# useless), so probe what works instead of installing blindly. The venv probe
# runs in a throwaway directory.
if ! command -v python3 >/dev/null 2>&1; then
  packages+=(python3 python3-pip python3-venv)
else
  python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
  venv_probe=$(mktemp -d)
  trap 'rm -rf "$venv_probe"' EXIT
  python3 -m venv --without-pip "$venv_probe/v" >/dev/null 2>&1 || packages+=(python3-venv)
fi

# A package counts as present only when dpkg reports it fully installed
# ("install ok installed"); half-configured or removed-with-config is missing.
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  say "installing apt packages: ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    die "not root and no sudo: install as root: apt-get install ${missing[*]}"
  fi
  {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >&2
else
  say "apt packages: all present"
fi

# --- 2. toolchain checks ------------------------------------------------------
command -v cargo >/dev/null 2>&1 \
  || die "cargo not found. Install Rust (>= 1.92) with rustup: https://rustup.rs
       curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   then open a new shell"
say "cargo: $(cargo --version)"

gst=$(pkg-config --modversion gstreamer-1.0 2>/dev/null) \
  || die "pkg-config cannot find gstreamer-1.0 (libgstreamer1.0-dev missing?)"
# sort -V orders versions; GStreamer is new enough when GST_MIN sorts first.
if [[ $(printf '%s\n%s\n' "$GST_MIN" "$gst" | sort -V | head -n1) != "$GST_MIN" ]]; then
  die "GStreamer $gst is too old: edge-node needs >= $GST_MIN (Debian 12, Ubuntu 24.04 or newer)"
fi
say "gstreamer: $gst"

# --- 3. ONNX Runtime ----------------------------------------------------------
ORT_VERSION=$ORT_VERSION scripts/fetch-onnxruntime.sh "$ORT_DEST" >&2
# The OpenVINO build ([detector] provider = "openvino"; tests/providers.rs
# runs the bundled models through it). ORT_OPENVINO=0 skips it (84 MB wheel).
if [[ ${ORT_OPENVINO:-1} != 0 ]]; then
  (unset ORT_VERSION ORT_WHEEL_SHA256; scripts/fetch-onnxruntime.sh --flavour openvino) >&2
fi
scripts/fetch-centerface.sh >&2  # face blurring model -> third_party/models

# --- 4. what to export --------------------------------------------------------
[[ $ORT_DEST == /* ]] || ORT_DEST="$repo/$ORT_DEST"
lib="$ORT_DEST/lib/libonnxruntime.so.$ORT_VERSION"
[[ -f $lib ]] || die "expected $lib after fetching ONNX Runtime"
say "done; ONNX Runtime for the ort crate (load-dynamic):"
printf 'export ORT_DYLIB_PATH=%q\n' "$lib"
