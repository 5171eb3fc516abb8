//! virtio-blk and virtio-net descriptor chains: guest memory filled from the input holds the
//! descriptor table, the avail ring and the data buffers of a split queue at a fixed layout; the
//! device is then notified (and, for net, frames arrive from the network) as the transport
//! would after DRIVER_OK. Requests must be answered or dropped, never panic, never reach
//! outside guest memory.
//!
//! Input: configuration byte (bit 0: net, else block; bit 1: read-only block), queue size
//! (`1 << (b % 9)`), number of frames the network sends (`b % 4`) and their length (`u16 % 2048`),
//! then guest memory from address 0: the descriptor table (16 bytes per entry), the avail ring
//! right after it, the used ring (4-byte aligned) after that, then data. virtio-net's TX queue
//! uses the same layout at 0x800.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unik_fuzz::Input;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::devices::virtio::VirtioDevice;
use vmm::devices::virtio::block::Block;
use vmm::devices::virtio::net::Net;

const RAM: usize = 0x1_0000;

/// A ready queue of `size` whose rings start at `base`, or `None` if the transport would refuse
/// it at DRIVER_OK.
fn queue(mem: &GuestMemoryMmap, max: u16, size: u16, base: u64) -> Option<Queue> {
    let mut q = Queue::new(max).ok()?;
    let avail = base + 16 * u64::from(size);
    let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
    q.set_size(size);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some(avail as u32), Some(0));
    q.set_used_ring_address(Some(used as u32), Some(0));
    q.set_ready(true);
    q.is_valid(mem).then_some(q)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let config = input.u8();
    let size = 1u16 << (input.u8() % 9);
    let frames = input.u8() % 4;
    let frame_len = usize::from(input.u16() % 2048);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest memory");
    let fill = input.rest();
    mem.write_slice(&fill[..fill.len().min(RAM)], GuestAddress(0)).expect("fill");
    if config & 1 == 0 {
        let read_only = config & 2 != 0;
        let disk = unik_fuzz::disk("queue-disk", 8192, read_only);
        let mut block = Block::new(disk, read_only, 512, "fuzz");
        let Some(q) = queue(&mem, block.queue_max_sizes()[0], size, 0) else {
            return;
        };
        let mut queues = [q];
        block.activate(0).expect("activate");
        block.process_queue(&mem, &mut queues, 0);
        // A second kick with nothing new must not replay or fault.
        block.process_queue(&mem, &mut queues, 0);
    } else {
        let (tap, network) = unik_fuzz::tap(1500);
        let mut net = Net::new(tap, [2, 0, 0, 0, 0, 1]);
        let max = net.queue_max_sizes()[0];
        let (Some(rx), Some(tx)) = (queue(&mem, max, size, 0), queue(&mem, max, size, 0x800)) else {
            return;
        };
        let mut queues = [rx, tx];
        net.activate(0).expect("activate");
        let frame: Vec<u8> = (0..frame_len).map(|i| i as u8).collect();
        for _ in 0..frames {
            let _ = network.send(&frame);
        }
        net.process_backend(&mem, &mut queues);
        net.process_queue(&mem, &mut queues, 1);
        net.process_queue(&mem, &mut queues, 0);
        let mut buf = [0u8; 4096];
        while network.recv(&mut buf).is_ok() {}
    }
});
