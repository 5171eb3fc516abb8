//! Solo5 ELF notes: one note per PT_NOTE, owner "Solo5".

use super::LoaderError;
use super::phdr::{PT_NOTE, ProgramHeader};

/// `"Solo5\0"` padded to 8 bytes.
const OWNER: &[u8; 8] = b"Solo5\0\0\0";
/// Note header (12 bytes) plus the padded owner name.
const NOTE_HEADER: usize = 20;

/// ABI1 note type ("ABI1").
pub const ABI1_NOTE_TYPE: u32 = 0x3149_4241;
/// MFT1 note type ("MFT1").
pub const MFT1_NOTE_TYPE: u32 = 0x3154_464d;
/// Largest ABI1 descriptor.
pub const ABI1_NOTE_MAX_SIZE: usize = 32;
/// Largest MFT1 descriptor.
pub const MFT1_NOTE_MAX_SIZE: usize = 6668;
/// Descriptor alignment of the ABI1 note.
pub const ABI1_NOTE_ALIGN: usize = 4;
/// Descriptor alignment of the MFT1 note.
pub const MFT1_NOTE_ALIGN: usize = 8;

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

/// Finds the Solo5 note of type `wanted` and returns its descriptor, without the alignment pad.
///
/// `Ok(None)` means no such note. A PT_NOTE shorter than a note header is an invalid executable;
/// one shorter than header + name is skipped; sizes that do not add up are an error.
pub fn find_note<'a>(
    image: &'a [u8],
    phdrs: &[ProgramHeader],
    wanted: u32,
    max: usize,
    align: usize,
) -> Result<Option<&'a [u8]>, LoaderError> {
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type != PT_NOTE {
            continue;
        }
        let size = usize::try_from(ph.p_filesz).map_err(|_| LoaderError::NoteSize(index))?;
        if size < 12 {
            return Err(LoaderError::NoteSize(index));
        }
        if size < NOTE_HEADER {
            continue;
        }
        let start = usize::try_from(ph.p_offset).map_err(|_| LoaderError::NoteSize(index))?;
        let end = start
            .checked_add(size)
            .filter(|e| *e <= image.len())
            .ok_or(LoaderError::NoteSize(index))?;
        let note = &image[start..end];
        let (namesz, descsz, ntype) = (u32_at(note, 0), u32_at(note, 4), u32_at(note, 8));
        if namesz != 6 || &note[12..20] != OWNER || ntype != wanted {
            continue;
        }
        let descsz = usize::try_from(descsz).map_err(|_| LoaderError::NoteSize(index))?;
        if descsz == 0 || descsz > max || size < NOTE_HEADER + descsz {
            return Err(LoaderError::NoteSize(index));
        }
        let desc_start = NOTE_HEADER.next_multiple_of(align);
        let pad = desc_start - NOTE_HEADER;
        let len = descsz.checked_sub(pad).ok_or(LoaderError::NoteSize(index))?;
        let desc_end = desc_start
            .checked_add(len)
            .filter(|e| *e <= note.len())
            .ok_or(LoaderError::NoteSize(index))?;
        return Ok(Some(&note[desc_start..desc_end]));
    }
    Ok(None)
}

/// Checks the ABI1 descriptor: `{u32 target, u32 version, u32 reserved[2]}` for hvt ABI 2.
pub fn check_abi(desc: &[u8]) -> Result<(), LoaderError> {
    if desc.len() < 8 {
        return Err(LoaderError::NoAbi);
    }
    if u32_at(desc, 0) != 1 {
        return Err(LoaderError::WrongTarget);
    }
    match u32_at(desc, 4) {
        2 => Ok(()),
        v => Err(LoaderError::AbiVersion(v)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A note blob with the given header fields and descriptor (padded for `align`).
    pub(crate) fn note(ntype: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let pad = NOTE_HEADER.next_multiple_of(align) - NOTE_HEADER;
        let mut n = Vec::new();
        n.extend_from_slice(&6u32.to_le_bytes());
        n.extend_from_slice(&u32::try_from(desc.len() + pad).unwrap().to_le_bytes());
        n.extend_from_slice(&ntype.to_le_bytes());
        n.extend_from_slice(OWNER);
        n.extend(std::iter::repeat_n(0, pad));
        n.extend_from_slice(desc);
        n
    }

    fn phdr_for(offset: u64, size: u64) -> ProgramHeader {
        ProgramHeader {
            p_type: PT_NOTE,
            p_offset: offset,
            p_filesz: size,
            ..Default::default()
        }
    }

    #[test]
    fn test_finds_abi_and_manifest_notes() {
        let abi = note(ABI1_NOTE_TYPE, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], ABI1_NOTE_ALIGN);
        let mft = note(MFT1_NOTE_TYPE, &[7; 112], MFT1_NOTE_ALIGN);
        let mut image = abi.clone();
        image.extend_from_slice(&mft);
        let phdrs = [phdr_for(0, abi.len() as u64), phdr_for(abi.len() as u64, mft.len() as u64)];
        let a = find_note(&image, &phdrs, ABI1_NOTE_TYPE, ABI1_NOTE_MAX_SIZE, ABI1_NOTE_ALIGN)
            .unwrap()
            .unwrap();
        assert_eq!(a.len(), 16);
        check_abi(a).unwrap();
        let m = find_note(&image, &phdrs, MFT1_NOTE_TYPE, MFT1_NOTE_MAX_SIZE, MFT1_NOTE_ALIGN)
            .unwrap()
            .unwrap();
        assert_eq!(m, &[7; 112][..]);
    }

    #[test]
    fn test_missing_note_is_none() {
        let other = note(0x1234, &[0; 8], 4);
        let phdrs = [phdr_for(0, other.len() as u64)];
        assert_eq!(find_note(&other, &phdrs, ABI1_NOTE_TYPE, 32, 4), Ok(None));
    }

    #[test]
    fn test_bad_sizes_are_rejected() {
        // descsz smaller than the MFT1 alignment pad: underflow.
        let mut n = note(MFT1_NOTE_TYPE, &[], MFT1_NOTE_ALIGN);
        n[4..8].copy_from_slice(&2u32.to_le_bytes());
        n.extend_from_slice(&[0; 8]);
        let phdrs = [phdr_for(0, n.len() as u64)];
        let err = find_note(&n, &phdrs, MFT1_NOTE_TYPE, MFT1_NOTE_MAX_SIZE, MFT1_NOTE_ALIGN).unwrap_err();
        assert!(err.to_string().contains("note does not fall within valid size"), "{err}");
        // descsz past the end of the PT_NOTE.
        let mut n = note(ABI1_NOTE_TYPE, &[0; 16], ABI1_NOTE_ALIGN);
        n[4..8].copy_from_slice(&30u32.to_le_bytes());
        let phdrs = [phdr_for(0, n.len() as u64)];
        assert_eq!(find_note(&n, &phdrs, ABI1_NOTE_TYPE, 32, 4), Err(LoaderError::NoteSize(0)));
        // over the maximum.
        let n = note(ABI1_NOTE_TYPE, &[0; 40], ABI1_NOTE_ALIGN);
        let phdrs = [phdr_for(0, n.len() as u64)];
        assert_eq!(find_note(&n, &phdrs, ABI1_NOTE_TYPE, 32, 4), Err(LoaderError::NoteSize(0)));
        // a PT_NOTE shorter than a note header.
        let phdrs = [phdr_for(0, 8)];
        assert_eq!(find_note(&[0; 8], &phdrs, ABI1_NOTE_TYPE, 32, 4), Err(LoaderError::NoteSize(0)));
        // a PT_NOTE reaching past the file.
        let phdrs = [phdr_for(0, 64)];
        assert_eq!(find_note(&[0; 32], &phdrs, ABI1_NOTE_TYPE, 32, 4), Err(LoaderError::NoteSize(0)));
    }

    #[test]
    fn test_abi_checks() {
        assert_eq!(check_abi(&[2, 0, 0, 0, 2, 0, 0, 0]), Err(LoaderError::WrongTarget));
        assert_eq!(check_abi(&[1, 0, 0, 0, 3, 0, 0, 0]), Err(LoaderError::AbiVersion(3)));
        assert_eq!(check_abi(&[1, 0, 0]), Err(LoaderError::NoAbi));
    }
}
