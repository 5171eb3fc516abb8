//! POLL: wait until a network device is readable or a timeout passes.

use std::mem::offset_of;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::timerfd::TimerFd;

use super::abi::HcPoll;
use super::devices::Devices;
use super::{HvtError, manifest::MFT_MAX_ENTRIES};
use crate::memory::GuestRam;

const TIMER: u64 = u64::MAX;
const STOP: u64 = u64::MAX - 1;

/// One epoll set: the timer, the stop fd and every attached network device (data = handle).
pub(super) struct PollSet {
    epoll: Epoll,
    timer: TimerFd,
}

impl PollSet {
    pub(super) fn new(devices: &Devices, stop: RawFd) -> std::io::Result<PollSet> {
        let epoll = Epoll::new()?;
        let timer = TimerFd::new()?;
        epoll.ctl(ControlOperation::Add, timer.as_raw_fd(), EpollEvent::new(EventSet::IN, TIMER))?;
        epoll.ctl(ControlOperation::Add, stop, EpollEvent::new(EventSet::IN, STOP))?;
        for (handle, fd) in devices.net_fds() {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, handle as u64))?;
        }
        Ok(PollSet { epoll, timer })
    }

    pub(super) fn poll(&mut self, ram: &GuestRam, gpa: u64) -> Result<(), HvtError> {
        ram.check_writable(gpa, size_of::<HcPoll>() as u64)?;
        let arg: HcPoll = ram.read_obj(gpa)?;
        // `| 1`: a zero timeout still arms the timer (it fires after 1 ns), so POLL never blocks
        // forever and a zero timeout never blocks at all.
        let io = |e: std::io::Error| HvtError::HostIo {
            what: "POLL".into(),
            source: e,
        };
        self.timer
            .reset(Duration::from_nanos(arg.timeout_nsecs | 1), None)
            .map_err(|e| io(e.into()))?;
        let mut events = [EpollEvent::default(); MFT_MAX_ENTRIES + 2];
        // Restarted on EINTR (SIGSTOP/SIGCONT of a paused container, say): the timer keeps its
        // deadline, and a stop signal makes the stop fd readable, so the retry returns at once.
        let n = loop {
            match self.epoll.wait(-1, &mut events) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            }
        };
        let mut ready_set = 0u64;
        let mut ready = 0i32;
        for ev in &events[..n] {
            let data = ev.data();
            if data < 64 {
                ready_set |= 1 << data;
                ready += 1;
            }
        }
        ram.write_obj(gpa + offset_of!(HcPoll, ready_set) as u64, ready_set)?;
        ram.write_obj(gpa + offset_of!(HcPoll, ret) as u64, ready)?;
        Ok(())
    }
}
