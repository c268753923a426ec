//! Red team: the cost of a filtered resume falls on the server thread. The
//! live path caches each filter's verdict per field value; the history of a
//! resume is filtered message by message, with the patterns run every time.
//! A peer that resumes from the start of a big ring with the heaviest filter
//! allowed, one that matches nothing, must not stall the server thread:
//! close must still return within its linger (plus a generous allowance).

use crate::common;
use crate::common::faults;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use notif::subscription::{MAX_PATTERNS, MAX_PATTERN_BYTES};
use notif::{Options, Publisher};

const RING: usize = 8 * 1024 * 1024;

fn options() -> Options {
    let mut options = Options::default();
    options.set_memory_limit(4 * RING).unwrap();
    options.set_replay(RING).unwrap();
    options.set_linger(Duration::from_secs(1));
    options
}

fn fill_ring(publisher: &Publisher) -> u64 {
    fill_replay_ring(publisher, RING, |seq| {
        format!(
            "{{\"event_type\":\"compute.instance.update\",\"publisher_id\":\"nova-compute:host-1\",\"priority\":\"INFO\",\"seq\":{seq}}}"
        )
    })
}

/// The heaviest filter a request may carry, matching nothing the host emits.
fn heavy_request() -> Vec<u8> {
    let pattern = format!("{}Z", "*".repeat(MAX_PATTERN_BYTES - 1));
    let list: Vec<&str> = (0..MAX_PATTERNS).map(|_| pattern.as_str()).collect();
    let list = serde_json::to_string(&list).unwrap();
    format!("{{\"subscribe\":{{\"event_types\":{list},\"publishers\":{list}}},\"replay\":true}}\n")
        .into_bytes()
}

#[test]
fn heavy_filtered_resumes_do_not_delay_close_past_linger() {
    let dir = TempDir::new("redteam-resume-cpu");
    let path = dir.socket();
    let publisher = Publisher::open_with(&path, &options()).unwrap();
    let numbered = fill_ring(&publisher);
    let attackers_n: usize = std::env::var("REDTEAM_ATTACKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let request = heavy_request();
    let mut attackers = Vec::new();
    for _ in 0..attackers_n {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.write_all(&request).unwrap();
        attackers.push(stream);
    }
    // Let the server thread start on them.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let stats = publisher.close();
    let took = started.elapsed();
    eprintln!("{numbered} notifications in the ring, {attackers_n} attackers: close took {took:?}, filtered {}", stats.filtered);
    assert!(
        took < Duration::from_secs(6),
        "close took {took:?} (linger 1 s) while {attackers_n} peers resumed a ring of {numbered} notifications with the heaviest filter"
    );
}
