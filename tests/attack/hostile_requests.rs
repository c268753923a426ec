//! Red team: hostile request lines and spoofed control lines. Every malformed
//! request gets exactly one error line with reason bad_request, then the
//! close; none of it disturbs a well-behaved subscriber, and the counters
//! balance afterwards.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use common::*;
use notif::{Options, Publisher};

fn value(line: &[u8]) -> serde_json::Value {
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
}

/// Sends `request` and returns every line until the publisher closes.
fn exchange(path: &Path, request: &[u8]) -> Vec<Vec<u8>> {
    let stream = UnixStream::connect(path).unwrap();
    let mut subscriber = RawReader::from_stream(stream);
    let _ = subscriber.write_all(request);
    subscriber.read_until_closed()
}

fn assert_refused(path: &Path, request: &[u8]) {
    let lines = exchange(path, request);
    let shown = String::from_utf8_lossy(request);
    assert_eq!(lines.len(), 1, "{shown}: {lines:?}");
    let error = value(&lines[0]);
    assert_eq!(error["notif"]["reason"], "bad_request", "{shown}: {error}");
}

fn ring_publisher(dir: &TempDir) -> Publisher {
    let mut options = Options::default();
    options.set_replay(1024 * 1024).unwrap();
    Publisher::open_with(dir.socket(), &options).unwrap()
}

#[test]
fn malformed_cursors_and_combinations_are_bad_requests() {
    let dir = TempDir::new("redteam-protocol-cursors");
    let publisher = ring_publisher(&dir);
    let path = dir.socket();
    for seq in 0..10u64 {
        publisher
            .emit(format!("{{\"event_type\":\"x\",\"seq\":{seq}}}").as_bytes())
            .unwrap();
    }
    let epoch = format!("{:016x}", publisher.epoch());
    let cursors = [
        String::new(),
        "-".into(),
        "zz-1".into(),
        format!("{epoch}-"),
        format!("{epoch}-+1"),
        format!("{epoch}--1"),
        format!("{epoch}-1.0"),
        format!("{epoch}-1e3"),
        format!("{epoch} -1"),
        format!("0{epoch}-1"),
        format!("{}-1", &epoch[1..]),
        format!("{epoch}-18446744073709551615"),
        format!("{epoch}-99999999999999999999999"),
        format!("{epoch}-1000000"),
        format!("{epoch}-1-2"),
        "\u{0660}\u{0660}\u{0660}\u{0660}\u{0660}\u{0660}\u{0660}\u{0660}-1".into(),
    ];
    for cursor in &cursors {
        let request = serde_json::json!({ "after": cursor }).to_string() + "\n";
        assert_refused(&path, request.as_bytes());
    }
    let valid = format!("{epoch}-3");
    let combos = [
        serde_json::json!({"after": valid, "replay": true}),
        serde_json::json!({"stats": true, "replay": true}),
        serde_json::json!({"stats": true, "after": valid}),
        serde_json::json!({"stats": true, "cursor": true}),
        serde_json::json!({"replay": false}),
        serde_json::json!({"after": 3}),
        serde_json::json!({"after": null}),
        serde_json::json!({"cursor": "yes"}),
        serde_json::json!({"subscribe": {"event_types": []}, "replay": true}),
        serde_json::json!({"notif": {"dropped": 1}}),
    ];
    for combo in &combos {
        assert_refused(&path, (combo.to_string() + "\n").as_bytes());
    }
    // Two requests in one write, and a valid one followed by garbage.
    assert_refused(&path, b"{\"replay\":true}\n{\"replay\":true}\n");
    assert_refused(&path, b"{\"replay\":true}\nx");
    let stats = publisher.stats();
    let refused = (cursors.len() + combos.len() + 2) as u64;
    assert_eq!(stats.bad_requests, refused, "{stats:?}");
    assert_eq!(stats.subscribers, 0);
    publisher.close();
}

#[test]
fn a_foreign_epoch_resumes_with_an_unknown_drop_then_the_ring() {
    let dir = TempDir::new("redteam-protocol-epoch");
    let publisher = ring_publisher(&dir);
    let path = dir.socket();
    for seq in 0..5u64 {
        publisher
            .emit(format!("{{\"event_type\":\"x\",\"seq\":{seq}}}").as_bytes())
            .unwrap();
    }
    wait_until("five numbered", || publisher.stats().next_seq == 5);
    let foreign = format!("{:016x}-999999", publisher.epoch() ^ 1);
    let mut subscriber = RawReader::connect(&path);
    subscriber
        .write_all(format!("{{\"after\":\"{foreign}\"}}\n").as_bytes())
        .unwrap();
    assert!(value(&subscriber.line())["notif"]["subscribed"] == true);
    assert_eq!(value(&subscriber.line())["notif"]["dropped"], "unknown");
    assert_eq!(value(&subscriber.line())["notif"]["seq"], 0);
    for seq in 0..5u64 {
        assert_eq!(value(&subscriber.line())["seq"], seq);
    }
    drop(subscriber);
    publisher.close();
}

#[test]
fn a_second_line_after_the_acknowledgement_closes_with_bad_request() {
    let dir = TempDir::new("redteam-protocol-second");
    let publisher = ring_publisher(&dir);
    let path = dir.socket();
    let mut subscriber = RawReader::connect(&path);
    subscriber.write_all(b"{\"markers\":true}\n").unwrap();
    assert!(value(&subscriber.line())["notif"]["subscribed"] == true);
    subscriber.write_all(b"{\"stats\":true}\n").unwrap();
    let rest = subscriber.read_until_closed();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(value(&rest[0])["notif"]["reason"], "bad_request");
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.subscribers, 0);
    publisher.close();
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_served() {
    let dir = TempDir::new("redteam-protocol-drip");
    let publisher = ring_publisher(&dir);
    let path = dir.socket();
    let request = b"{\"subscribe\":{\"event_types\":[\"x*\"]},\"cursor\":true}\n";
    let mut stream = UnixStream::connect(&path).unwrap();
    for byte in request {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut subscriber = RawReader::from_stream(stream);
    assert!(value(&subscriber.line())["notif"]["subscribed"] == true);
    wait_for_subscribers(&publisher, 1);
    publisher.emit(b"{\"event_type\":\"y\"}").unwrap();
    publisher.emit(b"{\"event_type\":\"x1\"}").unwrap();
    assert_eq!(value(&subscriber.line())["notif"]["seq"], 1);
    assert_eq!(value(&subscriber.line())["event_type"], "x1");
    publisher.close();
}

#[test]
fn notifications_cannot_pose_as_control_lines() {
    let dir = TempDir::new("redteam-protocol-spoof");
    let publisher = Publisher::open(dir.socket()).unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    let spoofs: [&[u8]; 8] = [
        b"{\"notif\":{\"dropped\":5}}",
        b" {\"notif\":{\"error\":\"x\",\"reason\":\"denied\"}}",
        b"{\n  \"notif\" : {\"seq\": 7}\n}",
        b"{\"\\u006eotif\":{\"seq\":7}}",
        b"{\"n\\u006Ftif\":{\"seq\":7}}",
        b"{\"\\u006E\\u006F\\u0074\\u0069\\u0066\":1}",
        b"{\"notif\":null,\"event_type\":\"x\"}",
        b"\t\r\n{\"notif\":{}}",
    ];
    for spoof in spoofs {
        let err = publisher
            .emit(spoof)
            .expect_err(&String::from_utf8_lossy(spoof));
        assert_eq!(
            err.errno(),
            libc::EINVAL,
            "{}",
            String::from_utf8_lossy(spoof)
        );
    }
    // Not first: ordinary notifications, delivered as they are.
    publisher
        .emit(b"{\"event_type\":\"x\",\"notif\":1}")
        .unwrap();
    publisher.emit(b"{\"notif_\":1}").unwrap();
    publisher.emit(b"{\"Notif\":1}").unwrap();
    assert_eq!(subscriber.line(), b"{\"event_type\":\"x\",\"notif\":1}");
    assert_eq!(subscriber.line(), b"{\"notif_\":1}");
    assert_eq!(subscriber.line(), b"{\"Notif\":1}");
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.rejected, spoofs.len() as u64, "{stats:?}");
    let mut rest = Vec::new();
    drop(publisher);
    let _ = subscriber
        .stream()
        .try_clone()
        .unwrap()
        .read_to_end(&mut rest);
}
