//! Just enough Ethernet, ARP, IPv4 and ICMP to answer `ping`.

const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a frame asked for.
pub enum Reply {
    None,
    Arp(usize),
    Echo(usize),
}

/// Turns `frame[..len]` into a reply in place when it is an ARP request or ICMP echo request for
/// `ip`; returns what was built and its length.
pub fn answer(frame: &mut [u8], len: usize, mac: [u8; 6], ip: [u8; 4]) -> Reply {
    if len < 14 {
        return Reply::None;
    }
    let f = &mut frame[..len];
    match be16(f, 12) {
        ETH_ARP if len >= 42 && be16(f, 20) == 1 && f[38..42] == ip => {
            let (sha, spa) = ([f[22], f[23], f[24], f[25], f[26], f[27]], [f[28], f[29], f[30], f[31]]);
            f[0..6].copy_from_slice(&sha);
            f[6..12].copy_from_slice(&mac);
            f[20..22].copy_from_slice(&2u16.to_be_bytes());
            f[22..28].copy_from_slice(&mac);
            f[28..32].copy_from_slice(&ip);
            f[32..38].copy_from_slice(&sha);
            f[38..42].copy_from_slice(&spa);
            Reply::Arp(42)
        }
        ETH_IPV4 if len >= 34 => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let total = usize::from(be16(f, 16));
            if f[14] >> 4 != 4 || ihl < 20 || f[23] != 1 || f[30..34] != ip || 14 + total > len || total < ihl + 8 {
                return Reply::None;
            }
            let icmp = 14 + ihl;
            if f[icmp] != 8 {
                return Reply::None;
            }
            let src_mac = [f[6], f[7], f[8], f[9], f[10], f[11]];
            f[0..6].copy_from_slice(&src_mac);
            f[6..12].copy_from_slice(&mac);
            let src_ip = [f[26], f[27], f[28], f[29]];
            f[26..30].copy_from_slice(&ip);
            f[30..34].copy_from_slice(&src_ip);
            f[22] = 64;
            f[24..26].copy_from_slice(&[0, 0]);
            let ip_sum = checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&ip_sum.to_be_bytes());
            f[icmp] = 0;
            f[icmp + 2..icmp + 4].copy_from_slice(&[0, 0]);
            let icmp_sum = checksum(&f[icmp..14 + total]);
            f[icmp + 2..icmp + 4].copy_from_slice(&icmp_sum.to_be_bytes());
            Reply::Echo(14 + total)
        }
        _ => Reply::None,
    }
}

/// Parses `a.b.c.d`.
pub fn parse_ip(s: &str) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let (mut i, mut n, mut digits) = (0, 0u16, 0);
    // Bytes, not `split`: see `crate::args`.
    for &c in s.as_bytes() {
        match c {
            b'0'..=b'9' => {
                n = n * 10 + u16::from(c - b'0');
                digits += 1;
                if n > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && i < 3 => {
                ip[i] = n as u8;
                (i, n, digits) = (i + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || i != 3 {
        return None;
    }
    ip[3] = n as u8;
    Some(ip)
}
