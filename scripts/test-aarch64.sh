#!/usr/bin/env bash
# The arm64 tests without arm64 hardware: builds the static aarch64 unik, the aarch64 unit-test
# and integration-test binaries and the test guests for aarch64-unknown-none, then boots an
# emulated arm64 KVM host (qemu TCG emulating EL2, Debian's stock arm64 kernel, KVM in VHE mode)
# with them in an initramfs, where scripts/arm64/init.sh runs every binary with
# UNIK_REQUIRE_KVM=1. Prints each test's result, then "arm64: N passed, N failed, N skipped";
# fails when a test fails, a test binary dies, or the host does not boot or times out.
#
# Usage: scripts/test-aarch64.sh [BINARY...]
#   BINARY: run only these test binaries, e.g. unit-vmm integration-boot (default: all).
#   Downloads are cached in target/arm64-host/; UNIK_ARM64_TIMEOUT (seconds, default 1500) bounds
#   the emulated host's run, UNIK_ARM64_MEM (MiB, default 2048) its memory; UNIK_ARM64_TEST_ARGS are passed to every test binary (a test name
#   filter, --nocapture).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cache=target/arm64-host
stage=$cache/initramfs
timeout_secs=${UNIK_ARM64_TIMEOUT:-1500}
musl=aarch64-unknown-linux-musl
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc

# Debian arm64 packages: the kernel (its KVM is built in), busybox for /init and the shell
# tools, iproute2 with the libraries its ip(8) links (network namespaces and taps), and runc
# (unik hands it the containers that are no unikernels).
debs=(linux-image-cloud-arm64 busybox-static iproute2 libbpf1 libelf1 zlib1g libmnl0 libbsd0 libmd0 libcap2 libc6
    runc libseccomp2)
# Network modules: taps, veth pairs, the tc ingress + u32 + mirred splice of container networking.
modules=(tun veth sch_ingress cls_u32 act_mirred)
# Integration tests that cannot run in the emulated host, and why.
declare -A not_here=(
    [docker]="needs dockerd"
    [containerd]="needs containerd"
    [cri]="needs containerd"
    [ci_doc]="runs docs/ci.md's job, an x86_64 GitHub runner's (unik-x86_64, bash)"
    [stock_kernel]="boots a stock x86_64 Linux kernel"
)

install_prerequisites() {
    local need=()
    command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
    command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
    [ -e /usr/aarch64-linux-gnu/include/stdio.h ] || need+=(libc6-dev-arm64-cross)
    command -v cpio >/dev/null || need+=(cpio)
    command -v readelf >/dev/null || need+=(binutils)
    if [ "${#need[@]}" -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    local installed target
    installed=$(rustup target list --installed)
    for target in $musl aarch64-unknown-linux-gnu aarch64-unknown-none; do
        grep -qx "$target" <<<"$installed" || rustup target add "$target"
    done
}

# Downloads the Debian arm64 packages once and unpacks them into $cache/root.
fetch_packages() {
    local stamp="$cache/root/.packages" want
    want="${debs[*]}"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
        apt-get update -qq
    fi
    rm -rf "$cache/debs" "$cache/root"
    mkdir -p "$cache/debs" "$cache/root"
    local pkgs=() pkg kernel
    for pkg in "${debs[@]}"; do pkgs+=("$pkg:arm64"); done
    # The metapackage names the versioned kernel package; download that one.
    kernel=$(apt-cache depends linux-image-cloud-arm64:arm64 | awk '/Depends: linux-image-/ { print $2; exit }')
    pkgs=("${pkgs[@]/linux-image-cloud-arm64:arm64/$kernel}")
    (cd "$cache/debs" && apt-get download -qq "${pkgs[@]}" 2>&1 | grep -v 'unsandboxed' || true)
    for pkg in "$cache"/debs/*.deb; do dpkg-deb -x "$pkg" "$cache/root"; done
    echo "$want" >"$stamp"
}

# Builds the release unik (static, musl: what scripts/dist.sh ships) and every test binary of the
# workspace for aarch64; writes "kind name path" lines to $cache/binaries.
build_binaries() {
    cargo build --release --locked --target $musl -p unik
    cargo test --workspace --exclude unik-bench --locked --no-run --target $musl --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        kind = "integration" if m["target"]["kind"] == ["test"] else "unit"
        print(kind, m["target"]["name"], m["executable"])
' >"$cache/binaries"
}

# Builds the test unikernels for aarch64-unknown-none: target/guests-aarch64, and hello as the
# target's default static-pie (which hvt must refuse) in target/guests-pie-aarch64; the layout
# UNIK_TEST_GUESTS names (tests/common/guests.rs).
build_guests() {
    (
        cd tests/guests
        unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
        CARGO_TARGET_DIR="$repo/target/guests-aarch64" cargo build --release --quiet --target aarch64-unknown-none
        # An explicit RUSTFLAGS replaces the config's relocation-model=static; unlike
        # x86_64-unknown-none, aarch64-unknown-none links position-independent code as ET_EXEC
        # unless the linker is asked for a PIE.
        CARGO_TARGET_DIR="$repo/target/guests-pie-aarch64" RUSTFLAGS="-C relocation-model=pie -C link-arg=-pie" \
            cargo build --release --quiet --target aarch64-unknown-none --bin hello
        # The gdb tests' guest, with its symbols.
        CARGO_TARGET_DIR="$repo/target/guests-debug-aarch64" CARGO_PROFILE_RELEASE_DEBUG=full \
            cargo build --release --quiet --target aarch64-unknown-none --bin debugee
    )
}

# Copies ELF $1 from the unpacked packages to the same path in the initramfs, with every shared
# library it needs (recursively) and the dynamic loader.
install_elf() {
    local path=$1 lib found dir
    [ -e "$stage$path" ] && return
    mkdir -p "$stage$(dirname "$path")"
    cp -L "$cache/root$path" "$stage$path"
    for lib in $(readelf -d "$cache/root$path" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        found=
        for dir in /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu; do
            if [ -e "$cache/root$dir/$lib" ]; then
                install_elf "$dir/$lib"
                found=1
                break
            fi
        done
        [ -n "$found" ] || { echo "$path needs $lib, which no downloaded package has" >&2; exit 1; }
    done
}

# The initramfs: busybox, ip(8), the modules, /init, unik, the guests, the test binaries (at the
# repository's own path, so tests that read the tree or write target/test-reports find it), and
# /unik/tests listing what /init runs.
make_initramfs() {
    local kernel_version kind name path module only=" $* "
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,lib,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,unik/modules,etc}
    cp "$cache/root/bin/busybox" "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    install_elf /bin/ip
    install_elf /usr/sbin/runc
    cp -L "$cache/root/lib/ld-linux-aarch64.so.1" "$stage/lib/"
    kernel_version=$(basename "$(ls -d "$cache"/root/lib/modules/*)")
    for module in "${modules[@]}"; do
        find "$cache/root/lib/modules/$kernel_version" -name "$module.ko" -exec cp {} "$stage/unik/modules/" \;
        [ -e "$stage/unik/modules/$module.ko" ] || { echo "no module $module in $kernel_version" >&2; exit 1; }
    done
    cp scripts/arm64/init.sh "$stage/init"
    mknod -m 600 "$stage/dev/console" c 5 1
    echo "root:x:0:0:root:/root:/bin/sh" >"$stage/etc/passwd"
    echo "root:x:0:" >"$stage/etc/group"

    mkdir -p "$stage$repo/docs" "$stage$repo/target/arm64"
    cp docs/SECURITY.md "$stage$repo/docs/"
    aarch64-linux-gnu-strip -o "$stage$repo/target/arm64/unik" "target/$musl/release/unik"
    mkdir -p "$stage$repo/target/arm64/guests/pie"
    find target/guests-aarch64/aarch64-unknown-none/release -maxdepth 1 -type f -perm -u+x \
        -exec cp {} "$stage$repo/target/arm64/guests/" \;
    cp target/guests-pie-aarch64/aarch64-unknown-none/release/hello "$stage$repo/target/arm64/guests/pie/"
    mkdir -p "$stage$repo/target/arm64/guests/debug"
    cp target/guests-debug-aarch64/aarch64-unknown-none/release/debugee "$stage$repo/target/arm64/guests/debug/"
    cat >"$stage/unik/env" <<EOF
UNIK_REPO=$repo
UNIK_BIN=$repo/target/arm64/unik
UNIK_TEST_GUESTS=$repo/target/arm64/guests
UNIK_TEST_ARGS='${UNIK_ARM64_TEST_ARGS:-}'
EOF
    : >"$stage/unik/tests"
    # Unit tests first, then the integration tests, each group in name order.
    while read -r kind name path; do
        [ "$only" = "  " ] || [[ "$only" == *" $kind-$name "* ]] || continue
        if [ "$kind" = integration ] && [ -n "${not_here[$name]:-}" ]; then
            echo "not run: tests/$name.rs: ${not_here[$name]}" >>"$cache/not-here"
            continue
        fi
        aarch64-linux-gnu-strip -o "$stage$repo/target/arm64/$kind-$name" "$path"
        echo "$kind-$name $repo/target/arm64/$kind-$name" >>"$stage/unik/tests"
    done < <(sort -k1,1r -k2,2 "$cache/binaries")
    (cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) >"$cache/initramfs.cpio"
}

# Boots the emulated host; its console goes to stdout and $cache/console.log.
boot_host() {
    local vmlinuz
    vmlinuz=$(ls "$cache"/root/boot/vmlinuz-*)
    timeout -k 10 "$timeout_secs" qemu-system-aarch64 \
        -M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m "${UNIK_ARM64_MEM:-2048}" \
        -nographic -no-reboot -nic none \
        -kernel "$vmlinuz" -initrd "$cache/initramfs.cpio" \
        -append 'console=ttyAMA0 quiet loglevel=1 panic=-1' </dev/null | tee "$cache/console.log"
}

# Totals the console log: libtest's per-binary results, binaries that died without one, the
# markers /init prints.
summarize() {
    local log=$cache/console.log
    tr -d '\r' <"$log" >"$log.txt"
    [ -f "$cache/not-here" ] && cat "$cache/not-here"
    awk -v host_skipped="$(cat "$cache/not-here" 2>/dev/null | wc -l)" '
        /^unik-arm64: run / { current = $3; result = 0 }
        /^test result:/ { result = 1
            for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
        /^unik-arm64: .* exited / { if ($4 != 0 && !result) { f++; print "arm64: " $2 " died (status " $4 ") before its summary" } }
        /^not run:/ { s++ }
        /^unik-arm64: done/ { done = 1 }
        END {
            if (!done) { f++; print "arm64: the emulated host did not finish (boot failure, no /dev/kvm or timeout)" }
            printf "arm64: %d passed, %d failed, %d skipped\n", p - s, f, s + host_skipped
            exit f != 0
        }' "$log.txt"
}

main() {
    install_prerequisites
    mkdir -p "$cache"
    rm -f "$cache/not-here" "$cache/console.log"
    fetch_packages
    build_binaries
    build_guests
    make_initramfs "$@"
    echo "== booting the emulated arm64 KVM host ($(du -h "$cache/initramfs.cpio" | cut -f1) initramfs)"
    boot_host || true
    summarize
}

main "$@"
