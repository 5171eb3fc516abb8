//! Misbehaves as its command line asks; the monitor must stop it with a clear error.
//!
//! Tokens: `write-text`, `bad-pointer` (PUTS data at 0xffff_fff0), `bad-pointer-end` (PUTS buffer
//! ending exactly at mem_size: the check is strict), `bad-arg` (the argument struct itself outside
//! RAM), `bad-hypercall` (port 0x500, number 0), `bad-hypercall-max` (port 0x509, one past HALT),
//! `bad-width` (1-byte OUT to 0x502), `bad-width-16` (2-byte OUT to 0x502), `bad-port` (OUT to
//! 0x7000), `triple-fault` (ud2, no IDT), `hlt`, `bad-cookie` (HALT cookie outside RAM). With none
//! of them it prints `faults: still running` and halts with 3. Before all of these, the raw
//! attacks of `unik_test_guests::hostile` (`raw=`, `out=`, `in=`, `outsb=`, `outsd=`,
//! `mmio-read=`, `mmio-write=`, `flood=`, `sleep=`, `spin`) run in command-line order.
//!
//! On aarch64 the widths are those of stores to the hypercall MMIO page (`strb`, `strh`),
//! `bad-port` is a store to 0x1_0000_1000 (device memory no device owns), and `triple-fault` and
//! `hlt` do not exist: an exception with no vector table loops inside the guest, and `wfi` waits
//! in KVM, so neither reaches the monitor.
#![no_std]
#![no_main]

#[cfg(target_arch = "x86_64")]
use core::arch::asm;

use unik_test_guests::{BootInfo, entry, flag, hypercall, println, solo5_notes};

solo5_notes!();
entry!(main);

#[repr(C)]
struct Puts {
    data: u64,
    len: u64,
}

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    println!("faults: {}", cmdline);
    unik_test_guests::hostile::run(bi, cmdline);
    if flag(cmdline, "write-text") {
        let text = main as *const () as *mut u8;
        // SAFETY: deliberately not: the text segment is read-only and the monitor must stop us.
        unsafe { text.write_volatile(0xcc) };
    }
    if flag(cmdline, "bad-pointer") {
        let mut arg = Puts {
            data: 0xffff_fff0,
            len: 64,
        };
        hypercall(unik_test_guests::PUTS, &mut arg);
    }
    if flag(cmdline, "bad-pointer-end") {
        let mut arg = Puts {
            data: bi.mem_size - 16,
            len: 16,
        };
        hypercall(unik_test_guests::PUTS, &mut arg);
    }
    if flag(cmdline, "bad-arg") {
        // A PUTS whose argument struct lies outside RAM (or ends exactly at 4 GiB).
        unik_test_guests::arch::hypercall(unik_test_guests::PUTS, 0xffff_fff0);
    }
    if flag(cmdline, "bad-hypercall") {
        let mut arg = 0u64;
        hypercall(0, &mut arg);
    }
    if flag(cmdline, "bad-hypercall-max") {
        let mut arg = 0u64;
        hypercall(9, &mut arg);
    }
    arch_faults(cmdline);
    if flag(cmdline, "bad-cookie") {
        unik_test_guests::halt_with_cookie(0, 0xffff_f000);
    }
    println!("faults: still running");
    3
}

#[cfg(target_arch = "x86_64")]
fn arch_faults(cmdline: &str) {
    if flag(cmdline, "bad-width") {
        // SAFETY: a one-byte OUT to the PUTS port; the monitor refuses the width.
        unsafe { asm!("out dx, al", in("dx") 0x502u16, in("al") 0u8, options(nostack)) };
    }
    if flag(cmdline, "bad-width-16") {
        // SAFETY: a two-byte OUT to the PUTS port; the monitor refuses the width.
        unsafe { asm!("out dx, ax", in("dx") 0x502u16, in("ax") 0u16, options(nostack)) };
    }
    if flag(cmdline, "bad-port") {
        // SAFETY: an OUT to a port no device owns.
        unsafe { asm!("out dx, eax", in("dx") 0x7000u16, in("eax") 0u32, options(nostack)) };
    }
    if flag(cmdline, "triple-fault") {
        // SAFETY: #UD with no IDT: the CPU triple-faults.
        unsafe { asm!("ud2", options(nostack)) };
    }
    if flag(cmdline, "hlt") {
        // SAFETY: halts the vCPU; with no interrupt source the monitor sees an HLT exit.
        unsafe { asm!("hlt", options(nostack)) };
    }
}

#[cfg(target_arch = "aarch64")]
fn arch_faults(cmdline: &str) {
    use unik_test_guests::arch::HYPERCALL_MMIO;
    let puts = (HYPERCALL_MMIO + (u64::from(unik_test_guests::PUTS) << 3)) as *mut u8;
    if flag(cmdline, "bad-width") {
        // SAFETY: a one-byte store to the PUTS address (device memory); the monitor refuses it.
        unsafe { puts.write_volatile(0) };
    }
    if flag(cmdline, "bad-width-16") {
        // SAFETY: a two-byte store to the PUTS address; the monitor refuses the width.
        unsafe { puts.cast::<u16>().write_volatile(0) };
    }
    if flag(cmdline, "bad-port") {
        // SAFETY: a store to device memory no device owns.
        unsafe { ((HYPERCALL_MMIO + 0x1000) as *mut u32).write_volatile(0) };
    }
}
