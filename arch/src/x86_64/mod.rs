//! x86_64: long mode with identity-mapped page tables, solo5-hvt's entry state.

mod cpuid;
pub(crate) mod debug;
mod gdt;
pub mod layout;
pub mod linux;
mod paging;
mod regs;

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::hypercall::decode_window;
use crate::{ArchError, DecodeError, HvtCall, VcpuInfo};

/// Per-VM setup before vCPUs exist (nothing is needed on x86_64 for hvt guests).
pub fn setup_vm(_vm: &VmFd) -> Result<(), ArchError> {
    Ok(())
}

/// Writes page tables over the first `mapped` bytes of guest-physical memory (RAM, and the net
/// ring above it when there is one) and the GDT, then sets CPUID, special and general
/// registers so the vCPU starts at `entry` with RDI pointing at the boot info and the stack at
/// the top of the `mem_size` bytes of RAM.
pub fn setup_vcpu(
    kvm: &Kvm,
    _vm: &VmFd,
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    mem_size: u64,
    mapped: u64,
    entry: u64,
) -> Result<VcpuInfo, ArchError> {
    paging::write_page_tables(mem, mapped)?;
    gdt::write_gdt(mem)?;
    cpuid::set_cpuid(kvm, vcpu)?;
    regs::set_sregs(vcpu)?;
    regs::set_regs(vcpu, entry, mem_size)?;
    let khz = vcpu.get_tsc_khz().map_err(|_| ArchError::UnstableTsc)?;
    if khz == 0 {
        return Err(ArchError::UnstableTsc);
    }
    Ok(VcpuInfo {
        cpu_cycle_freq: u64::from(khz) * 1000,
    })
}

/// The instruction pointer's name in this architecture's fault messages (solo5-hvt's).
pub const INSTRUCTION_POINTER: &str = "rip";

/// The guest instruction pointer (for error messages).
pub fn instruction_pointer(vcpu: &VcpuFd) -> Result<u64, ArchError> {
    vcpu.get_regs().map(|r| r.rip).map_err(|source| ArchError::Kvm {
        what: "KVM_GET_REGS",
        source,
    })
}

/// Decodes an `out` to the hypercall ports: 4 bytes to `0x500 + nr`.
pub fn decode_pio_out(port: u64, data: &[u8]) -> Result<HvtCall, DecodeError> {
    decode_window(port, data, layout::HYPERCALL_PIO_BASE, 1).ok_or(DecodeError::Port { port, size: data.len() })
}

/// x86_64 hvt guests have no MMIO hypercalls; every MMIO write is an invalid access.
pub fn decode_mmio_write(addr: u64, data: &[u8]) -> Result<HvtCall, DecodeError> {
    Err(DecodeError::Mmio { addr, size: data.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decode_pio_out() {
        assert_eq!(decode_pio_out(0x501, &0x1234u32.to_le_bytes()), Ok(HvtCall { nr: 1, gpa: 0x1234 }));
        assert_eq!(decode_pio_out(0x500, &[0; 4]), Ok(HvtCall { nr: 0, gpa: 0 }));
        assert_eq!(decode_pio_out(0x509, &[0; 4]), Err(DecodeError::Port { port: 0x509, size: 4 }));
        assert_eq!(decode_pio_out(0x502, &[0; 1]), Err(DecodeError::Port { port: 0x502, size: 1 }));
        assert_eq!(decode_pio_out(0x3f8, &[0; 4]), Err(DecodeError::Port { port: 0x3f8, size: 4 }));
        assert_eq!(
            decode_mmio_write(0x1_0000_0000, &[0; 4]),
            Err(DecodeError::Mmio {
                addr: 0x1_0000_0000,
                size: 4
            })
        );
    }
}
