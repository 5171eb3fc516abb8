//! Recognising a solo5-hvt executable by its ABI note, reading only the ELF headers and the note
//! segments (an ordinary container's `process.args[0]` may be a large binary that is not ours).
//!
//! Solo5 marks its executables with an ELF note of owner `"Solo5"` and type `ABI1`
//! (`0x31494241`) whose descriptor starts with `{u32 target, u32 version}`; target 1 is hvt.
//! Checking the version, the machine and the manifest is the loader's job: a bundle recognised
//! here then fails with the loader's exact error rather than being handed to runc.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// ELF note type of the Solo5 ABI note ("ABI1").
pub const ABI1_NOTE_TYPE: u32 = 0x3149_4241;
/// The ABI target of solo5-hvt executables.
pub const HVT_TARGET: u32 = 1;
const PT_NOTE: u32 = 4;
/// More program headers than any executable has: not an ELF we want.
const MAX_PHDRS: u16 = 512;
/// Note segments larger than this are skipped (Solo5's are well under 8 KiB).
const MAX_NOTE_SEGMENT: u64 = 64 << 10;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// Whether `path` is a 64-bit little-endian ELF with a Solo5 ABI note for the hvt target.
/// A file that is not such an ELF (a script, a truncated file, a directory's contents) is
/// `Ok(false)`; an error is a file that could not be opened or read.
pub fn is_solo5_hvt(path: &Path) -> io::Result<bool> {
    // Opened without blocking and only if regular: an image's FIFO must not hang `create`.
    let file = vmm::host::files::open_regular(path)?;
    match check(&file) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        other => other,
    }
}

fn check(file: &File) -> io::Result<bool> {
    let mut eh = [0u8; 64];
    file.read_exact_at(&mut eh, 0)?;
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if eh[..4] != *b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Ok(false);
    }
    let (phoff, phentsize, phnum) = (u64_at(&eh, 32), u16_at(&eh, 54), u16_at(&eh, 56));
    if phentsize != 56 || phnum == 0 || phnum > MAX_PHDRS {
        return Ok(false);
    }
    // Ranges outside the file are checked here rather than left to pread, which fails with
    // EINVAL for offsets past i64::MAX: a table outside the file is not an ELF we want, and a
    // note segment outside it is skipped (a later one may still hold the ABI note).
    let file_len = file.metadata()?.len();
    let inside = |offset: u64, size: u64| offset.checked_add(size).is_some_and(|end| end <= file_len);
    let table = u64::from(phnum) * 56;
    if !inside(phoff, table) {
        return Ok(false);
    }
    let mut phdrs = vec![0u8; usize::from(phnum) * 56];
    file.read_exact_at(&mut phdrs, phoff)?;
    for ph in phdrs.chunks_exact(56) {
        let (p_type, offset, size) = (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 32));
        if p_type != PT_NOTE || size > MAX_NOTE_SEGMENT || !inside(offset, size) {
            continue;
        }
        let Ok(len) = usize::try_from(size) else { continue };
        let mut notes = vec![0u8; len];
        file.read_exact_at(&mut notes, offset)?;
        if has_hvt_abi_note(&notes) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Walks the notes of one PT_NOTE segment (4-byte aligned name and descriptor).
fn has_hvt_abi_note(mut notes: &[u8]) -> bool {
    let pad4 = |n: usize| n.checked_next_multiple_of(4);
    while notes.len() >= 12 {
        let (Ok(namesz), Ok(descsz)) = (usize::try_from(u32_at(notes, 0)), usize::try_from(u32_at(notes, 4))) else {
            return false;
        };
        let ntype = u32_at(notes, 8);
        let Some(desc_at) = pad4(namesz).and_then(|n| n.checked_add(12)) else {
            return false;
        };
        let Some(end) = pad4(descsz).and_then(|d| d.checked_add(desc_at)) else {
            return false;
        };
        let Some(desc) = notes.get(desc_at..desc_at.saturating_add(descsz)) else {
            return false;
        };
        if notes.get(12..12 + namesz) == Some(&b"Solo5\0"[..]) && ntype == ABI1_NOTE_TYPE {
            return desc.len() >= 8 && u32_at(desc, 0) == HVT_TARGET;
        }
        notes = notes.get(end..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit ELF whose program headers are one PT_LOAD and one PT_NOTE holding `notes`.
    fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 64 + 2 * 56];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&2u16.to_le_bytes());
        out[64..68].copy_from_slice(&1u32.to_le_bytes());
        let note = 64 + 56;
        out[note..note + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        let at = out.len() as u64;
        out[note + 8..note + 16].copy_from_slice(&at.to_le_bytes());
        out[note + 32..note + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        out.extend_from_slice(notes);
        out
    }

    fn note(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
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

    fn check_bytes(bytes: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exe");
        std::fs::write(&path, bytes).unwrap();
        is_solo5_hvt(&path).unwrap()
    }

    const HVT_ABI: [u8; 16] = [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn test_solo5_abi_note_is_recognised() {
        assert!(check_bytes(&elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI))));
        // After another note in the same segment (a GNU build id).
        let mut two = note(b"GNU\0", 3, &[0xab; 20]);
        two.extend(note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI));
        assert!(check_bytes(&elf_with_notes(&two)));
    }

    #[test]
    fn test_other_executables_are_not() {
        let mut spt = HVT_ABI;
        spt[0] = 2;
        for bytes in [
            elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &spt)),
            elf_with_notes(&note(b"Solo5\0", 0x3154_464d, &HVT_ABI)),
            elf_with_notes(&note(b"GNU\0", ABI1_NOTE_TYPE, &HVT_ABI)),
            elf_with_notes(&note(b"GNU\0", 3, &[1; 20])),
            elf_with_notes(&[]),
            // A descriptor size running past the segment.
            elf_with_notes(&[
                6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x41, 0x42, 0x49, 0x31, b'S', b'o', b'l', b'o', b'5', 0, 0, 0,
            ]),
            b"#!/bin/sh\necho hi\n".to_vec(),
            b"\x7fELF".to_vec(),
            Vec::new(),
        ] {
            assert!(!check_bytes(&bytes), "{bytes:?}");
        }
        let mut truncated = elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI));
        truncated.truncate(truncated.len() - 8);
        assert!(!check_bytes(&truncated));
        let missing = tempfile::tempdir().unwrap();
        is_solo5_hvt(&missing.path().join("nope")).unwrap_err();
    }

    #[test]
    fn test_offsets_outside_the_file_are_not_errors() {
        // Found by the elf_loader fuzz target: a program header table at an offset past
        // i64::MAX made pread fail with EINVAL, an error instead of "not a solo5 executable".
        let mut bytes = elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI));
        bytes[32..40].copy_from_slice(&0xffff_fb00_0000_0040u64.to_le_bytes());
        assert!(!check_bytes(&bytes));
        // A note segment outside the file (skipped by the loader when shorter than a note
        // header plus name) does not hide the ABI note of a later one.
        let mut bytes = elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI));
        let load = 64;
        bytes[load..load + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        bytes[load + 8..load + 16].copy_from_slice(&(1u64 << 63).to_le_bytes());
        bytes[load + 32..load + 40].copy_from_slice(&16u64.to_le_bytes());
        assert!(check_bytes(&bytes));
        let end = bytes.len() as u64;
        bytes[load + 8..load + 16].copy_from_slice(&end.to_le_bytes());
        assert!(check_bytes(&bytes));
    }
}
