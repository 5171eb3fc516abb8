//! OCI benchmark: create + start + exit of the example unikernel through `unik run` and through
//! `ctr run --runc-binary unik`, beside runc running a static busybox `true` container, rounds
//! interleaved in one run; then 50 unikernel containers started in parallel.
//!
//! Run by `bash bench/run.sh` (root, /dev/kvm, runc, containerd and busybox-static installed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(took)
}

fn sh(args: &[&str]) -> Result<(), String> {
    run(Command::new(args[0]).args(&args[1..])).map(|_| ())
}

fn pct(v: &mut [Duration], p: usize) -> u128 {
    v.sort_unstable();
    v[(v.len() * p / 100).min(v.len() - 1)].as_micros()
}

fn write_config(bundle: &Path, args: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(bundle.join("rootfs")).map_err(|e| e.to_string())?;
    run(Command::new("runc").arg("spec").current_dir(bundle))?;
    let path = bundle.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(args);
    std::fs::write(&path, serde_json::to_vec(&c).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

struct Containerd {
    child: Child,
    sock: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["netns", "del", "unikbench"]).status();
    }
}

fn containerd(dir: &Path) -> Result<Containerd, String> {
    let _ = Command::new("ip")
        .args(["netns", "del", "unikbench"])
        .stderr(Stdio::null())
        .status();
    sh(&["ip", "netns", "add", "unikbench"])?;
    let sock = dir.join("containerd.sock");
    let config = format!(
        "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
        dir.join("croot").display(),
        dir.join("cstate").display(),
        sock.display()
    );
    std::fs::write(dir.join("containerd.toml"), config).map_err(|e| e.to_string())?;
    // nsenter, not `ip netns exec`, which remounts /sys and hides the cgroup mounts runc needs.
    let child = Command::new("nsenter")
        .args(["--net=/run/netns/unikbench", "containerd", "--config"])
        .arg(dir.join("containerd.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let c = Containerd { child, sock };
    let deadline = Instant::now() + Duration::from_secs(20);
    while sh(&["ctr", "--address", c.sock.to_str().unwrap_or(""), "version"]).is_err() {
        if Instant::now() > deadline {
            return Err("containerd did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(c)
}

fn main() -> Result<(), String> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let unik = repo
        .join("target/release/unik")
        .canonicalize()
        .map_err(|e| format!("target/release/unik: {e}"))?;
    let hello = repo.join("target/guests/x86_64-unknown-none/release/hello");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();

    let uk_bundle = dir.join("hello");
    write_config(&uk_bundle, &["/hello.hvt"])?;
    std::fs::copy(&hello, uk_bundle.join("rootfs/hello.hvt")).map_err(|e| e.to_string())?;
    let bb_bundle = dir.join("busybox");
    write_config(&bb_bundle, &["/bin/busybox", "true"])?;
    std::fs::create_dir_all(bb_bundle.join("rootfs/bin")).map_err(|e| e.to_string())?;
    std::fs::copy("/bin/busybox", bb_bundle.join("rootfs/bin/busybox")).map_err(|e| format!("/bin/busybox: {e}"))?;
    let ctrd = containerd(dir)?;
    let addr = ctrd.sock.to_str().unwrap_or("").to_string();
    let (uk_root, runc_root) = (dir.join("uk-root"), dir.join("runc-root"));

    let (mut t_unik, mut t_runc, mut t_ctr, mut t_ctr_runc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..=rounds {
        let id = format!("b{i}");
        let u = run(Command::new(&unik)
            .arg("--root")
            .arg(&uk_root)
            .args(["run", "--bundle"])
            .arg(&uk_bundle)
            .arg(&id))?;
        let r = run(Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["run", "--bundle"])
            .arg(&bb_bundle)
            .arg(&id))?;
        let c = run(Command::new("ip")
            .args(["netns", "exec", "unikbench", "ctr", "--address", &addr, "run", "--rm", "--rootfs"])
            .args([
                "--runtime",
                "io.containerd.runc.v2",
                "--runc-binary",
                unik.to_str().unwrap_or(""),
                uk_bundle.join("rootfs").to_str().unwrap_or(""),
                &format!("ctr-{id}"),
                "/hello.hvt",
            ]))?;
        let cr = run(Command::new("ip")
            .args(["netns", "exec", "unikbench", "ctr", "--address", &addr, "run", "--rm", "--rootfs"])
            .args([
                bb_bundle.join("rootfs").to_str().unwrap_or(""),
                &format!("ctr-runc-{id}"),
                "/bin/busybox",
                "true",
            ]))?;
        if i > 0 {
            t_unik.push(u);
            t_runc.push(r);
            t_ctr.push(c);
            t_ctr_runc.push(cr);
        }
    }
    let runc_p50 = pct(&mut t_runc, 50);
    println!("create + start + exit, {rounds} rounds interleaved, wall time in µs:\n");
    println!("| path | p50 | p90 | ÷ runc busybox `true` (p50) |");
    println!("|---|---|---|---|");
    let rows = [
        ("runc run, static busybox `true`", &mut t_runc),
        ("unik run, hello unikernel", &mut t_unik),
        ("ctr run (runc), static busybox `true`", &mut t_ctr_runc),
        ("ctr run --runc-binary unik, hello unikernel", &mut t_ctr),
    ];
    for (name, t) in rows {
        let (p50, p90) = (pct(t, 50), pct(t, 90));
        println!("| {name} | {p50} | {p90} | {:.2}× |", p50 as f64 / runc_p50.max(1) as f64);
    }

    // 50 unikernels at once: create in parallel, start in parallel, time until all run.
    let n = 50;
    let sleeper = dir.join("sleeper");
    write_config(&sleeper, &["/hello.hvt", "sleep=600000"])?;
    std::fs::copy(&hello, sleeper.join("rootfs/hello.hvt")).map_err(|e| e.to_string())?;
    let par_root = dir.join("par-root");
    let start = Instant::now();
    let spawn_all = |cmd: &str| -> Result<(), String> {
        let children: Vec<Child> = (0..n)
            .map(|i| {
                let mut c = Command::new(&unik);
                c.arg("--root").arg(&par_root).arg(cmd);
                if cmd == "create" {
                    c.arg("--bundle").arg(&sleeper);
                }
                c.arg(format!("p{i}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        for mut c in children {
            let status = c.wait().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("parallel {cmd} failed: {status}"));
            }
        }
        Ok(())
    };
    spawn_all("create")?;
    spawn_all("start")?;
    let all_running = start.elapsed();
    let list = Command::new(&unik)
        .arg("--root")
        .arg(&par_root)
        .args(["list", "--format", "json"])
        .output()
        .map_err(|e| e.to_string())?;
    let states: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).map_err(|e| e.to_string())?;
    let running = states.iter().filter(|s| s["status"] == "running").count();
    for i in 0..n {
        let _ = Command::new(&unik)
            .arg("--root")
            .arg(&par_root)
            .args(["delete", "--force", &format!("p{i}")])
            .status();
    }
    println!(
        "\n{n} unikernel containers created and started in parallel: {running}/{n} running after {} ms.",
        all_running.as_millis()
    );
    if running != n {
        return Err(format!("only {running} of {n} containers were running"));
    }
    Ok(())
}
