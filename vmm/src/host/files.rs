//! Files the user names (kernels, initrds, disk images): opened without blocking, so that a FIFO
//! cannot hang the monitor, and checked for their kind and size before anything is read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

fn open_nonblocking(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(write).custom_flags(libc::O_NONBLOCK).open(path)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Opens a regular file for reading; anything else (a directory, a FIFO, a device) is an error.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = open_nonblocking(path, false)?;
    if !file.metadata()?.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    Ok(file)
}

/// Reads a regular file whole, if it is at most `max` bytes (`limit` names that bound in the
/// error, e.g. "of guest memory").
pub fn read_regular(path: &Path, max: u64, limit: &str) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
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
pub fn open_disk(path: &Path, read_only: bool) -> io::Result<File> {
    let file = open_nonblocking(path, !read_only)?;
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
        assert_eq!(open_regular(&fifo).unwrap_err().to_string(), "not a regular file");
        assert_eq!(
            open_disk(&fifo, true).unwrap_err().to_string(),
            "not a regular file or block device"
        );
        assert_eq!(
            read_regular(dir.path(), 10, "allowed").unwrap_err().to_string(),
            "not a regular file"
        );
    }

    #[test]
    fn test_reads_only_what_fits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, [7u8; 100]).unwrap();
        assert_eq!(read_regular(&f, 100, "allowed").unwrap(), [7u8; 100]);
        assert_eq!(
            read_regular(&f, 99, "of guest memory").unwrap_err().to_string(),
            "100 bytes, more than the 99 bytes of guest memory"
        );
        open_disk(&f, false).unwrap();
    }
}
