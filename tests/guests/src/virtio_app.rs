// The `virtio` test guest's program, shared by its two binaries (`include!`d): `virtio` (PVH
// note and 64-bit entry, linux.ld) and `multiboot` (multiboot header and entry, multiboot.ld).
// See src/bin/virtio.rs for what it does.
use core::fmt;
#[cfg(target_arch = "x86_64")]
use core::sync::atomic::{AtomicBool, Ordering};
use unik_test_guests::linux::{BOOT_MULTIBOOT, BOOT_PVH, Boot, exit};
use unik_test_guests::net::{Reply, answer, parse_ip};
use unik_test_guests::virtio::{self, D_NEXT, D_WRITE, DEV_BLOCK, DEV_NET, Dma, Mmio, QSIZE, Queue, QueueMem};
use unik_test_guests::{arg, flag, parse_u64, cycles, sprintln};
#[cfg(target_arch = "x86_64")]
use unik_test_guests::irq;
use unik_test_guests::linux;


/// How long a request may take, in TSC cycles (seconds at any plausible TSC rate): a liveness
/// deadline against a device that never answers, not a speed check. Every request the device
/// must answer (malformed ones included) is waited for this long.
const WAIT: u64 = 1 << 34;
/// How long a request the device must *not* serve (the avail index ahead of the ring, a
/// notification before DRIVER_OK) is watched before it counts as ignored: a device that
/// wrongly serves it is caught if it does so within this window (~0.7 s at 3 GHz).
const WAIT_IGNORED: u64 = 1 << 31;

fn main(boot: &Boot) -> u8 {
    let cmdline = boot.cmdline;
    let protocol = match boot.kind {
        BOOT_PVH => "pvh",
        BOOT_MULTIBOOT => "multiboot",
        _ => "linux",
    };
    sprintln!("virtio: boot={}", protocol);
    sprintln!("virtio: cmdline: {}", cmdline);
    sprintln!("virtio: mem={}", boot.mem_bytes);
    if let Some((lower, upper)) = boot.mem_lower_upper {
        sprintln!("virtio: mem_lower={} mem_upper={} loader={}", lower, upper, boot.loader);
    }
    if let Some((addr, size)) = boot.initrd {
        // SAFETY: the loader put `size` bytes of initrd at `addr` (identity mapped).
        let data = unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) };
        sprintln!("virtio: initrd addr={:#x} size={} fnv={:016x}", addr, size, fnv1a(data));
    }
    #[cfg(target_arch = "x86_64")]
    {
        if flag(cmdline, "irq") || flag(cmdline, "timer") {
            irq::init();
        }
        if flag(cmdline, "timer") {
            timer_test();
        }
    }
    #[cfg(target_arch = "aarch64")]
    for what in ["irq", "timer", "rtc", "port-widths"] {
        if flag(cmdline, what) {
            sprintln!("virtio: {} is not implemented on aarch64", what);
            exit(1);
        }
    }
    #[cfg(target_arch = "aarch64")]
    if flag(cmdline, "cpus") {
        // Starts the other vCPUs with PSCI CPU_ON; each counts itself, then sleeps.
        let (up, error) = linux::start_cpus(boot, 10 * tsc_hz());
        sprintln!("virtio: cpus={} up={} psci={}", boot.ncpus, up, error);
    }
    if let Some(n) = arg(cmdline, "echo").and_then(parse_u64) {
        echo(cmdline, n);
    }
    #[cfg(target_arch = "x86_64")]
    if flag(cmdline, "rtc") {
        rtc_test();
    }

    let (mut blk, mut nblk, mut nets, mut nnet) = (None, 0, [None; 4], 0);
    // The devices: announced on the command line (x86), or in the device tree (aarch64).
    #[cfg(target_arch = "x86_64")]
    let found = virtio::devices(cmdline);
    #[cfg(target_arch = "aarch64")]
    let found = boot.virtio_devices().iter().copied();
    for (base, gsi) in found {
        #[cfg(target_arch = "aarch64")]
        sprintln!("virtio: device at {:#x} spi={}", base, gsi);
        let m = Mmio { base };
        match m.probe() {
            Err(e) => sprintln!("virtio: device at {:#x}: {}", base, e),
            Ok(DEV_BLOCK) => {
                nblk += 1;
                #[cfg(target_arch = "x86_64")]
                if blk.is_none() && flag(cmdline, "irq") {
                    if !irq::route(gsi) {
                        setup_failed("virtio-blk", "no I/O APIC input for its interrupt");
                    }
                    IRQ_MODE.store(true, Ordering::SeqCst);
                }
                blk = blk.or(Some(m));
            }
            Ok(DEV_NET) => {
                if let Some(slot) = nets.get_mut(nnet) {
                    *slot = Some(m);
                }
                nnet += 1;
            }
            Ok(_) => {}
        }
    }
    if flag(cmdline, "blk-count") {
        sprintln!("virtio-blk: devices={}", nblk);
    }
    if let Some(kib) = arg(cmdline, "serial-flood").and_then(parse_u64) {
        serial_flood(kib);
    }
    #[cfg(target_arch = "x86_64")]
    if flag(cmdline, "port-widths") {
        port_widths();
    }
    if let Some(m) = blk {
        match (arg(cmdline, "attack"), arg(cmdline, "blk-bench")) {
            (Some(name), _) => attack(m, cmdline, name),
            (None, Some(mode)) => blk_bench(m, mode, boot.mem_bytes),
            (None, None) => block_test(m),
        }
    }
    for (i, m) in nets.iter().enumerate() {
        let Some(m) = *m else { break };
        let ip = arg(cmdline, ["ip", "ip2", "ip3", "ip4"][i]).and_then(parse_ip);
        let tx = if i == 0 { arg(cmdline, "net-tx").and_then(parse_u64) } else { None };
        if let (0, Some(name)) = (i, arg(cmdline, "net-attack")) {
            net_attack(m, cmdline, name);
            m.reset();
        } else if ip.is_some() || tx.is_some() {
            net_test(m, cmdline, ip.unwrap_or([0; 4]), tx);
            m.reset();
        }
    }
    if flag(cmdline, "spin") {
        // For stop-signal tests: never ends by itself.
        sprintln!("virtio: spinning");
        loop {
            core::hint::spin_loop();
        }
    }
    if flag(cmdline, "halt") {
        // For stop-signal tests: no exit to the monitor ever again.
        sprintln!("virtio: halting");
        linux::halt_forever();
    }
    if flag(cmdline, "reset") {
        sprintln!("virtio: reset");
        unik_test_guests::linux::reset();
    }
    if flag(cmdline, "poweroff") {
        sprintln!("virtio: poweroff");
        unik_test_guests::linux::poweroff();
    }
    sprintln!("virtio: done");
    arg(cmdline, "exit").and_then(parse_u64).unwrap_or(0) as u8
}

/// Reports a device that could not be set up and exits 1.
fn setup_failed(dev: &str, e: &str) -> ! {
    sprintln!("{}: setup failed: {}", dev, e);
    exit(1)
}

/// Bytes as ASCII, non-printables as '.'.
struct Ascii<'a>(&'a [u8]);

impl fmt::Display for Ascii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for &c in self.0 {
            fmt::Write::write_char(f, if (0x20..0x7f).contains(&c) { c as char } else { '.' })?;
        }
        Ok(())
    }
}

/// FNV-1a, 64-bit.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(target_arch = "x86_64")]
/// Arms the local APIC timer for 10^6 bus ticks (1 ms at KVM's 1 GHz), sleeps until it fires
/// and reports the TSC cycles that took.
fn timer_test() {
    let start = cycles();
    irq::arm_timer(1_000_000);
    // `wait` returns false exactly when the timer fired.
    let fired = !irq::wait(|| false);
    let cycles = cycles().wrapping_sub(start);
    irq::disarm_timer();
    if !fired {
        sprintln!("virtio: timer did not fire");
        exit(6);
    }
    sprintln!("virtio: timer fired irqs={} tsc={}", irq::timer_irqs(), cycles);
}

/// Reads `n` bytes from the serial port and prints them.
fn echo(cmdline: &str, n: u64) {
    let timeout = arg(cmdline, "timeout").and_then(parse_u64).unwrap_or(30);
    let mut got = [0u8; 64];
    let n = (n as usize).min(got.len());
    // With `irq`, sleep until the UART's receive interrupt (IRQ 4) between bytes.
    #[cfg_attr(target_arch = "aarch64", allow(unused_variables))]
    let by_irq = flag(cmdline, "irq");
    #[cfg(target_arch = "x86_64")]
    if by_irq {
        if !irq::route(4) {
            setup_failed("serial", "no I/O APIC input 4");
        }
        linux::serial_rx_interrupt();
    }
    #[cfg(target_arch = "x86_64")]
    let before = irq::device_irqs();
    sprintln!("virtio: serial reading {}", n);
    for (i, b) in got[..n].iter_mut().enumerate() {
        #[cfg(target_arch = "x86_64")]
        let c = if by_irq {
            let mut c = None;
            // The timer wakes the guest once a second (1e9 APIC ticks at KVM's 1 GHz).
            for _ in 0..timeout {
                irq::arm_timer(1_000_000_000);
                // The first byte also waits for its interrupt (the input came after IER was
                // set, so one is due), which makes the count exact: at least one.
                let got = irq::wait(|| {
                    c = c.or_else(linux::serial_try_read);
                    c.is_some() && (i > 0 || irq::device_irqs() > before)
                });
                irq::disarm_timer();
                if got {
                    break;
                }
            }
            c
        } else {
            linux::serial_read(timeout.saturating_mul(tsc_hz()))
        };
        #[cfg(target_arch = "aarch64")]
        let c = linux::serial_read(timeout.saturating_mul(tsc_hz()));
        match c {
            Some(c) => *b = c,
            None => {
                sprintln!("virtio: serial timeout after {} bytes", i);
                exit(2)
            }
        }
    }
    sprintln!("virtio: serial in: {}", Ascii(&got[..n]));
    #[cfg(target_arch = "x86_64")]
    if by_irq {
        sprintln!("virtio: serial irqs={}", irq::device_irqs() - before);
    }
}

// ---- block ----

const BLK_F_RO: u64 = 1 << 5;
const BLK_F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

#[repr(C)]
struct BlkHdr {
    typ: u32,
    reserved: u32,
    sector: u64,
}

static BLK_Q: Dma<QueueMem> = Dma::zeroed();
static BLK_HDR: Dma<BlkHdr> = Dma::zeroed();
static BLK_DATA: Dma<[u8; 512]> = Dma::zeroed();
static BLK_STATUS: Dma<u8> = Dma::zeroed();
/// Whether block requests wait for the device's interrupt (`irq`) instead of polling.
#[cfg(target_arch = "x86_64")]
static IRQ_MODE: AtomicBool = AtomicBool::new(false);

const PATTERN: &[u8; 16] = b"unik-virtio-blk!";

fn blk_data() -> &'static mut [u8; 512] {
    // SAFETY: only used between requests, when the device does not own the buffer.
    unsafe { &mut *BLK_DATA.get() }
}

/// Runs one request (header, then `len` bytes of BLK_DATA unless 0, then the status byte) and
/// returns its status (0xff if the device wrote none).
fn blk_request(q: &mut Queue, typ: u32, sector: u64, len: u32, device_writes: bool) -> u8 {
    // SAFETY: the device owns none of these between requests.
    unsafe {
        BLK_HDR.get().write_volatile(BlkHdr { typ, reserved: 0, sector });
        BLK_STATUS.get().write_volatile(0xff);
    }
    if len == 0 {
        q.set(0, BLK_HDR.addr(), 16, D_NEXT, 2);
    } else {
        q.set(0, BLK_HDR.addr(), 16, D_NEXT, 1);
        q.set(1, BLK_DATA.addr(), len, D_NEXT | if device_writes { D_WRITE } else { 0 }, 2);
    }
    q.set(2, BLK_STATUS.addr(), 1, D_WRITE, 0);
    q.submit(0);
    #[cfg(target_arch = "x86_64")]
    let done = if IRQ_MODE.load(Ordering::SeqCst) {
        // Sleep until the used ring has the request and its interrupt has come (the request
        // before had its own, so this one is new); the timer (about 4 s) is the watchdog.
        let before = irq::device_irqs();
        let mut used = false;
        irq::arm_timer(u32::MAX);
        let done = irq::wait(|| {
            used = used || q.pop().is_some();
            used && irq::device_irqs() > before
        });
        irq::disarm_timer();
        q.ack();
        done
    } else {
        q.wait(WAIT).is_some()
    };
    #[cfg(target_arch = "aarch64")]
    let done = q.wait(WAIT).is_some();
    if !done {
        sprintln!("virtio-blk: timeout (request type {})", typ);
        exit(4);
    }
    // SAFETY: the device is done with the request.
    unsafe { BLK_STATUS.get().read_volatile() }
}

fn block_test(m: Mmio) {
    let features = m.init(BLK_F_RO | BLK_F_FLUSH).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    let mut q = m.queue(0, &BLK_Q).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    m.driver_ok();
    let capacity = m.config_u64(0);
    let flush = features & BLK_F_FLUSH != 0;
    sprintln!(
        "virtio-blk: capacity={} ro={} flush={}",
        capacity,
        u8::from(features & BLK_F_RO != 0),
        u8::from(flush)
    );

    let s = blk_request(&mut q, T_IN, 0, 512, true);
    sprintln!("virtio-blk: read0 status={} first={}", s, Ascii(&blk_data()[..8]));

    blk_data()[..20].fill(0);
    let s = blk_request(&mut q, T_GET_ID, 0, 20, true);
    let id = &blk_data()[..20];
    let id = &id[..id.iter().position(|b| *b == 0).unwrap_or(20)];
    sprintln!("virtio-blk: id status={} id={}", s, Ascii(id));

    for c in blk_data().chunks_exact_mut(16) {
        c.copy_from_slice(PATTERN);
    }
    let s = blk_request(&mut q, T_OUT, 1, 512, false);
    sprintln!("virtio-blk: write status={}", s);
    blk_data().fill(0);
    let s = blk_request(&mut q, T_IN, 1, 512, true);
    let ok = blk_data().chunks_exact(16).all(|c| c == PATTERN);
    sprintln!("virtio-blk: readback status={} match={}", s, u8::from(ok));

    if flush {
        let s = blk_request(&mut q, T_FLUSH, 0, 0, false);
        sprintln!("virtio-blk: flush status={}", s);
    }

    let s = blk_request(&mut q, T_IN, capacity, 512, true);
    sprintln!("virtio-blk: oob status={}", s);
    #[cfg(target_arch = "x86_64")]
    if IRQ_MODE.load(Ordering::SeqCst) {
        // One per request so far (the polled malformed request below is not counted).
        sprintln!("virtio-blk: irqs={}", irq::device_irqs());
    }

    // A chain of just the header: no data, no status descriptor.
    // SAFETY: the device owns no buffer between requests.
    unsafe {
        BLK_HDR.get().write_volatile(BlkHdr {
            typ: T_IN,
            reserved: 0,
            sector: 0,
        })
    };
    q.set(0, BLK_HDR.addr(), 16, 0, 0);
    q.submit(0);
    let used = q.wait(WAIT).is_some();
    sprintln!("virtio-blk: malformed {}", if used { "used" } else { "ignored" });
}

// ---- block benchmark ----

/// Largest request of the benchmark (one data descriptor).
const BENCH_REQ: usize = 64 * 1024;
/// Size of the random reads.
const BENCH_RAND: usize = 4096;

unsafe extern "C" {
    /// End of the image (linux.ld): RAM above it is unused by this guest.
    static _end: u8;
}

/// The benchmark's data buffer: the first 64 KiB of RAM after the image, not a static, so it
/// is not part of .bss, which the entry zeroes with `rep stosb` (costly where that is emulated,
/// and it would slow every boot of this guest).
fn bench_buf(mem_bytes: u64) -> u64 {
    let addr = (&raw const _end) as u64;
    if addr + BENCH_REQ as u64 > mem_bytes {
        sprintln!("virtio-blk: bench: no room for a {} byte buffer above {:#x}", BENCH_REQ, addr);
        exit(1)
    }
    addr
}

/// One read of `len` bytes at `sector` into `buf`, polled without acknowledging the
/// interrupt (the guest runs with interrupts off; one acknowledgement at the end suffices), so
/// each request costs the notify and nothing else the guest could avoid.
fn bench_read(q: &mut Queue, buf: u64, sector: u64, len: usize) {
    // SAFETY: the device owns none of these between requests.
    unsafe {
        BLK_HDR.get().write_volatile(BlkHdr {
            typ: T_IN,
            reserved: 0,
            sector,
        });
        BLK_STATUS.get().write_volatile(0xff);
    }
    q.set(0, BLK_HDR.addr(), 16, D_NEXT, 1);
    q.set(1, buf, len as u32, D_NEXT | D_WRITE, 2);
    q.set(2, BLK_STATUS.addr(), 1, D_WRITE, 0);
    q.submit(0);
    let start = cycles();
    while q.pop().is_none() {
        if cycles().wrapping_sub(start) > WAIT {
            sprintln!("virtio-blk: timeout (bench read at sector {})", sector);
            exit(4);
        }
        core::hint::spin_loop();
    }
    // SAFETY: the device is done with the request.
    let s = unsafe { BLK_STATUS.get().read_volatile() };
    if s != 0 {
        sprintln!("virtio-blk: bench read at sector {} status={}", sector, s);
        exit(4);
    }
}

/// `seq:MIB` or `rand:COUNT`, timed with the TSC from the first request to the last completion.
fn blk_bench(m: Mmio, mode: &str, mem_bytes: u64) {
    let buf = bench_buf(mem_bytes);
    m.init(0).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    let mut q = m.queue(0, &BLK_Q).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    m.driver_ok();
    let capacity = m.config_u64(0);
    let disk = capacity * 512;
    let (kind, n) = match mode.split_once(':') {
        Some((k @ ("seq" | "rand"), n)) => (k, parse_u64(n)),
        _ => ("", None),
    };
    let Some(n) = n else {
        sprintln!("virtio-blk: bench: usage blk-bench=seq:MIB|rand:COUNT");
        exit(1)
    };
    let (start, bytes) = if kind == "seq" {
        let bytes = (n << 20).min(disk - disk % BENCH_REQ as u64);
        let start = cycles();
        let mut off = 0;
        while off < bytes {
            bench_read(&mut q, buf, off / 512, BENCH_REQ);
            off += BENCH_REQ as u64;
        }
        (start, bytes)
    } else {
        let pages = disk / BENCH_RAND as u64;
        if pages == 0 {
            sprintln!("virtio-blk: bench: disk smaller than 4 KiB");
            exit(1)
        }
        // xorshift64: a fixed seed, so every run reads the same pages.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let start = cycles();
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bench_read(&mut q, buf, (x % pages) * (BENCH_RAND as u64 / 512), BENCH_RAND);
        }
        (start, n * BENCH_RAND as u64)
    };
    let cycles = cycles().wrapping_sub(start);
    m.ack();
    sprintln!("virtio-blk: bench {} bytes={} tsc={}", kind, bytes, cycles);
}

// ---- net ----

const NET_F_MAC: u64 = 1 << 5;
/// virtio_net_hdr_v1 (VERSION_1, no mergeable buffers).
const NET_HDR: usize = 12;
const FRAME: usize = 1514;
const NET_BUF: usize = NET_HDR + FRAME;
const RX_BUFS: usize = 8;

static NET_RXQ: Dma<QueueMem> = Dma::zeroed();
static NET_TXQ: Dma<QueueMem> = Dma::zeroed();
static RX: Dma<[[u8; NET_BUF]; RX_BUFS]> = Dma::zeroed();
static TX: Dma<[[u8; NET_BUF]; QSIZE]> = Dma::zeroed();

fn rx_addr(i: u16) -> u64 {
    RX.addr() + u64::from(i) * NET_BUF as u64
}

fn tx_addr(i: u16) -> u64 {
    TX.addr() + u64::from(i) * NET_BUF as u64
}

/// TSC cycles per second: CPUID leaf 0x15 (crystal ratio) or 0x16 (base MHz), else a guess.
#[cfg(target_arch = "aarch64")]
fn tsc_hz() -> u64 {
    linux::counter_hz()
}

#[cfg(target_arch = "x86_64")]
fn tsc_hz() -> u64 {
    use core::arch::x86_64::__cpuid;
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let l = __cpuid(0x15);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax);
        }
    }
    if max >= 0x16 {
        let mhz = __cpuid(0x16).eax & 0xffff;
        if mhz != 0 {
            return u64::from(mhz) * 1_000_000;
        }
    }
    3_000_000_000
}

fn net_test(m: Mmio, cmdline: &str, ip: [u8; 4], tx_count: Option<u64>) {
    let features = m.init(NET_F_MAC).unwrap_or_else(|e| setup_failed("virtio-net", e));
    let mut rx = m.queue(0, &NET_RXQ).unwrap_or_else(|e| setup_failed("virtio-net", e));
    let mut tx = m.queue(1, &NET_TXQ).unwrap_or_else(|e| setup_failed("virtio-net", e));
    m.driver_ok();
    let mut mac = [0x02, 0, 0, 0, 0, 0x01];
    if features & NET_F_MAC != 0 {
        for (i, b) in mac.iter_mut().enumerate() {
            *b = m.config_u8(i);
        }
    }
    let posted = (RX_BUFS as u16).min(rx.size);
    for i in 0..posted {
        rx.set(i, rx_addr(i), NET_BUF as u32, D_WRITE, 0);
        rx.push(i);
    }
    rx.notify();
    sprintln!(
        "virtio-net: mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} ready",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    // SAFETY: the device owns TX buffers only while their descriptor is in flight; every use
    // below is of a buffer not in flight.
    let txb = unsafe { &mut *TX.get() };

    if let Some(n) = tx_count {
        // Broadcast frames of ethertype 0x88b5 with zero payload, one per descriptor. Interrupts
        // are acknowledged once at the end, to keep MMIO exits out of the loop.
        let mut free = [0u16; QSIZE];
        for i in 0..tx.size {
            let f = &mut txb[usize::from(i)][NET_HDR..];
            f[0..6].fill(0xff);
            f[6..12].copy_from_slice(&mac);
            f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            tx.set(i, tx_addr(i), NET_BUF as u32, 0, 0);
            free[usize::from(i)] = i;
        }
        let (mut nfree, mut sent, mut done) = (usize::from(tx.size), 0, 0);
        let mut last = cycles();
        while done < n {
            while let Some((id, _)) = tx.pop() {
                free[nfree] = id;
                nfree += 1;
                done += 1;
                last = cycles();
            }
            if nfree > 0 && sent < n {
                while nfree > 0 && sent < n {
                    nfree -= 1;
                    tx.push(free[nfree]);
                    sent += 1;
                }
                tx.notify();
            } else if cycles().wrapping_sub(last) > WAIT {
                sprintln!("virtio-net: timeout after {} frames", done);
                exit(4);
            }
        }
        m.ack();
        sprintln!("virtio-net: sent {} frames", n);
        return;
    }

    let want = arg(cmdline, "pings").and_then(parse_u64).unwrap_or(3);
    let timeout = arg(cmdline, "timeout").and_then(parse_u64).unwrap_or(30);
    let (start, limit) = (cycles(), timeout.saturating_mul(tsc_hz()));
    let mut answered = 0;
    while answered < want {
        let Some((id, len)) = rx.pop() else {
            if cycles().wrapping_sub(start) > limit {
                sprintln!("virtio-net: timeout after {} pings", answered);
                exit(2);
            }
            core::hint::spin_loop();
            continue;
        };
        m.ack();
        // Copy the frame (header stripped) into TX buffer 0, whose header stays all zero, and
        // turn it into the reply there; then give the RX buffer back.
        let len = (len as usize).clamp(NET_HDR, NET_BUF) - NET_HDR;
        // SAFETY: the device returned this RX buffer and gets it back only below.
        let rxb = unsafe { &*RX.get() };
        let frame = &rxb[usize::from(id)][NET_HDR..NET_HDR + len];
        txb[0][NET_HDR..NET_HDR + len].copy_from_slice(frame);
        rx.submit(id);
        let n = match answer(&mut txb[0][NET_HDR..], len, mac, ip) {
            Reply::None => continue,
            Reply::Arp(n) => n,
            Reply::Echo(n) => {
                answered += 1;
                n
            }
        };
        tx.set(0, tx_addr(0), (NET_HDR + n) as u32, 0, 0);
        tx.submit(0);
        if tx.wait(WAIT).is_none() {
            sprintln!("virtio-net: transmit timeout");
            exit(4);
        }
    }
    sprintln!("virtio-net: answered {} pings", answered);
}

// ---- hostile drivers ----

/// Writes `v` with a 1-, 2- or 8-byte store at `base + off` (virtio-mmio registers are 32-bit).
fn mmio_store(base: u64, off: usize, width: usize, v: u64) {
    let a = base as usize + off;
    // SAFETY: an access inside the device's register window (identity mapped); the device
    // must cope with any width.
    unsafe {
        match width {
            1 => (a as *mut u8).write_volatile(v as u8),
            2 => (a as *mut u16).write_volatile(v as u16),
            _ => (a as *mut u64).write_volatile(v),
        }
    }
}

/// A load of `width` bytes at `base + off`.
fn mmio_load(base: u64, off: usize, width: usize) -> u64 {
    let a = base as usize + off;
    // SAFETY: as for `mmio_store`.
    unsafe {
        match width {
            1 => u64::from((a as *const u8).read_volatile()),
            2 => u64::from((a as *const u16).read_volatile()),
            4 => u64::from((a as *const u32).read_volatile()),
            _ => (a as *const u64).read_volatile(),
        }
    }
}

/// Sets up the block device's request queue (reset, features, queue, DRIVER_OK).
fn blk_setup(m: Mmio) -> Queue {
    m.init(0).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    let q = m.queue(0, &BLK_Q).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    m.driver_ok();
    q
}

/// Sets up the queue like `blk_setup`, then, before DRIVER_OK, takes it back (QueueReady = 0)
/// and rewrites register `reg` (a 64-bit address pair when `wide`) with `v`; returns the status
/// the device shows after DRIVER_OK.
fn blk_setup_with(m: Mmio, reg: usize, v: u64, wide: bool) -> u32 {
    m.init(0).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    let _q = m.queue(0, &BLK_Q).unwrap_or_else(|e| setup_failed("virtio-blk", e));
    m.w(virtio::QUEUE_READY, 0);
    m.w(reg, v as u32);
    if wide {
        m.w(reg + 4, (v >> 32) as u32);
    }
    m.w(virtio::QUEUE_READY, 1);
    m.driver_ok();
    m.r(virtio::STATUS)
}

/// A hostile driver on the block device `m`. Each attack prints `virtio-hostile: NAME ...`
/// with what the device did; then the device is reset and one valid read of sector 0 must work
/// (`virtio-hostile: read after status=0`).
///
/// - `desc-loop`: a chain whose header descriptor points at itself;
/// - `chain-long`: a chain through every descriptor and back to the first (longer than the
///   queue);
/// - `desc-next-oob`: a header whose `next` is past the queue;
/// - `desc-oob`: a header descriptor outside RAM (`at=`, default 0xffff00000000);
/// - `data-oob`: a 512-byte data buffer at `at=` (e.g. straddling the end of RAM);
/// - `status-oob`: the status byte outside RAM;
/// - `avail-ahead`: the avail index 1000 entries ahead of what the driver wrote, notified
///   `times` times;
/// - `used-oob`: the used ring at `at=` (outside or straddling the end of RAM), `times` times,
///   each after a reset;
/// - `qsize`: QueueNum = `size=` (0, 3, ...);
/// - `notify-bad`: notifications of a queue before DRIVER_OK and of queues that do not exist;
/// - `mmio-widths`: 1-, 2- and 8-byte accesses and an unaligned one to the registers, a write
///   to the configuration space; the device must ignore them (status unchanged).
fn attack(m: Mmio, cmdline: &str, name: &str) {
    let times = arg(cmdline, "times").and_then(parse_u64).unwrap_or(1);
    let at = arg(cmdline, "at").and_then(virtio::parse_num).unwrap_or(0xffff_0000_0000);
    // A valid header (read sector 0) for the chains below.
    // SAFETY: the device owns no buffer between requests.
    unsafe {
        BLK_HDR.get().write_volatile(BlkHdr { typ: T_IN, reserved: 0, sector: 0 });
        BLK_STATUS.get().write_volatile(0xff);
    }
    // Submits the chain at head 0 and reports what came back.
    let report = |q: &mut Queue| {
        q.submit(0);
        match q.wait(WAIT) {
            // SAFETY: the device is done with the request.
            Some((_, len)) => sprintln!(
                "virtio-hostile: {} used len={} status={}",
                name,
                len,
                unsafe { BLK_STATUS.get().read_volatile() }
            ),
            None => sprintln!("virtio-hostile: {} ignored", name),
        }
    };
    match name {
        "desc-loop" => {
            let mut q = blk_setup(m);
            q.set(0, BLK_HDR.addr(), 16, D_NEXT, 0);
            report(&mut q);
        }
        "chain-long" => {
            let mut q = blk_setup(m);
            for i in 0..q.size {
                q.set(i, BLK_HDR.addr(), 16, D_NEXT, (i + 1) % q.size);
            }
            report(&mut q);
        }
        "desc-next-oob" => {
            let mut q = blk_setup(m);
            q.set(0, BLK_HDR.addr(), 16, D_NEXT, 0xffff);
            report(&mut q);
        }
        "desc-oob" | "data-oob" | "status-oob" => {
            let mut q = blk_setup(m);
            let (hdr, data, status) = match name {
                "desc-oob" => (at, BLK_DATA.addr(), BLK_STATUS.addr()),
                "data-oob" => (BLK_HDR.addr(), at, BLK_STATUS.addr()),
                _ => (BLK_HDR.addr(), BLK_DATA.addr(), at),
            };
            q.set(0, hdr, 16, D_NEXT, 1);
            q.set(1, data, 512, D_NEXT | D_WRITE, 2);
            q.set(2, status, 1, D_WRITE, 0);
            report(&mut q);
        }
        "avail-ahead" => {
            let mut q = blk_setup(m);
            for _ in 0..times {
                q.announce_ahead(1000);
            }
            let used = q.wait(WAIT_IGNORED).is_some();
            sprintln!("virtio-hostile: avail-ahead x{} {}", times, if used { "used" } else { "ignored" });
        }
        "used-oob" => {
            let mut needs_reset = 0;
            for _ in 0..times {
                let s = blk_setup_with(m, virtio::QUEUE_DEVICE, at, true);
                if s & 0x40 != 0 && s & 4 == 0 {
                    needs_reset += 1;
                }
                m.ack();
                m.reset();
            }
            sprintln!("virtio-hostile: used-oob x{} needs-reset={}", times, needs_reset);
        }
        "qsize" => {
            let size = arg(cmdline, "size").and_then(parse_u64).unwrap_or(3);
            let s = blk_setup_with(m, virtio::QUEUE_NUM, size, false);
            m.ack();
            sprintln!("virtio-hostile: qsize={} status={:#x}", size, s);
        }
        "notify-bad" => {
            m.init(0).unwrap_or_else(|e| setup_failed("virtio-blk", e));
            let mut q = m.queue(0, &BLK_Q).unwrap_or_else(|e| setup_failed("virtio-blk", e));
            // Before DRIVER_OK: a queue that is not running yet.
            q.set(0, BLK_HDR.addr(), 16, D_NEXT, 1);
            q.set(1, BLK_DATA.addr(), 512, D_NEXT | D_WRITE, 2);
            q.set(2, BLK_STATUS.addr(), 1, D_WRITE, 0);
            q.submit(0);
            let early = q.wait(WAIT_IGNORED).is_some();
            m.driver_ok();
            // Queues that do not exist (this device has one).
            for v in [1, 7, 0xffff, u32::MAX] {
                m.w(virtio::QUEUE_NOTIFY, v);
            }
            let late = q.wait(WAIT_IGNORED).is_some();
            // The request made available before DRIVER_OK is served on the next valid notify.
            m.w(virtio::QUEUE_NOTIFY, 0);
            let then = q.wait(WAIT).is_some();
            sprintln!(
                "virtio-hostile: notify-bad early={} late={} then={}",
                u8::from(early),
                u8::from(late),
                u8::from(then)
            );
        }
        "mmio-widths" => {
            let _q = blk_setup(m);
            let before = m.r(virtio::STATUS);
            // Narrow and wide writes of 0 to STATUS would reset the device if taken; of 1 to
            // QueueNotify would kick; to the config space would change the capacity.
            for width in [1, 2, 8] {
                mmio_store(m.base, virtio::STATUS, width, 0);
                mmio_store(m.base, virtio::QUEUE_NOTIFY, width, 0);
                mmio_store(m.base, virtio::QUEUE_SEL, width, 5);
            }
            m.w(virtio::STATUS + 2, 0);
            m.w(virtio::CONFIG, 0);
            let reads = [
                mmio_load(m.base, 0, 1),
                mmio_load(m.base, 0, 2),
                mmio_load(m.base, 0, 8),
                mmio_load(m.base, 2, 4),
            ];
            sprintln!(
                "virtio-hostile: mmio-widths status {:#x} -> {:#x} reads={:#x},{:#x},{:#x},{:#x} capacity={}",
                before,
                m.r(virtio::STATUS),
                reads[0],
                reads[1],
                reads[2],
                reads[3],
                m.config_u64(0)
            );
        }
        _ => {
            sprintln!("virtio-hostile: unknown attack {}", name);
            exit(1);
        }
    }
    m.ack();
    m.reset();
    let mut q = blk_setup(m);
    let s = blk_request(&mut q, T_IN, 0, 512, true);
    sprintln!("virtio-hostile: read after status={} first={}", s, Ascii(&blk_data()[..8]));
}

#[cfg(target_arch = "x86_64")]
fn outw(port: u16, v: u16) {
    // SAFETY: port I/O has no memory effects.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) };
}

#[cfg(target_arch = "x86_64")]
fn outl(port: u16, v: u32) {
    // SAFETY: port I/O has no memory effects.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)) };
}

#[cfg(target_arch = "x86_64")]
fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: port I/O has no memory effects.
    unsafe { core::arch::asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: port I/O has no memory effects.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
/// 2- and 4-byte accesses where the devices are 1 byte wide, accesses running past the end of
/// a device's ports, and ports no device owns. None may end the VM (the values are chosen not
/// to reset or power off if the low byte were taken).
fn port_widths() {
    // The UART's data register takes the low byte: "W" then "\n" reach the console.
    outl(0x3f8, 0x0a0a_0a57);
    outw(0x3f8, 0x0a0a);
    // Scratch register (offset 7) written wide, running past the UART's eight ports.
    outl(0x3ff, 0xdead_beef);
    outw(0x3fb, 0x0003);
    let lsr = inw(0x3fd);
    let past = inl(0x3fe);
    // i8042: not 0xfe in the low byte, so no reset.
    outl(0x64, 0x0000_fe01);
    outw(0x60, 0x00fe);
    // ACPI sleep control: SLP_EN without S5.
    outl(0x3c0, 0x0000_0020);
    // Debug exit read, and ports nobody owns.
    let dbg = inl(0x501);
    outl(0x7000, 1);
    let none = inl(0x7000);
    sprintln!("virtio-hostile: port-widths lsr={:#x} past={:#x} debug={:#x} none={:#x}", lsr, past, dbg, none);
}

/// Writes `kib` KiB of console text, 64 bytes a line.
fn serial_flood(kib: u64) {
    let line = [b'x'; 63];
    for _ in 0..kib * 16 {
        linux::serial_write(&line);
        linux::serial_write(b"\n");
    }
    sprintln!("virtio-hostile: flooded {} KiB", kib);
}

/// A hostile driver on the net device `m`'s transmit queue; then one valid broadcast frame
/// must still be taken (`virtio-hostile: tx after used=1`).
///
/// - `tx-oob`: a frame outside RAM (`at=`, default 0xffff00000000);
/// - `tx-write-only`: a frame in a device-writable descriptor;
/// - `tx-huge`: a chain of 16 descriptors of 64 KiB each, more than any frame;
/// - `tx-avail-ahead`: the avail index 1000 ahead, notified `times` times.
fn net_attack(m: Mmio, cmdline: &str, name: &str) {
    let times = arg(cmdline, "times").and_then(parse_u64).unwrap_or(1);
    let at = arg(cmdline, "at").and_then(virtio::parse_num).unwrap_or(0xffff_0000_0000);
    m.init(0).unwrap_or_else(|e| setup_failed("virtio-net", e));
    let _rx = m.queue(0, &NET_RXQ).unwrap_or_else(|e| setup_failed("virtio-net", e));
    let mut tx = m.queue(1, &NET_TXQ).unwrap_or_else(|e| setup_failed("virtio-net", e));
    m.driver_ok();
    match name {
        "tx-oob" => tx.set(0, at, NET_BUF as u32, 0, 0),
        "tx-write-only" => tx.set(0, tx_addr(0), NET_BUF as u32, D_WRITE, 0),
        "tx-huge" => {
            for i in 0..tx.size {
                tx.set(i, 0x10_0000, 64 << 10, if i + 1 < tx.size { D_NEXT } else { 0 }, i + 1);
            }
        }
        "tx-avail-ahead" => {
            for _ in 0..times {
                tx.announce_ahead(1000);
            }
            let used = tx.wait(WAIT_IGNORED).is_some();
            sprintln!("virtio-hostile: {} x{} {}", name, times, if used { "used" } else { "ignored" });
            // The index cannot be taken back: start over.
            m.ack();
            m.reset();
            m.init(0).unwrap_or_else(|e| setup_failed("virtio-net", e));
            let _rx = m.queue(0, &NET_RXQ).unwrap_or_else(|e| setup_failed("virtio-net", e));
            tx = m.queue(1, &NET_TXQ).unwrap_or_else(|e| setup_failed("virtio-net", e));
            m.driver_ok();
        }
        _ => {
            sprintln!("virtio-hostile: unknown net attack {}", name);
            exit(1);
        }
    }
    if name != "tx-avail-ahead" {
        tx.submit(0);
        match tx.wait(WAIT) {
            Some((_, len)) => sprintln!("virtio-hostile: {} used len={}", name, len),
            None => sprintln!("virtio-hostile: {} ignored", name),
        }
    }
    // SAFETY: no TX buffer is in flight.
    let f = unsafe { &mut (*TX.get())[0] };
    f[..NET_HDR].fill(0);
    f[NET_HDR..NET_HDR + 6].fill(0xff);
    f[NET_HDR + 6..NET_HDR + 12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[NET_HDR + 12..NET_HDR + 14].copy_from_slice(&0x88b5u16.to_be_bytes());
    tx.set(0, tx_addr(0), (NET_HDR + 60) as u32, 0, 0);
    tx.submit(0);
    let used = tx.wait(WAIT).is_some();
    m.ack();
    sprintln!("virtio-hostile: tx after used={}", u8::from(used));
}

#[cfg(target_arch = "x86_64")]
/// Reads the CMOS clock right after an update, as a PC kernel does.
fn rtc_test() {
    let reg = linux::cmos_read;
    // Wait for an update cycle to begin (for ten seconds or so at most: on a busy host this
    // vCPU may sleep through a 244 us window), then for it to end: the time registers then hold
    // steady for almost a second.
    let start = cycles();
    let mut seen = false;
    while cycles().wrapping_sub(start) < 1 << 35 {
        if reg(0x0a) & 0x80 != 0 {
            seen = true;
            break;
        }
    }
    while reg(0x0a) & 0x80 != 0 {}
    let b = reg(0x0b);
    let dec = |v: u8| if b & 0x04 != 0 { v } else { (v >> 4) * 10 + (v & 0x0f) };
    let raw_hour = reg(0x04);
    let mut hour = dec(raw_hour & 0x7f);
    if b & 0x02 == 0 {
        hour = hour % 12 + if raw_hour & 0x80 != 0 { 12 } else { 0 };
    }
    sprintln!(
        "rtc: {:02}{:02}-{:02}-{:02} {:02}:{:02}:{:02} uip={} b={:#04x}",
        dec(reg(0x32)),
        dec(reg(0x09)),
        dec(reg(0x08)),
        dec(reg(0x07)),
        hour,
        dec(reg(0x02)),
        dec(reg(0x00)),
        u8::from(seen),
        b
    );
    sprintln!("rtc: ext_kib={}", u16::from(reg(0x17)) | u16::from(reg(0x18)) << 8);
}
