//! The gdb remote stub (`--gdb PORT`): gdbstub's protocol state machine driven by the vCPU
//! thread itself. The listening socket is bound to 127.0.0.1 when the VM is built; `run` waits
//! for gdb to connect before the guest's first instruction (the guest is stopped at its entry
//! point), then serves gdb while the guest is stopped and runs it in between.
//!
//! What works: registers (read all, write the general ones, the instruction pointer and the
//! flags), memory read/write by guest-virtual address (translated with the vCPU's page tables on
//! x86_64; hvt guests are identity-mapped), breakpoints, single step, continue, Ctrl-C, detach
//! and kill. Breakpoints are the CPU's debug registers (4 on x86_64, 2 used on aarch64), never
//! `int3`/`brk` written into guest memory: on this project's reference host (kvm_pvm) KVM does
//! not report a guest's `int3` as a debug exit, and an hvt guest's text is read-only on the
//! host. gdb sees them as software breakpoints; one more than the hardware holds is refused
//! ("Cannot insert breakpoint").
//!
//! Ctrl-C: the connection is in `O_ASYNC` mode, owned by the vCPU thread, so a byte from gdb
//! raises [`signal::DEBUGGER_SIGNAL`] there, whose handler sets `immediate_exit`: `KVM_RUN`
//! returns and the loop reads the byte.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::base::singlethread::{SingleThreadBase, SingleThreadResume, SingleThreadSingleStep};
use gdbstub::target::ext::breakpoints::{Breakpoints, HwBreakpoint, SwBreakpoint};
use gdbstub::target::{Target, TargetError, TargetResult};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::signal::{self, StopSignals};
use crate::vcpu::{self, Action, ExitFault, ExitStatus, Ran, VcpuError};

/// Errors of the gdb stub.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The port could not be bound.
    #[error("gdb: cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// What the host said.
        source: io::Error,
    },
    /// Waiting for gdb, or setting its connection up, failed.
    #[error("gdb: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// What the host said.
        source: io::Error,
    },
}

/// The stub's socket, listening on 127.0.0.1 from the build on.
#[derive(Debug)]
pub struct GdbListener {
    listener: TcpListener,
    port: u16,
}

impl GdbListener {
    /// Listens on 127.0.0.1:`port`.
    pub fn bind(port: u16) -> Result<GdbListener, GdbError> {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).map_err(|source| GdbError::Bind { port, source })?;
        Ok(GdbListener { listener, port })
    }

    /// Waits for gdb to connect, then closes the listening socket. `None`: a stop signal came
    /// first. The connection signals the calling thread (the vCPU's) when data arrives.
    pub fn accept(self, stop: &StopSignals) -> Result<Option<GdbConnection>, GdbError> {
        log::warn!(
            "waiting for gdb to connect on 127.0.0.1:{} (target remote :{})",
            self.port,
            self.port
        );
        let io_err = |what| move |source| GdbError::Io { what, source };
        let fd = loop {
            // SAFETY: accept4 on our listening socket, without asking for the peer's address.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                break unsafe { OwnedFd::from_raw_fd(fd) };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(io_err("accepting gdb's connection")(err));
            }
            if stop.received().is_some() {
                return Ok(None);
            }
        };
        log::info!("gdb connected");
        let conn = GdbConnection { fd, out: Vec::new() };
        conn.setup().map_err(io_err("setting up gdb's connection"))?;
        Ok(Some(conn))
    }
}

/// The connection to gdb: blocking reads and writes on the socket, a non-blocking peek.
#[derive(Debug)]
pub struct GdbConnection {
    fd: OwnedFd,
    /// A packet being written, sent on flush.
    out: Vec<u8>,
}

/// `struct f_owner_ex` (libc does not have it for every target).
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

impl GdbConnection {
    /// No Nagle delay; data in raises [`signal::DEBUGGER_SIGNAL`] on the calling thread.
    fn setup(&self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int of the given size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const one).cast(),
                libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4),
            )
        })?;
        signal::install_debugger_input_handler()?;
        // The owner is this thread (F_OWNER_TID), not the process: the signal must interrupt
        // this thread's KVM_RUN. With no F_SETSIG the signal is SIGIO.
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: signal::this_tid(),
        };
        // SAFETY: fcntl on our socket; F_SETOWN_EX reads a `struct f_owner_ex`.
        check(unsafe { libc::fcntl(fd, F_SETOWN_EX, &raw const owner) })?;
        // SAFETY: as above.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        check(flags)?;
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC) })
    }

    /// The socket (for the seccomp rule that lets the vCPU thread peek at it).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads one byte, waiting for it; `None` when a stop signal interrupts the wait.
    fn read_byte(&self, stop: &StopSignals) -> io::Result<Option<u8>> {
        let mut byte = 0u8;
        loop {
            // SAFETY: read(2) into a local byte.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut byte).cast(), 1) };
            match n {
                1 => return Ok(Some(byte)),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                    if stop.received().is_some() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Whether gdb sent something not read yet (or closed the connection).
    fn pending(&self) -> io::Result<bool> {
        let mut byte = 0u8;
        // SAFETY: recvfrom(2) of at most one byte into a local, without the sender's address.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
            _ => Err(err),
        }
    }
}

/// The `recvfrom` flags of [`GdbConnection::pending`] (for its seccomp rule).
pub const PEEK_FLAGS: libc::c_int = libc::MSG_PEEK | libc::MSG_DONTWAIT;

impl Connection for GdbConnection {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.out.len() {
            let rest = &self.out[done..];
            // SAFETY: write(2) from a live buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(n) => done += n,
                Err(_) => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        self.out.clear();
                        return Err(err);
                    }
                }
            }
        }
        self.out.clear();
        Ok(())
    }
}

/// What gdb may touch: the vCPU, guest memory (minus the host read-only ranges, for writes),
/// and the debug state it asked for.
struct DebugTarget<'a> {
    vcpu: &'a mut VcpuFd,
    mem: &'a GuestMemoryMmap,
    read_only: &'a [Range<u64>],
    breakpoints: Vec<u64>,
    single_step: bool,
}

/// A failure of the target (a KVM ioctl): fatal to the session.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TargetFailure(#[from] arch::ArchError);

impl Target for DebugTarget<'_> {
    type Arch = arch::debug::GdbArch;
    type Error = TargetFailure;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<gdbstub::target::ext::breakpoints::BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl DebugTarget<'_> {
    /// The guest-physical address of `gva`, and how many bytes from there lie in its page.
    fn translate(&self, gva: u64) -> Option<(u64, u64)> {
        let gpa = arch::debug::translate(self.vcpu, gva)?;
        Some((gpa, 4096 - (gva % 4096)))
    }

    /// Applies the breakpoints and the step mode to the vCPU.
    fn arm(&self) -> Result<(), TargetFailure> {
        Ok(arch::debug::set_guest_debug(self.vcpu, self.single_step, &self.breakpoints)?)
    }

    fn add_breakpoint(&mut self, addr: u64) -> bool {
        if self.breakpoints.contains(&addr) {
            return true;
        }
        if self.breakpoints.len() >= arch::debug::HW_BREAKPOINTS {
            log::warn!(
                "gdb: a breakpoint at {addr:#x} refused: the CPU holds {} at once",
                arch::debug::HW_BREAKPOINTS
            );
            return false;
        }
        self.breakpoints.push(addr);
        true
    }

    fn remove_breakpoint(&mut self, addr: u64) -> bool {
        let before = self.breakpoints.len();
        self.breakpoints.retain(|&b| b != addr);
        self.breakpoints.len() != before
    }
}

impl SingleThreadBase for DebugTarget<'_> {
    fn read_registers(&mut self, regs: &mut arch::debug::GdbRegs) -> TargetResult<(), Self> {
        *regs = arch::debug::read_gdb_regs(self.vcpu).map_err(|e| TargetError::Fatal(e.into()))?;
        Ok(())
    }

    fn write_registers(&mut self, regs: &arch::debug::GdbRegs) -> TargetResult<(), Self> {
        arch::debug::write_gdb_regs(self.vcpu, regs).map_err(|e| TargetError::Fatal(e.into()))
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let mut done = 0usize;
        while done < data.len() {
            let Some((gpa, in_page)) = self.translate(start.wrapping_add(done as u64)) else {
                break;
            };
            let n = usize::try_from(in_page).unwrap_or(usize::MAX).min(data.len() - done);
            if self.mem.read_slice(&mut data[done..done + n], GuestAddress(gpa)).is_err() {
                break;
            }
            done += n;
        }
        // Nothing readable at `start`: an error, as gdb expects.
        if done == 0 && !data.is_empty() {
            return Err(TargetError::Errno(libc::EFAULT.try_into().unwrap_or(14)));
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        let mut done = 0usize;
        while done < data.len() {
            let gva = start.wrapping_add(done as u64);
            let (gpa, in_page) = self.translate(gva).ok_or(TargetError::Errno(14))?;
            let n = usize::try_from(in_page).unwrap_or(usize::MAX).min(data.len() - done);
            let end = gpa.saturating_add(n as u64);
            // The guest's text and rodata are read-only on the host: writing there would fault
            // the monitor.
            if self.read_only.iter().any(|r| gpa < r.end && r.start < end) {
                return Err(TargetError::Errno(14));
            }
            self.mem
                .write_slice(&data[done..done + n], GuestAddress(gpa))
                .map_err(|_| TargetError::Errno(14))?;
            done += n;
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<gdbstub::target::ext::base::singlethread::SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for DebugTarget<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.single_step = false;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<gdbstub::target::ext::base::singlethread::SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for DebugTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.single_step = true;
        Ok(())
    }
}

impl Breakpoints for DebugTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<gdbstub::target::ext::breakpoints::SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<gdbstub::target::ext::breakpoints::HwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for DebugTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: <Self::Arch as gdbstub::arch::Arch>::BreakpointKind) -> TargetResult<bool, Self> {
        Ok(self.add_breakpoint(addr))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: <Self::Arch as gdbstub::arch::Arch>::BreakpointKind) -> TargetResult<bool, Self> {
        Ok(self.remove_breakpoint(addr))
    }
}

impl HwBreakpoint for DebugTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: <Self::Arch as gdbstub::arch::Arch>::BreakpointKind) -> TargetResult<bool, Self> {
        Ok(self.add_breakpoint(addr))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: <Self::Arch as gdbstub::arch::Arch>::BreakpointKind) -> TargetResult<bool, Self> {
        Ok(self.remove_breakpoint(addr))
    }
}

/// Guest memory as the stub sees it.
#[derive(Debug, Clone, Copy)]
pub struct GuestView<'a> {
    /// All guest RAM.
    pub mem: &'a GuestMemoryMmap,
    /// Ranges the host maps read-only (gdb may not write there).
    pub read_only: &'a [Range<u64>],
}

/// How a debugged run ended: the guest's status, or a fault that ended it.
type RunResult = Result<ExitStatus, VcpuError>;

/// The stop reason gdb is told when the run ends with `status`.
fn final_stop(result: &RunResult) -> SingleThreadStopReason<u64> {
    match result {
        Ok(ExitStatus::Halt(_) | ExitStatus::Reset) => SingleThreadStopReason::Exited(result.as_ref().map_or(0, |s| s.code())),
        Ok(ExitStatus::Signal(_) | ExitStatus::TimedOut) => SingleThreadStopReason::Terminated(Signal::SIGTERM),
        Err(_) => SingleThreadStopReason::Terminated(Signal::SIGSEGV),
    }
}

/// Runs the guest under gdb's control until it ends: `handle` dispatches its exits as without
/// a debugger. When gdb detaches or its connection fails the guest runs on without it; when gdb
/// kills it the run ends as if by SIGKILL.
pub fn run(
    conn: GdbConnection,
    vcpu: &mut VcpuFd,
    view: GuestView<'_>,
    stop: &StopSignals,
    handle: impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>,
) -> RunResult {
    let flag = std::ptr::from_mut(&mut vcpu.get_kvm_run().immediate_exit);
    // SAFETY: `flag` points into the kvm_run mapping owned by `vcpu`, which outlives this
    // function; `disarm_vcpu` runs before we return. A stop signal or gdb's Ctrl-C that lands
    // just before KVM_RUN then still makes it return at once.
    unsafe { stop.arm_vcpu(flag) };
    let result = serve(conn, vcpu, view, stop, handle);
    stop.disarm_vcpu();
    result
}

fn serve(
    conn: GdbConnection,
    vcpu: &mut VcpuFd,
    view: GuestView<'_>,
    stop: &StopSignals,
    mut handle: impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>,
) -> RunResult {
    let mut target = DebugTarget {
        vcpu,
        mem: view.mem,
        read_only: view.read_only,
        breakpoints: Vec::new(),
        single_step: false,
    };
    let lost = |e: &dyn std::fmt::Display| log::warn!("gdb: {e}; the guest runs on without the debugger");
    let mut machine = match GdbStub::new(conn).run_state_machine(&mut target) {
        Ok(m) => m,
        Err(e) => {
            lost(&e);
            return run_free(target.vcpu, stop, handle);
        }
    };
    // A fault seen while gdb was attached: reported as SIGSEGV, and the run's end on the next
    // resume.
    let mut fault: Option<VcpuError> = None;
    loop {
        let step = match machine {
            GdbStubStateMachine::Idle(mut gdb) => match gdb.borrow_conn().read_byte(stop) {
                Ok(Some(byte)) => gdb.incoming_data(&mut target, byte),
                Ok(None) => return Ok(stop_now(stop)),
                Err(e) => {
                    lost(&e);
                    break;
                }
            },
            GdbStubStateMachine::Disconnected(gdb) => match gdb.get_reason() {
                DisconnectReason::Kill => return Ok(ExitStatus::Signal(libc::SIGKILL)),
                DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_) => {
                    unreachable_end();
                    return fault.map_or(Ok(ExitStatus::Signal(libc::SIGKILL)), Err);
                }
                DisconnectReason::Disconnect => {
                    log::info!("gdb detached; the guest runs on");
                    break;
                }
            },
            GdbStubStateMachine::CtrlCInterrupt(gdb) => {
                gdb.interrupt_handled(&mut target, Some(SingleThreadStopReason::<u64>::Signal(Signal::SIGINT)))
            }
            GdbStubStateMachine::Running(mut gdb) => {
                if let Some(err) = fault.take() {
                    let result = Err(err);
                    let _ = gdb.report_stop(&mut target, final_stop(&result));
                    return result;
                }
                signal::take_debugger_input();
                match gdb.borrow_conn().pending() {
                    Ok(true) => match gdb.borrow_conn().read_byte(stop) {
                        Ok(Some(byte)) => {
                            machine = match gdb.incoming_data(&mut target, byte) {
                                Ok(m) => m,
                                Err(e) => {
                                    lost(&e);
                                    break;
                                }
                            };
                            continue;
                        }
                        Ok(None) => return Ok(stop_now(stop)),
                        Err(e) => {
                            lost(&e);
                            break;
                        }
                    },
                    Ok(false) => {}
                    Err(e) => {
                        lost(&e);
                        break;
                    }
                }
                if let Some(signum) = stop.received() {
                    let result = Ok(vcpu::stop_status(signum));
                    let _ = gdb.report_stop(&mut target, final_stop(&result));
                    return result;
                }
                if let Err(e) = target.arm() {
                    lost(&e);
                    break;
                }
                match vcpu::run_once(target.vcpu, &mut handle) {
                    Ok(Ran::Action(Action::Continue) | Ran::Interrupted) => Ok(GdbStubStateMachine::Running(gdb)),
                    Ok(Ran::Action(Action::Stop(status))) => {
                        let result = Ok(status);
                        let _ = gdb.report_stop(&mut target, final_stop(&result));
                        return result;
                    }
                    Ok(Ran::Debug(exit)) => {
                        let reason = match arch::debug::debug_event(&exit) {
                            arch::debug::DebugEvent::Step if target.single_step => SingleThreadStopReason::DoneStep,
                            arch::debug::DebugEvent::Breakpoint | arch::debug::DebugEvent::Step => SingleThreadStopReason::SwBreak(()),
                            arch::debug::DebugEvent::Other => SingleThreadStopReason::Signal(Signal::SIGTRAP),
                        };
                        gdb.report_stop(&mut target, reason)
                    }
                    Err(err) => {
                        // Stopped at the fault: gdb shows where; resuming ends the run.
                        log::warn!("gdb: the guest faulted ({err}); stopped for the debugger");
                        fault = Some(err);
                        gdb.report_stop(&mut target, SingleThreadStopReason::Signal(Signal::SIGSEGV))
                    }
                }
            }
        };
        machine = match step {
            Ok(m) => m,
            Err(e) => {
                lost(&e);
                break;
            }
        };
    }
    if let Some(err) = fault {
        return Err(err);
    }
    run_free(target.vcpu, stop, handle)
}

/// gdbstub reports an exit only through `report_stop`, after which this loop has returned.
fn unreachable_end() {
    log::debug!("gdb: session ended after the guest's end");
}

/// The status of a run a stop signal ended.
fn stop_now(stop: &StopSignals) -> ExitStatus {
    stop.received().map_or(ExitStatus::Signal(libc::SIGINT), vcpu::stop_status)
}

/// Runs on without a debugger: guest debug off, the ordinary loop.
fn run_free(vcpu: &mut VcpuFd, stop: &StopSignals, handle: impl FnMut(VcpuExit<'_>) -> Result<Action, ExitFault>) -> RunResult {
    if let Err(e) = arch::debug::set_guest_debug(vcpu, false, &[]) {
        log::warn!("gdb: {e}");
    }
    vcpu::run_loop(vcpu, &|| stop.received(), &|| false, handle)
}
