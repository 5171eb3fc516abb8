//! A block device backed by a host file (or a host block device).

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open backing file and its size.
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: PathBuf,
    capacity: u64,
}

impl Disk {
    /// Opens `path` read-write (close-on-exec, no locking, no `O_DIRECT`, as solo5-hvt does).
    ///
    /// The capacity is where a seek to the end lands, which is the size of a regular file and
    /// also of a block device (whose metadata reports 0 bytes).
    pub fn open(path: &Path) -> io::Result<Disk> {
        Disk::open_with(path, false)
    }

    /// Opens `path`, read-only when `read_only` (then writes fail with EBADF in the kernel).
    pub fn open_with(path: &Path, read_only: bool) -> io::Result<Disk> {
        Disk::open_in(super::files::Root::Host, path, read_only)
    }

    /// Opens `path` looked up in `root`, read-only when `read_only`.
    pub fn open_in(root: super::files::Root<'_>, path: &Path, read_only: bool) -> io::Result<Disk> {
        // Opened with O_CLOEXEC.
        let mut file = super::files::open_disk(root, path, read_only)?;
        let capacity = file.seek(SeekFrom::End(0))?;
        Ok(Disk {
            file,
            path: path.to_path_buf(),
            capacity,
        })
    }

    /// Size in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host fd (reported in the manifest, as solo5 does).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads exactly `buf.len()` bytes at `offset` (pread); a short read is an error.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Deallocates `[offset, offset + len)`: it reads as zeros afterwards and the file keeps its
    /// size (fallocate with PUNCH_HOLE | KEEP_SIZE).
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        // SAFETY: fallocate on a descriptor we own; no memory is passed.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes written data durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Writes all of `buf` at `offset` (pwrite, continued after a partial write).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn test_capacity_and_positional_io() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[7; 4096]).unwrap();
        let disk = Disk::open(f.path()).unwrap();
        assert_eq!(disk.capacity(), 4096);
        assert_eq!(disk.path(), f.path());
        disk.write_at(&[1; 512], 512).unwrap();
        let mut buf = [0u8; 1024];
        disk.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..512], &[7; 512][..]);
        assert_eq!(&buf[512..], &[1; 512][..]);
        // A read past the end is short: an error, never a partial success.
        let err = disk.read_at(&mut buf, 4000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        // The fd is open read-write and close-on-exec (fdinfo flags are octal open(2) flags).
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", disk.raw_fd())).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        let flags = i32::from_str_radix(flags, 8).unwrap();
        assert_eq!(flags & libc::O_CLOEXEC, libc::O_CLOEXEC);
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDWR);
    }

    #[test]
    fn test_open_errors_carry_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Disk::open(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // A directory cannot be opened read-write.
        let err = Disk::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory, "{err}");
    }
}
