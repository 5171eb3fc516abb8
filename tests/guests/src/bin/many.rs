//! 64 manifest entries: the reserved one and 63 block devices d1..d63, all of which must arrive
//! attached.
#![no_std]
#![no_main]

use unik_test_guests::{AbiNote, BLOCK, BootInfo, MftEntry, MftNote, RESERVED, entry, manifest, println};

#[used]
#[unsafe(link_section = ".note.solo5.abi")]
static ABI_NOTE: AbiNote = AbiNote::new(1, 2);

const fn entries() -> [MftEntry; 64] {
    let mut e = [MftEntry::new("", RESERVED); 64];
    let mut i = 1;
    while i < 64 {
        e[i] = MftEntry::new("", BLOCK);
        e[i].name[0] = b'd';
        if i < 10 {
            e[i].name[1] = b'0' + i as u8;
        } else {
            e[i].name[1] = b'0' + (i / 10) as u8;
            e[i].name[2] = b'0' + (i % 10) as u8;
        }
        i += 1;
    }
    e
}

#[used]
#[unsafe(link_section = ".note.solo5.manifest")]
static MFT_NOTE: MftNote<64> = MftNote::new(entries());

entry!(main);

fn main(bi: &BootInfo, _cmdline: &str) -> i32 {
    let m = manifest(bi);
    let attached = m.iter().skip(1).filter(|e| e.attached == 1 && e.block().1 == 512).count();
    if m.len() != 64 || attached != 63 {
        println!("many: {} entries, {} attached", m.len(), attached);
        return 1;
    }
    println!("many: ok {}", attached);
    0
}
