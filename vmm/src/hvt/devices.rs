//! Attaching block and network devices to manifest entries, and their hypercalls.

use std::mem::offset_of;
use std::os::fd::RawFd;

use super::HvtError;
use super::abi::{HcBlock, HcNet, result};
use super::manifest::{Attachment, DeviceType, Manifest};
use crate::config::{BlockConfig, GuestKind, MacAddr, NetConfig};
use crate::host::files::Root;
use crate::host::{Disk, Tap};
use crate::memory::GuestRam;

/// Ethernet header bytes on top of the MTU.
const ETH_HEADER: u64 = 14;
/// Largest frame a tap can deliver: the largest MTU (64 KiB) plus the Ethernet header.
const MAX_FRAME: usize = 65536 + 14;

/// An attached device.
#[derive(Debug)]
pub enum Device {
    /// A block device and its sector size.
    Block(Disk, u16),
    /// A network device.
    Net(Tap),
}

/// Attached devices, indexed by solo5 handle (= manifest index).
#[derive(Debug, Default)]
pub struct Devices {
    slots: Vec<Option<Device>>,
}

impl Devices {
    /// Devices for tests: `slots[h]` is handle `h`.
    pub fn from_slots(slots: Vec<Option<Device>>) -> Devices {
        Devices { slots }
    }

    pub(super) fn has_block(&self) -> bool {
        self.slots.iter().flatten().any(|d| matches!(d, Device::Block(..)))
    }

    pub(crate) fn has_net(&self) -> bool {
        self.slots.iter().flatten().any(|d| matches!(d, Device::Net(..)))
    }

    pub(super) fn net_fds(&self) -> impl Iterator<Item = (usize, RawFd)> + '_ {
        self.slots.iter().enumerate().filter_map(|(h, d)| match d {
            Some(Device::Net(tap)) => Some((h, tap.raw_fd())),
            _ => None,
        })
    }

    /// A second descriptor on each network device's tap, by handle (for the net ring's thread).
    pub fn ring_taps(&self) -> std::io::Result<Vec<Option<Tap>>> {
        self.slots
            .iter()
            .map(|d| match d {
                Some(Device::Net(tap)) => tap.try_clone().map(Some),
                _ => Ok(None),
            })
            .collect()
    }

    fn get(&self, handle: u64) -> Option<&Device> {
        self.slots.get(usize::try_from(handle).ok()?)?.as_ref()
    }

    fn tap(&mut self, handle: u64) -> Option<&mut Tap> {
        match self.slots.get_mut(usize::try_from(handle).ok()?)?.as_mut()? {
            Device::Net(tap) => Some(tap),
            Device::Block(..) => None,
        }
    }
}

fn declared(manifest: &Manifest, name: &str, kind: DeviceType) -> Result<usize, HvtError> {
    manifest
        .find(name)
        .filter(|h| manifest.entries()[*h].kind == kind)
        .ok_or_else(|| HvtError::NotDeclared(name.to_string()))
}

fn attach_block(cfg: &BlockConfig, root: Root<'_>) -> Result<(Disk, u16, u64), HvtError> {
    let block_size = crate::config::sector_size(cfg.sector_size)?;
    let disk = Disk::open_in(root, &cfg.path, false).map_err(|source| HvtError::BlockOpen {
        path: cfg.path.display().to_string(),
        source,
    })?;
    let capacity = disk.capacity();
    if capacity < u64::from(block_size) {
        return Err(HvtError::TooSmall {
            name: cfg.name.clone(),
            block_size,
        });
    }
    if capacity % u64::from(block_size) != 0 {
        return Err(HvtError::NotBlockAligned {
            name: cfg.name.clone(),
            block_size,
        });
    }
    Ok((disk, block_size, capacity))
}

/// Opens every backend and attaches it to its manifest entry; every entry must end up attached.
pub fn attach(manifest: &mut Manifest, nets: &[NetConfig], blocks: &[BlockConfig], root: Root<'_>) -> Result<Devices, HvtError> {
    let mut slots: Vec<Option<Device>> = (0..manifest.entries().len()).map(|_| None).collect();
    for cfg in blocks {
        let handle = declared(manifest, &cfg.name, DeviceType::Block)?;
        if slots[handle].is_some() {
            return Err(HvtError::AttachedTwice(cfg.name.clone()));
        }
        let (disk, block_size, capacity) = attach_block(cfg, root)?;
        manifest.attach(
            handle,
            Attachment::Block {
                capacity,
                block_size,
                hostfd: disk.raw_fd(),
            },
        );
        slots[handle] = Some(Device::Block(disk, block_size));
    }
    for cfg in nets {
        let handle = declared(manifest, &cfg.name, DeviceType::Net)?;
        if slots[handle].is_some() {
            return Err(HvtError::AttachedTwice(cfg.name.clone()));
        }
        let tap = Tap::open_for(&cfg.backend, GuestKind::Hvt)?;
        let mac = cfg.mac.unwrap_or_else(MacAddr::random);
        manifest.attach(
            handle,
            Attachment::Net {
                mac: mac.0,
                mtu: tap.mtu(),
                hostfd: tap.raw_fd(),
            },
        );
        slots[handle] = Some(Device::Net(tap));
    }
    let missing: Vec<(String, &'static str)> = manifest
        .entries()
        .iter()
        .zip(&slots)
        .skip(1)
        .filter(|(_, slot)| slot.is_none())
        .map(|(e, _)| (e.name(), e.kind.label()))
        .collect();
    if !missing.is_empty() {
        return Err(HvtError::NotAttached(missing));
    }
    Ok(Devices { slots })
}

/// Writes the `ret` OUT field at `offset` in the argument struct at `gpa`.
fn set_ret(ram: &GuestRam, gpa: u64, offset: usize, ret: i32) -> Result<(), HvtError> {
    ram.write_obj(gpa + offset as u64, ret)?;
    Ok(())
}

/// The disk behind `handle` if it is in bounds for `[offset, offset + len)`; `None` means EINVAL.
fn block_target<'a>(devices: &'a Devices, arg: &HcBlock) -> Option<(&'a Disk, u64)> {
    let Some(Device::Block(disk, _)) = devices.get(arg.handle) else {
        return None;
    };
    let end = arg.offset.checked_add(arg.len)?;
    if arg.len > i64::MAX as u64 || arg.offset >= disk.capacity() || end > disk.capacity() {
        return None;
    }
    Some((disk, end))
}

pub(super) fn block_write(ram: &GuestRam, gpa: u64, devices: &Devices) -> Result<(), HvtError> {
    ram.check_writable(gpa, size_of::<HcBlock>() as u64)?;
    let arg: HcBlock = ram.read_obj(gpa)?;
    let Some((disk, _)) = block_target(devices, &arg) else {
        return set_ret(ram, gpa, offset_of!(HcBlock, ret), result::EINVAL);
    };
    ram.check(arg.data, arg.len)?;
    for (done, n) in chunks(arg.len) {
        let mut buf = vec![0u8; n];
        ram.read_slice(arg.data + done, &mut buf)?;
        disk.write_at(&buf, arg.offset + done).map_err(|source| HvtError::HostIo {
            what: format!("Write to {} at {}", disk.path().display(), arg.offset + done),
            source,
        })?;
    }
    set_ret(ram, gpa, offset_of!(HcBlock, ret), result::OK)
}

/// Splits a guest-sized transfer into bounded host buffers: (offset, length) pieces, so a guest
/// asking for a huge transfer cannot make the monitor allocate as much.
fn chunks(len: u64) -> impl Iterator<Item = (u64, usize)> {
    const CHUNK: u64 = 1 << 20;
    (0..len.div_ceil(CHUNK)).map(move |i| {
        let done = i * CHUNK;
        // At most CHUNK, which fits usize.
        (done, usize::try_from((len - done).min(CHUNK)).unwrap_or(0))
    })
}

pub(super) fn block_read(ram: &GuestRam, gpa: u64, devices: &Devices) -> Result<(), HvtError> {
    ram.check_writable(gpa, size_of::<HcBlock>() as u64)?;
    let arg: HcBlock = ram.read_obj(gpa)?;
    let Some((disk, _)) = block_target(devices, &arg) else {
        return set_ret(ram, gpa, offset_of!(HcBlock, ret), result::EINVAL);
    };
    ram.check_writable(arg.data, arg.len)?;
    for (done, n) in chunks(arg.len) {
        let mut buf = vec![0u8; n];
        disk.read_at(&mut buf, arg.offset + done).map_err(|source| HvtError::HostIo {
            what: format!("Read from {} at {}", disk.path().display(), arg.offset + done),
            source,
        })?;
        ram.write_slice(arg.data + done, &buf)?;
    }
    set_ret(ram, gpa, offset_of!(HcBlock, ret), result::OK)
}

pub(super) fn net_write(ram: &GuestRam, gpa: u64, devices: &mut Devices) -> Result<(), HvtError> {
    ram.check_writable(gpa, size_of::<HcNet>() as u64)?;
    let arg: HcNet = ram.read_obj(gpa)?;
    let Some(tap) = devices.tap(arg.handle) else {
        return set_ret(ram, gpa, offset_of!(HcNet, ret), result::EINVAL);
    };
    // Stricter than solo5-hvt: a frame longer than MTU + Ethernet header is refused with EINVAL
    // instead of being handed to the tap (which would drop or truncate it).
    if arg.len > u64::from(tap.mtu()) + ETH_HEADER {
        return set_ret(ram, gpa, offset_of!(HcNet, ret), result::EINVAL);
    }
    ram.check(arg.data, arg.len)?;
    // At most MTU + 14 (< 64 KiB + 14) by the check above, so the conversion cannot fail.
    let mut frame = vec![0u8; usize::try_from(arg.len).unwrap_or(0)];
    ram.read_slice(arg.data, &mut frame)?;
    tap.write_frame(&frame).map_err(|source| HvtError::HostIo {
        what: format!("Write to tap {}", tap.name()),
        source,
    })?;
    set_ret(ram, gpa, offset_of!(HcNet, ret), result::OK)
}

pub(super) fn net_read(ram: &GuestRam, gpa: u64, devices: &mut Devices) -> Result<(), HvtError> {
    ram.check_writable(gpa, size_of::<HcNet>() as u64)?;
    let arg: HcNet = ram.read_obj(gpa)?;
    let Some(tap) = devices.tap(arg.handle) else {
        return set_ret(ram, gpa, offset_of!(HcNet, ret), result::EINVAL);
    };
    ram.check_writable(arg.data, arg.len)?;
    // The whole buffer is checked; the host copy needs no more than the largest frame a tap can
    // deliver, so a guest-sized length never becomes a guest-sized allocation.
    let size = usize::try_from(arg.len).unwrap_or(usize::MAX).min(MAX_FRAME);
    let mut frame = vec![0u8; size];
    match tap.read_frame(&mut frame).map_err(|source| HvtError::HostIo {
        what: format!("Read from tap {}", tap.name()),
        source,
    })? {
        None => set_ret(ram, gpa, offset_of!(HcNet, ret), result::AGAIN),
        Some(n) => {
            ram.write_slice(arg.data, &frame[..n])?;
            ram.write_obj(gpa + offset_of!(HcNet, len) as u64, n as u64)?;
            set_ret(ram, gpa, offset_of!(HcNet, ret), result::OK)
        }
    }
}
