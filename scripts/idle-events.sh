#!/usr/bin/env bash
# Events with and without keyframe-only decoding while idle
# (`idle_decode`), on the bundled clips and on a clip with quiet spells.
#
#   scripts/idle-events.sh [edge-node binary]
#
# Each clip is played at its own rate (realtime = true, as a live camera
# would send it; played as fast as possible the decoder would run far ahead
# of the analytics while idle, and wake up late) twice: idle_decode = "full" and "keyframes" with
# idle_after_s = 1 (the shortest allowed: the most time spent idle). The
# bundled clips are re-encoded with one keyframe every 20 frames (2 s at
# 10 fps, x264enc) first, as a camera would send them. "quiet" is 6 s of an
# empty grey picture, the vtest clip, 6 s grey again and the vtest clip
# again. Prints the node's summary line (events = new + update + end
# messages), the new events and the idle spells per run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$repo/target/release/edge-node}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fx=$repo/tests/fixtures
enc="x264enc key-int-max=20 bframes=0 speed-preset=faster bitrate=1500 ! h264parse ! mp4mux"
gst-launch-1.0 -q filesrc location=$fx/vtest_10s_h264.mp4 ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! \
  video/x-raw,format=I420 ! $enc ! filesink location=$work/vtest.mp4
gst-launch-1.0 -q filesrc location=$fx/market_street_10s_h264.mp4 ! qtdemux ! h264parse ! avdec_h264 ! videorate ! \
  video/x-raw,framerate=10/1 ! videoconvert ! video/x-raw,format=I420 ! $enc ! filesink location=$work/market.mp4
grey="videotestsrc pattern=solid-color foreground-color=0xff808080 num-buffers=60 ! video/x-raw,width=768,height=576,framerate=10/1,format=I420"
vt="filesrc location=$fx/vtest_10s_h264.mp4 ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420"
gst-launch-1.0 -q concat name=c ! videoconvert ! video/x-raw,format=I420 ! $enc ! filesink location=$work/quiet.mp4 \
  $grey ! c. $vt ! c. $grey ! c. $vt ! c.
for clip in vtest market quiet; do
  for mode in full keyframes; do
    cat > $work/$clip-$mode.toml <<TOML
[node]
id = "idle-bench"
district = "bench"
state_dir = "$work/state-$clip-$mode"
[mqtt]
url = "embedded"
topic_prefix = "bench"
[[cameras]]
id = "$clip"
url = "$work/$clip.mp4"
realtime = true
idle_decode = "$mode"
idle_after_s = 1
TOML
    log=$work/$clip-$mode.log
    RUST_LOG=info /usr/bin/time -f "%U %S" -o $work/cpu "$bin" run $work/$clip-$mode.toml > $log 2>&1 || true
    cpu=$(awk '{printf "%.1f", $1+$2}' $work/cpu)
    summary=$(grep -o 'wall .*' $log | tail -1 || true)
    new=$(grep -c 'kind=New' $log || true)
    spells=$(grep -o 'spells=[0-9]*' $log | tail -1 || true)
    skipped=$(grep -o 'skipped=[0-9]*' $log | tail -1 || true)
    echo "$clip $mode: new events $new; node CPU ${cpu} s; ${spells:-spells=0} ${skipped:-}; $summary"
  done
done
