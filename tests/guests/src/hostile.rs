//! Raw attacks on the hvt monitor, driven by command-line tokens, shared by the `faults` guest
//! (no devices), `hostile` (a block device) and `hostile_net` (a net device). Tokens run in
//! order; one that the monitor survives prints a `hostile:` line, so the next one runs too.
//!
//! Values (`V`) are decimal or `0x` hex numbers, `max` (u64::MAX), `end` (mem_size), `end-N` /
//! `end+N`, `text` (the guest's own code, read-only on the host), `buf` / `buf+N` (a writable
//! 8 KiB buffer).
//! - `raw=NR@ARG:W0,W1,..` writes the words (up to 6 u64, only those that lie inside RAM) at ARG,
//!   does the hypercall `out 0x500+NR, ARG` and prints `hostile: nr=NR words=W0,W1,..` with the
//!   words read back; `raw=NR@ARG` writes nothing;
//! - `out=PORT` a 4-byte OUT of `buf` to PORT; `in=PORT` a 4-byte IN from PORT;
//! - `outsb=PORT` `rep outsb` of 4 bytes (four 1-byte accesses); `outsd=PORT` `rep outsd` of
//!   two dwords (8 bytes in one exit);
//! - `mmio-read=V` / `mmio-write=V` a 4-byte access at guest-physical V, on x86_64 after loading
//!   page tables of its own that identity-map the first 4 GiB (the monitor's cover RAM only; on
//!   aarch64 they also map the device GiB at 4 GiB, and an address they do not map loops in the
//!   guest);
//! - `flood=MIB` PUTS MIB MiB of (untouched, zero) RAM in chunks of up to 96 MiB, then prints
//!   `hostile: flooded MIB MiB`;
//! - `sleep=MS` POLL for MS milliseconds; `spin` prints `hostile: spinning` and loops forever.
//!
//! The port-I/O tokens (`out=`, `in=`, `outsb=`, `outsd=`) exist on x86_64 only.

use core::cell::UnsafeCell;

use crate::{BootInfo, hypercall, parse_u64, poll, println, puts};

#[repr(C, align(4096))]
struct Page<T>(UnsafeCell<T>);

// SAFETY: the guest is single-threaded.
unsafe impl<T> Sync for Page<T> {}

static BUF: Page<[u8; 8192]> = Page(UnsafeCell::new([0; 8192]));

/// PML4, PDPT and four page directories of 2 MiB pages: the first 4 GiB, identity-mapped.
#[cfg(target_arch = "x86_64")]
static TABLES: Page<[[u64; 512]; 6]> = Page(UnsafeCell::new([[0; 512]; 6]));

fn buf_addr() -> u64 {
    BUF.0.get() as u64
}

unsafe extern "C" {
    fn _start();
}

/// Parses a value (see the module documentation).
pub fn value(bi: &BootInfo, s: &str) -> Option<u64> {
    let (base, rest) = if let Some(r) = s.strip_prefix("end") {
        (bi.mem_size, r)
    } else if let Some(r) = s.strip_prefix("buf") {
        (buf_addr(), r)
    } else if s == "text" {
        return Some(_start as *const () as u64);
    } else if s == "max" {
        return Some(u64::MAX);
    } else {
        return crate::virtio::parse_num(s);
    };
    if rest.is_empty() {
        return Some(base);
    }
    if let Some(n) = rest.strip_prefix('-') {
        return base.checked_sub(crate::virtio::parse_num(n)?);
    }
    base.checked_add(crate::virtio::parse_num(rest.strip_prefix('+')?)?)
}

/// Runs every attack token of `cmdline`, in order.
pub fn run(bi: &BootInfo, cmdline: &str) {
    for token in cmdline.split(' ') {
        let Some((key, v)) = token.split_once('=') else {
            if token == "spin" {
                println!("hostile: spinning");
                loop {
                    core::hint::spin_loop();
                }
            }
            continue;
        };
        match key {
            "raw" => raw(bi, v),
            #[cfg(target_arch = "x86_64")]
            "out" | "in" | "outsb" | "outsd" => port_io(bi, key, v),
            "mmio-read" | "mmio-write" => {
                let addr = value(bi, v).unwrap_or(0);
                #[cfg(target_arch = "x86_64")]
                map_4gib();
                let p = addr as *mut u32;
                if key == "mmio-read" {
                    // SAFETY: an access the monitor must judge (no RAM there).
                    let r = unsafe { p.read_volatile() };
                    println!("hostile: mmio-read {:#x} = {:#x}", addr, r);
                } else {
                    // SAFETY: as above.
                    unsafe { p.write_volatile(0x1234_5678) };
                    println!("hostile: mmio-write {:#x} survived", addr);
                }
            }
            "flood" => flood(bi, parse_u64(v).unwrap_or(0)),
            "sleep" => {
                poll(parse_u64(v).unwrap_or(0) * 1_000_000);
            }
            _ => {}
        }
    }
}

fn raw(bi: &BootInfo, spec: &str) {
    let (nr, rest) = spec.split_once('@').unwrap_or((spec, "0"));
    let nr = parse_u64(nr).unwrap_or(0) as u16;
    let (at, words) = rest.split_once(':').unwrap_or((rest, ""));
    let at = value(bi, at).unwrap_or(0);
    let mut n = 0;
    for (i, w) in words.split(',').filter(|w| !w.is_empty()).enumerate().take(6) {
        let addr = at + 8 * i as u64;
        if addr + 8 <= bi.mem_size {
            // SAFETY: inside RAM (identity mapped); the caller chose a writable place.
            unsafe { (addr as *mut u64).write_volatile(value(bi, w).unwrap_or(0)) };
            n = i + 1;
        }
    }
    hypercall(nr, at as *mut u64);
    let mut line = [0u64; 6];
    for (i, w) in line.iter_mut().enumerate().take(n) {
        // SAFETY: written above, so inside RAM.
        *w = unsafe { ((at + 8 * i as u64) as *const u64).read_volatile() };
    }
    print_words(nr, &line[..n]);
}

fn print_words(nr: u16, words: &[u64]) {
    use core::fmt::Write as _;
    let _ = write!(crate::Console, "hostile: nr={} words=", nr);
    for (i, w) in words.iter().enumerate() {
        let _ = write!(crate::Console, "{}{:#x}", if i == 0 { "" } else { "," }, w);
    }
    let _ = writeln!(crate::Console);
}

/// The port-I/O attacks: `out`, `in`, `outsb`, `outsd` of port `v`.
#[cfg(target_arch = "x86_64")]
fn port_io(bi: &BootInfo, key: &str, v: &str) {
    use core::arch::asm;
    let port = value(bi, v).unwrap_or(0) as u16;
    match key {
        "out" => {
            // SAFETY: an OUT the monitor must judge.
            unsafe { asm!("out dx, eax", in("dx") port, in("eax") buf_addr() as u32, options(nostack)) };
            println!("hostile: out {:#x} survived", port);
        }
        "in" => {
            let r: u32;
            // SAFETY: an IN the monitor must judge.
            unsafe { asm!("in eax, dx", in("dx") port, out("eax") r, options(nostack)) };
            println!("hostile: in {:#x} = {:#x}", port, r);
        }
        _ => {
            // The buffer holds its own address twice, so each half reads as a hypercall
            // argument pointer.
            let p = BUF.0.get() as *mut u32;
            // SAFETY: the first 8 bytes of BUF.
            unsafe {
                p.write_volatile(buf_addr() as u32);
                p.add(1).write_volatile(buf_addr() as u32);
            }
            if key == "outsb" {
                // SAFETY: string OUT from BUF, 4 bytes of one byte each.
                unsafe { asm!("rep outsb", in("dx") port, inout("rsi") p => _, inout("rcx") 4u64 => _, options(nostack)) };
            } else {
                // SAFETY: string OUT from BUF, 2 dwords.
                unsafe { asm!("rep outsd", in("dx") port, inout("rsi") p => _, inout("rcx") 2u64 => _, options(nostack)) };
            }
            println!("hostile: {} {:#x} survived", key, port);
        }
    }
}

/// Loads page tables that identity-map the first 4 GiB with 2 MiB pages.
#[cfg(target_arch = "x86_64")]
fn map_4gib() {
    let t = TABLES.0.get() as *mut [u64; 512];
    let base = t as u64;
    // SAFETY: the tables are this guest's own static memory; CR3 then points at them. Every
    // address the guest uses (text, data, stack below mem_size) stays identity-mapped.
    unsafe {
        for d in 0..4u64 {
            for e in 0..512u64 {
                (*t.add(2 + d as usize))[e as usize] = ((d * 512 + e) << 21) | 0x83;
            }
            (*t.add(1))[d as usize] = (base + (2 + d) * 4096) | 3;
        }
        (*t)[0] = (base + 4096) | 3;
        core::arch::asm!("mov cr3, {}", in(reg) base, options(nostack));
    }
}

#[repr(C)]
struct Puts {
    data: u64,
    len: u64,
}

/// PUTS `mib` MiB from RAM the guest never touched (16 MiB up to 16 MiB below the top).
fn flood(bi: &BootInfo, mib: u64) {
    let start = 16 << 20;
    let room = bi.mem_size.saturating_sub(start + (16 << 20)).min(96 << 20);
    if room == 0 {
        println!("hostile: flood needs more memory");
        return;
    }
    let mut left = mib << 20;
    while left > 0 {
        let n = left.min(room);
        let mut arg = Puts { data: start, len: n };
        hypercall(crate::PUTS, &mut arg);
        left -= n;
    }
    puts(b"\n");
    println!("hostile: flooded {} MiB", mib);
}
