//! Interrupts for the guest booted like Linux: an IDT, the local APIC (xAPIC at 0xfee00000)
//! with its one-shot timer, and I/O APIC routing of a device's GSI, so that the guest can sleep
//! in `hlt` until a virtio device (through the monitor's irqfd) or the timer wakes it. The 8259
//! PICs are masked: everything arrives through the APICs, as under Linux.
//!
//! Handlers only count: `DEVICE_VECTOR` and `TIMER_VECTOR` increment a counter and send the EOI;
//! the spurious vector returns; every other vector (exceptions included) reports and exits 5.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::linux::outb;

/// The vector every routed device GSI is delivered on.
pub const DEVICE_VECTOR: u8 = 0x30;
/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x31;
const SPURIOUS_VECTOR: u8 = 0xff;

const LAPIC: u64 = 0xfee0_0000;
const LAPIC_TPR: u64 = 0x80;
const LAPIC_SVR: u64 = 0xf0;
const LAPIC_LVT_TIMER: u64 = 0x320;
const LAPIC_LVT_LINT0: u64 = 0x350;
const LAPIC_LVT_LINT1: u64 = 0x360;
const LAPIC_TIMER_INIT: u64 = 0x380;
const LAPIC_TIMER_DIV: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

const IOAPIC: u64 = 0xfec0_0000;

/// Device interrupts taken so far.
#[unsafe(no_mangle)]
static GUEST_DEVICE_IRQS: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken so far.
#[unsafe(no_mangle)]
static GUEST_TIMER_IRQS: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".pushsection .text.guest_irq, \"ax\"",
    ".code64",
    "guest_irq_device:",
    "push %rax",
    "lock incq GUEST_DEVICE_IRQS(%rip)",
    "movabs $0xfee000b0, %rax",
    "movl $0, (%rax)",
    "pop %rax",
    "iretq",
    "guest_irq_timer:",
    "push %rax",
    "lock incq GUEST_TIMER_IRQS(%rip)",
    "movabs $0xfee000b0, %rax",
    "movl $0, (%rax)",
    "pop %rax",
    "iretq",
    "guest_irq_spurious:",
    "iretq",
    "guest_irq_unexpected:",
    "and $-16, %rsp",
    "call guest_unexpected_interrupt",
    "ud2",
    ".popsection",
    options(att_syntax)
);

unsafe extern "C" {
    fn guest_irq_device();
    fn guest_irq_timer();
    fn guest_irq_spurious();
    fn guest_irq_unexpected();
}

#[unsafe(no_mangle)]
extern "C" fn guest_unexpected_interrupt() -> ! {
    crate::sprintln!("irq: unexpected exception or interrupt");
    crate::linux::exit(5)
}

/// The IDT: 256 gates of 16 bytes.
#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static IDT: crate::virtio::Dma<Idt> = crate::virtio::Dma::zeroed();

fn gate(handler: unsafe extern "C" fn(), cs: u16) -> [u64; 2] {
    let h = handler as usize as u64;
    // Present, DPL 0, 64-bit interrupt gate (type 0xe), IST 0.
    let lo = (h & 0xffff) | u64::from(cs) << 16 | 0x8e << 40 | (h >> 16 & 0xffff) << 48;
    [lo, h >> 32]
}

fn mmio_w(addr: u64, v: u32) {
    // SAFETY: an APIC register (identity mapped below 4 GiB by both boot paths).
    unsafe { (addr as *mut u32).write_volatile(v) }
}

fn mmio_r(addr: u64) -> u32 {
    // SAFETY: as for `mmio_w`.
    unsafe { (addr as *const u32).read_volatile() }
}

fn ioapic_w(reg: u32, v: u32) {
    mmio_w(IOAPIC, reg);
    mmio_w(IOAPIC + 0x10, v);
}

fn ioapic_r(reg: u32) -> u32 {
    mmio_w(IOAPIC, reg);
    mmio_r(IOAPIC + 0x10)
}

/// Loads the IDT, masks the PICs and LINT0/1, and enables the local APIC. Interrupts stay
/// disabled (IF = 0) except inside [`wait`].
pub fn init() {
    let cs: u16;
    // SAFETY: reads the code segment selector.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    // SAFETY: nothing else uses the IDT memory; interrupts are off.
    let idt = unsafe { &mut *IDT.get() };
    for (v, g) in idt.0.iter_mut().enumerate() {
        let h: unsafe extern "C" fn() = match v as u8 {
            DEVICE_VECTOR => guest_irq_device,
            TIMER_VECTOR => guest_irq_timer,
            SPURIOUS_VECTOR => guest_irq_spurious,
            _ => guest_irq_unexpected,
        };
        *g = gate(h, cs);
    }
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let ptr = Ptr {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: IDT.addr(),
    };
    // SAFETY: the IDT is static and fully initialised.
    unsafe { asm!("cli", "lidt [{}]", in(reg) &raw const ptr, options(nostack)) };

    // OCW1: mask every line of both 8259s.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    mmio_w(LAPIC + LAPIC_LVT_LINT0, LVT_MASKED);
    mmio_w(LAPIC + LAPIC_LVT_LINT1, LVT_MASKED);
    mmio_w(LAPIC + LAPIC_LVT_TIMER, LVT_MASKED);
    mmio_w(LAPIC + LAPIC_TPR, 0);
    mmio_w(LAPIC + LAPIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
}

/// Routes I/O APIC input `gsi` to [`DEVICE_VECTOR`] on APIC 0: edge-triggered, active high
/// (an ISA-style line, as `virtio_mmio.device=` interrupts are). Returns false when the I/O
/// APIC has no such input.
pub fn route(gsi: u32) -> bool {
    let max = ioapic_r(1) >> 16 & 0xff;
    if gsi > max {
        return false;
    }
    ioapic_w(0x11 + 2 * gsi, 0);
    ioapic_w(0x10 + 2 * gsi, u32::from(DEVICE_VECTOR));
    true
}

/// Starts the local APIC timer in one-shot mode: `ticks` of the APIC bus clock (divide by 1).
pub fn arm_timer(ticks: u32) {
    mmio_w(LAPIC + LAPIC_TIMER_DIV, 0xb);
    mmio_w(LAPIC + LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR));
    mmio_w(LAPIC + LAPIC_TIMER_INIT, ticks);
}

/// Stops the timer.
pub fn disarm_timer() {
    mmio_w(LAPIC + LAPIC_TIMER_INIT, 0);
    mmio_w(LAPIC + LAPIC_LVT_TIMER, LVT_MASKED);
}

pub fn device_irqs() -> u64 {
    GUEST_DEVICE_IRQS.load(Ordering::SeqCst)
}

pub fn timer_irqs() -> u64 {
    GUEST_TIMER_IRQS.load(Ordering::SeqCst)
}

/// Sleeps in `hlt` with interrupts enabled until `done()` holds (checked with interrupts off,
/// so a wakeup between the check and the `hlt` is not lost: `sti` takes effect after the next
/// instruction) or a timer interrupt arrives. Returns whether `done()` held.
pub fn wait(mut done: impl FnMut() -> bool) -> bool {
    let timer = timer_irqs();
    loop {
        // SAFETY: interrupts are off here (they are only enabled for the hlt below).
        unsafe { asm!("cli", options(nomem, nostack)) };
        if done() {
            return true;
        }
        if timer_irqs() != timer {
            return false;
        }
        // SAFETY: sleeps until an interrupt; the handlers preserve every register they touch.
        unsafe { asm!("sti", "hlt", "cli", options(nomem)) };
    }
}
