//! Starting the monitor process, and the one-line sync protocol it answers with.
//!
//! `create` starts the monitor with a socket on fd 3 (and the guest's files, opened where the
//! container sees them, from fd 4 on) and they speak in JSON lines:
//! 1. monitor → `{"namespaces":true}` once it is in the container's namespaces; `create` then runs
//!    the prestart/createRuntime/createContainer hooks and answers one byte (`g`) — or closes the
//!    socket and kills the monitor if a hook fails;
//! 2. monitor → `{"ok":true}` once the VM is built, or `{"error":"<why>"}` at any point;
//! 3. after `{"ok":true}`, `create` records the container (state.json says created, the pid file
//!    is written, a terminal sent) and answers one byte (`c`, committed); only then does the
//!    monitor go on to the start gate. End of file instead means `create` died before the
//!    container was recorded: nobody knows the monitor (`state` reads stopped, `kill` refuses),
//!    so it exits, releasing /dev/kvm, its tap and its splice.
//!
//! So `create` returns the monitor's exact error, succeeds only once the VM is ready to run, and
//! a monitor outlives its `create` only as a recorded container.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::ContainerError;
use crate::jail::{self, JailPlan};
use crate::state::{Record, StateDir};

/// The fd the monitor reports on.
pub const SYNC_FD: RawFd = 3;

/// The guest's files (kernel, initrd, disks, in [`vmm::VmConfig::files`] order), opened by
/// `create` where the container sees them (the rootfs, or a bind mount), are the monitor's
/// descriptors from this one on: what `create` checked is what boots, whatever the rootfs holds
/// later.
pub const FILES_FD: RawFd = 4;

/// At most this many guest files are handed over.
const MAX_FILES: usize = 64;

/// Where the files wait, between `create`'s open and the monitor's exec, clear of the
/// descriptors they move to.
const STAGING_FD: RawFd = 100;

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
    /// The monitor is in the container's namespaces and waits for the hooks.
    Namespaces {
        /// Always true.
        namespaces: bool,
    },
}

fn write_line(mut w: impl Write, msg: &SyncMessage) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

/// Tells `create` the namespaces exist, and waits until its hooks have run.
pub fn namespaces_ready(fd: &OwnedFd) -> std::io::Result<()> {
    let mut file = File::from(fd.try_clone()?);
    write_line(&mut file, &SyncMessage::Namespaces { namespaces: true })?;
    let mut go = [0u8; 1];
    match file.read(&mut go)? {
        1 => Ok(()),
        _ => Err(std::io::Error::new(CREATE_GAVE_UP, "create gave up (a hook failed)")),
    }
}

/// The error kind of [`namespaces_ready`] when `create` gave up: it reports why itself.
pub const CREATE_GAVE_UP: std::io::ErrorKind = std::io::ErrorKind::ConnectionAborted;

/// Writes the monitor's report on `fd`.
pub fn report(fd: &OwnedFd, result: Result<(), String>) -> std::io::Result<()> {
    let msg = match result {
        Ok(()) => SyncMessage::Ok { ok: true },
        Err(error) => SyncMessage::Error { error },
    };
    write_line(File::from(fd.try_clone()?), &msg)
}

/// The byte `create` sends once it has recorded the container.
const COMMITTED: u8 = b'c';

/// The error kind of [`wait_committed`] when `create` died before recording the container.
pub const CREATE_DIED: std::io::ErrorKind = std::io::ErrorKind::BrokenPipe;

/// After reporting the VM built: waits until `create` has recorded the container, and closes the
/// socket. An error of kind [`CREATE_DIED`] means `create` is gone without recording it.
pub fn wait_committed(fd: OwnedFd) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    match File::from(fd).read(&mut byte)? {
        1 if byte[0] == COMMITTED => Ok(()),
        _ => Err(std::io::Error::new(
            CREATE_DIED,
            "create ended before recording the container (it was killed?): nobody can reach this monitor, so it exits",
        )),
    }
}

/// Parses one line of the monitor's.
fn parse_line(line: &str) -> Result<SyncMessage, String> {
    match serde_json::from_str::<SyncMessage>(line.trim()) {
        Ok(msg) => Ok(msg),
        Err(_) if line.is_empty() => Err("the monitor exited before reporting".into()),
        Err(_) => Err(format!("the monitor sent a malformed report: {line:?}")),
    }
}

/// Reads the monitor's reports from our end of the sync socket, running `hooks` with its pid
/// when it reaches its namespaces. `Ok(Err(why))` is a failure the monitor (or a hook) reported.
pub fn read_report(
    sync: &File,
    pid: i32,
    hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
) -> Result<Result<(), String>, ContainerError> {
    // The monitor sends nothing after its last report, so nothing is left in this buffer.
    let mut reader = BufReader::new(sync);
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(ContainerError::io("reading the monitor's report"))?;
        match parse_line(&line) {
            Ok(SyncMessage::Ok { ok: true }) => return Ok(Ok(())),
            Ok(SyncMessage::Error { error }) => return Ok(Err(error)),
            Ok(SyncMessage::Namespaces { .. }) => {
                if let Err(e) = hooks(pid) {
                    return Ok(Err(e.to_string()));
                }
                reader
                    .get_mut()
                    .write_all(b"g")
                    .map_err(ContainerError::io("releasing the monitor"))?;
            }
            Ok(SyncMessage::Ok { ok: false }) => return Ok(Err("the monitor reported failure".into())),
            Err(why) => return Ok(Err(why)),
        }
    }
}

/// A monitor that reported its VM built, waiting for `create` to record it.
#[derive(Debug)]
pub struct Monitor {
    /// Its pid.
    pub pid: i32,
    /// `create`'s end of the sync socket; `None` for monitors that speak no protocol (tests).
    sync: Option<File>,
}

impl Monitor {
    /// A monitor with no sync socket: [`commit`](Self::commit) has nobody to tell (test fakes).
    pub fn without_sync(pid: i32) -> Monitor {
        Monitor { pid, sync: None }
    }

    /// Tells the monitor the container is recorded (state.json says created): it may go on to the
    /// start gate. Until then a `create` that dies makes the monitor exit.
    pub fn commit(self) -> Result<(), ContainerError> {
        let Some(mut sync) = self.sync else { return Ok(()) };
        sync.write_all(&[COMMITTED])
            .map_err(ContainerError::io(format!("telling the monitor (pid {}) it is recorded", self.pid)))
    }
}

/// Starts the monitor of a container.
pub trait Spawner {
    /// Starts the monitor for the container in `dir` and returns it once it reports the VM
    /// built; a failure it reports comes back as [`ContainerError::Monitor`] (and the monitor is
    /// gone). The caller records the container, then calls [`Monitor::commit`]; if the caller
    /// dies first, the monitor exits. With `terminal`, that fd (a pty slave) is the monitor's stdin, stdout and stderr and
    /// its controlling terminal; otherwise the monitor inherits the caller's stdio.
    /// `hooks` runs with the monitor's pid once the monitor is in its namespaces, before it wires
    /// the network and builds the VM.
    fn spawn(
        &self,
        dir: &StateDir,
        terminal: Option<&OwnedFd>,
        hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<Monitor, ContainerError>;
}

/// The production spawner: runs `exe args... --files=N <state dir>` (unik's hidden `__monitor`
/// command) with stdio inherited — the guest console is the container's stdout —, the sync
/// socket on fd 3 and the N guest files from fd 4 ([`FILES_FD`]).
#[derive(Debug, Clone)]
pub struct ReexecSpawner {
    /// The program (normally `/proc/self/exe`).
    pub exe: PathBuf,
    /// Arguments before the state directory.
    pub args: Vec<OsString>,
}

fn socketpair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`; checked below.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Opens the files of the VM recorded in `dir` (none if there is no record: the monitor then
/// reports it missing) where its roots say, each on a descriptor from [`STAGING_FD`] up.
fn open_guest_files(dir: &StateDir) -> Result<Vec<OwnedFd>, ContainerError> {
    let Some(cfg) = dir.load_record::<vmm::VmConfig>(Record::Vm)? else {
        return Ok(Vec::new());
    };
    let wanted = cfg.files();
    if wanted.len() > MAX_FILES {
        return Err(ContainerError::Monitor(format!(
            "the guest has {} files (kernel, initrd, disks): at most {MAX_FILES}",
            wanted.len()
        )));
    }
    let opened = vmm::host::files::Opened::open(cfg.root(), &wanted).map_err(ContainerError::io("opening the guest's files"))?;
    opened
        .files()
        .map(|file| {
            // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor (or -1), which we then own.
            let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, STAGING_FD) };
            if fd < 0 {
                return Err(ContainerError::io("passing the guest's files")(std::io::Error::last_os_error()));
            }
            // SAFETY: fresh from fcntl, owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

impl Spawner for ReexecSpawner {
    fn spawn(
        &self,
        dir: &StateDir,
        terminal: Option<&OwnedFd>,
        hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
    ) -> Result<Monitor, ContainerError> {
        let jail: JailPlan = dir.load_record(Record::Jail)?.unwrap_or_default();
        let entry = jail::Entry::open(&jail).map_err(ContainerError::io("opening the container's namespaces"))?;
        let files = open_guest_files(dir)?;
        let staged: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        let (read, write) = socketpair().map_err(ContainerError::io("creating the sync socket"))?;
        let raw = write.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args).arg(format!("--files={}", files.len())).arg(dir.path());
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
            // The container's mount, ipc and uts namespaces.
            cmd.pre_exec(move || entry.enter());
            // Last: the namespace descriptors above may sit where the files go.
            cmd.pre_exec(move || {
                for (target, &fd) in (FILES_FD..).zip(&staged) {
                    if libc::dup2(fd, target) != target {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        // Its pid namespace is chosen here: the monitor starts in it (as its init when new).
        let pid_ns =
            jail::PidNamespace::enter_for_children(&jail.pid).map_err(ContainerError::io("entering the container's pid namespace"))?;
        let spawned = cmd.spawn();
        drop(pid_ns);
        let mut child = spawned.map_err(ContainerError::io(format!("starting the monitor {}", self.exe.display())))?;
        drop(write);
        drop(files);
        let pid = i32::try_from(child.id()).map_err(|_| ContainerError::Monitor("monitor pid out of range".into()))?;
        let sync = File::from(read);
        match read_report(&sync, pid, hooks)? {
            // The monitor lives on after `create` exits; whoever reaps orphans (containerd's shim,
            // a subreaper) collects its exit status.
            Ok(()) => Ok(Monitor { pid, sync: Some(sync) }),
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
    fn test_sync_protocol() {
        let none = &mut |_: i32| Ok(());
        let (r, w) = socketpair().unwrap();
        report(&w, Ok(())).unwrap();
        assert_eq!(read_report(&File::from(r), 1, none).unwrap(), Ok(()));
        let (r, w) = socketpair().unwrap();
        report(&w, Err("Could not open /dev/kvm".into())).unwrap();
        assert_eq!(read_report(&File::from(r), 1, none).unwrap(), Err("Could not open /dev/kvm".into()));
        let (r, w) = socketpair().unwrap();
        drop(w);
        assert_eq!(
            read_report(&File::from(r), 1, none).unwrap(),
            Err("the monitor exited before reporting".into())
        );
        // Namespaces, hooks with the pid, go, then the build result, then the commit.
        let (r, w) = socketpair().unwrap();
        let monitor = std::thread::spawn(move || {
            namespaces_ready(&w).unwrap();
            report(&w, Ok(())).unwrap();
            wait_committed(w)
        });
        let mut seen = None;
        let sync = File::from(r);
        assert_eq!(
            read_report(&sync, 42, &mut |pid| {
                seen = Some(pid);
                Ok(())
            })
            .unwrap(),
            Ok(())
        );
        Monitor { pid: 42, sync: Some(sync) }.commit().unwrap();
        monitor.join().unwrap().unwrap();
        assert_eq!(seen, Some(42));
        // A failing hook: the monitor's wait ends with an error when the socket closes.
        let (r, w) = socketpair().unwrap();
        let monitor = std::thread::spawn(move || namespaces_ready(&w).unwrap_err());
        let res = read_report(&File::from(r), 1, &mut |_| {
            Err(ContainerError::Monitor("prestart hook /x: boom".into()))
        })
        .unwrap();
        assert_eq!(res, Err("prestart hook /x: boom".into()));
        monitor.join().unwrap();
    }

    #[test]
    fn test_a_monitor_whose_create_died_before_committing_is_told_so() {
        let (r, w) = socketpair().unwrap();
        let monitor = std::thread::spawn(move || {
            report(&w, Ok(())).unwrap();
            wait_committed(w)
        });
        let sync = File::from(r);
        assert_eq!(read_report(&sync, 1, &mut |_| Ok(())).unwrap(), Ok(()));
        // `create` dies here: its end closes without the commit byte.
        drop(sync);
        let err = monitor.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), CREATE_DIED);
        assert!(err.to_string().contains("create ended before recording the container"), "{err}");
    }
}
