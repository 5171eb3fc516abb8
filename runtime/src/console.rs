//! Terminals: a pty whose slave becomes the monitor's stdio and whose master is sent to the
//! caller's `--console-socket` (SCM_RIGHTS), as runc does for `-t`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::ContainerError;

/// `sizeof(int)`, the payload of an SCM_RIGHTS message carrying one fd.
const FD_SIZE: u32 = 4;

/// A new pty: (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), ContainerError> {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; name, termios and winsize may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    if rc != 0 {
        return Err(ContainerError::io("openpty")(std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: F_SETFD on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((master, slave))
}

/// Sends `fd` over the unix socket at `socket`, with `name` as the message (runc's convention).
// msghdr and cmsghdr length fields are usize with glibc and u32 with musl: the conversions
// are needed for one of them.
#[allow(clippy::useless_conversion)]
pub fn send_fd(socket: &Path, name: &str, fd: &OwnedFd) -> Result<(), ContainerError> {
    let stream = UnixStream::connect(socket).map_err(ContainerError::io(format!("connecting to console socket {}", socket.display())))?;
    let mut payload = name.as_bytes().to_vec();
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(FD_SIZE) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // Its type differs between glibc and musl: converted, as it is small either way.
    msg.msg_controllen = space.try_into().unwrap_or_default();
    // SAFETY: `msg` has a control buffer of CMSG_SPACE(sizeof(int)) bytes, so the first header
    // exists and has room for one int of data.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(FD_SIZE).try_into().unwrap_or_default();
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd.as_raw_fd());
    }
    // SAFETY: sendmsg on a connected socket with the message built above.
    if unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, 0) } < 0 {
        return Err(ContainerError::io("sending the console fd")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS on `stream` (the other end of [`send_fd`]).
// msghdr and cmsghdr length fields are usize with glibc and u32 with musl: the conversions
// are needed for one of them.
#[allow(clippy::useless_conversion)]
pub fn recv_fd(stream: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u8; 64];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len().try_into().unwrap_or_default();
    // SAFETY: recvmsg on our socket into the buffers described by `msg`.
    if unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR returns null or a header inside `control`.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: a non-null header lies inside `control`; its level/type are checked before reading
    // the one int of data an SCM_RIGHTS message with one fd carries.
    unsafe {
        if cmsg.is_null() || (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no file descriptor in the message",
            ));
        }
        Ok(OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>())))
    }
}

/// The name of a pty slave (`/dev/pts/N`).
pub fn pty_name(slave: &OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn test_pty_master_travels_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (master, slave) = open_pty().unwrap();
        assert!(pty_name(&slave).starts_with("/dev/pts/"));
        send_fd(&path, &pty_name(&slave), &master).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let received = recv_fd(&stream).unwrap();
        std::fs::File::from(slave).write_all(b"hi\n").unwrap();
        // The line discipline may hand the echo over in pieces (a slow host shows it): read the
        // whole line.
        let mut received = std::fs::File::from(received);
        let mut got = Vec::new();
        while !got.ends_with(b"\n") && got.len() < 8 {
            let mut buf = [0u8; 8];
            let n = received.read(&mut buf).unwrap();
            assert_ne!(n, 0, "the pty closed after {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hi\r\n");
        let missing = dir.path().join("missing.sock");
        let err = send_fd(&missing, "x", &master).unwrap_err().to_string();
        let want = format!("connecting to console socket {}: No such file or directory", missing.display());
        assert!(err.starts_with(&want), "{err}");
    }
}
