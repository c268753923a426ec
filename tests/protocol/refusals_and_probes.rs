//! Connections the publisher will not serve are told why before the close (a
//! stable `reason`), a full publisher still answers stats, stats probes are
//! never counted as subscribers, a request line left unfinished is refused
//! after REQUEST_TIMEOUT, and the stats answer lists who is subscribed.

use crate::common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use notif::{Options, Publisher};

fn stats_answer(path: &std::path::Path) -> serde_json::Value {
    let mut probe = RawReader::connect(path);
    probe.write_all(b"{\"stats\":true}\n").unwrap();
    let line = probe.line();
    probe.expect_eof();
    let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
    value["notif"]["stats"].clone()
}

fn error_reason(line: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)));
    assert!(
        value["notif"]["error"].is_string(),
        "not an error line: {value}"
    );
    value["notif"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_full_publisher_says_so_and_still_answers_stats() {
    let dir = TempDir::new("full_stats");
    let options = Options {
        max_subscribers: 2,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let _first = RawReader::connect_to(&publisher, dir.socket(), 1);
    let _second = RawReader::connect_to(&publisher, dir.socket(), 2);
    // A monitor can still look at it, and is not counted.
    let stats = stats_answer(&dir.socket());
    assert_eq!(stats["subscribers"], 2, "{stats}");
    assert_eq!(stats["subscriber_list"].as_array().unwrap().len(), 2);
    // A subscriber that asks to subscribe is refused with the reason, at once.
    let mut third = RawReader::connect(dir.socket());
    third.write_all(b"{}\n").unwrap();
    assert_eq!(error_reason(&third.line()), "full");
    third.expect_eof();
    // One that asks for nothing is told after the grace a probe gets.
    let asked = Instant::now();
    let mut fourth = RawReader::connect(dir.socket());
    assert_eq!(error_reason(&fourth.line()), "full");
    assert!(asked.elapsed() < Duration::from_secs(5));
    fourth.expect_eof();
    let stats = publisher.stats();
    assert_eq!(stats.subscribers, 2);
    assert_eq!(stats.refused, 2);
    assert_eq!(stats.stats_requests, 1);
    assert_eq!(publisher.emit(b"{\"n\":1}").unwrap(), 2);
}

#[test]
fn stats_probes_are_never_counted_as_subscribers() {
    let (dir, publisher, mut subscriber) = publisher_and_reader("probes_uncounted");
    for round in 0..50 {
        let stats = stats_answer(&dir.socket());
        assert_eq!(stats["subscribers"], 1, "round {round}: {stats}");
        assert_eq!(publisher.emit(b"{\"n\":1}").unwrap(), 1, "round {round}");
        assert_eq!(publisher.subscribers(), 1);
        assert_eq!(subscriber.line(), b"{\"n\":1}");
    }
    // A probe whose request arrives after the connection counts only until
    // the request is read, and never after.
    let mut slow_probe = UnixStream::connect(dir.socket()).unwrap();
    wait_until("the slow probe is accepted", || {
        publisher.stats().accepted == 52
    });
    slow_probe.write_all(b"{\"stats\":true}\n").unwrap();
    wait_until("the probe is answered", || {
        publisher.stats().stats_requests == 51
    });
    wait_until("the probe no longer counts", || {
        publisher.stats().subscribers == 1
    });
}

#[test]
fn an_unfinished_request_line_is_refused_after_the_timeout() {
    let (dir, publisher) = open_publisher("slow_drip");
    let mut drip = RawReader::connect(dir.socket());
    let started = Instant::now();
    drip.write_all(b"{\"subscribe\":").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drip.write_all(b"{\"event_types\"").unwrap();
    let line = drip.line();
    let waited = started.elapsed();
    assert_eq!(error_reason(&line), "request_timeout");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "refused after {waited:?}"
    );
    drip.expect_eof();
    let stats = publisher.stats();
    assert_eq!(stats.bad_requests, 1);
    assert_eq!(stats.subscribers, 0);
    // A plain subscriber that never writes is never timed out.
    let mut plain = RawReader::connect_to(&publisher, dir.socket(), 1);
    publisher.emit(b"{\"still\":\"here\"}").unwrap();
    assert_eq!(plain.line(), b"{\"still\":\"here\"}");
}

#[test]
fn the_stats_answer_lists_each_subscriber() {
    let (dir, publisher) = open_publisher("subscriber_list");
    let mut filtered = RawReader::connect(dir.socket());
    filtered
        .write_all(b"{\"subscribe\":{\"event_types\":[\"compute.*\"]},\"markers\":true,\"heartbeat_s\":30}\n")
        .unwrap();
    assert!(filtered
        .line()
        .starts_with(b"{\"notif\":{\"subscribed\":true"));
    let _plain = RawReader::connect_to(&publisher, dir.socket(), 2);
    publisher
        .emit(b"{\"event_type\":\"compute.instance.update\"}")
        .unwrap();
    publisher
        .emit(b"{\"event_type\":\"image.upload\"}")
        .unwrap();
    assert_eq!(
        filtered.line(),
        b"{\"event_type\":\"compute.instance.update\"}"
    );
    wait_for_quiet(&publisher);
    let stats = stats_answer(&dir.socket());
    let list = stats["subscriber_list"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{stats}");
    let with_filter = list
        .iter()
        .find(|entry| !entry["filter"].is_null())
        .expect("the filtered subscriber");
    assert_eq!(
        with_filter["filter"],
        serde_json::json!({"event_types": ["compute.*"]})
    );
    assert_eq!(with_filter["markers"], true);
    assert_eq!(with_filter["heartbeat_s"], 30.0);
    assert_eq!(with_filter["delivered"], 1);
    assert_eq!(with_filter["dropped_slow"], 0);
    // The asker runs as the publisher's own user: it sees everyone's credentials.
    assert_eq!(with_filter["pid"], std::process::id());
    // SAFETY: plain getuid call.
    assert_eq!(with_filter["uid"], unsafe { libc::getuid() });
    let plain = list.iter().find(|entry| entry["filter"].is_null()).unwrap();
    assert_eq!(plain["delivered"], 2);
    assert_eq!(plain["markers"], false);
    assert!(plain["heartbeat_s"].is_null());
    assert!(plain["connected_at"].as_f64().unwrap() > 1.7e9);
    assert!(plain["queued_bytes"].is_u64());
}

#[test]
fn the_library_subscriber_gets_eusers_from_a_real_full_publisher_and_stops() {
    let dir = TempDir::new("full_client");
    let options = Options {
        max_subscribers: 1,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let _only = RawReader::connect_to(&publisher, dir.socket(), 1);
    for subscribe_options in [
        notif::SubscribeOptions::default(),
        notif::SubscribeOptions {
            markers: true,
            ..Default::default()
        },
    ] {
        let mut client = notif::Subscriber::connect(dir.socket(), subscribe_options).unwrap();
        let err = loop {
            match client.recv(Some(PATIENCE)) {
                Err(err) => break err,
                Ok(notif::Event::Timeout) => panic!("no refusal within {PATIENCE:?}"),
                Ok(_) => {}
            }
        };
        assert_eq!(err.errno(), libc::EUSERS, "{err}");
        assert!(err.message().contains("max_subscribers"), "{err}");
        assert!(client.is_failed());
    }
    assert_eq!(publisher.stats().subscribers, 1);
    assert_eq!(publisher.stats().refused, 2);
}
