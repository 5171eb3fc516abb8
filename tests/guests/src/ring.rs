//! The guest side of solo5's shared-memory net ring (`HVT_FEATURE_RING_IO`), used when the
//! monitor offers it: writes are copied into a static slot and queued without waiting, reads
//! queue a NET_READ entry and spin for its commit. Frames longer than a slot go through the
//! NET_WRITE hypercall. A kick (an ioeventfd) is sent only when the host says it sleeps.

use core::sync::atomic::{AtomicU32, Ordering, fence};

use crate::BootInfo;

pub const ENTRIES: u32 = 1024;
pub const SLOT: usize = 2048;
pub const OP_WRITE: u32 = 1;
pub const OP_READ: u32 = 2;

pub const ENT_TAIL: usize = 0;
pub const COM_HEAD: usize = 4;
pub const ENT_HEAD: usize = 64;
pub const COM_TAIL: usize = 68;
pub const NEEDS_KICK: usize = 72;
pub const ENTRY_BASE: usize = 128;
pub const COMMIT_BASE: usize = ENTRY_BASE + 32 * ENTRIES as usize;

/// `struct hvt_ring_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Entry {
    pub operation: u32,
    pub handle: u32,
    pub data: u64,
    pub len: u32,
    pub id: u32,
    pub reserved: u64,
}

/// `struct hvt_ring_commit`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Commit {
    pub id: u32,
    pub ret: i32,
    pub len: u32,
    pub reserved: u32,
}

struct Slots([[u8; SLOT]; ENTRIES as usize]);
static mut WRITE_BUFS: Slots = Slots([[0; SLOT]; ENTRIES as usize]);

/// The ring the monitor offered.
pub struct Ring {
    pub base: u64,
    /// Kicks sent (the host said it slept).
    pub kicks: u64,
    next_id: u32,
}

impl Ring {
    /// The ring, if the boot info offers one (both the feature bit and the address).
    pub fn offered(bi: &BootInfo) -> Option<Ring> {
        (bi.host_features & 1 != 0 && bi.net_ring != 0).then_some(Ring {
            base: bi.net_ring,
            kicks: 0,
            next_id: 0,
        })
    }

    pub fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: the ring is 4-byte aligned shared memory the monitor mapped for the guest.
        unsafe { &*((self.base as usize + off) as *const AtomicU32) }
    }

    /// Queues `entry` (waiting while the ring is full) and kicks if the host sleeps.
    pub fn submit(&mut self, entry: Entry) {
        let tail = self.word(ENT_TAIL).load(Ordering::Relaxed);
        while tail.wrapping_sub(self.word(ENT_HEAD).load(Ordering::Acquire)) >= ENTRIES - 1 {
            core::hint::spin_loop();
        }
        self.put(tail, entry);
        self.word(ENT_TAIL).store(tail.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        if self.word(NEEDS_KICK).load(Ordering::Relaxed) != 0 {
            self.kicks += 1;
            crate::arch::ring_kick();
        }
    }

    /// Writes `entry` at ring position `index` (no checks: for attacks too).
    pub fn put(&self, index: u32, entry: Entry) {
        let at = self.base as usize + ENTRY_BASE + (index % ENTRIES) as usize * 32;
        // SAFETY: inside the ring's entry array.
        unsafe { (at as *mut Entry).write_volatile(entry) };
    }

    /// Sends a frame; a frame longer than a slot goes through the hypercall.
    pub fn write(&mut self, handle: u64, frame: &[u8]) -> i32 {
        if frame.len() > SLOT {
            return crate::net_write(handle, frame);
        }
        let tail = self.word(ENT_TAIL).load(Ordering::Relaxed);
        while tail.wrapping_sub(self.word(ENT_HEAD).load(Ordering::Acquire)) >= ENTRIES - 1 {
            core::hint::spin_loop();
        }
        // SAFETY: slot `tail % ENTRIES` belongs to no queued entry (the host took every entry
        // more than a ring back), and only this single thread writes slots.
        let slot = unsafe { &mut (*core::ptr::addr_of_mut!(WRITE_BUFS)).0[(tail % ENTRIES) as usize] };
        slot[..frame.len()].copy_from_slice(frame);
        let id = self.id();
        self.submit(Entry {
            operation: OP_WRITE,
            handle: handle as u32,
            data: slot.as_ptr() as u64,
            len: frame.len() as u32,
            id,
            reserved: 0,
        });
        0
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Waits until the host took every queued entry (so every frame written is on the tap).
    pub fn flush(&self) {
        while self.word(ENT_HEAD).load(Ordering::Acquire) != self.word(ENT_TAIL).load(Ordering::Relaxed) {
            core::hint::spin_loop();
        }
    }

    /// Waits for the next commit and consumes it.
    pub fn wait_commit(&self) -> Commit {
        let head = self.word(COM_HEAD).load(Ordering::Relaxed);
        while self.word(COM_TAIL).load(Ordering::Acquire) == head {
            core::hint::spin_loop();
        }
        let at = self.base as usize + COMMIT_BASE + (head % ENTRIES) as usize * 16;
        // SAFETY: inside the ring's commit array, published by the host's com_tail.
        let commit = unsafe { (at as *const Commit).read_volatile() };
        self.word(COM_HEAD).store(head.wrapping_add(1), Ordering::Release);
        commit
    }

    /// Reads a frame: `Ok(len)`, or `Err(ret)` (1 = nothing waiting).
    pub fn read(&mut self, handle: u64, buf: &mut [u8]) -> Result<usize, i32> {
        let id = self.id();
        self.submit(Entry {
            operation: OP_READ,
            handle: handle as u32,
            data: buf.as_mut_ptr() as u64,
            len: buf.len() as u32,
            id,
            reserved: 0,
        });
        let c = self.wait_commit();
        if c.id != id {
            return Err(-1);
        }
        if c.ret == 0 { Ok(c.len as usize) } else { Err(c.ret) }
    }
}
