//! Bad input to `unik boot`: every case names what is wrong, exits non-zero, and boots nothing.
//! These run before /dev/kvm is opened, so they need no KVM.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use common::guests::{guest, static_pie_guest};
use common::{assert_fails_with, boot, disk, stdout, tempdir, unik};

#[test]
fn test_help_explains_every_option() {
    let out = unik().args(["boot", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for opt in [
        "--mem",
        "--net",
        "--net-mac",
        "--block",
        "--block-sector-size",
        "KERNEL",
        "ARGS",
        "Examples:",
    ] {
        assert!(help.contains(opt), "help lacks {opt}: {help}");
    }
}

#[test]
fn test_version_names_the_abi() {
    let out = unik().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("ABI version 2"), "{}", stdout(&out));
}

#[test]
fn test_missing_kernel_file() {
    assert_fails_with(&boot(&["/nonexistent/k.hvt"]), 1, "Could not read kernel /nonexistent/k.hvt");
}

#[test]
fn test_not_an_elf() {
    let dir = tempdir();
    let path = disk(&dir, "junk.hvt", 4096, b'x');
    assert_fails_with(&boot(&[path.to_str().unwrap()]), 1, "invalid executable");
}

#[test]
fn test_static_pie_is_refused() {
    let kernel = static_pie_guest();
    assert_fails_with(&boot(&[kernel.to_str().unwrap()]), 1, "ET_DYN");
}

#[test]
fn test_missing_abi_note() {
    let kernel = guest("noabi");
    assert_fails_with(
        &boot(&[kernel.to_str().unwrap()]),
        1,
        "No Solo5 ABI information found in executable",
    );
}

#[test]
fn test_malformed_manifest() {
    let kernel = guest("badmft");
    assert_fails_with(&boot(&[kernel.to_str().unwrap()]), 1, "Solo5 manifest is invalid");
}

#[test]
fn test_declared_devices_must_be_attached() {
    let kernel = guest("missing");
    let out = boot(&[kernel.to_str().unwrap()]);
    assert_fails_with(&out, 1, "declared but not attached");
    assert_fails_with(&out, 1, "All declared devices must be attached");
}

#[test]
fn test_undeclared_device_is_refused() {
    let dir = tempdir();
    let img = disk(&dir, "d.img", 512, 0);
    let kernel = guest("hello");
    let out = boot(&[&format!("--block:storage={}", img.display()), kernel.to_str().unwrap()]);
    assert_fails_with(&out, 1, "Resource not declared in manifest: 'storage'");
}

#[test]
fn test_bad_options() {
    let kernel = guest("hello");
    let k = kernel.to_str().unwrap();
    assert_fails_with(&boot(&["--frobnicate", k]), 1, "unexpected argument '--frobnicate'");
    assert_fails_with(&boot(&["--mem=4097", k]), 1, "exceeds the max size");
    assert_fails_with(&boot(&["--mem=x", k]), 1, "invalid value 'x'");
    assert_fails_with(&boot(&["--block:bad_name=/x", k]), 1, "invalid device name");
    assert_fails_with(&boot(&["--net:a=tap0", "--net:a=tap1", k]), 1, "'a'");
    let long = "x".repeat(8192);
    assert_fails_with(&boot(&[k, &long]), 1, "Guest command line too long (max=8191 characters)");
}

#[test]
fn test_solo5_hvt_link_name_boots() {
    let dir = tempdir();
    let link = dir.path().join("solo5-hvt");
    std::os::unix::fs::symlink(common::unik_path(), &link).unwrap();
    let out = std::process::Command::new(&link)
        .args(["--block:x=/nonexistent", "/nonexistent/k.hvt"])
        .output()
        .unwrap();
    assert_fails_with(&out, 1, "Could not read kernel");
}

#[test]
fn test_pack_refuses_bad_input_and_writes_nothing() {
    let dir = tempdir();
    let out = dir.path().join("image.tar");
    let out_arg = out.to_str().unwrap();
    let hello = guest("hello");
    let hello = hello.to_str().unwrap();
    let blk = guest("blk");
    let disk = disk(&dir, "disk.img", 1000, 0);
    let pack = |args: &[&str]| unik().arg("pack").args(args).output().unwrap();
    for (args, needle) in [
        (
            vec!["-t", "a:1", "-o", out_arg, "/nonexistent/k.hvt"],
            "kernel /nonexistent/k.hvt: No such file",
        ),
        (vec!["-t", "A:1", "-o", out_arg, hello], "'A:1' is not a valid image name"),
        (
            vec!["-t", "a:1", "-o", out_arg, "--block", "st-x=disk.img", hello],
            "invalid device name 'st-x'",
        ),
        (
            vec!["-t", "a:1", "-o", out_arg, "--format", "tgz", hello],
            "invalid value 'tgz' for '--format",
        ),
        (vec!["-o", out_arg, hello], "--tag <NAME:TAG>"),
        (
            vec![
                "-t",
                "a:1",
                "-o",
                out_arg,
                "--block",
                &format!("storage={}", disk.display()),
                blk.to_str().unwrap(),
            ],
            "1000 bytes: a solo5-hvt disk image must be a non-zero multiple of 512 bytes",
        ),
    ] {
        assert_fails_with(&pack(&args), 1, needle);
        assert!(!out.exists(), "{args:?} left {}", out.display());
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only disk.img: no temporary file left"
    );
    // Packing needs no KVM: the name, image ID and file on stdout.
    let ok = pack(&["-t", "a:1", "-o", out_arg, hello]);
    assert_eq!(ok.status.code(), Some(0), "{}", common::stderr(&ok));
    assert!(stdout(&ok).starts_with("a:1 sha256:"), "{}", stdout(&ok));
    assert!(out.is_file());
    let help = stdout(&pack(&["--help"]));
    for opt in [
        "--block",
        "--initrd",
        "--mem",
        "--cpus",
        "--net-template",
        "--arg",
        "--tag",
        "--output",
        "--format",
        "Examples:",
    ] {
        assert!(help.contains(opt), "help lacks {opt}: {help}");
    }
}
