//! The machine and entry state for guests booted with the Linux boot protocol: in-kernel irqchip
//! (PIC + IOAPIC + LAPIC) and PIT, and a vCPU at the 64-bit entry (boot_params in RSI, identity
//! paging of the first 4 GiB), at the PVH entry (32-bit protected mode, paging off,
//! `hvm_start_info` in EBX) or at the multiboot entry (the same 32-bit state, `0x2BADB002` in
//! EAX, the multiboot information in EBX).

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, Msrs, kvm_fpu, kvm_msr_entry, kvm_pit_config, kvm_regs, kvm_segment};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::gdt::segment;
use crate::{ArchError, LinuxEntry};

/// Where the boot GDT goes.
pub const BOOT_GDT: u64 = 0x500;
/// The identity page tables: PML4, one PDPT, four PDs of 2 MiB pages (4 GiB).
pub const BOOT_PML4: u64 = 0x9000;
const BOOT_PDPT: u64 = 0xa000;
const BOOT_PD: u64 = 0xb000;
/// Initial stack pointer (below the page tables), as the 64-bit boot protocol leaves it to us.
pub const BOOT_STACK: u64 = 0x8ff0;
/// KVM's three-page TSS region, just below the 4 GiB boundary's BIOS area.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// GDT: null, 64-bit code, data, 32-bit code (for PVH), TSS.
const GDT: [u64; 5] = [
    0,
    0x00AF_9B00_0000_FFFF, // 0x08: code, long mode
    0x00CF_9300_0000_FFFF, // 0x10: data
    0x00CF_9B00_0000_FFFF, // 0x18: code, 32-bit
    0x0080_8B00_0000_0067, // 0x20: TSS (unused, but a valid TR)
];

const PRESENT_RW: u64 = 0x3;
const PAGE_2M: u64 = 0x80;

const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ArchError {
    move |source| ArchError::Kvm { what, source }
}

/// Per-VM setup before any vCPU exists: TSS region, in-kernel irqchip and PIT.
pub fn setup_linux_vm(vm: &VmFd) -> Result<(), ArchError> {
    vm.set_tss_address(TSS_ADDRESS).map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))
}

/// The page-table and GDT writes the 64-bit entry needs: `(gpa, value)`.
pub(crate) fn boot_tables() -> Vec<(u64, u64)> {
    let mut out = vec![(BOOT_PML4, BOOT_PDPT | PRESENT_RW)];
    for i in 0..4u64 {
        out.push((BOOT_PDPT + i * 8, (BOOT_PD + i * 0x1000) | PRESENT_RW));
    }
    for i in 0..2048u64 {
        out.push((BOOT_PD + i * 8, (i << 21) | PRESENT_RW | PAGE_2M));
    }
    out.extend((0u64..).zip(GDT).map(|(i, d)| (BOOT_GDT + i * 8, d)));
    out
}

/// Sets vCPU `index` up for `entry`. Only vCPU 0 gets the entry state; the others wait for the
/// guest's INIT/SIPI in the in-kernel LAPIC.
pub fn setup_linux_vcpu(
    kvm: &Kvm,
    _vm: &VmFd,
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    index: u8,
    entry: LinuxEntry,
) -> Result<(), ArchError> {
    let mut cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    for e in cpuid.as_mut_slice() {
        match e.function {
            // Initial APIC ID in EBX[31:24].
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(index) << 24),
            // x2APIC ID.
            0xb | 0x1f => e.edx = u32::from(index),
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
    set_lint(vcpu)?;
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_MISC_ENABLE,
        data: MISC_ENABLE_FAST_STRING,
        ..Default::default()
    }])
    .map_err(|_| ArchError::GuestMemory { what: "MSR list" })?;
    vcpu.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
    if index != 0 {
        return Ok(());
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))?;
    super::paging::write_entries(mem, &boot_tables(), "boot page tables")?;
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = u16::try_from(GDT.len() * 8 - 1).unwrap_or(u16::MAX);
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    let data = segment(0x10, GDT[2]);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(0x20, GDT[4]);
    sregs.ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    let regs = match entry {
        LinuxEntry::Long64 { rip, boot_params } => {
            sregs.cs = segment(0x08, GDT[1]);
            sregs.cr3 = BOOT_PML4;
            sregs.cr4 |= 0x20; // PAE
            sregs.cr0 |= 0x8000_0001; // PG | PE
            sregs.efer |= 0x500; // LME | LMA
            kvm_regs {
                rip,
                rsp: BOOT_STACK,
                rbp: BOOT_STACK,
                rsi: boot_params,
                rflags: 2,
                ..Default::default()
            }
        }
        LinuxEntry::Pvh { rip, start_info } => {
            protected_mode32(&mut sregs);
            kvm_regs {
                rip,
                rbx: start_info,
                rflags: 2,
                ..Default::default()
            }
        }
        LinuxEntry::Multiboot { eip, info } => {
            protected_mode32(&mut sregs);
            kvm_regs {
                rip: u64::from(eip),
                rax: u64::from(MULTIBOOT_BOOTLOADER_MAGIC),
                rbx: u64::from(info),
                rflags: 2,
                ..Default::default()
            }
        }
        LinuxEntry::Arm64Image { .. } => return Err(ArchError::Unsupported("an arm64 Image")),
    };
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

/// What a multiboot loader leaves in EAX.
pub const MULTIBOOT_BOOTLOADER_MAGIC: u32 = 0x2bad_b002;

/// The 32-bit protected-mode state the PVH and multiboot entries share: CS a flat 4 GiB 32-bit
/// code segment, the data segments flat 4 GiB (already set), paging off, no PAE, no long mode.
/// RFLAGS.IF is clear (the callers' `rflags: 2`).
fn protected_mode32(sregs: &mut kvm_bindings::kvm_sregs) {
    sregs.cs = segment(0x18, GDT[3]);
    sregs.cr0 = 0x11; // PE | ET, paging off
    sregs.cr4 = 0;
    sregs.efer = 0;
}

/// LINT0 = ExtINT (the PIC), LINT1 = NMI: what firmware leaves and Linux expects.
fn set_lint(vcpu: &VcpuFd) -> Result<(), ArchError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i].to_ne_bytes()[0]);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            lapic.regs[reg + i] = std::ffi::c_char::from_ne_bytes([b]);
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_boot_tables_identity_map_four_gib() {
        let t = boot_tables();
        let get = |gpa: u64| t.iter().find(|(a, _)| *a == gpa).map(|(_, v)| *v);
        assert_eq!(get(BOOT_PML4), Some(BOOT_PDPT | 3));
        assert_eq!(get(BOOT_PDPT + 3 * 8), Some((BOOT_PD + 0x3000) | 3));
        assert_eq!(get(BOOT_PD), Some(0x83));
        // The last 2 MiB page below 4 GiB maps itself.
        assert_eq!(get(BOOT_PD + 2047 * 8), Some((2047 << 21) | 0x83));
        let cs = segment(0x08, GDT[1]);
        assert_eq!((cs.l, cs.db, cs.type_, cs.present), (1, 0, 0xb, 1));
        let cs32 = segment(0x18, GDT[3]);
        assert_eq!((cs32.l, cs32.db, cs32.limit), (0, 1, 0xffff_ffff));
        // The 32-bit entries: flat code and data, paging and long mode off.
        let mut sregs = kvm_bindings::kvm_sregs {
            cr0: 0x8000_0011,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        };
        protected_mode32(&mut sregs);
        assert_eq!((sregs.cr0, sregs.cr4, sregs.efer), (0x11, 0, 0));
        assert_eq!((sregs.cs.base, sregs.cs.limit, sregs.cs.db, sregs.cs.l), (0, 0xffff_ffff, 1, 0));
        let data = segment(0x10, GDT[2]);
        assert_eq!((data.base, data.limit, data.db, data.type_ & 0x2), (0, 0xffff_ffff, 1, 2));
        // Nothing the tables use overlaps the stack or the zero page at 0x7000.
        assert!(t.iter().all(|(a, _)| *a >= BOOT_GDT && (*a < 0x7000 || *a >= BOOT_PML4)));
    }
}
