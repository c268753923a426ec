//! Closing a publisher: what is queued is flushed for up to `linger`, then
//! every subscriber sees the end of the stream; dropping closes too.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use notif::{Options, Publisher};

#[test]
fn close_flushes_a_burst_emitted_just_before_to_a_reading_subscriber() {
    const MESSAGES: u64 = 20_000;
    let dir = TempDir::new("flush");
    let options = Options {
        subscriber_buffer: 64 * 1024 * 1024,
        backlog: 64 * 1024 * 1024,
        linger: Duration::from_secs(20),
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    let reader = std::thread::spawn(move || {
        let mut subscriber = subscriber;
        subscriber.read_to_eof()
    });
    for seq in 0..MESSAGES {
        publisher.emit(&numbered(0, seq, 40)).unwrap();
    }
    let stats = publisher.close();
    let lines = reader.join().unwrap();
    assert_eq!(lines.len() as u64, MESSAGES);
    for (seq, line) in lines.iter().enumerate() {
        assert_eq!(parse_numbered(line).1, seq as u64);
    }
    assert_eq!(stats.emitted, MESSAGES);
    assert_eq!(stats.delivered, MESSAGES);
    assert_eq!(stats.dropped_closed, 0);
    assert_invariant(&stats);
    assert!(!dir.socket().exists());
}

#[test]
fn linger_bounds_how_long_close_waits_for_a_subscriber_that_never_reads() {
    let dir = TempDir::new("linger");
    let options = Options {
        linger: Duration::from_millis(200),
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut silent = RawReader::connect_to(&publisher, dir.socket(), 1);
    let nova = fixture("nova-instance-update.json");
    // More than the kernel takes: the rest waits in the publisher's queue.
    for _ in 0..2000 {
        publisher.emit(&nova).unwrap();
    }
    let started = Instant::now();
    let stats = publisher.close();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "close took {took:?} with a 200 ms linger"
    );
    assert!(stats.dropped_closed > 0, "{stats:?}");
    assert_invariant(&stats);
    assert_eq!(stats.emitted, 2000);
    // What the kernel had is still readable, then the stream ends, possibly
    // after part of the message that was being written when linger ran out.
    let (lines, tail) = silent.read_to_eof_with_tail();
    assert_eq!(lines.len() as u64, stats.delivered);
    assert!(lines.iter().all(|line| *line == nova));
    assert!(nova.starts_with(&tail));
}

#[test]
fn a_zero_linger_closes_at_once() {
    let dir = TempDir::new("zero_linger");
    let options = Options {
        linger: Duration::ZERO,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut silent = RawReader::connect_to(&publisher, dir.socket(), 1);
    for _ in 0..2000 {
        publisher
            .emit(&fixture("nova-instance-update.json"))
            .unwrap();
    }
    let started = Instant::now();
    let stats = publisher.close();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_invariant(&stats);
    let (lines, _tail) = silent.read_to_eof_with_tail();
    assert_eq!(lines.len() as u64, stats.delivered);
}

#[test]
fn dropping_the_publisher_closes_it() {
    let (dir, publisher, mut subscriber) = publisher_and_reader("drop");
    publisher.emit(b"{\"last\":true}").unwrap();
    drop(publisher);
    assert!(!dir.socket().exists());
    assert_eq!(subscriber.read_to_eof(), vec![b"{\"last\":true}".to_vec()]);
    assert!(std::os::unix::net::UnixStream::connect(dir.socket()).is_err());
}

#[test]
fn close_returns_the_final_counters() {
    let (dir, publisher) = open_publisher("final_stats");
    publisher.emit(b"{\"nobody\":1}").unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    publisher.emit(b"{\"a\":1}").unwrap();
    publisher.emit(b"{\"b\":2}").unwrap();
    publisher.emit(b"[]").unwrap_err();
    let stats = publisher.close();
    assert_eq!(stats.emitted, 2);
    assert_eq!(stats.delivered, 2);
    assert_eq!(stats.dropped_no_subscriber, 1);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.subscribers, 0);
    assert_eq!(stats.bytes_sent, 16);
    assert_invariant(&stats);
    assert_eq!(subscriber.read_to_eof().len(), 2);
}

#[test]
fn close_with_many_subscribers_ends_every_stream() {
    let (dir, publisher) = open_publisher("many_eof");
    let mut subscribers: Vec<_> = (1..=20)
        .map(|n| RawReader::connect_to(&publisher, dir.socket(), n))
        .collect();
    publisher.emit(b"{\"bye\":true}").unwrap();
    let stats = publisher.close();
    assert_eq!(stats.delivered, 20);
    for subscriber in &mut subscribers {
        assert_eq!(subscriber.read_to_eof(), vec![b"{\"bye\":true}".to_vec()]);
    }
}
