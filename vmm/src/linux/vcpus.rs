//! Running the vCPUs of a Linux-boot guest: vCPU 0 on the calling thread, the others (the APs)
//! on threads of their own. Each thread installs its seccomp filter before its first
//! `KVM_RUN`. The first vCPU to end the machine (debug exit, reset, shutdown, a fault) reports
//! through the channel of (vCPU index, result) and kicks the others out of `KVM_RUN`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use kvm_ioctls::VcpuFd;

use crate::devices::Bus;
use crate::error::Error;
use crate::seccomp::{Filters, ThreadKind};
use crate::signal::{Kick, StopSignals};
use crate::vcpu::{self, ExitStatus, VcpuError};

/// What one vCPU reports when its loop ends: its index and how the machine ended.
type Report = (usize, Result<ExitStatus, VcpuError>);

/// The machine's run state shared by its vCPU threads.
#[derive(Debug, Default)]
struct Machine {
    /// Set by the first vCPU whose run ends; every other vCPU loop then stops.
    ending: AtomicBool,
}

impl Machine {
    /// Marks the machine as ending; true for the first caller only.
    fn end(&self) -> bool {
        !self.ending.swap(true, Ordering::SeqCst)
    }

    fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }
}

/// Which report decides the machine's end: vCPU 0's own when it ended the machine first,
/// else the first AP's that did (an AP that ended it always reports before kicking vCPU 0).
fn decisive(boot: Result<ExitStatus, Error>, boot_first: bool, reports: &mpsc::Receiver<Report>) -> Result<ExitStatus, Error> {
    if boot_first || matches!(boot, Err(Error::Seccomp(_))) {
        return boot;
    }
    match reports.try_recv() {
        Ok((index, result)) => {
            log::debug!("vCPU {index} ended the machine");
            result.map_err(Error::from)
        }
        Err(_) => boot,
    }
}

/// Runs every vCPU until the machine ends; `pio`/`mmio` serve their exits.
pub(super) fn run(
    vcpus: Vec<VcpuFd>,
    pio: &Bus,
    mmio: &Bus,
    stop: &StopSignals,
    filters: &Filters,
    debugger: Option<(crate::debug::gdb::GdbConnection, &vm_memory::GuestMemoryMmap)>,
) -> Result<(ExitStatus, Vec<VcpuFd>), Error> {
    let mut vcpus = vcpus.into_iter();
    let mut boot = vcpus.next().ok_or(Error::Kvm {
        what: "KVM_CREATE_VCPU",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    let aps: Vec<VcpuFd> = vcpus.collect();
    if !aps.is_empty() {
        crate::signal::install_kick_handler().map_err(Error::Signals)?;
    }
    let machine = Machine::default();
    let (report_tx, reports) = mpsc::channel::<Report>();
    // An AP that ends the machine kicks vCPU 0 out of KVM_RUN.
    let boot_kick = Kick::this_thread(&mut boot.get_kvm_run().immediate_exit);
    let mut returned = Vec::new();
    let result = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        let mut confined = Ok(());
        for (index, mut vcpu) in (1..).zip(aps) {
            let (machine, report_tx) = (&machine, report_tx.clone());
            let (ready_tx, ready_rx) = mpsc::channel();
            // Stop signals go to this thread (vCPU 0), not to the APs'.
            let handle = crate::signal::with_stop_signals_blocked(|| {
                scope.spawn(move || {
                    let installed = filters.install(ThreadKind::LinuxVcpu);
                    let ok = installed.is_ok();
                    let _ = ready_tx.send((Kick::this_thread(&mut vcpu.get_kvm_run().immediate_exit), installed));
                    if !ok {
                        return vcpu;
                    }
                    let r = vcpu::run_loop(&mut vcpu, &|| None, &|| machine.is_ending(), |exit| {
                        vcpu::handle_linux_exit(exit, pio, mmio)
                    });
                    if machine.end() {
                        let _ = report_tx.send((index, r));
                        // SAFETY: vCPU 0's fd lives in `run`'s frame, beyond this scope; its
                        // thread is the caller's, never joined.
                        unsafe { boot_kick.kick() };
                    }
                    vcpu
                })
            });
            let kick = match ready_rx.recv() {
                Ok((kick, installed)) => {
                    if confined.is_ok() {
                        confined = installed;
                    }
                    Some(kick)
                }
                Err(_) => None,
            };
            threads.push((handle, kick));
        }
        // No vCPU enters the guest unconfined: an AP whose filter failed never ran, and the
        // others stop at once (`ending`) before their first KVM_RUN or right after it.
        let boot_result = match confined.and_then(|()| filters.install(ThreadKind::LinuxVcpu)) {
            // With gdb (one vCPU only): its stub drives vCPU 0.
            Ok(()) => match debugger {
                Some((conn, mem)) => {
                    let view = crate::debug::gdb::GuestView { mem, read_only: &[] };
                    crate::debug::gdb::run(conn, &mut boot, view, stop, |exit| vcpu::handle_linux_exit(exit, pio, mmio))
                }
                None => vcpu::run_boot_vcpu(&mut boot, stop, &|| machine.is_ending(), |exit| {
                    vcpu::handle_linux_exit(exit, pio, mmio)
                }),
            }
            .map_err(Error::from),
            Err(e) => Err(Error::from(e)),
        };
        let boot_first = machine.end();
        for (handle, kick) in threads {
            if let Some(kick) = kick {
                // SAFETY: the AP's fd is alive (its thread returns it) and the thread is joined
                // only below.
                unsafe { kick.kick() };
            }
            match handle.join() {
                Ok(vcpu) => returned.push(vcpu),
                Err(_) => log::warn!("a vCPU thread panicked"),
            }
        }
        decisive(boot_result, boot_first, &reports)
    });
    returned.insert(0, boot);
    Ok((result?, returned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_first_vcpu_to_end_the_machine_decides() {
        let machine = Machine::default();
        assert!(!machine.is_ending());
        assert!(machine.end(), "the first caller ends the machine");
        assert!(!machine.end(), "later callers do not");
        assert!(machine.is_ending());

        let (tx, rx) = mpsc::channel::<Report>();
        // vCPU 0 ended it: its status, whatever an AP reported.
        tx.send((1, Ok(ExitStatus::Halt(7)))).unwrap();
        assert_eq!(decisive(Ok(ExitStatus::Halt(3)), true, &rx).unwrap(), ExitStatus::Halt(3));
        // An AP ended it: vCPU 0 only stopped because of that.
        assert_eq!(decisive(Ok(ExitStatus::Reset), false, &rx).unwrap(), ExitStatus::Halt(7));
        // An AP's fault is the machine's.
        tx.send((2, Err(VcpuError::Run(kvm_ioctls::Error::new(libc::EIO))))).unwrap();
        let err = decisive(Ok(ExitStatus::Reset), false, &rx).unwrap_err().to_string();
        assert!(err.contains("KVM_RUN failed"), "{err}");
        // Nothing reported (a stop signal on vCPU 0): vCPU 0's result.
        assert_eq!(decisive(Ok(ExitStatus::Signal(15)), false, &rx).unwrap(), ExitStatus::Signal(15));
    }
}
