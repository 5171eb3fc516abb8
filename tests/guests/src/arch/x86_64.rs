//! x86_64: hypercalls are 32-bit OUTs of the argument's address to port 0x500 + nr; the cycle
//! counter is the TSC.

use core::arch::asm;

/// The hypercall `nr` with the argument at guest-physical `arg` (below 4 GiB).
#[inline(always)]
pub fn hypercall(nr: u16, arg: u64) {
    // SAFETY: an OUT to the hvt port; the monitor reads and writes the argument synchronously.
    unsafe { asm!("out dx, eax", in("dx") 0x500 + nr, in("eax") arg as u32, options(nostack)) };
}

/// The time-stamp counter (cycles at `BootInfo::cpu_cycle_freq`).
pub fn cycles() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc has no side effects.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The name the monitor gives the instruction pointer in a fault message.
pub const PC: &str = "rip";

/// Machine code of a function returning 42 (`mov eax, 42; ret`).
pub const RETURN_42: &[u8] = &[0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3];

/// Makes code just written at `[addr, addr + len)` fetchable (x86 keeps caches coherent).
pub fn sync_code(_addr: u64, _len: usize) {}

/// Kicks the monitor's net ring thread: a 4-byte OUT to port 0x600 (an ioeventfd).
#[inline(always)]
pub fn ring_kick() {
    // SAFETY: an OUT to the ring's kick port; KVM signals an eventfd, no state changes here.
    unsafe { asm!("out dx, eax", in("dx") 0x600u16, in("eax") 0u32, options(nostack)) };
}
