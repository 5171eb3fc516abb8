//! The virtio-mmio transport, version 2 (virtio 1.x): the register file a driver programs, the
//! device status state machine, feature negotiation and queue setup.
//!
//! Only valid transitions are taken: status bits are added in the order ACKNOWLEDGE → DRIVER →
//! FEATURES_OK → DRIVER_OK (FAILED at any time, 0 resets); features are accepted only between
//! DRIVER and FEATURES_OK and only from what was offered; queues are configured only between
//! FEATURES_OK and DRIVER_OK while not ready. Anything else is ignored (and logged), as a
//! device would, so a confused driver cannot put the transport in an impossible state.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::handler::{DeviceHandler, Shared, VirtioEvents};
pub use super::handler::{INT_CONFIG, INT_VRING};
use super::{Mem, VIRTIO_F_VERSION_1, VirtioDevice, read_config_bytes};
use crate::devices::bus::{BusDevice, lock};
use crate::exit::Action;

/// Size of one device's register window.
pub const MMIO_LEN: u64 = 0x1000;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4b49_4e55; // "UNIK"

/// Device status bits.
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is done.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up.
    pub const FAILED: u32 = 128;
}
use status::{ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK};

/// Errors of building a transport.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// The device asked for a queue size virtio-queue refuses.
    #[error("virtio queue of size {size}: {source}")]
    Queue {
        /// The size.
        size: u16,
        /// What virtio-queue said.
        source: virtio_queue::Error,
    },
    /// An eventfd could not be made.
    #[error("eventfd: {0}")]
    EventFd(#[source] std::io::Error),
}

/// Register offsets.
mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Offset of the QueueNotify register, for the ioeventfds.
pub const QUEUE_NOTIFY_OFFSET: u64 = reg::QUEUE_NOTIFY;

/// One virtio-mmio device's transport: the register file, the status state machine and, until
/// DRIVER_OK, the queues the driver sets up. The device itself sits in a [`DeviceHandler`] the
/// device thread serves; the transport locks it only to hand the queues over (DRIVER_OK) and to
/// take them back (reset).
pub struct MmioTransport {
    device_type: u32,
    /// What the device offers, `VIRTIO_F_VERSION_1` included.
    offered: u64,
    /// The configuration space, fixed for the device's life.
    config: Vec<u8>,
    max_sizes: Vec<u16>,
    handler: Arc<Mutex<DeviceHandler>>,
    shared: Arc<Shared>,
    mem: Mem,
    /// The queues while the transport has them (before DRIVER_OK, after a reset); empty while
    /// the device has them.
    queues: Vec<Queue>,
    /// Per queue: QueueReady as the driver left it, for reads while the device has the queues.
    ready: Vec<bool>,
    /// Per queue: the eventfd the device thread watches (KVM's ioeventfd for QueueNotify).
    kicks: Vec<EventFd>,
    /// Tells the device thread the queues were handed over.
    activate: EventFd,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    queue_sel: u32,
    /// Per queue: the driver's last QueueNum was refused (zero, not a power of two, or above
    /// QueueNumMax), so the queue must not run at the size virtio-queue kept.
    size_refused: Vec<bool>,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device_type)
            .field("status", &self.status)
            .field("acked_features", &self.acked_features)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    /// Wraps `device`; `irq` is its interrupt line (an irqfd).
    pub fn new(device: Box<dyn VirtioDevice>, mem: Mem, irq: EventFd) -> Result<MmioTransport, MmioError> {
        let max_sizes = device.queue_max_sizes().to_vec();
        let queues: Vec<Queue> = max_sizes
            .iter()
            .map(|&size| Queue::new(size).map_err(|source| MmioError::Queue { size, source }))
            .collect::<Result<_, _>>()?;
        let kicks = max_sizes
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(MmioError::EventFd)?;
        let activate = EventFd::new(EFD_NONBLOCK).map_err(MmioError::EventFd)?;
        let shared = Arc::new(Shared::new(irq));
        let n = queues.len();
        Ok(MmioTransport {
            device_type: device.device_type(),
            offered: device.features() | VIRTIO_F_VERSION_1,
            config: device.config(),
            max_sizes,
            handler: Arc::new(Mutex::new(DeviceHandler::new(device, mem.clone(), shared.clone()))),
            shared,
            mem,
            queues,
            ready: vec![false; n],
            kicks,
            activate,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            queue_sel: 0,
            size_refused: vec![false; n],
        })
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        let needs_reset = if self.shared.needs_reset() { DEVICE_NEEDS_RESET } else { 0 };
        self.status | needs_reset
    }

    /// The features the driver accepted.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.max_sizes.len()
    }

    /// The queues' notification eventfds, in queue order: each is to be registered as the
    /// ioeventfd of QueueNotify with its queue index as datamatch.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.kicks
    }

    /// What the device thread serves for this device.
    pub fn events(&self) -> std::io::Result<VirtioEvents> {
        Ok(VirtioEvents {
            handler: self.handler.clone(),
            kicks: self.kicks.iter().map(EventFd::try_clone).collect::<Result<_, _>>()?,
            activate: self.activate.try_clone()?,
        })
    }

    fn running(&self) -> bool {
        self.status() & (DRIVER_OK | FAILED | DEVICE_NEEDS_RESET) == DRIVER_OK
    }

    fn selected_index(&self) -> Option<usize> {
        usize::try_from(self.queue_sel).ok().filter(|&i| i < self.max_sizes.len())
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::try_from(self.queue_sel).ok()?)
    }

    /// Queue setup is allowed between FEATURES_OK and DRIVER_OK, on a queue that is not ready.
    fn selected_for_setup(&mut self) -> Option<&mut Queue> {
        if self.status & (FEATURES_OK | DRIVER_OK | FAILED) != FEATURES_OK {
            return None;
        }
        self.selected().filter(|q| !q.ready())
    }

    /// A QueueNotify write reached the transport (it missed the ioeventfd): forwarded to the
    /// device thread through the queue's eventfd, never served here.
    fn notify(&self, index: usize) {
        if !self.running() {
            return;
        }
        let Some(kick) = self.kicks.get(index) else { return };
        if let Err(e) = kick.write(1) {
            log::warn!("virtio: forwarding a notification of queue {index}: {e}");
        }
    }

    fn reset(&mut self) {
        // Waits for a request in progress on the device thread; the device serves nothing after.
        let handed = lock(&self.handler).take_back();
        if !handed.is_empty() {
            self.queues = handed;
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.ready.fill(false);
        self.status = 0;
        self.acked_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.size_refused.fill(false);
    }

    fn set_status(&mut self, new: u32) {
        if new == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if new & old != old {
            log::debug!("virtio: status {old:#x} -> {new:#x} clears bits without a reset; ignored");
            return;
        }
        if new & FAILED != 0 {
            self.status |= FAILED;
            self.shared.set_failed();
        }
        for bit in [ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK] {
            if new & bit == 0 || self.status & bit != 0 {
                continue;
            }
            let allowed = match bit {
                ACKNOWLEDGE => true,
                DRIVER => self.status & ACKNOWLEDGE != 0,
                // A modern device needs VERSION_1; without it FEATURES_OK stays clear, which
                // is how the driver learns the features were not accepted.
                FEATURES_OK => self.status & DRIVER != 0 && self.acked_features & VIRTIO_F_VERSION_1 != 0,
                _ => self.status & FEATURES_OK != 0,
            };
            if !allowed {
                log::debug!("virtio: status bit {bit:#x} out of order (status {:#x}); ignored", self.status);
                return;
            }
            if bit == DRIVER_OK && !self.activate() {
                return;
            }
            self.status |= bit;
        }
    }

    /// Checks the queues and hands them to the device; false when the device needs a reset.
    fn activate(&mut self) -> bool {
        // VIRTIO_RING_F_EVENT_IDX is not offered: notifications use the ring flags.
        for (i, (q, refused)) in self.queues.iter().zip(&self.size_refused).enumerate() {
            if q.ready() && (*refused || !q.is_valid(&self.mem)) {
                guest_warn!("virtio: queue {i} is not valid (size or ring addresses); the device needs a reset");
                self.status |= DEVICE_NEEDS_RESET;
                self.shared.signal(INT_CONFIG);
                return false;
            }
        }
        for (ready, q) in self.ready.iter_mut().zip(&self.queues) {
            *ready = q.ready();
        }
        let queues = std::mem::take(&mut self.queues);
        lock(&self.handler).hand_over(queues, self.acked_features);
        if let Err(e) = self.activate.write(1) {
            log::warn!("virtio: waking the device thread for activation: {e}");
        }
        true
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device_type,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => low(self.offered),
                1 => high(self.offered),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self
                .selected_index()
                .and_then(|i| self.max_sizes.get(i))
                .map_or(0, |&m| u32::from(m)),
            reg::QUEUE_READY => match self.selected_index() {
                Some(i) => match self.queues.get(i) {
                    Some(q) => u32::from(q.ready()),
                    None => self.ready.get(i).map_or(0, |&r| u32::from(r)),
                },
                None => 0,
            },
            reg::INTERRUPT_STATUS => self.shared.interrupt_status(),
            reg::STATUS => self.status(),
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => {
                if self.status & (DRIVER | FEATURES_OK | FAILED) != DRIVER {
                    log::debug!("virtio: features written in status {:#x}; ignored", self.status);
                    return;
                }
                let offered = self.offered;
                self.acked_features = match self.driver_features_sel {
                    0 => (self.acked_features & !0xffff_ffff) | (u64::from(v) & offered & 0xffff_ffff),
                    1 => (self.acked_features & 0xffff_ffff) | ((u64::from(v) << 32) & offered),
                    _ => self.acked_features,
                };
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                let sel = usize::try_from(self.queue_sel).unwrap_or(usize::MAX);
                if let Some(q) = self.selected_for_setup() {
                    // virtio-queue keeps its previous size when `v` is zero, not a power of two
                    // or above the maximum; remember the refusal, so DRIVER_OK sets
                    // DEVICE_NEEDS_RESET instead of running the queue at a size the driver did
                    // not choose (its rings would be read and written past their end).
                    let size = u16::try_from(v).unwrap_or(0);
                    q.set_size(size);
                    let refused = q.size() != size;
                    if let Some(flag) = self.size_refused.get_mut(sel) {
                        *flag = refused;
                    }
                }
            }
            reg::QUEUE_READY => {
                let setup = self.status & (FEATURES_OK | DRIVER_OK) == FEATURES_OK;
                if let Some(q) = self.selected().filter(|_| setup) {
                    q.set_ready(v == 1);
                }
            }
            reg::QUEUE_NOTIFY => self.notify(usize::try_from(v).unwrap_or(usize::MAX)),
            reg::INTERRUPT_ACK => self.shared.ack(v),
            reg::STATUS => self.set_status(v),
            reg::QUEUE_DESC_LOW..=reg::QUEUE_DEVICE_HIGH => {
                let Some(q) = self.selected_for_setup() else { return };
                match offset {
                    reg::QUEUE_DESC_LOW => q.set_desc_table_address(Some(v), None),
                    reg::QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(v)),
                    reg::QUEUE_DRIVER_LOW => q.set_avail_ring_address(Some(v), None),
                    reg::QUEUE_DRIVER_HIGH => q.set_avail_ring_address(None, Some(v)),
                    reg::QUEUE_DEVICE_LOW => q.set_used_ring_address(Some(v), None),
                    reg::QUEUE_DEVICE_HIGH => q.set_used_ring_address(None, Some(v)),
                    _ => {}
                }
            }
            _ => log::debug!("virtio: write of {v:#x} to read-only or unknown register {offset:#x}; ignored"),
        }
    }
}

fn low(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn high(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            read_config_bytes(&self.config, offset - reg::CONFIG, data);
            return;
        }
        data.fill(0);
        // Registers are 32-bit wide and 32-bit aligned; anything else reads as zero.
        if data.len() == 4 && offset % 4 == 0 {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        if offset >= reg::CONFIG {
            log::debug!("virtio: configuration space is read-only; write at {offset:#x} ignored");
            return Action::Continue;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(bytes) if offset % 4 == 0 => self.write_reg(offset, u32::from_le_bytes(bytes)),
            _ => log::debug!("virtio: {}-byte write at {offset:#x} ignored", data.len()),
        }
        Action::Continue
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
