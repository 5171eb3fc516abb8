//! Hostile guests: the project's own test guests attack the monitor. Every attack ends the run
//! with exit status 1 and one line naming what happened (never a panic, never a seccomp kill),
//! or is survived as the ABI or the virtio spec says; host memory and logs stay bounded; stop
//! signals end a guest that never stops by itself, and a SIGKILL leaves nothing behind.
//!
//! hvt attacks use the `faults` guest (no devices), `hostile` (a block device) and
//! `hostile_net` (a net device on a tap in a namespace of the test's own; `hostile_ring` breaks its net
//! ring, tokens in tests/guests/src/bin/hostile_ring.rs); their tokens are
//! documented in tests/guests/src/hostile.rs. Linux-boot attacks use the `virtio` guest's
//! `attack=`, `net-attack=`, `port-widths` and `serial-flood=` tokens
//! (tests/guests/src/bin/virtio.rs).

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::guests::guest;
use common::netns::NetNs;
use common::{disk, stderr, stdout, tempdir};

/// RAM of the hvt runs: `end` in a token is this many bytes.
const MEM: u64 = 8 << 20;

/// Asserts a clean monitor error: status 1, `needle` on stderr, no panic, no seccomp report.
#[track_caller]
fn assert_refused(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "status {:?} (signal {:?}); stdout: {} stderr: {err}",
        out.status.code(),
        out.status.signal(),
        stdout(out)
    );
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert_clean(out);
}

/// No panic and no seccomp kill, whatever the outcome.
#[track_caller]
fn assert_clean(out: &Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "the monitor panicked: {err}");
    assert!(!err.contains("seccomp"), "a seccomp report: {err}");
    assert_ne!(out.status.signal(), Some(libc::SIGSYS), "killed by SIGSYS: {err}");
}

/// `unik boot --mem=8 [extra] GUEST tokens...`.
fn hvt(guest_name: &str, extra: &[&str], tokens: &[&str]) -> Output {
    let kernel = guest(guest_name);
    let mut args = vec!["--mem=8"];
    args.extend_from_slice(extra);
    args.push(kernel.to_str().unwrap());
    args.extend_from_slice(tokens);
    common::boot(&args)
}

/// The address of the guests' scratch buffer (`buf` in their tokens): the `hostile::BUF` symbol
/// of guest `name`'s ELF symbol table (where it lands depends on the architecture's code size).
fn buf(name: &str) -> u64 {
    let elf = std::fs::read(guest(name)).unwrap();
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()));
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let to_usize = |v: u64| usize::try_from(v).unwrap();
    let (shoff, shentsize, shnum) = (to_usize(u64_at(0x28)), u16_at(0x3a), u16_at(0x3c));
    let section = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum).map(section).find(|&sh| u32_at(sh + 4) == 2).expect("a symbol table");
    let strtab = section(usize::try_from(u32_at(symtab + 0x28)).unwrap());
    let strings = &elf[to_usize(u64_at(strtab + 0x18))..];
    let (start, size) = (to_usize(u64_at(symtab + 0x18)), to_usize(u64_at(symtab + 0x20)));
    elf[start..start + size]
        .chunks_exact(24)
        .find(|sym| {
            let name = &strings[usize::try_from(u32::from_le_bytes(sym[..4].try_into().unwrap())).unwrap()..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap()];
            name.windows(12).any(|w| w == b"7hostile3BUF")
        })
        .map(|sym| u64::from_le_bytes(sym[8..16].try_into().unwrap()))
        .expect("the hostile::BUF symbol")
}

fn faults(tokens: &[&str]) -> Output {
    hvt("faults", &[], tokens)
}

// ---- hvt: lengths and pointers ----

#[test]
fn test_puts_lengths_that_overflow_or_straddle_the_end_of_ram_are_refused() {
    require_kvm!();
    // data + len wraps around 2^64.
    assert_refused(
        &faults(&["raw=2@buf:0xfffffffffffffff0,0x20"]),
        "Invalid guest access: gpa=0xfffffffffffffff0, sz=32",
    );
    // len = u64::MAX from a valid pointer.
    assert_refused(
        &faults(&["raw=2@buf:0x100000,max"]),
        "Invalid guest access: gpa=0x100000, sz=18446744073709551615",
    );
    // A buffer that starts in RAM and runs past its end.
    assert_refused(
        &faults(&["raw=2@buf:end-8,16"]),
        &format!("Invalid guest access: gpa={:#x}, sz=16", MEM - 8),
    );
}

#[test]
fn test_argument_structs_straddling_the_end_of_ram_are_refused() {
    require_kvm!();
    // Each struct starts inside RAM and ends past it; the whole struct is checked.
    for (nr, at, size) in [(1, 4, 8), (2, 8, 16), (3, 8, 24), (8, 8, 16)] {
        assert_refused(
            &faults(&[&format!("raw={nr}@end-{at}")]),
            &format!("Invalid guest access: gpa={:#x}, sz={size}", MEM - at),
        );
    }
}

#[test]
fn test_a_hypercall_writing_into_the_guests_own_text_is_refused() {
    require_kvm!();
    // WALLTIME's result would land in the read-only text: refused before the monitor writes.
    assert_refused(
        &faults(&["raw=1@text"]),
        "Invalid guest access: gpa=0x100000, sz=8 (read-only memory)",
    );
}

#[test]
fn test_block_buffers_that_overflow_or_straddle_are_refused() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 1 << 20, 0);
    let blk = format!("--block:storage={}", img.display());
    let run = |tokens: &[&str]| hvt("hostile", &[&blk], tokens);
    // Words: handle, offset, data, len, ret. Handle 1 is `storage`.
    for nr in [4, 5] {
        // A one-sector transfer whose buffer runs past the end of RAM.
        assert_refused(
            &run(&[&format!("raw={nr}@buf:1,0,end-256,512,0xffffffff")]),
            &format!("Invalid guest access: gpa={:#x}, sz=512", MEM - 256),
        );
        // A buffer whose end wraps around 2^64.
        assert_refused(
            &run(&[&format!("raw={nr}@buf:1,0,0xffffffffffffff00,512,0xffffffff")]),
            "Invalid guest access: gpa=0xffffffffffffff00, sz=512",
        );
        // The argument struct (40 bytes) straddling the end.
        assert_refused(
            &run(&[&format!("raw={nr}@end-16:1,0")]),
            &format!("Invalid guest access: gpa={:#x}, sz=40", MEM - 16),
        );
    }
    // A read into the guest's own text.
    assert_refused(
        &run(&["raw=5@buf:1,0,text,512,0xffffffff"]),
        "Invalid guest access: gpa=0x100000, sz=512 (read-only memory)",
    );
    // len = u64::MAX, or an unknown handle: outside the disk, so EINVAL (2) in `ret`, as
    // solo5-hvt answers, and the guest goes on.
    let out = run(&["raw=5@buf:1,0,buf,max,0xffffffff", "raw=4@buf:7,0,buf,512,0xffffffff"]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert_clean(&out);
    let text = stdout(&out);
    let buf = buf("hostile");
    assert!(
        text.contains(&format!("hostile: nr=5 words=0x1,0x0,{buf:#x},0xffffffffffffffff,0x2\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("hostile: nr=4 words=0x7,0x0,{buf:#x},0x200,0x2\n")),
        "{text}"
    );
    assert!(text.contains("hostile: done"), "{text}");
}

#[test]
fn test_net_buffers_that_overflow_or_straddle_are_refused() {
    require_kvm!();
    let ns = NetNs::new();
    // No IPv6 on the tap: its router solicitations would be frames waiting for NET_READ.
    ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.add_tap("tap0", "10.78.0.1/24");
    let kernel = guest("hostile_net");
    let unik = common::unik_path();
    let run = |tokens: &[&str]| {
        ns.command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=8",
            "--net:service0=tap0",
            kernel.to_str().unwrap(),
        ])
        .args(tokens)
        .output()
        .expect("run unik")
    };
    // Words: handle, data, len, ret. Handle 1 is `service0`.
    for nr in [6, 7] {
        assert_refused(
            &run(&[&format!("raw={nr}@buf:1,end-16,64,0xffffffff")]),
            &format!("Invalid guest access: gpa={:#x}, sz=64", MEM - 16),
        );
        assert_refused(
            &run(&[&format!("raw={nr}@buf:1,0xffffffffffffffc0,64,0xffffffff")]),
            "Invalid guest access: gpa=0xffffffffffffffc0, sz=64",
        );
        assert_refused(
            &run(&[&format!("raw={nr}@end-16:1")]),
            &format!("Invalid guest access: gpa={:#x}, sz=32", MEM - 16),
        );
    }
    // NET_READ checks the whole buffer it may fill: len = u64::MAX is a fault.
    assert_refused(
        &run(&["raw=7@buf:1,buf,max,0xffffffff"]),
        &format!("Invalid guest access: gpa={:#x}, sz=18446744073709551615", buf("hostile_net")),
    );
    // NET_WRITE refuses a frame longer than MTU + 14 with EINVAL (2) before looking at the
    // buffer; an empty tap answers NET_READ with AGAIN (1). The guest goes on.
    let out = run(&["raw=6@buf:1,buf,max,0xffffffff", "raw=7@buf:1,buf+256,64,0xffffffff"]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert_clean(&out);
    let text = stdout(&out);
    let buf = buf("hostile_net");
    assert!(
        text.contains(&format!("hostile: nr=6 words=0x1,{buf:#x},0xffffffffffffffff,0x2\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("hostile: nr=7 words=0x1,{:#x},0x40,0x1\n", buf + 0x100)),
        "{text}"
    );
}

#[test]
fn test_a_guest_that_breaks_the_net_ring_is_stopped_with_an_error() {
    require_kvm!();
    let ns = NetNs::new();
    // No IPv6 on the tap: its router solicitations would be frames waiting for NET_READ.
    ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.add_tap("tap0", "10.79.0.1/24");
    let kernel = guest("hostile_ring");
    let unik = common::unik_path();
    let run = |attack: &str| {
        ns.command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=8",
            "--net-ring=on",
            "--net:service0=tap0",
            kernel.to_str().unwrap(),
            &format!("ring={attack}"),
        ])
        .output()
        .expect("run unik")
    };
    // The ring sits right above the guest's 8 MiB.
    let ring = MEM;
    for (attack, needle) in [
        (
            "tail",
            "net ring: the guest's entry tail 5000 is 5000 entries past the host's head 0 (the ring holds 1024)".to_string(),
        ),
        ("op", "net ring: entry 0: unknown operation 9".into()),
        (
            "handle",
            "net ring: entry 0: NET_WRITE to handle 0, which is no network device".into(),
        ),
        (
            "gpa",
            format!("net ring: entry 0: Invalid guest access: gpa={:#x}, sz=64", MEM - 16),
        ),
        (
            "into-ring",
            format!("net ring: entry 0: Invalid guest access: gpa={ring:#x}, sz=64"),
        ),
        (
            "long",
            "net ring: entry 0: a frame of 60000 bytes is longer than the device's 1514".into(),
        ),
        (
            "commits",
            "net ring: entry 0: no room for its commit: the guest consumed none of the last 1024".into(),
        ),
        // The ring stays out of reach of the hypercalls' pointers too.
        ("hypercall-into-ring", format!("Invalid guest access: gpa={ring:#x}, sz=64")),
    ] {
        let out = run(attack);
        assert_refused(&out, &needle);
    }
    // A read from a handle that is no network device gets EINVAL in its commit; the guest goes on.
    let out = run("read-handle");
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert_clean(&out);
    assert!(stdout(&out).contains("hostile: ring read ret=2 id=7"), "{}", stdout(&out));
}

// ---- hvt: ports, widths, MMIO ----

/// Hypercall transport: a 4-byte OUT to port 0x500 + nr on x86_64.
#[cfg(target_arch = "x86_64")]
mod transport {
    /// The guest token of a 4-byte hypercall access to slot `nr` (past HALT too).
    pub fn slot(nr: u64) -> String {
        format!("out={:#x}", 0x500 + nr)
    }

    /// Accesses past the hypercalls, with their errors: past HALT, the rest of the window, and
    /// the ring-kick port solo5 uses for its shared ring.
    pub fn strays() -> Vec<(String, String)> {
        [0x509, 0x50f, 0x5ff, 0x600]
            .map(|port| {
                (
                    format!("out={port:#x}"),
                    format!("Invalid guest port access: port={port:#x}, size=4"),
                )
            })
            .to_vec()
    }

    /// Accesses of the right place in the wrong direction or width, with their errors.
    pub fn wrong_ways() -> Vec<(&'static str, &'static str)> {
        vec![
            // A 4-byte IN: hypercalls are OUTs.
            ("in=0x502", "Invalid guest port access: port=0x502, size=4"),
            // `rep outsb`: 1-byte accesses, even four in a row.
            ("outsb=0x502", "Invalid guest port access: port=0x502, size=1"),
        ]
    }

    /// MMIO of an hvt guest, through page tables of the guest's own: guest-physical addresses
    /// with no RAM behind them, just past RAM, and a virtio-mmio window of a Linux-boot VM.
    pub fn mmio() -> Vec<(String, String)> {
        vec![
            (
                "mmio-read=0xd0000000".into(),
                "Invalid guest mmio access: addr=0xd0000000, size=4".into(),
            ),
            (
                "mmio-write=end".into(),
                format!("Invalid guest mmio access: addr={:#x}, size=4", super::MEM),
            ),
            (
                "mmio-write=0xfee00000".into(),
                "Invalid guest mmio access: addr=0xfee00000, size=4".into(),
            ),
        ]
    }
}

/// Hypercall transport: a 4-byte store to 0x1_0000_0000 + (nr << 3) on aarch64, in the GiB of
/// device memory the monitor's page tables map there (an address they do not map faults inside
/// the guest, which has no vectors, and never reaches the monitor).
#[cfg(target_arch = "aarch64")]
mod transport {
    const BASE: u64 = 0x1_0000_0000;

    /// The guest token of a 4-byte hypercall access to slot `nr` (past HALT too).
    pub fn slot(nr: u64) -> String {
        format!("mmio-write={:#x}", BASE + (nr << 3))
    }

    fn refused(addr: u64) -> String {
        format!("Invalid guest mmio access: addr={addr:#x}, size=4")
    }

    /// Stores past the hypercalls, with their errors: past HALT, the rest of the window, the
    /// page after it, and between two slots.
    pub fn strays() -> Vec<(String, String)> {
        [BASE + 0x48, BASE + 0x78, BASE + 0xff8, BASE + 0x1000, BASE + 0x14]
            .map(|addr| (format!("mmio-write={addr:#x}"), refused(addr)))
            .to_vec()
    }

    /// Accesses of the right place in the wrong direction, with their errors (the wrong widths
    /// are tests/faults.rs's `bad-width` tokens).
    pub fn wrong_ways() -> Vec<(&'static str, &'static str)> {
        vec![("mmio-read=0x100000010", "Invalid guest mmio access: addr=0x100000010, size=4")]
    }

    /// MMIO of an hvt guest elsewhere in the device GiB: reads and writes are faults.
    pub fn mmio() -> Vec<(String, String)> {
        [BASE + 0x2000_0000, BASE + 0x3fff_fffc]
            .iter()
            .flat_map(|&addr| {
                [
                    (format!("mmio-read={addr:#x}"), refused(addr)),
                    (format!("mmio-write={addr:#x}"), refused(addr)),
                ]
            })
            .collect()
    }
}

#[test]
fn test_every_reserved_or_unregistered_hypercall_port_is_refused() {
    require_kvm!();
    // Number 0 is reserved; 4-7 are registered only with a device of their kind.
    for nr in [0, 4, 5, 6, 7] {
        assert_refused(&faults(&[&transport::slot(nr)]), &format!("Invalid guest hypercall: num={nr}"));
    }
    for (token, error) in transport::strays() {
        assert_refused(&faults(&[&token]), &error);
    }
    // With only a block device, the net calls stay unregistered (and the other way round).
    let dir = tempdir();
    let img = disk(&dir, "d.img", 4096, 0);
    let blk = format!("--block:storage={}", img.display());
    for nr in [6, 7] {
        assert_refused(
            &hvt("hostile", &[&blk], &[&transport::slot(nr)]),
            &format!("Invalid guest hypercall: num={nr}"),
        );
    }
}

#[test]
fn test_wrong_widths_and_directions_on_hypercall_ports_are_refused() {
    require_kvm!();
    for (token, error) in transport::wrong_ways() {
        assert_refused(&faults(&[token]), error);
    }
}

#[test]
fn test_any_mmio_access_of_an_hvt_guest_is_a_fault() {
    require_kvm!();
    for (token, error) in transport::mmio() {
        assert_refused(&faults(&[&token]), &error);
    }
}

// ---- hvt: floods and endless guests ----

/// Waits for `child` and returns its status and peak resident set size (KiB), from wait4(2).
fn wait_with_peak_rss(child: &Child) -> (std::process::ExitStatus, i64) {
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    (std::process::ExitStatus::from_raw(status), usage.ru_maxrss)
}

#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_with_peak_rss
fn test_a_console_flood_keeps_the_monitors_memory_bounded() {
    require_kvm!();
    // 200 MiB through PUTS in chunks of 96 MiB: a monitor that buffered a chunk (or the
    // output) would grow past the bound; one that streams stays near its usual size.
    let kernel = guest("faults");
    let mut child = common::unik()
        .args(["boot", "--mem=128", kernel.to_str().unwrap(), "flood=200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut total, mut tail) = (0u64, Vec::new());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n as u64;
                    tail.extend_from_slice(&buf[..n]);
                    let keep = tail.len().saturating_sub(4096);
                    tail.drain(..keep);
                }
            }
        }
        (total, String::from_utf8_lossy(&tail).into_owned())
    });
    let mut err = child.stderr.take().unwrap();
    let (status, peak_kib) = wait_with_peak_rss(&child);
    let (total, tail) = reader.join().unwrap();
    let mut err_text = String::new();
    err.read_to_string(&mut err_text).unwrap();
    assert_eq!(status.code(), Some(3), "status {status:?}; stderr: {err_text}; output ends: {tail}");
    assert!(
        tail.contains("hostile: flooded 200 MiB\n") && tail.contains("faults: still running"),
        "{tail}"
    );
    assert!(total > 200 << 20, "only {total} bytes of console output");
    assert!(!err_text.contains("panicked") && !err_text.contains("seccomp"), "{err_text}");
    assert!(peak_kib > 0 && peak_kib < 64 << 10, "the monitor's peak RSS was {peak_kib} KiB");
}

#[test]
fn test_sigterm_stops_a_guest_flooding_a_console_nobody_reads() {
    require_kvm!();
    // The console is a pipe the test never reads: the monitor blocks writing to it (PUTS, or
    // the UART's transmitter on vCPU 0). A stop signal must still end it: a write interrupted
    // by the signal gives up.
    let faults = guest("faults");
    #[allow(unused_mut)] // the Linux-boot run is x86_64-only
    let mut runs = vec![vec!["boot", "--mem=128", faults.to_str().unwrap(), "flood=200"]];
    // The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
    // arm64 Image, tested by tests/linux_arm64.rs.
    #[cfg(target_arch = "x86_64")]
    let virtio = guest("virtio");
    #[cfg(target_arch = "x86_64")]
    runs.push(vec!["boot", "--mem=16", "--cpus=2", virtio.to_str().unwrap(), "serial-flood=4096"]);
    for args in runs {
        let mut child = common::unik()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Wait until it is blocked on the full pipe (the minute is a liveness deadline).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe")) {
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("{args:?}: the monitor never blocked on its console");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGTERM) }, 0);
        let status = wait_or_kill(&mut child, 30, "SIGTERM while the console is full");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}: status {status:?}; stderr: {err}");
        assert!(err.contains("Exiting on signal 15"), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("seccomp"), "{args:?}: {err}");
    }
}

/// Starts `unik boot --mem=8 faults spin` with `TMPDIR` set to `tmp` and waits until the guest
/// spins.
fn spinning(tmp: &std::path::Path) -> (Child, std::thread::JoinHandle<()>) {
    let kernel = guest("faults");
    let mut child = common::unik()
        .args(["boot", "--mem=8", kernel.to_str().unwrap(), "spin"])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the guest ended before spinning").unwrap();
        if line == "hostile: spinning" {
            break;
        }
    }
    // Keep draining, so the pipe never fills.
    let drain = std::thread::spawn(move || for _ in lines {});
    (child, drain)
}

/// Waits for `child` to end, at most `secs` seconds (then kills it and fails): a liveness
/// deadline against a monitor that never ends, not a speed check.
fn wait_or_kill(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: the monitor did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_sigterm_stops_a_spinning_hvt_guest() {
    require_kvm!();
    let tmp = tempdir();
    let (mut child, drain) = spinning(tmp.path());
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) }, 0);
    let status = wait_or_kill(&mut child, 30, "SIGTERM");
    drain.join().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "status {status:?}; stderr: {err}");
    assert!(err.contains("Exiting on signal 15"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("seccomp"), "{err}");
}

/// Pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Field 4, after the parenthesised command name.
        let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn test_sigkill_of_a_spinning_hvt_guest_leaves_nothing_behind() {
    require_kvm!();
    let tmp = tempdir();
    let (mut child, drain) = spinning(tmp.path());
    let pid = child.id();
    // While it runs: one process, no children, nothing in its temporary directory.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(children_of(pid), Vec::<u32>::new());
    child.kill().unwrap();
    let status = wait_or_kill(&mut child, 30, "SIGKILL");
    drain.join().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} is still there"
    );
    assert_eq!(children_of(pid), Vec::<u32>::new(), "processes left behind by {pid}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

// ---- Linux-boot guests: a hostile virtio driver ----

/// Runs the `virtio` guest with a 64 KiB disk of 'D's and `tokens`; it must survive: status 0,
/// a valid read after the attack, `virtio: done`. Returns stdout and the warning lines.
// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
fn virtio_survives(tokens: &[&str]) -> (String, Vec<String>) {
    let dir = tempdir();
    let img = disk(&dir, "d.img", 64 << 10, b'D');
    let kernel = guest("virtio");
    let mut args = vec!["--mem=16".to_string(), format!("--block:d={}", img.display())];
    args.push(kernel.display().to_string());
    args.extend(tokens.iter().map(|t| (*t).to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::boot(&args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{tokens:?}: stdout: {text} stderr: {}", stderr(&out));
    assert_clean(&out);
    assert!(
        text.contains("virtio-hostile: read after status=0 first=DDDDDDDD\n"),
        "{tokens:?}: {text}"
    );
    assert!(text.contains("virtio: done\n"), "{tokens:?}: {text}");
    let warnings = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("unik: warn"))
        .map(str::to_string)
        .collect();
    (text, warnings)
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_malformed_virtio_chains_are_answered_and_the_device_goes_on() {
    require_kvm!();
    // RAM is 16 MiB: 0xffff00 + 512 runs past its end.
    for (tokens, want) in [
        // A chain that loops, or runs through every descriptor and back: cut at the queue
        // size, it has no device-writable status byte, so it comes back used with length 0.
        (&["attack=desc-loop"][..], "virtio-hostile: desc-loop used len=0 status=255"),
        (&["attack=chain-long"], "virtio-hostile: chain-long used len=0 status=255"),
        (&["attack=desc-next-oob"], "virtio-hostile: desc-next-oob used len=0 status=255"),
        // A header or data buffer outside RAM (or straddling its end): IOERR.
        (&["attack=desc-oob"], "virtio-hostile: desc-oob used len=1 status=1"),
        (&["attack=data-oob", "at=0xffff00"], "virtio-hostile: data-oob used len=1 status=1"),
        // Nowhere to write the status: returned with length 0.
        (&["attack=status-oob"], "virtio-hostile: status-oob used len=0 status=255"),
    ] {
        let (text, warnings) = virtio_survives(tokens);
        assert!(text.contains(&format!("{want}\n")), "{tokens:?}: {text}");
        // Chain mistakes are logged at debug level only.
        assert_eq!(warnings, Vec::<String>::new(), "{tokens:?}");
    }
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_an_avail_index_far_ahead_is_ignored_with_one_warning() {
    require_kvm!();
    // 10000 notifications of a ring whose avail index is 1000 ahead: nothing is used, and the
    // warning is logged once (then at debug level).
    let (text, warnings) = virtio_survives(&["attack=avail-ahead", "times=10000"]);
    assert!(text.contains("virtio-hostile: avail-ahead x10000 ignored\n"), "{text}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("the driver's avail ring is invalid"), "{warnings:?}");
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_rings_outside_ram_and_bad_queue_sizes_make_the_device_need_a_reset() {
    require_kvm!();
    // DEVICE_NEEDS_RESET (0x40) instead of DRIVER_OK, every one of 10000 times, one warning.
    let (text, warnings) = virtio_survives(&["attack=used-oob", "times=10000"]);
    assert!(text.contains("virtio-hostile: used-oob x10000 needs-reset=10000\n"), "{text}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("queue 0 is not valid"), "{warnings:?}");
    // A used ring straddling the end of RAM.
    let (text, _) = virtio_survives(&["attack=used-oob", "at=0xfffff0"]);
    assert!(text.contains("virtio-hostile: used-oob x1 needs-reset=1\n"), "{text}");
    // QueueNum zero, not a power of two, or above QueueNumMax (256).
    for size in [0, 3, 512] {
        let (text, warnings) = virtio_survives(&["attack=qsize", &format!("size={size}")]);
        assert!(text.contains(&format!("virtio-hostile: qsize={size} status=0x4b\n")), "{text}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_notifications_of_queues_not_running_or_not_there_are_ignored() {
    require_kvm!();
    // Before DRIVER_OK the queue is not served; QueueNotify 1, 7, 0xffff and u32::MAX name no
    // queue; the request waiting is served on the next valid notification.
    let (text, warnings) = virtio_survives(&["attack=notify-bad"]);
    assert!(text.contains("virtio-hostile: notify-bad early=0 late=0 then=1\n"), "{text}");
    assert_eq!(warnings, Vec::<String>::new());
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_register_accesses_of_the_wrong_width_are_ignored() {
    require_kvm!();
    // 1-, 2- and 8-byte writes of 0 to Status (a reset if taken), an unaligned write, a write
    // to the configuration space: the device stays as it was; such reads see zero.
    let (text, warnings) = virtio_survives(&["attack=mmio-widths"]);
    assert!(
        text.contains("virtio-hostile: mmio-widths status 0xf -> 0xf reads=0x0,0x0,0x0,0x0 capacity=128\n"),
        "{text}"
    );
    assert_eq!(warnings, Vec::<String>::new());
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_wide_and_stray_port_accesses_are_survived() {
    require_kvm!();
    // The UART takes the low byte of a wide write ("W", then a newline); accesses that run
    // past a device's ports, or reach none, read all ones and are dropped; nothing resets or
    // powers off the machine.
    let (text, warnings) = virtio_survives(&["port-widths", "attack=desc-loop"]);
    assert!(text.contains("\nW\n"), "{text}");
    assert!(
        text.contains("virtio-hostile: port-widths lsr=0x60 past=0xffffffff debug=0xffffffff none=0xffffffff\n"),
        "{text}"
    );
    assert_eq!(warnings, Vec::<String>::new());
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_with_peak_rss
fn test_a_serial_console_flood_arrives_whole_with_bounded_memory() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 64 << 10, b'D');
    let kernel = guest("virtio");
    let mut child = common::unik()
        .args([
            "boot",
            "--mem=16",
            &format!("--block:d={}", img.display()),
            kernel.to_str().unwrap(),
            "serial-flood=128",
            "attack=desc-loop",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let mut err = child.stderr.take().unwrap();
    let (status, peak_kib) = wait_with_peak_rss(&child);
    let text = reader.join().unwrap();
    let mut err_text = String::new();
    err.read_to_string(&mut err_text).unwrap();
    assert_eq!(status.code(), Some(0), "status {status:?}; stderr: {err_text}");
    let line = format!("{}\n", "x".repeat(63));
    assert_eq!(text.matches(&line).count(), 128 * 16, "stderr: {err_text}");
    assert!(
        text.contains("virtio-hostile: flooded 128 KiB\nvirtio-hostile: desc-loop used"),
        "{text}"
    );
    assert!(!err_text.contains("panicked") && !err_text.contains("seccomp"), "{err_text}");
    assert!(peak_kib > 0 && peak_kib < 64 << 10, "the monitor's peak RSS was {peak_kib} KiB");
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_malformed_virtio_net_transmissions_are_dropped() {
    require_kvm!();
    let ns = NetNs::new();
    // No IPv6 on the tap: nothing but the guest's frames crosses it.
    ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    ns.add_tap("tap0", "10.80.0.1/24");
    let kernel = guest("virtio");
    let unik = common::unik_path();
    let received = || -> u64 {
        let out = ns.exec_ok(&["cat", "/sys/class/net/tap0/statistics/rx_packets"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("rx_packets")
    };
    // Each attack's chain comes back used with length 0 (or, ahead of the ring, is ignored
    // without a warning); only the one valid frame after it reaches the tap.
    for (tokens, want) in [
        (&["net-attack=tx-oob"][..], "virtio-hostile: tx-oob used len=0"),
        (&["net-attack=tx-write-only"], "virtio-hostile: tx-write-only used len=0"),
        (&["net-attack=tx-huge"], "virtio-hostile: tx-huge used len=0"),
        (
            &["net-attack=tx-avail-ahead", "times=10000"],
            "virtio-hostile: tx-avail-ahead x10000 ignored",
        ),
    ] {
        let before = received();
        let out = ns
            .command(&[
                unik.to_str().unwrap(),
                "boot",
                "--mem=16",
                "--net:eth0=tap0",
                kernel.to_str().unwrap(),
            ])
            .args(tokens)
            .output()
            .expect("run unik");
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{tokens:?}: stdout: {text} stderr: {}", stderr(&out));
        assert_clean(&out);
        assert!(text.contains(&format!("{want}\n")), "{tokens:?}: {text}");
        assert!(text.contains("virtio-hostile: tx after used=1\n"), "{tokens:?}: {text}");
        assert!(!stderr(&out).contains("unik: warn"), "{tokens:?}: {}", stderr(&out));
        assert_eq!(received() - before, 1, "{tokens:?}: frames that reached the tap");
    }
}
