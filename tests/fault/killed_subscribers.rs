//! Fault: subscriber processes killed with SIGKILL while they read, and one
//! stopped with SIGSTOP then resumed with SIGCONT. The subscribers are child
//! processes (this test binary re-executed as a relay that copies what it
//! reads from the socket to its stdout, which the test reads).
//!
//! The tests count the process's descriptors: they run one at a time.

use crate::common;
use crate::common::faults;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use faults::*;
use notif::Publisher;

/// Reads relayed lines until the acknowledgement of the relay's request;
/// notifications before it (the unfiltered stream) are skipped.
fn wait_for_ack(relay: &Remote) {
    loop {
        let line = relay.expect_line("its acknowledgement");
        if line.starts_with(b"{\"notif\":{\"subscribed\":true") {
            return;
        }
    }
}

fn relay_env(dir: &TempDir, request: &str, slow: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NOTIF_FAULT_PATH", dir.socket().display().to_string()),
        ("NOTIF_FAULT_REQUEST", request.to_owned()),
    ];
    if slow {
        env.push(("NOTIF_FAULT_READ_CHUNK", "4096".into()));
        env.push(("NOTIF_FAULT_READ_DELAY_US", "2000".into()));
    }
    env
}

#[test]
fn subscribers_killed_mid_read_cost_only_themselves() {
    const TEST: &str = concat!(
        module_path!(),
        "::subscribers_killed_mid_read_cost_only_themselves"
    );
    role_hook();
    isolated!();
    let _serial = serial();
    let rounds = scaled(1, 5);
    const RELAYS: usize = 4;
    let options = fault_options(128 * 1024);
    let (dir, baseline, memory, publisher) = open_watched("killed", &options);
    let (steady, pacer, stop) = steady_paced(&publisher, &dir, 1, 500);
    let mut stopped_first = 0u64;
    let sent = std::thread::scope(|scope| {
        let emitter = scope.spawn(|| emit_stream_until(&publisher, &pacer, 0, 100, &stop));
        for round in 0..rounds {
            // Two fast readers, two slow ones (4 KiB every 2 ms).
            let relays: Vec<Remote> = (0..RELAYS)
                .map(|i| spawn_role(TEST, "relay", &relay_env(&dir, "{}", i >= 2)))
                .collect();
            for relay in &relays {
                wait_for_ack(relay);
            }
            wait_for_subscribers(&publisher, 2 + RELAYS as u64);
            for (i, mut relay) in relays.into_iter().enumerate() {
                // Mid-read: it is receiving the stream right now.
                let mut last = None;
                for _ in 0..200 {
                    let line = relay.expect_line("more notifications");
                    let (_, seq) = parse_numbered(&line);
                    assert!(
                        last.is_none_or(|last| seq > last),
                        "a relay got {seq} after {last:?}"
                    );
                    last = Some(seq);
                }
                if (i + round) % 2 == 1 {
                    // Stopped first: its buffer fills, drops are counted, and
                    // it dies with a full queue.
                    let dropped = publisher.stats().dropped_slow;
                    relay.signal(libc::SIGSTOP);
                    wait_until("the stopped subscriber's drops are counted", || {
                        publisher.stats().dropped_slow > dropped
                    });
                    stopped_first += 1;
                }
                let status = relay.kill();
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
                wait_for_subscribers(&publisher, 2 + (RELAYS - i - 1) as u64);
            }
        }
        stop.store(true, Ordering::Relaxed);
        emitter.join().unwrap()
    });
    let (steady, counts) = join_all(steady);
    for counts in counts {
        assert_eq!(counts, vec![sent], "a steady subscriber missed messages");
    }
    let expect = Expect {
        min_dropped: stopped_first,
        ..Expect::watched(&baseline, &options, 2 + RELAYS, memory)
    };
    let stats = check_invariants(&publisher, &expect);
    assert!(stopped_first > 0);
    assert!(
        stats.dropped_closed > 0,
        "subscribers killed with a full queue, yet nothing counted in dropped_closed: {stats:?}"
    );
    assert_eq!(
        stats.accepted,
        2 + (rounds * RELAYS) as u64 + 1,
        "{stats:?}"
    );
    eprintln!(
        "killed: {} relays killed ({stopped_first} stopped first) while {sent} messages went to 2 steady subscribers; {stats:?}",
        rounds * RELAYS
    );
    close_and_check(publisher, steady, &baseline);
}

/// What the stopped relay got, checked as it comes: numbered messages in
/// order, each gap announced by a drop marker of exactly its size.
#[derive(Debug, Default)]
struct RelayLog {
    received: u64,
    dropped: u64,
    markers: u64,
    /// The sequence number right after the last gap.
    last_gap_end: Option<u64>,
}

/// `progress` counts messages received or announced as dropped.
fn check_relayed_stream(relay: &Remote, progress: &AtomicU64) -> RelayLog {
    let mut log = RelayLog::default();
    let mut next = 0u64;
    let mut announced = 0u64;
    loop {
        let line = relay.expect_line("the rest of the stream");
        let text = String::from_utf8_lossy(&line).into_owned();
        if text.starts_with("{\"notif\":{\"subscribed\"") {
            continue;
        }
        if let Some(rest) = text.strip_prefix("{\"notif\":{\"dropped\":") {
            let n: u64 = rest.trim_end_matches('}').parse().unwrap();
            assert!(n > 0, "an empty drop marker: {text}");
            announced += n;
            log.dropped += n;
            log.markers += 1;
            progress.store(next + announced, Ordering::Relaxed);
            continue;
        }
        if let Some((_, total)) = parse_end(&line) {
            assert_eq!(total, next + announced, "the stream ended early or late");
            return log;
        }
        let (_, seq) = parse_numbered(&line);
        assert_eq!(
            seq,
            next + announced,
            "after message {next} and {announced} announced drops, got {seq}: a gap nobody announced, or a reorder"
        );
        if announced > 0 {
            log.last_gap_end = Some(seq);
        }
        announced = 0;
        next = seq + 1;
        log.received += 1;
        progress.store(next, Ordering::Relaxed);
    }
}

#[test]
fn a_stopped_subscriber_falls_behind_and_after_sigcont_catches_up_in_order() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_stopped_subscriber_falls_behind_and_after_sigcont_catches_up_in_order"
    );
    role_hook();
    isolated!();
    let _serial = serial();
    let (before, while_stopped, after) = scaled((500u64, 4_000u64, 500u64), (5_000, 40_000, 5_000));
    let dir = TempDir::new("stopped");
    let options = fault_options(64 * 1024);
    let baseline = Baseline::take();
    let memory = MemoryWatch::start();
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let steady = steady_readers(&publisher, &dir.socket(), 2, 1);
    let mut relay = spawn_role(TEST, "relay", &relay_env(&dir, "{\"markers\":true}", false));
    wait_for_ack(&relay);
    wait_for_subscribers(&publisher, 3);
    let relay_progress = Arc::new(AtomicU64::new(0));
    let steady_progress: Vec<_> = steady.iter().map(|r| r.progress.clone()).collect();
    let mut everyone = steady_progress.clone();
    everyone.push(relay_progress.clone());
    let (log, dropped_while_stopped) = std::thread::scope(|scope| {
        let checker = scope.spawn(|| check_relayed_stream(&relay, &relay_progress));
        let pacer = Pacer::new(everyone.clone(), 200);
        for seq in 0..before {
            pacer.emit(&publisher, &numbered(0, seq, 100));
        }
        wait_until("the relay has everything so far", || {
            relay_progress.load(Ordering::Relaxed) == before
        });
        relay.signal(libc::SIGSTOP);
        let pacer = Pacer::new(steady_progress.clone(), 200).starting_at(before);
        for seq in before..before + while_stopped {
            pacer.emit(&publisher, &numbered(0, seq, 100));
        }
        wait_until("the stopped subscriber's drops are counted", || {
            publisher.stats().dropped_slow > 0
        });
        let dropped_while_stopped = publisher.stats().dropped_slow;
        relay.signal(libc::SIGCONT);
        // It catches up: what was queued, with markers for the gaps (the
        // drops may be announced in more than one marker).
        wait_until("the resumed subscriber catches up", || {
            relay_progress.load(Ordering::Relaxed) == before + while_stopped
        });
        let pacer = Pacer::new(everyone.clone(), 200).starting_at(before + while_stopped);
        let total = before + while_stopped + after;
        for seq in before + while_stopped..total {
            pacer.emit(&publisher, &numbered(0, seq, 100));
        }
        emit_retrying(&publisher, &end_of_stream(0, total));
        (checker.join().unwrap(), dropped_while_stopped)
    });
    let total = before + while_stopped + after;
    let (steady, counts) = join_all(steady);
    for counts in counts {
        assert_eq!(counts, vec![total], "a steady subscriber missed messages");
    }
    // Every message is either received or announced as dropped, and every
    // drop happened while it was stopped: everything newer came through.
    assert_eq!(log.received + log.dropped, total, "{log:?}");
    assert!(log.dropped > 0, "{log:?}");
    assert!(
        log.last_gap_end
            .is_some_and(|seq| seq <= before + while_stopped),
        "a gap after the subscriber had caught up: {log:?}"
    );
    let expect = Expect {
        min_dropped: log.dropped,
        ..Expect::watched(&baseline, &options, 3, memory)
    };
    let stats = check_invariants(&publisher, &expect);
    // Only the stopped one dropped anything, and the counters agree with its markers.
    assert_eq!(stats.dropped_slow, log.dropped, "{stats:?} {log:?}");
    assert!(dropped_while_stopped <= log.dropped);
    assert_eq!(stats.dropped_closed, 0, "{stats:?}");
    eprintln!(
        "stopped: {total} messages, the stopped subscriber received {} and was told of {} drops in {} markers; {stats:?}",
        log.received, log.dropped, log.markers
    );
    let final_stats = publisher.close();
    // The relay sees end of stream and exits by itself.
    let status = relay.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "the relay did not end cleanly at close: {status:?}"
    );
    for mut subscriber in steady {
        expect_eof_after_markers(&mut subscriber);
    }
    drop(relay);
    check_closed(&baseline, &final_stats);
}
