//! Touches all of its RAM the ways a unikernel does, to prove that memory registered with KVM on
//! first touch behaves as if it were all there from the start (vmm/src/slots.rs). Each step uses
//! RAM nothing touched before it, 64 MiB apart (more than one of the monitor's chunks, so each step
//! is in a chunk of its own):
//! - `lazy: read zero` — a read of untouched memory sees zeros;
//! - `lazy: code 42` — a function copied high in RAM runs (an instruction fetch);
//! - `lazy: disk code 42` — a function read from the block device `storage` (BLOCK_READ, the
//!   monitor writing into untouched memory) runs from there: the first access to that memory is
//!   the instruction fetch;
//! - `lazy: puts from high memory` — the console hypercall's buffer lies in untouched memory;
//! - `lazy: walltime …` — WALLTIME's argument struct does, and the guest reads what the monitor
//!   wrote there;
//! - `lazy: heap N MiB ok` — a pattern written every 256 KiB from the end of the kernel to 1 MiB
//!   below the top (the stack's), and on the last page there, then read back, as a heap growing
//!   up to the top would (every chunk, a page in each of its large pages' quarters). The sweep
//!   skips the MiB at 0xfee0_0000: on kvm_pvm hosts the local APIC's page stays there even
//!   without an in-kernel irqchip, registered slot or not (seen with every slot up front too).
//!
//! Halts with 0 when every step held, 1 at the first that did not.
#![no_std]
#![no_main]

use unik_test_guests::{BLOCK, BootInfo, arch, block_read, block_write, device, entry, println, solo5_notes};

solo5_notes!("storage": BLOCK);
entry!(main);

const SPACING: u64 = 64 << 20;
const PAGE: u64 = 4096;
const STRIDE: u64 = 256 << 10;

fn main(bi: &BootInfo, _cmdline: &str) -> i32 {
    let top = bi.mem_size - (1 << 20);
    // Well-separated places in the middle of RAM, none in the kernel's or the stack's chunk.
    let at = |i: u64| {
        let base = bi.kernel_end.next_multiple_of(SPACING);
        (base + i * SPACING).min(top - (8 - i) * PAGE)
    };

    let p = at(0) as *const u64;
    // SAFETY: RAM between the kernel and the stack, identity mapped; nothing wrote it.
    let v = unsafe { p.read_volatile() };
    if v != 0 {
        println!("lazy: untouched memory reads {:#x}", v);
        return 1;
    }
    println!("lazy: read zero");

    let code = at(1) as *mut u8;
    // SAFETY: as above; the guest's RAM is executable in the monitor's page tables.
    let r = unsafe {
        core::ptr::copy_nonoverlapping(arch::RETURN_42.as_ptr(), code, arch::RETURN_42.len());
        arch::sync_code(code as u64, arch::RETURN_42.len());
        let f: extern "C" fn() -> u32 = core::mem::transmute(code);
        f()
    };
    println!("lazy: code {}", r);
    if r != 42 {
        return 1;
    }

    let Some((disk, entry)) = device(bi, "storage") else {
        println!("lazy: no block device");
        return 1;
    };
    let mut sector = [0u8; 512];
    sector[..arch::RETURN_42.len()].copy_from_slice(arch::RETURN_42);
    let sector = &sector[..(entry.block().1 as usize).min(512)];
    let code = at(5) as *mut u8;
    if block_write(disk, 0, sector) != 0 || block_read(disk, 0, unsafe_slice(code, sector.len())) != 0 {
        println!("lazy: block I/O failed");
        return 1;
    }
    // SAFETY: the monitor just wrote the function there; the guest's RAM is executable.
    let r = unsafe {
        arch::sync_code(code as u64, arch::RETURN_42.len());
        let f: extern "C" fn() -> u32 = core::mem::transmute(code);
        f()
    };
    println!("lazy: disk code {}", r);
    if r != 42 {
        return 1;
    }

    let text = b"lazy: puts from high memory\n";
    let buf = at(3) as *mut u8;
    // SAFETY: as above. The copy is done by the guest, so this chunk is touched here: the PUTS
    // itself then reads it through the monitor's mapping.
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), buf, text.len()) };
    // SAFETY: the bytes just written.
    unik_test_guests::puts(unsafe { core::slice::from_raw_parts(buf, text.len()) });

    let ns = at(4) as *mut u64;
    unik_test_guests::hypercall(unik_test_guests::WALLTIME, ns);
    // SAFETY: the argument the monitor just filled; the guest never touched this chunk before.
    let t = unsafe { ns.read_volatile() };
    if t == 0 {
        println!("lazy: walltime through untouched memory read 0");
        return 1;
    }
    println!("lazy: walltime {}", t);

    let start = bi.kernel_end.next_multiple_of(PAGE);
    // The sweep overwrites what the steps above left; it starts past the kernel.
    const APIC: core::ops::Range<u64> = 0xfee0_0000..0xfef0_0000;
    let pages = || {
        (start..top)
            .step_by(STRIDE as usize)
            .chain(core::iter::once(top - PAGE))
            .filter(|p| !APIC.contains(p))
    };
    for page in pages() {
        // SAFETY: RAM between the kernel and the stack's last MiB.
        unsafe { (page as *mut u64).write_volatile(page ^ 0x6c61_7a79) };
    }
    for page in pages() {
        // SAFETY: written just above.
        let v = unsafe { (page as *const u64).read_volatile() };
        if v != page ^ 0x6c61_7a79 {
            println!("lazy: page {:#x} reads {:#x}", page, v);
            return 1;
        }
    }
    println!("lazy: heap {} MiB ok", (top - start) >> 20);
    0
}

/// `len` bytes of guest RAM at `p` as a buffer for the monitor to fill.
fn unsafe_slice(p: *mut u8, len: usize) -> &'static mut [u8] {
    // SAFETY: callers pass RAM between the kernel and the stack that nothing else borrows.
    unsafe { core::slice::from_raw_parts_mut(p, len) }
}
