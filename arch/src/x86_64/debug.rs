//! Guest debugging on x86_64: the registers as gdb's `i386:x86-64` target sees them, the
//! register set of an ELF core's `NT_PRSTATUS` (`user_regs_struct`), and KVM guest debug
//! (single step and the four debug-register breakpoints).

use gdbstub_arch::x86::reg::X86_64CoreRegs;
use kvm_bindings::{KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, kvm_debug_exit_arch, kvm_guest_debug, kvm_regs};
use kvm_ioctls::VcpuFd;

use crate::ArchError;
use crate::debug::DebugEvent;

/// gdbstub's description of the architecture (core, SSE registers).
pub type GdbArch = gdbstub_arch::x86::X86_64_SSE;
/// The registers gdb reads and writes in one `g`/`G` packet.
pub type GdbRegs = X86_64CoreRegs;

/// How many breakpoints the hardware holds at once (DR0 to DR3).
pub const HW_BREAKPOINTS: usize = 4;
/// `EM_X86_64`.
pub const ELF_MACHINE: u16 = 62;
/// The number of 8-byte registers in `user_regs_struct`, an `NT_PRSTATUS` note's `pr_reg`.
pub const PRSTATUS_REGS: usize = 27;

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ArchError {
    move |source| ArchError::Kvm { what, source }
}

/// A selector as gdb shows it (the low 16 bits).
fn selector(s: &kvm_bindings::kvm_segment) -> u32 {
    u32::from(s.selector)
}

/// The vCPU's registers in gdb's layout: general, instruction pointer, flags, segment selectors,
/// the x87 and SSE registers.
pub fn read_gdb_regs(vcpu: &VcpuFd) -> Result<GdbRegs, ArchError> {
    let r = vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let s = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let fpu = vcpu.get_fpu().map_err(kvm("KVM_GET_FPU"))?;
    let mut regs = GdbRegs {
        regs: [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        ],
        // RFLAGS' upper half is reserved (zero).
        eflags: u32::try_from(r.rflags & 0xffff_ffff).unwrap_or(0),
        rip: r.rip,
        ..GdbRegs::default()
    };
    regs.segments.cs = selector(&s.cs);
    regs.segments.ss = selector(&s.ss);
    regs.segments.ds = selector(&s.ds);
    regs.segments.es = selector(&s.es);
    regs.segments.fs = selector(&s.fs);
    regs.segments.gs = selector(&s.gs);
    for (st, fpr) in regs.st.iter_mut().zip(&fpu.fpr) {
        st.copy_from_slice(&fpr[..10]);
    }
    regs.fpu.fctrl = u32::from(fpu.fcw);
    regs.fpu.fstat = u32::from(fpu.fsw);
    regs.fpu.fop = u32::from(fpu.last_opcode);
    for (xmm, bytes) in regs.xmm.iter_mut().zip(&fpu.xmm) {
        *xmm = u128::from_le_bytes(*bytes);
    }
    regs.mxcsr = fpu.mxcsr;
    Ok(regs)
}

/// Writes what gdb changed in the general registers, the instruction pointer and the flags
/// (segments, x87 and SSE registers stay as they are).
pub fn write_gdb_regs(vcpu: &VcpuFd, regs: &GdbRegs) -> Result<(), ArchError> {
    let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] = regs.regs;
    let old = vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let new = kvm_regs {
        rax,
        rbx,
        rcx,
        rdx,
        rsi,
        rdi,
        rsp,
        rbp,
        r8,
        r9,
        r10,
        r11,
        r12,
        r13,
        r14,
        r15,
        rip: regs.rip,
        // Bit 1 of RFLAGS is always one.
        rflags: (old.rflags & !0xffff_ffff) | u64::from(regs.eflags) | 2,
    };
    vcpu.set_regs(&new).map_err(kvm("KVM_SET_REGS"))
}

/// The registers of an `NT_PRSTATUS` note, in `user_regs_struct` order.
pub fn prstatus_regs(vcpu: &VcpuFd) -> Result<[u64; PRSTATUS_REGS], ArchError> {
    let r = vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?;
    let s = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let sel = |seg: &kvm_bindings::kvm_segment| u64::from(seg.selector);
    Ok([
        r.r15,
        r.r14,
        r.r13,
        r.r12,
        r.rbp,
        r.rbx,
        r.r11,
        r.r10,
        r.r9,
        r.r8,
        r.rax,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        // orig_rax: no system call.
        u64::MAX,
        r.rip,
        sel(&s.cs),
        r.rflags,
        r.rsp,
        sel(&s.ss),
        s.fs.base,
        s.gs.base,
        sel(&s.ds),
        sel(&s.es),
        sel(&s.fs),
        sel(&s.gs),
    ])
}

/// The guest-physical address of guest-virtual `gva` under the vCPU's current page tables.
pub fn translate(vcpu: &VcpuFd, gva: u64) -> Option<u64> {
    match vcpu.translate_gva(gva) {
        Ok(t) if t.valid != 0 => Some(t.physical_address),
        _ => None,
    }
}

/// DR7's enable bits for the breakpoints in DR0..DR3: local enable (bit 2n), an execute
/// breakpoint (R/W and LEN bits zero), and GE (bit 9) as recommended.
pub fn dr7(count: usize) -> u64 {
    let enables = (0..count.min(HW_BREAKPOINTS)).fold(0u64, |acc, i| acc | (1 << (2 * i)));
    if enables == 0 { 0 } else { enables | (1 << 9) }
}

/// Turns KVM guest debugging on: single step or not, execute breakpoints at `breakpoints` (at
/// most [`HW_BREAKPOINTS`]; more is an error).
pub fn set_guest_debug(vcpu: &VcpuFd, single_step: bool, breakpoints: &[u64]) -> Result<(), ArchError> {
    if breakpoints.len() > HW_BREAKPOINTS {
        return Err(ArchError::Unsupported("more than 4 breakpoints"));
    }
    let mut dbg = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP,
        ..Default::default()
    };
    if single_step {
        dbg.control |= KVM_GUESTDBG_SINGLESTEP;
    }
    for (slot, &addr) in dbg.arch.debugreg.iter_mut().zip(breakpoints) {
        *slot = addr;
    }
    dbg.arch.debugreg[7] = dr7(breakpoints.len());
    vcpu.set_guest_debug(&dbg).map_err(kvm("KVM_SET_GUEST_DEBUG"))
}

/// What a `KVM_EXIT_DEBUG` reports: #DB with DR6.BS (a single step), #DB with one of B0..B3 (a
/// breakpoint), #BP (an `int3` the guest executed).
pub fn debug_event(exit: &kvm_debug_exit_arch) -> DebugEvent {
    const DR6_BS: u64 = 1 << 14;
    match exit.exception {
        1 if exit.dr6 & 0xf != 0 => DebugEvent::Breakpoint,
        1 if exit.dr6 & DR6_BS != 0 => DebugEvent::Step,
        3 => DebugEvent::Breakpoint,
        _ => DebugEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_dr7_enables_one_local_execute_breakpoint_per_register() {
        assert_eq!(dr7(0), 0);
        assert_eq!(dr7(1), 0x201);
        assert_eq!(dr7(4), 0x255);
        assert_eq!(dr7(9), 0x255);
    }

    #[test]
    fn test_debug_exits_are_told_apart() {
        let exit = |exception, dr6| kvm_debug_exit_arch {
            exception,
            dr6,
            ..Default::default()
        };
        assert_eq!(debug_event(&exit(1, 0xffff_4ff0)), DebugEvent::Step);
        assert_eq!(debug_event(&exit(1, 0xffff_0ff1)), DebugEvent::Breakpoint);
        assert_eq!(debug_event(&exit(3, 0)), DebugEvent::Breakpoint);
        assert_eq!(debug_event(&exit(14, 0)), DebugEvent::Other);
    }
}
