//! docker runs a unikernel with `--runtime unik`: a private dockerd (its own data, exec root and
//! socket, inside a network namespace the test creates, with its bridge on 10.95.0.1/24 and no
//! iptables) started
//! with `--add-runtime unik=<the unik binary>`, and an image made with `docker import`.
//! scripts/setup.sh installs docker.io from Debian.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::guests::{guest, without_pvh_note};
use common::netns::NetNs;
use common::{stderr, stdout};

/// Debian's docker client, which speaks the API of Debian's dockerd.
const DOCKER: &str = "/usr/bin/docker";

struct Dockerd {
    // The namespace dockerd runs in; removed (after the daemon stops) on drop.
    _ns: NetNs,
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Dockerd {
    fn start() -> Dockerd {
        let ns = NetNs::new();
        let dir = common::tempdir();
        let d = dir.path().to_path_buf();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        // nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup mounts
        // dockerd needs.
        let runtime = format!("unik={}", common::unik_path().display());
        // A clean environment: what cargo sets for the test must not leak into the daemon.
        let daemon = Command::new("nsenter")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args([
                "dockerd",
                "--bip=10.95.0.1/24",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg(format!("--host=unix://{}", d.join("docker.sock").display()))
            .args(["--add-runtime", &runtime])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd is not installed (scripts/setup.sh installs docker.io)");
        let docker = Dockerd { _ns: ns, dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        docker
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.dir.path().join("docker.sock").display()))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "docker {args:?}: {}\ndockerd.log (last lines, newest first):\n{}",
                stderr(&out),
                tail.join("\n")
            );
        }
        stdout(&out)
    }

    /// `docker import` of a rootfs holding guest `name` as `/NAME.hvt` and `files`.
    fn import(&self, tag: &str, name: &str, files: &[(&str, &[u8])], cmd: &str) {
        let guest = std::fs::read(guest(name)).unwrap();
        let hvt = format!("{name}.hvt");
        let mut all = vec![(hvt.as_str(), guest.as_slice())];
        all.extend_from_slice(files);
        self.import_files(tag, &all, cmd);
    }

    /// `docker import` of a rootfs holding `files` (paths relative to its root).
    fn import_files(&self, tag: &str, files: &[(&str, &[u8])], cmd: &str) {
        let name = tag.replace([':', '/'], "-");
        let rootfs = self.dir.path().join(format!("rootfs-{name}"));
        for (file, data) in files {
            let path = rootfs.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        let tar = self.dir.path().join(format!("rootfs-{name}.tar"));
        let out = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {}", stderr(&out));
        self.ok(&["import", "--change", &format!("CMD {cmd}"), tar.to_str().unwrap(), tag]);
    }

    fn wait_logs(&self, name: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ok(&["logs", name]).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in docker logs of {name}: {}",
                self.ok(&["logs", name])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that no container's state is left under the runtime's root.
    fn assert_no_state_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.state_root())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "state left behind: {left:?}");
    }

    fn state_root(&self) -> PathBuf {
        self.dir.path().join("exec/runtime-runc/moby")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd; then make sure it is gone.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(i32::try_from(self.daemon.id()).unwrap_or(0), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[test]
fn test_docker_run_top_stop_rm() {
    require_kvm!();
    let docker = Dockerd::start();
    docker.import("unik-hello:test", "hello", &[], r#"["/hello.hvt"]"#);

    // Foreground: console on stdout, the guest's status as the container's.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "unik",
        "--network",
        "none",
        "unik-hello:test",
        "/hello.hvt",
        "exit=3",
    ]);
    assert_eq!(out.status.code(), Some(3), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Hello, world") && stdout(&out).contains("cmdline: exit=3"),
        "{}",
        stdout(&out)
    );

    // With a terminal (-t): the shim hands unik a console socket; the guest console is the pty.
    let out = docker.docker(&[
        "run",
        "--rm",
        "-t",
        "--runtime",
        "unik",
        "--network",
        "none",
        "unik-hello:test",
        "/hello.hvt",
        "exit=4",
    ]);
    assert_eq!(out.status.code(), Some(4), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("Hello, world\r\n"), "{:?}", stdout(&out));

    // Detached: running, visible to `docker top`, stopped by `docker stop` (SIGTERM → 143);
    // the monitor jailed in the container's namespaces as its user, without privileges.
    let name = format!("unik-{}", std::process::id());
    docker.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "unik",
        "--network",
        "none",
        "--user",
        "4321:4322",
        "unik-hello:test",
        "/hello.hvt",
        "sleep=600000",
    ]);
    docker.wait_logs(&name, "cmdline: sleep=600000");
    assert_eq!(docker.ok(&["inspect", "--format", "{{.State.Status}}", &name]).trim(), "running");
    let top = docker.ok(&["top", &name]);
    assert!(top.contains("__monitor"), "docker top: {top}");
    let pid = docker.ok(&["inspect", "--format", "{{.State.Pid}}", &name]).trim().to_string();
    common::assert_confined(pid.parse().unwrap());
    let field = |name: &str| common::status_field(pid.to_string().parse().unwrap(), name);
    assert_eq!(field("NSpid:").last().map(String::as_str), Some("1"));
    assert_eq!(field("Uid:"), ["4321"; 4]);
    assert_eq!(field("Gid:"), ["4322"; 4]);
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/root/")).unwrap().count(),
        0,
        "the monitor's root is empty"
    );
    docker.ok(&["stop", &name]);
    assert_eq!(docker.ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]).trim(), "143");
    docker.ok(&["rm", &name]);

    // Nothing is left: no container, no state directory, no monitor process.
    assert!(docker.ok(&["ps", "-aq"]).trim().is_empty());
    docker.assert_no_state_left();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!cmdline.contains("__monitor"), "monitor {pid} still running");
}

#[test]
fn test_docker_runs_urunc_unikraft_images_for_qemu_and_firecracker() {
    require_kvm!();
    let docker = Dockerd::start();
    let dir = common::tempdir();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // Packaged as urunc packages Unikraft: the kernel under /unikernel, urunc's keys (base64) in
    // /urunc.json (docker passes no image annotations), a block image and an initrd beside it.
    // The QEMU platform's kernel is a multiboot kernel; the Firecracker platform's boots with
    // the Linux 64-bit entry ("lxboot"): here the project's virtio program built both ways.
    for (hypervisor, kernel, exit, boot) in [
        ("qemu", std::fs::read(guest("multiboot")).unwrap(), "5", "virtio: boot=multiboot"),
        (
            "firecracker",
            std::fs::read(without_pvh_note(dir.path())).unwrap(),
            "6",
            "virtio: boot=linux",
        ),
    ] {
        let urunc = serde_json::json!({
            "com.urunc.unikernel.unikernelType": b64("unikraft"),
            "com.urunc.unikernel.hypervisor": b64(hypervisor),
            "com.urunc.unikernel.binary": b64("/unikernel/kernel"),
            "com.urunc.unikernel.cmdline": b64(&format!("exit={exit}")),
            "com.urunc.unikernel.block": b64("/data.img"),
            "com.urunc.unikernel.initrd": b64("/unikernel/initrd"),
        });
        let urunc = serde_json::to_vec(&urunc).unwrap();
        let tag = format!("unikraft-{hypervisor}:test");
        docker.import_files(
            &tag,
            &[
                ("unikernel/kernel", &kernel),
                ("unikernel/initrd", b"an initrd of 25 bytes...."),
                ("data.img", &[b'K'; 8192]),
                ("urunc.json", &urunc),
            ],
            r#"["/unikernel/kernel"]"#,
        );
        // On docker's bridge: the container's interface becomes the guest's virtio-net card,
        // announced on the command line as Unikraft's lwIP reads it.
        let name = format!("unikraft-{hypervisor}-{}", std::process::id());
        let out = docker.docker(&["run", "--name", &name, "--runtime", "unik", &tag]);
        let logs = stdout(&out);
        assert_eq!(out.status.code(), Some(exit.parse().unwrap()), "{logs} / {}", stderr(&out));
        // As urunc starts Unikraft: a program name, Unikraft's own parameters (the network's,
        // then the devices'), `--`, the application's arguments.
        let cmdline = logs.lines().find_map(|l| l.strip_prefix("virtio: cmdline: ")).unwrap_or_default();
        let words: Vec<&str> = cmdline.split_whitespace().collect();
        assert!(
            words.len() == 6
                && words[0] == "kernel"
                && words[1].starts_with("netdev.ip=10.95.0.")
                && words[1].contains("/24:10.95.0.1:")
                && words[2].starts_with("virtio_mmio.device=")
                && words[3].starts_with("virtio_mmio.device=")
                && words[4..] == ["--", &format!("exit={exit}")],
            "{hypervisor}: {cmdline}"
        );
        for line in [
            boot,
            "virtio: initrd addr=",
            "virtio-blk: capacity=16 ro=0 flush=1",
            "virtio-blk: read0 status=0 first=KKKKKKKK",
            "virtio: done",
        ] {
            assert!(logs.lines().any(|l| l.starts_with(line)), "{hypervisor}: no {line:?} in:\n{logs}");
        }
        assert!(logs.contains("size=25"), "{hypervisor}: the initrd: {logs}");
        docker.ok(&["rm", &name]);
    }
}

#[test]
fn test_docker_container_ip_reaches_the_guest() {
    require_kvm!();
    let docker = Dockerd::start();
    // docker passes no image annotations; the template travels in /unik.json.
    let unik_json = br#"{"dev.unik.net.template": "ip={ip} gw={gateway}"}"#;
    docker.import(
        "unik-net:test",
        "net",
        &[("unik.json", unik_json)],
        r#"["/net.hvt", "count=3", "timeout=60"]"#,
    );
    let name = format!("unik-net-{}", std::process::id());
    docker.ok(&["run", "-d", "--name", &name, "--runtime", "unik", "unik-net:test"]);
    docker.wait_logs(&name, " ready");
    let ip = docker
        .ok(&["inspect", "--format", "{{.NetworkSettings.IPAddress}}", &name])
        .trim()
        .to_string();
    let mac = docker
        .ok(&["inspect", "--format", "{{.NetworkSettings.MacAddress}}", &name])
        .trim()
        .to_string();
    // The daemon's namespace is the host side of docker's bridge.
    let ping = docker
        ._ns
        .command(&["ping", "-c", "3", "-i", "0.2", "-W", "5", &ip])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping {ip}: {} / logs: {}",
        stdout(&ping),
        docker.ok(&["logs", &name])
    );
    assert_eq!(docker.ok(&["wait", &name]).trim(), "0");
    let logs = docker.ok(&["logs", &name]);
    assert!(logs.contains(&format!("net: cmdline: ip={ip} gw=10.95.0.1")), "{logs}");
    assert!(logs.contains(&format!("net: mac={mac}")), "{logs}");
    assert!(logs.contains("net: answered 3 pings"), "{logs}");
    docker.ok(&["rm", &name]);

    // --network host: no namespace of the container's own, so no interface is taken from the
    // host; docker shows unik's reason.
    let out = docker.docker(&["run", "--rm", "--runtime", "unik", "--network", "host", "unik-net:test"]);
    assert!(!out.status.success(), "ran with the host's network: {}", stdout(&out));
    assert!(stderr(&out).contains("shares the host's network namespace"), "{}", stderr(&out));

    // A Linux-boot guest the same way: virtio-net on the container's interface, virtio-blk
    // from an image file, its exit status through docker.
    let unik_json = br#"{"dev.unik.kernel": "/virtio.hvt", "dev.unik.block.d0": "/disk.img",
        "dev.unik.net.template": "ip={ip} pings=2 timeout=60"}"#;
    docker.import(
        "unik-virtio:test",
        "virtio",
        &[("unik.json", unik_json), ("disk.img", &[b'D'; 4096])],
        r#"["/virtio.hvt", "exit=4"]"#,
    );
    let name = format!("unik-virtio-{}", std::process::id());
    docker.ok(&["run", "-d", "--name", &name, "--runtime", "unik", "unik-virtio:test"]);
    docker.wait_logs(&name, " ready");
    let ip = docker
        .ok(&["inspect", "--format", "{{.NetworkSettings.IPAddress}}", &name])
        .trim()
        .to_string();
    let ping = docker
        ._ns
        .command(&["ping", "-c", "2", "-i", "0.2", "-W", "5", &ip])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping {ip}: {} / logs: {}",
        stdout(&ping),
        docker.ok(&["logs", &name])
    );
    assert_eq!(docker.ok(&["wait", &name]).trim(), "4");
    let logs = docker.ok(&["logs", &name]);
    assert!(
        logs.contains(&format!("virtio: cmdline: ip={ip} pings=2 timeout=60 exit=4")),
        "{logs}"
    );
    assert!(logs.contains("virtio-blk: read0 status=0 first=DDDDDDDD"), "{logs}");
    assert!(logs.contains("virtio-net: answered 2 pings"), "{logs}");
    docker.ok(&["rm", &name]);
    docker.assert_no_state_left();
}

#[test]
fn test_a_disconnected_network_stops_the_container_with_a_clear_error() {
    require_kvm!();
    let docker = Dockerd::start();
    let unik_json = br#"{"dev.unik.net.template": "ip={ip} gw={gateway}"}"#;
    docker.import(
        "unik-net:test",
        "net",
        &[("unik.json", unik_json)],
        r#"["/net.hvt", "count=1000", "timeout=600"]"#,
    );
    let name = format!("unik-disconnect-{}", std::process::id());
    docker.ok(&["run", "-d", "--name", &name, "--runtime", "unik", "unik-net:test"]);
    docker.wait_logs(&name, " ready");
    let id = docker.ok(&["inspect", "--format", "{{.Id}}", &name]).trim().to_string();
    // Every thread of the monitor, the link watch included, is confined.
    let pid: u32 = docker.ok(&["inspect", "--format", "{{.State.Pid}}", &name]).trim().parse().unwrap();
    common::assert_confined(pid);
    // The interface the guest's card is spliced to goes: the guest is cut off, and says so by
    // ending rather than running on unreachable.
    docker.ok(&["network", "disconnect", "bridge", &name]);
    assert_eq!(docker.ok(&["wait", &name]).trim(), "1");
    let logs = docker.docker(&["logs", &name]);
    let text = format!("{}{}", stdout(&logs), stderr(&logs));
    assert!(
        text.contains("the container's network interface eth0 is gone (docker network disconnect?)"),
        "{text}"
    );
    docker.ok(&["rm", &name]);
    assert!(!docker.state_root().join(&id).exists(), "state left behind");
}

/// The virtio test guest's marker, written to sector 1 of its first disk.
const BLK_MARKER: &[u8] = b"unik-virtio-blk!";

#[test]
fn test_docker_volumes_and_read_only_decide_what_the_guest_writes() {
    require_kvm!();
    let docker = Dockerd::start();
    let dir = common::tempdir();
    // A Linux-boot guest whose one disk is /disk.img (the image's copy is all 'D').
    let unik_json = br#"{"dev.unik.kernel": "/virtio.hvt", "dev.unik.block.d0": "/disk.img"}"#;
    docker.import(
        "unik-disk:test",
        "virtio",
        &[("unik.json", unik_json), ("disk.img", &[b'D'; 4096])],
        r#"["/virtio.hvt"]"#,
    );
    let run = |name: &str, flags: &[&str]| -> String {
        let mut args = vec!["run", "--name", name, "--runtime", "unik", "--network", "none"];
        args.extend_from_slice(flags);
        args.push("unik-disk:test");
        let out = docker.docker(&args);
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {} / {}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    let has = |logs: &str, line: &str| assert!(logs.lines().any(|l| l.starts_with(line)), "no {line:?} in:\n{logs}");
    let sector1 = |path: &std::path::Path| std::fs::read(path).unwrap()[512..512 + BLK_MARKER.len()].to_vec();
    let id = std::process::id();

    // -v HOST_FILE:/disk.img: the guest reads and writes the host's file.
    let host = common::disk(&dir, "host.img", 4096, b'H');
    let name = format!("unik-vol-{id}");
    let logs = run(&name, &["-v", &format!("{}:/disk.img", host.display())]);
    has(&logs, "virtio-blk: capacity=8 ro=0");
    has(&logs, "virtio-blk: read0 status=0 first=HHHHHHHH");
    has(&logs, "virtio-blk: write status=0");
    assert_eq!(sector1(&host), BLK_MARKER, "the guest's write did not reach the host file");
    // The image's copy was not the one written.
    assert!(
        !docker.ok(&["diff", &name]).contains("/disk.img"),
        "{}",
        docker.ok(&["diff", &name])
    );
    docker.ok(&["rm", &name]);

    // --mount type=bind,…,readonly: read-only for the guest, and the host file stays as it was.
    let ro = common::disk(&dir, "ro.img", 4096, b'R');
    let name = format!("unik-ro-{id}");
    let logs = run(
        &name,
        &["--mount", &format!("type=bind,source={},target=/disk.img,readonly", ro.display())],
    );
    has(&logs, "virtio-blk: capacity=8 ro=1");
    has(&logs, "virtio-blk: read0 status=0 first=RRRRRRRR");
    has(&logs, "virtio-blk: write status=1");
    assert_eq!(std::fs::read(&ro).unwrap(), vec![b'R'; 4096]);
    docker.ok(&["rm", &name]);

    // A directory bind mount holding the disk, named by a bind-mounted /unik.json.
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("data.img"), [b'V'; 4096]).unwrap();
    let json = dir.path().join("unik.json");
    std::fs::write(
        &json,
        br#"{"dev.unik.kernel": "/virtio.hvt", "dev.unik.block.d0": "/vol/data.img"}"#,
    )
    .unwrap();
    let name = format!("unik-dir-{id}");
    let logs = run(
        &name,
        &[
            "-v",
            &format!("{}:/vol", volume.display()),
            "-v",
            &format!("{}:/unik.json:ro", json.display()),
        ],
    );
    has(&logs, "virtio-blk: read0 status=0 first=VVVVVVVV");
    has(&logs, "virtio-blk: write status=0");
    assert_eq!(sector1(&volume.join("data.img")), BLK_MARKER);
    docker.ok(&["rm", &name]);

    // Without a volume the image's copy is written: docker diff shows it changed ...
    let name = format!("unik-rw-{id}");
    let logs = run(&name, &[]);
    has(&logs, "virtio-blk: read0 status=0 first=DDDDDDDD");
    has(&logs, "virtio-blk: write status=0");
    assert!(
        docker.ok(&["diff", &name]).contains("C /disk.img"),
        "{}",
        docker.ok(&["diff", &name])
    );
    docker.ok(&["rm", &name]);
    // ... and with --read-only the guest sees a read-only disk and the rootfs stays unchanged.
    let name = format!("unik-readonly-{id}");
    let logs = run(&name, &["--read-only"]);
    has(&logs, "virtio-blk: capacity=8 ro=1");
    has(&logs, "virtio-blk: write status=1");
    assert!(
        !docker.ok(&["diff", &name]).contains("/disk.img"),
        "{}",
        docker.ok(&["diff", &name])
    );
    docker.ok(&["rm", &name]);

    // A disk on a tmpfs is refused, naming both, and nothing is left.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "unik",
        "--network",
        "none",
        "--tmpfs",
        "/vol",
        "-v",
        &format!("{}:/unik.json:ro", json.display()),
        "unik-disk:test",
    ]);
    assert!(!out.status.success(), "ran: {}", stdout(&out));
    assert!(
        stderr(&out).contains("'/vol/data.img' is on a tmpfs mount at /vol, not a bind mount"),
        "{}",
        stderr(&out)
    );
    docker.assert_no_state_left();
}

#[test]
fn test_docker_init_and_shell_form_commands_run_the_unikernel() {
    require_kvm!();
    let docker = Dockerd::start();
    docker.import("unik-init:test", "hello", &[], r#"["/hello.hvt"]"#);
    // docker run --init: docker-init is bind-mounted and put in front; the guest runs alone.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--init",
        "--runtime",
        "unik",
        "--network",
        "none",
        "unik-init:test",
        "/hello.hvt",
        "exit=3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{} / {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("cmdline: exit=3"), "{}", stdout(&out));

    // CMD written without brackets: docker runs it as /bin/sh -c "…", which the image lacks.
    docker.import("unik-shell:test", "hello", &[], "/hello.hvt exit=5  sleep=1");
    let config = docker.ok(&["inspect", "--format", "{{json .Config.Cmd}}", "unik-shell:test"]);
    assert_eq!(config.trim(), r#"["/bin/sh","-c","/hello.hvt exit=5  sleep=1"]"#);
    for flags in [&[][..], &["--init"][..]] {
        let mut args = vec!["run", "--rm", "--runtime", "unik", "--network", "none"];
        args.extend_from_slice(flags);
        args.push("unik-shell:test");
        let out = docker.docker(&args);
        assert_eq!(out.status.code(), Some(5), "{flags:?}: {} / {}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("cmdline: exit=5 sleep=1"), "{}", stdout(&out));
    }

    // Shell syntax is refused with docker's shell form explained, not handed to runc.
    docker.import("unik-shell-bad:test", "hello", &[], "/hello.hvt exit=5 > /log");
    let out = docker.docker(&["run", "--rm", "--runtime", "unik", "--network", "none", "unik-shell-bad:test"]);
    assert!(!out.status.success(), "ran: {}", stdout(&out));
    for part in [
        "docker's shell form",
        "has '>', which the shell would interpret",
        "Use the exec form instead",
    ] {
        assert!(stderr(&out).contains(part), "no {part:?} in: {}", stderr(&out));
    }
    docker.assert_no_state_left();
}

/// The cgroup directories a process is in (one per v1 hierarchy, or the v2 one), from
/// /proc/PID/cgroup; empty once the process is gone.
fn cgroup_dirs_of(pid: &str) -> Vec<PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let v2 = root.join("cgroup.controllers").exists();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let base = match controllers {
                "" if v2 => root.to_path_buf(),
                "" => root.join("unified"),
                c => {
                    let named = root.join(c.trim_start_matches("name="));
                    if named.exists() { named } else { root.join(c.split(',').next()?) }
                }
            };
            Some(base.join(path.trim_start_matches('/')))
        })
        .collect()
}

/// The value of `file` in the first of `dirs` that has it.
fn cgroup_value(dirs: &[PathBuf], file: &str) -> Option<String> {
    dirs.iter()
        .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
        .map(|v| v.trim().to_string())
}

/// The CPU quota and period, the weight or shares, the CPUs and the pids limit of a cgroup, in
/// cgroup v2's spelling whatever the host runs (v1's cpu.shares as the weight runc converts it
/// to, so both layouts compare to the same values).
fn cpu_and_pids(dirs: &[PathBuf]) -> [String; 4] {
    let v = |file: &str| cgroup_value(dirs, file).unwrap_or_else(|| panic!("no {file} in {dirs:?}"));
    let (max, weight) = if cgroup_value(dirs, "cpu.max").is_some() {
        (v("cpu.max"), v("cpu.weight"))
    } else {
        let weight = runtime_weight(v("cpu.shares").parse().unwrap());
        (format!("{} {}", v("cpu.cfs_quota_us"), v("cpu.cfs_period_us")), weight.to_string())
    };
    [max, weight, v("cpuset.cpus"), v("pids.max")]
}

/// runc's shares → weight conversion, written out here so that the test does not use the code
/// it checks.
fn runtime_weight(shares: u64) -> u64 {
    1 + (shares - 2) * 9999 / 262_142
}

#[test]
fn test_docker_resource_flags_reach_the_monitors_cgroup() {
    require_kvm!();
    let docker = Dockerd::start();
    docker.import("unik-hello:test", "hello", &[], r#"["/hello.hvt"]"#);
    let name = format!("unik-res-{}", std::process::id());
    docker.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "unik",
        "--network",
        "none",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "-m",
        "64m",
        "unik-hello:test",
        "/hello.hvt",
        "sleep=600000",
    ]);
    docker.wait_logs(&name, "cmdline: sleep=600000");
    let pid = docker.ok(&["inspect", "--format", "{{.State.Pid}}", &name]).trim().to_string();
    let dirs = cgroup_dirs_of(&pid);
    assert!(!dirs.is_empty(), "no cgroup for monitor {pid}");
    // 512 shares are cpu.weight 20 on cgroup v2.
    assert_eq!(runtime_weight(512), 20);
    assert_eq!(cpu_and_pids(&dirs), ["50000 100000", "20", "0", "50"]);
    // -m 64m: a 64 MiB guest in a cgroup of 64 + 32 MiB; docker's default swap (as much again)
    // on top where the host accounts swap.
    let memory = cgroup_value(&dirs, "memory.max").or_else(|| cgroup_value(&dirs, "memory.limit_in_bytes"));
    assert_eq!(memory, Some((96u64 << 20).to_string()));
    if let Some(memsw) = cgroup_value(&dirs, "memory.memsw.limit_in_bytes") {
        assert_eq!(memsw, (160u64 << 20).to_string());
    }

    // docker update sends the container's whole resources again, with the new values.
    docker.ok(&["update", "--cpus", "0.25", "--pids-limit", "40", &name]);
    assert_eq!(cpu_and_pids(&dirs), ["25000 100000", "20", "0", "40"]);
    assert_eq!(
        cgroup_value(&dirs, "memory.max").or_else(|| cgroup_value(&dirs, "memory.limit_in_bytes")),
        Some((96u64 << 20).to_string())
    );
    // Guest memory cannot shrink: refused, naming the field; nothing changes.
    let out = docker.docker(&["update", "-m", "32m", "--memory-swap", "64m", &name]);
    assert!(!out.status.success(), "shrunk a running guest's memory");
    assert!(
        stderr(&out).contains("linux.resources.memory.limit: 33554432 bytes is below the 64 MiB of guest memory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(cpu_and_pids(&dirs), ["25000 100000", "20", "0", "40"]);
    docker.ok(&["rm", "-f", &name]);

    // A Linux-boot guest with 2 vCPUs has 4 tasks (its 2 vCPU threads, the device thread and
    // KVM's worker for the VM): a pids limit of 4 is enough, and it runs …
    let unik_json = br#"{"dev.unik.kernel": "/virtio.hvt"}"#;
    docker.import(
        "unik-virtio:test",
        "virtio",
        &[("unik.json", unik_json)],
        r#"["/virtio.hvt", "exit=7"]"#,
    );
    let run = |pids: &str| {
        docker.docker(&[
            "run",
            "--name",
            &name,
            "--runtime",
            "unik",
            "--network",
            "none",
            "--cpus",
            "2",
            "--pids-limit",
            pids,
            "unik-virtio:test",
        ])
    };
    let out = run("4");
    assert_eq!(out.status.code(), Some(7), "{} / {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("virtio: done"), "{}", stdout(&out));
    docker.ok(&["rm", &name]);

    // … and 3 is refused at create, with the reason on docker's stderr and nothing left.
    let out = run("3");
    assert!(!out.status.success(), "ran with too small a pids limit: {}", stdout(&out));
    assert!(
        stderr(&out).contains("linux.resources.pids.limit: 3 leaves no room for the monitor's 4 tasks"),
        "{}",
        stderr(&out)
    );
    let id = docker.ok(&["inspect", "--format", "{{.Id}}", &name]).trim().to_string();
    docker.ok(&["rm", &name]);
    docker.assert_no_state_left();
    let root = PathBuf::from("/sys/fs/cgroup");
    let hierarchies = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path());
    for h in std::iter::once(root.clone()).chain(hierarchies) {
        let dir = h.join("docker").join(&id);
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let monitors = Command::new("pgrep").args(["-f", &format!("__monitor.*{id}")]).output().unwrap();
    assert!(stdout(&monitors).trim().is_empty(), "monitor left: {}", stdout(&monitors));
}

#[test]
fn test_docker_configuration_errors_are_loud_and_name_what_is_wrong() {
    require_kvm!();
    let docker = Dockerd::start();
    // A typo in /unik.json (docker passes no annotations): an error naming the key and the
    // known ones, and nothing left behind.
    let typo = br#"{"dev.unik.blok.storage": "/disk.img"}"#;
    docker.import(
        "unik-typo:test",
        "blk",
        &[("unik.json", typo), ("disk.img", &[0u8; 4096])],
        r#"["/blk.hvt"]"#,
    );
    let out = docker.docker(&["run", "--rm", "--runtime", "unik", "--network", "none", "unik-typo:test"]);
    assert!(!out.status.success(), "ran: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unknown annotation 'dev.unik.blok.storage': unik knows") && err.contains("dev.unik.block.<NAME>"),
        "{err}"
    );
    // A manifest block device without an image: the error points docker users at /unik.json.
    docker.import("unik-noblk:test", "blk", &[], r#"["/blk.hvt"]"#);
    let out = docker.docker(&["run", "--rm", "--runtime", "unik", "--network", "none", "unik-noblk:test"]);
    assert!(!out.status.success(), "ran: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("manifest block device 'storage' has no image") && err.contains("/unik.json"),
        "{err}"
    );
    // A kernel that is not one: the error names it as the container sees it, not by the
    // engine's overlay directory.
    let unik_json = br#"{"dev.unik.kernel": "/boot/kernel.bin", "dev.unik.kind": "linux"}"#;
    docker.import_files(
        "unik-badkernel:test",
        &[("unik.json", unik_json), ("boot/kernel.bin", b"not a kernel at all")],
        r#"["/boot/kernel.bin"]"#,
    );
    let out = docker.docker(&["run", "--rm", "--runtime", "unik", "--network", "none", "unik-badkernel:test"]);
    assert!(!out.status.success(), "ran: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("/boot/kernel.bin: not a kernel unik can boot"), "{err}");
    assert!(!err.contains("overlay") && !err.contains("/merged/"), "a host path in: {err}");
    docker.assert_no_state_left();
}

#[test]
fn test_unik_pack_images_load_into_docker_and_run() {
    require_kvm!();
    let docker = Dockerd::start();
    let dir = common::tempdir();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // The README's example: an hvt unikernel whose packed arguments make it exit with 7.
    let hello = guest("hello");
    let id = common::pack(&[
        "-t",
        "unik-pack-hello:1.0",
        "-o",
        &path("hello.tar"),
        hello.to_str().unwrap(),
        "--arg",
        "exit=7",
    ]);
    let loaded = docker.ok(&["load", "-i", &path("hello.tar")]);
    assert!(loaded.contains("Loaded image: unik-pack-hello:1.0"), "{loaded}");
    assert_eq!(
        docker
            .ok(&["image", "inspect", "--format", "{{.Id}}", "unik-pack-hello:1.0"])
            .trim(),
        id
    );
    let labels = docker.ok(&["image", "inspect", "--format", "{{json .Config.Labels}}", "unik-pack-hello:1.0"]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels, serde_json::json!({ "dev.unik.kernel": "/hello", "dev.unik.kind": "hvt" }));
    let run = |image: &str, args: &[&str]| {
        let mut all = vec!["run", "--rm", "--runtime", "unik", "--network", "none", image];
        all.extend_from_slice(args);
        docker.docker(&all)
    };
    let out = run("unik-pack-hello:1.0", &[]);
    assert_eq!(out.status.code(), Some(7), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Hello, world") && stdout(&out).contains("cmdline: exit=7"),
        "{}",
        stdout(&out)
    );
    // Arguments on docker's command line replace the packed ones (the kernel is the entrypoint).
    let out = run("unik-pack-hello:1.0", &["exit=9"]);
    assert_eq!(out.status.code(), Some(9), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("cmdline: exit=9"), "{}", stdout(&out));

    // An hvt unikernel with a disk image: its manifest's block device is wired to the image's copy.
    let disk = common::disk(&dir, "disk.img", 1 << 20, 0);
    let blk = guest("blk");
    common::pack(&[
        "--block",
        &format!("storage={}", disk.display()),
        "--mem",
        "8",
        "-t",
        "unik-pack-blk:1.0",
        "-o",
        &path("blk.tar"),
        blk.to_str().unwrap(),
    ]);
    docker.ok(&["load", "-i", &path("blk.tar")]);
    let out = run("unik-pack-blk:1.0", &[]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("blk: ok capacity=1048576 block_size=512"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read(&disk).unwrap(),
        vec![0; 1 << 20],
        "the guest wrote the image's copy, not the packed file"
    );

    // A Linux-boot kernel with an initrd and a virtio disk.
    std::fs::write(path("initrd.img"), b"an initrd of 25 bytes....").unwrap();
    let data = common::disk(&dir, "data.img", 8192, b'K');
    let virtio = guest("virtio");
    common::pack(&[
        "--initrd",
        &path("initrd.img"),
        "--block",
        &format!("d0={}", data.display()),
        "--arg",
        "exit=4",
        "-t",
        "unik-pack-virtio:1.0",
        "-o",
        &path("virtio.tar"),
        virtio.to_str().unwrap(),
    ]);
    docker.ok(&["load", "-i", &path("virtio.tar")]);
    let out = run("unik-pack-virtio:1.0", &[]);
    let logs = stdout(&out);
    assert_eq!(out.status.code(), Some(4), "{logs} / {}", stderr(&out));
    for line in [
        "virtio: initrd addr=",
        "virtio-blk: capacity=16 ro=0",
        "virtio-blk: read0 status=0 first=KKKKKKKK",
        "virtio: done",
    ] {
        assert!(logs.lines().any(|l| l.starts_with(line)), "no {line:?} in:\n{logs}");
    }
    assert!(logs.contains("size=25"), "the initrd: {logs}");
    docker.assert_no_state_left();
}
