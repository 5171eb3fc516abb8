//! Control, segment and general registers at entry.

use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;

use super::gdt::{CODE_SELECTOR, DATA_SELECTOR, GDT, segment};
use super::layout::{BOOT_INFO_GPA, GDT_GPA, PML4_GPA, STACK_TOP_OFFSET};
use crate::ArchError;

/// PE | NE | WP | PG; MP, EM and TS clear so x87/SSE work.
pub(crate) const CR0: u64 = 0x8001_0021;
/// PAE | OSFXSR | OSXMMEXCPT (no OSXSAVE).
pub(crate) const CR4: u64 = 0x620;
/// LME | LMA (no NXE, no SCE).
pub(crate) const EFER: u64 = 0x500;

pub(crate) fn set_sregs(vcpu: &VcpuFd) -> Result<(), ArchError> {
    let mut sregs = vcpu.get_sregs().map_err(|source| ArchError::Kvm {
        what: "KVM_GET_SREGS",
        source,
    })?;
    let data = segment(DATA_SELECTOR, GDT[2]);
    sregs.cs = segment(CODE_SELECTOR, GDT[1]);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        type_: 11,
        present: 1,
        ..Default::default()
    };
    sregs.ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = u16::try_from(GDT.len() * 8 - 1).unwrap_or(u16::MAX);
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0;
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = CR4;
    sregs.efer = EFER;
    vcpu.set_sregs(&sregs).map_err(|source| ArchError::Kvm {
        what: "KVM_SET_SREGS",
        source,
    })
}

/// General registers at entry: RIP = entry, RSP = top of RAM − 8, RDI = boot info, IF clear.
pub(crate) fn entry_regs(entry: u64, mem_size: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rflags: 0x2,
        rsp: mem_size - STACK_TOP_OFFSET,
        rdi: BOOT_INFO_GPA,
        ..Default::default()
    }
}

pub(crate) fn set_regs(vcpu: &VcpuFd, entry: u64, mem_size: u64) -> Result<(), ArchError> {
    vcpu.set_regs(&entry_regs(entry, mem_size)).map_err(|source| ArchError::Kvm {
        what: "KVM_SET_REGS",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_entry_regs() {
        let r = entry_regs(0x10_0020, 512 << 20);
        assert_eq!((r.rip, r.rsp, r.rdi, r.rflags, r.rax), (0x10_0020, (512 << 20) - 8, 0x10000, 2, 0));
        assert_eq!((r.rsp + 8) % 16, 0);
    }
}
