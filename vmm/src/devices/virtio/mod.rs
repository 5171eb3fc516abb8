//! virtio 1.x devices over the MMIO transport.
//!
//! The transport ([`mmio::MmioTransport`]) owns the register file, the status state machine,
//! feature negotiation and, until DRIVER_OK, the queues; then it hands them to the device's
//! [`handler::DeviceHandler`], which the device thread serves (queue kicks, backend events) until
//! a reset takes them back. A device ([`VirtioDevice`]) says what it offers and serves the queues
//! it is handed.

pub mod block;
pub mod handler;
pub mod mmio;
pub mod net;

use std::os::fd::RawFd;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// `VIRTIO_F_VERSION_1`: the modern interface, the only one offered.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Device ID of a network card.
pub const TYPE_NET: u32 = 1;
/// Device ID of a block device.
pub const TYPE_BLOCK: u32 = 2;

/// A virtio-mmio window: for the DSDT (x86_64) or the device tree (aarch64).
#[derive(Debug, Clone, Copy)]
pub struct MmioDevice {
    /// Base address.
    pub base: u64,
    /// Window length.
    pub len: u64,
    /// Interrupt line (a GSI on x86_64, an SPI number on aarch64).
    pub irq: u32,
}

/// Guest memory as the devices see it.
pub type Mem = GuestMemoryMmap;

/// A virtio device behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID.
    fn device_type(&self) -> u32;
    /// Maximum size of each of its queues (their number is the slice length).
    fn queue_max_sizes(&self) -> &[u16];
    /// The features it offers (the transport adds `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// Its configuration space (fixed for the device's life: the transport keeps a copy, so
    /// reading it never waits for the device).
    fn config(&self) -> Vec<u8>;
    /// The driver accepted `acked` and set DRIVER_OK: configure the backend accordingly (on the
    /// device thread).
    fn activate(&mut self, acked: u64) -> Result<(), String>;
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// Serves queue `index` after a kick; true when the guest should be interrupted.
    fn process_queue(&mut self, mem: &Mem, queues: &mut [Queue], index: usize) -> bool;
    /// A host file descriptor the event loop should watch (edge-triggered) for this device.
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }
    /// The backend fd became ready; true when the guest should be interrupted.
    fn process_backend(&mut self, _mem: &Mem, _queues: &mut [Queue]) -> bool {
        false
    }
}

/// Reads `data.len()` bytes of `config` at `offset`, zero past its end.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else { return };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
