//! The solo5-hvt ELF loader: header and segment validation, the ABI1 and MFT1 notes, loading.

mod detect;
mod elf;
mod notes;
mod phdr;

pub use detect::Source;
pub use detect::{ImageKind, MULTIBOOT_MAGIC, MULTIBOOT_SEARCH, image_kind, image_kind_of, is_arm64_image, is_bzimage};
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

/// Which boot protocol the kernel at `path` speaks (see [`ImageKind`]): an ELF with any of
/// Solo5's marks is a solo5-hvt unikernel (or an invalid one, never Linux); a bzImage, a
/// multiboot kernel or any other ELF with loadable segments boots with the Linux boot protocol. Anything else is handed
/// to the hvt loader, whose error then says what is wrong with it.
pub fn detect_kind(root: crate::host::files::Root<'_>, path: &std::path::Path) -> std::io::Result<crate::config::GuestKind> {
    Ok(image_kind(&crate::host::files::open_regular(root, path)?)?.guest_kind())
}

/// [`detect_kind`] on an image in memory (the whole file, or at least its headers).
pub fn kind_of(image: &[u8]) -> crate::config::GuestKind {
    image_kind_of(image).guest_kind()
}

/// Why a kernel with Solo5's marks is not booted with the Linux boot protocol, even when asked.
pub const SOLO5_NOT_LINUX: &str =
    "the kernel carries Solo5's marks (a solo5-hvt unikernel, possibly damaged): it cannot boot with the Linux boot protocol";

/// Whether the file at `path` carries Solo5's marks ([`ImageKind::Solo5`]); a file that cannot be
/// read is not (its reader reports why).
pub fn is_solo5(root: crate::host::files::Root<'_>, path: &std::path::Path) -> bool {
    crate::host::files::open_regular(root, path)
        .and_then(|f| image_kind(&f))
        .is_ok_and(|k| k == ImageKind::Solo5)
}
