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

use libfuzzer_sys::fuzz_target;
use runtime::bundle::{BundleKind, load};
use unik_fuzz::write_bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = load(write_bundle(data)) {
        if let BundleKind::Unikernel(cfg) = &bundle.kind {
            assert!(cfg.kind.is_some(), "a loaded unikernel has a guest kind");
            assert!(cfg.mem_mib >= runtime::bundle::MIN_MEM_MIB);
        }
    }
});
