#!/usr/bin/env bash
# Builds unik, the KVM floor and the test guests in release mode, then runs the benchmarks.
# Usage: bash bench/run.sh [RUNS] [OCI_ROUNDS] [VIRTIO_RUNS] [VIRTIO_ROUNDS] [CONTAINERS]
#   (defaults 50, 30, 30, 5, 1000; VIRTIO_RUNS=0 skips the Linux-boot/virtio stage, CONTAINERS=0
#   the density one: that many idle unikernel containers through the OCI path)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p unik -p unik-bench
# The shipped binary (static, fixed address, boot path packed): stages 1 and 5 measure it too.
bash scripts/dist.sh x86_64 >/dev/null
static=$PWD/dist/unik-x86_64
(cd tests/guests && CARGO_TARGET_DIR=../../target/guests cargo build --release --target x86_64-unknown-none --features pc --bin halt --bin hello --bin virtio --bin net)
./target/release/unik-bench "${1:-50}"
echo
echo "The same with the static release binary (dist/unik-x86_64):"
UNIK_BIN=$static ./target/release/unik-bench "${1:-50}"
echo
if command -v perf >/dev/null; then
    bash bench/user-cpu.sh 300 target/guests/x86_64-unknown-none/release/halt target/release/unik "$static"
else
    echo "(no perf: user-mode CPU at start-up not sampled; apt-get install linux-perf)"
fi
echo
./target/release/oci-bench "${2:-30}"
echo
./target/release/ring-bench 5 20000
if [ "${5:-1000}" != 0 ]; then
    echo
    UNIK_BIN=$static ./target/release/density-bench "${5:-1000}"
fi
if [ "${3:-30}" != 0 ]; then
    echo
    ./target/release/virtio-bench "${3:-30}" "${4:-5}"
fi
