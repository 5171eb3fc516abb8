//! Architecture specifics of the unik monitor.
//!
//! What lives here: each architecture's guest layout (`layout`); making a vCPU ready to execute a
//! solo5-hvt guest at its entry point (page tables, descriptor tables, control and general
//! registers, CPUID); decoding the hvt hypercall transport (x86 port I/O, aarch64 MMIO); and, for
//! Linux-boot guests the machine and entry state (x86_64: the in-kernel irqchip and PIT, the 64-bit,
//! PVH or multiboot entry; aarch64: the layout, PSCI and the `Image` entry). Every architecture
//! exports the same names (but aarch64's `mpidr`, which only its device tree needs); callers
//! outside Linux-boot code never use `cfg(target_arch)`.
#![warn(missing_docs)]

mod hypercall;

/// Guest debugging: gdb's register layout, an ELF core's registers, KVM guest debug.
pub mod debug {
    /// What stopped a vCPU that KVM guest debug was on for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DebugEvent {
        /// A single step completed.
        Step,
        /// A breakpoint was hit.
        Breakpoint,
        /// Another debug exception.
        Other,
    }

    #[cfg(target_arch = "aarch64")]
    pub use crate::aarch64::debug::*;
    #[cfg(target_arch = "x86_64")]
    pub use crate::x86_64::debug::*;
}

pub use hypercall::{DecodeError, HYPERCALL_MAX, HvtCall};

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::linux::{self as linux_layout, setup_linux_vcpu, setup_linux_vm};
#[cfg(target_arch = "x86_64")]
pub use x86_64::{INSTRUCTION_POINTER, decode_mmio_write, decode_pio_out, instruction_pointer, layout, setup_vcpu, setup_vm};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::linux::{self as linux_layout, mpidr, setup_linux_vcpu, setup_linux_vm};
#[cfg(target_arch = "aarch64")]
pub use aarch64::{INSTRUCTION_POINTER, decode_mmio_write, decode_pio_out, instruction_pointer, layout, setup_vcpu, setup_vm};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("unik supports x86_64 and aarch64 only");

/// Errors while preparing the VM or vCPU.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// A KVM ioctl failed.
    #[error("KVM: {what} failed: {source}")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// The ioctl error.
        source: kvm_ioctls::Error,
    },
    /// Writing boot structures into guest memory failed.
    #[error("Could not write {what} into guest memory")]
    GuestMemory {
        /// Which structure.
        what: &'static str,
    },
    /// The guest memory size does not fit the architecture's layout.
    #[error("Guest memory size {0:#x} is not supported")]
    MemorySize(u64),
    /// The host cannot give the guest a usable cycle counter frequency.
    #[error("KVM: host TSC is unstable, cannot continue")]
    UnstableTsc,
    /// The architecture cannot do this yet.
    #[error("{0} is not supported on this architecture yet")]
    Unsupported(&'static str),
}

/// Where and how a Linux-boot-protocol guest starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxEntry {
    /// The 64-bit boot protocol: long mode, identity paging, `boot_params` address in RSI.
    Long64 {
        /// Entry point.
        rip: u64,
        /// Guest address of the zero page.
        boot_params: u64,
    },
    /// The PVH entry: 32-bit protected mode, paging off, `hvm_start_info` address in EBX.
    Pvh {
        /// Entry point (from the kernel's XEN_ELFNOTE_PHYS32_ENTRY note).
        rip: u64,
        /// Guest address of `hvm_start_info`.
        start_info: u64,
    },
    /// The multiboot (version 1) entry: 32-bit protected mode, paging off, `0x2BADB002` in EAX,
    /// the multiboot information structure's address in EBX.
    Multiboot {
        /// Entry point (the header's `entry_addr` or the ELF's `e_entry`).
        eip: u32,
        /// Guest address of the multiboot information structure.
        info: u32,
    },
    /// An arm64 `Image`: EL1h, MMU off, x0 = the device tree's address.
    Arm64Image {
        /// Entry point (the image's load address).
        pc: u64,
        /// Guest address of the device tree blob.
        dtb: u64,
    },
}

/// What the guest needs from its vCPU setup, returned by `setup_vcpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Cycle counter frequency in Hz (TSC on x86_64, CNTFRQ on aarch64), for the boot info.
    pub cpu_cycle_freq: u64,
}
