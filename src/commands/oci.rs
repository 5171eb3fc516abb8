//! The runc-contract commands: thin wrappers over `runtime::Runtime`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use runtime::process::parse_signal;
use runtime::{CreateOptions, ReexecSpawner, Runtime, Status};

use crate::cli::GlobalArgs;
use crate::cli::oci::{CreateArgs, DeleteArgs, ExecArgs, Format, IdArgs, KillArgs, ListArgs, PsArgs, RunArgs, SpecArgs, UpdateArgs};

/// The state root: `--root`, else the default for this user (see [`runtime::root`]).
pub fn root(global: &GlobalArgs) -> PathBuf {
    runtime::root::default_root(global.root.as_deref())
}

/// The spawner that re-executes this binary as the monitor, with the same globals.
fn spawner(global: &GlobalArgs) -> anyhow::Result<ReexecSpawner> {
    let exe = std::fs::read_link("/proc/self/exe").context("locating the unik binary")?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if global.debug {
        args.push("--debug".into());
    }
    if let Some(log) = &global.log {
        args.push("--log".into());
        args.push(log.into());
        args.push("--log-format".into());
        args.push(
            if global.log_format == crate::cli::LogFormat::Json {
                "json"
            } else {
                "text"
            }
            .into(),
        );
    }
    args.push("__monitor".into());
    Ok(ReexecSpawner { exe, args })
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `create`; `foreground`: for a `run` that stays attached (a terminal then needs no socket).
pub fn create(global: &GlobalArgs, args: &CreateArgs, foreground: bool) -> anyhow::Result<ExitCode> {
    if args.preserve_fds > 0 {
        log::warn!(
            "--preserve-fds {} ignored: the guest cannot use host file descriptors",
            args.preserve_fds
        );
    }
    let opts = CreateOptions {
        pid_file: args.pid_file.as_deref(),
        console_socket: args.console_socket.as_deref(),
        systemd_cgroup: global.systemd_cgroup,
        foreground,
    };
    match Runtime::new(root(global)).create(&args.id, &args.bundle, &opts, &spawner(global)?) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e @ runtime::ContainerError::NotUnikernel { .. }) => {
            // An ordinary container: runc takes over this very command line, if installed
            // (nothing of it was left under our root). Said at warning level, with the check
            // that failed: a typo in a unikernel's path otherwise surfaces as runc's error.
            let Some(runc) = crate::delegate::find_runc() else {
                bail!("{e}; runc, which would run it as an ordinary container, is not installed");
            };
            log::warn!("{e}; handing it to {}", runc.display());
            crate::delegate::exec_runc(&std::env::args_os().collect::<Vec<_>>(), &root(global))?;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `start`.
pub fn start(global: &GlobalArgs, args: &IdArgs) -> anyhow::Result<ExitCode> {
    Runtime::new(root(global)).start(&args.id)?;
    Ok(ExitCode::SUCCESS)
}

/// `state`.
pub fn state(global: &GlobalArgs, args: &IdArgs) -> anyhow::Result<ExitCode> {
    // runc's field set: no internal bookkeeping (start time, …), pid 0 once stopped.
    print_json(&Runtime::new(root(global)).state_json(&args.id)?)?;
    Ok(ExitCode::SUCCESS)
}

/// `kill`.
pub fn kill(global: &GlobalArgs, args: &KillArgs) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(&args.signal)?;
    let rt = Runtime::new(root(global));
    if args.all {
        rt.kill_all(&args.id, signal)?;
    } else {
        rt.kill(&args.id, signal)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `delete`.
pub fn delete(global: &GlobalArgs, args: &DeleteArgs) -> anyhow::Result<ExitCode> {
    Runtime::new(root(global)).delete(&args.id, args.force)?;
    Ok(ExitCode::SUCCESS)
}

/// `run`.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let rt = Runtime::new(root(global));
    // From here on a signal to `run` is held for the guest, not fatal to `run` (which would
    // leave the container running): it is passed on once the guest runs.
    let forwarded = (!args.detach).then(runtime::process::block_forwarded);
    create(global, &args.create, !args.detach)?;
    let id = &args.create.id;
    if let Err(e) = rt.start(id) {
        let _ = rt.delete(id, true);
        return Err(e.into());
    }
    let Some(set) = forwarded else { return Ok(ExitCode::SUCCESS) };
    let state = rt.state(id)?;
    let (Some(pid), Some(start)) = (state.pid, state.pid_start_time) else {
        anyhow::bail!("container {id} has no monitor process recorded");
    };
    let code = runtime::process::wait_child(pid, start, &set)?;
    rt.delete(id, true)?;
    Ok(ExitCode::from(code))
}

/// `list`.
pub fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let states = Runtime::new(root(global)).list()?;
    if args.quiet {
        states.iter().for_each(|s| println!("{}", s.id));
    } else if args.format == Format::Json {
        // runc's fields, as `state` prints them (pid 0 once stopped).
        let json: Vec<serde_json::Value> = states.iter().map(|s| runtime::oci_state_json(s, s.status)).collect();
        print_json(&json)?;
    } else {
        println!("{:<24}{:<10}{:<10}{:<40}{:<32}OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
        for s in &states {
            let pid = if s.status == Status::Stopped { 0 } else { s.pid.unwrap_or(0) };
            let owner = if s.owner.is_empty() { "root" } else { &s.owner };
            println!(
                "{:<24}{:<10}{:<10}{:<40}{:<32}{owner}",
                s.id,
                pid,
                s.status.as_str(),
                s.bundle.display(),
                s.created
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ps`.
pub fn ps(global: &GlobalArgs, args: &PsArgs) -> anyhow::Result<ExitCode> {
    let pids = Runtime::new(root(global)).ps(&args.id)?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
    } else {
        println!("{:>8} CMD", "PID");
        for pid in pids {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            println!("{pid:>8} {}", cmd.trim());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause`.
pub fn pause(global: &GlobalArgs, args: &IdArgs) -> anyhow::Result<ExitCode> {
    Runtime::new(root(global)).pause(&args.id)?;
    Ok(ExitCode::SUCCESS)
}

/// `resume`.
pub fn resume(global: &GlobalArgs, args: &IdArgs) -> anyhow::Result<ExitCode> {
    Runtime::new(root(global)).resume(&args.id)?;
    Ok(ExitCode::SUCCESS)
}

/// `exec`: refused.
pub fn exec(_args: &ExecArgs) -> anyhow::Result<ExitCode> {
    bail!("exec is not supported for unikernels: a unikernel runs a single application and cannot start another process")
}

/// A runc command unik has no counterpart for: a clear error rather than an unknown command.
pub fn unsupported(command: &str) -> anyhow::Result<ExitCode> {
    bail!("{command} is not supported for unikernels")
}

/// `update`: applies `--resources` and runc's resource flags (a flag wins over the file's
/// field) with the rules of `create`; a field unik refuses is an error naming it.
pub fn update(global: &GlobalArgs, args: &UpdateArgs) -> anyhow::Result<ExitCode> {
    let rt = Runtime::new(root(global));
    rt.state(&args.id)?;
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        bail!("--l3-cache-schema and --mem-bw-schema (Intel RDT) are not supported for unikernels");
    }
    let mut resources = match &args.resources {
        None if !args.has_flags() => {
            bail!(
                "update needs --resources FILE (or - for stdin) with LinuxResources JSON, or resource flags (--cpu-quota, --pids-limit, …)"
            )
        }
        None => oci_spec::runtime::LinuxResources::default(),
        Some(path) => {
            let mut text = String::new();
            if path == Path::new("-") {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            }
            serde_json::from_str(&text).context("--resources is not LinuxResources JSON")?
        }
    };
    args.apply_flags(&mut resources);
    rt.update(&args.id, &resources)?;
    Ok(ExitCode::SUCCESS)
}

/// `features`: what unik supports, in the runtime-spec features format.
pub fn features() -> anyhow::Result<ExitCode> {
    print_json(&serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "poststart", "poststop"],
        "mountOptions": [],
        "linux": {
            "namespaces": ["mount", "pid", "ipc", "uts", "network"],
            "capabilities": [],
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": { "enabled": true, "actions": [], "operators": [], "archs": [] },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false }
        },
        "annotations": {
            "dev.unik.version": env!("CARGO_PKG_VERSION"),
            "dev.unik.hvt.abi": "2",
            "dev.unik.seccomp": "the monitor's own filters, one per thread kind (docs/SECURITY.md), a violation kills it; a bundle's linux.seccomp profile is not applied: the guest makes no Linux system calls",
            "dev.unik.privileges": "no_new_privs, every capability dropped and inherited descriptors closed before the guest runs"
        },
        "potentiallyUnsafeConfigAnnotations": []
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// `spec`: a config.json for a unikernel at /unikernel.hvt in the rootfs, named by
/// `process.args[0]` alone (edit it to boot another kernel, as with runc).
pub fn spec(args: &SpecArgs) -> anyhow::Result<ExitCode> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists: remove it first", path.display());
    }
    let spec = serde_json::json!({
        "ociVersion": runtime::state::OCI_VERSION,
        "process": { "terminal": false, "user": { "uid": 0, "gid": 0 }, "args": ["/unikernel.hvt"], "cwd": "/" },
        "root": { "path": "rootfs", "readonly": true },
        "linux": { "resources": { "memory": { "limit": 64 << 20 } }, "namespaces": [{ "type": "network" }] }
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}
