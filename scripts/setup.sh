#!/usr/bin/env bash
# Installs what unik needs to build and test on a Debian 12 machine with KVM: Debian packages for
# the network, containerd, CRI and docker tests, ACPICA's iasl (checks the ACPI tables), gdb (the
# debugging tests), the bare-metal Rust targets the test unikernels are built for, and the CRI
# test client's Python environment (grpcio-tools from PyPI, in target/cri-venv).
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
command -v gdb >/dev/null || need_pkgs+=(gdb)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need_pkgs+=(containernetworking-plugins)
command -v python3 >/dev/null || need_pkgs+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

installed=$(rustup target list --installed)
for target in x86_64-unknown-none aarch64-unknown-none aarch64-unknown-linux-gnu; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

# tests/cri.rs drives containerd's CRI plugin with tests/cri/cri.py, a gRPC client whose stubs
# grpcio-tools generates from the CRI's proto at test time.
venv=${CARGO_TARGET_DIR:-target}/cri-venv
if ! cmp -s tests/cri/requirements.txt "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r tests/cri/requirements.txt
    cp tests/cri/requirements.txt "$venv/requirements.txt"
fi
