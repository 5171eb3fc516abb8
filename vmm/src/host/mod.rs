//! Host backends behind guest devices: tap interfaces, disk files and the console terminal.

pub mod disk;
pub mod tap;
pub mod terminal;

pub use disk::Disk;
pub use tap::{Tap, TapError};
