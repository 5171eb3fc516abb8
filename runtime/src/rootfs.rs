//! Paths inside a container's rootfs, resolved the way the container sees them.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Why a path inside the rootfs does not lead to a file there.
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
    /// A symlink climbing above the rootfs.
    #[error("'{0}' resolves outside the rootfs")]
    Outside(String),
    /// A component is missing or unreadable.
    #[error("'{inside}' in the rootfs: {source}")]
    Walk {
        /// The path asked for.
        inside: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A symlink loop.
    #[error("'{0}' in the rootfs: too many levels of symbolic links")]
    Loop(String),
}

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: u32 = 40;

/// Resolves `inside` (absolute or relative to the rootfs) to the host path of an existing file
/// in the rootfs, following symlinks the way the container would see them: an absolute target
/// starts again at the rootfs. `..` in `inside` is refused, and so is a symlink whose target
/// climbs above the rootfs.
pub fn resolve_in_rootfs(rootfs: &Path, inside: &str) -> Result<PathBuf, RootfsError> {
    let root = rootfs.canonicalize().map_err(|source| RootfsError::Rootfs {
        path: rootfs.to_path_buf(),
        source,
    })?;
    // Components still to walk, last one first; ".." can only come from symlink targets.
    let mut pending: Vec<OsString> = Vec::new();
    for c in Path::new(inside).components().rev() {
        match c {
            Component::Normal(part) => pending.push(part.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(RootfsError::Leaves(inside.to_string())),
        }
    }
    let mut path = root.clone();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if path == root {
                return Err(RootfsError::Outside(inside.to_string()));
            }
            path.pop();
            continue;
        }
        path.push(&part);
        let walk = |source| RootfsError::Walk {
            inside: inside.to_string(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(walk)?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(RootfsError::Loop(inside.to_string()));
        }
        let target = std::fs::read_link(&path).map_err(walk)?;
        path.pop();
        if target.is_absolute() {
            path.clone_from(&root);
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(p) => pending.push(p.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(resolve_in_rootfs(rootfs, "d/up"), Err(RootfsError::Outside(_))));
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
