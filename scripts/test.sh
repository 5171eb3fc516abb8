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
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "unik: %d passed, %d failed\n", p, f }' "$log"
# Tests that need what this host lacks (hardware KVM for a stock kernel) say so, with the reason.
[ -f "$not_run" ] && cat "$not_run"
exit "$status"
