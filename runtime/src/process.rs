//! The monitor process as the runtime sees it: liveness by pid + start time, signals by pidfd.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::ContainerError;

/// The state letter (field 3) and start time (field 22) of a `/proc/<pid>/stat` line.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and parentheses,
/// so the fields after it are counted from the *last* `)`.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was the first token, so field 22 is the 19th after it.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn stat(pid: i32) -> Option<(char, u64)> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Whether `pid` is the process that was started at `start` and has not exited (zombies count
/// as exited).
pub fn is_alive(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(state, s)| s == start && state != 'Z' && state != 'X' && state != 'x')
}

/// Whether `pid` (started at `start`) is stopped by a signal (SIGSTOP: state `T`).
pub fn is_stopped(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(state, s)| s == start && state == 'T')
}

/// A pidfd for `pid`, checked against its start time so a recycled pid is never signalled.
pub fn pidfd(pid: i32, start: u64) -> Result<OwnedFd, ContainerError> {
    // SAFETY: pidfd_open(2) with no flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(ContainerError::io(format!("pidfd_open({pid})"))(std::io::Error::last_os_error()));
    }
    let fd = i32::try_from(fd).map_err(|_| ContainerError::io("pidfd_open")(std::io::Error::from_raw_os_error(libc::EBADF)))?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The pidfd pins the process; if the start time still matches now, it is the right one.
    if start_time(pid) != Some(start) {
        return Err(ContainerError::io(format!("process {pid}"))(std::io::Error::from_raw_os_error(
            libc::ESRCH,
        )));
    }
    Ok(fd)
}

/// Sends `signal` through a pidfd.
pub fn send_signal(fd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal(2) on a pidfd we own, with no siginfo and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses `KILL`, `SIGKILL`, `sigkill` or `9` (0 to 64; 0, as with runc, only checks that the
/// container's process exists).
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    if let Ok(n) = s.parse::<i32>() {
        return if (0..=64).contains(&n) {
            Ok(n)
        } else {
            Err(ContainerError::Signal(s.to_string()))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| ContainerError::Signal(s.to_string()))
}

/// The signals a foreground `run` passes on to the container, as runc does.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks the signals in [`FORWARDED`] (they stay pending for [`wait_child`]); returns their
/// set. Children start with an empty mask (std's spawn resets it, and the monitor clears it
/// again itself).
pub fn block_forwarded() -> libc::sigset_t {
    let set = vmm::signal::sigset(&FORWARDED);
    // `run` is single-threaded: the thread's mask is the process's.
    vmm::signal::set_thread_mask(libc::SIG_BLOCK, &set);
    set
}

/// Waits for the container's monitor (our child) to exit, passing the signals of `set` (blocked
/// by [`block_forwarded`]) that arrive meanwhile on to it; returns its exit status (a signal as
/// 128 + n).
pub fn wait_child(pid: i32, start: u64, set: &libc::sigset_t) -> Result<u8, ContainerError> {
    let child = pidfd(pid, start)?;
    // SAFETY: signalfd(2) for the blocked set, a new descriptor.
    let fd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(ContainerError::io("signalfd")(std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
    let signals = unsafe { OwnedFd::from_raw_fd(fd) };
    // Sleeps until the child exits or a signal comes (no polling: run returns as the guest ends).
    loop {
        let mut fds = [
            libc::pollfd {
                fd: child.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) on two valid pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ContainerError::io("waiting for the container")(err));
        }
        if fds[1].revents & libc::POLLIN != 0 {
            // SAFETY: signalfd_siginfo is plain data.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads whole records into `info`, of their size.
            while usize::try_from(unsafe { libc::read(signals.as_raw_fd(), (&raw mut info).cast(), size) }) == Ok(size) {
                let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                // SAFETY: signalling our own child, which is not reaped yet.
                unsafe { libc::kill(pid, signo) };
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            break;
        }
    }
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child, which has exited, with a valid status pointer.
    while unsafe { libc::waitpid(pid, &raw mut status, 0) } < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(ContainerError::io("waiting for the container")(err));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(u8::try_from(code & 0xff).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_signal() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(parse_signal("64").unwrap(), 64);
        // runc's liveness probe: no signal is sent, only whether the process exists is checked.
        assert_eq!(parse_signal("0").unwrap(), 0);
        for bad in ["65", "-1", "SIGNOPE", "", "TERMX"] {
            let err = parse_signal(bad).unwrap_err();
            assert!(err.to_string().contains("unknown signal"), "{err}");
        }
    }

    #[test]
    fn test_parse_stat_with_a_hostile_command_name() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        assert_eq!(parse_stat(&format!("77 (unik) {tail}")), Some(('S', 424_242)));
        assert_eq!(parse_stat(&format!("77 (a) (b c) d) {tail}")), Some(('S', 424_242)));
        assert_eq!(parse_stat(&format!("77 ()) {}", tail.replacen('S', "T", 1))), Some(('T', 424_242)));
        assert_eq!(parse_stat("77 (x) S 1 2"), None);
        assert_eq!(parse_stat("77 x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn test_stopped_processes() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).unwrap();
        let fd = pidfd(pid, start).unwrap();
        send_signal(&fd, libc::SIGSTOP).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !is_stopped(pid, start) {
            assert!(std::time::Instant::now() < deadline, "never stopped");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(is_alive(pid, start));
        send_signal(&fd, libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(!is_stopped(pid, start));
    }

    #[test]
    fn test_liveness_of_self_and_of_a_reaped_child() {
        let me = i32::try_from(std::process::id()).unwrap();
        let start = start_time(me).unwrap();
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1), "a different start time must read as another process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).unwrap_or(0);
        child.wait().unwrap();
        assert!(!is_alive(pid, start));
    }

    #[test]
    fn test_pidfd_signals_the_right_process() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).unwrap();
        // The start time does not match: another process that got the pid, as far as it knows.
        let err = pidfd(pid, start + 1).unwrap_err().to_string();
        assert!(err.starts_with(&format!("process {pid}: No such process")), "{err}");
        let fd = pidfd(pid, start).unwrap();
        send_signal(&fd, libc::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    }
}
