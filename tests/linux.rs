//! Guests booted with the Linux boot protocol: the `virtio` test guest (PVH entry) drives
//! virtio-blk through the virtio-mmio transport and reports on the serial port; its exit status
//! comes through the debug-exit port. The same program as a multiboot kernel (the `multiboot`
//! guest, by its header's address fields, or converted to a 32-bit ELF). Also the errors of
//! this boot path.
//!
//! A stock distribution kernel is booted by tests/stock_kernel.rs, on hardware KVM only.

// The PC's boot protocols (bzImage, PVH, multiboot) and devices (port I/O, 16550, i8042, CMOS):
// x86_64 only, as the `virtio` and `multiboot` test guests are.
#![cfg(target_arch = "x86_64")]
#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use common::guests::{guest, multiboot_header, without_pvh_note};
use common::{assert_fails_with, boot, disk, stderr, stdout, tempdir};

const PATTERN: &[u8] = b"unik-virtio-blk!";

#[test]
fn test_virtio_blk_write_read_flush_and_errors() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d0.img", 1 << 20, b'A');
    let kernel = guest("virtio");
    let out = boot(&[
        "--mem=32",
        &format!("--block:d0={}", img.display()),
        kernel.to_str().unwrap(),
        "exit=5",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "stdout: {text} stderr: {}", stderr(&out));
    for line in [
        "virtio: boot=pvh",
        "virtio: cmdline: exit=5 virtio_mmio.device=4K@0xd0000000:5",
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
    // The write reached the file: sector 1 holds the pattern, sector 0 is untouched.
    let data = std::fs::read(&img).unwrap();
    assert!(data[512..1024].chunks(PATTERN.len()).all(|c| c == PATTERN));
    assert!(data[..512].iter().all(|b| *b == b'A'));
    // Memory as the guest sees it: the e820 map leaves out the legacy hole below 1 MiB.
    assert!(text.contains("virtio: mem=33160192"), "{text}");
}

#[test]
fn test_read_only_block_device_refuses_writes() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "ro.img", 64 << 10, b'R');
    let kernel = guest("virtio");
    let out = boot(&["--mem=16", &format!("--block-ro:root={}", img.display()), kernel.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert!(text.contains("virtio-blk: capacity=128 ro=1 flush=1"), "{text}");
    assert!(text.contains("virtio-blk: write status=1"), "{text}");
    assert!(text.contains("virtio-blk: readback status=0 match=0"), "{text}");
    assert!(std::fs::read(&img).unwrap().iter().all(|b| *b == b'R'));
}

#[test]
fn test_several_devices_and_vcpus() {
    require_kvm!();
    let dir = tempdir();
    let a = disk(&dir, "a.img", 4096, 0);
    let b = disk(&dir, "b.img", 8192, 0);
    let kernel = guest("virtio");
    let out = boot(&[
        "--mem=16",
        "--cpus=2",
        &format!("--block:a={}", a.display()),
        &format!("--block:b={}", b.display()),
        kernel.to_str().unwrap(),
        "blk-count",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert!(
        text.contains("virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"),
        "{text}"
    );
    assert!(text.contains("virtio-blk: devices=2"), "{text}");
    assert!(text.contains("virtio-blk: id status=0 id=a"), "{text}");
}

/// FNV-1a, 64-bit, as the guest hashes its initrd.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// An initrd of odd length and varied content.
fn initrd(dir: &tempfile::TempDir) -> (std::path::PathBuf, String) {
    let data: Vec<u8> = (0..70_001u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let path = dir.path().join("initrd.img");
    std::fs::write(&path, &data).unwrap();
    (path, format!("size=70001 fnv={:016x}", fnv1a(&data)))
}

#[test]
fn test_interrupts_timer_initrd_and_acpi_poweroff() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 64 << 10, b'I');
    let (rd, want_rd) = initrd(&dir);
    let kernel = guest("virtio");
    let out = boot(&[
        "--mem=32",
        &format!("--initrd={}", rd.display()),
        &format!("--block:d={}", img.display()),
        kernel.to_str().unwrap(),
        "irq",
        "timer",
        "poweroff",
    ]);
    let text = stdout(&out);
    // The ACPI poweroff (SLP_TYP = S5 with SLP_EN) ends the VM with status 0.
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert!(text.contains("virtio: poweroff") && !text.contains("virtio: done"), "{text}");
    // The initrd arrived whole, as a PVH module.
    assert!(text.contains(&want_rd), "want {want_rd} in:\n{text}");
    // The local APIC timer interrupted the guest's hlt once.
    assert!(text.contains("virtio: timer fired irqs=1 "), "{text}");
    // Every block request was completed through an interrupt (irqfd → I/O APIC → local APIC):
    // the guest slept in hlt until it came (a lost interrupt ends it with status 4).
    for line in [
        "virtio-blk: read0 status=0 first=IIIIIIII",
        "virtio-blk: readback status=0 match=1",
        "virtio-blk: flush status=0",
        "virtio-blk: oob status=1",
        "virtio-blk: irqs=6",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
}

/// A pseudo-terminal: (master, slave).
fn openpty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned here alone.
    unsafe { (std::os::fd::OwnedFd::from_raw_fd(master), std::os::fd::OwnedFd::from_raw_fd(slave)) }
}

fn lflag(fd: &std::os::fd::OwnedFd) -> libc::tcflag_t {
    use std::os::fd::AsRawFd;
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &raw mut t) }, 0);
    t.c_lflag
}

#[test]
fn test_serial_input_from_a_terminal_by_interrupt() {
    require_kvm!();
    use std::io::{Read, Write};
    use std::sync::mpsc;
    let (master, slave) = openpty();
    let before = lflag(&slave);
    let kernel = guest("virtio");
    let mut child = common::unik()
        .args(["boot", "--mem=16", kernel.to_str().unwrap(), "echo=5", "irq", "timeout=20"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let mut writer = std::fs::File::from(master);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        // Ends with EIO once no process holds the slave any more.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    while !text.contains("virtio: serial reading 5") {
        let chunk = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("guest output");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // While the guest runs, the terminal passes keys on one by one, without echo: five bytes
    // and no newline reach the guest.
    assert_eq!(lflag(&slave) & (libc::ICANON | libc::ECHO), 0, "terminal not in raw input mode");
    writer.write_all(b"ab1cd").unwrap();
    let status = child.wait().unwrap();
    // The terminal's settings are back as they were.
    assert_eq!(lflag(&slave), before, "terminal settings not restored");
    drop(slave);
    // The reader ends (and the channel with it) at EIO, now that no process holds the slave;
    // the minute is a liveness deadline, not a speed check.
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "output: {text} stderr: {err}");
    assert!(text.contains("virtio: serial in: ab1cd"), "{text}");
    assert_eq!(text.matches("ab1cd").count(), 1, "input was echoed by the terminal: {text}");
    // The guest slept in hlt between bytes: the UART's receive interrupt (IRQ 4) woke it.
    let irqs: u32 = text
        .split("virtio: serial irqs=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no irq count in: {text}"));
    assert!(irqs >= 1, "{text}");
}

#[test]
fn test_linux_boot_errors_are_clear() {
    let dir = tempdir();
    let kernel = guest("virtio");
    let junk = disk(&dir, "junk", 4096, 0x90);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--initrd=/nonexistent/initrd".into(), kernel.display().to_string()],
            "initrd /nonexistent/initrd: No such file or directory",
        ),
        (
            vec!["--kind=linux".into(), junk.display().to_string()],
            "not a kernel unik can boot (bzImage, ELF vmlinux, PVH ELF or multiboot)",
        ),
        (
            vec!["--cpus=2".into(), guest("hello").display().to_string()],
            "are for Linux-boot-protocol kernels; this is a solo5-hvt unikernel",
        ),
        (
            vec!["--block:d0=/nonexistent.img".into(), kernel.display().to_string()],
            "block device 'd0': /nonexistent.img: No such file or directory",
        ),
        (
            vec!["--net:n0=nosuchtap0".into(), kernel.display().to_string()],
            "net device 'n0': nosuchtap0: no such interface",
        ),
        (
            vec!["--cpus=0".into(), kernel.display().to_string()],
            "0 vCPUs: a Linux-boot guest has from 1 to 64 (--cpus)",
        ),
        (
            vec!["--cpus=65".into(), kernel.display().to_string()],
            "65 vCPUs: a Linux-boot guest has from 1 to 64 (--cpus)",
        ),
        (
            vec![
                format!("--block:d={}", junk.display()),
                "--block-sector-size:d=1000".into(),
                kernel.display().to_string(),
            ],
            "block device 'd': Block size must be a multiple of 2 greater than or equal 512 (got 1000)",
        ),
        (
            vec![kernel.display().to_string(), "x".repeat(4096)],
            "kernel command line too long: 4096 characters (max 4095)",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = boot(&args);
        assert_fails_with(&out, 1, want);
    }
}

#[test]
fn test_sigterm_stops_a_linux_guest() {
    require_kvm!();
    use std::io::{BufRead, BufReader};
    let dir = tempdir();
    let img = disk(&dir, "d.img", 4096, 0);
    let kernel = guest("virtio");
    // A spinning guest, and a halted one (cli; hlt: its vCPU never leaves KVM by itself) with
    // a second vCPU and the device thread, where the signal must still reach vCPU 0.
    for (extra, want) in [(&["spin"][..], "virtio: spinning"), (&["--cpus=2", "halt"], "virtio: halting")] {
        let mut args = vec!["boot".to_string(), "--mem=16".into(), format!("--block:d={}", img.display())];
        args.extend(extra.iter().filter(|a| a.starts_with("--")).map(|a| (*a).to_string()));
        args.push(kernel.display().to_string());
        args.extend(extra.iter().filter(|a| !a.starts_with("--")).map(|a| (*a).to_string()));
        let mut child = common::unik()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains(want) {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "guest ended before {want:?}");
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
        // A liveness deadline (a guest SIGTERM did not stop fails instead of hanging), not a
        // speed check.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?}: SIGTERM did not stop the guest");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert_fails_with(&out, 1, "Exiting on signal 15");
    }
}

#[test]
fn test_64_bit_boot_protocol_and_reset() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 4096, b'L');
    let kernel = without_pvh_note(dir.path());
    let (rd, want_rd) = initrd(&dir);
    let out = boot(&[
        "--mem=16",
        &format!("--initrd={}", rd.display()),
        &format!("--block:d={}", img.display()),
        kernel.to_str().unwrap(),
        "irq",
        "reset",
    ]);
    let text = stdout(&out);
    // A reset ends the VM like a poweroff: status 0.
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert!(text.contains("virtio: boot=linux"), "{text}");
    assert!(
        text.contains("virtio: cmdline: irq reset virtio_mmio.device=4K@0xd0000000:5"),
        "{text}"
    );
    // The initrd, found through boot_params' ramdisk fields; interrupts with the monitor's GDT.
    assert!(text.contains(&want_rd), "want {want_rd} in:\n{text}");
    assert!(text.contains("virtio-blk: irqs=6"), "{text}");
    assert!(text.contains("virtio: mem=16382976"), "{text}");
    assert!(text.contains("virtio-blk: read0 status=0 first=LLLLLLLL"), "{text}");
    assert!(text.contains("virtio: reset") && !text.contains("virtio: done"), "{text}");
}

/// Seconds since the Unix epoch of a UTC date and time (the proleptic Gregorian calendar).
fn unix_seconds(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

#[test]
fn test_the_cmos_clock_tells_the_hosts_time() {
    require_kvm!();
    let kernel = guest("virtio");
    let now = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    };
    let before = now();
    let out = boot(&["--mem=32", kernel.to_str().unwrap(), "rtc"]);
    let after = now();
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let line = text.lines().find_map(|l| l.strip_prefix("rtc: 2")).map(|l| format!("2{l}"));
    let line = line.unwrap_or_else(|| panic!("no date: {text}"));
    // `YYYY-MM-DD hh:mm:ss uip=1 b=0x02`: BCD, 24-hour, read right after an update cycle.
    let mut fields = line.split_whitespace();
    let (date, time) = (fields.next().unwrap(), fields.next().unwrap());
    assert_eq!(fields.collect::<Vec<_>>(), ["uip=1", "b=0x02"], "{line}");
    let num = |s: &str| s.parse::<i64>().unwrap();
    let d: Vec<i64> = date.split('-').map(num).collect();
    let t: Vec<i64> = time.split(':').map(num).collect();
    let guest = unix_seconds(d[0], d[1], d[2], t[0], t[1], t[2]);
    // The guest read the clock while it ran: between the host's clock before and after, however
    // long a busy host took.
    assert!(
        (before..=after).contains(&guest),
        "guest {line} ({guest}) not within the host's {before}..={after}"
    );
    assert!(text.contains("rtc: ext_kib=31744"), "CMOS extended memory for 32 MiB: {text}");
}

/// A copy of `src` named `name` whose multiboot header `edit` changed (the checksum fixed after
/// it unless `edit` broke it on purpose: `keep_checksum`).
fn edit_multiboot(
    dir: &tempfile::TempDir,
    src: &std::path::Path,
    name: &str,
    keep_checksum: bool,
    edit: impl Fn(&mut [u32; 8]),
) -> std::path::PathBuf {
    let mut image = std::fs::read(src).unwrap();
    let (at, mut words) = multiboot_header(&image);
    edit(&mut words);
    if !keep_checksum {
        words[2] = 0u32.wrapping_sub(words[0]).wrapping_sub(words[1]);
    }
    for (i, w) in words.iter().enumerate() {
        image[at + i * 4..at + i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let path = dir.path().join(name);
    std::fs::write(&path, image).unwrap();
    path
}

/// `objcopy` with `args`, or `None` (and the test reported as not run) without binutils.
fn objcopy(test: &str, args: &[&std::ffi::OsStr]) -> Option<()> {
    match std::process::Command::new("objcopy").args(args).output() {
        Ok(out) if out.status.success() => Some(()),
        Ok(out) => panic!("objcopy {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            common::report_not_run(test, &format!("objcopy (binutils) is needed: {e}"));
            None
        }
    }
}

#[test]
fn test_multiboot_kernel_loaded_by_its_address_fields() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d0.img", 1 << 20, b'M');
    let (rd, want_rd) = initrd(&dir);
    // A 64-bit ELF with no PVH note: only the header's address fields can load it.
    let kernel = guest("multiboot");
    let out = boot(&[
        "--mem=32",
        &format!("--initrd={}", rd.display()),
        &format!("--block:d0={}", img.display()),
        kernel.to_str().unwrap(),
        "exit=5",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "stdout: {text} stderr: {}", stderr(&out));
    for line in [
        // The entry saw EAX = 0x2BADB002 (else status 9) and took EBX's information.
        "virtio: boot=multiboot",
        "virtio: cmdline: exit=5 virtio_mmio.device=4K@0xd0000000:5",
        // The memory map is the e820 map PVH and Linux guests get for --mem=32 (see
        // test_virtio_blk_write_read_flush_and_errors); mem_upper is 31 MiB in KiB.
        "virtio: mem=33160192",
        "virtio: mem_lower=639 mem_upper=31744 loader=unik",
        "virtio-blk: capacity=2048 ro=0 flush=1",
        "virtio-blk: read0 status=0 first=MMMMMMMM",
        "virtio-blk: id status=0 id=d0",
        "virtio-blk: readback status=0 match=1",
        "virtio-blk: flush status=0",
        "virtio-blk: oob status=1",
        "virtio: done",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    // The initrd arrived whole as the one module, page-aligned (header flag 0).
    assert!(text.contains(&want_rd), "want {want_rd} in:\n{text}");
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("virtio: initrd addr=0x"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| u64::from_str_radix(a, 16).ok())
        .unwrap_or_else(|| panic!("no initrd address in {text}"));
    assert_eq!(addr % 4096, 0, "{text}");
    let data = std::fs::read(&img).unwrap();
    assert!(data[512..1024].chunks(PATTERN.len()).all(|c| c == PATTERN));
}

#[test]
fn test_multiboot_elf32_and_raw_image() {
    require_kvm!();
    let test = "test_multiboot_elf32_and_raw_image";
    let dir = tempdir();
    let kernel = guest("multiboot");
    // As Unikraft's QEMU images are made: the 64-bit ELF converted to a 32-bit one; with the
    // header's flag 16 cleared, only its program headers can load it.
    let elf32 = dir.path().join("mb-elf32");
    let Some(()) = objcopy(test, &["-O".as_ref(), "elf32-i386".as_ref(), kernel.as_os_str(), elf32.as_os_str()]) else {
        return;
    };
    let elf32 = edit_multiboot(&dir, &elf32, "mb-elf32-noaddr", false, |w| w[1] &= !0x1_0000);
    let image = std::fs::read(&elf32).unwrap();
    assert_eq!((&image[..5], image[18]), (&b"\x7fELF\x01"[..], 3), "an ELF32 for i386");
    assert_eq!(multiboot_header(&image).1[1], 0x3);
    // The raw image (objcopy -O binary: no ELF headers at all), loaded by the address fields.
    let raw = dir.path().join("mb-raw");
    let Some(()) = objcopy(test, &["-O".as_ref(), "binary".as_ref(), kernel.as_os_str(), raw.as_os_str()]) else {
        return;
    };
    let (rd, want_rd) = initrd(&dir);
    for (kernel, mem, want_mem) in [
        (&elf32, "--mem=64", "virtio: mem=66714624"),
        (&raw, "--mem=16", "virtio: mem=16382976"),
    ] {
        let out = boot(&[mem, &format!("--initrd={}", rd.display()), kernel.to_str().unwrap(), "exit=7"]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(7), "{kernel:?}: stdout: {text} stderr: {}", stderr(&out));
        assert!(text.contains("virtio: boot=multiboot\n"), "{text}");
        assert!(text.contains(want_mem), "{want_mem} in {text}");
        assert!(text.contains(&want_rd), "want {want_rd} in:\n{text}");
        assert!(text.contains("virtio: done"), "{text}");
    }
}

#[test]
fn test_bad_multiboot_headers_are_clear_errors() {
    require_kvm!();
    let dir = tempdir();
    let kernel = guest("multiboot");
    let size = u32::try_from(std::fs::metadata(&kernel).unwrap().len()).unwrap();
    let header = multiboot_header(&std::fs::read(&kernel).unwrap()).0;
    let cases: Vec<(std::path::PathBuf, String)> = vec![
        (
            edit_multiboot(&dir, &kernel, "checksum", true, |w| w[2] = w[2].wrapping_add(1)),
            format!("multiboot kernel: the header at file offset {header:#x} has a bad checksum"),
        ),
        (
            edit_multiboot(&dir, &kernel, "flags", false, |w| w[1] |= 1 << 3),
            "multiboot kernel: the header's flags 0x1000b require features unik does not provide (bits 0x8".into(),
        ),
        (
            // Everything moved 1 MiB down: over the GDT, page tables and boot information.
            edit_multiboot(&dir, &kernel, "low", false, |w| w[3..8].iter_mut().for_each(|a| *a -= 0x10_0000)),
            "multiboot kernel: the image loads at 0x0..".into(),
        ),
        (
            edit_multiboot(&dir, &kernel, "big-bss", false, |w| w[6] = 0x0400_0000),
            "multiboot kernel: the image loads at 0x100000..0x4000000, outside guest RAM (which ends at 0x2000000".into(),
        ),
        (
            edit_multiboot(&dir, &kernel, "past-file", false, |w| w[5] = w[4] + size),
            format!(
                "multiboot kernel: the header's load_addr..load_end_addr claims {size} bytes from file offset {:#x}, but the file has {size} bytes",
                header
            ),
        ),
        (
            edit_multiboot(&dir, &kernel, "elf64", false, |w| w[1] &= !0x1_0000),
            "multiboot kernel: a 64-bit ELF needs the header's address fields (flag 16)".into(),
        ),
    ];
    for (kernel, want) in cases {
        let out = boot(&["--mem=32", kernel.to_str().unwrap()]);
        assert_fails_with(&out, 1, &want);
        assert!(
            stderr(&out).contains(kernel.to_str().unwrap()),
            "names the kernel: {}",
            stderr(&out)
        );
    }
}

#[test]
fn test_a_pvh_note_wins_over_a_multiboot_header() {
    require_kvm!();
    // The `virtio` guest carries both (linux.ld keeps the multiboot header): PVH is taken.
    let kernel = guest("virtio");
    let (_, words) = multiboot_header(&std::fs::read(&kernel).unwrap());
    assert_eq!(words[1], 0x1_0003, "the virtio guest has a valid-looking multiboot header");
    let out = boot(&["--mem=16", kernel.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {text} stderr: {}", stderr(&out));
    assert!(text.contains("virtio: boot=pvh\n") && !text.contains("mem_lower="), "{text}");
}
