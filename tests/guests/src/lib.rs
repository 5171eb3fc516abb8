//! A minimal solo5-hvt guest runtime for unik's test unikernels: the two ELF notes, the
//! hypercalls (through [`arch`], the one per-architecture part: x86_64 port I/O or aarch64 MMIO),
//! console output, the boot info and the manifest copy. `linux` and `virtio` are for
//! the guest booted like Linux (PVH or the 64-bit boot protocol) that drives virtio-mmio devices.
#![no_std]

use core::fmt::{self, Write};

#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
pub mod arch;
// The Linux-boot guest's x86_64 entry, console and interrupts.
pub mod hostile;
#[cfg(target_arch = "x86_64")]
pub mod irq;
#[cfg(target_arch = "x86_64")]
pub mod linux;
// Its aarch64 counterpart: the arm64 Image entry, the device tree, PSCI.
#[cfg(target_arch = "aarch64")]
#[path = "linux_aarch64.rs"]
pub mod linux;
pub mod net;
pub mod ring;
pub mod virtio;

/// Console writer on the Linux-boot guest's serial port (COM1 on x86_64, the MMIO 16550 on
/// aarch64: [`linux::serial_write`]).
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        linux::serial_write(s.as_bytes());
        Ok(())
    }
}

/// `println!` on the Linux-boot guest's serial port.
#[macro_export]
macro_rules! sprintln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Serial, $($arg)*);
    }};
}

/// `struct hvt_boot_info`.
#[repr(C)]
pub struct BootInfo {
    pub mem_size: u64,
    pub kernel_end: u64,
    pub cpu_cycle_freq: u64,
    pub cmdline: u64,
    pub mft: u64,
    pub host_features: u32,
    pub guest_features: u32,
    pub net_ring: u64,
}

pub const BLOCK: u32 = 1;
pub const NET: u32 = 2;
pub const RESERVED: u32 = 1 << 30;

/// `struct mft_entry` (104 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MftEntry {
    pub name: [u8; 68],
    pub kind: u32,
    pub u: [u64; 2],
    pub b: u64,
    pub attached: u8,
    pub pad: [u8; 7],
}

impl MftEntry {
    pub const fn new(name: &str, kind: u32) -> MftEntry {
        let mut e = MftEntry {
            name: [0; 68],
            kind,
            u: [0; 2],
            b: 0,
            attached: 0,
            pad: [0; 7],
        };
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() && i < 67 {
            e.name[i] = bytes[i];
            i += 1;
        }
        e
    }

    pub fn name(&self) -> &[u8] {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(68);
        &self.name[..len]
    }

    /// Block capacity (bytes) and block size.
    pub fn block(&self) -> (u64, u64) {
        (self.u[0], self.u[1] & 0xffff)
    }

    /// Net MAC and MTU.
    pub fn net(&self) -> ([u8; 6], u16) {
        let b = self.u[0].to_le_bytes();
        ([b[0], b[1], b[2], b[3], b[4], b[5]], u16::from_le_bytes([b[6], b[7]]))
    }
}

/// The ABI1 note: hvt target (1), ABI version 2.
#[repr(C, align(4))]
pub struct AbiNote {
    pub namesz: u32,
    pub descsz: u32,
    pub ntype: u32,
    pub name: [u8; 8],
    pub desc: [u32; 4],
}

impl AbiNote {
    pub const fn new(target: u32, version: u32) -> AbiNote {
        AbiNote {
            namesz: 6,
            descsz: 16,
            ntype: 0x3149_4241,
            name: *b"Solo5\0\0\0",
            desc: [target, version, 0, 0],
        }
    }
}

/// The MFT1 note: header, 4 pad bytes, then `struct mft` with N entries.
#[repr(C, align(8))]
pub struct MftNote<const N: usize> {
    pub namesz: u32,
    pub descsz: u32,
    pub ntype: u32,
    pub name: [u8; 8],
    pub pad: u32,
    pub version: u32,
    pub entries: u32,
    pub e: [MftEntry; N],
}

impl<const N: usize> MftNote<N> {
    pub const fn new(e: [MftEntry; N]) -> MftNote<N> {
        MftNote {
            namesz: 6,
            descsz: (4 + 8 + 104 * N) as u32,
            ntype: 0x3154_464d,
            name: *b"Solo5\0\0\0",
            pad: 0,
            version: 1,
            entries: N as u32,
            e,
        }
    }
}

/// Emits the ABI1 note and an MFT1 note with the reserved entry plus the given devices.
#[macro_export]
macro_rules! solo5_notes {
    ($($name:literal : $kind:expr),* $(,)?) => {
        #[used]
        #[unsafe(link_section = ".note.solo5.abi")]
        static ABI_NOTE: $crate::AbiNote = $crate::AbiNote::new(1, 2);
        $crate::solo5_manifest!($($name : $kind),*);
    };
}

/// Emits only the MFT1 note.
#[macro_export]
macro_rules! solo5_manifest {
    ($($name:literal : $kind:expr),* $(,)?) => {
        const MFT_N: usize = { let names: &[&str] = &[$($name),*]; names.len() + 1 };
        #[used]
        #[unsafe(link_section = ".note.solo5.manifest")]
        static MFT_NOTE: $crate::MftNote<MFT_N> =
            $crate::MftNote::new([$crate::MftEntry::new("", $crate::RESERVED), $($crate::MftEntry::new($name, $kind)),*]);
    };
}

/// Defines `_start`: runs `$main(&BootInfo, cmdline)` and halts with its status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = ".text._start")]
        pub extern "C" fn _start(bi: &'static $crate::BootInfo) -> ! {
            let status = $main(bi, $crate::cmdline(bi));
            $crate::halt(status)
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo) -> ! {
            $crate::println!("ABORT: {}", info);
            $crate::halt(255)
        }
    };
}

pub const WALLTIME: u16 = 1;
pub const PUTS: u16 = 2;
pub const POLL: u16 = 3;
pub const BLOCK_WRITE: u16 = 4;
pub const BLOCK_READ: u16 = 5;
pub const NET_WRITE: u16 = 6;
pub const NET_READ: u16 = 7;
pub const HALT: u16 = 8;

/// Issues hypercall `nr` with the argument struct at `arg` (identity mapped, below 4 GiB).
#[inline(always)]
pub fn hypercall<T>(nr: u16, arg: *mut T) {
    arch::hypercall(nr, arg as usize as u64);
}

#[repr(C)]
struct Puts {
    data: u64,
    len: u64,
}

pub fn puts(s: &[u8]) {
    let mut arg = Puts {
        data: s.as_ptr() as u64,
        len: s.len() as u64,
    };
    hypercall(PUTS, &mut arg);
}

#[repr(C)]
struct Halt {
    cookie: u64,
    status: i32,
    pad: u32,
}

pub fn halt_with_cookie(status: i32, cookie: u64) -> ! {
    let mut arg = Halt { cookie, status, pad: 0 };
    hypercall(HALT, &mut arg);
    loop {
        core::hint::spin_loop();
    }
}

pub fn halt(status: i32) -> ! {
    halt_with_cookie(status, 0)
}

pub fn walltime() -> u64 {
    let mut nsecs: u64 = 0;
    hypercall(WALLTIME, &mut nsecs);
    nsecs
}

#[repr(C)]
struct Poll {
    timeout: u64,
    ready_set: u64,
    ret: i32,
    pad: u32,
}

/// Waits up to `timeout_ns`; returns the ready set.
pub fn poll(timeout_ns: u64) -> u64 {
    let mut arg = Poll {
        timeout: timeout_ns,
        ready_set: 0,
        ret: 0,
        pad: 0,
    };
    hypercall(POLL, &mut arg);
    arg.ready_set
}

#[repr(C)]
struct Block {
    handle: u64,
    offset: u64,
    data: u64,
    len: u64,
    ret: i32,
    pad: u32,
}

pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> i32 {
    let mut arg = Block {
        handle,
        offset,
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
        ret: -1,
        pad: 0,
    };
    hypercall(BLOCK_WRITE, &mut arg);
    arg.ret
}

pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> i32 {
    let mut arg = Block {
        handle,
        offset,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ret: -1,
        pad: 0,
    };
    hypercall(BLOCK_READ, &mut arg);
    arg.ret
}

#[repr(C)]
struct Net {
    handle: u64,
    data: u64,
    len: u64,
    ret: i32,
    pad: u32,
}

pub fn net_write(handle: u64, frame: &[u8]) -> i32 {
    let mut arg = Net {
        handle,
        data: frame.as_ptr() as u64,
        len: frame.len() as u64,
        ret: -1,
        pad: 0,
    };
    hypercall(NET_WRITE, &mut arg);
    arg.ret
}

/// Reads a frame: `Ok(len)`, or `Err(ret)` (1 = nothing waiting).
pub fn net_read(handle: u64, buf: &mut [u8]) -> Result<usize, i32> {
    let mut arg = Net {
        handle,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ret: -1,
        pad: 0,
    };
    hypercall(NET_READ, &mut arg);
    if arg.ret == 0 { Ok(arg.len as usize) } else { Err(arg.ret) }
}

pub use arch::cycles;

/// Nanoseconds between two [`cycles`] readings.
pub fn tsc_ns(bi: &BootInfo, from: u64, to: u64) -> u64 {
    ((to - from) as u128 * 1_000_000_000 / bi.cpu_cycle_freq as u128) as u64
}

/// The NUL-terminated command line as a str (empty when not UTF-8).
pub fn cmdline(bi: &'static BootInfo) -> &'static str {
    let p = bi.cmdline as *const u8;
    let mut len = 0;
    // SAFETY: the monitor wrote a NUL-terminated string of at most 8192 bytes at `cmdline`.
    while len < 8192 && unsafe { p.add(len).read_volatile() } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes were just read.
    let bytes = unsafe { core::slice::from_raw_parts(p, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// The value of `key=VALUE` in the command line.
pub fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    let [value] = args(cmdline, [key]);
    value
}

/// The values of several `key=VALUE` arguments (the first of each), in one pass over the command
/// line.
pub fn args<'a, const N: usize>(cmdline: &'a str, keys: [&str; N]) -> [Option<&'a str>; N] {
    let mut values = [None; N];
    for (s, e) in tokens(cmdline) {
        let token = &cmdline.as_bytes()[s..e];
        for (key, value) in keys.iter().zip(values.iter_mut()) {
            let k = key.len();
            if value.is_none() && token.get(k) == Some(&b'=') && token.get(..k) == Some(key.as_bytes()) {
                // `get`, not indexing: no panic path, whose code in `core` a position-independent
                // guest (the static-pie `hello` the loader must refuse) cannot link on aarch64.
                *value = cmdline.get(s + k + 1..e);
            }
        }
    }
    values
}

/// Whether the bare token `word` is in the command line.
pub fn flag(cmdline: &str, word: &str) -> bool {
    tokens(cmdline).any(|(s, e)| cmdline.as_bytes().get(s..e) == Some(word.as_bytes()))
}

/// The (start, end) of each space-separated token, empty ones included. A plain byte loop: the
/// guest's start-up instructions are emulated one by one on a host without hardware
/// virtualization, and `str::split` costs several times as many.
fn tokens(cmdline: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = cmdline.as_bytes();
    let mut start = Some(0);
    core::iter::from_fn(move || {
        let s = start?;
        let mut e = s;
        while e < b.len() && b[e] != b' ' {
            e += 1;
        }
        start = (e < b.len()).then_some(e + 1);
        Some((s, e))
    })
}

pub fn parse_u64(s: &str) -> Option<u64> {
    let mut n: u64 = 0;
    if s.is_empty() {
        return None;
    }
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// The manifest copy in the boot info.
pub fn manifest(bi: &BootInfo) -> &'static [MftEntry] {
    let base = bi.mft as *const u32;
    // SAFETY: the monitor copied `struct mft` at `mft`: version, entries, then the entries.
    unsafe {
        let n = base.add(1).read_volatile() as usize;
        core::slice::from_raw_parts(base.add(2) as *const MftEntry, n)
    }
}

/// Handle and entry of the device named `name`.
pub fn device(bi: &BootInfo, name: &str) -> Option<(u64, &'static MftEntry)> {
    manifest(bi)
        .iter()
        .enumerate()
        .find(|(_, e)| e.name() == name.as_bytes())
        .map(|(i, e)| (i as u64, e))
}

/// Console writer: one PUTS per formatted piece.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        puts(s.as_bytes());
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}
