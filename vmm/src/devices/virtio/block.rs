//! virtio-blk on a host file: read, write, flush, get-id and discard (a punched hole);
//! read-only devices.
//!
//! Every request chain is checked before any I/O: a device-readable header of at least 16
//! bytes first, a device-writable status byte last, data buffers whose direction matches the
//! request, a length that is a whole number of sectors and a range inside the disk (with
//! checked arithmetic). A request that breaks a rule gets IOERR (or UNSUPP for an unknown
//! type); a chain without a usable status byte is returned with length 0, as there is nowhere
//! to put an answer. Data moves between the file and guest memory directly (pread/pwrite on
//! vm-memory slices, whose bounds are checked first), so a guest cannot make the monitor
//! allocate.

use std::io;

use virtio_bindings::virtio_blk::virtio_blk_config;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{ByteValued, Bytes, GuestMemoryBackend};

use super::{Mem, TYPE_BLOCK, VirtioDevice};
use crate::host::disk::Disk;

/// Queue size of the one request queue.
pub const QUEUE_SIZE: u16 = 256;
const SECTOR: u64 = 512;

/// `VIRTIO_BLK_F_RO`.
pub const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_BLK_SIZE`.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// `VIRTIO_BLK_F_FLUSH`.
pub const F_FLUSH: u64 = 1 << 9;
/// `VIRTIO_BLK_F_DISCARD`.
pub const F_DISCARD: u64 = 1 << 13;
/// Most segments in one discard request, and most sectors in one segment (1 GiB).
const MAX_DISCARD_SEG: u32 = 16;
const MAX_DISCARD_SECTORS: u32 = 1 << 21;
/// Size of `struct virtio_blk_discard_write_zeroes`.
const DISCARD_SEGMENT: usize = 16;

/// Request types.
pub mod req {
    /// Read.
    pub const IN: u32 = 0;
    /// Write.
    pub const OUT: u32 = 1;
    /// Flush.
    pub const FLUSH: u32 = 4;
    /// Device ID string.
    pub const GET_ID: u32 = 8;
    /// Deallocate sector ranges.
    pub const DISCARD: u32 = 11;
}

/// Status codes.
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// The request failed.
    pub const IOERR: u8 = 1;
    /// The request type is not supported.
    pub const UNSUPP: u8 = 2;
}

/// Length of the ID string GET_ID returns.
pub const ID_LEN: usize = 20;

/// `struct virtio_blk_outhdr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestHeader {
    /// Request type.
    pub type_: u32,
    /// Reserved (ioprio in legacy).
    pub reserved: u32,
    /// First sector (512-byte units).
    pub sector: u64,
}

// SAFETY: plain-old-data: integers only, no padding (4 + 4 + 8 bytes).
unsafe impl ByteValued for RequestHeader {}

/// The configuration space: virtio-bindings' `struct virtio_blk_config`, little-endian.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default)]
struct ConfigSpace(virtio_blk_config);

// SAFETY: `virtio_blk_config` is `repr(C, packed)` and holds only integers and arrays of them:
// no padding, and every bit pattern is a valid value.
unsafe impl ByteValued for ConfigSpace {}

/// A virtio block device.
pub struct Block {
    disk: Disk,
    read_only: bool,
    block_size: u32,
    id: [u8; ID_LEN],
    config: ConfigSpace,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("disk", &self.disk)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Block {
    /// A device on `disk`; `id` is what GET_ID returns (truncated to 20 bytes).
    pub fn new(disk: Disk, read_only: bool, block_size: u32, id: &str) -> Block {
        let mut id_bytes = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        let config = ConfigSpace(virtio_blk_config {
            capacity: (disk.capacity() / SECTOR).to_le(),
            blk_size: block_size.to_le(),
            max_discard_sectors: MAX_DISCARD_SECTORS.to_le(),
            max_discard_seg: MAX_DISCARD_SEG.to_le(),
            discard_sector_alignment: (block_size / 512).max(1).to_le(),
            ..virtio_blk_config::default()
        });
        Block {
            disk,
            read_only,
            block_size,
            id: id_bytes,
            config,
        }
    }

    /// Serves one chain; returns the number of bytes written into device-writable buffers.
    fn execute(&mut self, mem: &Mem, descs: &[Descriptor]) -> Option<u32> {
        let (status_desc, rest) = descs.split_last()?;
        if !status_desc.is_write_only() || status_desc.len() < 1 || rest.is_empty() {
            return None;
        }
        let (header_desc, data) = rest.split_first()?;
        let (code, written) = match self.request(mem, header_desc, data) {
            Ok(written) => (status::OK, written),
            Err(code) => (code, 0),
        };
        mem.write_obj(code, status_desc.addr()).ok()?;
        Some(written.saturating_add(1))
    }

    /// Runs the request; the error is the status to answer with.
    fn request(&mut self, mem: &Mem, header_desc: &Descriptor, data: &[Descriptor]) -> Result<u32, u8> {
        const IOERR: u8 = status::IOERR;
        if header_desc.is_write_only() || (header_desc.len() as usize) < size_of::<RequestHeader>() {
            return Err(IOERR);
        }
        let header: RequestHeader = mem.read_obj(header_desc.addr()).map_err(|_| IOERR)?;
        match header.type_ {
            req::IN | req::OUT => {
                let write = header.type_ == req::OUT;
                if write && self.read_only {
                    return Err(IOERR);
                }
                // Reads fill device-writable buffers; writes take device-readable ones.
                if data.iter().any(|d| d.is_write_only() == write) {
                    return Err(IOERR);
                }
                let len: u64 = data.iter().map(|d| u64::from(d.len())).sum();
                let start = header.sector.checked_mul(SECTOR).ok_or(IOERR)?;
                let end = start.checked_add(len).ok_or(IOERR)?;
                if len % SECTOR != 0 || end > self.disk.capacity() {
                    return Err(IOERR);
                }
                let mut offset = start;
                for d in data {
                    self.transfer(mem, d, offset, write).map_err(|e| {
                        log::debug!("virtio-blk: {} at {offset}: {e}", if write { "write" } else { "read" });
                        IOERR
                    })?;
                    offset += u64::from(d.len());
                }
                Ok(if write { 0 } else { u32::try_from(len).unwrap_or(u32::MAX) })
            }
            req::FLUSH => self.disk.sync().map(|()| 0).map_err(|_| IOERR),
            req::DISCARD => {
                if self.read_only || data.iter().any(Descriptor::is_write_only) {
                    return Err(IOERR);
                }
                let len: usize = data.iter().map(|d| d.len() as usize).sum();
                if len == 0 || len % DISCARD_SEGMENT != 0 || len / DISCARD_SEGMENT > MAX_DISCARD_SEG as usize {
                    return Err(IOERR);
                }
                let mut raw = vec![0u8; len];
                let mut at = 0;
                for d in data {
                    let n = d.len() as usize;
                    mem.read_slice(&mut raw[at..at + n], d.addr()).map_err(|_| IOERR)?;
                    at += n;
                }
                for seg in raw.chunks_exact(DISCARD_SEGMENT) {
                    let sector = u64::from_le_bytes(seg[..8].try_into().map_err(|_| IOERR)?);
                    let sectors = u32::from_le_bytes(seg[8..12].try_into().map_err(|_| IOERR)?);
                    let start = sector.checked_mul(SECTOR).ok_or(IOERR)?;
                    let bytes = u64::from(sectors) * SECTOR;
                    let end = start.checked_add(bytes).ok_or(IOERR)?;
                    if sectors > MAX_DISCARD_SECTORS || end > self.disk.capacity() {
                        return Err(IOERR);
                    }
                    self.disk.punch_hole(start, bytes).map_err(|e| {
                        log::debug!("virtio-blk: discard at {start}: {e}");
                        IOERR
                    })?;
                }
                Ok(0)
            }
            req::GET_ID => {
                let d = data.first().filter(|d| d.is_write_only()).ok_or(IOERR)?;
                let n = (d.len() as usize).min(ID_LEN);
                mem.write_slice(&self.id[..n], d.addr()).map_err(|_| IOERR)?;
                Ok(u32::try_from(n).unwrap_or(0))
            }
            _ => Err(status::UNSUPP),
        }
    }

    /// Moves one descriptor's bytes between guest memory and the disk at `offset`, with
    /// pread/pwrite straight into (or from) guest memory: vm-memory checks that the whole buffer
    /// lies in one region of guest RAM first.
    fn transfer(&mut self, mem: &Mem, d: &Descriptor, offset: u64, write: bool) -> io::Result<()> {
        let len = d.len() as usize;
        let slice = mem.get_slice(d.addr(), len).map_err(io::Error::other)?;
        let guard = slice.ptr_guard_mut();
        let mut done = 0usize;
        while done < len {
            let at = libc::off_t::try_from(offset + done as u64).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: `guard` points at `len` bytes of mapped guest memory (checked by
            // get_slice) that stay mapped for this call; `done < len` keeps the range inside.
            // The guest may change the bytes concurrently, which the kernel copy tolerates.
            let n = unsafe {
                let ptr = guard.as_ptr().add(done).cast();
                if write {
                    libc::pwrite(self.disk.raw_fd(), ptr, len - done, at)
                } else {
                    libc::pread(self.disk.raw_fd(), ptr, len - done, at)
                }
            };
            match n {
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                n if n < 0 => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                n => done += n.unsigned_abs(),
            }
        }
        Ok(())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        // Discard is offered on writable devices: a hole punched in the backing file.
        let extra = if self.read_only { F_RO } else { F_DISCARD };
        F_FLUSH | F_BLK_SIZE | extra
    }

    fn config(&self) -> Vec<u8> {
        self.config.as_slice().to_vec()
    }

    fn activate(&mut self, _acked: u64) -> Result<(), String> {
        log::debug!(
            "virtio-blk: {} active ({} sectors, block size {}{})",
            self.disk.path().display(),
            self.disk.capacity() / SECTOR,
            self.block_size,
            if self.read_only { ", read-only" } else { "" }
        );
        Ok(())
    }

    fn process_queue(&mut self, mem: &Mem, queues: &mut [Queue], index: usize) -> bool {
        let Some(queue) = queues.get_mut(index) else { return false };
        let mut used_any = false;
        let mut recheck = false;
        loop {
            if queue.disable_notification(mem).is_err() {
                return used_any;
            }
            let mut popped = false;
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                popped = true;
                let head = chain.head_index();
                let descs: Vec<Descriptor> = chain.collect();
                let len = self.execute(mem, &descs).unwrap_or_else(|| {
                    log::debug!("virtio-blk: malformed request chain (head {head}, {} descriptors)", descs.len());
                    0
                });
                if let Err(e) = queue.add_used(mem, head, len) {
                    guest_warn!("virtio-blk: returning a request failed: {e}");
                    return used_any;
                }
                used_any = true;
            }
            // The avail index announced requests that cannot be taken (it is more than a queue
            // ahead, or the ring is unreadable): going round again would spin forever.
            if recheck && !popped {
                guest_warn!("virtio-blk: the driver's avail ring is invalid; its requests are ignored");
                break;
            }
            match queue.enable_notification(mem) {
                Ok(true) => recheck = true,
                _ => break,
            }
        }
        used_any && queue.needs_notification(mem).unwrap_or(true)
    }
}

#[cfg(test)]
#[path = "block_tests.rs"]
mod tests;
