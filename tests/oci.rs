//! unik as an OCI runtime, end to end: the real binary through every command, against bundles
//! the tests build, with the monitor reaped here (the test process is a child subreaper, as
//! containerd's shim is).

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use base64::Engine as _;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::guests::guest;
use common::{stderr, tempdir};

/// A bundle directory, a state root and a console file for one test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(args: &[&str], annotations: serde_json::Value) -> Env {
        become_subreaper();
        let dir = tempdir();
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy(guest("hello"), rootfs.join("hello.hvt")).unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "args": args, "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" },
            "annotations": annotations,
            "linux": { "resources": { "memory": { "limit": 16 << 20 } } }
        });
        std::fs::write(dir.path().join("bundle/config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
        Env { dir }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn console(&self) -> PathBuf {
        self.dir.path().join("console")
    }

    /// `unik --root R ARGS` for commands that may start a monitor: the monitor inherits stdio
    /// (as a container's process does), so stdout goes to the console file and stderr to a file
    /// read back once the command returns — pipes would stay open as long as the monitor lives.
    fn unik(&self, args: &[&str]) -> Output {
        self.unik_with(args, &[])
    }

    /// [`unik`](Self::unik) with extra environment variables.
    fn unik_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let console = File::options().create(true).append(true).open(self.console()).unwrap();
        let err_path = self.dir.path().join("stderr");
        let err = File::create(&err_path).unwrap();
        let status = common::unik()
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(err)
            .envs(envs.iter().copied())
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&err_path).unwrap(),
        }
    }

    /// Like `unik` but returns what the command itself printed (it starts no monitor).
    fn query(&self, args: &[&str]) -> Output {
        common::unik().arg("--root").arg(self.root()).args(args).output().unwrap()
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let out = self.query(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn console_text(&self) -> String {
        std::fs::read_to_string(self.console()).unwrap_or_default()
    }

    fn create(&self, id: &str) -> i32 {
        let pid_file = self.dir.path().join(format!("{id}.pid"));
        let out = self.unik(&[
            "create",
            "--bundle",
            self.bundle().to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            id,
        ]);
        assert!(out.status.success(), "create: {}", stderr(&out));
        std::fs::read_to_string(pid_file).unwrap().parse().unwrap()
    }
}

fn become_subreaper() {
    static ONCE: Once = Once::new();
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes who reaps our orphaned descendants.
    ONCE.call_once(|| assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0));
}

/// Waits for the reparented monitor and returns its raw wait status.
fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on a process reparented to us (we are a subreaper).
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

/// Polls `f` until it holds. The deadline is a liveness one (a container that never gets there
/// fails instead of hanging the suite), generous for a loaded machine; nothing is timed.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_create_start_state_exit_delete() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "exit=7"], serde_json::json!({ "example": "yes" }));
    let pid = env.create("c1");
    // The container's state is under the root here: the "nothing left" checks of every test
    // (`!env.root().join(ID).exists()`) look at the right place.
    assert!(env.root().join("c1/state.json").is_file());
    let st = env.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], "c1");
    assert_eq!(st["annotations"]["example"], "yes");
    assert!(st["bundle"].as_str().unwrap().ends_with("/bundle"));
    // runc's fields and nothing of unik's own bookkeeping.
    let mut keys: Vec<&str> = st.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "annotations",
            "bundle",
            "created",
            "id",
            "ociVersion",
            "owner",
            "pid",
            "rootfs",
            "status"
        ]
    );
    assert!(!env.console_text().contains("Hello"), "the guest ran before start");
    let ps = env.query(&["ps", "--format", "json", "c1"]);
    assert_eq!(serde_json::from_slice::<Vec<i32>>(&ps.stdout).unwrap(), [pid]);

    let out = env.unik(&["start", "c1"]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let status = reap(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7, "wait status {status:#x}");
    assert!(env.console_text().contains("Hello, world"), "console: {}", env.console_text());
    let st = env.state("c1");
    assert_eq!((&st["status"], &st["pid"]), (&serde_json::json!("stopped"), &serde_json::json!(0)));
    let out = env.query(&["start", "c1"]);
    assert!(
        !out.status.success() && stderr(&out).contains("stopped, not created"),
        "{}",
        stderr(&out)
    );
    let out = env.query(&["kill", "c1", "15"]);
    assert!(
        !out.status.success() && stderr(&out).contains("container not running"),
        "{}",
        stderr(&out)
    );
    let out = env.query(&["delete", "c1"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(!env.root().join("c1").exists());
    let out = env.query(&["state", "c1"]);
    assert!(!out.status.success() && stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn test_sigterm_stops_a_running_guest_like_a_container() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
    let pid = env.create("c2");
    assert!(env.unik(&["start", "c2"]).status.success());
    wait_until("running", || env.state("c2")["status"] == "running");
    let out = env.query(&["delete", "c2"]);
    assert!(
        !out.status.success() && stderr(&out).contains("not stopped: running"),
        "{}",
        stderr(&out)
    );
    assert!(env.query(&["kill", "c2", "SIGTERM"]).status.success());
    let status = reap(pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM,
        "wait status {status:#x}"
    );
    assert_eq!(env.state("c2")["status"], "stopped");
    assert!(env.query(&["delete", "c2"]).status.success());
}

#[test]
fn test_the_container_monitor_runs_confined_without_inherited_descriptors() {
    require_kvm!();
    use std::os::unix::process::CommandExt;
    let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
    // `create` inherits fd 47 from its caller (as from a shell): the monitor must not keep it.
    let leaked = File::create(env.dir.path().join("leaked")).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    let pid_file = env.dir.path().join("m.pid");
    let console = File::create(env.console()).unwrap();
    let mut cmd = common::unik();
    cmd.arg("--root").arg(env.root()).args(["create", "--bundle"]).arg(env.bundle());
    cmd.arg("--pid-file").arg(&pid_file).arg("m1");
    cmd.stdin(Stdio::null()).stdout(console).stderr(Stdio::null());
    // SAFETY: dup2 in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 47) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert!(cmd.status().unwrap().success());
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(env.unik(&["start", "m1"]).status.success());
    wait_console(&env, "Hello, world");
    common::assert_confined(pid.cast_unsigned());
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!fds.iter().any(|n| n == "47"), "the monitor kept the inherited fd 47: {fds:?}");
    assert!(env.query(&["kill", "m1", "SIGTERM"]).status.success());
    let status = reap(pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM, "{status:#x}");
    assert!(env.query(&["delete", "m1"]).status.success());
}

#[test]
fn test_the_monitor_is_jailed_in_the_specs_namespaces_as_its_user() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["hostname"] = serde_json::json!("unikbox");
    config["process"]["user"] = serde_json::json!({ "uid": 1234, "gid": 2345, "additionalGids": [3456] });
    config["process"]["rlimits"] = serde_json::json!([{ "type": "RLIMIT_NOFILE", "soft": 200, "hard": 300 }]);
    config["process"]["oomScoreAdj"] = serde_json::json!(500);
    config["linux"]["namespaces"] = serde_json::json!([
        { "type": "mount" }, { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "network" }
    ]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let pid = env.create("j1");
    assert!(env.unik(&["start", "j1"]).status.success());
    wait_console(&env, "Hello, world");
    common::assert_confined(pid.cast_unsigned());
    for ns in ["mnt", "pid", "ipc", "uts", "net"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "the monitor shares our {ns} namespace");
    }
    let field = |name: &str| common::status_field(pid.to_string().parse().unwrap(), name);
    assert_eq!(
        field("NSpid:"),
        [pid.to_string().as_str(), "1"],
        "the monitor is its pid namespace's init"
    );
    assert_eq!(field("Uid:"), ["1234"; 4]);
    assert_eq!(field("Gid:"), ["2345"; 4]);
    assert_eq!(field("Groups:"), ["3456"]);
    // An empty, read-only root, and nothing else mounted.
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root/")).unwrap().collect();
    assert!(root.is_empty(), "{root:?}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert_eq!(mounts.lines().count(), 1, "{mounts}");
    assert!(mounts.contains(" / / ro,") && mounts.contains(" tmpfs "), "{mounts}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(nofile.split_whitespace().collect::<Vec<_>>()[3..5], ["200", "300"], "{nofile}");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim(), "500");
    let uts = format!("--uts=/proc/{pid}/ns/uts");
    let hostname = Command::new("nsenter").args([uts.as_str(), "hostname"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "unikbox");
    assert!(env.query(&["kill", "j1", "SIGTERM"]).status.success());
    // Its pid namespace's init is not ended by its own signal: it exits as a shell reports it.
    let status = reap(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 143, "{status:#x}");
    assert!(env.query(&["delete", "j1"]).status.success());
    assert!(!env.root().join("j1").exists());
}

#[test]
fn test_pause_resume_and_force_delete() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
    let pid = env.create("c3");
    assert!(env.unik(&["start", "c3"]).status.success());
    assert!(env.query(&["pause", "c3"]).status.success());
    assert_eq!(env.state("c3")["status"], "paused");
    assert!(env.query(&["resume", "c3"]).status.success());
    assert_eq!(env.state("c3")["status"], "running");
    let out = env.query(&["delete", "--force", "c3"]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    let status = reap(pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    assert!(!env.root().join("c3").exists());
}

#[test]
fn test_a_spec_whose_args_are_edited_boots_the_kernel_named_there() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt"], serde_json::json!({}));
    let bundle = env.dir.path().join("spec-bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let out = env.query(&["spec", "--bundle", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // As a runc user would: put a kernel in the rootfs and name it in process.args.
    std::fs::copy(guest("hello"), bundle.join("rootfs/app.hvt")).unwrap();
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["/app.hvt", "exit=5"]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = env.unik(&["run", "--bundle", bundle.to_str().unwrap(), "edited"]);
    assert_eq!(out.status.code(), Some(5), "run: {}", stderr(&out));
    assert!(env.console_text().contains("cmdline: exit=5"), "{}", env.console_text());
}

#[test]
fn test_run_in_the_foreground_returns_the_guest_status() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "exit=3"], serde_json::json!({}));
    let out = env.unik(&["run", "--bundle", env.bundle().to_str().unwrap(), "c4"]);
    assert_eq!(out.status.code(), Some(3), "run: {}", stderr(&out));
    assert!(env.console_text().contains("Hello, world"));
    assert!(!env.root().join("c4").exists(), "run left the container behind");

    // A signal to a foreground `run` goes to the guest (as runc passes it to the container):
    // it stops, and run reports the status and removes the container.
    let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
    let err_path = env.dir.path().join("run.stderr");
    let mut run = common::unik()
        .arg("--root")
        .arg(env.root())
        .args(["run", "--bundle", env.bundle().to_str().unwrap(), "c4b"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    wait_until("running", || {
        let out = env.query(&["state", "c4b"]);
        out.status.success() && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["status"] == "running"
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(i32::try_from(run.id()).unwrap(), libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match run.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let left = env.root().join("c4b").exists();
    if left || status.is_none() {
        let _ = run.kill();
        let _ = env.query(&["delete", "--force", "c4b"]);
    }
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(128 + libc::SIGTERM), "run: {err}");
    assert!(!left, "run left the container behind");
}

// The loader's errors this test expects are x86_64's (bzImage, ELF vmlinux, PVH, multiboot);
// aarch64 boots arm64 Images and refuses anything else with its own message, which
// tests/linux_arm64.rs checks.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_monitor_errors_come_back_from_create_and_leave_nothing() {
    require_kvm!();
    // A Linux-boot kernel that is an ELF header and nothing else: detected at create, refused by
    // the monitor's loader.
    let env = Env::new(
        &["/bad.elf"],
        serde_json::json!({ "dev.unik.kernel": "/bad.elf", "dev.unik.kind": "linux" }),
    );
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    std::fs::write(env.bundle().join("rootfs/bad.elf"), elf).unwrap();
    // The monitor joins its cgroup before the build fails: nothing of it may remain either.
    let rel = format!("unik-test-err-{}/c5", std::process::id());
    // A hook (run once the monitor joined its cgroup, before the build) records that the
    // cgroup was there: "gone" below then means removed, not never made.
    let marker = env.dir.path().join("cgroup-was-there");
    let check = cgroup_dirs(&rel)
        .iter()
        .map(|d| format!("test -d {} &&", d.display()))
        .collect::<Vec<_>>()
        .join(" ");
    let hook = format!("{check} touch {}", marker.display());
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["linux"]["cgroupsPath"] = serde_json::json!(format!("/{rel}"));
    config["hooks"] = serde_json::json!({ "createRuntime": [{ "path": "/bin/sh", "args": ["sh", "-c", hook] }] });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let log = env.dir.path().join("log.json");
    let out = env.unik(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        env.bundle().to_str().unwrap(),
        "c5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a kernel unik can boot"), "{}", stderr(&out));
    let last_error = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["level"] == "error")
        .expect("an error line in log.json");
    assert!(
        last_error["msg"].as_str().unwrap().contains("Invalid program header size"),
        "{last_error}"
    );
    assert!(!env.root().join("c5").exists());
    assert!(marker.exists(), "the container's cgroup was never made");
    for d in cgroup_dirs(&rel) {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
        let _ = std::fs::remove_dir(d.parent().unwrap());
    }
    let out = env.query(&["list", "--format", "json"]);
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap().len(), 0);
}

#[test]
fn test_a_hook_that_times_out_fails_create_once_and_leaves_nothing() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt"], serde_json::json!({}));
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["hooks"] = serde_json::json!({ "createRuntime": [
        { "path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1 }
    ] });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = env.unik(&["create", "--bundle", env.bundle().to_str().unwrap(), "ch"]);
    assert_eq!(out.status.code(), Some(1));
    // The monitor shares stderr and may still be on its way out: wait until no process holds
    // the file open any more (the monitor has ended), then everything was said.
    let err_path = env.dir.path().join("stderr");
    wait_until("the monitor to let go of stderr", || holders(&err_path).is_empty());
    let err = std::fs::read_to_string(&err_path).unwrap();
    // The hook's failure, said once (by create; the monitor it started stays quiet).
    assert_eq!(err.matches("createRuntime hook /bin/sh: timed out after 1s").count(), 1, "{err}");
    assert!(!err.contains("gave up"), "{err}");
    assert!(!env.root().join("ch").exists());
}

/// The pids of the processes that have `path` open.
fn holders(path: &std::path::Path) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
        })
        .collect()
}

#[test]
fn test_the_files_create_opened_are_the_ones_that_boot() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "exit=7"], serde_json::json!({}));
    // Another guest on the host, outside the rootfs, and a hook that runs after `create` checked
    // the bundle but before the monitor builds the VM: it swaps the kernel for an absolute
    // symlink to that host file.
    let outside = env.dir.path().join("outside.hvt");
    std::fs::copy(guest("halt"), &outside).unwrap();
    let kernel = env.bundle().join("rootfs/hello.hvt");
    let swap = format!("rm {} && ln -s {} {}", kernel.display(), outside.display(), kernel.display());
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["hooks"] = serde_json::json!({ "createRuntime": [{ "path": "/bin/sh", "args": ["sh", "-c", swap] }] });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let pid = env.create("sw");
    assert!(std::fs::symlink_metadata(&kernel).unwrap().file_type().is_symlink(), "the hook ran");
    // The monitor holds no descriptor of the guest's files once the VM is built.
    let held: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert!(!held.iter().any(|p| p.to_string_lossy().contains(".hvt")), "{held:?}");
    // The kernel `create` opened inside the rootfs boots: neither the host file the symlink
    // names nor nothing (the symlink resolved inside the rootfs, where there is no such file).
    assert!(env.unik(&["start", "sw"]).status.success());
    let status = reap(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7, "wait status {status:#x}");
    assert!(env.console_text().contains("Hello, world"), "console: {}", env.console_text());
    assert!(env.query(&["delete", "sw"]).status.success());
}

#[test]
fn test_bad_bundles_are_refused_clearly() {
    // Without runc, an ordinary bundle is refused rather than handed over.
    const NO_RUNC: &[(&str, &str)] = &[("UNIK_RUNC", "/nonexistent/runc")];
    let env = Env::new(&["/bin/sh"], serde_json::json!({}));
    let out = env.unik_with(&["create", "--bundle", env.bundle().to_str().unwrap(), "c6"], NO_RUNC);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not a unikernel"), "{}", stderr(&out));
    assert!(!env.root().join("c6").exists());
    // Which check failed: here, args[0] is not in the rootfs at all.
    assert!(
        stderr(&out).contains("process.args[0] '/bin/sh' in the rootfs: No such file or directory"),
        "{}",
        stderr(&out)
    );
    // With runc, the bundle goes to it, and the log says why.
    let runc = env.dir.path().join("fake-runc");
    std::fs::write(&runc, "#!/bin/sh\necho \"fake runc: $*\" >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&runc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        env.bundle().join("rootfs/typo.hvt"),
        "#!/bin/sh\necho this is a script, not a unikernel\n".repeat(4),
    )
    .unwrap();
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["/typo.hvt"]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let with_runc = [("UNIK_RUNC", runc.to_str().unwrap())];
    let out = env.unik_with(&["create", "--bundle", env.bundle().to_str().unwrap(), "c6b"], &with_runc);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("fake runc: --root"), "{err}");
    assert!(
        err.contains("unik: warn: bundle") && err.contains("process.args[0] '/typo.hvt' is not an ELF file"),
        "{err}"
    );
    assert!(err.contains(&format!("handing it to {}", runc.display())), "{err}");
    // A damaged unikernel (e_phnum zeroed) is still one: the loader's error, not runc's.
    let mut damaged = std::fs::read(guest("hello")).unwrap();
    damaged[56..58].fill(0);
    std::fs::write(env.bundle().join("rootfs/typo.hvt"), damaged).unwrap();
    let out = env.unik_with(&["create", "--bundle", env.bundle().to_str().unwrap(), "c6c"], &with_runc);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid executable: bad ELF header or program header sizes"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("fake runc"), "{}", stderr(&out));
    assert!(!env.root().join("c6c").exists());
    let out = env.unik_with(&["create", "--bundle", "/nonexistent", "c7"], NO_RUNC);
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    let out = env.unik_with(&["create", "--bundle", env.bundle().to_str().unwrap(), "../evil"], NO_RUNC);
    assert!(stderr(&out).contains("invalid container id"), "{}", stderr(&out));
}

#[test]
fn test_features_spec_exec_and_update() {
    let env = Env::new(&["/hello.hvt"], serde_json::json!({}));
    let out = env.query(&["features"]);
    let features: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert_eq!(features["hooks"][0], "prestart");
    assert_eq!(
        features["linux"]["namespaces"],
        serde_json::json!(["mount", "pid", "ipc", "uts", "network"])
    );
    let spec_dir = tempdir();
    let out = env.query(&["spec", "--bundle", spec_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(spec_dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["/unikernel.hvt"]));
    assert!(spec["annotations"].get("dev.unik.kernel").is_none(), "{spec}");
    let out = env.query(&["spec", "--bundle", spec_dir.path().to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("already exists"));
    let out = env.query(&["exec", "--process", "/tmp/p.json", "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not supported for unikernels"), "{}", stderr(&out));
    for args in [
        &["checkpoint", "--image-path", "/tmp/img", "c1"][..],
        &["restore", "c1"],
        &["events", "--stats", "c1"],
    ] {
        let out = env.query(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains(&format!("{} is not supported for unikernels", args[0])),
            "{}",
            stderr(&out)
        );
    }
    let out = env.query(&["update", "--resources", "-", "nope"]);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn test_runc_globals_are_accepted() {
    let env = Env::new(&["/hello.hvt"], serde_json::json!({}));
    let out = env.query(&["--systemd-cgroup", "--rootless=false", "--debug", "list", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A log file that cannot be opened is refused, not silently dropped.
    let out = env.query(&["--log", "/nonexistent/dir/log.json", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("opening log file /nonexistent/dir/log.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_console_socket_receives_the_guest_terminal() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "exit=9"], serde_json::json!({}));
    let socket = env.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let pid_file = env.dir.path().join("c8.pid");
    let out = env.unik(&[
        "create",
        "--bundle",
        env.bundle().to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "c8",
    ]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let (stream, _) = listener.accept().unwrap();
    let master = runtime::console::recv_fd(&stream).unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(env.unik(&["start", "c8"]).status.success());
    let status = reap(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 9, "wait status {status:#x}");
    let mut console = String::new();
    let mut file = File::from(master);
    let mut buf = [0u8; 256];
    // The slave side is closed now; read until EIO/EOF.
    while let Ok(n) = std::io::Read::read(&mut file, &mut buf) {
        if n == 0 {
            break;
        }
        console.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(console.contains("Hello, world\r\n"), "{console:?}");
    assert!(!env.console_text().contains("Hello"), "output went to stdout, not the terminal");
    assert!(env.query(&["delete", "c8"]).status.success());
}

/// Two namespaces joined by veth pairs: "host" holds 10.9N.0.1 on `vhN`, "container" holds
/// 10.9N.0.2 on `cethN` with a default route, as docker or a CNI plugin would set up.
struct Net {
    host: common::netns::NetNs,
    container: common::netns::NetNs,
}

impl Net {
    fn new(pairs: u8) -> Net {
        let net = Net {
            host: common::netns::NetNs::new(),
            container: common::netns::NetNs::new(),
        };
        for n in 0..pairs {
            let (vh, ceth) = (format!("vh{n}"), format!("ceth{n}"));
            let out = Command::new("ip")
                .args([
                    "link",
                    "add",
                    &vh,
                    "netns",
                    &net.host.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &ceth,
                    "netns",
                    &net.container.name,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "veth: {}", String::from_utf8_lossy(&out.stderr));
            net.host.exec_ok(&["ip", "addr", "add", &format!("10.9{n}.0.1/24"), "dev", &vh]);
            net.host.exec_ok(&["ip", "link", "set", &vh, "up"]);
            net.container
                .exec_ok(&["ip", "addr", "add", &format!("10.9{n}.0.2/24"), "dev", &ceth]);
            net.container.exec_ok(&["ip", "link", "set", &ceth, "up"]);
            if n == 0 {
                net.container.exec_ok(&["ip", "route", "add", "default", "via", "10.90.0.1"]);
            }
        }
        net
    }

    fn ping(&self, addr: &str, count: u32) -> bool {
        self.host
            .command(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "5", addr])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// The container side after the guest ended, before `delete`: the tap went with the monitor,
    /// the ingress qdisc of the splice is still there.
    fn assert_spliced(&self) {
        let links = self.container.links();
        assert!(!links.contains(": uk"), "tap left behind: {links}");
        let qdiscs = String::from_utf8_lossy(&self.container.exec_ok(&["tc", "qdisc", "show"]).stdout).into_owned();
        assert!(qdiscs.contains("ingress"), "no splice: {qdiscs}");
    }

    /// The container side: no ingress qdisc left on the interfaces, no unik tap left.
    fn assert_clean(&self) {
        let links = self.container.links();
        assert!(!links.contains(": uk"), "tap left behind: {links}");
        let qdiscs = String::from_utf8_lossy(&self.container.exec_ok(&["tc", "qdisc", "show"]).stdout).into_owned();
        assert!(!qdiscs.contains("ingress"), "splice left behind: {qdiscs}");
    }
}

fn net_env(net: &Net, args: &[&str]) -> Env {
    let env = Env::new(args, serde_json::json!({ "dev.unik.net.template": "ip={ip} gw={gateway}" }));
    std::fs::copy(guest("net"), env.bundle().join("rootfs/net.hvt")).unwrap();
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["linux"]["namespaces"] = serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", net.container.name) }]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    env
}

fn wait_console(env: &Env, needle: &str) {
    wait_until(needle, || env.console_text().contains(needle));
}

#[test]
fn test_guest_takes_over_the_container_interface() {
    require_kvm!();
    let net = Net::new(1);
    let env = net_env(&net, &["/net.hvt", "count=3", "timeout=60"]);
    let pid = env.create("n1");
    assert!(env.unik(&["start", "n1"]).status.success());
    wait_console(&env, "ready");
    // The tap's root qdisc is noqueue, not the kernel's default pfifo_fast (24 KiB of rings).
    let qdiscs = String::from_utf8_lossy(&net.container.exec_ok(&["tc", "qdisc", "show"]).stdout).into_owned();
    let tap: Vec<&str> = qdiscs.lines().filter(|l| l.contains(" dev uk") && l.contains(" root ")).collect();
    assert!(tap.len() == 1 && tap[0].starts_with("qdisc noqueue "), "{qdiscs}");
    assert!(net.ping("10.90.0.2", 3), "ping failed; console: {}", env.console_text());
    let status = reap(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "wait status {status:#x}; console: {}",
        env.console_text()
    );
    let console = env.console_text();
    assert!(console.contains("net: cmdline: ip=10.90.0.2 gw=10.90.0.1 count=3"), "{console}");
    let link = String::from_utf8_lossy(&net.container.exec_ok(&["ip", "-o", "link", "show", "ceth0"]).stdout).into_owned();
    let mac = link.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    assert!(
        console.contains(&format!("net: mac={mac}")),
        "guest MAC is not ceth0's {mac}: {console}"
    );
    assert!(console.contains("net: answered 3 pings"), "{console}");
    // The monitor, confined once its guest ran, leaves the splice for `delete` to remove.
    net.assert_spliced();
    assert!(env.query(&["delete", "n1"]).status.success());
    net.assert_clean();
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_urunc_firecracker_bundle_boots_in_process_with_virtio() {
    require_kvm!();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let net = Net::new(1);
    // An image built for urunc + Firecracker: unik boots the kernel itself (Linux boot
    // protocol), its block image as virtio-blk, its network as virtio-net on the container
    // interface.
    let env = Env::new(
        &[],
        serde_json::json!({
            "com.urunc.unikernel.binary": b64("/kernel"),
            "com.urunc.unikernel.hypervisor": b64("firecracker"),
            "com.urunc.unikernel.unikernelType": b64("linux"),
            "com.urunc.unikernel.block": b64("/rootfs.img"),
            "com.urunc.unikernel.cmdline": b64("exit=7"),
            "dev.unik.net.template": "ip={ip} pings=2 timeout=60",
        }),
    );
    std::fs::copy(guest("virtio"), env.bundle().join("rootfs/kernel")).unwrap();
    std::fs::write(env.bundle().join("rootfs/rootfs.img"), vec![b'U'; 64 << 10]).unwrap();
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["linux"]["namespaces"] = serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", net.container.name) }]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let pid = env.create("v1");
    assert!(env.unik(&["start", "v1"]).status.success());
    wait_console(&env, "ready");
    assert!(net.ping("10.90.0.2", 2), "ping failed; console: {}", env.console_text());
    let status = reap(pid);
    let console = env.console_text();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
        "wait status {status:#x}; console: {console}"
    );
    assert!(
        console.contains(
            "virtio: cmdline: ip=10.90.0.2 pings=2 timeout=60 exit=7 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
        ),
        "{console}"
    );
    assert!(console.contains("virtio-blk: read0 status=0 first=UUUUUUUU"), "{console}");
    assert!(console.contains("virtio-blk: id status=0 id=rootfs"), "{console}");
    let link = String::from_utf8_lossy(&net.container.exec_ok(&["ip", "-o", "link", "show", "ceth0"]).stdout).into_owned();
    let mac = link.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    assert!(
        console.contains(&format!("virtio-net: mac={mac} ready")),
        "guest MAC is not ceth0's {mac}: {console}"
    );
    assert!(console.contains("virtio-net: answered 2 pings"), "{console}");
    net.assert_spliced();
    assert!(env.query(&["delete", "v1"]).status.success());
    net.assert_clean();
}

#[test]
fn test_two_unikernels_share_a_namespace_and_kill_cleans_up() {
    require_kvm!();
    let net = Net::new(2);
    let a = net_env(&net, &["/net.hvt", "count=1000", "timeout=120"]);
    let b = net_env(&net, &["/net.hvt", "count=1000", "timeout=120"]);
    // Ids whose 32-bit hashes collide: their taps once had the same name, and the second
    // create failed.
    let pa = a.create("c693596");
    let pb = b.create("c1170850");
    assert!(a.unik(&["start", "c693596"]).status.success() && b.unik(&["start", "c1170850"]).status.success());
    wait_console(&a, "ready");
    wait_console(&b, "ready");
    assert!(
        net.ping("10.90.0.2", 2),
        "ping 10.90.0.2 failed: {} / {}",
        a.console_text(),
        b.console_text()
    );
    assert!(
        net.ping("10.91.0.2", 2),
        "ping 10.91.0.2 failed: {} / {}",
        a.console_text(),
        b.console_text()
    );
    // One guest stops cleanly (SIGTERM), the other is killed outright and cleaned up by delete.
    assert!(a.query(&["kill", "c693596", "TERM"]).status.success());
    reap(pa);
    assert!(b.query(&["kill", "c1170850", "KILL"]).status.success());
    reap(pb);
    assert!(a.query(&["delete", "c693596"]).status.success());
    assert!(b.query(&["delete", "c1170850"]).status.success());
    net.assert_clean();
}

/// The cgroup directories of `rel` in every hierarchy the machine mounts.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.join(rel)];
    }
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .map(|p| p.join(rel))
        .collect()
}

#[test]
fn test_monitor_joins_the_cgroup_with_room_for_guest_memory() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
    let parent = format!("unik-test-{}", std::process::id());
    let rel = format!("{parent}/c9");
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["linux"]["cgroupsPath"] = serde_json::json!(format!("/{rel}"));
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();

    let pid = env.create("c9");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroup.lines().any(|l| l.ends_with(&format!(":/{rel}"))), "{cgroup}");
    let limit = (16u64 << 20) + (32 << 20);
    let dirs = cgroup_dirs(&rel);
    let memory: Vec<String> = ["memory.max", "memory.limit_in_bytes"]
        .iter()
        .flat_map(|f| dirs.iter().map(move |d| d.join(f)))
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    assert_eq!(
        memory.iter().map(|m| m.trim()).collect::<Vec<_>>(),
        [limit.to_string()],
        "memory limit files: {memory:?}"
    );

    // update --resources: the memory limit moves (the limit plus the monitor's overhead, never
    // below guest memory), pids too.
    let res = env.dir.path().join("resources.json");
    std::fs::write(&res, br#"{"memory":{"limit":100663296},"pids":{"limit":50}}"#).unwrap();
    let out = env.query(&["update", "--resources", res.to_str().unwrap(), "c9"]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    let read = |file: &str| {
        dirs.iter()
            .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|v| v.trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        [read("memory.limit_in_bytes"), read("memory.max")].concat(),
        [(100663296u64 + (32 << 20)).to_string()]
    );
    assert_eq!(read("pids.max"), ["50"]);
    std::fs::write(&res, br#"{"memory":{"limit":8388608}}"#).unwrap();
    let out = env.query(&["update", "--resources", res.to_str().unwrap(), "c9"]);
    assert!(
        !out.status.success() && stderr(&out).contains("below the 16 MiB of guest memory"),
        "{}",
        stderr(&out)
    );
    // runc's individual flags: the same rules.
    let out = env.query(&[
        "update",
        "--pids-limit",
        "60",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "c9",
    ]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    assert_eq!(read("pids.max"), ["60"]);
    assert_eq!(
        [read("cpu.max"), read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")]
            .concat()
            .join(" "),
        "20000 100000"
    );
    let out = env.query(&["update", "--blkio-weight", "300", "c9"]);
    assert!(
        !out.status.success() && stderr(&out).contains("linux.resources.blockIO.weight: "),
        "{}",
        stderr(&out)
    );
    // An hvt guest runs on one thread, beside KVM's worker for the VM: a pids limit of 2 is
    // enough (the guest runs below), 1 is not.
    let out = env.query(&["update", "--pids-limit", "1", "c9"]);
    assert!(
        !out.status.success() && stderr(&out).contains("pids.limit: 1 leaves no room for the monitor's 2 tasks"),
        "{}",
        stderr(&out)
    );
    assert!(env.query(&["update", "--pids-limit", "2", "c9"]).status.success());
    assert_eq!(read("pids.max"), ["2"]);

    assert!(env.unik(&["start", "c9"]).status.success());
    assert!(env.query(&["kill", "c9", "KILL"]).status.success());
    reap(pid);
    assert!(env.query(&["delete", "c9"]).status.success());
    for d in cgroup_dirs(&rel) {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
        let _ = std::fs::remove_dir(d.parent().unwrap());
    }
}

#[test]
fn test_ordinary_containers_are_handed_to_runc() {
    let env = Env::new(&["/hello.hvt"], serde_json::json!({}));
    // A busybox bundle from runc's own template.
    let bundle = env.dir.path().join("busybox");
    std::fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
    std::fs::copy("/bin/busybox", bundle.join("rootfs/bin/busybox")).expect("busybox-static (scripts/setup.sh installs it)");
    let out = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .expect("runc (scripts/setup.sh installs it)");
    assert!(out.status.success(), "runc spec: {}", stderr(&out));
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["/bin/busybox", "sh", "-c", "exit 3"]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();

    let out = env.unik(&["run", "--bundle", bundle.to_str().unwrap(), "plain"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // runc keeps its state apart; the container is gone after run.
    assert!(!env.root().join("runc/plain").exists());
    config["process"]["args"] = serde_json::json!(["/bin/busybox", "sleep", "60"]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = env.unik(&["create", "--bundle", bundle.to_str().unwrap(), "plain2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.root().join("runc/plain2/state.json").exists());
    assert_eq!(env.state("plain2")["status"], "created");
    assert!(env.unik(&["start", "plain2"]).status.success());
    // exec (docker exec, health checks) goes to runc too, options before the id included.
    let out = env.query(&[
        "exec",
        "--cwd",
        "/",
        "-e",
        "X=exec-ok",
        "plain2",
        "/bin/busybox",
        "sh",
        "-c",
        "echo $X",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "exec-ok");
    assert!(env.query(&["delete", "--force", "plain2"]).status.success());
    assert!(!env.root().join("runc/plain2").exists());
}

// The loader's errors this test expects are x86_64's (bzImage, ELF vmlinux, PVH, multiboot);
// aarch64 boots arm64 Images and refuses anything else with its own message, which
// tests/linux_arm64.rs checks.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_errors_name_the_guests_files_as_the_container_sees_them() {
    require_kvm!();
    const NO_RUNC: &[(&str, &str)] = &[("UNIK_RUNC", "/nonexistent/runc")];
    let env = Env::new(
        &["/boot/kernel.bin"],
        serde_json::json!({ "dev.unik.kernel": "/boot/kernel.bin", "dev.unik.kind": "linux" }),
    );
    let rootfs = env.bundle().join("rootfs");
    std::fs::create_dir_all(rootfs.join("boot")).unwrap();
    std::fs::write(rootfs.join("boot/kernel.bin"), b"not a kernel at all").unwrap();
    // The monitor's error (the loader's), reported through create.
    let out = env.unik_with(&["create", "--bundle", env.bundle().to_str().unwrap(), "names"], NO_RUNC);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/boot/kernel.bin: not a kernel unik can boot"), "{err}");
    assert!(!err.contains(&rootfs.display().to_string()), "a host path in: {err}");
    // create's own (a damaged unikernel).
    let mut damaged = std::fs::read(guest("hello")).unwrap();
    damaged[56..58].fill(0);
    std::fs::write(rootfs.join("boot/kernel.bin"), damaged).unwrap();
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["annotations"] = serde_json::json!({});
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = env.unik_with(&["create", "--bundle", env.bundle().to_str().unwrap(), "names2"], NO_RUNC);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kernel /boot/kernel.bin: invalid executable"), "{err}");
    assert!(!err.contains(&rootfs.display().to_string()), "a host path in: {err}");
    assert!(!env.root().join("names").exists() && !env.root().join("names2").exists());
}

/// Rewrites the bundle's config.json with `f`.
fn edit_config(env: &Env, f: impl FnOnce(&mut serde_json::Value)) {
    let path = env.bundle().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut config);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

/// The monitor's log (`--log FILE --debug` on create) as text.
fn log_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn test_every_forwarded_signal_ends_a_running_container() {
    require_kvm!();
    // What README says `unik kill` (and a foreground `run`, which passes these on) does: INT and
    // TERM stop the guest cleanly and the monitor ends by the same signal; HUP, QUIT, USR1 and
    // USR2 end it at once by theirs. As the init of its own pid namespace (docker's default),
    // which no default action can end, it exits with 128 + N instead.
    let signals = [
        ("HUP", libc::SIGHUP, false),
        ("INT", libc::SIGINT, true),
        ("QUIT", libc::SIGQUIT, false),
        ("TERM", libc::SIGTERM, true),
        ("USR1", libc::SIGUSR1, false),
        ("USR2", libc::SIGUSR2, false),
    ];
    for pid_ns in [false, true] {
        for (name, signum, clean) in signals {
            // The guest's 60 s sleep is the liveness bound: a signal that is lost lets it end by
            // itself, with status 0, which fails below.
            let env = Env::new(&["/hello.hvt", "sleep=60000"], serde_json::json!({}));
            if pid_ns {
                edit_config(&env, |c| c["linux"]["namespaces"] = serde_json::json!([{ "type": "pid" }]));
            }
            let id = format!("sig-{}-{}", name.to_lowercase(), u8::from(pid_ns));
            let log = env.dir.path().join("monitor.log");
            let pid_file = env.dir.path().join("pid");
            let out = env.unik(&[
                "--log",
                log.to_str().unwrap(),
                "--debug",
                "create",
                "--bundle",
                env.bundle().to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
                &id,
            ]);
            assert!(out.status.success(), "create: {}", stderr(&out));
            let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
            assert!(env.unik(&["start", &id]).status.success());
            // The guest printed its greeting and sleeps in POLL.
            wait_console(&env, "Hello, world");
            let out = env.query(&["kill", &id, name]);
            assert!(out.status.success(), "kill {name}: {}", stderr(&out));
            let status = reap(pid);
            let what = format!("{name} (pid namespace: {pid_ns}): wait status {status:#x}; log: {}", log_text(&log));
            if pid_ns {
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 128 + signum, "{what}");
            } else {
                assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == signum, "{what}");
            }
            // Only INT and TERM go through the guest's clean stop, which the monitor logs.
            let stopped = log_text(&log).contains(&format!("stopping on signal {signum}"));
            assert_eq!(stopped, clean, "{what}");
            assert_eq!(env.state(&id)["status"], "stopped", "{what}");
            assert!(env.query(&["delete", &id]).status.success());
        }
    }
}

#[test]
fn test_a_foreground_run_passes_usr1_and_hup_to_the_container() {
    require_kvm!();
    for (signum, pid_ns) in [(libc::SIGUSR1, false), (libc::SIGHUP, true)] {
        let env = Env::new(&["/hello.hvt", "sleep=600000"], serde_json::json!({}));
        if pid_ns {
            edit_config(&env, |c| c["linux"]["namespaces"] = serde_json::json!([{ "type": "pid" }]));
        }
        let err_path = env.dir.path().join("run.stderr");
        let mut run = common::unik()
            .arg("--root")
            .arg(env.root())
            .args(["run", "--bundle", env.bundle().to_str().unwrap(), "fg"])
            .stdin(Stdio::null())
            .stdout(File::create(env.console()).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        wait_console(&env, "Hello, world");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(i32::try_from(run.id()).unwrap(), signum) };
        // A liveness deadline: a signal that was not passed on leaves the guest asleep.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            match run.try_wait().unwrap() {
                Some(status) => break Some(status),
                None if Instant::now() > deadline => break None,
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        if status.is_none() {
            let _ = run.kill();
            let _ = env.query(&["delete", "--force", "fg"]);
        }
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        // run reports the container's end as a shell would: 128 + N.
        assert_eq!(status.and_then(|s| s.code()), Some(128 + signum), "signal {signum}: {err}");
        assert!(!env.root().join("fg").exists(), "run left the container behind");
    }
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_the_memory_limit_is_the_guests_memory() {
    require_kvm!();
    // hvt: the boot info's mem_size is linux.resources.memory.limit (docker -m), 512 MiB without.
    for (limit, want) in [(Some(24u64 << 20), 24u64 << 20), (None, 512 << 20)] {
        let env = Env::new(&["/hello.hvt", "meminfo"], serde_json::json!({}));
        edit_config(&env, |c| match limit {
            Some(l) => c["linux"]["resources"]["memory"]["limit"] = serde_json::json!(l),
            None => c["linux"]["resources"] = serde_json::json!({}),
        });
        let out = env.unik(&["run", "--bundle", env.bundle().to_str().unwrap(), "mem"]);
        assert_eq!(out.status.code(), Some(0), "run: {}", stderr(&out));
        let console = env.console_text();
        assert!(console.contains(&format!("mem_size: {want}\n")), "limit {limit:?}: {console}");
    }
    // A Linux-boot guest: its e820 map covers the limit (less the low-memory hole and the boot
    // structures below 1 MiB: 394240 bytes, as for `unik boot --mem`).
    let env = Env::new(
        &["/kernel", "exit=3"],
        serde_json::json!({ "dev.unik.kernel": "/kernel", "dev.unik.kind": "linux" }),
    );
    std::fs::copy(guest("virtio"), env.bundle().join("rootfs/kernel")).unwrap();
    edit_config(&env, |c| c["linux"]["resources"]["memory"]["limit"] = serde_json::json!(40 << 20));
    let out = env.unik(&["run", "--bundle", env.bundle().to_str().unwrap(), "memlinux"]);
    assert_eq!(out.status.code(), Some(3), "run: {}", stderr(&out));
    let want = (40u64 << 20) - 394_240;
    assert!(
        env.console_text().contains(&format!("virtio: mem={want}\n")),
        "{}",
        env.console_text()
    );
}

/// The highest `tick: N` in `text`.
fn last_tick(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("tick: "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn test_a_paused_guest_stops_and_goes_on_after_resume() {
    require_kvm!();
    let env = Env::new(&["/hello.hvt", "ticks=100000"], serde_json::json!({}));
    let pid = env.create("pr");
    assert!(env.unik(&["start", "pr"]).status.success());
    wait_until("the guest ticking", || last_tick(&env.console_text()) >= 3);
    assert!(env.query(&["pause", "pr"]).status.success());
    assert_eq!(env.state("pr")["status"], "paused");
    // Every thread of the monitor is stopped (the guest cannot run), and stays so.
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')))
        })
    };
    // SIGSTOP takes effect asynchronously: wait for every thread to be stopped.
    wait_until("every monitor thread stopped", stopped);
    let at_pause = last_tick(&env.console_text());
    // A guest that went on while paused would tick every 100 ms: 1 s shows it (a window for
    // a wrong behaviour to show; the right one is checked by the state above).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(last_tick(&env.console_text()), at_pause, "the guest ran while paused");
    assert!(stopped());
    assert!(env.query(&["resume", "pr"]).status.success());
    assert_eq!(env.state("pr")["status"], "running");
    // Progress, not only a state change: the guest ticks on from where it was.
    wait_until("the guest ticking after resume", || last_tick(&env.console_text()) >= at_pause + 3);
    assert!(env.query(&["kill", "pr", "TERM"]).status.success());
    reap(pid);
    assert!(env.query(&["delete", "pr"]).status.success());
}

impl Net {
    /// Gives ceth0 10.90.0.2/20 instead of /24 (a netmask no byte boundary makes), keeping the
    /// default route through 10.90.0.1.
    fn use_prefix_20(&self) {
        self.container.exec_ok(&["ip", "addr", "flush", "dev", "ceth0"]);
        self.container.exec_ok(&["ip", "addr", "add", "10.90.0.2/20", "dev", "ceth0"]);
        self.container.exec_ok(&["ip", "route", "add", "default", "via", "10.90.0.1"]);
    }

    /// The MAC address of `iface` in the container namespace.
    fn mac(&self, iface: &str) -> String {
        let link = String::from_utf8_lossy(&self.container.exec_ok(&["ip", "-o", "link", "show", iface]).stdout).into_owned();
        link.split("link/ether ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_string()
    }
}

/// Puts the bundle in `net`'s container namespace, with `resolv` as its /etc/resolv.conf mount
/// (as docker mounts one).
fn join_net(env: &Env, net: &Net, resolv: Option<&str>) {
    let conf = env.dir.path().join("resolv.conf");
    if let Some(text) = resolv {
        std::fs::write(&conf, text).unwrap();
    }
    edit_config(env, |c| {
        c["linux"]["namespaces"] = serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", net.container.name) }]);
        if resolv.is_some() {
            c["mounts"] = serde_json::json!([{
                "destination": "/etc/resolv.conf", "type": "bind", "source": conf, "options": ["rbind", "ro"]
            }]);
        }
    });
}

/// Creates, starts and waits for container `id`; returns its console and wait status, after
/// `delete` (which must leave the container namespace clean).
fn run_to_end(env: &Env, net: &Net, id: &str) -> (String, i32) {
    let pid = env.create(id);
    assert!(env.unik(&["start", id]).status.success());
    let status = reap(pid);
    assert!(env.query(&["delete", id]).status.success());
    net.assert_clean();
    (env.console_text(), status)
}

const RESOLV: &str = "# docker's\nsearch example.org\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions ndots:0\n";

#[test]
fn test_every_template_placeholder_reaches_the_guest() {
    require_kvm!();
    let net = Net::new(1);
    net.use_prefix_20();
    let template = "ip={ip} p={prefix} c={cidr} m={netmask} g={gateway} d={dns} hw={mac} count=0";
    let env = Env::new(&["/net.hvt", "extra"], serde_json::json!({ "dev.unik.net.template": template }));
    std::fs::copy(guest("net"), env.bundle().join("rootfs/net.hvt")).unwrap();
    join_net(&env, &net, Some(RESOLV));
    let (console, status) = run_to_end(&env, &net, "tpl");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{status:#x}: {console}");
    let mac = net.mac("ceth0");
    let want = format!("net: cmdline: ip=10.90.0.2 p=20 c=10.90.0.2/20 m=255.255.240.0 g=10.90.0.1 d=192.0.2.53 hw={mac} count=0 extra\n");
    assert!(console.contains(&want), "want {want:?}: {console}");
}

// The PC's Linux-boot guest (`virtio` as a PVH ELF, port I/O); on aarch64 `virtio` is an
// arm64 Image, tested by tests/linux_arm64.rs.
#[cfg(target_arch = "x86_64")]
#[test]
fn test_the_linux_and_unikraft_templates_reach_linux_boot_guests() {
    require_kvm!();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let net = Net::new(1);
    net.use_prefix_20();
    // unik's own annotations for a Linux-boot kernel: the `linux` template (Linux's ip=).
    let env = Env::new(
        &["/kernel", "exit=5"],
        serde_json::json!({ "dev.unik.kernel": "/kernel", "dev.unik.kind": "linux" }),
    );
    std::fs::copy(guest("virtio"), env.bundle().join("rootfs/kernel")).unwrap();
    join_net(&env, &net, Some(RESOLV));
    let (console, status) = run_to_end(&env, &net, "tlinux");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5, "{status:#x}: {console}");
    assert!(
        console.contains("virtio: cmdline: ip=10.90.0.2::10.90.0.1:255.255.240.0::eth0:off:192.0.2.53 exit=5 virtio_mmio.device="),
        "{console}"
    );
    // An urunc Unikraft image: the `unikraft` template (lwIP's netdev.ip).
    let env = Env::new(
        &[],
        serde_json::json!({
            "com.urunc.unikernel.binary": b64("/kernel"),
            "com.urunc.unikernel.hypervisor": b64("firecracker"),
            "com.urunc.unikernel.unikernelType": b64("unikraft"),
            "com.urunc.unikernel.cmdline": b64("exit=6"),
        }),
    );
    std::fs::copy(guest("virtio"), env.bundle().join("rootfs/kernel")).unwrap();
    join_net(&env, &net, Some(RESOLV));
    let (console, status) = run_to_end(&env, &net, "tunikraft");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 6, "{status:#x}: {console}");
    // Unikraft's form: program name, its parameters (lwIP's, the devices'), `--`, the app's.
    assert!(
        console
            .contains("virtio: cmdline: kernel netdev.ip=10.90.0.2/20:10.90.0.1:192.0.2.53 virtio_mmio.device=4K@0xd0000000:5 -- exit=6"),
        "{console}"
    );
}

#[test]
fn test_the_net_interface_annotation_picks_the_guests_interface() {
    require_kvm!();
    let net = Net::new(2);
    // Without it the guest takes the first free interface (ceth0); with it, the one named.
    let env = Env::new(
        &["/net.hvt", "count=0"],
        serde_json::json!({ "dev.unik.net.template": "ip={ip} gw={gateway} hw={mac}", "dev.unik.net.interface": "ceth1" }),
    );
    std::fs::copy(guest("net"), env.bundle().join("rootfs/net.hvt")).unwrap();
    join_net(&env, &net, None);
    let (console, status) = run_to_end(&env, &net, "if1");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{status:#x}: {console}");
    // ceth1 has no default route: no gateway.
    assert!(
        console.contains(&format!("net: cmdline: ip=10.91.0.2 gw= hw={} count=0\n", net.mac("ceth1"))),
        "{console}"
    );
    assert!(console.contains(&format!("net: mac={} ", net.mac("ceth1"))), "{console}");

    // A container in the namespace it was started from (no network namespace in config.json,
    // as `--network host`): a manifest net device is an error unless the annotation names an
    // interface, which it then gets. unik runs inside the test's namespace here, standing for
    // the host's.
    // As Env::unik: stdio are files, which a monitor that lives on may hold (not pipes).
    let in_ns = |env: &Env, args: &[&str]| {
        let console = File::options().create(true).append(true).open(env.console()).unwrap();
        let err_path = env.dir.path().join("stderr");
        let status = net
            .container
            .command(&[common::unik_path().to_str().unwrap(), "--root", env.root().to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(File::create(&err_path).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&err_path).unwrap(),
        }
    };
    for interface in [None, Some("ceth1")] {
        let mut annotations = serde_json::json!({ "dev.unik.net.template": "ip={ip} hw={mac}" });
        if let Some(i) = interface {
            annotations["dev.unik.net.interface"] = serde_json::json!(i);
        }
        let env = Env::new(&["/net.hvt", "count=0"], annotations);
        std::fs::copy(guest("net"), env.bundle().join("rootfs/net.hvt")).unwrap();
        let pid_file = env.dir.path().join("pid");
        let out = in_ns(
            &env,
            &[
                "create",
                "--bundle",
                env.bundle().to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
                "hostns",
            ],
        );
        let Some(_) = interface else {
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("declares network device 'service0' but the container shares the host's network namespace"),
                "{}",
                stderr(&out)
            );
            assert!(!env.root().join("hostns").exists());
            continue;
        };
        assert!(out.status.success(), "create: {}", stderr(&out));
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
        assert!(in_ns(&env, &["start", "hostns"]).status.success());
        let status = reap(pid);
        // delete runs where the container's interface is, as it would on the host.
        assert!(in_ns(&env, &["delete", "hostns"]).status.success());
        net.assert_clean();
        let console = env.console_text();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{status:#x}: {console}");
        assert!(
            console.contains(&format!("net: cmdline: ip=10.91.0.2 hw={} count=0\n", net.mac("ceth1"))),
            "{console}"
        );
    }
}

#[test]
fn test_urunc_hvt_images_get_their_network_the_urunc_way() {
    require_kvm!();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let net = Net::new(1);
    // A MirageOS image for urunc + hvt, by its annotations: the `mirage` template goes before
    // the image's command line.
    let env = Env::new(
        &[],
        serde_json::json!({
            "com.urunc.unikernel.binary": b64("/unikernel/net.hvt"),
            "com.urunc.unikernel.hypervisor": b64("hvt"),
            "com.urunc.unikernel.unikernelType": b64("mirage"),
            "com.urunc.unikernel.cmdline": b64("ip=10.90.0.2 count=0"),
        }),
    );
    std::fs::create_dir_all(env.bundle().join("rootfs/unikernel")).unwrap();
    std::fs::copy(guest("net"), env.bundle().join("rootfs/unikernel/net.hvt")).unwrap();
    join_net(&env, &net, None);
    let (console, status) = run_to_end(&env, &net, "mirage");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{status:#x}: {console}");
    assert!(
        console.contains("net: cmdline: --ipv4=10.90.0.2/24 --ipv4-gateway=10.90.0.1 ip=10.90.0.2 count=0\n"),
        "{console}"
    );
    assert!(console.contains(&format!("net: mac={} ", net.mac("ceth0"))), "{console}");

    // A rumprun image whose urunc settings are in /urunc.json (no annotations, as docker before
    // 24 passes them): the whole command line becomes rumprun's JSON configuration. The test
    // guest cannot read that JSON, so it stops with its usage error (1), having printed it.
    let env = Env::new(&[], serde_json::json!({}));
    std::fs::copy(guest("net"), env.bundle().join("rootfs/app.hvt")).unwrap();
    let urunc = serde_json::json!({
        "com.urunc.unikernel.binary": b64("/app.hvt"),
        "com.urunc.unikernel.hypervisor": b64("hvt"),
        "com.urunc.unikernel.unikernelType": b64("rumprun"),
        "com.urunc.unikernel.cmdline": b64("count=0 x"),
    });
    std::fs::write(env.bundle().join("rootfs/urunc.json"), serde_json::to_vec(&urunc).unwrap()).unwrap();
    join_net(&env, &net, None);
    let (console, status) = run_to_end(&env, &net, "rumprun");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1, "{status:#x}: {console}");
    assert!(
        console.contains(
            r#"net: cmdline: {"cmdline":"count=0 x","net":{"if":"ukvmif0","cloner":"True","type":"inet","method":"static","addr":"10.90.0.2","mask":"24","gw":"10.90.0.1"}}"#
        ),
        "{console}"
    );
}
