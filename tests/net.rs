//! Network devices: frames through a tap inside a namespace the test creates; `ping` gets answers
//! from the guest. Also the tap-by-fd path and attach errors.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Output, Stdio};

use common::guests::guest;
use common::netns::NetNs;
use common::{assert_fails_with, stderr, stdout};

fn ping(ns: &NetNs, addr: &str, count: u32) -> Output {
    ns.command(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "5", addr])
        .output()
        .expect("run ping")
}

/// A running unik whose guest has printed its `ready` line (so no ping races the boot).
struct Running {
    child: Child,
    ready: String,
    rest: std::thread::JoinHandle<String>,
}

fn start(mut child: Child) -> Running {
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut ready = String::new();
    while !ready.lines().any(|l| l.ends_with(" ready")) {
        let n = reader.read_line(&mut ready).expect("read guest output");
        assert!(n > 0, "guest did not get ready: {ready:?}");
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        rest
    });
    Running { child, ready, rest }
}

impl Running {
    /// Waits for unik; stdout holds everything the guest printed.
    fn wait(self) -> Output {
        let mut out = self.child.wait_with_output().expect("wait for unik");
        out.stdout = format!("{}{}", self.ready, self.rest.join().unwrap_or_default()).into_bytes();
        out
    }
}

#[test]
fn test_guest_answers_ping_through_a_tap() {
    require_kvm!();
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.77.0.1/24");
    let kernel = guest("net");
    let unik = common::unik_path();
    let child = ns
        .command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=8",
            "--net:service0=tap0",
            "--net-mac:service0=02:00:00:00:00:99",
        ])
        .args([kernel.to_str().unwrap(), "ip=10.77.0.2", "count=4", "timeout=60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guest = start(child);
    let p = ping(&ns, "10.77.0.2", 3);
    // The guest still runs (it waits for a fourth echo), so the tap has carrier and the ARP entry
    // it answered with is still there.
    let neigh = String::from_utf8_lossy(&ns.exec_ok(&["ip", "neigh", "show", "10.77.0.2"]).stdout).into_owned();
    let last = ping(&ns, "10.77.0.2", 1);
    let out = guest.wait();
    assert!(
        p.status.success() && last.status.success(),
        "ping failed: {} / guest: {} {}",
        String::from_utf8_lossy(&p.stdout),
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("mac=02:00:00:00:00:99"), "stdout: {}", stdout(&out));
    assert!(stdout(&out).contains("net: answered 4 pings"), "stdout: {}", stdout(&out));
    assert!(neigh.contains("02:00:00:00:00:99"), "ARP entry: {neigh}");
}

/// Runs the `net` guest answering `count` pings on a tap, with `flags` before the kernel and
/// `tokens` after it; returns its output and the pings' success.
fn ping_guest(flags: &[&str], tokens: &[&str], count: u32) -> (Output, bool) {
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.77.0.1/24");
    let kernel = guest("net");
    let unik = common::unik_path();
    let child = ns
        .command(&[unik.to_str().unwrap(), "boot", "--mem=8", "--net:service0=tap0"])
        .args(flags)
        .arg(kernel.to_str().unwrap())
        .args(["ip=10.77.0.2", &format!("count={count}"), "timeout=60"])
        .args(tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guest = start(child);
    let p = ping(&ns, "10.77.0.2", count);
    (guest.wait(), p.status.success())
}

#[test]
fn test_guest_answers_ping_through_the_net_ring() {
    require_kvm!();
    let (out, pinged) = ping_guest(&["--net-ring=on"], &[], 3);
    assert!(pinged, "ping failed; guest: {} {}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    // Offered and used: reads and writes went through the ring.
    assert!(stdout(&out).contains("io=ring ready"), "stdout: {}", stdout(&out));
    assert!(stdout(&out).contains("net: answered 3 pings (io=ring,"), "stdout: {}", stdout(&out));
}

#[test]
fn test_a_guest_that_ignores_the_offered_ring_uses_the_hypercalls() {
    require_kvm!();
    let (out, pinged) = ping_guest(&["--net-ring=on"], &["no-ring"], 2);
    assert!(pinged, "ping failed; guest: {} {}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("net: answered 2 pings (io=hypercalls,"),
        "stdout: {}",
        stdout(&out)
    );
}

#[test]
fn test_without_the_ring_nothing_is_offered() {
    require_kvm!();
    // Off (the default): the guest finds no ring in its boot info.
    let (out, pinged) = ping_guest(&["--net-ring=off"], &[], 1);
    assert!(pinged, "ping failed; guest: {} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("io=hypercalls ready"), "stdout: {}", stdout(&out));
    let out = common::boot(&["--net-ring=maybe", guest("net").to_str().unwrap()]);
    assert_fails_with(&out, 1, "'maybe': expected on or off");
}

#[test]
fn test_frames_sent_through_the_ring_all_reach_the_tap() {
    require_kvm!();
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.77.0.1/24");
    let kernel = guest("net");
    let unik = common::unik_path();
    let rx = || -> u64 {
        String::from_utf8_lossy(&ns.exec_ok(&["cat", "/sys/class/net/tap0/statistics/rx_packets"]).stdout)
            .trim()
            .parse()
            .unwrap()
    };
    for size in ["60", "1514"] {
        let before = rx();
        let out = ns
            .command(&[
                unik.to_str().unwrap(),
                "boot",
                "--mem=8",
                "--net-ring=on",
                "--net:service0=tap0",
                kernel.to_str().unwrap(),
                "net-tx=3000",
                &format!("size={size}"),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("net: sent 3000 frames (io=ring,"), "{}", stdout(&out));
        // Only the guest sends on this tap (IPv6 traffic goes the other way).
        assert!(rx() - before >= 3000, "size {size}: {} frames arrived", rx() - before);
    }
}

#[test]
fn test_tap_passed_as_an_open_fd() {
    require_kvm!();
    let ns = NetNs::new();
    let tap = format!("ukfd{}", std::process::id() % 100_000);
    // Created by unik's own code, in the caller's namespace (left down: brought up below).
    let (fd, _) = vmm::host::tap::create(&tap, 1500, false).unwrap();
    // The fd stays attached to the tap when the interface moves into the test's namespace.
    let out = std::process::Command::new("ip")
        .args(["link", "set", &tap, "netns", &ns.name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ns.exec_ok(&["ip", "addr", "add", "10.78.0.1/24", "dev", &tap]);
    // Not the default, and set where the monitor cannot look the interface up by name: the MTU
    // must be asked of the fd.
    ns.exec_ok(&["ip", "link", "set", &tap, "mtu", "1400"]);
    ns.exec_ok(&["ip", "link", "set", &tap, "up"]);
    let kernel = guest("net");
    let raw = fd.as_raw_fd();
    let mut cmd = common::unik();
    cmd.args([
        "boot",
        "--mem=8",
        "--net:service0=@3",
        kernel.to_str().unwrap(),
        "ip=10.78.0.2",
        "count=2",
        "timeout=60",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: between fork and exec only dup2(2) and fcntl(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep FD_CLOEXEC, so clear it explicitly in that case.
            let ok = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(raw, 3) == 3
            };
            if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let child = cmd.spawn().unwrap();
    drop(fd);
    let guest = start(child);
    let p = ping(&ns, "10.78.0.2", 2);
    let out = guest.wait();
    assert!(
        p.status.success(),
        "ping failed: {} / guest: {} {}",
        String::from_utf8_lossy(&p.stdout),
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("mtu=1400"), "stdout: {}", stdout(&out));
}

#[test]
fn test_missing_interface_is_refused() {
    let ns = NetNs::new();
    let kernel = guest("net");
    let unik = common::unik_path();
    let out = ns
        .command(&[unik.to_str().unwrap(), "boot", "--net:service0=nosuchtap", kernel.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, 1, "Could not attach interface");
    assert!(stderr(&out).contains("nosuchtap"), "{}", stderr(&out));
}

#[test]
fn test_interface_that_is_down_is_refused() {
    let ns = NetNs::new();
    ns.exec_ok(&["ip", "tuntap", "add", "dev", "tapdown", "mode", "tap"]);
    let kernel = guest("net");
    let unik = common::unik_path();
    let out = ns
        .command(&[unik.to_str().unwrap(), "boot", "--net:service0=tapdown", kernel.to_str().unwrap()])
        .output()
        .unwrap();
    assert_fails_with(&out, 1, "Could not attach interface");
    assert!(ns.links().contains("tapdown"), "the monitor removed a tap it did not create");
}

#[test]
fn test_fd_that_is_not_a_tap_is_refused() {
    let kernel = guest("net");
    let out = common::unik()
        .args(["boot", "--net:service0=@0", kernel.to_str().unwrap()])
        .stdin(std::fs::File::open("/dev/null").unwrap())
        .output()
        .unwrap();
    assert_fails_with(&out, 1, "Could not attach interface");
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_virtio_net_guest_answers_ping_through_a_vnet_tap() {
    require_kvm!();
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.79.0.1/24");
    let kernel = guest("virtio");
    let unik = common::unik_path();
    let child = ns
        .command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=16",
            "--net:eth0=tap0",
            "--net-mac:eth0=02:00:00:00:00:42",
        ])
        .args([kernel.to_str().unwrap(), "ip=10.79.0.2", "pings=3", "timeout=60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guest = start(child);
    assert!(guest.ready.contains("virtio-net: mac=02:00:00:00:00:42 ready"), "{}", guest.ready);
    let p = ping(&ns, "10.79.0.2", 3);
    let out = guest.wait();
    assert!(p.status.success(), "ping: {}", String::from_utf8_lossy(&p.stdout));
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("virtio-net: answered 3 pings"), "{}", stdout(&out));
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_two_virtio_nics_each_with_its_mac() {
    require_kvm!();
    use std::sync::mpsc;
    let ns = NetNs::new();
    ns.add_tap("tap0", "10.81.0.1/24");
    ns.add_tap("tap1", "10.82.0.1/24");
    let kernel = guest("virtio");
    let unik = common::unik_path();
    let mut child = ns
        .command(&[
            unik.to_str().unwrap(),
            "boot",
            "--mem=16",
            "--net:eth0=tap0",
            "--net-mac:eth0=02:00:00:00:00:a0",
            "--net:eth1=tap1",
            "--net-mac:eth1=02:00:00:00:00:a1",
        ])
        .args([kernel.to_str().unwrap(), "ip=10.81.0.2", "ip2=10.82.0.2", "pings=2", "timeout=60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let mut wait_for = |want: &str| {
        while !text.contains(want) {
            match rx.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(line) => text.push_str(&(line + "\n")),
                Err(_) => panic!("no {want:?} from the guest: {text}"),
            }
        }
    };
    // The guest serves the cards one after the other, each under the MAC it was configured with.
    wait_for("virtio-net: mac=02:00:00:00:00:a0 ready");
    let p = ping(&ns, "10.81.0.2", 2);
    assert!(p.status.success(), "ping eth0: {}", String::from_utf8_lossy(&p.stdout));
    wait_for("virtio-net: mac=02:00:00:00:00:a1 ready");
    let p = ping(&ns, "10.82.0.2", 2);
    assert!(p.status.success(), "ping eth1: {}", String::from_utf8_lossy(&p.stdout));
    wait_for("virtio: done");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert_eq!(text.matches("virtio-net: answered 2 pings").count(), 2, "{text}");
    assert!(
        text.contains("virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"),
        "{text}"
    );
}

#[test]
fn test_a_solo5_hvt_link_boots_guests_with_solo5_hvts_options() {
    require_kvm!();
    // A link named solo5-hvt is a drop-in for solo5-hvt: its spelling of the options
    // (`--block:NAME=PATH`, `--net:NAME=IFACE`, `--net-mac:NAME=MAC`) attaches the devices.
    let dir = common::tempdir();
    let solo5_hvt = dir.path().join("solo5-hvt");
    std::os::unix::fs::symlink(common::unik_path(), &solo5_hvt).unwrap();
    let img = common::disk(&dir, "d.img", 1 << 20, 0);
    let out = std::process::Command::new(&solo5_hvt)
        .args(["--mem=8", &format!("--block:storage={}", img.display())])
        .arg(guest("blk"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("blk: ok capacity=1048576 block_size=512"),
        "stdout: {}",
        stdout(&out)
    );
    assert_ne!(std::fs::read(&img).unwrap()[..512], [0u8; 512], "sector 0 was not written");

    let ns = NetNs::new();
    ns.add_tap("tap0", "10.78.0.1/24");
    let kernel = guest("net");
    let child = ns
        .command(&[
            solo5_hvt.to_str().unwrap(),
            "--mem=8",
            "--net:service0=tap0",
            "--net-mac:service0=02:00:00:00:00:98",
            kernel.to_str().unwrap(),
            "ip=10.78.0.2",
            "count=2",
            "timeout=60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = start(child);
    let p = ping(&ns, "10.78.0.2", 2);
    let out = running.wait();
    assert!(
        p.status.success(),
        "ping failed: {} / guest: {} {}",
        String::from_utf8_lossy(&p.stdout),
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("net: mac=02:00:00:00:00:98"), "stdout: {}", stdout(&out));
    assert!(stdout(&out).contains("net: answered 2 pings"), "stdout: {}", stdout(&out));
}
