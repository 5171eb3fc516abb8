//! The unik monitor: runs solo5-hvt unikernels and Linux-boot-protocol guests (with virtio-mmio
//! devices) on KVM, in-process, under seccomp and without privileges.
//!
//! [`Vm::build`] turns a [`VmConfig`] into a ready-to-run machine (memory, loaded kernel, attached
//! devices, vCPU registers); [`Vm::run`] runs it until the guest halts, faults or a stop signal
//! arrives, and returns the [`ExitStatus`].
#![warn(missing_docs)]

#[cfg(target_arch = "x86_64")]
pub mod acpi;
pub mod calendar;
pub mod config;
pub mod debug;
pub mod devices;
pub mod error;
pub mod exit;
pub mod host;
pub mod hvt;
pub mod hvt_vm;
pub mod linux;
pub mod loader;
pub mod memory;
pub mod privileges;
pub mod seccomp;
pub mod signal;
pub mod slots;
#[doc(hidden)]
pub mod test_report;
pub mod vcpu;
pub mod vm;

pub use config::{BlockConfig, GuestKind, MacAddr, NetBackend, NetConfig, NetRing, VmConfig};
pub use error::Error;
pub use exit::{Action, ExitStatus};
pub use vm::Vm;
