//! Guests booted with the Linux boot protocol.
//!
//! On x86_64 (`x86.rs`, `boot.rs`, `multiboot.rs`): bzImage, ELF vmlinux (64-bit entry with
//! `boot_params`) or an ELF with a PVH note (32-bit entry with `hvm_start_info`), and multiboot
//! (version 1) kernels (32-bit entry with the multiboot information, see [`multiboot`]); an initrd,
//! the command line, one or more vCPUs, the in-kernel irqchip and PIT, a 16550 console, and
//! virtio-mmio block and net devices announced with `virtio_mmio.device=` on the command line.
//! The same devices are described in ACPI tables (see [`crate::acpi`]) for kernels that find
//! them that way.
//!
//! x86_64 guest physical layout: 0x500 GDT, 0x1000 multiboot information (+ memory map at 0x1080,
//! module list at 0x1100, boot loader name at 0x1180, module string at 0x11c0; multiboot
//! kernels load at 1 MiB or above), 0x6000 `hvm_start_info` (+ memory map and module list),
//! 0x7000 zero page, 0x9000 page tables, 0x20000 command line, 0xe0000 ACPI tables, 1 MiB
//! kernel, initrd at the top of low memory, virtio-mmio windows from 0xd000_0000 (IRQ 5
//! upwards), RAM above 3.25 GiB moved to 4 GiB.
//!
//! On aarch64 (`aarch64.rs`, `gic.rs`): an arm64 `Image` with an initrd and a device tree
//! (`fdt.rs`, built for every architecture so that its tests run anywhere) describing memory,
//! the vCPUs (PSCI), the in-kernel GICv3, the architected timer, a 16550 console and the same
//! virtio-mmio devices, each with its SPI; the layout is in [`arch::linux_layout`]. The vCPUs,
//! devices, buses and device thread are shared (`vcpus.rs`, `devices.rs`).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod boot;
mod devices;
pub mod error;
pub mod fdt;
#[cfg(target_arch = "aarch64")]
mod gic;
mod initrd;
#[cfg(target_arch = "x86_64")]
pub mod multiboot;
mod vcpus;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::{Arc, Mutex};

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

#[cfg(target_arch = "x86_64")]
pub use boot::{CMDLINE_MAX, e820, ram_ranges};
pub use error::{DeviceError, InitrdError, LinuxError};

use crate::config::{MAX_VCPUS, VmConfig};
use crate::devices::Bus;
use crate::devices::bus::lock;
use crate::devices::event_loop::EventLoop;
use crate::devices::legacy::Uart;
use crate::error::Error;
use crate::seccomp::{Filters, ThreadKind};
use crate::signal::StopSignals;
use crate::vcpu::ExitStatus;

pub(super) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

pub(super) fn host(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Linux(LinuxError::Host { what, source })
}

/// What the architecture's build step hands back: memory, vCPUs ready to run, devices.
pub(super) struct Machine {
    mem: GuestMemoryMmap,
    vcpus: Vec<VcpuFd>,
    devices: devices::Devices,
    /// The in-kernel interrupt controller's device (aarch64's vGIC), kept open with the VM.
    irqchip: Option<kvm_ioctls::DeviceFd>,
}

/// A Linux-boot-protocol machine, built and ready to run.
pub struct LinuxVm {
    // Field order is drop order: the device thread and vCPUs go before the VM and memory.
    events: Option<EventLoop>,
    vcpus: Vec<VcpuFd>,
    pio: Bus,
    mmio: Bus,
    uart: Arc<Mutex<Uart>>,
    _irqchip: Option<kvm_ioctls::DeviceFd>,
    _vm: VmFd,
    _kvm: Kvm,
    _mem: GuestMemoryMmap,
    stop: StopSignals,
    filters: Filters,
    gdb: Option<crate::debug::gdb::GdbListener>,
}

impl std::fmt::Debug for LinuxVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxVm")
            .field("vcpus", &self.vcpus.len())
            .field("mmio", &self.mmio)
            .finish_non_exhaustive()
    }
}

impl LinuxVm {
    /// Builds the machine for `cfg`; `console` receives the serial output.
    pub fn build(cfg: &VmConfig, console: Box<dyn std::io::Write + Send>) -> Result<LinuxVm, Error> {
        let mem_size = crate::memory::guest_mem_size(cfg.mem_mib)?;
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return Err(LinuxError::Vcpus(cfg.vcpus).into());
        }
        if cfg.gdb.is_some() && cfg.vcpus != 1 {
            return Err(LinuxError::Debug("--gdb debugs a Linux-boot guest with one vCPU (--cpus 1)").into());
        }
        if cfg.dumpcore.is_some() {
            return Err(LinuxError::Debug("--dumpcore writes cores of hvt guests only").into());
        }
        let gdb = match cfg.gdb {
            Some(port) => Some(crate::debug::gdb::GdbListener::bind(port)?),
            None => None,
        };
        let pending = devices::open_backends(&cfg.blocks, &cfg.nets, cfg.root())?;

        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        #[cfg(target_arch = "x86_64")]
        let machine = x86::build(&kvm, &vm, cfg, mem_size, pending, console)?;
        #[cfg(target_arch = "aarch64")]
        let machine = aarch64::build(&kvm, &vm, cfg, mem_size, pending, console)?;
        log::debug!("built Linux-boot VM: {} MiB, {} vCPU(s)", mem_size >> 20, machine.vcpus.len());
        let Machine {
            mem,
            vcpus,
            devices,
            irqchip,
        } = machine;
        let stop = StopSignals::new(cfg.timeout).map_err(Error::Signals)?;
        let events = EventLoop::new(devices.events, Some(devices.uart.clone())).map_err(host("device thread"))?;
        let filters = Filters::new(cfg.seccomp, &[ThreadKind::LinuxVcpu, ThreadKind::Devices])?;
        Ok(LinuxVm {
            events: Some(events),
            vcpus,
            pio: devices.pio,
            mmio: devices.mmio,
            uart: devices.uart,
            _irqchip: irqchip,
            _vm: vm,
            _kvm: kvm,
            _mem: mem,
            stop,
            filters,
            gdb,
        })
    }

    /// Runs the guest until it exits (debug-exit port, reset, shutdown), a stop signal arrives or
    /// a vCPU faults. The device thread starts first and installs its seccomp filter; the vCPUs
    /// install theirs before their first instruction (see [`vcpus`]).
    pub fn run(mut self) -> Result<ExitStatus, Error> {
        self.stop.install().map_err(Error::Signals)?;
        // gdb connects before any filter goes on (accepting is not in them); vCPU 0's filter
        // then lets it peek at that connection and no other.
        let gdb = match self.gdb.take() {
            Some(listener) => match listener.accept(&self.stop)? {
                Some(conn) => {
                    let rules = crate::seccomp::DebugRules {
                        gdb_socket: Some(conn.raw_fd()),
                        core_dir: None,
                    };
                    self.filters.add_debug_rules(ThreadKind::LinuxVcpu, &rules)?;
                    Some(conn)
                }
                None => return Ok(crate::vcpu::stop_status(self.stop.received().unwrap_or(libc::SIGINT))),
            },
            None => None,
        };
        if let Some(events) = self.events.as_mut() {
            events.start(&self.filters)?;
        }
        let debugger = gdb.map(|conn| (conn, &self._mem));
        let result = vcpus::run(
            std::mem::take(&mut self.vcpus),
            &self.pio,
            &self.mmio,
            &self.stop,
            &self.filters,
            debugger,
        );
        let result = result.map(|(status, vcpus)| {
            self.vcpus = vcpus;
            status
        });
        lock(&self.uart).flush();
        drop(self.events.take());
        result
    }
}
