//! x86_64 guest-physical layout of an hvt guest (identity mapped, VA == GPA).

/// ELF machine the loader accepts (`EM_X86_64`).
pub const ELF_MACHINE: u16 = 62;
/// GDT (3 entries).
pub const GDT_GPA: u64 = 0x1000;
/// PML4 (CR3).
pub const PML4_GPA: u64 = 0x2000;
/// PDPT.
pub const PDPT_GPA: u64 = 0x3000;
/// Four page directories, one per GiB.
pub const PD_GPA: u64 = 0x4000;
/// 4 KiB page table for the first 2 MiB.
pub const PT0_GPA: u64 = 0x8000;
/// `struct hvt_boot_info`, followed by the manifest copy and the command line.
pub const BOOT_INFO_GPA: u64 = 0x10000;
/// First byte the guest may load into (`HVT_GUEST_MIN_BASE`).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;
/// Guest RAM is sized in multiples of this.
pub const MEM_ALIGN: u64 = 2 << 20;
/// Largest guest RAM (four page directories of 2 MiB pages).
pub const MEM_MAX: u64 = 4 << 30;
/// Hypercall port base: port = base + nr.
pub const HYPERCALL_PIO_BASE: u64 = 0x500;
/// The net ring's kick: a 4-byte OUT to this port (an ioeventfd, never a monitor exit).
pub const RING_KICK_PIO: u64 = 0x600;
/// Initial stack pointer distance below the top of RAM.
pub const STACK_TOP_OFFSET: u64 = 8;
