//! Why a container's cgroup could not be set up or changed. Every message about a resource
//! names its `linux.resources` field, and a file when one is involved.

use std::path::PathBuf;

/// A cgroup failure.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A field unik deliberately does not apply to a unikernel's monitor.
    #[error("linux.resources.{field}: {reason}")]
    Refused {
        /// The field, e.g. `blockIO.weight`.
        field: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The host has no file for a field (its controller is not mounted or not enabled).
    #[error("linux.resources.{field}: this host cannot apply it: no {file} in cgroup {cgroup} under {root}")]
    NotApplicable {
        /// The field.
        field: String,
        /// The cgroup file that would hold it.
        file: String,
        /// The container's cgroup, relative to the hierarchies.
        cgroup: PathBuf,
        /// Where the hierarchies are mounted.
        root: PathBuf,
    },
    /// Writing a field's file failed (the kernel refused the value, …).
    #[error("linux.resources.{field}: writing '{value}' to {}", path.display())]
    Write {
        /// The field.
        field: String,
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A field set without `linux.cgroupsPath`: there is no cgroup to apply it in.
    #[error("linux.resources.{0} is set but linux.cgroupsPath is not: there is no cgroup to apply it in")]
    NoCgroup(String),
    /// A pids limit below the tasks the monitor runs.
    #[error(
        "linux.resources.pids.limit: {limit} leaves no room for the monitor's {tasks} tasks \
         (KVM's worker for the VM, and one thread for an hvt guest or, for a Linux-boot guest, one per vCPU and a device thread): \
         ask for at least {tasks}"
    )]
    PidsBelowTasks {
        /// The limit asked for.
        limit: i64,
        /// The tasks this guest's monitor runs.
        tasks: u32,
    },
    /// An `update` memory limit below the (fixed) memory of the running guest.
    #[error(
        "linux.resources.memory.limit: {limit} bytes is below the {mem_mib} MiB of guest memory \
         (a running guest's memory cannot shrink; the cgroup gets the limit plus {overhead} bytes for the monitor)"
    )]
    MemoryBelowGuest {
        /// The limit asked for.
        limit: u64,
        /// The guest's memory.
        mem_mib: u64,
        /// The monitor's headroom added to every limit.
        overhead: u64,
    },
    /// A cgroup directory could not be created.
    #[error("creating cgroup {}", .0.display())]
    Create(PathBuf, #[source] std::io::Error),
    /// A controller could not be enabled for the level below (cgroup v2).
    #[error("enabling the {controller} controller in {}", path.display())]
    Enable {
        /// `memory`, `cpu`, …
        controller: String,
        /// The `cgroup.subtree_control` file.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The monitor could not be moved into its cgroup.
    #[error("joining {}", .0.display())]
    Join(PathBuf, #[source] std::io::Error),
}
