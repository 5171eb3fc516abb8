//! The `virtio` test guest (src/bin/virtio.rs, the same program) as a multiboot (version 1)
//! kernel: linked by multiboot.ld with no PVH note and `multiboot_start32` as its ELF entry, so
//! the monitor finds only the multiboot header (flags: page-aligned modules, memory map, and the
//! address fields, which load the image from this 64-bit ELF file). The entry checks EAX
//! (`0x2BADB002`, else exit status 9), takes the command line, memory map, boot loader name and
//! first module from the information structure in EBX, and goes on like the PVH entry; it
//! reports `virtio: boot=multiboot` and `virtio: mem_lower=L mem_upper=U loader=NAME`.
//!
//! The tests derive a 32-bit ELF from it (`objcopy -O elf32-i386`, then the header's flag 16
//! cleared) to boot it by its program headers.
#![no_std]
#![no_main]

unik_test_guests::linux_entry!(main);

include!("../virtio_app.rs");
