//! A minimal virtio-mmio (version 2, "modern") driver core: the command-line device list, the
//! register interface with feature negotiation, and polled split virtqueues of up to 16 entries
//! in static, identity-mapped memory.

use core::cell::UnsafeCell;
use core::sync::atomic::{Ordering, fence};

pub const MAGIC: u32 = 0x7472_6976;
pub const DEV_NET: u32 = 1;
pub const DEV_BLOCK: u32 = 2;

pub const F_VERSION_1: u64 = 1 << 32;

pub const DEVICE_ID: usize = 0x008;
pub const DEVICE_FEATURES: usize = 0x010;
pub const DEVICE_FEATURES_SEL: usize = 0x014;
pub const DRIVER_FEATURES: usize = 0x020;
pub const DRIVER_FEATURES_SEL: usize = 0x024;
pub const QUEUE_SEL: usize = 0x030;
pub const QUEUE_NUM_MAX: usize = 0x034;
pub const QUEUE_NUM: usize = 0x038;
pub const QUEUE_READY: usize = 0x044;
pub const QUEUE_NOTIFY: usize = 0x050;
pub const INTERRUPT_STATUS: usize = 0x060;
pub const INTERRUPT_ACK: usize = 0x064;
pub const STATUS: usize = 0x070;
pub const QUEUE_DESC: usize = 0x080;
pub const QUEUE_DRIVER: usize = 0x090;
pub const QUEUE_DEVICE: usize = 0x0a0;
pub const CONFIG_GENERATION: usize = 0x0fc;
pub const CONFIG: usize = 0x100;

const S_ACKNOWLEDGE: u32 = 1;
const S_DRIVER: u32 = 2;
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;

pub const D_NEXT: u16 = 1;
pub const D_WRITE: u16 = 2;

/// Entries per queue this driver uses at most.
pub const QSIZE: usize = 16;

/// Static memory shared with the device (zero-initialised, so it lands in .bss).
pub struct Dma<T>(UnsafeCell<T>);

// SAFETY: the guest is single-threaded; accesses go through raw pointers.
unsafe impl<T> Sync for Dma<T> {}

impl<T> Dma<T> {
    pub const fn zeroed() -> Dma<T> {
        // SAFETY: only instantiated with plain integer structs, for which zero is valid.
        Dma(UnsafeCell::new(unsafe { core::mem::zeroed() }))
    }

    pub fn get(&self) -> *mut T {
        self.0.get()
    }

    /// Its (identity-mapped) physical address.
    pub fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

/// Parses Linux's `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` tokens: yields each base
/// and interrupt line (GSI).
pub fn devices(cmdline: &str) -> impl Iterator<Item = (u64, u32)> + '_ {
    cmdline.split(' ').filter_map(|t| {
        let spec = t.strip_prefix("virtio_mmio.device=")?;
        let (_size, rest) = spec.split_once('@')?;
        let mut parts = rest.split(':');
        let base = parse_num(parts.next()?)?;
        let irq = u32::try_from(crate::parse_u64(parts.next()?)?).ok()?;
        Some((base, irq))
    })
}

/// A decimal or 0x-hex number with an optional K/M/G suffix.
pub fn parse_num(s: &str) -> Option<u64> {
    let (s, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => crate::parse_u64(s)?,
    };
    n.checked_mul(1 << shift)
}

/// One virtio-mmio transport.
#[derive(Clone, Copy)]
pub struct Mmio {
    pub base: u64,
}

impl Mmio {
    pub fn r(&self, off: usize) -> u32 {
        // SAFETY: a register of the device window (identity mapped).
        unsafe { ((self.base as usize + off) as *const u32).read_volatile() }
    }

    pub fn w(&self, off: usize, v: u32) {
        // SAFETY: as for `r`.
        unsafe { ((self.base as usize + off) as *mut u32).write_volatile(v) }
    }

    /// The device ID when the window holds a version-2 virtio-mmio device (0 = no device), or
    /// an error naming what is wrong.
    pub fn probe(&self) -> Result<u32, &'static str> {
        if self.r(0) != MAGIC {
            return Err("bad magic");
        }
        if self.r(4) != 2 {
            return Err("not version 2");
        }
        Ok(self.r(DEVICE_ID))
    }

    /// Resets the device and negotiates VERSION_1 plus what of `wanted` it offers; returns the
    /// accepted features. Queues are set up next, then `driver_ok`.
    pub fn init(&self, wanted: u64) -> Result<u64, &'static str> {
        self.w(STATUS, 0);
        let mut spins = 0;
        while self.r(STATUS) != 0 {
            spins += 1;
            if spins > 1_000_000 {
                return Err("reset did not complete");
            }
            core::hint::spin_loop();
        }
        self.w(STATUS, S_ACKNOWLEDGE);
        self.w(STATUS, S_ACKNOWLEDGE | S_DRIVER);
        let mut offered = 0u64;
        for sel in 0..2 {
            self.w(DEVICE_FEATURES_SEL, sel);
            offered |= u64::from(self.r(DEVICE_FEATURES)) << (32 * sel);
        }
        if offered & F_VERSION_1 == 0 {
            return Err("no VERSION_1");
        }
        let accepted = F_VERSION_1 | (wanted & offered);
        for sel in 0..2 {
            self.w(DRIVER_FEATURES_SEL, sel);
            self.w(DRIVER_FEATURES, (accepted >> (32 * sel)) as u32);
        }
        self.w(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
        if self.r(STATUS) & S_FEATURES_OK == 0 {
            return Err("FEATURES_OK refused");
        }
        Ok(accepted)
    }

    /// Resets the device: it lets go of its queues and buffers.
    pub fn reset(&self) {
        self.w(STATUS, 0);
    }

    pub fn driver_ok(&self) {
        self.w(STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    }

    /// Sets up queue `index` in `mem` with min(QueueNumMax, 16) entries.
    pub fn queue(&self, index: u32, mem: &'static Dma<QueueMem>) -> Result<Queue, &'static str> {
        self.w(QUEUE_SEL, index);
        let max = self.r(QUEUE_NUM_MAX);
        if max == 0 {
            return Err("queue unavailable");
        }
        let size = max.min(QSIZE as u32);
        self.w(QUEUE_NUM, size);
        let m = mem.get();
        // SAFETY: no device owns the memory now (a device that did was reset): start clean.
        unsafe { core::ptr::write_bytes(m, 0, 1) };
        // SAFETY: field addresses within the static ring memory.
        let (desc, avail, used) = unsafe {
            (
                (&raw mut (*m).desc) as u64,
                (&raw mut (*m).avail) as u64,
                (&raw mut (*m).used) as u64,
            )
        };
        for (off, a) in [(QUEUE_DESC, desc), (QUEUE_DRIVER, avail), (QUEUE_DEVICE, used)] {
            self.w(off, a as u32);
            self.w(off + 4, (a >> 32) as u32);
        }
        self.w(QUEUE_READY, 1);
        Ok(Queue {
            mmio: *self,
            index,
            m,
            size: size as u16,
            next_avail: 0,
            last_used: 0,
        })
    }

    /// Reads and acknowledges pending interrupts.
    pub fn ack(&self) {
        let s = self.r(INTERRUPT_STATUS);
        if s != 0 {
            self.w(INTERRUPT_ACK, s);
        }
    }

    pub fn config_u8(&self, off: usize) -> u8 {
        // SAFETY: device config space, byte access.
        unsafe { ((self.base as usize + CONFIG + off) as *const u8).read_volatile() }
    }

    /// A 64-bit config field, read as two 32-bit halves under a stable ConfigGeneration.
    pub fn config_u64(&self, off: usize) -> u64 {
        loop {
            let g = self.r(CONFIG_GENERATION);
            let v = u64::from(self.r(CONFIG + off)) | u64::from(self.r(CONFIG + off + 4)) << 32;
            if self.r(CONFIG_GENERATION) == g {
                return v;
            }
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

#[repr(C)]
pub struct Avail {
    flags: u16,
    idx: u16,
    ring: [u16; QSIZE],
    used_event: u16,
}

#[repr(C)]
pub struct UsedElem {
    id: u32,
    len: u32,
}

#[repr(C, align(4))]
pub struct Used {
    flags: u16,
    idx: u16,
    ring: [UsedElem; QSIZE],
    avail_event: u16,
}

/// The memory of one split virtqueue: descriptors (16-aligned), avail ring (2), used ring (4).
#[repr(C, align(4096))]
pub struct QueueMem {
    desc: [Desc; QSIZE],
    avail: Avail,
    used: Used,
}

/// A set-up queue: the driver's view of its rings.
pub struct Queue {
    mmio: Mmio,
    index: u32,
    m: *mut QueueMem,
    /// Entries the device was told (≤ 16).
    pub size: u16,
    next_avail: u16,
    last_used: u16,
}

impl Queue {
    /// Writes descriptor `i`.
    pub fn set(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = Desc { addr, len, flags, next };
        // SAFETY: i < size ≤ QSIZE; the device does not own a descriptor not yet made available.
        unsafe { (&raw mut (*self.m).desc[usize::from(i)]).write_volatile(d) };
    }

    /// Makes the chain starting at `head` available, without notifying.
    pub fn push(&mut self, head: u16) {
        let slot = usize::from(self.next_avail % self.size);
        // SAFETY: ring fields of the static queue memory.
        unsafe {
            (&raw mut (*self.m).avail.ring[slot]).write_volatile(head);
            fence(Ordering::SeqCst);
            self.next_avail = self.next_avail.wrapping_add(1);
            (&raw mut (*self.m).avail.idx).write_volatile(self.next_avail);
        }
        fence(Ordering::SeqCst);
    }

    /// Tells the device there is new work, unless it asked not to be (VIRTQ_USED_F_NO_NOTIFY).
    pub fn notify(&mut self) {
        // SAFETY: used.flags of the static queue memory.
        if unsafe { (&raw const (*self.m).used.flags).read_volatile() } & 1 == 0 {
            self.mmio.w(QUEUE_NOTIFY, self.index);
        }
    }

    /// Hostile: sets the avail index to `next_avail + ahead` (entries the driver never wrote)
    /// and writes QueueNotify, whatever the device asked.
    pub fn announce_ahead(&mut self, ahead: u16) {
        // SAFETY: avail.idx of the static queue memory.
        unsafe { (&raw mut (*self.m).avail.idx).write_volatile(self.next_avail.wrapping_add(ahead)) };
        fence(Ordering::SeqCst);
        self.mmio.w(QUEUE_NOTIFY, self.index);
    }

    /// `push` and `notify`.
    pub fn submit(&mut self, head: u16) {
        self.push(head);
        self.notify();
    }

    /// Reads and acknowledges the device's pending interrupts.
    pub fn ack(&self) {
        self.mmio.ack();
    }

    /// The next used element (descriptor head and bytes written), if any.
    pub fn pop(&mut self) -> Option<(u16, u32)> {
        // SAFETY: used ring fields of the static queue memory.
        unsafe {
            if (&raw const (*self.m).used.idx).read_volatile() == self.last_used {
                return None;
            }
            fence(Ordering::SeqCst);
            let e = &raw const (*self.m).used.ring[usize::from(self.last_used % self.size)];
            let (id, len) = ((&raw const (*e).id).read_volatile(), (&raw const (*e).len).read_volatile());
            self.last_used = self.last_used.wrapping_add(1);
            Some((id as u16, len))
        }
    }

    /// Polls for the next used element for up to `cycles` TSC cycles (and at most 2^32 polls,
    /// should the TSC not advance); acknowledges the interrupt when one arrived.
    pub fn wait(&mut self, cycles: u64) -> Option<(u16, u32)> {
        let start = crate::cycles();
        for _ in 0..1u64 << 32 {
            if let Some(e) = self.pop() {
                self.mmio.ack();
                return Some(e);
            }
            if crate::cycles().wrapping_sub(start) > cycles {
                return None;
            }
            core::hint::spin_loop();
        }
        None
    }
}
