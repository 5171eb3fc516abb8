//! The flattened device tree an aarch64 Linux-boot guest starts with (x0 at entry), built with
//! vm-fdt from a [`Description`] of the machine: memory, the vCPUs (PSCI 0.2 through `hvc` as
//! their enable method), the GICv3, the architected timer, the 16550 console, every virtio-mmio
//! device with its SPI, and `/chosen` (`bootargs`, the initrd, `stdout-path`).
//!
//! It is built from plain numbers, so it (and its tests) compile on every architecture; only
//! aarch64 boots with it.

use vm_fdt::FdtWriter;

use crate::devices::virtio::MmioDevice;

/// The GIC's `#interrupt-cells` kinds.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Interrupt trigger flags: rising edge (irqfds pulse their line) and level high (the timer).
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
/// The GICv3 maintenance interrupt (a PPI).
const GIC_MAINTENANCE_PPI: u32 = 9;
/// The GIC's phandle, every other node's `interrupt-parent`.
const GIC_PHANDLE: u32 = 1;

/// Why the device tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    /// vm-fdt refused it (a string with a NUL, such as the command line).
    #[error("{0}")]
    Write(vm_fdt::Error),
    /// It is larger than the room it has.
    #[error("{size} bytes, more than the {max} the boot protocol allows")]
    TooBig {
        /// Its size.
        size: usize,
        /// The room.
        max: u64,
    },
}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> FdtError {
        FdtError::Write(e)
    }
}

/// An MMIO region: base and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The 16550 console.
#[derive(Debug, Clone, Copy)]
pub struct Serial {
    /// Its register window.
    pub window: Region,
    /// Its SPI number.
    pub spi: u32,
    /// Its input clock in Hz.
    pub clock: u32,
}

/// What the device tree describes.
#[derive(Debug, Clone, Copy)]
pub struct Description<'a> {
    /// The RAM.
    pub memory: Region,
    /// Each vCPU's MPIDR affinity, in vCPU order.
    pub cpus: &'a [u64],
    /// The GICv3 distributor.
    pub gicd: Region,
    /// The GICv3 redistributors, one after the other (all vCPUs').
    pub gicr: Region,
    /// The architected timer's PPIs: secure and non-secure physical, virtual, hypervisor.
    pub timer_ppis: [u32; 4],
    /// The console.
    pub serial: Serial,
    /// The virtio-mmio devices (`irq` is the SPI number).
    pub virtio: &'a [MmioDevice],
    /// The kernel command line.
    pub bootargs: &'a str,
    /// The initrd: (address, size).
    pub initrd: Option<(u64, u64)>,
}

/// A node name with its unit address, as the device tree spells it (`name@hex`).
fn unit(name: &str, address: u64) -> String {
    format!("{name}@{address:x}")
}

/// Builds the device tree; `max` bytes is its room.
pub fn build(d: &Description<'_>, max: u64) -> Result<Vec<u8>, FdtError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let serial_node = unit("uart", d.serial.window.base);
    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", d.bootargs)?;
    fdt.property_string("stdout-path", &format!("/{serial_node}"))?;
    if let Some((addr, size)) = d.initrd {
        fdt.property_u64("linux,initrd-start", addr)?;
        fdt.property_u64("linux,initrd-end", addr + size)?;
    }
    fdt.end_node(chosen)?;

    let memory = fdt.begin_node(&unit("memory", d.memory.base))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[d.memory.base, d.memory.len])?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for &mpidr in d.cpus {
        let cpu = fdt.begin_node(&unit("cpu", mpidr))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u64("reg", mpidr)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string("compatible", "arm,psci-0.2")?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let gic = fdt.begin_node(&unit("intc", d.gicd.base))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_array_u64("reg", &[d.gicd.base, d.gicd.len, d.gicr.base, d.gicr.len])?;
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_array_u32("interrupts", &[GIC_PPI, GIC_MAINTENANCE_PPI, IRQ_LEVEL_HIGH])?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(gic)?;

    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let cells: Vec<u32> = d.timer_ppis.iter().flat_map(|&ppi| [GIC_PPI, ppi, IRQ_LEVEL_HIGH]).collect();
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.end_node(timer)?;

    let serial = fdt.begin_node(&serial_node)?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[d.serial.window.base, d.serial.window.len])?;
    fdt.property_u32("clock-frequency", d.serial.clock)?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, d.serial.spi, IRQ_EDGE_RISING])?;
    fdt.end_node(serial)?;

    for dev in d.virtio {
        let node = fdt.begin_node(&unit("virtio_mmio", dev.base))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[dev.base, dev.len])?;
        fdt.property_array_u32("interrupts", &[GIC_SPI, dev.irq, IRQ_EDGE_RISING])?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > max {
        return Err(FdtError::TooBig { size: blob.len(), max });
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use fdt::Fdt;

    use super::*;

    fn description<'a>(cpus: &'a [u64], virtio: &'a [MmioDevice], bootargs: &'a str) -> Description<'a> {
        Description {
            memory: Region {
                base: 0x8000_0000,
                len: 256 << 20,
            },
            cpus,
            gicd: Region {
                base: 0x0800_0000,
                len: 0x1_0000,
            },
            gicr: Region {
                base: 0x080a_0000,
                len: 0x2_0000 * cpus.len() as u64,
            },
            timer_ppis: [13, 14, 11, 10],
            serial: Serial {
                window: Region {
                    base: 0x0900_0000,
                    len: 0x1000,
                },
                spi: 1,
                clock: 1_843_200,
            },
            virtio,
            bootargs,
            initrd: Some((0x8f00_0000, 0x1234)),
        }
    }

    fn cells(node: fdt::node::FdtNode<'_, '_>, name: &str) -> Vec<u32> {
        node.property(name)
            .unwrap_or_else(|| panic!("{} has no {name}", node.name))
            .value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn u64_prop(node: fdt::node::FdtNode<'_, '_>, name: &str) -> u64 {
        let c = cells(node, name);
        u64::from(c[0]) << 32 | u64::from(c[1])
    }

    #[test]
    fn test_device_tree_describes_the_machine() {
        let virtio = [
            MmioDevice {
                base: 0x0a00_0000,
                len: 0x1000,
                irq: 16,
            },
            MmioDevice {
                base: 0x0a00_1000,
                len: 0x1000,
                irq: 17,
            },
        ];
        let cpus = [0x0, 0x1];
        let blob = build(&description(&cpus, &virtio, "console=ttyS0 root=/dev/vda"), 2 << 20).unwrap();
        let fdt = Fdt::new(&blob).unwrap();

        assert_eq!(fdt.root().compatible().first(), "linux,dummy-virt");
        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyS0 root=/dev/vda"));
        assert_eq!(chosen.stdout().map(|n| n.name), Some("uart@9000000"));
        let chosen_node = fdt.find_node("/chosen").unwrap();
        assert_eq!(u64_prop(chosen_node, "linux,initrd-start"), 0x8f00_0000);
        assert_eq!(u64_prop(chosen_node, "linux,initrd-end"), 0x8f00_1234);

        let memory = fdt.find_node("/memory@80000000").unwrap();
        assert_eq!(memory.property("device_type").and_then(|p| p.as_str()), Some("memory"));
        let region = memory.reg().unwrap().next().unwrap();
        assert_eq!((region.starting_address as u64, region.size), (0x8000_0000, Some(256 << 20)));

        let cpu_nodes: Vec<_> = fdt.find_node("/cpus").unwrap().children().collect();
        assert_eq!(cpu_nodes.len(), 2);
        for (node, mpidr) in cpu_nodes.iter().zip(cpus) {
            assert_eq!(node.property("enable-method").and_then(|p| p.as_str()), Some("psci"));
            assert_eq!(u64_prop(*node, "reg"), mpidr);
        }
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.compatible().unwrap().first(), "arm,psci-0.2");
        assert_eq!(psci.property("method").and_then(|p| p.as_str()), Some("hvc"));

        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        assert!(gic.property("interrupt-controller").is_some());
        assert_eq!(gic.interrupt_cells(), Some(3));
        assert_eq!(cells(gic, "reg"), [0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0x4_0000]);
        assert_eq!(cells(gic, "phandle"), [GIC_PHANDLE]);
        assert_eq!(cells(fdt.find_node("/").unwrap(), "interrupt-parent"), [GIC_PHANDLE]);

        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        assert_eq!(cells(timer, "interrupts"), [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);

        let uart = fdt.find_compatible(&["ns16550a"]).unwrap();
        assert_eq!(cells(uart, "reg"), [0, 0x0900_0000, 0, 0x1000]);
        assert_eq!(cells(uart, "interrupts"), [0, 1, 1]);
        assert_eq!(cells(uart, "clock-frequency"), [1_843_200]);

        let mmio: Vec<_> = fdt
            .all_nodes()
            .filter(|n| n.compatible().is_some_and(|c| c.all().any(|s| s == "virtio,mmio")))
            .collect();
        assert_eq!(mmio.len(), 2);
        for (node, dev) in mmio.iter().zip(&virtio) {
            assert_eq!(node.name, format!("virtio_mmio@{:x}", dev.base));
            assert_eq!(cells(*node, "interrupts"), [0, dev.irq, 1]);
            assert_eq!(u64_prop(*node, "reg"), dev.base);
            assert!(node.property("dma-coherent").is_some());
        }
    }

    #[test]
    fn test_no_initrd_no_devices_and_the_errors() {
        let mut d = description(&[0], &[], "");
        d.initrd = None;
        let blob = build(&d, 2 << 20).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert!(chosen.property("linux,initrd-start").is_none());
        assert_eq!(fdt.chosen().bootargs(), Some(""));
        assert!(fdt.find_compatible(&["virtio,mmio"]).is_none());
        // Too little room, and a command line vm-fdt cannot store, are errors, not panics.
        let err = build(&d, 64).unwrap_err();
        assert!(matches!(err, FdtError::TooBig { max: 64, .. }), "{err:?}");
        assert!(err.to_string().ends_with("more than the 64 the boot protocol allows"), "{err}");
        let err = build(&description(&[0], &[], "a\0b"), 2 << 20).unwrap_err();
        assert_eq!(err.to_string(), "Strings cannot contain NUL");
    }
}
