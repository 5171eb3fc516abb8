#!/usr/bin/env bash
# Fetches Debian's stock kernel package (the one linux-image-amd64 points at) and unpacks it into
# DIR (default target/stock-kernel): DIR/boot/vmlinuz-* and DIR/lib/modules/*. Idempotent.
# Used by tests/stock_kernel.rs, which runs only on hardware KVM.
set -euo pipefail
dir=${1:-"$(dirname "$0")/../target/stock-kernel"}
mkdir -p "$dir"
cd "$dir"
if ls boot/vmlinuz-* >/dev/null 2>&1; then
    ls "$PWD"/boot/vmlinuz-*
    exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
fi
[ -n "$pkg" ] || { echo "stock-kernel: no linux-image package found" >&2; exit 1; }
apt-get download -qq "$pkg" 2>/dev/null
dpkg-deb -x "$pkg"_*.deb .
rm -f "$pkg"_*.deb
ls "$PWD"/boot/vmlinuz-*
