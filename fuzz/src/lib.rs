//! What the fuzz targets share: a reader that turns fuzz input into operands, a per-process
//! scratch directory, disk files and a socket standing in for a tap, and small images (a valid
//! solo5-hvt ELF, its manifest, a bzImage header) for the bundle rootfs and the seed corpora.

use std::fs::{File, OpenOptions};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vmm::host::{Disk, Tap};

/// Reads fixed-size little-endian operands off the front of the fuzz input; past its end every
/// read yields zeros, so any input decodes to some sequence of operations.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// The next byte, `None` at the end of the input (the operation loops stop there).
    pub fn op(&mut self) -> Option<u8> {
        (!self.is_empty()).then(|| self.u8())
    }

    /// A byte.
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

struct Scratch(PathBuf);

extern "C" fn remove_scratch() {
    if let Some(s) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(&s.0);
    }
}

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

/// A directory private to this process, removed when it exits (libFuzzer ends with `exit`).
pub fn scratch() -> &'static Path {
    &SCRATCH
        .get_or_init(|| {
            let dir = tempfile::Builder::new().prefix("unik-fuzz-").tempdir().expect("scratch directory");
            // SAFETY: registers a plain `extern "C" fn()` that only touches a static.
            unsafe { libc::atexit(remove_scratch) };
            Scratch(dir.keep())
        })
        .0
}

/// A zero-filled file of `size` bytes at `<scratch>/<name>` (emptied first, so every run starts
/// from the same contents), opened as a [`Disk`].
pub fn disk(name: &str, size: u64, read_only: bool) -> Disk {
    let path = scratch().join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("create disk file");
    file.set_len(size).expect("size disk file");
    drop(file);
    Disk::open_with(&path, read_only).expect("open disk")
}

/// A tap stand-in: one end of a non-blocking datagram socket pair, and the other end (the
/// "network") to inject frames and drain what the guest sends.
pub fn tap(mtu: u16) -> (Tap, UnixDatagram) {
    let (a, b) = UnixDatagram::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    let tap = Tap::from_file_for_tests(File::from(std::os::fd::OwnedFd::from(a)), mtu);
    (tap, b)
}

/// Manifest entry types (`enum mft_type`).
pub const MFT_BLOCK: u32 = 1;
/// `MFT_DEV_NET_BASIC`.
pub const MFT_NET: u32 = 2;
const MFT_RESERVED: u32 = 0x4000_0000;
const ABI1: u32 = 0x3149_4241;
const MFT1: u32 = 0x3154_464d;

/// A `struct mft` image: the reserved entry 0, then `devices` (name, type).
pub fn manifest(devices: &[(&str, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&u32::try_from(devices.len() + 1).expect("count").to_le_bytes());
    for (name, kind) in std::iter::once(&("", MFT_RESERVED)).chain(devices) {
        let mut e = [0u8; 104];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[68..72].copy_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&e);
    }
    out
}

/// A Solo5 note: 6-byte owner padded to 8, descriptor aligned to `align` (the pad counts in
/// `n_descsz`, as solo5's linker script lays them out).
fn note(ntype: u32, desc: &[u8], align: usize) -> Vec<u8> {
    let pad = 20usize.next_multiple_of(align) - 20;
    let mut n = Vec::new();
    n.extend_from_slice(&6u32.to_le_bytes());
    n.extend_from_slice(&u32::try_from(desc.len() + pad).expect("size").to_le_bytes());
    n.extend_from_slice(&ntype.to_le_bytes());
    n.extend_from_slice(b"Solo5\0\0\0");
    n.resize(n.len() + pad, 0);
    n.extend_from_slice(desc);
    n
}

/// A minimal valid solo5-hvt executable for x86_64: one read+exec PT_LOAD at 0x100000 holding
/// `code`, the ABI1 note (hvt, ABI 2) and an MFT1 note declaring `devices`.
pub fn hvt_elf(devices: &[(&str, u32)], code: &[u8]) -> Vec<u8> {
    let abi = note(ABI1, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4);
    let mft = note(MFT1, &manifest(devices), 8);
    let phoff = 64usize;
    let data = phoff + 3 * 56;
    let code_at = data;
    let abi_at = code_at + code.len().next_multiple_of(8);
    let mft_at = abi_at + abi.len().next_multiple_of(8);
    let mut out = vec![0u8; data];
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
    out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&3u16.to_le_bytes());
    // (type, flags, offset, vaddr, filesz, memsz, align); PF_R | PF_X = 5, PF_R = 4.
    let phdrs: [(u32, u32, usize, u64, usize, u64, u64); 3] = [
        (1, 5, code_at, 0x10_0000, code.len(), 0x1000, 0x1000),
        (4, 4, abi_at, 0, abi.len(), 0, 4),
        (4, 4, mft_at, 0, mft.len(), 0, 8),
    ];
    for (i, (ty, flags, off, vaddr, filesz, memsz, align)) in phdrs.into_iter().enumerate() {
        let p = phoff + i * 56;
        out[p..p + 4].copy_from_slice(&ty.to_le_bytes());
        out[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
        out[p + 8..p + 16].copy_from_slice(&(off as u64).to_le_bytes());
        out[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
        out[p + 24..p + 32].copy_from_slice(&vaddr.to_le_bytes());
        out[p + 32..p + 40].copy_from_slice(&(filesz as u64).to_le_bytes());
        out[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        out[p + 48..p + 56].copy_from_slice(&align.to_le_bytes());
    }
    for (at, bytes) in [(code_at, code), (abi_at, &abi[..]), (mft_at, &mft[..])] {
        out.resize(at, 0);
        out.extend_from_slice(bytes);
    }
    out
}

/// The first bytes of a bzImage: the boot sector and the setup header's "HdrS" magic.
pub fn bzimage_head() -> Vec<u8> {
    let mut out = vec![0u8; 0x280];
    out[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    out[0x202..0x206].copy_from_slice(b"HdrS");
    out[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    out
}

/// The bundle directory of the `bundle` target, made once per process: `config.json` is the
/// target's to write; the rootfs holds two hvt kernels (`hello.hvt` with no devices, `dev.hvt`
/// declaring block `storage` and net `service0`), a bzImage head, a 4 KiB disk image, a
/// script, and symlinks: `/k` to a kernel, `/bin/k` relative to one, `/up` out of the rootfs
/// and `/loop` to itself.
pub fn bundle_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("bundle");
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        let files: [(&str, Vec<u8>); 5] = [
            ("hello.hvt", hvt_elf(&[], &[0xf4; 16])),
            ("dev.hvt", hvt_elf(&[("storage", MFT_BLOCK), ("service0", MFT_NET)], &[0xf4; 16])),
            ("bzImage", bzimage_head()),
            ("disk.img", vec![0; 4096]),
            ("bin/sh", b"#!/bin/sh\nexit 0\n".to_vec()),
        ];
        for (name, data) in files {
            std::fs::write(rootfs.join(name), data).expect("rootfs file");
        }
        for (name, target) in [("k", "/hello.hvt"), ("up", "../../.."), ("loop", "loop"), ("bin/k", "../dev.hvt")] {
            std::os::unix::fs::symlink(target, rootfs.join(name)).expect("symlink");
        }
        dir
    })
}

/// Writes one `bundle` target input into [`bundle_dir`]: `config.json`, then optionally (after
/// a 0xff byte) the rootfs's `unik.json` and (after another) its `urunc.json`; files the input
/// does not have are removed.
pub fn write_bundle(data: &[u8]) -> &'static Path {
    let dir = bundle_dir();
    let rootfs = dir.join("rootfs");
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let config = parts.next().unwrap_or_default();
    std::fs::write(dir.join("config.json"), config).expect("config.json");
    for name in ["unik.json", "urunc.json"] {
        match parts.next() {
            Some(json) => std::fs::write(rootfs.join(name), json).expect("rootfs json"),
            None => {
                let _ = std::fs::remove_file(rootfs.join(name));
            }
        }
    }
    dir
}

pub mod seeds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_generated_images_are_what_they_claim() {
        let elf = hvt_elf(&[("storage", MFT_BLOCK), ("service0", MFT_NET)], &[0xf4; 16]);
        let exe = vmm::loader::Executable::parse(&elf, 62).unwrap();
        let m = vmm::hvt::Manifest::parse(exe.manifest_note()).unwrap();
        assert_eq!(m.entries().len(), 3);
        assert_eq!(vmm::loader::kind_of(&elf), vmm::GuestKind::Hvt);
        assert_eq!(vmm::loader::kind_of(&bzimage_head()), vmm::GuestKind::Linux);
    }

    #[test]
    fn test_bundle_seeds_are_unikernels() {
        for (target, name, data) in seeds::all() {
            if target != "bundle" {
                continue;
            }
            let bundle = runtime::bundle::load(write_bundle(&data)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(matches!(bundle.kind, runtime::bundle::BundleKind::Unikernel(_)), "{name}");
        }
    }

    #[test]
    fn test_input_pads_with_zeros() {
        let mut i = Input::new(&[1, 2, 3]);
        assert_eq!(i.op(), Some(1));
        assert_eq!(i.u32(), 0x0302);
        assert_eq!(i.op(), None);
        assert_eq!(i.u64(), 0);
    }
}
