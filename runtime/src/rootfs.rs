//! Paths inside a container's rootfs, resolved the way the container sees them.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: u32 = 40;

/// Resolves `inside` (absolute or relative to the rootfs) to the host path of an existing file
/// in the rootfs, following symlinks the way the container would see them: an absolute target
/// starts again at the rootfs. `..` in `inside` is refused, and so is a symlink whose target
/// climbs above the rootfs.
pub fn resolve_in_rootfs(rootfs: &Path, inside: &str) -> Result<PathBuf, String> {
    let root = rootfs.canonicalize().map_err(|e| format!("rootfs {}: {e}", rootfs.display()))?;
    // Components still to walk, last one first; ".." can only come from symlink targets.
    let mut pending: Vec<OsString> = Vec::new();
    for c in Path::new(inside).components().rev() {
        match c {
            Component::Normal(part) => pending.push(part.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(format!("'{inside}' leaves the rootfs")),
        }
    }
    let mut path = root.clone();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if path == root {
                return Err(format!("'{inside}' resolves outside the rootfs"));
            }
            path.pop();
            continue;
        }
        path.push(&part);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("'{inside}' in the rootfs: {e}"))?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(format!("'{inside}' in the rootfs: too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&path).map_err(|e| format!("'{inside}' in the rootfs: {e}"))?;
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
