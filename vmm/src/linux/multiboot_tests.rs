use super::*;
use crate::linux::{e820, ram_ranges};

const MIB: u64 = 1 << 20;
const RAM_END: u64 = 32 * MIB;

fn mem() -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::<()>::from_ranges(&ram_ranges(RAM_END)).unwrap();
    // Not zero, so that zeroing the bss is seen.
    mem.write_slice(&vec![0xee; 0x2000], GuestAddress(0x10_0000)).unwrap();
    mem
}

fn put(img: &mut [u8], off: usize, v: u32) {
    img[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// A header with `flags` (and a matching checksum) at `off`, then the address fields `a`.
fn header(img: &mut Vec<u8>, off: usize, flags: u32, a: [u32; 5]) {
    img.resize(img.len().max(off + 32), 0);
    put(img, off, MULTIBOOT_MAGIC);
    put(img, off + 4, flags);
    put(img, off + 8, 0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(flags));
    for (i, v) in a.into_iter().enumerate() {
        put(img, off + 12 + i * 4, v);
    }
}

/// A raw image loaded by its address fields: 0x200 bytes of 0xab from file offset 0 at 1 MiB,
/// the header at 0x40, bss to 1 MiB + 0x400, entry at 1 MiB + 0x80.
fn kludge() -> Vec<u8> {
    let mut img = vec![0xab; 0x200];
    header(&mut img, 0x40, 0x1_0003, [0x10_0040, 0x10_0000, 0x10_0200, 0x10_0400, 0x10_0080]);
    img
}

fn kludge_with(a: [u32; 5]) -> Vec<u8> {
    let mut img = kludge();
    header(&mut img, 0x40, 0x1_0003, a);
    img
}

fn err(img: &[u8], header: u64) -> String {
    load(img, header, &mem(), RAM_END).unwrap_err().to_string()
}

#[test]
fn test_header_checksum_and_flags() {
    let mut img = vec![0u8; 64];
    header(&mut img, 8, 0x3, [0; 5]);
    let h = parse_header(&img[..], 8).unwrap();
    assert_eq!((h.offset, h.flags, h.addresses), (8, 3, None));
    // Video (bit 2) is accepted and ignored.
    header(&mut img, 8, 0x7, [0; 5]);
    assert_eq!(parse_header(&img[..], 8).unwrap().flags, 7);
    // A checksum one off.
    img[16] ^= 1;
    assert_eq!(
        parse_header(&img[..], 8).unwrap_err().to_string(),
        "the header at file offset 0x8 has a bad checksum 0xe4524ff6: magic + flags (0x7) + checksum is 0xffffffff, not 0"
    );
    // Bits 3 and 15 are required features unik lacks; bits above 16 are not requirements.
    header(&mut img, 8, 0x8008 | 0x2_0003, [0; 5]);
    assert_eq!(
        parse_header(&img[..], 8).unwrap_err().to_string(),
        "the header's flags 0x2800b require features unik does not provide (bits 0x8008; supported: 0 page-aligned modules, 1 memory map, 2 video mode (ignored), 16 address fields)"
    );
    header(&mut img, 8, 0x2_0003, [0; 5]);
    parse_header(&img[..], 8).unwrap();
    // The address fields must be within the first 8 KiB and the file.
    let mut late = vec![0u8; 8192];
    header(&mut late, 8172, 0x1_0003, [0; 5]);
    late.truncate(8192);
    assert_eq!(
        parse_header(&late[..], 8172).unwrap_err().to_string(),
        "the header at file offset 0x1fec needs 32 bytes within the file's first 8192 bytes"
    );
    assert!(matches!(
        parse_header(&late[..12], 8),
        Err(MultibootError::Truncated { need: 12, within: 12, .. })
    ));
    assert!(matches!(
        parse_header(&late[..], u64::MAX - 4),
        Err(MultibootError::Truncated { .. })
    ));
    // No magic at that offset.
    assert!(matches!(parse_header(&late[..], 0), Err(MultibootError::NoMagic { offset: 0 })));
}

#[test]
fn test_load_by_address_fields() {
    let m = mem();
    let img = kludge();
    let loaded = load(&img[..], 0x40, &m, RAM_END).unwrap();
    assert_eq!(
        loaded,
        Loaded {
            entry: 0x10_0080,
            end: 0x10_0400
        }
    );
    let mut got = vec![0u8; 0x500];
    m.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(got[..0x200], img[..]);
    assert!(got[0x200..0x400].iter().all(|b| *b == 0), "bss zeroed");
    assert!(got[0x400..].iter().all(|b| *b == 0xee), "nothing past bss_end");
    // load_end_addr 0: to the end of the file; bss_end_addr 0: no bss.
    let img = kludge_with([0x10_0040, 0x10_0000, 0, 0, 0x10_0080]);
    assert_eq!(load(&img[..], 0x40, &m, RAM_END).unwrap().end, 0x10_0200);
    // The image may start later in the file than offset 0.
    let img = kludge_with([0x10_0020, 0x10_0000, 0x10_0100, 0, 0x10_0000]);
    let m = mem();
    load(&img[..], 0x40, &m, RAM_END).unwrap();
    assert_eq!(m.read_obj::<u32>(GuestAddress(0x10_0020)).unwrap(), MULTIBOOT_MAGIC);
}

#[test]
fn test_hostile_address_fields_are_refused() {
    let cases: &[([u32; 5], &str)] = &[
        (
            [0x10_0000, 0x10_0040, 0x10_0200, 0, 0x10_0080],
            "header field header_addr (0x100000) is below load_addr (0x100040)",
        ),
        (
            [0x10_0080, 0x10_0000, 0x10_0200, 0, 0x10_0080],
            "header_addr 0x100080 − load_addr 0x100000 is more than the header's file offset 0x40: the image would start before the file",
        ),
        (
            [0x10_0040, 0x10_0000, 0x10_0201, 0, 0x10_0080],
            "the header's load_addr..load_end_addr claims 513 bytes from file offset 0x0, but the file has 512 bytes",
        ),
        (
            [0x10_0040, 0x10_0000, 0x10_0040, 0, 0x10_0000],
            "the header (at header_addr 0x100040) is not within the loaded image, which ends at 0x100040",
        ),
        (
            [0x10_0040, 0x10_0000, 0x0f_0000, 0, 0x10_0000],
            "header field load_end_addr (0xf0000) is below load_addr (0x100000)",
        ),
        (
            [0x10_0040, 0x10_0000, 0x10_0200, 0x10_0100, 0x10_0080],
            "header field bss_end_addr (0x100100) is below load_end_addr (0x100200)",
        ),
        (
            [0x8_0040, 0x8_0000, 0x8_0200, 0, 0x8_0080],
            "the image loads at 0x80000..0x80200, over the monitor's boot structures below 1 MiB",
        ),
        (
            [0x10_0040, 0x10_0000, 0x10_0200, 0x0200_0001, 0x10_0080],
            "the image loads at 0x100000..0x2000001, outside guest RAM (which ends at 0x2000000 below 4 GiB)",
        ),
        (
            [0xffff_ffff, 0xffff_ffbf, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff],
            "the header (at header_addr 0xffffffff) is not within the loaded image, which ends at 0xffffffff",
        ),
        (
            [0xffff_fff0, 0xffff_ffb0, 0, 0, 0xffff_fff0],
            "the image loads at 0xffffffb0..0x1000001b0, outside guest RAM",
        ),
        (
            [0x10_0040, 0x10_0000, 0x10_0200, 0x10_0400, 0x10_0200],
            "the entry point 0x100200 is not in the loaded image",
        ),
    ];
    for (a, want) in cases {
        let got = err(&kludge_with(*a), 0x40);
        assert!(got.starts_with(want), "{a:x?}: {got}");
    }
}

/// A 32-bit ELF for i386 with `segs` = (vaddr, paddr, data, memsz) and entry `entry`.
fn elf32(entry: u32, segs: &[(u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
    let mut img = vec![0u8; 52 + 32 * segs.len()];
    img[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    img[16..18].copy_from_slice(&2u16.to_le_bytes());
    img[18..20].copy_from_slice(&3u16.to_le_bytes());
    put(&mut img, 24, entry);
    put(&mut img, 28, 52);
    img[42..44].copy_from_slice(&32u16.to_le_bytes());
    img[44..46].copy_from_slice(&u16::try_from(segs.len()).unwrap().to_le_bytes());
    for (i, (vaddr, paddr, data, memsz)) in segs.iter().enumerate() {
        let ph = 52 + i * 32;
        let off = u32::try_from(img.len()).unwrap();
        put(&mut img, ph, 1);
        put(&mut img, ph + 4, off);
        put(&mut img, ph + 8, *vaddr);
        put(&mut img, ph + 12, *paddr);
        put(&mut img, ph + 16, u32::try_from(data.len()).unwrap());
        put(&mut img, ph + 20, *memsz);
        img.extend_from_slice(data);
    }
    // The header: after the program headers, no address fields.
    let at = img.len().next_multiple_of(4);
    header(&mut img, at, 0x3, [0; 5]);
    img
}

fn header_of(img: &[u8]) -> u64 {
    match crate::loader::image_kind_of(img) {
        crate::loader::ImageKind::Multiboot { header } => header,
        other => panic!("not multiboot: {other:?}"),
    }
}

fn good_elf32() -> Vec<u8> {
    // Text linked at 3 GiB + 1 MiB but loaded at 1 MiB (a higher-half kernel), data at 2 MiB.
    elf32(
        0xc010_0010,
        &[
            (0xc010_0000, 0x10_0000, vec![0x90; 0x100], 0x100),
            (0x20_0000, 0x20_0000, vec![0x11; 0x10], 0x1000),
        ],
    )
}

#[test]
fn test_elf32_segments_load_at_their_physical_addresses() {
    let img = good_elf32();
    let m = mem();
    let loaded = load(&img[..], header_of(&img), &m, RAM_END).unwrap();
    // The entry, a virtual address, translated by its segment.
    assert_eq!(
        loaded,
        Loaded {
            entry: 0x10_0010,
            end: 0x20_1000
        }
    );
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_00ff)).unwrap(), 0x90);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_0100)).unwrap(), 0xee);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x20_000f)).unwrap(), 0x11);
    assert_eq!(m.read_obj::<u64>(GuestAddress(0x20_0010)).unwrap(), 0, "bss zeroed");
}

#[test]
fn test_hostile_elf32_is_refused() {
    let good = good_elf32();
    let h = header_of(&good);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut img = good.clone();
        f(&mut img);
        err(&img, h)
    };
    let ph = |i: usize, field: usize| 52 + i * 32 + field;
    let cases: Vec<(String, &str)> = vec![
        (with(&|i| i[4] = 2), "a 64-bit ELF needs the header's address fields (flag 16)"),
        (
            with(&|i| i[0] = b'X'),
            "not an ELF file, and the header has no address fields (flag 16)",
        ),
        (with(&|i| i[5] = 2), "not a 32-bit ELF executable for i386: big-endian"),
        (with(&|i| i[4] = 9), "unknown ELF class"),
        (with(&|i| i[16] = 3), "not an executable (ET_EXEC)"),
        (with(&|i| i[18] = 62), "its machine is not i386 (EM_386)"),
        (with(&|i| i[42] = 56), "program header size is not 32"),
        (with(&|i| i[44..46].fill(0)), "no program headers, or more than 64"),
        (with(&|i| i[44..46].fill(0xff)), "no program headers, or more than 64"),
        (
            with(&|i| put(i, 28, 0xffff_fff0)),
            "the program header table claims 64 bytes from file offset 0xfffffff0",
        ),
        (
            with(&|i| put(i, ph(0, 4), 0xffff_ff00)),
            "segment 0 claims 256 bytes from file offset 0xffffff00",
        ),
        (
            with(&|i| put(i, ph(0, 16), 0x101)),
            "a segment's file size is larger than its memory size",
        ),
        (with(&|i| put(i, ph(1, 12), 0x10_0080)), "segments 0 and 1 overlap in memory"),
        (
            with(&|i| put(i, ph(0, 12), 0xf_ff00)),
            "segment 0 loads at 0xfff00..0x100000, over the monitor's boot structures below 1 MiB",
        ),
        (
            with(&|i| put(i, ph(1, 12), 0xffff_ff00)),
            "segment 1 loads at 0xffffff00..0x100000f00, outside guest RAM",
        ),
        (
            with(&|i| put(i, 24, 0x10_0010)),
            "the entry point 0x100010 is not in the loaded image",
        ),
        (
            with(&|i| put(i, ph(0, 0), 6)),
            "the entry point 0xc0100010 is not in the loaded image",
        ),
        (
            with(&|i| {
                put(i, ph(0, 0), 6);
                put(i, ph(1, 0), 6);
            }),
            "no loadable segments",
        ),
    ];
    for (got, want) in cases {
        assert!(got.contains(want), "{got:?} lacks {want:?}");
    }
    // An ELF header cut short.
    let mut short = good[..40].to_vec();
    header(&mut short, 20, 0x3, [0; 5]);
    short.truncate(40);
    assert!(err(&short, 20).contains("the ELF header is truncated"), "{}", err(&short, 20));
}

#[test]
fn test_mangled_images_never_panic() {
    // Every byte of the headers set to values that break arithmetic; then pseudo-random bytes.
    for base in [good_elf32(), kludge()] {
        let h = header_of(&base);
        for pos in 0..base.len().min(200) {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut img = base.clone();
                img[pos] = v;
                let _ = load(&img[..], h, &mem(), RAM_END);
            }
        }
        let mut seed = 0x1234_5678_u64;
        for _ in 0..300 {
            let mut img = base.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let pos = usize::try_from(seed >> 33).unwrap() % img.len();
                img[pos] = seed.to_le_bytes()[3];
            }
            let _ = load(&img[..], h, &mem(), RAM_END);
        }
    }
}

#[test]
fn test_information_structure() {
    let m = mem();
    let map = e820(RAM_END);
    write_info(&m, &map, 0x20000, Some((0x1f0_0000, 0x1234))).unwrap();
    let at = |off: u64| m.read_obj::<u32>(GuestAddress(INFO + off)).unwrap();
    assert_eq!(at(0), 0x24d, "mem, cmdline, mods, mmap, loader name");
    assert_eq!((at(4), at(8)), (639, 31 * 1024));
    assert_eq!((at(16), at(20), at(24)), (0x20000, 1, 0x1100));
    assert_eq!((at(44), at(48), at(64)), (48, 0x1080, 0x1180));
    // The memory map is the e820 map: 20-byte entries after their size field.
    for (i, (base, len)) in (0u64..).zip(&map) {
        let e = MMAP + i * 24;
        assert_eq!(m.read_obj::<u32>(GuestAddress(e)).unwrap(), 20);
        assert_eq!(m.read_obj::<u64>(GuestAddress(e + 4)).unwrap(), *base);
        assert_eq!(m.read_obj::<u64>(GuestAddress(e + 12)).unwrap(), *len);
        assert_eq!(m.read_obj::<u32>(GuestAddress(e + 20)).unwrap(), 1);
    }
    let module: [u32; 4] = m.read_obj(GuestAddress(MODS)).unwrap();
    assert_eq!(module, [0x1f0_0000, 0x1f0_1234, 0x11c0, 0]);
    let mut name = [0u8; 5];
    m.read_slice(&mut name, GuestAddress(LOADER_NAME)).unwrap();
    assert_eq!(&name, b"unik\0");
    m.read_slice(&mut name, GuestAddress(MOD_STRING)).unwrap();
    assert_eq!(&name, b"initr");
    // The whole of it stays below the PVH structures and the other boot structures.
    assert!(INFO + INFO_SIZE as u64 <= MMAP && MMAP + MMAP_MAX as u64 * 24 <= MODS && MOD_STRING + 8 <= 0x1200);
    // Without an initrd: no modules.
    let m = mem();
    write_info(&m, &map, 0x20000, None).unwrap();
    assert_eq!(m.read_obj::<u32>(GuestAddress(INFO + 20)).unwrap(), 0);
    // RAM from 4 GiB (a large guest) is in the map too.
    let big = e820(4 << 30);
    assert_eq!(big.len(), 3);
    let m = mem();
    write_info(&m, &big, 0x20000, None).unwrap();
    assert_eq!(m.read_obj::<u32>(GuestAddress(INFO + 44)).unwrap(), 72);
}
