//! cgroups: the monitor joins the bundle's `linux.cgroupsPath` in every mounted hierarchy (cgroup
//! v2, or each v1 controller), with the bundle's `linux.resources` applied ([`limits`]: what each
//! field becomes, or why it is refused); `update` applies them again.
//!
//! systemd's `slice:prefix:name` syntax is accepted and mapped to the path systemd would use
//! (`/a.slice/a-b.slice/prefix-name.scope`); the directories are managed directly, which is what
//! a host without systemd (like these machines) offers.

mod error;
pub mod limits;

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::CgroupError;
pub use limits::{Guest, Layout, Limits, MONITOR_OVERHEAD, When};

/// Where the container's cgroup lives, relative to each hierarchy's root, and what it limits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    /// Relative path, e.g. `docker/<id>` or `system.slice/unik-<id>.scope`.
    pub path: PathBuf,
    /// The limits applied when the monitor joins.
    #[serde(default)]
    pub limits: Limits,
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

/// The layout of the hierarchies under `root`.
pub fn layout(root: &Path) -> Layout {
    if root.join("cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    }
}

/// The hierarchies to join: the v2 root, or each v1 controller mount (deduplicated).
fn hierarchies(root: &Path) -> Vec<PathBuf> {
    if layout(root) == Layout::V2 {
        return vec![root.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if !p.join("cgroup.procs").exists() {
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

fn has_word(file: &Path, word: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|s| s.split_whitespace().any(|w| w == word))
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(CgroupError::Create(dir.to_path_buf(), e)),
        _ => Ok(()),
    }
}

/// cgroup v2: creates `rel` under `root` level by level, enabling each of `controllers` for the
/// children of every level above it that offers it (a new cgroup has `cpu.max`, `pids.max`, …
/// only when its parent's `cgroup.subtree_control` lists the controller).
fn create_v2(root: &Path, rel: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let mut level = root.to_path_buf();
    for part in rel.components() {
        let control = level.join("cgroup.subtree_control");
        for c in controllers {
            if has_word(&level.join("cgroup.controllers"), c) && !has_word(&control, c) {
                std::fs::write(&control, format!("+{c}")).map_err(|source| CgroupError::Enable {
                    controller: (*c).to_string(),
                    path: control.clone(),
                    source,
                })?;
            }
        }
        level.push(part);
        mkdir(&level)?;
    }
    Ok(())
}

/// cgroup v1's cpuset hierarchy: creates `rel` under `h` level by level, giving each new level
/// its parent's CPUs and memory nodes (a cpuset cgroup starts with none, and no process can join
/// it then).
fn create_cpuset_v1(h: &Path, rel: &Path) -> Result<(), CgroupError> {
    let mut level = h.to_path_buf();
    for part in rel.components() {
        let parent = level.clone();
        level.push(part);
        mkdir(&level)?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = level.join(file);
            if std::fs::read_to_string(&mine).is_ok_and(|v| v.trim().is_empty()) {
                let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                std::fs::write(&mine, theirs.trim()).map_err(|source| CgroupError::Write {
                    field: "cpu.cpus".into(),
                    path: mine.clone(),
                    value: theirs.trim().to_string(),
                    source,
                })?;
            }
        }
    }
    Ok(())
}

/// Creates the plan's cgroup in every hierarchy (enabling, on v2, the controllers its limits
/// need), applies the limits, then moves `pid` into it. A limit the host cannot apply is an
/// error, rather than a container running without what it asked for.
pub fn join(root: &Path, plan: &CgroupPlan, pid: i32) -> Result<(), CgroupError> {
    let writes = plan.limits.writes(layout(root))?;
    prepare(root, &plan.path, &writes)?;
    apply(root, &plan.path, &writes)?;
    for h in hierarchies(root) {
        let procs = h.join(&plan.path).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| CgroupError::Join(procs, e))?;
    }
    Ok(())
}

/// Applies `limits` to the existing cgroup `rel` (`update`).
pub fn update(root: &Path, rel: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let writes = limits.writes(layout(root))?;
    prepare(root, rel, &writes)?;
    apply(root, rel, &writes)
}

/// Creates `rel` in every hierarchy (a no-op where it exists), enabling on v2 the controllers
/// `writes` need.
fn prepare(root: &Path, rel: &Path, writes: &[limits::Write]) -> Result<(), CgroupError> {
    let mut controllers: Vec<&str> = writes.iter().map(limits::Write::controller).collect();
    controllers.sort_unstable();
    controllers.dedup();
    for h in hierarchies(root) {
        if layout(root) == Layout::V2 {
            create_v2(&h, rel, &controllers)?;
        } else if h.join("cpuset.cpus").exists() {
            create_cpuset_v1(&h, rel)?;
        } else {
            let dir = h.join(rel);
            std::fs::create_dir_all(&dir).map_err(|e| CgroupError::Create(dir, e))?;
        }
    }
    Ok(())
}

/// Writes every file of `writes` in the hierarchies that hold it; a file no hierarchy holds is
/// an error naming its field.
fn apply(root: &Path, rel: &Path, writes: &[limits::Write]) -> Result<(), CgroupError> {
    let hierarchies = hierarchies(root);
    let targets = |w: &limits::Write| -> Result<Vec<PathBuf>, CgroupError> {
        let found: Vec<PathBuf> = hierarchies
            .iter()
            .map(|h| h.join(rel).join(&w.file))
            .filter(|f| f.exists())
            .collect();
        if found.is_empty() {
            return Err(CgroupError::NotApplicable {
                field: w.field.clone(),
                file: w.file.clone(),
                cgroup: rel.to_path_buf(),
                root: root.to_path_buf(),
            });
        }
        Ok(found)
    };
    let write = |w: &limits::Write, path: &Path| {
        std::fs::write(path, &w.value).map_err(|source| CgroupError::Write {
            field: w.field.clone(),
            path: path.to_path_buf(),
            value: w.value.clone(),
            source,
        })
    };
    // Every target is checked before anything is written: a refusal changes nothing.
    let planned: Vec<(&limits::Write, Vec<PathBuf>)> = writes.iter().map(|w| Ok((w, targets(w)?))).collect::<Result<_, CgroupError>>()?;
    let mut order: Vec<usize> = (0..planned.len()).collect();
    // cgroup v1 keeps memory <= memory+swap at every step: a growing limit goes after its
    // memory+swap limit.
    let index = |file: &str| planned.iter().position(|(w, _)| w.file == file);
    if let (Some(mem), Some(memsw)) = (index("memory.limit_in_bytes"), index("memory.memsw.limit_in_bytes")) {
        let current = planned[memsw]
            .1
            .first()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let new = planned[mem].0.value.parse::<u64>().ok();
        if let (Some(current), Some(new)) = (current, new) {
            if new > current {
                order.swap(mem, memsw);
            }
        }
    }
    for i in order {
        let (w, paths) = &planned[i];
        for path in paths {
            write(w, path)?;
        }
    }
    Ok(())
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

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// docker run --cpus 0.5 --cpu-shares 512 --cpuset-cpus 0 --pids-limit 50 -m 64m.
    fn docker_limits() -> Limits {
        let res: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": { "limit": 64 << 20, "swap": 128 << 20 },
            "cpu": { "shares": 512, "quota": 50000, "period": 100_000, "cpus": "0" },
            "pids": { "limit": 50 }
        }))
        .unwrap();
        Limits::from_resources(&res, Guest { mem_mib: 64, tasks: 2 }, When::Create).unwrap()
    }

    #[test]
    fn test_join_applies_every_limit_on_a_fake_v2_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("cgroup.controllers"), "cpu cpuset io memory pids");
        // Everything but pids is delegated already; the middle level delegates all four.
        write(&r.join("cgroup.subtree_control"), "cpu cpuset memory");
        write(&r.join("docker/cgroup.controllers"), "cpu cpuset memory pids");
        write(&r.join("docker/cgroup.subtree_control"), "cpu cpuset memory pids");
        // What the kernel gives the new leaf.
        for (file, value) in [
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("cpu.max", "max 100000"),
            ("cpu.weight", "100"),
            ("cpuset.cpus", ""),
            ("pids.max", "max"),
        ] {
            write(&r.join("docker/c1").join(file), value);
        }
        let plan = CgroupPlan {
            path: "docker/c1".into(),
            limits: docker_limits(),
        };
        join(r, &plan, 1234).unwrap();
        let leaf = r.join("docker/c1");
        assert_eq!(read(&leaf.join("cgroup.procs")), "1234");
        assert_eq!(read(&leaf.join("memory.max")), ((64u64 << 20) + MONITOR_OVERHEAD).to_string());
        assert_eq!(read(&leaf.join("memory.swap.max")), (64u64 << 20).to_string());
        assert_eq!(read(&leaf.join("cpu.max")), "50000 100000");
        assert_eq!(read(&leaf.join("cpu.weight")), "20");
        assert_eq!(read(&leaf.join("cpuset.cpus")), "0");
        assert_eq!(read(&leaf.join("pids.max")), "50");
        // Only the missing controller was enabled, only where it was missing.
        assert_eq!(read(&r.join("cgroup.subtree_control")), "+pids");
        assert_eq!(read(&r.join("docker/cgroup.subtree_control")), "cpu cpuset memory pids");

        // update: the same files again.
        let res: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "cpu": { "quota": 25000, "period": 100_000 }, "pids": { "limit": 40 }
        }))
        .unwrap();
        let limits = Limits::from_resources(&res, Guest { mem_mib: 64, tasks: 2 }, When::Update).unwrap();
        update(r, &plan.path, &limits).unwrap();
        assert_eq!(read(&leaf.join("cpu.max")), "25000 100000");
        assert_eq!(read(&leaf.join("pids.max")), "40");
        assert_eq!(read(&leaf.join("cpu.weight")), "20");
        // A real cgroup directory is empty of regular files; the fake one is not, so remove() only logs.
        remove(r, &plan);
    }

    #[test]
    fn test_a_missing_controller_is_an_error_naming_the_field_and_file_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("cgroup.controllers"), "cpu memory");
        write(&r.join("c3/cpu.max"), "max 100000");
        write(&r.join("c3/memory.max"), "max");
        let plan = CgroupPlan {
            path: "c3".into(),
            limits: docker_limits(),
        };
        let err = join(r, &plan, 42).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.resources.memory.swap: this host cannot apply it: no memory.swap.max in cgroup c3 under"),
            "{err}"
        );
        assert_eq!(read(&r.join("c3/cpu.max")), "max 100000");
        assert_eq!(read(&r.join("c3/memory.max")), "max");
        assert!(!r.join("c3/cgroup.procs").exists());
        // Without limits, joining is enough.
        join(
            r,
            &CgroupPlan {
                path: "c3".into(),
                limits: Limits::default(),
            },
            42,
        )
        .unwrap();
        assert_eq!(read(&r.join("c3/cgroup.procs")), "42");
    }

    #[test]
    fn test_join_applies_every_limit_on_a_fake_v1_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for h in ["cpu", "cpuset", "memory", "pids", "freezer"] {
            write(&r.join(h).join("cgroup.procs"), "");
        }
        write(&r.join("cpuset/cpuset.cpus"), "0-1");
        write(&r.join("cpuset/cpuset.mems"), "0");
        // A new cpuset level is empty until someone fills it in.
        for level in ["docker", "docker/c1"] {
            write(&r.join("cpuset").join(level).join("cpuset.cpus"), "\n");
            write(&r.join("cpuset").join(level).join("cpuset.mems"), "\n");
        }
        for (file, value) in [
            ("memory/docker/c1/memory.limit_in_bytes", "9223372036854771712"),
            ("memory/docker/c1/memory.memsw.limit_in_bytes", "9223372036854771712"),
            ("cpu/docker/c1/cpu.shares", "1024"),
            ("cpu/docker/c1/cpu.cfs_quota_us", "-1"),
            ("cpu/docker/c1/cpu.cfs_period_us", "100000"),
            ("pids/docker/c1/pids.max", "max"),
        ] {
            write(&r.join(file), value);
        }
        let plan = CgroupPlan {
            path: "docker/c1".into(),
            limits: docker_limits(),
        };
        join(r, &plan, 77).unwrap();
        let memory = (64u64 << 20) + MONITOR_OVERHEAD;
        for (file, value) in [
            ("memory/docker/c1/memory.limit_in_bytes", memory.to_string()),
            ("memory/docker/c1/memory.memsw.limit_in_bytes", (memory + (64 << 20)).to_string()),
            ("cpu/docker/c1/cpu.shares", "512".into()),
            ("cpu/docker/c1/cpu.cfs_quota_us", "50000".into()),
            ("cpu/docker/c1/cpu.cfs_period_us", "100000".into()),
            ("pids/docker/c1/pids.max", "50".into()),
            // The parent's CPUs and nodes copied down, then the container's own CPUs.
            ("cpuset/docker/cpuset.cpus", "0-1".into()),
            ("cpuset/docker/cpuset.mems", "0".into()),
            ("cpuset/docker/c1/cpuset.cpus", "0".into()),
            ("cpuset/docker/c1/cpuset.mems", "0".into()),
        ] {
            assert_eq!(read(&r.join(file)), value, "{file}");
        }
        for h in ["cpu", "cpuset", "memory", "pids", "freezer"] {
            assert_eq!(read(&r.join(h).join("docker/c1/cgroup.procs")), "77", "{h}");
        }
    }
}
