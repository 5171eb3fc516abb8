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
fn test_unknown_hypercall_is_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-hypercall"), 1, "Invalid guest hypercall: num=");
}

#[test]
fn test_wrong_width_and_port_are_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-width"), 1, "Invalid guest port access");
    assert_fails_with(&fault("bad-port"), 1, "Invalid guest port access: port=0x7000");
}

#[test]
fn test_triple_fault_and_hlt_are_unhandled_exits() {
    require_kvm!();
    assert_fails_with(&fault("triple-fault"), 1, "KVM: unhandled exit");
    assert_fails_with(&fault("hlt"), 1, "KVM: unhandled exit");
}

#[test]
fn test_halt_cookie_outside_ram_is_refused() {
    require_kvm!();
    assert_fails_with(&fault("bad-cookie"), 1, "Invalid guest access: gpa=");
}
