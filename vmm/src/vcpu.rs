//! The vCPU run loop and the two exit dispatchers: [`handle_exit`] for hvt guests (hypercalls)
//! and [`handle_linux_exit`] for Linux-boot guests (the port-I/O and MMIO buses).
//!
//! Both are free functions of the exit and what it may touch, so every exit kind is
//! unit-testable with synthetic exits. Guest misbehaviour — a bad port, width or address, an unknown hypercall, a bad
//! pointer, a triple fault, a write to read-only memory — is fatal, as in solo5-hvt: it ends the
//! run with a [`VcpuError`] naming what happened, never a panic.

use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use crate::devices::Bus;
pub use crate::exit::{Action, ExitStatus};
use crate::hvt::{Hvt, HvtError};
use crate::memory::{GuestRam, MemoryError};
use crate::signal::StopSignals;
use crate::slots::Slots;

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
    /// Registering a chunk of guest RAM the guest touched failed (see [`crate::slots`]).
    #[error(transparent)]
    Slots(MemoryError),
    /// `KVM_EXIT_INTERNAL_ERROR`.
    #[error("KVM: internal error exit: suberror={0:#x}")]
    Internal(u32),
    /// `KVM_EXIT_FAIL_ENTRY`.
    #[error("KVM: entry failure: hw_entry_failure_reason={0:#x}")]
    FailEntry(u64),
    /// Any other exit (HLT, SHUTDOWN = triple fault, ...).
    #[error("KVM: unhandled exit: {0}")]
    Unhandled(UnhandledExit),
}

/// A KVM exit no handler takes.
#[derive(Debug, thiserror::Error)]
pub enum UnhandledExit {
    /// `KVM_EXIT_SHUTDOWN`: a triple fault.
    #[error("exit_reason=0x8 (shutdown: triple fault)")]
    TripleFault,
    /// `KVM_EXIT_HLT` (an hvt guest has no interrupts to wait for).
    #[error("exit_reason=0x5 (hlt)")]
    Hlt,
    /// Any other exit, as kvm-ioctls names it.
    #[error("{0}")]
    Other(String),
}

/// A fatal end of the run.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The guest did something the monitor cannot allow.
    /// Named as solo5-hvt does: `rip=` on x86_64, `pc=` on aarch64.
    #[error("{fault}: {name}={ip:#x}", name = arch::INSTRUCTION_POINTER)]
    Guest {
        /// What happened.
        fault: ExitFault,
        /// Guest instruction pointer at the exit (0 if it could not be read).
        ip: u64,
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
        VcpuExit::Shutdown => return Err(ExitFault::Unhandled(UnhandledExit::TripleFault)),
        VcpuExit::Hlt => return Err(ExitFault::Unhandled(UnhandledExit::Hlt)),
        other => return Err(ExitFault::Unhandled(UnhandledExit::Other(format!("{other:?}")))),
    };
    Ok(hvt.handle(call.nr, call.gpa)?)
}

/// Dispatches one exit of a Linux-boot-protocol guest to the port-I/O and MMIO buses. Unlike
/// hvt, an access where no device sits is not a fault (Linux probes): reads see all ones (ports)
/// or zeros (MMIO), writes are dropped.
pub fn handle_linux_exit(exit: VcpuExit<'_>, pio: &Bus, mmio: &Bus) -> Result<Action, ExitFault> {
    let written = match exit {
        VcpuExit::IoOut(port, data) => pio.write(u64::from(port), data),
        VcpuExit::MmioWrite(addr, data) => mmio.write(addr, data),
        VcpuExit::IoIn(port, data) => {
            if !pio.read(u64::from(port), data) {
                data.fill(0xff);
            }
            return Ok(Action::Continue);
        }
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                data.fill(0);
            }
            return Ok(Action::Continue);
        }
        // With the in-kernel irqchip KVM handles HLT itself; an exit still means "run again".
        VcpuExit::Hlt | VcpuExit::Intr => return Ok(Action::Continue),
        VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN, _) => return Ok(Action::Stop(ExitStatus::Halt(0))),
        VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, _) => return Ok(Action::Stop(ExitStatus::Reset)),
        VcpuExit::InternalError => return Err(ExitFault::Internal(0)),
        VcpuExit::FailEntry(reason, _cpu) => return Err(ExitFault::FailEntry(reason)),
        VcpuExit::Shutdown => return Err(ExitFault::Unhandled(UnhandledExit::TripleFault)),
        other => return Err(ExitFault::Unhandled(UnhandledExit::Other(format!("{other:?}")))),
    };
    // A write where no device sits is dropped.
    Ok(written.unwrap_or(Action::Continue))
}

/// Dispatches a port access of `width`-byte items one item at a time (string I/O such as
/// `rep outsb` arrives as one exit with all its items), stopping at the first item that does
/// not continue. Any other exit, or a single item, goes to `handle` as it is.
pub fn split_string_io(
    exit: VcpuExit<'_>,
    width: usize,
    handle: &mut impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>,
) -> Result<Action, ExitFault> {
    match exit {
        VcpuExit::IoOut(port, data) if width > 0 && data.len() > width => {
            for item in data.chunks(width) {
                if let stop @ Action::Stop(_) = handle(VcpuExit::IoOut(port, item))? {
                    return Ok(stop);
                }
            }
            Ok(Action::Continue)
        }
        VcpuExit::IoIn(port, data) if width > 0 && data.len() > width => {
            for item in data.chunks_mut(width) {
                if let stop @ Action::Stop(_) = handle(VcpuExit::IoIn(port, item))? {
                    return Ok(stop);
                }
            }
            Ok(Action::Continue)
        }
        other => handle(other),
    }
}

/// hvt guest RAM whose KVM slots are registered on first touch (see [`crate::slots`]).
#[derive(Debug)]
pub struct LazyRam<'a> {
    /// The VM the slots belong to.
    pub vm: &'a VmFd,
    /// Which chunks have a slot.
    pub slots: &'a mut Slots,
}

/// Completes an exit that RAM without a slot explains: an MMIO access inside RAM whose chunk had
/// no slot (done on the backing memory, and the chunk registered), or an internal error while some
/// chunk still has none (all registered, the instruction runs again). `Ok(None)` when it did;
/// any other exit comes back as it was.
fn complete_lazy<'e>(exit: VcpuExit<'e>, ram: &GuestRam, lazy: &mut LazyRam<'_>) -> Result<Option<VcpuExit<'e>>, ExitFault> {
    match exit {
        VcpuExit::MmioWrite(addr, data) if !ram.is_read_only(addr) && lazy.slots.fault_in(lazy.vm, addr).map_err(ExitFault::Slots)? => {
            ram.write_slice(addr, data).map_err(|e| ExitFault::Hvt(e.into()))?;
            Ok(None)
        }
        VcpuExit::MmioRead(addr, data) if lazy.slots.fault_in(lazy.vm, addr).map_err(ExitFault::Slots)? => {
            ram.read_slice(addr, data).map_err(|e| ExitFault::Hvt(e.into()))?;
            Ok(None)
        }
        VcpuExit::InternalError if lazy.slots.register_rest(lazy.vm).map_err(ExitFault::Slots)? => Ok(None),
        other => Ok(Some(other)),
    }
}

/// Runs an hvt guest's vCPU until HALT, a stop signal or a fault.
pub fn run_hvt(
    vcpu: &mut VcpuFd,
    hvt: &mut Hvt,
    ram: &GuestRam,
    stop: &StopSignals,
    done: &dyn Fn() -> bool,
    lazy: &mut LazyRam<'_>,
) -> Result<ExitStatus, VcpuError> {
    run_boot_vcpu(vcpu, stop, done, |exit| handle_hvt_exit(exit, hvt, ram, lazy))
}

/// One exit of an hvt guest: RAM without a slot yet first ([`complete_lazy`]), then
/// [`handle_exit`].
pub fn handle_hvt_exit(exit: VcpuExit<'_>, hvt: &mut Hvt, ram: &GuestRam, lazy: &mut LazyRam<'_>) -> Result<Action, ExitFault> {
    match complete_lazy(exit, ram, lazy)? {
        Some(exit) => handle_exit(exit, hvt, ram),
        None => Ok(Action::Continue),
    }
}

/// Runs the boot vCPU with `handle` dispatching its exits, until an exit stops it, a stop signal
/// arrives, `done()` turns true (another vCPU ended the machine) or a fault.
pub fn run_boot_vcpu(
    vcpu: &mut VcpuFd,
    stop: &StopSignals,
    done: &dyn Fn() -> bool,
    handle: impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>,
) -> Result<ExitStatus, VcpuError> {
    let flag = std::ptr::from_mut(&mut vcpu.get_kvm_run().immediate_exit);
    // SAFETY: `flag` points into the kvm_run mapping owned by `vcpu`, which outlives this function;
    // `disarm_vcpu` runs before we return.
    unsafe { stop.arm_vcpu(flag) };
    let result = run_loop(vcpu, &|| stop.received(), done, handle);
    stop.disarm_vcpu();
    result
}

/// What one `KVM_RUN` came to.
#[derive(Debug)]
pub(crate) enum Ran {
    /// The exit was handled: go on or stop.
    Action(Action),
    /// `KVM_RUN` returned `EINTR`/`EAGAIN` (a signal, a kick): nothing ran to completion.
    Interrupted,
    /// `KVM_EXIT_DEBUG` (a single step or a breakpoint; only while a debugger is attached).
    Debug(kvm_bindings::kvm_debug_exit_arch),
}

/// Enters the guest once and dispatches the exit with `handle`; a fault becomes
/// [`VcpuError::Guest`] with the guest's instruction pointer.
pub(crate) fn run_once(vcpu: &mut VcpuFd, handle: &mut impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>) -> Result<Ran, VcpuError> {
    let run_page = std::ptr::from_mut(vcpu.get_kvm_run());
    let action = match vcpu.run() {
        Ok(VcpuExit::Debug(debug)) => return Ok(Ran::Debug(debug)),
        Ok(exit) => {
            // kvm-ioctls hands over `size * count` bytes of a port access; the width is
            // `size` alone (a `rep outsb` of four bytes is four 1-byte accesses).
            let width = match exit {
                VcpuExit::IoOut(..) | VcpuExit::IoIn(..) => {
                    // SAFETY: `run_page` is the kvm_run mapping owned by `vcpu`, alive for
                    // this whole function; the exit reason is KVM_EXIT_IO, so `io` is the
                    // active union member. Only its header is read, not the data area the
                    // exit borrows.
                    usize::from(unsafe { std::ptr::read_volatile(&raw const (*run_page).__bindgen_anon_1.io.size) })
                }
                _ => 0,
            };
            split_string_io(exit, width, handle)
        }
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            vcpu.set_kvm_immediate_exit(0);
            return Ok(Ran::Interrupted);
        }
        Err(e) if e.errno() == libc::EFAULT => Err(ExitFault::TranslationFault),
        Err(e) => return Err(VcpuError::Run(e)),
    };
    match action {
        Ok(action) => Ok(Ran::Action(action)),
        Err(fault) => Err(guest_fault(vcpu, fault)),
    }
}

/// `fault` with the guest's instruction pointer (and an internal error's suberror).
pub(crate) fn guest_fault(vcpu: &mut VcpuFd, fault: ExitFault) -> VcpuError {
    let fault = match fault {
        // kvm-ioctls does not carry the suberror; read it from the run page.
        ExitFault::Internal(_) => {
            // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is
            // the active member of the exit union.
            ExitFault::Internal(unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror })
        }
        other => other,
    };
    let ip = arch::instruction_pointer(vcpu).unwrap_or(0);
    VcpuError::Guest { fault, ip }
}

/// The loop of any vCPU: `signal()` is the stop signal received, if any (boot vCPU only).
pub(crate) fn run_loop(
    vcpu: &mut VcpuFd,
    signal: &dyn Fn() -> Option<i32>,
    done: &dyn Fn() -> bool,
    mut handle: impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>,
) -> Result<ExitStatus, VcpuError> {
    loop {
        if let Some(signum) = signal() {
            return Ok(stop_status(signum));
        }
        if done() {
            return Ok(ExitStatus::Reset);
        }
        match run_once(vcpu, &mut handle)? {
            Ran::Action(Action::Continue) | Ran::Interrupted => {}
            Ran::Action(Action::Stop(status)) => return Ok(status),
            // Without a debugger nothing asked for this exit.
            Ran::Debug(_) => {
                return Err(guest_fault(vcpu, ExitFault::Unhandled(UnhandledExit::Other("Debug".into()))));
            }
        }
    }
}

/// How a run ends on stop signal `signum`.
pub(crate) fn stop_status(signum: i32) -> ExitStatus {
    if crate::signal::is_time_limit(signum) {
        ExitStatus::TimedOut
    } else {
        ExitStatus::Signal(signum)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use vmm_sys_util::eventfd::EventFd;

    use super::*;
    use crate::hvt::Devices;

    fn setup() -> (Hvt, GuestRam, EventFd) {
        let mut ram = GuestRam::new(4 << 20).unwrap();
        ram.protect_read_only(0x10_0000, 0x1000).unwrap();
        let stop = EventFd::new(0).unwrap();
        let hvt = Hvt::new(
            ram.clone(),
            Devices::from_slots(vec![None]),
            Box::new(std::io::sink()),
            stop.as_raw_fd(),
        )
        .unwrap();
        (hvt, ram, stop)
    }

    /// The exit of hypercall `nr` with its 4-byte argument, as this architecture's guests make
    /// it: a 4-byte OUT to port 0x500 + nr.
    #[cfg(target_arch = "x86_64")]
    fn hypercall(nr: u16, arg: &[u8]) -> VcpuExit<'_> {
        VcpuExit::IoOut(0x500 + nr, arg)
    }

    /// The exit of hypercall `nr` with its 4-byte argument, as this architecture's guests make
    /// it: a 4-byte store to 0x1_0000_0000 + (nr << 3).
    #[cfg(target_arch = "aarch64")]
    fn hypercall(nr: u16, arg: &[u8]) -> VcpuExit<'_> {
        VcpuExit::MmioWrite(arch::layout::HYPERCALL_MMIO_BASE + (u64::from(nr) << 3), arg)
    }

    /// Accesses that are not hypercalls on x86_64 (port I/O is the transport), with the start of
    /// their error.
    #[cfg(target_arch = "x86_64")]
    fn bad_accesses<'a>(arg: &'a [u8], in_data: &'a mut [u8], mmio: &'a mut [u8]) -> Vec<(VcpuExit<'a>, &'static str)> {
        vec![
            (VcpuExit::IoOut(0x509, arg), "Invalid guest port access: port=0x509"),
            (VcpuExit::IoOut(0x502, &arg[..1]), "Invalid guest port access: port=0x502, size=1"),
            (VcpuExit::IoIn(0x502, in_data), "Invalid guest port access"),
            (VcpuExit::MmioWrite(0xfee0_0000, arg), "Invalid guest mmio access: addr=0xfee00000"),
            (VcpuExit::MmioRead(0xfee0_0000, mmio), "Invalid guest mmio access"),
        ]
    }

    /// Accesses that are not hypercalls on aarch64 (stores to the MMIO window are the transport),
    /// with the start of their error.
    #[cfg(target_arch = "aarch64")]
    fn bad_accesses<'a>(arg: &'a [u8], in_data: &'a mut [u8], mmio: &'a mut [u8]) -> Vec<(VcpuExit<'a>, &'static str)> {
        let base = arch::layout::HYPERCALL_MMIO_BASE;
        vec![
            (
                VcpuExit::MmioWrite(base + (9 << 3), arg),
                "Invalid guest mmio access: addr=0x100000048, size=4",
            ),
            (
                VcpuExit::MmioWrite(base + 0x14, arg),
                "Invalid guest mmio access: addr=0x100000014, size=4",
            ),
            (
                VcpuExit::MmioWrite(base + 0x10, &arg[..1]),
                "Invalid guest mmio access: addr=0x100000010, size=1",
            ),
            (
                VcpuExit::MmioWrite(base + 0x10, &[0; 8]),
                "Invalid guest mmio access: addr=0x100000010, size=8",
            ),
            (VcpuExit::MmioRead(base + 0x10, mmio), "Invalid guest mmio access: addr=0x100000010"),
            (
                VcpuExit::MmioWrite(0x1_0000_1000, arg),
                "Invalid guest mmio access: addr=0x100001000",
            ),
            (VcpuExit::IoOut(0x502, arg), "Invalid guest port access: port=0x502, size=4"),
            (VcpuExit::IoIn(0x502, in_data), "Invalid guest port access"),
        ]
    }

    #[test]
    fn test_hypercall_exits_reach_the_handlers() {
        let (mut hvt, ram, _stop) = setup();
        let walltime = 0x20_0000u32.to_le_bytes();
        assert_eq!(handle_exit(hypercall(1, &walltime), &mut hvt, &ram).unwrap(), Action::Continue);
        assert_ne!(ram.read_obj::<u64>(0x20_0000).unwrap(), 0);
        ram.write_obj(0x20_0100u64, 0u64).unwrap();
        ram.write_obj(0x20_0108u64, 7i32).unwrap();
        let halt = 0x20_0100u32.to_le_bytes();
        assert_eq!(
            handle_exit(hypercall(8, &halt), &mut hvt, &ram).unwrap(),
            Action::Stop(ExitStatus::Halt(7))
        );
    }

    #[test]
    fn test_bad_exits_are_faults_with_clear_messages() {
        let (mut hvt, ram, _stop) = setup();
        let arg = 0x20_0000u32.to_le_bytes();
        let mut in_data = [0u8; 4];
        let mut mmio = [0u8; 8];
        let mut cases = bad_accesses(&arg, &mut in_data, &mut mmio);
        cases.extend([
            (hypercall(0, &arg), "Invalid guest hypercall: num=0"),
            (VcpuExit::MmioWrite(0x10_0010, &arg), "KVM: host/guest translation fault"),
            (VcpuExit::Shutdown, "KVM: unhandled exit: exit_reason=0x8 (shutdown: triple fault)"),
            (VcpuExit::Hlt, "KVM: unhandled exit: exit_reason=0x5 (hlt)"),
            (VcpuExit::InternalError, "KVM: internal error exit"),
            (VcpuExit::FailEntry(0x21, 0), "KVM: entry failure: hw_entry_failure_reason=0x21"),
            (VcpuExit::Intr, "KVM: unhandled exit: Intr"),
        ]);
        for (exit, want) in cases {
            let err = handle_exit(exit, &mut hvt, &ram).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err} does not start with {want}");
        }
    }

    #[test]
    fn test_faults_name_the_instruction_pointer_as_solo5_does() {
        let err = VcpuError::Guest {
            fault: ExitFault::TranslationFault,
            ip: 0x10_2040,
        };
        let name = if cfg!(target_arch = "aarch64") { "pc" } else { "rip" };
        assert_eq!(err.to_string(), format!("KVM: host/guest translation fault: {name}=0x102040"));
    }

    /// The legacy devices a Linux-boot guest ends its run with, and an empty MMIO bus.
    fn linux_buses() -> (Bus, Bus) {
        use std::sync::{Arc, Mutex};

        use crate::devices::legacy::{self, DebugExit, I8042};
        let mut pio = Bus::default();
        pio.insert(legacy::I8042_PORT, legacy::I8042_LEN, Arc::new(Mutex::new(I8042)))
            .unwrap();
        pio.insert(legacy::DEBUG_EXIT_PORT, legacy::DEBUG_EXIT_LEN, Arc::new(Mutex::new(DebugExit)))
            .unwrap();
        (pio, Bus::default())
    }

    #[test]
    fn test_linux_exits_reach_the_buses_and_end_the_machine() {
        let (pio, mmio) = linux_buses();
        let run = |exit: VcpuExit<'_>| handle_linux_exit(exit, &pio, &mmio);
        // The debug-exit port ends the VM with the written status, at any width.
        assert_eq!(run(VcpuExit::IoOut(0x501, &[7])).unwrap(), Action::Stop(ExitStatus::Halt(7)));
        assert_eq!(
            run(VcpuExit::IoOut(0x501, &[9, 0, 0, 0])).unwrap(),
            Action::Stop(ExitStatus::Halt(9))
        );
        // The i8042 reset pulse, and KVM's system events.
        assert_eq!(run(VcpuExit::IoOut(0x64, &[0xfe])).unwrap(), Action::Stop(ExitStatus::Reset));
        let shutdown = VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN, &[]);
        assert_eq!(run(shutdown).unwrap(), Action::Stop(ExitStatus::Halt(0)));
        let reset = VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, &[]);
        assert_eq!(run(reset).unwrap(), Action::Stop(ExitStatus::Reset));
        // Where no device sits: ports read all ones, MMIO zeros, writes are dropped (Linux probes).
        let mut port = [0u8; 2];
        assert_eq!(run(VcpuExit::IoIn(0x3f0, &mut port)).unwrap(), Action::Continue);
        assert_eq!(port, [0xff, 0xff]);
        let mut word = [0x55u8; 4];
        assert_eq!(run(VcpuExit::MmioRead(0xd000_0000, &mut word)).unwrap(), Action::Continue);
        assert_eq!(word, [0; 4]);
        assert_eq!(run(VcpuExit::IoOut(0x3f0, &[1])).unwrap(), Action::Continue);
        assert_eq!(run(VcpuExit::MmioWrite(0xd000_0000, &[1, 2, 3, 4])).unwrap(), Action::Continue);
        // HLT and interrupted runs go on; a triple fault and KVM's errors are faults.
        assert_eq!(run(VcpuExit::Hlt).unwrap(), Action::Continue);
        assert_eq!(run(VcpuExit::Intr).unwrap(), Action::Continue);
        let err = run(VcpuExit::Shutdown).unwrap_err().to_string();
        assert_eq!(err, "KVM: unhandled exit: exit_reason=0x8 (shutdown: triple fault)");
        assert_eq!(
            run(VcpuExit::FailEntry(0x21, 0)).unwrap_err().to_string(),
            "KVM: entry failure: hw_entry_failure_reason=0x21"
        );
    }

    // String port I/O exists on x86 only (aarch64 has no port I/O, hypercalls are MMIO stores).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn test_string_port_io_is_one_access_per_item() {
        let (mut hvt, ram, _stop) = setup();
        let mut handle = |exit: VcpuExit<'_>| handle_exit(exit, &mut hvt, &ram);
        // `rep outsb` of four bytes to the PUTS port: four 1-byte accesses, not a hypercall.
        let arg = 0x20_0000u32.to_le_bytes();
        let err = split_string_io(VcpuExit::IoOut(0x502, &arg), 1, &mut handle).unwrap_err();
        assert_eq!(err.to_string(), "Invalid guest port access: port=0x502, size=1");
        // `rep outsd` of two dwords to WALLTIME: two hypercalls.
        let two = [arg, 0x20_0100u32.to_le_bytes()].concat();
        assert_eq!(
            split_string_io(VcpuExit::IoOut(0x501, &two), 4, &mut handle).unwrap(),
            Action::Continue
        );
        assert_ne!(ram.read_obj::<u64>(0x20_0000).unwrap(), 0);
        assert_ne!(ram.read_obj::<u64>(0x20_0100).unwrap(), 0);
        // A single access goes through as it is.
        let err = split_string_io(VcpuExit::IoOut(0x502, &arg[..2]), 2, &mut handle).unwrap_err();
        assert_eq!(err.to_string(), "Invalid guest port access: port=0x502, size=2");
        // Linux-boot buses see each byte of a `rep outsb` to the serial port.
        let mut seen = Vec::new();
        let mut record = |exit: VcpuExit<'_>| {
            if let VcpuExit::IoOut(port, data) = exit {
                seen.push((port, data.to_vec()));
            }
            Ok(Action::Continue)
        };
        split_string_io(VcpuExit::IoOut(0x3f8, b"abc"), 1, &mut record).unwrap();
        assert_eq!(seen, vec![(0x3f8, b"a".to_vec()), (0x3f8, b"b".to_vec()), (0x3f8, b"c".to_vec())]);
        // `rep insw`: each item filled on its own.
        let mut data = [0u8; 4];
        let mut fill = |exit: VcpuExit<'_>| {
            if let VcpuExit::IoIn(_, d) = exit {
                d.copy_from_slice(&[1, 2]);
            }
            Ok(Action::Continue)
        };
        split_string_io(VcpuExit::IoIn(0x3f8, &mut data), 2, &mut fill).unwrap();
        assert_eq!(data, [1, 2, 1, 2]);
    }

    #[test]
    fn test_exit_status_codes() {
        assert_eq!(ExitStatus::Halt(0).code(), 0);
        assert_eq!(ExitStatus::Halt(254).code(), 254);
        assert_eq!(ExitStatus::Halt(255).code(), 255);
        assert_eq!(ExitStatus::Halt(256 + 3).code(), 3);
        assert_eq!(ExitStatus::Halt(-1).code(), 255);
        assert_eq!(ExitStatus::Signal(15).code(), 1);
        assert_eq!(ExitStatus::Reset.code(), 0);
    }
}
