//! The guest console's output: the monitor's stdout, written unbuffered, and given up when a
//! stop signal interrupts a write.
//!
//! A guest controls how much it prints; whoever reads the monitor's stdout controls how fast.
//! When the reader stalls, the pipe fills and the write blocks. The monitor's signal handlers
//! are installed without `SA_RESTART`, so a stop signal (or the kick that ends a vCPU thread)
//! makes that write return `EINTR`, or the bytes it wrote before the signal: [`ConsoleOut`]
//! then fails the write, and every later one while the machine stops, instead of retrying, so
//! the vCPU goes back to its loop, sees the signal and stops. `std::io::Stdout` would retry
//! `EINTR` inside its buffer and block again, for as long as the reader stalls.

use std::io::{self, Write};

/// Writes to file descriptor 1, one `write(2)` per call, as solo5-hvt's PUTS does.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleOut;

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A write that the signal cut short returned what it wrote; the next one would block
        // again on the same full pipe.
        if crate::signal::stopping() {
            return Err(stopping());
        }
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
        let n = unsafe { libc::write(libc::STDOUT_FILENO, buf.as_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                // Only the monitor's own handlers interrupt a write (stop signals, vCPU kicks),
                // and both mean the machine is stopping: give up rather than block again.
                if e.kind() == io::ErrorKind::Interrupted {
                    return Err(stopping());
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn stopping() -> io::Error {
    io::Error::other("console write given up: the guest is stopping")
}
