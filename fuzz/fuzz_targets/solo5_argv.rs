//! The solo5-hvt command-line rewrite (`--net:NAME=IFACE` → `--net NAME=IFACE` before KERNEL,
//! `solo5-hvt` as argv[0] → `unik boot`) on arbitrary argument vectors.
//!
//! `normalize_argv` lives in the binary crate (src/cli/solo5.rs), which has no library target;
//! it is a pure function of std types, so this target compiles that very file into itself.
//!
//! Input: the arguments, separated by NUL bytes (argv[0] first); any bytes, not only UTF-8.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use libfuzzer_sys::fuzz_target;

#[path = "../../src/cli/solo5.rs"]
mod solo5;

fuzz_target!(|data: &[u8]| {
    let argv: Vec<OsString> = data.split(|b| *b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    let out = solo5::normalize_argv(argv.clone());
    assert!(out.len() >= argv.len());
    assert_eq!(out.first(), argv.first());
    // Nothing is lost: each output token is an input token, the inserted `boot --kind hvt` (run
    // as solo5-hvt), one half of a split device option, or solo5-hvt's bare `--gdb` spelled as
    // unik's `--gdb=1234`; so the output never holds more bytes than the input plus those words.
    let bytes = |v: &[OsString]| v.iter().map(|a| a.as_bytes().len()).sum::<usize>();
    let bare_gdb = argv.iter().filter(|a| a.as_bytes() == b"--gdb").count();
    assert!(bytes(&out) <= bytes(&argv) + "boot--kindhvt".len() + bare_gdb * "=1234".len());
    // The last argument (KERNEL's last argument, or whatever came last) is never rewritten,
    // unless it was an option before KERNEL.
    if let (Some(a), Some(b)) = (argv.last(), out.last()) {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let gdb = a == b"--gdb" && b == b"--gdb=1234";
        assert!(a == b || a.ends_with(b) || gdb || argv.len() == 1, "{a:?} -> {b:?}");
    }
});
