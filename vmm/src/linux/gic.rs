//! The in-kernel GICv3 of an aarch64 Linux-boot guest (KVM's vGIC, through the device API):
//! distributor and redistributors where [`arch::linux_layout`] puts them, its interrupt count,
//! then initialised. Created once every vCPU exists (the initialisation sizes the
//! redistributors by them); the devices' irqfds name SPIs by number.

use arch::linux_layout::{GIC_NR_IRQS, GICD_BASE, GICR_BASE};
use kvm_bindings::{
    KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
    KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST, kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
};
use kvm_ioctls::{DeviceFd, VmFd};

use super::kvm_err;
use crate::error::Error;

fn set(gic: &DeviceFd, group: u32, attr: u32, addr: u64, what: &'static str) -> Result<(), Error> {
    let attr = kvm_device_attr {
        flags: 0,
        group,
        attr: u64::from(attr),
        addr,
    };
    gic.set_device_attr(&attr).map_err(kvm_err(what))
}

/// Creates and initialises the vGIC of `vm`, whose vCPUs all exist.
pub(super) fn create(vm: &VmFd) -> Result<DeviceFd, Error> {
    let mut device = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
        fd: 0,
        flags: 0,
    };
    let gic = vm
        .create_device(&mut device)
        .map_err(kvm_err("KVM_CREATE_DEVICE (GICv3; does the host have one?)"))?;
    let dist = GICD_BASE;
    let redist = GICR_BASE;
    let nr_irqs = GIC_NR_IRQS;
    // The attributes are read from these locals' addresses, which outlive the calls.
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        std::ptr::from_ref(&dist) as u64,
        "setting the GICv3 distributor address",
    )?;
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        std::ptr::from_ref(&redist) as u64,
        "setting the GICv3 redistributor address",
    )?;
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        0,
        std::ptr::from_ref(&nr_irqs) as u64,
        "setting the GICv3 interrupt count",
    )?;
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        0,
        "initialising the GICv3",
    )?;
    Ok(gic)
}
