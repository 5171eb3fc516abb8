//! Helpers shared by the benchmark binaries.

pub mod child;
pub mod netns;
