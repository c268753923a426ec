//! A subscriber that never reads bounds the publisher's memory at its buffer
//! limit, however much is emitted. One test in its own binary: it measures the
//! whole process's resident memory.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use notif::{Options, Publisher};

#[test]
fn a_subscriber_that_never_reads_does_not_make_memory_grow_with_the_volume_emitted() {
    const SUBSCRIBER_BUFFER: usize = 1024 * 1024;
    const VOLUME: u64 = 300 * 1024 * 1024;
    isolated!();
    let dir = TempDir::new("memory");
    let options = Options {
        subscriber_buffer: SUBSCRIBER_BUFFER,
        backlog: 4 * 1024 * 1024,
        max_message: 64 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let silent = RawReader::connect_to(&publisher, dir.socket(), 1);
    let line = fixture("nova-instance-update.json");
    let per_message = line.len() as u64 + 1;
    let messages = VOLUME / per_message;
    let readers: Vec<_> = (2..=4)
        .map(|n| {
            let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), n);
            let progress = Arc::new(AtomicU64::new(0));
            let shared = Arc::clone(&progress);
            let expected = line.clone();
            let handle = std::thread::spawn(move || {
                for read in 1..=messages {
                    assert!(subscriber.line() == expected, "a reader got a wrong line");
                    if read % 64 == 0 || read == messages {
                        shared.store(read, Ordering::Relaxed);
                    }
                }
                subscriber
            });
            (progress, handle)
        })
        .collect();
    let window = (SUBSCRIBER_BUFFER as u64 / 4) / per_message;
    let mut baseline = None;
    for sent in 0..messages {
        if sent % 64 == 0 {
            wait_until("the readers catch up", || {
                readers
                    .iter()
                    .all(|(read, _)| read.load(Ordering::Relaxed) + window >= sent)
            });
        }
        // Measure once every buffer is full and everything has warmed up.
        if sent == messages / 10 {
            baseline = Some(resident_bytes());
        }
        publisher.emit(&line).unwrap();
    }
    let _readers: Vec<RawReader> = readers
        .into_iter()
        .map(|(_, h)| h.join().unwrap())
        .collect();
    let grown = resident_bytes().saturating_sub(baseline.unwrap());
    let stats = publisher.stats();
    assert!(stats.dropped_slow > messages / 2, "{stats:?}");
    // Four subscribers' limits, the backlog twice over: anything near the
    // 270 MB that went by the silent subscriber would be a leak.
    let allowance = 8 * SUBSCRIBER_BUFFER as u64 + 2 * options.backlog as u64;
    assert!(
        grown <= allowance,
        "resident memory grew by {grown} bytes (allowed {allowance}) over {messages} messages"
    );
    drop(silent);
    wait_for_subscribers(&publisher, 3);
    wait_for_quiet(&publisher);
}
