//! The one VM launch path: build, report, wait at the gate, run. `unik boot` and the OCI monitor
//! both come through here.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use vmm::privileges::Confinement;
use vmm::{ExitStatus, Vm, VmConfig};

/// What stands between a built VM and its first instruction.
#[derive(Debug)]
pub enum Gate {
    /// Nothing: run at once (`unik boot`).
    Open,
    /// The container's start fifo, open for reading (without blocking, so it can be opened
    /// before the monitor leaves the file system): waiting polls it until `unik start` opens
    /// the other end and writes or closes.
    Fifo(File),
}

impl Gate {
    /// The gate of a container: its start fifo at `path`.
    pub fn fifo(path: &Path) -> anyhow::Result<Gate> {
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("opening the start fifo {}", path.display()))?;
        Ok(Gate::Fifo(fifo))
    }

    fn wait(&self) -> anyhow::Result<()> {
        match self {
            Gate::Open => Ok(()),
            Gate::Fifo(fifo) => {
                // A reader that opened before any writer sees neither data nor a hang-up until
                // `unik start` has opened the fifo: then a byte or its close both mean "go".
                let mut poll = libc::pollfd {
                    fd: fifo.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                loop {
                    // SAFETY: poll on one valid pollfd.
                    let n = unsafe { libc::poll(&raw mut poll, 1, -1) };
                    if n > 0 {
                        break;
                    }
                    let e = std::io::Error::last_os_error();
                    if n < 0 && e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e).context("waiting for start");
                    }
                }
                let mut byte = [0u8; 1];
                let mut reader: &File = fifo;
                let _ = reader.read(&mut byte);
                Ok(())
            }
        }
    }
}

/// Builds the VM for `cfg`, tells `built` how that went (before the gate, so `create` can return
/// the exact error), waits at `gate`, applies `confinement` (the process can then never regain a
/// privilege; its threads install their seccomp filters in `Vm::run`) and runs the guest to
/// completion.
pub fn run(
    cfg: &VmConfig,
    console: Box<dyn Write + Send>,
    gate: &Gate,
    confinement: &Confinement,
    built: impl FnOnce(Result<(), String>),
) -> anyhow::Result<ExitStatus> {
    let vm = match Vm::build(cfg, console) {
        Ok(vm) => {
            built(Ok(()));
            vm
        }
        Err(e) => {
            let e = anyhow::Error::new(e);
            built(Err(crate::logging::error_chain(&e)));
            return Err(e);
        }
    };
    gate.wait()?;
    confinement.apply()?;
    Ok(vm.run()?)
}
