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
            log::error!("{}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined with ": ", skipping a cause whose text the message before it
/// already contains (library errors often embed their source in their own message).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_error_chain_skips_repeated_causes() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(io)
            .context("Could not open x: No such file or directory (os error 2)")
            .context("booting");
        assert_eq!(error_chain(&e), "booting: Could not open x: No such file or directory (os error 2)");
    }
}
