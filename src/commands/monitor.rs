//! `unik __monitor DIR`: the container's process. Prepares (`runtime::monitor::prepare`: limits,
//! namespaces, the create hooks, the network), builds the VM from `DIR/vm.json`, reports to
//! `create` on fd 3, waits for `start`, confines itself and runs the guest; its exit status is the
//! container's.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::Context;
use runtime::monitor::Prepared;
use runtime::spawn::{SYNC_FD, report, wait_committed};
use runtime::state::StateDir;
use vmm::ExitStatus;

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
    runtime::monitor::exit_on_signals_as_init();
    // Everything before the VM is built reports its error through the sync socket too.
    // An error `create` received is its to report (on stderr and in the log); reported here as
    // well it would show twice.
    let prepared = StateDir::of_monitor(&args.dir).and_then(|dir| runtime::monitor::prepare(&dir, &sync, args.files));
    let Prepared {
        cfg,
        mut wired,
        link_watch,
        confinement,
        gate,
    } = match prepared {
        Ok(p) => p,
        Err(e) => {
            let e = anyhow::Error::new(e);
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
    let gate = Gate::Fifo(gate);
    let seccomp = cfg.seccomp;
    // Errors name the guest's files as the container knows them, not by the engine's paths.
    let names = cfg.names.clone();
    // Once the guest is about to run: the watch on the spliced interface, under its own filter.
    let running = move || -> anyhow::Result<()> {
        let Some(watch) = link_watch else { return Ok(()) };
        let filter = vmm::seccomp::Filters::new(seccomp, &[vmm::seccomp::ThreadKind::LinkWatch])?;
        // Without the watch the guest still runs (a pids limit may leave no room for its
        // thread); only a deleted interface then goes unnoticed.
        if let Err(e) = watch.spawn(filter) {
            log::warn!("the container's interface is not watched (a disconnect will go unnoticed): {e}");
        }
        Ok(())
    };
    let result = launch::run(
        cfg,
        Box::new(vmm::host::ConsoleOut),
        &gate,
        &confinement,
        |built| {
            let Some(fd) = sync.take() else { return Ok(()) };
            let built = built.map_err(|e| vmm::config::as_container_names(&names, &e));
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
        },
        running,
    );
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
            vmm::signal::raise(signum);
        }
        // Still here: the init of a pid namespace is not ended by its own default signals.
        // Exit as a shell reports a process the signal ended.
        return Ok(ExitCode::from(u8::try_from(128 + signum).unwrap_or(1)));
    }
    Ok(ExitCode::from(status.code()))
}
