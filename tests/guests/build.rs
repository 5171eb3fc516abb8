/// Guests booted like Linux (no solo5 notes) and their linker scripts: linux.ld (PVH note,
/// multiboot header, 64-bit entry) or multiboot.ld (the multiboot header only).
/// On aarch64 the `virtio` guest is an arm64 Image linked by linux_arm64.ld.
const LINUX_GUESTS: &[(&str, &str)] = &[("virtio", "linux.ld"), ("multiboot", "multiboot.ld")];
const LINUX_GUESTS_AARCH64: &[(&str, &str)] = &[("virtio", "linux_arm64.ld")];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    // One linker script per binary: solo5-hvt guests use guest.ld, the others linux.ld.
    for entry in std::fs::read_dir(format!("{dir}/src/bin")).expect("src/bin") {
        let path = entry.expect("src/bin entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let bin = path.file_stem().and_then(|s| s.to_str()).expect("bin name");
        let aarch64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "aarch64");
        let guests = if aarch64 { LINUX_GUESTS_AARCH64 } else { LINUX_GUESTS };
        let linux = guests.iter().find(|(name, _)| *name == bin).map(|(_, script)| *script);
        let script = linux.unwrap_or("guest.ld");
        println!("cargo:rustc-link-arg-bin={bin}=-T{dir}/{script}");
        if linux.is_some() {
            // Their 32-bit PVH entry and note need absolute addresses: always ET_EXEC, even
            // when the workspace is built as static-pie (as a test of hvt's ET_DYN refusal does).
            println!("cargo:rustc-link-arg-bin={bin}=--no-pie");
        }
    }
    // hvt aligns each segment by its p_align (as solo5 does); aarch64's linker defaults to 64 KiB
    // pages, which would fold the 4 KiB-aligned segments onto each other. solo5's aarch64
    // toolchain links with 4 KiB pages too.
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "aarch64") {
        println!("cargo:rustc-link-arg=-zmax-page-size=0x1000");
    }
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=linux.ld");
    println!("cargo:rerun-if-changed=multiboot.ld");
    println!("cargo:rerun-if-changed=linux_arm64.ld");
    println!("cargo:rerun-if-changed=src/virtio_app.rs");
    println!("cargo:rerun-if-changed=src/bin");
}
