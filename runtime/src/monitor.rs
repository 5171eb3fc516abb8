//! The container monitor's side of `create`, up to building the VM: what it reads from the state
//! directory, the namespaces and limits it enters, the network it wires, and the confinement it
//! will apply once the guest's files are open.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use vmm::VmConfig;
use vmm::host::files::Opened;
use vmm::privileges::Confinement;

use crate::error::ContainerError;
use crate::jail::{JailPlan, Namespace};
use crate::network::watch::LinkWatch;
use crate::network::{self, NetPlan, Wired};
use crate::spawn::{FILES_FD, namespaces_ready};
use crate::state::{Record, StateDir};

/// What the monitor needs to build and run the VM.
#[derive(Debug)]
pub struct Prepared {
    /// The VM, with the wired network device added.
    pub cfg: VmConfig,
    /// The splice of the guest's network device, if it has one.
    pub wired: Option<Wired>,
    /// The watch on the spliced interface, to start once the guest is about to run.
    pub link_watch: Option<LinkWatch>,
    /// What the monitor gives up before the guest runs.
    pub confinement: Confinement,
    /// The start gate.
    pub gate: PathBuf,
}

/// Reads the VM, network and jail records of `dir`, takes the `files` guest files `create`
/// opened (from [`FILES_FD`]), sets the container's hostname, resource limits and OOM score,
/// joins its network namespace, waits for the create hooks (`sync`) and wires the unikernel's
/// network device to the container interface (recorded as `wired.json`).
pub fn prepare(dir: &StateDir, sync: &OwnedFd, files: usize) -> Result<Prepared, ContainerError> {
    let missing = |record: Record| ContainerError::MissingRecord {
        id: dir.id().to_string(),
        file: record.file(),
    };
    let mut cfg: VmConfig = dir.load_record(Record::Vm)?.ok_or_else(|| missing(Record::Vm))?;
    let wanted = cfg.files();
    if files != wanted.len() {
        return Err(ContainerError::Monitor(format!(
            "create handed over {files} guest files; the VM has {} (kernel, initrd, disks)",
            wanted.len()
        )));
    }
    // SAFETY: `create` put exactly these files on these descriptors (checked: their number),
    // and main kept them open for us alone.
    let opened = unsafe { Opened::inherit(&wanted, FILES_FD) }.map_err(ContainerError::io("taking the guest's files from create"))?;
    cfg.opened = Some(std::sync::Arc::new(opened));
    let plan: NetPlan = dir.load_record(Record::Network)?.unwrap_or_default();
    let jail: JailPlan = dir.load_record(Record::Jail)?.unwrap_or_default();
    crate::jail::apply_limits(&jail).map_err(ContainerError::io("applying the container's limits"))?;
    // In a mount namespace of its own the monitor ends in an empty root, mounted there.
    let empty_root = match jail.mount {
        Namespace::New => Some(dir.empty_root()?),
        _ => None,
    };
    let confinement = Confinement {
        empty_root,
        user: jail.user_to_become(),
    };
    network::enter(&plan)?;
    // `create` runs the prestart/createRuntime hooks now (docker's moves the container
    // interface into our namespace), then lets us go on.
    namespaces_ready(sync).map_err(ContainerError::io("waiting for the create hooks"))?;
    let wired = network::wire(&plan, &mut cfg)?;
    let mut link_watch = None;
    if let Some(w) = &wired {
        log::debug!("guest network: {} via tap {} ({:?})", w.interface.name, w.tap_name, w.values);
        dir.save_record(Record::Wired, &w.interface.name)?;
        link_watch = Some(LinkWatch::open(&w.interface).map_err(ContainerError::io("watching the container's interface"))?);
    }
    Ok(Prepared {
        cfg,
        wired,
        link_watch,
        confinement,
        gate: dir.fifo(),
    })
}

extern "C" fn exit_on_signal(signum: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signum) };
}

/// The init of a pid namespace ignores signals it has no handler for (the kernel drops them,
/// even from outside the namespace): when the monitor is such an init (pid 1), makes every
/// signal `unik kill` and a foreground `run` pass on (HUP, INT, QUIT, TERM, USR1, USR2) end it
/// with status 128 + N, as their default action ends any other process; once the guest runs,
/// its stop signals (INT, TERM) take over and stop it cleanly first. Any other monitor gets
/// those signals' default actions back, whatever its caller ignored.
pub fn exit_on_signals_as_init() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        // Ignored dispositions survive exec: a caller that ignored some (a shell's background
        // job ignores INT and QUIT) must not make `unik kill` lose them.
        for signum in crate::process::FORWARDED {
            // SAFETY: restoring a default disposition.
            unsafe { libc::signal(signum, libc::SIG_DFL) };
        }
        return;
    }
    for signum in crate::process::FORWARDED {
        // SAFETY: installing a handler that only calls _exit.
        unsafe { libc::signal(signum, exit_on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}
