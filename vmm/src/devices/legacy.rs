//! The legacy devices a Linux-boot-protocol guest finds on port I/O: a 16550 UART (COM1, the
//! guest console, from vm-superio), the i8042 controller's reset line, and the debug-exit port.

use std::io::Write;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use crate::exit::{Action, ExitStatus};

/// COM1's ports and interrupt line.
pub const SERIAL_PORT: u64 = 0x3f8;
/// COM1's port range length.
pub const SERIAL_LEN: u64 = 8;
/// COM1's interrupt (GSI).
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 data and command/status ports (0x60 and 0x64).
pub const I8042_PORT: u64 = 0x60;
/// Length of the i8042 range (0x60..=0x64).
pub const I8042_LEN: u64 = 5;
/// The debug-exit port: a 1- to 4-byte write of N ends the VM with exit status N & 0xff. It is
/// QEMU's isa-debug-exit port, without QEMU's `(N << 1) | 1` encoding.
pub const DEBUG_EXIT_PORT: u64 = 0x501;
/// Its width: `outb`, `outw` and `outl` to it all end the VM (with the low byte).
pub const DEBUG_EXIT_LEN: u64 = 4;

/// An interrupt line: an eventfd registered with KVM as an irqfd.
#[derive(Debug)]
pub struct IrqLine(pub EventFd);

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The guest console: a 16550 whose transmitter writes to the monitor's console.
pub struct Uart(pub Serial<IrqLine, vm_superio::serial::NoEvents, Box<dyn Write + Send>>);

impl std::fmt::Debug for Uart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uart")
    }
}

impl Uart {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Uart {
        Uart(Serial::new(IrqLine(irq), out))
    }

    /// Queues input bytes for the guest; returns how many fitted in the receive FIFO.
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        let room = self.0.fifo_capacity().min(bytes.len());
        self.0.enqueue_raw_bytes(&bytes[..room]).unwrap_or(0)
    }

    /// Flushes what the guest wrote.
    pub fn flush(&mut self) {
        let _ = self.0.writer_mut().flush();
    }
}

impl BusDevice for Uart {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0, |o| self.0.read(o));
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        if let (Ok(offset), Some(byte)) = (u8::try_from(offset), data.first()) {
            if let Err(e) = self.0.write(offset, *byte) {
                log::debug!("serial: {e:?}");
            }
        }
        Action::Continue
    }
}

/// Just enough of the i8042 for the guest to reset the machine: writing 0xfe to the command
/// port pulses the reset line. Reads see an empty controller.
#[derive(Debug, Default)]
pub struct I8042;

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        if offset == 4 && data.first() == Some(&0xfe) {
            Action::Stop(ExitStatus::Reset)
        } else {
            Action::Continue
        }
    }
}

/// The debug-exit port.
#[derive(Debug, Default)]
pub struct DebugExit;

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        // Only a write at the port itself; the rest of the window merely holds wide writes.
        match data.first() {
            Some(&status) if offset == 0 => Action::Stop(ExitStatus::Halt(i32::from(status))),
            _ => Action::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_uart_transmits_and_receives() {
        let out = Shared::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut uart = Uart::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        for b in b"hi\n" {
            assert_eq!(uart.write(0, &[*b]), Action::Continue);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        // Line status: transmitter empty.
        let mut lsr = [0u8];
        uart.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
        // Enable the receive interrupt, queue input, read it back.
        uart.write(1, &[1]);
        assert_eq!(uart.input(b"ok"), 2);
        assert_eq!(irq.read().unwrap(), 1);
        let mut b = [0u8];
        uart.read(0, &mut b);
        assert_eq!(b[0], b'o');
        // Offsets past the register file are ignored, not a panic.
        uart.read(0x1_0000, &mut b);
        assert_eq!(uart.write(0x1_0000, &[1]), Action::Continue);
    }

    #[test]
    fn test_reset_and_debug_exit() {
        assert_eq!(I8042.write(4, &[0xfe]), Action::Stop(ExitStatus::Reset));
        assert_eq!(I8042.write(4, &[0xd1]), Action::Continue);
        assert_eq!(I8042.write(0, &[0xfe]), Action::Continue);
        assert_eq!(DebugExit.write(0, &[7, 0, 0, 0]), Action::Stop(ExitStatus::Halt(7)));
        assert_eq!(DebugExit.write(0, &[]), Action::Continue);
        assert_eq!(DebugExit.write(1, &[7]), Action::Continue);
        // On the bus, as the VM registers it: byte, word and dword writes to the port all end it.
        let mut bus = crate::devices::Bus::default();
        bus.insert(DEBUG_EXIT_PORT, DEBUG_EXIT_LEN, Arc::new(Mutex::new(DebugExit)))
            .unwrap();
        for data in [&[9u8][..], &[9, 0], &[9, 0, 0, 0]] {
            assert_eq!(bus.write(DEBUG_EXIT_PORT, data), Some(Action::Stop(ExitStatus::Halt(9))));
        }
    }
}
