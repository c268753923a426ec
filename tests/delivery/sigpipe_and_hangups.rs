//! Subscribers that vanish mid-stream never raise SIGPIPE in the host, even
//! with SIGPIPE at its default disposition (which kills the process), and
//! what they had not received is counted in dropped_closed.
//!
//! The Rust runtime ignores SIGPIPE before main; a C daemon usually does not.
//! This binary puts SIGPIPE back to SIG_DFL as a C host would have it, checks
//! that through sigaction, and checks the library left it so.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use notif::{Options, Publisher};

fn sigpipe_disposition() -> libc::sighandler_t {
    // SAFETY: querying only (act is null); old is a live sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old),
            0
        );
        old.sa_sigaction
    }
}

fn default_sigpipe_like_a_c_host() {
    // SAFETY: setting the default disposition of SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_eq!(sigpipe_disposition(), libc::SIG_DFL);
}

#[test]
fn subscribers_vanishing_during_heavy_emission_neither_kill_the_host_nor_disturb_the_others() {
    isolated!();
    default_sigpipe_like_a_c_host();
    const MESSAGES: u64 = 30_000;
    let dir = TempDir::new("vanish");
    let options = Options {
        subscriber_buffer: 128 * 1024 * 1024,
        backlog: 128 * 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let nova = fixture("nova-instance-update.json");

    // The one that stays reads everything.
    let staying = RawReader::connect_to(&publisher, dir.socket(), 1);
    let expected = nova.clone();
    let stayer = std::thread::spawn(move || {
        let mut staying = staying;
        for _ in 0..MESSAGES {
            assert!(
                staying.line() == expected,
                "the staying subscriber got a wrong line"
            );
        }
        staying
    });
    // Silent ones that hang up with unread data (the kernel answers with a reset),
    // and readers that read a little and then hang up.
    let mut silent: Vec<RawReader> = (2..=4)
        .map(|n| RawReader::connect_to(&publisher, dir.socket(), n))
        .collect();
    let read_by_quitters = Arc::new(AtomicU64::new(0));
    let quitters: Vec<_> = (5..=7)
        .map(|n| {
            let mut quitter = RawReader::connect_to(&publisher, dir.socket(), n);
            let read = Arc::clone(&read_by_quitters);
            std::thread::spawn(move || {
                for _ in 0..(n * 1000) {
                    quitter.line();
                    read.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for seq in 0..MESSAGES {
        if seq > 0 && seq % (MESSAGES / 4) == 0 {
            drop(silent.pop());
        }
        publisher.emit(&nova).unwrap();
    }
    for quitter in quitters {
        quitter.join().unwrap();
    }
    let _staying = stayer.join().expect("the staying subscriber lost messages");
    wait_for_subscribers(&publisher, 1);
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.emitted, MESSAGES);
    assert_eq!(stats.dropped_slow, 0);
    assert!(stats.dropped_closed > 0, "{stats:?}");
    assert!(stats.delivered >= MESSAGES + read_by_quitters.load(Ordering::Relaxed));
    assert_eq!(
        stats.disconnected, 0,
        "hang-ups are not disconnections by us"
    );
    assert_eq!(
        sigpipe_disposition(),
        libc::SIG_DFL,
        "the library changed SIGPIPE"
    );
}

#[test]
fn a_subscriber_that_hangs_up_before_anything_is_sent_costs_nothing() {
    isolated!();
    default_sigpipe_like_a_c_host();
    let (dir, publisher, mut staying) = publisher_and_reader("instant_hangup");
    for round in 0..50u64 {
        let gone = RawReader::connect_to(&publisher, dir.socket(), 2);
        drop(gone);
        // Emit at once, possibly before the publisher noticed the hang-up.
        publisher.emit(&numbered(0, round, 100)).unwrap();
        wait_for_subscribers(&publisher, 1);
    }
    for round in 0..50u64 {
        assert_eq!(parse_numbered(&staying.line()).1, round);
    }
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.accepted, 51);
    assert_eq!(stats.delivered + stats.dropped_closed, stats.fanout);
    assert_eq!(sigpipe_disposition(), libc::SIG_DFL);
}
