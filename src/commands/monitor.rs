//! `unik __monitor DIR`: the container's process. Joins the container's network namespace, waits
//! for the create hooks, wires the network, builds the VM from `DIR/vm.json`, reports to `create`
//! on fd 3, waits for `start` and runs the guest; its exit status is the container's.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::Context;
use runtime::network::{self, NetPlan, Wired};
use runtime::spawn::{SYNC_FD, namespaces_ready, report, wait_committed};
use vmm::{ExitStatus, VmConfig};

use crate::cli::oci::MonitorArgs;
use crate::launch::{self, Gate};

/// Runs the monitor. A stop signal ends it the way the signal would have (so `docker stop`
/// reports 143, as for any container stopped by SIGTERM).
pub fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    // SAFETY: F_GETFD only checks whether fd 3 is open.
    if unsafe { libc::fcntl(SYNC_FD, libc::F_GETFD) } < 0 {
        anyhow::bail!("__monitor is started by `unik create`, with its sync socket on fd {SYNC_FD}");
    }
    // SAFETY: fd 3 is open (checked above) and `create` handed it to us alone.
    let sync = unsafe { OwnedFd::from_raw_fd(SYNC_FD) };
    // Stop signals must reach us whatever mask the caller had (a foreground `run` blocks them);
    // still single-threaded, so this thread's mask is the process's.
    vmm::signal::set_thread_mask(libc::SIG_SETMASK, &vmm::signal::sigset(&[]));
    // Everything before the VM is built reports its error through the sync socket too.
    // An error `create` received is its to report (on stderr and in the log); reported here as
    // well it would show twice.
    let (cfg, wired) = match prepare(&args.dir, &sync) {
        Ok(p) => p,
        Err(e) => {
            let chain = crate::error_chain(&e);
            let gave_up = e
                .root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == runtime::spawn::CREATE_GAVE_UP);
            if gave_up {
                // `create` stopped waiting for us (a hook failed) and says why itself.
                log::debug!("{chain}");
                return Ok(ExitCode::FAILURE);
            }
            if report(&sync, Err(chain.clone())).is_err() {
                return Err(e);
            }
            log::debug!("reported to create: {chain}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut sync = Some(sync);
    let mut reported = false;
    let gate = Gate::Fifo(args.dir.join("exec.fifo"));
    let result = launch::run(&cfg, Box::new(std::io::stdout()), &gate, |built| {
        let Some(fd) = sync.take() else { return Ok(()) };
        let failed = built.is_err();
        let sent = report(&fd, built);
        reported = sent.is_ok() && failed;
        if failed {
            return Ok(());
        }
        sent.context("reporting to create")?;
        // Only a container `create` recorded may wait for `start`; otherwise nobody could reach
        // this monitor (state reads stopped, kill refuses): exit, releasing KVM, tap and splice.
        wait_committed(fd).context("waiting for create to record the container")
    });
    let status = match result {
        Ok(status) => status,
        Err(e) if reported => {
            log::debug!("reported to create: {}", crate::error_chain(&e));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    };
    // Remove the splice before exiting (the tap goes with our fd).
    drop(wired);
    if let ExitStatus::Signal(signum) = status {
        log::debug!("stopping on signal {signum}");
        // SAFETY: restoring the default action and re-raising a signal in our own process.
        unsafe {
            libc::signal(signum, libc::SIG_DFL);
            libc::raise(signum);
        }
    }
    Ok(ExitCode::from(status.code()))
}

/// Reads the VM and network configuration, joins the container's network namespace, waits for
/// the create hooks and wires the unikernel's network device to the container interface.
fn prepare(dir: &std::path::Path, sync: &OwnedFd) -> anyhow::Result<(VmConfig, Option<Wired>)> {
    let mut cfg: VmConfig =
        serde_json::from_slice(&std::fs::read(dir.join("vm.json")).context("reading vm.json")?).context("parsing vm.json")?;
    let plan: NetPlan = match std::fs::read(dir.join("network.json")) {
        Ok(json) => serde_json::from_slice(&json).context("parsing network.json")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NetPlan::default(),
        Err(e) => return Err(e).context("reading network.json"),
    };
    network::enter(&plan)?;
    // `create` runs the prestart/createRuntime hooks now (docker's moves the container
    // interface into our namespace), then lets us go on.
    namespaces_ready(sync).context("waiting for the create hooks")?;
    let wired = network::wire(&plan, &mut cfg)?;
    if let Some(w) = &wired {
        log::debug!("guest network: {} via tap {} ({:?})", w.interface.name, w.tap_name, w.values);
        runtime::state::write_atomic(&dir.join("wired.json"), serde_json::to_string(&w.interface.name)?.as_bytes())?;
    }
    Ok((cfg, wired))
}
