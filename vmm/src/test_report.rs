//! For the unit tests of this workspace's crates: recording a test that could not run here.
//!
//! cargo counts a test that returns early as passed. A unit test that finds a prerequisite
//! missing (no `/dev/net/tun`, no CAP_NET_ADMIN, no network namespaces) calls
//! [`report_not_run`] before it returns: the line lands in `target/test-reports/not-run.txt`
//! (the file the integration tests' `common::report_not_run` writes), which `scripts/test.sh`
//! counts as skipped and prints with its reason.

use std::io::Write;
use std::path::PathBuf;

/// The report file: `target/test-reports/not-run.txt` at the workspace's root.
pub fn not_run_file() -> PathBuf {
    // This crate sits one level below the workspace root.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    root.join("target/test-reports/not-run.txt")
}

/// Records that `test` could not run here and why: on stderr and as a `not run:` line in
/// [`not_run_file`].
pub fn report_not_run(test: &str, reason: &str) {
    eprintln!("not run: {test}: {reason}");
    let file = not_run_file();
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
        let _ = writeln!(f, "not run: {test}: {reason}");
    }
}
