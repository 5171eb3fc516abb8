//! Devices of Linux-boot-protocol guests: the I/O buses the vCPUs dispatch to, the legacy
//! devices (16550 serial, i8042 reset, debug exit), the virtio-mmio transport and its block and
//! net devices, and the event loop that serves the devices' host-side file descriptors.

/// Logs a problem the guest caused: the first time at each call site as a warning, then at
/// debug level, so that a guest repeating it cannot fill the host's logs.
macro_rules! guest_warn {
    ($($arg:tt)*) => {{
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::debug!($($arg)*);
        } else {
            log::warn!($($arg)*);
        }
    }};
}

pub mod bus;
pub mod event_loop;
pub mod legacy;
pub mod rtc;
pub mod virtio;

pub use bus::{Bus, BusDevice};
