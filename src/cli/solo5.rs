//! solo5-hvt's option spelling, mapped onto clap's.
//!
//! solo5-hvt takes device options as single tokens `--net:NAME=IFACE`; clap wants `--net
//! NAME=IFACE`. Before KERNEL (the first non-option) each such token is split in two, so existing
//! solo5-hvt command lines work unchanged. Invoked through a link named `solo5-hvt`, unik behaves
//! as `unik boot --kind hvt` (solo5-hvt boots nothing but solo5-hvt executables).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const DEVICE_OPTIONS: [&str; 5] = ["--net-mac:", "--net:", "--block-sector-size:", "--block-ro:", "--block:"];

/// Options (of `boot`, and unik's globals) whose value may come as the next token: skipped as
/// values, not taken for KERNEL, so both spellings can be mixed.
const WITH_VALUE: [&str; 14] = [
    "--mem",
    "--net",
    "--net-mac",
    "--block",
    "--block-ro",
    "--block-sector-size",
    "--initrd",
    "--cpus",
    "--kind",
    "--root",
    "--log",
    "--log-format",
    "--gdb-port",
    "--dumpcore",
];

/// solo5-hvt's `--gdb` takes no value (port 1234, or `--gdb-port`'s); unik's takes the port.
const SOLO5_GDB_PORT: &str = "--gdb=1234";

/// Rewrites solo5-hvt spellings in `argv` (including `argv[0]`) into clap's.
pub fn normalize_argv(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len() + 4);
    let mut args = argv.into_iter().peekable();
    let Some(argv0) = args.next() else { return out };
    let as_solo5 = Path::new(&argv0).file_name().is_some_and(|n| n == "solo5-hvt");
    out.push(argv0);
    let mut in_boot = as_solo5;
    if as_solo5 {
        // solo5-hvt boots solo5-hvt executables and nothing else: no Linux-boot fallback.
        out.extend(["boot".into(), "--kind".into(), "hvt".into()]);
    }
    while let Some(arg) = args.next() {
        if !in_boot {
            in_boot = arg == "boot";
            out.push(arg);
            continue;
        }
        // Bytes, not str: a device's path or interface may be any bytes.
        let bytes = arg.as_bytes();
        if bytes == b"--" || !bytes.starts_with(b"-") {
            out.push(arg);
            break;
        }
        if bytes == b"--gdb" {
            // unik's `--gdb PORT`, or solo5-hvt's bare flag (the next token is handled as usual).
            if args.peek().and_then(|p| p.to_str()).is_some_and(|p| p.parse::<u16>().is_ok()) {
                out.push(arg);
                out.extend(args.next());
            } else {
                out.push(SOLO5_GDB_PORT.into());
            }
            continue;
        }
        if WITH_VALUE.iter().any(|opt| bytes == opt.as_bytes()) {
            out.push(arg);
            out.extend(args.next());
            continue;
        }
        match DEVICE_OPTIONS
            .iter()
            .find_map(|opt| bytes.strip_prefix(opt.as_bytes()).map(|rest| (opt, rest)))
        {
            Some((opt, rest)) => {
                out.push(opt.trim_end_matches(':').into());
                out.push(OsStr::from_bytes(rest).to_os_string());
            }
            None => out.push(arg),
        }
    }
    out.extend(args);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_argv(args.iter().map(Into::into).collect())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn test_rewrites_device_options_before_kernel_only() {
        assert_eq!(
            norm(&[
                "unik",
                "--debug",
                "boot",
                "--mem=64",
                "--net:a=tap0",
                "--net-mac:a=02:00:00:00:00:01",
                "k",
                "--net:x=y"
            ]),
            [
                "unik",
                "--debug",
                "boot",
                "--mem=64",
                "--net",
                "a=tap0",
                "--net-mac",
                "a=02:00:00:00:00:01",
                "k",
                "--net:x=y"
            ]
        );
        assert_eq!(
            norm(&["unik", "boot", "--block:d=/f", "--block-sector-size:d=4096", "--", "--block:k"]),
            [
                "unik",
                "boot",
                "--block",
                "d=/f",
                "--block-sector-size",
                "d=4096",
                "--",
                "--block:k"
            ]
        );
    }

    #[test]
    fn test_both_spellings_mix() {
        // A value given as the next token is not KERNEL: the device options after it still count.
        assert_eq!(
            norm(&[
                "unik",
                "boot",
                "--mem",
                "64",
                "--net:service0=tap0",
                "--block",
                "d=/f",
                "--block-sector-size:d=4096",
                "k"
            ]),
            [
                "unik",
                "boot",
                "--mem",
                "64",
                "--net",
                "service0=tap0",
                "--block",
                "d=/f",
                "--block-sector-size",
                "d=4096",
                "k"
            ]
        );
        // Bytes that are not UTF-8 stay as they are, split like any other.
        let raw = OsStr::from_bytes(b"--net:a=\xff").to_os_string();
        let out = normalize_argv(vec!["unik".into(), "boot".into(), raw, "k".into()]);
        assert_eq!(out[2], "--net");
        assert_eq!(out[3].as_bytes(), b"a=\xff");
        assert_eq!(out[4], "k");
    }

    #[test]
    fn test_solo5_hvt_name_means_boot() {
        assert_eq!(
            norm(&["/usr/bin/solo5-hvt", "--block:d=/f", "k"]),
            ["/usr/bin/solo5-hvt", "boot", "--kind", "hvt", "--block", "d=/f", "k"]
        );
    }

    #[test]
    fn test_leaves_other_commands_alone() {
        assert_eq!(norm(&["unik", "state", "--net:a=b"]), ["unik", "state", "--net:a=b"]);
        assert_eq!(norm(&["unik"]), ["unik"]);
    }
}
