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
    // At least the timeout passed, by the guest's own clock (the TSC at the rate the boot info
    // gives, which KVM reports in kHz: 1% of slack for that rounding and the guest's arithmetic).
    // No upper bound: how long a loaded machine oversleeps is no correctness fact.
    assert!(slept >= 990_000_000, "slept {slept} ns for a 1 s POLL");
}

#[test]
fn test_zero_timeout_poll_returns() {
    require_kvm!();
    // A zero-timeout POLL that blocked would hang the guest: run_or_kill's minute is a liveness
    // deadline, not a speed check. Returning at all, and the guest going on, is the event.
    let kernel = guest("hello");
    let out = run_or_kill(
        &common::unik_path(),
        &["boot", "--mem=8", kernel.to_str().unwrap(), "sleep=0", "exit=4"],
    );
    assert_eq!(out.status.code(), Some(4), "stderr: {}", stderr(&out));
    value(&stdout(&out), "slept_ns");
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
    let freq = value(&text, "cpu_cycle_freq");
    // x86_64: the TSC's frequency, above 100 MHz on any machine KVM runs on.
    #[cfg(target_arch = "x86_64")]
    assert!(freq > 100_000_000, "cpu_cycle_freq {freq}");
    // aarch64: the generic timer's, which the host reads as the guest does (CNTFRQ_EL0).
    #[cfg(target_arch = "aarch64")]
    {
        let host: u64;
        // SAFETY: CNTFRQ_EL0 is readable at EL0 under Linux; reading it has no side effects.
        unsafe { std::arch::asm!("mrs {}, cntfrq_el0", out(reg) host, options(nomem, nostack)) };
        assert_eq!(freq, host, "cpu_cycle_freq");
    }
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
        // The guest prints before it sleeps: wait until the monitor sleeps in POLL's epoll_wait,
        // so the signal is seen to end a sleeping POLL (the minute is a liveness deadline).
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("epoll_wait")) {
            assert!(std::time::Instant::now() < deadline, "the guest never slept in POLL");
            std::thread::sleep(Duration::from_millis(10));
        }
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

/// Runs `program args`, killing it if it has not exited after a minute (a damaged kernel once
/// booted as Linux and spun forever): its output, or a failure naming the hang.
fn run_or_kill(program: &std::path::Path, args: &[&str]) -> std::process::Output {
    let child = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        // SAFETY: kill(2) on our own child, not reaped yet (the waiter has not returned).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let out = waiter.join().unwrap();
        panic!("{} {args:?} still ran after 60 s; stderr: {}", program.display(), stderr(&out));
    }
    waiter.join().unwrap()
}

/// The `hello` guest with `damage` applied, in `dir`.
fn damaged_hello(dir: &tempfile::TempDir, name: &str, damage: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut image = std::fs::read(guest("hello")).unwrap();
    damage(&mut image);
    let path = dir.path().join(name);
    std::fs::write(&path, image).unwrap();
    path
}

/// File offset of the first PT_NOTE segment in an ELF64 image (its program headers follow the
/// ELF header; how many PT_LOADs come first depends on what the linker kept).
fn first_note_offset(image: &[u8]) -> usize {
    let ph = (0..usize::from(u16::from_le_bytes([image[56], image[57]])))
        .map(|i| 64 + i * 56)
        .find(|&ph| image[ph..ph + 4] == 4u32.to_le_bytes())
        .expect("a PT_NOTE");
    usize::try_from(u64::from_le_bytes(image[ph + 8..ph + 16].try_into().unwrap())).unwrap()
}

#[test]
fn test_a_damaged_unikernel_is_refused_not_booted_as_linux() {
    require_kvm!();
    let dir = common::tempdir();
    let no_phdrs = damaged_hello(&dir, "no-phdrs.hvt", |img| img[56..58].fill(0));
    // The first PT_NOTE is the ABI note: a bit flipped in its owner name ("Solo5").
    let bad_note = damaged_hello(&dir, "bad-note.hvt", |img| {
        let at = first_note_offset(img);
        assert_eq!(&img[at + 12..at + 18], b"Solo5\0");
        img[at + 12] ^= 0x04;
    });
    let cases = [
        (&no_phdrs, "invalid executable: bad ELF header or program header sizes"),
        (&bad_note, "No Solo5 ABI information found in executable"),
    ];
    for (kernel, error) in cases {
        let out = run_or_kill(&common::unik_path(), &["boot", "--mem=8", kernel.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}: stderr: {}", kernel.display(), stderr(&out));
        assert!(stderr(&out).contains(error), "{}: stderr: {}", kernel.display(), stderr(&out));
        assert!(stdout(&out).is_empty(), "the guest ran: {}", stdout(&out));
    }
    // Forcing the Linux boot protocol on it is refused too.
    let out = run_or_kill(
        &common::unik_path(),
        &["boot", "--kind=linux", "--mem=8", no_phdrs.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("Solo5"), "stderr: {}", stderr(&out));
}

#[test]
fn test_as_solo5_hvt_only_hvt_is_tried() {
    require_kvm!();
    let dir = common::tempdir();
    let solo5_hvt = dir.path().join("solo5-hvt");
    std::os::unix::fs::symlink(common::unik_path(), &solo5_hvt).unwrap();
    let no_phdrs = damaged_hello(&dir, "no-phdrs.hvt", |img| img[56..58].fill(0));
    let out = run_or_kill(&solo5_hvt, &["--mem=8", no_phdrs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("invalid executable"), "stderr: {}", stderr(&out));
    // A kernel for the Linux boot protocol is no solo5-hvt executable. (The PC's Linux-boot test
    // guest, `virtio`, is built for x86_64 only.)
    #[cfg(target_arch = "x86_64")]
    {
        let linux = guest("virtio");
        let out = run_or_kill(&solo5_hvt, &["--mem=8", linux.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
        assert!(
            stderr(&out).contains("No Solo5 ABI information found in executable"),
            "stderr: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "the kernel ran: {}", stdout(&out));
    }
    // And an intact unikernel still runs.
    let out = run_or_kill(&solo5_hvt, &["--mem=8", guest("hello").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}
