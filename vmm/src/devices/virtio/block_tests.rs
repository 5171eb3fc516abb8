//! virtio-blk requests through virtio-queue's mock split queue: every request type, and
//! malformed chains answered with an error or returned empty, never a panic or an access
//! outside guest memory.

use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

const MEM: usize = 0x40_0000;
const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

struct Rig {
    mem: GuestMemoryMmap,
    block: Block,
    _file: tempfile::NamedTempFile,
}

fn rig(sectors: u64, read_only: bool) -> Rig {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut data = vec![0u8; usize::try_from(sectors * SECTOR).unwrap()];
    for (i, b) in data.iter_mut().enumerate() {
        *b = u8::try_from(i / 512 % 251).unwrap();
    }
    std::fs::write(file.path(), &data).unwrap();
    let disk = Disk::open_with(file.path(), read_only).unwrap();
    Rig {
        mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap(),
        block: Block::new(disk, read_only, 512, "disk-id-0123456789abcdef"),
        _file: file,
    }
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

impl Rig {
    /// Submits one chain (descriptors linked in order) and returns (used len, status byte).
    fn submit(&mut self, descs: &[RawDescriptor]) -> (u32, u8) {
        let vq = MockSplitQueue::new(&self.mem, 16);
        let linked: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = SplitDescriptor::from(*d);
                let last = i + 1 == descs.len();
                let flags = if last { d.flags() & !NEXT } else { d.flags() | NEXT };
                RawDescriptor::from(SplitDescriptor::new(d.addr().0, d.len(), flags, u16::try_from(i + 1).unwrap()))
            })
            .collect();
        vq.add_desc_chains(&linked, 0).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        assert!(self.block.process_queue(&self.mem, std::slice::from_mut(&mut queue), 0));
        assert_eq!(vq.used().idx().load(), 1, "the chain was returned");
        let used = vq.used().ring().ref_at(0).unwrap().load();
        assert_eq!(used.id(), 0);
        (used.len(), self.mem.read_obj(GuestAddress(STATUS)).unwrap())
    }

    fn header(&self, type_: u32, sector: u64) {
        self.mem
            .write_obj(
                RequestHeader {
                    type_,
                    reserved: 0,
                    sector,
                },
                GuestAddress(HDR),
            )
            .unwrap();
    }

    fn rw(&mut self, type_: u32, sector: u64, len: u32) -> (u32, u8) {
        self.header(type_, sector);
        let flags = if type_ == req::IN { WRITE } else { 0 };
        self.submit(&[desc(HDR, 16, 0), desc(DATA, len, flags), desc(STATUS, 1, WRITE)])
    }
}

#[test]
fn test_read_write_flush_get_id() {
    let mut r = rig(16, false);
    assert_eq!(r.rw(req::IN, 2, 1024), (1025, status::OK));
    let mut buf = vec![0u8; 1024];
    r.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
    assert!(buf[..512].iter().all(|b| *b == 2) && buf[512..].iter().all(|b| *b == 3));

    r.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(r.rw(req::OUT, 15, 512), (1, status::OK));
    assert_eq!(r.rw(req::IN, 15, 512), (513, status::OK));
    r.mem.read_slice(&mut buf[..512], GuestAddress(DATA)).unwrap();
    assert!(buf[..512].iter().all(|b| *b == 0x5a));

    r.header(req::FLUSH, 0);
    assert_eq!(r.submit(&[desc(HDR, 16, 0), desc(STATUS, 1, WRITE)]), (1, status::OK));

    r.header(req::GET_ID, 0);
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 20, WRITE), desc(STATUS, 1, WRITE)]),
        (21, status::OK)
    );
    let mut id = [0u8; 20];
    r.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"disk-id-0123456789ab");

    r.header(99, 0);
    assert_eq!(r.submit(&[desc(HDR, 16, 0), desc(STATUS, 1, WRITE)]), (1, status::UNSUPP));
}

#[test]
fn test_out_of_range_and_read_only_requests_fail() {
    let mut r = rig(16, true);
    // Past the end, straddling the end, a sector number whose byte offset overflows.
    assert_eq!(r.rw(req::IN, 16, 512).1, status::IOERR);
    assert_eq!(r.rw(req::IN, 15, 1024).1, status::IOERR);
    assert_eq!(r.rw(req::IN, u64::MAX / 256, 512).1, status::IOERR);
    // Not a whole number of sectors.
    assert_eq!(r.rw(req::IN, 0, 100).1, status::IOERR);
    // Writes to a read-only device.
    assert_eq!(r.rw(req::OUT, 0, 512), (1, status::IOERR));
    assert_eq!(r.block.features() & F_RO, F_RO);
}

#[test]
fn test_malformed_chains_are_answered_or_returned_empty() {
    let mut r = rig(16, false);
    // Header only: no status byte to answer in.
    r.header(req::IN, 0);
    assert_eq!(r.submit(&[desc(HDR, 16, 0)]), (0, 0xee));
    // Status descriptor not device-writable.
    assert_eq!(r.submit(&[desc(HDR, 16, 0), desc(DATA, 512, WRITE), desc(STATUS, 1, 0)]), (0, 0xee));
    // Header too short, or device-writable.
    assert_eq!(
        r.submit(&[desc(HDR, 8, 0), desc(DATA, 512, WRITE), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    assert_eq!(
        r.submit(&[desc(HDR, 16, WRITE), desc(DATA, 512, WRITE), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    // A read into a device-readable buffer, a write from a device-writable one.
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 512, 0), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    r.header(req::OUT, 0);
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 512, WRITE), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    // Data outside guest memory: IOERR, nothing read or written out of bounds.
    r.header(req::IN, 0);
    let outside = u64::try_from(MEM).unwrap() - 256;
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(outside, 512, WRITE), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    // Header outside guest memory.
    assert_eq!(
        r.submit(&[desc(u64::MAX - 8, 16, 0), desc(DATA, 512, WRITE), desc(STATUS, 1, WRITE)])
            .1,
        status::IOERR
    );
    // Status byte outside guest memory: returned empty.
    let (len, _) = r.submit(&[desc(HDR, 16, 0), desc(DATA, 512, WRITE), desc(u64::MAX, 1, WRITE)]);
    assert_eq!(len, 0);
    // GET_ID without a writable buffer.
    r.header(req::GET_ID, 0);
    assert_eq!(r.submit(&[desc(HDR, 16, 0), desc(STATUS, 1, WRITE)]).1, status::IOERR);
}

#[test]
fn test_config_space() {
    let r = rig(16, false);
    let mut cap = [0u8; 8];
    read_config(&r.block, 0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 16);
    let mut bs = [0u8; 4];
    read_config(&r.block, 20, &mut bs);
    assert_eq!(u32::from_le_bytes(bs), 512);
    // Past the end reads as zero.
    let mut far = [0xffu8; 4];
    read_config(&r.block, 4096, &mut far);
    assert_eq!(far, [0; 4]);
    assert_eq!(r.block.features() & (F_FLUSH | F_RO | F_DISCARD), F_FLUSH | F_DISCARD);
    let mut seg = [0u8; 4];
    read_config(&r.block, 40, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), MAX_DISCARD_SEG);
    // The virtio 1.2 layout, offsets as the spec gives them: max_discard_sectors @36,
    // discard_sector_alignment @44; the whole struct is 96 bytes.
    read_config(&r.block, 36, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), MAX_DISCARD_SECTORS);
    let rig4k = Block::new(Disk::open_with(r._file.path(), false).unwrap(), false, 4096, "x");
    read_config(&rig4k, 44, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), 8, "discard alignment in 512-byte sectors");
    read_config(&rig4k, 20, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), 4096);
    assert_eq!(r.block.config().len(), 96);
}

#[test]
fn test_discard_punches_holes_and_checks_ranges() {
    let mut r = rig(16, false);
    let segment = |sector: u64, sectors: u32| [sector.to_le_bytes().as_slice(), &sectors.to_le_bytes(), &0u32.to_le_bytes()].concat();
    r.header(req::DISCARD, 0);
    r.mem
        .write_slice(&[segment(2, 2), segment(8, 1)].concat(), GuestAddress(DATA))
        .unwrap();
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 32, 0), desc(STATUS, 1, WRITE)]),
        (1, status::OK)
    );
    let data = std::fs::read(r._file.path()).unwrap();
    assert_eq!(data.len(), 16 * 512, "the file keeps its size");
    assert!(data[2 * 512..4 * 512].iter().all(|b| *b == 0) && data[8 * 512..9 * 512].iter().all(|b| *b == 0));
    assert!(
        data[4 * 512..5 * 512].iter().all(|b| *b == 4),
        "sectors between the ranges are kept"
    );
    // Past the end, not a whole segment, a writable segment buffer.
    r.mem.write_slice(&segment(15, 2), GuestAddress(DATA)).unwrap();
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 16, 0), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 12, 0), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    assert_eq!(
        r.submit(&[desc(HDR, 16, 0), desc(DATA, 16, WRITE), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
    // Read-only devices refuse it.
    let mut ro = rig(16, true);
    ro.header(req::DISCARD, 0);
    ro.mem.write_slice(&segment(0, 1), GuestAddress(DATA)).unwrap();
    assert_eq!(
        ro.submit(&[desc(HDR, 16, 0), desc(DATA, 16, 0), desc(STATUS, 1, WRITE)]).1,
        status::IOERR
    );
}

/// Runs `process_queue` on a queue `setup` breaks, on a thread; it must come back (with nothing
/// used) instead of going round forever.
fn returns_on_a_broken_ring(setup: impl FnOnce(&GuestMemoryMmap, &MockSplitQueue<'_, GuestMemoryMmap>) -> Queue + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = rig(16, false);
        let vq = MockSplitQueue::new(&r.mem, 16);
        let mut queue = setup(&r.mem, &vq);
        let _ = tx.send(r.block.process_queue(&r.mem, std::slice::from_mut(&mut queue), 0));
    });
    // A liveness guard (a spinning process_queue fails instead of hanging), not a speed check.
    let used = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("process_queue did not return on a broken avail ring");
    assert!(!used);
}

#[test]
fn test_avail_index_more_than_a_queue_ahead_does_not_spin() {
    returns_on_a_broken_ring(|_, vq| {
        let q: Queue = vq.create_queue().unwrap();
        vq.avail().idx().store(1000);
        q
    });
}

#[test]
fn test_avail_ring_at_address_zero_does_not_spin() {
    returns_on_a_broken_ring(|mem, vq| {
        let mut q: Queue = vq.create_queue().unwrap();
        q.set_avail_ring_address(Some(0), Some(0));
        // avail.idx = 1: one request announced, none that can be read.
        mem.write_obj(1u16, GuestAddress(2)).unwrap();
        q
    });
}

/// Reads the device's configuration space at `offset` as the transport does.
fn read_config(device: &dyn VirtioDevice, offset: u64, data: &mut [u8]) {
    super::super::read_config_bytes(&device.config(), offset, data);
}
