//! Block I/O on device `storage`: write, read back, out-of-range requests.
//! With `read-only-check`, prints the first 16 bytes of sector 0 in hex.
#![no_std]
#![no_main]

use unik_test_guests::{BLOCK, BootInfo, block_read, block_write, device, entry, flag, println, solo5_notes};

solo5_notes!("storage": BLOCK);
entry!(main);

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    let Some((h, e)) = device(bi, "storage") else {
        println!("blk: no device");
        return 1;
    };
    let (capacity, bs) = e.block();
    let mut buf = [0u8; 4096];
    if bs as usize > buf.len() || e.attached != 1 {
        println!("blk: unusable device: block_size={} attached={}", bs, e.attached);
        return 1;
    }
    let bsz = bs as usize;
    if flag(cmdline, "read-only-check") {
        let ret = block_read(h, 0, &mut buf[..bsz]);
        print_hex(ret, &buf[..16]);
        return ret;
    }
    let last = capacity - bs;
    for (i, offset) in [0, last].into_iter().enumerate() {
        for (j, b) in buf[..bsz].iter_mut().enumerate() {
            *b = (j as u8) ^ (0x5a + i as u8);
        }
        if block_write(h, offset, &buf[..bsz]) != 0 {
            println!("blk: write at {} failed", offset);
            return 1;
        }
        buf[..bsz].fill(0);
        if block_read(h, offset, &mut buf[..bsz]) != 0 {
            println!("blk: read at {} failed", offset);
            return 1;
        }
        if buf[..bsz].iter().enumerate().any(|(j, b)| *b != (j as u8) ^ (0x5a + i as u8)) {
            println!("blk: data mismatch at {}", offset);
            return 1;
        }
    }
    let past_end = block_read(h, capacity, &mut buf[..bsz]);
    let straddle = block_write(h, last, &[0u8; 4096][..(2 * bsz).min(4096)]);
    if past_end != 2 || (2 * bsz <= 4096 && straddle != 2) {
        println!("blk: out-of-range requests returned {} and {} (want 2)", past_end, straddle);
        return 1;
    }
    println!("blk: ok capacity={} block_size={}", capacity, bs);
    0
}

fn print_hex(ret: i32, bytes: &[u8]) {
    use core::fmt::Write;
    let _ = write!(unik_test_guests::Console, "blk: ret={} sector0=", ret);
    for b in bytes {
        let _ = write!(unik_test_guests::Console, "{:02x}", b);
    }
    println!("");
}
