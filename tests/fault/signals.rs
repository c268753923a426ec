//! Fault: signals delivered to the emitting threads at a high rate, with a
//! handler installed WITHOUT SA_RESTART (so any interrupted system call would
//! fail with EINTR). Every emit must still return a valid result (a count, or
//! EAGAIN when the backlog is full, retried), EINTR never leaks out, and the
//! subscribers that keep up get every message of every thread, in order.
//!
//! One test in its own binary: it counts the process's descriptors and threads,
//! and installs a process-wide signal handler.

use crate::common;
use crate::common::faults;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use faults::*;

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

fn install_handler_without_restart(signal: libc::c_int) {
    // SAFETY: a zeroed sigaction is valid; the handler only touches an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0; // no SA_RESTART
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(signal, &action, std::ptr::null_mut()),
            0,
            "sigaction: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn emitting_threads_hit_by_signals_lose_nothing_and_never_see_eintr() {
    const EMITTERS: usize = 4;
    isolated!();
    let storm = scaled(Duration::from_secs(2), Duration::from_secs(10));
    install_handler_without_restart(libc::SIGUSR1);
    let options = fault_options(1024 * 1024);
    let (dir, baseline, memory, publisher) = open_watched("signals", &options);
    let (readers, pacer, stop) = steady_paced(&publisher, &dir, EMITTERS, 2000);
    let emitting: Mutex<Vec<libc::pthread_t>> = Mutex::new(Vec::new());
    let mut signals_sent = 0u64;
    let sent: Vec<u64> = std::thread::scope(|scope| {
        let emitters: Vec<_> = (0..EMITTERS)
            .map(|stream| {
                let (publisher, pacer, stop, emitting) = (&publisher, &pacer, &stop, &emitting);
                scope.spawn(move || {
                    // SAFETY: pthread_self has no preconditions.
                    emitting
                        .lock()
                        .unwrap()
                        .push(unsafe { libc::pthread_self() });
                    emit_stream_until(publisher, pacer, stream, 50, stop)
                })
            })
            .collect();
        wait_until("every emitter is running", || {
            emitting.lock().unwrap().len() == EMITTERS
        });
        let threads = emitting.lock().unwrap().clone();
        let started = Instant::now();
        while started.elapsed() < storm {
            for &thread in &threads {
                // SAFETY: the emitters run until `stop`, which is set only
                // after the last pthread_kill: every thread id is alive.
                let rc = unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
                assert_eq!(rc, 0, "pthread_kill");
                signals_sent += 1;
            }
            if signals_sent % 256 == 0 {
                std::thread::yield_now();
            }
        }
        stop.store(true, Ordering::Relaxed);
        emitters.into_iter().map(|e| e.join().unwrap()).collect()
    });
    let (subscribers, counts) = join_all(readers);
    for counts in counts {
        assert_eq!(counts, sent, "a subscriber missed messages");
    }
    let handled = HANDLED.load(Ordering::Relaxed);
    assert!(
        handled >= 100,
        "only {handled} of {signals_sent} signals were handled: the storm did not happen"
    );
    let expect = Expect::watched(&baseline, &options, 2, memory);
    let stats = check_invariants(&publisher, &expect);
    assert_eq!(stats.dropped_slow + stats.dropped_closed, 0, "{stats:?}");
    eprintln!(
        "signals: {handled} handled ({signals_sent} sent) while {} threads emitted {sent:?}; {stats:?}",
        EMITTERS
    );
    close_and_check(publisher, subscribers, &baseline);
}
