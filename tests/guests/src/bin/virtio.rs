//! A guest booted like Linux (PVH note or the 64-bit boot protocol, no solo5 notes) that drives
//! the virtio-mmio devices named by `virtio_mmio.device=` on its command line and reports on the
//! 16550 serial port:
//! - block (first device): capacity, read, GET_ID, write + readback, flush, out-of-range read and
//!   a malformed request; `blk-count` also prints how many block devices there are;
//!   `blk-bench=seq:MIB` (read MIB MiB sequentially in 64 KiB requests) or
//!   `blk-bench=rand:COUNT` (COUNT random 4 KiB reads over the whole disk) replace that test with
//!   a timed run that prints `virtio-blk: bench <mode> bytes=<n> tsc=<cycles>`;
//! - net (first device, with `ip=A.B.C.D` or `net-tx=N`): answers ARP and `pings=N` ICMP echo
//!   requests (default 3; gives up after `timeout=S` seconds, default 30), or sends N broadcast
//!   frames as fast as it can with `net-tx=N`; then, one after the other, the second to fourth
//!   devices given `ip2=`..`ip4=` (each is reset when done, and the next reuses its memory).
//!
//! - `irq`: the block test sleeps in `hlt` until the device's interrupt (I/O APIC, local APIC)
//!   instead of polling, and reports how many arrived; `timer` checks the local APIC timer;
//! - an initrd (PVH module or boot_params ramdisk) is reported with its size and FNV-1a hash;
//! - `echo=N` reads N bytes from the serial port (within `timeout=S`) and prints them; with
//!   `irq` it sleeps until the UART's receive interrupt and reports how many came.
//!
//! - `attack=NAME` (with a block device; `times=N` repeats it, `at=ADDR` and `size=N` are its
//!   parameters) replaces the block test with a malformed chain or ring, then checks the device
//!   still serves a valid read after a reset: see [`attack`]; `port-widths` makes 2- and 4-byte
//!   accesses to the legacy ports and unmapped ones; `serial-flood=KIB` writes KIB KiB to the
//!   serial port; `net-attack=NAME` does the same to the first net device's transmit queue:
//!   see [`net_attack`].
//!
//! - `rtc`: waits for the CMOS clock's update-in-progress bit to rise and fall, then prints the
//!   date and time it reads (`rtc: YYYY-MM-DD hh:mm:ss uip=1 b=0x02`, in status B's format) and
//!   the CMOS extended-memory size (`rtc: ext_kib=N`).
//!
//! `spin` then loops forever and `halt` halts with interrupts off (for stop signals); `reset`
//! pulses the i8042 reset line;
//! `poweroff` powers off through the ACPI sleep control register.
//! Ends with `virtio: done` and exit status `exit=N` (default 0); 1 = a device failed to set up,
//! 2 = net or serial timeout, 3 = panic, 4 = a request did not complete, 5 = an unexpected
//! interrupt, 6 = the timer did not fire.
//!
//! The same program is the `multiboot` guest (src/bin/multiboot.rs); this binary also carries
//! the multiboot header, but its PVH note wins, so it always boots at the PVH entry.
#![no_std]
#![no_main]

unik_test_guests::linux_entry!(main);

include!("../virtio_app.rs");
