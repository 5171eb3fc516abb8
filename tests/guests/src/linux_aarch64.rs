//! Runtime for the guest booted like Linux on aarch64: an arm64 `Image` (the 64-byte header
//! `linux_entry!` emits, linux_arm64.ld puts first), entered at EL1 with the MMU off and x0 = the
//! device tree. The entry turns the MMU and caches on over a static identity map (1 GiB blocks:
//! device memory below 2 GiB, normal memory from 2 GiB, where RAM starts), enables FP/SIMD,
//! installs exception vectors that report and exit 5, zeroes .bss and calls `$main(&Boot)`.
//!
//! Everything the guest learns comes from the device tree (the `fdt` crate): the command line,
//! memory, the initrd, the 16550 console and the virtio-mmio devices with their SPIs. The
//! monitor's debug-exit register (0x0901_0000, not in the device tree) ends the VM with the
//! status written; PSCI (`hvc`) powers it off, resets it, and starts the other vCPUs.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// `kind` of the PVH entry (x86 only; kept for the shared program).
pub const BOOT_PVH: u32 = 1;
/// `kind` of a Linux boot protocol entry: on aarch64, the arm64 `Image` entry.
pub const BOOT_LINUX: u32 = 2;
/// `kind` of the multiboot entry (x86 only; kept for the shared program).
pub const BOOT_MULTIBOOT: u32 = 3;

/// unik's debug-exit register on aarch64.
const DEBUG_EXIT: usize = 0x0901_0000;
/// Where the console is when the device tree does not say (unik's layout).
const DEFAULT_UART: usize = 0x0900_0000;

const PSCI_CPU_ON: u64 = 0xc400_0003;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

/// The 16550's registers, found in the device tree.
static UART: AtomicUsize = AtomicUsize::new(DEFAULT_UART);

fn uart_read(reg: usize) -> u8 {
    // SAFETY: the UART's register window is device memory in the identity map.
    unsafe { ((UART.load(Ordering::Relaxed) + reg) as *const u8).read_volatile() }
}

fn uart_write(reg: usize, v: u8) {
    // SAFETY: as `uart_read`.
    unsafe { ((UART.load(Ordering::Relaxed) + reg) as *mut u8).write_volatile(v) }
}

/// Writes bytes to the 16550 as given, waiting for THR empty (LSR bit 5).
pub fn serial_write(s: &[u8]) {
    for &b in s {
        for _ in 0..100_000 {
            if uart_read(5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        uart_write(0, b);
    }
}

/// A byte received on the 16550, if one is waiting (LSR bit 0, data ready).
pub fn serial_try_read() -> Option<u8> {
    (uart_read(5) & 1 != 0).then(|| uart_read(0))
}

/// The next byte received, polled for at most `cycles` counter ticks.
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

/// Lets the 16550 raise its interrupt when data arrives (IER bit 0).
pub fn serial_rx_interrupt() {
    uart_write(1, 0x01);
}

/// The generic timer's frequency (CNTFRQ_EL0), the rate of [`crate::cycles`].
pub fn counter_hz() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn psci(function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: an SMCCC call to the hypervisor's PSCI; it clobbers x0-x3 at most.
    unsafe { asm!("hvc #0", inout("x0") function => ret, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack)) };
    ret
}

/// Powers the machine off with PSCI SYSTEM_OFF. Exits 7 should that return.
pub fn poweroff() -> ! {
    psci(PSCI_SYSTEM_OFF, 0, 0, 0);
    exit(7)
}

/// Resets the machine with PSCI SYSTEM_RESET; the monitor ends the VM. Exits 6 should that return.
pub fn reset() -> ! {
    psci(PSCI_SYSTEM_RESET, 0, 0, 0);
    exit(6)
}

/// Ends the VM with `status` via the debug-exit register; halts forever if that returns.
pub fn exit(status: u8) -> ! {
    // SAFETY: a store to the monitor's debug-exit register (device memory).
    unsafe { (DEBUG_EXIT as *mut u32).write_volatile(u32::from(status)) };
    halt_forever()
}

/// Waits for interrupts with all of them masked: the vCPU sleeps inside KVM.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: masks interrupts and waits; nothing follows.
        unsafe { asm!("msr daifset, #0xf", "wfi", options(nomem, nostack)) };
    }
}

/// Most virtio devices the guest takes from the device tree.
pub const MAX_DEVICES: usize = 8;
/// Most vCPUs the guest starts.
pub const MAX_CPUS: usize = 8;

/// What the boot entry learned from the device tree.
pub struct Boot {
    pub kind: u32,
    pub cmdline: &'static str,
    pub mem_bytes: u64,
    /// Physical address and size of the initial ramdisk, if the loader placed one.
    pub initrd: Option<(u64, u64)>,
    /// Multiboot's (x86 only): always `None`.
    pub mem_lower_upper: Option<(u32, u32)>,
    /// Multiboot's boot loader name (x86 only): "".
    pub loader: &'static str,
    /// The virtio-mmio devices: (base, SPI), `ndevices` of them.
    pub devices: [(u64, u32); MAX_DEVICES],
    pub ndevices: usize,
    /// The vCPUs' MPIDRs, boot vCPU first, `ncpus` of them.
    pub cpus: [u64; MAX_CPUS],
    pub ncpus: usize,
}

impl Boot {
    /// The virtio-mmio devices: (base, SPI).
    pub fn virtio_devices(&self) -> &[(u64, u32)] {
        &self.devices[..self.ndevices]
    }
}

fn be(value: &[u8]) -> u64 {
    value.iter().fold(0, |acc, b| acc << 8 | u64::from(*b))
}

/// Decodes the device tree at `dtb`.
///
/// # Safety
/// `dtb` must be the device tree the monitor handed over, in identity-mapped memory.
pub unsafe fn boot_info(dtb: u64) -> Boot {
    // SAFETY: the caller's.
    let fdt = match unsafe { fdt::Fdt::from_ptr(dtb as *const u8) } {
        Ok(fdt) => fdt,
        Err(_) => {
            crate::sprintln!("virtio: no device tree at {:#x}", dtb);
            exit(1)
        }
    };
    let mut boot = Boot {
        kind: BOOT_LINUX,
        cmdline: "",
        mem_bytes: 0,
        initrd: None,
        mem_lower_upper: None,
        loader: "",
        devices: [(0, 0); MAX_DEVICES],
        ndevices: 0,
        cpus: [0; MAX_CPUS],
        ncpus: 0,
    };
    if let Some(uart) = fdt.find_compatible(&["ns16550a"]).and_then(|n| n.reg()).and_then(|mut r| r.next()) {
        UART.store(uart.starting_address as usize, Ordering::Relaxed);
    }
    if let Some(chosen) = fdt.find_node("/chosen") {
        boot.cmdline = chosen.property("bootargs").and_then(|p| p.as_str()).unwrap_or("");
        let start = chosen.property("linux,initrd-start").map(|p| be(p.value));
        let end = chosen.property("linux,initrd-end").map(|p| be(p.value));
        if let (Some(start), Some(end)) = (start, end) {
            boot.initrd = Some((start, end.saturating_sub(start)));
        }
    }
    for node in fdt.all_nodes() {
        let compatible = |c: &str| node.compatible().is_some_and(|all| all.all().any(|s| s == c));
        if node.property("device_type").and_then(|p| p.as_str()) == Some("memory") {
            for r in node.reg().into_iter().flatten() {
                boot.mem_bytes += r.size.unwrap_or(0) as u64;
            }
        } else if node.property("device_type").and_then(|p| p.as_str()) == Some("cpu") {
            if let Some(reg) = node.property("reg")
                && boot.ncpus < MAX_CPUS
            {
                boot.cpus[boot.ncpus] = be(reg.value);
                boot.ncpus += 1;
            }
        } else if compatible("virtio,mmio") && boot.ndevices < MAX_DEVICES {
            let base = node.reg().and_then(|mut r| r.next()).map_or(0, |r| r.starting_address as u64);
            // interrupts = <GIC_SPI number flags>.
            let spi = node.property("interrupts").and_then(|p| p.value.get(4..8)).map_or(0, be) as u32;
            boot.devices[boot.ndevices] = (base, spi);
            boot.ndevices += 1;
        }
    }
    boot
}

/// vCPUs (the boot one included) that reached Rust code.
static CPUS_UP: AtomicU64 = AtomicU64::new(1);
/// One 16 KiB stack per secondary vCPU.
static mut CPU_STACKS: [[u8; 16384]; MAX_CPUS] = [[0; 16384]; MAX_CPUS];

/// Entered by each secondary vCPU (after the MMU is on): counts itself, then sleeps.
#[unsafe(no_mangle)]
extern "C" fn guest_secondary() -> ! {
    CPUS_UP.fetch_add(1, Ordering::SeqCst);
    halt_forever()
}

unsafe extern "C" {
    fn secondary_start();
}

/// Starts every other vCPU of `boot` with PSCI CPU_ON and waits (up to `cycles` ticks) until
/// each has counted itself; returns how many vCPUs run, and the first CPU_ON error.
pub fn start_cpus(boot: &Boot, cycles: u64) -> (u64, i64) {
    let mut error = 0;
    for (i, &mpidr) in boot.cpus[..boot.ncpus].iter().enumerate().skip(1) {
        // SAFETY: each vCPU gets its own stack; only its address is taken.
        let top = unsafe { core::ptr::addr_of_mut!(CPU_STACKS[i]) as u64 } + 16384;
        let ret = psci(PSCI_CPU_ON, mpidr, secondary_start as *const () as u64, top);
        if ret != 0 && error == 0 {
            error = ret;
        }
    }
    let start = crate::cycles();
    while CPUS_UP.load(Ordering::SeqCst) < boot.ncpus as u64 && crate::cycles().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
    (CPUS_UP.load(Ordering::SeqCst), error)
}

/// An exception the guest did not expect: report it and exit 5.
#[unsafe(no_mangle)]
extern "C" fn guest_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    crate::sprintln!("virtio: exception {} esr={:#x} elr={:#x} far={:#x}", kind, esr, elr, far);
    exit(5)
}

/// Emits the arm64 `Image` header and entry, the static identity map, the exception vectors
/// and the panic handler; `$main(&Boot) -> u8`'s result is the exit status.
///
/// The map (level-1 table, 4 KiB granule, 39-bit addresses): 0-2 GiB device memory
/// (nGnRnE, never executable), 2-6 GiB normal write-back memory. MAIR index 0 is device,
/// index 1 normal. The header: `b` over it, text_offset 0, image_size `_end - _start`,
/// flags 0x2 (little-endian, 4 KiB pages, near the start of RAM: it is linked there), magic
/// "ARM\x64".
#[macro_export]
macro_rules! linux_entry {
    ($main:path) => {
        core::arch::global_asm!(
            ".pushsection .text.head, \"ax\"",
            ".globl _start",
            "_start:",
            "b 1f",
            ".long 0",
            ".quad 0",
            ".quad _end - _start",
            ".quad 0x2",
            ".quad 0, 0, 0",
            ".ascii \"ARM\\x64\"",
            ".long 0",
            "1:",
            "mov x19, x0",
            "bl guest_mmu_on",
            // Zero .bss (the stacks live there), then the boot stack.
            "adrp x0, __bss_start",
            "add x0, x0, :lo12:__bss_start",
            "adrp x1, _end",
            "add x1, x1, :lo12:_end",
            "2:",
            "cmp x0, x1",
            "b.hs 3f",
            "str xzr, [x0], #8",
            "b 2b",
            "3:",
            "adrp x0, guest_stack_top",
            "add x0, x0, :lo12:guest_stack_top",
            "mov sp, x0",
            "mov x0, x19",
            "bl guest_entry",
            "b .",
            // A secondary vCPU from PSCI CPU_ON: x0 = its stack top.
            ".globl secondary_start",
            "secondary_start:",
            "mov x19, x0",
            "bl guest_mmu_on",
            "mov sp, x19",
            "bl guest_secondary",
            "b .",
            // MMU, caches, FP/SIMD and vectors on; x19 and x30 preserved.
            "guest_mmu_on:",
            "mrs x1, cpacr_el1",
            "orr x1, x1, #(3 << 20)",
            "msr cpacr_el1, x1",
            "ldr x1, =0xff00",
            "msr mair_el1, x1",
            "ldr x1, =0x200803519",
            "msr tcr_el1, x1",
            "adrp x1, guest_l1",
            "add x1, x1, :lo12:guest_l1",
            "msr ttbr0_el1, x1",
            "adrp x1, guest_vectors",
            "add x1, x1, :lo12:guest_vectors",
            "msr vbar_el1, x1",
            "isb",
            "tlbi vmalle1",
            "ic iallu",
            "dsb nsh",
            "isb",
            "mrs x1, sctlr_el1",
            "ldr x2, =0x1005",
            "orr x1, x1, x2",
            "bic x1, x1, #2",
            "msr sctlr_el1, x1",
            "isb",
            "ret",
            ".ltorg",
            ".popsection",
            // Exception vectors: 16 entries of 0x80 bytes; each passes its index.
            ".pushsection .text.vectors, \"ax\"",
            ".balign 2048",
            "guest_vectors:",
            ".set i, 0",
            ".rept 16",
            ".balign 128",
            "mov x0, #i",
            "mrs x1, esr_el1",
            "mrs x2, elr_el1",
            "mrs x3, far_el1",
            "b guest_exception",
            ".set i, i + 1",
            ".endr",
            ".popsection",
            // The identity map: 1 GiB blocks, AF, inner shareable for normal memory.
            ".pushsection .rodata.guest_l1, \"a\"",
            ".balign 4096",
            "guest_l1:",
            ".quad 0x0060000000000401",
            ".quad 0x0060000040000401",
            ".quad 0x0000000080000705",
            ".quad 0x00000000c0000705",
            ".quad 0x0000000100000705",
            ".quad 0x0000000140000705",
            ".fill 506, 8, 0",
            ".popsection",
            ".pushsection .bss.guest_boot, \"aw\", @nobits",
            ".balign 16",
            "guest_stack: .skip 65536",
            "guest_stack_top:",
            ".popsection",
        );

        /// The Rust entry of the boot vCPU.
        #[unsafe(no_mangle)]
        extern "C" fn guest_entry(dtb: u64) -> ! {
            // SAFETY: the entry passes the device tree the monitor handed over.
            let boot = unsafe { $crate::linux::boot_info(dtb) };
            $crate::linux::exit($main(&boot))
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::sprintln!("virtio: panic: {}", info);
            $crate::linux::exit(3)
        }
    };
}
