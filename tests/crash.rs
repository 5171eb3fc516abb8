//! `create` and `start` killed at their critical points (`UNIK_TEST_STOP_AT` makes them stop
//! there; the test SIGKILLs them): no monitor may be left running where `state` and `kill` cannot
//! reach it, and `state` must agree with what the monitor does. The test process is a child
//! subreaper, as containerd's shim is, so orphaned monitors are reparented here and reaped.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::guests::guest;
use common::stderr;

fn become_subreaper() {
    static ONCE: Once = Once::new();
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes who reaps our orphaned descendants.
    ONCE.call_once(|| assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0));
}

/// A bundle running the `hello` guest with `args`, a state root and a console file.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(args: &[&str]) -> Env {
        become_subreaper();
        let dir = common::tempdir();
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::copy(guest("hello"), rootfs.join("hello.hvt")).unwrap();
        let mut argv = vec!["/hello.hvt"];
        argv.extend_from_slice(args);
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "args": argv, "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" },
            "linux": { "resources": { "memory": { "limit": 16 << 20 } } }
        });
        std::fs::write(dir.path().join("bundle/config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
        Env { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console")).unwrap_or_default()
    }

    /// `unik --root R ARGS`, with the console file as stdout (a monitor it starts inherits it).
    fn command(&self, args: &[&str]) -> Command {
        let console = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("console"))
            .unwrap();
        let mut cmd = common::unik();
        cmd.arg("--root").arg(self.root()).args(args).stdin(Stdio::null()).stdout(console);
        cmd
    }

    /// Runs a command that starts no process of its own.
    fn query(&self, args: &[&str]) -> Output {
        common::unik().arg("--root").arg(self.root()).args(args).output().unwrap()
    }

    fn create(&self, id: &str) {
        let bundle = self.dir.path().join("bundle");
        let status = self
            .command(&["create", "--bundle", bundle.to_str().unwrap(), id])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "create {id}");
    }

    fn status(&self, id: &str) -> String {
        let out = self.query(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", stderr(&out));
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        state["status"].as_str().unwrap().to_string()
    }

    /// The monitor's pid as state.json records it (also while `creating`).
    fn recorded_pid(&self, id: &str) -> Option<i32> {
        let json = std::fs::read(self.root().join(id).join("state.json")).ok()?;
        let state: serde_json::Value = serde_json::from_slice(&json).ok()?;
        state["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
    }

    /// Runs `unik ARGS` with the crash point `point` set, waits until it stops there and kills it.
    fn kill_at(&self, point: &str, args: &[&str]) {
        let mut child = self
            .command(args)
            .stderr(Stdio::null())
            .env("UNIK_TEST_STOP_AT", point)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child, with a valid status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, libc::WUNTRACED) }, pid);
        assert!(
            libc::WIFSTOPPED(status),
            "unik {args:?} ended (status {status:#x}) instead of stopping at {point}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Waits (generously) for `pid`, reparented to us, to exit: its wait status, or `None` if it
/// still runs (or is no child of ours).
fn reap_within(pid: i32, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with WNOHANG on a descendant reparented to us (we are a subreaper).
        let rc = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
        if rc == pid {
            return Some(status);
        }
        // Not (or no longer) a child of ours: nothing to wait for.
        if rc < 0 || Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clears a container whatever state a failed test left it in (its monitor is killed first).
struct Cleanup<'a>(&'a Env, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let pid = self.0.recorded_pid(self.1);
        let _ = self.0.query(&["delete", "--force", self.1]);
        if let Some(pid) = pid {
            let _ = reap_within(pid, Duration::from_secs(10));
        }
    }
}

#[test]
fn test_a_create_killed_before_recording_leaves_no_monitor_behind() {
    require_kvm!();
    for point in ["create:reported", "create:recorded"] {
        let env = Env::new(&[]);
        let id = "k1";
        let _cleanup = Cleanup(&env, id);
        let bundle = env.dir.path().join("bundle");
        env.kill_at(point, &["create", "--bundle", bundle.to_str().unwrap(), id]);
        let pid = env
            .recorded_pid(id)
            .expect("create records the monitor's pid as soon as it knows it");
        // The monitor must notice that `create` died and end; the generous limit only keeps a
        // regression from hanging the test.
        let status = reap_within(pid, Duration::from_secs(30));
        assert!(status.is_some(), "{point}: monitor {pid} lives on after create died");
        assert_eq!(env.status(id), "stopped", "{point}");
        let out = env.query(&["kill", id, "15"]);
        assert!(stderr(&out).contains("container not running"), "{point}: {}", stderr(&out));
        assert!(env.query(&["delete", id]).status.success(), "{point}");
        assert!(!env.root().join(id).exists(), "{point}");
        assert!(!env.console().contains("Hello"), "{point}: the guest ran: {}", env.console());
    }
}

#[test]
fn test_a_start_killed_before_recording_leaves_the_container_created() {
    require_kvm!();
    let env = Env::new(&["exit=7"]);
    let id = "k2";
    let _cleanup = Cleanup(&env, id);
    env.create(id);
    let pid = env.recorded_pid(id).unwrap();
    env.kill_at("start:opened", &["start", id]);
    // Give a monitor that wrongly took the dead `start` for a go the time to show it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.status(id), "created");
    assert!(!env.console().contains("Hello"), "the guest runs while state says created");
    // The container is still what state says: a second start starts it.
    let out = env.query(&["start", id]);
    assert!(out.status.success(), "second start: {}", stderr(&out));
    let status = reap_within(pid, Duration::from_secs(30)).expect("the guest ran to its end");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7, "wait status {status:#x}");
    assert!(env.console().contains("Hello"), "{}", env.console());
    assert_eq!(env.status(id), "stopped");
}

#[test]
fn test_a_start_killed_after_recording_lets_the_guest_run() {
    require_kvm!();
    let env = Env::new(&["sleep=600000"]);
    let id = "k3";
    let _cleanup = Cleanup(&env, id);
    env.create(id);
    let pid = env.recorded_pid(id).unwrap();
    env.kill_at("start:recorded", &["start", id]);
    // Recorded as started: the guest runs, and everything a running container allows works.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.console().contains("Hello") {
        assert!(Instant::now() < deadline, "state says {} but the guest never ran", env.status(id));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(env.status(id), "running");
    assert!(env.query(&["pause", id]).status.success());
    assert_eq!(env.status(id), "paused");
    assert!(env.query(&["resume", id]).status.success());
    assert!(env.query(&["kill", id, "KILL"]).status.success());
    let status = reap_within(pid, Duration::from_secs(30)).expect("the monitor died of SIGKILL");
    assert!(libc::WIFSIGNALED(status), "wait status {status:#x}");
    assert_eq!(env.status(id), "stopped");
}
