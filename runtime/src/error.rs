//! Errors of the runtime commands. Messages keep runc's wording where containerd's shim and docker
//! match on it ("does not exist", "container not running").

use std::path::PathBuf;

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// An id runc would refuse.
    #[error("invalid container id '{0}': use letters, digits and _ + - . (not '.' or '..')")]
    InvalidId(String),
    /// No such container.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// `start` on a container that is not `created`: runc's words, then ours.
    #[error("{}: container {id} is {status}, not created", start_refusal(status))]
    NotCreated {
        /// The container.
        id: String,
        /// Its status.
        status: String,
    },
    /// `kill` or `pause` on a container that is not running (or `start` on one whose monitor is
    /// gone).
    #[error("container {0}: container not running")]
    NotRunning(String),
    /// `resume` on a container that is not paused.
    #[error("container {0}: container not paused")]
    NotPaused(String),
    /// `delete` without `--force` on a container that is not stopped.
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped {
        /// The container.
        id: String,
        /// Its status.
        status: String,
    },
    /// The bundle is unusable.
    #[error("bundle {path}: {reason}")]
    Bundle {
        /// The bundle directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bundle is an ordinary container, not a unikernel.
    #[error("bundle {path} is not a unikernel ({reason})")]
    NotUnikernel {
        /// The bundle directory.
        path: PathBuf,
        /// Why: a Kubernetes pod's sandbox, or which check on `process.args[0]` failed
        /// (missing, not an ELF, no Solo5 marks, …).
        reason: String,
    },
    /// `process.terminal` without `--console-socket` on a detached create: the terminal would
    /// have nobody on its other end (runc refuses it in the same words).
    #[error(
        "bundle {0}: cannot allocate tty if unik will detach without setting console socket (process.terminal is true: pass --console-socket, or set it to false)"
    )]
    TerminalWithoutConsoleSocket(PathBuf),
    /// The monitor process reported an error while building the VM.
    #[error("{0}")]
    Monitor(String),
    /// `update` of a container without a cgroup.
    #[error("container {0} has no cgroup to update (its bundle sets no cgroupsPath)")]
    NoCgroup(String),
    /// A record `create` writes is missing from the state directory.
    #[error("container {id}: {file} is missing")]
    MissingRecord {
        /// The container.
        id: String,
        /// The file.
        file: &'static str,
    },
    /// The container's cgroup could not be set up, or a resource is refused.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// A hook failed or timed out.
    #[error("{phase} hook {path}: {reason}")]
    Hook {
        /// `prestart`, `createRuntime`, …
        phase: String,
        /// The hook's program.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The container's network could not be wired.
    #[error("container network: {0}")]
    Network(#[from] crate::network::NetworkError),
    /// A signal name or number that does not exist.
    #[error("unknown signal '{0}'")]
    Signal(String),
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What runc says when `start` finds a container in `status`.
fn start_refusal(status: &str) -> String {
    match status {
        "stopped" => "cannot start a container that has stopped".into(),
        "running" => "cannot start an already running container".into(),
        other => format!("cannot start a container in the {other} state"),
    }
}

impl ContainerError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::Io { what, source }
    }
}
