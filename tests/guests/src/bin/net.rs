//! Answers ARP and ICMP echo on `service0` for `ip=A.B.C.D`; halts 0 after `count=N` echoes
//! (default 3), or 2 after `timeout=S` seconds (default 30). With `net-tx=N` instead: sends N
//! 1514-byte broadcast frames (ethertype 0x88b5) through NET_WRITE as fast as it can, prints
//! `net: sent N frames` and halts 0 (4 if a write fails).
#![no_std]
#![no_main]

use unik_test_guests::net::{Reply, answer, parse_ip};
use unik_test_guests::{BootInfo, NET, arg, device, entry, net_read, net_write, parse_u64, poll, println, solo5_notes, walltime};

solo5_notes!("service0": NET);
entry!(main);

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    println!("net: cmdline: {}", cmdline);
    let Some((h, e)) = device(bi, "service0") else {
        println!("net: no device");
        return 1;
    };
    if let Some(n) = arg(cmdline, "net-tx").and_then(parse_u64) {
        return net_tx(h, e.net().0, n);
    }
    let Some(ip) = arg(cmdline, "ip").and_then(parse_ip) else {
        println!("net: usage: ip=A.B.C.D [count=N] [timeout=S]");
        return 1;
    };
    let want = arg(cmdline, "count").and_then(parse_u64).unwrap_or(3);
    let timeout = arg(cmdline, "timeout").and_then(parse_u64).unwrap_or(30);
    let (mac, mtu) = e.net();
    println!(
        "net: mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} mtu={} ready",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], mtu
    );
    let deadline = walltime() + timeout * 1_000_000_000;
    let mut answered = 0;
    let mut frame = [0u8; 2048];
    while answered < want {
        if walltime() > deadline {
            println!("net: timeout after {} pings", answered);
            return 2;
        }
        if poll(1_000_000_000) & (1 << h) == 0 {
            continue;
        }
        while let Ok(len) = net_read(h, &mut frame) {
            match answer(&mut frame, len, mac, ip) {
                Reply::None => {}
                Reply::Arp(n) => {
                    net_write(h, &frame[..n]);
                }
                Reply::Echo(n) => {
                    let ret = net_write(h, &frame[..n]);
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
    println!("net: answered {} pings", answered);
    0
}

/// Sends `n` broadcast frames of ethertype 0x88b5 with a zero payload, one NET_WRITE each.
fn net_tx(h: u64, mac: [u8; 6], n: u64) -> i32 {
    let mut frame = [0u8; 1514];
    frame[0..6].fill(0xff);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for i in 0..n {
        let ret = net_write(h, &frame);
        if ret != 0 {
            println!("net: write {} failed: {}", i, ret);
            return 4;
        }
    }
    println!("net: sent {} frames", n);
    0
}
