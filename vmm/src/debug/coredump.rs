//! ELF cores of a guest (`--dumpcore DIR`): written when an hvt guest aborts (HALT with status
//! 255) or faults, so that `gdb GUEST CORE` shows its registers and backtrace.
//!
//! The file is `DIR/core.KERNEL.PID` (KERNEL: the kernel's file name; PID: the monitor's), an
//! `ET_CORE` ELF64 of the host's machine with one `PT_NOTE` (`NT_PRSTATUS` with the vCPU's
//! registers in the kernel's `user_regs_struct` / `user_pt_regs` order, `NT_PRPSINFO` naming
//! the kernel) and one `PT_LOAD` per run of guest pages that are resident on the host: pages the
//! guest never touched are zero and left out, so a core is about as large as the memory the
//! guest used, not its `--mem`. Addresses are guest-physical, which for an hvt guest (identity
//! mapped) are its virtual addresses too.
//!
//! The directory is opened when the VM is built; the vCPU thread's filter then allows creating a
//! new file in it (`openat` on that descriptor only, `O_CREAT | O_EXCL`), nothing else.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

const PAGE: usize = 4096;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const EHDR_SIZE_U16: u16 = 64;
const PHDR_SIZE_U16: u16 = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
/// Offset of `pr_reg` in `struct elf_prstatus` on 64-bit Linux: siginfo (12), cursig (2 + 2
/// padding), sigpend and sighold (16), pid, ppid, pgrp, sid (16), four timevals (64).
pub const PR_REG_OFFSET: usize = 112;
/// `struct elf_prpsinfo` on 64-bit Linux.
const PRPSINFO_SIZE: usize = 136;

/// Errors of writing a core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The directory could not be opened when the VM was built.
    #[error("--dumpcore: cannot open directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the host said.
        source: io::Error,
    },
    /// Reading the vCPU's registers failed.
    #[error("core dump: {0}")]
    Registers(#[from] arch::ArchError),
    /// Creating or writing the file failed.
    #[error("core dump: writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the host said.
        source: io::Error,
    },
}

/// Where cores go: a directory opened at build time.
#[derive(Debug)]
pub struct CoreDir {
    dir: OwnedFd,
    path: PathBuf,
}

impl CoreDir {
    /// Opens `path`, which must be a directory.
    pub fn open(path: &Path) -> Result<CoreDir, CoreError> {
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| CoreError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(CoreDir {
            dir: dir.into(),
            path: path.to_path_buf(),
        })
    }

    /// The directory's descriptor (for the seccomp rule).
    pub fn raw_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// Writes the core of the guest whose kernel is `kernel` (its file name names the core):
    /// registers of `vcpu`, resident memory of `mem`; `signal` is what the note says stopped it
    /// (SIGABRT for an abort, SIGSEGV for a fault). Returns the file's path.
    pub fn write(&self, kernel: &Path, vcpu: &VcpuFd, mem: &GuestMemoryMmap, signal: i32) -> Result<PathBuf, CoreError> {
        let regs = arch::debug::prstatus_regs(vcpu)?;
        let fname = kernel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "guest".into());
        let pid = std::process::id();
        let name = format!("core.{fname}.{pid}");
        let path = self.path.join(&name);
        let werr = |source| CoreError::Write {
            path: path.clone(),
            source,
        };
        let cname = std::ffi::CString::new(name).map_err(|_| werr(io::ErrorKind::InvalidInput.into()))?;
        // The system call itself, not the C library's openat: musl adds O_LARGEFILE to the flags,
        // which the seccomp rule (these exact flags on this directory) would then refuse.
        // SAFETY: openat on our directory descriptor with a NUL-terminated name; the new
        // descriptor is owned below.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat,
                self.dir.as_raw_fd(),
                cname.as_ptr(),
                crate::seccomp::CORE_OPEN_FLAGS,
                0o600,
            )
        };
        let fd = match libc::c_int::try_from(ret) {
            Ok(fd) if fd >= 0 => fd,
            _ => return Err(werr(io::Error::last_os_error())),
        };
        // SAFETY: openat returned a new descriptor nothing else owns.
        let mut file = io::BufWriter::with_capacity(1 << 16, File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        let segments = resident_runs(mem).map_err(werr)?;
        let info = CoreInfo {
            machine: arch::debug::ELF_MACHINE,
            regs: &regs,
            signal,
            pid,
            fname: &fname,
        };
        write_core(&mut file, &info, &segments, |gpa, buf| {
            mem.read_slice(buf, vm_memory::GuestAddress(gpa))
                .map_err(|e| io::Error::other(e.to_string()))
        })
        .and_then(|()| file.flush())
        .map_err(werr)?;
        Ok(path)
    }
}

/// What a core's notes say.
#[derive(Debug)]
pub struct CoreInfo<'a> {
    /// `e_machine`.
    pub machine: u16,
    /// `pr_reg`, in the architecture's order.
    pub regs: &'a [u64],
    /// The signal that stopped the guest.
    pub signal: i32,
    /// The process (the monitor).
    pub pid: u32,
    /// The program's name (the kernel's file name).
    pub fname: &'a str,
}

/// The guest-physical ranges (start, length) of resident pages, run by run.
fn resident_runs(mem: &GuestMemoryMmap) -> io::Result<Vec<(u64, u64)>> {
    const WINDOW: usize = 64 << 20;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut vec = vec![0u8; WINDOW / PAGE];
    for region in mem.iter() {
        let len = usize::try_from(region.len()).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
        let base = region.start_addr().0;
        for start in (0..len).step_by(WINDOW) {
            let n = WINDOW.min(len - start);
            // SAFETY: `[host + start, host + start + n)` lies inside this region's mapping;
            // `vec` has a byte per page of it.
            if unsafe { libc::mincore(host.add(start).cast(), n, vec.as_mut_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, _) in vec[..n.div_ceil(PAGE)].iter().enumerate().filter(|(_, b)| **b & 1 != 0) {
                let gpa = base + (start + i * PAGE) as u64;
                match runs.last_mut() {
                    Some((s, l)) if *s + *l == gpa => *l += PAGE as u64,
                    _ => runs.push((gpa, PAGE as u64)),
                }
            }
        }
    }
    Ok(runs)
}

fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    const NAME: &[u8] = b"CORE\0";
    out.extend_from_slice(&u32::try_from(NAME.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&u32::try_from(desc.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(NAME);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The `PT_NOTE` contents: `NT_PRSTATUS` then `NT_PRPSINFO`.
pub fn notes(info: &CoreInfo<'_>) -> Vec<u8> {
    let mut prstatus = vec![0u8; PR_REG_OFFSET + info.regs.len() * 8 + 8];
    prstatus[0..4].copy_from_slice(&info.signal.to_le_bytes());
    // pr_cursig (a short).
    prstatus[12..14].copy_from_slice(&u16::try_from(info.signal).unwrap_or(0).to_le_bytes());
    // pr_pid.
    prstatus[32..36].copy_from_slice(&info.pid.to_le_bytes());
    for (i, r) in info.regs.iter().enumerate() {
        let at = PR_REG_OFFSET + i * 8;
        prstatus[at..at + 8].copy_from_slice(&r.to_le_bytes());
    }
    let mut psinfo = vec![0u8; PRPSINFO_SIZE];
    // pr_sname 'R'.
    psinfo[1] = b'R';
    psinfo[24..28].copy_from_slice(&info.pid.to_le_bytes());
    let fname = info.fname.as_bytes();
    let n = fname.len().min(15);
    psinfo[40..40 + n].copy_from_slice(&fname[..n]);
    let n = fname.len().min(79);
    psinfo[56..56 + n].copy_from_slice(&fname[..n]);
    let mut out = Vec::new();
    note(&mut out, NT_PRSTATUS, &prstatus);
    note(&mut out, NT_PRPSINFO, &psinfo);
    out
}

fn ehdr(machine: u16, phnum: u16) -> [u8; EHDR_SIZE] {
    let mut h = [0u8; EHDR_SIZE];
    h[0..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    h[52..54].copy_from_slice(&EHDR_SIZE_U16.to_le_bytes());
    h[54..56].copy_from_slice(&PHDR_SIZE_U16.to_le_bytes());
    h[56..58].copy_from_slice(&phnum.to_le_bytes());
    h
}

fn phdr(kind: u32, flags: u32, offset: u64, addr: u64, size: u64, align: u64) -> [u8; PHDR_SIZE] {
    let mut p = [0u8; PHDR_SIZE];
    p[0..4].copy_from_slice(&kind.to_le_bytes());
    p[4..8].copy_from_slice(&flags.to_le_bytes());
    p[8..16].copy_from_slice(&offset.to_le_bytes());
    p[16..24].copy_from_slice(&addr.to_le_bytes()); // p_vaddr
    p[24..32].copy_from_slice(&addr.to_le_bytes()); // p_paddr
    p[32..40].copy_from_slice(&size.to_le_bytes()); // p_filesz
    p[40..48].copy_from_slice(&size.to_le_bytes()); // p_memsz
    p[48..56].copy_from_slice(&align.to_le_bytes());
    p
}

/// Writes a core to `out`: the header, the program headers, the notes, then each segment
/// `(gpa, len)` of `segments`, page-aligned, its bytes from `read(gpa, buf)`.
pub fn write_core(
    out: &mut impl Write,
    info: &CoreInfo<'_>,
    segments: &[(u64, u64)],
    mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<()> {
    let too_many = || io::Error::new(io::ErrorKind::InvalidInput, "too many segments");
    let phnum = u16::try_from(segments.len() + 1).map_err(|_| too_many())?;
    let notes = notes(info);
    let header_end = EHDR_SIZE + PHDR_SIZE * usize::from(phnum) + notes.len();
    let notes_at = (EHDR_SIZE + PHDR_SIZE * usize::from(phnum)) as u64;
    let mut at = header_end.next_multiple_of(PAGE) as u64;
    out.write_all(&ehdr(info.machine, phnum))?;
    out.write_all(&phdr(PT_NOTE, 0, notes_at, 0, notes.len() as u64, 4))?;
    for &(gpa, len) in segments {
        // PF_R | PF_W | PF_X.
        out.write_all(&phdr(PT_LOAD, 7, at, gpa, len, PAGE as u64))?;
        at += len;
    }
    out.write_all(&notes)?;
    out.write_all(&vec![0u8; header_end.next_multiple_of(PAGE) - header_end])?;
    let mut buf = vec![0u8; 1 << 16];
    for &(gpa, len) in segments {
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).unwrap_or(buf.len()).min(buf.len());
            read(gpa + done, &mut buf[..n])?;
            out.write_all(&buf[..n])?;
            done += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// A core of `regs` for `machine` with two segments, checked field by field.
    fn check_layout(machine: u16, regs: &[u64], pc_index: usize, prstatus_size: usize) {
        let info = CoreInfo {
            machine,
            regs,
            signal: 6,
            pid: 42,
            fname: "app.hvt",
        };
        let mut out = Vec::new();
        let segments = [(0x10_0000u64, 0x2000u64), (0x20_0000, 0x1000)];
        write_core(&mut out, &info, &segments, |gpa, buf| {
            buf.fill(u8::try_from(gpa >> 20).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(&out[..4], b"\x7fELF");
        assert_eq!(u16_at(&out, 16), 4, "ET_CORE");
        assert_eq!(u16_at(&out, 18), machine);
        assert_eq!(u16_at(&out, 56), 3, "one note and two loads");
        // The note: NT_PRSTATUS of the kernel's size, with the pc where gdb reads it.
        let note = u64_at(&out, EHDR_SIZE + 8) as usize;
        assert_eq!(u32_at(&out, EHDR_SIZE), PT_NOTE);
        assert_eq!(u32_at(&out, note + 4) as usize, prstatus_size);
        assert_eq!(u32_at(&out, note + 8), NT_PRSTATUS);
        assert_eq!(&out[note + 12..note + 17], b"CORE\0");
        let desc = note + 20;
        assert_eq!(u32_at(&out, desc), 6, "si_signo");
        assert_eq!(u32_at(&out, desc + 32), 42, "pr_pid");
        assert_eq!(u64_at(&out, desc + PR_REG_OFFSET + pc_index * 8), 0x1234_5678);
        // The loads: page-aligned offsets, their bytes where the headers say.
        for (i, &(gpa, len)) in segments.iter().enumerate() {
            let ph = EHDR_SIZE + PHDR_SIZE * (i + 1);
            assert_eq!(u32_at(&out, ph), PT_LOAD);
            assert_eq!(u64_at(&out, ph + 16), gpa);
            assert_eq!(u64_at(&out, ph + 32), len);
            let off = u64_at(&out, ph + 8) as usize;
            assert_eq!(off % PAGE, 0);
            assert!(out[off..off + len as usize].iter().all(|&b| u64::from(b) == gpa >> 20));
        }
        assert_eq!(out.len(), PAGE + 0x3000, "headers and notes in the first page");
    }

    #[test]
    fn test_x86_64_core_layout() {
        // user_regs_struct: rip is the 17th register; elf_prstatus is 336 bytes.
        let mut regs = [0u64; 27];
        regs[16] = 0x1234_5678;
        check_layout(62, &regs, 16, 336);
    }

    #[test]
    fn test_aarch64_core_layout() {
        // user_pt_regs: pc is the 33rd register; elf_prstatus is 392 bytes.
        let mut regs = [0u64; 34];
        regs[32] = 0x1234_5678;
        check_layout(183, &regs, 32, 392);
    }

    #[test]
    fn test_host_register_count_matches_the_kernel_layout() {
        let size = PR_REG_OFFSET + arch::debug::PRSTATUS_REGS * 8 + 8;
        #[cfg(target_arch = "x86_64")]
        assert_eq!(size, 336);
        #[cfg(target_arch = "aarch64")]
        assert_eq!(size, 392);
    }

    #[test]
    fn test_resident_runs_cover_touched_pages_only() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 64 * PAGE)]).unwrap();
        use vm_memory::Bytes;
        for page in [3u64, 4, 10] {
            mem.write_obj(1u8, vm_memory::GuestAddress(page * PAGE as u64)).unwrap();
        }
        let runs = resident_runs(&mem).unwrap();
        assert_eq!(runs, vec![(3 * PAGE as u64, 2 * PAGE as u64), (10 * PAGE as u64, PAGE as u64)]);
    }
}
