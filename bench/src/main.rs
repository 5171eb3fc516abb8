//! Boot-to-exit latency, CPU time and memory of `unik boot`, measured side by side with a KVM floor.
//!
//! Usage: `unik-bench [RUNS]` from the repository root after `bash bench/run.sh` has built
//! everything (it also runs this). Each round runs the floor and unik back to back, so machine
//! noise hits both alike; the report is ratios and percentiles, in Markdown.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use unik_bench::child::{self, Finished};

/// Runs `program` to its end, stdout to /dev/null, and returns wall time, CPU time, peak RSS
/// and stderr of that child; an error if it failed.
fn measure(program: &Path, args: &[&str]) -> Result<Finished, String> {
    let mut cmd = Command::new(program);
    // A child made by vfork (posix_spawn, std's default) runs on the bench's own memory until it
    // execs, and the kernel keeps that memory's peak as the child's ru_maxrss: every figure would
    // read at least the bench's RSS (2 MiB). A pre_exec hook makes std fork instead, whose copy
    // holds only the bench's anonymous pages, well below what is measured.
    // SAFETY: the hook does nothing, so it is async-signal-safe.
    unsafe { cmd.pre_exec(|| Ok(())) };
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    child::run(&mut cmd)
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    let idx = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted[idx]
}

fn summary(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    (percentile(samples, 50), percentile(samples, 90))
}

/// `guest memory resident: N KiB` from unik's --debug output.
fn guest_resident_kib(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.split("guest memory resident: ").nth(1)?.split_whitespace().next()?.parse().ok())
}

/// How long the `hello` guest's POLL of `ms` milliseconds really slept, by the guest's TSC
/// (`slept_ns` in its output), in µs past the timeout: the timer's oversleep, which the tests
/// do not bound (a loaded machine may oversleep any amount; that is a measure, not a fault).
fn poll_oversleep_us(unik: &Path, hello: &str, ms: u64) -> Result<u64, String> {
    let out = Command::new(unik)
        .args(["boot", "--mem=8", hello, &format!("sleep={ms}")])
        .output()
        .map_err(|e| format!("spawn {}: {e}", unik.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let slept: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("slept_ns: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no slept_ns in: {text}"))?;
    Ok(slept.saturating_sub(ms * 1_000_000) / 1000)
}

fn main() -> std::process::ExitCode {
    unik_bench::exit("unik-bench", bench())
}

fn bench() -> Result<(), String> {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // UNIK_BIN: another build to measure, e.g. the static release binary (scripts/dist.sh).
    let unik = std::env::var_os("UNIK_BIN").map_or_else(|| root.join("target/release/unik"), PathBuf::from);
    let floor = root.join("target/release/kvm-floor");
    let guests = root.join("target/guests/x86_64-unknown-none/release");
    let halt = guests.join("halt");
    let halt = halt.to_str().ok_or("non-UTF-8 path")?;
    let hello = guests.join("hello");
    let hello = hello.to_str().ok_or("non-UTF-8 path")?;

    let configs = [("512", "--mem=512"), ("4096", "--mem=4096")];
    let mut floor_t: Vec<Vec<u64>> = vec![Vec::new(); 2];
    let mut unik_t: Vec<Vec<u64>> = vec![Vec::new(); 2];
    // CPU time per config: user, system and their sum, of the floor and of unik.
    let mut floor_cpu: Vec<[Vec<u64>; 3]> = vec![Default::default(); 2];
    let mut unik_cpu: Vec<[Vec<u64>; 3]> = vec![Default::default(); 2];
    // Peak RSS of the timed runs themselves (no --debug): median and max.
    let mut plain_rss: Vec<Vec<u64>> = vec![Vec::new(); 2];
    for round in 0..=runs {
        for (i, (mib, mem)) in configs.iter().enumerate() {
            let f = measure(&floor, &[mib])?;
            let u = measure(&unik, &["boot", mem, halt])?;
            if round > 0 {
                // round 0 warms the page cache and first-use paths
                floor_t[i].push(f.wall_us);
                unik_t[i].push(u.wall_us);
                plain_rss[i].push(u.maxrss_kib);
                for (cpu, s) in [(&mut floor_cpu[i], &f), (&mut unik_cpu[i], &u)] {
                    cpu[0].push(s.user_us);
                    cpu[1].push(s.sys_us);
                    cpu[2].push(s.user_us + s.sys_us);
                }
            }
        }
    }
    // Memory: peak RSS of separate runs with --debug, which makes unik report how much guest
    // memory is resident at exit (so the monitor's own share can be told apart).
    let mut floor_rss = [0u64; 2];
    let mut unik_rss = [0u64; 2];
    let mut overhead = [0u64; 2];
    let mut guest_kib = [0u64; 2];
    for _ in 0..5 {
        for (i, (mib, mem)) in configs.iter().enumerate() {
            let f = measure(&floor, &[mib])?;
            let u = measure(&unik, &["--debug", "boot", mem, halt])?;
            let g = guest_resident_kib(&u.err).ok_or_else(|| format!("no guest residency in: {}", u.err))?;
            floor_rss[i] = floor_rss[i].max(f.maxrss_kib);
            unik_rss[i] = unik_rss[i].max(u.maxrss_kib);
            guest_kib[i] = guest_kib[i].max(g);
            overhead[i] = overhead[i].max(u.maxrss_kib.saturating_sub(g));
        }
    }

    println!("Boot-to-exit of the `halt` guest ({runs} rounds, floor and unik interleaved), wall time in µs:\n");
    println!("| --mem | floor p50 | floor p90 | unik p50 | unik p90 | unik/floor (p50) | unik − floor (p50) |");
    println!("|---|---|---|---|---|---|---|");
    for (i, (mib, _)) in configs.iter().enumerate() {
        let (fp50, fp90) = summary(&mut floor_t[i]);
        let (up50, up90) = summary(&mut unik_t[i]);
        let ratio = up50 as f64 / fp50.max(1) as f64;
        println!(
            "| {mib} MiB | {fp50} | {fp90} | {up50} | {up90} | {ratio:.2}× | {} |",
            up50.saturating_sub(fp50)
        );
    }
    println!(
        "\nCPU time of the same runs in µs, p50 (ru_utime, ru_stime from wait4; guest time counts as user time). \
         user+system is exact (the scheduler's run time); the split is sampled: with tick-based accounting the kernel \
         charges each timer tick (1/CONFIG_HZ, 4 ms at 250 Hz) to the mode it lands in and scales those samples to the exact total, \
         so a run no tick lands in is all user time and one whose ticks all land in one mode is all that mode.\n"
    );
    println!("| --mem | floor user | floor system | floor user+system | unik user | unik system | unik user+system |");
    println!("|---|---|---|---|---|---|---|");
    for (i, (mib, _)) in configs.iter().enumerate() {
        let [fu, fs, ft] = floor_cpu[i].each_mut().map(|v| summary(v).0);
        let [uu, us, ut] = unik_cpu[i].each_mut().map(|v| summary(v).0);
        println!("| {mib} MiB | {fu} | {fs} | {ft} | {uu} | {us} | {ut} |");
    }
    println!(
        "\nPeak RSS in KiB (ru_maxrss): of the timed runs (`boot`, as a user runs it; median and max), and of 5 runs with \
         --debug (max; the logging code maps more of the binary), whose guest pages resident at exit give the monitor's \
         own share (overhead = --debug peak − guest resident):\n"
    );
    println!("| --mem | floor | unik (median / max) | unik --debug | guest resident | unik monitor overhead (--debug) |");
    println!("|---|---|---|---|---|---|");
    for (i, (mib, _)) in configs.iter().enumerate() {
        let (median, _) = summary(&mut plain_rss[i]);
        let max = plain_rss[i].last().copied().unwrap_or(0);
        println!(
            "| {mib} MiB | {} | {median} / {max} | {} | {} | {} |",
            floor_rss[i], unik_rss[i], guest_kib[i], overhead[i]
        );
    }
    let polls = runs.clamp(1, 20);
    let mut over = Vec::with_capacity(polls);
    for _ in 0..polls {
        over.push(poll_oversleep_us(&unik, hello, 100)?);
    }
    let (op50, op90) = summary(&mut over);
    println!("\nPOLL of 100 ms in the `hello` guest ({polls} runs), oversleep by the guest's TSC in µs: p50 {op50}, p90 {op90}");
    Ok(())
}
