#!/usr/bin/env bash
# Fetch the full-length vtest.avi (PETS 2009 S2.L1 View 001, 795 frames, 768x576, 10 fps) from
# Debian's `opencv-doc` package (apt registry only), verify its sha256, and put it in $DEST.
#
#   scripts/fetch-pets09.sh [DEST]      (default: third_party/pets09/vtest.avi)
#
# Idempotent: does nothing when the file is already there with the right hash.
# The MOTChallenge ground truth is NOT fetched (CC BY-NC-SA, see docs/evaluation.md).
set -euo pipefail

VTEST_SHA256=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
DEST=${1:-third_party/pets09/vtest.avi}
MEMBER=./usr/share/doc/opencv-doc/examples/data/vtest.avi

if [[ -f "$DEST" ]] && echo "$VTEST_SHA256  $DEST" | sha256sum -c --quiet - 2>/dev/null; then
  echo "vtest.avi already in $DEST"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching opencv-doc from the Debian archive (~96 MB)"
(cd "$tmp" && apt-get download opencv-doc)
deb=$(ls "$tmp"/opencv-doc_*.deb)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" "$MEMBER"
echo "$VTEST_SHA256  $tmp/$MEMBER" | sha256sum -c --quiet -
mkdir -p "$(dirname "$DEST")"
mv "$tmp/$MEMBER" "$DEST"
echo "vtest.avi -> $DEST"
