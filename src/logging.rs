//! The one log backend: `unik: message` lines, or runc-style JSON lines, on stderr (the guest
//! console owns stdout) or in the `--log` file — where containerd's shim reads the last error.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::cli::LogFormat;

struct Logger {
    level: LevelFilter,
    format: LogFormat,
    file: Option<Mutex<File>>,
}

/// One log line in `format`, without the newline.
pub fn format_line(format: LogFormat, level: Level, msg: &str) -> String {
    match format {
        LogFormat::Text if level == Level::Error => format!("unik: {msg}"),
        LogFormat::Text => format!("unik: {}: {msg}", level.as_str().to_lowercase()),
        LogFormat::Json => {
            let time = runtime::state::rfc3339(std::time::SystemTime::now());
            serde_json::json!({ "level": level.as_str().to_lowercase(), "msg": msg, "time": time }).to_string()
        }
    }
}

/// The level a record is written at. virtio-queue reports a driver's mistakes (a bad ring
/// address, an avail index out of range) as errors, once per attempt: the guest controls how
/// often, so they count as debug output, as unik's own messages about guests do after the first.
fn effective_level(metadata: &Metadata<'_>) -> Level {
    if metadata.target().starts_with("virtio_queue") {
        metadata.level().max(Level::Debug)
    } else {
        metadata.level()
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        effective_level(metadata) <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = effective_level(record.metadata());
        // Each line goes out in one write: `create` and its monitor append to the same file,
        // and O_APPEND keeps whole writes, not the pieces of a formatted one, from interleaving.
        let line = format_line(self.format, level, &record.args().to_string()) + "\n";
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
                // Errors also reach the caller's stderr, as with runc.
                if level == Level::Error {
                    let text = format_line(LogFormat::Text, Level::Error, &record.args().to_string()) + "\n";
                    let _ = std::io::stderr().write_all(text.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: warnings and errors, plus debug output with `--debug`. A `--log` file
/// that cannot be opened is an error (runc's too), not a silent loss of the shim's error line.
pub fn init(debug: bool, format: LogFormat, file: Option<&Path>) -> std::io::Result<()> {
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Warn };
    let file = match file {
        Some(p) => {
            Some(Mutex::new(OpenOptions::new().create(true).append(true).open(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("opening log file {}: {e}", p.display()))
            })?))
        }
        None => None,
    };
    let fd = file
        .as_ref()
        .map(|f| std::os::fd::AsRawFd::as_raw_fd(&*f.lock().unwrap_or_else(std::sync::PoisonError::into_inner)));
    if log::set_boxed_logger(Box::new(Logger { level, format, file })).is_ok() {
        // The logger keeps the file open for the life of the process: a seccomp violation is
        // reported there too.
        if let Some(fd) = fd {
            vmm::seccomp::report_also_to(fd);
        }
        log::set_max_level(level);
    }
    Ok(())
}

/// Writes an error that came before the logger could be set up (the command line itself was
/// wrong) to the `--log` file named in `argv`, if any, in its `--log-format`: the shim reads its
/// last error line from there, not from stderr.
///
/// Only the options up to the command's first operand are looked at (never a guest's
/// arguments).
pub fn log_early_error(argv: &[std::ffi::OsString], msg: &str) {
    let (mut file, mut format) = (None, LogFormat::Text);
    let mut args = argv.iter().skip(1).filter_map(|a| a.to_str());
    let mut operands = 0;
    while let Some(a) = args.next() {
        if a == "--" {
            break;
        }
        if !a.starts_with('-') {
            // The command, then its first operand (an id, a kernel).
            operands += 1;
            if operands == 2 {
                break;
            }
            continue;
        }
        let (name, inline) = a.split_once('=').map_or((a, None), |(n, v)| (n, Some(v)));
        let value = match name {
            "--log" | "--log-format" | "--root" => inline.or_else(|| args.next()),
            _ => continue,
        };
        match (name, value) {
            ("--log", Some(v)) => file = Some(v),
            ("--log-format", Some("json")) => format = LogFormat::Json,
            _ => {}
        }
    }
    if let Some(path) = file {
        let line = format_line(format, Level::Error, msg) + "\n";
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// The error and its causes joined with ": ", skipping a cause whose text the message before it
/// already contains (library errors often embed their source in their own message).
pub fn error_chain(e: &anyhow::Error) -> String {
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
    fn test_early_errors_reach_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        let argv: Vec<std::ffi::OsString> = ["unik", "--log", log.to_str().unwrap(), "--log-format=json", "create", "--bogus"]
            .iter()
            .map(Into::into)
            .collect();
        log_early_error(&argv, "unexpected argument '--bogus' found");
        let v: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "unexpected argument '--bogus' found");
        // A guest's arguments are not options of unik's.
        let guest_log = dir.path().join("guest.log");
        let argv: Vec<std::ffi::OsString> = ["unik", "boot", "--bogus", "k.hvt", "--log", guest_log.to_str().unwrap()]
            .iter()
            .map(Into::into)
            .collect();
        log_early_error(&argv, "x");
        assert!(!guest_log.exists());
    }

    #[test]
    fn test_virtio_queue_errors_are_debug_output() {
        let meta = |target| Metadata::builder().level(Level::Error).target(target).build();
        assert_eq!(effective_level(&meta("virtio_queue::queue")), Level::Debug);
        assert_eq!(effective_level(&meta("vmm::devices::virtio::block")), Level::Error);
        let trace = Metadata::builder().level(Level::Trace).target("virtio_queue").build();
        assert_eq!(effective_level(&trace), Level::Trace);
    }

    #[test]
    fn test_json_lines_look_like_runc() {
        let line = format_line(LogFormat::Json, Level::Error, "container \"x\" does not exist");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(format_line(LogFormat::Text, Level::Warn, "w"), "unik: warn: w");
        assert_eq!(format_line(LogFormat::Text, Level::Error, "e"), "unik: e");
    }

    #[test]
    fn test_error_chain_skips_repeated_causes() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(io)
            .context("Could not open x: No such file or directory (os error 2)")
            .context("booting");
        assert_eq!(error_chain(&e), "booting: Could not open x: No such file or directory (os error 2)");
    }
}
