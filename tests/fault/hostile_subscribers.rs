//! Fault: hostile subscribers, all at once and in parallel with healthy
//! ones: connections that write garbage (not JSON, binary, unknown keys, two
//! requests, a request cut by shutdown), one that writes a 10 MiB line, and one
//! that connects and never reads. Each costs only itself: the healthy
//! subscribers get every message in order, the garbage is answered with an
//! error line and a close (and counted), the silent one's drops are counted.
//!
//! One test in its own binary: it counts the process's descriptors and threads.

use crate::common;
use crate::common::faults;

use std::io::{ErrorKind, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use faults::*;
use notif::Options;

/// Requests the publisher must refuse, and whether to shut down writing after.
const GARBAGE: &[(&[u8], bool)] = &[
    (b"this is not json\n", false),
    (b"\x00\xff\xfe{{{\x01\x02 \r\n", false),
    (b"{\"bogus\":true}\n", false),
    (b"{\"subscribe\":{\"event_types\":[]}}\n", false),
    (b"{\"heartbeat_s\":\"often\"}\n", false),
    (b"{}\n{}\n", false),
    (b"[1,2,3]", true),
];

/// Reads what a refused connection gets: maybe notifications (sent before
/// the request was read), then exactly one error line, then the end.
fn expect_refusal(stream: UnixStream, what: &str) {
    let mut subscriber = RawReader::from_stream(stream);
    let mut error = None;
    loop {
        match subscriber.try_line() {
            Ok(Some(line)) => {
                assert!(
                    error.is_none(),
                    "{what}: a line after the error line: {}",
                    String::from_utf8_lossy(&line)
                );
                if line.starts_with(b"{\"notif\":{\"error\":") {
                    error = Some(line);
                }
            }
            Ok(None) => break,
            // Our unread input makes the close a reset: it comes after the lines.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{what}: no end of stream: {e}"),
        }
    }
    assert!(error.is_some(), "{what}: closed without an error line");
}

#[test]
fn garbage_huge_lines_and_silent_subscribers_cost_only_themselves() {
    isolated!();
    let rounds = scaled(10u64, 100);
    let huge_rounds = scaled(3u64, 20);
    let mut huge = vec![b'a'; 10 * 1024 * 1024];
    *huge.last_mut().unwrap() = b'\n';
    let options = Options {
        max_message: 16 * 1024,
        ..fault_options(256 * 1024)
    };
    let (dir, baseline, memory, publisher) = open_watched("hostile", &options);
    let (steady, pacer, stop) = steady_paced(&publisher, &dir, 1, 500);
    let mut silent = RawReader::connect(dir.socket());
    silent.write_all(b"{\"markers\":true}\n").unwrap();
    wait_for_subscribers(&publisher, 3);
    let refused = AtomicU64::new(0);
    let sent = std::thread::scope(|scope| {
        let emitter = scope.spawn(|| emit_stream_until(&publisher, &pacer, 0, 200, &stop));
        let garbage = scope.spawn(|| {
            for round in 0..rounds {
                for (i, (bytes, shut)) in GARBAGE.iter().enumerate() {
                    let mut stream = UnixStream::connect(dir.socket()).unwrap();
                    stream.write_all(bytes).unwrap();
                    if *shut {
                        stream.shutdown(Shutdown::Write).unwrap();
                    }
                    expect_refusal(stream, &format!("garbage {i} of round {round}"));
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let huge_line = scope.spawn(|| {
            for round in 0..huge_rounds {
                let mut stream = UnixStream::connect(dir.socket()).unwrap();
                stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                // The publisher reads 64 KiB of it, answers and closes: the
                // rest of the write fails (EPIPE or ECONNRESET).
                match stream.write_all(&huge) {
                    Ok(()) => {}
                    Err(e) => assert!(
                        matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                        "writing the 10 MiB line: {e}"
                    ),
                }
                expect_refusal(stream, &format!("the 10 MiB line of round {round}"));
                refused.fetch_add(1, Ordering::Relaxed);
            }
        });
        garbage.join().unwrap();
        huge_line.join().unwrap();
        // However fast the hostile part went, go on until the silent one has
        // overflowed its whole buffer (kernel share included).
        wait_until("the silent subscriber to fall behind", || {
            publisher.stats().dropped_slow > 0
        });
        stop.store(true, Ordering::Relaxed);
        emitter.join().unwrap()
    });
    drop(huge);
    let (steady, counts) = join_all(steady);
    for counts in counts {
        assert_eq!(counts, vec![sent], "a healthy subscriber missed messages");
    }
    // The silent one now reads: an in-order prefix, then markers that account
    // for everything else up to the end of the stream.
    let (mut received, mut announced, mut next) = (0u64, 0u64, 0u64);
    let mut ended = false;
    while next + announced < sent + 1 {
        let line = silent.line();
        if line.starts_with(b"{\"notif\":{\"subscribed\"") {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"{\"notif\":{\"dropped\":") {
            let n: u64 = String::from_utf8_lossy(rest)
                .trim_end_matches('}')
                .parse()
                .unwrap();
            announced += n;
            continue;
        }
        if let Some((_, total)) = parse_end(&line) {
            assert_eq!(total, sent);
            assert_eq!(
                next + announced,
                sent,
                "the silent one's stream has an unannounced gap"
            );
            ended = true;
            break;
        }
        let (_, seq) = parse_numbered(&line);
        assert_eq!(
            seq,
            next + announced,
            "the silent one's stream has an unannounced gap"
        );
        next = seq + 1;
        received += 1;
    }
    assert!(announced > 0, "the silent subscriber never fell behind");
    let stats = publisher.stats();
    let expect = Expect {
        min_dropped: announced,
        ..Expect::watched(&baseline, &options, 6, memory)
    };
    let stats_after = check_invariants(&publisher, &expect);
    let refused = refused.load(Ordering::Relaxed);
    assert_eq!(refused, rounds * GARBAGE.len() as u64 + huge_rounds);
    assert_eq!(stats_after.bad_requests, refused, "{stats_after:?}");
    assert_eq!(stats_after.disconnected, refused, "{stats_after:?}");
    assert!(stats.dropped_slow >= announced, "{stats:?}");
    eprintln!(
        "hostile: {refused} bad requests refused while {sent} messages went to 2 healthy subscribers; the silent one got {received}, {announced} dropped (end received: {ended}); {stats_after:?}"
    );
    let final_stats = publisher.close();
    for mut subscriber in steady {
        expect_eof_after_markers(&mut subscriber);
    }
    silent.set_read_timeout(Duration::from_secs(10));
    let rest = silent.read_until_closed();
    assert!(rest.len() <= 2, "{} lines after the end", rest.len());
    drop(silent);
    check_closed(&baseline, &final_stats);
}
