//! The state directory `<root>/<id>/`: the only code that touches it.
//!
//! ```text
//! <root>/<id>/lock          flock(2) held by every command that changes the container, and by
//!                           `create` from start to end
//! <root>/<id>/state.json    written only by tmp + fsync + rename (+ fsync of the directory)
//! <root>/<id>/vm.json       the resolved VmConfig the monitor boots
//! <root>/<id>/network.json  the monitor's network plan; wired.json: the interface it took over
//! <root>/<id>/hooks.json    the bundle's hooks (poststart and poststop run after create)
//! <root>/<id>/jail.json     the monitor's namespaces, user, limits
//! <root>/<id>/cgroup.json   the cgroup the monitor joined
//! <root>/<id>/exec.fifo     the start gate (mkfifo 0600); exists until `start`
//! <root>/<id>/paused        exists while the container is paused
//! <root>/<id>/jail/         the directory the monitor mounts its empty root on
//! ```
//!
//! The JSON files besides `state.json` are [`Record`]s, read and written only through
//! [`StateDir::save_record`] and [`StateDir::load_record`].
//!
//! Every file is written with [`write_atomic`], so a crash of any unik process leaves either the
//! old or the new content (a leftover `.NAME.tmp.PID` is ignored and overwritten later).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ContainerError;
use crate::id;

/// Version of the runtime specification whose state format this is.
pub const OCI_VERSION: &str = "1.2.0";

/// Container status, as the OCI runtime specification names it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is building the VM.
    Creating,
    /// Built and waiting for `start`.
    Created,
    /// The guest runs.
    Running,
    /// The monitor is stopped by `pause`.
    Paused,
    /// The monitor has exited.
    Stopped,
}

impl Status {
    /// `start` is allowed.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// `kill` is allowed.
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    /// `delete` without `--force` is allowed: when stopped, and (as runc allows, and as
    /// containerd's shim relies on to clean up a task that never started) when created, which
    /// kills the waiting monitor first.
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created)
    }

    /// `pause` is allowed.
    pub fn can_pause(self) -> bool {
        self == Status::Running
    }

    /// `resume` is allowed.
    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is persisted in `state.json`; `unik state` prints it (with the live status).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Runtime-spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Last known status (refreshed from the process on every read).
    pub status: Status,
    /// Monitor pid once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Start time of that pid (`/proc/<pid>/stat` field 22), guarding against pid reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    #[serde(default)]
    pub rootfs: PathBuf,
    /// RFC 3339 creation time (UTC).
    pub created: String,
    /// Bundle annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Owner user name ("" for root, as runc reports).
    #[serde(default)]
    pub owner: String,
}

/// RFC 3339 UTC timestamp of `t` with nanoseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = vmm::calendar::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// A held `flock` on a container's lock file; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// A JSON file of a container's state directory, other than `state.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// `vm.json`: the resolved `VmConfig` the monitor boots.
    Vm,
    /// `network.json`: the monitor's network plan.
    Network,
    /// `wired.json`: the container interface the monitor spliced.
    Wired,
    /// `hooks.json`: the bundle's hooks.
    Hooks,
    /// `jail.json`: the monitor's namespaces, user and limits.
    Jail,
    /// `cgroup.json`: the cgroup the monitor joined.
    Cgroup,
}

impl Record {
    /// The file name.
    pub fn file(self) -> &'static str {
        match self {
            Record::Vm => "vm.json",
            Record::Network => "network.json",
            Record::Wired => "wired.json",
            Record::Hooks => "hooks.json",
            Record::Jail => "jail.json",
            Record::Cgroup => "cgroup.json",
        }
    }
}

/// One container's directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    id: String,
}

impl StateDir {
    /// Creates `<root>/<id>` (fails if it exists) and takes its lock.
    pub fn create(root: &Path, id: &str) -> Result<(StateDir, LockGuard), ContainerError> {
        id::validate(id)?;
        crate::root::ensure(root)?;
        let path = root.join(id);
        let mkdir = || fs::DirBuilder::new().mode(0o700).create(&path);
        match mkdir() {
            Ok(()) => {}
            // A `create` that died before its first save leaves the id free to take again.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && StateDir::remove_stale(root, id) => {
                mkdir().map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => ContainerError::Exists(id.to_string()),
                    _ => ContainerError::io(format!("creating {}", path.display()))(e),
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(ContainerError::Exists(id.to_string())),
            Err(e) => return Err(ContainerError::io(format!("creating {}", path.display()))(e)),
        }
        let dir = StateDir { path, id: id.to_string() };
        let lock = dir.lock()?;
        Ok((dir, lock))
    }

    /// Removes `<root>/<id>` when a `create` that died before saving any state left it (its lock
    /// file but no `state.json`, and the lock free: no `create` is at work and no monitor was
    /// recorded); whether it did.
    pub fn remove_stale(root: &Path, id: &str) -> bool {
        if id::validate(id).is_err() {
            return false;
        }
        let dir = StateDir {
            path: root.join(id),
            id: id.to_string(),
        };
        // Its lock file exists (a directory without one may be a `create` between its mkdir
        // and its lock) and no state was saved.
        if !dir.path.join("lock").is_file() || dir.path.join("state.json").exists() {
            return false;
        }
        match dir.try_lock() {
            Ok(Some(_lock)) => fs::remove_dir_all(&dir.path).is_ok(),
            _ => false,
        }
    }

    /// Opens an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<StateDir, ContainerError> {
        id::validate(id).map_err(|_| ContainerError::NotFound(id.to_string()))?;
        let path = root.join(id);
        if !path.join("state.json").is_file() {
            return Err(ContainerError::NotFound(id.to_string()));
        }
        Ok(StateDir { path, id: id.to_string() })
    }

    /// The directory of the container the monitor runs, from the path `create` gave it
    /// (`<root>/<id>`).
    pub fn of_monitor(path: &Path) -> Result<StateDir, ContainerError> {
        let (Some(root), Some(id)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Err(ContainerError::io(format!("state directory {}", path.display()))(
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        };
        StateDir::open(root, id)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The start gate.
    pub fn fifo(&self) -> PathBuf {
        self.path.join("exec.fifo")
    }

    /// The (empty) directory the monitor mounts its root on, created if needed.
    pub fn empty_root(&self) -> Result<PathBuf, ContainerError> {
        let path = self.path.join("jail");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(ContainerError::io(format!("creating {}", path.display())))?;
        Ok(path)
    }

    /// Writes `record` as JSON, atomically.
    pub fn save_record<T: serde::Serialize>(&self, record: Record, value: &T) -> Result<(), ContainerError> {
        let json = serde_json::to_vec_pretty(value)
            .map_err(|e| ContainerError::io(format!("serialising {}", record.file()))(std::io::Error::other(e)))?;
        self.write_atomic(record.file(), &json)
    }

    /// Reads `record`: `None` when it was never written.
    pub fn load_record<T: serde::de::DeserializeOwned>(&self, record: Record) -> Result<Option<T>, ContainerError> {
        let json = match fs::read(self.path.join(record.file())) {
            Ok(json) => json,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ContainerError::io(format!("reading {}", record.file()))(e)),
        };
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| ContainerError::io(format!("parsing {}", record.file()))(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// The pause marker.
    pub fn paused_marker(&self) -> PathBuf {
        self.path.join("paused")
    }

    /// Takes the exclusive lock, waiting for whoever holds it.
    pub fn lock(&self) -> Result<LockGuard, ContainerError> {
        self.flock(libc::LOCK_EX)?
            .ok_or_else(|| ContainerError::io("flock")(std::io::Error::from_raw_os_error(libc::EWOULDBLOCK)))
    }

    /// Takes the exclusive lock if nobody holds it. `create` holds it from start to end, so a
    /// container still `creating` whose lock is free was left by a `create` that died.
    pub fn try_lock(&self) -> Result<Option<LockGuard>, ContainerError> {
        self.flock(libc::LOCK_EX | libc::LOCK_NB)
    }

    fn flock(&self, op: libc::c_int) -> Result<Option<LockGuard>, ContainerError> {
        let path = self.path.join("lock");
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            // The directory went away (a concurrent delete, a failed create).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ContainerError::NotFound(self.id.clone())),
            Err(e) => return Err(ContainerError::io(format!("opening {}", path.display()))(e)),
        };
        loop {
            // SAFETY: flock(2) on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Some(LockGuard { _file: file }));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(None),
                _ => return Err(ContainerError::io(format!("locking {}", path.display()))(e)),
            }
        }
    }

    /// Reads `state.json`.
    pub fn load(&self) -> Result<State, ContainerError> {
        let path = self.path.join("state.json");
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ContainerError::NotFound(self.id.clone())),
            Err(e) => return Err(ContainerError::io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&text)
            .map_err(|e| ContainerError::io(format!("parsing {}", path.display()))(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// Writes `name` atomically: a temporary file, fsync, rename over, fsync of the directory.
    fn write_atomic(&self, name: &str, data: &[u8]) -> Result<(), ContainerError> {
        write_atomic(&self.path.join(name), data)
    }

    /// Saves `state.json` atomically ([`write_atomic`]): a reader sees the old or the new state,
    /// never a mix, even if this process dies half-way.
    pub fn save(&self, state: &State) -> Result<(), ContainerError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| ContainerError::io("serialising state")(std::io::Error::other(e)))?;
        self.write_atomic("state.json", &json)
    }

    /// Removes the whole directory.
    pub fn remove(self) -> Result<(), ContainerError> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContainerError::io(format!("removing {}", self.path.display()))(e)),
        }
    }
}

/// Writes `path` atomically (tmp + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let err = |what: &str| ContainerError::io(format!("{what} {}", path.display()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err("writing"))?;
    let written = file
        .write_all(data)
        .map_err(err("writing"))
        .and_then(|()| file.sync_all().map_err(err("syncing")))
        .and_then(|()| fs::rename(&tmp, path).map_err(err("renaming into")));
    if written.is_err() {
        // Leave nothing behind (a pid file aimed at a directory, a full disk).
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What `unik state` prints, in runc's shape: `ociVersion, id, pid, status, bundle, rootfs,
/// created, owner` and `annotations` (left out when empty). `pid` is 0 once stopped, as runc
/// reports it.
pub fn oci_state_json(state: &State, live: Status) -> serde_json::Value {
    let pid = match (live, state.pid) {
        (Status::Stopped, _) | (_, None) => 0,
        (_, Some(pid)) => pid,
    };
    let mut json = serde_json::json!({
        "ociVersion": state.oci_version,
        "id": state.id,
        "pid": pid,
        "status": live,
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
    });
    if !state.annotations.is_empty() {
        json["annotations"] = serde_json::json!(state.annotations);
    }
    json
}

/// The ids of the containers under `root`.
pub fn list_ids(root: &Path) -> Result<Vec<String>, ContainerError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ContainerError::io(format!("reading {}", root.display()))(e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str) -> State {
        State {
            oci_version: OCI_VERSION.into(),
            id: id.into(),
            status: Status::Created,
            pid: Some(42),
            pid_start_time: Some(7),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339(std::time::SystemTime::now()),
            annotations: BTreeMap::new(),
            owner: String::new(),
        }
    }

    #[test]
    fn test_create_save_load_remove() {
        let root = tempfile::tempdir().unwrap();
        let (dir, _lock) = StateDir::create(root.path(), "c1").unwrap();
        assert!(matches!(StateDir::create(root.path(), "c1"), Err(ContainerError::Exists(_))));
        assert!(matches!(StateDir::open(root.path(), "c1"), Err(ContainerError::NotFound(_))));
        dir.save(&state("c1")).unwrap();
        let opened = StateDir::open(root.path(), "c1").unwrap();
        assert_eq!(
            opened.load().unwrap(),
            state("c1").clone_with_created(&opened.load().unwrap().created)
        );
        assert_eq!(list_ids(root.path()).unwrap(), ["c1"]);
        opened.remove().unwrap();
        assert!(list_ids(root.path()).unwrap().is_empty());
        let err = StateDir::open(root.path(), "c1").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    impl State {
        fn clone_with_created(mut self, created: &str) -> State {
            self.created = created.into();
            self
        }
    }

    #[test]
    fn test_failed_atomic_write_leaves_no_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a-directory");
        fs::create_dir(&target).unwrap();
        let err = write_atomic(&target, b"123").unwrap_err().to_string();
        assert!(err.contains("Is a directory"), "{err}");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["a-directory"]);
    }

    #[test]
    fn test_leftover_tmp_file_does_not_break_load() {
        let root = tempfile::tempdir().unwrap();
        let (dir, _lock) = StateDir::create(root.path(), "c").unwrap();
        dir.save(&state("c")).unwrap();
        fs::write(dir.path().join(".state.json.tmp.1"), b"{ half").unwrap();
        assert_eq!(dir.load().unwrap().id, "c");
    }

    #[test]
    fn test_status_predicates_and_json() {
        assert!(Status::Created.can_start() && !Status::Running.can_start());
        assert!(Status::Running.can_kill() && Status::Paused.can_kill() && !Status::Stopped.can_kill());
        assert!(Status::Stopped.can_delete() && Status::Created.can_delete());
        assert!(!Status::Running.can_delete() && !Status::Paused.can_delete());
        assert!(Status::Running.can_pause() && !Status::Created.can_pause() && !Status::Paused.can_pause());
        assert!(Status::Paused.can_resume() && !Status::Running.can_resume());
        for s in [Status::Creating, Status::Stopped] {
            assert!(!s.can_start() && !s.can_kill() && !s.can_pause() && !s.can_resume());
        }
        assert_eq!(serde_json::to_string(&Status::Paused).unwrap(), "\"paused\"");
        let json = serde_json::to_value(state("x")).unwrap();
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["status"], "created");
        assert_eq!(json["pid"], 42);
    }

    #[test]
    fn test_oci_state_json_has_runcs_shape() {
        let mut st = state("x");
        let json = oci_state_json(&st, Status::Running);
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["bundle", "created", "id", "ociVersion", "owner", "pid", "rootfs", "status"]);
        assert_eq!((json["pid"].as_i64(), json["status"].as_str()), (Some(42), Some("running")));
        assert_eq!(oci_state_json(&st, Status::Stopped)["pid"], 0);
        st.annotations.insert("a".into(), "b".into());
        assert_eq!(oci_state_json(&st, Status::Created)["annotations"]["a"], "b");
    }

    #[test]
    fn test_try_lock_sees_a_held_lock() {
        let root = tempfile::tempdir().unwrap();
        let (dir, lock) = StateDir::create(root.path(), "l").unwrap();
        assert!(dir.try_lock().unwrap().is_none());
        drop(lock);
        let again = dir.try_lock().unwrap();
        assert!(again.is_some());
        drop(again);
        dir.clone().remove().unwrap();
        assert!(matches!(dir.lock(), Err(ContainerError::NotFound(_))));
    }

    #[test]
    fn test_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_795_368_297, 5);
        assert_eq!(rfc3339(t), "2026-11-22T17:24:57.000000005Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }
}
