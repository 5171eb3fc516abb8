//! TAP interfaces: opened by name (must exist and be up) or taken from an open fd.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Why a tap could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No interface of that name.
    #[error("{0}: no such interface")]
    NoSuchInterface(String),
    /// The interface exists but is not up.
    #[error("{0}: interface is down")]
    Down(String),
    /// An ioctl or open failed.
    #[error("{what}: {source}")]
    Os {
        /// What was attempted.
        what: String,
        /// What the OS said.
        source: io::Error,
    },
    /// A file descriptor that is not a tap device.
    #[error("@{0}: not a tap device file descriptor")]
    NotTap(RawFd),
}

const IFNAMSIZ: usize = 16;
// The interface flags travel in a 16-bit field of `struct ifreq`; these values fit.
const IFF_UP: i16 = 0x1;
const IFF_TAP: i16 = 0x2;
const IFF_NO_PI: i16 = 0x1000;

/// `struct ifreq`: a name and a 24-byte union (flags or MTU here).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> IfReq {
        let mut req = IfReq::default();
        let n = name.len().min(IFNAMSIZ - 1);
        req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        req
    }

    fn name(&self) -> String {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..len]).into_owned()
    }

    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
}

/// Issues `ioctl(fd, request, &mut req)`.
fn ifreq_ioctl(fd: RawFd, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: every request used here (TUNSETIFF, TUNGETIFF, SIOC[GS]IFFLAGS, SIOC[GS]IFMTU,
    // SIOCGIFHWADDR) reads and/or
    // writes a `struct ifreq`, which `IfReq` matches in size (40 bytes) and layout.
    let rc = unsafe { libc::ioctl(fd, request as _, std::ptr::from_mut(req)) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A datagram socket for interface queries.
fn query_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn interface_flags(name: &str) -> Result<i16, TapError> {
    let sock = query_socket().map_err(|source| TapError::Os {
        what: "socket".into(),
        source,
    })?;
    let mut req = IfReq::new(name);
    match ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) {
        Ok(()) => Ok(req.short()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(TapError::NoSuchInterface(name.to_string())),
        Err(source) => Err(TapError::Os {
            what: format!("{name}: SIOCGIFFLAGS"),
            source,
        }),
    }
}

/// The MTU of interface `name` in the current network namespace.
pub fn interface_mtu(name: &str) -> io::Result<u16> {
    let sock = query_socket()?;
    let mut req = IfReq::new(name);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req)?;
    u16::try_from(req.int()).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
}

/// The hardware (MAC) address of interface `name`.
pub fn hw_addr(name: &str) -> io::Result<[u8; 6]> {
    let sock = query_socket()?;
    let mut req = IfReq::new(name);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req)?;
    // data = struct sockaddr { sa_family: u16, sa_data: [u8; 14] }; the MAC leads sa_data.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[2..8]);
    Ok(mac)
}

/// Creates tap `name` (not persistent: it disappears when the returned fd is closed) with `mtu`,
/// and brings it up. The fd is non-blocking, without packet-information headers.
pub fn create(name: &str, mtu: u16) -> Result<File, TapError> {
    let os = |what: &str| {
        let what = format!("{name}: {what}");
        move |source| TapError::Os { what, source }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(os("/dev/net/tun"))?;
    let mut req = IfReq::new(name);
    req.data[..2].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    ifreq_ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req).map_err(os("TUNSETIFF"))?;
    let sock = query_socket().map_err(os("socket"))?;
    let mut req = IfReq::new(name);
    req.data[..4].copy_from_slice(&i32::from(mtu).to_ne_bytes());
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &mut req).map_err(os("SIOCSIFMTU"))?;
    let mut req = IfReq::new(name);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req).map_err(os("SIOCGIFFLAGS"))?;
    let flags = req.short() | IFF_UP;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req).map_err(os("SIOCSIFFLAGS"))?;
    Ok(file)
}

/// An open tap queue: non-blocking, no packet-information header.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    mtu: u16,
}

/// MTU assumed when a tap passed by fd lives where its MTU cannot be queried.
pub const DEFAULT_MTU: u16 = 1500;

impl Tap {
    /// Opens the existing, up tap interface `name`.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let flags = interface_flags(name)?;
        if flags & IFF_UP == 0 {
            return Err(TapError::Down(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| TapError::Os {
                what: "/dev/net/tun".into(),
                source,
            })?;
        let mut req = IfReq::new(name);
        let tap_flags = IFF_TAP | IFF_NO_PI;
        req.data[..2].copy_from_slice(&tap_flags.to_ne_bytes());
        ifreq_ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req).map_err(|source| TapError::Os {
            what: format!("{name}: TUNSETIFF"),
            source,
        })?;
        if req.name() != name {
            return Err(TapError::Os {
                what: format!("{name}: kernel attached '{}' instead", req.name()),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let mtu = interface_mtu(name).map_err(|source| TapError::Os {
            what: format!("{name}: SIOCGIFMTU"),
            source,
        })?;
        Ok(Tap {
            file,
            name: name.to_string(),
            mtu,
        })
    }

    /// Takes an already-open tap fd (solo5's `--net:NAME=@FD`). The fd is duplicated, set
    /// non-blocking, and its MTU read from the interface it is attached to.
    pub fn from_fd(fd: RawFd) -> Result<Tap, TapError> {
        // SAFETY: F_DUPFD_CLOEXEC on any integer is safe; an invalid fd yields EBADF.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(TapError::Os {
                what: format!("@{fd}"),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `dup` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(dup) };
        let mut req = IfReq::default();
        if ifreq_ioctl(dup, libc::TUNGETIFF, &mut req).is_err() || req.short() & IFF_TAP == 0 {
            return Err(TapError::NotTap(fd));
        }
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
        let ok = unsafe {
            let fl = libc::fcntl(dup, libc::F_GETFL);
            fl >= 0 && libc::fcntl(dup, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
        };
        if !ok {
            return Err(TapError::Os {
                what: format!("@{fd}: O_NONBLOCK"),
                source: io::Error::last_os_error(),
            });
        }
        let name = req.name();
        let mtu = interface_mtu(&name).unwrap_or(DEFAULT_MTU);
        Ok(Tap { file, name, mtu })
    }

    /// Wraps any fd as a tap (unit tests: a socketpair end stands in for a tap).
    pub fn from_file_for_tests(file: File, mtu: u16) -> Tap {
        Tap {
            file,
            name: "test".into(),
            mtu,
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface MTU.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The fd, for the POLL set.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads one frame; `Ok(None)` when none is waiting.
    pub fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one whole frame.
    pub fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let n = self.file.write(frame)?;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}
