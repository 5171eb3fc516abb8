//! The x86 Linux boot protocols: the guest physical layout, the memory map, loading the kernel
//! (bzImage, ELF vmlinux, PVH ELF — through linux-loader — or a multiboot kernel, see
//! [`super::multiboot`]) and the initrd, the command line, and the boot information the kernel
//! starts with (`boot_params` for the 64-bit entry, `hvm_start_info` for PVH, the multiboot
//! information structure for multiboot). Which protocol is [`crate::loader`]'s detector's call.

use std::path::Path;

use arch::LinuxEntry;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::LinuxError;
use super::multiboot;
use crate::error::Error;
use crate::host::files::Root;
use crate::loader::ImageKind;

/// `hvm_start_info` and what follows it.
const PVH_INFO: u64 = 0x6000;
const PVH_MEMMAP: u64 = 0x6040;
const PVH_MODLIST: u64 = 0x6100;
// The multiboot information and what it points to: 0x1000..0x1200 (multiboot.rs).
/// The zero page (`boot_params`).
const ZERO_PAGE: u64 = 0x7000;
/// The command line.
const CMDLINE: u64 = 0x20000;
/// Longest command line (without the NUL) of a kernel that does not say (an ELF vmlinux or PVH
/// kernel has no setup header).
pub const CMDLINE_MAX: usize = 4095;
/// Room for the command line at [`CMDLINE`]: up to the ACPI tables at 0xe0000.
const CMDLINE_ROOM: usize = 0xe_0000 - 0x2_0000 - 1;
/// Start of the EBDA: low RAM ends here.
const EBDA: u64 = 0x9fc00;
/// Where the kernel goes.
const HIMEM: u64 = 0x10_0000;
/// The MMIO hole below 4 GiB: virtio windows, then the IOAPIC, LAPIC and TSS area.
pub(super) const MMIO_BASE: u64 = 0xd000_0000;
const FOUR_GIB: u64 = 1 << 32;
const E820_RAM: u32 = 1;
const PVH_MAGIC: u32 = 0x336e_c578;

/// The RAM ranges for `size` bytes: below the MMIO hole, the rest from 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_BASE);
    let mut out = vec![(GuestAddress(0), usize::try_from(low).unwrap_or(usize::MAX))];
    if size > low {
        out.push((GuestAddress(FOUR_GIB), usize::try_from(size - low).unwrap_or(usize::MAX)));
    }
    out
}

/// The e820 map: low RAM up to the EBDA, then from 1 MiB (split around the MMIO hole).
pub fn e820(size: u64) -> Vec<(u64, u64)> {
    let mut out = vec![(0, EBDA)];
    for (start, len) in ram_ranges(size) {
        let (start, len) = (start.0, len as u64);
        let from = start.max(HIMEM);
        if start + len > from {
            out.push((from, start + len - from));
        }
    }
    out
}

fn write_error(what: &'static str) -> impl Fn(vm_memory::GuestMemoryError) -> Error {
    move |source| Error::Linux(LinuxError::BootData { what, source })
}

/// A loaded kernel and the protocol it boots with.
#[derive(Debug)]
pub(super) enum Kernel {
    /// A bzImage or ELF (PVH or 64-bit entry), loaded by linux-loader.
    Linux(KernelLoaderResult),
    /// A multiboot kernel.
    Multiboot(multiboot::Loaded),
}

impl Kernel {
    /// The end of the kernel in guest memory.
    pub(super) fn end(&self) -> u64 {
        match self {
            Kernel::Linux(loaded) => loaded.kernel_end,
            Kernel::Multiboot(loaded) => loaded.end,
        }
    }
}

/// Loads the kernel at `path` into `mem`, whose low RAM ends at `low_end`.
pub(super) fn load_kernel(root: Root<'_>, path: &Path, mem: &GuestMemoryMmap, low_end: u64) -> Result<Kernel, Error> {
    let err = |source| {
        Error::Linux(LinuxError::Load {
            path: path.to_path_buf(),
            source,
        })
    };
    let read_err = |source| Error::Kernel {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::host::files::open_regular(root, path).map_err(read_err)?;
    match crate::loader::image_kind(&file).map_err(read_err)? {
        ImageKind::BzImage => BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM)))
            .map(Kernel::Linux)
            .map_err(err),
        ImageKind::Arm64Image => Err(Error::Linux(LinuxError::Image {
            path: path.to_path_buf(),
            reason: "is an arm64 Image, which boots on an aarch64 host only".into(),
        })),
        ImageKind::Multiboot { header } => multiboot::load(&file, header, mem, low_end)
            .map(Kernel::Multiboot)
            .map_err(|reason| {
                Error::Linux(LinuxError::Multiboot {
                    path: path.to_path_buf(),
                    reason,
                })
            }),
        _ => Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM)))
            .map(Kernel::Linux)
            .map_err(err),
    }
}

/// The longest command line `loaded` accepts: the bzImage's own limit from its setup header
/// (`cmdline_size`, boot protocol 2.06+), else [`CMDLINE_MAX`].
pub(super) fn cmdline_max(loaded: &Kernel) -> usize {
    match loaded {
        Kernel::Linux(KernelLoaderResult {
            setup_header: Some(hdr), ..
        }) if hdr.cmdline_size > 0 => (hdr.cmdline_size as usize).min(CMDLINE_ROOM),
        _ => CMDLINE_MAX,
    }
}

/// Writes `cmdline` (NUL-terminated) where the kernel looks for it; returns its length.
pub(super) fn write_cmdline(mem: &GuestMemoryMmap, loaded: &Kernel, cmdline: String) -> Result<usize, Error> {
    let max = cmdline_max(loaded);
    if cmdline.len() > max {
        return Err(LinuxError::Cmdline { len: cmdline.len(), max }.into());
    }
    let mut bytes = cmdline.into_bytes();
    let len = bytes.len();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE))
        .map_err(write_error("command line"))?;
    Ok(len)
}

/// Writes the boot information for `loaded` and returns where its vCPUs start: the multiboot
/// entry with the multiboot information for a multiboot kernel, the PVH entry with
/// `hvm_start_info` when the kernel has the PVH note, else the 64-bit entry with `boot_params`.
pub(super) fn write_boot_info(
    mem: &GuestMemoryMmap,
    loaded: &Kernel,
    mem_size: u64,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    rsdp: u64,
) -> Result<LinuxEntry, Error> {
    let loaded = match loaded {
        Kernel::Linux(loaded) => loaded,
        Kernel::Multiboot(mb) => {
            let info_err = |reason| Error::Linux(LinuxError::MultibootInfo(reason));
            multiboot::write_info(mem, &e820(mem_size), CMDLINE, initrd).map_err(info_err)?;
            return Ok(LinuxEntry::Multiboot {
                eip: mb.entry,
                info: u32::try_from(multiboot::INFO).unwrap_or(0),
            });
        }
    };
    Ok(match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(rip) => {
            write_pvh_start_info(mem, mem_size, initrd, rsdp)?;
            LinuxEntry::Pvh {
                rip: rip.0,
                start_info: PVH_INFO,
            }
        }
        _ => {
            write_boot_params(mem, loaded, mem_size, cmdline_len, initrd, rsdp)?;
            // A bzImage's 64-bit entry is 0x200 past the protected-mode code; an ELF's is e_entry.
            let rip = loaded.kernel_load.0 + if loaded.setup_header.is_some() { 0x200 } else { 0 };
            LinuxEntry::Long64 {
                rip,
                boot_params: ZERO_PAGE,
            }
        }
    })
}

fn write_boot_params(
    mem: &GuestMemoryMmap,
    loaded: &KernelLoaderResult,
    mem_size: u64,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    rsdp: u64,
) -> Result<(), Error> {
    let mut params = boot_params {
        acpi_rsdp_addr: rsdp,
        ..Default::default()
    };
    if let Some(hdr) = loaded.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.boot_flag = 0xaa55;
        params.hdr.header = 0x5372_6448; // "HdrS"
        params.hdr.kernel_alignment = 0x0100_0000;
    }
    params.hdr.type_of_loader = 0xff;
    params.hdr.cmd_line_ptr = u32::try_from(CMDLINE).unwrap_or(0);
    params.hdr.cmdline_size = u32::try_from(cmdline_len).unwrap_or(0);
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = u32::try_from(addr).unwrap_or(0);
        params.hdr.ramdisk_size = u32::try_from(size).unwrap_or(0);
    }
    let map = e820(mem_size);
    params.e820_entries = u8::try_from(map.len()).unwrap_or(0);
    for (slot, (addr, size)) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: E820_RAM,
        };
    }
    mem.write_obj(params, GuestAddress(ZERO_PAGE)).map_err(write_error("zero page"))
}

/// Writes `hvm_start_info`, its memory map and (with an initrd) its module list.
fn write_pvh_start_info(mem: &GuestMemoryMmap, mem_size: u64, initrd: Option<(u64, u64)>, rsdp: u64) -> Result<(), Error> {
    let map = e820(mem_size);
    let info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { PVH_MODLIST } else { 0 },
        cmdline_paddr: CMDLINE,
        rsdp_paddr: rsdp,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries: u32::try_from(map.len()).unwrap_or(0),
        ..Default::default()
    };
    let write_err = write_error("PVH start info");
    mem.write_obj(info, GuestAddress(PVH_INFO)).map_err(&write_err)?;
    for (i, (addr, size)) in (0u64..).zip(map) {
        let entry = hvm_memmap_table_entry {
            addr,
            size,
            type_: E820_RAM,
            reserved: 0,
        };
        let at = PVH_MEMMAP + i * size_of::<hvm_memmap_table_entry>() as u64;
        mem.write_obj(entry, GuestAddress(at)).map_err(&write_err)?;
    }
    if let Some((paddr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(PVH_MODLIST)).map_err(&write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::is_bzimage;

    #[test]
    fn test_memory_map_skips_the_legacy_hole_and_the_mmio_hole() {
        assert_eq!(e820(16 << 20), [(0, EBDA), (HIMEM, (16 << 20) - HIMEM)]);
        let four = 4u64 << 30;
        assert_eq!(e820(four), [(0, EBDA), (HIMEM, MMIO_BASE - HIMEM), (FOUR_GIB, four - MMIO_BASE)]);
        assert_eq!(
            ram_ranges(four)[1],
            (GuestAddress(FOUR_GIB), usize::try_from(four - MMIO_BASE).unwrap())
        );
        assert_eq!(ram_ranges(32 << 20).len(), 1);
    }

    #[test]
    fn test_pvh_start_info_layout() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&ram_ranges(32 << 20)).unwrap();
        write_pvh_start_info(&mem, 32 << 20, Some((0x1f0_0000, 0x1234)), 0xe_0000).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO)).unwrap();
        assert_eq!((info.magic, info.version, info.nr_modules), (PVH_MAGIC, 1, 1));
        assert_eq!(
            (
                info.modlist_paddr,
                info.cmdline_paddr,
                info.rsdp_paddr,
                info.memmap_paddr,
                info.memmap_entries
            ),
            (PVH_MODLIST, CMDLINE, 0xe_0000, PVH_MEMMAP, 2)
        );
        // The memory map fits between the info and the module list.
        assert!(PVH_INFO + size_of::<hvm_start_info>() as u64 <= PVH_MEMMAP);
        assert!(PVH_MEMMAP + 2 * size_of::<hvm_memmap_table_entry>() as u64 <= PVH_MODLIST);
        let second: hvm_memmap_table_entry = mem.read_obj(GuestAddress(PVH_MEMMAP + 24)).unwrap();
        assert_eq!((second.addr, second.size, second.type_), (HIMEM, (32 << 20) - HIMEM, E820_RAM));
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST)).unwrap();
        assert_eq!((module.paddr, module.size), (0x1f0_0000, 0x1234));
        // Without an initrd: no modules, and no module list pointer.
        let mem = GuestMemoryMmap::<()>::from_ranges(&ram_ranges(32 << 20)).unwrap();
        write_pvh_start_info(&mem, 32 << 20, None, 0).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO)).unwrap();
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }

    #[test]
    fn test_bzimage_magic() {
        let mut head = vec![0u8; 0x210];
        assert!(!is_bzimage(&head));
        head[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(is_bzimage(&head));
        assert!(!is_bzimage(&head[..0x204]));
    }
}
