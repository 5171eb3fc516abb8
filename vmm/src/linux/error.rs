//! Why a Linux-boot-protocol guest could not be built.

use std::path::PathBuf;

use crate::acpi;

/// Why a Linux-boot-protocol guest could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// linux-loader refused the kernel.
    #[error("{path}: not a kernel unik can boot (bzImage, ELF vmlinux, PVH ELF or multiboot): {source}")]
    Load {
        /// The kernel.
        path: PathBuf,
        /// linux-loader's reason.
        source: linux_loader::loader::Error,
    },
    /// The multiboot kernel's header or image is wrong, or it does not fit.
    #[error("{path}: multiboot kernel: {reason}")]
    Multiboot {
        /// The kernel.
        path: PathBuf,
        /// What is wrong.
        reason: super::multiboot::MultibootError,
    },
    /// The multiboot information could not be written.
    #[error("multiboot information: {0}")]
    MultibootInfo(super::multiboot::MultibootError),
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
