//! ELF and Solo5 note parsing, guest-kind detection and loading, on arbitrary bytes.
//!
//! `kind_of` and `is_bzimage` must never panic; `Executable::parse` either refuses the image or
//! yields one whose manifest note can be parsed and whose segments load into a small guest
//! memory or are refused. The same bytes go through the file-based detectors (`detect_kind`, and
//! `image_kind` on the opened file, as the runtime asks it), which must agree with the loader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unik_fuzz::scratch;
use vmm::GuestKind;
use vmm::hvt::Manifest;
use vmm::loader::{Executable, HOST_MACHINE, detect_kind, kind_of};
use vmm::memory::GuestRam;

/// Guest memory for loading: the lowest load address is 1 MiB; 2 MiB leaves room for segments.
const RAM: u64 = 2 << 20;

fuzz_target!(|data: &[u8]| {
    let kind = kind_of(data);
    if vmm::loader::is_bzimage(data) {
        assert_eq!(kind, GuestKind::Linux, "a bzImage header is a Linux guest");
    }
    let parsed = Executable::parse(data, HOST_MACHINE);
    // The other machine's executables are parsed too (the machine is the caller's).
    let _ = Executable::parse(data, if HOST_MACHINE == 62 { 183 } else { 62 });
    if let Ok(exe) = &parsed {
        let _ = Manifest::parse(exe.manifest_note());
        let mut ram = GuestRam::new(RAM).expect("guest memory");
        if let Ok(k) = exe.load(&mut ram) {
            assert!(k.entry >= 0x10_0000 && k.entry < RAM, "entry {:#x}", k.entry);
            assert!(k.kernel_end <= RAM, "kernel end {:#x}", k.kernel_end);
            // Loading again over read-only text is refused (the copy would fault the monitor);
            // a kernel without read-only segments may be loaded again.
            let protected = !ram.read_only_ranges().is_empty();
            let again = exe.load(&mut ram);
            assert!(!protected || again.is_err(), "a load over read-only text was not refused");
        }
    }
    let path = scratch().join("kernel");
    std::fs::write(&path, data).expect("write kernel");
    // The first MiB decides; fuzz inputs are smaller than that.
    if data.len() < 1 << 20 {
        assert_eq!(detect_kind(vmm::host::files::Root::Host, &path).expect("detect_kind"), kind);
    }
    let file = vmm::host::files::open_regular(vmm::host::files::Root::Host, &path).expect("open kernel");
    let is_hvt = vmm::loader::image_kind(&file).expect("image_kind") == vmm::loader::ImageKind::Solo5;
    if parsed.is_ok() {
        // A bundle whose process.args[0] is a bootable unikernel must be recognised as one.
        assert!(is_hvt, "the loader takes it, the detector does not call it Solo5");
        if !vmm::loader::is_bzimage(data) {
            assert_eq!(kind, GuestKind::Hvt, "the loader takes it, kind_of does not");
        }
    }
});
