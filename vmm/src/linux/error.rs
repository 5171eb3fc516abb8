//! Why a Linux-boot-protocol guest could not be built.

use std::path::PathBuf;

use crate::acpi;

/// Why a Linux-boot-protocol guest could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// linux-loader refused the kernel.
    #[error("{path}: not a kernel unik can boot (bzImage, ELF vmlinux or PVH ELF): {source}")]
    Load {
        /// The kernel.
        path: PathBuf,
        /// linux-loader's reason.
        source: linux_loader::loader::Error,
    },
    /// The initrd could not be read or does not fit.
    #[error("initrd {path}: {reason}")]
    Initrd {
        /// The initrd.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The command line with the device announcements is too long.
    #[error("kernel command line too long: {len} characters (max {max})")]
    Cmdline {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A vCPU count outside 1..=[`crate::config::MAX_VCPUS`].
    #[error("{0} vCPUs: a Linux-boot guest has from 1 to {max} (--cpus)", max = crate::config::MAX_VCPUS)]
    Vcpus(u8),
    /// More devices than interrupt lines.
    #[error("too many virtio devices: {count} (at most {max})")]
    TooManyDevices {
        /// Devices asked for.
        count: usize,
        /// Interrupt lines for them.
        max: usize,
    },
    /// A device backend could not be opened.
    #[error("{kind} device '{name}': {reason}")]
    Device {
        /// "block" or "net".
        kind: &'static str,
        /// The configured name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Guest memory could not be allocated.
    #[error("could not allocate {size} bytes of guest memory: {reason}")]
    Memory {
        /// Requested bytes.
        size: u64,
        /// vm-memory's reason.
        reason: String,
    },
    /// The ACPI tables could not be written.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// A host resource (eventfd, thread) failed.
    #[error("{what}: {source}")]
    Host {
        /// What was attempted.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
