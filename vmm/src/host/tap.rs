//! TAP interfaces: opened by name (must exist and be up) or taken from an open fd.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use vmm_sys_util::ioctl::ioctl_with_mut_ref;

use crate::config::{GuestKind, NetBackend};

/// Why a tap could not be attached. Each message starts with the interface name (or `@FD`), to
/// follow solo5-hvt's "Could not attach interface: IFACE: ...".
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No interface of that name.
    #[error("{0}: no such interface")]
    NoSuchInterface(String),
    /// The interface exists but is not up.
    #[error("{0}: interface is down")]
    Down(String),
    /// The interface exists but is not a tap the monitor can attach to: a physical NIC, a bridge,
    /// a tun, loopback..., or a multi-queue tap (the kernel refuses all of them with EINVAL).
    #[error("{0}: not a single-queue tap interface")]
    NotTapInterface(String),
    /// An ioctl or open failed.
    #[error("{what}: {source}")]
    Os {
        /// What was attempted, starting with the interface name.
        what: String,
        /// What the OS said.
        source: io::Error,
    },
    /// A file descriptor that is not a tap device.
    #[error("@{0}: not a tap device file descriptor")]
    NotTap(RawFd),
    /// A tap fd whose frames carry extra headers the guest does not expect.
    #[error("@{0}: tap must be set up with IFF_NO_PI and without IFF_VNET_HDR")]
    FrameHeaders(RawFd),
}

const IFNAMSIZ: usize = 16;
/// `TUNSETIFF`, `_IOW('T', 202, int)`, and `TUNGETIFF`, `_IOR('T', 210, unsigned int)`: spelled
/// out because libc types them differently for glibc and musl.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
// The interface flags travel in a 16-bit field of `struct ifreq`; these values fit.
const IFF_UP: i16 = 0x1;
const IFF_TAP: i16 = 0x2;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;

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

    fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
}

/// Issues `ioctl(fd, request, &mut req)`.
fn ifreq_ioctl(fd: &impl AsRawFd, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: every request used here (TUNSETIFF, TUNGETIFF, SIOC[GS]IFFLAGS, SIOC[GS]IFMTU,
    // SIOCGIFHWADDR) reads and/or writes one `struct ifreq`, which `IfReq` matches in size
    // (40 bytes) and layout; `req` is a live exclusive reference for the whole call.
    let rc = unsafe { ioctl_with_mut_ref(fd, request, req) };
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

/// `/dev/net/tun`, opened read-write, non-blocking and close-on-exec.
fn open_tun() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
}

/// A `map_err` adapter: `TapError::Os` with "NAME: WHAT".
fn os_err(name: &str, what: &str) -> impl FnOnce(io::Error) -> TapError {
    let what = format!("{name}: {what}");
    move |source| TapError::Os { what, source }
}

fn interface_flags(name: &str) -> Result<i16, TapError> {
    let sock = query_socket().map_err(os_err(name, "socket"))?;
    let mut req = IfReq::new(name);
    match ifreq_ioctl(&sock, libc::SIOCGIFFLAGS, &mut req) {
        Ok(()) => Ok(req.short()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(TapError::NoSuchInterface(name.to_string())),
        Err(source) => Err(TapError::Os {
            what: format!("{name}: SIOCGIFFLAGS"),
            source,
        }),
    }
}

/// Attaches `file` to tap `name`, with a 12-byte virtio-net header on every frame if `vnet_hdr`;
/// the tap's name (which the kernel picks when `name` is a `%d` template).
fn attach(file: &File, name: &str, vnet_hdr: bool) -> Result<String, TapError> {
    if vnet_hdr {
        let name = set_iff_flags(file, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)?;
        set_vnet_hdr_len(file, &name)?;
        Ok(name)
    } else {
        set_iff(file, name)
    }
}

/// Makes the tap's virtio-net header 12 bytes (`virtio_net_hdr_v1`; the kernel default is 10).
fn set_vnet_hdr_len(file: &File, name: &str) -> Result<(), TapError> {
    let size = i32::try_from(VNET_HDR_LEN).unwrap_or(12);
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const size) } < 0 {
        return Err(os_err(name, "TUNSETVNETHDRSZ")(io::Error::last_os_error()));
    }
    Ok(())
}

/// Attaches `file` (an open `/dev/net/tun`) to tap `name` without packet-information headers.
fn set_iff(file: &File, name: &str) -> Result<String, TapError> {
    set_iff_flags(file, name, IFF_TAP | IFF_NO_PI)
}

/// TUNSETIFF; the name the kernel gave the tap: `name` itself, or for a template with `%d`
/// (e.g. `uk%d`) the first free one in this network namespace.
fn set_iff_flags(file: &File, name: &str, flags: i16) -> Result<String, TapError> {
    let mut req = IfReq::new(name);
    req.set_short(flags);
    match ifreq_ioctl(file, TUNSETIFF, &mut req) {
        Ok(()) => {}
        // The kernel's answer when `name` exists but is not a tap (or is a multi-queue one).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(TapError::NotTapInterface(name.to_string())),
        Err(source) => {
            return Err(TapError::Os {
                what: format!("{name}: TUNSETIFF"),
                source,
            });
        }
    }
    if req.name() != name && !name.contains("%d") {
        return Err(TapError::Os {
            what: format!("{name}: kernel attached '{}' instead", req.name()),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    Ok(req.name())
}

/// The MTU of interface `name` in the current network namespace.
pub fn interface_mtu(name: &str) -> io::Result<u16> {
    let sock = query_socket()?;
    let mut req = IfReq::new(name);
    ifreq_ioctl(&sock, libc::SIOCGIFMTU, &mut req)?;
    u16::try_from(req.int()).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
}

/// `TUNGETDEVNETNS`, `_IO('T', 227)` (Linux 5.2+): a descriptor of the network namespace the
/// tap's interface lives in.
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;

/// The MTU of the interface tap `file` is attached to, asked in that interface's own network
/// namespace (which may not be ours: a tap handed over as `@FD` after being moved).
fn mtu_of_tap(file: &File, name: &str) -> io::Result<u16> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor or -1.
    let ns = unsafe { libc::ioctl(file.as_raw_fd(), TUNGETDEVNETNS as _) };
    if ns < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    // A thread of its own enters the namespace (setns of a network namespace changes only the
    // calling thread), asks, and ends; this one stays where it was.
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace descriptor we own; affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            interface_mtu(name)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the MTU query thread panicked")))
    })
}

/// The hardware (MAC) address of interface `name`.
pub fn hw_addr(name: &str) -> io::Result<[u8; 6]> {
    let sock = query_socket()?;
    let mut req = IfReq::new(name);
    ifreq_ioctl(&sock, libc::SIOCGIFHWADDR, &mut req)?;
    // data = struct sockaddr { sa_family: u16, sa_data: [u8; 14] }; the MAC leads sa_data.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[2..8]);
    Ok(mac)
}

/// Creates tap `name` (not persistent: it disappears when the returned fd is closed) with `mtu`,
/// down: [`bring_up`] it once its queueing is set. Returns it with its name. A `%d` in `name`
/// (e.g. `uk%d`) lets the kernel pick the first free number in this network namespace, so
/// concurrent creators never collide. The fd is non-blocking, without packet-information headers;
/// with `vnet_hdr`, every frame carries a 12-byte virtio-net header (for virtio-net guests).
pub fn create(name: &str, mtu: u16, vnet_hdr: bool) -> Result<(File, String), TapError> {
    let file = open_tun().map_err(os_err(name, "/dev/net/tun"))?;
    let name = attach(&file, name, vnet_hdr)?;
    let sock = query_socket().map_err(os_err(&name, "socket"))?;
    let mut req = IfReq::new(&name);
    req.data[..4].copy_from_slice(&i32::from(mtu).to_ne_bytes());
    ifreq_ioctl(&sock, libc::SIOCSIFMTU, &mut req).map_err(os_err(&name, "SIOCSIFMTU"))?;
    Ok((file, name))
}

/// Sets interface `name` up.
pub fn bring_up(name: &str) -> Result<(), TapError> {
    let sock = query_socket().map_err(os_err(name, "socket"))?;
    let mut req = IfReq::new(name);
    ifreq_ioctl(&sock, libc::SIOCGIFFLAGS, &mut req).map_err(os_err(name, "SIOCGIFFLAGS"))?;
    req.set_short(req.short() | IFF_UP);
    ifreq_ioctl(&sock, libc::SIOCSIFFLAGS, &mut req).map_err(os_err(name, "SIOCSIFFLAGS"))
}

/// An open tap queue: non-blocking, no packet-information header.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    mtu: u16,
    vnet_hdr: bool,
}

/// Length of the virtio-net header a vnet-header tap puts before each frame (`virtio_net_hdr_v1`).
pub const VNET_HDR_LEN: usize = 12;
/// `TUN_F_CSUM`: the guest accepts frames with partial checksums.
pub const TUN_F_CSUM: u32 = 1;
/// `TUN_F_TSO4`.
pub const TUN_F_TSO4: u32 = 2;
/// `TUN_F_TSO6`.
pub const TUN_F_TSO6: u32 = 4;

/// MTU assumed when a tap passed by fd lives where its MTU cannot be queried.
pub const DEFAULT_MTU: u16 = 1500;

impl Tap {
    /// Opens the existing, up tap interface `name` (solo5's `--net:NAME=IFACE`): the interface
    /// must exist and be up beforehand; the monitor never creates or configures it.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        Tap::open_with(name, false)
    }

    /// Opens `backend` for a guest of `kind`: a named tap with a 12-byte virtio-net header
    /// before every frame when the kind takes one ([`GuestKind::tap_vnet_hdr`]), without
    /// otherwise; a tap fd is taken with or without the header if the kind takes one, and only
    /// without otherwise.
    pub fn open_for(backend: &NetBackend, kind: GuestKind) -> Result<Tap, TapError> {
        match backend {
            NetBackend::Tap(name) => Tap::open_with(name, kind.tap_vnet_hdr()),
            NetBackend::Fd(fd) => Tap::from_fd_with(*fd, kind.tap_vnet_hdr()),
        }
    }

    fn open_with(name: &str, vnet_hdr: bool) -> Result<Tap, TapError> {
        if interface_flags(name)? & IFF_UP == 0 {
            return Err(TapError::Down(name.to_string()));
        }
        let file = open_tun().map_err(os_err(name, "/dev/net/tun"))?;
        attach(&file, name, vnet_hdr)?;
        let mtu = interface_mtu(name).map_err(os_err(name, "SIOCGIFMTU"))?;
        Ok(Tap {
            file,
            name: name.to_string(),
            mtu,
            vnet_hdr,
        })
    }

    /// Whether frames carry a virtio-net header.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Tells the tap which offloads the guest takes (`TUN_F_*`); vnet-header taps only.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        if unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes an already-open tap fd (solo5's `--net:NAME=@FD`), set non-blocking; its MTU is read
    /// from the interface it is attached to, in whatever network namespace that lives
    /// ([`DEFAULT_MTU`], with a warning, if it cannot be asked: a kernel before 5.2, or no
    /// CAP_NET_ADMIN and CAP_SYS_ADMIN there).
    ///
    /// The monitor keeps its own close-on-exec duplicate and leaves `fd` itself open: callers such
    /// as the runtime's container networking still own (and close) the original. `O_NONBLOCK` is
    /// shared by both descriptors. A descriptor that is not a tap, or whose frames would carry a
    /// packet-information or virtio-net header, is refused and left as it was.
    pub fn from_fd(fd: RawFd) -> Result<Tap, TapError> {
        Tap::from_fd_with(fd, false)
    }

    fn from_fd_with(fd: RawFd, vnet_ok: bool) -> Result<Tap, TapError> {
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
        if ifreq_ioctl(&file, TUNGETIFF, &mut req).is_err() || req.short() & IFF_TAP == 0 {
            return Err(TapError::NotTap(fd));
        }
        let vnet_hdr = req.short() & IFF_VNET_HDR != 0;
        if req.short() & IFF_NO_PI == 0 || (vnet_hdr && !vnet_ok) {
            return Err(TapError::FrameHeaders(fd));
        }
        if vnet_hdr {
            set_vnet_hdr_len(&file, &format!("@{fd}"))?;
        }
        // SAFETY: F_GETFL/F_SETFL on a descriptor `file` owns; no memory is passed.
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
        let mtu = mtu_of_tap(&file, &name).unwrap_or_else(|e| {
            log::warn!("tap @{fd} ({name}): its MTU could not be read ({e}); assuming {DEFAULT_MTU}");
            DEFAULT_MTU
        });
        Ok(Tap { file, name, mtu, vnet_hdr })
    }

    /// Wraps any non-blocking fd as a tap (unit tests and fuzz targets: a socketpair end stands
    /// in for a tap).
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn from_file_for_tests(file: File, mtu: u16) -> Tap {
        Tap {
            file,
            name: "test".into(),
            mtu,
            vnet_hdr: false,
        }
    }

    /// Another descriptor on the same tap, for a second thread (the hvt net ring's).
    pub fn try_clone(&self) -> io::Result<Tap> {
        Ok(Tap {
            file: self.file.try_clone()?,
            name: self.name.clone(),
            mtu: self.mtu,
            vnet_hdr: self.vnet_hdr,
        })
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

    /// Reads one frame; `Ok(None)` when none is waiting (EAGAIN or end of file; an interrupted
    /// read is retried).
    pub fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            return match self.file.read(buf) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                // Not "no frame": with an edge-triggered poll that would leave one waiting.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Writes one whole frame with a single write(2); a short write is an error.
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

#[cfg(test)]
mod tests {
    /// Records the running test (the harness names its thread after it) as not run here.
    fn not_run(reason: &str) {
        let test = std::thread::current().name().unwrap_or("a tap test").to_string();
        crate::test_report::report_not_run(&test, reason);
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn test_the_spelled_out_requests_are_libcs() {
        assert_eq!(
            (TUNSETIFF, TUNGETIFF, TUNSETPERSIST),
            (libc::TUNSETIFF, libc::TUNGETIFF, libc::TUNSETPERSIST)
        );
    }

    use vmm_sys_util::ioctl::ioctl_with_val;

    use super::*;
    use crate::config::MacAddr;

    /// A fresh interface name that no other test (or engineer) uses.
    fn random_name() -> String {
        let m = MacAddr::random().0;
        format!("uk{:02x}{:02x}{:02x}{:02x}{:02x}", m[1], m[2], m[3], m[4], m[5])
    }

    /// `/dev/net/tun` attached to a new tap `name` with `flags`, left down; `None` (the test is
    /// skipped) where taps cannot be created (no /dev/net/tun, no CAP_NET_ADMIN).
    fn raw_tap(name: &str, flags: i16, nonblock: bool) -> Option<File> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if nonblock {
            opts.custom_flags(libc::O_NONBLOCK);
        }
        let file = match opts.open("/dev/net/tun") {
            Ok(f) => f,
            Err(e) => {
                not_run(&format!("/dev/net/tun: {e}"));
                return None;
            }
        };
        let mut req = IfReq::new(name);
        req.set_short(flags);
        if let Err(e) = ifreq_ioctl(&file, TUNSETIFF, &mut req) {
            not_run(&format!("no taps can be created here (TUNSETIFF: {e})"));
            return None;
        }
        Some(file)
    }

    /// `TUNSETPERSIST`, `_IOW('T', 203, int)`, spelled out as TUNSETIFF is (musl's libc crate
    /// types ioctl requests as `c_int`).
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

    fn set_persist(file: &File, on: bool) {
        // SAFETY: TUNSETPERSIST takes its argument by value; no memory is passed.
        let rc = unsafe { ioctl_with_val(file, TUNSETPERSIST, libc::c_ulong::from(on)) };
        assert_eq!(rc, 0, "TUNSETPERSIST: {}", io::Error::last_os_error());
    }

    fn fd_flags(fd: RawFd) -> i32 {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        i32::from_str_radix(flags, 8).unwrap()
    }

    #[test]
    fn test_ifreq_matches_struct_ifreq() {
        assert_eq!(size_of::<IfReq>(), 40);
        let mut req = IfReq::new("a-very-long-interface-name");
        assert_eq!(req.name(), "a-very-long-int");
        req.set_short(IFF_TAP | IFF_NO_PI);
        assert_eq!(req.short(), 0x1002);
    }

    #[test]
    fn test_open_missing_interface() {
        let name = random_name();
        let err = Tap::open(&name).unwrap_err();
        assert_eq!(err.to_string(), format!("{name}: no such interface"));
    }

    #[test]
    fn test_open_refuses_a_down_tap() {
        let name = random_name();
        let Some(_tap) = raw_tap(&name, IFF_TAP | IFF_NO_PI, true) else {
            return;
        };
        let err = Tap::open(&name).unwrap_err();
        assert_eq!(err.to_string(), format!("{name}: interface is down"));
    }

    #[test]
    fn test_open_refuses_an_interface_that_is_not_a_tap() {
        match interface_flags("lo") {
            Ok(flags) if flags & IFF_UP != 0 => {}
            _ => {
                not_run("no loopback interface up here");
                return;
            }
        }
        let err = Tap::open("lo").unwrap_err();
        assert_eq!(err.to_string(), "lo: not a single-queue tap interface");
    }

    #[test]
    fn test_create_then_open_an_up_tap() {
        let name = random_name();
        let Some(probe) = raw_tap(&name, IFF_TAP | IFF_NO_PI, true) else {
            return;
        };
        drop(probe);
        /// Removes the persistent tap however the test ends.
        struct Unpersist(String);
        impl Drop for Unpersist {
            fn drop(&mut self) {
                if let Some(f) = raw_tap(&self.0, IFF_TAP | IFF_NO_PI, true) {
                    set_persist(&f, false);
                }
            }
        }
        // Made before `created`, so dropped after it (when the tap is free to reopen), also when
        // an assertion below fails.
        let _cleanup = Unpersist(name.clone());
        let (created, created_name) = create(&name, 1400, false).unwrap();
        assert_eq!(created_name, name);
        set_persist(&created, true);
        // Created down, for its queueing to be set first.
        assert!(matches!(Tap::open(&name), Err(TapError::Down(_))));
        bring_up(&name).unwrap();
        assert_eq!(interface_mtu(&name).unwrap(), 1400);
        assert_ne!(hw_addr(&name).unwrap(), [0; 6]);
        // Attached elsewhere: the tap is busy.
        let busy = Tap::open(&name).unwrap_err().to_string();
        assert!(busy.starts_with(&format!("{name}: TUNSETIFF: ")), "{busy}");
        drop(created);
        let mut tap = Tap::open(&name).unwrap();
        assert_eq!((tap.name(), tap.mtu()), (name.as_str(), 1400));
        let flags = fd_flags(tap.raw_fd());
        assert_eq!(flags & (libc::O_NONBLOCK | libc::O_CLOEXEC), libc::O_NONBLOCK | libc::O_CLOEXEC);
        // Reads never block: once the frames the host's stack sent to the up tap (IPv6 router
        // solicitations and MLD reports, where IPv6 is on) are drained, a read answers None.
        let mut buf = [0u8; 2048];
        let drained = (0..64).find(|_| tap.read_frame(&mut buf).unwrap().is_none());
        assert!(drained.is_some(), "a read of an idle tap never answered None");
    }

    #[test]
    fn test_from_fd_duplicates_a_tap_fd() {
        let name = random_name();
        let Some(file) = raw_tap(&name, IFF_TAP | IFF_NO_PI, false) else {
            return;
        };
        let fd = file.as_raw_fd();
        let mut tap = Tap::from_fd(fd).unwrap();
        assert_eq!((tap.name(), tap.mtu()), (name.as_str(), 1500));
        assert_ne!(tap.raw_fd(), fd);
        assert_eq!(fd_flags(tap.raw_fd()) & libc::O_CLOEXEC, libc::O_CLOEXEC);
        // Non-blocking now (shared with the original), so an empty tap reads as "no frame".
        assert_eq!(fd_flags(fd) & libc::O_NONBLOCK, libc::O_NONBLOCK);
        let mut buf = [0u8; 2048];
        assert_eq!(tap.read_frame(&mut buf).unwrap(), None);
        // The caller's fd stays open and attached after the tap goes away.
        drop(tap);
        let mut req = IfReq::default();
        ifreq_ioctl(&file, TUNGETIFF, &mut req).unwrap();
        assert_eq!(req.name(), name);
    }

    #[test]
    fn test_from_fd_refuses_what_is_not_a_plain_tap() {
        let (r, _w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        assert_eq!(
            Tap::from_fd(fd).unwrap_err().to_string(),
            format!("@{fd}: not a tap device file descriptor")
        );
        let err = Tap::from_fd(1_000_000).unwrap_err().to_string();
        assert!(err.starts_with("@1000000: "), "{err}");
        // A tap with virtio-net headers would hand the guest 10 or 12 extra bytes per frame.
        let name = random_name();
        let Some(vnet) = raw_tap(&name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true) else {
            return;
        };
        let fd = vnet.as_raw_fd();
        assert_eq!(
            Tap::from_fd(fd).unwrap_err().to_string(),
            format!("@{fd}: tap must be set up with IFF_NO_PI and without IFF_VNET_HDR")
        );
        // A tun (layer 3) is not a tap.
        let name = random_name();
        let Some(tun) = raw_tap(&name, 0x1 | IFF_NO_PI, true) else { return };
        assert!(matches!(Tap::from_fd(tun.as_raw_fd()), Err(TapError::NotTap(_))));
    }

    #[test]
    fn test_vnet_header_taps_are_for_virtio_only() {
        let name = random_name();
        let created = match create(&name, 1500, true) {
            Ok((f, _)) => f,
            Err(e) => {
                not_run(&format!("cannot create taps here: {e}"));
                return;
            }
        };
        let fd = created.as_raw_fd();
        assert!(matches!(
            Tap::open_for(&NetBackend::Fd(fd), GuestKind::Hvt),
            Err(TapError::FrameHeaders(_))
        ));
        let tap = Tap::open_for(&NetBackend::Fd(fd), GuestKind::Linux).unwrap();
        assert!(tap.vnet_hdr());
        assert_eq!((tap.name(), tap.mtu()), (name.as_str(), 1500));
        tap.set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6).unwrap();
        // A plain tap is taken by both, without a header.
        let plain_name = random_name();
        let (plain, _) = create(&plain_name, 1500, false).unwrap();
        assert!(
            !Tap::open_for(&NetBackend::Fd(plain.as_raw_fd()), GuestKind::Linux)
                .unwrap()
                .vnet_hdr()
        );
    }
}
