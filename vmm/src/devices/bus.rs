//! Port-I/O and MMIO buses: address ranges mapped to devices.
//!
//! A Linux guest probes ports and addresses that have no device behind them; like real hardware,
//! such reads return all ones (port I/O) or zeros (MMIO) and writes are dropped, rather than
//! stopping the guest as the hvt ABI does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::exit::Action;

/// A device on a bus. `offset` is relative to the start of the device's range.
pub trait BusDevice: Send {
    /// Fills `data` from the register at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` to the register at `offset`: [`Action::Stop`] when the write ends the
    /// machine (the debug-exit port, a reset, a poweroff), else [`Action::Continue`].
    fn write(&mut self, offset: u64, data: &[u8]) -> Action;
}

/// A shared device handle.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Address ranges and their devices.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, (u64, SharedDevice)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.ranges.iter().map(|(base, (len, _))| *base..base + len))
            .finish()
    }
}

/// Two devices claim overlapping ranges.
#[derive(Debug, thiserror::Error)]
#[error("bus range {base:#x}+{len:#x} overlaps another device")]
pub struct Overlap {
    /// Start of the rejected range.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

impl Bus {
    /// Maps `device` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), Overlap> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(Overlap { base, len })?;
        let before = self.ranges.range(..end).next_back();
        if before.is_some_and(|(b, (l, _))| b + l > base) {
            return Err(Overlap { base, len });
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(u64, &SharedDevice)> {
        let (base, (len, dev)) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(size as u64)? <= *len).then_some((offset, dev))
    }

    /// Reads from the device at `addr`; `false` when nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device at `addr`: what it answers, or `None` when nothing is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<Action> {
        let (offset, dev) = self.find(addr, data.len())?;
        Some(lock(dev).write(offset, data))
    }
}

/// Locks a device; a device whose holder panicked is still used (its state is plain registers).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitStatus;

    struct Reg(u8, Vec<(u64, u8)>);

    impl BusDevice for Reg {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Action {
            self.1.push((offset, data[0]));
            if data[0] == 0xff {
                Action::Stop(ExitStatus::Reset)
            } else {
                Action::Continue
            }
        }
    }

    #[test]
    fn test_ranges_dispatch_and_refuse_overlap() {
        let mut bus = Bus::default();
        let a = Arc::new(Mutex::new(Reg(0xaa, Vec::new())));
        bus.insert(0x3f8, 8, a.clone()).unwrap();
        bus.insert(0x400, 4, Arc::new(Mutex::new(Reg(0xbb, Vec::new())))).unwrap();
        for (base, len) in [(0x3f0, 9), (0x3ff, 1), (0x10, 0), (u64::MAX, 2)] {
            let err = bus.insert(base, len, Arc::new(Mutex::new(Reg(0, Vec::new())))).unwrap_err();
            assert_eq!((err.base, err.len), (base, len));
        }
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 0xaa);
        assert!(bus.read(0x401, &mut b));
        assert_eq!(b[0], 0xbb);
        assert!(!bus.read(0x3f7, &mut b));
        // An access that runs past the end of a range is not the device's.
        assert!(!bus.read(0x3fe, &mut [0u8; 4]));
        assert_eq!(bus.write(0x3f9, &[1]), Some(Action::Continue));
        assert_eq!(bus.write(0x3f8, &[0xff]), Some(Action::Stop(ExitStatus::Reset)));
        assert_eq!(bus.write(0x500, &[1]), None);
        assert_eq!(lock(&a).1, vec![(1, 1), (0, 0xff)]);
    }
}
