//! The lifecycle: create, start, state, kill, delete, pause, resume, list, ps — with the OCI
//! runtime specification's rules, under each container's lock.
//!
//! * **The start gate** is `exec.fifo`, created by `create`. The monitor, once its VM is built,
//!   reported and committed (see [`crate::spawn`]), opens it for *reading* and blocks; `start`
//!   opens it for *writing* with `O_NONBLOCK` (which fails with `ENXIO` instead of blocking when
//!   there is no reader), unlinks it, records `running`, then writes one byte. The monitor goes
//!   on a byte, or on end of file once the fifo is gone; end of file with the fifo still there
//!   is a `start` that died before recording anything, and it waits again
//!   ([`crate::gate::wait_for_start`]). So `start` never hangs on a dead monitor, "the fifo
//!   exists" means "not started yet" whatever moment a `start` dies at, and the monitor may
//!   still be on its way to `open` when `create` returns; `start` waits for it (briefly, and
//!   only while it lives).
//! * **Pause** stops the whole monitor process (all vCPU threads with it) with SIGSTOP through
//!   its pidfd, and `resume` sends SIGCONT; both wait until `/proc` shows the change. A `paused`
//!   marker records the intent; the container reads as paused while the marker exists *and*
//!   the process is stopped, so an outside SIGCONT makes it running again. (No cgroup freezer:
//!   the monitor is one process, and this works without a cgroup.)
//! * **Crashes.** `state.json` is only replaced atomically. `create` holds the lock throughout,
//!   and records the monitor's pid as soon as it is known: a container left `creating` by a
//!   `create` that died reads as stopped, its monitor exits by itself (it waits for `create`'s
//!   commit, which never comes), and `delete` kills it if it is still on its way out.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::bundle::{self, BundleKind};
use crate::cgroups::{self, CgroupError, CgroupPlan, Guest, Limits, When};
use crate::console;
use crate::error::ContainerError;
use crate::hooks::{self, Hooks};
use crate::network::{self, NetPlan};
use crate::process;
use crate::spawn::Spawner;
use crate::state::{OCI_VERSION, Record, State, StateDir, Status, list_ids, oci_state_json, rfc3339, write_atomic};

/// How long `delete --force` waits for a killed monitor to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long `start` waits for a live monitor to reach the start gate, and `pause`/`resume` for
/// the monitor to stop or continue.
const GATE_WAIT: Duration = Duration::from_secs(5);

/// The OCI state hooks receive on stdin.
fn state_json(state: &State, pid: i32) -> Result<Vec<u8>, ContainerError> {
    let mut s = state.clone();
    s.pid = Some(pid);
    serde_json::to_vec(&s).map_err(|e| ContainerError::io("serialising the state for hooks")(std::io::Error::other(e)))
}

/// The hooks saved at create time.
fn saved_hooks(dir: &StateDir) -> Hooks {
    dir.load_record(Record::Hooks).ok().flatten().unwrap_or_default()
}

/// Options of `create`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CreateOptions<'a> {
    /// Where to write the monitor's pid.
    pub pid_file: Option<&'a Path>,
    /// Where to send a terminal's master fd; the guest console is then that terminal.
    pub console_socket: Option<&'a Path>,
    /// `cgroupsPath` uses systemd's `slice:prefix:name` syntax.
    pub systemd_cgroup: bool,
    /// The caller stays attached (`run` without `-d`): a terminal the bundle asks for is the
    /// caller's own, so no console socket is needed.
    pub foreground: bool,
}

/// Containers under one root directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    /// Where cgroup hierarchies are mounted; `None` leaves cgroups alone.
    cgroup_root: Option<PathBuf>,
}

/// The live status of a container: its process, the start gate and the pause marker. `locked`:
/// the caller holds the container's lock, so no `create` is under way.
fn live_status(dir: &StateDir, state: &State, locked: bool) -> Status {
    if state.status == Status::Creating {
        // `create` holds the lock until it has recorded `created` or removed the directory.
        return if locked { Status::Stopped } else { Status::Creating };
    }
    match (state.pid, state.pid_start_time) {
        (Some(pid), Some(start)) if process::is_alive(pid, start) => {
            if dir.fifo().exists() {
                Status::Created
            } else if dir.paused_marker().exists() && process::is_stopped(pid, start) {
                Status::Paused
            } else {
                Status::Running
            }
        }
        (Some(_), _) => Status::Stopped,
        (None, _) => state.status,
    }
}

/// Kills the recorded monitor if it still lives, and waits (up to [`KILL_WAIT`]) until it is gone.
fn kill_and_wait(pid: Option<i32>, start: Option<u64>) -> bool {
    let (Some(pid), Some(start)) = (pid, start) else { return true };
    if let Ok(fd) = process::pidfd(pid, start) {
        let _ = process::send_signal(&fd, libc::SIGKILL);
    }
    wait_until(KILL_WAIT, || !process::is_alive(pid, start))
}

/// Polls `done` until it holds or `limit` passes; whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn mkfifo(path: &Path) -> Result<(), ContainerError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| ContainerError::io("fifo path")(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(ContainerError::io(format!("mkfifo {}", path.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Removes the splice the container's monitor left (see [`network::remove_splice`]).
fn remove_stale_splice(dir: &StateDir) {
    let (Ok(Some(name)), Ok(Some(plan))) = (
        dir.load_record::<String>(Record::Wired),
        dir.load_record::<NetPlan>(Record::Network),
    ) else {
        return;
    };
    if let Err(e) = network::remove_splice(&plan, &name) {
        log::warn!("container {}: removing the network splice: {e}", dir.id());
    }
}

impl Runtime {
    /// Containers under `root` (created on first `create`).
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            cgroup_root: Some(PathBuf::from("/sys/fs/cgroup")),
        }
    }

    /// The same, without touching cgroups (unit tests).
    pub fn without_cgroups(mut self) -> Runtime {
        self.cgroup_root = None;
        self
    }

    /// The same, with the cgroup hierarchies mounted under `root` (unit tests: a fake tree).
    pub fn with_cgroup_root(mut self, root: impl Into<PathBuf>) -> Runtime {
        self.cgroup_root = Some(root.into());
        self
    }

    /// The cgroup plan saved at create time.
    fn saved_cgroup(dir: &StateDir) -> Option<CgroupPlan> {
        dir.load_record(Record::Cgroup).ok().flatten()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Builds the container: resolves the bundle, starts the monitor (which builds the VM and
    /// then waits for `start`), records its pid. On any failure nothing is left behind.
    pub fn create(&self, id: &str, bundle_path: &Path, opts: &CreateOptions<'_>, spawner: &dyn Spawner) -> Result<State, ContainerError> {
        let (dir, _lock) = StateDir::create(&self.root, id)?;
        let monitor = Cell::new(None);
        let result = self.create_in(&dir, bundle_path, opts, spawner, &monitor);
        if result.is_err() {
            if let Some((pid, start)) = monitor.get() {
                kill_and_wait(Some(pid), Some(start));
            }
            // A monitor that failed after joining its cgroup (a hook, the VM build) left the
            // directories behind.
            if let (Some(root), Some(plan)) = (&self.cgroup_root, Runtime::saved_cgroup(&dir)) {
                cgroups::remove(root, &plan);
            }
            let _ = dir.remove();
        }
        result
    }

    fn create_in(
        &self,
        dir: &StateDir,
        bundle_path: &Path,
        opts: &CreateOptions<'_>,
        spawner: &dyn Spawner,
        monitor: &Cell<Option<(i32, u64)>>,
    ) -> Result<State, ContainerError> {
        let bundle = bundle::load(bundle_path)?;
        let cfg = match bundle.kind {
            BundleKind::Unikernel(cfg) => cfg,
            BundleKind::NotUnikernel(reason) => return Err(ContainerError::NotUnikernel { path: bundle.path, reason }),
        };
        if bundle.terminal && opts.console_socket.is_none() && !opts.foreground {
            return Err(ContainerError::TerminalWithoutConsoleSocket(bundle.path));
        }
        let mut state = State {
            oci_version: OCI_VERSION.into(),
            id: dir.id().to_string(),
            status: Status::Creating,
            pid: None,
            pid_start_time: None,
            bundle: bundle.path,
            rootfs: bundle.rootfs,
            created: rfc3339(SystemTime::now()),
            annotations: bundle.annotations,
            owner: String::new(),
        };
        dir.save(&state)?;
        dir.save_record(Record::Vm, &cfg)?;
        let network = NetPlan {
            tap: network::TAP_TEMPLATE.into(),
            ..bundle.network
        };
        dir.save_record(Record::Network, &network)?;
        mkfifo(&dir.fifo())?;
        dir.save_record(Record::Hooks, &bundle.hooks)?;
        dir.save_record(Record::Jail, &bundle.jail)?;
        let pty = opts.console_socket.map(|_| console::open_pty()).transpose()?;
        log::debug!(
            "hooks: {} prestart, {} createRuntime, {} createContainer",
            bundle.hooks.prestart.len(),
            bundle.hooks.create_runtime.len(),
            bundle.hooks.create_container.len()
        );
        let cgroup_path =
            cgroups::relative_path(bundle.cgroups_path.as_deref(), opts.systemd_cgroup).map_err(|reason| ContainerError::Bundle {
                path: state.bundle.clone(),
                reason,
            })?;
        // Every resource field is checked (and refused with its name) before the monitor exists.
        let guest = Guest {
            mem_mib: cfg.mem_mib,
            // A guest that always gets a network card also has the link watch's thread (one whose
            // card is optional may boot without, and then has none; should the card come, a
            // limit with no room for the watch only costs the watch, with a warning).
            tasks: cfg.monitor_tasks() + u32::from(!network.devices.is_empty() && !network.card_optional),
        };
        let limits = Limits::from_resources(&bundle.resources, guest, When::Create)?;
        let cgroup = match cgroup_path {
            Some(path) => Some(CgroupPlan { path, limits }),
            None => match limits.needs_cgroup() {
                Some(field) => return Err(CgroupError::NoCgroup(field.to_string()).into()),
                None => None,
            },
        };
        if let (Some(_), Some(cgroup)) = (&self.cgroup_root, &cgroup) {
            dir.save_record(Record::Cgroup, cgroup)?;
        }
        let mut run_create_hooks = |pid: i32| {
            // Record the monitor at once: should this `create` die from here on, `delete` finds
            // the monitor (and kills it) instead of leaking a process blocked on the gate.
            if let Some(start) = process::start_time(pid) {
                monitor.set(Some((pid, start)));
                let mut early = state.clone();
                early.pid = Some(pid);
                early.pid_start_time = Some(start);
                dir.save(&early)?;
            }
            if let (Some(root), Some(cgroup)) = (&self.cgroup_root, &cgroup) {
                cgroups::join(root, cgroup, pid)?;
            }
            let json = state_json(&state, pid)?;
            hooks::run("prestart", &bundle.hooks.prestart, &json)?;
            hooks::run("createRuntime", &bundle.hooks.create_runtime, &json)?;
            hooks::run("createContainer", &bundle.hooks.create_container, &json)
        };
        let spawned = spawner.spawn(dir, pty.as_ref().map(|(_, slave)| slave), &mut run_create_hooks)?;
        let pid = spawned.pid;
        crate::crashpoint::reached("create:reported");
        let start = match monitor.get() {
            Some((p, start)) if p == pid => start,
            _ => process::start_time(pid)
                .ok_or_else(|| ContainerError::Monitor(format!("the monitor (pid {pid}) exited right after starting")))?,
        };
        monitor.set(Some((pid, start)));
        if !process::is_alive(pid, start) {
            return Err(ContainerError::Monitor(format!(
                "the monitor (pid {pid}) exited right after reporting"
            )));
        }
        state.status = Status::Created;
        state.pid = Some(pid);
        state.pid_start_time = Some(start);
        dir.save(&state)?;
        if let (Some(socket), Some((master, slave))) = (opts.console_socket, &pty) {
            console::send_fd(socket, &console::pty_name(slave), master)?;
        }
        if let Some(path) = opts.pid_file {
            write_atomic(
                &std::path::absolute(path).map_err(ContainerError::io("pid file path"))?,
                pid.to_string().as_bytes(),
            )?;
        }
        // Recorded: only now may the monitor go on to the start gate. Had this `create` died
        // before, the monitor would have seen its socket close and exited.
        crate::crashpoint::reached("create:recorded");
        spawned.commit()?;
        Ok(state)
    }

    /// The container's state with its live status.
    pub fn state(&self, id: &str) -> Result<State, ContainerError> {
        let dir = StateDir::open(&self.root, id)?;
        let mut state = dir.load()?;
        if state.status == Status::Creating {
            // Free lock while `creating`: the `create` died (or just finished: read again).
            if let Some(_lock) = dir.try_lock()? {
                state = dir.load()?;
                state.status = live_status(&dir, &state, true);
                return Ok(state);
            }
        }
        state.status = live_status(&dir, &state, false);
        Ok(state)
    }

    /// `state` as `unik state` prints it (runc's shape, see [`oci_state_json`]).
    pub fn state_json(&self, id: &str) -> Result<serde_json::Value, ContainerError> {
        let state = self.state(id)?;
        Ok(oci_state_json(&state, state.status))
    }

    /// Lets a created container's guest run.
    pub fn start(&self, id: &str) -> Result<(), ContainerError> {
        let dir = StateDir::open(&self.root, id)?;
        let _lock = dir.lock()?;
        let mut state = dir.load()?;
        let status = live_status(&dir, &state, true);
        if !status.can_start() {
            return Err(ContainerError::NotCreated {
                id: id.to_string(),
                status: status.to_string(),
            });
        }
        // The monitor blocks opening the fifo for reading; opening it for writing releases it.
        // ENXIO means no reader yet: the monitor reports `created` just before it opens the
        // fifo, so wait for it while it lives.
        let alive = || matches!((state.pid, state.pid_start_time), (Some(p), Some(s)) if process::is_alive(p, s));
        let deadline = Instant::now() + GATE_WAIT;
        let mut fifo = loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(dir.fifo())
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && alive() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(ContainerError::NotRunning(id.to_string())),
                Err(e) => return Err(ContainerError::io(format!("opening {}", dir.fifo().display()))(e)),
            }
        };
        crate::crashpoint::reached("start:opened");
        // The transition is recorded before the monitor is released, so whatever moment this
        // `start` dies at, state agrees with the monitor: the gate's unlinking is the commit
        // point (the live status reads running from then on). Dying before it, our end of the
        // fifo closes without a byte while the fifo still exists: the monitor waits for the
        // next `start`. Dying after it, the monitor sees the fifo gone and runs the guest.
        std::fs::remove_file(dir.fifo()).map_err(ContainerError::io("removing the start fifo"))?;
        state.status = Status::Running;
        if let Err(e) = dir.save(&state) {
            // The live status comes from the gate, which is gone: the container is running.
            log::warn!("container {id}: recording the start: {e}");
        }
        crate::crashpoint::reached("start:recorded");
        // The monitor runs the guest as soon as our end closes, with or without the byte.
        let _ = fifo.write_all(&[0]);
        drop(fifo);
        let hooks = saved_hooks(&dir);
        if let (Some(pid), false) = (state.pid, hooks.poststart.is_empty()) {
            if let Err(e) = state_json(&state, pid).and_then(|json| hooks::run("poststart", &hooks.poststart, &json)) {
                log::warn!("{e}");
            }
        }
        Ok(())
    }

    /// Sends `signal` to the container's monitor (SIGTERM/SIGINT stop the guest cleanly). Signal 0
    /// sends nothing: it succeeds while the container's process exists, as runc's does.
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        let dir = StateDir::open(&self.root, id)?;
        let _lock = dir.lock()?;
        let state = dir.load()?;
        let status = live_status(&dir, &state, true);
        let (Some(pid), Some(start), true) = (state.pid, state.pid_start_time, status.can_kill()) else {
            return Err(ContainerError::NotRunning(id.to_string()));
        };
        let fd = process::pidfd(pid, start).map_err(|_| ContainerError::NotRunning(id.to_string()))?;
        process::send_signal(&fd, signal).map_err(ContainerError::io(format!("signalling container {id}")))?;
        // Signal 0 is runc's liveness probe: delivered (or not) above, nothing to wake.
        if status == Status::Paused && ![0, libc::SIGKILL, libc::SIGSTOP].contains(&signal) {
            // A stopped monitor cannot act on the signal until it runs again.
            let _ = process::send_signal(&fd, libc::SIGCONT);
            let _ = std::fs::remove_file(dir.paused_marker());
        }
        Ok(())
    }

    /// `kill --all`: every process of the container gets `signal` — there is one, the monitor.
    /// As with runc, a stopped container has none left, and that is not an error: containerd's
    /// shim sends SIGKILL to all of a container that shares its pod's pid namespace once it has
    /// exited (it forgives the failure only by matching runc's error text).
    pub fn kill_all(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        match self.kill(id, signal) {
            Err(ContainerError::NotRunning(_)) => Ok(()),
            other => other,
        }
    }

    /// Removes a stopped container, or a created one after killing its monitor (as runc does;
    /// containerd's shim deletes a task that never started without `--force`). With `force`, a
    /// running or paused container is killed first, and a container that does not exist is not
    /// an error (runc's `delete --force`, which containerd's shim runs on cleanup).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        let dir = match StateDir::open(&self.root, id) {
            Err(ContainerError::NotFound(_)) if force => {
                // What a `create` that died before saving left, if anything.
                StateDir::remove_stale(&self.root, id);
                return Ok(());
            }
            other => other?,
        };
        // A concurrent delete may remove the directory while we wait for the lock.
        let locked = dir.lock().and_then(|lock| Ok((lock, dir.load()?)));
        let (lock, state) = match locked {
            Err(ContainerError::NotFound(_)) if force => return Ok(()),
            Err(e) if force => {
                // An unreadable state.json (a disk error, tampering): --force still clears the id.
                log::warn!("container {id}: {e}; removing its state without stopping a monitor it may have");
                return dir.remove();
            }
            other => other?,
        };
        let status = live_status(&dir, &state, true);
        if !status.can_delete() && !force {
            return Err(ContainerError::NotStopped {
                id: id.to_string(),
                status: status.to_string(),
            });
        }
        // Also a monitor orphaned by a `create` that died (the container reads as stopped).
        if !kill_and_wait(state.pid, state.pid_start_time) {
            return Err(ContainerError::io(format!("container {id} did not die after SIGKILL"))(
                std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
            ));
        }
        drop(lock);
        remove_stale_splice(&dir);
        if let (Some(root), Some(plan)) = (&self.cgroup_root, Runtime::saved_cgroup(&dir)) {
            cgroups::remove(root, &plan);
        }
        let hooks = saved_hooks(&dir);
        dir.remove()?;
        if !hooks.poststop.is_empty() {
            let mut stopped = state.clone();
            stopped.status = Status::Stopped;
            if let Err(e) = state_json(&stopped, state.pid.unwrap_or(0)).and_then(|json| hooks::run("poststop", &hooks.poststop, &json)) {
                log::warn!("{e}");
            }
        }
        Ok(())
    }

    /// Stops the monitor process (and so the guest) until `resume`.
    pub fn pause(&self, id: &str) -> Result<(), ContainerError> {
        self.set_paused(id, true)
    }

    /// Continues a paused container.
    pub fn resume(&self, id: &str) -> Result<(), ContainerError> {
        self.set_paused(id, false)
    }

    fn set_paused(&self, id: &str, pause: bool) -> Result<(), ContainerError> {
        let dir = StateDir::open(&self.root, id)?;
        let _lock = dir.lock()?;
        let state = dir.load()?;
        let status = live_status(&dir, &state, true);
        let refused = || {
            if pause {
                ContainerError::NotRunning(id.to_string())
            } else {
                ContainerError::NotPaused(id.to_string())
            }
        };
        let allowed = if pause { status.can_pause() } else { status.can_resume() };
        let (Some(pid), Some(start), true) = (state.pid, state.pid_start_time, allowed) else {
            return Err(refused());
        };
        let fd = process::pidfd(pid, start).map_err(|_| refused())?;
        if pause {
            std::fs::write(dir.paused_marker(), b"").map_err(ContainerError::io("writing the pause marker"))?;
            process::send_signal(&fd, libc::SIGSTOP).map_err(ContainerError::io(format!("pausing {id}")))?;
        } else {
            process::send_signal(&fd, libc::SIGCONT).map_err(ContainerError::io(format!("resuming {id}")))?;
            std::fs::remove_file(dir.paused_marker()).map_err(ContainerError::io("removing the pause marker"))?;
        }
        // Signals arrive asynchronously: return once /proc shows the change, as runc returns
        // once the freezer reports it.
        if !wait_until(GATE_WAIT, || {
            process::is_stopped(pid, start) == pause || !process::is_alive(pid, start)
        }) {
            return Err(ContainerError::io(format!("{} {id}", if pause { "pausing" } else { "resuming" }))(
                std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
            ));
        }
        Ok(())
    }

    /// `update`: applies `resources` to the container's cgroup with the same rules as `create`
    /// (see [`cgroups::limits`]); guest memory is fixed, so a memory limit below it is refused.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ContainerError> {
        let dir = StateDir::open(&self.root, id)?;
        let _lock = dir.lock()?;
        let vm: vmm::VmConfig = dir.load_record(Record::Vm)?.ok_or_else(|| ContainerError::MissingRecord {
            id: id.to_string(),
            file: Record::Vm.file(),
        })?;
        let wired = dir.load_record::<String>(Record::Wired)?.is_some();
        let guest = Guest {
            mem_mib: vm.mem_mib,
            // The link watch's thread runs beside a guest whose card was wired.
            tasks: vm.monitor_tasks() + u32::from(wired),
        };
        let limits = Limits::from_resources(resources, guest, When::Update)?;
        let (Some(root), Some(plan)) = (&self.cgroup_root, Runtime::saved_cgroup(&dir)) else {
            return Err(ContainerError::NoCgroup(id.to_string()));
        };
        cgroups::update(root, &plan.path, &limits)?;
        Ok(())
    }

    /// Every container with its live status.
    pub fn list(&self) -> Result<Vec<State>, ContainerError> {
        list_ids(&self.root)?
            .into_iter()
            .filter_map(|id| self.state(&id).ok())
            .map(Ok)
            .collect()
    }

    /// The processes of the container: the monitor, while it lives.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>, ContainerError> {
        let state = self.state(id)?;
        Ok(match (state.status, state.pid) {
            (Status::Stopped, _) | (_, None) => Vec::new(),
            (_, Some(pid)) => vec![pid],
        })
    }
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
