//! Host backends behind guest devices: tap interfaces, disk files and the console terminal; and
//! the checked opening of every file the user names.

pub mod disk;
pub mod files;
pub mod tap;
pub mod terminal;

pub use disk::Disk;
pub use tap::{Tap, TapError};
