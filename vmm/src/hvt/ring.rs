//! solo5's shared-memory net ring (`HVT_FEATURE_RING_IO`): the host side.
//!
//! The ring lives in the 2 MiB above the guest's RAM ([`RING_AREA`]), which guest pointers cannot
//! reach ([`GuestRam::check`] stops at the RAM's end). The guest queues NET_WRITE and NET_READ
//! entries and advances `ent_tail`; a thread of the monitor (the ring thread, with its own
//! seccomp filter) takes them in order, writes frames to the tap, and answers each NET_READ with
//! one commit (writes get none: they are fire-and-forget).
//!
//! Nothing spins for long. The thread sleeps on an eventfd that KVM signals when the guest kicks (a 4-byte
//! OUT to port 0x600 on x86_64, a store to 0x1_0000_0100 on aarch64: an ioeventfd, so a kick
//! costs the guest no exit to the monitor). Kicks are suppressed while the thread works: it sets
//! `needs_kick` only when it runs out of entries, then issues a full barrier and looks at
//! `ent_tail` once more before sleeping; the guest stores `ent_tail`, issues a full barrier and
//! kicks only if it then sees `needs_kick`. One of the two always sees the other's store, so no
//! entry waits for a kick that never comes. Before announcing that it sleeps, the thread watches
//! the ring for [`LINGER`] more, yielding its core between looks, so a guest that streams frames
//! rarely needs to kick.
//!
//! The host never reads back what it owns (`ent_head`, `com_tail`): it keeps its own copies and
//! only publishes them. A guest that breaks the ring (an entry tail more than a ring ahead, an
//! unknown operation, a write to a handle that is no network device, a frame longer than the MTU,
//! a data pointer outside its RAM, commits it never consumes) stops the run with an error naming
//! what was wrong; a read from a handle that is no network device gets an EINVAL commit, as the
//! NET_READ hypercall does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use vm_memory::{ByteValued, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EFD_CLOEXEC, EventFd};

use super::abi::result;
use crate::host::Tap;
use crate::memory::{GuestRam, MemoryError};

/// Guest-physical room the ring takes above RAM (one 2 MiB page of the guest's page tables).
pub const RING_AREA: u64 = 2 << 20;
/// Entries (and commits) in the ring.
pub const RING_ENTRIES: u32 = 1024;
/// `HVT_FEATURE_RING_IO` in the boot info's `host_features`.
pub const FEATURE_RING_IO: u32 = 1;
/// The smallest guest RAM a ring is offered with (solo5's rule).
pub const RING_MIN_MEM: u64 = 4 << 20;

/// Entry operation: send a frame.
pub const OP_NET_WRITE: u32 = 1;
/// Entry operation: receive a frame.
pub const OP_NET_READ: u32 = 2;

/// How long the ring thread keeps watching for entries after the ring ran dry (yielding the
/// core between looks), before it asks for a kick and sleeps: on this project's host, without it
/// a streaming guest kicks for nearly every frame; with it, a handful of times per 5000 frames.
pub const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// Ethernet header bytes on top of the MTU.
const ETH_HEADER: u64 = 14;
/// Largest frame a tap can deliver: the largest MTU (64 KiB) plus the Ethernet header.
const MAX_FRAME: usize = 65536 + 14;

/// `struct hvt_ring`'s header: guest-written indices, then (in their own cache line) the host's.
pub mod offsets {
    /// Entries the guest queued (guest writes).
    pub const ENT_TAIL: u64 = 0;
    /// Commits the guest consumed (guest writes).
    pub const COM_HEAD: u64 = 4;
    /// Entries the host took (host writes).
    pub const ENT_HEAD: u64 = 64;
    /// Commits the host wrote (host writes).
    pub const COM_TAIL: u64 = 68;
    /// Non-zero when the host sleeps and wants a kick (host writes).
    pub const NEEDS_KICK: u64 = 72;
    /// The entries.
    pub const ENTRIES: u64 = 128;
    /// The commits.
    pub const COMMITS: u64 = ENTRIES + 32 * super::RING_ENTRIES as u64;
    /// The whole ring.
    pub const SIZE: u64 = COMMITS + 16 * super::RING_ENTRIES as u64;
}

/// `struct hvt_ring_entry` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingEntry {
    /// [`OP_NET_WRITE`] or [`OP_NET_READ`].
    pub operation: u32,
    /// Device handle (manifest index).
    pub handle: u32,
    /// GPA of the frame (write) or buffer (read).
    pub data: u64,
    /// Frame length (write) or buffer size (read).
    pub len: u32,
    /// The guest's tag, copied into the commit.
    pub id: u32,
    /// Unused.
    pub reserved: u64,
}

/// `struct hvt_ring_commit` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCommit {
    /// The entry's `id`.
    pub id: u32,
    /// solo5 result: OK, AGAIN or EINVAL.
    pub ret: i32,
    /// Frame length (OK).
    pub len: u32,
    /// Unused.
    pub reserved: u32,
}

// SAFETY: repr(C) structs of integer fields without implicit padding (sizes 32 and 16, checked
// in the tests), so every bit pattern is a valid value.
unsafe impl ByteValued for RingEntry {}
// SAFETY: see above.
unsafe impl ByteValued for RingCommit {}

/// How a guest broke the ring, or a host failure while serving it.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `ent_tail` claims more queued entries than the ring holds.
    #[error("net ring: the guest's entry tail {tail} is {} entries past the host's head {head} (the ring holds {RING_ENTRIES})", tail.wrapping_sub(*head))]
    EntryTail {
        /// The guest's tail.
        tail: u32,
        /// The host's head.
        head: u32,
    },
    /// `com_head` is not within the commits the host wrote.
    #[error("net ring: the guest's commit head {head} is not within the {RING_ENTRIES} commits before the host's tail {tail}")]
    CommitHead {
        /// The guest's head.
        head: u32,
        /// The host's tail.
        tail: u32,
    },
    /// Every commit slot holds a commit the guest has not consumed.
    #[error("net ring: entry {index}: no room for its commit: the guest consumed none of the last {RING_ENTRIES}")]
    CommitFull {
        /// The entry's ring index.
        index: u32,
    },
    /// An operation other than NET_WRITE and NET_READ.
    #[error("net ring: entry {index}: unknown operation {operation}")]
    Operation {
        /// The entry's ring index.
        index: u32,
        /// The operation.
        operation: u32,
    },
    /// A NET_WRITE to a handle that is no network device.
    #[error("net ring: entry {index}: NET_WRITE to handle {handle}, which is no network device")]
    WriteHandle {
        /// The entry's ring index.
        index: u32,
        /// The handle.
        handle: u32,
    },
    /// A NET_WRITE frame longer than MTU + Ethernet header.
    #[error("net ring: entry {index}: a frame of {len} bytes is longer than the device's {max}")]
    TooLong {
        /// The entry's ring index.
        index: u32,
        /// The frame's length.
        len: u32,
        /// MTU + 14.
        max: u64,
    },
    /// A data pointer outside RAM or into read-only memory.
    #[error("net ring: entry {index}: {source}")]
    Memory {
        /// The entry's ring index.
        index: u32,
        /// What was wrong with it.
        source: MemoryError,
    },
    /// The ring itself could not be reached (a monitor bug: it lies in the mapping).
    #[error("net ring: the ring at {gpa:#x} is outside guest memory")]
    Unmapped {
        /// The address.
        gpa: u64,
    },
    /// A tap or eventfd failed.
    #[error("net ring: {what}: {source}")]
    HostIo {
        /// What failed.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Guest RAM and the area reserved above it for a ring: `(visible, reserved)`. With a ring,
/// RAM keeps its size and the ring goes above it, except at the largest size, where the ring
/// takes the top of it (solo5's rule); RAM smaller than [`RING_MIN_MEM`] gets no ring.
pub fn ring_layout(mem_size: u64, max: u64) -> Option<(u64, u64)> {
    let visible = if mem_size + RING_AREA > max { max - RING_AREA } else { mem_size };
    (visible >= RING_MIN_MEM).then_some((visible, RING_AREA))
}

/// The host side of one ring, before its thread starts.
pub struct Ring {
    ram: GuestRam,
    gpa: u64,
    kick: Arc<EventFd>,
    /// Per handle: its tap (a second descriptor), if it is a network device.
    taps: Vec<Option<Tap>>,
    /// What the host published as `ent_head` and `com_tail` (never read back from the guest).
    ent_head: u32,
    com_tail: u32,
    frame: Vec<u8>,
    linger: std::time::Duration,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("gpa", &self.gpa).finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring at `gpa` (above the guest-visible RAM of `ram`), serving `taps` (by handle), woken
    /// by a new eventfd that the caller registers as the kick's ioeventfd ([`Ring::kick_fd`]).
    pub fn new(ram: GuestRam, gpa: u64, taps: Vec<Option<Tap>>) -> std::io::Result<Ring> {
        Ok(Ring {
            ram,
            gpa,
            kick: Arc::new(EventFd::new(EFD_CLOEXEC)?),
            taps,
            ent_head: 0,
            com_tail: 0,
            frame: vec![0; MAX_FRAME],
            linger: LINGER,
        })
    }

    /// The ring's guest-physical address (the boot info's `net_ring`).
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The eventfd the guest's kick signals.
    pub fn kick_fd(&self) -> &EventFd {
        &self.kick
    }

    fn load(&self, off: u64) -> Result<u32, RingError> {
        let gpa = self.gpa + off;
        self.ram
            .mmap()
            .load(GuestAddress(gpa), Ordering::Acquire)
            .map_err(|_| RingError::Unmapped { gpa })
    }

    fn store(&self, off: u64, val: u32) -> Result<(), RingError> {
        let gpa = self.gpa + off;
        self.ram
            .mmap()
            .store(val, GuestAddress(gpa), Ordering::Release)
            .map_err(|_| RingError::Unmapped { gpa })
    }

    /// Serves every queued entry: whether there was any.
    pub fn drain(&mut self) -> Result<bool, RingError> {
        let tail = self.load(offsets::ENT_TAIL)?;
        let queued = tail.wrapping_sub(self.ent_head);
        if queued == 0 {
            return Ok(false);
        }
        if queued > RING_ENTRIES {
            return Err(RingError::EntryTail { tail, head: self.ent_head });
        }
        while self.ent_head != tail {
            let index = self.ent_head % RING_ENTRIES;
            let gpa = self.gpa + offsets::ENTRIES + u64::from(index) * 32;
            let entry: RingEntry = self
                .ram
                .mmap()
                .read_obj(GuestAddress(gpa))
                .map_err(|_| RingError::Unmapped { gpa })?;
            self.serve(index, &entry)?;
            self.ent_head = self.ent_head.wrapping_add(1);
            self.store(offsets::ENT_HEAD, self.ent_head)?;
        }
        Ok(true)
    }

    fn serve(&mut self, index: u32, entry: &RingEntry) -> Result<(), RingError> {
        let mem = |source| RingError::Memory { index, source };
        let handle = usize::try_from(entry.handle).unwrap_or(usize::MAX);
        let tap = self.taps.get_mut(handle).and_then(Option::as_mut);
        match entry.operation {
            OP_NET_WRITE => {
                let Some(tap) = tap else {
                    return Err(RingError::WriteHandle {
                        index,
                        handle: entry.handle,
                    });
                };
                let max = u64::from(tap.mtu()) + ETH_HEADER;
                if u64::from(entry.len) > max {
                    return Err(RingError::TooLong {
                        index,
                        len: entry.len,
                        max,
                    });
                }
                // At most MTU + 14 (< 64 KiB + 14 = the buffer's size) by the check above.
                let frame = &mut self.frame[..entry.len as usize];
                self.ram.read_slice(entry.data, frame).map_err(mem)?;
                tap.write_frame(frame).map_err(|source| RingError::HostIo {
                    what: format!("Write to tap {}", tap.name()),
                    source,
                })
            }
            OP_NET_READ => {
                let commit = match tap {
                    None => RingCommit {
                        id: entry.id,
                        ret: result::EINVAL,
                        ..RingCommit::default()
                    },
                    Some(tap) => {
                        self.ram.check_writable(entry.data, u64::from(entry.len)).map_err(mem)?;
                        let size = (entry.len as usize).min(MAX_FRAME);
                        let got = tap.read_frame(&mut self.frame[..size]).map_err(|source| RingError::HostIo {
                            what: format!("Read from tap {}", tap.name()),
                            source,
                        })?;
                        match got {
                            None => RingCommit {
                                id: entry.id,
                                ret: result::AGAIN,
                                ..RingCommit::default()
                            },
                            Some(n) => {
                                self.ram.write_slice(entry.data, &self.frame[..n]).map_err(mem)?;
                                RingCommit {
                                    id: entry.id,
                                    ret: result::OK,
                                    // At most the entry's u32 length.
                                    len: u32::try_from(n).unwrap_or(u32::MAX),
                                    reserved: 0,
                                }
                            }
                        }
                    }
                };
                self.commit(index, commit)
            }
            operation => Err(RingError::Operation { index, operation }),
        }
    }

    fn commit(&mut self, index: u32, commit: RingCommit) -> Result<(), RingError> {
        let head = self.load(offsets::COM_HEAD)?;
        let used = self.com_tail.wrapping_sub(head);
        if used > RING_ENTRIES {
            return Err(RingError::CommitHead { head, tail: self.com_tail });
        }
        if used == RING_ENTRIES {
            return Err(RingError::CommitFull { index });
        }
        let gpa = self.gpa + offsets::COMMITS + u64::from(self.com_tail % RING_ENTRIES) * 16;
        self.ram
            .mmap()
            .write_obj(commit, GuestAddress(gpa))
            .map_err(|_| RingError::Unmapped { gpa })?;
        self.com_tail = self.com_tail.wrapping_add(1);
        self.store(offsets::COM_TAIL, self.com_tail)
    }

    /// Watches `ent_tail` for up to [`LINGER`] after the ring ran dry, so a guest that streams
    /// frames finds the thread still awake and need not kick (each kick costs the guest an exit):
    /// whether an entry came.
    fn linger(&self) -> Result<bool, RingError> {
        if self.linger.is_zero() {
            return Ok(false);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < self.linger {
            if self.load(offsets::ENT_TAIL)? != self.ent_head {
                return Ok(true);
            }
            // Yields rather than spins: on a busy host the vCPU may be waiting for this core.
            std::thread::yield_now();
        }
        Ok(false)
    }

    /// Serves entries until `quit` is set: drains, then announces it sleeps (`needs_kick`),
    /// looks once more, and sleeps on the kick eventfd.
    pub fn serve_until(&mut self, quit: &AtomicBool) -> Result<(), RingError> {
        loop {
            if quit.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.drain()? || self.linger()? {
                continue;
            }
            self.store(offsets::NEEDS_KICK, 1)?;
            fence(Ordering::SeqCst);
            if self.load(offsets::ENT_TAIL)? != self.ent_head || quit.load(Ordering::SeqCst) {
                self.store(offsets::NEEDS_KICK, 0)?;
                continue;
            }
            loop {
                match self.kick.read() {
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(RingError::HostIo {
                            what: "reading the kick eventfd".into(),
                            source,
                        });
                    }
                }
            }
            self.store(offsets::NEEDS_KICK, 0)?;
        }
    }
}

/// A running ring thread.
#[derive(Debug)]
pub struct RingThread {
    thread: std::thread::JoinHandle<Result<(), RingError>>,
    kick: Arc<EventFd>,
    quit: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
}

impl RingThread {
    /// Starts `ring`'s thread, which installs `confine` (its seccomp filter) first and reports
    /// how that went; if the ring fails, it sets [`RingThread::failed`] and calls `on_failure`
    /// (which kicks the vCPU out of `KVM_RUN`).
    pub fn start(
        mut ring: Ring,
        confine: impl FnOnce() -> Result<(), crate::seccomp::SeccompError> + Send + 'static,
        on_failure: impl FnOnce() + Send + 'static,
    ) -> Result<RingThread, crate::Error> {
        let kick = ring.kick.clone();
        let quit = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let (thread_quit, thread_failed) = (quit.clone(), failed.clone());
        let (confined_tx, confined_rx) = std::sync::mpsc::sync_channel(1);
        let what = "the net ring thread";
        // Stop signals are for the vCPU thread, not for this one.
        let thread = crate::signal::with_stop_signals_blocked(|| {
            std::thread::Builder::new().name("unik-ring".into()).spawn(move || {
                let confined = confine();
                let ok = confined.is_ok();
                let _ = confined_tx.send(confined);
                if !ok {
                    return Ok(());
                }
                let served = ring.serve_until(&thread_quit);
                if served.is_err() {
                    thread_failed.store(true, Ordering::SeqCst);
                    on_failure();
                }
                served
            })
        })
        .map_err(|source| crate::Error::Thread { what, source })?;
        match confined_rx.recv() {
            Ok(Ok(())) => Ok(RingThread {
                thread,
                kick,
                quit,
                failed,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e.into())
            }
            Err(_) => Err(crate::Error::Thread {
                what,
                source: std::io::Error::other("it ended before installing its seccomp filter"),
            }),
        }
    }

    /// Whether the ring failed (the guest broke it, or a tap failed).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops the thread and returns how the ring ended.
    pub fn stop(self) -> Result<(), RingError> {
        self.quit.store(true, Ordering::SeqCst);
        // The counter cannot overflow from one write; a failed write leaves the thread
        // asleep, and the process ends anyway.
        let _ = self.kick.write(1);
        self.thread.join().unwrap_or_else(|_| {
            Err(RingError::HostIo {
                what: "the ring thread".into(),
                source: std::io::Error::other("it panicked"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn test_layouts_match_hvt_abi_h() {
        assert_eq!(size_of::<RingEntry>(), 32);
        assert_eq!(
            (
                offset_of!(RingEntry, operation),
                offset_of!(RingEntry, handle),
                offset_of!(RingEntry, data),
                offset_of!(RingEntry, len),
                offset_of!(RingEntry, id)
            ),
            (0, 4, 8, 16, 20)
        );
        assert_eq!(size_of::<RingCommit>(), 16);
        assert_eq!(
            (offset_of!(RingCommit, id), offset_of!(RingCommit, ret), offset_of!(RingCommit, len)),
            (0, 4, 8)
        );
        assert_eq!((offsets::COMMITS, offsets::SIZE), (32896, 49280));
        const { assert!(offsets::SIZE <= RING_AREA) };
    }

    #[test]
    fn test_ring_layout_follows_solo5() {
        let max = 4 << 30;
        assert_eq!(ring_layout(512 << 20, max), Some((512 << 20, RING_AREA)));
        assert_eq!(ring_layout(max, max), Some((max - RING_AREA, RING_AREA)));
        assert_eq!(ring_layout(4 << 20, max), Some((4 << 20, RING_AREA)));
        assert_eq!(ring_layout(2 << 20, max), None);
    }
}
