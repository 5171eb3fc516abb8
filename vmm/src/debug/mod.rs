//! Debugging a guest: the gdb remote stub ([`gdb`], `--gdb PORT`) and ELF cores of a guest
//! that aborts ([`coredump`], `--dumpcore DIR`). The per-architecture parts (gdb's register
//! layout, the core's registers, KVM guest debug) are `arch::debug`'s.

pub mod coredump;
pub mod gdb;
