//! aarch64: hypercalls are 32-bit stores of the argument's address to the MMIO address
//! 0x1_0000_0000 + (nr << 3), mapped as device memory by the monitor's page tables; the cycle
//! counter is the virtual counter CNTVCT_EL0 (at CNTFRQ_EL0, which the monitor reports).

use core::arch::asm;

/// Base of the hypercall MMIO page.
pub const HYPERCALL_MMIO: u64 = 0x1_0000_0000;

/// The hypercall `nr` with the argument at guest-physical `arg` (below 4 GiB).
#[inline(always)]
pub fn hypercall(nr: u16, arg: u64) {
    let addr = HYPERCALL_MMIO + (u64::from(nr) << 3);
    // SAFETY: a 32-bit store to the hvt MMIO page; the monitor handles it as an exit and reads
    // and writes the argument synchronously. The barrier orders the argument's stores first.
    unsafe { asm!("dsb sy", "str {v:w}, [{a}]", v = in(reg) arg as u32, a = in(reg) addr, options(nostack)) };
}

/// The virtual counter (ticks at `BootInfo::cpu_cycle_freq`).
pub fn cycles() -> u64 {
    let v: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; the ISB keeps it from being read early.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// The name the monitor gives the instruction pointer in a fault message.
pub const PC: &str = "pc";

/// Machine code of a function returning 42 (`mov w0, #42; ret`).
pub const RETURN_42: &[u8] = &[0x40, 0x05, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6];

/// Makes code just written at `[addr, addr + len)` fetchable: cleans the data cache and
/// invalidates the instruction cache over it.
pub fn sync_code(addr: u64, len: usize) {
    let mut line = addr & !63;
    while line < addr + len as u64 {
        // SAFETY: cache maintenance by address on the guest's own RAM.
        unsafe { asm!("dc cvau, {0}", "ic ivau, {0}", in(reg) line, options(nostack)) };
        line += 64;
    }
    // SAFETY: barriers only.
    unsafe { asm!("dsb ish", "isb", options(nostack)) };
}

/// Kicks the monitor's net ring thread: a 32-bit store to 0x1_0000_0100 (an ioeventfd).
#[inline(always)]
pub fn ring_kick() {
    // SAFETY: a store to the ring's kick address in the device-mapped MMIO page; KVM signals an
    // eventfd. The barrier orders the ring's stores first.
    unsafe { asm!("dsb sy", "str {v:w}, [{a}]", v = in(reg) 0u32, a = in(reg) HYPERCALL_MMIO + 0x100, options(nostack)) };
}
