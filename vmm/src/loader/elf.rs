//! ELF64 parsing and loading under solo5-hvt's rules.

use super::LoaderError;
use super::notes::{ABI1_NOTE_ALIGN, ABI1_NOTE_MAX_SIZE, ABI1_NOTE_TYPE, MFT1_NOTE_ALIGN, MFT1_NOTE_MAX_SIZE, MFT1_NOTE_TYPE};
use super::notes::{check_abi, find_note};
pub(crate) use super::phdr::{PT_LOAD, PT_NOTE, ProgramHeader};
use super::phdr::{u16_at, u32_at, u64_at};
use crate::memory::GuestRam;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// Lowest load address (`HVT_GUEST_MIN_BASE`).
const GUEST_MIN_BASE: u64 = 0x10_0000;
const PAGE: u64 = 0x1000;

/// A PT_LOAD that passed the rules that do not depend on memory size.
#[derive(Debug, Clone, Copy)]
struct Segment {
    index: usize,
    ph: ProgramHeader,
    /// `align_down(p_vaddr, p_align)`.
    start: u64,
    /// `align_up(p_vaddr + p_memsz, p_align)`.
    end: u64,
}

/// A validated solo5-hvt executable, borrowed from its file image.
#[derive(Debug)]
pub struct Executable<'a> {
    /// Entry point.
    pub entry: u64,
    image: &'a [u8],
    segments: Vec<Segment>,
    manifest: &'a [u8],
}

/// Where the kernel landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedKernel {
    /// Entry point.
    pub entry: u64,
    /// Highest aligned end of the loaded segments (boot info `kernel_end`).
    pub kernel_end: u64,
}

fn header_err(what: &str) -> LoaderError {
    LoaderError::Header(what.to_string())
}

/// Parses the program header table.
pub(crate) fn program_headers(image: &[u8]) -> Result<Vec<ProgramHeader>, LoaderError> {
    let phoff = usize::try_from(u64_at(image, 32)).map_err(|_| header_err("program headers outside the file"))?;
    let phnum = usize::from(u16_at(image, 56));
    let table_end = phnum.checked_mul(PHDR_SIZE).and_then(|n| n.checked_add(phoff));
    if table_end.is_none_or(|end| end > image.len()) {
        return Err(header_err("program headers outside the file"));
    }
    Ok((0..phnum)
        .map(|i| {
            let p = &image[phoff + i * PHDR_SIZE..];
            ProgramHeader {
                p_type: u32_at(p, 0),
                p_flags: u32_at(p, 4),
                p_offset: u64_at(p, 8),
                p_vaddr: u64_at(p, 16),
                p_filesz: u64_at(p, 32),
                p_memsz: u64_at(p, 40),
                p_align: u64_at(p, 48),
            }
        })
        .collect())
}

fn check_header(image: &[u8], machine: u16) -> Result<(), LoaderError> {
    if image.len() < EHDR_SIZE || &image[..4] != b"\x7fELF" {
        return Err(header_err("not an ELF file"));
    }
    if image[4] != 2 {
        return Err(header_err("not a 64-bit ELF file"));
    }
    if image[5] != 1 {
        return Err(header_err("not a little-endian ELF file"));
    }
    if u32_at(image, 20) != 1 {
        return Err(header_err("unsupported ELF version"));
    }
    match u16_at(image, 16) {
        ET_EXEC => {}
        ET_DYN => return Err(LoaderError::Dynamic),
        t => return Err(LoaderError::Header(format!("ELF type {t} is not ET_EXEC"))),
    }
    let m = u16_at(image, 18);
    if m != machine {
        return Err(LoaderError::Header(format!("ELF machine {m} is not this host's ({machine})")));
    }
    if u16_at(image, 52) != 64 || u16_at(image, 54) != 56 || u16_at(image, 56) == 0 {
        return Err(header_err("bad ELF header or program header sizes"));
    }
    Ok(())
}

/// Applies the memory-independent rules to the PT_LOADs with file content, in order.
fn segments(image: &[u8], phdrs: &[ProgramHeader]) -> Result<Vec<Segment>, LoaderError> {
    let mut out: Vec<Segment> = Vec::new();
    let mut prev_end = 0;
    let mut prev_vaddr = 0;
    for (index, ph) in phdrs.iter().enumerate() {
        // Empty PT_LOADs (e.g. an empty .tdata at vaddr 0, or the BSS-only one) are skipped
        // before any validation, as solo5-hvt does.
        if ph.p_type != PT_LOAD || ph.p_filesz == 0 {
            continue;
        }
        let bad = |reason: &str| LoaderError::Segment {
            index,
            reason: reason.to_string(),
        };
        if ph.p_vaddr < GUEST_MIN_BASE {
            return Err(bad("loads below 0x100000"));
        }
        if ph.p_vaddr < prev_vaddr {
            return Err(bad("segments are not in ascending address order"));
        }
        if ph.p_align == 0 || !ph.p_align.is_power_of_two() {
            return Err(bad("alignment is not a power of two"));
        }
        if ph.p_memsz < ph.p_filesz {
            return Err(bad("memory size is smaller than file size"));
        }
        let start = ph.p_vaddr & !(ph.p_align - 1);
        let end = ph
            .p_vaddr
            .checked_add(ph.p_memsz)
            .and_then(|e| e.checked_next_multiple_of(ph.p_align))
            .ok_or_else(|| bad("segment end overflows"))?;
        if start < GUEST_MIN_BASE || start < prev_end {
            return Err(bad("segment overlaps the previous one or the reserved area"));
        }
        if start % PAGE != 0 || end % PAGE != 0 {
            return Err(bad("segment is not 4 KiB aligned"));
        }
        if ph.p_flags & PF_W != 0 && ph.p_flags & PF_X != 0 {
            return Err(bad("segment requests WRITE and EXEC permissions"));
        }
        let file_end = ph.p_offset.checked_add(ph.p_filesz);
        if file_end.is_none_or(|e| e > image.len() as u64) {
            return Err(bad("segment reaches past the end of the file"));
        }
        prev_end = end;
        prev_vaddr = ph.p_vaddr;
        out.push(Segment {
            index,
            ph: *ph,
            start,
            end,
        });
    }
    if out.is_empty() {
        return Err(header_err("no loadable segments"));
    }
    Ok(out)
}

impl<'a> Executable<'a> {
    /// Validates the header, the program headers, the ABI1 note (hvt target, ABI version 2) and
    /// finds the MFT1 note. `machine` is the ELF machine of this host (`EM_X86_64` or `EM_AARCH64`).
    pub fn parse(image: &'a [u8], machine: u16) -> Result<Executable<'a>, LoaderError> {
        check_header(image, machine)?;
        let phdrs = program_headers(image)?;
        let abi = find_note(image, &phdrs, ABI1_NOTE_TYPE, ABI1_NOTE_MAX_SIZE, ABI1_NOTE_ALIGN)?.ok_or(LoaderError::NoAbi)?;
        check_abi(abi)?;
        let manifest = find_note(image, &phdrs, MFT1_NOTE_TYPE, MFT1_NOTE_MAX_SIZE, MFT1_NOTE_ALIGN)?.ok_or(LoaderError::NoManifest)?;
        let segments = segments(image, &phdrs)?;
        Ok(Executable {
            entry: u64_at(image, 24),
            image,
            segments,
            manifest,
        })
    }

    /// The MFT1 descriptor: the `struct mft` image, without the note's alignment pad.
    pub fn manifest_note(&self) -> &'a [u8] {
        self.manifest
    }

    /// Checks the segments and entry point against guest memory (`p_vaddr < mem_size`,
    /// `p_vaddr + p_filesz <= mem_size`, aligned end `<= mem_size`, `0x100000 <= e_entry <
    /// mem_size`), copies each segment's file bytes to `p_vaddr`, and makes every non-writable
    /// segment's aligned range read-only on the host.
    ///
    /// `ram` must be freshly allocated (zero-filled). `[p_filesz, p_memsz)` is zero because of
    /// that: only the rest of the page the file bytes end in is cleared by hand (it is resident
    /// anyway); whole BSS pages are left untouched, so they cost host memory only once the guest
    /// uses them. Memory that already holds a kernel is refused (its text is read-only on the host).
    pub fn load(&self, ram: &mut GuestRam) -> Result<LoadedKernel, LoaderError> {
        if !ram.read_only_ranges().is_empty() {
            return Err(LoaderError::AlreadyLoaded);
        }
        let mem_size = ram.size();
        if self.entry < GUEST_MIN_BASE || self.entry >= mem_size {
            return Err(LoaderError::Header(format!(
                "entry point {:#x} is outside guest memory",
                self.entry
            )));
        }
        let mut kernel_end = 0;
        for seg in &self.segments {
            let ph = &seg.ph;
            let bad = |reason: String| LoaderError::Segment { index: seg.index, reason };
            let file_end = ph.p_vaddr.checked_add(ph.p_filesz).filter(|e| *e <= mem_size);
            let Some(file_end) = file_end.filter(|_| ph.p_vaddr < mem_size && seg.end <= mem_size) else {
                return Err(bad(format!(
                    "segment {:#x}..{:#x} does not fit in {mem_size:#x} bytes of memory",
                    seg.start, seg.end
                )));
            };
            // Offsets were checked against the file in `parse`; these conversions cannot fail.
            let off = usize::try_from(ph.p_offset).map_err(|_| bad("file offset".into()))?;
            let len = usize::try_from(ph.p_filesz).map_err(|_| bad("file size".into()))?;
            let bytes = off.checked_add(len).and_then(|end| self.image.get(off..end));
            let bytes = bytes.ok_or_else(|| bad("segment reaches past the end of the file".into()))?;
            let copy_err = |_| bad("could not copy into guest memory".into());
            ram.mmap_write(ph.p_vaddr, bytes).map_err(copy_err)?;
            // The rest of the last file page up to p_memsz; `seg.end` (page aligned, <= mem_size)
            // bounds it, and `p_vaddr + p_memsz <= seg.end`.
            let mem_end = ph.p_vaddr.saturating_add(ph.p_memsz);
            let tail = file_end
                .checked_next_multiple_of(PAGE)
                .unwrap_or(file_end)
                .min(mem_end)
                .saturating_sub(file_end);
            if tail > 0 {
                let zeros = vec![0u8; usize::try_from(tail).map_err(|_| bad("BSS size".into()))?];
                ram.mmap_write(file_end, &zeros).map_err(copy_err)?;
            }
            kernel_end = kernel_end.max(seg.end);
        }
        for seg in self.segments.iter().filter(|s| s.ph.p_flags & PF_W == 0) {
            ram.protect_read_only(seg.start, seg.end - seg.start)
                .map_err(|e| LoaderError::Segment {
                    index: seg.index,
                    reason: e.to_string(),
                })?;
        }
        Ok(LoadedKernel {
            entry: self.entry,
            kernel_end,
        })
    }
}

#[cfg(test)]
#[path = "elf_tests.rs"]
pub(crate) mod tests;
