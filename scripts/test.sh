#!/usr/bin/env bash
# The whole test suite: unit tests, the unik binary end to end, and the KVM tier.
# Where /dev/kvm is usable the KVM tests are required to run (UNIK_REQUIRE_KVM=1): a KVM test
# that finds no KVM fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
    export UNIK_REQUIRE_KVM=1
    echo "KVM is usable: the KVM tier is required"
else
    echo "no usable /dev/kvm: KVM tests will report 'skipping: no /dev/kvm'"
fi
cargo test --workspace "$@"
