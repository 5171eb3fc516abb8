//! The state root: `--root`, else `/run/unik` for root, else `$XDG_RUNTIME_DIR/unik` (the same
//! order runc and youki use for theirs), created private (0700).

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ContainerError;

/// The root when running as root (or without `$XDG_RUNTIME_DIR`).
pub const DEFAULT_ROOT: &str = "/run/unik";

/// The root for effective uid `euid` with `$XDG_RUNTIME_DIR` = `xdg`, unless `explicit` is given.
pub fn resolve(explicit: Option<&Path>, euid: u32, xdg: Option<OsString>) -> PathBuf {
    if let Some(root) = explicit {
        return root.to_path_buf();
    }
    match xdg {
        Some(dir) if euid != 0 && !dir.is_empty() => PathBuf::from(dir).join("unik"),
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

/// The root for this process: `explicit`, or the default for its euid and environment.
pub fn default_root(explicit: Option<&Path>) -> PathBuf {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    resolve(explicit, euid, std::env::var_os("XDG_RUNTIME_DIR"))
}

/// Creates `root` (and its parents) if needed; a root created here is mode 0700. An existing one
/// must be a directory.
pub fn ensure(root: &Path) -> Result<(), ContainerError> {
    match DirBuilder::new().recursive(true).mode(0o700).create(root) {
        Ok(()) => {}
        Err(e) => return Err(ContainerError::io(format!("creating root {}", root.display()))(e)),
    }
    let meta = fs::metadata(root).map_err(ContainerError::io(format!("root {}", root.display())))?;
    if !meta.is_dir() {
        return Err(ContainerError::io(format!("root {}", root.display()))(
            std::io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        log::warn!("root {} is writable by others", root.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_resolution_order() {
        let xdg = || Some(OsString::from("/run/user/1000"));
        assert_eq!(resolve(Some(Path::new("/x")), 1000, xdg()), Path::new("/x"));
        assert_eq!(resolve(None, 1000, xdg()), Path::new("/run/user/1000/unik"));
        assert_eq!(resolve(None, 0, xdg()), Path::new(DEFAULT_ROOT));
        assert_eq!(resolve(None, 1000, None), Path::new(DEFAULT_ROOT));
        assert_eq!(resolve(None, 1000, Some(OsString::new())), Path::new(DEFAULT_ROOT));
    }

    #[test]
    fn test_ensure_creates_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/unik");
        ensure(&root).unwrap();
        assert_eq!(fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
        ensure(&root).unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = ensure(&file).unwrap_err().to_string();
        assert!(err.starts_with(&format!("creating root {}: File exists", file.display())), "{err}");
    }
}
