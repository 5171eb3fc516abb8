//! Every hypercall handler against plain guest memory (no KVM).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;

use super::abi::result;
use super::devices::{Device, Devices};
use super::manifest::tests::mft;
use super::*;
use crate::config::{BlockConfig, NetBackend, NetConfig};
use crate::host::{Disk, Tap};
use crate::memory::GuestRam;

const MEM: u64 = 4 << 20;
const ARG: u64 = 0x20_0000;
const BUF: u64 = 0x30_0000;

/// A console that tests can read back.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    hvt: Hvt,
    ram: GuestRam,
    console: Console,
    _stop: EventFd,
}

fn fixture(slots: Vec<Option<Device>>) -> Fixture {
    let ram = GuestRam::new(MEM).unwrap();
    let console = Console::default();
    let stop = EventFd::new(0).unwrap();
    let hvt = Hvt::new(
        ram.clone(),
        Devices::from_slots(slots),
        Box::new(console.clone()),
        std::os::fd::AsRawFd::as_raw_fd(&stop),
    )
    .unwrap();
    Fixture {
        hvt,
        ram,
        console,
        _stop: stop,
    }
}

fn put_u64s(ram: &GuestRam, gpa: u64, words: &[u64]) {
    for (i, w) in words.iter().enumerate() {
        ram.write_obj(gpa + 8 * i as u64, *w).unwrap();
    }
}

fn ret_at(ram: &GuestRam, gpa: u64) -> i32 {
    ram.read_obj::<i32>(gpa).unwrap()
}

fn disk_fixture(size: usize) -> (tempfile::NamedTempFile, Device) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&vec![0x11; size]).unwrap();
    let disk = Disk::open(file.path()).unwrap();
    (file, Device::Block(disk, 512))
}

#[test]
fn test_walltime_writes_now() {
    let mut f = fixture(vec![None]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert_eq!(f.hvt.handle(1, ARG).unwrap(), Action::Continue);
    let t = u128::from(f.ram.read_obj::<u64>(ARG).unwrap());
    assert!(t >= before && t < before + 5_000_000_000, "{t} vs {before}");
}

#[test]
fn test_puts_copies_raw_bytes_including_nul() {
    let mut f = fixture(vec![None]);
    f.ram.write_slice(BUF, b"hi\0there").unwrap();
    put_u64s(&f.ram, ARG, &[BUF, 8]);
    f.hvt.handle(2, ARG).unwrap();
    assert_eq!(&*f.console.0.lock().unwrap(), b"hi\0there");
}

#[test]
fn test_bad_pointers_stop_the_guest() {
    let mut f = fixture(vec![None]);
    // Argument struct past the end, data past the end, data ending exactly at the end of RAM.
    for (arg, data, len) in [(MEM - 8, 0, 0), (ARG, MEM - 4, 8), (ARG, MEM - 8, 8), (ARG, u64::MAX - 2, 8)] {
        if arg == ARG {
            put_u64s(&f.ram, ARG, &[data, len]);
        }
        let err = f.hvt.handle(2, arg).unwrap_err();
        assert!(err.to_string().starts_with("Invalid guest access: gpa="), "{err}");
    }
    assert!(f.console.0.lock().unwrap().is_empty());
}

#[test]
fn test_writes_into_read_only_memory_are_refused() {
    let mut ram = GuestRam::new(MEM).unwrap();
    ram.protect_read_only(0x10_0000, 0x1000).unwrap();
    let console = Console::default();
    let stop = EventFd::new(0).unwrap();
    let (_file, dev) = disk_fixture(4096);
    let mut hvt = Hvt::new(
        ram.clone(),
        Devices::from_slots(vec![None, Some(dev)]),
        Box::new(console),
        std::os::fd::AsRawFd::as_raw_fd(&stop),
    )
    .unwrap();
    // WALLTIME with its argument in read-only memory.
    let err = hvt.handle(1, 0x10_0010).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    // BLOCK_READ into read-only memory.
    put_u64s(&ram, ARG, &[1, 0, 0x10_0000, 512, 0]);
    let err = hvt.handle(5, ARG).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[test]
fn test_halt_returns_status_and_checks_cookie() {
    let mut f = fixture(vec![None]);
    f.ram.write_obj(ARG, 0u64).unwrap();
    f.ram.write_obj(ARG + 8, 42i32).unwrap();
    assert_eq!(f.hvt.handle(8, ARG).unwrap(), Action::Stop(ExitStatus::Halt(42)));
    f.ram.write_obj(ARG, BUF).unwrap();
    f.ram.write_obj(ARG + 8, 255i32).unwrap();
    assert_eq!(f.hvt.handle(8, ARG).unwrap(), Action::Stop(ExitStatus::Halt(255)));
    f.ram.write_obj(ARG, MEM - 256).unwrap();
    let err = f.hvt.handle(8, ARG).unwrap_err().to_string();
    assert!(err.starts_with(&format!("Invalid guest access: gpa={:#x}", MEM - 256)), "{err}");
}

#[test]
fn test_unknown_and_unregistered_hypercalls() {
    let mut f = fixture(vec![None]);
    for nr in [0, 4, 5, 6, 7, 9, 0xffff_ffff] {
        let err = f.hvt.handle(nr, ARG).unwrap_err();
        assert_eq!(err.to_string(), format!("Invalid guest hypercall: num={nr}"));
    }
}

#[test]
fn test_block_read_write_and_bounds() {
    let (file, dev) = disk_fixture(4096);
    let mut f = fixture(vec![None, Some(dev)]);
    f.ram.write_slice(BUF, &[0xab; 512]).unwrap();
    put_u64s(&f.ram, ARG, &[1, 1024, BUF, 512, 0x7777]);
    f.hvt.handle(4, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 32), result::OK);
    assert_eq!(&std::fs::read(file.path()).unwrap()[1024..1536], &[0xab; 512][..]);
    put_u64s(&f.ram, ARG, &[1, 0, BUF + 4096, 512, 0x7777]);
    f.hvt.handle(5, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 32), result::OK);
    let mut back = [0u8; 512];
    f.ram.read_slice(BUF + 4096, &mut back).unwrap();
    assert_eq!(back, [0x11; 512]);
    // EINVAL: offset == capacity, straddling the end, overflowing, wrong handles.
    for (handle, offset, len) in [
        (1, 4096, 512),
        (1, 3584, 1024),
        (1, u64::MAX - 10, 512),
        (0, 0, 512),
        (2, 0, 512),
        (u64::MAX, 0, 512),
    ] {
        put_u64s(&f.ram, ARG, &[handle, offset, BUF, len, 0x7777]);
        f.hvt.handle(5, ARG).unwrap();
        assert_eq!(
            ret_at(&f.ram, ARG + 32),
            result::EINVAL,
            "handle {handle} offset {offset} len {len}"
        );
    }
}

#[test]
fn test_block_on_a_net_handle_is_einval() {
    let (a, _b) = UnixDatagram::pair().unwrap();
    let tap = Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(a)), 1500);
    let (_file, dev) = disk_fixture(512);
    let mut f = fixture(vec![None, Some(dev), Some(Device::Net(tap))]);
    put_u64s(&f.ram, ARG, &[2, 0, BUF, 512, 0]);
    f.hvt.handle(5, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 32), result::EINVAL);
    put_u64s(&f.ram, ARG, &[1, BUF, 60, 0]);
    f.hvt.handle(6, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 24), result::EINVAL);
}

fn net_fixture() -> (Fixture, UnixDatagram) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let tap = Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(a)), 1500);
    (fixture(vec![None, Some(Device::Net(tap))]), b)
}

#[test]
fn test_net_write_read_again_and_mtu() {
    let (mut f, peer) = net_fixture();
    f.ram.write_slice(BUF, &[0x42; 60]).unwrap();
    put_u64s(&f.ram, ARG, &[1, BUF, 60, 0x7777]);
    f.hvt.handle(6, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 24), result::OK);
    let mut got = [0u8; 100];
    assert_eq!(peer.recv(&mut got).unwrap(), 60);
    // Longer than MTU + 14: refused.
    put_u64s(&f.ram, ARG, &[1, BUF, 1515, 0x7777]);
    f.hvt.handle(6, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 24), result::EINVAL);
    // Nothing waiting: AGAIN.
    put_u64s(&f.ram, ARG, &[1, BUF, 1514, 0x7777]);
    f.hvt.handle(7, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 24), result::AGAIN);
    peer.send(&[7; 90]).unwrap();
    f.hvt.handle(7, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 24), result::OK);
    assert_eq!(f.ram.read_obj::<u64>(ARG + 16).unwrap(), 90);
    let mut frame = [0u8; 90];
    f.ram.read_slice(BUF, &mut frame).unwrap();
    assert_eq!(frame, [7; 90]);
}

#[test]
fn test_poll_timeouts_and_readiness() {
    let (mut f, peer) = net_fixture();
    let poll = |f: &mut Fixture, timeout: u64| {
        put_u64s(&f.ram, ARG, &[timeout, 0xdead, 0x7777]);
        let t = Instant::now();
        f.hvt.handle(3, ARG).unwrap();
        (t.elapsed(), f.ram.read_obj::<u64>(ARG + 8).unwrap(), ret_at(&f.ram, ARG + 16))
    };
    // What is checked is why POLL returned, never how fast (no upper bounds: a loaded machine
    // may take any time): nothing ready after a zero timeout; nothing ready, and at least the
    // timeout gone, after a 50 ms one; the device's bit, the only thing that could end a 10 s
    // poll that returned with it set, once a frame waits.
    let (_, ready, n) = poll(&mut f, 0);
    assert!(ready == 0 && n == 0, "{ready} {n}");
    let (took, ready, n) = poll(&mut f, 50_000_000);
    assert!(took >= Duration::from_millis(50) && ready == 0 && n == 0, "{took:?} {ready} {n}");
    peer.send(&[1; 60]).unwrap();
    let (_, ready, n) = poll(&mut f, 10_000_000_000);
    assert_eq!((ready, n), (1 << 1, 1));
}

#[test]
fn test_poll_returns_when_stop_fd_fires() {
    let mut f = fixture(vec![None]);
    f._stop.write(1).unwrap();
    // A 60 s timeout: a return before it proves the stop fd ended the poll. The bound is the
    // timeout itself (a poll that ignored the stop fd would take the whole minute), not a speed.
    put_u64s(&f.ram, ARG, &[60_000_000_000, 0, 0]);
    let t = Instant::now();
    f.hvt.handle(3, ARG).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the poll ran to its timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(f.ram.read_obj::<u64>(ARG + 8).unwrap(), 0);
}

#[test]
fn test_attach_fills_manifest_and_checks_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let img = |name: &str, size: usize| {
        let p = dir.path().join(name);
        std::fs::write(&p, vec![0; size]).unwrap();
        p
    };
    let block = |name: &str, path: &std::path::Path, sector_size| BlockConfig {
        name: name.into(),
        path: path.into(),
        sector_size,
        read_only: false,
    };
    let bytes = mft(&[("storage", 1), ("other", 1)]);
    let mut m = Manifest::parse(&bytes).unwrap();
    let devices = attach(
        &mut m,
        &[],
        &[block("storage", &img("a", 8192), Some(4096)), block("other", &img("b", 512), None)],
        crate::host::files::Root::Host,
    )
    .unwrap();
    assert!(devices.has_block() && !devices.has_net());
    let out = m.to_bytes();
    assert_eq!(&out[8 + 104 + 72..8 + 104 + 82], &[0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x10]);
    assert_eq!(out[8 + 104 + 96], 1);

    let err = |blocks: &[BlockConfig], nets: &[NetConfig]| {
        attach(&mut Manifest::parse(&bytes).unwrap(), nets, blocks, crate::host::files::Root::Host)
            .unwrap_err()
            .to_string()
    };
    let other = block("other", &img("c", 512), None);
    assert_eq!(
        err(&[block("nope", &img("d", 512), None), other.clone()], &[]),
        "Resource not declared in manifest: 'nope'"
    );
    assert!(
        err(&[block("storage", &img("e", 1000), None), other.clone()], &[])
            .contains("storage: Backing storage size must be block aligned (512 bytes)")
    );
    assert!(err(&[block("storage", &img("f", 256), None), other.clone()], &[]).contains("must be at least 1 block"));
    assert!(
        err(&[block("storage", &img("g", 4096), Some(1000)), other.clone()], &[])
            .contains("Block size must be a multiple of 2 greater than or equal 512")
    );
    assert!(err(&[block("storage", &dir.path().join("missing"), None), other.clone()], &[]).contains("Could not open block device"));
    assert_eq!(
        err(&[other.clone(), other.clone()], &[]),
        "Device 'other' is attached more than once"
    );
    let missing = err(std::slice::from_ref(&other), &[]);
    assert_eq!(
        missing,
        "Device 'storage' of type BLOCK_BASIC declared but not attached. All declared devices must be attached. See --help for syntax."
    );
    // A net option naming a block entry is not declared as a net device.
    let net = NetConfig {
        name: "storage".into(),
        backend: NetBackend::Tap("lo".into()),
        mac: None,
    };
    assert_eq!(err(&[other], &[net]), "Resource not declared in manifest: 'storage'");
}

#[test]
fn test_boot_info_layout() {
    let ram = GuestRam::new(MEM).unwrap();
    let m = Manifest::parse(&mft(&[("storage", 1)])).unwrap();
    write_boot_info(&ram, 0x10_5000, 2_500_000_000, &m, b"a b", None).unwrap();
    let words: Vec<u64> = (0..7).map(|i| ram.read_obj::<u64>(BOOT_INFO_GPA + 8 * i).unwrap()).collect();
    let mft_size = 8 + 2 * 104;
    assert_eq!(words, [MEM, 0x10_5000, 2_500_000_000, 0x10038 + mft_size, 0x10038, 0, 0]);
    let mut copy = vec![0u8; usize::try_from(mft_size).unwrap()];
    ram.read_slice(0x10038, &mut copy).unwrap();
    assert_eq!(copy, m.to_bytes());
    let mut cmdline = [0xffu8; 4];
    ram.read_slice(0x10038 + mft_size, &mut cmdline).unwrap();
    assert_eq!(&cmdline, b"a b\0");
    let long = vec![b'x'; CMDLINE_MAX + 1];
    assert_eq!(
        write_boot_info(&ram, 0, 1, &m, &long, None).unwrap_err().to_string(),
        "Guest command line too long (max=8191 characters)"
    );
    write_boot_info(&ram, 0, 1, &m, &long[..CMDLINE_MAX], None).unwrap();
    // With a net ring: HVT_FEATURE_RING_IO and its address.
    write_boot_info(&ram, 0, 1, &m, b"", Some(MEM)).unwrap();
    assert_eq!(ram.read_obj::<u32>(BOOT_INFO_GPA + 40).unwrap(), 1);
    assert_eq!(ram.read_obj::<u32>(BOOT_INFO_GPA + 44).unwrap(), 0);
    assert_eq!(ram.read_obj::<u64>(BOOT_INFO_GPA + 48).unwrap(), MEM);
}

#[test]
fn test_block_transfers_larger_than_a_chunk() {
    let size = 3 << 20;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
    file.write_all(&data).unwrap();
    let dev = Device::Block(Disk::open(file.path()).unwrap(), 512);
    let mut f = fixture(vec![None, Some(dev)]);
    // 2.5 MiB (three chunks) from offset 512 into guest memory at 1 MiB, then back at offset 0;
    // the argument struct sits below the buffer.
    let (arg, buf, len) = (0x1000, 0x10_0000, (5 << 20) / 2);
    put_u64s(&f.ram, arg, &[1, 512, buf, len, 0x7777]);
    f.hvt.handle(5, arg).unwrap();
    assert_eq!(ret_at(&f.ram, arg + 32), result::OK);
    let mut got = vec![0u8; usize::try_from(len).unwrap()];
    f.ram.read_slice(buf, &mut got).unwrap();
    assert!(got == data[512..512 + got.len()], "read data differs");
    put_u64s(&f.ram, arg, &[1, 0, buf, len, 0x7777]);
    f.hvt.handle(4, arg).unwrap();
    assert_eq!(ret_at(&f.ram, arg + 32), result::OK);
    assert!(std::fs::read(file.path()).unwrap()[..got.len()] == got[..], "written data differs");
}

#[test]
fn test_only_out_fields_are_written_back() {
    let (_file, dev) = disk_fixture(4096);
    let mut f = fixture(vec![None, Some(dev)]);
    // BLOCK_READ: handle, offset, data and len stay as the guest wrote them; the 4 bytes after
    // `ret` (padding) are not touched either.
    put_u64s(&f.ram, ARG, &[1, 512, BUF, 512, u64::MAX]);
    f.hvt.handle(5, ARG).unwrap();
    let words: Vec<u64> = (0..4).map(|i| f.ram.read_obj::<u64>(ARG + 8 * i).unwrap()).collect();
    assert_eq!(words, [1, 512, BUF, 512]);
    assert_eq!(ret_at(&f.ram, ARG + 32), result::OK);
    assert_eq!(f.ram.read_obj::<u32>(ARG + 36).unwrap(), u32::MAX);
    // POLL: the timeout stays.
    put_u64s(&f.ram, ARG, &[0, u64::MAX, u64::MAX]);
    f.hvt.handle(3, ARG).unwrap();
    assert_eq!(f.ram.read_obj::<u64>(ARG).unwrap(), 0);
    assert_eq!(f.ram.read_obj::<u64>(ARG + 8).unwrap(), 0);
    assert_eq!(ret_at(&f.ram, ARG + 16), 0);
    assert_eq!(f.ram.read_obj::<u32>(ARG + 20).unwrap(), u32::MAX);
}

#[test]
fn test_argument_structs_must_lie_below_the_end_of_ram() {
    let (_file, dev) = disk_fixture(4096);
    let (a, _b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let tap = Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(a)), 1500);
    let mut f = fixture(vec![None, Some(dev), Some(Device::Net(tap))]);
    // Each struct placed so that it ends exactly at the end of RAM: rejected (strict rule), and
    // one byte lower: accepted.
    for (nr, size) in [(1u32, 8u64), (2, 16), (3, 24), (4, 40), (5, 40), (6, 32), (7, 32), (8, 16)] {
        let err = f.hvt.handle(nr, MEM - size).unwrap_err().to_string();
        assert_eq!(err, format!("Invalid guest access: gpa={:#x}, sz={size}", MEM - size), "nr {nr}");
        let err = f.hvt.handle(nr, u64::MAX - 4).unwrap_err().to_string();
        assert_eq!(err, format!("Invalid guest access: gpa={:#x}, sz={size}", u64::MAX - 4), "nr {nr}");
    }
    // WALLTIME one byte lower fits.
    f.hvt.handle(1, MEM - 9).unwrap();
}

#[test]
fn test_data_buffers_are_checked() {
    let (_file, dev) = disk_fixture(4096);
    let (a, peer) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let tap = Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(a)), 1500);
    let mut ram = GuestRam::new(MEM).unwrap();
    ram.protect_read_only(0x10_0000, 0x1000).unwrap();
    let stop = EventFd::new(0).unwrap();
    let mut hvt = Hvt::new(
        ram.clone(),
        Devices::from_slots(vec![None, Some(dev), Some(Device::Net(tap))]),
        Box::new(Console::default()),
        std::os::fd::AsRawFd::as_raw_fd(&stop),
    )
    .unwrap();
    let invalid = |r: Result<Action, HvtError>| r.unwrap_err().to_string();
    // BLOCK_READ / BLOCK_WRITE with a buffer ending exactly at the end of RAM.
    put_u64s(&ram, ARG, &[1, 0, MEM - 512, 512, 0]);
    assert!(invalid(hvt.handle(5, ARG)).starts_with("Invalid guest access: gpa=0x3ffe00, sz=512"));
    assert!(invalid(hvt.handle(4, ARG)).starts_with("Invalid guest access"));
    // BLOCK_WRITE may read from read-only memory (the guest writing out its own rodata).
    put_u64s(&ram, ARG, &[1, 0, 0x10_0000, 512, 0]);
    hvt.handle(4, ARG).unwrap();
    assert_eq!(ret_at(&ram, ARG + 32), result::OK);
    // NET_READ into read-only memory, or into a buffer ending at the end of RAM: a fault even
    // when no frame is waiting (the whole buffer is checked first).
    put_u64s(&ram, ARG, &[2, 0x10_0800, 1514, 0]);
    assert!(invalid(hvt.handle(7, ARG)).contains("read-only"));
    put_u64s(&ram, ARG, &[2, MEM - 1514, 1514, 0]);
    assert!(invalid(hvt.handle(7, ARG)).starts_with("Invalid guest access"));
    // NET_WRITE from a buffer ending at the end of RAM.
    put_u64s(&ram, ARG, &[2, MEM - 60, 60, 0]);
    assert!(invalid(hvt.handle(6, ARG)).starts_with("Invalid guest access"));
    // A NET_READ buffer smaller than the frame gets the first `len` bytes (datagram semantics of
    // the stand-in; a tap truncates the same way).
    peer.send(&[9; 100]).unwrap();
    put_u64s(&ram, ARG, &[2, BUF, 10, 0]);
    hvt.handle(7, ARG).unwrap();
    assert_eq!((ret_at(&ram, ARG + 24), ram.read_obj::<u64>(ARG + 16).unwrap()), (result::OK, 10));
}

#[test]
fn test_halt_cookie_must_lie_below_the_end_of_ram() {
    let mut f = fixture(vec![None]);
    f.ram.write_obj(ARG + 8, 3i32).unwrap();
    f.ram.write_obj(ARG, MEM - 512).unwrap();
    let err = f.hvt.handle(8, ARG).unwrap_err().to_string();
    assert_eq!(err, format!("Invalid guest access: gpa={:#x}, sz=512", MEM - 512));
    f.ram.write_obj(ARG, MEM - 513).unwrap();
    assert_eq!(f.hvt.handle(8, ARG).unwrap(), Action::Stop(ExitStatus::Halt(3)));
    f.ram.write_obj(ARG + 8, -1i32).unwrap();
    f.ram.write_obj(ARG, 0u64).unwrap();
    assert_eq!(f.hvt.handle(8, ARG).unwrap(), Action::Stop(ExitStatus::Halt(-1)));
}

#[test]
fn test_block_length_and_type_rules() {
    let (_file, dev) = disk_fixture(4096);
    let (a, _b) = UnixDatagram::pair().unwrap();
    let tap = Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(a)), 1500);
    let mut f = fixture(vec![None, Some(dev), Some(Device::Net(tap))]);
    // len > SSIZE_MAX, len 0 at a valid offset (allowed: nothing to transfer), the last block.
    for (offset, len, want) in [(0, u64::MAX / 2 + 1, result::EINVAL), (0, 0, result::OK), (3584, 512, result::OK)] {
        put_u64s(&f.ram, ARG, &[1, offset, BUF, len, 0x7777]);
        f.hvt.handle(5, ARG).unwrap();
        assert_eq!(ret_at(&f.ram, ARG + 32), want, "offset {offset} len {len}");
    }
    // A net handle for a block call, the reserved entry 0 and an unknown handle: EINVAL, for
    // both directions.
    for nr in [4, 5] {
        for handle in [0, 2, 3, 64] {
            put_u64s(&f.ram, ARG, &[handle, 0, BUF, 512, 0x7777]);
            f.hvt.handle(nr, ARG).unwrap();
            assert_eq!(ret_at(&f.ram, ARG + 32), result::EINVAL, "nr {nr} handle {handle}");
        }
    }
    // NET_READ on the block handle.
    put_u64s(&f.ram, ARG, &[1, BUF, 1514, 0x7777]);
    f.hvt.handle(7, ARG).unwrap();
    assert_eq!(ret_at(&f.ram, ARG + 24), result::EINVAL);
}

#[test]
fn test_calls_are_registered_per_device_kind() {
    let (_file, dev) = disk_fixture(512);
    let mut f = fixture(vec![None, Some(dev)]);
    for nr in [6, 7] {
        assert_eq!(
            f.hvt.handle(nr, ARG).unwrap_err().to_string(),
            format!("Invalid guest hypercall: num={nr}")
        );
    }
    let (mut f, _peer) = net_fixture();
    for nr in [4, 5] {
        assert_eq!(
            f.hvt.handle(nr, ARG).unwrap_err().to_string(),
            format!("Invalid guest hypercall: num={nr}")
        );
    }
}

#[test]
fn test_puts_of_nothing_and_of_a_long_string() {
    let mut f = fixture(vec![None]);
    put_u64s(&f.ram, ARG, &[BUF, 0]);
    f.hvt.handle(2, ARG).unwrap();
    assert!(f.console.0.lock().unwrap().is_empty());
    // Longer than the copy chunk: delivered whole and in order.
    let text: Vec<u8> = (0..200_000u32).map(|i| b'a' + u8::try_from(i % 26).unwrap()).collect();
    f.ram.write_slice(BUF, &text).unwrap();
    put_u64s(&f.ram, ARG, &[BUF, text.len() as u64]);
    f.hvt.handle(2, ARG).unwrap();
    assert!(*f.console.0.lock().unwrap() == text);
}

#[test]
fn test_poll_reports_only_the_readable_device() {
    let (a1, _p1) = UnixDatagram::pair().unwrap();
    let (a2, p2) = UnixDatagram::pair().unwrap();
    let tap = |s: UnixDatagram| Device::Net(Tap::from_file_for_tests(std::fs::File::from(std::os::fd::OwnedFd::from(s)), 1500));
    let (_file, dev) = disk_fixture(512);
    // Handles: 1 block, 2 and 3 net; only 3 has a frame waiting.
    let mut f = fixture(vec![None, Some(dev), Some(tap(a1)), Some(tap(a2))]);
    p2.send(&[1; 60]).unwrap();
    // The ready set names the readable device: the frame, not the timeout, ended the poll.
    put_u64s(&f.ram, ARG, &[1_000_000_000, 0, 0]);
    f.hvt.handle(3, ARG).unwrap();
    assert_eq!(f.ram.read_obj::<u64>(ARG + 8).unwrap(), 1 << 3);
    assert_eq!(ret_at(&f.ram, ARG + 16), 1);
    // The poll arg struct in read-only memory is a fault, not a crash.
    let mut ram = GuestRam::new(MEM).unwrap();
    ram.protect_read_only(0x10_0000, 0x1000).unwrap();
    let stop = EventFd::new(0).unwrap();
    let mut hvt = Hvt::new(
        ram,
        Devices::default(),
        Box::new(Console::default()),
        std::os::fd::AsRawFd::as_raw_fd(&stop),
    )
    .unwrap();
    assert!(hvt.handle(3, 0x10_0000).unwrap_err().to_string().contains("read-only"));
}
