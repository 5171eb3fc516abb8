//! The smallest guest: halts with status 0 at once (the benchmark's boot-to-exit subject).
#![no_std]
#![no_main]

use unik_test_guests::{BootInfo, entry, solo5_notes};

solo5_notes!();
entry!(main);

fn main(_bi: &BootInfo, _cmdline: &str) -> i32 {
    0
}
