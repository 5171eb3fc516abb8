#!/usr/bin/env bash
# User-mode CPU time of `unik boot` at start-up, by sampling: this kernel splits CPU time between
# user and system by timer tick (4 ms), far coarser than a boot, so rusage cannot say. perf's
# cpu-clock event samples each task every PERIOD ns of its CPU time (a software event: works
# without hardware counters, as in this microVM); a sample's address says the mode it was in.
# user ms per boot = user samples × PERIOD ÷ runs; the same for the kernel (KVM_RUN, and with it
# the guest's own emulated instructions, count as kernel time).
#
# Usage: bench/user-cpu.sh RUNS GUEST BINARY...   (needs perf; run by bench/run.sh)
set -euo pipefail
runs=$1 guest=$2
shift 2
period=100000
data=$(mktemp)
trap 'rm -f "$data"' EXIT
echo "User-mode and kernel-mode CPU per \`boot --mem=512 $(basename "$guest")\`, sampled every $((period / 1000)) µs of CPU time (perf cpu-clock), $runs runs each:"
echo
echo "| binary | user ms per boot | kernel ms per boot | samples |"
echo "|---|---|---|---|"
for bin in "$@"; do
    perf record -q -o "$data" -e cpu-clock -c "$period" -- \
        sh -c 'for _ in $(seq "$1"); do "$2" boot --mem=512 "$3" >/dev/null; done' sh "$runs" "$bin" "$guest" >/dev/null 2>&1
    comm=$(basename "$bin" | cut -c1-15)
    perf script -i "$data" -F comm,ip 2>/dev/null | python3 -c '
import sys
comm, runs, period, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
user = kernel = 0
for line in sys.stdin:
    f = line.split()
    if len(f) < 2 or f[0] != comm:
        continue
    if int(f[-1], 16) >= 0xffff800000000000:
        kernel += 1
    else:
        user += 1
ms = lambda n: n * period / 1e6 / runs
print(f"| {name} | {ms(user):.3f} | {ms(kernel):.3f} | {user + kernel} |")
' "$comm" "$runs" "$period" "$bin"
done
