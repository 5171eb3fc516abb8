//! A minimal rtnetlink request socket: build one request, send it, wait for its ACK.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
/// Request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Ask for an ACK.
pub const NLM_F_ACK: u16 = 0x4;
/// Fail if it exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// Create if missing.
pub const NLM_F_CREATE: u16 = 0x400;

/// A netlink message under construction: header, fixed part, attributes (nested by offsets).
#[derive(Debug)]
pub struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

impl Message {
    /// A message of type `kind` with `flags` and the fixed-size `body` (e.g. a `struct tcmsg`).
    pub fn new(kind: u16, flags: u16, body: &[u8]) -> Message {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
        buf.extend_from_slice(body);
        buf.resize(align4(buf.len()), 0);
        Message { buf, nests: Vec::new() }
    }

    /// Appends attribute `kind` with `data`.
    pub fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Message {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Opens a nested attribute; close it with [`end`](Self::end).
    pub fn begin(&mut self, kind: u16) -> &mut Message {
        self.nests.push(self.buf.len());
        self.attr(kind, &[])
    }

    /// Closes the innermost nested attribute.
    pub fn end(&mut self) -> &mut Message {
        if let Some(start) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished bytes.
    pub fn bytes(&mut self) -> &[u8] {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        &self.buf
    }
}

/// Sends `msg` on a fresh NETLINK_ROUTE socket and returns the kernel's verdict.
pub fn request(msg: &mut Message) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; checked below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let bytes = msg.bytes();
    // SAFETY: send(2) of a buffer we own, on our socket; the kernel is the default destination.
    if unsafe { libc::send(sock.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 4096];
    // SAFETY: recv(2) into a local buffer.
    let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0);
    if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected netlink reply"));
    }
    match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
        0 => Ok(()),
        err => Err(io::Error::from_raw_os_error(-err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_nested_attributes_are_sized_and_aligned() {
        let mut m = Message::new(44, NLM_F_REQUEST, &[0; 20]);
        m.attr(1, b"u32\0").begin(2).attr(5, &[1, 2, 3]).end();
        let b = m.bytes().to_vec();
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize, b.len());
        assert_eq!(b.len(), 16 + 20 + 8 + (4 + 8));
        // The nest's length covers its header and its padded child.
        assert_eq!(u16::from_ne_bytes([b[44], b[45]]), 4 + 8);
        assert_eq!(u16::from_ne_bytes([b[48], b[49]]), 7);
    }
}
