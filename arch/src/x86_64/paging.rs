//! Identity-mapped 4-level page tables.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{BOOT_INFO_GPA, GUEST_MIN_BASE, MEM_ALIGN, MEM_MAX, PD_GPA, PDPT_GPA, PML4_GPA, PT0_GPA};
use crate::ArchError;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;
const PAGE: u64 = 0x1000;

/// The page-table entries for `mem_size` bytes of RAM, as (GPA, value) pairs of non-zero entries.
///
/// Pages below the boot info are absent; the boot-info area up to 1 MiB is read-only; the rest of
/// the first 2 MiB is mapped with 4 KiB pages and everything above with 2 MiB pages. Memory is
/// zero-filled, so absent entries need no write.
pub(crate) fn page_table_entries(mem_size: u64) -> Result<Vec<(u64, u64)>, ArchError> {
    if !(MEM_ALIGN..=MEM_MAX).contains(&mem_size) || mem_size % MEM_ALIGN != 0 {
        return Err(ArchError::MemorySize(mem_size));
    }
    let mut entries = vec![(PML4_GPA, PDPT_GPA | PRESENT | WRITABLE)];
    for i in 0..4 {
        entries.push((PDPT_GPA + i * 8, (PD_GPA + i * PAGE) | PRESENT | WRITABLE));
    }
    entries.push((PD_GPA, PT0_GPA | PRESENT | WRITABLE));
    for page in (BOOT_INFO_GPA..MEM_ALIGN).step_by(0x1000) {
        let flags = if page < GUEST_MIN_BASE { PRESENT } else { PRESENT | WRITABLE };
        entries.push((PT0_GPA + (page / PAGE) * 8, page | flags));
    }
    for i in 1..mem_size / MEM_ALIGN {
        entries.push((PD_GPA + i * 8, (i * MEM_ALIGN) | PRESENT | WRITABLE | PAGE_SIZE_2M));
    }
    Ok(entries)
}

pub(crate) fn write_page_tables(mem: &GuestMemoryMmap, mem_size: u64) -> Result<(), ArchError> {
    write_entries(mem, &page_table_entries(mem_size)?, "page tables")
}

/// Writes 8-byte `entries` to guest memory, one write per run of entries that follow each other
/// in the list and in memory: a 4 GiB guest has over 2000 of them, and one write each was a noticeable part of
/// start-up.
pub(crate) fn write_entries(mem: &GuestMemoryMmap, entries: &[(u64, u64)], what: &'static str) -> Result<(), ArchError> {
    let mut run: Vec<u8> = Vec::with_capacity(entries.len() * 8);
    let mut start = 0;
    for (i, &(gpa, value)) in entries.iter().enumerate() {
        if i > 0 && gpa != start + run.len() as u64 {
            mem.write_slice(&run, GuestAddress(start))
                .map_err(|_| ArchError::GuestMemory { what })?;
            run.clear();
        }
        if run.is_empty() {
            start = gpa;
        }
        run.extend_from_slice(&value.to_le_bytes());
    }
    if !run.is_empty() {
        mem.write_slice(&run, GuestAddress(start))
            .map_err(|_| ArchError::GuestMemory { what })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(entries: &[(u64, u64)], gpa: u64) -> u64 {
        entries.iter().find(|(a, _)| *a == gpa).map_or(0, |(_, v)| *v)
    }

    /// Walks the tables like the MMU does and returns the PTE flags of a virtual address, or None.
    fn translate(entries: &[(u64, u64)], va: u64) -> Option<(u64, u64)> {
        let pml4e = lookup(entries, PML4_GPA + ((va >> 39) & 0x1ff) * 8);
        if pml4e & PRESENT == 0 {
            return None;
        }
        let pdpte = lookup(entries, (pml4e & !0xfff) + ((va >> 30) & 0x1ff) * 8);
        if pdpte & PRESENT == 0 {
            return None;
        }
        let pde = lookup(entries, (pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8);
        if pde & PRESENT == 0 {
            return None;
        }
        if pde & PAGE_SIZE_2M != 0 {
            return Some(((pde & !0x1f_ffff & !(1 << 63)) | (va & 0x1f_ffff), pde & 0xfff));
        }
        let pte = lookup(entries, (pde & !0xfff) + ((va >> 12) & 0x1ff) * 8);
        (pte & PRESENT != 0).then_some(((pte & !0xfff) | (va & 0xfff), pte & 0xfff))
    }

    #[test]
    fn test_identity_map_and_protections() {
        let mem = 512 << 20;
        let e = page_table_entries(mem).unwrap();
        assert_eq!(translate(&e, 0), None);
        assert_eq!(translate(&e, 0xfff0), None);
        assert_eq!(translate(&e, 0x10000), Some((0x10000, PRESENT)));
        assert_eq!(translate(&e, 0xf_ffff), Some((0xf_ffff, PRESENT)));
        assert_eq!(translate(&e, 0x10_0000), Some((0x10_0000, PRESENT | WRITABLE)));
        assert_eq!(translate(&e, 0x1f_ffff), Some((0x1f_ffff, PRESENT | WRITABLE)));
        assert_eq!(translate(&e, 0x20_0000), Some((0x20_0000, PRESENT | WRITABLE | PAGE_SIZE_2M)));
        assert_eq!(translate(&e, mem - 8).map(|t| t.0), Some(mem - 8));
        assert_eq!(translate(&e, mem), None);
        assert_eq!(translate(&e, 0x4_0000_0000), None);
    }

    #[test]
    fn test_four_gib_is_fully_mapped() {
        let mem = 4 << 30;
        let e = page_table_entries(mem).unwrap();
        assert_eq!(translate(&e, mem - 1).map(|t| t.0), Some(mem - 1));
        assert_eq!(e.len(), 1 + 4 + 1 + (0x20_0000 - 0x10000) / 0x1000 + 2047);
    }

    #[test]
    fn test_entries_written_in_runs_land_where_each_one_belongs() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let entries = page_table_entries(4 << 20).unwrap();
        write_page_tables(&mem, 4 << 20).unwrap();
        for &(gpa, value) in &entries {
            assert_eq!(mem.read_obj::<u64>(GuestAddress(gpa)).unwrap(), value, "{gpa:#x}");
        }
        // Nothing else was written: the tables' pages hold exactly the entries.
        let written: u64 = entries.iter().map(|(_, v)| v.count_ones() as u64).sum();
        let mut seen = 0u64;
        for gpa in (PML4_GPA..BOOT_INFO_GPA).step_by(8) {
            seen += mem.read_obj::<u64>(GuestAddress(gpa)).unwrap().count_ones() as u64;
        }
        assert_eq!(seen, written);
    }

    #[test]
    fn test_rejects_bad_sizes() {
        for bad in [0, 0x10_0000, 3 << 20, (4 << 30) + (2 << 20)] {
            assert!(page_table_entries(bad).is_err(), "{bad:#x}");
        }
    }
}
