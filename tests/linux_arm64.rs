//! Linux-boot-protocol guests on aarch64: the `virtio` test guest as an arm64 `Image` finds its
//! devices in the device tree, drives virtio-blk and virtio-net through the virtio-mmio
//! transport, reports on the 16550 and ends the VM through the debug-exit register or PSCI;
//! `--cpus` vCPUs start with PSCI CPU_ON. Also the errors of this boot path. (On x86_64 the
//! same program is tested by tests/linux.rs.)

#![cfg(target_arch = "aarch64")]
#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use common::guests::arm64_image;
use common::netns::NetNs;
use common::{assert_fails_with, boot, disk, stderr, stdout, tempdir};

const PATTERN: &[u8] = b"unik-virtio-blk!";

#[test]
fn test_arm64_image_drives_virtio_blk_from_the_device_tree() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d0.img", 1 << 20, b'A');
    let kernel = arm64_image("virtio", dir.path());
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, b"an initrd for the arm64 guest").unwrap();
    let out = boot(&[
        "--mem=32",
        &format!("--block:d0={}", img.display()),
        &format!("--initrd={}", initrd.display()),
        kernel.to_str().unwrap(),
        "exit=5",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "stdout: {text} stderr: {}", stderr(&out));
    for line in [
        // No virtio_mmio.device= on the command line: the device tree names the device.
        "virtio: cmdline: exit=5",
        "virtio: mem=33554432",
        "virtio: device at 0xa000000 spi=16",
        "virtio-blk: capacity=2048 ro=0 flush=1",
        "virtio-blk: read0 status=0 first=AAAAAAAA",
        "virtio-blk: id status=0 id=d0",
        "virtio-blk: write status=0",
        "virtio-blk: readback status=0 match=1",
        "virtio-blk: flush status=0",
        "virtio-blk: oob status=1",
        "virtio-blk: malformed used",
        "virtio: done",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    // The initrd sits where the device tree's /chosen says, whole.
    let fnv = b"an initrd for the arm64 guest"
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    assert!(text.contains(&format!("size=29 fnv={fnv:016x}")), "{text}");
    let data = std::fs::read(&img).unwrap();
    assert!(data[512..1024].chunks(PATTERN.len()).all(|c| c == PATTERN));
    assert!(data[..512].iter().all(|b| *b == b'A'));
}

#[test]
fn test_psci_cpu_on_system_off_and_reset() {
    require_kvm!();
    let dir = tempdir();
    let kernel = arm64_image("virtio", dir.path());
    // Three vCPUs: the guest starts the other two with CPU_ON; SYSTEM_OFF ends the VM with 0.
    let out = boot(&["--mem=16", "--cpus=3", kernel.to_str().unwrap(), "cpus", "poweroff"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert!(text.contains("virtio: cpus=3 up=3 psci=0"), "{text}");
    assert!(!text.contains("virtio: done"), "SYSTEM_OFF returned: {text}");
    // SYSTEM_RESET stops the VM as a reset does on x86_64: status 0.
    let out = boot(&["--mem=16", kernel.to_str().unwrap(), "reset"]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("virtio: reset"));
}

#[test]
fn test_arm64_virtio_net_answers_ping() {
    require_kvm!();
    let dir = tempdir();
    let kernel = arm64_image("virtio", dir.path());
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.79.0.1/24");
    let unik = common::unik_path();
    let mut child = ns
        .command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=16",
            "--net:eth0=tap0",
            "--net-mac:eth0=02:00:00:00:00:42",
        ])
        .args([kernel.to_str().unwrap(), "ip=10.79.0.2", "pings=3", "timeout=120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    while !ready.lines().any(|l| l.ends_with(" ready")) {
        let n = reader.read_line(&mut ready).unwrap();
        assert!(n > 0, "guest did not get ready: {ready:?}");
    }
    assert!(ready.contains("virtio-net: mac=02:00:00:00:00:42 ready"), "{ready}");
    let ping = ns.command(&["ping", "-c", "3", "-W", "10", "10.79.0.2"]).output().unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(ping.status.success(), "ping: {}", String::from_utf8_lossy(&ping.stdout));
    assert_eq!(status.code(), Some(0), "{ready}{rest}");
    assert!(rest.contains("virtio-net: answered 3 pings"), "{rest}");
}

#[test]
fn test_arm64_boot_errors_are_clear() {
    require_kvm!();
    let dir = tempdir();
    let kernel = arm64_image("virtio", dir.path());
    // An x86 kernel, and a file that is no kernel.
    let elf = common::guests::guest("virtio");
    let out = boot(&["--kind=linux", elf.to_str().unwrap()]);
    assert_fails_with(&out, 1, "on aarch64 unik boots arm64 Image kernels");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, [0u8; 4096]).unwrap();
    let out = boot(&["--kind=linux", junk.to_str().unwrap()]);
    assert_fails_with(&out, 1, "is not an arm64 Image");
    // An Image whose header claims more than memory holds.
    let mut big = std::fs::read(&kernel).unwrap();
    big[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let big_path = dir.path().join("big.Image");
    std::fs::write(&big_path, big).unwrap();
    let out = boot(&["--mem=16", big_path.to_str().unwrap()]);
    assert_fails_with(&out, 1, "do not fit below the device tree");
    // A command line longer than an arm64 kernel takes.
    let long = "x".repeat(3000);
    let out = boot(&["--mem=16", kernel.to_str().unwrap(), &long]);
    assert_fails_with(&out, 1, "kernel command line too long: 3000 characters (max 2047)");
    // Too much initrd for the memory.
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, vec![0u8; 20 << 20]).unwrap();
    let out = boot(&["--mem=16", &format!("--initrd={}", initrd.display()), kernel.to_str().unwrap()]);
    assert_fails_with(&out, 1, "initrd");
}
