//! Debugging a guest: `unik boot --gdb PORT` driven by the real gdb in batch mode (a breakpoint
//! on a function, single steps, reading a variable, the guest's exit) and by a raw remote
//! protocol client (Ctrl-C stops a guest that never exits to the monitor; the monitor stays
//! confined while gdb is attached); `--dumpcore DIR` writes a core that gdb opens with the guest
//! (registers, backtrace) when the guest aborts or faults.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::guests::debug_guest;
use common::{boot, stderr, stdout};

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `unik boot --gdb PORT ARGS…` started, once it says it waits for gdb.
fn start_debugged(port: u16, args: &[&str]) -> Child {
    let mut child = common::unik()
        .args(["boot", "--mem=8", "--gdb", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains(&format!("waiting for gdb to connect on 127.0.0.1:{port}")), "{line}");
    // The rest of stderr is drained, so the monitor never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

/// Whether the real gdb is here: the emulated arm64 host of scripts/test-aarch64.sh has none, so
/// there the tests that drive it record themselves as not run; the raw-protocol test runs
/// everywhere. scripts/setup.sh installs gdb, so on the x86_64 hosts they always run.
fn have_gdb(test: &str) -> bool {
    let ok = Command::new("gdb").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        common::report_not_run(test, "no gdb on this host (the emulated arm64 host has none)");
    }
    ok
}

/// gdb in batch mode on `guest` (and `core`, if given), running `commands`.
fn gdb(guest: &Path, core: Option<&Path>, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "set confirm off"]).arg(guest);
    if let Some(core) = core {
        cmd.arg(core);
    }
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd.output().expect("run gdb (apt-get install gdb)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `unik boot --mem=8 --dumpcore DIR GUEST ARGS…`.
fn boot_dumping(dir: &Path, guest: &Path, args: &[&str]) -> Output {
    let mut argv = vec!["--mem=8", "--dumpcore", dir.to_str().unwrap(), guest.to_str().unwrap()];
    argv.extend_from_slice(args);
    boot(&argv)
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn test_gdb_breaks_steps_reads_and_sees_the_exit() {
    require_kvm!();
    if !have_gdb("test_gdb_breaks_steps_reads_and_sees_the_exit") {
        return;
    }
    let guest = debug_guest("debugee");
    let port = free_port();
    let child = start_debugged(port, &[guest.to_str().unwrap()]);
    let target = format!("target remote :{port}");
    let log = gdb(
        &guest,
        None,
        &[
            &target,
            // Stopped at the entry point before the first instruction.
            "info registers rip",
            "break gdb_tick",
            "continue",
            "info registers rip",
            "continue",
            // The first call added 1; the second is at its first instruction.
            "print debugee::GDB_COUNTER",
            "step",
            "print n",
            "stepi",
            "delete",
            "continue",
        ],
    );
    let out = finish(child);
    assert!(log.contains("<debugee::_start>"), "{log}");
    assert!(log.contains("Breakpoint 1 at"), "{log}");
    assert_eq!(log.matches("Breakpoint 1, ").count(), 2, "{log}");
    assert!(log.contains("<debugee::gdb_tick>"), "{log}");
    assert!(log.contains("$1 = 1"), "{log}");
    assert!(log.contains("$2 = 2"), "{log}");
    assert!(log.contains("[Inferior 1 (process 1) exited normally]"), "{log}");
    // The guest ran to its end as without the debugger.
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(stdout(&out), "debugee: counter 6\n");
}

/// Sends one remote-protocol packet and returns the reply's payload (acknowledging it).
fn packet(conn: &mut TcpStream, data: &str) -> String {
    let sum = data.bytes().fold(0u8, u8::wrapping_add);
    write!(conn, "${data}#{sum:02x}").unwrap();
    reply(conn)
}

/// Reads the next packet (skipping acks) and acknowledges it.
fn reply(conn: &mut TcpStream) -> String {
    let mut byte = [0u8];
    loop {
        conn.read_exact(&mut byte).unwrap();
        if byte[0] == b'$' {
            break;
        }
    }
    let mut payload = Vec::new();
    loop {
        conn.read_exact(&mut byte).unwrap();
        if byte[0] == b'#' {
            break;
        }
        payload.push(byte[0]);
    }
    let mut sum = [0u8; 2];
    conn.read_exact(&mut sum).unwrap();
    conn.write_all(b"+").unwrap();
    String::from_utf8(payload).unwrap()
}

/// A packet's payload with the protocol's run-length encoding (`X*N`: N - 29 more X) undone.
fn run_length_decoded(payload: &str) -> String {
    let mut out = String::new();
    let mut chars = payload.chars();
    while let Some(c) = chars.next() {
        if c == '*' {
            let count = chars.next().unwrap() as usize - 29;
            let last = out.chars().last().unwrap();
            out.extend(std::iter::repeat_n(last, count));
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn test_ctrl_c_stops_a_spinning_guest_and_the_monitor_stays_confined() {
    require_kvm!();
    let guest = debug_guest("debugee");
    let port = free_port();
    let child = start_debugged(port, &[guest.to_str().unwrap(), "spin"]);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Stopped at the entry, with a SIGTRAP.
    let stop = packet(&mut conn, "?");
    assert!(stop.starts_with("T05") || stop.starts_with("S05"), "{stop}");
    // The vCPU thread serves gdb under its seccomp filter, without privileges.
    common::assert_confined(child.id());
    // Continue: the guest spins in gdb_tick without ever exiting to the monitor; Ctrl-C must
    // take it out of KVM_RUN and report SIGINT.
    let sum = b'c';
    write!(conn, "$c#{sum:02x}").unwrap();
    conn.write_all(&[0x03]).unwrap();
    let stop = reply(&mut conn);
    assert!(stop.starts_with("T02") || stop.starts_with("S02"), "{stop}");
    // Registers are readable there: the instruction pointer is in the guest's text (1 MiB up).
    // It is register 16 of gdb's x86_64 layout (after the 16 general registers), 32 of its
    // aarch64 one (after x0-x30 and sp).
    let regs = run_length_decoded(&packet(&mut conn, "g"));
    let pc = if cfg!(target_arch = "x86_64") { 16 } else { 32 };
    let rip = u64::from_str_radix(&regs[pc * 16..(pc + 1) * 16], 16).unwrap().swap_bytes();
    assert!((0x10_0000..0x20_0000).contains(&rip), "rip {rip:#x}");
    // gdb kills the guest: the monitor ends (status 1: stopped, not halted).
    write!(conn, "$k#6b").unwrap();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn test_dumpcore_on_abort_opens_in_gdb_with_the_backtrace() {
    require_kvm!();
    if !have_gdb("test_dumpcore_on_abort_opens_in_gdb_with_the_backtrace") {
        return;
    }
    let guest = debug_guest("debugee");
    let dir = common::tempdir();
    let out = boot_dumping(dir.path(), &guest, &["abort"]);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    let cores: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cores.len(), 1, "{cores:?}");
    let core = &cores[0];
    let name = core.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("core.debugee."), "{name}");
    assert!(stderr(&out).contains("guest core written to"), "{}", stderr(&out));
    let log = gdb(&guest, Some(core), &["info registers rip", "bt"]);
    assert!(log.contains("unik_test_guests::halt_with_cookie"), "{log}");
    for frame in [
        "debugee::gdb_crash_inner",
        "debugee::gdb_crash_outer",
        "debugee::main",
        "debugee::_start",
    ] {
        assert!(log.contains(frame), "{frame} missing:\n{log}");
    }
    // Only memory the guest used: far less than its 8 MiB.
    let size = std::fs::metadata(core).unwrap().len();
    assert!(size < 1 << 20, "core of {size} bytes");
}

#[test]
fn test_dumpcore_on_a_fault_shows_where() {
    require_kvm!();
    if !have_gdb("test_dumpcore_on_a_fault_shows_where") {
        return;
    }
    let guest = debug_guest("debugee");
    let dir = common::tempdir();
    let out = boot_dumping(dir.path(), &guest, &["fault"]);
    common::assert_fails_with(&out, 1, "triple fault");
    let core = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    let log = gdb(&guest, Some(&core), &["info registers rip", "bt"]);
    assert!(log.contains("<debugee::gdb_crash_inner"), "{log}");
    assert!(log.contains("debugee::gdb_crash_outer"), "{log}");
    // A normal end writes nothing.
    let clean = common::tempdir();
    let out = boot_dumping(clean.path(), &guest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(clean.path()).unwrap().count(), 0);
}

#[test]
fn test_bad_debug_options_are_clear_errors() {
    let guest = debug_guest("debugee");
    let guest = guest.to_str().unwrap();
    let out = boot(&["--dumpcore", "/nonexistent/cores", guest]);
    common::assert_fails_with(&out, 1, "--dumpcore: cannot open directory /nonexistent/cores");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = boot(&["--gdb", &port, guest]);
    common::assert_fails_with(&out, 1, &format!("gdb: cannot listen on 127.0.0.1:{port}"));
    let out = boot(&["--gdb", "0", guest]);
    common::assert_fails_with(&out, 1, "invalid value '0' for '--gdb <PORT>'");
}

// The PC's Linux-boot guest (PVH entry); on aarch64 that guest boots as an arm64 Image.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_gdb_debugs_a_linux_boot_guest() {
    require_kvm!();
    if !have_gdb("test_gdb_debugs_a_linux_boot_guest") {
        return;
    }
    let guest = debug_guest("virtio");
    let port = free_port();
    let child = start_debugged(port, &[guest.to_str().unwrap(), "exit=5"]);
    let target = format!("target remote :{port}");
    let log = gdb(
        &guest,
        None,
        &[
            &target,
            "info registers rip",
            "break guest_entry",
            "continue",
            "print kind",
            "next",
            "bt",
            "delete",
            "continue",
        ],
    );
    let out = finish(child);
    // Stopped at the PVH entry (32-bit), then in the 64-bit Rust code the guest pages in.
    assert!(log.contains("<pvh_start32>"), "{log}");
    assert!(log.contains("Breakpoint 1, virtio::guest_entry (kind=1"), "{log}");
    assert!(log.contains("$1 = 1"), "{log}");
    assert!(log.contains("pvh_start64"), "{log}");
    assert!(log.contains("[Inferior 1 (process 1) exited with code 05]"), "{log}");
    assert_eq!(out.status.code(), Some(5), "{log}");
}

// The PC's Linux-boot guest, as above (the refusals are the same code on both).
#[cfg(target_arch = "x86_64")]
#[test]
fn test_linux_boot_guests_take_gdb_with_one_vcpu_and_no_dumpcore() {
    require_kvm!();
    let guest = debug_guest("virtio");
    let guest = guest.to_str().unwrap();
    let out = boot(&["--cpus=2", "--gdb", &free_port().to_string(), guest]);
    common::assert_fails_with(&out, 1, "--gdb debugs a Linux-boot guest with one vCPU (--cpus 1)");
    let out = boot(&["--dumpcore", "/tmp", guest]);
    common::assert_fails_with(&out, 1, "--dumpcore writes cores of hvt guests only");
}
