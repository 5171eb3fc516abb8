//! Shared helpers of the integration tests: the unik binary, KVM gating, test guests, network
//! namespaces.
#![allow(dead_code)]

pub mod guests;
pub mod netns;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Whether /dev/kvm can be opened read-write. When it cannot, KVM tests print a skip line and
/// return — unless `UNIK_REQUIRE_KVM=1` (set by scripts/test.sh on KVM hosts), in which case a
/// missing KVM is a test failure, so a KVM tier can never be skipped silently.
pub fn kvm_available() -> bool {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !ok {
        assert!(
            std::env::var_os("UNIK_REQUIRE_KVM").is_none_or(|v| v != "1"),
            "UNIK_REQUIRE_KVM=1 but /dev/kvm is not usable"
        );
        eprintln!("skipping: no /dev/kvm");
    }
    ok
}

/// Skips the calling test (returns) when KVM is not usable.
#[macro_export]
macro_rules! require_kvm {
    () => {
        if !common::kvm_available() {
            return;
        }
    };
}

/// Records that a test could not run here and why: on stderr, and as a line in
/// `target/test-reports/not-run.txt`, which scripts/test.sh counts as skipped and prints after
/// the summary (cargo hides a passing test's output). The unit tiers use the same function.
pub fn report_not_run(test: &str, reason: &str) {
    vmm::test_report::report_not_run(test, reason);
}

/// The unik binary under test.
pub fn unik_path() -> PathBuf {
    // UNIK_BIN: another build of the same tree to test, e.g. the static release binary
    // (scripts/dist.sh), as CI does.
    std::env::var_os("UNIK_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_unik")), PathBuf::from)
}

/// A `Command` for the unik binary.
pub fn unik() -> Command {
    Command::new(unik_path())
}

/// Runs `unik boot [args]` and returns its output.
pub fn boot(args: &[&str]) -> Output {
    unik().arg("boot").args(args).output().expect("spawn unik")
}

/// Runs `unik pack [args]`, asserts it succeeded, and returns the image ID it printed
/// (`NAME ID FILE` on stdout).
pub fn pack(args: &[&str]) -> String {
    let out = unik().arg("pack").args(args).output().expect("spawn unik");
    assert!(out.status.success(), "unik pack {args:?}: {}", stderr(&out));
    let line = stdout(&out);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() == 3 && words[1].starts_with("sha256:"), "unik pack printed: {line}");
    words[1].to_string()
}

/// stdout as text (lossy).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text (lossy).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code and that stderr contains `needle`, with the whole output on failure.
pub fn assert_fails_with(out: &Output, code: i32, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "status; stdout: {} stderr: {}",
        stdout(out),
        stderr(out)
    );
    assert!(stderr(out).contains(needle), "stderr lacks {needle:?}: {}", stderr(out));
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A file of `size` bytes filled with `byte`.
pub fn disk(dir: &tempfile::TempDir, name: &str, size: usize, byte: u8) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, vec![byte; size]).expect("write disk image");
    path
}

/// The words of line `name` (e.g. `"Uid:"`) of /proc/PID/status.
pub fn status_field(pid: u32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// What /proc says of one thread of a confined process.
#[derive(Debug)]
pub struct ThreadConfinement {
    /// The thread's name.
    pub name: String,
    /// The `Seccomp:` field (2 = filter mode).
    pub seccomp: String,
    /// The `NoNewPrivs:` field.
    pub no_new_privs: String,
    /// `CapInh`, `CapPrm`, `CapEff`, `CapBnd`, `CapAmb`, in that order.
    pub caps: Vec<String>,
}

/// Every thread of process `pid` with its seccomp mode, no_new_privs and capability sets.
pub fn thread_confinement(pid: u32) -> Vec<ThreadConfinement> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read the process's tasks") {
        let task = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        out.push(ThreadConfinement {
            name: field("Name:"),
            seccomp: field("Seccomp:"),
            no_new_privs: field("NoNewPrivs:"),
            caps: ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"].map(field).to_vec(),
        });
    }
    out
}

/// Asserts every thread of `pid` runs under a seccomp filter with no_new_privs and no
/// capability in any set; returns the threads' names.
pub fn assert_confined(pid: u32) -> Vec<String> {
    let threads = thread_confinement(pid);
    assert!(!threads.is_empty(), "no threads of {pid}");
    for t in &threads {
        assert_eq!(t.seccomp, "2", "{t:?}");
        assert_eq!(t.no_new_privs, "1", "{t:?}");
        assert!(t.caps.iter().all(|c| c == "0000000000000000"), "{t:?}");
    }
    threads.into_iter().map(|t| t.name).collect()
}
