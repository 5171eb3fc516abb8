//! The console terminal: while a guest reads the serial port from a terminal on stdin, input is
//! passed on as typed (no line editing, no local echo: the guest echoes), and the terminal's
//! settings are restored afterwards. Signal keys stay with the terminal, so Ctrl-C stops the VM
//! as it stops solo5-hvt.

use std::io;
use std::os::fd::RawFd;

/// Non-canonical, no-echo mode on a terminal; the saved settings come back on drop.
#[derive(Debug)]
pub struct RawInput {
    fd: RawFd,
    saved: libc::termios,
}

impl RawInput {
    /// Switches `fd` to character-at-a-time input without echo; `None` when `fd` is not a
    /// terminal.
    pub fn enable(fd: RawFd) -> io::Result<Option<RawInput>> {
        // SAFETY: isatty only inspects `fd`.
        if unsafe { libc::isatty(fd) } != 1 {
            return Ok(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to write.
        if unsafe { libc::tcgetattr(fd, &raw mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ECHONL | libc::IEXTEN);
        // Carriage return and flow-control keys reach the guest as typed, as on a serial line.
        raw.c_iflag &= !(libc::ICRNL | libc::INLCR | libc::IGNCR | libc::IXON);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(RawInput { fd, saved }))
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same fd.
        if unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &raw const self.saved) } != 0 {
            log::warn!("restoring the terminal settings: {}", io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openpty() -> (RawFd, RawFd) {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two fds; name, termios and winsize may be null.
        let rc = unsafe {
            libc::openpty(
                &raw mut master,
                &raw mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
        (master, slave)
    }

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::tcgetattr(fd, &raw mut t) }, 0);
        t.c_lflag
    }

    #[test]
    fn test_raw_input_is_set_and_restored() {
        let (master, slave) = openpty();
        let before = lflag(slave);
        assert_ne!(before & libc::ICANON, 0);
        let guard = RawInput::enable(slave).unwrap().expect("a pty is a terminal");
        let during = lflag(slave);
        assert_eq!(during & (libc::ICANON | libc::ECHO), 0);
        assert_ne!(during & libc::ISIG, 0, "Ctrl-C still stops the monitor");
        drop(guard);
        assert_eq!(lflag(slave), before);
        // SAFETY: closing the fds opened above.
        unsafe {
            libc::close(master);
            libc::close(slave);
        }
    }

    #[test]
    fn test_not_a_terminal_is_left_alone() {
        let file = tempfile::tempfile().unwrap();
        assert!(RawInput::enable(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap().is_none());
    }
}
