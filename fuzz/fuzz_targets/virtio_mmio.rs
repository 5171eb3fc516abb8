//! The virtio-mmio transport driven by fuzzed register sequences, in front of a virtio-blk
//! (scratch file, read-write or read-only) or a virtio-net device (a socket standing in for a
//! tap), over fuzzed guest memory: status transitions, feature negotiation, queue setup, config
//! reads of any width, and kicks (served as the device thread serves them) that make the device walk whatever descriptor tables and rings
//! the input wrote.
//!
//! Input: one configuration byte, then operations until the input ends (`op % 8`):
//! 0: write `value: u32` to register `offset: u16`; 1: read `width: u8` bytes at `offset`;
//! 2: write `width: u8` arbitrary bytes at `offset`; 3: write `len: u8` bytes of memory at
//! `gpa: u16`; 4: write a `u64` at `gpa: u16`; 5: kick queue `q: u8`; 6: the network sends a
//! frame of `len: u8` bytes and the backend is ready; 7: a well-behaved driver's setup with
//! fuzzed features and queue sizes/addresses, ending in DRIVER_OK.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unik_fuzz::Input;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm::devices::BusDevice;
use vmm::devices::virtio::VirtioDevice;
use vmm::devices::virtio::block::Block;
use vmm::devices::virtio::mmio::{MMIO_LEN, MmioTransport};
use vmm::devices::virtio::net::Net;
use vmm_sys_util::eventfd::EventFd;

const RAM: usize = 0x1_0000;

fn w(t: &mut MmioTransport, offset: u64, v: u32) {
    let _ = t.write(offset, &v.to_le_bytes());
}

/// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK, every queue, DRIVER_OK.
fn driver_setup(t: &mut MmioTransport, input: &mut Input) {
    w(t, 0x70, 0);
    w(t, 0x70, 1);
    w(t, 0x70, 3);
    for sel in 0..2 {
        w(t, 0x24, sel);
        w(t, 0x20, input.u32());
    }
    w(t, 0x70, 0xb);
    for q in 0..u32::try_from(t.queue_count()).unwrap_or(0) {
        w(t, 0x30, q);
        w(t, 0x38, u32::from(input.u16()));
        for reg in [0x80, 0x90, 0xa0] {
            w(t, reg, u32::from(input.u16()));
        }
        w(t, 0x44, 1);
    }
    w(t, 0x70, 0xf);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let config = input.u8();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest memory");
    let (tap, network) = unik_fuzz::tap(1500);
    let device: Box<dyn VirtioDevice> = if config & 1 == 0 {
        let disk = unik_fuzz::disk("mmio-disk", 8192, config & 2 != 0);
        Box::new(Block::new(disk, config & 2 != 0, 512, "fuzz"))
    } else {
        Box::new(Net::new(tap, [2, 0, 0, 0, 0, 1]))
    };
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
    let mut t = MmioTransport::new(device, mem.clone(), irq).expect("transport");
    // What the device thread serves: kicks and backend readiness go to the handler, as there.
    let events = t.events().expect("device events");
    let handler = || events.handler.lock().expect("the device handler's lock");
    let mut scratch = [0u8; 2048];
    while let Some(op) = input.op() {
        match op % 8 {
            0 => {
                let offset = u64::from(input.u16()) % MMIO_LEN;
                w(&mut t, offset, input.u32());
            }
            1 => {
                let offset = u64::from(input.u16()) % MMIO_LEN;
                let width = usize::from(input.u8() % 9);
                t.read(offset, &mut scratch[..width]);
            }
            2 => {
                let offset = u64::from(input.u16()) % MMIO_LEN;
                let width = usize::from(input.u8() % 9);
                let _ = t.write(offset, input.bytes(width));
            }
            3 => {
                let gpa = u64::from(input.u16());
                let len = usize::from(input.u8());
                let _ = vm_memory::Bytes::write_slice(&mem, input.bytes(len), GuestAddress(gpa));
            }
            4 => {
                let gpa = u64::from(input.u16());
                let _ = vm_memory::Bytes::write_obj(&mem, input.u64(), GuestAddress(gpa));
            }
            5 => handler().kick(usize::from(input.u8())),
            6 => {
                let len = usize::from(input.u8());
                let _ = network.send(input.bytes(len));
                handler().backend_ready();
            }
            _ => driver_setup(&mut t, &mut input),
        }
    }
    // Drain what TX sent, as a peer would.
    while network.recv(&mut scratch).is_ok() {}
});
