//! Building and running one hvt guest: the ELF-to-exit-code path.

use std::io::Write;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use log::{debug, warn};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::config::{GuestKind, VmConfig};
use crate::error::Error;
use crate::hvt::{self, Hvt, Manifest};
use crate::loader::Executable;
use crate::memory::GuestRam;
use crate::signal::StopSignals;
use crate::vcpu::{self, ExitStatus};

const KVM_API_VERSION: i32 = 12;

/// A built machine of either guest kind, ready to run.
#[derive(Debug)]
pub struct Vm(Machine);

#[derive(Debug)]
enum Machine {
    Hvt(HvtVm),
    #[cfg(target_arch = "x86_64")]
    Linux(crate::linux::LinuxVm),
}

impl Vm {
    /// Builds the machine described by `cfg`, for the kind it names or the kernel image shows.
    /// `console` receives the guest's console output (hvt PUTS or the serial port).
    ///
    /// Everything that can fail because of the configuration or the kernel fails here, before the
    /// guest runs.
    pub fn build(cfg: &VmConfig, console: Box<dyn Write + Send>) -> Result<Vm, Error> {
        let kind = match cfg.kind {
            Some(GuestKind::Linux) if crate::loader::is_solo5(&cfg.kernel) => {
                return Err(Error::Unsupported(crate::loader::SOLO5_NOT_LINUX));
            }
            Some(kind) => kind,
            None => crate::loader::detect_kind(&cfg.kernel).map_err(|source| Error::Kernel {
                path: cfg.kernel.clone(),
                source,
            })?,
        };
        match kind {
            GuestKind::Hvt => {
                if cfg.initrd.is_some() || cfg.vcpus > 1 || cfg.blocks.iter().any(|b| b.read_only) {
                    return Err(Error::Unsupported(
                        "--initrd, --cpus > 1 and read-only block devices are for Linux-boot-protocol kernels; this is a solo5-hvt unikernel",
                    ));
                }
                Ok(Vm(Machine::Hvt(HvtVm::build(cfg, console)?)))
            }
            #[cfg(target_arch = "x86_64")]
            GuestKind::Linux => Ok(Vm(Machine::Linux(crate::linux::LinuxVm::build(cfg, console)?))),
            #[cfg(not(target_arch = "x86_64"))]
            GuestKind::Linux => Err(Error::Unsupported("Linux-boot-protocol kernels run on x86_64 only for now")),
        }
    }

    /// Runs the guest to its end: its exit status, or the fault that stopped it.
    pub fn run(self) -> Result<ExitStatus, Error> {
        match self.0 {
            Machine::Hvt(vm) => vm.run(),
            #[cfg(target_arch = "x86_64")]
            Machine::Linux(vm) => vm.run(),
        }
    }
}

/// A built hvt machine, ready to run: memory holds the kernel and boot info, devices are attached
/// and the vCPU sits at the entry point.
#[derive(Debug)]
pub struct HvtVm {
    // Field order is drop order: the vCPU and VM fds go before the memory they map.
    vcpu: VcpuFd,
    _vm: VmFd,
    _kvm: Kvm,
    hvt: Hvt,
    ram: GuestRam,
    stop: StopSignals,
}

/// The most guest memory, in MiB.
pub const MEM_MAX_MIB: u64 = arch::layout::MEM_MAX >> 20;

/// The guest memory size for `mem_mib`: rounded down to the architecture's granule (at least one
/// granule) and at most the architecture's maximum.
pub fn guest_mem_size(mem_mib: u64) -> Result<u64, Error> {
    let align = arch::layout::MEM_ALIGN;
    let max = arch::layout::MEM_MAX;
    let requested = mem_mib
        .checked_mul(1 << 20)
        .ok_or(Error::MemoryTooLarge { requested: u64::MAX, max })?;
    if requested > max {
        return Err(Error::MemoryTooLarge { requested, max });
    }
    let size = (requested / align * align).max(align);
    if size != requested {
        warn!("adjusting memory to {size} bytes");
    }
    Ok(size)
}

impl HvtVm {
    /// Builds the machine described by `cfg`. `console` receives the guest's PUTS output.
    ///
    /// Everything that can fail because of the configuration or the kernel fails here, before the
    /// guest runs: a bad executable or manifest, a device that cannot be attached, memory or KVM
    /// errors.
    pub fn build(cfg: &VmConfig, console: Box<dyn Write + Send>) -> Result<HvtVm, Error> {
        let mem_size = guest_mem_size(cfg.mem_mib)?;
        let image = crate::host::files::read_regular(&cfg.kernel, mem_size, "of guest memory").map_err(|source| Error::Kernel {
            path: cfg.kernel.clone(),
            source,
        })?;
        let loader_err = |source| Error::Loader {
            path: cfg.kernel.clone(),
            source,
        };
        let exe = Executable::parse(&image, crate::loader::HOST_MACHINE).map_err(loader_err)?;
        let mut manifest = Manifest::parse(exe.manifest_note())?;
        let devices = hvt::attach(&mut manifest, &cfg.nets, &cfg.blocks)?;
        let cmdline = cfg.cmdline.join(" ");

        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(Error::KvmApiVersion(version));
        }
        let vm = kvm.create_vm().map_err(|source| Error::Kvm {
            what: "KVM_CREATE_VM",
            source,
        })?;
        let mut ram = GuestRam::new(mem_size)?;
        register_memory(&vm, ram.mmap())?;
        arch::setup_vm(&vm)?;
        let kernel = exe.load(&mut ram).map_err(loader_err)?;
        let vcpu = vm.create_vcpu(0).map_err(|source| Error::Kvm {
            what: "KVM_CREATE_VCPU",
            source,
        })?;
        let info = arch::setup_vcpu(&kvm, &vm, &vcpu, ram.mmap(), mem_size, kernel.entry)?;
        hvt::write_boot_info(&ram, kernel.kernel_end, info.cpu_cycle_freq, &manifest, cmdline.as_bytes())?;
        debug!(
            "built VM: {} MiB, entry {:#x}, kernel_end {:#x}, cycle freq {} Hz",
            mem_size >> 20,
            kernel.entry,
            kernel.kernel_end,
            info.cpu_cycle_freq
        );

        let stop = StopSignals::new().map_err(Error::Signals)?;
        let hvt = Hvt::new(ram.clone(), devices, console, stop.fd())?;
        Ok(HvtVm {
            vcpu,
            _vm: vm,
            _kvm: kvm,
            hvt,
            ram,
            stop,
        })
    }

    /// Runs the guest until it halts (its status), a stop signal arrives, or it faults (an error).
    pub fn run(mut self) -> Result<ExitStatus, Error> {
        self.stop.install().map_err(Error::Signals)?;
        let status = vcpu::run(&mut self.vcpu, &mut self.hvt, &self.ram, &self.stop);
        if log::log_enabled!(log::Level::Debug) {
            match self.ram.resident_bytes() {
                Ok(bytes) => debug!("guest memory resident: {} KiB", bytes / 1024),
                Err(e) => debug!("guest memory residency unknown: {e}"),
            }
        }
        Ok(status?)
    }
}

/// Registers every region of `mem` with KVM.
pub(crate) fn register_memory(vm: &VmFd, mem: &vm_memory::GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let host = region.get_host_address(vm_memory::MemoryRegionAddress(0)).map_err(|_| Error::Kvm {
            what: "guest memory host address",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region describes memory owned by `ram`'s mapping, which the `Vm` keeps alive
        // (its `ram` field drops after the VM fd); the slot numbers are unique.
        unsafe { vm.set_user_memory_region(region) }.map_err(|source| Error::Kvm {
            what: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_guest_mem_size_rounds_down_and_caps() {
        assert_eq!(guest_mem_size(512).unwrap(), 512 << 20);
        assert_eq!(guest_mem_size(3).unwrap(), 2 << 20);
        assert_eq!(guest_mem_size(1).unwrap(), 2 << 20);
        assert_eq!(guest_mem_size(0).unwrap(), 2 << 20);
        assert_eq!(guest_mem_size(4096).unwrap(), 4 << 30);
        assert!(matches!(guest_mem_size(4097), Err(Error::MemoryTooLarge { .. })));
        assert!(matches!(guest_mem_size(u64::MAX), Err(Error::MemoryTooLarge { .. })));
    }
}
