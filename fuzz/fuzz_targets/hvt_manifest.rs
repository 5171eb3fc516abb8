//! hvt manifest validation (`Manifest::parse`, solo5's `mft_validate` rules) on arbitrary bytes,
//! then what the monitor does with a valid one: look entries up, attach block devices (to a
//! scratch disk), serialise it with the attachments and write the boot info.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::config::BlockConfig;
use vmm::hvt::{DeviceType, Manifest, attach, write_boot_info};
use vmm::memory::GuestRam;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the sector size the block devices are attached with.
    let (sector, mft) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => return,
    };
    let Ok(mut m) = Manifest::parse(mft) else { return };
    let n = m.entries().len();
    assert!((1..=64).contains(&n));
    // Serialising and parsing again gives the same manifest.
    let bytes = m.to_bytes();
    assert_eq!(bytes.len(), mft.len());
    assert_eq!(Manifest::parse(&bytes).as_ref(), Ok(&m));
    for (i, e) in m.entries().iter().enumerate().skip(1) {
        let name = e.name();
        if e.is_named(&name) {
            let found = m.find(&name).expect("a named entry is found");
            assert!(found >= 1 && found <= i && m.entries()[found].is_named(&name));
        }
    }
    let disk = unik_fuzz::disk("mft-disk", 8192, false);
    let blocks: Vec<BlockConfig> = m
        .entries()
        .iter()
        .filter(|e| e.kind == DeviceType::Block)
        .map(|e| BlockConfig {
            name: e.name(),
            path: disk.path().to_path_buf(),
            sector_size: Some(512u16 << (sector % 5)),
            read_only: false,
        })
        .collect();
    let _ = attach(&mut m, &[], &blocks, vmm::host::files::Root::Host);
    let ram = GuestRam::new(1 << 20).expect("guest memory");
    let cmdline = vec![b'x'; usize::from(sector) * 40];
    let _ = write_boot_info(&ram, 0x10_1000, 1_000_000_000, &m, &cmdline, None);
});
