//! Linux-boot guests and virtio, measured side by side in one run:
//! - boot-to-first-serial-output and boot-to-exit of the `virtio` test guest with no devices
//!   (beside the same two times of the `hello` hvt guest);
//! - virtio-blk: the guest reading a host file sequentially in 64 KiB requests and at random in
//!   4 KiB requests, beside the host doing the same preads (same sizes, same offsets, one at a
//!   time) on the same file, page cache warm for both;
//! - virtio-net guest→host throughput beside the hvt `net` guest's NET_WRITE, both sending
//!   1514-byte frames into the same tap, counted by the tap's RX counter, against the tap's own
//!   limit: the bench itself writing the same frames to the same tap, one write(2) per frame.
//!
//! Usage (root, /dev/kvm, from the repository root after `bash bench/run.sh` built everything):
//! `virtio-bench [RUNS] [ROUNDS] [FRAMES] [DISK_MIB] [RAND_COUNT]` (defaults 30, 5, 20000, 256,
//! 4096). RUNS are boot runs, ROUNDS the rounds of the throughput benchmarks; the first of each is
//! discarded (page cache, first use).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvm_ioctls::Kvm;
use unik_bench::arg;
use unik_bench::netns::NetNs;

type Res<T> = Result<T, String>;

/// Boot-to-exit requests of the sequential benchmark and of the host's preads.
const SEQ_REQ: usize = 64 * 1024;
/// Size of the random reads.
const RAND_REQ: usize = 4096;
/// Size of the frames of the net benchmark (an Ethernet frame of MTU 1500, without FCS).
const FRAME: usize = 1514;
/// Seed of the xorshift64 generator; the same as the guest's, so both read the same pages.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// p50 and p90 (index len·p/100 of the sorted samples).
fn p50_p90(v: &[u64]) -> (u64, u64) {
    let mut s = v.to_vec();
    s.sort_unstable();
    let at = |p: usize| s[(s.len() * p / 100).min(s.len().saturating_sub(1))];
    if s.is_empty() { (0, 0) } else { (at(50), at(90)) }
}

/// One finished run of unik: its stdout, when the first byte of it arrived and when it exited.
struct Run {
    out: String,
    first: Option<Duration>,
    exit: Duration,
}

/// Runs `argv` with stdout as a pipe, timing from just before spawn.
fn run(argv: &[&str]) -> Res<Run> {
    let start = Instant::now();
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", argv[0]))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut out = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = stdout.read(&mut buf).map_err(|e| format!("read stdout: {e}"))?;
        if n == 0 {
            break;
        }
        first = first.or_else(|| Some(start.elapsed()));
        out.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let exit = start.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    if !status.success() {
        return Err(format!("{argv:?}: {status}\nstdout: {out}\nstderr: {err}"));
    }
    Ok(Run { out, first, exit })
}

/// `key=<u64>` from the guest's `virtio-blk: bench` line.
fn field(out: &str, key: &str) -> Res<u64> {
    out.lines()
        .find(|l| l.starts_with("virtio-blk: bench "))
        .and_then(|l| l.split(' ').find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.parse().ok()))
        .ok_or_else(|| format!("no {key}= in guest output: {out}"))
}

/// The TSC rate KVM gives a vCPU (KVM_GET_TSC_KHZ, what unik itself reads for hvt boot info).
fn kvm_tsc_hz() -> Res<u64> {
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let vcpu = vm.create_vcpu(0).map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let khz = vcpu.get_tsc_khz().map_err(|e| format!("KVM_GET_TSC_KHZ: {e}"))?;
    Ok(u64::from(khz) * 1000)
}

/// The host TSC against CLOCK_MONOTONIC over 200 ms, as a cross-check of KVM's figure.
fn host_tsc_hz() -> u64 {
    // SAFETY: rdtsc has no side effects; x86_64 always has it.
    let t0 = unsafe { core::arch::x86_64::_rdtsc() };
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    let t1 = unsafe { core::arch::x86_64::_rdtsc() };
    let ns = start.elapsed().as_nanos().max(1);
    u64::try_from(u128::from(t1.wrapping_sub(t0)) * 1_000_000_000 / ns).unwrap_or(0)
}

/// A copy of the ELF at `src` with its PT_NOTE program headers turned into PT_NULL and its
/// multiboot header's magic zeroed: without the PVH note and the multiboot header, unik boots
/// the guest through the 64-bit Linux boot protocol instead.
fn hide_notes(src: &Path, dst: &Path) -> Res<()> {
    let mut elf = std::fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let u16_at = |e: &[u8], o: usize| usize::from(u16::from_le_bytes([e[o], e[o + 1]]));
    if elf.len() < 64 || elf[..4] != *b"\x7fELF" || elf[4] != 2 {
        return Err(format!("{}: not an ELF64 file", src.display()));
    }
    let phoff = usize::try_from(u64::from_le_bytes(elf[32..40].try_into().map_err(|_| "short ELF header")?)).map_err(|e| e.to_string())?;
    let (phentsize, phnum) = (u16_at(&elf, 54), u16_at(&elf, 56));
    let mut hidden = 0;
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if elf.get(p..p + 4) == Some(&4u32.to_le_bytes()[..]) {
            elf[p..p + 4].copy_from_slice(&0u32.to_le_bytes());
            hidden += 1;
        }
    }
    if hidden == 0 {
        return Err(format!("{}: no PT_NOTE", src.display()));
    }
    let magic = 0x1bad_b002u32.to_le_bytes();
    if let Some(at) = (0..elf.len().min(8192).saturating_sub(3))
        .step_by(4)
        .find(|&i| elf[i..i + 4] == magic)
    {
        elf[at..at + 4].fill(0);
    }
    std::fs::write(dst, elf).map_err(|e| format!("{}: {e}", dst.display()))
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The host's side of the block benchmark: the guest's reads, as preads of the same file.
fn host_seq(f: &File, bytes: u64) -> Res<Duration> {
    let mut buf = vec![0u8; SEQ_REQ];
    let start = Instant::now();
    let mut off = 0;
    while off < bytes {
        f.read_exact_at(&mut buf, off).map_err(|e| format!("pread: {e}"))?;
        off += SEQ_REQ as u64;
    }
    Ok(start.elapsed())
}

fn host_rand(f: &File, disk: u64, count: u64) -> Res<Duration> {
    let mut buf = vec![0u8; RAND_REQ];
    let pages = disk / RAND_REQ as u64;
    let mut x = SEED;
    let start = Instant::now();
    for _ in 0..count {
        let off = (xorshift(&mut x) % pages) * RAND_REQ as u64;
        f.read_exact_at(&mut buf, off).map_err(|e| format!("pread: {e}"))?;
    }
    Ok(start.elapsed())
}

/// The tap's own limit: the host writing `frames` frames of [`FRAME`] bytes (broadcast,
/// ethertype 0x88b5, zero payload, as the guests send) to `tap0` in `ns`, one write(2) per frame,
/// as fast as it can; the time of the writes (opening the tap is not timed).
fn host_tap_tx(ns: &NetNs, frames: u64) -> Res<Duration> {
    let mut tap = ns.open_tap("tap0")?;
    let mut frame = [0u8; FRAME];
    frame[0..6].fill(0xff);
    // A locally administered unicast source address.
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let start = Instant::now();
    for i in 0..frames {
        loop {
            match tap.write_frame(&frame) {
                Ok(()) => break,
                // The descriptor is non-blocking, as unik's is: try again.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(format!("tap write {i}: {e}")),
            }
        }
    }
    Ok(start.elapsed())
}

fn mib_s(bytes: u64, us: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / (us.max(1) as f64 / 1e6)
}

fn main() -> std::process::ExitCode {
    // Errors return through `bench`, so the temp file and the namespace are gone by now.
    unik_bench::exit("virtio-bench", bench())
}

fn bench() -> Res<()> {
    let runs = arg::<u64>(1, 30);
    let rounds = arg::<u64>(2, 5).max(1);
    let frames = arg::<u64>(3, 20_000);
    let disk_mib = arg::<u64>(4, 256).max(1);
    let rand_count = arg::<u64>(5, 4096);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let unik_path = root.join("target/release/unik");
    let guests = root.join("target/guests/x86_64-unknown-none/release");
    let path_str = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
    };
    let unik = path_str(&unik_path)?;
    let virtio = path_str(&guests.join("virtio"))?;
    let hello = path_str(&guests.join("hello"))?;
    let net = path_str(&guests.join("net"))?;

    let tsc_hz = kvm_tsc_hz()?;
    let host_hz = host_tsc_hz();
    println!(
        "TSC: {:.1} MHz from KVM_GET_TSC_KHZ (host rdtsc against CLOCK_MONOTONIC: {:.1} MHz)\n",
        tsc_hz as f64 / 1e6,
        host_hz as f64 / 1e6
    );

    // ---- boot ----
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let virtio64_path = tmp.path().join("virtio64");
    hide_notes(&guests.join("virtio"), &virtio64_path)?;
    let virtio64 = path_str(&virtio64_path)?;
    let boots = [
        (
            "`virtio`, PVH entry (32-bit, builds its page tables)",
            virtio.as_str(),
            "virtio: boot=pvh",
        ),
        (
            "`virtio`, 64-bit Linux boot protocol entry",
            virtio64.as_str(),
            "virtio: boot=linux",
        ),
        ("`hello` (solo5-hvt, PUTS hypercall)", hello.as_str(), "Hello"),
    ];
    let mut first = vec![Vec::new(); boots.len()];
    let mut exit = vec![Vec::new(); boots.len()];
    for round in 0..=runs {
        for (i, (name, kernel, expect)) in boots.iter().enumerate() {
            let r = run(&[&unik, "boot", "--mem=32", kernel])?;
            if !r.out.contains(expect) {
                return Err(format!("{name}: no {expect:?} in: {}", r.out));
            }
            if round > 0 {
                first[i].push(micros(r.first.ok_or_else(|| format!("{name} printed nothing"))?));
                exit[i].push(micros(r.exit));
            }
        }
    }
    drop(tmp);
    println!("Boot of the test guests, `unik boot --mem=32` without devices, {runs} runs interleaved, wall time from spawn in µs:\n");
    println!("| guest | first output p50 | first output p90 | exit p50 | exit p90 |");
    println!("|---|---|---|---|---|");
    for (i, (name, _, _)) in boots.iter().enumerate() {
        let ((f50, f90), (x50, x90)) = (p50_p90(&first[i]), p50_p90(&exit[i]));
        println!("| {name} | {f50} | {f90} | {x50} | {x90} |");
    }

    // ---- block ----
    let dir = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let mut img = tempfile::Builder::new()
        .prefix("unik-virtio-bench")
        .suffix(".img")
        .tempfile_in(&dir)
        .map_err(|e| format!("temp file in {}: {e}", dir.display()))?;
    let disk = disk_mib << 20;
    {
        let mut x = SEED;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..disk_mib {
            for w in chunk.chunks_exact_mut(8) {
                w.copy_from_slice(&xorshift(&mut x).to_le_bytes());
            }
            img.write_all(&chunk).map_err(|e| format!("fill disk image: {e}"))?;
        }
        img.flush().map_err(|e| e.to_string())?;
    }
    let img_path = path_str(img.path())?;
    let file = File::open(img.path()).map_err(|e| e.to_string())?;
    // Warm: the whole file in the page cache before either side reads it.
    host_seq(&file, disk)?;
    let block = format!("--block:d0={img_path}");
    let seq_arg = format!("blk-bench=seq:{disk_mib}");
    let rand_arg = format!("blk-bench=rand:{rand_count}");
    let (mut g_seq, mut g_seq_wall, mut h_seq) = (Vec::new(), Vec::new(), Vec::new());
    let (mut g_rand, mut g_rand_wall, mut h_rand) = (Vec::new(), Vec::new(), Vec::new());
    let mut g_zero = Vec::new();
    let tsc_us = |cycles: u64| u64::try_from(u128::from(cycles) * 1_000_000 / u128::from(tsc_hz.max(1))).unwrap_or(u64::MAX);
    for round in 0..=rounds {
        let z = run(&[&unik, "boot", "--mem=32", &block, &virtio, "blk-bench=seq:0"])?;
        let s = run(&[&unik, "boot", "--mem=32", &block, &virtio, &seq_arg])?;
        let hs = host_seq(&file, disk)?;
        let r = run(&[&unik, "boot", "--mem=32", &block, &virtio, &rand_arg])?;
        let hr = host_rand(&file, disk, rand_count)?;
        if field(&s.out, "bytes")? != disk || field(&r.out, "bytes")? != rand_count * RAND_REQ as u64 {
            return Err(format!("guest read a different amount:\n{}\n{}", s.out, r.out));
        }
        if round > 0 {
            g_zero.push(micros(z.exit));
            g_seq.push(tsc_us(field(&s.out, "tsc")?));
            g_seq_wall.push(micros(s.exit));
            h_seq.push(micros(hs));
            g_rand.push(tsc_us(field(&r.out, "tsc")?));
            g_rand_wall.push(micros(r.exit));
            h_rand.push(micros(hr));
        }
    }
    drop(file);
    drop(img);
    let (zero50, _) = p50_p90(&g_zero);
    let rand_bytes = rand_count * RAND_REQ as u64;
    println!(
        "\nvirtio-blk reads of a {disk_mib} MiB file (page cache warm), one request at a time, {rounds} rounds; \
         guest time from its TSC, \"wall\" = exit time − exit time of a `blk-bench=seq:0` run (p50 {zero50} µs):\n"
    );
    println!(
        "| workload | host pread p50 | host p90 | guest p50 | guest p90 | guest (wall) p50 | guest ÷ host (p50) | µs per request guest / host (p50) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let nreq_seq = disk / SEQ_REQ as u64;
    for (name, bytes, nreq, g, gw, h, unit) in [
        ("sequential 64 KiB", disk, nreq_seq, &g_seq, &g_seq_wall, &h_seq, "MiB/s"),
        ("random 4 KiB", rand_bytes, rand_count, &g_rand, &g_rand_wall, &h_rand, "IOPS"),
    ] {
        let ((g50, g90), (h50, h90)) = (p50_p90(g), p50_p90(h));
        let (gw50, _) = p50_p90(gw);
        let gw50 = gw50.saturating_sub(zero50);
        let rate = |us: u64| {
            if unit == "IOPS" {
                format!("{:.0} IOPS", nreq as f64 / (us.max(1) as f64 / 1e6))
            } else {
                format!("{:.0} MiB/s", mib_s(bytes, us))
            }
        };
        // p90 of the time is the slow end: it gives the lower throughput.
        println!(
            "| {name} | {} | {} | {} | {} | {} | {:.3}× | {:.1} / {:.1} |",
            rate(h50),
            rate(h90),
            rate(g50),
            rate(g90),
            rate(gw50),
            h50 as f64 / g50.max(1) as f64,
            g50 as f64 / nreq.max(1) as f64,
            h50 as f64 / nreq.max(1) as f64
        );
    }

    // ---- net ----
    let ns = NetNs::new(&format!("ukvb{}", std::process::id()))?;
    let nsexec = ["ip", "netns", "exec", ns.name()];
    let tx_arg = format!("net-tx={frames}");
    let (mut v_t, mut v_z, mut h_t, mut h_z, mut w_t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut v_rx, mut h_rx, mut w_rx) = (0, 0, 0);
    for round in 0..=rounds {
        let mut times = [0u64; 4];
        let mut rx = [0u64; 4];
        for (i, (dev, guest, arg)) in [
            ("--net:eth0=tap0", &virtio, tx_arg.as_str()),
            ("--net:eth0=tap0", &virtio, "net-tx=0"),
            ("--net:service0=tap0", &net, tx_arg.as_str()),
            ("--net:service0=tap0", &net, "net-tx=0"),
        ]
        .into_iter()
        .enumerate()
        {
            let before = ns.rx_packets()?;
            let mut argv = nsexec.to_vec();
            argv.extend_from_slice(&[&unik, "boot", "--mem=32", dev, guest, arg]);
            let r = run(&argv)?;
            rx[i] = ns.rx_packets()? - before;
            times[i] = micros(r.exit);
            let want = if arg == "net-tx=0" { 0 } else { frames };
            if !r.out.contains(&format!("sent {want} frames")) {
                return Err(format!("guest output: {}", r.out));
            }
        }
        // The tap's own limit, in the same round: the host writing the same frames.
        let before = ns.rx_packets()?;
        let w = host_tap_tx(&ns, frames)?;
        let w_got = ns.rx_packets()? - before;
        if w_got != frames {
            return Err(format!("host wrote {frames} frames to the tap, its rx_packets rose by {w_got}"));
        }
        if round > 0 {
            v_t.push(times[0]);
            v_z.push(times[1]);
            h_t.push(times[2]);
            h_z.push(times[3]);
            w_t.push(micros(w));
            v_rx += rx[0];
            h_rx += rx[2];
            w_rx += w_got;
        }
    }
    drop(ns);
    println!(
        "\nGuest→host frames of {FRAME} bytes into a tap, {frames} per run, {rounds} rounds; time = exit time of an \
         N-frame run − exit time of a 0-frame run (p50 each); tap limit = the host itself writing the same N frames \
         to the same tap, one write(2) per frame, time of the writes (p50), in the same rounds:\n"
    );
    println!("| path | N frames p50 | 0 frames p50 | frames/s | Mbit/s ({FRAME}-byte frames) | ÷ tap limit | received by the host |");
    println!("|---|---|---|---|---|---|---|");
    let mbit = |fps: f64| fps * FRAME as f64 * 8.0 / 1e6;
    let (w50, _) = p50_p90(&w_t);
    let limit = frames as f64 / (w50.max(1) as f64 / 1e6);
    println!(
        "| tap limit (host write(2) per frame) | {w50} µs | — | {limit:.0} | {:.1} | — | {w_rx}/{} |",
        mbit(limit),
        frames * rounds
    );
    let mut fps = [0f64; 2];
    for (i, (name, t, z, rx)) in [
        ("virtio-net (`virtio` guest, one notify per batch of ≤16)", &v_t, &v_z, v_rx),
        ("hvt NET_WRITE (`net` guest, one hypercall per frame)", &h_t, &h_z, h_rx),
    ]
    .into_iter()
    .enumerate()
    {
        let ((t50, _), (z50, _)) = (p50_p90(t), p50_p90(z));
        let us = t50.saturating_sub(z50).max(1);
        fps[i] = frames as f64 / (us as f64 / 1e6);
        println!(
            "| {name} | {t50} µs | {z50} µs | {:.0} | {:.1} | {:.3}× | {rx}/{} |",
            fps[i],
            mbit(fps[i]),
            fps[i] / limit.max(1e-9),
            frames * rounds
        );
    }
    println!("\nvirtio-net ÷ hvt NET_WRITE (frames/s, p50): {:.2}×", fps[0] / fps[1].max(1e-9));
    Ok(())
}
