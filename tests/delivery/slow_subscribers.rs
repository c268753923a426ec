//! A subscriber that does not keep up costs only itself: its messages are
//! dropped (or it is disconnected) while the others get everything; and the
//! max_subscribers limit turns extra connections away.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use notif::{Options, Publisher, SlowPolicy};

/// Emits `count` numbered messages (stream 0) while never getting more than
/// `window` messages ahead of the slowest of `progress`, so readers that do
/// read are never too slow.
pub fn emit_paced(
    publisher: &Publisher,
    count: u64,
    pad: usize,
    window: u64,
    progress: &[Arc<AtomicU64>],
) {
    for seq in 0..count {
        if seq % 64 == 0 {
            wait_until("the reading subscribers catch up", || {
                progress
                    .iter()
                    .all(|read| read.load(Ordering::Relaxed) + window >= seq)
            });
        }
        publisher.emit(&numbered(0, seq, pad)).unwrap();
    }
}

/// A reader thread that checks order and publishes its progress.
fn counting_reader(
    mut subscriber: RawReader,
    count: u64,
) -> (Arc<AtomicU64>, std::thread::JoinHandle<RawReader>) {
    let progress = Arc::new(AtomicU64::new(0));
    let shared = Arc::clone(&progress);
    let handle = std::thread::spawn(move || {
        for expected in 0..count {
            assert_eq!(
                parse_numbered(&subscriber.line()).1,
                expected,
                "lost or reordered"
            );
            shared.store(expected + 1, Ordering::Relaxed);
        }
        subscriber
    });
    (progress, handle)
}

#[test]
fn a_subscriber_that_never_reads_loses_messages_and_the_readers_get_all_of_them() {
    const MESSAGES: u64 = 20_000;
    let dir = TempDir::new("never_reads");
    let options = Options {
        subscriber_buffer: 256 * 1024,
        max_message: 4096,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let silent = RawReader::connect_to(&publisher, dir.socket(), 1);
    let (progress, readers): (Vec<_>, Vec<_>) = (2..=4)
        .map(|n| counting_reader(RawReader::connect_to(&publisher, dir.socket(), n), MESSAGES))
        .unzip();
    emit_paced(&publisher, MESSAGES, 200, 200, &progress);
    let readers: Vec<RawReader> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    // The silent one's buffer is full: everything beyond it was dropped.
    let stats = publisher.stats();
    assert_eq!(stats.subscribers, 4);
    assert_eq!(stats.fanout, 4 * MESSAGES);
    assert!(stats.dropped_slow > 0);
    assert!(stats.dropped_slow < MESSAGES);
    assert_eq!(stats.disconnected, 0);
    assert!(stats.delivered >= 3 * MESSAGES);
    // It reads what it was given: the oldest messages, in order, no gaps.
    let silent_lines = {
        let mut silent = silent;
        silent.set_read_timeout(Duration::from_millis(500));
        let mut lines = Vec::new();
        while let Ok(Some(line)) = silent.try_line() {
            lines.push(parse_numbered(&line).1);
        }
        lines
    };
    assert!(!silent_lines.is_empty());
    assert!(silent_lines
        .iter()
        .enumerate()
        .all(|(i, &seq)| seq == i as u64));
    assert_eq!(silent_lines.len() as u64 + stats.dropped_slow, MESSAGES);
    drop(readers);
    wait_for_subscribers(&publisher, 0);
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.delivered, 3 * MESSAGES + silent_lines.len() as u64);
    assert_eq!(stats.dropped_closed, 0);
}

#[test]
fn the_disconnect_policy_closes_a_slow_subscriber_and_spares_the_others() {
    const MESSAGES: u64 = 20_000;
    let dir = TempDir::new("disconnect");
    let options = Options {
        subscriber_buffer: 64 * 1024,
        max_message: 4096,
        slow_policy: SlowPolicy::Disconnect,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut slow = RawReader::connect_to(&publisher, dir.socket(), 1);
    let (progress, readers): (Vec<_>, Vec<_>) = (2..=3)
        .map(|n| counting_reader(RawReader::connect_to(&publisher, dir.socket(), n), MESSAGES))
        .unzip();
    // Pace for the readers only: the window still fits their buffers.
    emit_paced(&publisher, MESSAGES, 100, 100, &progress);
    let _readers: Vec<RawReader> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let stats = publisher.stats();
    assert_eq!(stats.disconnected, 1, "{stats:?}");
    // The slow one gets an in-order prefix of the stream, then EOF.
    // (The message being written when it was closed may arrive cut short.)
    let (lines, _tail) = slow.read_to_eof_with_tail();
    assert!(!lines.is_empty());
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(parse_numbered(line).1, i as u64);
    }
    wait_for_subscribers(&publisher, 2);
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.disconnected, 1);
    assert!(stats.dropped_slow > 0);
    assert!(stats.delivered >= 2 * MESSAGES + lines.len() as u64);
}

#[test]
fn the_subscriber_over_max_subscribers_is_accepted_then_closed() {
    let dir = TempDir::new("max_subscribers");
    let options = Options {
        max_subscribers: 2,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut first = RawReader::connect_to(&publisher, dir.socket(), 1);
    let second = RawReader::connect_to(&publisher, dir.socket(), 2);
    // The third is told why (after the grace a stats probe would have), then closed.
    let mut third = RawReader::connect(dir.socket());
    let refusal = String::from_utf8(third.line()).unwrap();
    assert!(
        refusal.starts_with(r#"{"notif":{"error":"#) && refusal.contains(r#""reason":"full""#),
        "{refusal}"
    );
    third.expect_eof();
    let stats = publisher.stats();
    assert_eq!(
        (
            stats.accepted,
            stats.refused,
            stats.disconnected,
            stats.subscribers
        ),
        (3, 1, 1, 2)
    );
    assert_eq!(publisher.emit(b"{\"n\":1}").unwrap(), 2);
    assert_eq!(first.line(), b"{\"n\":1}");
    // A slot freed is a slot for the next one.
    drop(second);
    wait_for_subscribers(&publisher, 1);
    let mut fourth = RawReader::connect_to(&publisher, dir.socket(), 2);
    assert_eq!(publisher.emit(b"{\"n\":2}").unwrap(), 2);
    assert_eq!(fourth.line(), b"{\"n\":2}");
    assert_eq!(first.line(), b"{\"n\":2}");
    let stats = wait_for_quiet(&publisher);
    assert_eq!(
        (stats.accepted, stats.refused, stats.disconnected),
        (4, 1, 1)
    );
}

#[test]
fn a_subscriber_that_falls_behind_then_catches_up_resumes_receiving() {
    let dir = TempDir::new("catch_up");
    let options = Options {
        subscriber_buffer: 64 * 1024,
        max_message: 4096,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    let nova = fixture("nova-instance-update.json");
    for _ in 0..1000 {
        publisher.emit(&nova).unwrap();
    }
    // The emitter may be far ahead of the server thread: wait for it.
    wait_until("1.6 MB overflows a 64 KiB buffer", || {
        publisher.stats().dropped_slow > 0
    });
    subscriber.set_read_timeout(Duration::from_millis(500));
    let mut kept = 0u64;
    while let Ok(Some(line)) = subscriber.try_line() {
        assert_eq!(line, nova);
        kept += 1;
    }
    let stats = wait_for_quiet(&publisher);
    assert_eq!(kept + stats.dropped_slow, 1000);
    subscriber.set_read_timeout(READ_TIMEOUT);
    publisher.emit(b"{\"again\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"again\":true}");
}

/// What the publisher holds queued for its only subscriber, from a stats
/// request (the stats answer lists every subscriber).
fn queued_bytes(dir: &TempDir) -> u64 {
    use std::io::{Read, Write};
    let mut stats = std::os::unix::net::UnixStream::connect(dir.socket()).unwrap();
    stats.write_all(b"{\"stats\":true}\n").unwrap();
    let mut answer = String::new();
    stats.read_to_string(&mut answer).unwrap();
    let answer: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    let list = answer["notif"]["stats"]["subscriber_list"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 1, "{answer}");
    list[0]["queued_bytes"].as_u64().unwrap()
}

/// Reads exactly `lines` lines from the socket itself (not through a buffer
/// that would empty the kernel's), checking their numbers from `first`.
fn read_exact_lines(stream: &std::os::unix::net::UnixStream, first: u64, lines: u64, pad: usize) {
    use std::io::Read;
    for seq in first..first + lines {
        let mut expected = numbered(0, seq, pad);
        expected.push(b'\n');
        let mut got = vec![0u8; expected.len()];
        (&*stream).read_exact(&mut got).unwrap();
        assert_eq!(got, expected, "line {seq}");
    }
}

#[test]
fn a_reader_whose_full_socket_was_partly_read_gets_the_next_burst_without_drops() {
    // The kernel wakes a writer (EPOLLOUT) only once at most a quarter of
    // the socket's buffer is in use; a reader that read less than that made
    // room all the same. The publisher must use that room when new
    // notifications need it, rather than wait for a wake-up that is not
    // coming: giving up dropped notifications for a reader that kept up.
    let dir = TempDir::new("partly_read");
    let mut options = Options::default();
    options.set_max_message(16 * 1024).unwrap();
    options.set_subscriber_buffer(64 * 1024).unwrap();
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    let stream = subscriber.stream();
    let pad = 1000;
    // A plain reader: past the publisher's hold on a silent peer.
    publisher.emit(&numbered(0, 0, pad)).unwrap();
    wait_until("the first delivery", || publisher.stats().delivered == 1);
    read_exact_lines(stream, 0, 1, pad);
    // Fill the kernel's buffer, and queue a few behind it.
    let mut seq = 1;
    loop {
        publisher.emit(&numbered(0, seq, pad)).unwrap();
        seq += 1;
        let stats = publisher.stats();
        if stats.delivered + 4 <= stats.emitted {
            break;
        }
        assert!(seq < 1000, "the kernel took everything: {stats:?}");
    }
    // Read a few lines: room in the kernel, but not enough for a wake-up.
    read_exact_lines(stream, 1, 4, pad);
    // Fill the publisher's queue (half of the 64 KiB buffer: the kernel has
    // the other half) to within 4 KiB of full, then 5 KiB more: that needs
    // some of the room the reader made (four lines, each one write).
    loop {
        // stats() lets the server thread take what was emitted first.
        publisher.stats();
        if queued_bytes(&dir) + 4 * 1024 >= 32 * 1024 {
            break;
        }
        publisher.emit(&numbered(0, seq, pad)).unwrap();
        seq += 1;
        assert!(seq < 1000);
    }
    for _ in 0..5 {
        publisher.emit(&numbered(0, seq, pad)).unwrap();
        seq += 1;
    }
    let stats = publisher.stats();
    assert_eq!(
        stats.dropped_slow, 0,
        "dropped for a reader with room: {stats:?}"
    );
    read_exact_lines(stream, 5, seq - 5, pad);
    let stats = wait_for_quiet(&publisher);
    assert_eq!((stats.delivered, stats.dropped_slow), (seq, 0), "{stats:?}");
}
