//! containerd drives unik exactly as it drives runc: `ctr run --runc-binary unik` through
//! containerd-shim-runc-v2. containerd runs inside a network namespace and directories the test
//! creates; scripts/setup.sh installs it from Debian.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::guests::guest;
use common::netns::NetNs;
use common::{stderr, stdout};

/// A private containerd: its own root, state and socket, inside its own network namespace.
struct Containerd {
    ns: NetNs,
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let ns = NetNs::new();
        let dir = common::tempdir();
        let d = dir.path().to_path_buf();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        // nsenter, not `ip netns exec`, which remounts /sys and hides the cgroup mounts.
        let daemon = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(["containerd", "--config", d.join("config.toml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is not installed (scripts/setup.sh installs it)");
        let c = Containerd { ns, dir, daemon };
        // A liveness deadline (a daemon that never answers fails the test instead of hanging
        // it), not a speed check.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let sock = self.dir.path().join("containerd.sock");
        let mut cmd = self.ns.command(&["ctr", "--address", sock.to_str().unwrap()]);
        cmd.args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().unwrap()
    }

    /// A rootfs directory holding the hello guest as /hello.hvt.
    fn rootfs(&self) -> PathBuf {
        let rootfs = self.dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy(guest("hello"), rootfs.join("hello.hvt")).unwrap();
        rootfs
    }

    fn run_args<'a>(&self, rootfs: &'a Path, unik: &'a Path) -> Vec<&'a str> {
        vec![
            "--rootfs",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            unik.to_str().unwrap(),
            rootfs.to_str().unwrap(),
        ]
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The state directory the shim gives unik (`--root /run/containerd/runc/<namespace>`).
fn unik_state(id: &str) -> PathBuf {
    Path::new("/run/containerd/runc/default").join(id)
}

#[test]
fn test_ctr_run_prints_the_console_and_returns_the_guest_status() {
    require_kvm!();
    let c = Containerd::start();
    let rootfs = c.rootfs();
    let unik = common::unik_path();
    let id = id("ctr-run");
    let mut args = vec!["run", "--rm"];
    args.extend(c.run_args(&rootfs, &unik));
    args.extend([id.as_str(), "/hello.hvt", "exit=5"]);
    let out = c.ctr(&args);
    assert_eq!(out.status.code(), Some(5), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Hello, world") && stdout(&out).contains("cmdline: exit=5"),
        "{}",
        stdout(&out)
    );
    // test_ctr_task_ps_pause_kill_delete checks that this is where a running task's state is.
    assert!(
        unik_state(&id).parent().unwrap().is_dir(),
        "no unik root at {}",
        unik_state(&id).display()
    );
    assert!(!unik_state(&id).exists(), "state left behind");
}

#[test]
fn test_ctr_task_ps_pause_kill_delete() {
    require_kvm!();
    let c = Containerd::start();
    let rootfs = c.rootfs();
    let unik = common::unik_path();
    let id = id("ctr-task");
    let mut args = vec!["run", "-d"];
    args.extend(c.run_args(&rootfs, &unik));
    args.extend([id.as_str(), "/hello.hvt", "sleep=600000"]);
    let out = c.ctr(&args);
    assert!(out.status.success(), "ctr run -d: {}", stderr(&out));
    let task = |want: &str| {
        // A liveness deadline, not a speed check.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ls = stdout(&c.ctr(&["task", "ls"]));
            if ls.lines().any(|l| l.starts_with(&id) && l.contains(want)) {
                return ls;
            }
            assert!(Instant::now() < deadline, "task never {want}: {ls}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let ls = task("RUNNING");
    let pid: i32 = ls
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // The state is where the "left behind" checks look (so they cannot pass on a wrong path).
    assert!(
        unik_state(&id).join("state.json").is_file(),
        "no state at {}",
        unik_state(&id).display()
    );
    let ps = stdout(&c.ctr(&["task", "ps", &id]));
    assert!(ps.contains(&pid.to_string()), "task ps: {ps}");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .contains("__monitor")
    );
    assert!(c.ctr(&["task", "pause", &id]).status.success());
    task("PAUSED");
    assert!(c.ctr(&["task", "resume", &id]).status.success());
    task("RUNNING");
    assert!(c.ctr(&["task", "kill", &id]).status.success());
    task("STOPPED");
    assert!(c.ctr(&["task", "delete", &id]).status.success());
    assert!(c.ctr(&["container", "delete", &id]).status.success());
    assert!(!unik_state(&id).exists(), "state left behind");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .contains("__monitor")
    );
}

#[test]
fn test_ctr_imports_and_runs_unik_pack_images_in_both_formats() {
    require_kvm!();
    let c = Containerd::start();
    let dir = common::tempdir();
    let unik = common::unik_path();
    let hello = guest("hello");
    for (format, exit) in [("docker", "6"), ("oci", "8")] {
        let tar = dir.path().join(format!("hello-{format}.tar"));
        let tag = format!("unik-pack-{format}:1.0");
        common::pack(&[
            "--format",
            format,
            "-t",
            &tag,
            "-o",
            tar.to_str().unwrap(),
            hello.to_str().unwrap(),
            "--arg",
            &format!("exit={exit}"),
        ]);
        let out = c.ctr(&["images", "import", tar.to_str().unwrap()]);
        assert!(out.status.success(), "ctr images import ({format}): {}", stderr(&out));
        let image = format!("docker.io/library/{tag}");
        let images = stdout(&c.ctr(&["images", "ls", "-q"]));
        assert!(images.lines().any(|l| l == image), "{format}: {image} not in {images}");
        let id = id(&format!("ctr-pack-{format}"));
        let out = c.ctr(&[
            "run",
            "--rm",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            unik.to_str().unwrap(),
            &image,
            &id,
        ]);
        assert_eq!(
            out.status.code(),
            Some(exit.parse().unwrap()),
            "{format}: stdout: {} stderr: {}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("Hello, world") && stdout(&out).contains(&format!("cmdline: exit={exit}")),
            "{format}: {}",
            stdout(&out)
        );
        assert!(!unik_state(&id).exists(), "state left behind");
    }

    // A Linux-boot kernel with its initrd and a disk, as an OCI layout.
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&initrd, b"an initrd of 25 bytes....").unwrap();
    let disk = dir.path().join("data.img");
    std::fs::write(&disk, [b'K'; 8192]).unwrap();
    let tar = dir.path().join("virtio.tar");
    common::pack(&[
        "--format",
        "oci",
        "--initrd",
        initrd.to_str().unwrap(),
        "--block",
        &format!("d0={}", disk.display()),
        "--arg",
        "exit=4",
        "-t",
        "unik-pack-virtio:1.0",
        "-o",
        tar.to_str().unwrap(),
        guest("virtio").to_str().unwrap(),
    ]);
    let out = c.ctr(&["images", "import", tar.to_str().unwrap()]);
    assert!(out.status.success(), "ctr images import: {}", stderr(&out));
    let id = id("ctr-pack-virtio");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        unik.to_str().unwrap(),
        "docker.io/library/unik-pack-virtio:1.0",
        &id,
    ]);
    let logs = stdout(&out);
    assert_eq!(out.status.code(), Some(4), "{logs} / {}", stderr(&out));
    for line in ["virtio: initrd addr=", "virtio-blk: read0 status=0 first=KKKKKKKK", "virtio: done"] {
        assert!(logs.lines().any(|l| l.starts_with(line)), "no {line:?} in:\n{logs}");
    }
    assert!(!unik_state(&id).exists(), "state left behind");
}
