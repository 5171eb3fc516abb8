//! Seccomp filters for the threads that live while a guest runs, one filter per thread kind.
//!
//! Each thread installs its own filter (seccompiler rules compiled to BPF) after every file, tap
//! and KVM object is open and before the guest's first instruction: the hvt vCPU thread, the
//! Linux-boot vCPU threads, the device thread and a container monitor's link watch. A thread started by a filtered thread inherits
//! its filter, and filters only ever stack, so nothing started later is less confined.
//!
//! What a run needs is small: `KVM_RUN` and the few ioctls named below, reads and writes on the
//! descriptors already open, memory management without `PROT_EXEC`, futexes, signals to this
//! process only, and exit. No `open`, `socket`, `execve`, `ptrace`, `clone`, `mount`, …: a guest
//! that takes over the monitor can use only what the monitor already holds.
//!
//! A call outside the filter raises SIGSYS (`SECCOMP_RET_TRAP`); the handler writes one line
//! naming the call to stderr and the process dies by SIGSYS. [`SeccompMode::Log`] lets such calls
//! through and has the kernel log them (the audit log, `dmesg`), for finding a missing rule.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};

mod names;

pub use names::syscall_name;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as ArgLen, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter, SeccompRule,
    TargetArch,
};
use serde::{Deserialize, Serialize};

/// How the filters act on a system call they do not allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// Kill the process, after a line naming the call (the default).
    #[default]
    On,
    /// Allow it, and have the kernel log it (to find a missing rule).
    Log,
    /// No filter at all.
    Off,
}

impl std::str::FromStr for SeccompMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SeccompMode, String> {
        match s {
            "on" => Ok(SeccompMode::On),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            _ => Err(format!("'{s}': expected on, log or off")),
        }
    }
}

impl std::fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SeccompMode::On => "on",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        })
    }
}

/// The kinds of thread that live while a guest runs; each has its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The thread running an hvt guest: `KVM_RUN` and the hypercalls (console, block, net, POLL).
    HvtVcpu,
    /// A vCPU of a Linux-boot guest: `KVM_RUN` and the buses' registers (a queue notify that
    /// reaches the monitor instead of an ioeventfd is forwarded to the device thread).
    LinuxVcpu,
    /// The device thread of a Linux-boot guest: virtio activation and queues, taps, disks,
    /// serial input.
    Devices,
    /// A container monitor's watch on the interface its guest's card is spliced to: netlink
    /// link messages in, one error line and the process's exit out.
    LinkWatch,
    /// The hvt net ring's thread: reads its kick eventfd, reads and writes taps, and kicks the
    /// vCPU when the guest broke the ring; no `ioctl`, no `epoll`.
    HvtRing,
}

impl ThreadKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ThreadKind; 5] = [
        ThreadKind::HvtVcpu,
        ThreadKind::LinuxVcpu,
        ThreadKind::Devices,
        ThreadKind::LinkWatch,
        ThreadKind::HvtRing,
    ];

    /// How messages name the kind.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::HvtVcpu => "hvt vCPU",
            ThreadKind::LinuxVcpu => "Linux-boot vCPU",
            ThreadKind::Devices => "device",
            ThreadKind::LinkWatch => "link watch",
            ThreadKind::HvtRing => "hvt net ring",
        }
    }
}

/// Errors of building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The rules did not compile (a bug in this module).
    #[error("seccomp: building the {kind} thread's filter: {source}")]
    Build {
        /// The thread kind.
        kind: &'static str,
        /// What seccompiler said.
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter.
    #[error("seccomp: installing the {kind} thread's filter: {source}")]
    Install {
        /// The thread kind.
        kind: &'static str,
        /// What the kernel said.
        source: seccompiler::Error,
    },
    /// The SIGSYS handler could not be installed.
    #[error("seccomp: installing the SIGSYS handler: {0}")]
    Handler(std::io::Error),
}

/// A compiled filter, ready to install on a thread of its kind.
#[derive(Debug, Clone)]
pub struct Filter {
    kind: ThreadKind,
    program: BpfProgram,
}

mod ioctls {
    #![allow(missing_docs)]
    use vmm_sys_util::{ioctl_io_nr, ioctl_iow_nr};

    const KVMIO: u32 = 0xae;
    ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    #[cfg(target_arch = "x86_64")]
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
    ioctl_iow_nr!(KVM_GET_ONE_REG, KVMIO, 0xab, kvm_bindings::kvm_one_reg);
    ioctl_iow_nr!(KVM_SET_USER_MEMORY_REGION, KVMIO, 0x46, kvm_bindings::kvm_userspace_memory_region);
    ioctl_iow_nr!(KVM_SET_ONE_REG, KVMIO, 0xac, kvm_bindings::kvm_one_reg);
    ioctl_iow_nr!(KVM_SET_GUEST_DEBUG, KVMIO, 0x9b, kvm_bindings::kvm_guest_debug);
    #[cfg(target_arch = "x86_64")]
    ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_bindings::kvm_regs);
    #[cfg(target_arch = "x86_64")]
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);
    #[cfg(target_arch = "x86_64")]
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_FPU, KVMIO, 0x8c, kvm_bindings::kvm_fpu);
    #[cfg(target_arch = "x86_64")]
    vmm_sys_util::ioctl_iowr_nr!(KVM_TRANSLATE, KVMIO, 0x85, kvm_bindings::kvm_translation);
}

/// What `--gdb` and `--dumpcore` add to the vCPU thread's filter, and only when given: nothing
/// by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugRules {
    /// The connection to gdb: peeking at it (`recvfrom` with `MSG_PEEK | MSG_DONTWAIT` on this
    /// descriptor only; reads and writes are `read`/`write`), and the ioctls of registers,
    /// address translation and guest debug.
    pub gdb_socket: Option<std::os::fd::RawFd>,
    /// The core directory: `openat` relative to this descriptor only, creating a new file
    /// (`O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`), and reading the registers.
    pub core_dir: Option<std::os::fd::RawFd>,
}

/// The `openat` flags of a core file (for its rule).
pub const CORE_OPEN_FLAGS: libc::c_int = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The ioctls reading a vCPU's registers beyond the instruction pointer.
fn register_ioctls() -> Vec<u64> {
    #[cfg(target_arch = "x86_64")]
    return vec![ioctls::KVM_GET_REGS(), ioctls::KVM_GET_SREGS()];
    #[cfg(target_arch = "aarch64")]
    return vec![ioctls::KVM_GET_ONE_REG()];
}

/// The ioctls the gdb stub makes on the vCPU: registers, translation and guest debug.
fn gdb_ioctls() -> Vec<u64> {
    let mut v = register_ioctls();
    v.push(ioctls::KVM_SET_GUEST_DEBUG());
    #[cfg(target_arch = "x86_64")]
    v.extend([ioctls::KVM_SET_REGS(), ioctls::KVM_GET_FPU(), ioctls::KVM_TRANSLATE()]);
    #[cfg(target_arch = "aarch64")]
    v.push(ioctls::KVM_SET_ONE_REG());
    v
}

impl DebugRules {
    /// The extra ioctls.
    fn ioctls(&self) -> Vec<u64> {
        let mut v = Vec::new();
        if self.gdb_socket.is_some() {
            v.extend(gdb_ioctls());
        }
        if self.core_dir.is_some() {
            v.extend(register_ioctls());
        }
        v
    }

    /// Adds the rules to `rules` (whose `ioctl` entry is set afterwards).
    fn add(&self, rules: &mut Rules) -> Result<(), seccompiler::BackendError> {
        let fd = |fd: std::os::fd::RawFd| u64::try_from(fd).unwrap_or(u64::MAX);
        if let Some(sock) = self.gdb_socket {
            let peek = u64::try_from(crate::debug::gdb::PEEK_FLAGS).unwrap_or(0);
            rules.insert(
                libc::SYS_recvfrom,
                vec![SeccompRule::new(vec![
                    Cond::new(0, ArgLen::Dword, Op::Eq, fd(sock))?,
                    Cond::new(3, ArgLen::Dword, Op::Eq, peek)?,
                ])?],
            );
        }
        if let Some(dir) = self.core_dir {
            let flags = u64::try_from(CORE_OPEN_FLAGS).unwrap_or(0);
            rules.insert(
                libc::SYS_openat,
                vec![SeccompRule::new(vec![
                    Cond::new(0, ArgLen::Dword, Op::Eq, fd(dir))?,
                    Cond::new(2, ArgLen::Dword, Op::Eq, flags)?,
                ])?],
            );
            allow(rules, &[libc::SYS_mincore]);
        }
        Ok(())
    }
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Request numbers spelled out (libc types them differently for glibc and musl): the terminal's
/// `TCGETS`/`TCSETS` and the tap's `TUNSETOFFLOAD`, `_IOW('T', 208, unsigned int)`.
const TCGETS: u64 = 0x5401;
const TCSETS: u64 = 0x5402;
const TUNSETOFFLOAD: u64 = 0x4004_54d0;

fn allow(rules: &mut Rules, calls: &[libc::c_long]) {
    for &nr in calls {
        rules.insert(nr, Vec::new());
    }
}

/// Allows `nr` when argument `arg` is one of `values` (compared as 32 bits, as the kernel reads
/// an `int` or `unsigned int` argument).
fn allow_arg(rules: &mut Rules, nr: libc::c_long, arg: u8, values: &[u64]) -> Result<(), seccompiler::BackendError> {
    let mut list = Vec::new();
    for &v in values {
        list.push(SeccompRule::new(vec![Cond::new(arg, ArgLen::Dword, Op::Eq, v)?])?);
    }
    rules.insert(nr, list);
    Ok(())
}

/// Allows `nr` when argument `arg` has none of the bits of `mask`.
fn allow_without_bits(rules: &mut Rules, nr: libc::c_long, arg: u8, mask: u64) -> Result<(), seccompiler::BackendError> {
    rules.insert(
        nr,
        vec![SeccompRule::new(vec![Cond::new(arg, ArgLen::Dword, Op::MaskedEq(mask), 0)?])?],
    );
    Ok(())
}

/// What every kind needs: I/O on descriptors already open, memory without `PROT_EXEC`,
/// futexes, signals to this process, clocks and exit.
fn common(rules: &mut Rules, pid: u64) -> Result<(), seccompiler::BackendError> {
    allow(
        rules,
        &[
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_futex,
            libc::SYS_munmap,
            libc::SYS_mremap,
            libc::SYS_madvise,
            libc::SYS_brk,
            libc::SYS_rt_sigreturn,
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigaction,
            libc::SYS_sigaltstack,
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_getpid,
            libc::SYS_gettid,
            libc::SYS_clock_gettime,
            libc::SYS_clock_nanosleep,
            libc::SYS_sched_yield,
            libc::SYS_getrandom,
            libc::SYS_restart_syscall,
        ],
    );
    #[cfg(target_arch = "x86_64")]
    allow(rules, &[libc::SYS_nanosleep]);
    let exec = u64::try_from(libc::PROT_EXEC).unwrap_or(4);
    allow_without_bits(rules, libc::SYS_mmap, 2, exec)?;
    allow_without_bits(rules, libc::SYS_mprotect, 2, exec)?;
    let fcntl_cmds = [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_SETFL];
    allow_arg(rules, libc::SYS_fcntl, 1, &fcntl_cmds.map(|c| u64::try_from(c).unwrap_or(0)))?;
    // Signals only to threads of this process (the stop-signal re-raise, kicking vCPUs).
    allow_arg(rules, libc::SYS_tgkill, 0, &[pid])?;
    Ok(())
}

/// Reads and writes of block devices and taps.
const DEVICE_IO: [libc::c_long; 8] = [
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
];

fn epoll_wait(rules: &mut Rules) {
    #[cfg(target_arch = "x86_64")]
    allow(rules, &[libc::SYS_epoll_wait]);
    allow(rules, &[libc::SYS_epoll_pwait]);
}

/// The ioctls a vCPU thread makes: `KVM_RUN`, and reading the registers to name a fault's
/// instruction pointer.
fn vcpu_ioctls() -> Vec<u64> {
    let mut v = vec![ioctls::KVM_RUN()];
    #[cfg(target_arch = "x86_64")]
    v.push(ioctls::KVM_GET_REGS());
    v.push(ioctls::KVM_GET_ONE_REG());
    v
}

/// The `ioctl` requests `kind`'s filter allows (none: no `ioctl` at all).
pub fn ioctl_requests(kind: ThreadKind) -> Vec<u64> {
    match kind {
        ThreadKind::HvtVcpu => {
            let mut ioctls = vcpu_ioctls();
            // A chunk of guest RAM gets its KVM slot on the guest's first touch (`crate::slots`;
            // x86_64 only, aarch64 registers all of it before the run).
            if cfg!(target_arch = "x86_64") {
                ioctls.push(ioctls::KVM_SET_USER_MEMORY_REGION());
            }
            ioctls
        }
        ThreadKind::LinuxVcpu => {
            let mut ioctls = vcpu_ioctls();
            // vCPU 0 gives the terminal its settings back when the VM ends.
            ioctls.extend([TCGETS, TCSETS]);
            ioctls
        }
        // Activating a virtio-net card sets the tap's offloads to what the driver accepted.
        ThreadKind::Devices => vec![TUNSETOFFLOAD],
        ThreadKind::LinkWatch | ThreadKind::HvtRing => Vec::new(),
    }
}

fn rules(kind: ThreadKind, pid: u64, debug: &DebugRules) -> Result<Rules, seccompiler::BackendError> {
    let mut rules = Rules::new();
    common(&mut rules, pid)?;
    match kind {
        ThreadKind::HvtVcpu => {
            allow(&mut rules, &DEVICE_IO);
            epoll_wait(&mut rules);
            // POLL's timer; the debug-level residency count after the run.
            allow(&mut rules, &[libc::SYS_timerfd_settime, libc::SYS_mincore]);
        }
        // No block or tap I/O: a queue notification that reaches a vCPU is forwarded to the
        // device thread through an eventfd (a `write`).
        ThreadKind::LinuxVcpu => {}
        ThreadKind::Devices => {
            allow(&mut rules, &DEVICE_IO);
            allow(&mut rules, &[libc::SYS_fallocate]);
            epoll_wait(&mut rules);
        }
        // Receiving on the netlink socket it subscribed before the guest ran.
        ThreadKind::LinkWatch => allow(&mut rules, &[libc::SYS_recvfrom, libc::SYS_recvmsg]),
        // The common calls only: `read` of its eventfd and taps, `write` of taps, `tgkill` of
        // the vCPU thread.
        ThreadKind::HvtRing => {}
    }
    let mut ioctls = ioctl_requests(kind);
    if matches!(kind, ThreadKind::HvtVcpu | ThreadKind::LinuxVcpu) {
        debug.add(&mut rules)?;
        for request in debug.ioctls() {
            if !ioctls.contains(&request) {
                ioctls.push(request);
            }
        }
    }
    if !ioctls.is_empty() {
        allow_arg(&mut rules, libc::SYS_ioctl, 1, &ioctls)?;
    }
    Ok(rules)
}

/// The system calls `kind`'s filter allows, by number (for documentation and tests).
pub fn allowed_calls(kind: ThreadKind) -> Vec<libc::c_long> {
    rules(kind, 0, &DebugRules::default())
        .map(|r| r.into_keys().collect())
        .unwrap_or_default()
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
}

impl Filter {
    /// Compiles `kind`'s filter for `mode`; `None` when `mode` is off.
    pub fn new(kind: ThreadKind, mode: SeccompMode) -> Result<Option<Filter>, SeccompError> {
        Filter::with_debug(kind, mode, &DebugRules::default())
    }

    /// [`Filter::new`] with what `debug` adds (to vCPU threads only).
    pub fn with_debug(kind: ThreadKind, mode: SeccompMode, debug: &DebugRules) -> Result<Option<Filter>, SeccompError> {
        let mismatch = match mode {
            SeccompMode::On => SeccompAction::Trap,
            SeccompMode::Log => SeccompAction::Log,
            SeccompMode::Off => return Ok(None),
        };
        let build = |source| SeccompError::Build { kind: kind.name(), source };
        // SAFETY: getpid has no preconditions.
        let pid = u64::try_from(unsafe { libc::getpid() }).unwrap_or(0);
        let filter = SeccompFilter::new(
            rules(kind, pid, debug).map_err(build)?,
            mismatch,
            SeccompAction::Allow,
            target_arch(),
        )
        .map_err(build)?;
        let program = BpfProgram::try_from(filter).map_err(build)?;
        Ok(Some(Filter { kind, program }))
    }

    /// The thread kind.
    pub fn kind(&self) -> ThreadKind {
        self.kind
    }

    /// Installs the filter on the calling thread (and sets no_new_privs, which it requires).
    pub fn install(&self) -> Result<(), SeccompError> {
        seccompiler::apply_filter(&self.program).map_err(|source| SeccompError::Install {
            kind: self.kind.name(),
            source,
        })?;
        THREAD_KIND.with(|k| k.set(Some(self.kind)));
        Ok(())
    }
}

/// The compiled filters of one run, with the SIGSYS handler installed when they trap.
#[derive(Debug, Clone)]
pub struct Filters {
    mode: SeccompMode,
    filters: Vec<Filter>,
}

impl Filters {
    /// Compiles the filters of `kinds` for `mode` and, when `mode` is on, installs the SIGSYS
    /// handler that reports a blocked call. Call before any filter is installed.
    pub fn new(mode: SeccompMode, kinds: &[ThreadKind]) -> Result<Filters, SeccompError> {
        let mut filters = Vec::new();
        for &kind in kinds {
            filters.extend(Filter::new(kind, mode)?);
        }
        match mode {
            SeccompMode::On => install_sigsys_handler().map_err(SeccompError::Handler)?,
            SeccompMode::Log => log::warn!(
                "seccomp is in log mode: system calls outside the filters are allowed and logged by the \
                 kernel (see the audit log or dmesg)"
            ),
            SeccompMode::Off => log::warn!("seccomp is off: the monitor runs without a system-call filter"),
        }
        Ok(Filters { mode, filters })
    }

    /// The mode.
    pub fn mode(&self) -> SeccompMode {
        self.mode
    }

    /// Recompiles `kind`'s filter with what `debug` adds (after the gdb connection is open).
    pub fn add_debug_rules(&mut self, kind: ThreadKind, debug: &DebugRules) -> Result<(), SeccompError> {
        if let Some(filter) = Filter::with_debug(kind, self.mode, debug)? {
            self.filters.retain(|f| f.kind != kind);
            self.filters.push(filter);
        }
        Ok(())
    }

    /// Installs `kind`'s filter on the calling thread; nothing when the mode is off.
    pub fn install(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        match self.filters.iter().find(|f| f.kind == kind) {
            Some(filter) => filter.install(),
            None => Ok(()),
        }
    }
}

thread_local! {
    /// The kind of filter this thread installed, for the SIGSYS report.
    static THREAD_KIND: Cell<Option<ThreadKind>> = const { Cell::new(None) };
}

/// Where the SIGSYS report also goes, besides stderr (the `--log` file), or -1.
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Has the SIGSYS report also written to `fd` (the log file), which must stay open.
pub fn report_also_to(fd: std::os::fd::RawFd) {
    REPORT_FD.store(fd, Ordering::SeqCst);
}

/// A fixed buffer to format the report in, without allocating (the handler runs in a signal).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Offset of `si_syscall` in a SIGSYS `siginfo_t` on 64-bit Linux: after `si_signo`, `si_errno`,
/// `si_code` (and padding to 16) comes `si_call_addr` (8 bytes).
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(_signum: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SIGSYS (SA_SIGINFO), whose `si_syscall` int
    // sits at this offset on every 64-bit architecture.
    let nr = unsafe { info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<libc::c_int>().read_unaligned() };
    let kind = THREAD_KIND.with(Cell::get).map_or("a", ThreadKind::name);
    let mut line = Line { buf: [0; 256], len: 0 };
    let _ = writeln!(
        line,
        "unik: seccomp: the {kind} thread made a system call its filter does not allow: {} ({nr}); \
         the monitor stops (run `unik boot --seccomp=log` to find every such call)",
        syscall_name(libc::c_long::from(nr))
    );
    for fd in [libc::STDERR_FILENO, REPORT_FD.load(Ordering::SeqCst)] {
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; the buffer is local.
            unsafe { libc::write(fd, line.buf.as_ptr().cast(), line.len) };
        }
    }
    // SAFETY: back to the default action (terminate); async-signal-safe and allowed by every
    // filter.
    unsafe { libc::signal(libc::SIGSYS, libc::SIG_DFL) };
    // Re-raised (system calls only: async-signal-safe, allowed by every filter): pending while
    // this handler runs, delivered when it returns, so the process dies by SIGSYS.
    crate::signal::raise(libc::SIGSYS);
}

fn install_sigsys_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is "no flags, empty mask"; the handler only formats into a stack
    // buffer, writes and re-raises (async-signal-safe).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        action.sa_flags = libc::SA_SIGINFO;
        if libc::sigaction(libc::SIGSYS, &raw const action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_every_kind_compiles_and_forbids_what_a_run_never_needs() {
        for kind in ThreadKind::ALL {
            assert!(Filter::new(kind, SeccompMode::On).unwrap().is_some());
            assert!(Filter::new(kind, SeccompMode::Log).unwrap().is_some());
            assert!(Filter::new(kind, SeccompMode::Off).unwrap().is_none());
            let allowed = allowed_calls(kind);
            assert!(allowed.contains(&libc::SYS_write), "{kind:?}: {allowed:?}");
            for forbidden in [
                libc::SYS_openat,
                libc::SYS_socket,
                libc::SYS_execve,
                libc::SYS_ptrace,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_mount,
                libc::SYS_setns,
                libc::SYS_kill,
                libc::SYS_prctl,
            ] {
                assert!(!allowed.contains(&forbidden), "{kind:?} allows {}", syscall_name(forbidden));
            }
        }
        // Every kind that runs a guest or its devices has its ioctls; the link watch and the
        // net ring have none.
        for kind in ThreadKind::ALL {
            assert_eq!(
                allowed_calls(kind).contains(&libc::SYS_ioctl),
                !matches!(kind, ThreadKind::LinkWatch | ThreadKind::HvtRing),
                "{kind:?}"
            );
        }
        // The net ring's thread does plain reads and writes only: no vectored or positioned I/O,
        // no epoll, no timers.
        let ring = allowed_calls(ThreadKind::HvtRing);
        for call in DEVICE_IO.iter().chain(&[libc::SYS_epoll_pwait, libc::SYS_timerfd_settime]) {
            assert!(!ring.contains(call), "the ring thread allows {}", syscall_name(*call));
        }
        let watch = allowed_calls(ThreadKind::LinkWatch);
        assert!(watch.contains(&libc::SYS_recvfrom) && !watch.contains(&libc::SYS_sendto) && !watch.contains(&libc::SYS_sendmsg));
        // Only vCPU threads run KVM; only the device thread sets a tap's offloads.
        #[cfg(target_env = "gnu")]
        assert_eq!((TCGETS, TCSETS, TUNSETOFFLOAD), (libc::TCGETS, libc::TCSETS, libc::TUNSETOFFLOAD));
        let tunsetoffload = TUNSETOFFLOAD;
        let kvm_run = ioctls::KVM_RUN();
        assert!(ioctl_requests(ThreadKind::Devices).contains(&tunsetoffload));
        assert!(!ioctl_requests(ThreadKind::Devices).contains(&kvm_run));
        for kind in [ThreadKind::HvtVcpu, ThreadKind::LinuxVcpu] {
            assert!(ioctl_requests(kind).contains(&kvm_run));
            assert!(!ioctl_requests(kind).contains(&tunsetoffload));
        }
        // A Linux-boot vCPU does no block or tap I/O: its queue notifications go to the device
        // thread, which has the calls.
        let linux_vcpu = allowed_calls(ThreadKind::LinuxVcpu);
        let devices = allowed_calls(ThreadKind::Devices);
        for call in DEVICE_IO.iter().chain(&[libc::SYS_fallocate]) {
            assert!(!linux_vcpu.contains(call), "the Linux-boot vCPU allows {}", syscall_name(*call));
            assert!(devices.contains(call), "the device thread lacks {}", syscall_name(*call));
        }
    }

    /// Set in the child process the next test starts (this test binary again).
    const CHILD_ENV: &str = "UNIK_SECCOMP_TEST_CHILD";

    /// In the child: installs the hvt vCPU filter in the mode `CHILD_ENV` names, then makes a call
    /// it forbids (`socket`) and exits 0 if that returned. In the parent: nothing.
    #[test]
    #[ignore = "run in a child process by test_a_call_outside_the_filter_kills_the_process_after_a_line_naming_it"]
    fn child_calls_socket_under_the_filter() {
        let Ok(mode) = std::env::var(CHILD_ENV) else { return };
        let filters = Filters::new(mode.parse().unwrap(), &[ThreadKind::HvtVcpu]).unwrap();
        filters.install(ThreadKind::HvtVcpu).unwrap();
        // SAFETY: socket(2) with constant arguments; the fd is closed if it is returned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        if fd >= 0 {
            // SAFETY: closing the socket just opened.
            unsafe { libc::close(fd) };
        }
    }

    fn child(mode: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::tests::child_calls_socket_under_the_filter",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap()
    }

    #[test]
    fn test_a_call_outside_the_filter_kills_the_process_after_a_line_naming_it() {
        use std::os::unix::process::ExitStatusExt;
        let out = child("on");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}: {stderr}", out.status);
        let want = format!(
            "unik: seccomp: the hvt vCPU thread made a system call its filter does not allow: socket ({})",
            libc::SYS_socket
        );
        assert!(stderr.contains(&want), "{stderr}");
        // In log mode the same call is let through.
        let out = child("log");
        assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn test_debug_rules_add_only_their_calls_to_vcpu_threads() {
        let keys = |kind, debug: &DebugRules| -> Vec<libc::c_long> { rules(kind, 1, debug).unwrap().into_keys().collect() };
        let debug = DebugRules {
            gdb_socket: Some(7),
            core_dir: Some(8),
        };
        for kind in ThreadKind::ALL {
            let plain = keys(kind, &DebugRules::default());
            assert_eq!(plain, allowed_calls(kind), "{kind:?}: no debug rules by default");
            let added: Vec<_> = keys(kind, &debug).into_iter().filter(|c| !plain.contains(c)).collect();
            let want: &[libc::c_long] = match kind {
                ThreadKind::HvtVcpu => &[libc::SYS_openat, libc::SYS_recvfrom],
                ThreadKind::LinuxVcpu => &[libc::SYS_openat, libc::SYS_recvfrom, libc::SYS_mincore],
                ThreadKind::Devices | ThreadKind::LinkWatch | ThreadKind::HvtRing => &[],
            };
            let mut want = want.to_vec();
            want.sort_unstable();
            let mut added = added;
            added.sort_unstable();
            assert_eq!(added, want, "{kind:?}");
            assert!(Filter::with_debug(kind, SeccompMode::On, &debug).unwrap().is_some());
        }
        // The gdb ioctls are the stub's only.
        assert!(!vcpu_ioctls().contains(&ioctls::KVM_SET_GUEST_DEBUG()));
        assert!(debug.ioctls().contains(&ioctls::KVM_SET_GUEST_DEBUG()));
    }

    #[test]
    fn test_modes_parse_and_print() {
        for mode in [SeccompMode::On, SeccompMode::Log, SeccompMode::Off] {
            assert_eq!(mode.to_string().parse::<SeccompMode>().unwrap(), mode);
        }
        assert_eq!("kill".parse::<SeccompMode>().unwrap_err(), "'kill': expected on, log or off");
    }

    #[test]
    fn test_syscall_names() {
        assert_eq!(syscall_name(libc::SYS_socket), "socket");
        assert_eq!(syscall_name(libc::SYS_openat), "openat");
        assert_eq!(syscall_name(100_000), "unnamed");
    }

    /// The allowlist of `kind` as docs/SECURITY.md shows it: names in alphabetical order.
    #[cfg(target_arch = "x86_64")]
    fn doc_line(kind: ThreadKind) -> String {
        let mut names: Vec<&str> = allowed_calls(kind).into_iter().map(syscall_name).collect();
        names.sort_unstable();
        format!("| {} | {} |", kind.name(), names.join(", "))
    }

    /// The table shows x86_64's calls (aarch64 has no `epoll_wait` or `nanosleep`).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn test_security_md_shows_the_filters_as_they_are() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SECURITY.md")).unwrap();
        let missing: Vec<String> = ThreadKind::ALL.map(doc_line).into_iter().filter(|l| !doc.contains(l)).collect();
        assert!(missing.is_empty(), "docs/SECURITY.md lacks these lines:\n{}", missing.join("\n"));
    }
}
