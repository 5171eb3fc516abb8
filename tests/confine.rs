//! The monitor confines itself before the guest runs: every thread under its seccomp filter,
//! no_new_privs, no capability, no file descriptor inherited from the caller.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};

use common::guests::guest;

/// The descriptor number the caller leaves open (without close-on-exec) for unik to inherit.
const INHERITED_FD: i32 = 47;

/// Starts `unik ARGS` with stdout piped, stderr to a file and `INHERITED_FD` open on a file
/// of the test's, and waits until stdout shows `ready`.
fn start(args: &[&str], ready: &str, dir: &tempfile::TempDir) -> (Child, BufReader<std::process::ChildStdout>) {
    let leaked = std::fs::File::create(dir.path().join("leaked")).unwrap();
    let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut cmd = common::unik();
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    // SAFETY: dup2 in the child between fork and exec, onto a number the child has free.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, INHERITED_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(ready) {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unik ended before {ready:?}: {}",
                std::fs::read_to_string(dir.path().join("stderr")).unwrap()
            );
        }
    }
    (child, out)
}

/// The targets of the descriptors `pid` holds, by number.
fn fds(pid: u32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            Some((n, std::fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect();
    fds.sort();
    fds
}

fn stop(mut child: Child, dir: &tempfile::TempDir) -> String {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Exiting on signal 15"), "{stderr}");
    stderr
}

#[test]
fn test_an_hvt_guest_runs_confined_without_inherited_descriptors() {
    require_kvm!();
    let dir = common::tempdir();
    let kernel = guest("hello");
    let (child, _out) = start(&["boot", "--mem=8", kernel.to_str().unwrap(), "sleep=600000"], "Hello, world", &dir);
    let names = common::assert_confined(child.id());
    assert!(names.iter().any(|n| n == "unik"), "{names:?}");
    let fds = fds(child.id());
    assert!(
        !fds.iter().any(|(n, _)| *n == INHERITED_FD),
        "inherited fd {INHERITED_FD} still open: {fds:?}"
    );
    // Beside stdio, only what the VM itself opened: KVM objects, its eventfd, epoll and timer.
    for (n, target) in &fds {
        assert!(
            *n <= 2 || target == "/dev/kvm" || target.starts_with("anon_inode:"),
            "unexpected descriptor {n} -> {target}: {fds:?}"
        );
    }
    stop(child, &dir);
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_the_net_ring_thread_of_an_hvt_guest_runs_confined() {
    require_kvm!();
    let ns = common::netns::NetNs::new();
    ns.add_tap("tap0", "10.76.0.1/24");
    let dir = common::tempdir();
    let kernel = guest("net");
    let unik = common::unik_path();
    let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = ns
        .command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=8",
            "--net-ring=on",
            "--net:service0=tap0",
            kernel.to_str().unwrap(),
            "ip=10.76.0.2",
            "timeout=600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(" ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the guest ended before it was ready");
    }
    assert!(line.contains("io=ring"), "{line}");
    // `ip netns exec` execs unik: the child is the monitor.
    let names = common::assert_confined(child.id());
    assert!(names.iter().any(|n| n == "unik-ring"), "{names:?}");
    stop(child, &dir);
}

#[test]
fn test_every_thread_of_a_linux_boot_guest_runs_confined() {
    require_kvm!();
    let dir = common::tempdir();
    let img = common::disk(&dir, "d.img", 4096, 0);
    // On aarch64 the guest boots as an arm64 Image.
    let kernel = if cfg!(target_arch = "aarch64") {
        common::guests::arm64_image("virtio", dir.path())
    } else {
        guest("virtio")
    };
    let block = format!("--block:d={}", img.display());
    let args = ["boot", "--mem=16", "--cpus=2", &block, kernel.to_str().unwrap(), "halt"];
    let (child, _out) = start(&args, "virtio: halting", &dir);
    let names = common::assert_confined(child.id());
    // vCPU 0 (the main thread), the second vCPU and the device thread.
    assert!(names.iter().filter(|n| *n == "unik").count() >= 2, "{names:?}");
    assert!(names.iter().any(|n| n == "unik-devices"), "{names:?}");
    let fds = fds(child.id());
    assert!(
        !fds.iter().any(|(n, _)| *n == INHERITED_FD),
        "inherited fd {INHERITED_FD} still open: {fds:?}"
    );
    assert!(fds.iter().any(|(_, t)| t.ends_with("d.img")), "the disk is open: {fds:?}");
    stop(child, &dir);
}

#[test]
fn test_seccomp_log_and_off_modes() {
    require_kvm!();
    let kernel = guest("hello");
    for (mode, seccomp, warning) in [
        ("log", "2", "seccomp is in log mode"),
        ("off", "0", "seccomp is off: the monitor runs without a system-call filter"),
    ] {
        let dir = common::tempdir();
        let flag = format!("--seccomp={mode}");
        let (child, _out) = start(
            &["boot", &flag, "--mem=8", kernel.to_str().unwrap(), "sleep=600000"],
            "Hello, world",
            &dir,
        );
        for t in common::thread_confinement(child.id()) {
            assert_eq!(t.seccomp, seccomp, "{mode}: {t:?}");
            // Privileges go whatever the seccomp mode.
            assert_eq!(t.no_new_privs, "1", "{mode}: {t:?}");
            assert_eq!(t.caps[2], "0000000000000000", "{mode}: {t:?}");
        }
        let stderr = stop(child, &dir);
        assert!(stderr.contains(warning), "{mode}: {stderr}");
    }
    let out = common::boot(&["--seccomp=kill", kernel.to_str().unwrap()]);
    common::assert_fails_with(&out, 1, "'kill': expected on, log or off");
}
