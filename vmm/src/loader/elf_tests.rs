use super::*;
use crate::loader::notes::tests::note;

const EM_X86_64: u16 = 62;
const PF_R: u32 = 4;

/// One program header to put in a test image; `data` is its file content.
struct Seg {
    p_type: u32,
    flags: u32,
    vaddr: u64,
    data: Vec<u8>,
    memsz: u64,
    align: u64,
}

fn load_seg(flags: u32, vaddr: u64, filesz: usize, memsz: u64) -> Seg {
    Seg {
        p_type: PT_LOAD,
        flags,
        vaddr,
        data: vec![0xcc; filesz],
        memsz,
        align: 0x1000,
    }
}

fn abi_note(target: u32, version: u32) -> Seg {
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

fn mft_note() -> Seg {
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
fn image(e_type: u16, entry: u64, segs: &[Seg]) -> Vec<u8> {
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

fn good_segments() -> Vec<Seg> {
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
