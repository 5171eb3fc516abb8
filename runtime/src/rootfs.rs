//! Paths inside a container, resolved the way the container's process would see them: the
//! rootfs, with the spec's bind mounts over it (`docker run -v`, `--mount type=bind`).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use vmm::host::files::{FileRoot, Root};

/// Why a path inside the container does not lead to a file unik can open.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The rootfs itself is unusable.
    #[error("rootfs {path}: {source}")]
    Rootfs {
        /// The rootfs.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `..` in the path.
    #[error("'{0}' leaves the rootfs")]
    Leaves(String),
    /// A symlink climbing above the rootfs, or above the bind-mounted directory it is in.
    #[error("'{inside}' resolves outside {place}")]
    Outside {
        /// The path asked for.
        inside: String,
        /// "the rootfs" or "the bind mount at DEST".
        place: String,
    },
    /// A component is missing or unreadable.
    #[error("'{inside}' in {place}: {source}")]
    Walk {
        /// The path asked for.
        inside: String,
        /// "the rootfs" or "the bind mount at DEST (SOURCE)".
        place: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A symlink loop.
    #[error("'{0}' in the rootfs: too many levels of symbolic links")]
    Loop(String),
    /// The path is on a mount that is not a bind mount (tmpfs, proc, …): its files exist only
    /// in the container's mount namespace, which unik never builds.
    #[error(
        "'{inside}' is on a {typ} mount at {destination}, not a bind mount: unik opens a guest's files \
         itself, so they must be in the image or bind-mounted from the host (docker run -v HOST:{destination})"
    )]
    NotBind {
        /// The path asked for.
        inside: String,
        /// The mount's destination.
        destination: String,
        /// The mount's type.
        typ: String,
    },
}

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: u32 = 40;

/// One mount of the spec, as far as paths are concerned.
#[derive(Debug, Clone)]
struct Mount {
    /// The destination's normal components (`/data/disk.img` → `data`, `disk.img`).
    destination: Vec<OsString>,
    /// The host path mounted there (bind mounts only).
    source: PathBuf,
    /// `None` for a bind mount, else its type.
    other: Option<String>,
    /// Mounted read-only (`ro`).
    read_only: bool,
}

impl Mount {
    fn destination(&self) -> String {
        format!(
            "/{}",
            self.destination.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
        )
    }

    fn place(&self) -> String {
        format!("the bind mount at {} ({})", self.destination(), self.source.display())
    }
}

/// The normal components of a path inside the container; `None` when it has `..`.
fn components(inside: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for c in inside.components() {
        match c {
            Component::Normal(part) => out.push(part.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A file of the container, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Its host path.
    pub path: PathBuf,
    /// The path it was asked by, as the container names it (what messages show).
    pub inside: String,
    /// Where it is opened: inside the rootfs, inside a bind-mounted directory, or (a
    /// bind-mounted file) at its host path.
    pub root: FileRoot,
    /// Whether the container sees it read-only: in a rootfs that is (`root.readonly`, docker
    /// `--read-only`), or in a bind mount with the `ro` option.
    pub read_only: bool,
    /// The destination of the bind mount it is in; `None` in the rootfs.
    pub mount: Option<String>,
}

impl Resolved {
    /// Where to open it.
    pub fn open_root(&self) -> Root<'_> {
        self.root.as_root()
    }
}

/// A container's file system as its process would see it: the rootfs, `root.readonly` or not,
/// with the spec's `mounts` over it in their order.
#[derive(Debug, Clone)]
pub struct View {
    rootfs: PathBuf,
    read_only: bool,
    mounts: Vec<Mount>,
}

impl View {
    /// The rootfs alone (no mounts), writable.
    pub fn rootfs(rootfs: &Path) -> View {
        View::new(rootfs, false, &[], Path::new("/"))
    }

    /// The rootfs (`read_only`: `root.readonly`) with `mounts` over it; a relative mount source
    /// is relative to the bundle. The rootfs is checked when a path is resolved.
    pub fn new(rootfs: &Path, read_only: bool, mounts: &[oci_spec::runtime::Mount], bundle: &Path) -> View {
        let mounts = mounts
            .iter()
            .filter_map(|m| {
                // A destination with `..`, or the root itself, is not one runc mounts over the
                // rootfs: nothing unik opens is there.
                let destination = components(m.destination()).filter(|d| !d.is_empty())?;
                let options = m.options().as_deref().unwrap_or_default();
                let has = |o: &str| options.iter().any(|x| x == o);
                // runc's rule: the `bind` or `rbind` option makes a bind mount whatever the type.
                let bind = m.typ().as_deref() == Some("bind") || has("bind") || has("rbind");
                let source = m.source().clone().unwrap_or_default();
                Some(Mount {
                    destination,
                    source: if source.is_absolute() { source } else { bundle.join(source) },
                    other: (!bind).then(|| m.typ().clone().unwrap_or_else(|| "(typeless)".into())),
                    read_only: has("ro") || has("rro"),
                })
            })
            .collect();
        View {
            rootfs: rootfs.to_path_buf(),
            read_only,
            mounts,
        }
    }

    /// The mount whose tree `cpath` is in: of the mounts whose destination is a prefix of it, the
    /// one mounted last (it hides the earlier ones, as in the kernel; docker and containerd order
    /// parents first, so it is also the longest match).
    fn mount_of(&self, cpath: &[OsString]) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| cpath.starts_with(&m.destination))
    }

    /// The host path of `cpath` (no symlinks followed; `rootfs`: the canonical rootfs), and the
    /// mount it is in.
    fn locate(&self, rootfs: &Path, cpath: &[OsString], inside: &str) -> Result<(PathBuf, Option<&Mount>), RootfsError> {
        match self.mount_of(cpath) {
            None => Ok((cpath.iter().fold(rootfs.to_path_buf(), |p, c| p.join(c)), None)),
            Some(m) => {
                if let Some(typ) = &m.other {
                    return Err(RootfsError::NotBind {
                        inside: inside.to_string(),
                        destination: m.destination(),
                        typ: typ.clone(),
                    });
                }
                let rest = &cpath[m.destination.len()..];
                Ok((rest.iter().fold(m.source.clone(), |p, c| p.join(c)), Some(m)))
            }
        }
    }

    /// Whether the container has an entry at `inside` (not following a final symlink): a mount
    /// there, or a file (of any kind) at its place.
    pub fn exists(&self, inside: &str) -> bool {
        let Some(cpath) = components(Path::new(inside)) else { return false };
        match self.locate(&self.rootfs, &cpath, inside) {
            Ok((path, _)) => std::fs::symlink_metadata(path).is_ok(),
            Err(_) => true,
        }
    }

    /// Resolves `inside` (absolute or relative to the container's root) to an existing file, as
    /// the container's process would find it: symlinks are followed (an absolute target starts
    /// again at the root), and where a bind mount's destination is reached its source is what is
    /// there. A symlink inside a bind-mounted directory stays in it (an absolute target starts
    /// at that directory, `..` cannot climb above it), as `RESOLVE_IN_ROOT` with the directory
    /// as root does when the file is opened. `..` in `inside` is refused, and so is a symlink
    /// whose target climbs above the rootfs; a path on a mount that is not a bind mount is an
    /// error naming it.
    pub fn resolve(&self, inside: &str) -> Result<Resolved, RootfsError> {
        let root = self.rootfs.canonicalize().map_err(|source| RootfsError::Rootfs {
            path: self.rootfs.clone(),
            source,
        })?;
        let leaves = || RootfsError::Leaves(inside.to_string());
        // Components still to walk, last one first; ".." can only come from symlink targets.
        let mut pending: Vec<OsString> = components(Path::new(inside)).ok_or_else(leaves)?;
        pending.reverse();
        let mut cpath: Vec<OsString> = Vec::new();
        // ".." may not take `cpath` below this many components: inside a bind-mounted
        // directory, its destination's.
        let mut floor = 0;
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if cpath.len() <= floor {
                    let place = self
                        .mount_of(&cpath)
                        .map_or("the rootfs".to_string(), |m| format!("the bind mount at {}", m.destination()));
                    return Err(RootfsError::Outside {
                        inside: inside.to_string(),
                        place,
                    });
                }
                cpath.pop();
                continue;
            }
            cpath.push(part);
            let (path, mount) = self.locate(&root, &cpath, inside)?;
            let walk = |source| RootfsError::Walk {
                inside: inside.to_string(),
                place: mount.map_or("the rootfs".to_string(), Mount::place),
                source,
            };
            // A mount's source is the host's path, followed on the host as the kernel did when
            // it mounted it.
            if mount.is_some_and(|m| m.destination.len() == cpath.len()) {
                std::fs::metadata(&path).map_err(walk)?;
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(walk)?;
            if !meta.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(RootfsError::Loop(inside.to_string()));
            }
            let target = std::fs::read_link(&path).map_err(walk)?;
            cpath.pop();
            // A symlink in a bind-mounted directory resolves inside it.
            let base = mount.map_or(0, |m| m.destination.len());
            floor = base;
            if target.is_absolute() {
                cpath.truncate(base);
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(p) => pending.push(p.to_os_string()),
                    Component::ParentDir => pending.push("..".into()),
                    Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                }
            }
        }
        let (path, mount) = self.locate(&root, &cpath, inside)?;
        let (root, read_only) = match mount {
            None => (FileRoot::Dir(root), self.read_only),
            Some(m) if m.destination.len() == cpath.len() => (FileRoot::Host, m.read_only),
            Some(m) => (FileRoot::Dir(m.source.clone()), m.read_only),
        };
        Ok(Resolved {
            path,
            inside: inside.to_string(),
            root,
            read_only,
            mount: mount.map(Mount::destination),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_in_rootfs(rootfs: &Path, inside: &str) -> Result<PathBuf, RootfsError> {
        View::rootfs(rootfs).resolve(inside).map(|r| r.path)
    }

    #[test]
    fn test_each_way_out_is_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path();
        std::fs::create_dir(rootfs.join("d")).unwrap();
        std::fs::write(rootfs.join("d/k"), b"k").unwrap();
        std::os::unix::fs::symlink("/d/k", rootfs.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../etc/passwd", rootfs.join("d/up")).unwrap();
        std::os::unix::fs::symlink("loop", rootfs.join("loop")).unwrap();
        let root = rootfs.canonicalize().unwrap();
        assert_eq!(resolve_in_rootfs(rootfs, "/abs").unwrap(), root.join("d/k"));
        assert!(matches!(resolve_in_rootfs(rootfs, "../x"), Err(RootfsError::Leaves(_))));
        assert!(matches!(resolve_in_rootfs(rootfs, "d/up"), Err(RootfsError::Outside { .. })));
        assert!(matches!(resolve_in_rootfs(rootfs, "loop"), Err(RootfsError::Loop(_))));
        let missing = resolve_in_rootfs(rootfs, "nope").unwrap_err();
        assert!(matches!(&missing, RootfsError::Walk { source, .. } if source.kind() == std::io::ErrorKind::NotFound));
        assert_eq!(missing.to_string(), "'nope' in the rootfs: No such file or directory (os error 2)");
        assert!(matches!(
            resolve_in_rootfs(&rootfs.join("absent"), "k"),
            Err(RootfsError::Rootfs { .. })
        ));
    }
}
