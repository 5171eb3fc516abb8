//! The virtio-mmio register file and status state machine, driven as a guest driver would (and
//! as a confused one might), with a fake device.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::event_loop::EventLoop;
use crate::seccomp::{Filters, SeccompMode, ThreadKind};

#[derive(Default)]
struct Seen {
    activated: Option<u64>,
    kicks: Vec<usize>,
    resets: usize,
    /// What happened, in order.
    log: Vec<&'static str>,
}

struct Fake {
    seen: Arc<Mutex<Seen>>,
    /// Told the serving thread's name when a queue is being served.
    serving: Option<SyncSender<String>>,
    /// When set, serving a queue waits for a message here (a request stuck in I/O).
    gate: Option<Receiver<()>>,
}

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[8, 8]
    }
    fn features(&self) -> u64 {
        0b101
    }
    fn config(&self) -> Vec<u8> {
        vec![1, 2, 3, 4]
    }
    fn activate(&mut self, acked: u64) -> Result<(), String> {
        self.seen.lock().unwrap().activated = Some(acked);
        Ok(())
    }
    fn reset(&mut self) {
        let mut seen = self.seen.lock().unwrap();
        seen.resets += 1;
        seen.log.push("reset");
    }
    fn process_queue(&mut self, _mem: &Mem, _queues: &mut [Queue], index: usize) -> bool {
        self.seen.lock().unwrap().log.push("serving");
        if let Some(serving) = &self.serving {
            let _ = serving.send(std::thread::current().name().unwrap_or("").to_string());
        }
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        let mut seen = self.seen.lock().unwrap();
        seen.kicks.push(index);
        seen.log.push("served");
        true
    }
}

fn transport_with(fake: impl FnOnce(Arc<Mutex<Seen>>) -> Fake) -> (MmioTransport, VirtioEvents, Arc<Mutex<Seen>>, EventFd) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(Box::new(fake(seen.clone())), mem, irq.try_clone().unwrap()).unwrap();
    let events = t.events().unwrap();
    (t, events, seen, irq)
}

fn transport() -> (MmioTransport, VirtioEvents, Arc<Mutex<Seen>>, EventFd) {
    transport_with(|seen| Fake {
        seen,
        serving: None,
        gate: None,
    })
}

/// Does what the device thread does with the events so far: the activation, then the kicks.
fn serve(events: &VirtioEvents) {
    if events.activate.read().is_ok() {
        lock(&events.handler).activate();
    }
    for (i, kick) in events.kicks.iter().enumerate() {
        if kick.read().is_ok() {
            lock(&events.handler).kick(i);
        }
    }
}

/// Runs the device thread (without a seccomp filter) over `events`.
fn device_thread(events: VirtioEvents) -> EventLoop {
    let mut event_loop = EventLoop::new(vec![events], None).unwrap();
    event_loop
        .start(&Filters::new(SeccompMode::Off, &[ThreadKind::Devices]).unwrap())
        .unwrap();
    event_loop
}

fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn w(t: &mut MmioTransport, offset: u64, v: u32) {
    assert_eq!(t.write(offset, &v.to_le_bytes()), Action::Continue);
}

/// ACKNOWLEDGE, DRIVER, features (VERSION_1 + bit 0), FEATURES_OK.
fn negotiate(t: &mut MmioTransport) {
    w(t, reg::STATUS, ACKNOWLEDGE);
    w(t, reg::STATUS, ACKNOWLEDGE | DRIVER);
    w(t, reg::DRIVER_FEATURES_SEL, 0);
    w(t, reg::DRIVER_FEATURES, 0b1);
    w(t, reg::DRIVER_FEATURES_SEL, 1);
    w(t, reg::DRIVER_FEATURES, 1);
    w(t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
}

fn setup_queue(t: &mut MmioTransport, index: u32) {
    let base = 0x1_0000 * (index + 1);
    w(t, reg::QUEUE_SEL, index);
    w(t, reg::QUEUE_NUM, 8);
    w(t, reg::QUEUE_DESC_LOW, base);
    w(t, reg::QUEUE_DRIVER_LOW, base + 0x1000);
    w(t, reg::QUEUE_DEVICE_LOW, base + 0x2000);
    w(t, reg::QUEUE_READY, 1);
}

#[test]
fn test_identification_and_features() {
    let (mut t, _, _, _) = transport();
    assert_eq!(r(&mut t, reg::MAGIC), 0x7472_6976);
    assert_eq!(r(&mut t, reg::VERSION), 2);
    assert_eq!(r(&mut t, reg::DEVICE_ID), 2);
    assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 0b101);
    w(&mut t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 1, "VERSION_1");
    w(&mut t, reg::DEVICE_FEATURES_SEL, 7);
    assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 0);
    w(&mut t, reg::QUEUE_SEL, 1);
    assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), 8);
    w(&mut t, reg::QUEUE_SEL, 2);
    assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), 0, "no such queue");
    let mut cfg = [0u8; 2];
    t.read(reg::CONFIG + 2, &mut cfg);
    assert_eq!(cfg, [3, 4]);
    // Odd widths and offsets read as zero; writes to them and to config space are ignored.
    let mut one = [0xffu8; 1];
    t.read(reg::MAGIC, &mut one);
    assert_eq!(one, [0]);
    t.read(reg::MAGIC + 2, &mut [0u8; 4]);
    assert_eq!(t.write(reg::STATUS, &[1]), Action::Continue);
    assert_eq!(t.write(reg::CONFIG, &[9; 4]), Action::Continue);
    assert_eq!(t.status(), 0);
}

#[test]
fn test_full_negotiation_activates_the_device() {
    let (mut t, ev, seen, irq) = transport();
    negotiate(&mut t);
    assert_eq!(r(&mut t, reg::STATUS), ACKNOWLEDGE | DRIVER | FEATURES_OK);
    // Only offered features stick.
    assert_eq!(t.acked_features(), VIRTIO_F_VERSION_1 | 1);
    setup_queue(&mut t, 0);
    setup_queue(&mut t, 1);
    w(&mut t, reg::QUEUE_SEL, 0);
    assert_eq!(r(&mut t, reg::QUEUE_READY), 1);
    // Kicks before DRIVER_OK are ignored.
    w(&mut t, reg::QUEUE_NOTIFY, 0);
    serve(&ev);
    assert!(seen.lock().unwrap().kicks.is_empty());
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    // The device is activated on the device thread, with the queues handed over.
    assert_eq!(seen.lock().unwrap().activated, None);
    serve(&ev);
    assert_eq!(seen.lock().unwrap().activated, Some(VIRTIO_F_VERSION_1 | 1));
    // The transport keeps answering for the queues the device now has.
    w(&mut t, reg::QUEUE_SEL, 1);
    assert_eq!((r(&mut t, reg::QUEUE_READY), r(&mut t, reg::QUEUE_NUM_MAX)), (1, 8));
    w(&mut t, reg::QUEUE_NOTIFY, 1);
    w(&mut t, reg::QUEUE_NOTIFY, 9);
    // The transport only forwards the notification to the device thread.
    assert!(seen.lock().unwrap().kicks.is_empty());
    serve(&ev);
    assert_eq!(seen.lock().unwrap().kicks, vec![1], "out-of-range queue index ignored");
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), INT_VRING);
    w(&mut t, reg::INTERRUPT_ACK, INT_VRING);
    assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), 0);
    // Features and queues are frozen once running.
    w(&mut t, reg::DRIVER_FEATURES, 0);
    assert_eq!(t.acked_features(), VIRTIO_F_VERSION_1 | 1);
    w(&mut t, reg::QUEUE_NUM, 4);
    // Reset.
    w(&mut t, reg::STATUS, 0);
    assert_eq!((t.status(), t.acked_features(), seen.lock().unwrap().resets), (0, 0, 1));
    assert_eq!(r(&mut t, reg::QUEUE_READY), 0);
}

#[test]
fn test_out_of_order_status_and_late_features_are_refused() {
    let (mut t, _, seen, _) = transport();
    // DRIVER before ACKNOWLEDGE, FEATURES_OK before DRIVER, DRIVER_OK first: all ignored.
    w(&mut t, reg::STATUS, DRIVER);
    assert_eq!(t.status(), 0);
    w(&mut t, reg::STATUS, ACKNOWLEDGE);
    w(&mut t, reg::STATUS, ACKNOWLEDGE | FEATURES_OK);
    assert_eq!(t.status(), ACKNOWLEDGE);
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER_OK);
    assert_eq!(t.status(), ACKNOWLEDGE);
    // Features before DRIVER are ignored.
    w(&mut t, reg::DRIVER_FEATURES, 1);
    assert_eq!(t.acked_features(), 0);
    // Without VERSION_1, FEATURES_OK does not stick (a legacy driver learns it is refused).
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER);
    w(&mut t, reg::DRIVER_FEATURES, 1);
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(t.status() & FEATURES_OK, 0);
    // Clearing a bit without a reset is ignored.
    w(&mut t, reg::STATUS, ACKNOWLEDGE);
    assert_eq!(t.status(), ACKNOWLEDGE | DRIVER);
    // Queue setup before FEATURES_OK is ignored.
    w(&mut t, reg::QUEUE_READY, 1);
    assert_eq!(r(&mut t, reg::QUEUE_READY), 0);
    // FAILED is taken at any time and stops everything.
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FAILED);
    assert_ne!(t.status() & FAILED, 0);
    assert!(seen.lock().unwrap().activated.is_none());
}

#[test]
fn test_invalid_queue_needs_reset() {
    let (mut t, ev, seen, irq) = transport();
    negotiate(&mut t);
    w(&mut t, reg::QUEUE_SEL, 0);
    // A size that is not a power of two is not taken; rings outside guest memory are invalid.
    w(&mut t, reg::QUEUE_NUM, 3);
    w(&mut t, reg::QUEUE_DESC_LOW, 0);
    w(&mut t, reg::QUEUE_DESC_HIGH, 0x10);
    w(&mut t, reg::QUEUE_READY, 1);
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(t.status() & (DRIVER_OK | DEVICE_NEEDS_RESET), DEVICE_NEEDS_RESET);
    assert!(seen.lock().unwrap().activated.is_none());
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
    w(&mut t, reg::QUEUE_NOTIFY, 0);
    serve(&ev);
    assert!(seen.lock().unwrap().kicks.is_empty());
}

#[test]
fn test_a_queue_size_that_is_not_a_power_of_two_or_zero_needs_reset() {
    // Valid rings, only the size is wrong: the device must not run the queue at a size the
    // driver did not choose (virtio-queue keeps its previous one when it refuses a size).
    for bad in [3, 0, 16] {
        let (mut t, _, seen, irq) = transport();
        negotiate(&mut t);
        setup_queue(&mut t, 0);
        w(&mut t, reg::QUEUE_READY, 0);
        w(&mut t, reg::QUEUE_NUM, bad);
        w(&mut t, reg::QUEUE_READY, 1);
        w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(t.status() & (DRIVER_OK | DEVICE_NEEDS_RESET), DEVICE_NEEDS_RESET, "size {bad}");
        assert!(seen.lock().unwrap().activated.is_none(), "size {bad}");
        assert_eq!(irq.read().unwrap(), 1);
        // After a reset, a valid size is taken again.
        w(&mut t, reg::STATUS, 0);
        negotiate(&mut t);
        setup_queue(&mut t, 0);
        w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(t.status() & (DRIVER_OK | DEVICE_NEEDS_RESET), DRIVER_OK, "size {bad}, then 8");
    }
}

/// A transport whose device is active and served by a running device thread.
struct Running {
    t: MmioTransport,
    /// The device thread (stopped and joined when dropped).
    devices: EventLoop,
    seen: Arc<Mutex<Seen>>,
    irq: EventFd,
    /// The name of the thread serving a queue, when it starts to.
    serving: Receiver<String>,
    /// Lets a request waiting at the gate finish.
    gate: SyncSender<()>,
}

/// A running device whose `process_queue` reports the serving thread's name, then waits at the
/// gate if `gated`.
fn running_device(gated: bool) -> Running {
    let (serving_tx, serving) = sync_channel(8);
    let (gate, gate_rx) = sync_channel(8);
    let (mut t, ev, seen, irq) = transport_with(|seen| Fake {
        seen,
        serving: Some(serving_tx),
        gate: gated.then_some(gate_rx),
    });
    let devices = device_thread(ev);
    negotiate(&mut t);
    setup_queue(&mut t, 0);
    setup_queue(&mut t, 1);
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(t.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    Running {
        t,
        devices,
        seen,
        irq,
        serving,
        gate,
    }
}

#[test]
fn test_a_notify_that_reaches_the_transport_is_served_by_the_device_thread() {
    let Running {
        mut t,
        devices: _devices,
        seen,
        irq,
        serving,
        ..
    } = running_device(false);
    // The write a vCPU makes when the notification missed the ioeventfd.
    w(&mut t, reg::QUEUE_NOTIFY, 1);
    let thread = serving.recv().unwrap();
    assert_eq!(thread, "unik-devices", "served on the device thread");
    assert_ne!(std::thread::current().name(), Some("unik-devices"));
    // The device thread raised the interrupt and set the status the vCPU reads.
    let mut fds = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&irq),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: polling one valid fd, described by a local array.
    assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) }, 1);
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), INT_VRING);
    assert_eq!(seen.lock().unwrap().kicks, vec![1]);
    assert_eq!(seen.lock().unwrap().activated, Some(VIRTIO_F_VERSION_1 | 1));
}

#[test]
fn test_a_register_access_does_not_wait_for_queue_io() {
    let Running {
        t,
        devices,
        seen,
        serving,
        gate,
        ..
    } = running_device(true);
    let t = Arc::new(Mutex::new(t));
    w(&mut lock(&t), reg::QUEUE_NOTIFY, 0);
    // The device thread is now inside process_queue, waiting at the gate (a disk that does not
    // answer).
    assert_eq!(serving.recv().unwrap(), "unik-devices");
    // A vCPU (another thread) reads and writes registers meanwhile: status, interrupt status,
    // configuration space, queue registers, another notification.
    let (done_tx, done_rx) = sync_channel(1);
    let vcpu_t = t.clone();
    let vcpu = std::thread::spawn(move || {
        let mut t = lock(&vcpu_t);
        let status = r(&mut t, reg::STATUS);
        let interrupt = r(&mut t, reg::INTERRUPT_STATUS);
        let mut cfg = [0u8; 4];
        t.read(reg::CONFIG, &mut cfg);
        w(&mut t, reg::QUEUE_SEL, 0);
        let ready = r(&mut t, reg::QUEUE_READY);
        w(&mut t, reg::INTERRUPT_ACK, INT_VRING);
        w(&mut t, reg::QUEUE_NOTIFY, 1);
        done_tx.send((status, interrupt, cfg, ready)).unwrap();
    });
    // A deadlock guard, not a speed check: the accesses need no more than the register state.
    let done = done_rx.recv_timeout(std::time::Duration::from_secs(60));
    let (status, interrupt, cfg, ready) = done.expect("a register access waited for the device's queue I/O");
    assert_eq!(status, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!((interrupt, cfg, ready), (0, [1, 2, 3, 4], 1));
    // The accesses finished while the first request was still in progress.
    assert_eq!(seen.lock().unwrap().log, vec!["serving"]);
    vcpu.join().unwrap();
    // Released, the device thread finishes queue 0 and then serves the forwarded notify of 1.
    gate.send(()).unwrap();
    assert_eq!(serving.recv().unwrap(), "unik-devices");
    gate.send(()).unwrap();
    drop(devices);
    assert_eq!(seen.lock().unwrap().kicks, vec![0, 1]);
}

#[test]
fn test_a_reset_takes_the_queues_back_after_the_request_in_progress() {
    let Running {
        t,
        devices,
        seen,
        serving,
        gate,
        ..
    } = running_device(true);
    let t = Arc::new(Mutex::new(t));
    w(&mut lock(&t), reg::QUEUE_NOTIFY, 0);
    assert_eq!(serving.recv().unwrap(), "unik-devices");
    let vcpu_t = t.clone();
    let vcpu = std::thread::spawn(move || w(&mut lock(&vcpu_t), reg::STATUS, 0));
    // Give the reset time to reach the device (a lower bound: the order below holds however
    // long the request takes).
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(seen.lock().unwrap().log, vec!["serving"], "the reset waits for the request");
    gate.send(()).unwrap();
    vcpu.join().unwrap();
    assert_eq!(seen.lock().unwrap().log, vec!["serving", "served", "reset"]);
    // The queues are the transport's again: set up anew, they are served after DRIVER_OK.
    let mut t = lock(&t);
    assert_eq!((t.status(), r(&mut t, reg::QUEUE_READY)), (0, 0));
    w(&mut t, reg::QUEUE_NOTIFY, 0);
    negotiate(&mut t);
    setup_queue(&mut t, 0);
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    w(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(serving.recv().unwrap(), "unik-devices");
    gate.send(()).unwrap();
    drop(t);
    drop(devices);
    assert_eq!(seen.lock().unwrap().kicks, vec![0, 0]);
    assert_eq!(seen.lock().unwrap().activated, Some(VIRTIO_F_VERSION_1 | 1));
}
