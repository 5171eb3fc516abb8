//! Command-line structure (clap derive only; behaviour lives in `commands`).

pub mod boot;
pub mod solo5;

use clap::{Args, Parser, Subcommand};

/// unik: run solo5-hvt unikernels on KVM, directly or as an OCI runtime.
#[derive(Debug, Parser)]
#[command(name = "unik", version = concat!(env!("CARGO_PKG_VERSION"), " (solo5-hvt ABI version 2)"), propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before any command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log debug messages to stderr.
    #[arg(long, global = true)]
    pub debug: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a solo5-hvt unikernel in the foreground (a drop-in for solo5-hvt).
    Boot(boot::BootArgs),
}
