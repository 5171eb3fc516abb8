//! The raw attacks of `unik_test_guests::hostile` with a net device `service0` attached, so
//! NET_READ and NET_WRITE are registered. Ends with `hostile: done` and status 0.
#![no_std]
#![no_main]

use unik_test_guests::{BootInfo, NET, entry, println, solo5_notes};

solo5_notes!("service0": NET);
entry!(main);

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    println!("hostile: {}", cmdline);
    unik_test_guests::hostile::run(bi, cmdline);
    println!("hostile: done");
    0
}
