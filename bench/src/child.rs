//! A child process run to its end and measured: wall time from spawn, and from wait4(2) its CPU
//! time and peak RSS.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::Instant;

/// What one child that exited with 0 did.
#[derive(Debug)]
pub struct Finished {
    /// Its stdout and stderr (empty unless the command piped them).
    pub out: String,
    /// See `out`.
    pub err: String,
    /// Wall time from spawn to its exit, µs.
    pub wall_us: u64,
    /// ru_utime, µs.
    pub user_us: u64,
    /// ru_stime, µs.
    pub sys_us: u64,
    /// ru_maxrss, KiB.
    pub maxrss_kib: u64,
}

/// Spawns `cmd` (its stdio as the caller set it up), reads what it pipes, and reaps it with
/// wait4(2). A child that did not exit with 0 is an error naming the command, how it ended and
/// what it piped.
pub fn run(cmd: &mut Command) -> Result<Finished, String> {
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).map_err(|e| format!("read stdout: {e}"))?;
    }
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; the pointers are to live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    if rc != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = ExitStatus::from_raw(status);
    if !status.success() {
        return Err(format!("{cmd:?}: {status}\nstdout: {out}\nstderr: {err}"));
    }
    Ok(Finished {
        out,
        err,
        wall_us,
        user_us: tv_us(usage.ru_utime),
        sys_us: tv_us(usage.ru_stime),
        maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

fn tv_us(tv: libc::timeval) -> u64 {
    u64::try_from(tv.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(tv.tv_usec).unwrap_or(0)
}
