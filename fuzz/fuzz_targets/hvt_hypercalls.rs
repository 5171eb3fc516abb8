//! Every hvt hypercall handler over fuzzed guest memory: `Hvt::handle(nr, gpa)` with fuzzed
//! numbers and argument addresses, on a small `GuestRam` whose contents the input writes
//! between calls, with a block device (a scratch file), a network device (a socket standing in
//! for a tap, fed frames by the input) and optionally a host read-only range. Errors (a guest
//! fault) are fine; a panic or an access outside guest memory is not.
//!
//! Input: one configuration byte, then operations until the input ends:
//! `op % 6` = 0: hypercall `nr: u8` at `gpa: u16`; 1: hypercall `nr: u8` at `gpa: u64`;
//! 2: write `len: u8` bytes at `gpa: u16`; 3: write a `u64` at `gpa: u16`;
//! 4: the network sends a frame of `len: u8` bytes; 5: drain what the guest sent.
#![no_main]

use std::os::fd::AsRawFd;

use libfuzzer_sys::fuzz_target;
use unik_fuzz::Input;
use vmm::hvt::{Device, Devices, Hvt};
use vmm::memory::GuestRam;
use vmm::{Action, ExitStatus};
use vmm_sys_util::eventfd::EventFd;

/// Guest memory: the fuzzer reaches every byte with a u16 address.
const RAM: u64 = 0x1_0000;
/// Backing file of the block device.
const DISK: u64 = 8192;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let config = input.u8();
    let mut ram = GuestRam::new(RAM).expect("guest memory");
    if config & 4 != 0 {
        // Kernel text: the handlers must refuse to write there.
        ram.protect_read_only(0x1000, 0x1000).expect("protect");
    }
    // Handle 0 is the reserved manifest entry; the devices follow in an order the input picks.
    let mut slots: Vec<Option<Device>> = vec![None];
    let block_size = if config & 8 != 0 { 4096 } else { 512 };
    let (tap, network) = unik_fuzz::tap(if config & 16 != 0 { 9000 } else { 1500 });
    let block = (config & 1 != 0).then(|| Device::Block(unik_fuzz::disk("hvt-disk", DISK, false), block_size));
    let net = (config & 2 != 0).then_some(Device::Net(tap));
    if config & 32 != 0 {
        slots.extend([net, block]);
    } else {
        slots.extend([block, net]);
    }
    // Readable from the start, so POLL never waits for its (fuzzed) timeout.
    let stop = EventFd::new(0).expect("eventfd");
    stop.write(1).expect("eventfd write");
    let mut hvt = Hvt::new(ram.clone(), Devices::from_slots(slots), Box::new(std::io::sink()), stop.as_raw_fd()).expect("Hvt::new");
    let mut buf = [0u8; 70_000];
    while let Some(op) = input.op() {
        match op % 6 {
            0 | 1 => {
                let nr = u32::from(input.u8());
                let gpa = if op % 6 == 0 { u64::from(input.u16()) } else { input.u64() };
                match hvt.handle(nr, gpa) {
                    Ok(Action::Continue) | Err(_) => {}
                    Ok(Action::Stop(ExitStatus::Halt(_))) => assert_eq!(nr, 8, "only HALT halts"),
                    Ok(Action::Stop(other)) => panic!("a hypercall stopped the guest with {other:?}"),
                }
            }
            2 => {
                let gpa = u64::from(input.u16());
                let len = usize::from(input.u8());
                let _ = ram.write_slice(gpa, input.bytes(len));
            }
            3 => {
                let gpa = u64::from(input.u16());
                let _ = ram.write_obj(gpa, input.u64());
            }
            4 => {
                let len = usize::from(input.u8());
                let _ = network.send(input.bytes(len));
            }
            _ => while network.recv(&mut buf).is_ok() {},
        }
    }
});
