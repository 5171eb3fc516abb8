#!/usr/bin/env bash
# On demand (not CI: it takes minutes): boots Debian's stock arm64 kernel *as a unik guest* inside
# an emulated arm64 KVM host (qemu-system-aarch64, TCG emulating EL2, the same Debian kernel as
# the host). The guest's initramfs loads the virtio modules, mounts a virtio-blk ext4 disk, checks
# a file's SHA-256 against the one on its command line, pings the host's tap over virtio-net and
# ends the VM through unik's debug-exit register (status 0 when everything passed). Prints the
# guest's and unik's lines and "stock-arm64: status=N seconds=S"; exits with the guest's status.
# The last result and time are recorded in docs/guests.md.
#
# Usage: scripts/stock-kernel-arm64.sh [UNIK_AARCH64_BINARY]
#   (default: builds target/aarch64-unknown-linux-musl/release/unik)
# Needs: qemu-system-aarch64, aarch64-linux-gnu-gcc, cpio, e2fsprogs; apt with the arm64
# architecture added (`dpkg --add-architecture arm64 && apt-get update`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$repo/target/stock-arm64
mkdir -p "$work"
cd "$work"

unik=${1:+$(realpath "$1")}
if [ -z "$unik" ]; then
    (cd "$repo" && CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
        cargo build --release --locked --target aarch64-unknown-linux-musl -p unik)
    unik=$repo/target/aarch64-unknown-linux-musl/release/unik
fi

# The kernel (host and guest alike) and a static busybox.
if ! ls k/boot/vmlinuz-* >/dev/null 2>&1; then
    pkg=$(apt-cache depends linux-image-cloud-arm64:arm64 | awk '/Depends: linux-image-/ { print $2; exit }')
    [ -n "$pkg" ] || { echo "stock-arm64: no arm64 linux-image package (dpkg --add-architecture arm64; apt-get update)" >&2; exit 1; }
    apt-get download -qq "$pkg" busybox-static:arm64 2>/dev/null
    mkdir -p k bb
    dpkg-deb -x linux-image-*arm64*.deb k
    dpkg-deb -x busybox-static_*arm64.deb bb
    rm -f ./*.deb
fi
kernel=$(ls k/boot/vmlinuz-*)
mods=$(ls -d k/lib/modules/*/kernel)

# A persistent vnet-header tap for the emulated host (its busybox has no `ip tuntap`).
cat >mktap.c <<'EOF'
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    int fd = open("/dev/net/tun", O_RDWR);
    if (fd < 0 || argc < 2) { perror("open /dev/net/tun"); return 1; }
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0) { perror("tap"); return 1; }
    return 0;
}
EOF
aarch64-linux-gnu-gcc -static -O2 -o mktap mktap.c

# The guest: its initramfs (busybox, the virtio modules in dependency order) and its disk.
rm -rf guest host disk
mkdir -p guest/{bin,dev,proc,sys,mnt,lib/modules} host/{bin,dev,proc,sys,tmp,g,lib/modules} disk
cp bb/bin/busybox guest/bin/ && cp bb/bin/busybox host/bin/
mknod guest/dev/console c 5 1
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio drivers/block/virtio_blk \
    net/core/failover drivers/net/net_failover drivers/net/virtio_net; do
    cp "$mods/$m.ko" guest/lib/modules/
done
cat >guest/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "stock: init at $(cut -d' ' -f1 /proc/uptime)s"
for m in virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net; do
    insmod /lib/modules/$m.ko || echo "stock: insmod $m failed"
done
status=1
want=$(sed -n 's/.*want=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
if mount -t ext4 -o ro /dev/vda /mnt; then
    got=$(sha256sum /mnt/file | cut -d' ' -f1)
    echo "stock: disk file sha256=$got"
    if [ "$got" = "$want" ]; then
        ip addr add 10.80.0.2/24 dev eth0 && ip link set eth0 up
        if ping -c 3 -W 10 10.80.0.1; then status=0; echo "stock: ping ok"; else echo "stock: ping failed"; fi
    else
        echo "stock: hash mismatch (want $want)"
    fi
else
    echo "stock: mount failed"
fi
echo "stock: result status=$status at $(cut -d' ' -f1 /proc/uptime)s"
devmem 0x09010000 32 $status
poweroff -f
EOF
chmod +x guest/init
head -c 1048576 /dev/urandom >disk/file
want=$(sha256sum disk/file | cut -d' ' -f1)
rm -f disk.ext4
mkfs.ext4 -q -d disk disk.ext4 8M

# The emulated host: unik, the guest's files, tun.ko, and an init that runs unik once.
(cd guest && find . | cpio -o -H newc 2>/dev/null | gzip -1) >host/g/initrd.cpio.gz
cp "$kernel" host/g/Image
cp disk.ext4 mktap host/g/
cp "$unik" host/bin/unik
cp "$mods/drivers/net/tun.ko" host/lib/modules/
cat >host/init <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for i in \$(seq 1 120); do [ -e /dev/kvm ] && break; sleep 1; done
insmod /lib/modules/tun.ko
cd /g
./mktap tap0 && ip addr add 10.80.0.1/24 dev tap0 && ip link set tap0 up
start=\$(cut -d' ' -f1 /proc/uptime)
unik boot --mem=512 --cpus=2 --block:vda=disk.ext4 --net:eth0=tap0 --initrd=initrd.cpio.gz Image console=ttyS0 quiet want=$want
status=\$?
end=\$(cut -d' ' -f1 /proc/uptime)
echo "stock-arm64: status=\$status seconds=\$(echo "\$end \$start" | awk '{ printf "%.1f", \$1 - \$2 }')"
poweroff -f
EOF
chmod +x host/init
(cd host && find . | cpio -o -H newc 2>/dev/null) >host.cpio
timeout 1800 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -nic none -kernel "$kernel" -initrd host.cpio -append 'console=ttyAMA0 quiet' | tee run.log
status=$(sed -n 's/.*stock-arm64: status=\([0-9]*\).*/\1/p' run.log)
exit "${status:-1}"
