//! Red team: resumed subscribers with a filter materialize history copies.
//! A sparse filter (one that matches every other notification) must not let a
//! resumed subscriber hold more than its subscriber_buffer, nor all of them
//! together more than memory_limit.

use crate::common;
use crate::common::faults;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use faults::*;
use notif::{Options, Publisher};

const RING: usize = 8 * 1024 * 1024;
const BUFFER: usize = 256 * 1024;
const LIMIT: usize = 16 * 1024 * 1024;

fn options() -> Options {
    let mut options = Options::default();
    options.set_memory_limit(LIMIT).unwrap();
    options.set_replay(RING).unwrap();
    options.set_max_message(64 * 1024).unwrap();
    options.set_subscriber_buffer(BUFFER).unwrap();
    options
}

/// Fills the ring with notifications whose event types alternate.
fn fill_ring(publisher: &Publisher) {
    fill_replay_ring(publisher, RING, |seq| {
        let kind = if seq % 2 == 0 { "a.tick" } else { "b.tick" };
        format!("{{\"event_type\":\"{kind}\",\"seq\":{seq},\"pad\":\"xxxxxxxxxxxxxxxx\"}}")
    });
}

/// The publisher's stats answer, as JSON.
fn stats_json(path: &std::path::Path) -> serde_json::Value {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(b"{\"stats\":true}\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let value: serde_json::Value = serde_json::from_slice(answer.trim_ascii_end()).unwrap();
    value["notif"]["stats"].clone()
}

fn attackers_held(path: &std::path::Path, n: usize) -> Vec<u64> {
    let mut held = Vec::new();
    wait_until("every attacker's request to be served", || {
        let stats = stats_json(path);
        held = stats["subscriber_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["filter"].is_null())
            .map(|s| s["queued_bytes"].as_u64().unwrap())
            .collect();
        held.len() == n
    });
    held
}

#[test]
fn a_sparse_filtered_resume_holds_at_most_its_buffer() {
    isolated!();
    let dir = TempDir::new("redteam-sparse-resume");
    let path = dir.socket();
    let publisher = Publisher::open_with(&path, &options()).unwrap();
    fill_ring(&publisher);
    let before = resident_bytes();
    let mut attackers = Vec::new();
    const ATTACKERS: usize = 4;
    for _ in 0..ATTACKERS {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream
            .write_all(b"{\"subscribe\":{\"event_types\":[\"a.*\"]},\"replay\":true}\n")
            .unwrap();
        attackers.push(stream);
    }
    let held = attackers_held(&path, ATTACKERS);
    let after = resident_bytes();
    eprintln!(
        "held per attacker {held:?}, RSS {} -> {} MiB",
        before >> 20,
        after >> 20
    );
    for &h in &held {
        assert!(
            h as usize <= BUFFER,
            "a resumed filtered subscriber holds {h} bytes, over its subscriber_buffer of {BUFFER}"
        );
    }
    assert!(held.iter().sum::<u64>() as usize <= LIMIT);
    drop(attackers);
    let _ = std::time::Duration::from_secs(0);
    let _ = Duration::ZERO;
    publisher.close();
}

/// The bound must not cost correctness: a resumed reader with the same sparse
/// filter gets every matching notification of the ring, in order, each
/// preceded by the `seq` line that numbers it.
#[test]
fn a_sparse_filtered_resume_still_gets_every_match_in_order() {
    let dir = TempDir::new("redteam-sparse-resume-reader");
    let path = dir.socket();
    let publisher = Publisher::open_with(&path, &options()).unwrap();
    fill_ring(&publisher);
    let stats = publisher.stats();
    let (oldest, next) = (stats.replay_oldest, stats.next_seq);
    let mut reader = RawReader::connect(&path);
    reader
        .write_all(b"{\"subscribe\":{\"event_types\":[\"a.*\"]},\"replay\":true}\n")
        .unwrap();
    let ack = reader.line();
    assert!(
        ack.starts_with(b"{\"notif\":") && ack.windows(17).any(|w| w == b"\"subscribed\":true"),
        "{}",
        String::from_utf8_lossy(&ack)
    );
    let first_even = oldest + oldest % 2;
    if oldest > 0 {
        let marker = reader.line();
        assert_eq!(
            marker,
            format!("{{\"notif\":{{\"dropped\":{oldest}}}}}").into_bytes()
        );
    }
    let mut expected = first_even;
    while expected < next {
        let seq_line = reader.line();
        assert_eq!(
            seq_line,
            format!("{{\"notif\":{{\"seq\":{expected}}}}}").into_bytes(),
            "seq line before {expected}"
        );
        let line = reader.line();
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["seq"].as_u64(), Some(expected));
        assert_eq!(value["event_type"], "a.tick");
        expected += 2;
    }
    let final_stats = publisher.close();
    assert_invariant(&final_stats);
}

/// A peer that resumes from the start of the ring without a filter and never
/// reads holds a range of the log; when the ring moves past it, it must not
/// be given a private copy larger than its own buffer.
#[test]
fn an_unread_unfiltered_resume_holds_at_most_its_buffer_when_the_ring_moves_on() {
    isolated!();
    let dir = TempDir::new("redteam-unfiltered-resume");
    let path = dir.socket();
    let mut options = options();
    options.set_memory_limit(4 * RING).unwrap();
    let publisher = Publisher::open_with(&path, &options).unwrap();
    fill_ring(&publisher);
    let mut attacker = UnixStream::connect(&path).unwrap();
    attacker.write_all(b"{\"replay\":true}\n").unwrap();
    wait_until("the attacker to be subscribed", || {
        stats_json(&path)["subscriber_list"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    });
    // Move the ring on by its whole size.
    let start = publisher.stats().next_seq;
    fill_ring_from(&publisher, start);
    let stats = stats_json(&path);
    let held = stats["subscriber_list"][0]["queued_bytes"]
        .as_u64()
        .unwrap();
    eprintln!("unfiltered resumer holds {held} bytes (buffer {BUFFER})");
    assert!(
        held as usize <= BUFFER,
        "an unread resumed subscriber holds {held} bytes, over its subscriber_buffer of {BUFFER}"
    );
    drop(attacker);
    publisher.close();
}

fn fill_ring_from(publisher: &Publisher, start: u64) {
    let mut seq = start;
    while seq < 2 * start {
        let kind = if seq % 2 == 0 { "a.tick" } else { "b.tick" };
        let line =
            format!("{{\"event_type\":\"{kind}\",\"seq\":{seq},\"pad\":\"xxxxxxxxxxxxxxxx\"}}");
        emit_retrying(publisher, line.as_bytes());
        seq += 1;
    }
    wait_until("every notification numbered", || {
        publisher.stats().next_seq == seq
    });
}
