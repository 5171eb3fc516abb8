//! Files the user names (kernels, initrds, disk images): opened without blocking, so that a FIFO
//! cannot hang the monitor, and checked for their kind and size before anything is read.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Where the files of one VM are looked up: the host's file system, a directory they cannot
/// leave, each file where a container's configuration says, or descriptors opened before.
#[derive(Clone, Copy, Debug)]
pub enum Root<'a> {
    /// Paths mean what they say on the host (`unik boot`).
    Host,
    /// Paths are inside this directory (a container's rootfs, or a directory bind-mounted into
    /// it), which they can never leave: `..` and symlinks, even absolute ones, resolve inside it
    /// (`openat2` with `RESOLVE_IN_ROOT`), at the moment of the open, so a symlink swapped in
    /// after a check leads nowhere outside. A path may be given as the host's path of the file
    /// (the directory as prefix) or as the path inside.
    Dir(&'a Path),
    /// A container's files, each opened where its entry says ([`FileRoot`]); a path without an
    /// entry is an error, never an open by path.
    Files(&'a BTreeMap<PathBuf, FileRoot>),
    /// The files were opened before, by another process, and handed over (the container
    /// monitor's guest files, opened by `create`): a path that is not among them is an error,
    /// so what `create` checked is what boots.
    Opened(&'a Opened),
}

/// Where one file of a container is opened: what the container's process would see at that
/// path, the rootfs or a bind mount over it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRoot {
    /// Inside this directory, as [`Root::Dir`]: the rootfs, or a bind-mounted directory (a
    /// symlink in it cannot lead out of it).
    Dir(PathBuf),
    /// At its host path: a file bind-mounted over the rootfs, the mount's source, which the
    /// user of the container engine chose (trusted, as runc trusts a mount's source).
    Host,
}

impl FileRoot {
    /// As a [`Root`] to open the file in.
    pub fn as_root(&self) -> Root<'_> {
        match self {
            FileRoot::Dir(dir) => Root::Dir(dir),
            FileRoot::Host => Root::Host,
        }
    }
}

/// Files opened ahead of the VM's build, by the paths the VM's configuration names them with
/// ([`crate::VmConfig::files`]), each read-only or read-write as the VM uses it.
#[derive(Debug, Default)]
pub struct Opened {
    files: Vec<(PathBuf, bool, File)>,
}

impl PartialEq for Opened {
    fn eq(&self, other: &Opened) -> bool {
        let key = |o: &Opened| o.files.iter().map(|(p, w, _)| (p.clone(), *w)).collect::<Vec<_>>();
        key(self) == key(other)
    }
}

impl Eq for Opened {}

impl Opened {
    /// Opens `wanted` (path, for writing) in `root`, in order.
    pub fn open(root: Root<'_>, wanted: &[(&Path, bool)]) -> io::Result<Opened> {
        let files = wanted
            .iter()
            .map(|&(path, write)| {
                let file = open_nonblocking(root, path, write).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                Ok((path.to_path_buf(), write, file))
            })
            .collect::<io::Result<_>>()?;
        Ok(Opened { files })
    }

    /// The files, in the order they were opened.
    pub fn files(&self) -> impl Iterator<Item = &File> {
        self.files.iter().map(|(_, _, f)| f)
    }

    /// Takes `wanted` from the descriptors `first`, `first + 1`, … that this process inherited
    /// (made close-on-exec here).
    ///
    /// # Safety
    /// Those descriptors must be open, owned by nobody else in this process, and hold `wanted`'s
    /// files in order: the caller's parent put them there.
    pub unsafe fn inherit(wanted: &[(&Path, bool)], first: RawFd) -> io::Result<Opened> {
        let mut files = Vec::with_capacity(wanted.len());
        for (fd, &(path, write)) in (first..).zip(wanted) {
            // SAFETY: F_SETFD on any number is harmless; it fails with EBADF if nothing is there.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("{} (descriptor {fd}): {e}", path.display())));
            }
            // SAFETY: open (checked above) and ours alone, as the caller promises.
            files.push((path.to_path_buf(), write, File::from(unsafe { OwnedFd::from_raw_fd(fd) })));
        }
        Ok(Opened { files })
    }

    /// A new handle on `path`'s file, read from its start.
    fn get(&self, path: &Path, write: bool) -> io::Result<File> {
        let (_, _, file) = self.files.iter().find(|(p, w, _)| p == path && *w == write).ok_or_else(|| {
            let mode = if write { "read-write" } else { "read-only" };
            io::Error::new(io::ErrorKind::NotFound, format!("not among the files opened before ({mode})"))
        })?;
        let mut file = file.try_clone()?;
        // The handles share one offset: each user starts from the beginning (the loaders read
        // sequentially; disks use positioned I/O).
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

fn open_nonblocking(root: Root<'_>, path: &Path, write: bool) -> io::Result<File> {
    match root {
        Root::Host => OpenOptions::new().read(true).write(write).custom_flags(libc::O_NONBLOCK).open(path),
        Root::Dir(dir) => open_in_root(dir, path, write),
        Root::Files(roots) => match roots.get(path) {
            Some(root) => open_nonblocking(root.as_root(), path, write),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not among the container's files (no root recorded for it)",
            )),
        },
        Root::Opened(opened) => opened.get(path, write),
    }
}

fn open_in_root(dir: &Path, path: &Path, write: bool) -> io::Result<File> {
    let inside = path.strip_prefix(dir).unwrap_or(path);
    if inside.components().any(|c| matches!(c, Component::Prefix(_))) {
        return Err(invalid(format!("'{}' is not a path inside {}", path.display(), dir.display())));
    }
    let root = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
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
        let root = Root::Dir(&rootfs);
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
    fn test_each_file_of_a_container_is_opened_where_its_root_says() {
        let dir = tempfile::tempdir().unwrap();
        let (rootfs, volume) = (dir.path().join("rootfs"), dir.path().join("volume"));
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::write(dir.path().join("secret"), b"host").unwrap();
        std::fs::write(dir.path().join("disk.img"), b"bind-mounted file").unwrap();
        std::fs::write(volume.join("secret"), b"in the volume").unwrap();
        // In a bind-mounted directory, an absolute symlink stays inside it too.
        std::os::unix::fs::symlink("/secret", volume.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), volume.join("out")).unwrap();
        std::fs::write(rootfs.join("k"), b"kernel").unwrap();
        let roots = BTreeMap::from([
            (rootfs.join("k"), FileRoot::Dir(rootfs.clone())),
            (volume.join("link"), FileRoot::Dir(volume.clone())),
            (volume.join("out"), FileRoot::Dir(volume.clone())),
            (dir.path().join("disk.img"), FileRoot::Host),
        ]);
        let root = Root::Files(&roots);
        let read = |p: &Path| read_regular(root, p, 100, "allowed").map(|d| String::from_utf8(d).unwrap());
        assert_eq!(read(&rootfs.join("k")).unwrap(), "kernel");
        assert_eq!(read(&volume.join("link")).unwrap(), "in the volume");
        assert_eq!(read(&volume.join("out")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(read(&dir.path().join("disk.img")).unwrap(), "bind-mounted file");
        // A file without a recorded root is never opened by its path.
        let e = read(&dir.path().join("secret")).unwrap_err();
        assert_eq!(e.to_string(), "not among the container's files (no root recorded for it)");
        // The roots survive vm.json.
        let json = serde_json::to_string(&roots).unwrap();
        assert_eq!(serde_json::from_str::<BTreeMap<PathBuf, FileRoot>>(&json).unwrap(), roots);
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

    #[test]
    fn test_opened_files_are_found_by_path_and_mode_and_read_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (kernel, disk) = (dir.path().join("kernel"), dir.path().join("disk"));
        std::fs::write(&kernel, b"kernel bytes").unwrap();
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let opened = Opened::open(Root::Host, &[(&kernel, false), (&disk, true)]).unwrap();
        // Replaced afterwards: the files opened before are what is read.
        std::fs::write(dir.path().join("new"), b"other").unwrap();
        std::fs::rename(dir.path().join("new"), &kernel).unwrap();
        let root = Root::Opened(&opened);
        for _ in 0..2 {
            assert_eq!(read_regular(root, &kernel, 100, "allowed").unwrap(), b"kernel bytes");
        }
        open_disk(root, &disk, false).unwrap();
        // Not opened, or not in that mode: an error, never an open by path.
        let e = open_disk(root, &disk, true).unwrap_err();
        assert_eq!(e.to_string(), "not among the files opened before (read-only)");
        assert_eq!(
            open_regular(root, &dir.path().join("other")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // Opening a missing file names it.
        let e = Opened::open(Root::Host, &[(&dir.path().join("missing"), false)]).unwrap_err();
        assert!(e.to_string().contains("missing: No such file or directory"), "{e}");
    }
}
