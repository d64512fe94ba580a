//! SIGTERM/SIGINT set a flag that the main loop polls (std has no signal API; libc's
//! `signal` is linked anyway, so no crate is needed).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

extern "C" fn on_signal(_: i32) {
    // Only an atomic store: the one thing that is safe in a signal handler.
    STOP.store(true, Ordering::SeqCst);
}

/// Install the handlers. As PID 1 in a container, SIGTERM is ignored unless handled.
pub fn install() {
    // SAFETY: `on_signal` is async-signal-safe (a single atomic store).
    unsafe {
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
