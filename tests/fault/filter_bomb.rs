//! Fault: local peers subscribe with the most expensive filters they can
//! write, then never read, while the publisher emits 2,000 notifications a
//! second. A request may hold only MAX_PATTERNS patterns of MAX_PATTERN_BYTES
//! per list (a 64 KiB request of 13,000 patterns is refused), matching costs
//! one cached verdict per filter and notification, so a normal subscriber
//! beside eight such peers misses nothing and sees every notification within
//! half a second, and close returns within its linger plus a little, whatever
//! is still queued for the peers.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use notif::subscription::{MAX_PATTERNS, MAX_PATTERN_BYTES};
use notif::{Options, Publisher};

const RATE: u64 = 2000;
const BOMBS: usize = 8;
const EVENT_TYPES: [&str; 5] = [
    "compute.instance.update",
    "compute.instance.create.start",
    "compute.instance.create.end",
    "image.upload",
    "volume.attach",
];

/// A pattern of `MAX_PATTERN_BYTES` that a naive glob matcher takes long to
/// reject: many stars, each resumed over and over.
fn costly_pattern(i: usize) -> String {
    let mut pattern = String::new();
    while pattern.len() + 3 < MAX_PATTERN_BYTES {
        pattern.push_str("*c*");
    }
    pattern.truncate(MAX_PATTERN_BYTES - 2);
    format!("{pattern}{}", i % 10)
}

fn list(patterns: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = patterns.map(|p| format!("\"{p}\"")).collect();
    format!("[{}]", quoted.join(","))
}

/// The most expensive request the publisher accepts.
fn heaviest_legal_request() -> String {
    let patterns = || list((0..MAX_PATTERNS).map(costly_pattern));
    format!(
        "{{\"subscribe\":{{\"event_types\":{},\"publishers\":{},\"priorities\":{}}}}}\n",
        patterns(),
        patterns(),
        list((0..MAX_PATTERNS).map(|i| format!("P{i}")))
    )
}

/// What one request line of 64 KiB could carry before there was a limit.
fn thirteen_thousand_patterns() -> String {
    let patterns = list((0..13_000).map(|i| format!("*{}", i % 10)));
    format!("{{\"subscribe\":{{\"event_types\":{patterns}}}}}\n")
}

#[test]
fn a_request_over_the_pattern_limit_is_refused_with_the_limit_named() {
    let (dir, publisher) = open_publisher("pattern_limit");
    let request = thirteen_thousand_patterns();
    assert!(request.len() < 64 * 1024);
    let mut bomb = RawReader::connect(dir.socket());
    bomb.write_all(request.as_bytes()).unwrap();
    let answer = String::from_utf8(bomb.line()).unwrap();
    assert!(
        answer.contains("\"reason\":\"bad_request\"")
            && answer.contains(&format!("the limit is {MAX_PATTERNS}")),
        "{answer}"
    );
    bomb.expect_eof();
    let long = format!(
        "{{\"subscribe\":{{\"event_types\":[\"{}\"]}}}}\n",
        "a".repeat(MAX_PATTERN_BYTES + 1)
    );
    let mut bomb = RawReader::connect(dir.socket());
    bomb.write_all(long.as_bytes()).unwrap();
    let answer = String::from_utf8(bomb.line()).unwrap();
    assert!(
        answer.contains(&format!("the limit is {MAX_PATTERN_BYTES}")),
        "{answer}"
    );
    assert_eq!(publisher.stats().bad_requests, 2);
    // The heaviest legal request is accepted.
    let mut heavy = RawReader::connect(dir.socket());
    heavy
        .write_all(heaviest_legal_request().as_bytes())
        .unwrap();
    assert!(heavy.line().starts_with(b"{\"notif\":{\"subscribed\":true"));
}

#[test]
fn eight_filter_bombs_neither_delay_a_normal_subscriber_nor_close() {
    let seconds = if std::env::var_os("NOTIF_SOAK").is_some() {
        20
    } else {
        5
    };
    let dir = TempDir::new("filter_bomb");
    let options = Options {
        linger: Duration::from_secs(1),
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    // Eight peers with the heaviest filters allowed (and some that match:
    // their queues fill).
    let mut bombs: Vec<UnixStream> = Vec::new();
    for i in 0..BOMBS {
        let mut stream = UnixStream::connect(dir.socket()).unwrap();
        let request = if i % 2 == 0 {
            heaviest_legal_request()
        } else {
            format!(
                "{{\"subscribe\":{{\"event_types\":{}}}}}\n",
                list(
                    (0..MAX_PATTERNS - 1)
                        .map(costly_pattern)
                        .chain(["compute.*".to_string()])
                )
            )
        };
        stream.write_all(request.as_bytes()).unwrap();
        bombs.push(stream);
    }
    // Four with what used to be allowed: refused at once (kept open until
    // the refusals are counted, so that each request is read whole).
    let mut refused = Vec::new();
    for _ in 0..4 {
        let mut stream = UnixStream::connect(dir.socket()).unwrap();
        let _ = stream.write_all(thirteen_thousand_patterns().as_bytes());
        refused.push(stream);
    }
    wait_until("the four old-style requests are refused", || {
        publisher.stats().bad_requests >= 4
    });
    drop(refused);
    wait_until("the bombs are subscribed", || {
        publisher.stats().subscribers == BOMBS as u64
    });
    let normal = RawReader::connect_to(&publisher, dir.socket(), BOMBS as u64 + 1);
    let expected = RATE * seconds;
    let start = Instant::now();
    let worst = Arc::new(AtomicU64::new(0));
    let worst_seen = Arc::clone(&worst);
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(normal.stream().try_clone().unwrap());
        lines
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        for expected_seq in 0..expected {
            let mut line = String::new();
            assert!(lines.read_line(&mut line).unwrap() > 0, "end of stream");
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["seq"], expected_seq, "lost or out of order: {line}");
            let sent = Duration::from_micros(value["t_us"].as_u64().unwrap());
            let latency = start.elapsed().saturating_sub(sent);
            worst_seen.fetch_max(latency.as_micros() as u64, Ordering::Relaxed);
        }
        normal
    });
    for seq in 0..expected {
        let due = Duration::from_secs_f64(seq as f64 / RATE as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let line = format!(
            "{{\"event_type\":\"{}\",\"priority\":\"INFO\",\"publisher_id\":\"compute.host{}\",\"seq\":{seq},\"t_us\":{}}}",
            EVENT_TYPES[seq as usize % EVENT_TYPES.len()],
            seq % 3,
            start.elapsed().as_micros()
        );
        publisher
            .emit(line.as_bytes())
            .unwrap_or_else(|e| panic!("emit {seq} failed beside the bombs: {e}"));
    }
    let normal = reader
        .join()
        .expect("the normal subscriber got everything in order");
    let worst = Duration::from_micros(worst.load(Ordering::Relaxed));
    let stats = publisher.stats();
    eprintln!(
        "{BOMBS} filter bombs, {expected} notifications: the normal subscriber missed 0, worst latency {worst:?}; filtered {}, dropped_slow {}",
        stats.filtered, stats.dropped_slow
    );
    assert!(
        worst < Duration::from_millis(500),
        "a notification took {worst:?} to reach the normal subscriber"
    );
    // Queue more than the bombs will ever read, then close: linger bounds it.
    for seq in 0..20_000u64 {
        let line = format!("{{\"event_type\":\"compute.instance.update\",\"seq\":{seq}}}");
        let _ = publisher.emit(line.as_bytes());
    }
    let closing = Instant::now();
    let final_stats = publisher.close();
    let took = closing.elapsed();
    eprintln!(
        "close took {took:?} with linger 1 s; dropped_closed {}",
        final_stats.dropped_closed
    );
    assert!(
        took < Duration::from_secs(2),
        "close took {took:?} with linger 1 s"
    );
    assert_invariant(&final_stats);
    assert!(final_stats.dropped_closed > 0, "{final_stats:?}");
    drop(normal);
    drop(bombs);
}
