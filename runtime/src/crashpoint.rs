//! Named points in `create` and `start` where a test can stop the process, to kill it exactly
//! there: `UNIK_TEST_STOP_AT=<point>` makes the process stop itself (SIGSTOP) on reaching
//! `<point>`; the test sees it stopped (`waitpid(WUNTRACED)`), SIGKILLs it and checks that what
//! is left is consistent. Only tests set the variable; without it a point costs one lookup.
//!
//! Points: `create:reported` (the monitor reported its VM built; nothing recorded yet),
//! `create:recorded` (state.json says created; the monitor not yet told), `start:opened` (the
//! start gate is open; nothing recorded yet), `start:recorded` (the gate is gone and state.json
//! says running; the monitor not yet released).

/// The environment variable naming the point to stop at.
pub const STOP_AT: &str = "UNIK_TEST_STOP_AT";

/// Stops this process (SIGSTOP) if [`STOP_AT`] names `point`.
pub fn reached(point: &str) {
    if std::env::var_os(STOP_AT).is_some_and(|p| p == point) {
        // SAFETY: raise(3) stops this process until a SIGCONT or SIGKILL arrives.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}
