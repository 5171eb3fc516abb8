//! The one VM launch path: build, then run. Every command that boots a guest comes through here.

use std::io::Write;

use vmm::{ExitStatus, Vm, VmConfig};

/// Builds the VM for `cfg` and runs it to completion; the guest console goes to `console`.
pub fn run(cfg: &VmConfig, console: Box<dyn Write + Send>) -> anyhow::Result<ExitStatus> {
    let vm = Vm::build(cfg, console)?;
    Ok(vm.run()?)
}
