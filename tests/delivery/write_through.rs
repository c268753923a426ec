//! Write-through under attack: while the server thread sleeps with nothing
//! queued, emitting threads write each notification to the subscribers'
//! sockets themselves. Whatever path a notification takes (an emitter's one
//! send, a send the kernel cut short and the server thread finished, the
//! server thread's batches under load), every subscriber gets every
//! notification once, whole, in order, numbered as the publisher numbers it,
//! and the counters add up exactly.
//!
//! No timing is asserted. Where a test asserts that write-through happened,
//! it emits 1 ms or more apart (write-through ends for notifications less
//! than 5 us per subscriber apart) and allows the first few to go through the server thread.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use notif::{Event, Options, Publisher, SubscribeOptions};

/// A pause that ends write-through for nobody: far more than its 5 us per subscriber.
fn quiet() {
    std::thread::sleep(Duration::from_millis(1));
}

/// A plain reader (it never writes a request), connected and counted, and
/// past the publisher's grace for silent peers (100 ms: a peer that has said
/// nothing yet may be about to send a request, so it is not written through
/// before that).
fn plain_reader(
    publisher: &Publisher,
    path: impl AsRef<std::path::Path>,
    expected: u64,
) -> RawReader {
    let reader = RawReader::connect_to(publisher, path, expected);
    std::thread::sleep(Duration::from_millis(150));
    reader
}

/// A tiny deterministic generator (xorshift64*), so runs can be compared.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Emits, expecting success (the backlog is never full in these tests).
fn emit(publisher: &Publisher, line: &[u8]) {
    if let Err(e) = publisher.emit(line) {
        panic!(
            "emit failed ({e}); stats: {:?}; line of {} bytes",
            publisher.stats(),
            line.len()
        );
    }
}

/// The socket's stats answer (it makes the server thread take and number
/// everything queued first). Notification lines before it are skipped.
fn socket_stats(path: &Path) -> serde_json::Value {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(b"{\"stats\":true}\n").unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        let n = reader
            .read_until(b'\n', &mut line)
            .expect("a stats answer within the read timeout");
        assert!(n > 0, "the publisher closed without a stats answer");
        if line.starts_with(b"{\"notif\":{\"stats\":") {
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            return value["notif"]["stats"].clone();
        }
    }
}

fn field(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in the stats answer {stats}"))
}

/// Checks one received line: valid JSON, exactly what was emitted.
fn check_line(line: &[u8], expected: &[u8]) {
    if line != expected {
        panic!(
            "a line differs from what was emitted (corrupt, cut, or another's):\n got {} bytes: {:?}\nwant {} bytes: {:?}",
            line.len(),
            String::from_utf8_lossy(&line[..line.len().min(200)]),
            expected.len(),
            String::from_utf8_lossy(&expected[..expected.len().min(200)]),
        );
    }
    serde_json::from_slice::<serde_json::Value>(line).expect("every line is one JSON value");
}

/// A thread reading `count` numbered lines of stream 0, each exactly
/// `expected(seq)`, in order; returns the bytes it read (newlines included).
fn spawn_exact_reader(
    mut reader: RawReader,
    first: u64,
    count: u64,
    expected: impl Fn(u64) -> Vec<u8> + Send + 'static,
) -> std::thread::JoinHandle<(RawReader, u64)> {
    std::thread::spawn(move || {
        let mut bytes = 0u64;
        for seq in first..first + count {
            let line = reader.line();
            check_line(&line, &expected(seq));
            bytes += line.len() as u64 + 1;
        }
        (reader, bytes)
    })
}

fn assert_final(stats: &notif::Stats) {
    assert_invariant(stats);
    assert!(
        stats.written_through <= stats.delivered,
        "written_through counts pairs also in delivered: {stats:?}"
    );
}

// ------------ a quiet stream to one plain reader: written through, whole, in order

#[test]
fn quiet_emits_to_one_plain_reader_are_written_through_whole_and_in_order() {
    const N: u64 = 200;
    let dir = TempDir::new("wt_quiet");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let reader = plain_reader(&publisher, dir.socket(), 1);
    let line = |seq| numbered(0, seq, 40);
    let handle = spawn_exact_reader(reader, 0, N, line);
    let mut emitted_bytes = 0;
    for seq in 0..N {
        emit(&publisher, &line(seq));
        emitted_bytes += line(seq).len() as u64 + 1;
        quiet();
    }
    let (_reader, read_bytes) = handle.join().expect("the reader got every line");
    assert_eq!(read_bytes, emitted_bytes);
    let stats = publisher.stats();
    assert!(
        stats.written_through + 5 >= N,
        "quiet emits to one plain reader should nearly all be written through: {stats:?}"
    );
    assert!(
        stats.wakeups <= 5,
        "quiet emits written through should not wake the server thread: {stats:?}"
    );
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.emitted, N);
    assert_eq!(stats.delivered, N);
    assert_eq!(stats.fanout, N);
    assert_eq!(stats.bytes_sent, emitted_bytes);
    assert_eq!(stats.dropped_slow + stats.dropped_closed, 0);
    assert!(stats.written_through + 5 >= N, "{stats:?}");
}

// ------------ cursors and resume across written-through and server-sent notifications

fn cursor_seq(subscriber: &notif::Subscriber) -> u64 {
    let cursor = subscriber.cursor().expect("a cursor after a notification");
    cursor.rsplit('-').next().unwrap().parse().unwrap()
}

/// The next notification within PATIENCE, and its cursor's number. Control
/// events (Reconnected, Dropped) are a failure here: nothing may be lost.
fn recv_numbered(subscriber: &mut notif::Subscriber) -> (Vec<u8>, u64) {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no notification within {PATIENCE:?}");
        match subscriber.recv(Some(left)).expect("recv") {
            Event::Notification(line) => {
                let line = line.to_vec();
                return (line, cursor_seq(subscriber));
            }
            Event::Timeout => continue,
            other => panic!("unexpected {other:?}: nothing should be lost"),
        }
    }
}

/// Connects a cursor subscriber and returns once its subscription is
/// acknowledged (a warm-up notification arrives with a cursor): the cursor
/// number of that warm-up.
fn acknowledged_subscriber(
    publisher: &Publisher,
    path: &Path,
    options: SubscribeOptions,
    subscribers: u64,
) -> notif::Subscriber {
    let mut subscriber = notif::Subscriber::connect(path, options).unwrap();
    wait_for_subscribers(publisher, subscribers);
    let give_up = Instant::now() + PATIENCE;
    let mut warm_ups = 0u64;
    // Warm-ups (stream 9) are numbered from 0, like their cursors.
    let first = publisher.stats().emitted;
    loop {
        assert!(Instant::now() < give_up, "never acknowledged");
        emit(publisher, &numbered(9, warm_ups, 0));
        warm_ups += 1;
        let got = matches!(
            subscriber.recv(Some(Duration::from_millis(50))).unwrap(),
            Event::Notification(_)
        );
        if got && subscriber.cursor().is_some() {
            break;
        }
    }
    // Read up to the last warm-up, so the stream is at a known place.
    while cursor_seq(&subscriber) + 1 < first + warm_ups {
        recv_numbered(&mut subscriber);
    }
    subscriber
}

#[test]
fn cursors_count_on_across_written_through_and_server_sent_notifications_and_resume_loses_nothing()
{
    const PHASE: u64 = 150;
    let dir = TempDir::new("wt_cursor");
    let options = Options {
        replay: 4 * 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    // A plain reader that stays: write-through goes on while the cursor
    // subscriber is away.
    let plain = plain_reader(&publisher, dir.socket(), 1);
    let mut a = acknowledged_subscriber(
        &publisher,
        &dir.socket(),
        SubscribeOptions {
            reconnect: false,
            ..SubscribeOptions::default()
        },
        2,
    );
    // Warm-ups (stream 9) came first; stream 0 numbers from here.
    let base = publisher.stats().emitted;
    let plain_reader = std::thread::spawn(move || {
        let mut plain = plain;
        // Skip the warm-ups, then check stream 0 is complete and in order.
        let mut expected = 0;
        while expected < 3 * PHASE {
            let line = plain.line();
            let (stream, seq) = parse_numbered(&line);
            if stream == 9 {
                assert_eq!(expected, 0, "a warm-up after stream 0 began");
                continue;
            }
            assert_eq!((stream, seq), (0, expected), "lost or reordered");
            expected += 1;
        }
        plain
    });

    // Phase 1: quiet emits (written through to both: the cursor subscriber
    // has no seq line due once it counts on by itself), then bursts (the
    // server thread), alternating.
    let mut last_cursor = None;
    let mut seq = 0u64;
    let mut rng = Rng(0x5eed);
    let check = |subscriber: &mut notif::Subscriber, seq: u64| {
        let (line, cursor) = recv_numbered(subscriber);
        assert_eq!(
            parse_numbered(&line),
            (0, seq),
            "lost, duplicated or reordered"
        );
        assert_eq!(
            cursor,
            base + seq,
            "the cursor must be the publisher's number of the notification"
        );
    };
    while seq < PHASE {
        if rng.below(3) == 0 {
            let burst = (1 + rng.below(40)).min(PHASE - seq);
            for k in 0..burst {
                emit(&publisher, &numbered(0, seq + k, 20));
            }
            for k in 0..burst {
                check(&mut a, seq + k);
            }
            seq += burst;
        } else {
            emit(&publisher, &numbered(0, seq, 20));
            check(&mut a, seq);
            seq += 1;
            quiet();
        }
        last_cursor = a.cursor();
    }
    let written_through_with_cursors = publisher.stats().written_through;
    assert!(
        written_through_with_cursors > 0,
        "quiet emits to a plain reader and a cursor subscriber were never written through: {:?}",
        publisher.stats()
    );
    drop(a);
    wait_for_subscribers(&publisher, 1);

    // Phase 2: the cursor subscriber is away; the plain reader gets these
    // written through.
    for _ in 0..PHASE {
        emit(&publisher, &numbered(0, seq, 20));
        seq += 1;
        quiet();
    }

    // Phase 3: resume after the last cursor: the history from the ring,
    // then live, mixing quiet and bursty emits again, with no gap and no
    // duplicate.
    let mut b = notif::Subscriber::connect(
        dir.socket(),
        SubscribeOptions {
            reconnect: false,
            after: last_cursor,
            ..SubscribeOptions::default()
        },
    )
    .unwrap();
    for expected in PHASE..2 * PHASE {
        check(&mut b, expected);
    }
    while seq < 3 * PHASE {
        if rng.below(3) == 0 {
            let burst = (1 + rng.below(40)).min(3 * PHASE - seq);
            for k in 0..burst {
                emit(&publisher, &numbered(0, seq + k, 20));
            }
            for k in 0..burst {
                check(&mut b, seq + k);
            }
            seq += burst;
        } else {
            emit(&publisher, &numbered(0, seq, 20));
            check(&mut b, seq);
            seq += 1;
            quiet();
        }
    }
    let last = cursor_seq(&b);
    plain_reader
        .join()
        .expect("the plain reader got everything");
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(
        stats.next_seq,
        last + 1,
        "the last cursor names the last notification: {stats:?}"
    );
    assert_eq!(stats.emitted, base + 3 * PHASE);
    assert_eq!(stats.dropped_slow, 0, "{stats:?}");
}

// ------------ writes the kernel cuts short: finished by the server thread, byte exact

fn set_receive_buffer(stream: &UnixStream, bytes: libc::c_int) {
    // SAFETY: passes a live c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// A numbered line of 20 to 60 KB, and every sixth of 300 to 700 KB (more
/// than the kernel takes into an empty socket buffer, at most 256 KiB: its
/// one send is cut short); the same for the same seq.
fn large(seq: u64) -> Vec<u8> {
    let mut rng = Rng(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let pad = if seq % 6 == 5 {
        300_000 + rng.below(400_000)
    } else {
        20_000 + rng.below(40_000)
    };
    numbered(0, seq, pad as usize)
}

/// Emits small quiet notifications until one is written through: from then
/// on the server thread sleeps with a grant (nothing else wakes it).
fn until_written_through(publisher: &Publisher, stream: usize) -> u64 {
    let mut sent = 0;
    while publisher.stats().written_through == 0 {
        assert!(
            sent < 2000,
            "never written through: {:?}",
            publisher.stats()
        );
        emit(publisher, &numbered(stream, sent, 0));
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    sent
}

#[test]
fn writes_the_kernel_cuts_short_are_finished_by_the_server_thread_byte_exact() {
    const M: u64 = 60;
    let dir = TempDir::new("wt_cut");
    let options = Options {
        subscriber_buffer: 32 * 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    // One that does not read for now, with a small receive buffer; one
    // that reads all along.
    let stalled = plain_reader(&publisher, dir.socket(), 1);
    set_receive_buffer(stalled.stream(), 4096);
    let reading = plain_reader(&publisher, dir.socket(), 2);
    let reading_bytes = std::thread::spawn(move || {
        let mut reading = reading;
        let mut bytes = 0u64;
        let mut next = 0;
        while next < M {
            let line = reading.line();
            bytes += line.len() as u64 + 1;
            if parse_numbered(&line).0 == 1 {
                continue; // warm-up
            }
            check_line(&line, &large(next));
            next += 1;
        }
        bytes
    });
    let warm_ups = until_written_through(&publisher, 1);
    let before = publisher.stats().written_through;
    let mut emitted_bytes = 0;
    for seq in 0..M {
        let line = large(seq);
        emitted_bytes += line.len() as u64 + 1;
        emit(&publisher, &line);
        quiet();
    }
    assert!(
        publisher.stats().written_through > before,
        "the first large notification, to a sleeping server thread, was not written through: {:?}",
        publisher.stats()
    );
    // Now read everything the stalled one was sent: what the emitters put
    // in its socket, cut short somewhere, and the rest the server sent.
    let mut stalled = stalled;
    let mut stalled_bytes = 0u64;
    let mut next = 0;
    while next < M {
        let line = stalled.line();
        stalled_bytes += line.len() as u64 + 1;
        if parse_numbered(&line).0 == 1 {
            assert_eq!(next, 0, "a warm-up after the large ones");
            continue;
        }
        check_line(&line, &large(next));
        next += 1;
    }
    let reading_bytes = reading_bytes.join().expect("the reading subscriber");
    stalled.expect_silence(Duration::from_millis(100));
    let warm_up_bytes: u64 = (0..warm_ups)
        .map(|s| numbered(1, s, 0).len() as u64 + 1)
        .sum();
    assert_eq!(stalled_bytes, emitted_bytes + warm_up_bytes);
    assert_eq!(reading_bytes, emitted_bytes + warm_up_bytes);
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.emitted, M + warm_ups);
    assert_eq!(stats.delivered, 2 * (M + warm_ups), "{stats:?}");
    assert_eq!(stats.fanout, stats.delivered, "{stats:?}");
    assert_eq!(
        stats.bytes_sent,
        stalled_bytes + reading_bytes,
        "bytes_sent must count exactly what was written: {stats:?}"
    );
    assert_eq!(stats.dropped_slow + stats.dropped_closed, 0, "{stats:?}");
}

// ------------ concurrent emitters: quiet gaps and bursts

fn threaded(thread: u64, n: u64) -> Vec<u8> {
    format!(
        "{{\"t\":{thread},\"i\":{n},\"pad\":\"{}\"}}",
        "y".repeat((n % 50) as usize)
    )
    .into_bytes()
}

fn parse_threaded(line: &[u8]) -> (u64, u64) {
    let value: serde_json::Value = serde_json::from_slice(line).expect("a JSON line");
    (value["t"].as_u64().unwrap(), value["i"].as_u64().unwrap())
}

#[test]
fn concurrent_emitters_with_quiet_gaps_and_bursts_lose_nothing_and_keep_each_threads_order() {
    const THREADS: u64 = 4;
    const EACH: u64 = 500;
    const READERS: u64 = 3;
    let dir = TempDir::new("wt_threads");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let readers: Vec<_> = (1..=READERS)
        .map(|n| {
            let mut reader = plain_reader(&publisher, dir.socket(), n);
            std::thread::spawn(move || {
                let mut next = vec![0u64; THREADS as usize];
                let mut bytes = 0u64;
                for _ in 0..THREADS * EACH {
                    let line = reader.line();
                    bytes += line.len() as u64 + 1;
                    let (t, i) = parse_threaded(&line);
                    assert_eq!(line, threaded(t, i), "corrupt line");
                    assert_eq!(
                        i, next[t as usize],
                        "thread {t}'s notifications lost, duplicated or reordered"
                    );
                    next[t as usize] += 1;
                }
                (reader, bytes)
            })
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let publisher = &publisher;
            scope.spawn(move || {
                let mut rng = Rng(0xabcdef + t);
                for i in 0..EACH {
                    emit(publisher, &threaded(t, i));
                    match rng.below(8) {
                        0..=2 => {}                                                             // burst
                        3 => std::thread::sleep(Duration::from_micros(30)), // just over
                        4 => std::thread::sleep(Duration::from_micros(200)), // quiet-ish
                        _ => std::thread::sleep(Duration::from_micros(1000 + rng.below(1000))), // quiet
                    }
                }
            });
        }
    });
    let mut read_bytes = 0;
    for reader in readers {
        let (_reader, bytes) = reader.join().expect("a reader got everything in order");
        read_bytes += bytes;
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.emitted, THREADS * EACH);
    assert_eq!(stats.delivered, READERS * THREADS * EACH, "{stats:?}");
    assert_eq!(stats.fanout, stats.delivered);
    assert_eq!(stats.bytes_sent, read_bytes, "{stats:?}");
    assert!(
        stats.written_through > 0,
        "write-through never happened: {stats:?}"
    );
}

// ------------ readers that hang up or shut reading (SIGPIPE at its default)

#[test]
fn readers_that_hang_up_or_shut_reading_during_write_through_cost_only_themselves() {
    isolated!();
    // A C host leaves SIGPIPE at its default (death); the Rust runtime
    // ignores it. Put it back, as tests/sigpipe_and_hangups.rs does.
    // SAFETY: setting the default disposition of SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    const N: u64 = 300;
    let dir = TempDir::new("wt_hangup");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let staying = plain_reader(&publisher, dir.socket(), 1);
    let closing = plain_reader(&publisher, dir.socket(), 2);
    let shut_read = plain_reader(&publisher, dir.socket(), 3);
    let line = |seq| numbered(0, seq, 30);
    let staying = spawn_exact_reader(staying, 0, N, line);
    let (mut closing, mut shut_read) = (Some(closing), Some(shut_read));
    let mut prefix = HashMap::new();
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
        if seq == 50 {
            // Closes with unread data in its socket: the kernel resets it.
            let mut reader = closing.take().unwrap();
            let got: Vec<_> = (0..10).map(|_| reader.line()).collect();
            prefix.insert("closing", got);
            drop(reader);
        }
        if seq == 100 {
            let mut reader = shut_read.take().unwrap();
            let got: Vec<_> = (0..10).map(|_| reader.line()).collect();
            prefix.insert("shut_read", got);
            reader.stream().shutdown(Shutdown::Read).unwrap();
            // It keeps its socket open: only its reading side is shut.
            shut_read = Some(reader);
        }
    }
    for (who, got) in &prefix {
        for (seq, got) in got.iter().enumerate() {
            assert_eq!(got, &line(seq as u64), "{who} got a wrong line");
        }
    }
    let _staying = staying.join().expect("the staying reader got everything");
    drop(shut_read);
    wait_for_subscribers(&publisher, 1);
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.emitted, N);
    assert_eq!(stats.dropped_slow, 0, "{stats:?}");
    // The staying one got all; the others at least the lines they read.
    assert!(stats.delivered >= N + 20, "{stats:?}");
    assert!(stats.written_through > 0, "{stats:?}");
    // The library left SIGPIPE alone, and we are alive.
    // SAFETY: querying only (act is null); old is a live sigaction.
    let disposition = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    assert_eq!(disposition, libc::SIG_DFL);
}

// ------------ who is written through: filtered subscribers, a fifth reader

/// Connects and writes a request; returns once its acknowledgement is read.
fn requesting(publisher: &Publisher, path: &Path, request: &str, expected: u64) -> RawReader {
    let mut subscriber = plain_reader(publisher, path, expected);
    subscriber
        .write_all(format!("{request}\n").as_bytes())
        .unwrap();
    let ack = subscriber.line();
    assert!(
        ack.starts_with(b"{\"notif\":{")
            && serde_json::from_slice::<serde_json::Value>(&ack).unwrap()["notif"]["subscribed"]
                == true,
        "expected the acknowledgement, got {:?}",
        String::from_utf8_lossy(&ack)
    );
    subscriber
}

fn typed(seq: u64, event_type: &str) -> Vec<u8> {
    format!("{{\"event_type\":\"{event_type}\",\"seq\":{seq},\"stream\":0}}").into_bytes()
}

#[test]
fn a_filtered_subscriber_makes_no_one_eligible_and_everyone_gets_their_notifications() {
    const N: u64 = 100;
    let dir = TempDir::new("wt_filtered");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let plain = plain_reader(&publisher, dir.socket(), 1);
    let filtered = requesting(
        &publisher,
        &dir.socket(),
        r#"{"subscribe":{"event_types":["even.*"]}}"#,
        2,
    );
    let kind = |seq: u64| if seq % 2 == 0 { "even.x" } else { "odd.x" };
    let plain = spawn_exact_reader(plain, 0, N, move |seq| typed(seq, kind(seq)));
    let filtered = std::thread::spawn(move || {
        let mut filtered = filtered;
        for seq in (0..N).filter(|s| s % 2 == 0) {
            check_line(&filtered.line(), &typed(seq, kind(seq)));
        }
        filtered
    });
    for seq in 0..N {
        emit(&publisher, &typed(seq, kind(seq)));
        quiet();
    }
    plain.join().expect("the plain reader");
    let mut filtered = filtered.join().expect("the filtered subscriber");
    filtered.expect_silence(Duration::from_millis(50));
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(
        stats.written_through, 0,
        "a filtered subscriber is never written through, and the grant is all or none: {stats:?}"
    );
    assert_eq!(stats.delivered, N + N / 2, "{stats:?}");
    assert_eq!(stats.filtered, N / 2, "{stats:?}");
}

#[test]
fn five_plain_readers_are_one_too_many_and_all_get_everything() {
    const N: u64 = 100;
    let dir = TempDir::new("wt_five");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let line = |seq| numbered(0, seq, 10);
    let readers: Vec<_> = (1..=5)
        .map(|n| spawn_exact_reader(plain_reader(&publisher, dir.socket(), n), 0, N, line))
        .collect();
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
    }
    for reader in readers {
        reader.join().expect("a reader got everything");
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.written_through, 0, "{stats:?}");
    assert_eq!(stats.delivered, 5 * N);
}

#[test]
fn a_fifth_reader_joining_mid_stream_ends_write_through_without_a_gap_for_anyone() {
    const N: u64 = 200;
    let dir = TempDir::new("wt_join");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let line = |seq| numbered(0, seq, 10);
    let mut readers: Vec<_> = (1..=4)
        .map(|n| spawn_exact_reader(plain_reader(&publisher, dir.socket(), n), 0, N, line))
        .collect();
    let mut late = None;
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
        if seq == 60 {
            late = Some(plain_reader(&publisher, dir.socket(), 5));
        }
        if seq == 120 {
            // What the fifth got is a run without a gap, up to the last
            // emitted; then it leaves again: four, write-through may resume.
            let mut reader = late.take().unwrap();
            let mut previous = None;
            loop {
                let (_, got) = parse_numbered(&reader.line());
                if let Some(previous) = previous {
                    assert_eq!(got, previous + 1, "the fifth reader got a gap");
                }
                assert!(
                    got > 60,
                    "the fifth reader got one emitted before it connected"
                );
                previous = Some(got);
                if got == seq {
                    break;
                }
            }
            drop(reader);
            wait_for_subscribers(&publisher, 4);
        }
    }
    for reader in readers.drain(..) {
        reader.join().expect("a reader got everything");
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.emitted, N);
    assert_eq!(stats.dropped_slow, 0, "{stats:?}");
    assert!(
        stats.written_through > 0,
        "with four readers write-through should happen: {stats:?}"
    );
}

// ------------ heartbeats and drop markers between written-through notifications

#[test]
fn heartbeats_still_come_when_idle_between_written_through_notifications() {
    let dir = TempDir::new("wt_heartbeat");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let mut subscriber = requesting(&publisher, &dir.socket(), r#"{"heartbeat_s":0.2}"#, 1);
    for round in 0..3u64 {
        for k in 0..20 {
            let seq = round * 20 + k;
            emit(&publisher, &numbered(0, seq, 10));
            // A heartbeat in between is allowed (a loaded machine may
            // stall this thread); nothing else is.
            let mut line = subscriber.line();
            while line.starts_with(b"{\"notif\":{\"heartbeat\":") {
                line = subscriber.line();
            }
            check_line(&line, &numbered(0, seq, 10));
            quiet();
        }
        // Idle now: a heartbeat must come (within the read timeout), and
        // nothing but heartbeats.
        let line = subscriber.line();
        assert!(
            line.starts_with(b"{\"notif\":{\"heartbeat\":"),
            "expected a heartbeat when idle, got {:?}",
            String::from_utf8_lossy(&line)
        );
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.delivered, 60);
    assert!(stats.written_through > 0, "{stats:?}");
}

#[test]
fn a_markers_subscriber_that_lost_notifications_hears_of_it_before_newer_ones() {
    const FLOOD: u64 = 3000;
    const TAIL: u64 = 100;
    let dir = TempDir::new("wt_markers");
    let options = Options {
        subscriber_buffer: notif::MIN_SUBSCRIBER_BUFFER,
        max_message: 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut subscriber = requesting(&publisher, &dir.socket(), r#"{"markers":true}"#, 1);
    // A flood it does not read: most are dropped for it.
    for seq in 0..FLOOD {
        emit(&publisher, &numbered(0, seq, 100));
    }
    wait_until("messages were dropped for the stalled subscriber", || {
        publisher.stats().dropped_slow > 0
    });
    let reader = std::thread::spawn(move || {
        let mut expected = 0u64;
        let mut reported = 0u64;
        let mut pending_marker = 0u64;
        while expected < FLOOD + TAIL {
            let line = subscriber.line();
            if line.starts_with(b"{\"notif\":{\"dropped\":") {
                let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
                let n = value["notif"]["dropped"].as_u64().expect("a count");
                assert!(n > 0);
                pending_marker += n;
                reported += n;
                continue;
            }
            let (_, seq) = parse_numbered(&line);
            assert!(
                seq >= expected,
                "duplicated or reordered: {seq} after {expected}"
            );
            assert_eq!(
                seq - expected,
                pending_marker,
                "a gap must be announced by a dropped marker just before it"
            );
            pending_marker = 0;
            check_line(&line, &numbered(0, seq, 100));
            expected = seq + 1;
        }
        (subscriber, reported)
    });
    // Newer ones, quietly: the subscriber is not eligible until its marker
    // is out, and then may be written through.
    for seq in FLOOD..FLOOD + TAIL {
        emit(&publisher, &numbered(0, seq, 100));
        quiet();
    }
    let (_subscriber, reported) = reader.join().expect("the markers subscriber");
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.dropped_slow, reported, "{stats:?}");
    assert_eq!(stats.delivered + reported, FLOOD + TAIL, "{stats:?}");
}

// ------------ the replay ring keeps what was written through

#[test]
fn notifications_written_through_are_kept_in_the_replay_ring() {
    const N: u64 = 120;
    let dir = TempDir::new("wt_ring");
    let options = Options {
        replay: 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let line = |seq| numbered(0, seq, 25);
    let reader = spawn_exact_reader(plain_reader(&publisher, dir.socket(), 1), 0, N, line);
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
    }
    // Kept connected: its hang-up would wake the server thread.
    let _live = reader.join().expect("the live reader");
    assert!(
        publisher.stats().written_through + 5 >= N,
        "{:?}",
        publisher.stats()
    );
    let mut replaying = requesting(&publisher, &dir.socket(), r#"{"replay":true}"#, 2);
    let mut got = Vec::new();
    while got.len() < N as usize {
        let l = replaying.line();
        if l.starts_with(b"{\"notif\":") {
            assert!(
                l.starts_with(b"{\"notif\":{\"seq\":0}"),
                "unexpected control line {:?}",
                String::from_utf8_lossy(&l)
            );
            continue;
        }
        got.push(l);
    }
    for (seq, l) in got.iter().enumerate() {
        check_line(l, &line(seq as u64));
    }
    replaying.expect_silence(Duration::from_millis(50));
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.replayed, N, "{stats:?}");
}

// ------------ close right after write-through, and with a cut-short line unfinished

#[test]
fn close_right_after_written_through_emits_delivers_everything_and_counts_exactly() {
    const N: u64 = 100;
    let dir = TempDir::new("wt_close");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let line = |seq| numbered(0, seq, 15);
    let a = plain_reader(&publisher, dir.socket(), 1);
    let b = plain_reader(&publisher, dir.socket(), 2);
    let mut emitted_bytes = 0;
    for seq in 0..N {
        emit(&publisher, &line(seq));
        emitted_bytes += line(seq).len() as u64 + 1;
        quiet();
    }
    let stats = publisher.close();
    let mut read_bytes = 0;
    for mut reader in [a, b] {
        let lines = reader.read_to_eof();
        assert_eq!(lines.len() as u64, N);
        for (seq, l) in lines.iter().enumerate() {
            check_line(l, &line(seq as u64));
            read_bytes += l.len() as u64 + 1;
        }
    }
    assert_eq!(read_bytes, 2 * emitted_bytes);
    assert_final(&stats);
    assert_eq!(stats.emitted, N);
    assert_eq!(stats.delivered, 2 * N, "{stats:?}");
    assert_eq!(stats.fanout, 2 * N, "{stats:?}");
    assert_eq!(stats.bytes_sent, read_bytes, "{stats:?}");
    assert_eq!(stats.next_seq, N, "{stats:?}");
    assert!(stats.written_through > 0, "{stats:?}");
}

#[test]
fn close_while_a_cut_short_line_is_unfinished_still_finishes_it() {
    const M: u64 = 40;
    let dir = TempDir::new("wt_close_cut");
    let options = Options {
        subscriber_buffer: 32 * 1024 * 1024,
        linger: Duration::from_secs(60),
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let stalled = plain_reader(&publisher, dir.socket(), 1);
    let warm_ups = until_written_through(&publisher, 1);
    for seq in 0..M {
        emit(&publisher, &large(seq));
        quiet();
    }
    // Reads only once close has begun: close lingers until it is all out.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut stalled = stalled;
        let lines = stalled.read_to_eof();
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        let large_lines: Vec<_> = lines
            .into_iter()
            .filter(|l| parse_numbered(l).0 == 0)
            .collect();
        (large_lines, bytes)
    });
    let stats = publisher.close();
    let (lines, bytes) = reader.join().expect("the stalled reader");
    assert_eq!(lines.len() as u64, M);
    for (seq, l) in lines.iter().enumerate() {
        check_line(l, &large(seq as u64));
    }
    assert_final(&stats);
    assert_eq!(stats.delivered, M + warm_ups, "{stats:?}");
    assert_eq!(stats.bytes_sent, bytes, "{stats:?}");
    assert_eq!(stats.dropped_closed, 0, "{stats:?}");
}

// ------------ stats after a quiet period: exact counters and gauges

#[test]
fn stats_after_a_quiet_period_of_written_through_emits_are_exact() {
    const N: u64 = 50;
    let dir = TempDir::new("wt_stats");
    let options = Options {
        replay: 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let line = |seq| numbered(0, seq, 5);
    let reader = spawn_exact_reader(plain_reader(&publisher, dir.socket(), 1), 0, N, line);
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
    }
    let _live = reader.join().expect("the reader");
    // The socket's answer: the server thread takes everything first.
    let answer = socket_stats(&dir.socket());
    assert_eq!(field(&answer, "emitted"), N, "{answer}");
    assert_eq!(field(&answer, "delivered"), N, "{answer}");
    assert_eq!(field(&answer, "fanout"), N, "{answer}");
    assert_eq!(field(&answer, "next_seq"), N, "{answer}");
    assert_eq!(field(&answer, "replay_messages"), N, "{answer}");
    assert!(field(&answer, "written_through") <= N, "{answer}");
    publisher.close();
}

#[test]
fn the_publishers_own_stats_gauges_catch_up_after_a_quiet_period_of_written_through_emits() {
    const N: u64 = 50;
    let dir = TempDir::new("wt_gauges");
    let options = Options {
        replay: 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let line = |seq| numbered(0, seq, 5);
    let reader = spawn_exact_reader(plain_reader(&publisher, dir.socket(), 1), 0, N, line);
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
    }
    // Kept connected: its hang-up would wake the server thread.
    let _live = reader.join().expect("the reader");
    let mut last = publisher.stats();
    let settled = wait_for(
        || {
            last = publisher.stats();
            last.emitted == N && last.next_seq == N && last.replay_messages == N
        },
        Duration::from_secs(10),
    );
    assert!(
        settled,
        "Publisher::stats() after a quiet period: next_seq and the replay gauges must count \
         the notifications emitters wrote through (the server thread has not taken them): {last:?}"
    );
    publisher.close();
}

// ------------ the backlog: quiet emits never fill the smallest one

/// Write-through keeps each notification in the backlog until the server
/// thread takes it; a small (valid) backlog must not fill up and refuse a
/// quiet publisher's notifications while its subscriber reads everything.
fn quiet_emits_fit_a_small_backlog(backlog: usize, pad: usize, n: u64) {
    let dir = TempDir::new("wt_backlog");
    let options = Options {
        backlog,
        max_message: backlog / 2,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let line = move |seq| numbered(0, seq, pad);
    let reader = spawn_exact_reader(plain_reader(&publisher, dir.socket(), 1), 0, n, line);
    for seq in 0..n {
        if let Err(e) = publisher.emit(&line(seq)) {
            panic!(
                "emit {seq} of a quiet publisher with a {backlog}-byte backlog failed: {e}; stats {:?}",
                publisher.stats()
            );
        }
        // Quiet: the publisher has written everything emitted so far (a
        // fixed pause is not enough when the server thread waits for a core).
        assert!(
            wait_for(|| publisher.stats().delivered > seq, PATIENCE),
            "emit {seq} never delivered: {:?}",
            publisher.stats()
        );
    }
    reader.join().expect("the reader got everything");
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.dropped_backlog, 0, "{stats:?}");
    assert_eq!(stats.delivered, n, "{stats:?}");
}

#[test]
fn quiet_emits_never_fill_the_smallest_backlog() {
    quiet_emits_fit_a_small_backlog(notif::MIN_SUBSCRIBER_BUFFER, 100, 400);
}

#[test]
fn quiet_large_emits_never_fill_a_64_kib_backlog() {
    quiet_emits_fit_a_small_backlog(64 * 1024, 30_000, 10);
}

// ------------ raw reads: the byte stream is exactly the emitted lines

/// A plain reader reading raw bytes (as socat would): the stream is exactly
/// the emitted lines back to back, with nothing in between.
#[test]
fn the_raw_byte_stream_is_exactly_the_emitted_lines() {
    let dir = TempDir::new("wt_raw");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let stream = UnixStream::connect(dir.socket()).unwrap();
    wait_for_subscribers(&publisher, 1);
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        (&stream).read_to_end(&mut got).unwrap();
        got
    });
    let mut expected = Vec::new();
    let mut rng = Rng(77);
    for seq in 0..150 {
        let l = numbered(0, seq, rng.below(3000) as usize);
        emit(&publisher, &l);
        expected.extend_from_slice(&l);
        expected.push(b'\n');
        if rng.below(4) != 0 {
            quiet();
        }
    }
    let stats = publisher.close();
    let got = reader.join().unwrap();
    assert!(
        got == expected,
        "the byte stream differs from the emitted lines"
    );
    assert_eq!(stats.bytes_sent, expected.len() as u64, "{stats:?}");
    assert_final(&stats);
    assert!(stats.written_through > 0, "{stats:?}");
}

// ------------ cursors of cut-short lines

#[test]
fn a_cursor_subscriber_whose_written_through_lines_were_cut_short_counts_on_exactly() {
    const M: u64 = 30;
    let dir = TempDir::new("wt_cursor_cut");
    let options = Options {
        subscriber_buffer: 32 * 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut subscriber = acknowledged_subscriber(
        &publisher,
        &dir.socket(),
        SubscribeOptions {
            reconnect: false,
            ..SubscribeOptions::default()
        },
        1,
    );
    let base = publisher.stats().emitted;
    // Written through while nothing is read: the large ones are cut short.
    let before = publisher.stats().written_through;
    for seq in 0..M {
        emit(&publisher, &large(seq));
        quiet();
    }
    assert!(
        publisher.stats().written_through > before,
        "{:?}",
        publisher.stats()
    );
    for seq in 0..M {
        let (line, cursor) = recv_numbered(&mut subscriber);
        check_line(&line, &large(seq));
        assert_eq!(cursor, base + seq, "the cursor of notification {seq}");
    }
    // And on, quietly, once it has caught up.
    for seq in M..M + 50 {
        emit(&publisher, &numbered(0, seq, 10));
        let (line, cursor) = recv_numbered(&mut subscriber);
        check_line(&line, &numbered(0, seq, 10));
        assert_eq!(cursor, base + seq);
        quiet();
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.next_seq, base + M + 50, "{stats:?}");
    assert_eq!(stats.delivered, stats.emitted, "{stats:?}");
}

// ------------ readers that write: a shut sending side, a request line being written

#[test]
fn a_reader_that_shut_its_sending_side_like_socat_is_written_through() {
    const N: u64 = 100;
    let dir = TempDir::new("wt_socat");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let reader = plain_reader(&publisher, dir.socket(), 1);
    // socat at the end of its stdin: nothing more to send, still reading.
    reader.stream().shutdown(Shutdown::Write).unwrap();
    let line = |seq| numbered(0, seq, 20);
    let reader = spawn_exact_reader(reader, 0, N, line);
    for seq in 0..N {
        emit(&publisher, &line(seq));
        quiet();
    }
    let _reader = reader.join().expect("the reader got everything");
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.delivered, N);
    assert!(stats.written_through + 5 >= N, "{stats:?}");
}

#[test]
fn a_request_line_being_written_stops_write_through_and_nothing_is_lost_either_side_of_it() {
    const N: u64 = 60;
    let dir = TempDir::new("wt_partial_req");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let mut reader = plain_reader(&publisher, dir.socket(), 1);
    reader.write_all(b"{\"markers\":tr").unwrap();
    // The server thread reads that part as soon as it arrives (it is woken
    // for it); from then on it must not grant write-through to this reader.
    std::thread::sleep(Duration::from_millis(300));
    for seq in 0..N {
        emit(&publisher, &numbered(0, seq, 10));
        check_line(&reader.line(), &numbered(0, seq, 10));
        quiet();
    }
    assert_eq!(
        publisher.stats().written_through,
        0,
        "a reader whose request line is half written must not be written through: {:?}",
        publisher.stats()
    );
    reader.write_all(b"ue}\n").unwrap();
    let ack = reader.line();
    assert!(
        ack.starts_with(b"{\"notif\":{"),
        "{:?}",
        String::from_utf8_lossy(&ack)
    );
    for seq in N..2 * N {
        emit(&publisher, &numbered(0, seq, 10));
        check_line(&reader.line(), &numbered(0, seq, 10));
        quiet();
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.delivered, 2 * N, "{stats:?}");
    assert!(
        stats.written_through > 0,
        "once the request is read, write-through may go on: {stats:?}"
    );
}

// ------------ subscribers coming and going while emitters write through

#[test]
fn subscribers_coming_and_going_while_emitters_write_through_never_get_stale_writes() {
    const EMITTERS: u64 = 2;
    const EACH: u64 = 1500;
    const CHURN: usize = 150;
    let dir = TempDir::new("wt_churn");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let steady = plain_reader(&publisher, dir.socket(), 1);
    let steady = std::thread::spawn(move || {
        let mut steady = steady;
        let mut next = vec![0u64; EMITTERS as usize];
        for _ in 0..EMITTERS * EACH {
            let line = steady.line();
            let (t, i) = parse_threaded(&line);
            assert_eq!(line, threaded(t, i), "corrupt line");
            assert_eq!(
                i, next[t as usize],
                "thread {t}: lost, duplicated or reordered"
            );
            next[t as usize] += 1;
        }
        steady
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let emitters: Vec<_> = (0..EMITTERS)
            .map(|t| {
                let publisher = &publisher;
                scope.spawn(move || {
                    let mut rng = Rng(0x1234 + t);
                    for i in 0..EACH {
                        emit(publisher, &threaded(t, i));
                        match rng.below(4) {
                            0 => {}
                            _ => std::thread::sleep(Duration::from_micros(200 + rng.below(1500))),
                        }
                    }
                })
            })
            .collect();
        let done = &done;
        let path = dir.socket();
        scope.spawn(move || {
            let mut rng = Rng(99);
            for k in 0..CHURN {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let stream = UnixStream::connect(&path).unwrap();
                // Short: once the emitters are done, no line comes.
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                match k % 4 {
                    // Reads a line or two, then leaves (with unread data, perhaps).
                    0 | 1 => {
                        let mut reader = BufReader::new(&stream);
                        for _ in 0..1 + rng.below(2) {
                            let mut l = Vec::new();
                            if reader.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                                break;
                            }
                            // Whatever it got is a whole notification line.
                            assert_eq!(l.last(), Some(&b'\n'));
                            l.pop();
                            let (t, i) = parse_threaded(&l);
                            assert_eq!(l, threaded(t, i), "a churning reader got a bad line");
                        }
                    }
                    // Leaves at once.
                    2 => {}
                    // Shuts its reading side, then lingers a little.
                    _ => {
                        let _ = stream.shutdown(Shutdown::Read);
                        std::thread::sleep(Duration::from_millis(rng.below(5)));
                    }
                }
                drop(stream);
                std::thread::sleep(Duration::from_millis(rng.below(8)));
            }
        });
        for emitter in emitters {
            emitter.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let _steady = steady
        .join()
        .expect("the steady reader got everything in order");
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.emitted, EMITTERS * EACH);
    assert_eq!(
        stats.bad_requests, 0,
        "nothing may be written to a descriptor that is not a subscriber's: {stats:?}"
    );
    assert!(stats.written_through > 0, "{stats:?}");
}

// ------------ stalled readers with cut-short lines: too slow, over the memory limit

/// `readers` plain readers that do not read while `m` large notifications
/// are emitted quietly (written through, then cut short), then read to the
/// end of the stream once close has begun. Every line each got must be
/// whole: a notification exactly as emitted, in increasing order, or a
/// control line; returns each reader's notification numbers and control
/// lines, and the final stats.
#[allow(clippy::type_complexity)]
fn stalled_readers_then_close(
    options: &Options,
    readers: u64,
    m: u64,
) -> (Vec<(Vec<u64>, Vec<serde_json::Value>)>, notif::Stats) {
    let dir = TempDir::new("wt_stalled");
    let publisher = Publisher::open_with(dir.socket(), options).unwrap();
    let stalled: Vec<_> = (1..=readers)
        .map(|n| plain_reader(&publisher, dir.socket(), n))
        .collect();
    let warm_ups = until_written_through(&publisher, 1);
    for seq in 0..m {
        let _ = publisher.emit(&large(seq)); // EAGAIN would be counted; none expected
        quiet();
    }
    let handles: Vec<_> = stalled
        .into_iter()
        .map(|mut reader| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let (lines, tail) = reader.read_to_eof_with_tail();
                assert!(
                    tail.is_empty(),
                    "the stream ended inside a line ({} bytes of it)",
                    tail.len()
                );
                let mut seqs = Vec::new();
                let mut control = Vec::new();
                for line in lines {
                    if line.starts_with(b"{\"notif\":") {
                        control.push(serde_json::from_slice(&line).expect("a JSON control line"));
                        continue;
                    }
                    let (stream, seq) = parse_numbered(&line);
                    if stream == 1 {
                        assert!(seqs.is_empty(), "a warm-up after the large ones");
                        continue;
                    }
                    assert!(
                        control.is_empty(),
                        "a notification after a control line that ends the stream"
                    );
                    assert!(
                        !matches!(seqs.last(), Some(&last) if seq <= last),
                        "reordered"
                    );
                    check_line(&line, &large(seq));
                    seqs.push(seq);
                }
                (seqs, control)
            })
        })
        .collect();
    let stats = publisher.close();
    let got = handles
        .into_iter()
        .map(|h| h.join().expect("a stalled reader"))
        .collect();
    assert_final(&stats);
    // Those emitted once everyone was disconnected had nobody to go to.
    assert_eq!(
        stats.emitted + stats.dropped_no_subscriber,
        m + warm_ups,
        "{stats:?}"
    );
    (got, stats)
}

#[test]
fn a_cut_short_subscriber_disconnected_as_too_slow_gets_its_line_finished_before_the_error() {
    let options = Options {
        subscriber_buffer: 2 * 1024 * 1024,
        slow_policy: notif::SlowPolicy::Disconnect,
        ..Options::default()
    };
    let (got, stats) = stalled_readers_then_close(&options, 2, 40);
    assert!(stats.disconnected >= 1, "nobody was too slow: {stats:?}");
    for (seqs, control) in got {
        // A prefix, without a gap, then (if disconnected) the error line.
        assert!(
            seqs.iter().enumerate().all(|(i, &s)| s == i as u64),
            "a gap: {seqs:?}"
        );
        for line in &control {
            assert_eq!(line["notif"]["reason"], "too_slow", "{line}");
        }
    }
}

#[test]
fn a_cut_short_subscriber_that_loses_its_queue_to_the_memory_limit_keeps_whole_lines() {
    let options = Options {
        subscriber_buffer: 32 * 1024 * 1024,
        memory_limit: 2 * 1024 * 1024,
        ..Options::default()
    };
    let (got, stats) = stalled_readers_then_close(&options, 2, 40);
    assert!(
        stats.dropped_slow > 0,
        "the memory limit should have cost someone: {stats:?}"
    );
    let received: u64 = got.iter().map(|(seqs, _)| seqs.len() as u64).sum();
    // Each got the warm-ups too (counted in delivered).
    assert!(stats.delivered >= received, "{stats:?}");
}

// ------------ numbering: what was written through gets the server thread's numbers

#[test]
fn a_long_quiet_stream_wakes_the_server_thread_to_number_what_was_written_through_and_loses_nothing(
) {
    // About 230 KB: the server thread is woken each time 64 KiB of written
    // through notifications gathered in the backlog, numbers them and grants
    // again, while the emitter goes on.
    const N: u64 = 1500;
    let dir = TempDir::new("wt_long");
    let options = Options {
        replay: 1024 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let line = |seq| numbered(0, seq, 120);
    let readers: Vec<_> = (1..=2)
        .map(|n| spawn_exact_reader(plain_reader(&publisher, dir.socket(), n), 0, N, line))
        .collect();
    let mut emitted_bytes = 0;
    for seq in 0..N {
        emit(&publisher, &line(seq));
        emitted_bytes += line(seq).len() as u64 + 1;
        if seq % 2 == 0 {
            quiet();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let _readers: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("a reader got everything"))
        .collect();
    // Exactly what the readers read (the stats answer below is sent too).
    wait_until("bytes_sent counts what the readers read", || {
        publisher.stats().bytes_sent == 2 * emitted_bytes
    });
    let answer = socket_stats(&dir.socket());
    assert_eq!(field(&answer, "next_seq"), N, "{answer}");
    assert_eq!(field(&answer, "replay_messages"), N, "{answer}");
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(stats.delivered, 2 * N, "{stats:?}");
    assert!(stats.wakeups >= 1, "{stats:?}");
    assert!(stats.written_through > N, "{stats:?}");
}

#[test]
fn a_cursor_of_a_notification_the_server_thread_has_not_numbered_yet_resumes_exactly() {
    let dir = TempDir::new("wt_fresh_cursor");
    // With a ring, as resuming without loss is promised: without one, a
    // notification the server sends the resuming subscriber before it has
    // read its request (the race of emitting right after it connected) is
    // one it cannot use, and is reported to it as dropped.
    let options = Options {
        replay: 1 << 20,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let no_reconnect = || SubscribeOptions {
        reconnect: false,
        ..SubscribeOptions::default()
    };
    let mut a = acknowledged_subscriber(&publisher, &dir.socket(), no_reconnect(), 1);
    let base = publisher.stats().emitted;
    // Written through: the server thread sleeps and has numbered none of
    // these when the cursor is handed on.
    for seq in 0..10 {
        emit(&publisher, &numbered(0, seq, 10));
        let (line, cursor) = recv_numbered(&mut a);
        check_line(&line, &numbered(0, seq, 10));
        assert_eq!(cursor, base + seq);
        quiet();
    }
    let mut b = notif::Subscriber::connect(
        dir.socket(),
        SubscribeOptions {
            after: a.cursor(),
            ..no_reconnect()
        },
    )
    .unwrap();
    wait_for_subscribers(&publisher, 2);
    for seq in 10..30 {
        emit(&publisher, &numbered(0, seq, 10));
        for subscriber in [&mut a, &mut b] {
            let (line, cursor) = recv_numbered(subscriber);
            check_line(&line, &numbered(0, seq, 10));
            assert_eq!(cursor, base + seq, "lost or duplicated across the resume");
        }
        quiet();
    }
    let stats = publisher.close();
    assert_final(&stats);
    assert_eq!(
        stats.bad_requests, 0,
        "the fresh cursor was refused: {stats:?}"
    );
}

// ------------ the subscriber client's heartbeat watch, fed by write-through

#[test]
fn a_heartbeat_subscriber_fed_by_write_through_never_thinks_the_publisher_died() {
    let dir = TempDir::new("wt_hb_client");
    let publisher = Publisher::open_with(dir.socket(), &Options::default()).unwrap();
    let mut subscriber = acknowledged_subscriber(
        &publisher,
        &dir.socket(),
        SubscribeOptions {
            heartbeat: Some(Duration::from_millis(200)),
            ..SubscribeOptions::default()
        },
        1,
    );
    let base = publisher.stats().emitted;
    let mut seq = 0;
    for _round in 0..3 {
        // A second of written-through notifications, then a second idle.
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            emit(&publisher, &numbered(0, seq, 10));
            let (line, cursor) = recv_numbered(&mut subscriber);
            check_line(&line, &numbered(0, seq, 10));
            assert_eq!(cursor, base + seq);
            seq += 1;
            quiet();
        }
        let idle = Instant::now() + Duration::from_secs(1);
        while Instant::now() < idle {
            match subscriber.recv(Some(Duration::from_millis(100))).unwrap() {
                Event::Timeout => {}
                other => panic!("while idle: {other:?}"),
            }
        }
    }
    assert_eq!(subscriber.reconnects(), 0);
    assert!(
        subscriber.last_heartbeat().is_some(),
        "no heartbeat while idle"
    );
    let stats = publisher.close();
    assert_final(&stats);
    assert!(stats.written_through > 0, "{stats:?}");
}
