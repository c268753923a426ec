//! Red team: stats answers that are never read. A stats request is answered
//! with every counter and one entry per subscriber, queued on the asker's
//! connection for up to the linger time. Connections being closed are not
//! counted against max_subscribers and their queues cannot be shed, so a peer
//! that holds many idle subscriptions (to make the list long) and then opens
//! stats connections it never reads makes the publisher hold answer after
//! answer. The publisher's memory must stay within memory_limit plus a fixed
//! allowance, and the memory limit must not be enforced on the well-behaved
//! subscribers' queues because of answers nobody reads.

use crate::common;
use crate::common::faults;

use std::io::Write;
use std::os::unix::net::UnixStream;

use common::*;
use faults::*;
use notif::{Options, Publisher};

const LIMIT: usize = 16 * 1024 * 1024;
const ALLOWANCE: u64 = 24 * 1024 * 1024;

#[test]
fn unread_stats_answers_stay_within_the_memory_limit() {
    isolated!();
    let _serial = serial();
    let dir = TempDir::new("redteam-stats-flood");
    let path = dir.socket();
    let mut options = Options::default();
    options.set_memory_limit(LIMIT).unwrap();
    options.set_max_subscribers(2000).unwrap();
    let idle: usize = std::env::var("REDTEAM_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let probes: usize = std::env::var("REDTEAM_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let publisher = Publisher::open_with(&path, &options).unwrap();
    let mut held = Vec::new();
    for _ in 0..idle {
        let mut stream = UnixStream::connect(&path).unwrap();
        // A request with a filter, so that its entry in the list is long too.
        stream
            .write_all(b"{\"subscribe\":{\"event_types\":[\"never.*\"]},\"markers\":true,\"heartbeat_s\":3600}\n")
            .unwrap();
        held.push(stream);
    }
    wait_for_subscribers(&publisher, idle as u64);
    let before = resident_bytes();
    let watch = MemoryWatch::start();
    let asked = std::time::Instant::now();
    let mut askers = Vec::new();
    for _ in 0..probes {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.write_all(b"{\"stats\":true}\n").unwrap();
        askers.push(stream);
    }
    wait_until("every stats request answered", || {
        publisher.stats().stats_requests >= probes as u64
    });
    let answered = asked.elapsed();
    let peak = watch.finish();
    eprintln!(
        "{idle} idle subscribers, {probes} unread stats answers in {answered:?}: RSS {} MiB -> peak {} MiB (limit {} MiB)",
        before >> 20,
        peak >> 20,
        LIMIT >> 20
    );
    drop(askers);
    drop(held);
    publisher.close();
    assert!(
        peak.saturating_sub(before) <= LIMIT as u64 + ALLOWANCE,
        "unread stats answers grew the publisher by {} MiB, memory limit {} MiB",
        (peak - before) >> 20,
        LIMIT >> 20
    );
}
