//! The one VM launch path: build, report, wait at the gate, confine, run. `unik boot` and the
//! OCI monitor both come through here.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use vmm::privileges::Confinement;
use vmm::{ExitStatus, Vm, VmConfig};

/// What stands between a built VM and its first instruction.
#[derive(Debug)]
pub enum Gate {
    /// Nothing: run at once (`unik boot`).
    Open,
    /// The container's start fifo: opening it blocks until `unik start` opens the other end.
    Fifo(PathBuf),
}

impl Gate {
    fn wait(&self) -> anyhow::Result<()> {
        match self {
            Gate::Open => Ok(()),
            Gate::Fifo(path) => runtime::gate::wait_for_start(path).with_context(|| format!("waiting for start on {}", path.display())),
        }
    }
}

/// Builds the VM for `cfg`, tells `built` how that went (before the gate, so `create` can return
/// the exact error), waits at `gate`, applies `confinement` (the process can then never regain a
/// privilege; its threads install their seccomp filters in `Vm::run`), calls `running` (which may
/// start a helper thread that installs its own filter) and runs the guest to completion. An error from `built` after a successful build (the OCI monitor's `create` died)
/// ends the launch there.
pub fn run(
    cfg: VmConfig,
    console: Box<dyn Write + Send>,
    gate: &Gate,
    confinement: &Confinement,
    built: impl FnOnce(Result<(), String>) -> anyhow::Result<()>,
    running: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<ExitStatus> {
    let vm = match Vm::build(&cfg, console) {
        Ok(vm) => {
            // What the VM uses it holds; the rest (a container's files handed over by `create`)
            // is closed before the guest runs.
            drop(cfg);
            built(Ok(()))?;
            vm
        }
        Err(e) => {
            let e = anyhow::Error::new(e);
            // The build's error is the one to return, whatever `built` makes of it.
            let _ = built(Err(crate::logging::error_chain(&e)));
            return Err(e);
        }
    };
    gate.wait()?;
    confinement.apply()?;
    running()?;
    Ok(vm.run()?)
}
