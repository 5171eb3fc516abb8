//! The guest of the debugging tests (tests/gdb.rs): a function to break on, a static to read,
//! and on request an abort or a fault a few calls deep, for a core to show.
//!
//! Calls `gdb_tick(1)`, `gdb_tick(2)`, `gdb_tick(3)` (each adds its argument to `GDB_COUNTER`),
//! prints `debugee: counter N` and halts with 0. Tokens: `abort` (HALT 255 from
//! `gdb_crash_inner`, called by `gdb_crash_outer`), `fault` (`ud2` there instead: no IDT, a
//! triple fault), `spin` (calls `gdb_tick(0)` forever: no exits, for the debugger's Ctrl-C).
#![no_std]
#![no_main]

use unik_test_guests::{BootInfo, entry, flag, println, solo5_notes};

solo5_notes!();
entry!(main);

/// What the debugger reads.
#[unsafe(no_mangle)]
pub static mut GDB_COUNTER: u64 = 0;

/// Where the debugger breaks.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn gdb_tick(n: u64) -> u64 {
    let counter = &raw mut GDB_COUNTER;
    // SAFETY: one vCPU, no interrupts: nothing else touches the static.
    unsafe {
        counter.write_volatile(counter.read_volatile() + n);
        counter.read_volatile()
    }
}

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn gdb_crash_inner(fault: bool) -> u64 {
    if fault {
        // SAFETY: deliberately not: #UD with no IDT triple-faults.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!("ud2", options(nostack))
        };
        // SAFETY: deliberately not: a store to the read-only text, which the monitor stops (an
        // exception on aarch64 would loop inside the guest, which has no vector table).
        #[cfg(target_arch = "aarch64")]
        unsafe {
            (gdb_crash_inner as *const () as *mut u8).write_volatile(0)
        };
    }
    unik_test_guests::halt(255)
}

#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn gdb_crash_outer(fault: bool) -> u64 {
    // Not a tail call: this frame stays on the stack for the backtrace.
    gdb_crash_inner(core::hint::black_box(fault)) + gdb_tick(0)
}

fn main(_bi: &BootInfo, cmdline: &str) -> i32 {
    for n in 1..=3 {
        gdb_tick(core::hint::black_box(n));
    }
    while flag(cmdline, "spin") {
        gdb_tick(core::hint::black_box(0));
    }
    if flag(cmdline, "abort") || flag(cmdline, "fault") {
        gdb_crash_outer(flag(cmdline, "fault"));
    }
    // SAFETY: as in `gdb_tick`.
    println!("debugee: counter {}", unsafe { (&raw const GDB_COUNTER).read_volatile() });
    0
}
