//! A stock distribution kernel (Debian's linux-image package, fetched by scripts/stock-kernel.sh)
//! boots under unik to an initramfs that loads the virtio drivers, reads the virtio disk, pings
//! the host over virtio-net and powers off through ACPI. The kernel finds its devices and CPUs
//! in unik's ACPI tables: Debian builds virtio-mmio without command-line device support.
//!
//! This needs hardware virtualization: on kvm_pvm hosts (software virtualization, where guest
//! kernel code is emulated thousands of times slower) Linux does not finish booting. There the
//! test reports itself as not run, with the reason, and returns. Where it runs it needs
//! busybox-static (scripts/setup.sh) and Debian's package archive.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::netns::NetNs;
use common::{stderr, stdout, tempdir};

/// Why this host cannot run a stock kernel, if it cannot.
fn not_runnable() -> Option<String> {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Some("this host's /dev/kvm is kvm_pvm (software virtualization): a stock Linux kernel does not finish booting".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox (busybox-static) is missing; run scripts/setup.sh".into());
    }
    None
}

/// One file of a `newc` cpio archive.
fn cpio_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{z:08x}{z:08x}{z:08x}{z:08x}{namesize:08x}{z:08x}",
        ino = out.len(),
        uid = 0,
        gid = 0,
        nlink = 1,
        mtime = 0,
        size = data.len(),
        z = 0,
        namesize = name.len() + 1,
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in failover virtio virtio_ring virtio_mmio virtio_blk net_failover virtio_net; do
    /bin/busybox insmod /modules/$m.ko
done
/bin/busybox sleep 1
echo "stock: cpus=$(/bin/busybox grep -c ^processor /proc/cpuinfo)"
echo "stock: disk=$(/bin/busybox dd if=/dev/vda bs=16 count=1 2>/dev/null)"
/bin/busybox ip link set eth0 up
/bin/busybox ip addr add 10.81.0.2/24 dev eth0
/bin/busybox ping -c 2 -W 5 10.81.0.1 >/dev/null && echo "stock: ping ok"
/bin/busybox poweroff -f
"#;

/// An initramfs with busybox, the init script above and the virtio modules of `modules`.
fn initramfs(dir: &Path, modules: &Path) -> PathBuf {
    let mut out = Vec::new();
    for d in ["bin", "modules", "proc", "sys", "dev"] {
        cpio_entry(&mut out, d, 0o040_755, &[]);
    }
    cpio_entry(&mut out, "bin/busybox", 0o100_755, &std::fs::read("/bin/busybox").unwrap());
    cpio_entry(&mut out, "init", 0o100_755, INIT.as_bytes());
    for (m, rel) in [
        ("failover", "net/core/failover.ko"),
        ("virtio", "drivers/virtio/virtio.ko"),
        ("virtio_ring", "drivers/virtio/virtio_ring.ko"),
        ("virtio_mmio", "drivers/virtio/virtio_mmio.ko"),
        ("virtio_blk", "drivers/block/virtio_blk.ko"),
        ("net_failover", "drivers/net/net_failover.ko"),
        ("virtio_net", "drivers/net/virtio_net.ko"),
    ] {
        // A module built in is simply absent: insmod's error is harmless then.
        if let Ok(data) = std::fs::read(modules.join("kernel").join(rel)) {
            cpio_entry(&mut out, &format!("modules/{m}.ko"), 0o100_644, &data);
        }
    }
    cpio_entry(&mut out, "TRAILER!!!", 0, &[]);
    let path = dir.join("initramfs.cpio");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn test_initramfs_is_a_valid_newc_archive() {
    // The archive builder runs everywhere: its first header and its trailer.
    let dir = tempdir();
    let path = initramfs(dir.path(), Path::new("/nonexistent"));
    let data = std::fs::read(path).unwrap();
    assert!(data.starts_with(b"070701"));
    assert!(data.windows(10).any(|w| w == b"TRAILER!!!"));
    assert!(data.windows(4).any(|w| w == b"init"));
    assert_eq!(data.len() % 4, 0);
}

#[test]
fn test_stock_debian_kernel_boots_with_virtio_disk_and_network() {
    if let Some(reason) = not_runnable() {
        common::report_not_run("test_stock_debian_kernel_boots_with_virtio_disk_and_network", &reason);
        return;
    }
    require_kvm!();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash").arg(repo.join("scripts/stock-kernel.sh")).output().unwrap();
    assert!(out.status.success(), "fetching the stock kernel: {}", stderr(&out));
    let kernel = PathBuf::from(stdout(&out).trim());
    let version = kernel
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("vmlinuz-")
        .to_string();
    let modules = kernel.parent().unwrap().parent().unwrap().join("lib/modules").join(&version);
    let dir = tempdir();
    let initrd = initramfs(dir.path(), &modules);
    let disk = dir.path().join("disk.img");
    let mut image = b"unik-stock-disk!".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).unwrap();
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.81.0.1/24");
    let unik = common::unik_path();
    let out = ns
        .command(&[
            "timeout",
            "300",
            unik.to_str().unwrap(),
            "boot",
            "--mem=256",
            "--cpus=2",
            &format!("--initrd={}", initrd.display()),
            &format!("--block:vda={}", disk.display()),
            "--net:eth0=tap0",
            kernel.to_str().unwrap(),
            "console=ttyS0",
            "panic=-1",
            "rdinit=/init",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let console = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "console:\n{console}\nstderr: {}", stderr(&out));
    assert!(console.contains("stock: cpus=2"), "{console}");
    assert!(console.contains("stock: disk=unik-stock-disk!"), "{console}");
    assert!(console.contains("stock: ping ok"), "{console}");
}
