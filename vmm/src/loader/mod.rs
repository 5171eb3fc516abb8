//! The solo5-hvt ELF loader: header and segment validation, the ABI1 and MFT1 notes, loading.

mod elf;
mod notes;

pub use elf::{Executable, LoadedKernel};

/// The ELF machine this host boots (`EM_X86_64` or `EM_AARCH64`).
pub const HOST_MACHINE: u16 = arch::layout::ELF_MACHINE;

/// Why an executable cannot be booted. Messages keep solo5-hvt's wording where scripts match on it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoaderError {
    /// The ELF header is not that of a 64-bit little-endian executable for this machine.
    #[error("invalid executable: {0}")]
    Header(String),
    /// A position-independent executable (the default output of many bare-metal targets).
    #[error(
        "invalid executable: ET_DYN (position-independent) executables are not supported; link as ET_EXEC (-C relocation-model=static)"
    )]
    Dynamic,
    /// A program header or segment breaks a loading rule.
    #[error("invalid executable: phdr[{index}]: {reason}")]
    Segment {
        /// Index of the program header.
        index: usize,
        /// Which rule.
        reason: String,
    },
    /// A PT_NOTE whose sizes do not add up.
    #[error("INV_EXE: phdr[{0}] note does not fall within valid size")]
    NoteSize(usize),
    /// No ABI1 note.
    #[error("No Solo5 ABI information found in executable")]
    NoAbi,
    /// ABI1 note for another solo5 target.
    #[error("Executable is not for the solo5-hvt target")]
    WrongTarget,
    /// ABI1 note with another ABI version.
    #[error("Executable requests unsupported ABI version {0}")]
    AbiVersion(u32),
    /// No MFT1 note.
    #[error("No Solo5 manifest found in executable")]
    NoManifest,
    /// `load` called on guest memory that already holds a kernel.
    #[error("Guest memory already holds a loaded kernel")]
    AlreadyLoaded,
}

/// Which boot protocol the kernel at `path` speaks: an ELF with a Solo5 note is a solo5-hvt
/// unikernel; a bzImage or any other ELF boots with the Linux boot protocol. Anything else is
/// handed to the hvt loader, whose error then says what is wrong with it.
pub fn detect_kind(root: crate::host::files::Root<'_>, path: &std::path::Path) -> std::io::Result<crate::config::GuestKind> {
    use std::io::Read;
    let mut head = Vec::new();
    crate::host::files::open_regular(root, path)?.take(1 << 20).read_to_end(&mut head)?;
    Ok(kind_of(&head))
}

/// [`detect_kind`] on the first bytes of an image (the first MiB is plenty: program headers and
/// notes of every kernel come first).
pub fn kind_of(head: &[u8]) -> crate::config::GuestKind {
    use crate::config::GuestKind;
    if head.get(0x202..0x206) == Some(b"HdrS") {
        return GuestKind::Linux;
    }
    if head.len() >= 64 && head.starts_with(b"\x7fELF") && head[4] == 2 {
        if let Ok(phdrs) = elf::program_headers(head) {
            let solo5 = phdrs.iter().any(|ph| {
                ph.p_type == elf::PT_NOTE
                    && ph.p_filesz >= 20
                    && usize::try_from(ph.p_offset)
                        .ok()
                        .and_then(|off| head.get(off.checked_add(12)?..off.checked_add(18)?))
                        .is_some_and(|name| name == b"Solo5\0")
            });
            if !solo5 {
                return GuestKind::Linux;
            }
        }
    }
    GuestKind::Hvt
}
