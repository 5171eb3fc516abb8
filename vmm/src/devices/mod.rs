//! Devices of Linux-boot-protocol guests: the I/O buses the vCPUs dispatch to, the legacy
//! devices (16550 serial, i8042 reset, debug exit), the virtio-mmio transport and its block and
//! net devices, and the event loop that serves the devices' host-side file descriptors.

pub mod bus;
pub mod event_loop;
pub mod legacy;
pub mod virtio;

pub use bus::{Bus, BusDevice, GuestExit};
