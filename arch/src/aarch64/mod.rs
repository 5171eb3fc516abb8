//! aarch64: EL1h with the MMU on and identity-mapped tables, solo5-hvt's entry state; for
//! Linux-boot guests the layout and the `Image` entry state (`linux.rs`).

pub(crate) mod debug;
pub mod layout;
pub mod linux;
mod paging;
mod regs;

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::hypercall::decode_window;
use crate::{ArchError, DecodeError, HvtCall, VcpuInfo};

/// Per-VM setup before vCPUs exist (nothing is needed on aarch64 for hvt guests).
pub fn setup_vm(_vm: &VmFd) -> Result<(), ArchError> {
    Ok(())
}

/// Writes page tables over the first `mapped` bytes of guest-physical memory (RAM, and the net
/// ring above it when there is one), initialises the vCPU with the host's preferred target and
/// sets system and core registers so it starts at `entry` with X0 pointing at the boot info and
/// the stack at the top of the `mem_size` bytes of RAM.
pub fn setup_vcpu(
    _kvm: &Kvm,
    vm: &VmFd,
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    mem_size: u64,
    mapped: u64,
    entry: u64,
) -> Result<VcpuInfo, ArchError> {
    paging::write_page_tables(mem, mapped)?;
    regs::init_vcpu(vm, vcpu)?;
    regs::set_regs(vcpu, entry, mem_size)?;
    let freq = regs::counter_frequency();
    if freq == 0 {
        return Err(ArchError::UnstableTsc);
    }
    Ok(VcpuInfo { cpu_cycle_freq: freq })
}

/// The instruction pointer's name in this architecture's fault messages (solo5-hvt's).
pub const INSTRUCTION_POINTER: &str = "pc";

/// The guest program counter (for error messages).
pub fn instruction_pointer(vcpu: &VcpuFd) -> Result<u64, ArchError> {
    regs::get_pc(vcpu)
}

/// aarch64 has no port I/O; every such exit is an invalid access.
pub fn decode_pio_out(port: u64, data: &[u8]) -> Result<HvtCall, DecodeError> {
    Err(DecodeError::Port { port, size: data.len() })
}

/// Decodes a 4-byte store to the hypercall window: `0x1_0000_0000 + (nr << 3)`.
pub fn decode_mmio_write(addr: u64, data: &[u8]) -> Result<HvtCall, DecodeError> {
    decode_window(addr, data, layout::HYPERCALL_MMIO_BASE, 8).ok_or(DecodeError::Mmio { addr, size: data.len() })
}
