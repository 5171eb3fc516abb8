//! Guest RAM and the one checked way to reach it.
//!
//! Every guest-supplied address goes through [`GuestRam::check`] (the solo5 `HVT_CHECKED_GPA_P`
//! rule: `gpa + len < mem_size`, strictly) and, for writes, through [`GuestRam::check_writable`],
//! which also refuses ranges the host mapped read-only (text/rodata): writing there from the
//! monitor would fault the monitor itself.

use std::ops::Range;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Errors reaching guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested memory size is not possible.
    #[error("Guest memory size {requested} bytes exceeds the max size {max} bytes")]
    TooLarge {
        /// Requested bytes.
        requested: u64,
        /// Largest allowed.
        max: u64,
    },
    /// Registering guest memory with KVM failed.
    #[error("KVM: {what} failed: {source}")]
    Register {
        /// Which operation.
        what: &'static str,
        /// The ioctl error.
        source: kvm_ioctls::Error,
    },
    /// A guest pointer outside RAM, or a range that wraps or reaches past its end.
    #[error("Invalid guest access: gpa={gpa:#x}, sz={len}")]
    OutOfRange {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        len: u64,
    },
    /// A write the guest asked for into memory that is read-only on the host (its text/rodata).
    #[error("Invalid guest access: gpa={gpa:#x}, sz={len} (read-only memory)")]
    ReadOnly {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        len: u64,
    },
    /// Guest memory could not be allocated.
    #[error("Could not allocate {size} bytes of guest memory: {reason}")]
    Allocate {
        /// Requested size.
        size: u64,
        /// What the allocator said.
        reason: String,
    },
    /// Changing the host protection of a range failed.
    #[error("Could not protect guest range {gpa:#x}+{len:#x}: {errno}")]
    Protect {
        /// Start of the range.
        gpa: u64,
        /// Length of the range.
        len: u64,
        /// What mprotect said.
        errno: std::io::Error,
    },
}

/// Guest RAM: the mapping, the size the guest may address, and the host read-only ranges.
#[derive(Debug, Clone)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    /// Guest-visible size (solo5 `guest_mem_size`); pointers must end strictly below it.
    size: u64,
    read_only: Vec<Range<u64>>,
}

impl GuestRam {
    /// Allocates `size` bytes of zeroed anonymous memory at GPA 0 (no pages are touched).
    pub fn new(size: u64) -> Result<GuestRam, MemoryError> {
        GuestRam::with_reserved(size, 0)
    }

    /// Allocates `size + reserved` bytes at GPA 0, of which the guest's pointers may reach only
    /// the first `size`: the `reserved` bytes above (the hvt net ring) are the monitor's to reach
    /// through the mapping, never through a guest pointer.
    pub fn with_reserved(size: u64, reserved: u64) -> Result<GuestRam, MemoryError> {
        let total = size.checked_add(reserved).ok_or(MemoryError::Allocate {
            size,
            reason: "too large for this host".into(),
        })?;
        let len = usize::try_from(total).map_err(|_| MemoryError::Allocate {
            size: total,
            reason: "too large for this host".into(),
        })?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), len)]).map_err(|e| MemoryError::Allocate {
            size: total,
            reason: e.to_string(),
        })?;
        Ok(GuestRam {
            mem,
            size,
            read_only: Vec::new(),
        })
    }

    /// The underlying vm-memory mapping (for KVM registration and raw setup writes).
    pub fn mmap(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Guest-visible size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size of the whole mapping: the guest-visible RAM and what is reserved above it.
    pub fn mapped_size(&self) -> u64 {
        self.mem.last_addr().0 + 1
    }

    /// Checks `[gpa, gpa + len)` against the solo5 rule `gpa + len < size` (strict, no wrap).
    pub fn check(&self, gpa: u64, len: u64) -> Result<GuestAddress, MemoryError> {
        match gpa.checked_add(len) {
            Some(end) if gpa < self.size && end < self.size => Ok(GuestAddress(gpa)),
            _ => Err(MemoryError::OutOfRange { gpa, len }),
        }
    }

    /// [`check`](Self::check), and refuses ranges that touch host read-only memory.
    pub fn check_writable(&self, gpa: u64, len: u64) -> Result<GuestAddress, MemoryError> {
        let addr = self.check(gpa, len)?;
        let end = gpa + len;
        if self.read_only.iter().any(|ro| gpa < ro.end && ro.start < end.max(gpa + 1)) {
            return Err(MemoryError::ReadOnly { gpa, len });
        }
        Ok(addr)
    }

    /// Reads a plain-data struct at a checked guest address.
    pub fn read_obj<T: ByteValued>(&self, gpa: u64) -> Result<T, MemoryError> {
        let addr = self.check(gpa, size_of::<T>() as u64)?;
        self.mem.read_obj(addr).map_err(|_| MemoryError::OutOfRange {
            gpa,
            len: size_of::<T>() as u64,
        })
    }

    /// Writes a plain-data value at a checked, writable guest address.
    pub fn write_obj<T: ByteValued>(&self, gpa: u64, val: T) -> Result<(), MemoryError> {
        let addr = self.check_writable(gpa, size_of::<T>() as u64)?;
        self.mem.write_obj(val, addr).map_err(|_| MemoryError::OutOfRange {
            gpa,
            len: size_of::<T>() as u64,
        })
    }

    /// Copies guest bytes `[gpa, gpa + buf.len())` into `buf`.
    pub fn read_slice(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let addr = self.check(gpa, buf.len() as u64)?;
        self.mem.read_slice(buf, addr).map_err(|_| MemoryError::OutOfRange {
            gpa,
            len: buf.len() as u64,
        })
    }

    /// Copies `buf` into guest memory at a checked, writable address.
    pub fn write_slice(&self, gpa: u64, buf: &[u8]) -> Result<(), MemoryError> {
        let addr = self.check_writable(gpa, buf.len() as u64)?;
        self.mem.write_slice(buf, addr).map_err(|_| MemoryError::OutOfRange {
            gpa,
            len: buf.len() as u64,
        })
    }

    /// A monitor-side setup write (loader, boot info, page tables): bounded by the mapping, not by
    /// the guest pointer rule, and not by host protection (setup runs before protection).
    pub fn mmap_write(&self, gpa: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.mem.write_slice(buf, GuestAddress(gpa)).map_err(|_| MemoryError::OutOfRange {
            gpa,
            len: buf.len() as u64,
        })
    }

    /// Makes `[gpa, gpa + len)` read-only on the host (text and rodata of the loaded kernel).
    ///
    /// KVM mirrors host protection into the guest's second-level tables, so a guest write there
    /// faults instead of silently succeeding. The monitor's own writes are refused by
    /// [`check_writable`](Self::check_writable).
    pub fn protect_read_only(&mut self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        let bad = || MemoryError::OutOfRange { gpa, len };
        let end = gpa.checked_add(len).ok_or_else(bad)?;
        if len == 0 || end > self.mem.last_addr().0 + 1 || gpa % 4096 != 0 || len % 4096 != 0 {
            return Err(bad());
        }
        let host = self.mem.get_host_address(GuestAddress(gpa)).map_err(|_| bad())?;
        let host_len = usize::try_from(len).map_err(|_| bad())?;
        // SAFETY: `[host, host + len)` lies inside the single mapping owned by `self.mem` (checked
        // above against its last address, and the mapping is one contiguous region starting at GPA
        // 0). Removing write permission cannot create aliasing; the monitor never writes there
        // because every write path goes through `check_writable`, which refuses these ranges.
        let rc = unsafe { libc::mprotect(host.cast(), host_len, libc::PROT_READ) };
        if rc != 0 {
            return Err(MemoryError::Protect {
                gpa,
                len,
                errno: std::io::Error::last_os_error(),
            });
        }
        self.read_only.push(gpa..end);
        Ok(())
    }

    /// The ranges that are read-only on the host.
    pub fn read_only_ranges(&self) -> &[Range<u64>] {
        &self.read_only
    }

    /// How many bytes of guest memory are resident on the host (pages the guest or the monitor
    /// touched), from mincore(2). For diagnostics and the benchmark.
    pub fn resident_bytes(&self) -> std::io::Result<u64> {
        const PAGE: usize = 4096;
        // Scanned in windows so that measuring does not itself grow the monitor's memory.
        const WINDOW: usize = 256 << 20;
        let len = usize::try_from(self.mem.last_addr().0 + 1).map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let host = self
            .mem
            .get_host_address(GuestAddress(0))
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EFAULT))?;
        let mut vec = vec![0u8; WINDOW / PAGE];
        let mut resident = 0u64;
        for start in (0..len).step_by(WINDOW) {
            let n = WINDOW.min(len - start);
            // SAFETY: `[host + start, host + start + n)` lies inside the single mapping owned by
            // `self.mem`; `vec` has at least one byte per page of it, as mincore requires.
            if unsafe { libc::mincore(host.add(start).cast(), n, vec.as_mut_ptr()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            resident += vec[..n.div_ceil(PAGE)].iter().filter(|b| **b & 1 != 0).count() as u64;
        }
        Ok(resident * PAGE as u64)
    }

    /// Whether a guest-physical address falls in a host read-only range.
    pub fn is_read_only(&self, gpa: u64) -> bool {
        self.read_only.iter().any(|r| r.contains(&gpa))
    }
}

/// The most guest memory, in MiB.
pub const MEM_MAX_MIB: u64 = arch::layout::MEM_MAX >> 20;

/// The guest memory size for `mem_mib`: rounded down to the architecture's granule (at least one
/// granule) and at most the architecture's maximum.
pub fn guest_mem_size(mem_mib: u64) -> Result<u64, MemoryError> {
    let align = arch::layout::MEM_ALIGN;
    let max = arch::layout::MEM_MAX;
    let requested = mem_mib
        .checked_mul(1 << 20)
        .ok_or(MemoryError::TooLarge { requested: u64::MAX, max })?;
    if requested > max {
        return Err(MemoryError::TooLarge { requested, max });
    }
    let size = (requested / align * align).max(align);
    if size != requested {
        log::warn!("adjusting memory to {size} bytes");
    }
    Ok(size)
}

/// Registers every region of `mem` with KVM (Linux-boot guests; hvt RAM goes through
/// [`crate::slots`]).
pub(crate) fn register_memory(vm: &kvm_ioctls::VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    use vm_memory::GuestMemoryRegion;
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| MemoryError::Register {
                what: "guest memory host address",
                source: kvm_ioctls::Error::new(libc::EINVAL),
            })?;
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region describes memory owned by `ram`'s mapping, which the `Vm` keeps alive
        // (its `ram` field drops after the VM fd); the slot numbers are unique.
        unsafe { vm.set_user_memory_region(region) }.map_err(|source| MemoryError::Register {
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
    fn test_check_is_strict_at_end_of_ram() {
        let ram = GuestRam::new(0x20_0000).unwrap();
        ram.check(0x1000, 0x10).unwrap();
        ram.check(0x20_0000 - 9, 8).unwrap();
        // A range ending exactly at the last byte is rejected, as in solo5.
        assert!(matches!(ram.check(0x20_0000 - 8, 8), Err(MemoryError::OutOfRange { .. })));
        for (gpa, len) in [(0x20_0000, 0), (u64::MAX - 1, 4), (0, u64::MAX)] {
            assert!(
                matches!(ram.check(gpa, len), Err(MemoryError::OutOfRange { gpa: g, len: l }) if (g, l) == (gpa, len)),
                "{gpa:#x} {len:#x}"
            );
        }
    }

    #[test]
    fn test_reserved_memory_is_mapped_but_out_of_the_guests_reach() {
        let ram = GuestRam::with_reserved(0x40_0000, 0x20_0000).unwrap();
        assert_eq!((ram.size(), ram.mapped_size()), (0x40_0000, 0x60_0000));
        ram.mmap_write(0x40_0000, &[1; 8]).unwrap();
        for (gpa, len) in [(0x40_0000, 8), (0x3f_fff8, 8), (0x5f_fff0, 8)] {
            assert!(matches!(ram.check(gpa, len), Err(MemoryError::OutOfRange { .. })), "{gpa:#x}");
            assert!(ram.read_obj::<u64>(gpa).is_err(), "{gpa:#x}");
        }
    }

    #[test]
    fn test_read_only_ranges_refuse_monitor_writes() {
        let mut ram = GuestRam::new(0x40_0000).unwrap();
        ram.write_obj(0x10_1000, 7u64).unwrap();
        ram.protect_read_only(0x10_0000, 0x2000).unwrap();
        assert_eq!(ram.read_obj::<u64>(0x10_1000).unwrap(), 7);
        assert!(matches!(ram.write_obj(0x10_1000, 1u64), Err(MemoryError::ReadOnly { .. })));
        assert!(matches!(ram.write_slice(0xf_fff0, &[0; 0x20]), Err(MemoryError::ReadOnly { .. })));
        ram.write_slice(0x10_2000, &[1; 16]).unwrap();
        assert!(ram.is_read_only(0x10_1fff));
        assert!(!ram.is_read_only(0x10_2000));
    }

    #[test]
    fn test_protect_rejects_unaligned_and_out_of_range() {
        let mut ram = GuestRam::new(0x20_0000).unwrap();
        for (gpa, len) in [(0x1001, 0x1000), (0x1f_f000, 0x2000), (0x1000, 0)] {
            assert!(
                matches!(ram.protect_read_only(gpa, len), Err(MemoryError::OutOfRange { gpa: g, len: l }) if (g, l) == (gpa, len)),
                "{gpa:#x} {len:#x}"
            );
        }
    }

    #[test]
    fn test_guest_mem_size_rounds_down_and_caps() {
        assert_eq!(guest_mem_size(512).unwrap(), 512 << 20);
        assert_eq!(guest_mem_size(3).unwrap(), 2 << 20);
        assert_eq!(guest_mem_size(1).unwrap(), 2 << 20);
        assert_eq!(guest_mem_size(0).unwrap(), 2 << 20);
        assert_eq!(guest_mem_size(4096).unwrap(), 4 << 30);
        assert!(matches!(guest_mem_size(4097), Err(MemoryError::TooLarge { .. })));
        assert!(matches!(guest_mem_size(u64::MAX), Err(MemoryError::TooLarge { .. })));
    }
}
