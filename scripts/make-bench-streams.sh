#!/usr/bin/env bash
# Make camera-like benchmark streams from the bundled footage (PETS09 vtest.avi, fetched from
# Debian by scripts/fetch-pets09.sh), so capacity figures are measured on what street cameras send
# rather than on the 0.55 Mbit/s 768x576 10 fps test clip.
#
#   scripts/make-bench-streams.sh [SECONDS] [DEST]   (defaults: 30, third_party/bench-streams)
#
# Writes (every file with the same presentation timestamps, frame k at k/25 s):
#   main_1080p25_h264.mp4  1920x1080, 25 fps, H.264 Main, 4 Mbit/s CBR, GOP 50 (2 s), no B-frames
#   sub_360p25_h264.mp4     640x360,  25 fps, H.264 Main, 0.5 Mbit/s CBR, GOP 50 (the sub-stream)
#   main_1080p25_h265.mp4  1920x1080, 25 fps, H.265 Main, 2 Mbit/s, GOP 50 (same quality class)
#   sub_360p25_h265.mp4     640x360,  25 fps, H.265 Main, 0.25 Mbit/s, GOP 50
#
# How the footage becomes camera-like:
# - the 4:3 768x576 picture is cropped to 16:9 (768x432, centre) and scaled to 1920x1080;
# - 10 fps becomes 25 fps by repeating frames (videorate), and a faint moving sensor noise
#   (videotestsrc snow, 6 % opacity) is blended over every frame, so no frame is an exact repeat:
#   an encoder spends its bit budget on every frame as it does on a real sensor, and the decoder
#   does real work on every frame (repeated frames would decode as nearly free skips).
# The encoders are x264/x265 through GStreamer (gstreamer1.0-plugins-ugly / -bad); they only make
# test media here, nothing of them ships. Idempotent: skips when all four files exist.
set -euo pipefail

SECONDS_LONG=${1:-30}
DEST=${2:-third_party/bench-streams}
SRC=${VTEST:-third_party/pets09/vtest.avi}

files=(main_1080p25_h264.mp4 sub_360p25_h264.mp4 main_1080p25_h265.mp4 sub_360p25_h265.mp4)
all=1
for f in "${files[@]}"; do [[ -s "$DEST/$f" ]] || all=0; done
if [[ $all == 1 ]]; then
  echo "bench streams already in $DEST"
  exit 0
fi
if [[ ! -f "$SRC" ]]; then
  scripts/fetch-pets09.sh "$SRC"
fi
for e in x264enc x265enc avdec_msmpeg4 compositor videotestsrc h265parse qtmux; do
  gst-inspect-1.0 "$e" >/dev/null 2>&1 || {
    echo "missing GStreamer element $e (apt: gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav)" >&2
    exit 1
  }
done
mkdir -p "$DEST"
frames=$((SECONDS_LONG * 25))
tmp=$(mktemp -d "$DEST/.tmp.XXXX")
trap 'rm -rf "$tmp"' EXIT

echo "encoding ${SECONDS_LONG} s of camera-like streams into $DEST (a few minutes on 2 cores)"
# One run per file, each from the same deterministic source branch, so all four carry identical
# presentation timestamps (frame k at k/25 s). identity eos-after bounds the length.
encode() { # OUT WIDTH HEIGHT ENCODER...
  local out=$1 w=$2 h=$3
  shift 3
  gst-launch-1.0 -q \
    compositor name=mix background=black sink_1::alpha=0.06 \
    ! video/x-raw,width=1920,height=1080,framerate=25/1 ! identity eos-after="$frames" \
    ! videoscale ! video/x-raw,width="$w",height="$h" ! videoconvert ! video/x-raw,format=I420 \
    ! "$@" ! qtmux ! filesink location="$tmp/$out" \
    filesrc location="$SRC" ! decodebin ! videoconvert \
    ! videocrop top=72 bottom=72 ! videoscale ! video/x-raw,width=1920,height=1080,pixel-aspect-ratio=1/1 \
    ! videorate ! video/x-raw,framerate=25/1 ! queue ! mix.sink_0 \
    videotestsrc pattern=snow ! video/x-raw,width=1920,height=1080,framerate=25/1,format=AYUV \
    ! queue ! mix.sink_1
}
# Camera encoders have no look-ahead and no B-frames: tune=zerolatency / bframes=0.
x264() { # KBIT/S
  echo x264enc bitrate="$1" pass=cbr vbv-buf-capacity=1000 key-int-max=50 bframes=0 \
    speed-preset=veryfast tune=zerolatency ! video/x-h264,profile=main ! h264parse
}
x265() { # KBIT/S
  echo x265enc bitrate="$1" key-int-max=50 speed-preset=ultrafast tune=zerolatency \
    option-string=bframes=0 ! h265parse
}
# shellcheck disable=SC2046  # the encoder strings are split into gst-launch arguments on purpose
{
  encode main_1080p25_h264.mp4 1920 1080 $(x264 4000)
  encode sub_360p25_h264.mp4 640 360 $(x264 500)
  encode main_1080p25_h265.mp4 1920 1080 $(x265 2000)
  encode sub_360p25_h265.mp4 640 360 $(x265 250)
}

for f in "${files[@]}"; do
  mv "$tmp/$f" "$DEST/$f"
  printf '%-24s %10d bytes\n' "$f" "$(stat -c %s "$DEST/$f")"
done
