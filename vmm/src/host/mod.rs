//! Host backends behind guest devices: tap interfaces and disk files.

pub mod disk;
pub mod tap;

pub use disk::Disk;
pub use tap::{Tap, TapError};
