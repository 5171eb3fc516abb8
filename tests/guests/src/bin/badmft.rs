//! A valid ABI note with a manifest of an unknown version.
#![no_std]
#![no_main]

use unik_test_guests::{AbiNote, BootInfo, MftEntry, MftNote, RESERVED, entry, println};

#[used]
#[unsafe(link_section = ".note.solo5.abi")]
static ABI_NOTE: AbiNote = AbiNote::new(1, 2);

#[used]
#[unsafe(link_section = ".note.solo5.manifest")]
static MFT_NOTE: MftNote<1> = {
    let mut n = MftNote::new([MftEntry::new("", RESERVED)]);
    n.version = 2;
    n
};

entry!(main);

fn main(_bi: &BootInfo, _cmdline: &str) -> i32 {
    println!("badmft: booted with a bad manifest");
    1
}
