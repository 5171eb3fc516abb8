//! The virtio-mmio register file and status state machine, driven as a guest driver would (and
//! as a confused one might), with a fake device.

use std::sync::{Arc, Mutex};

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;

#[derive(Default)]
struct Seen {
    activated: Option<u64>,
    kicks: Vec<usize>,
    resets: usize,
}

struct Fake(Arc<Mutex<Seen>>);

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
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::super::read_config_bytes(&[1, 2, 3, 4], offset, data);
    }
    fn activate(&mut self, acked: u64) -> Result<(), String> {
        self.0.lock().unwrap().activated = Some(acked);
        Ok(())
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
    fn process_queue(&mut self, _mem: &Mem, _queues: &mut [Queue], index: usize) -> bool {
        self.0.lock().unwrap().kicks.push(index);
        true
    }
}

fn transport() -> (MmioTransport, Arc<Mutex<Seen>>, EventFd) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(Box::new(Fake(seen.clone())), mem, irq.try_clone().unwrap()).unwrap();
    (t, seen, irq)
}

fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn w(t: &mut MmioTransport, offset: u64, v: u32) {
    assert_eq!(t.write(offset, &v.to_le_bytes()), None);
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
    let (mut t, _, _) = transport();
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
    assert_eq!(t.write(reg::STATUS, &[1]), None);
    assert_eq!(t.write(reg::CONFIG, &[9; 4]), None);
    assert_eq!(t.status(), 0);
}

#[test]
fn test_full_negotiation_activates_the_device() {
    let (mut t, seen, irq) = transport();
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
    assert!(seen.lock().unwrap().kicks.is_empty());
    w(&mut t, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(seen.lock().unwrap().activated, Some(VIRTIO_F_VERSION_1 | 1));
    w(&mut t, reg::QUEUE_NOTIFY, 1);
    w(&mut t, reg::QUEUE_NOTIFY, 9);
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
    let (mut t, seen, _) = transport();
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
    let (mut t, seen, irq) = transport();
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
    assert!(seen.lock().unwrap().kicks.is_empty());
}

#[test]
fn test_a_queue_size_that_is_not_a_power_of_two_or_zero_needs_reset() {
    // Valid rings, only the size is wrong: the device must not run the queue at a size the
    // driver did not choose (virtio-queue keeps its previous one when it refuses a size).
    for bad in [3, 0, 16] {
        let (mut t, seen, irq) = transport();
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
