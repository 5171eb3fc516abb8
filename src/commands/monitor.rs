//! `unik __monitor DIR`: the container's process. Joins the container's network namespace, waits
//! for the create hooks, wires the network, builds the VM from `DIR/vm.json`, reports to `create`
//! on fd 3, waits for `start` and runs the guest; its exit status is the container's.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::Context;
use runtime::network::{self, NetPlan, Wired};
use runtime::spawn::{SYNC_FD, namespaces_ready, report, wait_committed};
use vmm::{ExitStatus, VmConfig};

use runtime::jail::{JailPlan, Namespace};
use vmm::privileges::Confinement;

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
    // The init of a pid namespace ignores signals it has no handler for: until the guest runs
    // (and its stop signals take over), a stop signal ends us as it would any process.
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        exit_on_stop_signals();
    }
    // Everything before the VM is built reports its error through the sync socket too.
    // An error `create` received is its to report (on stderr and in the log); reported here as
    // well it would show twice.
    let (cfg, mut wired, confinement) = match prepare(&args.dir, &sync) {
        Ok(p) => p,
        Err(e) => {
            let chain = crate::logging::error_chain(&e);
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
    let mut committed = false;
    let gate = Gate::Fifo(args.dir.join("exec.fifo"));
    let result = launch::run(&cfg, Box::new(vmm::host::ConsoleOut), &gate, &confinement, |built| {
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
        wait_committed(fd).context("waiting for create to record the container")?;
        committed = true;
        Ok(())
    });
    // Once `create` recorded the container the monitor goes on to give up its privileges and run
    // the guest under seccomp: it can no longer remove the splice, `delete` does.
    if committed {
        if let Some(w) = wired.take() {
            w.leave_for_delete();
        }
    }
    let status = match result {
        Ok(status) => status,
        Err(e) if reported => {
            log::debug!("reported to create: {}", crate::logging::error_chain(&e));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    };
    if let ExitStatus::Signal(signum) = status {
        log::debug!("stopping on signal {signum}");
        // SAFETY: restoring the default action and re-raising a signal in our own process.
        unsafe {
            libc::signal(signum, libc::SIG_DFL);
            libc::raise(signum);
        }
        // Still here: the init of a pid namespace is not ended by its own default signals.
        // Exit as a shell reports a process the signal ended.
        return Ok(ExitCode::from(u8::try_from(128 + signum).unwrap_or(1)));
    }
    Ok(ExitCode::from(status.code()))
}

extern "C" fn exit_on_signal(signum: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signum) };
}

/// Makes SIGINT, SIGTERM and SIGHUP end the process with status 128 + N.
fn exit_on_stop_signals() {
    for signum in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls _exit.
        unsafe { libc::signal(signum, exit_on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// Reads the VM, network and jail configuration, joins the container's network namespace, sets
/// its hostname, resource limits and OOM score, waits for the create hooks and wires the
/// unikernel's network device to the container interface. Returns the VM configuration, the
/// wiring, and the confinement to apply once the guest's files are open.
fn prepare(dir: &std::path::Path, sync: &OwnedFd) -> anyhow::Result<(VmConfig, Option<Wired>, Confinement)> {
    let mut cfg: VmConfig =
        serde_json::from_slice(&std::fs::read(dir.join("vm.json")).context("reading vm.json")?).context("parsing vm.json")?;
    let plan: NetPlan = match std::fs::read(dir.join("network.json")) {
        Ok(json) => serde_json::from_slice(&json).context("parsing network.json")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NetPlan::default(),
        Err(e) => return Err(e).context("reading network.json"),
    };
    let jail: JailPlan = match std::fs::read(dir.join("jail.json")) {
        Ok(json) => serde_json::from_slice(&json).context("parsing jail.json")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => JailPlan::default(),
        Err(e) => return Err(e).context("reading jail.json"),
    };
    runtime::jail::apply_limits(&jail)?;
    // In a mount namespace of its own the monitor ends in an empty root, mounted here.
    let empty_root = if jail.mount == Namespace::New {
        let root = dir.join("jail");
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Some(root)
    } else {
        None
    };
    let confinement = Confinement {
        empty_root,
        user: jail.user_to_become(),
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
    Ok((cfg, wired, confinement))
}
