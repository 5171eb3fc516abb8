//! Identity-mapped stage-1 tables, 4 KiB granule, 40-bit VA.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{BOOT_INFO_GPA, GUEST_MIN_BASE, HYPERCALL_MMIO_BASE, MEM_ALIGN, MEM_MAX, PGD_GPA, PMD_GPA, PTE_GPA, PUD_GPA};
use crate::ArchError;

const TABLE: u64 = 0x3;
/// Normal memory, read-only, PXN | UXN (boot info area).
const PTE_RO: u64 = 0x0060_0000_0000_0793;
/// Normal memory, read-write, EL1-executable, UXN (first 2 MiB).
const PTE_RW: u64 = 0x0040_0000_0000_0713;
/// 2 MiB block, normal memory, read-write, EL1-executable, UXN.
const BLOCK_RW: u64 = 0x0040_0000_0000_0711;
/// 1 GiB block, Device-nGnRE, PXN | UXN (hypercall window).
const BLOCK_MMIO: u64 = 0x0060_0000_0000_0705;
const PAGE: u64 = 0x1000;
const GIB: u64 = 1 << 30;

pub(crate) fn page_table_entries(mem_size: u64) -> Result<Vec<(u64, u64)>, ArchError> {
    if !(MEM_ALIGN..=MEM_MAX).contains(&mem_size) || mem_size % MEM_ALIGN != 0 {
        return Err(ArchError::MemorySize(mem_size));
    }
    let mut entries = vec![(PGD_GPA, PUD_GPA | TABLE)];
    for i in 0..mem_size.div_ceil(GIB) {
        entries.push((PUD_GPA + i * 8, (PMD_GPA + i * PAGE) | TABLE));
    }
    entries.push((PUD_GPA + (HYPERCALL_MMIO_BASE / GIB) * 8, HYPERCALL_MMIO_BASE | BLOCK_MMIO));
    entries.push((PMD_GPA, PTE_GPA | TABLE));
    for page in (BOOT_INFO_GPA..MEM_ALIGN).step_by(0x1000) {
        let attrs = if page < GUEST_MIN_BASE { PTE_RO } else { PTE_RW };
        entries.push((PTE_GPA + (page / PAGE) * 8, page | attrs));
    }
    for block in 1..mem_size / MEM_ALIGN {
        let addr = block * MEM_ALIGN;
        entries.push((PMD_GPA + (addr / GIB) * PAGE + ((addr % GIB) / MEM_ALIGN) * 8, addr | BLOCK_RW));
    }
    Ok(entries)
}

pub(crate) fn write_page_tables(mem: &GuestMemoryMmap, mem_size: u64) -> Result<(), ArchError> {
    for (gpa, value) in page_table_entries(mem_size)? {
        mem.write_obj(value, GuestAddress(gpa))
            .map_err(|_| ArchError::GuestMemory { what: "page tables" })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_layout_entries() {
        let e = page_table_entries(2 << 30).unwrap();
        let get = |gpa| e.iter().find(|(a, _)| *a == gpa).map(|(_, v)| *v);
        assert_eq!(get(PGD_GPA), Some(PUD_GPA | TABLE));
        assert_eq!(get(PUD_GPA + 8), Some(0x4000 | TABLE));
        assert_eq!(get(PUD_GPA + 16), None);
        assert_eq!(get(PUD_GPA + 32), Some(0x1_0000_0000 | BLOCK_MMIO));
        assert_eq!(get(PTE_GPA + 0x10 * 8), Some(0x10000 | PTE_RO));
        assert_eq!(get(PTE_GPA + 0x100 * 8), Some(0x10_0000 | PTE_RW));
        assert_eq!(get(PTE_GPA), None);
        assert_eq!(get(PMD_GPA + PAGE + 8), Some((GIB + MEM_ALIGN) | BLOCK_RW));
    }
}
