//! The container monitor's jail, from the bundle: the namespaces it lives in (besides the network
//! one, see [`crate::network`]), its hostname, user, resource limits and OOM score.
//!
//! `create` saves the plan as `jail.json`. The spawner puts the monitor into the mount, ipc, uts
//! and pid namespaces (a new pid namespace makes the monitor its init); the monitor applies the
//! hostname, limits and OOM score before it builds the VM, and, once the guest's files are open
//! and `start` has opened the gate, pivots into an empty read-only root (a mount namespace of its
//! own) and becomes the user (see [`vmm::privileges::Confinement`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use serde::{Deserialize, Serialize};
use vmm::privileges::User;

/// One namespace of the monitor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    /// The caller's (the bundle does not ask for one).
    #[default]
    Host,
    /// A new one.
    New,
    /// An existing one, by path.
    Path(PathBuf),
}

/// One resource limit.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The resource (`RLIMIT_*`).
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// What `jail.json` holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct JailPlan {
    /// The mount namespace; a new one means the monitor ends in an empty read-only root.
    #[serde(default)]
    pub mount: Namespace,
    /// The pid namespace; in a new one the monitor is its init.
    #[serde(default)]
    pub pid: Namespace,
    /// The IPC namespace.
    #[serde(default)]
    pub ipc: Namespace,
    /// The UTS namespace.
    #[serde(default)]
    pub uts: Namespace,
    /// `hostname` (set in a new UTS namespace).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `process.user`.
    #[serde(default)]
    pub user: Option<User>,
    /// `process.rlimits`.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// `process.oomScoreAdj`.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
}

// The type of `RLIMIT_*` differs between C libraries (u32 in glibc, i32 in musl).
#[allow(clippy::unnecessary_cast)]
fn resource(typ: PosixRlimitType) -> u32 {
    let r = match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    r as u32
}

impl JailPlan {
    /// The plan for `spec`. A hostname without a UTS namespace of its own is an error (runc's).
    pub fn from_spec(spec: &Spec) -> Result<JailPlan, String> {
        let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
        let ns = |typ: LinuxNamespaceType| {
            namespaces
                .iter()
                .find(|n| n.typ() == typ)
                .map_or(Namespace::Host, |n| n.path().clone().map_or(Namespace::New, Namespace::Path))
        };
        let process = spec.process().as_ref();
        let user = process.map(|p| p.user()).map(|u| User {
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
        });
        let rlimits = process
            .and_then(|p| p.rlimits().clone())
            .unwrap_or_default()
            .iter()
            .map(|r| Rlimit {
                resource: resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            })
            .collect();
        let plan = JailPlan {
            mount: ns(LinuxNamespaceType::Mount),
            pid: ns(LinuxNamespaceType::Pid),
            ipc: ns(LinuxNamespaceType::Ipc),
            uts: ns(LinuxNamespaceType::Uts),
            hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
            user,
            rlimits,
            oom_score_adj: process.and_then(|p| p.oom_score_adj()),
        };
        if plan.hostname.is_some() && plan.uts == Namespace::Host {
            return Err("a hostname is set but the container has no UTS namespace of its own".into());
        }
        Ok(plan)
    }

    /// The user to become: `None` for root with no supplementary groups (nothing to change).
    pub fn user_to_become(&self) -> Option<User> {
        self.user
            .clone()
            .filter(|u| u.uid != 0 || u.gid != 0 || !u.additional_gids.is_empty())
    }
}

/// Namespaces opened by path before the monitor is started, and what to enter in its child.
#[derive(Debug, Default)]
pub struct Entry {
    /// (`CLONE_NEW*` flag, open namespace file) to join.
    pub join: Vec<(libc::c_int, OwnedFd)>,
    /// `CLONE_NEW*` flags to unshare.
    pub unshare: libc::c_int,
}

fn open_ns(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?
        .into())
}

impl Entry {
    /// Opens the mount, ipc and uts namespaces `plan` names by path (the pid namespace is the
    /// spawner's, see [`PidNamespace`]).
    pub fn open(plan: &JailPlan) -> std::io::Result<Entry> {
        let mut entry = Entry::default();
        for (ns, flag) in [
            (&plan.mount, libc::CLONE_NEWNS),
            (&plan.ipc, libc::CLONE_NEWIPC),
            (&plan.uts, libc::CLONE_NEWUTS),
        ] {
            match ns {
                Namespace::Host => {}
                Namespace::New => entry.unshare |= flag,
                Namespace::Path(p) => entry.join.push((
                    flag,
                    open_ns(p).map_err(|e| std::io::Error::new(e.kind(), format!("namespace {}: {e}", p.display())))?,
                )),
            }
        }
        Ok(entry)
    }

    /// In the monitor's child, between fork and exec: joins and unshares. Only async-signal-safe
    /// calls (setns, unshare, mount).
    pub fn enter(&self) -> std::io::Result<()> {
        for (flag, fd) in &self.join {
            // SAFETY: setns on a namespace descriptor we own.
            if unsafe { libc::setns(fd.as_raw_fd(), *flag) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if self.unshare != 0 {
            // SAFETY: unshare with namespace flags only.
            if unsafe { libc::unshare(self.unshare) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if self.unshare & libc::CLONE_NEWNS != 0 {
            // Mounts made from here on (the monitor's empty root) stay in this namespace.
            let none = std::ptr::null::<libc::c_char>();
            // SAFETY: mount(2) changing only propagation, with a NUL-terminated target.
            if unsafe { libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The pid namespace the monitor is started in: the spawner sets the namespace of its own next
/// child, starts the monitor and sets it back (a process cannot change its own pid namespace).
#[derive(Debug)]
pub struct PidNamespace {
    restore: OwnedFd,
}

impl PidNamespace {
    /// Makes the caller's next children start in `ns`; `None` for the host's.
    pub fn enter_for_children(ns: &Namespace) -> std::io::Result<Option<PidNamespace>> {
        let restore = match ns {
            Namespace::Host => return Ok(None),
            _ => open_ns(Path::new("/proc/thread-self/ns/pid_for_children"))?,
        };
        match ns {
            Namespace::Host => {}
            Namespace::New => {
                // SAFETY: unshare of the pid namespace affects only the caller's future children.
                if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Namespace::Path(p) => {
                let fd = open_ns(p).map_err(|e| std::io::Error::new(e.kind(), format!("namespace {}: {e}", p.display())))?;
                // SAFETY: setns on a pid namespace descriptor we own (children only).
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(Some(PidNamespace { restore }))
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        // SAFETY: back to the namespace the caller's children had (its own, or an ancestor of
        // the one it entered: always allowed).
        if unsafe { libc::setns(self.restore.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            log::warn!("restoring the pid namespace for children: {}", std::io::Error::last_os_error());
        }
    }
}

/// In the monitor, before the VM is built: the hostname, the resource limits and the OOM score.
pub fn apply_limits(plan: &JailPlan) -> std::io::Result<()> {
    let ctx = |what: String| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
    if let (Some(name), Namespace::New | Namespace::Path(_)) = (&plan.hostname, &plan.uts) {
        // SAFETY: sethostname reads `name.len()` bytes.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(ctx(format!("setting the hostname {name:?}"))(std::io::Error::last_os_error()));
        }
    }
    for r in &plan.rlimits {
        let limit = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit reads one rlimit struct.
        if unsafe { libc::setrlimit(r.resource as _, &raw const limit) } != 0 {
            return Err(ctx(format!("setting rlimit {} to {}/{}", r.resource, r.soft, r.hard))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    if let Some(score) = plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", score.to_string()).map_err(ctx(format!("setting oom_score_adj {score}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn test_plan_from_a_spec() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "hostname": "box",
            "process": {
                "args": ["/k"], "cwd": "/",
                "user": { "uid": 1000, "gid": 100, "additionalGids": [5, 6] },
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 512, "soft": 256 }],
                "oomScoreAdj": 300
            },
            "root": { "path": "rootfs" },
            "linux": { "namespaces": [
                { "type": "mount" }, { "type": "pid" }, { "type": "uts" },
                { "type": "ipc", "path": "/proc/1/ns/ipc" }, { "type": "network" }
            ] }
        }));
        let plan = JailPlan::from_spec(&s).unwrap();
        assert_eq!(
            (&plan.mount, &plan.pid, &plan.uts),
            (&Namespace::New, &Namespace::New, &Namespace::New)
        );
        assert_eq!(plan.ipc, Namespace::Path("/proc/1/ns/ipc".into()));
        assert_eq!(plan.hostname.as_deref(), Some("box"));
        assert_eq!(
            plan.user_to_become(),
            Some(User {
                uid: 1000,
                gid: 100,
                additional_gids: vec![5, 6]
            })
        );
        assert_eq!(
            plan.rlimits,
            [Rlimit {
                resource: resource(PosixRlimitType::RlimitNofile),
                soft: 256,
                hard: 512
            }]
        );
        assert_eq!(plan.oom_score_adj, Some(300));
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<JailPlan>(&json).unwrap(), plan);
    }

    #[test]
    fn test_root_needs_no_change_and_a_hostname_needs_a_uts_namespace() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2", "hostname": "box",
            "process": { "args": ["/k"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" }
        }));
        assert_eq!(
            JailPlan::from_spec(&s).unwrap_err(),
            "a hostname is set but the container has no UTS namespace of its own"
        );
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "args": ["/k"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" }
        }));
        let plan = JailPlan::from_spec(&s).unwrap();
        assert_eq!(plan.user_to_become(), None);
        assert_eq!(plan.mount, Namespace::Host);
    }
}
