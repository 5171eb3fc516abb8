//! Guest misbehaviour stops the VM with status 1 and a clear message, never a crash.

#![allow(clippy::tests_outside_test_module)] // an integration test crate is a test module

mod common;

use common::assert_fails_with;
use common::guests::guest;

fn fault(what: &str) -> std::process::Output {
    let kernel = guest("faults");
    common::boot(&["--mem=8", kernel.to_str().unwrap(), what])
}

#[test]
fn test_write_to_own_text_is_a_translation_fault() {
    require_kvm!();
    assert_fails_with(&fault("write-text"), 1, "host/guest translation fault");
}

#[test]
fn test_out_of_range_pointer_is_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-pointer"), 1, "Invalid guest access: gpa=");
}

#[test]
fn test_buffer_ending_exactly_at_the_end_of_ram_is_refused() {
    require_kvm!();
    assert_fails_with(
        &fault("bad-pointer-end"),
        1,
        &format!("Invalid guest access: gpa={:#x}, sz=16", (8 << 20) - 16),
    );
}

#[test]
fn test_argument_struct_outside_ram_is_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-arg"), 1, "Invalid guest access: gpa=0xfffffff0");
}

/// The error of an access to the hypercall transport that is no hypercall: slot `nr` (0x500 + nr
/// on x86_64's ports), `size` bytes wide.
#[cfg(target_arch = "x86_64")]
fn bad_slot(nr: u64, size: usize) -> String {
    format!("Invalid guest port access: port={:#x}, size={size}", 0x500 + nr)
}

/// The error of an access to the hypercall transport that is no hypercall: slot `nr`
/// (0x1_0000_0000 + (nr << 3) on aarch64's MMIO window), `size` bytes wide.
#[cfg(target_arch = "aarch64")]
fn bad_slot(nr: u64, size: usize) -> String {
    format!("Invalid guest mmio access: addr={:#x}, size={size}", 0x1_0000_0000 + (nr << 3))
}

#[test]
fn test_unknown_hypercall_is_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-hypercall"), 1, "Invalid guest hypercall: num=0");
    assert_fails_with(&fault("bad-hypercall-max"), 1, &bad_slot(9, 4));
}

#[test]
fn test_wrong_width_and_port_are_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-width"), 1, &bad_slot(2, 1));
    assert_fails_with(&fault("bad-width-16"), 1, &bad_slot(2, 2));
    // Where no hypercall slot is: a port no device owns, or device memory past the window.
    let stray = if cfg!(target_arch = "x86_64") {
        "Invalid guest port access: port=0x7000, size=4"
    } else {
        "Invalid guest mmio access: addr=0x100001000, size=4"
    };
    assert_fails_with(&fault("bad-port"), 1, stray);
}

// On aarch64 neither reaches the monitor: an exception with no vector table loops in the guest,
// and `wfi` waits in KVM (tests/guests/src/bin/faults.rs).
#[cfg(target_arch = "x86_64")]
#[test]
fn test_triple_fault_and_hlt_are_unhandled_exits() {
    require_kvm!();
    assert_fails_with(&fault("triple-fault"), 1, "KVM: unhandled exit");
    assert_fails_with(&fault("hlt"), 1, "KVM: unhandled exit");
}

#[test]
fn test_a_well_behaved_run_of_the_fault_guest_exits_normally() {
    require_kvm!();
    let out = fault("nothing");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", common::stderr(&out));
    assert!(common::stdout(&out).contains("faults: still running"));
}

#[test]
fn test_halt_cookie_outside_ram_is_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-cookie"), 1, "Invalid guest access: gpa=");
}
