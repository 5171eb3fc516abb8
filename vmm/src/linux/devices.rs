//! The devices of a Linux-boot guest: the backends the user names (disk files, taps), the
//! console and debug exit (x86_64: the legacy ports — CMOS RTC, 16550, i8042, debug exit, ACPI
//! sleep control; aarch64: a 16550 and the debug-exit register on the MMIO bus) and one
//! virtio-mmio window per device, each with its interrupt (an irqfd) and one ioeventfd per queue.

use std::sync::{Arc, Mutex};

use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::error::DeviceError;
use super::{LinuxError, host, kvm_err};
use crate::config::{BlockConfig, GuestKind, MacAddr, NetConfig};
use crate::devices::Bus;
use crate::devices::event_loop::VirtioEvents;
use crate::devices::legacy::{DebugExit, Uart};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::{MMIO_LEN, MmioTransport, QUEUE_NOTIFY_OFFSET};
use crate::devices::virtio::net::Net;
use crate::devices::virtio::{MmioDevice, VirtioDevice};
use crate::error::Error;
use crate::host::disk::Disk;
use crate::host::files::Root;
use crate::host::tap::Tap;

/// The interrupt lines of virtio devices: the first and how many there are (x86_64: GSIs 5 to
/// 23, after the serial ports; aarch64: the SPIs above the UART's).
#[cfg(target_arch = "x86_64")]
pub(super) const FIRST_IRQ: u32 = 5;
#[cfg(target_arch = "x86_64")]
const IRQ_COUNT: u32 = 23 - FIRST_IRQ + 1;
#[cfg(target_arch = "aarch64")]
pub(super) const FIRST_IRQ: u32 = arch::linux_layout::VIRTIO_FIRST_SPI;
#[cfg(target_arch = "aarch64")]
const IRQ_COUNT: u32 = arch::linux_layout::VIRTIO_MAX;

/// Where the virtio-mmio windows start.
#[cfg(target_arch = "x86_64")]
const VIRTIO_BASE: u64 = super::boot::MMIO_BASE;
#[cfg(target_arch = "aarch64")]
const VIRTIO_BASE: u64 = arch::linux_layout::VIRTIO_BASE;

/// A device before it is put on the bus.
pub(super) struct Pending {
    name: String,
    device: Box<dyn VirtioDevice>,
}

fn open_block(cfg: &BlockConfig, root: Root<'_>) -> Result<Pending, Error> {
    let err = |source: DeviceError| LinuxError::Device {
        kind: "block",
        name: cfg.name.clone(),
        source,
    };
    let disk = Disk::open_in(root, &cfg.path, cfg.read_only).map_err(|source| {
        err(DeviceError::Open {
            path: cfg.path.clone(),
            source,
        })
    })?;
    let block_size = u32::from(crate::config::sector_size(cfg.sector_size).map_err(|e| err(e.into()))?);
    if disk.capacity() % 512 != 0 {
        return Err(err(DeviceError::Size {
            path: cfg.path.clone(),
            size: disk.capacity(),
        })
        .into());
    }
    Ok(Pending {
        name: cfg.name.clone(),
        device: Box::new(Block::new(disk, cfg.read_only, block_size, &cfg.name)),
    })
}

fn open_net(cfg: &NetConfig) -> Result<Pending, Error> {
    let tap = Tap::open_for(&cfg.backend, GuestKind::Linux).map_err(|e| LinuxError::Device {
        kind: "net",
        name: cfg.name.clone(),
        source: e.into(),
    })?;
    let mac = cfg.mac.unwrap_or_else(MacAddr::random);
    Ok(Pending {
        name: cfg.name.clone(),
        device: Box::new(Net::new(tap, mac.0)),
    })
}

/// Opens every backend `--block`/`--net` names, blocks first: a bad one fails before KVM is
/// touched.
pub(super) fn open_backends(blocks: &[BlockConfig], nets: &[NetConfig], root: Root<'_>) -> Result<Vec<Pending>, Error> {
    let mut pending = Vec::new();
    for b in blocks {
        pending.push(open_block(b, root)?);
    }
    for n in nets {
        pending.push(open_net(n)?);
    }
    let max = IRQ_COUNT as usize;
    if pending.len() > max {
        return Err(LinuxError::TooManyDevices { count: pending.len(), max }.into());
    }
    Ok(pending)
}

/// The devices on their buses.
pub(super) struct Devices {
    /// The port-I/O bus.
    pub pio: Bus,
    /// The MMIO bus.
    pub mmio: Bus,
    /// The serial console (the device thread feeds it terminal input).
    pub uart: Arc<Mutex<Uart>>,
    /// What the device thread serves: each virtio device's queue kicks and backend.
    pub events: Vec<VirtioEvents>,
    /// The virtio-mmio windows, for the ACPI tables or the device tree.
    pub windows: Vec<MmioDevice>,
    /// `virtio_mmio.device=` announcements for the command line.
    pub announcements: Vec<String>,
}

fn overlap(e: crate::devices::bus::Overlap) -> Error {
    Error::Linux(e.into())
}

/// Puts the legacy devices and `pending` virtio devices on their buses, wired to `vm`'s
/// interrupts; `console` receives the serial output. The guest has `mem_size` bytes of RAM
/// (the RTC's CMOS tells it so).
#[cfg(target_arch = "x86_64")]
pub(super) fn attach(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mem_size: u64,
    pending: Vec<Pending>,
    console: Box<dyn std::io::Write + Send>,
) -> Result<Devices, Error> {
    use crate::acpi::{self, SleepControl};
    use crate::devices::legacy::{self, I8042};
    use crate::devices::rtc::{self, Rtc};

    let mut pio = Bus::default();
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(host("eventfd"))?;
    vm.register_irqfd(&serial_irq, legacy::SERIAL_IRQ).map_err(kvm_err("KVM_IRQFD"))?;
    let uart = Arc::new(Mutex::new(Uart::new(serial_irq, console)));
    pio.insert(legacy::SERIAL_PORT, legacy::SERIAL_LEN, uart.clone()).map_err(overlap)?;
    pio.insert(legacy::I8042_PORT, legacy::I8042_LEN, Arc::new(Mutex::new(I8042)))
        .map_err(overlap)?;
    pio.insert(legacy::DEBUG_EXIT_PORT, legacy::DEBUG_EXIT_LEN, Arc::new(Mutex::new(DebugExit)))
        .map_err(overlap)?;
    pio.insert(acpi::SLEEP_PORT, 1, Arc::new(Mutex::new(SleepControl)))
        .map_err(overlap)?;
    let low = mem_size.min(super::boot::MMIO_BASE);
    pio.insert(rtc::RTC_PORT, rtc::RTC_LEN, Arc::new(Mutex::new(Rtc::new(low, mem_size - low))))
        .map_err(overlap)?;
    let mut devices = Devices {
        pio,
        mmio: Bus::default(),
        uart,
        events: Vec::new(),
        windows: Vec::new(),
        announcements: Vec::new(),
    };
    attach_virtio(vm, mem, pending, &mut devices)?;
    Ok(devices)
}

/// Puts the 16550 console, the debug-exit register and `pending` virtio devices on the MMIO bus
/// (see [`arch::linux_layout`]), wired to `vm`'s interrupts (the vGIC must exist); `console`
/// receives the serial output.
#[cfg(target_arch = "aarch64")]
pub(super) fn attach(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    pending: Vec<Pending>,
    console: Box<dyn std::io::Write + Send>,
) -> Result<Devices, Error> {
    use arch::linux_layout::{DEBUG_EXIT_BASE, SERIAL_BASE, SERIAL_SPI, WINDOW_SIZE};

    let mut mmio = Bus::default();
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(host("eventfd"))?;
    vm.register_irqfd(&serial_irq, SERIAL_SPI).map_err(kvm_err("KVM_IRQFD"))?;
    let uart = Arc::new(Mutex::new(Uart::new(serial_irq, console)));
    mmio.insert(SERIAL_BASE, WINDOW_SIZE, uart.clone()).map_err(overlap)?;
    mmio.insert(DEBUG_EXIT_BASE, WINDOW_SIZE, Arc::new(Mutex::new(DebugExit)))
        .map_err(overlap)?;
    let mut devices = Devices {
        pio: Bus::default(),
        mmio,
        uart,
        events: Vec::new(),
        windows: Vec::new(),
        announcements: Vec::new(),
    };
    attach_virtio(vm, mem, pending, &mut devices)?;
    Ok(devices)
}

/// Puts each of `pending` in its virtio-mmio window with its interrupt (an irqfd) and one
/// ioeventfd per queue.
fn attach_virtio(vm: &VmFd, mem: &GuestMemoryMmap, pending: Vec<Pending>, devices: &mut Devices) -> Result<(), Error> {
    for ((i, p), irq) in pending.into_iter().enumerate().zip(FIRST_IRQ..) {
        let base = VIRTIO_BASE + i as u64 * MMIO_LEN;
        let irq_evt = EventFd::new(EFD_NONBLOCK).map_err(host("eventfd"))?;
        vm.register_irqfd(&irq_evt, irq).map_err(kvm_err("KVM_IRQFD"))?;
        let transport = MmioTransport::new(p.device, mem.clone(), irq_evt).map_err(|e| LinuxError::Device {
            kind: "virtio",
            name: p.name.clone(),
            source: e.into(),
        })?;
        for (q, kick) in (0u32..).zip(transport.queue_evts()) {
            vm.register_ioevent(kick, &IoEventAddress::Mmio(base + QUEUE_NOTIFY_OFFSET), q)
                .map_err(kvm_err("KVM_IOEVENTFD"))?;
        }
        let events = transport.events().map_err(host("eventfd"))?;
        let transport = Arc::new(Mutex::new(transport));
        devices.mmio.insert(base, MMIO_LEN, transport).map_err(overlap)?;
        devices.announcements.push(format!("virtio_mmio.device=4K@{base:#x}:{irq}"));
        log::debug!("virtio device '{}' at {base:#x}, irq {irq}", p.name);
        devices.events.push(events);
        devices.windows.push(MmioDevice { base, len: MMIO_LEN, irq });
    }
    Ok(())
}
