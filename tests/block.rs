//! Block devices: read/write through the hypercalls, bounds, sector sizes, several devices.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use common::guests::guest;
use common::{assert_fails_with, boot, disk, stderr, stdout, tempdir};

#[test]
fn test_block_write_read_and_bounds() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 1 << 20, 0);
    let kernel = guest("blk");
    let out = boot(&["--mem=8", &format!("--block:storage={}", img.display()), kernel.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("blk: ok capacity=1048576 block_size=512"),
        "stdout: {}",
        stdout(&out)
    );
    let data = std::fs::read(&img).unwrap();
    assert_ne!(&data[..512], &[0u8; 512][..], "sector 0 was not written to the file");
    assert_ne!(
        &data[data.len() - 512..],
        &[0u8; 512][..],
        "last sector was not written to the file"
    );
}

#[test]
fn test_block_sector_size_option() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 64 << 10, 0);
    let kernel = guest("blk");
    let out = boot(&[
        "--mem=8",
        &format!("--block:storage={}", img.display()),
        "--block-sector-size:storage=4096",
        kernel.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("blk: ok capacity=65536 block_size=4096"),
        "stdout: {}",
        stdout(&out)
    );
    // The rule is the monitor's, said in solo5-hvt's words.
    for bad in ["1000", "256"] {
        let out = boot(&[
            "--mem=8",
            &format!("--block:storage={}", img.display()),
            &format!("--block-sector-size:storage={bad}"),
            kernel.to_str().unwrap(),
        ]);
        let want = format!("Block size must be a multiple of 2 greater than or equal 512 (got {bad})");
        assert_fails_with(&out, 1, &want);
    }
}

#[test]
fn test_guest_reads_host_data() {
    require_kvm!();
    let dir = tempdir();
    let img = dir.path().join("d.img");
    let mut data = vec![0u8; 4096];
    data[..16].copy_from_slice(b"unik-block-test!");
    std::fs::write(&img, &data).unwrap();
    let kernel = guest("blk");
    let out = boot(&[
        "--mem=8",
        &format!("--block:storage={}", img.display()),
        kernel.to_str().unwrap(),
        "read-only-check",
    ]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    let hex: String = b"unik-block-test!".iter().map(|b| format!("{b:02x}")).collect();
    assert!(stdout(&out).contains(&hex), "stdout lacks {hex}: {}", stdout(&out));
}

#[test]
fn test_two_block_devices() {
    require_kvm!();
    let dir = tempdir();
    let d0 = disk(&dir, "d0.img", 8192, 0xab);
    let d1 = disk(&dir, "d1.img", 8192, 0);
    let kernel = guest("blk2");
    let out = boot(&[
        "--mem=8",
        &format!("--block:disk0={}", d0.display()),
        &format!("--block:disk1={}", d1.display()),
        kernel.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("blk2: ok"), "stdout: {}", stdout(&out));
    assert_eq!(&std::fs::read(&d1).unwrap()[..512], &[0xab; 512][..]);
}

#[test]
fn test_sixty_three_devices() {
    require_kvm!();
    let dir = tempdir();
    let kernel = guest("many");
    let mut args = vec!["--mem=8".to_string()];
    for i in 1..=63 {
        let img = disk(&dir, &format!("d{i}.img"), 512, 0);
        args.push(format!("--block:d{i}={}", img.display()));
    }
    args.push(kernel.to_str().unwrap().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = boot(&argv);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("many: ok 63"), "stdout: {}", stdout(&out));
}

#[test]
fn test_unaligned_backing_file_is_refused() {
    let dir = tempdir();
    let img = disk(&dir, "d.img", 1000, 0);
    let kernel = guest("blk");
    let out = boot(&["--mem=8", &format!("--block:storage={}", img.display()), kernel.to_str().unwrap()]);
    assert_fails_with(&out, 1, "storage: Backing storage size must be block aligned");
}

#[test]
fn test_missing_backing_file_is_refused() {
    let kernel = guest("blk");
    let out = boot(&["--block:storage=/nonexistent/unik.img", kernel.to_str().unwrap()]);
    assert_fails_with(&out, 1, "Could not open block device");
}
