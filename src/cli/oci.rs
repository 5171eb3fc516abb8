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

/// `update`: runc's flags; with `--resources` too, a flag wins over the file's field.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or '-' for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Block I/O weight (refused: not applied to a unikernel's disk images).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CFS period, µs.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CFS quota, µs per period (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// Realtime period, µs.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime, µs per realtime period.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// SCHED_IDLE for the container's cgroup (1) or not (0).
    #[arg(long)]
    pub cpu_idle: Option<i64>,
    /// CPUs allowed (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed (0-3, 0,1).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Kernel memory limit (refused).
    #[arg(long, value_parser = runtime::cgroups::limits::parse_bytes, allow_hyphen_values = true)]
    pub kernel_memory: Option<i64>,
    /// Kernel TCP memory limit (refused).
    #[arg(long, value_parser = runtime::cgroups::limits::parse_bytes, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<i64>,
    /// Memory limit (64m, 1g; -1: none); never below the guest's memory.
    #[arg(long, value_parser = runtime::cgroups::limits::parse_bytes, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// Memory reservation (soft limit).
    #[arg(long, value_parser = runtime::cgroups::limits::parse_bytes, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap (-1: unlimited swap); needs --memory.
    #[arg(long, value_parser = runtime::cgroups::limits::parse_bytes, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Maximum number of tasks (-1: none); never below the monitor's threads.
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (refused).
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (refused).
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    pub id: String,
}

impl UpdateArgs {
    /// Whether any resource flag is given.
    pub fn has_flags(&self) -> bool {
        let mut probe = oci_spec::runtime::LinuxResources::default();
        self.apply_flags(&mut probe);
        probe != oci_spec::runtime::LinuxResources::default()
    }

    /// Sets each field a flag names in `res` (runc's mapping of its flags).
    pub fn apply_flags(&self, res: &mut oci_spec::runtime::LinuxResources) {
        use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids};
        if let Some(w) = self.blkio_weight {
            res.block_io_mut().get_or_insert_with(LinuxBlockIo::default).set_weight(Some(w));
        }
        let cpu_flags = [
            self.cpu_period.is_some(),
            self.cpu_quota.is_some(),
            self.cpu_share.is_some(),
            self.cpu_rt_period.is_some(),
            self.cpu_rt_runtime.is_some(),
            self.cpu_idle.is_some(),
            self.cpuset_cpus.is_some(),
            self.cpuset_mems.is_some(),
        ];
        if cpu_flags.contains(&true) {
            let cpu = res.cpu_mut().get_or_insert_with(LinuxCpu::default);
            if let Some(v) = self.cpu_period {
                cpu.set_period(Some(v));
            }
            if let Some(v) = self.cpu_quota {
                cpu.set_quota(Some(v));
            }
            if let Some(v) = self.cpu_share {
                cpu.set_shares(Some(v));
            }
            if let Some(v) = self.cpu_rt_period {
                cpu.set_realtime_period(Some(v));
            }
            if let Some(v) = self.cpu_rt_runtime {
                cpu.set_realtime_runtime(Some(v));
            }
            if let Some(v) = self.cpu_idle {
                cpu.set_idle(Some(v));
            }
            if let Some(v) = &self.cpuset_cpus {
                cpu.set_cpus(Some(v.clone()));
            }
            if let Some(v) = &self.cpuset_mems {
                cpu.set_mems(Some(v.clone()));
            }
        }
        let memory_flags = [
            self.kernel_memory,
            self.kernel_memory_tcp,
            self.memory,
            self.memory_reservation,
            self.memory_swap,
        ];
        if memory_flags.iter().any(Option::is_some) {
            let mem = res.memory_mut().get_or_insert_with(LinuxMemory::default);
            if let Some(v) = self.kernel_memory {
                mem.set_kernel(Some(v));
            }
            if let Some(v) = self.kernel_memory_tcp {
                mem.set_kernel_tcp(Some(v));
            }
            if let Some(v) = self.memory {
                mem.set_limit(Some(v));
            }
            if let Some(v) = self.memory_reservation {
                mem.set_reservation(Some(v));
            }
            if let Some(v) = self.memory_swap {
                mem.set_swap(Some(v));
            }
        }
        if let Some(v) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(v);
            res.set_pids(Some(pids));
        }
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Update {
        #[command(flatten)]
        args: UpdateArgs,
    }

    #[test]
    fn test_update_flags_map_to_resources() {
        let parse = |argv: &[&str]| Update::try_parse_from([&["update"], argv].concat()).map(|u| u.args);
        let args = parse(&[
            "--cpu-quota",
            "25000",
            "--cpu-period",
            "100000",
            "--pids-limit",
            "40",
            "--memory",
            "96m",
            "--memory-swap",
            "-1",
            "--cpuset-cpus",
            "0",
            "c1",
        ])
        .unwrap();
        assert_eq!(args.id, "c1");
        assert!(args.has_flags());
        // A flag wins over the file's field; the file's other fields stay.
        let mut res: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({ "cpu": { "quota": 1, "shares": 512 }, "pids": { "limit": 9 } })).unwrap();
        args.apply_flags(&mut res);
        assert_eq!(
            serde_json::to_value(&res).unwrap(),
            serde_json::json!({
                "cpu": { "quota": 25000, "period": 100000, "shares": 512, "cpus": "0" },
                "memory": { "limit": 96 << 20, "swap": -1 },
                "pids": { "limit": 40 }
            })
        );
        assert!(!parse(&["c1"]).unwrap().has_flags());
        let err = parse(&["--memory", "lots", "c1"]).unwrap_err().to_string();
        assert!(err.contains("'lots' is not a size"), "{err}");
    }
}
