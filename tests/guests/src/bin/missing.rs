//! Declares devices that the tests do not attach: the monitor must refuse to boot it.
#![no_std]
#![no_main]

use unik_test_guests::{BLOCK, BootInfo, NET, entry, println, solo5_notes};

solo5_notes!("storage": BLOCK, "service0": NET);
entry!(main);

fn main(_bi: &BootInfo, _cmdline: &str) -> i32 {
    println!("missing: booted without its devices");
    1
}
