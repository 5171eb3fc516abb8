#!/usr/bin/env bash
# Installs what unik needs to build and test on a Debian 12 machine with KVM: Debian packages for
# the network, containerd and docker tests, ACPICA's iasl (checks the ACPI tables), and the
# bare-metal Rust target the test unikernels are built for.
# Idempotent.
set -euo pipefail

need_pkgs=()
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v readelf >/dev/null || need_pkgs+=(binutils)
command -v containerd >/dev/null || need_pkgs+=(containerd)
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v runc >/dev/null || need_pkgs+=(runc)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v iasl >/dev/null || need_pkgs+=(acpica-tools)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

installed=$(rustup target list --installed)
for target in x86_64-unknown-none aarch64-unknown-none aarch64-unknown-linux-gnu; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done
