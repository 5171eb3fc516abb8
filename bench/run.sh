#!/usr/bin/env bash
# Builds unik, the KVM floor and the hello guest in release mode, then runs the benchmark.
# Usage: bash bench/run.sh [RUNS] [OCI_ROUNDS]   (defaults 50 and 30)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p unik -p unik-bench
(cd tests/guests && CARGO_TARGET_DIR=../../target/guests cargo build --release --target x86_64-unknown-none --bin halt)
./target/release/unik-bench "${1:-50}"
echo
./target/release/oci-bench "${2:-30}"
