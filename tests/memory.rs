//! Guest RAM registered with KVM on first touch (vmm/src/slots.rs): a guest that touches all of
//! its memory in every way sees plain RAM, and one that touches little costs few slots.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use common::guests::guest;
use common::{boot, disk, stderr, stdout, tempdir};

/// The slots the monitor reports having registered when the guest ended (`--debug`).
fn slots_registered(err: &str) -> usize {
    err.lines()
        .find_map(|l| l.split_once("guest RAM slots registered: ").map(|(_, n)| n.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no slot count in: {err}"))
}

/// Every chunk, or (where RAM is registered lazily, x86_64) the image's and the stack's only.
fn up_front(chunks: usize) -> usize {
    if cfg!(target_arch = "x86_64") { 2.min(chunks) } else { chunks }
}

#[test]
fn test_memory_touched_for_the_first_time_behaves_as_ram() {
    require_kvm!();
    let dir = tempdir();
    let img = disk(&dir, "d.img", 64 << 10, 0);
    // On aarch64 all RAM has its slots before the run, and the sweep at 4 GiB would have the
    // host back each 2 MiB the guest touches with a transparent huge page: 4 GiB, more than the
    // emulated arm64 host of scripts/test-aarch64.sh has. The first touch is x86_64's question.
    // (--mem, its chunks: 8 MiB each, 16 MiB at 4 GiB)
    let sizes: &[(u64, usize)] = if cfg!(target_arch = "x86_64") {
        &[(512, 64), (4096, 256)]
    } else {
        &[(512, 64)]
    };
    for &(mib, chunks) in sizes {
        let out = boot(&[
            "--debug",
            &format!("--mem={mib}"),
            &format!("--block:storage={}", img.display()),
            guest("lazy").to_str().unwrap(),
        ]);
        let (o, e) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(0), "--mem={mib}: stdout: {o} stderr: {e}");
        for line in [
            "lazy: read zero",
            "lazy: code 42",
            "lazy: disk code 42",
            "lazy: puts from high memory",
            "lazy: walltime ",
        ] {
            assert!(o.contains(line), "--mem={mib}: no {line:?} in {o}");
        }
        let heap = (mib - 1) - 2; // from past the kernel (1 MiB + its pages) to 1 MiB below the top
        assert!(o.contains(&format!("lazy: heap {heap} MiB ok")), "--mem={mib}: {o}");
        // Every chunk was touched, so every chunk has its slot by the end.
        assert_eq!(slots_registered(&e), chunks, "--mem={mib}: {e}");
    }
}

#[test]
fn test_a_guest_that_touches_little_registers_little() {
    require_kvm!();
    // 8 MiB chunks, 16 MiB ones at 4 GiB (at most 256 slots).
    for (mib, chunks) in [(64, 8), (512, 64), (4096, 256)] {
        let out = boot(&["--debug", &format!("--mem={mib}"), guest("halt").to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        assert_eq!(slots_registered(&stderr(&out)), up_front(chunks), "--mem={mib}: {}", stderr(&out));
    }
}
