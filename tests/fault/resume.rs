//! Resume without loss (issue 13): a publisher with a replay ring numbers its
//! notifications; a subscriber that knows the cursor of the last one it got
//! resumes right after it, from another process, after a restart of its own
//! or after being disconnected, and gets every notification exactly once, in
//! order. What the ring no longer holds, or a cursor of an earlier open, is
//! reported as a drop before the stream goes on.

use crate::common;
use crate::common::faults;

use std::time::{Duration, Instant};

use common::*;
use faults::*;
use notif::{Event, Options, Publisher, SlowPolicy, SubscribeOptions};

const RING: usize = 8 * 1024 * 1024;

fn ring_options() -> Options {
    Options {
        replay: RING,
        ..Options::default()
    }
}

/// A cursor-reader child: reads `count` notifications (after `after`, with
/// `event_types` if given) and returns (the lines, the drop reports, its cursor).
fn read_in_child(
    test: &str,
    path: &std::path::Path,
    count: u64,
    after: Option<&str>,
    event_types: Option<&str>,
) -> (Vec<Vec<u8>>, Vec<String>, String) {
    let mut env = vec![
        ("NOTIF_FAULT_PATH", path.display().to_string()),
        ("NOTIF_FAULT_COUNT", count.to_string()),
    ];
    if let Some(after) = after {
        env.push(("NOTIF_FAULT_AFTER", after.to_string()));
    }
    if let Some(globs) = event_types {
        env.push(("NOTIF_FAULT_EVENT_TYPES", globs.to_string()));
    }
    let mut child = spawn_role(test, "cursor-reader", &env);
    let (mut lines, mut drops) = (Vec::new(), Vec::new());
    loop {
        let line = child.expect_line("the reader's next line");
        if let Some(cursor) = line.strip_prefix(b"@ cursor ") {
            let cursor = String::from_utf8(cursor.to_vec()).unwrap();
            assert!(child.wait_exit(PATIENCE).is_some_and(|s| s.success()));
            return (lines, drops, cursor);
        }
        if let Some(report) = line.strip_prefix(b"@ ") {
            drops.push(String::from_utf8(report.to_vec()).unwrap());
            continue;
        }
        lines.push(line);
    }
}

fn numbered_event(seq: u64) -> Vec<u8> {
    let kind = if seq % 3 == 0 {
        "compute.tick"
    } else {
        "image.tick"
    };
    format!("{{\"event_type\":\"{kind}\",\"stream\":0,\"seq\":{seq},\"pad\":\"x\"}}").into_bytes()
}

/// Waits until the server thread has numbered `n` notifications in all.
fn wait_numbered(publisher: &Publisher, n: u64) -> notif::Stats {
    let mut last = publisher.stats();
    wait_until(&format!("{n} notifications numbered"), || {
        last = publisher.stats();
        last.next_seq == n
    });
    last
}

fn emit_range(publisher: &Publisher, range: std::ops::Range<u64>) {
    for seq in range {
        emit_retrying(publisher, &numbered_event(seq));
    }
}

#[test]
fn a_new_process_resumes_exactly_after_the_cursor_of_the_last() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_new_process_resumes_exactly_after_the_cursor_of_the_last"
    );
    role_hook();
    let dir = TempDir::new("resume_process");
    let publisher = Publisher::open_with(dir.socket(), &ring_options()).unwrap();
    // The first reader: 1,000 of a numbered stream, then its cursor.
    let path = dir.socket();
    let first = std::thread::spawn(move || read_in_child(TEST, &path, 1000, None, None));
    wait_for_subscribers(&publisher, 1);
    emit_range(&publisher, 0..1000);
    let (lines, drops, cursor) = first.join().unwrap();
    assert!(drops.is_empty(), "{drops:?}");
    let seqs: Vec<u64> = lines.iter().map(|l| parse_numbered(l).1).collect();
    assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
    wait_for_subscribers(&publisher, 0);
    // Nobody listens while 5,000 more go by; the ring keeps them.
    emit_range(&publisher, 1000..6000);
    // Kept in the ring for whoever resumes, not dropped.
    let stats = wait_numbered(&publisher, 6000);
    assert_eq!(stats.kept_no_subscriber, 5000, "{stats:?}");
    assert_eq!(stats.dropped_no_subscriber, 0, "{stats:?}");
    // A new process resumes: exactly the next ones, then live.
    let path = dir.socket();
    let after = cursor.clone();
    let second = std::thread::spawn(move || read_in_child(TEST, &path, 6000, Some(&after), None));
    wait_for_subscribers(&publisher, 1);
    emit_range(&publisher, 6000..7000);
    let (lines, drops, last) = second.join().unwrap();
    assert!(
        drops.is_empty(),
        "a resume the ring covers misses nothing: {drops:?}"
    );
    let seqs: Vec<u64> = lines.iter().map(|l| parse_numbered(l).1).collect();
    assert_eq!(
        seqs,
        (1000..7000).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_ne!(last, cursor);
    let stats = wait_for_quiet(&publisher);
    assert!(stats.replayed >= 5000, "{stats:?}");
    assert!(stats.replay_bytes as usize <= RING, "{stats:?}");
    assert_eq!(stats.next_seq, 7000);
}

#[test]
fn a_filtered_process_resumes_after_its_cursor_with_only_what_passes() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_filtered_process_resumes_after_its_cursor_with_only_what_passes"
    );
    role_hook();
    let dir = TempDir::new("resume_filtered");
    let publisher = Publisher::open_with(dir.socket(), &ring_options()).unwrap();
    let path = dir.socket();
    // compute.tick is every third notification.
    let first =
        std::thread::spawn(move || read_in_child(TEST, &path, 334, None, Some("compute.*")));
    wait_for_subscribers(&publisher, 1);
    emit_range(&publisher, 0..1000);
    let (lines, _, cursor) = first.join().unwrap();
    let seqs: Vec<u64> = lines.iter().map(|l| parse_numbered(l).1).collect();
    assert_eq!(seqs, (0..1000).step_by(3).collect::<Vec<_>>());
    wait_for_subscribers(&publisher, 0);
    emit_range(&publisher, 1000..6000);
    wait_numbered(&publisher, 6000);
    let path = dir.socket();
    let second = std::thread::spawn(move || {
        read_in_child(TEST, &path, 2000, Some(&cursor), Some("compute.*"))
    });
    wait_for_subscribers(&publisher, 1);
    emit_range(&publisher, 6000..7000);
    let (lines, drops, _) = second.join().unwrap();
    assert!(drops.is_empty(), "{drops:?}");
    let seqs: Vec<u64> = lines.iter().map(|l| parse_numbered(l).1).collect();
    assert_eq!(seqs, (1002..7000).step_by(3).collect::<Vec<_>>());
}

#[test]
fn a_slow_subscriber_disconnected_again_and_again_misses_nothing() {
    let count: u64 = scaled(100_000, 300_000);
    let dir = TempDir::new("resume_slow");
    let options = Options {
        replay: 32 * 1024 * 1024,
        memory_limit: 128 * 1024 * 1024,
        subscriber_buffer: 64 * 1024,
        max_message: 4096,
        slow_policy: SlowPolicy::Disconnect,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut subscriber =
        notif::Subscriber::connect(dir.socket(), SubscribeOptions::default()).unwrap();
    wait_for_subscribers(&publisher, 1);
    let reader = std::thread::spawn(move || {
        let mut next = 0u64;
        let mut reconnects = 0;
        let give_up = Instant::now() + Duration::from_secs(120);
        while next < count {
            assert!(Instant::now() < give_up, "stuck at {next}");
            match subscriber.recv(Some(Duration::from_secs(30))).unwrap() {
                Event::Notification(line) => {
                    let (_, seq) = parse_numbered(line);
                    assert_eq!(
                        seq, next,
                        "lost or repeated after {reconnects} reconnections"
                    );
                    next += 1;
                    // Read slowly now and then, so that the publisher gives up on us.
                    if next % 1000 == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Event::Reconnected => reconnects += 1,
                Event::Dropped(n) => panic!("{n} dropped at {next}"),
                Event::DroppedUnknown => panic!("an unknown number dropped at {next}"),
                Event::Timeout => panic!("nothing for 30 s at {next}"),
            }
        }
        reconnects
    });
    // A little faster than the reader takes them, all along: it keeps
    // falling behind, is let go, and resumes, again and again.
    for start in (0..count).step_by(1000) {
        emit_range(&publisher, start..(start + 1000).min(count));
        std::thread::sleep(Duration::from_millis(40));
    }
    let reconnects = reader
        .join()
        .expect("every notification exactly once, in order");
    let stats = publisher.stats();
    eprintln!(
        "{count} notifications, {reconnects} reconnections, {} disconnects, {} replayed",
        stats.disconnected, stats.replayed
    );
    assert!(
        reconnects >= 2,
        "the subscriber was never disconnected: {stats:?}"
    );
    assert!(stats.replayed > 0);
}

#[test]
fn a_cursor_older_than_the_ring_or_of_another_open_says_what_is_missing() {
    let dir = TempDir::new("resume_gone");
    let options = Options {
        replay: 64 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut early = notif::Subscriber::connect(dir.socket(), SubscribeOptions::default()).unwrap();
    wait_for_subscribers(&publisher, 1);
    emit_range(&publisher, 0..11);
    for _ in 0..11 {
        match early.recv(Some(PATIENCE)).unwrap() {
            Event::Notification(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let cursor = early.cursor().expect("a cursor after 11 notifications");
    drop(early);
    wait_for_subscribers(&publisher, 0);
    emit_range(&publisher, 11..5000);
    let stats = wait_numbered(&publisher, 5000);
    assert!(stats.replay_bytes as usize <= 64 * 1024, "{stats:?}");
    let oldest = stats.replay_oldest;
    assert!(
        oldest > 11,
        "the ring should have let the oldest go: {stats:?}"
    );
    // Older than the ring: the count of what is gone, then the rest.
    let mut late = notif::Subscriber::connect(
        dir.socket(),
        SubscribeOptions {
            after: Some(cursor.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        late.recv(Some(PATIENCE)).unwrap(),
        Event::Dropped(oldest - 11)
    );
    let mut expected = oldest;
    while expected < 5000 {
        match late.recv(Some(PATIENCE)).unwrap() {
            Event::Notification(line) => assert_eq!(parse_numbered(line).1, expected),
            other => panic!("{other:?} at {expected}"),
        }
        expected += 1;
    }
    // A cursor of an earlier open (another epoch): unknown, then the whole ring.
    drop(late);
    publisher.close();
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    emit_range(&publisher, 0..10);
    wait_numbered(&publisher, 10);
    let mut restarted = notif::Subscriber::connect(
        dir.socket(),
        SubscribeOptions {
            after: Some(cursor),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        restarted.recv(Some(PATIENCE)).unwrap(),
        Event::DroppedUnknown
    );
    for expected in 0..10 {
        match restarted.recv(Some(PATIENCE)).unwrap() {
            Event::Notification(line) => assert_eq!(parse_numbered(line).1, expected),
            other => panic!("{other:?} at {expected}"),
        }
    }
    // A malformed cursor, and one from the future, are refused.
    for bad in ["nonsense", &format!("{:016x}-99999", publisher.epoch())] {
        let mut stream = RawReader::connect(dir.socket());
        stream
            .write_all(format!("{{\"after\":\"{bad}\"}}\n").as_bytes())
            .unwrap();
        let line = String::from_utf8(stream.line()).unwrap();
        assert!(line.contains("\"reason\":\"bad_request\""), "{bad}: {line}");
    }
}

#[test]
fn replay_starts_with_what_the_ring_holds_and_plain_readers_see_no_extra_line() {
    let dir = TempDir::new("replay_ring");
    let publisher = Publisher::open_with(dir.socket(), &ring_options()).unwrap();
    // Nobody is connected: with a ring, emit keeps them all the same.
    emit_range(&publisher, 0..100);
    wait_numbered(&publisher, 100);
    let mut plain = RawReader::connect(dir.socket());
    let mut replaying = notif::Subscriber::connect(
        dir.socket(),
        SubscribeOptions {
            replay: true,
            ..Default::default()
        },
    )
    .unwrap();
    wait_for_subscribers(&publisher, 2);
    for expected in 0..100 {
        match replaying.recv(Some(PATIENCE)).unwrap() {
            Event::Notification(line) => assert_eq!(parse_numbered(line).1, expected),
            other => panic!("{other:?} at {expected}"),
        }
    }
    emit_range(&publisher, 100..110);
    for expected in 100..110 {
        match replaying.recv(Some(PATIENCE)).unwrap() {
            Event::Notification(line) => assert_eq!(parse_numbered(line).1, expected),
            other => panic!("{other:?} at {expected}"),
        }
        // A plain reader's stream has no seq lines, no cursors: the notifications only.
        assert_eq!(parse_numbered(&plain.line()).1, expected);
    }
    assert_eq!(wait_numbered(&publisher, 110).replay_messages, 110);
}
