//! Red team: the verdict caches. Each distinct filter remembers its verdict
//! per field value, up to 4,096 values per list. A host whose event types
//! are not a handful (an id in them, say) fills every cache: peers that
//! subscribe with many distinct filters make the publisher hold a cache each,
//! outside the memory limit, and make every new value cost the patterns of
//! every filter. A reader beside them must still get every notification in
//! order, and the publisher's memory must stay within its limit plus a fixed
//! allowance.

use crate::common;
use crate::common::faults;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use common::*;
use faults::*;
use notif::{Options, Publisher};

const LIMIT: usize = 16 * 1024 * 1024;
const ALLOWANCE: u64 = 24 * 1024 * 1024;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn distinct_filters_and_unique_event_types_stay_within_the_memory_limit() {
    isolated!();
    let _serial = serial();
    let dir = TempDir::new("redteam-filter-cache");
    let path = dir.socket();
    let mut options = Options::default();
    options.set_memory_limit(LIMIT).unwrap();
    let filters = env_or("REDTEAM_FILTERS", 200);
    let messages = env_or("REDTEAM_MESSAGES", 4096) as u64;
    let publisher = Publisher::open_with(&path, &options).unwrap();
    let mut attackers = Vec::new();
    for i in 0..filters {
        let mut stream = UnixStream::connect(&path).unwrap();
        // Distinct filters (no sharing), matching nothing, on both globbed fields.
        let request = format!(
            "{{\"subscribe\":{{\"event_types\":[\"never.{i}.*\"],\"publishers\":[\"nobody-{i}\"]}}}}\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        attackers.push(stream);
    }
    wait_for_subscribers(&publisher, filters as u64);
    let reader = spawn_sequential_reader(RawReader::connect(&path), messages);
    wait_for_subscribers(&publisher, filters as u64 + 1);
    let before = resident_bytes();
    let watch = MemoryWatch::start();
    let started = Instant::now();
    let pad = "p".repeat(64);
    for seq in 0..messages {
        let line = format!(
            "{{\"event_type\":\"compute.instance.update.{seq:08}.{pad}\",\"publisher_id\":\"nova-compute:{seq:08}.{pad}\",\"stream\":0,\"seq\":{seq}}}"
        );
        emit_retrying(&publisher, line.as_bytes());
    }
    reader
        .join()
        .expect("the reader got every notification in order");
    let took = started.elapsed();
    let peak = watch.finish();
    eprintln!(
        "{filters} distinct filters, {messages} unique event types: {:.1} us per notification, RSS {} -> peak {} MiB (limit {} MiB)",
        took.as_secs_f64() * 1e6 / messages as f64,
        before >> 20,
        peak >> 20,
        LIMIT >> 20
    );
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.dropped_slow, 0, "{stats:?}");
    drop(attackers);
    publisher.close();
    assert!(
        peak.saturating_sub(before) <= LIMIT as u64 + ALLOWANCE,
        "verdict caches grew the publisher by {} MiB, memory limit {} MiB",
        (peak - before) >> 20,
        LIMIT >> 20
    );
}
