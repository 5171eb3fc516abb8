//! Multiboot (version 1) kernels, such as Unikraft's QEMU images: the header, loading (a 32-bit
//! ELF by its PT_LOAD segments, or any image by the header's address fields, the "a.out
//! kludge"), and the information structure the kernel finds in EBX.
//!
//! [`crate::loader`] decides that an image is a multiboot kernel (the magic, 32-bit aligned, in
//! its first 8 KiB) and hands over the header's file offset; everything else about the header is
//! checked here, and every failure names what is wrong:
//! * `magic + flags + checksum` must be 0 (mod 2^32);
//! * of the required-feature flags (bits 0–15), unik provides bit 0 (modules page-aligned: the
//!   initrd is placed on a 4 KiB boundary) and bit 1 (memory information and map); bit 2 (a video
//!   mode) is accepted and ignored with a debug log, as unik has no framebuffer (the information
//!   structure then has no video or framebuffer fields); any other bit is refused;
//! * with bit 16 the address fields are used whatever the file's format (as GRUB and QEMU do);
//!   without it the kernel must be a 32-bit little-endian ELF executable for i386.
//!
//! Everything loaded (with bss) must lie in low RAM from 1 MiB up (below 1 MiB are the
//! monitor's boot structures: GDT, this information, page tables, command line, ACPI tables),
//! and nothing is read past the end of the file.
//!
//! The information structure and what it points to sit in one page below the other boot
//! structures (see the layout in [`super`]): the structure at [`INFO`], the memory map (the
//! e820 map other Linux-boot guests get) at 0x1080, the module list (one entry: the initrd)
//! at 0x1100, the boot loader's name `"unik"` at 0x1180 and the module's string `"initrd"` at
//! 0x11c0. The command line is the one every Linux-boot guest gets, with the
//! `virtio_mmio.device=` announcements.

use std::io;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::loader::{MULTIBOOT_MAGIC, MULTIBOOT_SEARCH, Source};

/// The multiboot information structure.
pub const INFO: u64 = 0x1000;
/// The memory map (24-byte entries: size, base, length, type).
const MMAP: u64 = 0x1080;
/// The module list (16-byte entries: start, end, string, reserved).
const MODS: u64 = 0x1100;
/// The boot loader's name.
const LOADER_NAME: u64 = 0x1180;
/// The initrd module's string.
const MOD_STRING: u64 = 0x11c0;
/// Size of the information structure up to and including the framebuffer fields.
const INFO_SIZE: usize = 116;
/// Most memory-map entries that fit between [`MMAP`] and [`MODS`].
const MMAP_MAX: usize = 5;

/// Where kernels may load from: below are the monitor's boot structures.
const LOAD_MIN: u64 = 0x10_0000;

const F_PAGE_ALIGN: u32 = 1 << 0;
const F_MEMORY: u32 = 1 << 1;
const F_VIDEO: u32 = 1 << 2;
const F_ADDRESSES: u32 = 1 << 16;
/// The required-feature bits (0–15) unik honours.
const REQUIRED_SUPPORTED: u32 = F_PAGE_ALIGN | F_MEMORY | F_VIDEO;

/// Information flags: mem_lower/mem_upper, cmdline, mods, mmap, boot_loader_name.
const INFO_FLAGS: u32 = 1 << 0 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9;

const EM_386: u16 = 3;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
/// More program headers than a kernel has.
const MAX_PHNUM: u16 = 64;
/// Bytes copied to guest memory at a time.
const CHUNK: usize = 64 << 10;

/// Why a multiboot kernel cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    /// The header does not fit in the file or in its first 8 KiB.
    #[error("the header at file offset {offset:#x} needs {need} bytes within the file's first {within} bytes")]
    Truncated {
        /// File offset of the magic.
        offset: u64,
        /// Bytes the header needs with its flags.
        need: u64,
        /// The file's size, or 8 KiB.
        within: u64,
    },
    /// No magic where the header was said to be.
    #[error("no multiboot magic at file offset {offset:#x}")]
    NoMagic {
        /// The offset given.
        offset: u64,
    },
    /// The checksum does not make the sum 0.
    #[error(
        "the header at file offset {offset:#x} has a bad checksum {checksum:#x}: magic + flags ({flags:#x}) + checksum is {sum:#x}, not 0"
    )]
    Checksum {
        /// File offset of the magic.
        offset: u64,
        /// The header's flags.
        flags: u32,
        /// The header's checksum.
        checksum: u32,
        /// What the three add up to.
        sum: u32,
    },
    /// Required features unik does not provide.
    #[error(
        "the header's flags {flags:#x} require features unik does not provide (bits {unsupported:#x}; supported: 0 page-aligned modules, 1 memory map, 2 video mode (ignored), 16 address fields)"
    )]
    Flags {
        /// The header's flags.
        flags: u32,
        /// The required bits unik lacks.
        unsupported: u32,
    },
    /// Two address fields in the wrong order.
    #[error("header field {field} ({value:#x}) is below {other} ({bound:#x})")]
    Order {
        /// The field that is too low.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The field it must not be below.
        other: &'static str,
        /// That field's value.
        bound: u32,
    },
    /// The header is not within what is loaded.
    #[error("the header (at header_addr {header_addr:#x}) is not within the loaded image, which ends at {load_end:#x}")]
    HeaderNotLoaded {
        /// The header's header_addr.
        header_addr: u32,
        /// End of the loaded image.
        load_end: u64,
    },
    /// header_addr − load_addr is more than the header's file offset: the image would start
    /// before the file.
    #[error(
        "header_addr {header_addr:#x} − load_addr {load_addr:#x} is more than the header's file offset {offset:#x}: the image would start before the file"
    )]
    BeforeFile {
        /// The header's header_addr.
        header_addr: u32,
        /// The header's load_addr.
        load_addr: u32,
        /// File offset of the header.
        offset: u64,
    },
    /// The image or a segment claims more bytes than the file holds.
    #[error("{what} claims {len} bytes from file offset {offset:#x}, but the file has {file_size} bytes")]
    PastFile {
        /// "the header" or "segment N".
        what: String,
        /// Bytes claimed.
        len: u64,
        /// From where.
        offset: u64,
        /// The file's size.
        file_size: u64,
    },
    /// Something would load below 1 MiB.
    #[error("{what} loads at {start:#x}..{end:#x}, over the monitor's boot structures below 1 MiB")]
    BelowLoadMin {
        /// "the image" or "segment N".
        what: String,
        /// Start address.
        start: u64,
        /// End address (exclusive).
        end: u64,
    },
    /// Something would load past the end of low RAM.
    #[error("{what} loads at {start:#x}..{end:#x}, outside guest RAM (which ends at {ram_end:#x} below 4 GiB)")]
    OutsideRam {
        /// "the image" or "segment N".
        what: String,
        /// Start address.
        start: u64,
        /// End address (exclusive).
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
    /// Two ELF segments overlap.
    #[error("segments {first} and {second} overlap in memory")]
    Overlap {
        /// Index of one segment.
        first: usize,
        /// Index of the other.
        second: usize,
    },
    /// The entry point is not in what was loaded.
    #[error("the entry point {entry:#x} is not in the loaded image")]
    Entry {
        /// The entry point.
        entry: u64,
    },
    /// The ELF header or a program header is not that of a 32-bit i386 executable.
    #[error("not a 32-bit ELF executable for i386: {0}")]
    Elf(&'static str),
    /// A 64-bit ELF without address fields: multiboot loads only 32-bit ELFs.
    #[error("a 64-bit ELF needs the header's address fields (flag 16) to boot with multiboot; convert it with `objcopy -O elf32-i386`")]
    Elf64,
    /// Neither an ELF nor address fields.
    #[error("not an ELF file, and the header has no address fields (flag 16) to load it by")]
    NoAddresses,
    /// The kernel file could not be read.
    #[error("reading the kernel: {0}")]
    Read(io::Error),
    /// Guest memory refused a write (cannot happen for checked ranges).
    #[error("could not write {len} bytes at {addr:#x} of guest memory")]
    Memory {
        /// Guest address.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// An address for the information structure does not fit in 32 bits.
    #[error("{what} at {addr:#x} is not below 4 GiB")]
    Above4G {
        /// What.
        what: &'static str,
        /// Its address.
        addr: u64,
    },
}

/// The header's address fields (flag 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// Where the header's magic is loaded.
    pub header_addr: u32,
    /// Where the image (from file offset `header offset − (header_addr − load_addr)`) starts.
    pub load_addr: u32,
    /// End of what is read from the file (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of the bss zeroed after it (0: no bss).
    pub bss_end_addr: u32,
    /// Entry point.
    pub entry_addr: u32,
}

/// A multiboot header that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: u64,
    /// The flags.
    pub flags: u32,
    /// The address fields, with flag 16.
    pub addresses: Option<Addresses>,
}

/// A loaded multiboot kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Entry point (32-bit protected mode).
    pub entry: u32,
    /// End of the highest loaded byte (bss included).
    pub end: u64,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2).map_or(0, |w| u16::from_le_bytes([w[0], w[1]]))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn read_exact(src: &(impl Source + ?Sized), offset: u64, len: u64, what: &str) -> Result<Vec<u8>, MultibootError> {
    let size = src.size().map_err(MultibootError::Read)?;
    let past = || MultibootError::PastFile {
        what: what.to_string(),
        len,
        offset,
        file_size: size,
    };
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(past());
    }
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| past())?];
    src.read_at(&mut buf, offset).map_err(MultibootError::Read)?;
    Ok(buf)
}

/// Reads and checks the header whose magic is at file offset `offset`.
pub fn parse_header(src: &(impl Source + ?Sized), offset: u64) -> Result<Header, MultibootError> {
    let within = src.size().map_err(MultibootError::Read)?.min(MULTIBOOT_SEARCH);
    let truncated = |need| MultibootError::Truncated { offset, need, within };
    if offset.checked_add(12).is_none_or(|end| end > within) {
        return Err(truncated(12));
    }
    let h = read_exact(src, offset, 12, "the header")?;
    let (magic, flags, checksum) = (u32_at(&h, 0), u32_at(&h, 4), u32_at(&h, 8));
    if magic != MULTIBOOT_MAGIC {
        return Err(MultibootError::NoMagic { offset });
    }
    let sum = magic.wrapping_add(flags).wrapping_add(checksum);
    if sum != 0 {
        return Err(MultibootError::Checksum {
            offset,
            flags,
            checksum,
            sum,
        });
    }
    let unsupported = flags & 0xffff & !REQUIRED_SUPPORTED;
    if unsupported != 0 {
        return Err(MultibootError::Flags { flags, unsupported });
    }
    if flags & F_VIDEO != 0 {
        log::debug!("multiboot: the kernel asks for a video mode; unik has no framebuffer and ignores it");
    }
    let addresses = if flags & F_ADDRESSES != 0 {
        if offset + 32 > within {
            return Err(truncated(32));
        }
        let a = read_exact(src, offset + 12, 20, "the header")?;
        Some(Addresses {
            header_addr: u32_at(&a, 0),
            load_addr: u32_at(&a, 4),
            load_end_addr: u32_at(&a, 8),
            bss_end_addr: u32_at(&a, 12),
            entry_addr: u32_at(&a, 16),
        })
    } else {
        None
    };
    Ok(Header { offset, flags, addresses })
}

/// Checks that `start..end` lies in low RAM from 1 MiB to `ram_end`.
fn check_place(what: &str, start: u64, end: u64, ram_end: u64) -> Result<(), MultibootError> {
    if start < LOAD_MIN {
        return Err(MultibootError::BelowLoadMin {
            what: what.to_string(),
            start,
            end,
        });
    }
    if end > ram_end {
        return Err(MultibootError::OutsideRam {
            what: what.to_string(),
            start,
            end,
            ram_end,
        });
    }
    Ok(())
}

/// Copies `len` bytes from file offset `offset` to guest address `addr`, a chunk at a time.
fn copy(src: &(impl Source + ?Sized), offset: u64, mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<(), MultibootError> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        let chunk = &mut buf[..usize::try_from(n).unwrap_or(CHUNK)];
        src.read_at(chunk, offset + done).map_err(MultibootError::Read)?;
        mem.write_slice(chunk, GuestAddress(addr + done))
            .map_err(|_| MultibootError::Memory { addr: addr + done, len: n })?;
        done += n;
    }
    Ok(())
}

/// Zeroes `len` bytes of guest memory at `addr`.
fn zero(mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<(), MultibootError> {
    let buf = [0u8; 4096];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64);
        let chunk = &buf[..usize::try_from(n).unwrap_or(buf.len())];
        mem.write_slice(chunk, GuestAddress(addr + done))
            .map_err(|_| MultibootError::Memory { addr: addr + done, len: n })?;
        done += n;
    }
    Ok(())
}

/// Loads the multiboot kernel `src`, whose header's magic is at file offset `header`, into
/// `mem`, whose low RAM ends at `ram_end`.
pub fn load(src: &(impl Source + ?Sized), header: u64, mem: &GuestMemoryMmap, ram_end: u64) -> Result<Loaded, MultibootError> {
    let h = parse_header(src, header)?;
    match h.addresses {
        Some(a) => load_by_addresses(src, h.offset, a, mem, ram_end),
        None => load_elf32(src, mem, ram_end),
    }
}

/// The "a.out kludge": the image by the header's address fields.
fn load_by_addresses(
    src: &(impl Source + ?Sized),
    offset: u64,
    a: Addresses,
    mem: &GuestMemoryMmap,
    ram_end: u64,
) -> Result<Loaded, MultibootError> {
    let order = |field, value, other, bound| MultibootError::Order {
        field,
        value,
        other,
        bound,
    };
    if a.header_addr < a.load_addr {
        return Err(order("header_addr", a.header_addr, "load_addr", a.load_addr));
    }
    let skip = u64::from(a.header_addr - a.load_addr);
    let file_offset = offset.checked_sub(skip).ok_or(MultibootError::BeforeFile {
        header_addr: a.header_addr,
        load_addr: a.load_addr,
        offset,
    })?;
    let size = src.size().map_err(MultibootError::Read)?;
    let start = u64::from(a.load_addr);
    let load_end = if a.load_end_addr == 0 {
        start + size.saturating_sub(file_offset)
    } else {
        if a.load_end_addr < a.load_addr {
            return Err(order("load_end_addr", a.load_end_addr, "load_addr", a.load_addr));
        }
        u64::from(a.load_end_addr)
    };
    let len = load_end - start;
    if file_offset + len > size {
        return Err(MultibootError::PastFile {
            what: "the header's load_addr..load_end_addr".into(),
            len,
            offset: file_offset,
            file_size: size,
        });
    }
    // The header itself must be part of what is loaded, where header_addr says.
    if u64::from(a.header_addr) + 12 > load_end {
        return Err(MultibootError::HeaderNotLoaded {
            header_addr: a.header_addr,
            load_end,
        });
    }
    let end = if a.bss_end_addr == 0 {
        load_end
    } else {
        if u64::from(a.bss_end_addr) < load_end {
            return Err(order(
                "bss_end_addr",
                a.bss_end_addr,
                "load_end_addr",
                u32::try_from(load_end).unwrap_or(u32::MAX),
            ));
        }
        u64::from(a.bss_end_addr)
    };
    check_place("the image", start, end, ram_end)?;
    let entry = u64::from(a.entry_addr);
    if !(start..load_end).contains(&entry) {
        return Err(MultibootError::Entry { entry });
    }
    copy(src, file_offset, mem, start, len)?;
    zero(mem, load_end, end - load_end)?;
    Ok(Loaded { entry: a.entry_addr, end })
}

/// A PT_LOAD of a 32-bit ELF.
#[derive(Debug, Clone, Copy)]
struct Segment {
    index: usize,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

/// A 32-bit ELF by its PT_LOAD segments, at their physical addresses.
fn load_elf32(src: &(impl Source + ?Sized), mem: &GuestMemoryMmap, ram_end: u64) -> Result<Loaded, MultibootError> {
    let size = src.size().map_err(MultibootError::Read)?;
    let eh = read_exact(src, 0, size.min(52), "the ELF header")?;
    if !eh.starts_with(b"\x7fELF") {
        return Err(MultibootError::NoAddresses);
    }
    if eh.len() < 52 {
        return Err(MultibootError::Elf("the ELF header is truncated"));
    }
    match (eh[4], eh[5]) {
        (2, _) => return Err(MultibootError::Elf64),
        (1, 1) => {}
        (1, _) => return Err(MultibootError::Elf("big-endian")),
        _ => return Err(MultibootError::Elf("unknown ELF class")),
    }
    if u16_at(&eh, 16) != ET_EXEC {
        return Err(MultibootError::Elf("not an executable (ET_EXEC)"));
    }
    if u16_at(&eh, 18) != EM_386 {
        return Err(MultibootError::Elf("its machine is not i386 (EM_386)"));
    }
    let (entry, phoff, phentsize, phnum) = (u32_at(&eh, 24), u64::from(u32_at(&eh, 28)), u16_at(&eh, 42), u16_at(&eh, 44));
    if phentsize != 32 {
        return Err(MultibootError::Elf("program header size is not 32"));
    }
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(MultibootError::Elf("no program headers, or more than 64"));
    }
    let table = read_exact(src, phoff, u64::from(phnum) * 32, "the program header table")?;
    let mut segments = Vec::new();
    for (index, ph) in table.chunks_exact(32).enumerate() {
        if u32_at(ph, 0) != PT_LOAD || u32_at(ph, 20) == 0 {
            continue;
        }
        let s = Segment {
            index,
            offset: u64::from(u32_at(ph, 4)),
            vaddr: u64::from(u32_at(ph, 8)),
            paddr: u64::from(u32_at(ph, 12)),
            filesz: u64::from(u32_at(ph, 16)),
            memsz: u64::from(u32_at(ph, 20)),
        };
        let what = format!("segment {index}");
        if s.filesz > s.memsz {
            return Err(MultibootError::Elf("a segment's file size is larger than its memory size"));
        }
        if s.offset + s.filesz > size {
            return Err(MultibootError::PastFile {
                what,
                len: s.filesz,
                offset: s.offset,
                file_size: size,
            });
        }
        check_place(&what, s.paddr, s.paddr + s.memsz, ram_end)?;
        if let Some(other) = segments
            .iter()
            .find(|o: &&Segment| s.paddr < o.paddr + o.memsz && o.paddr < s.paddr + s.memsz)
        {
            return Err(MultibootError::Overlap {
                first: other.index,
                second: index,
            });
        }
        segments.push(s);
    }
    if segments.is_empty() {
        return Err(MultibootError::Elf("no loadable segments"));
    }
    // e_entry is a virtual address: the segment holding it says where it is physically.
    let entry = u64::from(entry);
    let phys_entry = segments
        .iter()
        .find(|s| (s.vaddr..s.vaddr + s.memsz).contains(&entry))
        .map(|s| entry - s.vaddr + s.paddr)
        .and_then(|e| u32::try_from(e).ok())
        .ok_or(MultibootError::Entry { entry })?;
    let mut end = 0;
    for s in &segments {
        copy(src, s.offset, mem, s.paddr, s.filesz)?;
        zero(mem, s.paddr + s.filesz, s.memsz - s.filesz)?;
        end = end.max(s.paddr + s.memsz);
    }
    Ok(Loaded { entry: phys_entry, end })
}

fn low32(what: &'static str, addr: u64) -> Result<u32, MultibootError> {
    u32::try_from(addr).map_err(|_| MultibootError::Above4G { what, addr })
}

/// Writes the information structure at [`INFO`]: the memory (`map`, the e820 map, and
/// mem_lower/mem_upper from it), the command line at `cmdline`, the boot loader's name and,
/// with an initrd at `(address, size)`, one module.
pub fn write_info(mem: &GuestMemoryMmap, map: &[(u64, u64)], cmdline: u64, initrd: Option<(u64, u64)>) -> Result<(), MultibootError> {
    let write = |addr: u64, bytes: &[u8]| {
        mem.write_slice(bytes, GuestAddress(addr)).map_err(|_| MultibootError::Memory {
            addr,
            len: bytes.len() as u64,
        })
    };
    let mut info = [0u8; INFO_SIZE];
    let mut put = |off: usize, v: u32| info[off..off + 4].copy_from_slice(&v.to_le_bytes());
    // mem_lower: KiB of RAM from 0 (640 at most); mem_upper: KiB from 1 MiB to the first hole.
    let lower = map.iter().find(|(a, _)| *a == 0).map_or(0, |(_, l)| (l / 1024).min(640));
    let upper = map.iter().find(|(a, _)| *a == LOAD_MIN).map_or(0, |(_, l)| l / 1024);
    let entries = map.len().min(MMAP_MAX);
    put(0, INFO_FLAGS);
    put(4, low32("mem_lower", lower)?);
    put(8, u32::try_from(upper).unwrap_or(u32::MAX));
    put(16, low32("the command line", cmdline)?);
    put(20, u32::from(initrd.is_some()));
    put(24, low32("the module list", MODS)?);
    put(44, u32::try_from(entries * 24).unwrap_or(0));
    put(48, low32("the memory map", MMAP)?);
    put(64, low32("the boot loader name", LOADER_NAME)?);
    write(INFO, &info)?;
    for (i, (base, len)) in (0u64..).zip(map.iter().take(entries)) {
        let mut e = [0u8; 24];
        e[0..4].copy_from_slice(&20u32.to_le_bytes());
        e[4..12].copy_from_slice(&base.to_le_bytes());
        e[12..20].copy_from_slice(&len.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes()); // available RAM
        write(MMAP + i * 24, &e)?;
    }
    write(LOADER_NAME, b"unik\0")?;
    if let Some((addr, size)) = initrd {
        let mut m = [0u8; 16];
        m[0..4].copy_from_slice(&low32("the initrd", addr)?.to_le_bytes());
        m[4..8].copy_from_slice(&low32("the initrd's end", addr + size)?.to_le_bytes());
        m[8..12].copy_from_slice(&low32("the module string", MOD_STRING)?.to_le_bytes());
        write(MODS, &m)?;
        write(MOD_STRING, b"initrd\0")?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "multiboot_tests.rs"]
mod tests;
