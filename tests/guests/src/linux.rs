//! Runtime for guests booted like Linux instead of through solo5: the three boot entries (PVH,
//! multiboot version 1 and the 64-bit Linux boot protocol), a 16550 serial console on port 0x3f8, and exit through the
//! monitor's debug-exit port 0x501. `linux_entry!(main)` emits the entries and the panic handler.

use core::arch::asm;

/// `kind` passed by the PVH entry: `info` is `struct hvm_start_info`.
pub const BOOT_PVH: u32 = 1;
/// `kind` passed by the Linux entry: `info` is `struct boot_params` (the zero page).
pub const BOOT_LINUX: u32 = 2;
/// `kind` passed by the multiboot entry: `info` is the multiboot information structure.
pub const BOOT_MULTIBOOT: u32 = 3;

const PVH_MAGIC: u32 = 0x336e_c578;
const COM1: u16 = 0x3f8;
const EXIT_PORT: u16 = 0x501;

pub(crate) fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O has no memory effects.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CMOS/RTC register `reg` (index port 0x70, data port 0x71).
pub fn cmos_read(reg: u8) -> u8 {
    outb(0x70, reg);
    inb(0x71)
}

/// Writes bytes to COM1 as given (no "\r\n" translation), waiting for THR empty (LSR bit 5).
pub fn serial_write(s: &[u8]) {
    for &b in s {
        // Bounded, so a missing UART cannot hang the guest.
        for _ in 0..100_000 {
            if inb(COM1 + 5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}

/// A byte received on COM1, if one is waiting (LSR bit 0, data ready).
pub fn serial_try_read() -> Option<u8> {
    (inb(COM1 + 5) & 1 != 0).then(|| inb(COM1))
}

/// The next byte received on COM1, polled for at most `cycles` TSC cycles.
pub fn serial_read(cycles: u64) -> Option<u8> {
    let start = crate::cycles();
    loop {
        if let Some(b) = serial_try_read() {
            return Some(b);
        }
        if crate::cycles().wrapping_sub(start) > cycles {
            return None;
        }
        core::hint::spin_loop();
    }
}

/// Lets COM1 raise its interrupt (IRQ 4) when data arrives: IER bit 0, and MCR OUT2, which
/// gates the line on PCs.
pub fn serial_rx_interrupt() {
    outb(COM1 + 1, 0x01);
    outb(COM1 + 4, 0x08);
}

/// Powers the machine off the ACPI way of a hardware-reduced platform: SLP_TYP = 5 (`\_S5`)
/// with SLP_EN in the FADT's sleep control register (I/O port 0x3c0 on unik). Exits 7 should
/// that return.
pub fn poweroff() -> ! {
    const SLEEP_CONTROL: u16 = 0x3c0;
    const SLP_EN: u8 = 1 << 5;
    outb(SLEEP_CONTROL, 5 << 2 | SLP_EN);
    exit(7)
}

/// Pulses the reset line through the i8042 controller (command 0xfe on port 0x64), as Linux's
/// `reboot=k` does; the monitor ends the VM.
pub fn reset() -> ! {
    outb(0x64, 0xfe);
    exit(6)
}

/// Ends the VM with `status` via the debug-exit port; halts forever if that returns (QEMU
/// without isa-debug-exit).
pub fn exit(status: u8) -> ! {
    outb(EXIT_PORT, status);
    halt_forever()
}

/// Halts with interrupts off: the vCPU sleeps inside KVM and never exits to the monitor again.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU; nothing follows.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// What the boot entry learned: the command line, the RAM total and the initrd.
pub struct Boot {
    pub kind: u32,
    pub cmdline: &'static str,
    pub mem_bytes: u64,
    /// Physical address and size of the initial ramdisk, if the loader placed one.
    pub initrd: Option<(u64, u64)>,
    /// Multiboot's mem_lower and mem_upper (KiB), when given.
    pub mem_lower_upper: Option<(u32, u32)>,
    /// The boot loader's name (multiboot), or "".
    pub loader: &'static str,
}

/// Reads `T` at physical address `addr` (identity mapped; may be unaligned).
///
/// # Safety
/// `addr` must be readable memory.
unsafe fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: the caller's.
    unsafe { (addr as *const T).read_unaligned() }
}

/// The NUL-terminated string at `addr` (empty when 0 or not UTF-8).
fn c_str(addr: u64) -> &'static str {
    if addr == 0 {
        return "";
    }
    let p = addr as *const u8;
    let mut len = 0;
    // SAFETY: the boot loader put a NUL-terminated string there; bounded to 8 KiB.
    while len < 8192 && unsafe { p.add(len).read_volatile() } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes were just read.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(p, len) }).unwrap_or("")
}

/// Decodes the boot information the entry stub was handed.
///
/// # Safety
/// `info` must be what the entry's protocol promises.
pub unsafe fn boot_info(kind: u32, info: u64) -> Boot {
    let (mut mem_bytes, mut initrd, mut mem_lower_upper, mut loader) = (0, None, None, "");
    // SAFETY (all arms): offsets are those of the protocol's structures, which the loader wrote.
    let cmdline = unsafe {
        if kind == BOOT_MULTIBOOT {
            let flags = rd::<u32>(info);
            if flags & 1 != 0 {
                mem_lower_upper = Some((rd::<u32>(info + 4), rd::<u32>(info + 8)));
            }
            // mmap_length @44, mmap_addr @48; an entry is {size, base u64, length u64, type},
            // the next at this + size + 4.
            if flags & 1 << 6 != 0 {
                let mut e = u64::from(rd::<u32>(info + 48));
                let end = e + u64::from(rd::<u32>(info + 44));
                while e < end {
                    if rd::<u32>(e + 20) == 1 {
                        mem_bytes += rd::<u64>(e + 12);
                    }
                    e += u64::from(rd::<u32>(e)) + 4;
                }
            }
            // mods_count @20, mods_addr @24; a module is {start, end, string, reserved}.
            if flags & 1 << 3 != 0 && rd::<u32>(info + 20) >= 1 {
                let m = u64::from(rd::<u32>(info + 24));
                let (start, end) = (rd::<u32>(m), rd::<u32>(m + 4));
                initrd = Some((u64::from(start), u64::from(end.wrapping_sub(start))));
            }
            if flags & 1 << 9 != 0 {
                loader = c_str(u64::from(rd::<u32>(info + 64)));
            }
            if flags & 1 << 2 != 0 {
                c_str(u64::from(rd::<u32>(info + 16)))
            } else {
                ""
            }
        } else if kind == BOOT_PVH {
            if rd::<u32>(info) != PVH_MAGIC {
                crate::sprintln!("virtio: bad hvm_start_info magic");
                exit(1);
            }
            // memmap_paddr/memmap_entries exist from version 1 on; entries are 24 bytes.
            let (map, n) = (rd::<u64>(info + 40), rd::<u32>(info + 48));
            if rd::<u32>(info + 4) >= 1 && map != 0 {
                for i in 0..u64::from(n) {
                    let e = map + i * 24;
                    if rd::<u32>(e + 16) == 1 {
                        mem_bytes += rd::<u64>(e + 8);
                    }
                }
            }
            // nr_modules @12, modlist_paddr @16; a module is {paddr, size, cmdline, reserved}.
            let (nr, list) = (rd::<u32>(info + 12), rd::<u64>(info + 16));
            if nr >= 1 && list != 0 {
                initrd = Some((rd::<u64>(list), rd::<u64>(list + 8)));
            }
            c_str(rd::<u64>(info + 24))
        } else {
            // boot_params: e820_entries @0x1e8, e820_table @0x2d0 (20-byte entries).
            let n = rd::<u8>(info + 0x1e8).min(128);
            for i in 0..u64::from(n) {
                let e = info + 0x2d0 + i * 20;
                if rd::<u32>(e + 16) == 1 {
                    mem_bytes += rd::<u64>(e + 8);
                }
            }
            // hdr.ramdisk_image @0x218 and ramdisk_size @0x21c; their high halves @0xc0/@0xc4.
            let addr = u64::from(rd::<u32>(info + 0x218)) | u64::from(rd::<u32>(info + 0xc0)) << 32;
            let size = u64::from(rd::<u32>(info + 0x21c)) | u64::from(rd::<u32>(info + 0xc4)) << 32;
            if size != 0 {
                initrd = Some((addr, size));
            }
            // hdr.cmd_line_ptr @0x228, ext_cmd_line_ptr @0x0c8 (high 32 bits).
            c_str(u64::from(rd::<u32>(info + 0x228)) | u64::from(rd::<u32>(info + 0xc8)) << 32)
        }
    };
    Boot {
        kind,
        cmdline,
        mem_bytes,
        initrd,
        mem_lower_upper,
        loader,
    }
}

/// Emits the three boot entries, a PVH note pointing at the 32-bit one, a multiboot header, and
/// the panic handler. The entries zero .bss, set a stack and call `$main(&Boot) -> u8`; its
/// result is the exit status. The linker script picks which protocols a binary offers
/// (linux.ld: all three, where the monitor prefers PVH; multiboot.ld: multiboot only).
///
/// - `_start` (e_entry with linux.ld): 64-bit Linux boot protocol; long mode and identity
///   paging set up by the monitor, RSI = `struct boot_params`.
/// - `pvh_start32` (Xen note type 18): 32-bit protected mode, paging off, EBX = `hvm_start_info`.
///   Builds a GDT and identity page tables for 4 GiB (2 MiB pages), enters long mode.
/// - `multiboot_start32` (the header's entry_addr; e_entry with multiboot.ld): the same 32-bit
///   state with EAX = `0x2BADB002` (anything else: exit status 9 through the debug-exit port)
///   and EBX = the multiboot information; then as `pvh_start32`. The header (in the first
///   section of .text) asks for page-aligned modules and the memory map, and gives the address
///   fields: the image from `__image_start` to `_edata`, bss to `_end`.
#[macro_export]
macro_rules! linux_entry {
    ($main:path) => {
        core::arch::global_asm!(
            // The multiboot header: magic, flags (bits 0, 1, 16), checksum, address fields.
            ".pushsection .text.multiboot, \"ax\"",
            ".balign 4",
            "multiboot_header:",
            ".long 0x1badb002",
            ".long 0x00010003",
            ".long -(0x1badb002 + 0x00010003)",
            ".long multiboot_header",
            ".long __image_start",
            ".long _edata",
            ".long _end",
            ".long multiboot_start32",
            ".popsection",
            // The PVH note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY, desc = entry address.
            ".pushsection .note.Xen, \"a\", @note",
            ".balign 4",
            ".long 4, 4, 18",
            ".asciz \"Xen\"",
            ".long pvh_start32",
            ".popsection",
            // 64-bit Linux entry.
            ".pushsection .text._start, \"ax\"",
            ".code64",
            ".globl _start",
            "_start:",
            "cli",
            "cld",
            // Zero .bss (the stack lives there) without touching the monitor's stack.
            "lea __bss_start(%rip), %rdi",
            "lea _end(%rip), %rcx",
            "sub %rdi, %rcx",
            "xor %eax, %eax",
            "rep stosb",
            "lea guest_stack_top(%rip), %rsp",
            "mov $2, %edi",
            "call guest_entry",
            "ud2",
            ".popsection",
            // 32-bit multiboot entry, then the PVH entry they share; EBP = the kind for
            // guest_entry, ESI = the boot information.
            ".pushsection .text.pvh, \"ax\"",
            ".code32",
            ".globl multiboot_start32",
            "multiboot_start32:",
            "cli",
            "cld",
            "mov $3, %ebp",
            "cmp $0x2badb002, %eax",
            "je 3f",
            "mov $0x501, %dx",
            "mov $9, %al",
            "out %al, %dx",
            "2:",
            "hlt",
            "jmp 2b",
            ".globl pvh_start32",
            "pvh_start32:",
            "cli",
            "cld",
            "mov $1, %ebp",
            "3:",
            "mov %ebx, %esi",
            // Zero .bss (page tables and stack live there).
            "mov $__bss_start, %edi",
            "mov $_end, %ecx",
            "sub %edi, %ecx",
            "xor %eax, %eax",
            "rep stosb",
            // PD[i] = i * 2 MiB | PS | RW | P, for the 2048 entries of 4 page directories.
            "xor %ecx, %ecx",
            "1:",
            "mov %ecx, %eax",
            "shl $21, %eax",
            "or $0x83, %eax",
            "mov %eax, pvh_pd(,%ecx,8)",
            "inc %ecx",
            "cmp $2048, %ecx",
            "jne 1b",
            // PDPT[0..4] -> the four PDs; PML4[0] -> PDPT.
            "mov $pvh_pd + 3, %eax",
            "mov %eax, pvh_pdpt",
            "add $0x1000, %eax",
            "mov %eax, pvh_pdpt + 8",
            "add $0x1000, %eax",
            "mov %eax, pvh_pdpt + 16",
            "add $0x1000, %eax",
            "mov %eax, pvh_pdpt + 24",
            "mov $pvh_pdpt + 3, %eax",
            "mov %eax, pvh_pml4",
            // CR4.PAE, CR3, EFER.LME, CR0.PG, then a far jump into the 64-bit code segment.
            "lgdt pvh_gdt_ptr",
            "mov %cr4, %eax",
            "or $0x20, %eax",
            "mov %eax, %cr4",
            "mov $pvh_pml4, %eax",
            "mov %eax, %cr3",
            "mov $0xc0000080, %ecx",
            "rdmsr",
            "or $0x100, %eax",
            "wrmsr",
            "mov %cr0, %eax",
            "or $0x80000001, %eax",
            "mov %eax, %cr0",
            "ljmp $0x08, $pvh_start64",
            ".code64",
            "pvh_start64:",
            "mov $0x10, %ax",
            "mov %ax, %ds",
            "mov %ax, %es",
            "mov %ax, %ss",
            "mov %ax, %fs",
            "mov %ax, %gs",
            "mov %esi, %esi", // upper halves are undefined after the mode switch
            "lea guest_stack_top(%rip), %rsp",
            "mov %ebp, %edi", // the kind: 1 PVH, 3 multiboot
            "call guest_entry",
            "ud2",
            ".popsection",
            // GDT: null, 64-bit code (0x08), data (0x10).
            ".pushsection .rodata.pvh_gdt, \"a\"",
            ".balign 8",
            "pvh_gdt:",
            ".quad 0, 0x00af9a000000ffff, 0x00cf92000000ffff",
            "pvh_gdt_ptr:",
            ".word pvh_gdt_ptr - pvh_gdt - 1",
            ".long pvh_gdt",
            ".popsection",
            // Page tables and the 64 KiB stack.
            ".pushsection .bss.guest_boot, \"aw\", @nobits",
            ".balign 4096",
            "pvh_pml4: .skip 4096",
            "pvh_pdpt: .skip 4096",
            "pvh_pd: .skip 4 * 4096",
            "guest_stack: .skip 65536",
            "guest_stack_top:",
            ".popsection",
            options(att_syntax)
        );

        /// Common Rust entry of both boot paths.
        #[unsafe(no_mangle)]
        extern "C" fn guest_entry(kind: u32, info: u64) -> ! {
            // SAFETY: the entry stubs pass what their protocol handed them.
            let boot = unsafe { $crate::linux::boot_info(kind, info) };
            $crate::linux::exit($main(&boot))
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::sprintln!("virtio: panic: {}", info);
            $crate::linux::exit(3)
        }
    };
}
