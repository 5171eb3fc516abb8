//! Byte-exact mirrors of the hvt ABI version 2 argument structs (identical on x86_64 and aarch64).

use vm_memory::ByteValued;

/// Hypercall numbers (`enum hvt_hypercall`); 0 is reserved and never valid.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallNr {
    /// Host wall-clock time.
    Walltime = 1,
    /// Console output.
    Puts = 2,
    /// Wait for network input or a timeout.
    Poll = 3,
    /// Write one block.
    BlockWrite = 4,
    /// Read one block.
    BlockRead = 5,
    /// Send one frame.
    NetWrite = 6,
    /// Receive one frame.
    NetRead = 7,
    /// Stop the guest with a status.
    Halt = 8,
}

impl TryFrom<u32> for HypercallNr {
    type Error = u32;

    fn try_from(nr: u32) -> Result<Self, u32> {
        Ok(match nr {
            1 => HypercallNr::Walltime,
            2 => HypercallNr::Puts,
            3 => HypercallNr::Poll,
            4 => HypercallNr::BlockWrite,
            5 => HypercallNr::BlockRead,
            6 => HypercallNr::NetWrite,
            7 => HypercallNr::NetRead,
            8 => HypercallNr::Halt,
            other => return Err(other),
        })
    }
}

/// solo5 result codes.
pub mod result {
    /// Success.
    pub const OK: i32 = 0;
    /// Try again (no frame available).
    pub const AGAIN: i32 = 1;
    /// Invalid argument.
    pub const EINVAL: i32 = 2;
    /// Unspecified error.
    pub const EUNSPEC: i32 = 3;
}

/// Size of the HALT cookie area (`HVT_HALT_COOKIE_MAX`).
pub const HALT_COOKIE_MAX: u64 = 512;

/// `struct hvt_hc_walltime`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcWalltime {
    /// OUT: nanoseconds since the epoch.
    pub nsecs: u64,
}

/// `struct hvt_hc_puts`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcPuts {
    /// IN: GPA of the bytes.
    pub data: u64,
    /// IN: their length.
    pub len: u64,
}

/// `struct hvt_hc_poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcPoll {
    /// IN: relative timeout in nanoseconds.
    pub timeout_nsecs: u64,
    /// OUT: bit `h` set when net device handle `h` is readable.
    pub ready_set: u64,
    /// OUT: number of readable devices.
    pub ret: i32,
    _pad: u32,
}

/// `struct hvt_hc_block_write` and `struct hvt_hc_block_read` (same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcBlock {
    /// IN: device handle (manifest index).
    pub handle: u64,
    /// IN: byte offset.
    pub offset: u64,
    /// IN: GPA of the buffer.
    pub data: u64,
    /// IN: length.
    pub len: u64,
    /// OUT: solo5 result.
    pub ret: i32,
    _pad: u32,
}

/// `struct hvt_hc_net_write` and `struct hvt_hc_net_read` (same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcNet {
    /// IN: device handle (manifest index).
    pub handle: u64,
    /// IN: GPA of the buffer.
    pub data: u64,
    /// IN: length (write) / buffer size (read); OUT (read): frame length.
    pub len: u64,
    /// OUT: solo5 result.
    pub ret: i32,
    _pad: u32,
}

/// `struct hvt_hc_halt`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HcHalt {
    /// IN: GPA of the cookie (register dump), or 0.
    pub cookie: u64,
    /// IN: exit status.
    pub exit_status: i32,
    _pad: u32,
}

// SAFETY (all impls below): repr(C) structs of integer fields with explicit padding fields, so
// there are no implicit padding bytes and every bit pattern is a valid value.
// SAFETY: see above.
unsafe impl ByteValued for HcWalltime {}
// SAFETY: see above.
unsafe impl ByteValued for HcPuts {}
// SAFETY: see above.
unsafe impl ByteValued for HcPoll {}
// SAFETY: see above.
unsafe impl ByteValued for HcBlock {}
// SAFETY: see above.
unsafe impl ByteValued for HcNet {}
// SAFETY: see above.
unsafe impl ByteValued for HcHalt {}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn test_layouts_match_hvt_abi_h() {
        assert_eq!(size_of::<HcWalltime>(), 8);
        assert_eq!(size_of::<HcPuts>(), 16);
        assert_eq!((offset_of!(HcPuts, data), offset_of!(HcPuts, len)), (0, 8));
        assert_eq!(size_of::<HcPoll>(), 24);
        assert_eq!(
            (
                offset_of!(HcPoll, timeout_nsecs),
                offset_of!(HcPoll, ready_set),
                offset_of!(HcPoll, ret)
            ),
            (0, 8, 16)
        );
        assert_eq!(size_of::<HcBlock>(), 40);
        assert_eq!(
            (
                offset_of!(HcBlock, handle),
                offset_of!(HcBlock, offset),
                offset_of!(HcBlock, data),
                offset_of!(HcBlock, len),
                offset_of!(HcBlock, ret)
            ),
            (0, 8, 16, 24, 32)
        );
        assert_eq!(size_of::<HcNet>(), 32);
        assert_eq!(
            (
                offset_of!(HcNet, handle),
                offset_of!(HcNet, data),
                offset_of!(HcNet, len),
                offset_of!(HcNet, ret)
            ),
            (0, 8, 16, 24)
        );
        assert_eq!(size_of::<HcHalt>(), 16);
        assert_eq!((offset_of!(HcHalt, cookie), offset_of!(HcHalt, exit_status)), (0, 8));
        // The trailing padding is an explicit field, so ByteValued has no hidden bytes.
        assert_eq!(
            (
                offset_of!(HcPoll, _pad),
                offset_of!(HcBlock, _pad),
                offset_of!(HcNet, _pad),
                offset_of!(HcHalt, _pad)
            ),
            (20, 36, 28, 12)
        );
        for align in [
            align_of::<HcWalltime>(),
            align_of::<HcPuts>(),
            align_of::<HcPoll>(),
            align_of::<HcBlock>(),
            align_of::<HcNet>(),
            align_of::<HcHalt>(),
        ] {
            assert_eq!(align, 8);
        }
    }

    #[test]
    fn test_hypercall_numbers() {
        for nr in 1..=8 {
            assert_eq!(HypercallNr::try_from(nr).map(|h| h as u32), Ok(nr));
        }
        assert_eq!(HypercallNr::try_from(0), Err(0));
        assert_eq!(HypercallNr::try_from(9), Err(9));
    }
}
