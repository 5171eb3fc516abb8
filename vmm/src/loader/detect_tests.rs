use super::*;
use crate::loader::elf::PT_NOTE;
use crate::loader::elf::tests::{Seg, good_segments, image, load_seg, mft_note};
use crate::loader::kind_of;
use crate::loader::notes::tests::note;

const ET_EXEC: u16 = 2;

/// `img` with a section header table naming `names` (plus the null section and `.shstrtab`).
fn with_sections(mut img: Vec<u8>, names: &[&str]) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut offsets = Vec::new();
    for name in names.iter().chain(&[".shstrtab"]) {
        offsets.push(u32::try_from(strtab.len()).unwrap());
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
    }
    let strtab_at = img.len() as u64;
    img.extend_from_slice(&strtab);
    img.resize(img.len().next_multiple_of(8), 0);
    let shoff = img.len() as u64;
    img.extend_from_slice(&[0u8; 64]);
    for (i, name) in offsets.iter().enumerate() {
        let mut sh = [0u8; 64];
        sh[..4].copy_from_slice(&name.to_le_bytes());
        if i == names.len() {
            sh[24..32].copy_from_slice(&strtab_at.to_le_bytes());
            sh[32..40].copy_from_slice(&(strtab.len() as u64).to_le_bytes());
        }
        img.extend_from_slice(&sh);
    }
    let shnum = u16::try_from(names.len() + 2).unwrap();
    img[40..48].copy_from_slice(&shoff.to_le_bytes());
    img[58..60].copy_from_slice(&64u16.to_le_bytes());
    img[60..62].copy_from_slice(&shnum.to_le_bytes());
    img[62..64].copy_from_slice(&(shnum - 1).to_le_bytes());
    img
}

/// A solo5-hvt unikernel as solo5's linker script lays it out: notes in their own sections.
fn unikernel() -> Vec<u8> {
    with_sections(
        image(ET_EXEC, 0x10_0000, &good_segments()),
        &[".text", ".note.solo5.abi", ".note.solo5.manifest", ".data"],
    )
}

/// Offset of the program header table entry `i`.
fn phdr(i: usize) -> usize {
    64 + i * 56
}

fn zero_phnum(mut img: Vec<u8>) -> Vec<u8> {
    img[56..58].fill(0);
    img
}

#[test]
fn test_intact_unikernel_bzimage_and_plain_elf() {
    assert_eq!(image_kind_of(&unikernel()), ImageKind::Solo5);
    // The notes alone (no section headers) are enough.
    assert_eq!(image_kind_of(&image(ET_EXEC, 0x10_0000, &good_segments())), ImageKind::Solo5);
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    assert_eq!(image_kind_of(&bz), ImageKind::BzImage);
    let vmlinux = with_sections(
        image(ET_EXEC, 0x100_0000, &[load_seg(5, 0x100_0000, 0x1000, 0x1000)]),
        &[".text", ".note.Xen"],
    );
    assert_eq!(image_kind_of(&vmlinux), ImageKind::Elf);
    assert_eq!(image_kind_of(&vmlinux).guest_kind(), GuestKind::Linux);
}

#[test]
fn test_damaged_unikernel_is_never_linux() {
    // e_phnum zeroed: no program headers to find the notes in, but the sections still say solo5.
    let damaged = zero_phnum(unikernel());
    assert_eq!(image_kind_of(&damaged), ImageKind::Solo5);
    assert_eq!(kind_of(&damaged), GuestKind::Hvt);
    // And without section headers either: nothing says Linux, so the hvt loader explains.
    let bare = zero_phnum(image(ET_EXEC, 0x10_0000, &good_segments()));
    assert_eq!(kind_of(&bare), GuestKind::Hvt);
    assert_ne!(image_kind_of(&bare), ImageKind::Elf);
    // A bit flipped in the ABI note's owner name: the manifest note still carries "Solo5".
    let mut img = image(ET_EXEC, 0x10_0000, &good_segments());
    let abi_at = usize::try_from(u64_at(&img, phdr(4) + 8)).unwrap();
    img[abi_at + 12] ^= 0x01;
    assert_eq!(image_kind_of(&img), ImageKind::Solo5);
    // Both notes' names damaged, but the section names are there.
    let mft_at = usize::try_from(u64_at(&img, phdr(5) + 8)).unwrap();
    img[mft_at + 12] ^= 0x01;
    assert_eq!(image_kind_of(&img), ImageKind::Elf, "no mark left at all");
    assert_eq!(image_kind_of(&with_sections(img, &[".note.solo5.abi"])), ImageKind::Solo5);
    // A flipped bit in the ABI note's type or descriptor keeps its owner.
    let mut img = image(ET_EXEC, 0x10_0000, &good_segments());
    img[abi_at + 8] ^= 0x10;
    img[abi_at + 20] ^= 0x02;
    assert_eq!(image_kind_of(&img), ImageKind::Solo5);
}

#[test]
fn test_solo5_interpreter_is_a_mark() {
    let interp = Seg {
        p_type: PT_INTERP,
        flags: 4,
        vaddr: 0x10_0000,
        data: b"/nonexistent/solo5/\0".to_vec(),
        memsz: 20,
        align: 1,
    };
    let img = image(ET_EXEC, 0x10_0000, &[interp, load_seg(5, 0x10_0000, 0x1000, 0x1000)]);
    assert_eq!(image_kind_of(&img), ImageKind::Solo5);
    // A Solo5 note after a note of another owner (a GNU build id) in the same segment.
    let mut two = Vec::new();
    for w in [4u32, 8, 3] {
        two.extend_from_slice(&w.to_le_bytes());
    }
    two.extend_from_slice(b"GNU\0");
    two.extend_from_slice(&[0xab; 8]);
    two.extend(note(7, &[0; 16], 4));
    let seg = Seg {
        p_type: PT_NOTE,
        flags: 4,
        vaddr: 0,
        data: two,
        memsz: 0,
        align: 4,
    };
    let img = image(ET_EXEC, 0x10_0000, &[load_seg(5, 0x10_0000, 0x1000, 0x1000), seg]);
    assert_eq!(image_kind_of(&img), ImageKind::Solo5);
}

#[test]
fn test_unrecognised_images_say_why() {
    let why = |img: &[u8]| match image_kind_of(img) {
        ImageKind::Unrecognised(why) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(why(b"#!/bin/sh\necho hi\n"), "is too short to be a kernel (not an ELF file)");
    assert_eq!(why(&[b'x'; 128]), "is not an ELF file");
    let good = image(ET_EXEC, 0x10_0000, &[load_seg(5, 0x10_0000, 0x1000, 0x1000)]);
    let mut img = good.clone();
    img[4] = 1;
    assert_eq!(why(&img), "is not a 64-bit ELF file");
    let mut img = good.clone();
    img[5] = 2;
    assert_eq!(why(&img), "is a big-endian ELF file");
    assert_eq!(
        why(&zero_phnum(good.clone())),
        "is an ELF file whose program headers are missing or damaged"
    );
    // Truncated inside the program header table.
    assert_eq!(why(&good[..100]), "is an ELF file whose program headers are missing or damaged");
    let no_headers = image(ET_EXEC, 0x10_0000, &[]);
    assert_eq!(why(&no_headers), "is an ELF file whose program headers are missing or damaged");
    let no_load = image(
        ET_EXEC,
        0x10_0000,
        &[Seg {
            data: vec![],
            ..load_seg(5, 0x10_0000, 0, 0)
        }],
    );
    assert_eq!(why(&no_load), "is an ELF file without loadable segments");
    // Unrecognised images go to the hvt loader, which says what is wrong.
    assert_eq!(kind_of(&no_load), GuestKind::Hvt);
}

#[test]
fn test_hostile_header_values_do_not_panic() {
    let base = unikernel();
    for (at, len) in [(32, 8), (40, 8), (54, 2), (56, 2), (58, 2), (60, 2), (62, 2)] {
        for fill in [0x00, 0x7f, 0xff] {
            let mut img = base.clone();
            img[at..at + len].fill(fill);
            let _ = image_kind_of(&img);
        }
    }
    // Program header fields: offsets and sizes pointing anywhere.
    for i in 0..6 {
        for field in [8, 32] {
            let mut img = base.clone();
            img[phdr(i) + field..phdr(i) + field + 8].fill(0xff);
            let _ = image_kind_of(&img);
        }
    }
    let _ = image_kind_of(&[]);
    let _ = image_kind_of(&mft_note().data);
}

#[test]
fn test_file_and_memory_agree() {
    let dir = tempfile::tempdir().unwrap();
    for img in [unikernel(), zero_phnum(unikernel()), b"\x7fELF".to_vec()] {
        let path = dir.path().join("k");
        std::fs::write(&path, &img).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(image_kind(&file).unwrap(), image_kind_of(&img));
    }
}

#[test]
fn test_an_oversized_note_segment_is_skipped() {
    // A note segment larger than the read budget is not read; the section names still
    // identify the unikernel.
    let mut img = unikernel();
    img[phdr(4) + 32..phdr(4) + 40].copy_from_slice(&(2u64 << 20).to_le_bytes());
    assert_eq!(image_kind_of(&img), ImageKind::Solo5);
}

/// A multiboot header (magic, flags, checksum) at `offset` of `img`.
fn with_multiboot(mut img: Vec<u8>, offset: usize, flags: u32) -> Vec<u8> {
    img.resize(img.len().max(offset + 12), 0);
    let checksum = 0u32.wrapping_sub(MULTIBOOT_MAGIC).wrapping_sub(flags);
    for (i, w) in [MULTIBOOT_MAGIC, flags, checksum].into_iter().enumerate() {
        img[offset + i * 4..offset + i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    img
}

/// A PT_NOTE segment with the PVH entry note (owner "Xen", type 18).
fn pvh_note() -> Seg {
    let mut data = Vec::new();
    for w in [4u32, 4, 18] {
        data.extend_from_slice(&w.to_le_bytes());
    }
    data.extend_from_slice(b"Xen\0");
    data.extend_from_slice(&0x10_0000u32.to_le_bytes());
    Seg {
        p_type: PT_NOTE,
        flags: 4,
        vaddr: 0,
        memsz: data.len() as u64,
        data,
        align: 4,
    }
}

#[test]
fn test_multiboot_headers_are_found_in_the_first_8_kib_aligned() {
    // A raw image (no ELF) and a 32-bit ELF: multiboot, wherever the aligned magic is.
    let raw = with_multiboot(vec![0x90; 100], 64, 0x10003);
    assert_eq!(image_kind_of(&raw), ImageKind::Multiboot { header: 64 });
    let mut elf32 = with_multiboot(vec![0; 8192], 8180, 3);
    elf32[..6].copy_from_slice(b"\x7fELF\x01\x01");
    assert_eq!(image_kind_of(&elf32), ImageKind::Multiboot { header: 8180 });
    assert_eq!(kind_of(&elf32), crate::config::GuestKind::Linux);
    // Unaligned, or past the first 8 KiB: not a multiboot kernel.
    let mut unaligned = vec![0u8; 100];
    unaligned[66..70].copy_from_slice(&MULTIBOOT_MAGIC.to_le_bytes());
    assert_eq!(image_kind_of(&unaligned), ImageKind::Unrecognised("is not an ELF file"));
    let late = with_multiboot(vec![0; 8192], 8192, 3);
    assert_eq!(image_kind_of(&late), ImageKind::Unrecognised("is not an ELF file"));
    elf32[8180..8184].fill(0);
    assert_eq!(image_kind_of(&elf32), ImageKind::Unrecognised("is not a 64-bit ELF file"));
    // A bad checksum is still a multiboot kernel: its loader says what is wrong.
    let mut bad = with_multiboot(vec![0; 64], 8, 3);
    bad[16] ^= 1;
    assert_eq!(image_kind_of(&bad), ImageKind::Multiboot { header: 8 });
    // A magic that only starts within the last bytes of a short file is still found.
    let short = MULTIBOOT_MAGIC.to_le_bytes().to_vec();
    assert_eq!(image_kind_of(&short), ImageKind::Multiboot { header: 0 });
}

#[test]
fn test_multiboot_precedence_solo5_then_pvh_then_multiboot_then_elf() {
    // A plain 64-bit ELF with a multiboot header: multiboot (its 64-bit entry is not meant to be
    // used); with a PVH note as well: PVH (plain ELF, linux-loader finds the note).
    let plain = image(ET_EXEC, 0x10_0000, &[load_seg(5, 0x10_0000, 0x100, 0x100)]);
    let len = plain.len();
    let mb = with_multiboot(plain, len.next_multiple_of(4), 0x10003);
    let at = len.next_multiple_of(4) as u64;
    assert_eq!(image_kind_of(&mb), ImageKind::Multiboot { header: at });
    let pvh = image(ET_EXEC, 0x10_0000, &[load_seg(5, 0x10_0000, 0x100, 0x100), pvh_note()]);
    assert_eq!(image_kind_of(&pvh), ImageKind::Elf);
    let len = pvh.len();
    let both = with_multiboot(pvh, len.next_multiple_of(4), 3);
    assert_eq!(image_kind_of(&both), ImageKind::Elf);
    // Solo5's marks win over everything: hvt or invalid, never multiboot.
    let solo5 = unikernel();
    let len = solo5.len();
    let solo5 = with_multiboot(solo5, len.next_multiple_of(4).min(8180), 3);
    assert_eq!(image_kind_of(&solo5), ImageKind::Solo5);
    // A PVH note alone does not make an ELF without loadable segments bootable.
    let empty = image(ET_EXEC, 0x10_0000, &[pvh_note()]);
    assert_eq!(
        image_kind_of(&empty),
        ImageKind::Unrecognised("is an ELF file without loadable segments")
    );
}

/// A 32-bit ELF whose one PT_NOTE holds a Solo5 note (or, `via_section`, whose section
/// `.note.solo5.abi` is its only mark), with a multiboot header.
fn solo5_elf32(via_section: bool) -> Vec<u8> {
    let mut img = vec![0u8; 0x200];
    img[..6].copy_from_slice(b"\x7fELF\x01\x01");
    let put16 = |img: &mut Vec<u8>, off: usize, v: u16| img[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |img: &mut Vec<u8>, off: usize, v: u32| img[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut img, 28, 52); // e_phoff
    put16(&mut img, 42, 32);
    put16(&mut img, 44, 1);
    put32(&mut img, 52, if via_section { 1 } else { PT_NOTE });
    put32(&mut img, 56, 0x100); // p_offset
    put32(&mut img, 68, 20); // p_filesz
    let mut n = Vec::new();
    for w in [6u32, 0, 1] {
        n.extend_from_slice(&w.to_le_bytes());
    }
    n.extend_from_slice(b"Solo5\0\0\0");
    img[0x100..0x100 + n.len()].copy_from_slice(&n);
    if via_section {
        img[0x100..0x100 + n.len()].fill(0);
        // Sections: null, .note.solo5.abi, .shstrtab (names at 0x180), table at 0x1a0 (40 bytes each).
        let names = b"\0.note.solo5.abi\0.shstrtab\0";
        img[0x180..0x180 + names.len()].copy_from_slice(names);
        img.resize(0x1a0 + 3 * 40, 0);
        put32(&mut img, 32, 0x1a0); // e_shoff
        put16(&mut img, 46, 40);
        put16(&mut img, 48, 3);
        put16(&mut img, 50, 2);
        put32(&mut img, 0x1a0 + 40, 1);
        put32(&mut img, 0x1a0 + 80, 17);
        put32(&mut img, 0x1a0 + 80 + 16, 0x180);
        put32(&mut img, 0x1a0 + 80 + 20, u32::try_from(names.len()).unwrap());
    }
    with_multiboot(img, 0x140, 3)
}

#[test]
fn test_a_32_bit_elf_with_solo5_marks_is_never_multiboot() {
    assert_eq!(image_kind_of(&solo5_elf32(false)), ImageKind::Solo5);
    assert_eq!(image_kind_of(&solo5_elf32(true)), ImageKind::Solo5);
    // Without the mark, the same file is a multiboot kernel.
    let mut plain = solo5_elf32(false);
    plain[0x10c..0x111].copy_from_slice(b"Other");
    assert_eq!(image_kind_of(&plain), ImageKind::Multiboot { header: 0x140 });
}

#[test]
fn test_hostile_32_bit_headers_do_not_panic() {
    for base in [solo5_elf32(false), solo5_elf32(true)] {
        for pos in (0..base.len()).filter(|p| *p < 0x60 || (0x1a0..0x1a0 + 120).contains(p)) {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut img = base.clone();
                img[pos] = v;
                let _ = image_kind_of(&img);
            }
        }
    }
}

/// What `image_kind` says of `bytes` read from a file (the runtime's question: is
/// `process.args[0]` a unikernel?).
fn file_kind(bytes: &[u8]) -> ImageKind {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exe");
    std::fs::write(&path, bytes).unwrap();
    image_kind(&File::open(&path).unwrap()).unwrap()
}

/// A 64-bit ELF whose program headers are one PT_LOAD and one PT_NOTE holding `notes`.
fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 64 + 2 * 56];
    out[..6].copy_from_slice(b"\x7fELF\x02\x01");
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&2u16.to_le_bytes());
    out[phdr(0)..phdr(0) + 4].copy_from_slice(&1u32.to_le_bytes());
    out[phdr(1)..phdr(1) + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
    let at = out.len() as u64;
    out[phdr(1) + 8..phdr(1) + 16].copy_from_slice(&at.to_le_bytes());
    out[phdr(1) + 32..phdr(1) + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
    out.extend_from_slice(notes);
    out
}

/// A note owned by `name`, 4-byte aligned.
fn owned_note(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
    n.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
    n.extend_from_slice(&ntype.to_le_bytes());
    n.extend_from_slice(name);
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend_from_slice(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

const HVT_ABI: [u8; 16] = [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const ABI1: u32 = 0x3149_4241;

#[test]
fn test_a_solo5_note_after_another_note_is_found_in_a_file() {
    assert_eq!(
        file_kind(&elf_with_notes(&owned_note(b"Solo5\0", ABI1, &HVT_ABI))),
        ImageKind::Solo5
    );
    // After a GNU build id in the same segment.
    let mut two = owned_note(b"GNU\0", 3, &[0xab; 20]);
    two.extend(owned_note(b"Solo5\0", ABI1, &HVT_ABI));
    assert_eq!(file_kind(&elf_with_notes(&two)), ImageKind::Solo5);
}

#[test]
fn test_damaged_or_foreign_solo5_files_count_as_solo5() {
    // Another solo5 target, a manifest note alone, a descriptor size running past the segment:
    // Solo5's marks, so the loader (not runc) says what is wrong.
    let mut spt = HVT_ABI;
    spt[0] = 2;
    for bytes in [
        elf_with_notes(&owned_note(b"Solo5\0", ABI1, &spt)),
        elf_with_notes(&owned_note(b"Solo5\0", 0x3154_464d, &HVT_ABI)),
        elf_with_notes(&[
            6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x41, 0x42, 0x49, 0x31, b'S', b'o', b'l', b'o', b'5', 0, 0, 0,
        ]),
    ] {
        assert_eq!(file_kind(&bytes), ImageKind::Solo5, "{bytes:?}");
    }
}

#[test]
fn test_files_without_solo5_marks_are_not_solo5() {
    let mut truncated = elf_with_notes(&owned_note(b"Solo5\0", ABI1, &HVT_ABI));
    truncated.truncate(truncated.len() - 8);
    for bytes in [
        elf_with_notes(&owned_note(b"GNU\0", ABI1, &HVT_ABI)),
        elf_with_notes(&owned_note(b"GNU\0", 3, &[1; 20])),
        elf_with_notes(&[]),
        b"#!/bin/sh\necho hi\n".to_vec(),
        b"\x7fELF".to_vec(),
        Vec::new(),
        truncated,
    ] {
        assert_ne!(file_kind(&bytes), ImageKind::Solo5, "{bytes:?}");
    }
}

#[test]
fn test_offsets_outside_the_file_are_not_errors() {
    // Found by the elf_loader fuzz target: a program header table at an offset past i64::MAX
    // made pread fail with EINVAL, an error instead of "not a solo5 executable".
    let mut bytes = elf_with_notes(&owned_note(b"Solo5\0", ABI1, &HVT_ABI));
    bytes[32..40].copy_from_slice(&0xffff_fb00_0000_0040u64.to_le_bytes());
    assert_ne!(file_kind(&bytes), ImageKind::Solo5);
    // Found by the same target later: a table that starts below i64::MAX but ends past it.
    bytes[32..40].copy_from_slice(&0x7fff_ffff_ffff_ffffu64.to_le_bytes());
    assert_ne!(file_kind(&bytes), ImageKind::Solo5);
    // A note segment outside the file does not hide the ABI note of a later one.
    let mut bytes = elf_with_notes(&owned_note(b"Solo5\0", ABI1, &HVT_ABI));
    bytes[phdr(0)..phdr(0) + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
    bytes[phdr(0) + 8..phdr(0) + 16].copy_from_slice(&(1u64 << 63).to_le_bytes());
    bytes[phdr(0) + 32..phdr(0) + 40].copy_from_slice(&16u64.to_le_bytes());
    assert_eq!(file_kind(&bytes), ImageKind::Solo5);
    let end = bytes.len() as u64;
    bytes[phdr(0) + 8..phdr(0) + 16].copy_from_slice(&end.to_le_bytes());
    assert_eq!(file_kind(&bytes), ImageKind::Solo5);
}

#[test]
fn test_an_elf_is_never_a_bzimage_whatever_lies_at_0x202() {
    // Found by the elf_loader fuzz target: a unikernel whose bytes at 0x202 happen to read
    // "HdrS" (there, inside its notes) was taken for a bzImage and booted as Linux.
    let mut img = unikernel();
    assert!(img.len() > 0x206);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    assert_eq!(image_kind_of(&img), ImageKind::Solo5);
    assert_eq!(file_kind(&img), ImageKind::Solo5);
    assert!(!is_bzimage(&img));
}

#[test]
fn test_arm64_image_by_its_header_magic() {
    let mut image = vec![0u8; 0x1000];
    image[0x38..0x3c].copy_from_slice(b"ARM\x64");
    assert!(is_arm64_image(&image));
    assert_eq!(image_kind_of(&image), ImageKind::Arm64Image);
    assert_eq!(ImageKind::Arm64Image.guest_kind(), GuestKind::Linux);
    // The header alone is enough; a byte less is not an Image.
    assert_eq!(image_kind_of(&image[..64]), ImageKind::Arm64Image);
    assert!(!is_arm64_image(&image[..0x3b]));
    // The magic elsewhere, or in an ELF, does not make one.
    let mut moved = vec![0u8; 0x1000];
    moved[0x3c..0x40].copy_from_slice(b"ARM\x64");
    assert_ne!(image_kind_of(&moved), ImageKind::Arm64Image);
    let mut elf = unikernel();
    elf[0x38..0x3c].copy_from_slice(b"ARM\x64");
    assert!(!is_arm64_image(&elf));
}
