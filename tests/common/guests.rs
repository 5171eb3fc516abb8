//! The test unikernels in tests/guests, built once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "x86_64-unknown-none";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the guests workspace into `target_dir`, with `rustflags` overriding its config when set.
fn build(target_dir: &Path, rustflags: Option<&str>) {
    let dir = repo().join("tests/guests");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Cargo reads tests/guests/.cargo/config.toml (static relocation model) only from this cwd.
    cmd.current_dir(&dir)
        .args(["build", "--release", "--quiet", "--target", TARGET])
        .env("CARGO_TARGET_DIR", target_dir);
    // The outer `cargo test` sets these for the host build; they must not leak into the guests'.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WRAPPER"] {
        cmd.env_remove(var);
    }
    if let Some(flags) = rustflags {
        cmd.env("RUSTFLAGS", flags);
    }
    let out = cmd.output().expect("run cargo for the test guests");
    assert!(
        out.status.success(),
        "building the test guests failed (is the {TARGET} target installed? `rustup target add {TARGET}`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Path of test guest `name`, building all guests on first use.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target_dir = repo().join("target/guests");
        build(&target_dir, None);
        target_dir.join(TARGET).join("release")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "no test guest {name} at {}", path.display());
    path
}

/// The `hello` guest linked as the target's default static-pie (ET_DYN), which hvt must refuse.
pub fn static_pie_guest() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target_dir = repo().join("target/guests-pie");
            // An explicit RUSTFLAGS replaces the config's `relocation-model=static`.
            build(&target_dir, Some("-C relocation-model=pie"));
            target_dir.join(TARGET).join("release/hello")
        })
        .clone()
}
