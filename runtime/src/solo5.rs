//! Recognising a solo5-hvt executable: vmm's detector decides ([`vmm::loader::image_kind`]), the
//! same one `unik boot` uses, so a bundle and a `boot` never disagree about what a file is. It
//! reads only the ELF headers, the note segments and the section names (an ordinary container's
//! `process.args[0]` may be a large binary that is not ours).
//!
//! Anything with Solo5's marks counts, valid or not (another solo5 target, a damaged header): a
//! bundle recognised here then fails with the loader's exact error rather than being handed to
//! runc, and is never booted as Linux.

use std::io;
use std::path::Path;

use vmm::loader::ImageKind;

/// Whether `path` is an ELF with Solo5's marks (its notes, interpreter or note sections). A file
/// that is not (a script, an ordinary program, a truncated file) is `Ok(false)`; an error is a
/// file that could not be opened or read.
pub fn is_solo5_hvt(path: &Path) -> io::Result<bool> {
    // Opened without blocking and only if regular: an image's FIFO must not hang `create`.
    let file = vmm::host::files::open_regular(vmm::host::files::Root::Host, path)?;
    Ok(vmm::loader::image_kind(&file)? == ImageKind::Solo5)
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
    const ABI1_NOTE_TYPE: u32 = 0x3149_4241;
    const PT_NOTE: u32 = 4;

    #[test]
    fn test_solo5_abi_note_is_recognised() {
        assert!(check_bytes(&elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI))));
        // After another note in the same segment (a GNU build id).
        let mut two = note(b"GNU\0", 3, &[0xab; 20]);
        two.extend(note(b"Solo5\0", ABI1_NOTE_TYPE, &HVT_ABI));
        assert!(check_bytes(&elf_with_notes(&two)));
    }

    #[test]
    fn test_damaged_or_foreign_solo5_executables_count() {
        // Another solo5 target, a manifest note alone, a descriptor size running past the
        // segment: Solo5's marks, so the loader (not runc) says what is wrong.
        let mut spt = HVT_ABI;
        spt[0] = 2;
        for bytes in [
            elf_with_notes(&note(b"Solo5\0", ABI1_NOTE_TYPE, &spt)),
            elf_with_notes(&note(b"Solo5\0", 0x3154_464d, &HVT_ABI)),
            elf_with_notes(&[
                6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x41, 0x42, 0x49, 0x31, b'S', b'o', b'l', b'o', b'5', 0, 0, 0,
            ]),
        ] {
            assert!(check_bytes(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn test_other_executables_are_not() {
        for bytes in [
            elf_with_notes(&note(b"GNU\0", ABI1_NOTE_TYPE, &HVT_ABI)),
            elf_with_notes(&note(b"GNU\0", 3, &[1; 20])),
            elf_with_notes(&[]),
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
        // A note segment outside the file does not hide the ABI note of a later one.
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
