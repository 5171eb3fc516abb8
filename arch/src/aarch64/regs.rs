//! vCPU initialisation and the system and core registers at entry.

use kvm_bindings::{KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_SIZE_U64, kvm_regs, kvm_vcpu_init, user_pt_regs};
use kvm_ioctls::{VcpuFd, VmFd};

use super::layout::{BOOT_INFO_GPA, PGD_GPA, STACK_TOP_OFFSET};
use crate::ArchError;

/// D | A | I | F masked, EL1h.
const PSTATE: u64 = 0x3c5;
/// Normal, device and non-cacheable attribute indices used by the page tables.
const MAIR_EL1: u64 = 0x0000_BBFF_440C_0400;
/// 40-bit VAs, 4 KiB granules, inner-shareable write-back, 1 TiB IPA.
const TCR_EL1: u64 = 0x32_B518_3518;
/// MMU, data and instruction caches on.
const SCTLR_EL1: u64 = 0x1005;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD do not trap.
const CPACR_FPEN: u64 = 0b11 << 20;

const fn sysreg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG as u64 | (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2
}

const CPACR_EL1_ID: u64 = sysreg(3, 0, 1, 0, 2);
const SCTLR_EL1_ID: u64 = sysreg(3, 0, 1, 0, 0);
const TTBR0_EL1_ID: u64 = sysreg(3, 0, 2, 0, 0);
const TCR_EL1_ID: u64 = sysreg(3, 0, 2, 0, 2);
const MAIR_EL1_ID: u64 = sysreg(3, 0, 10, 2, 0);
const MPIDR_EL1_ID: u64 = sysreg(3, 0, 0, 0, 5);

const fn core_reg(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

const X0_ID: u64 = core_reg(std::mem::offset_of!(kvm_regs, regs) + std::mem::offset_of!(user_pt_regs, regs));
const PC_ID: u64 = core_reg(std::mem::offset_of!(kvm_regs, regs) + std::mem::offset_of!(user_pt_regs, pc));
const PSTATE_ID: u64 = core_reg(std::mem::offset_of!(kvm_regs, regs) + std::mem::offset_of!(user_pt_regs, pstate));
const SP_EL1_ID: u64 = core_reg(std::mem::offset_of!(kvm_regs, sp_el1));

fn set(vcpu: &VcpuFd, id: u64, value: u64, what: &'static str) -> Result<(), ArchError> {
    vcpu.set_one_reg(id, &value.to_le_bytes())
        .map(|_| ())
        .map_err(|source| ArchError::Kvm { what, source })
}

fn get(vcpu: &VcpuFd, id: u64, what: &'static str) -> Result<u64, ArchError> {
    let mut bytes = [0u8; 8];
    vcpu.get_one_reg(id, &mut bytes).map_err(|source| ArchError::Kvm { what, source })?;
    Ok(u64::from_le_bytes(bytes))
}

pub(crate) fn init_vcpu(vm: &VmFd, vcpu: &VcpuFd) -> Result<(), ArchError> {
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi).map_err(|source| ArchError::Kvm {
        what: "KVM_ARM_PREFERRED_TARGET",
        source,
    })?;
    vcpu.vcpu_init(&kvi).map_err(|source| ArchError::Kvm {
        what: "KVM_ARM_VCPU_INIT",
        source,
    })
}

pub(crate) fn set_regs(vcpu: &VcpuFd, entry: u64, mem_size: u64) -> Result<(), ArchError> {
    let cpacr = get(vcpu, CPACR_EL1_ID, "get CPACR_EL1")?;
    set(vcpu, CPACR_EL1_ID, cpacr | CPACR_FPEN, "set CPACR_EL1")?;
    set(vcpu, MAIR_EL1_ID, MAIR_EL1, "set MAIR_EL1")?;
    set(vcpu, TCR_EL1_ID, TCR_EL1, "set TCR_EL1")?;
    set(vcpu, TTBR0_EL1_ID, PGD_GPA, "set TTBR0_EL1")?;
    set(vcpu, SCTLR_EL1_ID, SCTLR_EL1, "set SCTLR_EL1")?;
    set(vcpu, PSTATE_ID, PSTATE, "set PSTATE")?;
    set(vcpu, SP_EL1_ID, mem_size - STACK_TOP_OFFSET, "set SP_EL1")?;
    set(vcpu, X0_ID, BOOT_INFO_GPA, "set X0")?;
    set(vcpu, PC_ID, entry, "set PC")
}

/// The entry state of a Linux-boot guest's first vCPU: `pc`, x0 = the device tree, `pstate`;
/// the MMU and caches stay off (KVM's reset state).
pub(crate) fn set_linux_entry(vcpu: &VcpuFd, pc: u64, dtb: u64, pstate: u64) -> Result<(), ArchError> {
    set(vcpu, PSTATE_ID, pstate, "set PSTATE")?;
    set(vcpu, X0_ID, dtb, "set X0")?;
    set(vcpu, PC_ID, pc, "set PC")
}

pub(crate) fn get_mpidr(vcpu: &VcpuFd) -> Result<u64, ArchError> {
    get(vcpu, MPIDR_EL1_ID, "get MPIDR_EL1")
}

pub(crate) fn get_pc(vcpu: &VcpuFd) -> Result<u64, ArchError> {
    get(vcpu, PC_ID, "get PC")
}

/// CNTFRQ_EL0, the generic timer frequency the guest's CNTVCT_EL0 counts at.
pub(crate) fn counter_frequency() -> u64 {
    let freq: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL0 on Linux; reading it has no side effects.
    unsafe { std::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack)) };
    freq
}
