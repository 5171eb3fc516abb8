//! Giving up what the monitor does not need once the guest's files are open: inherited file
//! descriptors, the file system, the caller's user, capabilities, the ability to gain privileges.
//!
//! [`close_inherited_fds`] runs first thing, before unik opens anything, and keeps only the
//! descriptors the caller names (stdio, the sync socket of the OCI monitor, taps passed as
//! `@FD`). [`Confinement::apply`] runs after the VM is built and the start gate has opened,
//! before the guest runs and while the process has one thread (capabilities and credentials are
//! per thread; the threads started later inherit them): for a container in a mount namespace of
//! its own, a pivot into an empty read-only root; the container's user; then no_new_privs, no
//! core dumps or ptrace by the same user, and every capability gone from all five sets.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of dropping privileges.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A system call failed.
    #[error("dropping privileges: {what}: {source}")]
    Call {
        /// The call.
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A path with a NUL byte.
    #[error("dropping privileges: {0}: a path with a NUL byte")]
    Path(PathBuf),
    /// Threads were already running (they would keep their capabilities).
    #[error("dropping privileges: the process has {0} threads; privileges must go before any thread starts")]
    Threads(usize),
}

fn call(what: &'static str, rc: libc::c_int) -> Result<libc::c_int, PrivilegeError> {
    if rc < 0 {
        return Err(PrivilegeError::Call {
            what,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(rc)
}

/// Closes every file descriptor above stderr that is not in `keep`. Call before the process opens
/// anything of its own: what is open then was inherited.
pub fn close_inherited_fds(keep: &[RawFd]) -> std::io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for &fd in keep.iter().chain(std::iter::once(&u32::MAX)) {
        if fd > first {
            close_range(first, fd - 1)?;
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

fn close_range(first: u32, last: u32) -> std::io::Result<()> {
    // SAFETY: close_range only closes descriptors; those in the range are not used by anything in
    // this process (the caller keeps what it needs).
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // Before Linux 5.9: close what /proc lists.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| u32::try_from(*fd).is_ok_and(|fd| (first..=last).contains(&fd)))
        .collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor is closed already (EBADF is fine).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The number of threads of this process.
fn threads() -> std::io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no Threads: line in /proc/self/status"))
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The user the guest runs as (the container's `process.user`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// What the process gives up before its guest runs.
#[derive(Clone, Debug, Default)]
pub struct Confinement {
    /// An empty directory to make the root: the process must be alone in its mount namespace.
    /// A read-only tmpfs is mounted there and becomes `/`; the old root is detached.
    pub empty_root: Option<PathBuf>,
    /// The user to become (after the files are open: /dev/kvm stays open).
    pub user: Option<User>,
}

impl Confinement {
    /// Pivots into the empty root; sets no_new_privs, makes the process non-dumpable (no core
    /// file of guest memory, no ptrace by the same user) and clears the ambient and bounding
    /// capability sets; becomes the user; empties the effective, permitted and inheritable sets.
    /// The process must have one thread. Without CAP_SETPCAP (an unprivileged caller) the
    /// bounding set stays as it is; no_new_privs already keeps it from ever mattering.
    pub fn apply(&self) -> Result<(), PrivilegeError> {
        single_threaded()?;
        if let Some(dir) = &self.empty_root {
            pivot_into_empty_root(dir)?;
        }
        restrict_process()?;
        if let Some(user) = &self.user {
            become_user(user)?;
        }
        empty_capability_sets()
    }
}

fn cstring(path: &Path) -> Result<CString, PrivilegeError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| PrivilegeError::Path(path.to_path_buf()))
}

fn pivot_into_empty_root(dir: &Path) -> Result<(), PrivilegeError> {
    let target = cstring(dir)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: mount(2), chdir(2), pivot_root(2), umount2(2) with NUL-terminated strings that live
    // across the calls; the caller's mount namespace is its own.
    unsafe {
        // Nothing we mount from here on reaches the namespace we were copied from.
        let none = std::ptr::null::<libc::c_char>();
        call(
            "making / a slave mount",
            libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()),
        )?;
        call(
            "mounting the empty root",
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                c"size=4k,nr_inodes=1,mode=0555".as_ptr().cast(),
            ),
        )?;
        call("entering the empty root", libc::chdir(target.as_ptr()))?;
        let rc = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
        call("pivot_root", if rc == 0 { 0 } else { -1 })?;
        call("detaching the old root", libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        call("entering /", libc::chdir(c"/".as_ptr()))?;
        call(
            "making the root read-only",
            libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                std::ptr::null(),
            ),
        )?;
    }
    Ok(())
}

fn become_user(user: &User) -> Result<(), PrivilegeError> {
    let groups: Vec<libc::gid_t> = user.additional_gids.clone();
    // SAFETY: setgroups reads `groups.len()` gids from a live vector; setresgid/setresuid take
    // integers. Groups first, then the gid, the uid last (it takes CAP_SETGID away).
    unsafe {
        call("setgroups", libc::setgroups(groups.len(), groups.as_ptr()))?;
        call("setresgid", libc::setresgid(user.gid, user.gid, user.gid))?;
        call("setresuid", libc::setresuid(user.uid, user.uid, user.uid))?;
    }
    Ok(())
}

fn single_threaded() -> Result<(), PrivilegeError> {
    let n = threads().map_err(|source| PrivilegeError::Call {
        what: "counting threads",
        source,
    })?;
    if n != 1 {
        return Err(PrivilegeError::Threads(n));
    }
    Ok(())
}

/// no_new_privs, not dumpable, the ambient and bounding sets cleared (while CAP_SETPCAP is still
/// effective: before a change of user).
fn restrict_process() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments only.
    call("PR_SET_NO_NEW_PRIVS", unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    // SAFETY: as above.
    call("PR_SET_DUMPABLE", unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })?;
    // SAFETY: as above.
    let ambient = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    if ambient < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        call("PR_CAP_AMBIENT_CLEAR_ALL", ambient)?;
    }
    // The bounding set: every capability the kernel knows (PR_CAPBSET_READ says EINVAL past it).
    for cap in 0..64 {
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } < 0 {
            break;
        }
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                log::debug!("the bounding set stays: no CAP_SETPCAP");
                break;
            }
            return Err(PrivilegeError::Call {
                what: "PR_CAPBSET_DROP",
                source: e,
            });
        }
    }
    Ok(())
}

/// Empties the effective, permitted and inheritable sets.
fn empty_capability_sets() -> Result<(), PrivilegeError> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads a version-3 header and two data words, both valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    call("capset", if rc == 0 { 0 } else { -1 })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process the next test starts (this test binary again).
    const CHILD_ENV: &str = "UNIK_PRIVILEGES_TEST_CHILD";

    /// In the child: opens fds 40 and 41, closes all but 41, drops privileges and prints what
    /// /proc says. Run by the test below.
    #[test]
    #[ignore = "run in a child process by test_privileges_and_inherited_fds_are_gone"]
    fn child_drops_everything() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        for fd in [40, 41] {
            // SAFETY: dup2 of stdin onto free descriptor numbers.
            assert_eq!(unsafe { libc::dup2(0, fd) }, fd);
        }
        close_inherited_fds(&[41, 1, 2]).unwrap();
        // SAFETY: fcntl only checks whether the descriptors are open.
        let open = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
        println!("fd40={} fd41={}", open(40), open(41));
        // The test harness runs this on a thread of its own: dropping here must refuse.
        println!("{}", Confinement::default().apply().unwrap_err());
    }

    #[test]
    fn test_close_inherited_fds_and_refusal_with_threads() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "privileges::tests::child_drops_everything",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("fd40=false fd41=true"), "{stdout}");
        assert!(stdout.contains("threads; privileges must go before any thread starts"), "{stdout}");
    }
}
