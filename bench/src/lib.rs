//! Helpers shared by the benchmark binaries.

pub mod child;
pub mod netns;

/// Positional argument `i` parsed as a `T`, or `default` when it is missing or does not parse.
pub fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// A benchmark's exit: success, or its error on stderr after its name and failure.
pub fn exit(name: &str, result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
