//! The ELF64 program header, the segment types the loader and the note reader look at, and the
//! little-endian field readers of the ELF parsers.

/// A loadable segment.
pub(crate) const PT_LOAD: u32 = 1;
/// A segment of notes.
pub(crate) const PT_NOTE: u32 = 4;

/// The fields of an ELF64 program header the loader uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Segment type.
    pub p_type: u32,
    /// PF_R / PF_W / PF_X.
    pub p_flags: u32,
    /// Offset in the file.
    pub p_offset: u64,
    /// Load address (VA == GPA; `p_paddr` is ignored).
    pub p_vaddr: u64,
    /// Bytes in the file.
    pub p_filesz: u64,
    /// Bytes in memory.
    pub p_memsz: u64,
    /// Alignment.
    pub p_align: u64,
}

/// The little-endian `u16` at `off` (the caller checked the bounds).
pub(super) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// The little-endian `u32` at `off` (the caller checked the bounds).
pub(super) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The little-endian `u64` at `off` (the caller checked the bounds).
pub(super) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}
