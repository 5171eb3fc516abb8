//! The guest-kind switch: [`Vm`] builds and runs an hvt or a Linux-boot machine.

use std::io::Write;

use crate::config::{GuestKind, VmConfig};
use crate::error::Error;
use crate::hvt_vm::HvtVm;
use crate::vcpu::ExitStatus;

/// A built machine of either guest kind, ready to run.
#[derive(Debug)]
pub struct Vm(Machine);

#[derive(Debug)]
enum Machine {
    Hvt(HvtVm),
    Linux(crate::linux::LinuxVm),
}

impl Vm {
    /// Builds the machine described by `cfg`, for the kind it names or the kernel image shows.
    /// `console` receives the guest's console output (hvt PUTS or the serial port).
    ///
    /// Everything that can fail because of the configuration or the kernel fails here, before the
    /// guest runs.
    pub fn build(cfg: &VmConfig, console: Box<dyn Write + Send>) -> Result<Vm, Error> {
        let kind = match cfg.kind {
            Some(GuestKind::Linux) if crate::loader::is_solo5(cfg.root(), &cfg.kernel) => {
                return Err(Error::Unsupported(crate::loader::SOLO5_NOT_LINUX));
            }
            Some(kind) => kind,
            None => crate::loader::detect_kind(cfg.root(), &cfg.kernel).map_err(|source| Error::Kernel {
                path: cfg.kernel.clone(),
                source,
            })?,
        };
        match kind {
            GuestKind::Hvt => {
                if cfg.initrd.is_some() || cfg.vcpus > 1 || cfg.blocks.iter().any(|b| b.read_only) {
                    return Err(Error::Unsupported(
                        "--initrd, --cpus > 1 and read-only block devices are for Linux-boot-protocol kernels; this is a solo5-hvt unikernel",
                    ));
                }
                Ok(Vm(Machine::Hvt(HvtVm::build(cfg, console)?)))
            }
            GuestKind::Linux => Ok(Vm(Machine::Linux(crate::linux::LinuxVm::build(cfg, console)?))),
        }
    }

    /// Runs the guest to its end: its exit status, or the fault that stopped it.
    pub fn run(self) -> Result<ExitStatus, Error> {
        match self.0 {
            Machine::Hvt(vm) => vm.run(),
            Machine::Linux(vm) => vm.run(),
        }
    }
}
