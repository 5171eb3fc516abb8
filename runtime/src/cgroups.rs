//! cgroups: the monitor joins the bundle's `linux.cgroupsPath` in every mounted hierarchy (cgroup
//! v2, or each v1 controller), and the memory limit is set so that guest memory plus the
//! monitor's own overhead fits.
//!
//! systemd's `slice:prefix:name` syntax is accepted and mapped to the path systemd would use
//! (`/a.slice/a-b.slice/prefix-name.scope`); the directories are managed directly, which is what
//! a host without systemd (like these machines) offers.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ContainerError;

/// Headroom on top of guest memory for the monitor itself (its own RSS is about 3 MiB; the rest
/// covers page tables and kernel accounting of the guest mapping).
pub const MONITOR_OVERHEAD: u64 = 32 << 20;

/// Where the container's cgroup lives, relative to each hierarchy's root.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    /// Relative path, e.g. `docker/<id>` or `system.slice/unik-<id>.scope`.
    pub path: PathBuf,
    /// Memory limit in bytes, if any.
    pub memory_limit: Option<u64>,
}

/// Expands a systemd slice name: `a-b.slice` → `a.slice/a-b.slice`.
fn expand_slice(slice: &str) -> Result<PathBuf, String> {
    let name = slice.strip_suffix(".slice").ok_or_else(|| format!("'{slice}' is not a .slice"))?;
    if name == "-" || name.is_empty() {
        return Ok(PathBuf::new());
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(format!("invalid slice name '{slice}'"));
        }
        prefix = if prefix.is_empty() {
            part.to_string()
        } else {
            format!("{prefix}-{part}")
        };
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// The relative cgroup path for `cgroups_path` (runc's rules): systemd syntax when `systemd`,
/// else a path. `None` when the bundle names none: the monitor then stays in its caller's cgroup
/// (docker and containerd always name one).
pub fn relative_path(cgroups_path: Option<&str>, systemd: bool) -> Result<Option<PathBuf>, String> {
    let path = match cgroups_path {
        None | Some("") => return Ok(None),
        Some(p) if systemd => {
            let parts: Vec<&str> = p.split(':').collect();
            let [slice, prefix, name] = parts[..] else {
                return Err(format!("cgroupsPath '{p}' is not slice:prefix:name"));
            };
            let slice = if slice.is_empty() { "system.slice" } else { slice };
            expand_slice(slice)?.join(format!("{prefix}-{name}.scope"))
        }
        Some(p) => PathBuf::from(p),
    };
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(format!("cgroupsPath '{}' leaves the cgroup root", path.display())),
        }
    }
    Ok(Some(clean))
}

/// The hierarchies to join: the v2 root, or each v1 controller mount (deduplicated).
fn hierarchies(root: &Path) -> Vec<PathBuf> {
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        // cpuset needs cpus/mems copied into every new level; the monitor needs no cpuset.
        if e.file_name() == "cpuset" || !p.join("cgroup.procs").exists() {
            continue;
        }
        let real = p.canonicalize().unwrap_or(p);
        if !out.contains(&real) {
            out.push(real);
        }
    }
    out.sort();
    out
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ContainerError {
    ContainerError::io(what)
}

/// Moves `pid` into the plan's cgroup under `root` (normally /sys/fs/cgroup), creating it, and
/// applies the memory limit.
pub fn join(root: &Path, plan: &CgroupPlan, pid: i32) -> Result<(), ContainerError> {
    for h in hierarchies(root) {
        let dir = h.join(&plan.path);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating cgroup {}", dir.display())))?;
        if let Some(limit) = plan.memory_limit {
            for file in ["memory.max", "memory.limit_in_bytes"] {
                let f = dir.join(file);
                if f.exists() {
                    std::fs::write(&f, limit.to_string()).map_err(io(format!("setting {}", f.display())))?;
                }
            }
        }
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io(format!("joining {}", procs.display())))?;
    }
    Ok(())
}

/// Writes `value` to `file` in every hierarchy of the plan that has it; whether any had it.
pub fn set(root: &Path, plan: &CgroupPlan, files: &[&str], value: &str) -> Result<bool, ContainerError> {
    let mut any = false;
    for h in hierarchies(root) {
        for file in files {
            let f = h.join(&plan.path).join(file);
            if f.exists() {
                std::fs::write(&f, value).map_err(io(format!("setting {}", f.display())))?;
                any = true;
            }
        }
    }
    Ok(any)
}

/// Removes the plan's (now empty) cgroup directories; leftovers are only logged.
pub fn remove(root: &Path, plan: &CgroupPlan) {
    for h in hierarchies(root) {
        let dir = h.join(&plan.path);
        if let Err(e) = std::fs::remove_dir(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("removing cgroup {}: {e}", dir.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_relative_paths() {
        let rel = |p, systemd| relative_path(p, systemd).unwrap().unwrap();
        assert_eq!(rel(Some("/docker/abc"), false), PathBuf::from("docker/abc"));
        assert_eq!(relative_path(None, false).unwrap(), None);
        assert_eq!(relative_path(Some(""), true).unwrap(), None);
        assert_eq!(
            rel(Some("system.slice:docker:abc"), true),
            PathBuf::from("system.slice/docker-abc.scope")
        );
        assert_eq!(
            rel(Some("kubepods-besteffort.slice:cri-containerd:abc"), true),
            PathBuf::from("kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope")
        );
        relative_path(Some("/a/../../etc"), false).unwrap_err();
        relative_path(Some("no-colons"), true).unwrap_err();
        relative_path(Some("bad:a:b"), true).unwrap_err();
    }

    #[test]
    fn test_join_and_remove_on_a_fake_v2_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "memory pids").unwrap();
        let plan = CgroupPlan {
            path: "unik/c1".into(),
            memory_limit: Some(96 << 20),
        };
        std::fs::create_dir_all(root.path().join("unik/c1")).unwrap();
        std::fs::write(root.path().join("unik/c1/memory.max"), "max").unwrap();
        join(root.path(), &plan, 1234).unwrap();
        assert_eq!(std::fs::read_to_string(root.path().join("unik/c1/cgroup.procs")).unwrap(), "1234");
        assert_eq!(
            std::fs::read_to_string(root.path().join("unik/c1/memory.max")).unwrap(),
            (96u64 << 20).to_string()
        );
        // A real cgroup directory is empty of regular files; the fake one is not, so remove() only logs.
        remove(root.path(), &plan);
    }
}
