//! Why a Linux-boot-protocol guest could not be built.

use std::path::PathBuf;

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
    /// The kernel is not one this architecture boots, or its `Image` header is wrong, or it does
    /// not fit in guest memory (aarch64).
    #[error("{path}: {reason}")]
    Image {
        /// The kernel.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The multiboot kernel's header or image is wrong, or it does not fit.
    #[error("{path}: multiboot kernel: {reason}")]
    #[cfg(target_arch = "x86_64")]
    Multiboot {
        /// The kernel.
        path: PathBuf,
        /// What is wrong.
        reason: super::multiboot::MultibootError,
    },
    /// The multiboot information could not be written.
    #[cfg(target_arch = "x86_64")]
    #[error("multiboot information: {0}")]
    MultibootInfo(super::multiboot::MultibootError),
    /// The initrd could not be read or does not fit.
    #[error("initrd {path}: {source}")]
    Initrd {
        /// The initrd.
        path: PathBuf,
        /// What went wrong.
        source: InitrdError,
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
    /// A debugging option this guest kind does not take (as asked).
    #[error("{0}")]
    Debug(&'static str),
    /// More devices than interrupt lines.
    #[error("too many virtio devices: {count} (at most {max})")]
    TooManyDevices {
        /// Devices asked for.
        count: usize,
        /// Interrupt lines for them.
        max: usize,
    },
    /// A device backend could not be opened.
    #[error("{kind} device '{name}': {source}")]
    Device {
        /// "block", "net" or "virtio".
        kind: &'static str,
        /// The configured name.
        name: String,
        /// What went wrong.
        source: DeviceError,
    },
    /// Two devices claim one range (a bug in the layout).
    #[error("device layout: {0}")]
    Layout(#[from] crate::devices::bus::Overlap),
    /// Guest memory could not be allocated.
    #[error("could not allocate {size} bytes of guest memory: {source}")]
    Memory {
        /// Requested bytes.
        size: u64,
        /// vm-memory's reason.
        source: vm_memory::mmap::FromRangesError,
    },
    /// A boot structure could not be written into guest memory.
    #[error("writing the {what} into guest memory: {source}")]
    BootData {
        /// Which structure.
        what: &'static str,
        /// vm-memory's reason.
        source: vm_memory::GuestMemoryError,
    },
    /// The ACPI tables could not be written.
    #[cfg(target_arch = "x86_64")]
    #[error(transparent)]
    Acpi(#[from] crate::acpi::AcpiError),
    /// The device tree could not be built, or is larger than the boot protocol allows.
    #[error("device tree: {0}")]
    Fdt(#[from] super::fdt::FdtError),
    /// A host resource (eventfd, thread) failed.
    #[error("{what}: {source}")]
    Host {
        /// What was attempted.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why the initrd could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// It could not be opened or read, is not a regular file, or is larger than the room.
    #[error(transparent)]
    Read(std::io::Error),
    /// It does not fit between the kernel and the end of low memory.
    #[error("{0} bytes do not fit in guest memory above the kernel")]
    TooBig(u64),
    /// Copying it into guest memory failed.
    #[error(transparent)]
    Write(vm_memory::GuestMemoryError),
}

/// What is wrong with one device of a Linux-boot guest.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The disk image could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A disk image whose size is not a whole number of 512-byte sectors.
    #[error("{path}: size {size} is not a multiple of 512")]
    Size {
        /// The image.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A sector size outside the rule.
    #[error(transparent)]
    SectorSize(#[from] crate::config::SectorSizeError),
    /// The tap could not be opened.
    #[error(transparent)]
    Tap(#[from] crate::host::tap::TapError),
    /// The virtio-mmio transport refused the device.
    #[error(transparent)]
    Transport(#[from] crate::devices::virtio::mmio::MmioError),
}
