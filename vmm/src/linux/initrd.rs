//! The initrd: read whole (bounded by the room it has) and placed as high as it fits.

use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{InitrdError, LinuxError};
use crate::error::Error;
use crate::host::files::Root;

/// Loads the initrd page-aligned as high as it fits below `end` and above the kernel (which ends
/// at `kernel_end`); returns (address, size).
pub(super) fn load(root: Root<'_>, path: &Path, mem: &GuestMemoryMmap, kernel_end: u64, end: u64) -> Result<(u64, u64), Error> {
    let err = |source| {
        Error::Linux(LinuxError::Initrd {
            path: path.to_path_buf(),
            source,
        })
    };
    let room = end.saturating_sub(kernel_end);
    let data =
        crate::host::files::read_regular(root, path, room, "of guest memory above the kernel").map_err(|e| err(InitrdError::Read(e)))?;
    let size = data.len() as u64;
    let addr = end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel_end)
        .ok_or_else(|| err(InitrdError::TooBig(size)))?;
    mem.write_slice(&data, GuestAddress(addr)).map_err(|e| err(InitrdError::Write(e)))?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIMEM: u64 = 0x10_0000;

    #[test]
    fn test_initrd_errors_say_which_step_failed() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd");
        std::fs::write(&path, [7u8; 100]).unwrap();
        // 100 bytes fit above a kernel ending 100 bytes below the end, but not page-aligned.
        let e = load(Root::Host, &path, &mem, HIMEM - 100, HIMEM).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Linux(LinuxError::Initrd {
                    source: InitrdError::TooBig(100),
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().ends_with("100 bytes do not fit in guest memory above the kernel"),
            "{e}"
        );
        let e = load(Root::Host, &dir.path().join("missing"), &mem, HIMEM, 16 << 20).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Linux(LinuxError::Initrd {
                    source: InitrdError::Read(_),
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(load(Root::Host, &path, &mem, HIMEM, 16 << 20).unwrap(), ((16 << 20) - 4096, 100));
    }
}
