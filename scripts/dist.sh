#!/usr/bin/env bash
# Release binaries: unik linked statically against musl, stripped, for x86_64 and aarch64, in
# dist/ with their SHA-256 sums. Each runs on any Linux with KVM, whatever its C library.
#
# Usage: scripts/dist.sh [ARCH...]   (default x86_64 aarch64: dist/unik-ARCH, dist/SHA256SUMS)
set -euo pipefail
cd "$(dirname "$0")/.."

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 aarch64)
for arch in "${arches[@]}"; do
    case $arch in x86_64 | aarch64) ;; *)
        echo "usage: $0 [x86_64|aarch64]..." >&2
        exit 2
        ;;
    esac
done

installed=$(rustup target list --installed)
for arch in "${arches[@]}"; do
    grep -qx "$arch-unknown-linux-musl" <<<"$installed" || rustup target add "$arch-unknown-linux-musl"
done
# Rust's musl targets bring their own C library and start files; a C toolchain for the target
# only links.
if [[ " ${arches[*]} " == *" aarch64 "* ]] && ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu >/dev/null
fi

mkdir -p dist
rm -f dist/unik-* dist/SHA256SUMS
for arch in "${arches[@]}"; do
    target=$arch-unknown-linux-musl
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
        cargo build --release --locked --target "$target" -p unik
    out=dist/unik-$arch
    cp "target/$target/release/unik" "$out"
    if [ "$arch" = x86_64 ]; then strip "$out"; else aarch64-linux-gnu-strip "$out"; fi
    # Linked at a fixed address (.cargo/config.toml): no self-relocation at every start.
    if ! readelf -h "$out" | grep -q 'Type:[[:space:]]*EXEC'; then
        echo "$out is not a fixed-address executable (ET_EXEC):" >&2
        readelf -h "$out" | grep Type: >&2
        exit 1
    fi
    # The boot path's code packed at the start of .text (build.rs, scripts/boot-order.sh).
    if [ "$arch" = x86_64 ] && ! readelf -SW "$out" | grep -q ' \.text\.boot '; then
        echo "$out has no .text.boot section: scripts/boot-order-x86_64.ld was not linked in" >&2
        exit 1
    fi
    # Static, or it is not a release binary.
    if readelf -d "$out" | grep -q NEEDED; then
        echo "$out needs shared libraries:" >&2
        readelf -d "$out" | grep NEEDED >&2
        exit 1
    fi
done
(cd dist && sha256sum unik-* >SHA256SUMS)
cat dist/SHA256SUMS
