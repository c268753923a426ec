//! The socket file's mode is the one asked for, whatever the process umask.
//! The umask is process-wide, so this file's tests take a lock around it.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use common::*;
use notif::{Options, Publisher};

static UMASK: Mutex<()> = Mutex::new(());

/// Runs `f` with the process umask set to `mask`, restoring it afterwards.
fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    let _guard = UMASK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: umask cannot fail.
    let previous = unsafe { libc::umask(mask) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn mode_of_socket(umask: libc::mode_t, mode: u32) -> u32 {
    let dir = TempDir::new("mode");
    let options = Options {
        mode,
        ..Options::default()
    };
    with_umask(umask, || {
        let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
        let got = std::fs::symlink_metadata(dir.socket()).unwrap().mode() & 0o7777;
        publisher.close();
        got
    })
}

#[test]
fn the_default_mode_is_0600_under_any_umask() {
    isolated!();
    for umask in [0o000, 0o022, 0o077, 0o777] {
        assert_eq!(
            mode_of_socket(umask, Options::default().mode),
            0o600,
            "umask {umask:o}"
        );
    }
}

#[test]
fn a_restrictive_umask_does_not_take_away_bits_that_were_asked_for() {
    isolated!();
    for mode in [0o666, 0o660, 0o777, 0o640] {
        assert_eq!(mode_of_socket(0o077, mode), mode, "mode {mode:o}");
        assert_eq!(mode_of_socket(0o777, mode), mode, "mode {mode:o}");
    }
}

#[test]
fn a_permissive_umask_does_not_add_bits_that_were_not_asked_for() {
    isolated!();
    for mode in [0o600, 0o660, 0o000, 0o400] {
        assert_eq!(mode_of_socket(0o000, mode), mode, "mode {mode:o}");
    }
}
