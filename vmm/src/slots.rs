//! hvt guest RAM registered with KVM piece by piece, on the guest's first touch.
//!
//! KVM's cost of registering a memory slot grows with the slot's size (its reverse-map,
//! write-tracking and large-page arrays, allocated when the slot is registered, kernel memory held
//! as long as the VM lives, and torn down at exit), so one slot over all of RAM makes a 4 GiB
//! guest start measurably slower than a 64 MiB one even if it touches a few pages, and makes every
//! idle instance hold arrays for memory it never used. Instead RAM is cut into chunk-sized slots
//! ([`chunk_size`]: 8 MiB, larger only to keep a big guest within [`MAX_CHUNKS`] slots): the
//! chunks holding the loaded image with the boot info and page tables below it, and the one
//! holding the stack at the top of RAM, are registered before the guest runs; any other chunk on
//! its first access.
//!
//! A guest access to RAM KVM has no slot for arrives as an MMIO exit: the monitor completes it
//! from the backing memory (a read fills the exit's data, a write stores it) and registers the
//! chunk, so later accesses run natively. Where KVM cannot emulate the access (an instruction
//! fetch, some SSE forms on this kind of host) it stops with an internal error instead: then every
//! chunk still missing is registered and the instruction runs again; the same error a second time
//! is the guest's fault. The hypercall handlers read and write guest memory through the host
//! mapping, which is whole from the start, so slots never matter to them.
//!
//! Only x86_64 registers lazily: on aarch64 an access without a slot that has no valid syndrome
//! (a load or store pair, say) cannot be completed as MMIO, so all RAM is registered up front.

use std::ops::Range;

use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::memory::{GuestRam, MemoryError};

/// The smallest chunk. An idle guest holds KVM's arrays for its two chunks registered up front
/// (about 40 KiB of kernel memory for two 8 MiB chunks on a shadow-paging host, against about
/// 370 KiB for two of 64 MiB); a guest that walks all of its heap pays one exit and one
/// registration per chunk.
pub const MIN_CHUNK: u64 = 8 << 20;

/// At most this many chunks (4 GiB in 16 MiB chunks), well below KVM's slot limit on every host
/// (509 on older x86_64 kernels, 512 on arm64).
pub const MAX_CHUNKS: u64 = 256;

/// The chunk size for `size` bytes of RAM: [`MIN_CHUNK`], or the power of two that keeps RAM
/// within [`MAX_CHUNKS`] chunks.
pub fn chunk_size(size: u64) -> u64 {
    size.div_ceil(MAX_CHUNKS).next_power_of_two().max(MIN_CHUNK)
}

/// Which chunks of guest RAM have a KVM slot.
#[derive(Debug)]
pub struct Slots {
    /// Host address of guest-physical 0 (RAM is one mapping from GPA 0).
    host: u64,
    /// RAM size in bytes.
    size: u64,
    /// Bytes per chunk ([`chunk_size`]).
    chunk: u64,
    /// Per chunk: registered yet?
    registered: Vec<bool>,
}

impl Slots {
    /// No chunk of `ram` registered yet.
    pub fn new(ram: &GuestRam) -> Result<Slots, MemoryError> {
        let host = ram.mmap().get_host_address(GuestAddress(0)).map_err(|_| MemoryError::Register {
            what: "guest memory host address",
            source: kvm_ioctls::Error::new(libc::EINVAL),
        })?;
        let size = ram.size();
        let chunk = chunk_size(size);
        let chunks = usize::try_from(size.div_ceil(chunk)).map_err(|_| MemoryError::Register {
            what: "guest memory slots",
            source: kvm_ioctls::Error::new(libc::EOVERFLOW),
        })?;
        Ok(Slots {
            host: host as u64,
            size,
            chunk,
            registered: vec![false; chunks],
        })
    }

    /// Registers the chunks that `range` (of guest-physical addresses) touches.
    pub fn register(&mut self, vm: &VmFd, range: Range<u64>) -> Result<(), MemoryError> {
        let end = range.end.min(self.size);
        if range.start >= end {
            return Ok(());
        }
        for chunk in range.start / self.chunk..=(end - 1) / self.chunk {
            self.register_chunk(vm, chunk)?;
        }
        Ok(())
    }

    /// Registers the chunk holding `gpa` if it is RAM without a slot: whether it did.
    pub fn fault_in(&mut self, vm: &VmFd, gpa: u64) -> Result<bool, MemoryError> {
        if gpa >= self.size || self.is_registered(gpa) {
            return Ok(false);
        }
        self.register_chunk(vm, gpa / self.chunk)?;
        Ok(true)
    }

    /// Registers every chunk still without a slot: whether there was one.
    pub fn register_rest(&mut self, vm: &VmFd) -> Result<bool, MemoryError> {
        let missing: Vec<u64> = (0u64..).zip(&self.registered).filter(|(_, r)| !**r).map(|(c, _)| c).collect();
        for &chunk in &missing {
            self.register_chunk(vm, chunk)?;
        }
        Ok(!missing.is_empty())
    }

    /// Registers what `ram` maps above its guest-visible size (the hvt net ring), as one more
    /// slot after the chunks', before the run.
    pub fn register_reserved(&mut self, vm: &VmFd, ram: &GuestRam) -> Result<(), MemoryError> {
        let size = ram.mapped_size() - self.size;
        if size == 0 {
            return Ok(());
        }
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: u32::try_from(self.registered.len()).map_err(|_| MemoryError::Register {
                what: "guest memory slots",
                source: kvm_ioctls::Error::new(libc::EOVERFLOW),
            })?,
            guest_phys_addr: self.size,
            memory_size: size,
            userspace_addr: self.host + self.size,
            flags: 0,
        };
        // SAFETY: the region is the part of the guest RAM mapping above the visible size
        // (`[size, mapped_size)`), which the VM owner keeps alive until after the VM fd is
        // closed; its slot number comes after every chunk's and is registered once.
        unsafe { vm.set_user_memory_region(region) }.map_err(|source| MemoryError::Register {
            what: "KVM_SET_USER_MEMORY_REGION",
            source,
        })
    }

    /// Whether the chunk holding `gpa` has a slot.
    pub fn is_registered(&self, gpa: u64) -> bool {
        usize::try_from(gpa / self.chunk)
            .ok()
            .and_then(|c| self.registered.get(c))
            .is_some_and(|r| *r)
    }

    /// How many chunks have a slot.
    pub fn registered_count(&self) -> usize {
        self.registered.iter().filter(|r| **r).count()
    }

    fn register_chunk(&mut self, vm: &VmFd, chunk: u64) -> Result<(), MemoryError> {
        let index = usize::try_from(chunk).ok().filter(|&c| c < self.registered.len());
        let Some(index) = index else {
            return Ok(());
        };
        if self.registered[index] {
            return Ok(());
        }
        let start = chunk * self.chunk;
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: u32::try_from(chunk).map_err(|_| MemoryError::Register {
                what: "guest memory slots",
                source: kvm_ioctls::Error::new(libc::EOVERFLOW),
            })?,
            guest_phys_addr: start,
            memory_size: self.chunk.min(self.size - start),
            userspace_addr: self.host + start,
            flags: 0,
        };
        // SAFETY: the region is part of the guest RAM mapping (`start + memory_size <= size`),
        // which the VM owner keeps alive until after the VM fd is closed; each chunk has its own
        // slot number and is registered once.
        unsafe { vm.set_user_memory_region(region) }.map_err(|source| MemoryError::Register {
            what: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
        self.registered[index] = true;
        log::trace!("registered guest RAM chunk {chunk} ({:#x}+{:#x})", start, region.memory_size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_chunks_follow_the_ram_size() {
        let ram = GuestRam::new(MIN_CHUNK * 2 + (2 << 20)).unwrap();
        let slots = Slots::new(&ram).unwrap();
        assert_eq!(slots.registered.len(), 3);
        assert_eq!(slots.registered_count(), 0);
        assert!(!slots.is_registered(0));
        assert!(!slots.is_registered(u64::MAX));
    }

    #[test]
    fn test_chunk_size_is_small_and_bounds_the_slot_count() {
        assert_eq!(chunk_size(1 << 20), MIN_CHUNK);
        assert_eq!(chunk_size(512 << 20), 8 << 20);
        assert_eq!(chunk_size(2 << 30), 8 << 20);
        assert_eq!(chunk_size((2 << 30) + 1), 16 << 20);
        assert_eq!(chunk_size(4 << 30), 16 << 20);
        for mib in [1u64, 63, 64, 511, 2049, 4095, 4096, 65536] {
            let size = mib << 20;
            assert!(size.div_ceil(chunk_size(size)) <= MAX_CHUNKS, "{mib} MiB");
        }
    }
}
