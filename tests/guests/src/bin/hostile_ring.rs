//! Attacks on solo5's net ring (offered with `--net-ring=on`), with a net device `service0`.
//! `ring=ATTACK`:
//! - `tail`: an entry tail 5000 past the head; `op`: an entry with operation 9;
//! - `handle`: a NET_WRITE entry to handle 0 (the reserved entry, no network device);
//! - `gpa`: a NET_WRITE entry whose frame starts 16 bytes below the end of RAM (64 bytes);
//! - `into-ring`: a NET_READ entry whose buffer is the ring itself;
//! - `long`: a NET_WRITE entry of 60000 bytes;
//! - `commits`: 1025 NET_READ entries whose commits are never consumed;
//! - `read-handle`: a NET_READ entry for handle 0 (answered EINVAL: prints `hostile: ring read
//!   ret=2` and goes on);
//! - `hypercall-into-ring`: a NET_WRITE hypercall whose frame is the ring.
//!
//! The fatal ones leave the guest spinning: the monitor must stop it with an error.

#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use unik_test_guests::ring::{COM_TAIL, ENT_TAIL, Entry, OP_READ, OP_WRITE, Ring};
use unik_test_guests::{BootInfo, NET, arg, entry, net_write, println, solo5_notes};

solo5_notes!("service0": NET);
entry!(main);

fn entry_of(operation: u32, handle: u32, data: u64, len: u32) -> Entry {
    Entry {
        operation,
        handle,
        data,
        len,
        id: 7,
        reserved: 0,
    }
}

fn ring_attack(bi: &BootInfo, attack: &str) {
    let Some(mut ring) = Ring::offered(bi) else {
        println!("hostile: no ring offered");
        return;
    };
    // On the stack, so the raw attacks' `buf` (in BSS) keeps its address.
    let mut frame = [0u8; 2048];
    let buf = frame.as_mut_ptr() as u64;
    match attack {
        "tail" => {
            ring.word(ENT_TAIL).store(5000, Ordering::Release);
            unik_test_guests::arch::ring_kick();
        }
        "op" => ring.submit(entry_of(9, 1, buf, 64)),
        "handle" => ring.submit(entry_of(OP_WRITE, 0, buf, 64)),
        "gpa" => ring.submit(entry_of(OP_WRITE, 1, bi.mem_size - 16, 64)),
        "into-ring" => ring.submit(entry_of(OP_READ, 1, ring.base, 64)),
        "long" => ring.submit(entry_of(OP_WRITE, 1, buf, 60000)),
        "commits" => {
            for _ in 0..1025 {
                ring.submit(entry_of(OP_READ, 1, buf, 2048));
            }
        }
        "read-handle" => {
            ring.submit(entry_of(OP_READ, 0, buf, 2048));
            let c = ring.wait_commit();
            println!("hostile: ring read ret={} id={}", c.ret, c.id);
            return;
        }
        "hypercall-into-ring" => {
            // SAFETY: a slice over the ring's first bytes, only read by the monitor.
            let frame = unsafe { core::slice::from_raw_parts(ring.base as *const u8, 64) };
            println!("hostile: ret={}", net_write(1, frame));
        }
        _ => {
            println!("hostile: unknown ring attack {}", attack);
            return;
        }
    }
    // The monitor should have stopped the run; wait for it without another exit.
    let seen = ring.word(COM_TAIL).load(Ordering::Acquire);
    println!("hostile: ring attack {} sent (com_tail {})", attack, seen);
    loop {
        core::hint::spin_loop();
    }
}

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    println!("hostile: {}", cmdline);
    if let Some(attack) = arg(cmdline, "ring") {
        ring_attack(bi, attack);
    }
    println!("hostile: done");
    0
}
