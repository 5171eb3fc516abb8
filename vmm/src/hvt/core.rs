//! WALLTIME, PUTS and HALT.

use std::io::Write;
use std::mem::offset_of;
use std::time::{SystemTime, UNIX_EPOCH};

use super::HvtError;
use super::abi::{HALT_COOKIE_MAX, HcHalt, HcPuts, HcWalltime};
use crate::memory::GuestRam;

/// Largest PUTS copied at once; longer strings are written in pieces.
const PUTS_CHUNK: usize = 64 * 1024;

pub(super) fn walltime(ram: &GuestRam, gpa: u64) -> Result<(), HvtError> {
    ram.check_writable(gpa, size_of::<HcWalltime>() as u64)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let nsecs = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    ram.write_obj(gpa + offset_of!(HcWalltime, nsecs) as u64, nsecs)?;
    Ok(())
}

pub(super) fn puts(ram: &GuestRam, gpa: u64, console: &mut dyn Write) -> Result<(), HvtError> {
    let arg: HcPuts = ram.read_obj(gpa)?;
    ram.check(arg.data, arg.len)?;
    let mut buf = vec![0u8; usize::try_from(arg.len).unwrap_or(PUTS_CHUNK).min(PUTS_CHUNK)];
    let mut done = 0u64;
    while done < arg.len {
        let n = usize::try_from(arg.len - done).map_or(buf.len(), |left| left.min(buf.len()));
        ram.read_slice(arg.data + done, &mut buf[..n])?;
        // The console may be a closed pipe; like solo5-hvt, a failed console write does not stop
        // the guest. The rest of the string is dropped too: after a write that a stop signal
        // interrupted, writing on would block again on the full pipe.
        if console.write_all(&buf[..n]).is_err() {
            return Ok(());
        }
        done += n as u64;
    }
    let _ = console.flush();
    Ok(())
}

/// Returns the guest's exit status; a non-zero cookie must point at 512 readable bytes.
pub(super) fn halt(ram: &GuestRam, gpa: u64) -> Result<i32, HvtError> {
    let arg: HcHalt = ram.read_obj(gpa)?;
    if arg.cookie != 0 {
        ram.check(arg.cookie, HALT_COOKIE_MAX)?;
    }
    Ok(arg.exit_status)
}
