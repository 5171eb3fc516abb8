//! `unik boot` end to end on /dev/kvm: console, exit codes, clocks, signals.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::guests::guest;
use common::{boot, stderr, stdout};

fn hello(args: &[&str]) -> std::process::Output {
    let kernel = guest("hello");
    let mut argv = vec!["--mem=8", kernel.to_str().unwrap()];
    argv.extend_from_slice(args);
    boot(&argv)
}

/// Extracts the number after `key: ` in the guest's output.
fn value(out: &str, key: &str) -> u64 {
    let prefix = format!("{key}: ");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key:?} in {out:?}"));
    line.trim().parse().unwrap_or_else(|_| panic!("bad {key}: {line:?}"))
}

#[test]
fn test_hello_prints_and_exits_zero() {
    require_kvm!();
    let out = hello(&[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("Hello, world"), "stdout: {}", stdout(&out));
    assert!(stderr(&out).is_empty(), "monitor wrote to stderr: {}", stderr(&out));
}

#[test]
fn test_command_line_reaches_guest() {
    require_kvm!();
    let out = hello(&["one", "two", "--three"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("cmdline: one two --three"), "stdout: {}", stdout(&out));
}

#[test]
fn test_exit_status_is_guest_halt_status() {
    require_kvm!();
    for code in [0, 1, 7, 254] {
        let arg = format!("exit={code}");
        let out = hello(&[&arg]);
        assert_eq!(out.status.code(), Some(code), "{arg}: stderr: {}", stderr(&out));
    }
    let out = hello(&["abort"]);
    assert_eq!(out.status.code(), Some(255), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("ABORT"), "stdout: {}", stdout(&out));
}

#[test]
fn test_walltime_is_host_realtime() {
    require_kvm!();
    let before = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap();
    let out = hello(&["walltime"]);
    let after = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let t = value(&stdout(&out), "walltime");
    assert!(t >= 1_483_228_800_000_000_000, "walltime before 2017: {t}");
    assert!((before..=after).contains(&t), "walltime {t} outside [{before}, {after}]");
}

#[test]
fn test_poll_sleeps_one_second_by_the_tsc() {
    require_kvm!();
    let out = hello(&["sleep=1000"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let slept = value(&stdout(&out), "slept_ns");
    assert!((800_000_000..=1_200_000_000).contains(&slept), "slept {slept} ns for a 1 s POLL");
}

#[test]
fn test_zero_timeout_poll_returns() {
    require_kvm!();
    let out = hello(&["sleep=0"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(value(&stdout(&out), "slept_ns") < 500_000_000, "stdout: {}", stdout(&out));
}

#[test]
fn test_boot_info_describes_memory_and_clock() {
    require_kvm!();
    let out = hello(&["meminfo"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(value(&text, "mem_size"), 8 << 20);
    let end = value(&text, "kernel_end");
    assert!(end > 0x10_0000 && end % 0x1000 == 0 && end < 8 << 20, "kernel_end {end:#x}");
    assert!(value(&text, "cpu_cycle_freq") > 100_000_000);
}

#[test]
fn test_memory_is_rounded_down_to_2_mib_with_a_warning() {
    require_kvm!();
    let kernel = guest("hello");
    let out = boot(&["--mem=9", kernel.to_str().unwrap(), "meminfo"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(value(&stdout(&out), "mem_size"), 8 << 20);
    assert!(
        stderr(&out).contains("adjusting memory to 8388608 bytes"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn test_large_memory_boots() {
    require_kvm!();
    let kernel = guest("hello");
    let out = boot(&["--mem=4096", kernel.to_str().unwrap(), "meminfo"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(value(&stdout(&out), "mem_size"), 4 << 30);
}

#[test]
fn test_puts_passes_nul_bytes_through() {
    require_kvm!();
    let out = hello(&["puts-nul"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(out.stdout.contains(&0), "no NUL in stdout: {:?}", out.stdout);
}

#[test]
fn test_sigterm_and_sigint_stop_a_sleeping_guest() {
    require_kvm!();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let kernel = guest("hello");
        let mut child = common::unik()
            .args(["boot", "--mem=8", kernel.to_str().unwrap(), "sleep=600000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("guest output").unwrap();
        assert!(first.contains("Hello"), "{first}");
        // The guest prints before it sleeps; give it a moment to enter POLL.
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(i32::try_from(child.id()).unwrap(), signal) }, 0);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "signal {signal}: stderr: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("Exiting on signal {signal}")),
            "stderr: {}",
            stderr(&out)
        );
    }
}
