//! `unik`: an OCI runtime with an embedded KVM monitor for solo5-hvt unikernels.

mod cli;
mod commands;
mod delegate;
mod launch;
mod logging;

use std::process::ExitCode;

use cli::{Cli, Command};
use commands::oci;

fn main() -> ExitCode {
    let argv = cli::solo5::normalize_argv(std::env::args_os().collect());
    let cli = match Cli::parse_args(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2);
            // solo5-hvt exits 1 on a bad option, and so do we.
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            logging::log_early_error(&argv, first.strip_prefix("error: ").unwrap_or(first));
            return ExitCode::FAILURE;
        }
    };
    let global = &cli.global;
    // Before anything is opened: what is open now was inherited. The guest needs none of it but
    // the taps passed as @FD (and the OCI monitor its sync socket and the guest's files).
    if let Some(keep) = inherited_fds_to_keep(&cli.command) {
        if let Err(e) = vmm::privileges::close_inherited_fds(&keep) {
            eprintln!("unik: closing inherited file descriptors: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = logging::init(global.debug, global.log_format, global.log.as_deref()) {
        eprintln!("unik: {e}");
        return ExitCode::FAILURE;
    }
    log::debug!("systemd-cgroup={} rootless={:?}", global.systemd_cgroup, global.rootless);
    if let Err(e) = delegate::exec_runc_if_its_container(&cli, &argv, &oci::root(global)) {
        log::error!("{}", logging::error_chain(&e));
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Boot(args) => commands::boot::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Pack(args) => commands::pack::run(args),
        Command::Create(args) => oci::create(global, &args, false),
        Command::Start(args) => oci::start(global, &args),
        Command::State(args) => oci::state(global, &args),
        Command::Kill(args) => oci::kill(global, &args),
        Command::Delete(args) => oci::delete(global, &args),
        Command::Run(args) => oci::run(global, &args),
        Command::List(args) => oci::list(global, &args),
        Command::Ps(args) => oci::ps(global, &args),
        Command::Pause(args) => oci::pause(global, &args),
        Command::Resume(args) => oci::resume(global, &args),
        Command::Features => oci::features(),
        Command::Spec(args) => oci::spec(&args),
        Command::Exec(args) => oci::exec(&args),
        Command::Update(args) => oci::update(global, &args),
        Command::Checkpoint(_) => oci::unsupported("checkpoint"),
        Command::Restore(_) => oci::unsupported("restore"),
        Command::Events(_) => oci::unsupported("events"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error!("{}", logging::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The inherited descriptors a command that runs a guest keeps besides stdio; `None` for the
/// commands that run none.
fn inherited_fds_to_keep(command: &Command) -> Option<Vec<std::os::fd::RawFd>> {
    match command {
        Command::Boot(args) => Some(
            args.nets
                .iter()
                .filter_map(|(_, backend)| match backend {
                    vmm::NetBackend::Fd(fd) => Some(*fd),
                    vmm::NetBackend::Tap(_) => None,
                })
                .collect(),
        ),
        Command::Monitor(args) => {
            let files = runtime::spawn::FILES_FD..runtime::spawn::FILES_FD.saturating_add(i32::try_from(args.files).unwrap_or(0));
            Some(std::iter::once(runtime::spawn::SYNC_FD).chain(files).collect())
        }
        _ => None,
    }
}
