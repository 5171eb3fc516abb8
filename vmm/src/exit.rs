//! How a guest run goes on or ends: what every exit handler (hypercalls, devices) answers the
//! vCPU loop, and the status a run ends with.

/// How a guest run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest called HALT with this status (255 = abort).
    Halt(i32),
    /// A stop signal (SIGINT/SIGTERM) ended the run.
    Signal(i32),
    /// The run's time limit ([`crate::VmConfig::timeout`]) ran out.
    TimedOut,
    /// A Linux-boot-protocol guest reset the machine (i8042 pulse or a KVM reset event); the VM
    /// stops, as a microVM's does.
    Reset,
}

impl ExitStatus {
    /// The process exit code: the guest's status for HALT (low 8 bits), 1 for a signal stop
    /// (solo5-hvt's "Exiting on signal"), 124 for a time limit (as timeout(1)).
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Halt(status) => status.to_le_bytes()[0],
            ExitStatus::Signal(_) => 1,
            ExitStatus::TimedOut => 124,
            ExitStatus::Reset => 0,
        }
    }
}

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-enter the guest.
    Continue,
    /// Stop the guest with this status.
    Stop(ExitStatus),
}
