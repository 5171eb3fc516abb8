//! The OCI runtime side of unik: container ids, the state directory, bundles, and the lifecycle
//! rules of the OCI runtime specification. Nothing here opens `/dev/kvm`: the VM is built by the
//! monitor process that a [`Spawner`] starts, so all of this is testable without KVM.
#![warn(missing_docs)]

pub mod annotations;
pub mod args;
pub mod bundle;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod crashpoint;
pub mod error;
pub mod gate;
pub mod hooks;
pub mod id;
pub mod jail;
pub mod monitor;
pub mod network;
pub mod pack;
pub mod process;
pub mod root;
pub mod rootfs;
pub mod spawn;
pub mod state;

pub use container::{CreateOptions, Runtime};
pub use error::ContainerError;
pub use spawn::{ReexecSpawner, Spawner};
pub use state::{State, StateDir, Status, oci_state_json};
