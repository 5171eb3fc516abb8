#!/bin/sh
# /init of the emulated arm64 KVM host that scripts/test-aarch64.sh boots (busybox sh, PID 1).
# Mounts what the tests need, loads the network modules, waits for /dev/kvm, runs every test
# binary named in /unik/tests (one "NAME PATH" a line) from the repository's path, and powers off.
# Each binary's libtest output goes to the console between marker lines the host script reads:
#   unik-arm64: run NAME      unik-arm64: NAME exited STATUS      unik-arm64: done
# pivot_root(2), which unik's jail and runc use, refuses the initramfs as the old root: first
# move everything onto a tmpfs and make that the root.
if [ ! -e /.on-tmpfs ]; then
    /bin/busybox mkdir -p /newroot
    /bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
    for entry in /*; do
        [ "$entry" = /newroot ] || /bin/busybox cp -a "$entry" /newroot/
    done
    /bin/busybox touch /newroot/.on-tmpfs
    exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# Kernel messages (a tap going up, a seccomp kill the tests provoke) would interleave with the
# tests' output on the one console.
echo 1 >/proc/sys/kernel/printk

say() { echo "unik-arm64: $*"; }
halt_host() {
    sync
    poweroff -f
}

. /unik/env

for module in /unik/modules/*.ko; do
    [ -e "$module" ] || continue
    insmod "$module" || say "insmod $module failed"
done
ip link set lo up
hostname unik-arm64

# KVM initialises a little after userspace starts.
waited=0
while [ ! -c /dev/kvm ]; do
    if [ "$waited" -ge 120 ]; then
        say "no /dev/kvm after ${waited}s"
        halt_host
    fi
    sleep 1
    waited=$((waited + 1))
done
say "kvm ready after ${waited}s, uptime $(cut -d' ' -f1 /proc/uptime)s"

cd "$UNIK_REPO" || {
    say "no $UNIK_REPO"
    halt_host
}
export UNIK_REQUIRE_KVM=1 UNIK_BIN UNIK_TEST_GUESTS RUST_BACKTRACE=1 HOME=/root TMPDIR=/tmp
while read -r name path; do
    say "run $name"
    # shellcheck disable=SC2086 # a filter and options, split as words
    "$path" $UNIK_TEST_ARGS
    say "$name exited $?"
done </unik/tests
# Boot figures (not a test): the mean wall time of 20 `unik boot --mem=8` runs of the hello and
# halt guests, after one warm-up (busybox's clocks here tick in centiseconds: /proc/uptime).
centiseconds() { tr -d . </proc/uptime | cut -d' ' -f1; }
boot_ms() {
    "$UNIK_BIN" boot --mem=8 "$UNIK_TEST_GUESTS/$1" >/dev/null 2>&1
    start=$(centiseconds)
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        "$UNIK_BIN" boot --mem=8 "$UNIK_TEST_GUESTS/$1" >/dev/null 2>&1
    done
    echo "$((($(centiseconds) - start) * 10 / 20))"
}
if [ -x "$UNIK_TEST_GUESTS/hello" ] && [ -x "$UNIK_TEST_GUESTS/halt" ]; then
    say "boot figures: unik boot hello $(boot_ms hello) ms, halt $(boot_ms halt) ms (mean of 20)"
fi
if [ -s "$UNIK_REPO/target/test-reports/not-run.txt" ]; then
    cat "$UNIK_REPO/target/test-reports/not-run.txt"
fi
say done
halt_host
