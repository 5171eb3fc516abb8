//! The test unikernels in tests/guests, built once per test process for this architecture, or
//! taken prebuilt from the directory `UNIK_TEST_GUESTS` names (where the tests run without cargo,
//! as in the emulated arm64 host of scripts/test-aarch64.sh): DIR/NAME, DIR/pie/hello for
//! [`static_pie_guest`] and DIR/debug/NAME for [`debug_guest`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
const TARGET: &str = "x86_64-unknown-none";
#[cfg(target_arch = "aarch64")]
const TARGET: &str = "aarch64-unknown-none";
/// The guests of the PC only (multiboot, the x86 Linux-boot guest) are behind this feature.
#[cfg(target_arch = "x86_64")]
const FEATURES: &[&str] = &["--features", "pc"];
#[cfg(not(target_arch = "x86_64"))]
const FEATURES: &[&str] = &[];

/// RUSTFLAGS of a static-pie guest: x86_64-unknown-none links position-independent code as a
/// PIE by itself, aarch64-unknown-none as ET_EXEC unless the linker is asked for a PIE.
#[cfg(target_arch = "x86_64")]
const PIE_FLAGS: &str = "-C relocation-model=pie";
#[cfg(target_arch = "aarch64")]
const PIE_FLAGS: &str = "-C relocation-model=pie -C link-arg=-pie";

fn prebuilt() -> Option<PathBuf> {
    std::env::var_os("UNIK_TEST_GUESTS").map(PathBuf::from)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the guests workspace into `target_dir`, with `rustflags` overriding its config when set.
fn build(target_dir: &Path, rustflags: Option<&str>) {
    build_with(target_dir, rustflags, &[]);
}

/// [`build`] with more environment variables (a profile override).
fn build_with(target_dir: &Path, rustflags: Option<&str>, env: &[(&str, &str)]) {
    let dir = repo().join("tests/guests");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Cargo reads tests/guests/.cargo/config.toml (static relocation model) only from this cwd.
    cmd.current_dir(&dir)
        .args(["build", "--release", "--quiet", "--target", TARGET])
        .args(FEATURES)
        .env("CARGO_TARGET_DIR", target_dir);
    // The outer `cargo test` sets these for the host build; they must not leak into the guests'.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WRAPPER"] {
        cmd.env_remove(var);
    }
    if let Some(flags) = rustflags {
        cmd.env("RUSTFLAGS", flags);
    }
    cmd.envs(env.iter().copied());
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
        if let Some(dir) = prebuilt() {
            return dir;
        }
        let target_dir = repo().join("target/guests");
        build(&target_dir, None);
        target_dir.join(TARGET).join("release")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "no test guest {name} at {}", path.display());
    path
}

/// Path of test guest `name` built with full debug information (DWARF: line numbers, types,
/// call frames), for the debugger's tests; the release build has symbols only.
pub fn debug_guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        if let Some(dir) = prebuilt() {
            return dir.join("debug");
        }
        let target_dir = repo().join("target/guests-debug");
        build_with(&target_dir, None, &[("CARGO_PROFILE_RELEASE_DEBUG", "full")]);
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
            if let Some(dir) = prebuilt() {
                return dir.join("pie/hello");
            }
            let target_dir = repo().join("target/guests-pie");
            // An explicit RUSTFLAGS replaces the config's `relocation-model=static`.
            build(&target_dir, Some(PIE_FLAGS));
            target_dir.join(TARGET).join("release/hello")
        })
        .clone()
}

/// The multiboot header's eight words (magic, flags, checksum, the address fields) in `image`:
/// (file offset, words).
pub fn multiboot_header(image: &[u8]) -> (usize, [u32; 8]) {
    let at = (0..8192usize.min(image.len()))
        .step_by(4)
        .find(|&i| image[i..i + 4] == 0x1bad_b002u32.to_le_bytes())
        .expect("a multiboot header");
    let words = std::array::from_fn(|i| u32::from_le_bytes(image[at + i * 4..at + i * 4 + 4].try_into().unwrap()));
    (at, words)
}

/// A copy of the `virtio` guest whose PVH note is hidden (its PT_NOTE turned into PT_NULL) and
/// whose multiboot header's magic is zeroed, so the monitor takes the 64-bit Linux boot
/// protocol: long mode, `boot_params` in RSI.
pub fn without_pvh_note(dir: &Path) -> PathBuf {
    let mut elf = std::fs::read(guest("virtio")).unwrap();
    let phoff = usize::try_from(u64::from_le_bytes(elf[32..40].try_into().unwrap())).unwrap();
    let phnum = usize::from(u16::from_le_bytes([elf[56], elf[57]]));
    let mut hidden = 0;
    for i in 0..phnum {
        let p = phoff + i * 56;
        if elf[p..p + 4] == 4u32.to_le_bytes() {
            elf[p..p + 4].copy_from_slice(&0u32.to_le_bytes());
            hidden += 1;
        }
    }
    assert_eq!(hidden, 1, "the virtio guest has one PT_NOTE");
    let (at, _) = multiboot_header(&elf);
    elf[at..at + 4].fill(0);
    let path = dir.join("virtio64");
    std::fs::write(&path, elf).unwrap();
    path
}

/// The bytes of an arm64 `Image` from a guest ELF linked by tests/guests/linux_arm64.ld: each
/// PT_LOAD's file bytes at its physical address minus the lowest one (BSS is not stored; the
/// Image header's image_size covers it).
pub fn flatten(elf: &[u8]) -> Vec<u8> {
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let phoff = usize::try_from(u64_at(32)).unwrap();
    let phnum = usize::from(u16::from_le_bytes([elf[56], elf[57]]));
    let loads: Vec<(u64, u64, u64)> = (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&p| elf[p..p + 4] == 1u32.to_le_bytes())
        .map(|p| (u64_at(p + 8), u64_at(p + 24), u64_at(p + 32)))
        .collect();
    let base = loads.iter().map(|l| l.1).min().expect("a PT_LOAD");
    let mut image = Vec::new();
    for (offset, paddr, filesz) in loads {
        let (at, from, len) = (
            usize::try_from(paddr - base).unwrap(),
            usize::try_from(offset).unwrap(),
            usize::try_from(filesz).unwrap(),
        );
        if image.len() < at + len {
            image.resize(at + len, 0);
        }
        image[at..at + len].copy_from_slice(&elf[from..from + len]);
    }
    assert_eq!(&image[0x38..0x3c], b"ARM\x64", "not an arm64 Image");
    image
}

/// Test guest `name` (an aarch64 Linux-boot guest) as an arm64 `Image` file in `dir`.
pub fn arm64_image(name: &str, dir: &Path) -> PathBuf {
    let image = flatten(&std::fs::read(guest(name)).unwrap());
    let path = dir.join(format!("{name}.Image"));
    std::fs::write(&path, image).unwrap();
    path
}
