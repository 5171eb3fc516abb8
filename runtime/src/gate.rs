//! The monitor's side of the start gate (`exec.fifo`; `start`'s side is in
//! [`crate::container`]): wait until a `start` has recorded the container as running.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Blocks until `start` releases the monitor: it opens the fifo at `fifo` for reading (which
/// blocks until a `start` opens it for writing) and goes on when a byte arrives, or at end of file
/// once the fifo is gone (`start` unlinks it to record the start, then writes). End of file with
/// the fifo still there is a `start` that died before recording anything: the container is still
/// `created`, so wait for the next one.
pub fn wait_for_start(fifo: &Path) -> io::Result<()> {
    loop {
        let mut gate = File::open(fifo)?;
        let mut byte = [0u8; 1];
        let got = loop {
            match gate.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if got == 1 || !fifo.exists() {
            return Ok(());
        }
        log::debug!("a start ended before recording it; waiting for the next one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    fn writer(fifo: &Path) -> File {
        // Like `start`: non-blocking, so it fails instead of hanging while nobody reads.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo) {
                Ok(f) => return f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => panic!("opening the gate: {e}"),
            }
        }
    }

    #[test]
    fn test_a_start_that_dies_before_recording_does_not_release_the_monitor() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exec.fifo");
        crate::bundle::tests::mkfifo(&fifo);
        let waiter = {
            let fifo = fifo.clone();
            std::thread::spawn(move || wait_for_start(&fifo))
        };
        // A `start` that opened the gate and died: closed without a byte, fifo still there.
        drop(writer(&fifo));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished(), "released by a start that recorded nothing");
        // One that unlinked it (recorded the start) and died before writing: released.
        let w = writer(&fifo);
        std::fs::remove_file(&fifo).unwrap();
        drop(w);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn test_a_byte_releases_the_monitor() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exec.fifo");
        crate::bundle::tests::mkfifo(&fifo);
        let waiter = {
            let fifo = fifo.clone();
            std::thread::spawn(move || wait_for_start(&fifo))
        };
        writer(&fifo).write_all(&[0]).unwrap();
        waiter.join().unwrap().unwrap();
    }
}
