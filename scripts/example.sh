#!/usr/bin/env bash
# The quick start: install prerequisites, build unik and the bundled example unikernel, boot it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --bin unik
(cd tests/guests && CARGO_TARGET_DIR=../../target/guests cargo build --release --target x86_64-unknown-none --bin hello)
set -x
./target/release/unik boot --mem=16 target/guests/x86_64-unknown-none/release/hello "$@"
