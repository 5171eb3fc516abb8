//! The aarch64 machine of a Linux-boot guest: one RAM range from [`RAM_BASE`], the vCPUs (PSCI),
//! the vGIC, the console, debug exit and virtio devices on the MMIO bus, an arm64 `Image` at the
//! start of RAM (+ its `text_offset`), the initrd below the device tree, the device tree in the
//! last [`FDT_MAX`] bytes of RAM. The layout is [`arch::linux_layout`]'s.

use std::os::unix::fs::FileExt;
use std::path::Path;

use arch::LinuxEntry;
use arch::linux_layout::{
    FDT_MAX, GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE, RAM_BASE, SERIAL_BASE, SERIAL_CLOCK, SERIAL_SPI, TIMER_PPIS, WINDOW_SIZE,
};
use kvm_ioctls::{Kvm, VmFd};
use linux_loader::loader::{KernelLoader, PE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::devices::{self, Pending};
use super::fdt::{self, Description, Region, Serial};
use super::{LinuxError, Machine, kvm_err};
use crate::config::VmConfig;
use crate::error::Error;
use crate::host::files::Root;
use crate::loader::ImageKind;

/// The longest command line an arm64 kernel takes (its `COMMAND_LINE_SIZE`, less the NUL).
pub const CMDLINE_MAX: usize = 2047;
/// The arm64 `Image` header: its size, and where its fields are.
const HEADER_SIZE: usize = 64;
const TEXT_OFFSET_AT: usize = 8;
const IMAGE_SIZE_AT: usize = 16;
/// The `text_offset` of an image whose `image_size` is 0 (kernels before 3.17).
const OLD_TEXT_OFFSET: u64 = 0x8_0000;

fn image_error(path: &Path, reason: String) -> Error {
    Error::Linux(LinuxError::Image {
        path: path.to_path_buf(),
        reason,
    })
}

/// Where an arm64 `Image` goes and what it covers: (entry, end). Its header says how far past
/// its load address it reaches (`image_size`, BSS included), which must end below `limit`.
fn image_span(path: &Path, header: &[u8; HEADER_SIZE], file_size: u64, limit: u64) -> Result<(u64, u64), Error> {
    let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let (text_offset, image_size) = (field(TEXT_OFFSET_AT), field(IMAGE_SIZE_AT));
    let (text_offset, image_size) = if image_size == 0 {
        (OLD_TEXT_OFFSET, file_size)
    } else {
        (text_offset, image_size.max(file_size))
    };
    let entry = RAM_BASE
        .checked_add(text_offset)
        .filter(|e| *e < limit)
        .ok_or_else(|| image_error(path, format!("text_offset {text_offset:#x} is past the end of guest memory")))?;
    let end = entry.checked_add(image_size).filter(|e| *e <= limit).ok_or_else(|| {
        image_error(
            path,
            format!(
                "needs {image_size} bytes at {entry:#x}, which do not fit below the device tree at {limit:#x} (give the guest more memory)"
            ),
        )
    })?;
    Ok((entry, end))
}

/// Loads the arm64 `Image` at `path` at the start of RAM (linux-loader's PE loader); returns
/// (entry, end of the kernel).
fn load_image(root: Root<'_>, path: &Path, mem: &GuestMemoryMmap, limit: u64) -> Result<(u64, u64), Error> {
    let read_err = |source| Error::Kernel {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::host::files::open_regular(root, path).map_err(read_err)?;
    match crate::loader::image_kind(&file).map_err(read_err)? {
        ImageKind::Arm64Image => {}
        ImageKind::BzImage | ImageKind::Multiboot { .. } | ImageKind::Elf => {
            return Err(image_error(
                path,
                "is a bzImage, ELF or multiboot kernel, which boot on x86_64 only: on aarch64 unik boots arm64 Image kernels".into(),
            ));
        }
        _ => return Err(image_error(path, "is not an arm64 Image (no \"ARM\\x64\" magic at 0x38)".into())),
    }
    let mut header = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut header, 0).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let (entry, end) = image_span(path, &header, size, limit)?;
    let loaded = PE::load(mem, Some(GuestAddress(RAM_BASE)), &mut file, None)
        .map_err(|e| image_error(path, format!("not an Image unik can boot: {e}")))?;
    if loaded.kernel_load.0 != entry {
        return Err(image_error(path, format!("loaded at {:#x}, not {entry:#x}", loaded.kernel_load.0)));
    }
    Ok((entry, end))
}

/// Builds the machine of `cfg` with `mem_size` bytes of RAM and the devices of `pending`.
pub(super) fn build(
    kvm: &Kvm,
    vm: &VmFd,
    cfg: &VmConfig,
    mem_size: u64,
    pending: Vec<Pending>,
    console: Box<dyn std::io::Write + Send>,
) -> Result<Machine, Error> {
    let len = usize::try_from(mem_size).map_err(|_| arch::ArchError::MemorySize(mem_size))?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM_BASE), len)])
        .map_err(|source| LinuxError::Memory { size: mem_size, source })?;
    crate::memory::register_memory(vm, &mem)?;
    arch::setup_linux_vm(vm)?;

    let ram_end = RAM_BASE + mem_size;
    // The device tree takes the last 2 MiB; a guest too small for it gets no room for a kernel.
    let dtb = ram_end.saturating_sub(FDT_MAX).max(RAM_BASE);
    let (entry, kernel_end) = load_image(cfg.root(), &cfg.kernel, &mem, dtb)?;
    let initrd = match &cfg.initrd {
        Some(path) => Some(super::initrd::load(cfg.root(), path, &mem, kernel_end, dtb)?),
        None => None,
    };
    let bootargs = cfg.cmdline.join(" ");
    if bootargs.len() > CMDLINE_MAX {
        return Err(LinuxError::Cmdline {
            len: bootargs.len(),
            max: CMDLINE_MAX,
        }
        .into());
    }

    let mut vcpus = Vec::new();
    let mut mpidrs = Vec::new();
    for index in 0..cfg.vcpus {
        let vcpu = vm.create_vcpu(u64::from(index)).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let start = LinuxEntry::Arm64Image { pc: entry, dtb };
        arch::setup_linux_vcpu(kvm, vm, &vcpu, &mem, index, start)?;
        mpidrs.push(arch::mpidr(&vcpu)?);
        vcpus.push(vcpu);
    }
    let gic = super::gic::create(vm)?;
    let devices = devices::attach(vm, &mem, pending, console)?;

    let description = Description {
        memory: Region {
            base: RAM_BASE,
            len: mem_size,
        },
        cpus: &mpidrs,
        gicd: Region {
            base: GICD_BASE,
            len: GICD_SIZE,
        },
        gicr: Region {
            base: GICR_BASE,
            len: GICR_SIZE * mpidrs.len() as u64,
        },
        timer_ppis: TIMER_PPIS,
        serial: Serial {
            window: Region {
                base: SERIAL_BASE,
                len: WINDOW_SIZE,
            },
            spi: SERIAL_SPI,
            clock: SERIAL_CLOCK,
        },
        virtio: &devices.windows,
        bootargs: &bootargs,
        initrd,
    };
    let blob = fdt::build(&description, ram_end - dtb).map_err(LinuxError::Fdt)?;
    mem.write_slice(&blob, GuestAddress(dtb)).map_err(|source| LinuxError::BootData {
        what: "device tree",
        source,
    })?;
    log::debug!(
        "arm64 Image entry {entry:#x} (ends {kernel_end:#x}), device tree at {dtb:#x} ({} bytes), initrd {initrd:x?}",
        blob.len()
    );
    Ok(Machine {
        mem,
        vcpus,
        devices,
        irqchip: Some(gic),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[TEXT_OFFSET_AT..TEXT_OFFSET_AT + 8].copy_from_slice(&text_offset.to_le_bytes());
        h[IMAGE_SIZE_AT..IMAGE_SIZE_AT + 8].copy_from_slice(&image_size.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn test_image_span_from_its_header() {
        let p = Path::new("Image");
        let limit = RAM_BASE + (64 << 20);
        // image_size covers BSS beyond the file.
        assert_eq!(
            image_span(p, &header(0, 0x40_0000), 0x10_0000, limit).unwrap(),
            (RAM_BASE, RAM_BASE + 0x40_0000)
        );
        // An old image (image_size 0) sits at 0x80000 and covers its file.
        assert_eq!(
            image_span(p, &header(0x1234, 0), 0x1000, limit).unwrap(),
            (RAM_BASE + 0x8_0000, RAM_BASE + 0x8_1000)
        );
        let err = image_span(p, &header(0, 128 << 20), 0x1000, limit).unwrap_err().to_string();
        assert!(err.contains("do not fit below the device tree"), "{err}");
        let err = image_span(p, &header(u64::MAX, 1), 0x1000, limit).unwrap_err().to_string();
        assert!(err.contains("text_offset"), "{err}");
    }
}
