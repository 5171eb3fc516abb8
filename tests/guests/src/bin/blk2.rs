//! Two block devices: copies sector 0 of `disk0` to `disk1`.
#![no_std]
#![no_main]

use unik_test_guests::{BLOCK, BootInfo, block_read, block_write, device, entry, println, solo5_notes};

solo5_notes!("disk0": BLOCK, "disk1": BLOCK);
entry!(main);

fn main(bi: &BootInfo, _cmdline: &str) -> i32 {
    let (Some((h0, _)), Some((h1, _))) = (device(bi, "disk0"), device(bi, "disk1")) else {
        println!("blk2: missing device");
        return 1;
    };
    let mut buf = [0u8; 512];
    if block_read(h0, 0, &mut buf) != 0 || block_write(h1, 0, &buf) != 0 {
        println!("blk2: I/O failed");
        return 1;
    }
    println!("blk2: ok");
    0
}
