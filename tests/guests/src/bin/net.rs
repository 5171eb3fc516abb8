//! Answers ARP and ICMP echo on `service0` for `ip=A.B.C.D`; halts 0 after `count=N` echoes
//! (default 3), or 2 after `timeout=S` seconds (default 30). With `net-tx=N` instead: sends N
//! broadcast frames of `size=BYTES` (default 1514; ethertype 0x88b5) as fast as it can, prints
//! `net: sent N frames` and halts 0 (4 if a write fails).
//!
//! Frames go through solo5's net ring when the monitor offers it (the boot info's
//! `HVT_FEATURE_RING_IO`), else through NET_READ / NET_WRITE; `no-ring` keeps to the hypercalls.
//! The ready line and the last line say which (`io=ring` or `io=hypercalls`), the ring's also how
//! many kicks the guest sent.
#![no_std]
#![no_main]

use unik_test_guests::net::{Reply, answer, parse_ip};
use unik_test_guests::ring::Ring;
use unik_test_guests::{
    BootInfo, NET, args, device, entry, flag, net_read, net_write, parse_u64, poll, println, puts, solo5_notes, walltime,
};

const HEX: &[u8; 16] = b"0123456789abcdef";

solo5_notes!("service0": NET);
entry!(main);

/// Ring or hypercalls.
enum Io {
    Ring(Ring),
    Calls,
}

impl Io {
    fn write(&mut self, h: u64, frame: &[u8]) -> i32 {
        match self {
            Io::Ring(r) => r.write(h, frame),
            Io::Calls => net_write(h, frame),
        }
    }

    fn read(&mut self, h: u64, buf: &mut [u8]) -> Result<usize, i32> {
        match self {
            Io::Ring(r) => r.read(h, buf),
            Io::Calls => net_read(h, buf),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Io::Ring(_) => "ring",
            Io::Calls => "hypercalls",
        }
    }

    fn kicks(&self) -> u64 {
        match self {
            Io::Ring(r) => r.kicks,
            Io::Calls => 0,
        }
    }
}

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    // Up to the ready line: plain PUTS and one pass over the command line, no `core::fmt`. This
    // is every benchmarked container's start-up, and where the host lacks hardware virtualization
    // each guest instruction is emulated (about 2 µs each here), a PUTS costing about as much as
    // ten.
    puts(b"net: cmdline: ");
    puts(cmdline.as_bytes());
    puts(b"\n");
    let Some((h, e)) = device(bi, "service0") else {
        println!("net: no device");
        return 1;
    };
    let mut io = match Ring::offered(bi) {
        Some(ring) if !flag(cmdline, "no-ring") => Io::Ring(ring),
        _ => Io::Calls,
    };
    let [tx, size, ip, count, timeout] = args(cmdline, ["net-tx", "size", "ip", "count", "timeout"]);
    if let Some(n) = tx.and_then(parse_u64) {
        let size = size.and_then(parse_u64).unwrap_or(1514).clamp(60, 1514);
        return net_tx(&mut io, h, e.net().0, n, size as usize);
    }
    let Some(ip) = ip.and_then(parse_ip) else {
        println!("net: usage: ip=A.B.C.D [count=N] [timeout=S]");
        return 1;
    };
    let want = count.and_then(parse_u64).unwrap_or(3);
    let timeout = timeout.and_then(parse_u64).unwrap_or(30);
    let (mac, mtu) = e.net();
    // "net: mac=02:00:00:00:00:01 mtu=1500 io=hypercalls ready"
    let mut hex = *b"00:00:00:00:00:00";
    for (i, b) in mac.iter().enumerate() {
        hex[3 * i] = HEX[usize::from(b >> 4)];
        hex[3 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut m = mtu;
    loop {
        at -= 1;
        digits[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    let line: [&[u8]; 7] = [
        b"net: mac=",
        &hex,
        b" mtu=",
        &digits[at..],
        b" io=",
        io.name().as_bytes(),
        b" ready\n",
    ];
    for piece in line {
        puts(piece);
    }
    let deadline = walltime() + timeout * 1_000_000_000;
    let mut answered = 0;
    let mut frame = [0u8; 2048];
    while answered < want {
        let now = walltime();
        if now > deadline {
            println!("net: timeout after {} pings", answered);
            return 2;
        }
        // Idle until a frame or the deadline, as a unikernel with no timer due sleeps: one POLL,
        // not a wake-up per second.
        if poll(deadline - now + 1) & (1 << h) == 0 {
            continue;
        }
        while let Ok(len) = io.read(h, &mut frame) {
            match answer(&mut frame, len, mac, ip) {
                Reply::None => {}
                Reply::Arp(n) => {
                    io.write(h, &frame[..n]);
                }
                Reply::Echo(n) => {
                    let ret = io.write(h, &frame[..n]);
                    if ret == 0 {
                        answered += 1;
                    }
                    let icmp = 14 + usize::from(frame[14] & 0x0f) * 4;
                    println!(
                        "net: echo id={} seq={} ret={}",
                        u16::from_be_bytes([frame[icmp + 4], frame[icmp + 5]]),
                        u16::from_be_bytes([frame[icmp + 6], frame[icmp + 7]]),
                        ret
                    );
                }
            }
        }
    }
    if let Io::Ring(r) = &io {
        r.flush();
    }
    println!("net: answered {} pings (io={}, kicks={})", answered, io.name(), io.kicks());
    0
}

/// Sends `n` broadcast frames of `size` bytes, ethertype 0x88b5, zero payload; waits until the
/// host has taken them all.
fn net_tx(io: &mut Io, h: u64, mac: [u8; 6], n: u64, size: usize) -> i32 {
    let mut frame = [0u8; 1514];
    frame[0..6].fill(0xff);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for i in 0..n {
        let ret = io.write(h, &frame[..size]);
        if ret != 0 {
            println!("net: write {} failed: {}", i, ret);
            return 4;
        }
    }
    if let Io::Ring(r) = io {
        r.flush();
    }
    println!("net: sent {} frames (io={}, kicks={})", n, io.name(), io.kicks());
    0
}
