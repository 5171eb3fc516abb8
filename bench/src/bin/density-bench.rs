//! Density through the OCI path: N idle unikernel containers, each in its own network namespace
//! with its own interface, created and started with `unik create` / `unik start` by a pool of
//! parallel clients (as an engine would), then measured idle, then stopped and deleted.
//!
//! Reports: time until every `start` returned and until every guest printed its ready line; the
//! memory each instance costs (its monitor's Pss from `smaps_rollup`, plus the kernel's slab,
//! page-table, secondary-page-table and kernel-stack growth over the run, divided by N; the fall
//! of MemAvailable beside it as a cross-check); the CPU all idle monitors use together
//! (`/proc/PID/task/*/schedstat`, exact run time, over IDLE seconds); the time to stop (SIGTERM)
//! and to delete them all. Then it checks that nothing leaked: no monitor process, no container
//! state, no tap or tc splice left in any namespace, no mount added.
//!
//! Set-up (not timed): a hub namespace with a bridge (10.200.0.1/16), and per container a
//! namespace `ukdI` whose `eth0` (10.200.I/250.I%250+2/16, default route via the hub) is a veth
//! to the bridge — what docker's bridge network gives a container. The guest is the hvt `net` test
//! guest (answers ARP and ping, idles in one POLL); a sample of containers is pinged from the hub
//! once all are up. Everything it made is removed on every exit path.
//!
//! Usage: density-bench [N=1000] [PARALLEL=16] [IDLE_SECONDS=10]; `UNIK_BIN` picks the binary
//! (default target/release/unik). Needs root, /dev/kvm, iproute2.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use unik_bench::arg;

const HUB: &str = "ukdhub";

fn ns(i: usize) -> String {
    format!("ukd{i}")
}

fn addr(i: usize) -> String {
    format!("10.200.{}.{}", i / 250, i % 250 + 2)
}

/// Runs a command to completion; its stderr in the error.
fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(out.stdout)
}

/// `ip OPTIONS -batch -` with `lines` on its stdin (OPTIONS: `-n NS`, `-force`, ...).
fn ip_batch(options: &[&str], lines: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(options)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("ip: no stdin")?
        .write_all(lines.as_bytes())
        .map_err(|e| format!("ip -batch: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {options:?} -batch: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// In network namespace `name`: IPv6 off for every interface made there from now on. Run on a
/// thread of its own, which it moves into the namespace.
fn no_ipv6(name: &str) -> Result<(), String> {
    unik_bench::netns::enter(name)?;
    // /proc/sys/net is the calling thread's namespace's.
    for conf in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
        std::fs::write(&path, "1").map_err(|e| format!("{name}: {path}: {e}"))?;
    }
    Ok(())
}

/// The namespaces of the run; all removed when dropped.
struct Network {
    n: usize,
}

impl Network {
    fn new(n: usize) -> Result<Network, String> {
        Network::remove(n);
        let net = Network { n };
        let mut host = format!("netns add {HUB}\n");
        for i in 0..n {
            host += &format!("netns add {}\n", ns(i));
        }
        ip_batch(&[], &host)?;
        // No IPv6 on the run's interfaces (docker's default for a network without it): their
        // router solicitations and MLD reports would flood the bridge, waking every guest for
        // each, and the idle figure would measure that traffic.
        std::thread::scope(|s| {
            s.spawn(|| (0..n).map(ns).chain([HUB.to_string()]).try_for_each(|name| no_ipv6(&name)))
                .join()
                .unwrap_or_else(|_| Err("the sysctl thread panicked".into()))
        })?;
        let mut hub = "link add br0 type bridge\naddr add 10.200.0.1/16 dev br0\nlink set br0 up\n".to_string();
        for i in 0..n {
            hub += &format!(
                "link add vh{i} type veth peer name eth0 netns {}\nlink set vh{i} master br0\nlink set vh{i} up\n",
                ns(i)
            );
        }
        ip_batch(&["-n", HUB], &hub)?;
        // Eight `ip` processes at a time.
        parallel(n, 8, |i| {
            ip_batch(
                &["-n", &ns(i)],
                &format!(
                    "addr add {}/16 dev eth0\nlink set eth0 up\nroute add default via 10.200.0.1\n",
                    addr(i)
                ),
            )
        })?;
        Ok(net)
    }

    fn remove(n: usize) {
        let mut lines = String::new();
        for name in (0..n).map(ns).chain([HUB.to_string()]) {
            if Path::new("/run/netns").join(&name).exists() {
                lines += &format!("netns del {name}\n");
            }
        }
        if !lines.is_empty() {
            // -force: go on past a namespace that is already gone.
            let _ = ip_batch(&["-force"], &lines);
        }
    }

    /// Taps (`uk*`) and ingress qdiscs (the tc splice) left in any container namespace.
    fn leftovers(&self) -> Result<Vec<String>, String> {
        let mut left = Vec::new();
        let links = String::from_utf8_lossy(&run(Command::new("ip").args(["-all", "netns", "exec", "ip", "-o", "link"]))?).into_owned();
        let qdiscs = String::from_utf8_lossy(&run(Command::new("ip").args(["-all", "netns", "exec", "tc", "qdisc", "show"]))?).into_owned();
        let mut current = String::new();
        for line in links.lines().chain(qdiscs.lines()) {
            if let Some(name) = line.strip_prefix("netns: ") {
                current = name.trim().to_string();
            } else if current.starts_with("ukd") && current != HUB && (line.contains(": uk") || line.contains("qdisc ingress")) {
                left.push(format!("{current}: {}", line.trim()));
            }
        }
        Ok(left)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        Network::remove(self.n);
    }
}

/// Runs `f(0..n)` on `workers` threads; the first error wins.
fn parallel(n: usize, workers: usize, f: impl Fn(usize) -> Result<(), String> + Sync) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = f(i) {
                        error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        next.store(n, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `/proc/meminfo`, in KiB.
fn meminfo() -> Result<BTreeMap<String, i64>, String> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect())
}

/// The kernel's memory that grows with processes, VMs, taps and filters, in KiB.
/// Kernel stacks are vmalloc'ed (`CONFIG_VMAP_STACK`): VmallocUsed is counted without them.
const KERNEL_FIELDS: [&str; 6] = [
    "SReclaimable",
    "SUnreclaim",
    "PageTables",
    "SecPageTables",
    "KernelStack",
    "VmallocUsed",
];

/// Growth of each of [`KERNEL_FIELDS`] from `before` to `after`, VmallocUsed less the kernel
/// stacks it also holds.
fn kernel_growth(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> BTreeMap<&'static str, i64> {
    let grew = |f: &str| after.get(f).unwrap_or(&0) - before.get(f).unwrap_or(&0);
    KERNEL_FIELDS
        .iter()
        .map(|&f| {
            (
                f,
                if f == "VmallocUsed" {
                    grew(f) - grew("KernelStack")
                } else {
                    grew(f)
                },
            )
        })
        .collect()
}

/// Bytes in each slab cache (`/proc/slabinfo`: active objects × object size).
fn slabs() -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (objs, size) = (f.get(1)?.parse::<i64>().ok()?, f.get(3)?.parse::<i64>().ok()?);
            Some((f[0].to_string(), objs * size))
        })
        .collect()
}

/// A field of `/proc/PID/smaps_rollup`, in KiB.
fn rollup(text: &str, field: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds on a CPU of every thread of `pid`.
fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

struct Unik {
    bin: PathBuf,
    root: PathBuf,
}

impl Unik {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// id → (pid, status)
    fn list(&self) -> Result<BTreeMap<String, (i32, String)>, String> {
        let out = run(&mut self.cmd(&["list", "--format", "json"]))?;
        let states: Vec<serde_json::Value> = serde_json::from_slice(&out).map_err(|e| format!("unik list: {e}"))?;
        Ok(states
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("").to_string(),
                    (
                        s["pid"].as_i64().and_then(|p| i32::try_from(p).ok()).unwrap_or(0),
                        s["status"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect())
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done()? {
        if Instant::now() > deadline {
            return Err(format!("timed out after {} s waiting for {what}", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn bench(n: usize, workers: usize, idle: u64) -> Result<(), String> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("UNIK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/release/unik"));
    let bin = bin.canonicalize().map_err(|e| format!("{}: {e}", bin.display()))?;
    let guest = repo.join("target/guests/x86_64-unknown-none/release/net");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let unik = Unik {
        bin,
        root: dir.join("root"),
    };

    // Bundles: one rootfs each (the guest hard-linked), the container's namespace by path.
    let config = |i: usize| {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "terminal": false, "user": { "uid": 0, "gid": 0 }, "cwd": "/",
                "args": ["/net.hvt", "count=1000000", "timeout=3600"], "env": [] },
            "root": { "path": "rootfs" },
            "annotations": { "dev.unik.net.template": "ip={ip}" },
            "linux": { "namespaces": [
                { "type": "network", "path": format!("/run/netns/{}", ns(i)) },
                { "type": "mount" }, { "type": "pid" }, { "type": "ipc" }, { "type": "uts" } ] }
        })
    };
    let bundle = |i: usize| dir.join(format!("b{i}"));
    for i in 0..n {
        let b = bundle(i);
        std::fs::create_dir_all(b.join("rootfs")).map_err(|e| e.to_string())?;
        std::fs::hard_link(&guest, b.join("rootfs/net.hvt"))
            .or_else(|_| std::fs::copy(&guest, b.join("rootfs/net.hvt")).map(|_| ()))
            .map_err(|e| format!("{}: {e}", guest.display()))?;
        std::fs::write(b.join("config.json"), config(i).to_string()).map_err(|e| e.to_string())?;
        // The monitor's stdout, the bench's file: made here so that its inode is not counted
        // as the container's kernel memory.
        File::create(dir.join(format!("d{i}.log"))).map_err(|e| e.to_string())?;
    }
    floor(n, &repo.join("target/release/kvm-floor"))?;
    let t = Instant::now();
    let net = Network::new(n)?;
    println!("set-up: {n} namespaces with a veth each on one bridge in {}", ms(t.elapsed()));
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| e.to_string())?
        .lines()
        .count();
    let mem_before = meminfo()?;
    let slabs_before = slabs();

    // Up: create + start per container, PARALLEL clients at a time.
    let start = Instant::now();
    let up = parallel(n, workers, |i| {
        let id = format!("d{i}");
        let log = File::options()
            .append(true)
            .open(dir.join(format!("{id}.log")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut create = unik.cmd(&["create", "--bundle"]);
        create.arg(bundle(i)).arg(&id);
        let status = create
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap_or_default();
            return Err(format!("unik create {id}: {status}: {}", log.trim()));
        }
        run(&mut unik.cmd(&["start", &id])).map(|_| ())
    });
    let started = start.elapsed();
    let result = up.and_then(|()| measure(n, workers, idle, dir, &unik, (start, started), (&mem_before, &slabs_before)));

    // Down: SIGTERM to every container, wait until all stopped, delete them, however the run went.
    let ids: Vec<String> = unik.list().map(|l| l.into_keys().collect()).unwrap_or_default();
    let pids: Vec<i32> = unik
        .list()
        .map(|l| l.values().map(|v| v.0).filter(|p| *p > 0).collect())
        .unwrap_or_default();
    let stop = Instant::now();
    let killed = parallel(ids.len(), workers, |i| {
        // A container whose guest already ended has nothing to signal.
        let _ = run(&mut unik.cmd(&["kill", &ids[i], "TERM"]));
        Ok(())
    });
    let stopped = wait_for("every container to stop", Duration::from_secs(120), || {
        Ok(unik.list()?.values().all(|(_, s)| s == "stopped"))
    });
    let all_stopped = stop.elapsed();
    let deleted = parallel(ids.len(), workers, |i| {
        run(&mut unik.cmd(&["delete", "--force", &ids[i]])).map(|_| ())
    });
    let all_deleted = stop.elapsed();
    result?;
    killed.and(stopped).and(deleted)?;
    println!("| stop (SIGTERM) until all stopped | {} |", ms(all_stopped));
    println!("| stop + delete, all | {} |", ms(all_deleted));

    // Leaks.
    let mut leaks = Vec::new();
    let alive: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z ")))
        .collect();
    if !alive.is_empty() {
        leaks.push(format!("{} monitor processes still alive (e.g. pid {})", alive.len(), alive[0]));
    }
    let states = std::fs::read_dir(&unik.root).map(|d| d.count()).unwrap_or(0);
    if states != 0 {
        leaks.push(format!("{states} entries left in the state root {}", unik.root.display()));
    }
    leaks.extend(net.leftovers()?);
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| e.to_string())?
        .lines()
        .count();
    if mounts_after != mounts_before {
        leaks.push(format!("mounts: {mounts_before} before, {mounts_after} after"));
    }
    if !leaks.is_empty() {
        return Err(format!("left behind:\n  {}", leaks.join("\n  ")));
    }
    println!("\nNothing left behind: no monitor process, no state, no tap or tc splice in {n} namespaces, no mount.");
    Ok(())
}

/// After every `start` returned (`started` after `start`): readiness, a ping sample, memory, idle
/// CPU.
fn measure(
    n: usize,
    workers: usize,
    idle: u64,
    dir: &Path,
    unik: &Unik,
    (start, started): (Instant, Duration),
    (mem_before, slabs_before): (&BTreeMap<String, i64>, &BTreeMap<String, i64>),
) -> Result<(), String> {
    wait_for("every guest's ready line", Duration::from_secs(300), || {
        Ok((0..n).all(|i| std::fs::read_to_string(dir.join(format!("d{i}.log"))).is_ok_and(|l| l.contains(" ready"))))
    })?;
    let ready = start.elapsed();
    let list = unik.list()?;
    let running: Vec<i32> = list.values().filter(|(_, s)| s == "running").map(|(p, _)| *p).collect();
    if running.len() != n {
        return Err(format!("{} of {n} containers running", running.len()));
    }
    // A sample of the guests answer pings from the hub, through their own interface.
    let sample: Vec<usize> = (0..10).map(|k| k * n / 10).collect();
    for &i in &sample {
        run(Command::new("ip").args(["netns", "exec", HUB, "ping", "-c", "1", "-W", "5", &addr(i)]))
            .map_err(|e| format!("container d{i} did not answer a ping: {e}"))?;
    }
    // Let start-up work settle, then memory.
    std::thread::sleep(Duration::from_secs(2));
    let mem_after = meminfo()?;
    let mut slab_growth: Vec<(i64, String)> = slabs()
        .into_iter()
        .map(|(k, v)| (v - slabs_before.get(&k).unwrap_or(&0), k))
        .collect();
    slab_growth.sort_unstable_by(|a, b| b.cmp(a));
    let (mut pss, mut private, mut rss) = (0i64, 0i64, 0i64);
    let mut peaks = Vec::with_capacity(running.len());
    for p in &running {
        let text = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).map_err(|e| format!("monitor {p}: {e}"))?;
        pss += rollup(&text, "Pss");
        private += rollup(&text, "Private_Clean") + rollup(&text, "Private_Dirty");
        rss += rollup(&text, "Rss");
        // The monitor's own peak since its exec (VmHWM; not ru_maxrss, which also holds the
        // pre-exec memory of the `unik create` that forked it).
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).map_err(|e| format!("monitor {p}: {e}"))?;
        peaks.push(rollup(&status, "VmHWM"));
    }
    peaks.sort_unstable();
    let kernel = kernel_growth(mem_before, &mem_after);
    let kernel_sum: i64 = kernel.values().sum();
    let avail = mem_before.get("MemAvailable").unwrap_or(&0) - mem_after.get("MemAvailable").unwrap_or(&0);
    // Idle CPU of all monitors together.
    let cpu0: u64 = running.iter().map(|p| cpu_ns(*p)).sum();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle));
    let cpu1: u64 = running.iter().map(|p| cpu_ns(*p)).sum();
    let span = t0.elapsed().as_secs_f64();
    let cpu_share = (cpu1.saturating_sub(cpu0)) as f64 / 1e9 / span;

    let per = |kib: i64| kib as f64 / n as f64;
    println!("\n{n} idle unikernel containers (hvt `net` guest, each with its own namespace, interface, tap and tc splice):\n");
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| every `unik create` + `unik start` returned ({workers} clients in parallel) | {} |",
        ms(started)
    );
    println!("| every guest printed its ready line (all running) | {} |", ms(ready));
    println!("| per instance: monitor Pss | {:.0} KiB |", per(pss));
    println!("| per instance: monitor private (clean + dirty) | {:.0} KiB |", per(private));
    println!(
        "| per instance: monitor Rss (shared binary pages counted in each) | {:.0} KiB |",
        per(rss)
    );
    println!(
        "| one monitor's peak RSS (VmHWM), median / max over the {n} | {} / {} KiB |",
        peaks[peaks.len() / 2],
        peaks[peaks.len() - 1]
    );
    for (f, kib) in &kernel {
        let note = if *f == "VmallocUsed" { " (less kernel stacks)" } else { "" };
        println!("| per instance: kernel {f}{note} | {:.0} KiB |", per(*kib));
    }
    println!(
        "| **per instance: Pss + kernel** | **{:.0} KiB ({:.2} MiB)** |",
        per(pss + kernel_sum),
        per(pss + kernel_sum) / 1024.0
    );
    let top: Vec<String> = slab_growth
        .iter()
        .take(8)
        .map(|(bytes, name)| format!("{name} {:.1}", *bytes as f64 / 1024.0 / n as f64))
        .collect();
    println!("| per instance: largest slab caches' growth, KiB | {} |", top.join(", "));
    println!(
        "| per instance: fall of MemAvailable (whole machine, cross-check) | {:.0} KiB |",
        per(avail)
    );
    println!(
        "| idle CPU, all {n} monitors together, over {span:.0} s | {:.2} % of one core ({:.1} µs/s per instance) |",
        cpu_share * 100.0,
        cpu_share * 1e6 / n as f64
    );
    Ok(())
}

/// The same memory figures for N idle KVM floors (bench/src/bin/kvm-floor.rs `16 hold`: a VM, a
/// vCPU, a 16 MiB slot — unik's two 8 MiB chunks — one exit, then waiting): what any monitor's VM
/// costs on this host before the monitor itself, its tap or its namespaces.
fn floor(n: usize, floor_bin: &Path) -> Result<(), String> {
    let before = meminfo()?;
    let mut children = Vec::with_capacity(n);
    let result = (|| {
        for _ in 0..n {
            let mut child = Command::new(floor_bin)
                .args(["16", "hold"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("{}: {e}", floor_bin.display()))?;
            let mut ready = [0u8; 6];
            let read = child.stdout.as_mut().map(|o| std::io::Read::read_exact(o, &mut ready));
            children.push(child);
            if !matches!(read, Some(Ok(()))) || &ready != b"ready\n" {
                return Err("a KVM floor did not get its VM running".to_string());
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        let after = meminfo()?;
        let mut pss = 0;
        for c in &children {
            let text = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", c.id())).map_err(|e| e.to_string())?;
            pss += rollup(&text, "Pss");
        }
        let kernel: i64 = kernel_growth(&before, &after).values().sum();
        let per = |kib: i64| kib as f64 / n as f64;
        println!(
            "For comparison, {n} idle KVM floors (VM, vCPU, 16 MiB slot; no monitor): Pss + kernel per instance {:.0} KiB (Pss {:.0}, kernel {:.0}).\n",
            per(pss + kernel),
            per(pss),
            per(kernel)
        );
        Ok(())
    })();
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    result
}

fn main() -> std::process::ExitCode {
    unik_bench::exit("density-bench", bench(arg(1, 1000), arg(2, 16), arg(3, 10)))
}
