//! Files the user names (kernels, initrds, disk images): opened without blocking, so that a FIFO
//! cannot hang the monitor, and checked for their kind and size before anything is read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path};

/// Where the files of one VM are looked up: the host's file system, or a container's rootfs.
#[derive(Clone, Copy, Debug)]
pub enum Root<'a> {
    /// Paths mean what they say on the host (`unik boot`).
    Host,
    /// Paths are inside this directory, which they can never leave: `..` and symlinks, even
    /// absolute ones, resolve inside it (`openat2` with `RESOLVE_IN_ROOT`), at the moment of the
    /// open, so a symlink swapped in after a check leads nowhere outside. A path may be given
    /// as the host's path of the file (the rootfs as prefix) or as the path inside.
    Rootfs(&'a Path),
}

impl<'a> Root<'a> {
    /// `Rootfs(dir)` when `dir` is set, else `Host`.
    pub fn from_option(dir: Option<&'a Path>) -> Root<'a> {
        dir.map_or(Root::Host, Root::Rootfs)
    }
}

fn open_nonblocking(root: Root<'_>, path: &Path, write: bool) -> io::Result<File> {
    match root {
        Root::Host => OpenOptions::new().read(true).write(write).custom_flags(libc::O_NONBLOCK).open(path),
        Root::Rootfs(dir) => open_in_root(dir, path, write),
    }
}

fn open_in_root(dir: &Path, path: &Path, write: bool) -> io::Result<File> {
    let inside = path.strip_prefix(dir).unwrap_or(path);
    if inside.components().any(|c| matches!(c, Component::Prefix(_))) {
        return Err(invalid(format!("'{}' is not a path inside the rootfs", path.display())));
    }
    let root = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("rootfs {}: {e}", dir.display())))?;
    let relative = inside.strip_prefix("/").unwrap_or(inside);
    let name = std::ffi::CString::new(if relative.as_os_str().is_empty() {
        b".".as_slice()
    } else {
        relative.as_os_str().as_bytes()
    })
    .map_err(|_| invalid(format!("'{}' has a NUL byte", path.display())))?;
    let access = if write { libc::O_RDWR } else { libc::O_RDONLY };
    // SAFETY: open_how is plain data; all zero is "no flags, no mode, no resolve flags".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = u64::try_from(access | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY).unwrap_or(0);
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `name` (NUL-terminated) and `how` (its size passed), both valid for
    // the call; it returns a new descriptor we own, or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root),
            name.as_ptr(),
            &raw const how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| invalid("openat2 returned an invalid descriptor".into()))?;
    // SAFETY: openat2 just returned this descriptor, and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Opens a regular file for reading; anything else (a directory, a FIFO, a device) is an error.
pub fn open_regular(root: Root<'_>, path: &Path) -> io::Result<File> {
    let file = open_nonblocking(root, path, false)?;
    if !file.metadata()?.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    Ok(file)
}

/// Reads a regular file whole, if it is at most `max` bytes (`limit` names that bound in the
/// error, e.g. "of guest memory").
pub fn read_regular(root: Root<'_>, path: &Path, max: u64, limit: &str) -> io::Result<Vec<u8>> {
    let file = open_regular(root, path)?;
    let size = file.metadata()?.len();
    if size > max {
        return Err(invalid(format!("{size} bytes, more than the {max} bytes {limit}")));
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // `take`: a file that grows meanwhile still yields at most `max` bytes.
    file.take(max).read_to_end(&mut data)?;
    Ok(data)
}

/// Opens a disk image: a regular file or a block device (read-write unless `read_only`).
pub fn open_disk(root: Root<'_>, path: &Path, read_only: bool) -> io::Result<File> {
    let file = open_nonblocking(root, path, !read_only)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() && !kind.is_block_device() {
        return Err(invalid("not a regular file or block device".into()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang here.
        assert_eq!(open_regular(Root::Host, &fifo).unwrap_err().to_string(), "not a regular file");
        assert_eq!(
            open_disk(Root::Host, &fifo, true).unwrap_err().to_string(),
            "not a regular file or block device"
        );
        assert_eq!(
            read_regular(Root::Host, dir.path(), 10, "allowed").unwrap_err().to_string(),
            "not a regular file"
        );
    }

    #[test]
    fn test_a_rootfs_cannot_be_left_by_symlinks_or_dots() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(dir.path().join("secret"), b"host").unwrap();
        std::fs::write(rootfs.join("etc/secret"), b"inside").unwrap();
        std::fs::write(rootfs.join("secret"), b"top").unwrap();
        // An absolute symlink, a relative one climbing out, and `..` in the path itself.
        std::os::unix::fs::symlink(dir.path().join("secret"), rootfs.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", rootfs.join("etc/rel")).unwrap();
        let root = Root::Rootfs(&rootfs);
        let read = |p: &Path| read_regular(root, p, 100, "allowed").map(|d| String::from_utf8(d).unwrap());
        // The host's path of the symlink and its path inside both resolve inside.
        assert_eq!(read(&rootfs.join("abs")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(read(Path::new("/etc/rel")).unwrap(), "top");
        assert_eq!(read(Path::new("/../../secret")).unwrap(), "top");
        assert_eq!(read(&rootfs.join("etc/secret")).unwrap(), "inside");
        // A symlink to a path that exists inside is followed there.
        std::os::unix::fs::symlink("/etc/secret", rootfs.join("k")).unwrap();
        assert_eq!(read(Path::new("k")).unwrap(), "inside");
        assert_eq!(read_regular(Root::Host, &rootfs.join("abs"), 100, "allowed").unwrap(), b"host");
    }

    #[test]
    fn test_reads_only_what_fits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, [7u8; 100]).unwrap();
        assert_eq!(read_regular(Root::Host, &f, 100, "allowed").unwrap(), [7u8; 100]);
        assert_eq!(
            read_regular(Root::Host, &f, 99, "of guest memory").unwrap_err().to_string(),
            "100 bytes, more than the 99 bytes of guest memory"
        );
        open_disk(Root::Host, &f, false).unwrap();
    }
}
