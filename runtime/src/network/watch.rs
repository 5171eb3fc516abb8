//! Watching the container interface the guest's network card is spliced to.
//!
//! `docker network disconnect` deletes that interface (and `docker network connect` adds
//! another, with an address the guest cannot learn: its network settings came on its command
//! line at boot). The monitor cannot splice a new one — once the guest runs it holds no
//! capability and its filters allow no netlink request — so when the interface goes, it ends the
//! container with a clear error rather than leave the guest cut off without a sign while the
//! container's kernel answers for its address.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::link::Interface;

/// `RTMGRP_LINK`: the link-change multicast group.
const RTMGRP_LINK: u32 = 1;
/// `RTM_DELLINK`.
const RTM_DELLINK: u16 = 17;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// A subscription to the link changes of the current network namespace, for one interface.
#[derive(Debug)]
pub struct LinkWatch {
    sock: OwnedFd,
    index: u32,
    name: String,
}

/// Whether the netlink messages in `buf` say interface `index` was deleted.
pub fn deleted(buf: &[u8], index: u32) -> bool {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        // `struct ifinfomsg`: family, pad, type (u16), index (i32), flags, change.
        if kind == RTM_DELLINK && len >= NLMSG_HDRLEN + 8 {
            let at = NLMSG_HDRLEN + 4;
            let ifindex = u32::from_ne_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
            if ifindex == index {
                return true;
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    false
}

impl LinkWatch {
    /// Subscribes to the link changes of the current network namespace (the container's: call
    /// it there, before the monitor gives up its privileges) to watch `interface`.
    pub fn open(interface: &Interface) -> io::Result<LinkWatch> {
        // SAFETY: socket(2) with constant arguments; checked below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_nl; the fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(16);
        addr.nl_groups = RTMGRP_LINK;
        let size = u32::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(12);
        // SAFETY: bind(2) reads `size` bytes of `addr`, a live sockaddr_nl.
        if unsafe { libc::bind(sock.as_raw_fd(), (&raw const addr).cast(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkWatch {
            sock,
            index: interface.index,
            name: interface.name.clone(),
        })
    }

    /// Starts the watching thread and returns once it has installed its filter from `filters`
    /// (the link watch's; nothing when seccomp is off), so it never runs beside the guest
    /// unfiltered. When the interface is deleted it logs why and ends the process with status 1.
    pub fn spawn(self, filters: vmm::seccomp::Filters) -> io::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("link watch".into()).spawn(move || {
            let installed = filters.install(vmm::seccomp::ThreadKind::LinkWatch);
            let ok = installed.is_ok();
            let _ = tx.send(installed);
            if ok {
                self.watch();
            }
        })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::other("the link watch ended before installing its filter")),
        }
    }

    fn watch(&self) {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Messages were dropped (a burst of changes): what they said is lost, and
                    // asking whether the interface still exists takes a socket the filter
                    // forbids; the next change of ours is still seen.
                    Some(libc::ENOBUFS) => {
                        log::warn!("watching {}: link messages were lost ({e})", self.name);
                        continue;
                    }
                    _ => {
                        log::warn!("watching {}: {e}; no longer watched", self.name);
                        return;
                    }
                }
            };
            if deleted(&buf[..n], self.index) {
                log::error!(
                    "the container's network interface {} is gone (docker network disconnect?): the guest's \
                     network card is cut off and cannot be spliced to another interface while the guest runs; \
                     the container stops",
                    self.name
                );
                log::logger().flush();
                // SAFETY: _exit ends the process at once; the state the container leaves (its
                // records, the splice's record) is what `delete` cleans up after any ending.
                unsafe { libc::_exit(1) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, index: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN + 16];
        let len = u32::try_from(m.len()).unwrap();
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&index.to_ne_bytes());
        m
    }

    #[test]
    fn test_only_the_deletion_of_the_watched_interface_counts() {
        assert!(deleted(&message(RTM_DELLINK, 7), 7));
        assert!(!deleted(&message(RTM_DELLINK, 8), 7));
        // RTM_NEWLINK (a change, a new interface) is not a deletion.
        assert!(!deleted(&message(16, 7), 7));
        // Found after another message in the same datagram.
        let mut two = message(16, 3);
        two.extend(message(RTM_DELLINK, 7));
        assert!(deleted(&two, 7));
        // Truncated or lying lengths end the walk without a panic.
        let mut short = message(RTM_DELLINK, 7);
        short[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(!deleted(&short, 7));
        assert!(!deleted(&message(RTM_DELLINK, 7)[..20], 7));
        let mut zero = message(RTM_DELLINK, 7);
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(!deleted(&zero, 7));
    }

    #[test]
    fn test_a_deleted_interface_is_seen() {
        // A veth pair in a namespace of this thread's own is created, then one end deleted; the
        // watch sees its index go. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN (root, as the suite runs).
        let seen = std::thread::spawn(|| {
            // SAFETY: unshare of the network namespace affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", io::Error::last_os_error()));
            }
            let ip = |args: &[&str]| {
                // `ip` runs in this thread's namespace (a child inherits the caller thread's).
                let out = std::process::Command::new("ip").args(args).output().map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            };
            ip(&["link", "add", "ukwatch0", "type", "veth", "peer", "name", "ukwatch9"])?;
            let index = super::super::link::index_of("ukwatch0").ok_or("no index")?;
            let iface = Interface {
                name: "ukwatch0".into(),
                index,
                mac: [0; 6],
                mtu: 1500,
                ip: std::net::Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            };
            let watch = LinkWatch::open(&iface).map_err(|e| e.to_string())?;
            // Other changes first: a new link, and the watched one brought up.
            ip(&["link", "add", "ukwatch1", "type", "veth", "peer", "name", "ukwatch2"])?;
            ip(&["link", "set", "ukwatch0", "up"])?;
            ip(&["link", "del", "ukwatch0"])?;
            let mut buf = vec![0u8; 16 << 10];
            for _ in 0..16 {
                // SAFETY: recv(2) into `buf`, at most its length.
                let n = unsafe { libc::recv(watch.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error().to_string())?;
                if deleted(&buf[..n], index) {
                    return Ok(());
                }
            }
            Err("no RTM_DELLINK for the watched interface".into())
        });
        seen.join().unwrap().unwrap();
    }
}
