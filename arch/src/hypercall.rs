//! The hvt hypercall transport, shared by both architectures.

/// Number of hypercall slots (`HVT_HYPERCALL_MAX`): valid numbers are `0..HYPERCALL_MAX`.
pub const HYPERCALL_MAX: u32 = 9;

/// A decoded solo5-hvt hypercall: which call, and the guest-physical address of its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvtCall {
    /// The hypercall number (`enum hvt_hypercall`); not yet checked against the registered set.
    pub nr: u32,
    /// Guest-physical address of the argument struct (32 bits wide on the wire).
    pub gpa: u64,
}

/// A guest access that is not a well-formed hypercall.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Port I/O outside the hypercall ports, or not a 4-byte OUT.
    #[error("Invalid guest port access: port={port:#x}, size={size}")]
    Port {
        /// The port.
        port: u64,
        /// Access width in bytes.
        size: usize,
    },
    /// MMIO outside the hypercall window, or not a 4-byte write.
    #[error("Invalid guest mmio access: addr={addr:#x}, size={size}")]
    Mmio {
        /// The guest-physical address.
        addr: u64,
        /// Access width in bytes.
        size: usize,
    },
}

/// Reads the 32-bit little-endian argument GPA of a 4-byte access.
pub(crate) fn arg_gpa(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 4] = data.try_into().ok()?;
    Some(u64::from(u32::from_le_bytes(bytes)))
}

/// Decodes an access to a window of `HYPERCALL_MAX` slots of `stride` bytes at `base`.
pub(crate) fn decode_window(addr: u64, data: &[u8], base: u64, stride: u64) -> Option<HvtCall> {
    let off = addr.checked_sub(base)?;
    if off % stride != 0 || off / stride >= u64::from(HYPERCALL_MAX) {
        return None;
    }
    let nr = u32::try_from(off / stride).ok()?;
    Some(HvtCall { nr, gpa: arg_gpa(data)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decode_window_port_stride() {
        assert_eq!(
            decode_window(0x502, &[0x10, 0, 0x20, 0], 0x500, 1),
            Some(HvtCall { nr: 2, gpa: 0x20_0010 })
        );
        assert_eq!(decode_window(0x508, &[0; 4], 0x500, 1), Some(HvtCall { nr: 8, gpa: 0 }));
        assert_eq!(decode_window(0x509, &[0; 4], 0x500, 1), None);
        assert_eq!(decode_window(0x4ff, &[0; 4], 0x500, 1), None);
        assert_eq!(decode_window(0x502, &[0; 2], 0x500, 1), None);
    }

    #[test]
    fn test_decode_window_mmio_stride() {
        let base = 0x1_0000_0000;
        assert_eq!(decode_window(base + 0x40, &[1, 0, 0, 0], base, 8), Some(HvtCall { nr: 8, gpa: 1 }));
        assert_eq!(decode_window(base + 0x44, &[1, 0, 0, 0], base, 8), None);
        assert_eq!(decode_window(base + 0x48, &[1, 0, 0, 0], base, 8), None);
        assert_eq!(decode_window(base + 8, &[1, 0, 0, 0, 0, 0, 0, 0], base, 8), None);
    }
}
