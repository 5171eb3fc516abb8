//! aarch64 guest-physical layout of an hvt guest (identity mapped, VA == GPA).

/// ELF machine the loader accepts (`EM_AARCH64`).
pub const ELF_MACHINE: u16 = 183;
/// Level-0 table (TTBR0_EL1).
pub const PGD_GPA: u64 = 0x1000;
/// Level-1 table.
pub const PUD_GPA: u64 = 0x2000;
/// Four level-2 tables, one per GiB.
pub const PMD_GPA: u64 = 0x3000;
/// Level-3 table for the first 2 MiB.
pub const PTE_GPA: u64 = 0x7000;
/// `struct hvt_boot_info`, followed by the manifest copy and the command line.
pub const BOOT_INFO_GPA: u64 = 0x10000;
/// First byte the guest may load into (`HVT_GUEST_MIN_BASE`).
pub const GUEST_MIN_BASE: u64 = 0x10_0000;
/// Guest RAM is sized in multiples of this.
pub const MEM_ALIGN: u64 = 2 << 20;
/// Largest guest RAM: everything below the MMIO window.
pub const MEM_MAX: u64 = 4 << 30;
/// Hypercall MMIO window: address = base + (nr << 3).
pub const HYPERCALL_MMIO_BASE: u64 = 0x1_0000_0000;
/// The net ring's kick: a 4-byte store to this address (an ioeventfd, never a monitor exit).
pub const RING_KICK_MMIO: u64 = 0x1_0000_0100;
/// Initial stack pointer distance below the top of RAM.
pub const STACK_TOP_OFFSET: u64 = 16;
