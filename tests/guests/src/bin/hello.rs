//! The example unikernel: greets, echoes its command line, and does what the command line asks:
//! `exit=N`, `abort`, `walltime`, `sleep=MS`, `meminfo`, `puts-nul`, `ticks=N` (prints `tick: I`
//! for I = 1..=N, one every 100 ms by POLL: a guest whose progress can be watched).
#![no_std]
#![no_main]

use unik_test_guests::{BootInfo, arg, entry, flag, parse_u64, println, solo5_notes};

solo5_notes!();
entry!(main);

fn main(bi: &BootInfo, cmdline: &str) -> i32 {
    println!("Hello, world");
    println!("cmdline: {}", cmdline);
    if flag(cmdline, "walltime") {
        println!("walltime: {}", unik_test_guests::walltime());
    }
    if flag(cmdline, "meminfo") {
        println!("mem_size: {}", bi.mem_size);
        println!("kernel_end: {}", bi.kernel_end);
        println!("cpu_cycle_freq: {}", bi.cpu_cycle_freq);
    }
    if let Some(ms) = arg(cmdline, "sleep").and_then(parse_u64) {
        let t0 = unik_test_guests::cycles();
        unik_test_guests::poll(ms * 1_000_000);
        let t1 = unik_test_guests::cycles();
        println!("slept_ns: {}", unik_test_guests::tsc_ns(bi, t0, t1));
    }
    if let Some(n) = arg(cmdline, "ticks").and_then(parse_u64) {
        for i in 1..=n {
            unik_test_guests::poll(100_000_000);
            println!("tick: {}", i);
        }
    }
    if flag(cmdline, "puts-nul") {
        unik_test_guests::puts(b"nul:\0:end\n");
    }
    if flag(cmdline, "abort") {
        println!("ABORT: requested");
        return 255;
    }
    match arg(cmdline, "exit").and_then(parse_u64) {
        Some(n) => n as i32,
        None => 0,
    }
}
