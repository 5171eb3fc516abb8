//! The crate error: every module's error, rolled up.

use std::path::PathBuf;

use crate::hvt::{HvtError, ManifestError, RingError};
use crate::loader::LoaderError;
use crate::memory::MemoryError;
use crate::vcpu::VcpuError;

/// Why a VM could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file could not be read.
    #[error("Could not read kernel {path}: {source}")]
    Kernel {
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The kernel is not a valid hvt executable.
    #[error("{path}: {source}")]
    Loader {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        source: LoaderError,
    },
    /// The kernel's manifest is invalid.
    #[error("Solo5 manifest is invalid: {0}")]
    Manifest(#[from] ManifestError),
    /// Device attachment, boot info or a hypercall failed.
    #[error(transparent)]
    Hvt(#[from] HvtError),
    /// The hvt net ring failed: the guest broke it, or a tap failed.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Guest memory setup failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// `/dev/kvm` could not be used.
    #[error("Could not open /dev/kvm: {0} (is KVM available and accessible?)")]
    KvmOpen(kvm_ioctls::Error),
    /// KVM speaks another API version.
    #[error("KVM API version {0} is not supported (need 12)")]
    KvmApiVersion(i32),
    /// A KVM ioctl failed during setup.
    #[error("KVM: {what} failed: {source}")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// The ioctl error.
        source: kvm_ioctls::Error,
    },
    /// Architecture setup of the vCPU failed.
    #[error(transparent)]
    Arch(#[from] arch::ArchError),
    /// The run ended in a fault.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The request does not fit this kind of guest or this host.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A Linux-boot-protocol guest could not be built.
    #[error(transparent)]
    Linux(#[from] crate::linux::error::LinuxError),
    /// Signal handling could not be set up.
    #[error("Could not set up signal handling: {0}")]
    Signals(std::io::Error),
    /// The gdb stub could not listen or connect.
    #[error(transparent)]
    Gdb(#[from] crate::debug::gdb::GdbError),
    /// The core directory could not be opened.
    #[error(transparent)]
    Core(#[from] crate::debug::coredump::CoreError),
    /// A seccomp filter could not be built or installed.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// Privileges could not be dropped.
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    /// A thread of the running VM could not be started.
    #[error("Could not start {what}: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}
