#!/usr/bin/env bash
# The whole test suite: unit tests, the unik binary end to end, and the KVM tier.
# Where /dev/kvm is usable the KVM tests are required to run (UNIK_REQUIRE_KVM=1): a KVM test
# that finds no KVM fails instead of skipping. Ends with one line totalling every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
    export UNIK_REQUIRE_KVM=1
    echo "KVM is usable: the KVM tier is required"
else
    echo "no usable /dev/kvm: KVM tests will report 'skipping: no /dev/kvm'"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
not_run=target/test-reports/not-run.txt
rm -f "$not_run"
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# A test that could not run here (it needs what this host lacks, e.g. hardware KVM for a stock
# kernel) returns early and cargo counts it as passed: it is counted as skipped instead, and
# listed with its reason.
skipped=0
[ -f "$not_run" ] && skipped=$(grep -c '^not run:' "$not_run")
if [ -f "$not_run" ]; then cat "$not_run"; fi
awk -v s="$skipped" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "unik: %d passed, %d failed, %d skipped\n", p - s, f, s }' "$log"
exit "$status"
