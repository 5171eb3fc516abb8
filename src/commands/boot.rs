//! `unik boot`: run a unikernel in the foreground, like `solo5-hvt`.

use std::process::ExitCode;

use vmm::{ExitStatus, VmConfig};

use crate::cli::boot::BootArgs;
use crate::launch;

/// Boots the kernel; the exit code is the guest's HALT status (solo5-hvt semantics).
pub fn run(args: BootArgs) -> anyhow::Result<ExitCode> {
    let cfg = VmConfig::try_from(args)?;
    let timeout = cfg.timeout;
    let status = launch::run(
        cfg,
        Box::new(vmm::host::ConsoleOut),
        &launch::Gate::Open,
        &Default::default(),
        |_| Ok(()),
        || Ok(()),
    )?;
    match (status, timeout) {
        (ExitStatus::Signal(signum), _) => log::error!("Exiting on signal {signum}"),
        (ExitStatus::TimedOut, Some(limit)) => log::error!("the guest ran longer than --timeout {limit:?}: stopped"),
        _ => {}
    }
    Ok(ExitCode::from(status.code()))
}
