#!/usr/bin/env bash
# Release binaries: unik linked statically against musl, stripped, for x86_64 and aarch64, in
# dist/ with their SHA-256 sums. Each runs on any Linux with KVM, whatever its C library.
#
# Usage: scripts/dist.sh        (dist/unik-x86_64, dist/unik-aarch64, dist/SHA256SUMS)
set -euo pipefail
cd "$(dirname "$0")/.."

installed=$(rustup target list --installed)
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done
# Rust's musl targets bring their own C library and start files; a C toolchain for the target
# only links.
if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu >/dev/null
fi

mkdir -p dist
rm -f dist/unik-* dist/SHA256SUMS
for arch in x86_64 aarch64; do
    target=$arch-unknown-linux-musl
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
        cargo build --release --locked --target "$target" -p unik
    out=dist/unik-$arch
    cp "target/$target/release/unik" "$out"
    if [ "$arch" = x86_64 ]; then strip "$out"; else aarch64-linux-gnu-strip "$out"; fi
    # Static, or it is not a release binary.
    if readelf -d "$out" | grep -q NEEDED; then
        echo "$out needs shared libraries:" >&2
        readelf -d "$out" | grep NEEDED >&2
        exit 1
    fi
done
(cd dist && sha256sum unik-* >SHA256SUMS)
cat dist/SHA256SUMS
