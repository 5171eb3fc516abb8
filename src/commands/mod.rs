//! One module per command family; each returns the process exit code.

pub mod boot;
pub mod monitor;
pub mod oci;
pub mod pack;
