use super::*;
use crate::loader::notes::tests::note;

const EM_X86_64: u16 = 62;
const PF_R: u32 = 4;

/// One program header to put in a test image; `data` is its file content.
pub(crate) struct Seg {
    pub(crate) p_type: u32,
    pub(crate) flags: u32,
    pub(crate) vaddr: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) memsz: u64,
    pub(crate) align: u64,
}

pub(crate) fn load_seg(flags: u32, vaddr: u64, filesz: usize, memsz: u64) -> Seg {
    Seg {
        p_type: PT_LOAD,
        flags,
        vaddr,
        data: vec![0xcc; filesz],
        memsz,
        align: 0x1000,
    }
}

pub(crate) fn abi_note(target: u32, version: u32) -> Seg {
    let mut desc = Vec::new();
    for w in [target, version, 0, 0] {
        desc.extend_from_slice(&w.to_le_bytes());
    }
    Seg {
        p_type: PT_NOTE,
        flags: PF_R,
        vaddr: 0,
        data: note(ABI1_NOTE_TYPE, &desc, 4),
        memsz: 0,
        align: 4,
    }
}

pub(crate) fn mft_note() -> Seg {
    // version 1, 1 entry (the reserved one).
    let mut desc = vec![1, 0, 0, 0, 1, 0, 0, 0];
    let mut entry = vec![0u8; 104];
    entry[68..72].copy_from_slice(&(1u32 << 30).to_le_bytes());
    desc.extend_from_slice(&entry);
    Seg {
        p_type: PT_NOTE,
        flags: PF_R,
        vaddr: 0,
        data: note(MFT1_NOTE_TYPE, &desc, 8),
        memsz: 0,
        align: 8,
    }
}

/// An ELF64 image with the given type, entry and segments (data laid out after the headers).
pub(crate) fn image(e_type: u16, entry: u64, segs: &[Seg]) -> Vec<u8> {
    let phoff = 64usize;
    let mut data_off = (phoff + segs.len() * 56).next_multiple_of(16);
    let mut out = vec![0u8; data_off];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[16..18].copy_from_slice(&e_type.to_le_bytes());
    out[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&u16::try_from(segs.len()).unwrap().to_le_bytes());
    for (i, s) in segs.iter().enumerate() {
        let p = phoff + i * 56;
        out[p..p + 4].copy_from_slice(&s.p_type.to_le_bytes());
        out[p + 4..p + 8].copy_from_slice(&s.flags.to_le_bytes());
        out[p + 8..p + 16].copy_from_slice(&(data_off as u64).to_le_bytes());
        out[p + 16..p + 24].copy_from_slice(&s.vaddr.to_le_bytes());
        out[p + 24..p + 32].copy_from_slice(&s.vaddr.to_le_bytes());
        out[p + 32..p + 40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
        out[p + 40..p + 48].copy_from_slice(&s.memsz.to_le_bytes());
        out[p + 48..p + 56].copy_from_slice(&s.align.to_le_bytes());
        data_off += s.data.len();
    }
    for s in segs {
        out.extend_from_slice(&s.data);
    }
    out
}

pub(crate) fn good_segments() -> Vec<Seg> {
    vec![
        load_seg(PF_R | PF_X, 0x10_0000, 0x1000, 0x1000),
        load_seg(PF_R, 0x10_1000, 0x800, 0x1000),
        Seg {
            p_type: PT_LOAD,
            flags: PF_R,
            vaddr: 0,
            data: vec![],
            memsz: 0,
            align: 0x1000,
        },
        load_seg(PF_R | PF_W, 0x10_2000, 0x10, 0x3000),
        abi_note(1, 2),
        mft_note(),
    ]
}

fn parse_err(img: &[u8]) -> String {
    Executable::parse(img, EM_X86_64).unwrap_err().to_string()
}

#[test]
fn test_loads_good_image_and_protects_text() {
    let img = image(ET_EXEC, 0x10_0000, &good_segments());
    let exe = Executable::parse(&img, EM_X86_64).unwrap();
    assert_eq!(exe.manifest_note().len(), 8 + 104);
    let mut ram = GuestRam::new(8 << 20).unwrap();
    let k = exe.load(&mut ram).unwrap();
    assert_eq!(
        k,
        LoadedKernel {
            entry: 0x10_0000,
            kernel_end: 0x10_5000
        }
    );
    assert_eq!(ram.read_obj::<u8>(0x10_0fff).unwrap(), 0xcc);
    assert_eq!(ram.read_obj::<u8>(0x10_2010).unwrap(), 0, "BSS tail not zero");
    assert!(ram.is_read_only(0x10_0000) && ram.is_read_only(0x10_1fff));
    assert!(!ram.is_read_only(0x10_2000));
}

#[test]
fn test_rejects_bad_headers() {
    let good = image(ET_EXEC, 0x10_0000, &good_segments());
    assert!(parse_err(b"hello").contains("not an ELF file"));
    let mut img = good.clone();
    img[4] = 1;
    assert!(parse_err(&img).contains("64-bit"));
    let mut img = good.clone();
    img[5] = 2;
    assert!(parse_err(&img).contains("little-endian"));
    let mut img = good.clone();
    img[18] = 183;
    assert!(parse_err(&img).contains("machine"));
    let mut img = good.clone();
    img[54] = 55;
    assert!(parse_err(&img).contains("sizes"));
    let dynamic = image(ET_DYN, 0x10_0000, &good_segments());
    assert!(parse_err(&dynamic).contains("ET_DYN"));
    let mut img = good;
    img[32..40].copy_from_slice(&0xffff_ffffu64.to_le_bytes());
    assert!(parse_err(&img).contains("outside the file"));
}

#[test]
fn test_rejects_bad_segments() {
    let cases: Vec<(Seg, &str)> = vec![
        (load_seg(PF_R | PF_W | PF_X, 0x10_0000, 0x10, 0x1000), "WRITE and EXEC"),
        (load_seg(PF_R, 0xf_f000, 0x10, 0x1000), "below 0x100000"),
        (
            Seg {
                align: 0x300,
                ..load_seg(PF_R, 0x10_0000, 0x10, 0x1000)
            },
            "power of two",
        ),
        (load_seg(PF_R, 0x10_0000, 0x10, 0x8), "smaller than file size"),
        (
            Seg {
                align: 0x10,
                ..load_seg(PF_R, 0x10_0000, 0x10, 0x10)
            },
            "4 KiB aligned",
        ),
    ];
    for (seg, want) in cases {
        let img = image(ET_EXEC, 0x10_0000, &[seg, abi_note(1, 2), mft_note()]);
        let err = parse_err(&img);
        assert!(err.contains(want) && err.contains("phdr[0]"), "{want}: {err}");
    }
    let overlap = image(
        ET_EXEC,
        0x10_0000,
        &[
            load_seg(PF_R, 0x10_0000, 0x10, 0x2000),
            load_seg(PF_R, 0x10_1000, 0x10, 0x1000),
            abi_note(1, 2),
            mft_note(),
        ],
    );
    assert!(parse_err(&overlap).contains("overlaps"));
    let descending = image(
        ET_EXEC,
        0x10_0000,
        &[
            load_seg(PF_R, 0x20_0000, 0x10, 0x1000),
            load_seg(PF_R, 0x10_0000, 0x10, 0x1000),
            abi_note(1, 2),
            mft_note(),
        ],
    );
    assert!(parse_err(&descending).contains("ascending"));
    let nothing = image(ET_EXEC, 0x10_0000, &[abi_note(1, 2), mft_note()]);
    assert!(parse_err(&nothing).contains("no loadable segments"));
}

#[test]
fn test_rejects_segments_and_entry_outside_memory() {
    let mut ram = GuestRam::new(2 << 20).unwrap();
    let img = image(
        ET_EXEC,
        0x10_0000,
        &[load_seg(PF_R, 0x10_0000, 0x10, 0x20_0000), abi_note(1, 2), mft_note()],
    );
    let err = Executable::parse(&img, EM_X86_64).unwrap().load(&mut ram).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    let img = image(ET_EXEC, 0x20_0000, &good_segments());
    let err = Executable::parse(&img, EM_X86_64).unwrap().load(&mut ram).unwrap_err();
    assert!(err.to_string().contains("entry point"), "{err}");
    let img = image(ET_EXEC, 0x1000, &good_segments());
    let err = Executable::parse(&img, EM_X86_64).unwrap().load(&mut ram).unwrap_err();
    assert!(err.to_string().contains("entry point"), "{err}");
}

#[test]
fn test_notes_are_required_and_checked() {
    let segs = |abi: Option<Seg>, mft: bool| {
        let mut v = vec![load_seg(PF_R | PF_X, 0x10_0000, 0x10, 0x1000)];
        v.extend(abi);
        if mft {
            v.push(mft_note());
        }
        image(ET_EXEC, 0x10_0000, &v)
    };
    assert_eq!(parse_err(&segs(None, true)), "No Solo5 ABI information found in executable");
    assert_eq!(
        parse_err(&segs(Some(abi_note(3, 2)), true)),
        "Executable is not for the solo5-hvt target"
    );
    assert_eq!(
        parse_err(&segs(Some(abi_note(1, 1)), true)),
        "Executable requests unsupported ABI version 1"
    );
    assert_eq!(
        parse_err(&segs(Some(abi_note(1, 2)), false)),
        "No Solo5 manifest found in executable"
    );
}

#[test]
fn test_bss_only_segment_is_not_kernel_end_and_bss_tail_is_zeroed() {
    let mut segs = good_segments();
    // The BSS-only PT_LOAD solo5's linker script emits: skipped, so not part of kernel_end.
    segs.push(Seg {
        data: vec![],
        ..load_seg(PF_R | PF_W, 0x10_5000, 0, 0x20_0000)
    });
    let img = image(ET_EXEC, 0x10_0000, &segs);
    let exe = Executable::parse(&img, EM_X86_64).unwrap();
    let mut ram = GuestRam::new(8 << 20).unwrap();
    // Stale bytes where the data segment's BSS starts (same page as its file bytes).
    ram.mmap_write(0x10_2000, &[0xee; 0x1000]).unwrap();
    let k = exe.load(&mut ram).unwrap();
    assert_eq!(k.kernel_end, 0x10_5000);
    assert_eq!(ram.read_obj::<u8>(0x10_200f).unwrap(), 0xcc);
    let mut tail = vec![0xffu8; 0x1000 - 0x10];
    ram.read_slice(0x10_2010, &mut tail).unwrap();
    assert!(tail.iter().all(|b| *b == 0), "BSS tail of the last file page not zeroed");
    // Read-only text is refused to the guest-pointer write path.
    assert!(ram.write_obj(0x10_0000, 1u8).is_err());
    ram.write_obj(0x10_2000, 1u8).unwrap();
}

#[test]
fn test_loading_twice_is_refused() {
    let img = image(ET_EXEC, 0x10_0000, &good_segments());
    let exe = Executable::parse(&img, EM_X86_64).unwrap();
    let mut ram = GuestRam::new(8 << 20).unwrap();
    exe.load(&mut ram).unwrap();
    assert_eq!(exe.load(&mut ram), Err(LoaderError::AlreadyLoaded));
}

#[test]
fn test_rejects_other_header_fields() {
    let good = image(ET_EXEC, 0x10_0000, &good_segments());
    let mut img = good.clone();
    img[20] = 2;
    assert!(parse_err(&img).contains("ELF version"));
    let rel = image(1, 0x10_0000, &good_segments());
    assert!(parse_err(&rel).contains("not ET_EXEC"));
    let mut img = good.clone();
    img[52] = 63;
    assert!(parse_err(&img).contains("sizes"));
    // e_phnum = 0.
    let mut img = good.clone();
    img[56..58].copy_from_slice(&0u16.to_le_bytes());
    assert!(parse_err(&img).contains("sizes"));
    // EI_OSABI and EI_ABIVERSION are deliberately not checked.
    let mut img = good;
    img[7] = 9;
    img[8] = 3;
    Executable::parse(&img, EM_X86_64).unwrap();
    // The machine is the caller's.
    let arm = image(ET_EXEC, 0x10_0000, &good_segments());
    assert!(Executable::parse(&arm, 183).unwrap_err().to_string().contains("machine 62"));
}

#[test]
fn test_dynamic_executable_says_et_dyn() {
    let err = parse_err(&image(ET_DYN, 0x10_0000, &good_segments()));
    assert!(err.starts_with("invalid executable: ET_DYN"), "{err}");
    assert!(err.contains("ET_EXEC"), "{err}");
}

#[test]
fn test_segment_past_end_of_file_is_rejected() {
    let mut img = image(ET_EXEC, 0x10_0000, &good_segments());
    // phdr[0].p_filesz: far more than the file holds.
    let p = 64 + 32;
    img[p..p + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
    img[p + 8..p + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let err = parse_err(&img);
    assert!(err.contains("phdr[0]") && err.contains("past the end of the file"), "{err}");
}

#[test]
fn test_segment_file_bytes_past_memory_end() {
    // The file part ends past memory (2 MiB), whatever the memory size.
    let mut ram = GuestRam::new(2 << 20).unwrap();
    let img = image(
        ET_EXEC,
        0x10_0000,
        &[load_seg(PF_R, 0x1f_f000, 0x2000, 0x2000), abi_note(1, 2), mft_note()],
    );
    let err = Executable::parse(&img, EM_X86_64).unwrap().load(&mut ram).unwrap_err();
    assert!(
        err.to_string().contains("phdr[0]") && err.to_string().contains("does not fit"),
        "{err}"
    );
    // A segment starting at the end of memory.
    let img = image(
        ET_EXEC,
        0x10_0000,
        &[
            load_seg(PF_R, 0x10_0000, 0x10, 0x1000),
            load_seg(PF_R, 0x20_0000, 0x10, 0x1000),
            abi_note(1, 2),
            mft_note(),
        ],
    );
    let err = Executable::parse(&img, EM_X86_64).unwrap().load(&mut ram).unwrap_err();
    assert!(err.to_string().contains("phdr[1]"), "{err}");
    // Nothing was made read-only by the failed loads.
    assert!(ram.read_only_ranges().is_empty());
}

#[test]
fn test_note_lookup_skips_foreign_and_short_notes() {
    // An OpenBSD-style note first (another owner), then a 16-byte PT_NOTE (skipped: shorter than
    // header + name), then the real ones.
    let mut openbsd = Vec::new();
    openbsd.extend_from_slice(&8u32.to_le_bytes());
    openbsd.extend_from_slice(&4u32.to_le_bytes());
    openbsd.extend_from_slice(&1u32.to_le_bytes());
    openbsd.extend_from_slice(b"OpenBSD\0");
    openbsd.extend_from_slice(&0u32.to_le_bytes());
    let note_seg = |data: Vec<u8>| Seg {
        p_type: PT_NOTE,
        flags: PF_R,
        vaddr: 0,
        data,
        memsz: 0,
        align: 4,
    };
    let segs = vec![
        load_seg(PF_R | PF_X, 0x10_0000, 0x10, 0x1000),
        note_seg(openbsd),
        note_seg(vec![0; 16]),
        abi_note(1, 2),
        mft_note(),
    ];
    Executable::parse(&image(ET_EXEC, 0x10_0000, &segs), EM_X86_64).unwrap();
    // An 8-byte PT_NOTE cannot even hold a note header: the executable is invalid.
    let segs = vec![
        load_seg(PF_R | PF_X, 0x10_0000, 0x10, 0x1000),
        note_seg(vec![0; 8]),
        abi_note(1, 2),
        mft_note(),
    ];
    assert_eq!(
        parse_err(&image(ET_EXEC, 0x10_0000, &segs)),
        "INV_EXE: phdr[1] note does not fall within valid size"
    );
}

#[test]
fn test_manifest_descsz_smaller_than_its_pad_is_buggy_elf() {
    // solo5's test_buggyelf: the MFT1 n_descsz (2) is smaller than the 4-byte alignment pad.
    let mut mft = mft_note();
    mft.data[4..8].copy_from_slice(&2u32.to_le_bytes());
    let segs = vec![load_seg(PF_R | PF_X, 0x10_0000, 0x10, 0x1000), abi_note(1, 2), mft];
    assert_eq!(
        parse_err(&image(ET_EXEC, 0x10_0000, &segs)),
        "INV_EXE: phdr[2] note does not fall within valid size"
    );
}
