//! `unik boot` arguments, in clap's spelling; `solo5.rs` maps solo5-hvt's spelling onto them.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use vmm::{BlockConfig, MacAddr, NetBackend, NetConfig, VmConfig};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  unik boot hello.hvt                                 run with 512 MiB, console on stdout
  unik boot --mem=64 hello.hvt exit=3                 64 MiB; guest arguments follow the kernel
  unik boot --net:service0=tap0 net.hvt               attach manifest net device 'service0' to tap0
  unik boot --net:service0=@3 net.hvt 3<>/dev/net/tun an already-open tap file descriptor
  unik boot --net-mac:service0=02:00:00:00:00:01 --net:service0=tap0 net.hvt
  unik boot --block:storage=disk.img --block-sector-size:storage=4096 blk.hvt
  unik boot --block storage=disk.img -- blk.hvt --guest-flag
  unik boot --cpus=2 --initrd=initrd.img bzImage console=ttyS0   a Linux-boot-protocol kernel
  unik boot --block-ro:root=rootfs.img --net:eth0=tap0 vmlinux     virtio-blk (read-only), virtio-net
  unik boot --initrd=initrd.img kernel_qemu-x86_64 netdev.ip=...     a multiboot kernel (Unikraft's QEMU image)

How KERNEL is recognised: an ELF with Solo5's marks (a Solo5 note, solo5's interpreter, a
.note.solo5.* section) is a solo5-hvt unikernel, never anything else; a bzImage (HdrS at 0x202)
boots at its 64-bit entry; a 64-bit ELF with a PVH note (Xen, type 18) at its PVH entry, even if
it also has a multiboot header; a file with the multiboot v1 magic 0x1BADB002 (32-bit aligned,
first 8 KiB) as a multiboot kernel (by the header's address fields, flag 16, or as a 32-bit
ELF); any other 64-bit ELF at its 64-bit entry with boot_params.

Every device an hvt unikernel's manifest declares must be attached; a Linux-boot-protocol
kernel gets one virtio-mmio device per --net/--block, in the order given, announced on its
command line (virtio_mmio.device=...), and the serial console (ttyS0) on stdout. The exit status is the
guest's (255 when it aborts); 1 means unik itself failed, with the reason on stderr.
solo5-hvt's spelling (--net:NAME=IFACE) and clap's (--net NAME=IFACE) are both accepted.")]
pub struct BootArgs {
    /// Guest memory in MiB (rounded down to 2 MiB, at most 4096).
    #[arg(long, value_name = "MiB", default_value_t = vmm::config::DEFAULT_MEM_MIB)]
    pub mem: u64,

    /// Attach manifest network device NAME to the existing tap interface IFACE (must be up), or
    /// to the already-open tap file descriptor FD. Repeat for several devices.
    #[arg(long = "net", value_name = "NAME=IFACE|@FD", value_parser = parse_net)]
    pub nets: Vec<(String, NetBackend)>,

    /// Guest MAC address of network device NAME (default: random, locally administered).
    #[arg(long = "net-mac", value_name = "NAME=MAC", value_parser = parse_mac)]
    pub net_macs: Vec<(String, MacAddr)>,

    /// Attach manifest block device NAME to the file PATH (opened read-write; its size must be a
    /// multiple of the sector size). Repeat for several devices.
    #[arg(long = "block", value_name = "NAME=PATH", value_parser = parse_block)]
    pub blocks: Vec<(String, PathBuf)>,

    /// Sector size of block device NAME: a power of two, at least 512 (default 512).
    #[arg(long = "block-sector-size", value_name = "NAME=SIZE", value_parser = parse_sector_size)]
    pub sector_sizes: Vec<(String, u16)>,

    /// Like --block, but opened read-only and offered to the guest as read-only (virtio-blk).
    #[arg(long = "block-ro", value_name = "NAME=PATH", value_parser = parse_block)]
    pub blocks_ro: Vec<(String, PathBuf)>,

    /// How KERNEL boots: hvt (solo5) or linux (bzImage, ELF vmlinux, PVH, multiboot). Default:
    /// detected from the image (an ELF with Solo5's marks is hvt, see below for the others).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<vmm::GuestKind>,

    /// Initial ramdisk for a Linux-boot-protocol kernel.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Number of vCPUs for a Linux-boot-protocol kernel (hvt guests have one).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u8,

    /// What the monitor's seccomp filters do with a system call they do not allow while the
    /// guest runs: on (the process dies, after a line naming the call), log (allowed, and logged
    /// by the kernel: to find a missing rule) or off (no filter; warns).
    #[arg(long, value_name = "on|log|off", default_value_t = vmm::seccomp::SeccompMode::On)]
    pub seccomp: vmm::seccomp::SeccompMode,

    /// Whether an hvt guest with a network device is offered solo5's shared-memory net ring
    /// (HVT_FEATURE_RING_IO): on (guests that know it use it, others keep to the NET hypercalls;
    /// 2 MiB above the guest's RAM hold the ring) or off (hypercalls only).
    #[arg(long, value_name = "on|off", default_value_t = vmm::NetRing::default())]
    pub net_ring: vmm::NetRing,

    /// Stop the guest if it runs longer than DURATION (a number with a unit: ms, s, m or h; a
    /// bare number is seconds) and exit with status 124, as timeout(1) does: for CI jobs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Serve a gdb remote stub on 127.0.0.1:PORT: the guest waits, stopped at its entry point,
    /// until gdb connects (`target remote :PORT`). solo5-hvt's spelling, `--gdb` alone (port
    /// 1234) and `--gdb-port=PORT`, works too. Anyone on this host who can connect to the port
    /// controls the guest.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb: Option<u16>,

    /// solo5-hvt's spelling of the --gdb port.
    #[arg(long, value_name = "PORT", hide = true, requires = "gdb", value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb_port: Option<u16>,

    /// When an hvt guest aborts (HALT with status 255) or faults, write an ELF core of it
    /// (registers and the memory it used) to DIR/core.KERNEL.PID, for `gdb KERNEL CORE`.
    #[arg(long, value_name = "DIR")]
    pub dumpcore: Option<PathBuf>,

    /// The kernel: a solo5-hvt unikernel, or a kernel that boots with the Linux boot protocol
    /// (bzImage, ELF vmlinux, PVH ELF) or multiboot (v1); see --kind.
    #[arg(value_name = "KERNEL")]
    pub kernel: PathBuf,

    /// Arguments passed to the unikernel, joined with spaces: at most 8191 characters for an hvt
    /// unikernel; a Linux kernel's own limit (its setup header's, else 4095) including the
    /// device announcements unik adds.
    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Splits `NAME=VALUE` and checks NAME as solo5 does: 1 to 67 ASCII letters or digits.
fn split_name(s: &str) -> Result<(String, &str), String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    if name.is_empty() || name.len() > 67 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("invalid device name '{name}': use 1 to 67 letters or digits"));
    }
    Ok((name.to_string(), value))
}

fn parse_net(s: &str) -> Result<(String, NetBackend), String> {
    let (name, value) = split_name(s)?;
    Ok((name, value.parse()?))
}

fn parse_mac(s: &str) -> Result<(String, MacAddr), String> {
    let (name, value) = split_name(s)?;
    Ok((name, value.parse()?))
}

pub(crate) fn parse_block(s: &str) -> Result<(String, PathBuf), String> {
    let (name, value) = split_name(s)?;
    if value.is_empty() {
        return Err(format!("missing path for block device '{name}'"));
    }
    Ok((name, PathBuf::from(value)))
}

/// Splits `NAME=SIZE`; the size's rule is the monitor's (`vmm::config::sector_size`).
fn parse_sector_size(s: &str) -> Result<(String, u16), String> {
    let (name, value) = split_name(s)?;
    let size: u16 = value
        .parse()
        .map_err(|_| format!("sector size '{value}' is not a number from 512 to 32768"))?;
    Ok((name, size))
}

/// A duration as `--timeout` takes it: a number (decimals allowed) and a unit, `ms`, `s`, `m` or
/// `h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a number and a unit, e.g. 30s or 500ms"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    std::time::Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}': the time limit must be above zero"))
}

impl TryFrom<BootArgs> for VmConfig {
    type Error = anyhow::Error;

    fn try_from(args: BootArgs) -> anyhow::Result<VmConfig> {
        for (name, _) in &args.net_macs {
            if !args.nets.iter().any(|(n, _)| n == name) {
                bail!("--net-mac:{name} given without --net:{name}");
            }
        }
        for (name, _) in &args.sector_sizes {
            if !args.blocks.iter().chain(&args.blocks_ro).any(|(n, _)| n == name) {
                bail!("--block-sector-size:{name} given without --block:{name}");
            }
        }
        let nets = args
            .nets
            .into_iter()
            .map(|(name, backend)| {
                let mac = args.net_macs.iter().rev().find(|(n, _)| *n == name).map(|(_, m)| *m);
                NetConfig { name, backend, mac }
            })
            .collect();
        let rw = args.blocks.into_iter().map(|b| (false, b));
        let blocks = rw
            .chain(args.blocks_ro.into_iter().map(|b| (true, b)))
            .map(|(read_only, (name, path))| {
                let sector_size = args.sector_sizes.iter().rev().find(|(n, _)| *n == name).map(|(_, s)| *s);
                BlockConfig {
                    name,
                    path,
                    sector_size,
                    read_only,
                }
            })
            .collect();
        Ok(VmConfig {
            kernel: args.kernel,
            cmdline: args.args,
            mem_mib: args.mem,
            nets,
            blocks,
            kind: args.kind,
            initrd: args.initrd,
            vcpus: args.cpus,
            seccomp: args.seccomp,
            roots: std::collections::BTreeMap::new(),
            names: std::collections::BTreeMap::new(),
            opened: None,
            timeout: args.timeout,
            gdb: args.gdb.map(|port| args.gdb_port.unwrap_or(port)),
            dumpcore: args.dumpcore,
            net_ring: args.net_ring,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, solo5::normalize_argv};

    fn parse(args: &[&str]) -> Result<VmConfig, String> {
        let argv = normalize_argv(std::iter::once("unik").chain(args.iter().copied()).map(Into::into).collect());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Boot(boot) = cli.command else {
            unreachable!("parsed a boot command line")
        };
        VmConfig::try_from(boot).map_err(|e| e.to_string())
    }

    #[test]
    fn test_solo5_spelling() {
        let cfg = parse(&[
            "boot",
            "--mem=64",
            "--net:service0=tap0",
            "--net-mac:service0=02:00:00:00:00:01",
            "--net:svc1=@7",
            "--block:storage=/tmp/d.img",
            "--block-sector-size:storage=4096",
            "k.hvt",
            "a",
            "--b",
        ])
        .unwrap();
        assert_eq!(cfg.mem_mib, 64);
        assert_eq!(cfg.kernel, PathBuf::from("k.hvt"));
        assert_eq!(cfg.cmdline, ["a", "--b"]);
        assert_eq!(
            cfg.nets[0],
            NetConfig {
                name: "service0".into(),
                backend: NetBackend::Tap("tap0".into()),
                mac: Some(MacAddr([2, 0, 0, 0, 0, 1]))
            }
        );
        assert_eq!(
            cfg.nets[1],
            NetConfig {
                name: "svc1".into(),
                backend: NetBackend::Fd(7),
                mac: None
            }
        );
        assert_eq!(
            cfg.blocks[0],
            BlockConfig {
                name: "storage".into(),
                path: "/tmp/d.img".into(),
                sector_size: Some(4096),
                read_only: false,
            }
        );
    }

    #[test]
    fn test_clap_spelling_and_double_dash() {
        let cfg = parse(&["boot", "--mem", "32", "--block", "d0=/x", "--", "k.hvt", "--mem=1"]).unwrap();
        assert_eq!(cfg.mem_mib, 32);
        assert_eq!(cfg.cmdline, ["--mem=1"]);
        assert_eq!(cfg.blocks.len(), 1);
    }

    #[test]
    fn test_debug_options_in_both_spellings() {
        let cfg = parse(&["boot", "--gdb", "4321", "--dumpcore", "/tmp/cores", "k.hvt"]).unwrap();
        assert_eq!(cfg.gdb, Some(4321));
        assert_eq!(cfg.dumpcore, Some(PathBuf::from("/tmp/cores")));
        // solo5-hvt: `--gdb` alone is port 1234, `--gdb-port` changes it.
        assert_eq!(parse(&["boot", "--gdb", "k.hvt"]).unwrap().gdb, Some(1234));
        assert_eq!(parse(&["boot", "--gdb", "--gdb-port=5555", "k.hvt"]).unwrap().gdb, Some(5555));
        assert_eq!(parse(&["boot", "k.hvt"]).unwrap().gdb, None);
    }

    #[test]
    fn test_defaults() {
        let cfg = parse(&["boot", "k.hvt"]).unwrap();
        assert_eq!(cfg.mem_mib, 512);
        assert!(cfg.cmdline.is_empty() && cfg.nets.is_empty() && cfg.blocks.is_empty());
    }

    #[test]
    fn test_rejects_bad_input() {
        let cases: &[(&[&str], &str)] = &[
            (&["boot"], "KERNEL"),
            (&["boot", "--net:bad-name=tap0", "k"], "invalid device name"),
            (&["boot", "--net:service0", "k"], "NAME=VALUE"),
            (
                &["boot", "--block-sector-size:d=big", "--block:d=/x", "k"],
                "sector size 'big' is not a number",
            ),
            (&["boot", "--block-sector-size:d=4096", "k"], "without --block:d"),
            (&["boot", "--net-mac:n=02:00:00:00:00:01", "k"], "without --net:n"),
            (&["boot", "--net-mac:n=zz", "--net:n=tap0", "k"], "invalid MAC"),
            (&["boot", "--mem=lots", "k"], "invalid value"),
            (&["boot", "--frobnicate", "k"], "unexpected argument"),
            (&["boot", "--gdb=0", "k"], "--gdb"),
            (&["boot", "--gdb=port", "k"], "--gdb"),
            (&["boot", "--gdb-port=7", "k"], "--gdb"),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
