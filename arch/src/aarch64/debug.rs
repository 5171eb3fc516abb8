//! Guest debugging on aarch64: the registers as gdb's `aarch64` target sees them, the register
//! set of an ELF core's `NT_PRSTATUS` (`user_pt_regs`), and KVM guest debug (single step and
//! hardware breakpoints in the DBGBCR/DBGBVR pairs).

use std::mem::offset_of;

use gdbstub_arch::aarch64::reg::AArch64CoreRegs;
use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW, KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_SIZE_U64,
    KVM_REG_SIZE_U128, kvm_debug_exit_arch, kvm_guest_debug, kvm_regs, user_fpsimd_state, user_pt_regs,
};
use kvm_ioctls::VcpuFd;

use crate::ArchError;
use crate::debug::DebugEvent;

/// gdbstub's description of the architecture.
pub type GdbArch = gdbstub_arch::aarch64::AArch64;
/// The registers gdb reads and writes in one `g`/`G` packet.
pub type GdbRegs = AArch64CoreRegs;

/// How many breakpoints are used at once: every ARMv8 CPU has at least two.
pub const HW_BREAKPOINTS: usize = 2;
/// `EM_AARCH64`.
pub const ELF_MACHINE: u16 = 183;
/// The number of 8-byte registers in `user_pt_regs`, an `NT_PRSTATUS` note's `pr_reg`: x0-x30,
/// sp, pc, pstate.
pub const PRSTATUS_REGS: usize = 34;

/// DBGBCR: enabled (E), at EL1 and EL0 (PMC = 0b11), all four bytes of an A64 instruction
/// (BAS = 0b1111).
pub const BCR_EXECUTE: u64 = (0b1111 << 5) | (0b11 << 1) | 1;

const fn core_reg(size: u64, offset: usize) -> u64 {
    KVM_REG_ARM64 | size | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

const REGS: usize = offset_of!(kvm_regs, regs);
const fn x_id(n: usize) -> u64 {
    core_reg(KVM_REG_SIZE_U64, REGS + offset_of!(user_pt_regs, regs) + 8 * n)
}
const SP_EL0_ID: u64 = core_reg(KVM_REG_SIZE_U64, REGS + offset_of!(user_pt_regs, sp));
const PC_ID: u64 = core_reg(KVM_REG_SIZE_U64, REGS + offset_of!(user_pt_regs, pc));
const PSTATE_ID: u64 = core_reg(KVM_REG_SIZE_U64, REGS + offset_of!(user_pt_regs, pstate));
const SP_EL1_ID: u64 = core_reg(KVM_REG_SIZE_U64, offset_of!(kvm_regs, sp_el1));
const FP: usize = offset_of!(kvm_regs, fp_regs);
const fn v_id(n: usize) -> u64 {
    core_reg(KVM_REG_SIZE_U128, FP + offset_of!(user_fpsimd_state, vregs) + 16 * n)
}
// FPSR and FPCR are 32-bit registers.
const FPSR_ID: u64 =
    KVM_REG_ARM64 | kvm_bindings::KVM_REG_SIZE_U32 | KVM_REG_ARM_CORE as u64 | ((FP + offset_of!(user_fpsimd_state, fpsr)) / 4) as u64;
const FPCR_ID: u64 =
    KVM_REG_ARM64 | kvm_bindings::KVM_REG_SIZE_U32 | KVM_REG_ARM_CORE as u64 | ((FP + offset_of!(user_fpsimd_state, fpcr)) / 4) as u64;

fn get<const N: usize>(vcpu: &VcpuFd, id: u64, what: &'static str) -> Result<[u8; N], ArchError> {
    let mut bytes = [0u8; N];
    vcpu.get_one_reg(id, &mut bytes).map_err(|source| ArchError::Kvm { what, source })?;
    Ok(bytes)
}

fn get64(vcpu: &VcpuFd, id: u64) -> Result<u64, ArchError> {
    get::<8>(vcpu, id, "KVM_GET_ONE_REG").map(u64::from_le_bytes)
}

fn set64(vcpu: &VcpuFd, id: u64, value: u64) -> Result<(), ArchError> {
    vcpu.set_one_reg(id, &value.to_le_bytes())
        .map(|_| ())
        .map_err(|source| ArchError::Kvm {
            what: "KVM_SET_ONE_REG",
            source,
        })
}

/// Whether `pstate` selects SP_ELx (SPSel, in EL1h) rather than SP_EL0.
fn uses_sp_el1(pstate: u64) -> bool {
    pstate & 1 != 0
}

/// The stack pointer the vCPU uses now: SP_EL1 in EL1h (where hvt guests run), else SP_EL0.
fn current_sp(vcpu: &VcpuFd, pstate: u64) -> Result<u64, ArchError> {
    get64(vcpu, if uses_sp_el1(pstate) { SP_EL1_ID } else { SP_EL0_ID })
}

/// The vCPU's registers in gdb's layout: x0-x30, the current stack pointer, pc, PSTATE (as
/// CPSR), v0-v31, FPSR and FPCR.
pub fn read_gdb_regs(vcpu: &VcpuFd) -> Result<GdbRegs, ArchError> {
    let mut regs = GdbRegs::default();
    for (n, x) in regs.x.iter_mut().enumerate() {
        *x = get64(vcpu, x_id(n))?;
    }
    let pstate = get64(vcpu, PSTATE_ID)?;
    regs.sp = current_sp(vcpu, pstate)?;
    regs.pc = get64(vcpu, PC_ID)?;
    regs.cpsr = u32::try_from(pstate & 0xffff_ffff).unwrap_or(0);
    for (n, v) in regs.v.iter_mut().enumerate() {
        *v = u128::from_le_bytes(get::<16>(vcpu, v_id(n), "KVM_GET_ONE_REG")?);
    }
    regs.fpsr = u32::from_le_bytes(get::<4>(vcpu, FPSR_ID, "KVM_GET_ONE_REG")?);
    regs.fpcr = u32::from_le_bytes(get::<4>(vcpu, FPCR_ID, "KVM_GET_ONE_REG")?);
    Ok(regs)
}

/// Writes what gdb changed in x0-x30, the stack pointer and pc (PSTATE and the FP/SIMD registers
/// stay as they are).
pub fn write_gdb_regs(vcpu: &VcpuFd, regs: &GdbRegs) -> Result<(), ArchError> {
    for (n, &x) in regs.x.iter().enumerate() {
        set64(vcpu, x_id(n), x)?;
    }
    let pstate = get64(vcpu, PSTATE_ID)?;
    set64(vcpu, if uses_sp_el1(pstate) { SP_EL1_ID } else { SP_EL0_ID }, regs.sp)?;
    set64(vcpu, PC_ID, regs.pc)
}

/// The registers of an `NT_PRSTATUS` note, in `user_pt_regs` order (sp: the one in use).
pub fn prstatus_regs(vcpu: &VcpuFd) -> Result<[u64; PRSTATUS_REGS], ArchError> {
    let mut out = [0u64; PRSTATUS_REGS];
    for (n, x) in out.iter_mut().take(31).enumerate() {
        *x = get64(vcpu, x_id(n))?;
    }
    let pstate = get64(vcpu, PSTATE_ID)?;
    out[31] = current_sp(vcpu, pstate)?;
    out[32] = get64(vcpu, PC_ID)?;
    out[33] = pstate;
    Ok(out)
}

/// hvt guests run with an identity map (KVM has no `KVM_TRANSLATE` on arm64).
pub fn translate(_vcpu: &VcpuFd, gva: u64) -> Option<u64> {
    Some(gva)
}

/// Turns KVM guest debugging on: single step or not, hardware breakpoints at `breakpoints` (at
/// most [`HW_BREAKPOINTS`]; more is an error).
pub fn set_guest_debug(vcpu: &VcpuFd, single_step: bool, breakpoints: &[u64]) -> Result<(), ArchError> {
    if breakpoints.len() > HW_BREAKPOINTS {
        return Err(ArchError::Unsupported("more than 2 breakpoints"));
    }
    let mut dbg = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW,
        ..Default::default()
    };
    if single_step {
        dbg.control |= KVM_GUESTDBG_SINGLESTEP;
    }
    for (i, &addr) in breakpoints.iter().enumerate() {
        dbg.arch.dbg_bvr[i] = addr & !3;
        dbg.arch.dbg_bcr[i] = BCR_EXECUTE;
    }
    vcpu.set_guest_debug(&dbg).map_err(|source| ArchError::Kvm {
        what: "KVM_SET_GUEST_DEBUG",
        source,
    })
}

/// What a `KVM_EXIT_DEBUG` reports, from the exception class in ESR (`hsr`): a hardware
/// breakpoint (0x30), a software step (0x32), a `brk` (0x3c).
pub fn debug_event(exit: &kvm_debug_exit_arch) -> DebugEvent {
    match exit.hsr >> 26 {
        0x30 | 0x31 | 0x3c => DebugEvent::Breakpoint,
        0x32 | 0x33 => DebugEvent::Step,
        _ => DebugEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_register_ids_follow_kvm_regs() {
        // x0 is the first core register, pc the 33rd 8-byte field of user_pt_regs.
        assert_eq!(x_id(0) & 0xffff, 0);
        assert_eq!(x_id(30) & 0xffff, 60);
        assert_eq!(SP_EL0_ID & 0xffff, 62);
        assert_eq!(PC_ID & 0xffff, 64);
        assert_eq!(PSTATE_ID & 0xffff, 66);
        assert_eq!(BCR_EXECUTE, 0x1e7);
    }

    #[test]
    fn test_debug_exits_are_told_apart() {
        let exit = |ec: u32| kvm_debug_exit_arch {
            hsr: ec << 26,
            ..Default::default()
        };
        assert_eq!(debug_event(&exit(0x32)), DebugEvent::Step);
        assert_eq!(debug_event(&exit(0x30)), DebugEvent::Breakpoint);
        assert_eq!(debug_event(&exit(0x3c)), DebugEvent::Breakpoint);
        assert_eq!(debug_event(&exit(0x24)), DebugEvent::Other);
    }
}
