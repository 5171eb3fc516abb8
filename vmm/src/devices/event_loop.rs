//! The device thread: an event-manager loop over the virtio devices' queue eventfds (KVM's
//! ioeventfds, also written by a transport that a notification reached), their activation
//! eventfds, their backend fds (taps) and, when the console is a terminal, stdin for the serial
//! port. From activation to reset a virtio device's queues are served here and only here.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::bus::lock;
use super::legacy::Uart;
pub use super::virtio::handler::VirtioEvents;
use crate::error::Error;
use crate::host::terminal::RawInput;
use crate::seccomp::{Filters, ThreadKind};

/// Guest console input from the terminal.
struct Stdin(Arc<Mutex<Uart>>);

impl MutEventSubscriber for Stdin {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(libc::STDIN_FILENO, EventSet::IN)) {
            log::debug!("event loop: stdin: {e:?}");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a local buffer of the given length.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) | Err(_) => {
                // EOF or error: stop watching.
                let _ = ops.remove(events);
            }
            Ok(n) => {
                let taken = lock(&self.0).input(&buf[..n]);
                if taken < n {
                    log::debug!("serial: receive FIFO full, {} input bytes dropped", n - taken);
                }
            }
        }
    }
}

/// Ends the loop.
struct Stop(EventFd, Arc<AtomicBool>);

impl MutEventSubscriber for Stop {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.0, EventSet::IN));
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.read();
        self.1.store(true, Ordering::SeqCst);
    }
}

/// The device thread: built with the VM, started when the guest runs.
pub struct EventLoop {
    stop: EventFd,
    /// The loop, until [`start`](Self::start) hands it to its thread.
    manager: Option<EventManager<Box<dyn MutEventSubscriber + Send>>>,
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The terminal's input mode while stdin feeds the serial port (restored after the thread
    /// has stopped: fields drop after `drop`).
    _terminal: Option<RawInput>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("started", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Prepares the loop serving `devices`, and stdin for `uart` when stdin is a terminal
    /// (switched to character-at-a-time input without echo until the loop is dropped). No thread
    /// runs until [`start`](Self::start).
    pub fn new(devices: Vec<VirtioEvents>, uart: Option<Arc<Mutex<Uart>>>) -> std::io::Result<EventLoop> {
        let mut manager: EventManager<Box<dyn MutEventSubscriber + Send>> =
            EventManager::new().map_err(|e| std::io::Error::other(format!("event manager: {e:?}")))?;
        for d in devices {
            manager.add_subscriber(Box::new(d));
        }
        let mut terminal = None;
        if let Some(uart) = uart {
            // SAFETY: isatty only inspects fd 0.
            if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
                // Without the mode change input still arrives, a line at a time and echoed.
                terminal = RawInput::enable(libc::STDIN_FILENO).unwrap_or_else(|e| {
                    log::warn!("console: setting the terminal's input mode: {e}");
                    None
                });
                manager.add_subscriber(Box::new(Stdin(uart)));
            }
        }
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stopped = Arc::new(AtomicBool::new(false));
        manager.add_subscriber(Box::new(Stop(stop.try_clone()?, stopped.clone())));
        Ok(EventLoop {
            stop,
            manager: Some(manager),
            stopped,
            thread: None,
            _terminal: terminal,
        })
    }

    /// Starts the device thread. Its first act is to install `filters`' device-thread filter;
    /// returns once that is done (or failed), so no device work happens unconfined.
    pub fn start(&mut self, filters: &Filters) -> Result<(), Error> {
        let Some(mut manager) = self.manager.take() else { return Ok(()) };
        let stopped = self.stopped.clone();
        let filters = filters.clone();
        let (confined_tx, confined_rx) = std::sync::mpsc::sync_channel(1);
        // Stop signals are for the vCPU threads' owner, not for this one.
        let thread = crate::signal::with_stop_signals_blocked(|| {
            std::thread::Builder::new().name("unik-devices".into()).spawn(move || {
                let confined = filters.install(ThreadKind::Devices);
                let ok = confined.is_ok();
                let _ = confined_tx.send(confined);
                if !ok {
                    return;
                }
                while !stopped.load(Ordering::SeqCst) {
                    if let Err(e) = manager.run() {
                        log::warn!("event loop: {e:?}");
                        break;
                    }
                }
            })
        })
        .map_err(|source| Error::Thread {
            what: "the device thread",
            source,
        })?;
        self.thread = Some(thread);
        match confined_rx.recv() {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Thread {
                what: "the device thread",
                source: std::io::Error::other("it ended before installing its seccomp filter"),
            }),
        }
    }

    /// The fd that stops the loop when written (for tests).
    pub fn stop_fd(&self) -> RawFd {
        self.stop.as_raw_fd()
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
