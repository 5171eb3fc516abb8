//! The static x86_64 release binary (scripts/dist.sh) is linked with scripts/boot-order-x86_64.ld,
//! which puts the functions `unik boot` and a container's monitor run together at the start of the
//! code: a monitor then maps a few hundred KiB of the binary instead of most of its code
//! (scripts/boot-order.sh says why, and regenerates the script). Other targets link as they
//! always did.

fn main() {
    const ORDER: &str = "scripts/boot-order-x86_64.ld";
    println!("cargo:rerun-if-changed={ORDER}");
    let cfg = |key: &str| std::env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    if cfg("ARCH") == "x86_64" && cfg("OS") == "linux" && cfg("ENV") == "musl" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        // The C compiler driver hands `-T script` to the linker; the script INSERTs one output
        // section into the default layout rather than replacing it.
        println!("cargo:rustc-link-arg-bins=-T");
        println!("cargo:rustc-link-arg-bins={dir}/{ORDER}");
    }
}
