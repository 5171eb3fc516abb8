//! A network namespace with an up tap `tap0`, for the benchmarks that send guest frames into a
//! tap: created with `ip`, deleted by [`NetNs`]'s drop on every exit path.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use vmm::host::tap::Tap;

/// A network namespace with an up tap `tap0`; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates namespace `name` (deleting a leftover of that name first), with `lo` and a tap
    /// `tap0` up.
    pub fn new(name: &str) -> Result<NetNs, String> {
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", name])?;
        // From here on the guard deletes the namespace, whatever fails next.
        let ns = NetNs { name: name.into() };
        for argv in [
            &["ip", "link", "set", "lo", "up"][..],
            &["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
            &["ip", "link", "set", "tap0", "up"],
        ] {
            ns.exec(argv)?;
        }
        Ok(ns)
    }

    /// The namespace's name, for `ip netns exec NAME ...`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `argv` in the namespace (`ip netns exec`); its stdout.
    pub fn exec(&self, argv: &[&str]) -> Result<String, String> {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(argv);
        ip(&a)
    }

    /// Frames the host received from the guest side of the tap.
    pub fn rx_packets(&self) -> Result<u64, String> {
        let s = self.exec(&["cat", "/sys/class/net/tap0/statistics/rx_packets"])?;
        s.trim().parse().map_err(|e| format!("rx_packets {s:?}: {e}"))
    }

    /// Tap `tap` opened in the namespace by unik's own code (`vmm::host::tap::Tap::open`:
    /// IFF_TAP | IFF_NO_PI, non-blocking, close-on-exec). A tun descriptor belongs to the
    /// namespace it was opened in, so a short-lived thread enters the namespace (setns(2) changes
    /// only the calling thread's) and opens it there; the descriptor outlives the thread.
    pub fn open_tap(&self, tap: &str) -> Result<Tap, String> {
        let (name, tap) = (self.name.clone(), tap.to_owned());
        std::thread::spawn(move || -> Result<Tap, String> {
            enter(&name)?;
            Tap::open(&tap).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the thread opening the tap panicked".to_string())?
    }
}

/// Moves the calling thread (only it: setns(2) is per thread) into network namespace `name`
/// (`/run/netns/NAME`, as `ip netns add` makes it).
pub fn enter(name: &str) -> Result<(), String> {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: setns(2) with a namespace descriptor that lives across the call.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
