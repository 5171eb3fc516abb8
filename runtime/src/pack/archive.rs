//! The bytes of an image archive: a deterministic tar writer (fixed times, root's ownership, no
//! user names), a gzipped layer with both of its digests, and SHA-256 content addresses.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use sha2::{Digest as _, Sha256};

/// A blob's content address and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The SHA-256, in lowercase hex.
    pub hex: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Digest {
    /// Of bytes in memory.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            hex: hex(&Sha256::digest(data)),
            size: data.len() as u64,
        }
    }

    /// `sha256:<hex>`, as manifests and configurations name blobs.
    pub fn name(&self) -> String {
        format!("sha256:{}", self.hex)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes and counts what passes through it.
#[derive(Debug)]
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (W, Digest) {
        let digest = Digest {
            hex: hex(&self.hasher.finalize()),
            size: self.size,
        };
        (self.inner, digest)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a file in an archive holds.
#[derive(Debug)]
pub enum Content {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// An open regular file of this many bytes (checked again while it is copied).
    File(File, u64),
}

impl Content {
    fn size(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File(_, size) => *size,
        }
    }
}

/// A file that changed size between the check and the copy would corrupt the archive: exactly
/// `left` bytes, or an error.
struct Exact<'a> {
    file: &'a File,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.len());
        let mut file = self.file;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was packed"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A tar stream whose every entry has the same time, owner root and no user or group name, so
/// the same files always give the same bytes.
pub struct Tar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> std::fmt::Debug for Tar<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tar").field("mtime", &self.mtime).finish_non_exhaustive()
    }
}

impl<W: Write> Tar<W> {
    /// A tar stream into `out` whose entries are dated `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u64) -> Self {
        Tar {
            builder: tar::Builder::new(out),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// A directory (mode 0755); `path` without its trailing slash.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0o755, 0);
        self.builder.append_data(&mut h, format!("{path}/"), io::empty())
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, mode: u32, content: &Content) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, mode, content.size());
        match content {
            Content::Bytes(b) => self.builder.append_data(&mut h, path, b.as_slice()),
            Content::File(file, size) => {
                let mut f = file;
                f.rewind()?;
                self.builder.append_data(&mut h, path, Exact { file, left: *size })
            }
        }
    }

    /// Ends the stream (two zero blocks) and hands back the writer.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// A layer blob: gzip of a tar; its digest names the blob, `diff_id` (the digest of the tar
/// itself) is what an image configuration lists.
#[derive(Debug)]
pub struct Layer {
    /// The gzipped tar (a temporary file), at its end.
    pub blob: File,
    /// The blob's digest and size.
    pub digest: Digest,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// The writer chain a layer is made through: tar → hash (diff_id) → gzip → hash (blob) → file.
pub type LayerWriter = Tar<Hashing<flate2::write::GzEncoder<Hashing<File>>>>;

/// Starts a layer in the (temporary) file `blob`. The gzip header carries no name and no time.
pub fn layer(blob: File, mtime: u64) -> LayerWriter {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Hashing::new(blob), flate2::Compression::default());
    Tar::new(Hashing::new(gz), mtime)
}

/// Ends a layer started by [`layer`].
pub fn finish_layer(tar: LayerWriter) -> io::Result<Layer> {
    let (gz, diff_id) = tar.finish()?.finish();
    let (blob, digest) = gz.finish()?.finish();
    Ok(Layer { blob, digest, diff_id })
}
