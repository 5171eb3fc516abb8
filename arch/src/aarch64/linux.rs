//! The guest physical layout and entry state of a Linux-boot-protocol guest on aarch64 (an arm64
//! `Image`, see the kernel's Documentation/arch/arm64/booting.rst): RAM from 2 GiB, the GICv3,
//! the serial port, the debug-exit register and the virtio-mmio windows below it. Every vCPU
//! starts with PSCI 0.2 (in-kernel: `CPU_ON`, `SYSTEM_OFF`, `SYSTEM_RESET`); vCPU 0 at the
//! kernel's entry, EL1h with D, A, I and F masked, the MMU and caches off, x0 = the device tree;
//! the others powered off until the guest starts them with PSCI `CPU_ON`.
//!
//! ```text
//! 0x0800_0000  GICv3 distributor (64 KiB)
//! 0x080a_0000  GICv3 redistributors, 128 KiB per vCPU (up to 64 vCPUs: 8 MiB)
//! 0x0900_0000  16550 UART (4 KiB window, byte registers), SPI 1
//! 0x0901_0000  debug exit: a 1- to 4-byte write of N ends the VM with status N & 0xff
//! 0x0a00_0000  virtio-mmio windows, 4 KiB each, SPI 16 upwards
//! 0x8000_0000  RAM: the kernel at its 2 MiB-aligned base + text_offset, the initrd below the
//!              device tree, the device tree in the last 2 MiB
//! ```

use kvm_bindings::{KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, kvm_vcpu_init};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::{ArchError, LinuxEntry};

/// The GICv3 distributor.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Its size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// The first redistributor; vCPU i's is at `GICR_BASE + i * GICR_SIZE`.
pub const GICR_BASE: u64 = 0x080a_0000;
/// One redistributor (its RD and SGI frames).
pub const GICR_SIZE: u64 = 0x2_0000;
/// The 16550 UART.
pub const SERIAL_BASE: u64 = 0x0900_0000;
/// The UART's SPI.
pub const SERIAL_SPI: u32 = 1;
/// The UART's input clock, for the device tree (the 8250 driver derives divisors from it).
pub const SERIAL_CLOCK: u32 = 1_843_200;
/// The debug-exit register.
pub const DEBUG_EXIT_BASE: u64 = 0x0901_0000;
/// Size of an MMIO device window (the UART, the debug exit, each virtio device).
pub const WINDOW_SIZE: u64 = 0x1000;
/// The first virtio-mmio window.
pub const VIRTIO_BASE: u64 = 0x0a00_0000;
/// The first virtio device's SPI; the next ones count up.
pub const VIRTIO_FIRST_SPI: u32 = 16;
/// Interrupt lines the vGIC has: 32 private (SGIs, PPIs) and 96 shared.
pub const GIC_NR_IRQS: u32 = 128;
/// Most virtio devices: the SPIs left above [`VIRTIO_FIRST_SPI`].
pub const VIRTIO_MAX: u32 = GIC_NR_IRQS - 32 - VIRTIO_FIRST_SPI;
/// Start of RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// Room for the device tree at the top of RAM (the boot protocol's limit).
pub const FDT_MAX: u64 = 2 << 20;
/// The architected timer's PPIs: secure physical, non-secure physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

/// D | A | I | F masked, EL1h.
const PSTATE_EL1H: u64 = 0x3c5;

/// Per-VM setup before the vCPUs exist: nothing on aarch64 (the vGIC is created once they do).
pub fn setup_linux_vm(_vm: &VmFd) -> Result<(), ArchError> {
    Ok(())
}

/// Initialises vCPU `index` with PSCI 0.2; vCPU 0 starts at `entry` (an
/// [`LinuxEntry::Arm64Image`]), the others powered off until the guest's PSCI `CPU_ON`.
pub fn setup_linux_vcpu(
    _kvm: &Kvm,
    vm: &VmFd,
    vcpu: &VcpuFd,
    _mem: &GuestMemoryMmap,
    index: u8,
    entry: LinuxEntry,
) -> Result<(), ArchError> {
    let LinuxEntry::Arm64Image { pc, dtb } = entry else {
        return Err(ArchError::Unsupported("this entry kind"));
    };
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi).map_err(|source| ArchError::Kvm {
        what: "KVM_ARM_PREFERRED_TARGET",
        source,
    })?;
    kvi.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    if index > 0 {
        kvi.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    vcpu.vcpu_init(&kvi).map_err(|source| ArchError::Kvm {
        what: "KVM_ARM_VCPU_INIT",
        source,
    })?;
    if index == 0 {
        super::regs::set_linux_entry(vcpu, pc, dtb, PSTATE_EL1H)?;
    }
    Ok(())
}

/// vCPU `vcpu`'s MPIDR_EL1 affinity fields (Aff3..Aff0), the `reg` of its device-tree node.
/// Valid once the vCPU is initialised.
pub fn mpidr(vcpu: &VcpuFd) -> Result<u64, ArchError> {
    Ok(super::regs::get_mpidr(vcpu)? & 0xff_00ff_ffff)
}
