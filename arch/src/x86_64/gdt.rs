//! The three-entry GDT and the flat 64-bit segments built from it.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::GDT_GPA;
use crate::ArchError;

/// Code segment selector.
pub(crate) const CODE_SELECTOR: u16 = 0x08;
/// Data segment selector.
pub(crate) const DATA_SELECTOR: u16 = 0x10;
/// null, 64-bit code (execute-only, L=1, G=1), data (read/write, DB=1, G=1).
pub(crate) const GDT: [u64; 3] = [0, 0x00AF_9900_0000_FFFF, 0x00CF_9300_0000_FFFF];

pub(crate) fn write_gdt(mem: &GuestMemoryMmap) -> Result<(), ArchError> {
    for (i, entry) in (0u64..).zip(GDT) {
        mem.write_obj(entry, GuestAddress(GDT_GPA + i * 8))
            .map_err(|_| ArchError::GuestMemory { what: "GDT" })?;
    }
    Ok(())
}

/// Decodes a GDT descriptor into the segment register KVM expects.
pub(crate) fn segment(selector: u16, desc: u64) -> kvm_segment {
    let bit = |n: u32| u8::from(desc & (1 << n) != 0);
    let base = ((desc >> 16) & 0xff_ffff) | ((desc >> 32) & 0xff00_0000);
    let raw_limit = (desc & 0xffff) | ((desc >> 32) & 0xf_0000);
    let granular = bit(55);
    let limit = if granular == 1 { (raw_limit << 12) | 0xfff } else { raw_limit };
    kvm_segment {
        base,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        selector,
        type_: u8::try_from((desc >> 40) & 0xf).unwrap_or(0),
        present: bit(47),
        dpl: u8::try_from((desc >> 45) & 0x3).unwrap_or(0),
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: granular,
        avl: bit(52),
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_segments_decode_as_flat_long_mode() {
        let cs = segment(CODE_SELECTOR, GDT[1]);
        assert_eq!(
            (cs.base, cs.limit, cs.type_, cs.s, cs.present, cs.l, cs.db, cs.g, cs.dpl),
            (0, 0xffff_ffff, 0x9, 1, 1, 1, 0, 1, 0)
        );
        let ds = segment(DATA_SELECTOR, GDT[2]);
        assert_eq!(
            (ds.base, ds.limit, ds.type_, ds.s, ds.present, ds.l, ds.db, ds.g),
            (0, 0xffff_ffff, 0x3, 1, 1, 0, 1, 1)
        );
    }
}
