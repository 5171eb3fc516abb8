#!/usr/bin/env bash
# Fuzzing (docs/fuzzing.md): builds every cargo-fuzz target in fuzz/ with nightly Rust
# (installing cargo-fuzz when it is missing) and runs each for SECONDS (default 20), one
# single-process run at a time, starting from its seed corpus in fuzz/corpus/<target>/ (and with
# fuzz/dict/<target>.dict when there is one). New corpus entries go to a scratch directory, not
# into the repository; a crashing input is kept in fuzz/artifacts/<target>/. Fails if any target
# crashes, leaks or times out.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
if [ $# -gt 0 ]; then shift; fi
case $seconds in '' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/corpus/$t"
    log=$work/$t.log
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="$PWD/fuzz/dict/$t.dict")
    # -timeout: one input running that long is a hang, reported like a crash.
    if cargo +nightly fuzz run "$t" "$work/$t" "$PWD/fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
        passed=$((passed + 1))
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "ok    $t: ${runs:-?} executions in ${seconds}s"
    else
        failed=$((failed + 1))
        echo "FAIL  $t:"
        grep -E 'ERROR|panicked|SUMMARY|Test unit written|^Failing input' "$log" | head -20 | sed 's/^/      /' || tail -20 "$log"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
