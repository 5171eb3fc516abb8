//! Network namespaces and taps that a test creates itself and removes on drop.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().expect("run ip(8)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A named network namespace; deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates `uk<pid>-<n>` with loopback up.
    pub fn new() -> NetNs {
        let name = format!("uk{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs `argv` inside the namespace.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        cmd
    }

    /// Runs `argv` inside the namespace and asserts success.
    pub fn exec_ok(&self, argv: &[&str]) -> Output {
        let out = self.command(argv).output().expect("ip netns exec");
        assert!(
            out.status.success(),
            "{argv:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Creates tap `name` in the namespace with `addr` (CIDR) and brings it up.
    pub fn add_tap(&self, name: &str, addr: &str) {
        self.exec_ok(&["ip", "tuntap", "add", "dev", name, "mode", "tap"]);
        self.exec_ok(&["ip", "addr", "add", addr, "dev", name]);
        self.exec_ok(&["ip", "link", "set", name, "up"]);
    }

    /// Names of the links in the namespace.
    pub fn links(&self) -> String {
        String::from_utf8_lossy(&self.exec_ok(&["ip", "-o", "link", "show"]).stdout).into_owned()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
