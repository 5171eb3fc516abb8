//! The solo5 manifest (`struct mft`, MFT1 note): parsing, validation, serialisation.

/// Manifest format version.
pub const MFT_VERSION: u32 = 1;
/// Most entries, including the reserved entry 0.
pub const MFT_MAX_ENTRIES: usize = 64;
/// Bytes of an entry name including the NUL.
pub const MFT_NAME_SIZE: usize = 68;
/// `sizeof(struct mft_entry)`.
pub const MFT_ENTRY_SIZE: usize = 104;
/// `sizeof(struct mft)` without entries.
pub const MFT_HEADER_SIZE: usize = 8;

/// Entry types (`enum mft_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    /// `MFT_DEV_BLOCK_BASIC`.
    Block,
    /// `MFT_DEV_NET_BASIC`.
    Net,
    /// `MFT_RESERVED_FIRST` (entry 0).
    Reserved,
    /// Anything else: kept as is, never attachable.
    Other(u32),
}

impl DeviceType {
    fn from_raw(raw: u32) -> DeviceType {
        match raw {
            1 => DeviceType::Block,
            2 => DeviceType::Net,
            0x4000_0000 => DeviceType::Reserved,
            other => DeviceType::Other(other),
        }
    }

    fn raw(self) -> u32 {
        match self {
            DeviceType::Block => 1,
            DeviceType::Net => 2,
            DeviceType::Reserved => 0x4000_0000,
            DeviceType::Other(raw) => raw,
        }
    }

    /// The name solo5 uses in messages.
    pub fn label(self) -> &'static str {
        match self {
            DeviceType::Block => "BLOCK_BASIC",
            DeviceType::Net => "NET_BASIC",
            DeviceType::Reserved => "RESERVED_FIRST",
            DeviceType::Other(_) => "UNKNOWN",
        }
    }
}

/// What the monitor fills in when it attaches a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Not attached.
    None,
    /// A block device.
    Block {
        /// Bytes.
        capacity: u64,
        /// Sector size.
        block_size: u16,
        /// Host fd (solo5 writes it; "private but harmless").
        hostfd: i32,
    },
    /// A network device.
    Net {
        /// Guest MAC.
        mac: [u8; 6],
        /// MTU.
        mtu: u16,
        /// Host fd.
        hostfd: i32,
    },
}

/// One manifest entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The raw 68-byte name field.
    name: [u8; MFT_NAME_SIZE],
    /// Type.
    pub kind: DeviceType,
    /// Attachment (`attached` + the `u` and `b` unions).
    pub attachment: Attachment,
}

impl Entry {
    /// The name up to its NUL, lossily decoded.
    pub fn name(&self) -> String {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(MFT_NAME_SIZE);
        String::from_utf8_lossy(&self.name[..len]).into_owned()
    }

    /// Whether this entry's name is exactly `name` (solo5's `strncmp(.., 68)`).
    pub fn is_named(&self, name: &str) -> bool {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(MFT_NAME_SIZE);
        &self.name[..len] == name.as_bytes()
    }
}

/// Why a manifest is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Shorter than its header.
    #[error("manifest is {0} bytes, shorter than its header")]
    TooShort(usize),
    /// Another version.
    #[error("manifest version {0} is not supported (need {MFT_VERSION})")]
    Version(u32),
    /// Entry count outside 1..=64.
    #[error("manifest has {0} entries (must be 1 to {MFT_MAX_ENTRIES})")]
    Entries(u32),
    /// Note size and entry count disagree.
    #[error("manifest size {size} does not match its {entries} entries")]
    Size {
        /// Bytes.
        size: usize,
        /// Entries.
        entries: usize,
    },
    /// Entry 0 is not the reserved entry.
    #[error("manifest entry 0 is not the reserved entry")]
    Reserved,
    /// A name without its terminating NUL.
    #[error("manifest entry {0} has an unterminated name")]
    Name(usize),
    /// An entry already marked attached.
    #[error("manifest entry {0} is already marked attached")]
    Attached(usize),
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// A validated manifest. Handles are entry indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
}

impl Manifest {
    /// Parses and validates a `struct mft` image (`mft_validate`'s rules).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() < MFT_HEADER_SIZE {
            return Err(ManifestError::TooShort(bytes.len()));
        }
        let version = u32_at(bytes, 0);
        if version != MFT_VERSION {
            return Err(ManifestError::Version(version));
        }
        let count = u32_at(bytes, 4);
        let entries = usize::try_from(count).map_err(|_| ManifestError::Entries(count))?;
        if entries == 0 || entries > MFT_MAX_ENTRIES {
            return Err(ManifestError::Entries(count));
        }
        if bytes.len() != MFT_HEADER_SIZE + MFT_ENTRY_SIZE * entries {
            return Err(ManifestError::Size {
                size: bytes.len(),
                entries,
            });
        }
        let mut out = Vec::with_capacity(entries);
        for (i, raw) in bytes[MFT_HEADER_SIZE..].chunks_exact(MFT_ENTRY_SIZE).enumerate() {
            let mut name = [0u8; MFT_NAME_SIZE];
            name.copy_from_slice(&raw[..MFT_NAME_SIZE]);
            let kind = DeviceType::from_raw(u32_at(raw, 68));
            if name[MFT_NAME_SIZE - 1] != 0 {
                return Err(ManifestError::Name(i));
            }
            if raw[96] != 0 {
                return Err(ManifestError::Attached(i));
            }
            if i == 0 && (kind != DeviceType::Reserved || name[0] != 0) {
                return Err(ManifestError::Reserved);
            }
            out.push(Entry {
                name,
                kind,
                attachment: Attachment::None,
            });
        }
        Ok(Manifest { entries: out })
    }

    /// The entries; index = solo5 handle.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The handle of the entry named `name`, of any type.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().skip(1).position(|e| e.is_named(name)).map(|i| i + 1)
    }

    /// Records an attachment for entry `handle`.
    pub fn attach(&mut self, handle: usize, attachment: Attachment) {
        if let Some(e) = self.entries.get_mut(handle) {
            e.attachment = attachment;
        }
    }

    /// The `struct mft` image with attachments filled in, as copied into guest memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MFT_HEADER_SIZE + MFT_ENTRY_SIZE * self.entries.len());
        out.extend_from_slice(&MFT_VERSION.to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.entries.len()).unwrap_or(0).to_le_bytes());
        for e in &self.entries {
            let mut raw = [0u8; MFT_ENTRY_SIZE];
            raw[..MFT_NAME_SIZE].copy_from_slice(&e.name);
            raw[68..72].copy_from_slice(&e.kind.raw().to_le_bytes());
            match e.attachment {
                Attachment::None => {}
                Attachment::Block {
                    capacity,
                    block_size,
                    hostfd,
                } => {
                    raw[72..80].copy_from_slice(&capacity.to_le_bytes());
                    raw[80..82].copy_from_slice(&block_size.to_le_bytes());
                    raw[88..92].copy_from_slice(&hostfd.to_le_bytes());
                    raw[96] = 1;
                }
                Attachment::Net { mac, mtu, hostfd } => {
                    raw[72..78].copy_from_slice(&mac);
                    raw[78..80].copy_from_slice(&mtu.to_le_bytes());
                    raw[88..92].copy_from_slice(&hostfd.to_le_bytes());
                    raw[96] = 1;
                }
            }
            out.extend_from_slice(&raw);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A manifest image: the reserved entry plus `(name, type)` entries.
    pub(crate) fn mft(devices: &[(&str, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MFT_VERSION.to_le_bytes());
        out.extend_from_slice(&u32::try_from(devices.len() + 1).unwrap().to_le_bytes());
        let mut reserved = [0u8; MFT_ENTRY_SIZE];
        reserved[68..72].copy_from_slice(&0x4000_0000u32.to_le_bytes());
        out.extend_from_slice(&reserved);
        for (name, kind) in devices {
            let mut e = [0u8; MFT_ENTRY_SIZE];
            e[..name.len()].copy_from_slice(name.as_bytes());
            e[68..72].copy_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&e);
        }
        out
    }

    #[test]
    fn test_parse_and_round_trip() {
        let bytes = mft(&[("storage", 1), ("service0", 2)]);
        let mut m = Manifest::parse(&bytes).unwrap();
        assert_eq!(m.entries().len(), 3);
        assert_eq!(m.find("storage"), Some(1));
        assert_eq!(m.find("service0"), Some(2));
        assert_eq!(m.find("stor"), None);
        assert_eq!(m.find(""), None);
        assert_eq!(m.entries()[2].kind, DeviceType::Net);
        assert_eq!(m.to_bytes(), bytes);
        m.attach(
            1,
            Attachment::Block {
                capacity: 4096,
                block_size: 512,
                hostfd: 9,
            },
        );
        m.attach(
            2,
            Attachment::Net {
                mac: [2, 0, 0, 0, 0, 1],
                mtu: 1500,
                hostfd: 10,
            },
        );
        let out = m.to_bytes();
        let e1 = &out[8 + 104..8 + 208];
        assert_eq!(&e1[72..80], &4096u64.to_le_bytes());
        assert_eq!(&e1[80..82], &512u16.to_le_bytes());
        assert_eq!(e1[96], 1);
        let e2 = &out[8 + 208..];
        assert_eq!(&e2[72..78], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&e2[78..80], &1500u16.to_le_bytes());
    }

    #[test]
    fn test_validation_rules() {
        let good = mft(&[("a", 1)]);
        assert_eq!(Manifest::parse(&good[..4]), Err(ManifestError::TooShort(4)));
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Version(2)));
        let mut v = good.clone();
        v[4] = 0;
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Entries(0)));
        let mut v = good.clone();
        v[4] = 65;
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Entries(65)));
        assert!(matches!(Manifest::parse(&good[..good.len() - 1]), Err(ManifestError::Size { .. })));
        let mut v = good.clone();
        v[8 + 68] = 1;
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Reserved));
        let mut v = good.clone();
        v[8] = b'x';
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Reserved));
        let mut v = good.clone();
        v[8 + 104 + 67] = b'x';
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Name(1)));
        let mut v = good;
        v[8 + 104 + 96] = 1;
        assert_eq!(Manifest::parse(&v), Err(ManifestError::Attached(1)));
    }

    #[test]
    fn test_sixty_four_entries_is_the_limit() {
        let names: Vec<String> = (1..=63).map(|i| format!("d{i}")).collect();
        let devs: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let m = Manifest::parse(&mft(&devs)).unwrap();
        assert_eq!(m.find("d63"), Some(63));
    }

    #[test]
    fn test_names_types_and_lookup() {
        let long = "n".repeat(MFT_NAME_SIZE - 1);
        let bytes = mft(&[(long.as_str(), 2), ("odd", 7), ("net0", 2)]);
        let m = Manifest::parse(&bytes).unwrap();
        assert_eq!(m.find(&long), Some(1));
        assert_eq!(m.entries()[1].name(), long);
        assert_eq!(m.entries()[2].kind, DeviceType::Other(7));
        assert_eq!(m.entries()[2].kind.label(), "UNKNOWN");
        assert_eq!(m.entries()[3].kind.label(), "NET_BASIC");
        assert_eq!(m.entries()[0].kind, DeviceType::Reserved);
        // The reserved entry is never found by name, not even by the empty name.
        assert_eq!(m.find(""), None);
        // Lookup is exact: no prefix matches, no case folding.
        assert_eq!(m.find("net"), None);
        assert_eq!(m.find("NET0"), None);
        assert!(m.entries().iter().all(|e| e.attachment == Attachment::None));
        // An unattached manifest serialises to its input.
        assert_eq!(m.to_bytes(), bytes);
        // Attaching an index past the end is ignored.
        let mut m = m;
        m.attach(
            99,
            Attachment::Net {
                mac: [0; 6],
                mtu: 1500,
                hostfd: 3,
            },
        );
        assert_eq!(m.to_bytes(), bytes);
    }
}
