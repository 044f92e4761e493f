#!/usr/bin/env bash
# Alternating A/B runs of criterion bench binaries, for a noisy host.
#
#   scripts/bench_ab.sh ROUNDS FILTER BIN_A BIN_B [BIN_C ...]
#
# Each round runs every binary once on the benches matching FILTER
# (1 s of measurement each) and keeps criterion's middle estimate of the
# first match; the summary gives, per binary, the median over the rounds
# and the range. On a shared VM a minute-scale slow-down hits every binary
# alike, so the medians compare builds where back-to-back criterion runs
# (seconds to minutes apart) do not.
#
# Example (the pre-processing of this build against main's):
#   cargo bench -p edge-node --bench detect --no-run     # prints the binary
#   cp target/release/deps/detect-<hash> /tmp/detect-new
#   (check out main, build the same way, copy to /tmp/detect-main)
#   scripts/bench_ab.sh 10 'preprocess/1080p_to_416_stretch_antialias$' \
#       /tmp/detect-main /tmp/detect-new
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
rounds=$1
filter=$2
shift 2
declare -A times
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        # "time:   [low unit mid unit high unit]": keep mid, in ms.
        t=$("$bin" --bench "$filter" --warm-up-time 0.3 --measurement-time 1 2>&1 |
            awk '/time:/ { v = $4; if ($5 == "µs") v /= 1000; if ($5 == "ns") v /= 1e6; print v; exit }')
        if [ -z "$t" ]; then
            echo "bench_ab: no criterion output from $bin for '$filter'" >&2
            exit 1
        fi
        times[$bin]="${times[$bin]:-} $t"
    done
done
for bin in "$@"; do
    echo "${times[$bin]}" | tr ' ' '\n' | grep . | sort -g | awk -v b="$bin" '
        { a[NR] = $1 }
        END { printf "%s: median %.3f ms (range %.3f-%.3f, %d rounds)\n", b, a[int((NR + 1) / 2)], a[1], a[NR], NR }'
done
