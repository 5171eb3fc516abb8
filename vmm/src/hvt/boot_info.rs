//! `struct hvt_boot_info`, the manifest copy and the command line, at [`BOOT_INFO_GPA`].

use super::HvtError;
use super::manifest::Manifest;
use crate::memory::GuestRam;

/// Where the boot info lives (the guest's `_start` argument): a fact of the architecture's layout.
pub use arch::layout::BOOT_INFO_GPA;
/// `sizeof(struct hvt_boot_info)`.
pub const BOOT_INFO_SIZE: usize = 56;
/// Longest command line, without its NUL (`HVT_CMDLINE_SIZE` − 1).
pub const CMDLINE_MAX: usize = 8191;

/// The 56-byte boot info: memory size, kernel end, cycle frequency, command-line and manifest
/// addresses, and the net ring's address with `HVT_FEATURE_RING_IO` when there is one (else
/// zeros: guests then use the NET hypercalls).
pub fn boot_info_bytes(mem_size: u64, kernel_end: u64, cpu_cycle_freq: u64, mft_size: u64, net_ring: Option<u64>) -> [u8; BOOT_INFO_SIZE] {
    let mft = BOOT_INFO_GPA + BOOT_INFO_SIZE as u64;
    let cmdline = mft + mft_size;
    let mut out = [0u8; BOOT_INFO_SIZE];
    for (i, v) in [mem_size, kernel_end, cpu_cycle_freq, cmdline, mft].into_iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    // host_features @40, guest_features @44 (always 0), net_ring @48.
    if let Some(gpa) = net_ring {
        out[40..44].copy_from_slice(&super::ring::FEATURE_RING_IO.to_le_bytes());
        out[48..56].copy_from_slice(&gpa.to_le_bytes());
    }
    out
}

/// Writes boot info, manifest copy and NUL-terminated command line; `net_ring` is the ring's
/// address if the guest is offered one.
pub fn write_boot_info(
    ram: &GuestRam,
    kernel_end: u64,
    cpu_cycle_freq: u64,
    manifest: &Manifest,
    cmdline: &[u8],
    net_ring: Option<u64>,
) -> Result<(), HvtError> {
    if cmdline.len() > CMDLINE_MAX {
        return Err(HvtError::CmdlineTooLong);
    }
    let mft = manifest.to_bytes();
    let info = boot_info_bytes(ram.size(), kernel_end, cpu_cycle_freq, mft.len() as u64, net_ring);
    let mft_gpa = BOOT_INFO_GPA + BOOT_INFO_SIZE as u64;
    let cmdline_gpa = mft_gpa + mft.len() as u64;
    ram.mmap_write(BOOT_INFO_GPA, &info)?;
    ram.mmap_write(mft_gpa, &mft)?;
    ram.mmap_write(cmdline_gpa, cmdline)?;
    ram.mmap_write(cmdline_gpa + cmdline.len() as u64, &[0])?;
    Ok(())
}
