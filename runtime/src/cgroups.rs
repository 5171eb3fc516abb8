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
            if name.is_empty() {
                return Err(format!("cgroupsPath '{p}' names no unit (slice:prefix:name with an empty name)"));
            }
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

fn has_word(file: &Path, word: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|s| s.split_whitespace().any(|w| w == word))
}

/// cgroup v2: creates `rel` under `root` level by level, enabling the memory controller for
/// the children of every level above it that offers it (a new cgroup has `memory.max` only
/// when its parent's `cgroup.subtree_control` lists memory).
fn create_with_memory_v2(root: &Path, rel: &Path) -> Result<(), ContainerError> {
    let mut level = root.to_path_buf();
    for part in rel.components() {
        if has_word(&level.join("cgroup.controllers"), "memory") && !has_word(&level.join("cgroup.subtree_control"), "memory") {
            let f = level.join("cgroup.subtree_control");
            std::fs::write(&f, "+memory").map_err(io(format!("enabling the memory controller in {}", f.display())))?;
        }
        level.push(part);
        match std::fs::create_dir(&level) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io(format!("creating cgroup {}", level.display()))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Moves `pid` into the plan's cgroup under `root` (normally /sys/fs/cgroup), creating it, and
/// applies the memory limit — an error when no hierarchy offers one, rather than a container
/// running without the limit it asked for.
pub fn join(root: &Path, plan: &CgroupPlan, pid: i32) -> Result<(), ContainerError> {
    let mut limited = false;
    for h in hierarchies(root) {
        let dir = h.join(&plan.path);
        if plan.memory_limit.is_some() && h.join("cgroup.controllers").exists() {
            create_with_memory_v2(&h, &plan.path)?;
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating cgroup {}", dir.display())))?;
        if let Some(limit) = plan.memory_limit {
            for file in ["memory.max", "memory.limit_in_bytes"] {
                let f = dir.join(file);
                if f.exists() {
                    std::fs::write(&f, limit.to_string()).map_err(io(format!("setting {}", f.display())))?;
                    limited = true;
                }
            }
        }
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io(format!("joining {}", procs.display())))?;
    }
    if let (Some(limit), false) = (plan.memory_limit, limited) {
        return Err(io(format!(
            "setting the memory limit ({limit} bytes) of cgroup {}: no memory controller under {}",
            plan.path.display(),
            root.display()
        ))(std::io::Error::from(std::io::ErrorKind::Unsupported)));
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
        let err = |p, systemd| relative_path(Some(p), systemd).unwrap_err();
        assert_eq!(err("/a/../../etc", false), "cgroupsPath '/a/../../etc' leaves the cgroup root");
        assert_eq!(err("no-colons", true), "cgroupsPath 'no-colons' is not slice:prefix:name");
        assert_eq!(err("bad:a:b", true), "'bad' is not a .slice");
        assert_eq!(
            err("::", true),
            "cgroupsPath '::' names no unit (slice:prefix:name with an empty name)"
        );
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

    #[test]
    fn test_v2_memory_controller_is_enabled_on_the_way_down() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::write(r.join("cgroup.subtree_control"), "cpu").unwrap();
        // The middle level exists and already delegates memory; the kernel would then give the
        // new leaf its memory.max (the fake has it beforehand).
        std::fs::create_dir_all(r.join("docker/c2")).unwrap();
        std::fs::write(r.join("docker/cgroup.controllers"), "memory").unwrap();
        std::fs::write(r.join("docker/cgroup.subtree_control"), "memory").unwrap();
        std::fs::write(r.join("docker/c2/memory.max"), "max").unwrap();
        let plan = CgroupPlan {
            path: "docker/c2".into(),
            memory_limit: Some(64 << 20),
        };
        join(r, &plan, 42).unwrap();
        assert_eq!(std::fs::read_to_string(r.join("cgroup.subtree_control")).unwrap(), "+memory");
        assert_eq!(std::fs::read_to_string(r.join("docker/cgroup.subtree_control")).unwrap(), "memory");
        assert_eq!(
            std::fs::read_to_string(r.join("docker/c2/memory.max")).unwrap(),
            (64u64 << 20).to_string()
        );
    }

    #[test]
    fn test_a_limit_without_a_memory_controller_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "pids").unwrap();
        let plan = CgroupPlan {
            path: "c3".into(),
            memory_limit: Some(64 << 20),
        };
        let err = join(root.path(), &plan, 42).unwrap_err().to_string();
        assert!(
            err.contains("setting the memory limit (67108864 bytes) of cgroup c3: no memory controller"),
            "{err}"
        );
        // Without a limit, joining is enough.
        join(
            root.path(),
            &CgroupPlan {
                memory_limit: None,
                ..plan
            },
            42,
        )
        .unwrap();
    }
}
