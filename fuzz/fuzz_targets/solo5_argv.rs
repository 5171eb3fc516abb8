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
    // as solo5-hvt), or one half of a split device option; so the output never holds more bytes
    // than the input plus those three words.
    let bytes = |v: &[OsString]| v.iter().map(|a| a.as_bytes().len()).sum::<usize>();
    assert!(bytes(&out) <= bytes(&argv) + "boot--kindhvt".len());
    // The last argument (KERNEL's last argument, or whatever came last) is never rewritten,
    // unless it was a device option before KERNEL.
    if let (Some(a), Some(b)) = (argv.last(), out.last()) {
        let a = a.as_bytes();
        assert!(a == b.as_bytes() || a.ends_with(b.as_bytes()) || argv.len() == 1, "{a:?} -> {b:?}");
    }
});
