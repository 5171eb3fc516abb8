//! Command-line structure (clap derive only; behaviour lives in `commands`).

pub mod boot;
pub mod oci;
pub mod pack;
pub mod solo5;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// unik: run solo5-hvt unikernels on KVM, directly or as an OCI runtime.
#[derive(Debug, Parser)]
#[command(name = "unik", version = concat!(env!("CARGO_PKG_VERSION"), " (solo5-hvt ABI version 2)"), propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `unik: message`.
    Text,
    /// runc's JSON lines: `{"level":..,"msg":..,"time":..}`.
    Json,
}

/// Options accepted before any command (runc's globals).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Directory for container state (default /run/unik, or $XDG_RUNTIME_DIR/unik when not root).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// linux.cgroupsPath uses systemd's slice:prefix:name syntax.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, value_name = "true|false|auto", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a solo5-hvt unikernel in the foreground (a drop-in for solo5-hvt).
    Boot(boot::BootArgs),
    /// Pack a unikernel, its disk images and settings as an image archive for docker load or ctr images import.
    Pack(pack::PackArgs),
    /// Create a container from a bundle: build its VM and wait for `start`.
    Create(oci::CreateArgs),
    /// Let a created container's guest run.
    Start(oci::IdArgs),
    /// Print a container's state as OCI state JSON.
    State(oci::IdArgs),
    /// Send a signal to a container (default SIGTERM: the guest is stopped cleanly).
    Kill(oci::KillArgs),
    /// Remove a stopped container (--force: kill it first).
    Delete(oci::DeleteArgs),
    /// Create and start a container; wait for it unless --detach.
    Run(oci::RunArgs),
    /// List containers.
    List(oci::ListArgs),
    /// List a container's processes.
    Ps(oci::PsArgs),
    /// Pause a running container (its vCPU stops).
    Pause(oci::IdArgs),
    /// Resume a paused container.
    Resume(oci::IdArgs),
    /// Print what this runtime supports, as JSON.
    Features,
    /// Write a unikernel-ready config.json template.
    Spec(oci::SpecArgs),
    /// Not supported for unikernels.
    Exec(oci::ExecArgs),
    /// Update a container's resources.
    Update(oci::UpdateArgs),
    /// Not supported for unikernels (runc's checkpoint, for containers runc runs).
    Checkpoint(oci::ExecArgs),
    /// Not supported for unikernels (runc's restore).
    Restore(oci::ExecArgs),
    /// Not supported for unikernels (runc's events, for containers runc runs).
    Events(oci::ExecArgs),
    /// The container's monitor process (started by `create`).
    #[command(name = "__monitor", hide = true)]
    Monitor(oci::MonitorArgs),
}
