//! The hvt `net` guest sending frames into a tap through solo5's net ring (`--net-ring=on`) and
//! through one NET_WRITE hypercall per frame (`--net-ring=off`), side by side in one run, for
//! small (60-byte) and MTU-size (1514-byte) frames.
//!
//! Per round and per (size, path): a run with N frames and one with 0 frames, back to back.
//! Frames/s = N ÷ (exit time with N − exit time with 0), p50 over the rounds; host CPU per frame
//! = (user + system time of the monitor with N − the same with 0) ÷ N, p50; the guest reports the
//! kicks it sent; the tap's RX counter checks every frame arrived.
//!
//! Usage (root, /dev/kvm, from the repository root after `bash bench/run.sh` built everything):
//! `ring-bench [ROUNDS] [FRAMES]` (defaults 5, 20000); the first round is discarded.

use std::process::{Command, Stdio};

use unik_bench::netns::NetNs;
use unik_bench::{arg, child};

type Res<T> = Result<T, String>;

fn p50(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

/// One finished run: stdout, wall time to exit and the child's CPU time (µs).
struct Run {
    out: String,
    wall_us: u64,
    cpu_us: u64,
}

fn run(argv: &[&str]) -> Res<Run> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let f = child::run(&mut cmd)?;
    Ok(Run {
        out: f.out,
        wall_us: f.wall_us,
        cpu_us: f.user_us + f.sys_us,
    })
}

/// Per case: N-frame wall, 0-frame wall, N-frame CPU, 0-frame CPU (µs), kicks, frames received.
#[derive(Default)]
struct Samples(Vec<u64>, Vec<u64>, Vec<u64>, Vec<u64>, u64, u64);

/// `kicks=K` from the guest's last line.
fn kicks(out: &str) -> u64 {
    out.split("kicks=")
        .nth(1)
        .and_then(|s| s.trim_end_matches([')', '\n']).parse().ok())
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    unik_bench::exit("ring-bench", bench())
}

fn bench() -> Res<()> {
    let rounds = arg::<u64>(1, 5).max(1);
    let frames = arg::<u64>(2, 20_000).max(1);
    let unik = std::fs::canonicalize("target/release/unik").map_err(|e| format!("target/release/unik: {e}"))?;
    let net = std::fs::canonicalize("target/guests/x86_64-unknown-none/release/net").map_err(|e| format!("the net guest: {e}"))?;
    let (unik, net) = (unik.display().to_string(), net.display().to_string());
    let ns = NetNs::new(&format!("ukrb{}", std::process::id()))?;
    let tx = format!("net-tx={frames}");
    let cases = [(60, "off"), (60, "on"), (1514, "off"), (1514, "on")];
    let mut samples: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
    for round in 0..=rounds {
        for (i, (size, ring)) in cases.iter().enumerate() {
            let flag = format!("--net-ring={ring}");
            let size_arg = format!("size={size}");
            let argv = |tx: &str| {
                [
                    "ip",
                    "netns",
                    "exec",
                    ns.name(),
                    &unik,
                    "boot",
                    "--mem=32",
                    &flag,
                    "--net:service0=tap0",
                    &net,
                    tx,
                    &size_arg,
                ]
                .map(str::to_string)
            };
            let before = ns.rx_packets()?;
            let with = run(&argv(&tx).iter().map(String::as_str).collect::<Vec<_>>())?;
            let received = ns.rx_packets()? - before;
            let without = run(&argv("net-tx=0").iter().map(String::as_str).collect::<Vec<_>>())?;
            let want_io = if *ring == "on" { "io=ring" } else { "io=hypercalls" };
            if !with.out.contains(&format!("sent {frames} frames ({want_io}")) {
                return Err(format!("guest output: {}", with.out));
            }
            if round > 0 {
                let s = &mut samples[i];
                s.0.push(with.wall_us);
                s.1.push(without.wall_us);
                s.2.push(with.cpu_us);
                s.3.push(without.cpu_us);
                s.4 += kicks(&with.out);
                s.5 += received;
            }
        }
    }
    println!("hvt `net` guest → tap, {frames} frames per run, {rounds} rounds (p50; time and CPU = run with N frames − run with 0):\n");
    println!("| frame | path | frames/s | host CPU per frame | kicks per 1000 frames | received by the host |");
    println!("|---|---|---|---|---|---|");
    let mut fps = [0f64; 4];
    let mut cpu = [0f64; 4];
    for (i, ((size, ring), s)) in cases.iter().zip(&samples).enumerate() {
        let us = p50(&s.0).saturating_sub(p50(&s.1)).max(1);
        fps[i] = frames as f64 / (us as f64 / 1e6);
        let cpus: Vec<u64> = s.2.iter().zip(&s.3).map(|(a, b)| a.saturating_sub(*b)).collect();
        cpu[i] = p50(&cpus) as f64 / frames as f64;
        let path = if *ring == "on" {
            "ring (`--net-ring=on`)"
        } else {
            "NET_WRITE hypercall (`--net-ring=off`)"
        };
        println!(
            "| {size} B | {path} | {:.0} | {:.1} µs | {:.1} | {}/{} |",
            fps[i],
            cpu[i],
            s.4 as f64 * 1000.0 / (frames * rounds) as f64,
            s.5,
            frames * rounds
        );
    }
    for (k, size) in [(0, 60), (2, 1514)] {
        println!(
            "\n{size}-byte frames, ring ÷ hypercall: {:.2}× frames/s, {:.2}× CPU per frame",
            fps[k + 1] / fps[k].max(1e-9),
            cpu[k + 1] / cpu[k].max(1e-9)
        );
    }
    Ok(())
}
