//! `notif tail --cursor-file`: SIGINT, SIGTERM and SIGHUP (Ctrl-C, `kill`,
//! `timeout`, systemd's stop) end tail cleanly, so that the cursor file names
//! exactly the last notification printed and the next run repeats nothing.
//!
//! The handler only records the signal and restores its default action, so
//! a second one ends tail at once. The main loop sees the record within
//! [`POLL`], saves, and raises the signal again: the exit status still says
//! "killed by SIGTERM" to whoever waits for it. Should the main loop be stuck
//! (a write to a stdout nobody reads), a watchdog raises it after [`GRACE`]
//! without saving: one signal always ends tail.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How often the main loop looks for a signal while it waits.
pub const POLL: Duration = Duration::from_millis(100);
/// How long the main loop has to save and go after a signal.
pub const GRACE: Duration = Duration::from_secs(2);

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Async-signal-safe only: an atomic store and signal(2).
    RECEIVED.store(signal, Ordering::SeqCst);
    // SAFETY: resetting a disposition is async-signal-safe.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP, except where the
/// signal is ignored (`nohup`, a shell's background job).
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction with a handler that only does async-signal-safe
        // work; the old action is only read.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    let _ = std::thread::Builder::new()
        .name("notif-signal".into())
        .spawn(|| loop {
            std::thread::sleep(POLL);
            if let Some(signal) = received() {
                std::thread::sleep(GRACE);
                raise_again(signal);
            }
        });
}

/// The signal received, if any.
pub fn received() -> Option<libc::c_int> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Ends the process with `signal`, as its default action would have.
pub fn raise_again(signal: libc::c_int) -> ! {
    // SAFETY: plain calls; the default action of these signals ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    // Not reached for these signals; exit as a shell reports them otherwise.
    std::process::exit(128 + signal)
}
