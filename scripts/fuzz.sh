#!/usr/bin/env bash
# Short coverage-guided fuzz run of every target in fuzz/ (docs/fuzzing.md).
#
#   scripts/fuzz.sh                     # every target, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh    # longer
#   scripts/fuzz.sh config snapshot     # some targets only
#
# Stable Rust: libFuzzer with `-s none` (no sanitizer; safe Rust panics and
# overflow checks are what is looked for). Prints the executions per target
# and exits non-zero when a target crashed; the reproducer is then in
# fuzz/artifacts/<target>/ (replay: cargo fuzz run -s none <target> <file>).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(config decoders snapshot)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

echo "==> building fuzz targets (instrumented, release)"
cargo fuzz build -s none

log_dir="fuzz/logs"
mkdir -p "$log_dir"
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds+=("fuzz/seeds/$t")
    [ "$t" = config ] && seeds+=("pipelines")
    echo "==> fuzzing $t for ${seconds} s"
    log="$log_dir/$t.log"
    # -malloc_limit_mb: one allocation above 512 MB counts as a crash
    # ("unbounded allocation"); -timeout: one input taking 10 s is a hang.
    set +e
    cargo fuzz run -s none "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    execs=${execs:-0}
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: CRASH after $execs executions (exit $rc), see $log")
        grep -E 'panicked|ERROR: libFuzzer|Test unit written|SUMMARY' "$log" | head -8 || true
    else
        summary+=("$t: $execs executions in ${seconds} s, no crash (corpus $(ls "$corpus" | wc -l) inputs)")
    fi
done

echo
echo "==> fuzz summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
