//! The device side of a virtio device: what serves its queues on the device thread.
//!
//! From DRIVER_OK to the next reset the device owns its queues ([`DeviceHandler`]): the transport
//! hands them over (and writes the activation eventfd), the device thread activates the device
//! and serves every kick and backend event, and a reset takes them back after the device thread
//! has finished what it was doing. The transport (on the vCPUs) never processes a queue: it keeps
//! the register state, and a QueueNotify that reaches it is forwarded to the device thread by
//! writing that queue's eventfd, the one KVM writes for a notify that hits the ioeventfd.
//!
//! The interrupt status, and the device's "needs a reset" and the driver's "failed" marks, are
//! atomics both sides touch without a lock ([`Shared`]), so a register access never waits for a
//! request in progress.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use super::{Mem, VirtioDevice};
use crate::devices::bus::lock;

/// Interrupt status: the used ring changed.
pub const INT_VRING: u32 = 1;
/// Interrupt status: the configuration changed (or the device needs a reset).
pub const INT_CONFIG: u32 = 2;

/// What a device's transport and its device thread share without a lock.
#[derive(Debug)]
pub struct Shared {
    interrupt_status: AtomicU32,
    irq: EventFd,
    needs_reset: AtomicBool,
    failed: AtomicBool,
}

impl Shared {
    /// State for a device whose interrupt line is `irq` (an irqfd).
    pub fn new(irq: EventFd) -> Shared {
        Shared {
            interrupt_status: AtomicU32::new(0),
            irq,
            needs_reset: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    /// Sets `bits` in the interrupt status and raises the interrupt.
    pub fn signal(&self, bits: u32) {
        self.interrupt_status.fetch_or(bits, Ordering::SeqCst);
        if let Err(e) = self.irq.write(1) {
            log::warn!("virtio: raising the interrupt failed: {e}");
        }
    }

    /// The interrupt status register.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status.load(Ordering::SeqCst)
    }

    /// The driver acknowledged `bits`.
    pub fn ack(&self, bits: u32) {
        self.interrupt_status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The device hit an error it cannot recover from: DEVICE_NEEDS_RESET, and a configuration
    /// interrupt that tells the driver.
    pub fn set_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        self.signal(INT_CONFIG);
    }

    /// Whether the device needs a reset.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// The driver set FAILED: the device stops serving its queues.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Back to the state after power-on (the device thread no longer serves the queues).
    fn clear(&self) {
        self.interrupt_status.store(0, Ordering::SeqCst);
        self.needs_reset.store(false, Ordering::SeqCst);
        self.failed.store(false, Ordering::SeqCst);
    }

    fn halted(&self) -> bool {
        self.needs_reset() || self.failed.load(Ordering::SeqCst)
    }
}

/// Where the device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not activated: no queues.
    Idle,
    /// The queues were handed over with these features; the device thread activates it next.
    Handed(u64),
    /// Activated: the device serves its queues.
    Active,
}

/// A device and, from activation to reset, its queues.
pub struct DeviceHandler {
    device: Box<dyn VirtioDevice>,
    mem: Mem,
    shared: Arc<Shared>,
    queues: Vec<Queue>,
    state: State,
}

impl std::fmt::Debug for DeviceHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandler")
            .field("device_type", &self.device.device_type())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl DeviceHandler {
    /// The handler of `device`, idle until the transport hands it its queues.
    pub fn new(device: Box<dyn VirtioDevice>, mem: Mem, shared: Arc<Shared>) -> DeviceHandler {
        DeviceHandler {
            device,
            mem,
            shared,
            queues: Vec::new(),
            state: State::Idle,
        }
    }

    /// The transport hands over the queues at DRIVER_OK; the device thread activates the device
    /// with `acked` when it sees the activation eventfd (or the first kick).
    pub(super) fn hand_over(&mut self, queues: Vec<Queue>, acked: u64) {
        self.queues = queues;
        self.state = State::Handed(acked);
    }

    /// The reset: the device stops serving and gives the queues back (empty if it never had
    /// them). The caller holds the lock, so no request is in progress.
    pub(super) fn take_back(&mut self) -> Vec<Queue> {
        self.device.reset();
        self.state = State::Idle;
        self.shared.clear();
        std::mem::take(&mut self.queues)
    }

    /// Activates the device if its queues were handed over and it is not active yet; on the
    /// device thread. True when the device serves its queues.
    pub fn activate(&mut self) -> bool {
        if let State::Handed(acked) = self.state {
            self.state = State::Active;
            if let Err(e) = self.device.activate(acked) {
                guest_warn!("virtio: activating device type {} failed: {e}", self.device.device_type());
                self.shared.set_needs_reset();
            }
        }
        self.state == State::Active && !self.shared.halted()
    }

    /// Queue `index` was kicked: serves it if the device is active.
    pub fn kick(&mut self, index: usize) {
        if index < self.queues.len() && self.activate() && self.device.process_queue(&self.mem, &mut self.queues, index) {
            self.shared.signal(INT_VRING);
        }
    }

    /// The backend fd became ready.
    pub fn backend_ready(&mut self) {
        if self.activate() && self.device.process_backend(&self.mem, &mut self.queues) {
            self.shared.signal(INT_VRING);
        }
    }

    /// The device's backend fd, for the event loop.
    pub fn backend_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.backend_fd()
    }
}

const BACKEND: u32 = u32::MAX;
const ACTIVATE: u32 = u32::MAX - 1;

/// One virtio device's events on the device thread: its queue kicks, its activation and its
/// backend.
#[derive(Debug)]
pub struct VirtioEvents {
    /// The device.
    pub handler: Arc<Mutex<DeviceHandler>>,
    /// One eventfd per queue, in queue order (the ioeventfds).
    pub kicks: Vec<EventFd>,
    /// Written by the transport when it hands the queues over.
    pub activate: EventFd,
}

impl MutEventSubscriber for VirtioEvents {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, kick) in (0u32..).zip(&self.kicks) {
            if let Err(e) = ops.add(Events::with_data(kick, i, EventSet::IN)) {
                log::warn!("event loop: watching queue {i}: {e:?}");
            }
        }
        if let Err(e) = ops.add(Events::with_data(&self.activate, ACTIVATE, EventSet::IN)) {
            log::warn!("event loop: watching the activation: {e:?}");
        }
        if let Some(fd) = lock(&self.handler).backend_fd() {
            if let Err(e) = ops.add(Events::with_data_raw(fd, BACKEND, EventSet::IN | EventSet::EDGE_TRIGGERED)) {
                log::warn!("event loop: watching the backend: {e:?}");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            BACKEND => lock(&self.handler).backend_ready(),
            ACTIVATE => {
                let _ = self.activate.read();
                lock(&self.handler).activate();
            }
            data => {
                let index = data as usize;
                let Some(kick) = self.kicks.get(index) else { return };
                // Drains the counter: one pass serves every kick so far.
                let _ = kick.read();
                lock(&self.handler).kick(index);
            }
        }
    }
}
