//! ACPI tables for Linux-boot-protocol guests (x86_64), built with the acpi_tables crate: how a
//! stock distribution kernel, whose virtio-mmio driver cannot read `virtio_mmio.device=`
//! (Debian builds it without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), finds its devices, its CPUs
//! and how to power off.
//!
//! - RSDP at 0xe0000 (where Linux also scans) → XSDT → FADT, MADT; FADT → DSDT.
//! - FADT: hardware-reduced ACPI, sleep control/status registers at [`SLEEP_PORT`].
//! - MADT: one local APIC per vCPU, the IOAPIC, ISA IRQ 0 → GSI 2 (the PIT).
//! - DSDT: one `LNRO0005` (virtio-mmio) device per window, with its memory range and interrupt,
//!   and the `\_S5` package for poweroff.

use acpi_tables::Aml;
use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::bus::BusDevice;
use crate::exit::{Action, ExitStatus};

/// Where the RSDP goes; the other tables follow it.
pub const RSDP_ADDR: u64 = 0xe_0000;
/// The end of the table area (the BIOS area ends at 1 MiB).
const TABLES_END: u64 = 0x10_0000;
/// The I/O port of the sleep control (write) and status (read) registers.
pub const SLEEP_PORT: u64 = 0x3c0;
/// `\_S5` sleep type: what the guest writes to SLP_TYP to power off.
const S5_TYPE: u8 = 5;
const OEM_ID: [u8; 6] = *b"UNIK  ";
const OEM_TABLE: [u8; 8] = *b"UNIKVM  ";
const IOAPIC_ADDR: u32 = 0xfec0_0000;
const LAPIC_ADDR: u32 = 0xfee0_0000;

/// Why the tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// They do not fit below 1 MiB.
    #[error("ACPI tables do not fit in the BIOS area ({0} bytes)")]
    TooLarge(u64),
    /// Guest memory refused the write.
    #[error("writing ACPI tables: {0}")]
    Memory(String),
}

pub use crate::devices::virtio::MmioDevice;

fn bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// The DSDT: virtio-mmio devices and `\_S5`.
pub fn dsdt(devices: &[MmioDevice]) -> Vec<u8> {
    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, 1);
    for (i, d) in devices.iter().enumerate() {
        let name = format!("_SB_.V{i:03X}");
        let uid = u32::try_from(i).unwrap_or(0);
        let base = u32::try_from(d.base).unwrap_or(0);
        let len = u32::try_from(d.len).unwrap_or(0);
        let memory = aml::Memory32Fixed::new(true, base, len);
        let irq = aml::Interrupt::new(true, true, false, false, d.irq);
        let crs = aml::ResourceTemplate::new(vec![&memory, &irq]);
        let hid = aml::Name::new("_HID".into(), &"LNRO0005");
        let uid = aml::Name::new("_UID".into(), &uid);
        let cca = aml::Name::new("_CCA".into(), &aml::ONE);
        let crs = aml::Name::new("_CRS".into(), &crs);
        table.append_slice(&bytes(&aml::Device::new(name.as_str().into(), vec![&hid, &uid, &cca, &crs])));
    }
    let s5 = aml::Package::new(vec![&S5_TYPE]);
    table.append_slice(&bytes(&aml::Name::new("_S5_".into(), &s5)));
    bytes(&table)
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(OEM_ID, OEM_TABLE, 1, LocalInterruptController::Address(LAPIC_ADDR));
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, IOAPIC_ADDR, 0));
    let mut out = bytes(&madt);
    // Interrupt source override (type 2, 10 bytes): ISA IRQ 0 (the PIT) is GSI 2.
    let iso = [2u8, 10, 0, 0, 2, 0, 0, 0, 0, 0];
    out.extend_from_slice(&iso);
    fix_length_and_checksum(&mut out);
    out
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE, 1).flag(Flags::HwReducedAcpi).dsdt_64(dsdt_addr);
    let sleep = GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, SLEEP_PORT);
    fadt.sleep_control_reg = sleep;
    fadt.sleep_status_reg = sleep;
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"UNIKVMM\0").into();
    bytes(&fadt.finalize())
}

/// Sets a table's length field (offset 4) to its size and recomputes its checksum (offset 9).
fn fix_length_and_checksum(table: &mut [u8]) {
    let len = u32::try_from(table.len()).unwrap_or(u32::MAX);
    table[4..8].copy_from_slice(&len.to_le_bytes());
    table[9] = 0;
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[9] = sum.wrapping_neg();
}

/// Writes every table for `vcpus` CPUs and `devices`; returns the RSDP's address.
pub fn write_tables(mem: &GuestMemoryMmap, vcpus: u8, devices: &[MmioDevice]) -> Result<u64, AcpiError> {
    let mut next = RSDP_ADDR + 64;
    let mut place = |data: &[u8]| -> Result<u64, AcpiError> {
        let at = next;
        let end = at + data.len() as u64;
        if end > TABLES_END {
            return Err(AcpiError::TooLarge(end - RSDP_ADDR));
        }
        mem.write_slice(data, GuestAddress(at))
            .map_err(|e| AcpiError::Memory(e.to_string()))?;
        next = end.next_multiple_of(8);
        Ok(at)
    };
    let dsdt_addr = place(&dsdt(devices))?;
    let fadt_addr = place(&fadt(dsdt_addr))?;
    let madt_addr = place(&madt(vcpus))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place(&bytes(&xsdt))?;
    mem.write_slice(&bytes(&Rsdp::new(OEM_ID, xsdt_addr)), GuestAddress(RSDP_ADDR))
        .map_err(|e| AcpiError::Memory(e.to_string()))?;
    Ok(RSDP_ADDR)
}

/// The sleep control register: SLP_EN with SLP_TYP = `\_S5` powers the machine off.
#[derive(Debug, Default)]
pub struct SleepControl;

impl BusDevice for SleepControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Action {
        const SLP_EN: u8 = 1 << 5;
        let Some(&v) = data.first() else { return Action::Continue };
        if v & SLP_EN != 0 && (v >> 2) & 0x7 == S5_TYPE {
            Action::Stop(ExitStatus::Halt(0))
        } else {
            Action::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(t: &[u8]) -> bool {
        t.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let mut head = [0u8; 8];
        mem.read_slice(&mut head, GuestAddress(addr)).unwrap();
        let mut t = vec![0u8; u32_at(&head, 4) as usize];
        mem.read_slice(&mut t, GuestAddress(addr)).unwrap();
        t
    }

    #[test]
    fn test_tables_chain_from_the_rsdp_with_valid_checksums() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let devices = [
            MmioDevice {
                base: 0xd000_0000,
                len: 0x1000,
                irq: 5,
            },
            MmioDevice {
                base: 0xd000_1000,
                len: 0x1000,
                irq: 6,
            },
        ];
        assert_eq!(write_tables(&mem, 2, &devices).unwrap(), RSDP_ADDR);
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(RSDP_ADDR)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));
        let xsdt = table(&mem, u64_at(&rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(checksum_ok(&xsdt));
        let fadt = table(&mem, u64_at(&xsdt, 36));
        let madt = table(&mem, u64_at(&xsdt, 44));
        assert_eq!((&fadt[..4], &madt[..4]), (&b"FACP"[..], &b"APIC"[..]));
        assert!(checksum_ok(&fadt) && checksum_ok(&madt));
        // Hardware-reduced, sleep control at the port.
        assert_ne!(u32_at(&fadt, 112) & (1 << 20), 0);
        let dsdt = table(&mem, u64_at(&fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert!(checksum_ok(&dsdt));
        // Both devices, by HID and address; \_S5.
        let text = String::from_utf8_lossy(&dsdt);
        assert_eq!(text.matches("LNRO0005").count(), 2);
        assert!(dsdt.windows(4).any(|w| w == 0xd000_1000u32.to_le_bytes()));
        assert!(text.contains("_S5_"));
        // Two local APICs (type 0), one IOAPIC (type 1), the PIT override (type 2).
        let mut types = Vec::new();
        let mut off = 44;
        while off < madt.len() {
            types.push(madt[off]);
            off += usize::from(madt[off + 1]);
        }
        assert_eq!(types, [0, 0, 1, 2]);
    }

    /// Runs ACPICA's disassembler on `table` (written to `dir/name.dat`); returns the listing.
    fn iasl_disassemble(dir: &std::path::Path, name: &str, table: &[u8]) -> String {
        let dat = dir.join(format!("{name}.dat"));
        std::fs::write(&dat, table).unwrap();
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&dat)
            .current_dir(dir)
            .output()
            .expect("iasl (scripts/setup.sh installs acpica-tools)");
        let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "iasl -d {name}: {log}");
        let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap_or_else(|e| panic!("{name}.dsl: {e}; {log}"));
        // Lengths, checksums and field values it finds wrong are flagged in the listing.
        assert!(!dsl.contains("Incorrect") && !dsl.contains("Invalid"), "{name}:\n{dsl}");
        dsl
    }

    #[test]
    fn test_acpica_reads_the_tables_as_a_kernel_would() {
        // ACPICA is the interpreter Linux uses: what it disassembles cleanly, a stock kernel parses.
        let dir = tempfile::tempdir().unwrap();
        let devices = [MmioDevice {
            base: 0xd000_0000,
            len: 0x1000,
            irq: 5,
        }];
        let dsdt = iasl_disassemble(dir.path(), "dsdt", &dsdt(&devices));
        for want in [
            "Device (_SB.V000)",
            "Name (_HID, \"LNRO0005\")",
            "Memory32Fixed (ReadWrite,",
            "0xD0000000,",
            "0x00001000,",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )",
            "0x00000005,",
            "Name (_S5, Package",
        ] {
            assert!(dsdt.contains(want), "no {want:?} in the DSDT:\n{dsdt}");
        }
        let fadt = iasl_disassemble(dir.path(), "facp", &fadt(0xe_0040));
        assert!(fadt.contains("Hardware Reduced (V5) : 1"), "{fadt}");
        assert!(fadt.contains("Sleep Control Register"), "{fadt}");
        let madt = iasl_disassemble(dir.path(), "apic", &madt(2));
        assert_eq!(madt.matches("Subtable Type : 00 [Processor Local APIC]").count(), 2, "{madt}");
        assert!(madt.contains("Subtable Type : 01 [I/O APIC]"), "{madt}");
        assert!(madt.contains("Subtable Type : 02 [Interrupt Source Override]"), "{madt}");
    }

    #[test]
    fn test_sleep_control_powers_off_on_s5_only() {
        assert_eq!(SleepControl.write(0, &[(5 << 2) | (1 << 5)]), Action::Stop(ExitStatus::Halt(0)));
        assert_eq!(SleepControl.write(0, &[5 << 2]), Action::Continue);
        assert_eq!(SleepControl.write(0, &[(3 << 2) | (1 << 5)]), Action::Continue);
        assert_eq!(SleepControl.write(0, &[]), Action::Continue);
    }
}
