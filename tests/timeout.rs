//! `unik boot --timeout`: a guest that runs too long is stopped with status 124, as timeout(1)
//! ends a command, so a hung unikernel cannot hang a CI job.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::time::{Duration, Instant};

use common::guests::guest;
use common::{assert_fails_with, boot, stdout};

#[test]
fn test_an_hvt_guest_that_runs_too_long_is_stopped_with_124() {
    require_kvm!();
    let kernel = guest("hello");
    let k = kernel.to_str().unwrap();
    // Sleeping in POLL for a minute: the limit ends it, and not before it ran out.
    let start = Instant::now();
    let out = boot(&["--mem=8", "--timeout=1500ms", k, "sleep=60000"]);
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "stopped after {:?}",
        start.elapsed()
    );
    assert_fails_with(&out, 124, "the guest ran longer than --timeout 1.5s: stopped");
    assert!(stdout(&out).contains("Hello, world"), "{}", stdout(&out));
    // A guest that ends in time keeps its own status.
    let out = boot(&["--mem=8", "--timeout=60", k, "exit=3"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
}

// The PC's Linux-boot test guest (`virtio`, PVH/port I/O) is built for x86_64 only.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_a_linux_guest_halted_with_interrupts_off_is_stopped_with_124() {
    use common::{disk, tempdir};
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 4096, 0);
    let kernel = guest("virtio");
    let block = format!("--block:d={}", img.display());
    // Two vCPUs and the device thread; vCPU 0 never leaves KVM by itself: the timer's signal must
    // reach it.
    let out = boot(&["--mem=16", "--cpus=2", "--timeout=1s", &block, kernel.to_str().unwrap(), "halt"]);
    assert_fails_with(&out, 124, "the guest ran longer than --timeout 1s: stopped");
    assert!(stdout(&out).contains("virtio: halting"), "{}", stdout(&out));
}

#[test]
fn test_bad_time_limits_are_refused() {
    let kernel = guest("hello");
    for (value, why) in [
        ("0", "the time limit must be above zero"),
        ("1x", "unknown unit 'x' (use ms, s, m or h)"),
        ("soon", "expected a number and a unit, e.g. 30s or 500ms"),
        ("-5s", "expected a number and a unit"),
    ] {
        let out = boot(&[&format!("--timeout={value}"), kernel.to_str().unwrap()]);
        assert_fails_with(&out, 1, why);
    }
}
