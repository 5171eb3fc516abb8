//! The solo5 hvt ABI: manifest, device attachment, boot info and the hypercall handlers.
//!
//! The hypercall set is closed, so [`Hvt::handle`] is an exhaustive `match` over [`HypercallNr`]:
//! the compiler proves every call is handled. Guest errors that solo5 reports in `ret` (unknown
//! handle, out-of-capacity offset) are reported the same way; guest faults (a pointer outside RAM
//! or into read-only memory, an unregistered hypercall) and host I/O failures end the run.

pub mod abi;
mod boot_info;
mod core;
mod devices;
pub mod manifest;
mod poll;
pub mod ring;

use std::io::Write;
use std::os::fd::RawFd;

pub use abi::*;
pub use boot_info::{BOOT_INFO_GPA, BOOT_INFO_SIZE, CMDLINE_MAX, boot_info_bytes, write_boot_info};
pub use devices::{Device, Devices, attach};
pub use manifest::{Attachment, DeviceType, Entry, Manifest, ManifestError};
pub use ring::{Ring, RingError, RingThread};

use crate::exit::{Action, ExitStatus};
use crate::memory::{GuestRam, MemoryError};
use poll::PollSet;

/// Errors of device attachment, boot info and hypercalls.
#[derive(Debug, thiserror::Error)]
pub enum HvtError {
    /// A hypercall number that is reserved, out of range or not registered (no such device kind).
    #[error("Invalid guest hypercall: num={0}")]
    InvalidHypercall(u32),
    /// A guest pointer outside RAM or into read-only memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A host I/O failure while serving a hypercall (fatal, as in solo5-hvt).
    #[error("{what}: {source}")]
    HostIo {
        /// What failed.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A device option names no manifest entry of that type.
    #[error("Resource not declared in manifest: '{0}'")]
    NotDeclared(String),
    /// The same device attached twice.
    #[error("Device '{0}' is attached more than once")]
    AttachedTwice(String),
    /// A sector size that is not a power of two ≥ 512.
    #[error(transparent)]
    SectorSize(#[from] crate::config::SectorSizeError),
    /// A backing file whose size is not a multiple of the sector size.
    #[error("{name}: Backing storage size must be block aligned ({block_size} bytes)")]
    NotBlockAligned {
        /// Device name.
        name: String,
        /// Sector size.
        block_size: u16,
    },
    /// A backing file smaller than one sector.
    #[error("{name}: Backing storage must be at least 1 block ({block_size} bytes) in size")]
    TooSmall {
        /// Device name.
        name: String,
        /// Sector size.
        block_size: u16,
    },
    /// The backing file could not be opened.
    #[error("Could not open block device: {path}: {source}")]
    BlockOpen {
        /// The path.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The tap could not be attached.
    #[error("Could not attach interface: {0}")]
    NetAttach(#[from] crate::host::TapError),
    /// Manifest entries left unattached.
    #[error("{}All declared devices must be attached. See --help for syntax.", .0.iter().map(|d| format!("Device '{}' of type {} declared but not attached. ", d.0, d.1)).collect::<String>())]
    NotAttached(Vec<(String, &'static str)>),
    /// The guest command line is too long.
    #[error("Guest command line too long (max={CMDLINE_MAX} characters)")]
    CmdlineTooLong,
    /// The POLL machinery could not be set up.
    #[error("Could not set up POLL: {0}")]
    PollSetup(std::io::Error),
}

/// The hypercall handlers and the state they need.
pub struct Hvt {
    ram: GuestRam,
    devices: Devices,
    console: Box<dyn Write + Send>,
    poll: PollSet,
}

impl std::fmt::Debug for Hvt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hvt").field("devices", &self.devices).finish_non_exhaustive()
    }
}

impl Hvt {
    /// Sets up the handlers. `console` receives PUTS bytes; `stop` is an fd that becomes readable
    /// when the VM should stop, so a POLL in progress returns promptly.
    pub fn new(ram: GuestRam, devices: Devices, console: Box<dyn Write + Send>, stop: RawFd) -> Result<Hvt, HvtError> {
        let poll = PollSet::new(&devices, stop).map_err(HvtError::PollSetup)?;
        Ok(Hvt {
            ram,
            devices,
            console,
            poll,
        })
    }

    /// Serves hypercall `nr` with its argument struct at `gpa`.
    pub fn handle(&mut self, nr: u32, gpa: u64) -> Result<Action, HvtError> {
        let call = HypercallNr::try_from(nr).map_err(HvtError::InvalidHypercall)?;
        let ram = &self.ram;
        match call {
            HypercallNr::Walltime => core::walltime(ram, gpa)?,
            HypercallNr::Puts => core::puts(ram, gpa, &mut *self.console)?,
            HypercallNr::Poll => self.poll.poll(ram, gpa)?,
            HypercallNr::BlockWrite | HypercallNr::BlockRead if !self.devices.has_block() => return Err(HvtError::InvalidHypercall(nr)),
            HypercallNr::BlockWrite => devices::block_write(ram, gpa, &self.devices)?,
            HypercallNr::BlockRead => devices::block_read(ram, gpa, &self.devices)?,
            HypercallNr::NetWrite | HypercallNr::NetRead if !self.devices.has_net() => return Err(HvtError::InvalidHypercall(nr)),
            HypercallNr::NetWrite => devices::net_write(ram, gpa, &mut self.devices)?,
            HypercallNr::NetRead => devices::net_read(ram, gpa, &mut self.devices)?,
            HypercallNr::Halt => return core::halt(ram, gpa).map(|status| Action::Stop(ExitStatus::Halt(status))),
        }
        Ok(Action::Continue)
    }
}

#[cfg(test)]
mod tests;
