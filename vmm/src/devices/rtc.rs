//! The PC's CMOS real-time clock (MC146818-compatible) at ports 0x70/0x71: the wall-clock time
//! from the host's clock, the status registers with a real update-in-progress cycle, a guest-set
//! time kept as an offset from the host's, and the CMOS bytes firmware-less kernels read for
//! the memory size. No interrupts are raised (IRQ 8 stays quiet).

use std::time::{SystemTime, UNIX_EPOCH};

use super::bus::BusDevice;
use crate::calendar::{civil_from_days, days_from_civil};
use crate::exit::Action;

/// The index port (0x70) and the data port (0x71).
pub const RTC_PORT: u64 = 0x70;
/// Length of the range.
pub const RTC_LEN: u64 = 2;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
/// The century register, which ACPI's FADT names.
pub const CENTURY: u8 = 0x32;

/// Status A: update in progress.
const UIP: u8 = 0x80;
/// Status A's power-on value: the 32.768 kHz divider, 1024 Hz periodic rate.
const STATUS_A_DEFAULT: u8 = 0x26;
/// Status B: updates halted while set.
const SET: u8 = 0x80;
/// Status B: binary (not BCD) values.
const BINARY: u8 = 0x04;
/// Status B: 24-hour mode.
const HOUR24: u8 = 0x02;
/// Status D: valid RAM and time.
const VRT: u8 = 0x80;
/// The update-in-progress window: the last 244 µs of each second.
const UIP_NANOS: u32 = 1_000_000_000 - 244_000;

/// The clock the RTC reads: seconds and nanoseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> (i64, u32) + Send>;

fn host_clock() -> (i64, u32) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (i64::try_from(now.as_secs()).unwrap_or(i64::MAX), now.subsec_nanos())
}

/// A calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// 1–7, Sunday = 1.
    weekday: u8,
}

impl Civil {
    fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rest = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let part = |v: i64| u8::try_from(v).unwrap_or(0);
        Civil {
            year,
            month,
            day,
            hour: part(rest / 3600),
            minute: part(rest / 60 % 60),
            second: part(rest % 60),
            // 1970-01-01 was a Thursday (5 with Sunday = 1).
            weekday: part((days + 4).rem_euclid(7) + 1),
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour.min(23)) * 3600
            + i64::from(self.minute.min(59)) * 60
            + i64::from(self.second.min(59))
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// The CMOS RTC and its 128 bytes of CMOS RAM.
pub struct Rtc {
    clock: Clock,
    /// The guest's time minus the host's, in seconds.
    offset: i64,
    /// The time held while status B's SET bit halts updates.
    held: Option<i64>,
    index: u8,
    nmi_disabled: bool,
    cmos: [u8; 128],
}

impl std::fmt::Debug for Rtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtc")
            .field("offset", &self.offset)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Rtc {
    /// An RTC on the host's clock, for a guest with `low` bytes of RAM below the 4 GiB hole
    /// and `high` bytes above 4 GiB.
    pub fn new(low: u64, high: u64) -> Rtc {
        Rtc::with_clock(low, high, Box::new(host_clock))
    }

    /// An RTC on `clock` (tests).
    pub fn with_clock(low: u64, high: u64, clock: Clock) -> Rtc {
        let mut cmos = [0u8; 128];
        cmos[usize::from(STATUS_A)] = STATUS_A_DEFAULT;
        cmos[usize::from(STATUS_B)] = HOUR24;
        let mut put16 = |at: usize, v: u64| {
            let v = u16::try_from(v).unwrap_or(u16::MAX).to_le_bytes();
            cmos[at..at + 2].copy_from_slice(&v);
        };
        // Base memory (KiB), extended memory from 1 MiB (KiB, capped), memory above 16 MiB in
        // 64 KiB units below the hole.
        put16(0x15, 640);
        let extended = low.saturating_sub(1 << 20) / 1024;
        put16(0x17, extended);
        put16(0x30, extended);
        put16(0x34, low.saturating_sub(16 << 20) / 65_536);
        // Memory above 4 GiB in 64 KiB units, three bytes.
        let above = (high / 65_536).min(0xff_ffff).to_le_bytes();
        cmos[0x5b..0x5e].copy_from_slice(&above[..3]);
        Rtc {
            clock,
            offset: 0,
            held: None,
            index: 0,
            nmi_disabled: false,
            cmos,
        }
    }

    fn status_b(&self) -> u8 {
        self.cmos[usize::from(STATUS_B)]
    }

    /// The guest's current time, in seconds, and whether an update is in progress.
    fn now(&self) -> (i64, bool) {
        if let Some(held) = self.held {
            return (held, false);
        }
        let (secs, nanos) = (self.clock)();
        (secs.saturating_add(self.offset), nanos >= UIP_NANOS)
    }

    fn encode(&self, v: u8) -> u8 {
        if self.status_b() & BINARY != 0 { v } else { to_bcd(v) }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.status_b() & BINARY != 0 { v } else { from_bcd(v) }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.status_b() & HOUR24 != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { 0x80 } else { 0 };
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.status_b() & HOUR24 != 0 {
            return self.decode(v);
        }
        let h12 = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 { h12 + 12 } else { h12 }
    }

    fn read_register(&mut self, reg: u8) -> u8 {
        let (secs, updating) = self.now();
        let t = Civil::from_unix(secs);
        let year = u8::try_from(t.year.rem_euclid(100)).unwrap_or(0);
        let century = u8::try_from(t.year.div_euclid(100).rem_euclid(100)).unwrap_or(0);
        match reg {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            WEEKDAY => self.encode(t.weekday),
            DAY => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode(year),
            CENTURY => self.encode(century),
            STATUS_A => (self.cmos[usize::from(STATUS_A)] & !UIP) | if updating { UIP } else { 0 },
            // No interrupt ever becomes pending: reading C finds (and clears) nothing.
            STATUS_C => 0,
            STATUS_D => VRT,
            other => self.cmos[usize::from(other & 0x7f)],
        }
    }

    fn write_register(&mut self, reg: u8, v: u8) {
        match reg {
            SECONDS | MINUTES | HOURS | WEEKDAY | DAY | MONTH | YEAR | CENTURY => self.set_field(reg, v),
            STATUS_A => self.cmos[usize::from(STATUS_A)] = v & !UIP,
            STATUS_B => {
                let halting = v & SET != 0;
                match (self.held, halting) {
                    (None, true) => self.held = Some(self.now().0),
                    (Some(held), false) => {
                        // Updates resume from the time the guest set.
                        self.offset = held - (self.clock)().0;
                        self.held = None;
                    }
                    _ => {}
                }
                self.cmos[usize::from(STATUS_B)] = v;
            }
            STATUS_C | STATUS_D => {}
            other => self.cmos[usize::from(other & 0x7f)] = v,
        }
    }

    /// A write of one time field: the guest's time becomes the current one with that field
    /// replaced (held while SET is on, else kept as an offset from the host's clock).
    fn set_field(&mut self, reg: u8, v: u8) {
        let (secs, _) = self.now();
        let mut t = Civil::from_unix(secs);
        match reg {
            SECONDS => t.second = self.decode(v).min(59),
            MINUTES => t.minute = self.decode(v).min(59),
            HOURS => t.hour = self.decode_hour(v).min(23),
            DAY => t.day = self.decode(v).clamp(1, 31),
            MONTH => t.month = self.decode(v).clamp(1, 12),
            YEAR => t.year = t.year.div_euclid(100) * 100 + i64::from(self.decode(v).min(99)),
            CENTURY => t.year = i64::from(self.decode(v).min(99)) * 100 + t.year.rem_euclid(100),
            // The day of the week follows from the date.
            _ => return,
        }
        let target = t.to_unix();
        match &mut self.held {
            Some(held) => *held = target,
            None => self.offset = target - (self.clock)().0,
        }
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let (1, Some(first)) = (offset, data.first_mut()) {
            *first = self.read_register(self.index);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        let Some(&v) = data.first() else { return Action::Continue };
        match offset {
            0 => {
                self.index = v & 0x7f;
                self.nmi_disabled = v & 0x80 != 0;
            }
            _ => self.write_register(self.index, v),
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    use super::*;

    /// 2026-12-03 14:05:09 UTC, a Thursday.
    const T0: i64 = 1_796_306_709;

    struct Fake {
        rtc: Rtc,
        secs: Arc<AtomicI64>,
        nanos: Arc<AtomicU32>,
    }

    fn fake() -> Fake {
        let secs = Arc::new(AtomicI64::new(T0));
        let nanos = Arc::new(AtomicU32::new(0));
        let (s, n) = (secs.clone(), nanos.clone());
        let clock = Box::new(move || (s.load(Ordering::SeqCst), n.load(Ordering::SeqCst)));
        Fake {
            rtc: Rtc::with_clock(512 << 20, 0, clock),
            secs,
            nanos,
        }
    }

    fn read(rtc: &mut Rtc, reg: u8) -> u8 {
        rtc.write(0, &[reg]);
        let mut b = [0u8];
        rtc.read(1, &mut b);
        b[0]
    }

    fn write(rtc: &mut Rtc, reg: u8, v: u8) {
        rtc.write(0, &[reg]);
        rtc.write(1, &[v]);
    }

    #[test]
    fn test_calendar_conversions() {
        let t = Civil::from_unix(T0);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2026, 12, 3, 14, 5, 9, 5)
        );
        assert_eq!(t.to_unix(), T0);
        assert_eq!(Civil::from_unix(0).weekday, 5, "1970-01-01 was a Thursday");
        let leap = Civil::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        for secs in [0, 951_782_400, T0, 4_102_444_800, 253_402_300_799] {
            assert_eq!(Civil::from_unix(secs).to_unix(), secs);
        }
    }

    #[test]
    fn test_time_in_bcd_and_binary_and_12_hour_mode() {
        let mut f = fake();
        let rtc = &mut f.rtc;
        assert_eq!(read(rtc, STATUS_B), HOUR24, "BCD, 24-hour by default");
        let regs = [SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY];
        assert_eq!(regs.map(|r| read(rtc, r)), [0x09, 0x05, 0x14, 0x05, 0x03, 0x12, 0x26, 0x20]);
        write(rtc, STATUS_B, HOUR24 | BINARY);
        assert_eq!(regs.map(|r| read(rtc, r)), [9, 5, 14, 5, 3, 12, 26, 20]);
        // 12-hour mode: 14:xx is 2 PM.
        write(rtc, STATUS_B, 0);
        assert_eq!(read(rtc, HOURS), 0x80 | 0x02);
        write(rtc, STATUS_B, BINARY);
        assert_eq!(read(rtc, HOURS), 0x80 | 2);
        assert_eq!(read(rtc, STATUS_D), VRT);
        assert_eq!(read(rtc, STATUS_C), 0);
    }

    #[test]
    fn test_update_in_progress_only_in_the_last_244_microseconds() {
        let mut f = fake();
        assert_eq!(read(&mut f.rtc, STATUS_A), STATUS_A_DEFAULT);
        f.nanos.store(999_800_000, Ordering::SeqCst);
        assert_eq!(read(&mut f.rtc, STATUS_A), STATUS_A_DEFAULT | UIP);
        f.nanos.store(999_755_999, Ordering::SeqCst);
        assert_eq!(read(&mut f.rtc, STATUS_A), STATUS_A_DEFAULT);
        // The guest cannot set UIP; the rest of A is kept.
        write(&mut f.rtc, STATUS_A, 0xa6);
        assert_eq!(read(&mut f.rtc, STATUS_A), 0x26);
    }

    #[test]
    fn test_a_time_the_guest_sets_is_kept_as_an_offset() {
        let mut f = fake();
        let rtc = &mut f.rtc;
        // SET halts updates; the fields written then take effect when SET clears.
        write(rtc, STATUS_B, SET | HOUR24);
        write(rtc, YEAR, 0x30);
        write(rtc, HOURS, 0x01);
        assert_eq!(read(rtc, STATUS_A) & UIP, 0, "no update while halted");
        f.secs.store(T0 + 100, Ordering::SeqCst);
        assert_eq!(read(rtc, SECONDS), 0x09, "the held time does not advance");
        write(rtc, STATUS_B, HOUR24);
        // 2030-12-03 01:05:09, and from there it follows the host's clock.
        f.secs.store(T0 + 160, Ordering::SeqCst);
        assert_eq!(
            [YEAR, MONTH, DAY, HOURS, MINUTES, SECONDS].map(|r| read(rtc, r)),
            [0x30, 0x12, 0x03, 0x01, 0x06, 0x09]
        );
        // Without SET a write takes effect at once.
        write(rtc, MINUTES, 0x59);
        assert_eq!(read(rtc, MINUTES), 0x59);
        assert_eq!(read(rtc, HOURS), 0x01);
    }

    #[test]
    fn test_index_port_nmi_bit_cmos_ram_and_memory_size() {
        let mut rtc = Rtc::with_clock(32 << 20, 1 << 30, Box::new(|| (T0, 0)));
        // The NMI-disable bit is not part of the index.
        write(&mut rtc, 0x80 | 0x40, 0x5a);
        assert!(rtc.nmi_disabled);
        assert_eq!(read(&mut rtc, 0x40), 0x5a);
        // 640 KiB base, (32 - 1) MiB extended, (32 - 16) MiB / 64 KiB above 16 MiB, 1 GiB above 4 GiB.
        let word = |rtc: &mut Rtc, at: u8| u16::from_le_bytes([read(rtc, at), read(rtc, at + 1)]);
        assert_eq!(word(&mut rtc, 0x15), 640);
        assert_eq!(word(&mut rtc, 0x17), 31 * 1024);
        assert_eq!(word(&mut rtc, 0x30), 31 * 1024);
        assert_eq!(word(&mut rtc, 0x34), 16 * 16);
        assert_eq!([0x5b, 0x5c, 0x5d].map(|r| read(&mut rtc, r)), [0x00, 0x40, 0x00]);
        // A large guest's extended memory is capped.
        let mut big = Rtc::with_clock(3 << 30, 0, Box::new(|| (T0, 0)));
        assert_eq!(word(&mut big, 0x17), 0xffff);
        // Only the data port carries data; a wide read fills the rest with ones.
        let mut two = [0u8; 2];
        rtc.read(0, &mut two);
        assert_eq!(two, [0xff, 0xff]);
    }
}
