//! The ELF64 program header: the segment types the loader and the note reader look at.

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
