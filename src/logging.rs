//! The one log backend: `unik: message` lines on stderr (the guest console owns stdout).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = match record.level() {
            Level::Error => writeln!(err, "unik: {}", record.args()),
            level => writeln!(err, "unik: {}: {}", level.as_str().to_lowercase(), record.args()),
        };
    }

    fn flush(&self) {}
}

/// Installs the logger: warnings and errors, plus debug output with `--debug`.
pub fn init(debug: bool) {
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Warn };
    if log::set_boxed_logger(Box::new(StderrLogger { level })).is_ok() {
        log::set_max_level(level);
    }
}
