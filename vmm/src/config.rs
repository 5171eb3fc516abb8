//! What to boot: the single description shared by `unik boot` and the OCI runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Default guest memory, in MiB (solo5-hvt's default).
pub const DEFAULT_MEM_MIB: u64 = 512;
/// The most vCPUs a Linux-boot guest gets (hvt guests have one).
pub const MAX_VCPUS: u8 = 64;
/// The sector size of a block device unless one is given.
pub const DEFAULT_SECTOR_SIZE: u16 = 512;

/// A sector size that is not a power of two of at least 512 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Block size must be a multiple of 2 greater than or equal 512 (got {0})")]
pub struct SectorSizeError(pub u64);

/// The sector size of a block device: `requested`, or [`DEFAULT_SECTOR_SIZE`]; a power of two of
/// at least 512 bytes (solo5's rule, and virtio-blk's `blk_size`).
pub fn sector_size(requested: Option<u16>) -> Result<u16, SectorSizeError> {
    let size = requested.unwrap_or(DEFAULT_SECTOR_SIZE);
    if size < 512 || !size.is_power_of_two() {
        return Err(SectorSizeError(u64::from(size)));
    }
    Ok(size)
}

/// A virtual machine to build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Path of the kernel: a solo5-hvt unikernel, or a Linux-boot-protocol kernel.
    pub kernel: PathBuf,
    /// Guest command-line arguments, joined with single spaces for the guest.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Guest memory in MiB.
    #[serde(default = "default_mem_mib")]
    pub mem_mib: u64,
    /// Network devices, attached to manifest entries by name.
    #[serde(default)]
    pub nets: Vec<NetConfig>,
    /// Block devices, attached to manifest entries by name.
    #[serde(default)]
    pub blocks: Vec<BlockConfig>,
    /// The kernel's boot protocol; detected from the image when absent.
    #[serde(default)]
    pub kind: Option<GuestKind>,
    /// Initial ramdisk (Linux boot protocol only).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Number of vCPUs (Linux boot protocol only; hvt guests have one).
    #[serde(default = "default_vcpus")]
    pub vcpus: u8,
    /// A container's files (kernel, initrd, disks), by path, and where each is opened: inside
    /// the rootfs or a bind-mounted directory, which it can never leave, or at its host path (a
    /// bind-mounted file). Empty for `unik boot`: host paths. See [`crate::host::files::Root`].
    #[serde(default)]
    pub roots: BTreeMap<PathBuf, crate::host::files::FileRoot>,
    /// How the container names each of those files (`/app.hvt`, not the engine's overlay
    /// directory on the host), for messages: [`as_container_names`].
    #[serde(default)]
    pub names: BTreeMap<PathBuf, String>,
    /// The files of [`VmConfig::files`], when they were opened before (by `create`, where
    /// [`VmConfig::roots`] says) and handed over: the VM then opens nothing by path.
    #[serde(skip)]
    pub opened: Option<std::sync::Arc<crate::host::files::Opened>>,
    /// What the seccomp filters do with a system call they do not allow while the guest runs.
    #[serde(default)]
    pub seccomp: crate::seccomp::SeccompMode,
    /// How long the guest may run; then it is stopped ([`crate::ExitStatus::TimedOut`]).
    #[serde(default)]
    pub timeout: Option<std::time::Duration>,
    /// Serve a gdb remote stub on 127.0.0.1 at this port; the guest waits for gdb before its
    /// first instruction ([`crate::debug::gdb`]).
    #[serde(default)]
    pub gdb: Option<u16>,
    /// Write an ELF core of an hvt guest that aborts or faults into this directory
    /// ([`crate::debug::coredump`]).
    #[serde(default)]
    pub dumpcore: Option<PathBuf>,
    /// Whether an hvt guest with a network device is offered the shared-memory net ring.
    #[serde(default)]
    pub net_ring: NetRing,
}

/// Whether an hvt guest with a network device is offered solo5's shared-memory net ring
/// (`HVT_FEATURE_RING_IO`), or only the NET_READ / NET_WRITE hypercalls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetRing {
    /// Offered (guests that know the ring use it; others keep to the hypercalls).
    On,
    /// Not offered: hypercalls only, and no RAM reserved for the ring. The default: on this
    /// project's host the hypercalls move more frames per second at less CPU per frame
    /// (docs/BENCHMARKS.md).
    #[default]
    Off,
}

impl FromStr for NetRing {
    type Err = String;

    fn from_str(s: &str) -> Result<NetRing, String> {
        match s {
            "on" => Ok(NetRing::On),
            "off" => Ok(NetRing::Off),
            _ => Err(format!("'{s}': expected on or off")),
        }
    }
}

impl fmt::Display for NetRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetRing::On => "on",
            NetRing::Off => "off",
        })
    }
}

fn default_mem_mib() -> u64 {
    DEFAULT_MEM_MIB
}

fn default_vcpus() -> u8 {
    1
}

/// How a kernel boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    /// A solo5-hvt unikernel: hypercalls, manifest devices.
    Hvt,
    /// The Linux boot protocol (bzImage, ELF vmlinux, PVH): virtio-mmio devices, serial console.
    Linux,
}

impl GuestKind {
    /// Whether this kind's network taps carry a 12-byte virtio-net header before each frame
    /// (`IFF_VNET_HDR`): a Linux-boot guest's virtio-net card passes the header through, with
    /// its offloads; solo5's hvt net has no header. The one place this is decided: the runtime
    /// creates a container's tap by it, and the monitor opens or takes a tap by it.
    pub fn tap_vnet_hdr(self) -> bool {
        match self {
            GuestKind::Hvt => false,
            GuestKind::Linux => true,
        }
    }
}

impl FromStr for GuestKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hvt" | "solo5" => Ok(GuestKind::Hvt),
            "linux" => Ok(GuestKind::Linux),
            _ => Err(format!("unknown guest kind '{s}': expected hvt or linux")),
        }
    }
}

impl VmConfig {
    /// A configuration with defaults for everything but the kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            kernel: kernel.into(),
            cmdline: Vec::new(),
            mem_mib: DEFAULT_MEM_MIB,
            nets: Vec::new(),
            blocks: Vec::new(),
            kind: None,
            initrd: None,
            vcpus: 1,
            seccomp: crate::seccomp::SeccompMode::On,
            roots: BTreeMap::new(),
            names: BTreeMap::new(),
            opened: None,
            timeout: None,
            gdb: None,
            dumpcore: None,
            net_ring: NetRing::default(),
        }
    }

    /// The tasks (threads) the monitor's process has while this VM runs, which a pids limit
    /// must leave room for: the caller's thread (an hvt guest's only vCPU, or a Linux-boot
    /// guest's vCPU 0), the net ring's thread of an hvt guest with a network device, one more
    /// thread per further vCPU and the device thread of a Linux-boot
    /// guest (or one whose kind is still to be detected), and KVM's own worker for the VM (the
    /// NX huge page recovery task, which Linux starts at the first `KVM_RUN` in the VM creator's
    /// cgroup; without room for it `KVM_RUN` fails with EAGAIN).
    pub fn monitor_tasks(&self) -> u32 {
        const KVM_WORKER: u32 = 1;
        KVM_WORKER
            + match self.kind {
                // The net ring's thread, when the guest has a network device to use it with.
                Some(GuestKind::Hvt) => 1 + u32::from(self.net_ring == NetRing::On && !self.nets.is_empty()),
                _ => u32::from(self.vcpus) + 1,
            }
    }

    /// Where this VM's files are looked up.
    pub fn root(&self) -> crate::host::files::Root<'_> {
        match &self.opened {
            Some(opened) => crate::host::files::Root::Opened(opened),
            None if self.roots.is_empty() => crate::host::files::Root::Host,
            None => crate::host::files::Root::Files(&self.roots),
        }
    }

    /// Every file the VM opens by path, in a fixed order, with whether it is opened for writing:
    /// the kernel, the initrd, each disk.
    pub fn files(&self) -> Vec<(&Path, bool)> {
        let mut out = vec![(self.kernel.as_path(), false)];
        out.extend(self.initrd.as_deref().map(|p| (p, false)));
        out.extend(self.blocks.iter().map(|b| (b.path.as_path(), !b.read_only)));
        out
    }
}

/// `text` (an error message) with each container file's host path replaced by the path the
/// container knows it by (`names`, as [`VmConfig::names`]); longer paths first, so a file's name
/// never replaces part of another's.
pub fn as_container_names(names: &BTreeMap<PathBuf, String>, text: &str) -> String {
    let mut pairs: Vec<(String, &str)> = names
        .iter()
        .map(|(host, inside)| (host.display().to_string(), inside.as_str()))
        .filter(|(host, _)| !host.is_empty())
        .collect();
    pairs.sort_by_key(|(host, _)| std::cmp::Reverse(host.len()));
    pairs
        .iter()
        .fold(text.to_string(), |t, (host, inside)| t.replace(host.as_str(), inside))
}

/// A network device: a manifest name and the host tap behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The manifest entry name (solo5 device name).
    pub name: String,
    /// The host side.
    pub backend: NetBackend,
    /// The guest MAC address; random and locally administered when absent.
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

/// Where a network device's frames go on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetBackend {
    /// An existing tap interface, opened by name.
    Tap(String),
    /// An already-open tap file descriptor (solo5's `@FD`).
    Fd(RawFd),
}

impl FromStr for NetBackend {
    type Err = String;

    /// Parses solo5's spelling: `IFACE` or `@FD`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(fd) = s.strip_prefix('@') {
            return fd
                .parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= 0)
                .map(NetBackend::Fd)
                .ok_or_else(|| format!("invalid file descriptor '{s}': expected @N with N >= 0"));
        }
        if s.is_empty() || s.len() >= libc::IFNAMSIZ || s.contains(['/', ' ', '\0']) {
            return Err(format!("invalid interface name '{s}'"));
        }
        Ok(NetBackend::Tap(s.to_string()))
    }
}

impl fmt::Display for NetBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetBackend::Tap(name) => f.write_str(name),
            NetBackend::Fd(fd) => write!(f, "@{fd}"),
        }
    }
}

/// A block device: a manifest name and the host file behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// The manifest entry name (solo5 device name).
    pub name: String,
    /// The backing file, opened read-write unless `read_only`.
    pub path: PathBuf,
    /// Sector size in bytes: a power of two, at least 512 (default 512).
    #[serde(default)]
    pub sector_size: Option<u16>,
    /// Open the file read-only and tell the guest so (virtio-blk only; hvt has no such flag).
    #[serde(default)]
    pub read_only: bool,
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random unicast, locally administered address (solo5's rule).
    pub fn random() -> MacAddr {
        let mut mac = [0u8; 6];
        // getrandom(2) on a 6-byte buffer never blocks once the pool is initialised and never
        // returns short; a failure falls back to the clock, which is still unique enough for a MAC.
        // The system call itself: the static musl build links no `getrandom` function.
        // SAFETY: the pointer and length describe `mac`, which outlives the call.
        let n = unsafe { libc::syscall(libc::SYS_getrandom, mac.as_mut_ptr(), mac.len(), 0) };
        if n != 6 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
                ^ u128::from(std::process::id());
            mac.copy_from_slice(&nanos.to_le_bytes()[..6]);
        }
        mac[0] = (mac[0] & 0xfe) | 0x02;
        MacAddr(mac)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("invalid MAC address '{s}': expected six hex bytes like 02:00:00:00:00:01");
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl From<MacAddr> for String {
    fn from(mac: MacAddr) -> String {
        mac.to_string()
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mac_parse_and_display_round_trip() {
        let mac: MacAddr = "02:0a:FF:00:1:23".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x0a, 0xff, 0x00, 0x01, 0x23]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:01:23");
    }

    #[test]
    fn test_mac_rejects_malformed() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "0g:00:00:00:00:00",
            "002:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn test_random_mac_is_unicast_and_local() {
        for _ in 0..32 {
            let mac = MacAddr::random();
            assert_eq!(mac.0[0] & 0x01, 0, "multicast bit set in {mac}");
            assert_eq!(mac.0[0] & 0x02, 0x02, "local bit clear in {mac}");
        }
    }

    #[test]
    fn test_net_backend_parse() {
        assert_eq!("tap0".parse::<NetBackend>().unwrap(), NetBackend::Tap("tap0".into()));
        assert_eq!("@3".parse::<NetBackend>().unwrap(), NetBackend::Fd(3));
        for bad in ["", "@", "@-1", "@x", "a/b", "0123456789abcdef"] {
            assert!(bad.parse::<NetBackend>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn test_vm_config_json_round_trip() {
        let mut cfg = VmConfig::new("/k.hvt");
        cfg.nets.push(NetConfig {
            name: "service0".into(),
            backend: NetBackend::Fd(4),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        });
        cfg.blocks.push(BlockConfig {
            name: "storage".into(),
            path: "/d.img".into(),
            sector_size: Some(4096),
            read_only: true,
        });
        cfg.kind = Some(GuestKind::Linux);
        cfg.initrd = Some("/initrd".into());
        cfg.vcpus = 2;
        cfg.roots = BTreeMap::from([
            ("/k.hvt".into(), crate::host::files::FileRoot::Dir("/".into())),
            ("/d.img".into(), crate::host::files::FileRoot::Host),
        ]);
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<VmConfig>(&json).unwrap(), cfg);
        let err = serde_json::from_str::<VmConfig>(r#"{"kernel":"/k","bogus":1}"#).unwrap_err();
        assert!(err.to_string().starts_with("unknown field `bogus`"), "{err}");
        // Older vm.json files (no kind, initrd, vcpus) still parse, with the defaults.
        let old: VmConfig = serde_json::from_str(r#"{"kernel":"/k"}"#).unwrap();
        assert_eq!((old.kind, old.initrd, old.vcpus), (None, None, 1));
        assert_eq!("linux".parse::<GuestKind>(), Ok(GuestKind::Linux));
        assert_eq!("solo5".parse::<GuestKind>(), Ok(GuestKind::Hvt));
        assert!("qemu".parse::<GuestKind>().unwrap_err().contains("expected hvt or linux"));
    }

    #[test]
    fn test_sector_size_rule() {
        assert_eq!(sector_size(None), Ok(512));
        assert_eq!(sector_size(Some(4096)), Ok(4096));
        assert_eq!(sector_size(Some(1000)), Err(SectorSizeError(1000)));
        assert_eq!(sector_size(Some(256)), Err(SectorSizeError(256)));
        assert_eq!(
            SectorSizeError(0).to_string(),
            "Block size must be a multiple of 2 greater than or equal 512 (got 0)"
        );
    }

    #[test]
    fn test_messages_name_a_containers_files_as_it_knows_them() {
        let names = BTreeMap::from([
            (PathBuf::from("/var/lib/docker/overlay2/abc/merged/app.hvt"), "/app.hvt".to_string()),
            (
                PathBuf::from("/var/lib/docker/overlay2/abc/merged/app.hvt.img"),
                "/data/disk.img".to_string(),
            ),
        ]);
        assert_eq!(
            as_container_names(
                &names,
                "/var/lib/docker/overlay2/abc/merged/app.hvt.img: too small; kernel /var/lib/docker/overlay2/abc/merged/app.hvt: bad"
            ),
            "/data/disk.img: too small; kernel /app.hvt: bad"
        );
        assert_eq!(as_container_names(&BTreeMap::new(), "as is"), "as is");
    }
}
