//! The x86_64 machine of a Linux-boot guest: two RAM ranges around the MMIO hole, the
//! in-kernel irqchip and PIT, the kernel by its boot protocol (see [`super::boot`]), the
//! legacy ports and virtio devices, ACPI tables and the vCPUs at the protocol's entry.

use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;

use super::devices::{self, Pending};
use super::{LinuxError, Machine, boot, kvm_err};
use crate::acpi;
use crate::config::VmConfig;
use crate::error::Error;

/// Builds the machine of `cfg` with `mem_size` bytes of RAM and the devices of `pending`.
pub(super) fn build(
    kvm: &Kvm,
    vm: &VmFd,
    cfg: &VmConfig,
    mem_size: u64,
    pending: Vec<Pending>,
    console: Box<dyn std::io::Write + Send>,
) -> Result<Machine, Error> {
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&boot::ram_ranges(mem_size)).map_err(|source| LinuxError::Memory { size: mem_size, source })?;
    crate::memory::register_memory(vm, &mem)?;
    arch::setup_linux_vm(vm)?;

    let low_end = mem_size.min(boot::MMIO_BASE);
    let loaded = boot::load_kernel(cfg.root(), &cfg.kernel, &mem, low_end)?;
    let initrd = match &cfg.initrd {
        Some(path) => Some(super::initrd::load(cfg.root(), path, &mem, loaded.end(), low_end)?),
        None => None,
    };
    let devices = devices::attach(vm, &mem, mem_size, pending, console)?;
    // ACPI for stock kernels (devices, CPUs, poweroff); `virtio_mmio.device=` for the rest.
    let cmdline = with_announcements(&cfg.cmdline, &devices.announcements);
    let cmdline_len = boot::write_cmdline(&mem, &loaded, cmdline)?;
    let rsdp = acpi::write_tables(&mem, cfg.vcpus, &devices.windows).map_err(LinuxError::Acpi)?;
    let entry = boot::write_boot_info(&mem, &loaded, mem_size, cmdline_len, initrd, rsdp)?;
    let mut vcpus = Vec::new();
    for index in 0..cfg.vcpus {
        let vcpu = vm.create_vcpu(u64::from(index)).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        arch::setup_linux_vcpu(kvm, vm, &vcpu, &mem, index, entry)?;
        vcpus.push(vcpu);
    }
    log::debug!("x86_64 Linux-boot entry {entry:?}");
    Ok(Machine {
        mem,
        vcpus,
        devices,
        irqchip: None,
    })
}

/// The guest's command line: `args` with the device `announcements` among the kernel's own
/// parameters, that is before a standalone `--` if there is one (what follows it is the
/// application's, for Linux's init and for Unikraft's `main` alike), else at the end.
fn with_announcements(args: &[String], announcements: &[String]) -> String {
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (kernel, rest) = args.split_at(split);
    kernel
        .iter()
        .chain(announcements)
        .chain(rest)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn test_device_announcements_go_before_the_applications_arguments() {
        let dev = words("virtio_mmio.device=4K@0xd0000000:5");
        assert_eq!(
            with_announcements(&words("console=ttyS0 -- -c /etc/app.conf"), &dev),
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 -- -c /etc/app.conf"
        );
        // Only the first standalone `--` splits; without one, they go last.
        assert_eq!(
            with_announcements(&words("a b=--c"), &dev),
            "a b=--c virtio_mmio.device=4K@0xd0000000:5"
        );
        assert_eq!(
            with_announcements(&words("-- x -- y"), &dev),
            "virtio_mmio.device=4K@0xd0000000:5 -- x -- y"
        );
        assert_eq!(with_announcements(&[], &[]), "");
    }
}
