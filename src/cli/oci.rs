//! The runc command-line contract that containerd-shim-runc-v2 and docker drive.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// `--format` of `list` and `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A human-readable table.
    Table,
    /// JSON.
    Json,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Path to the bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to send a terminal's master fd to (for `-t`).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's pid to (the monitor's pid).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility; unikernels have no root filesystem to pivot into.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; there is no session keyring to create.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Number of extra file descriptors (from fd 3) to pass to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container id.
    pub id: String,
}

/// `run`: create and start, in the foreground unless `--detach`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs instead of waiting for it (and removing it).
    #[arg(short, long)]
    pub detach: bool,
}

/// Commands that take only an id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Container id.
    pub id: String,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process of the container (there is one: the monitor).
    #[arg(short, long, hide = true)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is not stopped.
    #[arg(short, long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Container id.
    pub id: String,
    /// ps(1) options (ignored: the container's one process is the monitor).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub ps_args: Vec<String>,
}

/// `spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Directory to write config.json into.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

/// `exec` (refused: a unikernel has one application and no way to start another process).
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Everything runc's exec accepts.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or '-' for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Container id.
    pub id: String,
    /// runc's individual resource flags.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub other: Vec<String>,
}

/// The hidden monitor command: the container's process.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// How many guest files `create` handed over, from fd 4 on (runtime::spawn::FILES_FD).
    #[arg(long, default_value_t = 0)]
    pub files: usize,
    /// The container's state directory.
    pub dir: PathBuf,
}
