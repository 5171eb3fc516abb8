//! OCI bundle loading and unik's annotations: a fuzzed `config.json` (and, when the input has
//! them, fuzzed `unik.json` and `urunc.json` in the rootfs) becomes a bundle through
//! `runtime::bundle::load`: spec parsing, annotation merging, base64 urunc values, path
//! resolution inside the rootfs (symlinks included), guest-kind detection, manifest wiring and
//! the resulting `VmConfig`.
//!
//! Input: `config.json`, then optionally a 0xff byte and `unik.json`, then optionally another
//! 0xff byte and `urunc.json` (0xff never occurs in UTF-8 text). The rootfs is fixed: two hvt
//! kernels (one declaring a block and a net device), a bzImage head, a disk image, a script and
//! symlinks (to a kernel, out of the rootfs, and a loop).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runtime::bundle::{BundleKind, load};
use unik_fuzz::{MFT_BLOCK, MFT_NET, bzimage_head, hvt_elf, scratch};

fn bundle_dir() -> &'static Path {
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

fuzz_target!(|data: &[u8]| {
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
    if let Ok(bundle) = load(dir) {
        if let BundleKind::Unikernel(cfg) = &bundle.kind {
            assert!(cfg.kind.is_some(), "a loaded unikernel has a guest kind");
            assert!(cfg.mem_mib >= runtime::bundle::MIN_MEM_MIB);
        }
    }
});
