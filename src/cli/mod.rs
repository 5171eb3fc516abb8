//! Command-line structure (clap derive only; behaviour lives in `commands`).

pub mod boot;
pub mod oci;
pub mod pack;
pub mod solo5;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};

/// unik: run solo5-hvt unikernels on KVM, directly or as an OCI runtime.
#[derive(Debug, Parser)]
#[command(name = "unik", version = concat!(env!("CARGO_PKG_VERSION"), " (solo5-hvt ABI version 2)"), propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses `argv`. A command line naming `boot` or the monitor (`__monitor`) is first parsed
    /// against a tree of the global options and that one command: building clap's whole tree of
    /// twenty commands was the largest part of a unikernel's start-up work. That tree accepts a
    /// subset of what the whole one does, with the same meaning, so what it parses stands; on any
    /// error (help and version included) the whole tree parses again and speaks.
    pub fn parse_args(argv: &[OsString]) -> Result<Cli, clap::Error> {
        if let Some(cli) = Self::parse_one_command(argv) {
            return Ok(cli);
        }
        Cli::try_parse_from(argv)
    }

    /// The parse against the global options and the one command `argv` names (`boot` or
    /// `__monitor`), if it names one and the parse succeeds.
    fn parse_one_command(argv: &[OsString]) -> Option<Cli> {
        let only = |name: &'static str, args: fn(clap::Command) -> clap::Command| {
            GlobalArgs::augment_args(clap::Command::new("unik"))
                .subcommand(args(clap::Command::new(name)))
                .subcommand_required(true)
        };
        let tree = argv.iter().skip(1).find_map(|a| match a.to_str() {
            Some("boot") => Some(only("boot", boot::BootArgs::augment_args)),
            Some("__monitor") => Some(only("__monitor", oci::MonitorArgs::augment_args)),
            _ => None,
        });
        let matches = tree?.try_get_matches_from(argv).ok()?;
        Cli::from_arg_matches(&matches).ok()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn test_the_one_command_tree_parses_as_the_whole_one_does() {
        for line in [
            "unik boot k",
            "unik boot --mem=64 --net service=tap0 k a -- b",
            "unik --debug boot --timeout=5s k exit=3",
            "unik --root /r --log /l --log-format json __monitor --files=2 /state",
            "unik --log boot boot boot",
        ] {
            let one = Cli::parse_one_command(&argv(line)).unwrap_or_else(|| panic!("{line}: not parsed by the one-command tree"));
            let whole = Cli::try_parse_from(argv(line)).unwrap();
            assert_eq!(format!("{one:?}"), format!("{whole:?}"), "{line}");
        }
    }

    #[test]
    fn test_what_the_one_command_tree_cannot_parse_goes_to_the_whole_one() {
        // Help, version, unknown options and other commands: the whole tree answers.
        for line in [
            "unik boot --help",
            "unik --version boot k",
            "unik boot --bogus k",
            "unik state boot",
            "unik boot",
        ] {
            assert!(Cli::parse_one_command(&argv(line)).is_none(), "{line}");
        }
        assert!(matches!(
            Cli::parse_args(&argv("unik state boot")).unwrap().command,
            Command::State(_)
        ));
    }
}
