//! Process-wide signal state: SIGINT/SIGTERM (and SIGALRM, the `--timeout` timer) stop the guest
//! cleanly, wherever the vCPU thread is; a kick (the first real-time signal, whose handler does nothing) makes another vCPU thread
//! leave `KVM_RUN`.
//!
//! The handler only does async-signal-safe work: it records the signal number, writes an eventfd
//! (which sits in the hvt POLL epoll set, so a sleeping POLL returns) and sets `immediate_exit` in
//! the vCPU's `kvm_run` page (so a signal that lands just before `KVM_RUN` still makes it return
//! `EINTR` at once). The vCPU loop then sees [`StopSignals::received`] and stops.
//!
//! Signal dispositions are process-wide, so this is the one piece of global state in the
//! monitor; only [`crate::Vm::run`] installs it.

use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

use vmm_sys_util::eventfd::{EFD_CLOEXEC, EFD_NONBLOCK, EventFd};

static RECEIVED: AtomicI32 = AtomicI32::new(0);
static EVENT_FD: AtomicI32 = AtomicI32::new(-1);
static IMMEDIATE_EXIT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
/// A time limit's timer was started (so a SIGALRM is it running out).
static TIMER_ARMED: AtomicBool = AtomicBool::new(false);
/// The machine is ending (a vCPU ended it and kicks the others); a stop signal also means so.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether the machine is stopping: a stop signal arrived, or a vCPU ended the machine
/// ([`set_stopping`]). Blocking work on a vCPU thread (a console write to a full pipe) gives up
/// once this is true.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst) || RECEIVED.load(Ordering::SeqCst) != 0
}

/// Whether stop signal `signum` is the run's time limit running out (a SIGALRM from the timer
/// [`StopSignals::install`] started), rather than a signal someone sent.
pub fn is_time_limit(signum: libc::c_int) -> bool {
    signum == libc::SIGALRM && TIMER_ARMED.load(Ordering::SeqCst)
}

/// Records that the machine is stopping, before the other vCPU threads are kicked.
pub fn set_stopping() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// The signals that stop a running guest: SIGALRM is the run's time limit running out.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGALRM];

/// Runs `f`, which starts threads, with the stop signals blocked in the calling thread, so the
/// threads it starts have them blocked too: a stop signal then always reaches the thread that
/// runs the boot vCPU (whose `KVM_RUN` it interrupts), never a helper thread, where it would only
/// be noticed at the boot vCPU's next exit — never, for a guest halted with interrupts off.
/// A stop signal arriving meanwhile stays pending until `f` returns.
pub fn with_stop_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    let old = set_thread_mask(libc::SIG_BLOCK, &sigset(&STOP_SIGNALS));
    let result = f();
    set_thread_mask(libc::SIG_SETMASK, &old);
    result
}

/// The signal set holding `signals`.
pub fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid sigset pointer.
    unsafe {
        libc::sigemptyset(&raw mut set);
        for &signum in signals {
            libc::sigaddset(&raw mut set, signum);
        }
    }
    set
}

/// Changes the calling thread's signal mask by `set` (`how`: `SIG_BLOCK`, `SIG_UNBLOCK` or
/// `SIG_SETMASK`); returns the mask it had.
pub fn set_thread_mask(how: libc::c_int, set: &libc::sigset_t) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; pthread_sigmask fills it.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers; affects only the calling thread.
    unsafe { libc::pthread_sigmask(how, set, &raw mut old) };
    old
}

/// The signal that interrupts a vCPU thread's `KVM_RUN` (its handler does nothing).
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the (empty) handler of the kick signal, without `SA_RESTART`: a kicked `KVM_RUN`
/// returns `EINTR`.
pub fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is "no flags, empty mask"; the handler does nothing.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
        if libc::sigaction(kick_signal(), &raw const action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `signum` to thread `tid` of this process with `tgkill`, the one signal call the seccomp
/// filters allow (checked on the pid): musl's `raise` and `pthread_kill` use `tkill`, which
/// would let a thread signal any thread on the host.
pub fn signal_thread(tid: libc::pid_t, signum: libc::c_int) {
    // SAFETY: tgkill only sends a signal; getpid has no preconditions.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signum) };
}

/// The calling thread's id.
pub fn this_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    libc::pid_t::try_from(unsafe { libc::syscall(libc::SYS_gettid) }).unwrap_or(0)
}

/// Raises `signum` in the calling thread, as `raise(3)` does, with `tgkill` (see
/// [`signal_thread`]).
pub fn raise(signum: libc::c_int) {
    signal_thread(this_tid(), signum);
}

/// How to make one vCPU thread leave `KVM_RUN`: its thread and its `immediate_exit` byte.
#[derive(Debug, Clone, Copy)]
pub struct Kick {
    tid: libc::pid_t,
    immediate_exit: std::ptr::NonNull<u8>,
}

// SAFETY: a Kick is only a thread id and the address of a byte that `kick`'s contract keeps
// valid; it is written with a volatile store, as the vCPU's own thread does.
unsafe impl Send for Kick {}
// SAFETY: as above; `kick` takes `&self` and mutates nothing in it.
unsafe impl Sync for Kick {}

impl Kick {
    /// The kick of the calling thread, which runs the vCPU whose `immediate_exit` byte is
    /// `immediate_exit` (in its `kvm_run` page).
    pub fn this_thread(immediate_exit: &mut u8) -> Kick {
        Kick {
            tid: this_tid(),
            immediate_exit: std::ptr::NonNull::from(immediate_exit),
        }
    }

    /// Sets the thread's `immediate_exit` (in case it is about to enter `KVM_RUN`) and
    /// interrupts the ioctl (in case it is in it). [`install_kick_handler`] must have run.
    ///
    /// # Safety
    /// The `immediate_exit` byte must still be mapped (its `VcpuFd` alive) and the thread not
    /// yet joined.
    pub unsafe fn kick(&self) {
        // A thread blocked writing the console gives up on the kick's EINTR.
        set_stopping();
        // SAFETY: the caller guarantees the byte is mapped and the thread id still valid; the
        // signal's handler does nothing.
        unsafe { std::ptr::write_volatile(self.immediate_exit.as_ptr(), 1) };
        signal_thread(self.tid, kick_signal());
    }
}

/// Data arrived from an attached debugger (gdb's Ctrl-C) since [`take_debugger_input`].
static DEBUGGER_INPUT: AtomicBool = AtomicBool::new(false);

/// The signal the debugger's socket raises on the vCPU thread when data arrives (`O_ASYNC`).
pub const DEBUGGER_SIGNAL: libc::c_int = libc::SIGIO;

extern "C" fn on_debugger_input(_: libc::c_int) {
    DEBUGGER_INPUT.store(true, Ordering::SeqCst);
    let flag = IMMEDIATE_EXIT.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: as in `on_stop_signal`: the byte of a live kvm_run mapping, armed by
        // `arm_vcpu` and cleared by `disarm_vcpu` before it goes away.
        unsafe { ptr::write_volatile(flag, 1) };
    }
}

/// Installs the handler of [`DEBUGGER_SIGNAL`]: it records that the debugger sent something
/// and makes the armed vCPU leave `KVM_RUN`. With `SA_RESTART`: a blocking read of the
/// debugger's packets goes on.
pub fn install_debugger_input_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is "no flags, empty mask"; the handler only stores to atomics
    // and a volatile byte.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_debugger_input as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        if libc::sigaction(DEBUGGER_SIGNAL, &raw const action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the debugger sent data since the last call (and forgets it).
pub fn take_debugger_input() -> bool {
    DEBUGGER_INPUT.swap(false, Ordering::SeqCst)
}

/// The eventfd a stop signal writes, and the handler installation.
#[derive(Debug)]
pub struct StopSignals {
    event: EventFd,
    timeout: Option<std::time::Duration>,
}

extern "C" fn on_stop_signal(signum: libc::c_int) {
    RECEIVED.store(signum, Ordering::SeqCst);
    let flag = IMMEDIATE_EXIT.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: the pointer is set by `arm_vcpu` to the `immediate_exit` byte of a live kvm_run
        // mapping and cleared by `disarm_vcpu` before that mapping goes away.
        unsafe { ptr::write_volatile(flag, 1) };
    }
    let fd = EVENT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local u64. The result is ignored:
        // a full counter already means "readable".
        unsafe { libc::write(fd, ptr::from_ref(&one).cast(), size_of::<u64>()) };
    }
}

impl StopSignals {
    /// Creates the eventfd (no handler is installed yet); `timeout` is how long the run may last
    /// (the timer starts when the handlers are installed).
    pub fn new(timeout: Option<std::time::Duration>) -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            event: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            timeout,
        })
    }

    /// The eventfd that becomes readable when a stop signal arrives.
    pub fn fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Another descriptor on that eventfd, for a thread that ends the run itself (the hvt net
    /// ring's, on a broken ring): writing it ends a POLL in progress.
    pub fn event(&self) -> std::io::Result<EventFd> {
        self.event.try_clone()
    }

    /// Installs the SIGINT/SIGTERM/SIGALRM handler for this process, then starts the time limit's
    /// timer (SIGALRM when it runs out), if there is one.
    pub fn install(&self) -> std::io::Result<()> {
        EVENT_FD.store(self.event.as_raw_fd(), Ordering::SeqCst);
        for signum in STOP_SIGNALS {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            // No SA_RESTART: blocking calls in the vCPU thread must return EINTR.
            action.sa_flags = 0;
            // SAFETY: the handler only performs async-signal-safe operations (atomics, write(2),
            // a volatile byte store); `action` is fully initialised.
            if unsafe { libc::sigaction(signum, &action, ptr::null_mut()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(limit) = self.timeout {
            // A zero interval would disarm the timer: the shortest limit is a microsecond.
            let value = libc::timeval {
                tv_sec: limit.as_secs().try_into().unwrap_or(i64::MAX),
                tv_usec: limit.subsec_micros().max(u32::from(limit.is_zero())).into(),
            };
            let timer = libc::itimerval {
                it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
                it_value: value,
            };
            TIMER_ARMED.store(true, Ordering::SeqCst);
            // SAFETY: setitimer reads `timer` and writes nothing (no old value asked for).
            if unsafe { libc::setitimer(libc::ITIMER_REAL, &raw const timer, ptr::null_mut()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The stop signal received so far, if any.
    pub fn received(&self) -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// Lets the handler set `*immediate_exit` so a signal racing with `KVM_RUN` is not lost.
    ///
    /// # Safety
    /// `flag` must stay valid for writes until [`disarm_vcpu`](Self::disarm_vcpu) is called.
    pub unsafe fn arm_vcpu(&self, flag: *mut u8) {
        IMMEDIATE_EXIT.store(flag, Ordering::SeqCst);
        if self.received().is_some() {
            // SAFETY: the caller guarantees `flag` is valid for writes.
            unsafe { ptr::write_volatile(flag, 1) };
        }
    }

    /// Forgets the `immediate_exit` pointer (before the vCPU is dropped).
    pub fn disarm_vcpu(&self) {
        IMMEDIATE_EXIT.store(ptr::null_mut(), Ordering::SeqCst);
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        self.disarm_vcpu();
        let _ = EVENT_FD.compare_exchange(self.event.as_raw_fd(), -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's blocked-signal mask, from /proc.
    fn blocked() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let hex = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap()
    }

    #[test]
    fn test_a_kick_sets_the_flag_and_interrupts_a_blocking_call() {
        install_kick_handler().unwrap();
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into `fds`.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut flag = 0u8;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let flag = &mut flag;
            let reader = s.spawn(move || {
                let _ = tx.send(Kick::this_thread(flag));
                let mut byte = 0u8;
                // SAFETY: a read into a local byte; nobody ever writes the pipe.
                let n = unsafe { libc::read(fds[0], (&raw mut byte).cast(), 1) };
                (n, std::io::Error::last_os_error().raw_os_error())
            });
            let kick = rx.recv().unwrap();
            // Until the kick lands in the read, kick again (the thread may not be blocked yet).
            while !reader.is_finished() {
                // SAFETY: `flag` outlives the scope and the thread is not joined yet.
                unsafe { kick.kick() };
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(reader.join().unwrap(), (-1, Some(libc::EINTR)));
        });
        assert_eq!(flag, 1);
        for fd in fds {
            // SAFETY: closing the pipe's descriptors.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn test_threads_started_meanwhile_leave_stop_signals_to_the_caller() {
        let bit = |signum: libc::c_int| 1u64 << (signum - 1);
        let stop = bit(libc::SIGINT) | bit(libc::SIGTERM);
        let before = blocked();
        let child = with_stop_signals_blocked(|| std::thread::spawn(blocked)).join().unwrap();
        assert_eq!(child & stop, stop, "the new thread has SIGINT and SIGTERM blocked");
        assert_eq!(blocked(), before, "the caller's mask is restored");
    }
}
