//! `unik`: an OCI runtime with an embedded KVM monitor for solo5-hvt unikernels.

mod cli;
mod commands;
mod launch;
mod logging;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let argv = cli::solo5::normalize_argv(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2);
            // solo5-hvt exits 1 on a bad option, and so do we.
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    logging::init(cli.global.debug);
    let result = match cli.command {
        Command::Boot(args) => commands::boot::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
