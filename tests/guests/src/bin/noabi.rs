//! A manifest but no ABI note: its ABI PT_NOTE holds a Solo5 note of another type.
#![no_std]
#![no_main]

use unik_test_guests::{AbiNote, BootInfo, entry, println, solo5_manifest};

#[used]
#[unsafe(link_section = ".note.solo5.abi")]
static NOT_ABI_NOTE: AbiNote = AbiNote {
    ntype: 0x1234_5678,
    ..AbiNote::new(1, 2)
};

solo5_manifest!();
entry!(main);

fn main(_bi: &BootInfo, _cmdline: &str) -> i32 {
    println!("noabi: booted without an ABI note");
    1
}
