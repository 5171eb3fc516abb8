//! The vCPU run loop and the one exit-dispatch function.
//!
//! `handle_exit` is a free function of (exit, hvt, ram) so every exit kind is unit-testable with
//! synthetic exits. Guest misbehaviour — a bad port, width or address, an unknown hypercall, a bad
//! pointer, a triple fault, a write to read-only memory — is fatal, as in solo5-hvt: it ends the
//! run with a [`VcpuError`] naming what happened, never a panic.

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::hvt::{Hvt, HvtError, HvtOutcome};
use crate::memory::GuestRam;
use crate::signal::StopSignals;

/// How a guest run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest called HALT with this status (255 = abort).
    Halt(i32),
    /// A stop signal (SIGINT/SIGTERM) ended the run.
    Signal(i32),
}

impl ExitStatus {
    /// The process exit code: the guest's status for HALT (low 8 bits), 1 for a signal stop
    /// (solo5-hvt's "Exiting on signal").
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Halt(status) => status.to_le_bytes()[0],
            ExitStatus::Signal(_) => 1,
        }
    }
}

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-enter the guest.
    Continue,
    /// Stop the guest with this status.
    Stop(ExitStatus),
}

/// Why an exit is fatal, before the loop adds the guest's instruction pointer.
#[derive(Debug, thiserror::Error)]
pub enum ExitFault {
    /// An access that is not a valid hypercall.
    #[error(transparent)]
    Decode(#[from] arch::DecodeError),
    /// A hypercall the guest got wrong, or a host I/O failure while serving it.
    #[error(transparent)]
    Hvt(#[from] HvtError),
    /// A guest write to host read-only memory (its text/rodata).
    #[error("KVM: host/guest translation fault")]
    TranslationFault,
    /// `KVM_EXIT_INTERNAL_ERROR`.
    #[error("KVM: internal error exit: suberror={0:#x}")]
    Internal(u32),
    /// `KVM_EXIT_FAIL_ENTRY`.
    #[error("KVM: entry failure: hw_entry_failure_reason={0:#x}")]
    FailEntry(u64),
    /// Any other exit (HLT, SHUTDOWN = triple fault, ...).
    #[error("KVM: unhandled exit: {0}")]
    Unhandled(String),
}

/// A fatal end of the run.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The guest did something the monitor cannot allow.
    #[error("{fault}: rip={rip:#x}")]
    Guest {
        /// What happened.
        fault: ExitFault,
        /// Guest instruction pointer at the exit (0 if it could not be read).
        rip: u64,
    },
    /// `KVM_RUN` itself failed.
    #[error("KVM: KVM_RUN failed: {0}")]
    Run(kvm_ioctls::Error),
}

/// Dispatches one exit: hypercalls to `hvt`, everything else is a fault.
pub fn handle_exit(exit: VcpuExit<'_>, hvt: &mut Hvt, ram: &GuestRam) -> Result<Action, ExitFault> {
    let call = match exit {
        VcpuExit::IoOut(port, data) => arch::decode_pio_out(u64::from(port), data)?,
        VcpuExit::IoIn(port, data) => {
            return Err(arch::DecodeError::Port {
                port: u64::from(port),
                size: data.len(),
            }
            .into());
        }
        VcpuExit::MmioWrite(addr, data) => match arch::decode_mmio_write(addr, data) {
            Ok(call) => call,
            // kvm_pvm (and any host that reports stage-2 write faults as MMIO) delivers a guest
            // write to read-only RAM as an MMIO exit rather than EFAULT.
            Err(_) if ram.is_read_only(addr) => return Err(ExitFault::TranslationFault),
            Err(e) => return Err(e.into()),
        },
        VcpuExit::MmioRead(addr, data) => return Err(arch::DecodeError::Mmio { addr, size: data.len() }.into()),
        VcpuExit::InternalError => return Err(ExitFault::Internal(0)),
        VcpuExit::FailEntry(reason, _cpu) => return Err(ExitFault::FailEntry(reason)),
        VcpuExit::Shutdown => return Err(ExitFault::Unhandled("exit_reason=0x8 (shutdown: triple fault)".into())),
        VcpuExit::Hlt => return Err(ExitFault::Unhandled("exit_reason=0x5 (hlt)".into())),
        other => return Err(ExitFault::Unhandled(format!("{other:?}"))),
    };
    Ok(match hvt.handle(call.nr, call.gpa)? {
        HvtOutcome::Continue => Action::Continue,
        HvtOutcome::Halt(status) => Action::Stop(ExitStatus::Halt(status)),
    })
}

/// Runs the vCPU until HALT, a stop signal or a fault.
pub fn run(vcpu: &mut VcpuFd, hvt: &mut Hvt, ram: &GuestRam, stop: &StopSignals) -> Result<ExitStatus, VcpuError> {
    let flag = std::ptr::from_mut(&mut vcpu.get_kvm_run().immediate_exit);
    // SAFETY: `flag` points into the kvm_run mapping owned by `vcpu`, which outlives this function;
    // `disarm_vcpu` runs before we return.
    unsafe { stop.arm_vcpu(flag) };
    let result = run_loop(vcpu, hvt, ram, stop);
    stop.disarm_vcpu();
    result
}

fn run_loop(vcpu: &mut VcpuFd, hvt: &mut Hvt, ram: &GuestRam, stop: &StopSignals) -> Result<ExitStatus, VcpuError> {
    loop {
        if let Some(signum) = stop.received() {
            return Ok(ExitStatus::Signal(signum));
        }
        let action = match vcpu.run() {
            Ok(exit) => handle_exit(exit, hvt, ram),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                continue;
            }
            Err(e) if e.errno() == libc::EFAULT => Err(ExitFault::TranslationFault),
            Err(e) => return Err(VcpuError::Run(e)),
        };
        match action {
            Ok(Action::Continue) => {}
            Ok(Action::Stop(status)) => return Ok(status),
            Err(fault) => {
                let fault = match fault {
                    // kvm-ioctls does not carry the suberror; read it from the run page.
                    ExitFault::Internal(_) => {
                        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is
                        // the active member of the exit union.
                        ExitFault::Internal(unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror })
                    }
                    other => other,
                };
                let rip = arch::instruction_pointer(vcpu).unwrap_or(0);
                return Err(VcpuError::Guest { fault, rip });
            }
        }
    }
}
