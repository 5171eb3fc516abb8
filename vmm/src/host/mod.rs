//! Host backends behind guest devices: tap interfaces, disk files, the console (its output, and
//! its terminal); and
//! the checked opening of every file the user names.

pub mod console;
pub mod disk;
pub mod files;
pub mod tap;
pub mod terminal;

pub use console::ConsoleOut;
pub use disk::Disk;
pub use tap::{Tap, TapError};
