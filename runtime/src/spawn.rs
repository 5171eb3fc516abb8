//! Starting the monitor process, and the one-line sync protocol it answers with.
//!
//! `create` starts the monitor with a pipe on fd 3. The monitor builds the whole VM and then
//! writes exactly one JSON line — `{"ok":true}` or `{"error":"<why>"}` — and closes the pipe; so
//! `create` returns the monitor's exact error, and succeeds only once the VM is ready to run.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::ContainerError;
use crate::state::StateDir;

/// The fd the monitor reports on.
pub const SYNC_FD: RawFd = 3;

/// The monitor's report.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum SyncMessage {
    /// The VM is built.
    Ok {
        /// Always true.
        ok: bool,
    },
    /// Building failed.
    Error {
        /// Why.
        error: String,
    },
}

/// Writes the monitor's report on `fd` and closes it.
pub fn report(fd: OwnedFd, result: Result<(), String>) -> std::io::Result<()> {
    let msg = match result {
        Ok(()) => SyncMessage::Ok { ok: true },
        Err(error) => SyncMessage::Error { error },
    };
    let mut line = serde_json::to_vec(&msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    File::from(fd).write_all(&line)
}

/// Reads the monitor's report from the read end of the sync pipe.
pub fn read_report(fd: OwnedFd) -> Result<Result<(), String>, ContainerError> {
    let mut text = String::new();
    File::from(fd)
        .read_to_string(&mut text)
        .map_err(ContainerError::io("reading the monitor's report"))?;
    match serde_json::from_str::<SyncMessage>(text.trim()) {
        Ok(SyncMessage::Ok { ok: true }) => Ok(Ok(())),
        Ok(SyncMessage::Error { error }) => Ok(Err(error)),
        _ if text.is_empty() => Ok(Err("the monitor exited before reporting".into())),
        _ => Ok(Err(format!("the monitor sent a malformed report: {text:?}"))),
    }
}

/// Starts the monitor of a container.
pub trait Spawner {
    /// Starts the monitor for the container in `dir` and returns its pid once it reports the VM
    /// built; a failure it reports comes back as [`ContainerError::Monitor`] (and the monitor is
    /// gone). With `terminal`, that fd (a pty slave) is the monitor's stdin, stdout and stderr and
    /// its controlling terminal; otherwise the monitor inherits the caller's stdio.
    fn spawn(&self, dir: &StateDir, terminal: Option<&OwnedFd>) -> Result<i32, ContainerError>;
}

/// The production spawner: runs `exe args... <state dir>` (unik's hidden `__monitor` command)
/// with stdio inherited — the guest console is the container's stdout — and the sync pipe on fd 3.
#[derive(Debug, Clone)]
pub struct ReexecSpawner {
    /// The program (normally `/proc/self/exe`).
    pub exe: PathBuf,
    /// Arguments before the state directory.
    pub args: Vec<OsString>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`; checked below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Spawner for ReexecSpawner {
    fn spawn(&self, dir: &StateDir, terminal: Option<&OwnedFd>) -> Result<i32, ContainerError> {
        let (read, write) = pipe().map_err(ContainerError::io("creating the sync pipe"))?;
        let raw = write.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args).arg(dir.path());
        if let Some(tty) = terminal {
            let dup = |what| tty.try_clone().map(Stdio::from).map_err(ContainerError::io(what));
            cmd.stdin(dup("terminal stdin")?)
                .stdout(dup("terminal stdout")?)
                .stderr(dup("terminal stderr")?);
            // SAFETY: setsid(2) and ioctl(TIOCSCTTY) on fd 0 (the pty slave) are async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        // SAFETY: between fork and exec only dup2(2)/fcntl(2), which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let ok = if raw == SYNC_FD {
                    libc::fcntl(raw, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(raw, SYNC_FD) == SYNC_FD
                };
                if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(ContainerError::io(format!("starting the monitor {}", self.exe.display())))?;
        drop(write);
        let pid = i32::try_from(child.id()).map_err(|_| ContainerError::Monitor("monitor pid out of range".into()))?;
        match read_report(read)? {
            // The monitor lives on after `create` exits; whoever reaps orphans (containerd's shim,
            // a subreaper) collects its exit status.
            Ok(()) => Ok(pid),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(ContainerError::Monitor(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_report_round_trip() {
        let (r, w) = pipe().unwrap();
        report(w, Ok(())).unwrap();
        assert_eq!(read_report(r).unwrap(), Ok(()));
        let (r, w) = pipe().unwrap();
        report(w, Err("Could not open /dev/kvm".into())).unwrap();
        assert_eq!(read_report(r).unwrap(), Err("Could not open /dev/kvm".into()));
        let (r, w) = pipe().unwrap();
        drop(w);
        assert_eq!(read_report(r).unwrap(), Err("the monitor exited before reporting".into()));
    }
}
