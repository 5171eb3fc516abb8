//! virtio-net RX and TX through virtio-queue's mock split queue, with a datagram socket pair
//! standing in for a plain (no vnet header) tap.

use std::os::unix::net::UnixDatagram;

use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

const MEM: usize = 0x40_0000;
const BUF: u64 = 0x10_0000;
const WRITE: u16 = 2;
const NEXT: u16 = 1;

fn setup() -> (GuestMemoryMmap, Net, UnixDatagram) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let tap = Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(a)), 1500);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    (mem, Net::new(tap, [2, 0, 0, 0, 0, 7]), b)
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

#[test]
fn test_rx_adds_the_header_and_waits_for_buffers() {
    let (mem, mut net, peer) = setup();
    let rxq = MockSplitQueue::new(&mem, 16);
    let txq = MockSplitQueue::create(&mem, GuestAddress(0x8000), 16);
    let mut queues: Vec<Queue> = vec![rxq.create_queue().unwrap(), txq.create_queue().unwrap()];
    let frame: Vec<u8> = (0..60u8).collect();
    peer.send(&frame).unwrap();
    // No buffer posted: the frame is held, nothing is used.
    assert!(!net.process_backend(&mem, &mut queues));
    // The guest posts a buffer in two pieces; the RX kick delivers the held frame.
    rxq.add_desc_chains(&[desc(BUF, 10, WRITE | NEXT, 1), desc(BUF + 0x1000, 2048, WRITE, 0)], 0)
        .unwrap();
    assert!(net.process_queue(&mem, &mut queues, 0));
    let used = rxq.used().ring().ref_at(0).unwrap().load();
    assert_eq!((used.id(), used.len()), (0, 72));
    let mut hdr = [0u8; 10];
    mem.read_slice(&mut hdr, GuestAddress(BUF)).unwrap();
    assert_eq!(hdr, [0; 10], "no offload, no GSO");
    let mut rest = vec![0u8; 62];
    mem.read_slice(&mut rest, GuestAddress(BUF + 0x1000)).unwrap();
    assert_eq!(&rest[..2], &1u16.to_le_bytes(), "num_buffers = 1");
    assert_eq!(&rest[2..], &frame[..]);
}

#[test]
fn test_rx_never_truncates_and_refuses_readable_buffers() {
    let (mem, mut net, peer) = setup();
    let rxq = MockSplitQueue::new(&mem, 16);
    let mut queues: Vec<Queue> = vec![rxq.create_queue().unwrap(), rxq.create_queue().unwrap()];
    peer.send(&[0xab; 1000]).unwrap();
    peer.send(&[0xcd; 100]).unwrap();
    // Too small for the first frame, then device-readable: both returned empty, frames dropped.
    rxq.add_desc_chains(&[desc(BUF, 500, WRITE, 0), desc(BUF + 0x1000, 2048, 0, 0)], 0)
        .unwrap();
    assert!(net.process_backend(&mem, &mut queues));
    for i in 0..2 {
        assert_eq!(rxq.used().ring().ref_at(i).unwrap().load().len(), 0);
    }
}

#[test]
fn test_tx_strips_the_header_and_drops_malformed_chains() {
    let (mem, mut net, peer) = setup();
    let txq = MockSplitQueue::new(&mem, 16);
    let mut queues: Vec<Queue> = vec![txq.create_queue().unwrap(), txq.create_queue().unwrap()];
    mem.write_slice(&[0u8; 12], GuestAddress(BUF)).unwrap();
    mem.write_slice(&[0x11; 64], GuestAddress(BUF + 0x100)).unwrap();
    txq.add_desc_chains(
        &[
            // A good frame: header and data in two descriptors.
            desc(BUF, 12, NEXT, 1),
            desc(BUF + 0x100, 64, 0, 0),
            // Header only: nothing to send.
            desc(BUF, 12, 0, 0),
            // A device-writable descriptor in a TX chain.
            desc(BUF + 0x100, 64, WRITE, 0),
            // Outside guest memory.
            desc(u64::try_from(MEM).unwrap() - 8, 64, 0, 0),
        ],
        0,
    )
    .unwrap();
    assert!(net.process_queue(&mem, &mut queues, 1));
    assert_eq!(txq.used().idx().load(), 4);
    let mut buf = [0u8; 2048];
    assert_eq!(peer.recv(&mut buf).unwrap(), 64);
    assert_eq!(&buf[..64], &[0x11; 64]);
    assert!(peer.recv(&mut buf).is_err(), "only the good frame went out");
}

#[test]
fn test_config_and_features() {
    let (_mem, net, _peer) = setup();
    let mut cfg = [0u8; 12];
    read_config(&net, 0, &mut cfg);
    assert_eq!(&cfg[..6], &[2, 0, 0, 0, 0, 7]);
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 1, "max_virtqueue_pairs");
    assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), 1500);
    // The virtio 1.2 struct: speed and duplex (not offered) follow, 24 bytes in all.
    assert_eq!(net.config().len(), 24);
    // A plain tap offers no offloads.
    assert_eq!(net.features(), feature::MAC | feature::MTU);
}

/// Reads the device's configuration space at `offset` as the transport does.
fn read_config(device: &dyn VirtioDevice, offset: u64, data: &mut [u8]) {
    super::super::read_config_bytes(&device.config(), offset, data);
}
