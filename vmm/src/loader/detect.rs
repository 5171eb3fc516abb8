//! What a kernel image is, by its marks rather than by whether it is valid: the one detector
//! `unik boot`, `Vm::build` and the OCI runtime (is `process.args[0]` a unikernel?) share.
//!
//! An ELF carrying any of Solo5's marks is a solo5-hvt unikernel or an invalid one, never a
//! Linux kernel: a damaged unikernel booted with the Linux boot protocol would run whatever its
//! entry point holds (zeroed memory: a vCPU spinning forever). The marks are
//! * a PT_NOTE holding a note whose owner is `"Solo5"` (the ABI1 or MFT1 note, or any other);
//! * a PT_INTERP naming solo5's `/nonexistent/solo5/` interpreter;
//! * a section named `.note.solo5.*` (found through the section headers, so a program header
//!   table that was zeroed or truncated does not hide it).
//!
//! Otherwise, in this order:
//! * a bzImage (`HdrS` at 0x202, in a file that is not an ELF: an ELF's bytes there are its
//!   own, whatever they read) boots with the Linux boot protocol;
//! * an arm64 `Image` (the magic `ARM\x64` at 0x38, in a file that is not an ELF) boots with
//!   the arm64 boot protocol (on aarch64 only; on x86_64 the loader says so);
//! * a 64-bit ELF with a PVH note (owner `"Xen"`, type 18, XEN_ELFNOTE_PHYS32_ENTRY) boots at
//!   its PVH entry, even if it also carries a multiboot header: PVH wins, as it hands over more
//!   (ACPI, a 64-bit memory map) and is what the image's author added last;
//! * any file with the multiboot (version 1) magic `0x1BADB002`, 32-bit aligned, in its first
//!   8 KiB is a multiboot kernel (a 32-bit ELF, a 64-bit ELF or a raw image loaded by the
//!   header's address fields): whether its header is valid (checksum, flags, addresses) is the
//!   multiboot loader's to say, so a damaged header is an error naming what is wrong rather than
//!   a kernel started at the wrong entry;
//! * a 64-bit ELF with loadable segments is a vmlinux (the 64-bit Linux entry).
//!
//! Only a file read through bounded reads at known offsets is looked at: an ordinary container's
//! `process.args[0]` may be a large binary that is not ours.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::phdr::{u16_at, u32_at, u64_at};
use crate::config::GuestKind;

/// What an image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// An ELF with Solo5's marks: a solo5-hvt unikernel, or a damaged one (the hvt loader then
    /// says what is wrong). Never booted as Linux.
    Solo5,
    /// A bzImage (the x86 Linux boot protocol's `HdrS` header).
    BzImage,
    /// An arm64 `Image` (its 64-byte header's magic `ARM\x64` at 0x38).
    Arm64Image,
    /// A 64-bit little-endian ELF with loadable segments and none of Solo5's marks: a vmlinux,
    /// a PVH kernel, or an ordinary program.
    Elf,
    /// A multiboot (version 1) kernel: the magic at file offset `header` (32-bit aligned, in
    /// the first 8 KiB); the header itself is not validated here.
    Multiboot {
        /// File offset of the header's magic.
        header: u64,
    },
    /// None of these; the reason, e.g. "is not an ELF file".
    Unrecognised(&'static str),
}

impl ImageKind {
    /// The boot protocol for this image: hvt for a Solo5 ELF and for anything unrecognised (the
    /// hvt loader's error then says what is wrong), Linux for a bzImage or a plain ELF.
    pub fn guest_kind(&self) -> GuestKind {
        match self {
            ImageKind::BzImage | ImageKind::Arm64Image | ImageKind::Elf | ImageKind::Multiboot { .. } => GuestKind::Linux,
            ImageKind::Solo5 | ImageKind::Unrecognised(_) => GuestKind::Hvt,
        }
    }
}

/// solo5's PT_INTERP, which makes a unikernel fail clearly when run as a host program.
const SOLO5_INTERP: &[u8] = b"/nonexistent/solo5/";
/// Prefix of the names of solo5's note sections.
const SOLO5_SECTION: &[u8] = b".note.solo5.";
const PT_INTERP: u32 = 3;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
/// More program or section headers than any kernel has: the rest is not looked at.
const MAX_HEADERS: u64 = 4096;
/// Note segments (all of them together), interpreters and section-name tables larger than this
/// are not read.
const MAX_READ: u64 = 1 << 20;

/// The multiboot (version 1) header's magic.
pub const MULTIBOOT_MAGIC: u32 = 0x1bad_b002;
/// The multiboot header lies within this many bytes from the start of the file.
pub const MULTIBOOT_SEARCH: u64 = 8192;
/// The PVH note: owner "Xen", type XEN_ELFNOTE_PHYS32_ENTRY.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Random access to an image: a file, or bytes in memory (tests, callers that read it whole).
pub trait Source {
    /// Fills `buf` from `offset`; `UnexpectedEof` if the image ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The image's size in bytes.
    fn size(&self) -> io::Result<u64>;
}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // An offset no file reaches (pread takes a signed one) is past the end, not an error.
        // (pread refuses a range whose end passes i64::MAX with EINVAL.)
        if offset.checked_add(buf.len() as u64).is_none_or(|end| i64::try_from(end).is_err()) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        self.read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl Source for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// Reads `len` bytes at `offset`, or `None` when they are not all there or `len` is too large.
fn read(src: &(impl Source + ?Sized), offset: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(len) = usize::try_from(len).ok().filter(|_| len <= MAX_READ) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; len];
    match src.read_at(&mut buf, offset) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// What one note segment holds: (a note whose owner is "Solo5", the PVH entry note), walking
/// every note in it, with 4-byte aligned names and descriptors; a size that runs off the
/// segment ends the walk.
fn scan_notes(mut notes: &[u8]) -> (bool, bool) {
    let (mut solo5, mut pvh) = (false, false);
    while notes.len() >= 12 {
        let (namesz, descsz) = (u64::from(u32_at(notes, 0)), u64::from(u32_at(notes, 4)));
        solo5 |= namesz == 6 && notes.get(12..18) == Some(&b"Solo5\0"[..]);
        pvh |= namesz == 4 && u32_at(notes, 8) == XEN_ELFNOTE_PHYS32_ENTRY && notes.get(12..16) == Some(&b"Xen\0"[..]);
        let next = 12 + namesz.next_multiple_of(4) + descsz.next_multiple_of(4);
        let Some(rest) = usize::try_from(next).ok().and_then(|n| notes.get(n..)) else {
            break;
        };
        notes = rest;
    }
    (solo5, pvh)
}

/// What the program headers say about an ELF.
#[derive(Debug, Default, Clone, Copy)]
struct Programs {
    /// One carries a Solo5 mark.
    solo5: bool,
    /// A PT_LOAD has file content.
    loadable: bool,
    /// A PT_NOTE holds the PVH entry note.
    pvh: bool,
}

/// Where the fields the detector reads sit in a little-endian ELF of either class (Solo5's marks
/// are looked for in both: a 32-bit copy of a unikernel is still one).
#[derive(Debug, Clone, Copy)]
struct Class {
    /// ELFCLASS64.
    wide: bool,
}

impl Class {
    /// An address-sized field: 8 bytes in a 64-bit ELF, 4 in a 32-bit one.
    fn word(self, b: &[u8], off64: usize, off32: usize) -> u64 {
        if self.wide { u64_at(b, off64) } else { u64::from(u32_at(b, off32)) }
    }

    fn half(self, b: &[u8], off64: usize, off32: usize) -> u64 {
        u64::from(u16_at(b, if self.wide { off64 } else { off32 }))
    }

    fn phdr_size(self) -> u64 {
        if self.wide { PHDR_SIZE } else { 32 }
    }

    fn shdr_size(self) -> u64 {
        if self.wide { SHDR_SIZE } else { 40 }
    }
}

/// The program headers' verdict, `None` when the table is not there to read.
fn scan_program_headers(src: &(impl Source + ?Sized), eh: &[u8], class: Class) -> io::Result<Option<Programs>> {
    let (phoff, phentsize, phnum) = (class.word(eh, 32, 28), class.half(eh, 54, 42), class.half(eh, 56, 44));
    let size = class.phdr_size();
    if phentsize != size || phnum == 0 || phnum > MAX_HEADERS {
        return Ok(None);
    }
    let Some(table) = read(src, phoff, phnum * size)? else {
        return Ok(None);
    };
    let mut found = Programs::default();
    // Note segments read in all: a file with thousands of large ones costs no more than this.
    let mut note_budget = MAX_READ;
    for ph in table.chunks_exact(usize::try_from(size).unwrap_or(56)) {
        let (p_type, offset, size) = (u32_at(ph, 0), class.word(ph, 8, 4), class.word(ph, 32, 16));
        match p_type {
            super::elf::PT_LOAD => found.loadable |= size > 0,
            super::elf::PT_NOTE if !found.solo5 && size <= note_budget => {
                note_budget -= size;
                let (solo5, pvh) = read(src, offset, size)?.map_or((false, false), |n| scan_notes(&n));
                found.solo5 |= solo5;
                found.pvh |= pvh;
            }
            PT_INTERP => {
                let len = size.min(SOLO5_INTERP.len() as u64);
                found.solo5 |= read(src, offset, len)?.is_some_and(|i| i == SOLO5_INTERP);
            }
            _ => {}
        }
    }
    Ok(Some(found))
}

/// Whether a section is named `.note.solo5.*`.
fn has_solo5_section(src: &(impl Source + ?Sized), eh: &[u8], class: Class) -> io::Result<bool> {
    let (shoff, shentsize, shnum, shstrndx) = (
        class.word(eh, 40, 32),
        class.half(eh, 58, 46),
        class.half(eh, 60, 48),
        class.half(eh, 62, 50),
    );
    let size = class.shdr_size();
    if shoff == 0 || shentsize != size || shnum == 0 || shnum > MAX_HEADERS || shstrndx >= shnum {
        return Ok(false);
    }
    let Some(table) = read(src, shoff, shnum * size)? else {
        return Ok(false);
    };
    let strtab_hdr = &table[usize::try_from(shstrndx * size).unwrap_or(0)..];
    let Some(names) = read(src, class.word(strtab_hdr, 24, 16), class.word(strtab_hdr, 32, 20))? else {
        return Ok(false);
    };
    Ok(table.chunks_exact(usize::try_from(size).unwrap_or(64)).any(|sh| {
        usize::try_from(u32_at(sh, 0))
            .ok()
            .and_then(|at| names.get(at..))
            .is_some_and(|name| name.starts_with(SOLO5_SECTION))
    }))
}

/// The file offset of the first multiboot magic, 32-bit aligned, in the first 8 KiB.
fn multiboot_header(src: &(impl Source + ?Sized)) -> io::Result<Option<u64>> {
    let len = src.size()?.min(MULTIBOOT_SEARCH);
    let Some(head) = read(src, 0, len)? else {
        return Ok(None);
    };
    Ok((0u64..)
        .zip(head.chunks_exact(4))
        .find(|(_, w)| u32_at(w, 0) == MULTIBOOT_MAGIC)
        .map(|(i, _)| i * 4))
}

/// Whether `image_head` (a file's first 0x206 bytes or more) is a bzImage: "HdrS" at 0x202, in a
/// file that is not an ELF (whose bytes there are its own).
pub fn is_bzimage(image_head: &[u8]) -> bool {
    image_head.get(0x202..0x206) == Some(b"HdrS") && !image_head.starts_with(b"\x7fELF")
}

/// Where an arm64 `Image` header keeps its magic, and the magic.
const ARM64_MAGIC_AT: usize = 0x38;
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";

/// Whether `image_head` (a file's first 64 bytes or more) is an arm64 `Image`: its header's magic
/// at 0x38, in a file that is not an ELF.
pub fn is_arm64_image(image_head: &[u8]) -> bool {
    image_head.get(ARM64_MAGIC_AT..ARM64_MAGIC_AT + 4) == Some(&ARM64_MAGIC[..]) && !image_head.starts_with(b"\x7fELF")
}

fn kind(src: &(impl Source + ?Sized)) -> io::Result<ImageKind> {
    let head = match read(src, 0, 0x206)?.or(read(src, 0, EHDR_SIZE as u64)?) {
        Some(head) => head,
        None => read(src, 0, src.size()?.min(EHDR_SIZE as u64))?.unwrap_or_default(),
    };
    if is_bzimage(&head) {
        return Ok(ImageKind::BzImage);
    }
    if is_arm64_image(&head) {
        return Ok(ImageKind::Arm64Image);
    }
    let multiboot = multiboot_header(src)?.map(|header| ImageKind::Multiboot { header });
    if !head.starts_with(b"\x7fELF") || head.len() < EHDR_SIZE {
        return Ok(multiboot.unwrap_or(ImageKind::Unrecognised(if head.len() < EHDR_SIZE {
            "is too short to be a kernel (not an ELF file)"
        } else {
            "is not an ELF file"
        })));
    }
    let class = match (head[4], head[5]) {
        (2, 1) => Class { wide: true },
        (1, 1) => Class { wide: false },
        (2, _) => return Ok(ImageKind::Unrecognised("is a big-endian ELF file")),
        _ => return Ok(multiboot.unwrap_or(ImageKind::Unrecognised("is not a 64-bit ELF file"))),
    };
    let eh = &head[..EHDR_SIZE];
    let programs = scan_program_headers(src, eh, class)?;
    if programs.is_some_and(|p| p.solo5) || has_solo5_section(src, eh, class)? {
        return Ok(ImageKind::Solo5);
    }
    if !class.wide {
        // Only multiboot boots a 32-bit ELF.
        return Ok(multiboot.unwrap_or(ImageKind::Unrecognised("is not a 64-bit ELF file")));
    }
    Ok(match (programs, multiboot) {
        (Some(p), _) if p.pvh && p.loadable => ImageKind::Elf,
        (_, Some(multiboot)) => multiboot,
        (Some(p), None) if p.loadable => ImageKind::Elf,
        (Some(_), None) => ImageKind::Unrecognised("is an ELF file without loadable segments"),
        (None, None) => ImageKind::Unrecognised("is an ELF file whose program headers are missing or damaged"),
    })
}

/// What the open file `file` is.
pub fn image_kind(file: &File) -> io::Result<ImageKind> {
    kind(file)
}

/// What the image `image` (the whole file, or at least its headers) is.
pub fn image_kind_of(image: &[u8]) -> ImageKind {
    // Reads from memory fail only by running off the end, which `read` turns into `None`.
    kind(image).unwrap_or(ImageKind::Unrecognised("could not be read"))
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
