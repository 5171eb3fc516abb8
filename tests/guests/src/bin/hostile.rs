//! The raw attacks of `unik_test_guests::hostile` with a block device `storage` attached, so
//! BLOCK_READ and BLOCK_WRITE are registered. Ends with `hostile: done` and status 0.
#![no_std]
#![no_main]

use unik_test_guests::{BLOCK, BootInfo, entry, println, solo5_notes};

solo5_notes!("storage": BLOCK);
entry!(main);

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    println!("hostile: {}", cmdline);
    unik_test_guests::hostile::run(bi, cmdline);
    println!("hostile: done");
    0
}
