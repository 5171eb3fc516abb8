//! Guests booted with the Linux boot protocol (x86_64): bzImage, ELF vmlinux (64-bit entry with
//! `boot_params`) or an ELF with a PVH note (32-bit entry with `hvm_start_info`); an initrd,
//! the command line, one or more vCPUs, the in-kernel irqchip and PIT, a 16550 console, and
//! virtio-mmio block and net devices announced with `virtio_mmio.device=` on the command line.
//!
//! The same devices are described in ACPI tables (see [`crate::acpi`]) for kernels that find
//! them that way.
//!
//! Guest physical layout: 0x500 GDT, 0x6000 `hvm_start_info` (+ memory map and module list),
//! 0x7000 zero page, 0x9000 page tables, 0x20000 command line, 0xe0000 ACPI tables, 1 MiB
//! kernel, initrd at the top of low memory, virtio-mmio windows from 0xd000_0000 (IRQ 5
//! upwards), RAM above 3.25 GiB moved to 4 GiB.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arch::LinuxEntry;
use kvm_ioctls::{IoEventAddress, Kvm, VcpuFd, VmFd};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::acpi::{self, MmioDevice, SleepControl};
use crate::config::{BlockConfig, MacAddr, NetBackend, NetConfig, VmConfig};
use crate::devices::event_loop::{EventLoop, VirtioEvents};
use crate::devices::legacy::{self, DebugExit, I8042, Uart};
use crate::devices::virtio::VirtioDevice;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::{MMIO_LEN, MmioTransport, QUEUE_NOTIFY_OFFSET};
use crate::devices::virtio::net::Net;
use crate::devices::{Bus, bus::lock};
use crate::error::Error;
use crate::host::disk::Disk;
use crate::host::tap::Tap;
use crate::seccomp::{Filters, ThreadKind};
use crate::signal::StopSignals;
use crate::vcpu::{self, ExitStatus, VcpuError};

/// `hvm_start_info` and what follows it.
const PVH_INFO: u64 = 0x6000;
const PVH_MEMMAP: u64 = 0x6040;
const PVH_MODLIST: u64 = 0x6100;
/// The zero page (`boot_params`).
const ZERO_PAGE: u64 = 0x7000;
/// The command line.
const CMDLINE: u64 = 0x20000;
/// Longest command line (without the NUL) unless a bzImage says otherwise.
pub const CMDLINE_MAX: usize = 4095;
/// Start of the EBDA: low RAM ends here.
const EBDA: u64 = 0x9fc00;
/// Where the kernel goes.
const HIMEM: u64 = 0x10_0000;
/// The MMIO hole below 4 GiB: virtio windows, then the IOAPIC, LAPIC and TSS area.
const MMIO_BASE: u64 = 0xd000_0000;
const FOUR_GIB: u64 = 1 << 32;
/// First interrupt line for virtio devices (after the serial ports), and the last one.
const FIRST_IRQ: u32 = 5;
const LAST_IRQ: u32 = 23;
const E820_RAM: u32 = 1;
const PVH_MAGIC: u32 = 0x336e_c578;

/// Why a Linux-boot-protocol guest could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// linux-loader refused the kernel.
    #[error("{path}: not a kernel unik can boot (bzImage, ELF vmlinux or PVH ELF): {source}")]
    Load {
        /// The kernel.
        path: PathBuf,
        /// linux-loader's reason.
        source: linux_loader::loader::Error,
    },
    /// The initrd could not be read or does not fit.
    #[error("initrd {path}: {reason}")]
    Initrd {
        /// The initrd.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The command line with the device announcements is too long.
    #[error("kernel command line too long: {len} characters (max {max})")]
    Cmdline {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More devices than interrupt lines.
    #[error("too many virtio devices: {0} (at most {max})", max = LAST_IRQ - FIRST_IRQ + 1)]
    TooManyDevices(usize),
    /// A device backend could not be opened.
    #[error("{kind} device '{name}': {reason}")]
    Device {
        /// "block" or "net".
        kind: &'static str,
        /// The configured name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Guest memory could not be allocated.
    #[error("could not allocate {size} bytes of guest memory: {reason}")]
    Memory {
        /// Requested bytes.
        size: u64,
        /// vm-memory's reason.
        reason: String,
    },
    /// The ACPI tables could not be written.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// A host resource (eventfd, thread) failed.
    #[error("{what}: {source}")]
    Host {
        /// What was attempted.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

fn host(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Linux(LinuxError::Host { what, source })
}

/// Whether `image` is a bzImage ("HdrS" at 0x202).
pub fn is_bzimage(image_head: &[u8]) -> bool {
    image_head.get(0x202..0x206) == Some(b"HdrS")
}

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

/// A Linux-boot-protocol machine, built and ready to run.
pub struct LinuxVm {
    // Field order is drop order: the device thread and vCPUs go before the VM and memory.
    events: Option<EventLoop>,
    vcpus: Vec<VcpuFd>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    uart: Arc<Mutex<Uart>>,
    _vm: VmFd,
    _kvm: Kvm,
    _mem: GuestMemoryMmap,
    stop: StopSignals,
    filters: Filters,
}

impl std::fmt::Debug for LinuxVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxVm")
            .field("vcpus", &self.vcpus.len())
            .field("mmio", &self.mmio)
            .finish_non_exhaustive()
    }
}

/// A device before it is put on the bus.
struct Pending {
    name: String,
    device: Box<dyn VirtioDevice>,
}

fn open_block(cfg: &BlockConfig) -> Result<Pending, Error> {
    let err = |reason: String| LinuxError::Device {
        kind: "block",
        name: cfg.name.clone(),
        reason,
    };
    let disk = Disk::open_with(&cfg.path, cfg.read_only).map_err(|e| err(format!("{}: {e}", cfg.path.display())))?;
    let block_size = u32::from(cfg.sector_size.unwrap_or(512));
    if disk.capacity() % 512 != 0 {
        return Err(err(format!("{}: size {} is not a multiple of 512", cfg.path.display(), disk.capacity())).into());
    }
    Ok(Pending {
        name: cfg.name.clone(),
        device: Box::new(Block::new(disk, cfg.read_only, block_size, &cfg.name)),
    })
}

fn open_net(cfg: &NetConfig) -> Result<Pending, Error> {
    let tap = match &cfg.backend {
        NetBackend::Tap(iface) => Tap::open_vnet(iface),
        NetBackend::Fd(fd) => Tap::from_fd_virtio(*fd),
    }
    .map_err(|e| LinuxError::Device {
        kind: "net",
        name: cfg.name.clone(),
        reason: e.to_string(),
    })?;
    let mac = cfg.mac.unwrap_or_else(MacAddr::random);
    Ok(Pending {
        name: cfg.name.clone(),
        device: Box::new(Net::new(tap, mac.0)),
    })
}

fn load_kernel(path: &Path, mem: &GuestMemoryMmap) -> Result<KernelLoaderResult, Error> {
    let err = |source| {
        Error::Linux(LinuxError::Load {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut file = crate::host::files::open_regular(path).map_err(|source| Error::Kernel {
        path: path.to_path_buf(),
        source,
    })?;
    let mut head = [0u8; 0x210];
    let n = file.read(&mut head).map_err(|source| Error::Kernel {
        path: path.to_path_buf(),
        source,
    })?;
    if is_bzimage(&head[..n]) {
        BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM))).map_err(err)
    } else {
        Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM))).map_err(err)
    }
}

/// Loads the initrd at the top of low memory, above the kernel; returns (address, size).
fn load_initrd(path: &Path, mem: &GuestMemoryMmap, kernel_end: u64, low_end: u64) -> Result<(u64, u64), Error> {
    let err = |reason: String| {
        Error::Linux(LinuxError::Initrd {
            path: path.to_path_buf(),
            reason,
        })
    };
    let room = low_end.saturating_sub(kernel_end);
    let data = crate::host::files::read_regular(path, room, "of guest memory above the kernel").map_err(|e| err(e.to_string()))?;
    let size = data.len() as u64;
    let addr = low_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel_end)
        .ok_or_else(|| err(format!("{size} bytes do not fit in guest memory above the kernel")))?;
    mem.write_slice(&data, GuestAddress(addr)).map_err(|e| err(e.to_string()))?;
    Ok((addr, size))
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
    mem.write_obj(params, GuestAddress(ZERO_PAGE)).map_err(|e| {
        Error::Linux(LinuxError::Memory {
            size: 4096,
            reason: e.to_string(),
        })
    })
}

/// `hvm_start_info` (56 bytes), its memory map and module list, as little-endian bytes.
pub fn pvh_start_info(mem_size: u64, initrd: Option<(u64, u64)>, rsdp: u64) -> Vec<(u64, Vec<u8>)> {
    let map = e820(mem_size);
    let mut info = Vec::with_capacity(56);
    info.extend(PVH_MAGIC.to_le_bytes());
    info.extend(1u32.to_le_bytes()); // version
    info.extend(0u32.to_le_bytes()); // flags
    info.extend(u32::from(initrd.is_some()).to_le_bytes()); // nr_modules
    info.extend((if initrd.is_some() { PVH_MODLIST } else { 0 }).to_le_bytes());
    info.extend(CMDLINE.to_le_bytes());
    info.extend(rsdp.to_le_bytes());
    info.extend(PVH_MEMMAP.to_le_bytes());
    info.extend(u32::try_from(map.len()).unwrap_or(0).to_le_bytes());
    info.extend(0u32.to_le_bytes());
    let mut memmap = Vec::new();
    for (addr, size) in map {
        memmap.extend(addr.to_le_bytes());
        memmap.extend(size.to_le_bytes());
        memmap.extend(E820_RAM.to_le_bytes());
        memmap.extend(0u32.to_le_bytes());
    }
    let mut out = vec![(PVH_INFO, info), (PVH_MEMMAP, memmap)];
    if let Some((addr, size)) = initrd {
        let mut module = Vec::new();
        module.extend(addr.to_le_bytes());
        module.extend(size.to_le_bytes());
        module.extend([0u8; 16]);
        out.push((PVH_MODLIST, module));
    }
    out
}

impl LinuxVm {
    /// Builds the machine for `cfg`; `console` receives the serial output.
    pub fn build(cfg: &VmConfig, console: Box<dyn std::io::Write + Send>) -> Result<LinuxVm, Error> {
        let mem_size = crate::vm::guest_mem_size(cfg.mem_mib)?;
        let mut pending = Vec::new();
        for b in &cfg.blocks {
            pending.push(open_block(b)?);
        }
        for n in &cfg.nets {
            pending.push(open_net(n)?);
        }
        let max = (LAST_IRQ - FIRST_IRQ + 1) as usize;
        if pending.len() > max {
            return Err(LinuxError::TooManyDevices(pending.len()).into());
        }

        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&ram_ranges(mem_size)).map_err(|e| LinuxError::Memory {
            size: mem_size,
            reason: e.to_string(),
        })?;
        crate::vm::register_memory(&vm, &mem)?;
        arch::setup_linux_vm(&vm)?;

        let loaded = load_kernel(&cfg.kernel, &mem)?;
        let low_end = mem_size.min(MMIO_BASE);
        let initrd = match &cfg.initrd {
            Some(path) => Some(load_initrd(path, &mem, loaded.kernel_end, low_end)?),
            None => None,
        };

        // Devices: the legacy ports, then one virtio-mmio window per device.
        let mut pio = Bus::default();
        let mut mmio = Bus::default();
        let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(host("eventfd"))?;
        vm.register_irqfd(&serial_irq, legacy::SERIAL_IRQ).map_err(kvm_err("KVM_IRQFD"))?;
        let uart = Arc::new(Mutex::new(Uart::new(serial_irq, console)));
        let overlap = |e: crate::devices::bus::Overlap| {
            Error::Linux(LinuxError::Host {
                what: "device layout",
                source: std::io::Error::other(e.to_string()),
            })
        };
        pio.insert(legacy::SERIAL_PORT, legacy::SERIAL_LEN, uart.clone()).map_err(overlap)?;
        pio.insert(legacy::I8042_PORT, legacy::I8042_LEN, Arc::new(Mutex::new(I8042)))
            .map_err(overlap)?;
        pio.insert(legacy::DEBUG_EXIT_PORT, legacy::DEBUG_EXIT_LEN, Arc::new(Mutex::new(DebugExit)))
            .map_err(overlap)?;

        let mut cmdline = cfg.cmdline.join(" ");
        pio.insert(acpi::SLEEP_PORT, 1, Arc::new(Mutex::new(SleepControl)))
            .map_err(overlap)?;
        let mut events = Vec::new();
        let mut windows = Vec::new();
        for ((i, p), irq) in pending.into_iter().enumerate().zip(FIRST_IRQ..) {
            let base = MMIO_BASE + i as u64 * MMIO_LEN;
            let irq_evt = EventFd::new(EFD_NONBLOCK).map_err(host("eventfd"))?;
            vm.register_irqfd(&irq_evt, irq).map_err(kvm_err("KVM_IRQFD"))?;
            let queues = p.device.queue_max_sizes().len();
            let transport = MmioTransport::new(p.device, mem.clone(), irq_evt).map_err(|e| LinuxError::Device {
                kind: "virtio",
                name: p.name.clone(),
                reason: e.to_string(),
            })?;
            let transport = Arc::new(Mutex::new(transport));
            let mut kicks = Vec::new();
            for q in 0..queues {
                let kick = EventFd::new(EFD_NONBLOCK).map_err(host("eventfd"))?;
                vm.register_ioevent(
                    &kick,
                    &IoEventAddress::Mmio(base + QUEUE_NOTIFY_OFFSET),
                    u32::try_from(q).unwrap_or(0),
                )
                .map_err(kvm_err("KVM_IOEVENTFD"))?;
                kicks.push(kick);
            }
            mmio.insert(base, MMIO_LEN, transport.clone()).map_err(overlap)?;
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(&format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
            log::debug!("virtio device '{}' at {base:#x}, irq {irq}", p.name);
            events.push(VirtioEvents { transport, kicks });
            windows.push(MmioDevice { base, len: MMIO_LEN, irq });
        }
        let cmdline_max = match loaded.setup_header {
            Some(hdr) if hdr.cmdline_size > 0 => (hdr.cmdline_size as usize).min(CMDLINE_MAX),
            _ => CMDLINE_MAX,
        };
        if cmdline.len() > cmdline_max {
            return Err(LinuxError::Cmdline {
                len: cmdline.len(),
                max: cmdline_max,
            }
            .into());
        }
        let mut bytes = cmdline.into_bytes();
        let cmdline_len = bytes.len();
        bytes.push(0);
        mem.write_slice(&bytes, GuestAddress(CMDLINE)).map_err(|e| LinuxError::Memory {
            size: mem_size,
            reason: e.to_string(),
        })?;

        // ACPI for stock kernels (devices, CPUs, poweroff); `virtio_mmio.device=` for the rest.
        let rsdp = acpi::write_tables(&mem, cfg.vcpus.max(1), &windows).map_err(LinuxError::Acpi)?;
        let entry = match loaded.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(rip) => {
                for (gpa, data) in pvh_start_info(mem_size, initrd, rsdp) {
                    mem.write_slice(&data, GuestAddress(gpa)).map_err(|e| LinuxError::Memory {
                        size: mem_size,
                        reason: e.to_string(),
                    })?;
                }
                LinuxEntry::Pvh {
                    rip: rip.0,
                    start_info: PVH_INFO,
                }
            }
            _ => {
                write_boot_params(&mem, &loaded, mem_size, cmdline_len, initrd, rsdp)?;
                // A bzImage's 64-bit entry is 0x200 past the protected-mode code; an ELF's is e_entry.
                let rip = loaded.kernel_load.0 + if loaded.setup_header.is_some() { 0x200 } else { 0 };
                LinuxEntry::Long64 {
                    rip,
                    boot_params: ZERO_PAGE,
                }
            }
        };
        let mut vcpus = Vec::new();
        for index in 0..cfg.vcpus.max(1) {
            let vcpu = vm.create_vcpu(u64::from(index)).map_err(kvm_err("KVM_CREATE_VCPU"))?;
            arch::setup_linux_vcpu(&kvm, &vcpu, &mem, index, entry)?;
            vcpus.push(vcpu);
        }
        log::debug!(
            "built Linux-boot VM: {} MiB, {} vCPU(s), entry {entry:?}",
            mem_size >> 20,
            vcpus.len()
        );
        let stop = StopSignals::new().map_err(Error::Signals)?;
        let events = EventLoop::new(events, Some(uart.clone())).map_err(host("device thread"))?;
        let filters = Filters::new(cfg.seccomp, &[ThreadKind::LinuxVcpu, ThreadKind::Devices])?;
        Ok(LinuxVm {
            events: Some(events),
            vcpus,
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
            uart,
            _vm: vm,
            _kvm: kvm,
            _mem: mem,
            stop,
            filters,
        })
    }

    /// Runs the guest until it exits (debug-exit port, reset, shutdown), a stop signal arrives or
    /// a vCPU faults. vCPU 0 runs on this thread, the others on their own. Every thread installs
    /// its seccomp filter before the guest's first instruction: the device thread and the APs
    /// first thing, this thread once they have.
    pub fn run(mut self) -> Result<ExitStatus, Error> {
        self.stop.install().map_err(Error::Signals)?;
        if let Some(events) = self.events.as_mut() {
            events.start(&self.filters)?;
        }
        let done = Arc::new(AtomicBool::new(false));
        let outcome: Arc<Mutex<Option<Result<ExitStatus, VcpuError>>>> = Arc::new(Mutex::new(None));
        let mut vcpus = std::mem::take(&mut self.vcpus).into_iter();
        let mut boot = vcpus.next().ok_or(Error::Kvm {
            what: "KVM_CREATE_VCPU",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        if vcpus.len() > 0 {
            install_kick_handler().map_err(Error::Signals)?;
        }
        // An AP that ends the machine (debug exit, reset, fault) kicks vCPU 0 out of KVM_RUN.
        let boot_flag = std::ptr::from_mut(&mut boot.get_kvm_run().immediate_exit) as usize;
        // SAFETY: pthread_self has no preconditions.
        let boot_tid = unsafe { libc::pthread_self() };
        let filters = &self.filters;
        let result = std::thread::scope(|scope| {
            let mut aps = Vec::new();
            let mut confined = Ok(());
            for mut vcpu in vcpus {
                let (pio, mmio, done, outcome) = (self.pio.clone(), self.mmio.clone(), done.clone(), outcome.clone());
                let flag = std::ptr::from_mut(&mut vcpu.get_kvm_run().immediate_exit) as usize;
                let (tid_tx, tid_rx) = std::sync::mpsc::channel();
                // Stop signals go to this thread (vCPU 0), not to the APs'.
                let handle = crate::signal::with_stop_signals_blocked(|| {
                    scope.spawn(move || {
                        let installed = filters.install(ThreadKind::LinuxVcpu);
                        let ok = installed.is_ok();
                        // SAFETY: pthread_self has no preconditions.
                        let _ = tid_tx.send((unsafe { libc::pthread_self() }, installed));
                        if !ok {
                            return vcpu;
                        }
                        let r = vcpu::run_loop(&mut vcpu, &|| None, &|| done.load(Ordering::SeqCst), |exit| {
                            vcpu::handle_linux_exit(exit, &pio, &mmio)
                        });
                        if !done.swap(true, Ordering::SeqCst) {
                            *lock(&outcome) = Some(r);
                            kick(boot_tid, boot_flag);
                        }
                        vcpu
                    })
                });
                let tid = match tid_rx.recv() {
                    Ok((tid, installed)) => {
                        if confined.is_ok() {
                            confined = installed;
                        }
                        Some(tid)
                    }
                    Err(_) => None,
                };
                aps.push((handle, tid, flag));
            }
            // No vCPU enters the guest unconfined: an AP whose filter failed never ran, and
            // the others stop at once (`done`) before their first KVM_RUN or right after it.
            let r = match confined.and_then(|()| filters.install(ThreadKind::LinuxVcpu)) {
                Ok(()) => vcpu::run_with(&mut boot, &self.stop, &|| done.load(Ordering::SeqCst), |exit| {
                    vcpu::handle_linux_exit(exit, &self.pio, &self.mmio)
                })
                .map_err(Error::from),
                Err(e) => Err(Error::from(e)),
            };
            let first = !done.swap(true, Ordering::SeqCst);
            for (handle, tid, flag) in aps {
                if let Some(tid) = tid {
                    kick(tid, flag);
                }
                if handle.join().is_err() {
                    log::warn!("a vCPU thread panicked");
                }
            }
            match (first, lock(&outcome).take()) {
                (false, Some(ap)) if !matches!(r, Err(Error::Seccomp(_))) => ap.map_err(Error::from),
                _ => r,
            }
        });
        self.vcpus.push(boot);
        lock(&self.uart).flush();
        drop(self.events.take());
        result
    }
}

/// The signal that interrupts a vCPU thread's KVM_RUN (its handler does nothing).
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is "no flags, empty mask"; the handler does nothing, and
    // without SA_RESTART the interrupted KVM_RUN returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
        if libc::sigaction(kick_signal(), &raw const action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes vCPU thread `tid` leave KVM_RUN: sets its `immediate_exit` (in case it is about to
/// enter) and interrupts the ioctl (in case it is in it).
fn kick(tid: libc::pthread_t, immediate_exit: usize) {
    // A thread blocked writing the console gives up on the kick's EINTR.
    crate::signal::set_stopping();
    // SAFETY: the pointer is the `immediate_exit` byte of that vCPU's kvm_run mapping, which
    // lives as long as its VcpuFd: an AP's is returned by its thread, joined only after its
    // kick; vCPU 0's outlives the thread scope every kick happens in. The signal's handler
    // does nothing.
    unsafe {
        std::ptr::write_volatile(immediate_exit as *mut u8, 1);
        libc::pthread_kill(tid, kick_signal());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let parts = pvh_start_info(32 << 20, Some((0x1f0_0000, 0x1234)), 0xe_0000);
        let (addr, info) = &parts[0];
        assert_eq!((*addr, info.len()), (PVH_INFO, 56));
        let u32_at = |o: usize| u32::from_le_bytes(info[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(info[o..o + 8].try_into().unwrap());
        assert_eq!((u32_at(0), u32_at(4), u32_at(12)), (PVH_MAGIC, 1, 1));
        assert_eq!(
            (u64_at(16), u64_at(24), u64_at(32), u64_at(40), u32_at(48)),
            (PVH_MODLIST, CMDLINE, 0xe_0000, PVH_MEMMAP, 2)
        );
        // The memory map fits between the info and the module list.
        assert_eq!(parts[1].1.len(), 2 * 24);
        assert!(PVH_MEMMAP + parts[1].1.len() as u64 <= PVH_MODLIST);
        assert_eq!(
            &parts[2].1[..16],
            [0x1f0_0000u64.to_le_bytes(), 0x1234u64.to_le_bytes()].concat().as_slice()
        );
        assert_eq!(pvh_start_info(32 << 20, None, 0).len(), 2);
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
