//! Every message emitted while a subscriber is connected reaches it, in order,
//! once, as one line of compact JSON.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use common::*;
use notif::{Options, Publisher};

fn roomy_options() -> Options {
    Options {
        subscriber_buffer: 64 * 1024 * 1024,
        backlog: 64 * 1024 * 1024,
        ..Options::default()
    }
}

fn compact(name: &str) -> Vec<u8> {
    let mut bytes = fixture(name);
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

#[test]
fn three_subscribers_each_receive_100_000_messages_in_order_with_none_lost() {
    const MESSAGES: u64 = 100_000;
    let dir = TempDir::new("three_subscribers");
    let publisher = Publisher::open_with(dir.socket(), &roomy_options()).unwrap();
    let readers: Vec<_> = (1..=3)
        .map(|n| {
            spawn_sequential_reader(RawReader::connect_to(&publisher, dir.socket(), n), MESSAGES)
        })
        .collect();
    for seq in 0..MESSAGES {
        assert_eq!(publisher.emit(&numbered(0, seq, 8)).unwrap(), 3);
    }
    let _subscribers: Vec<RawReader> = readers
        .into_iter()
        .map(|reader| {
            reader
                .join()
                .expect("a subscriber missed or reordered a message")
        })
        .collect();
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.emitted, MESSAGES);
    assert_eq!(stats.delivered, 3 * MESSAGES);
    assert_eq!(stats.fanout, stats.delivered);
    assert_eq!(stats.dropped_slow, 0);
    assert_eq!(stats.dropped_closed, 0);
    assert_eq!(stats.dropped_backlog, 0);
    assert_eq!(stats.dropped_no_subscriber, 0);
    assert_eq!(stats.rejected, 0);
    assert_eq!(stats.subscribers, 3);
    let line_bytes: u64 = (0..MESSAGES)
        .map(|seq| numbered(0, seq, 8).len() as u64 + 1)
        .sum();
    assert_eq!(stats.bytes_sent, 3 * line_bytes);
}

#[test]
fn emit_with_nobody_connected_returns_zero_and_counts_dropped_no_subscriber() {
    let (_dir, publisher) = open_publisher("nobody");
    assert_eq!(publisher.emit(b"{\"a\":1}").unwrap(), 0);
    // Without a subscriber the input is not even looked at.
    assert_eq!(publisher.emit(b"not json at all").unwrap(), 0);
    assert_eq!(publisher.emit(b"").unwrap(), 0);
    let stats = publisher.stats();
    assert_eq!(stats.dropped_no_subscriber, 3);
    assert_eq!(stats.emitted, 0);
    assert_eq!(stats.rejected, 0);
    assert_eq!(stats.fanout, 0);
}

#[test]
fn a_subscriber_gets_every_message_emitted_after_it_was_accepted_and_none_before() {
    let (dir, publisher) = open_publisher("after_accept");
    for seq in 0..10 {
        assert_eq!(publisher.emit(&numbered(0, seq, 0)).unwrap(), 0);
    }
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    for seq in 10..1010 {
        assert_eq!(publisher.emit(&numbered(0, seq, 0)).unwrap(), 1);
    }
    for seq in 10..1010 {
        assert_eq!(parse_numbered(&subscriber.line()).1, seq);
    }
    subscriber.expect_silence(Duration::from_millis(50));
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.dropped_no_subscriber, 10);
    assert_eq!(stats.emitted, 1000);
    assert_eq!(stats.delivered, 1000);
}

#[test]
fn a_late_subscriber_joins_the_stream_without_disturbing_an_earlier_one() {
    let (dir, publisher, mut first) = publisher_and_reader("late_joiner");
    publisher.emit(&numbered(0, 0, 0)).unwrap();
    let mut second = RawReader::connect_to(&publisher, dir.socket(), 2);
    assert_eq!(publisher.emit(&numbered(0, 1, 0)).unwrap(), 2);
    assert_eq!(parse_numbered(&first.line()).1, 0);
    assert_eq!(parse_numbered(&first.line()).1, 1);
    // A message still on its way to the server thread when the second
    // subscriber was accepted may reach it too; what was emitted after
    // always does.
    let mut line = parse_numbered(&second.line()).1;
    if line == 0 {
        line = parse_numbered(&second.line()).1;
    }
    assert_eq!(line, 1);
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.emitted, 2);
    assert!(stats.fanout == 3 || stats.fanout == 4, "{stats:?}");
    assert_eq!(stats.delivered, stats.fanout);
}

#[test]
fn pretty_printed_input_arrives_as_exactly_one_line_equal_to_the_compact_fixture() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("pretty");
    let pretty = fixture("nova-instance-update.pretty.json");
    assert!(pretty.iter().filter(|&&b| b == b'\n').count() > 10);
    publisher.emit(&pretty).unwrap();
    publisher.emit(b"{\"end\":true}").unwrap();
    assert_eq!(
        String::from_utf8(subscriber.line()).unwrap(),
        String::from_utf8(compact("nova-instance-update.json")).unwrap()
    );
    assert_eq!(subscriber.line(), b"{\"end\":true}");
}

#[test]
fn whitespace_everywhere_json_allows_it_is_removed_and_nothing_else_changes() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("whitespace");
    publisher
        .emit(
            b" \r\n\t{ \"a b\" : [ 1 , { } , [ ] , \" x\\n\\\" y \" ] ,\n\"c\":\r\n-0.5e+3 }\n\t ",
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(subscriber.line()).unwrap(),
        r#"{"a b":[1,{},[]," x\n\" y "],"c":-0.5e+3}"#
    );
}

#[test]
fn compact_input_goes_out_byte_for_byte() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("byte_for_byte");
    let inputs: [&[u8]; 5] = [
        br#"{"z":1,"a":2,"m":{"y":true,"b":false}}"#,
        br#"{"big":1.0e+10,"neg_zero":-0,"neg_zero_float":-0.0,"exp":1E-7,"int":12345678901234567890123}"#,
        br#"{"dup":1,"dup":2}"#,
        r#"{"esc":"\u00e9\/\b\f\r\t\"\\","raw":"é"}"#.as_bytes(),
        br#"{}"#,
    ];
    for input in inputs {
        publisher.emit(input).unwrap();
    }
    for input in inputs {
        assert_eq!(
            String::from_utf8(subscriber.line()).unwrap(),
            String::from_utf8(input.to_vec()).unwrap()
        );
    }
}

#[test]
fn fixtures_in_compact_form_go_out_byte_for_byte() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("fixtures");
    for name in ["unicode.json", "small.json", "nova-instance-update.json"] {
        let input = compact(name);
        publisher.emit(&input).unwrap();
        assert_eq!(subscriber.line(), input, "{name} changed on the way");
    }
}

#[test]
fn eight_threads_emitting_at_once_lose_nothing_and_keep_each_threads_order() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 10_000;
    let dir = TempDir::new("eight_threads");
    let publisher = Publisher::open_with(dir.socket(), &roomy_options()).unwrap();
    let subscribers: Vec<_> = (1..=2)
        .map(|n| RawReader::connect_to(&publisher, dir.socket(), n))
        .collect();
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            std::thread::spawn(move || {
                let mut next: HashMap<usize, u64> = HashMap::new();
                for _ in 0..THREADS as u64 * PER_THREAD {
                    let (stream, seq) = parse_numbered(&subscriber.line());
                    let expected = next.entry(stream).or_insert(0);
                    assert_eq!(seq, *expected, "thread {stream}'s messages out of order");
                    *expected += 1;
                }
                next
            })
        })
        .collect();
    std::thread::scope(|scope| {
        for stream in 0..THREADS {
            let publisher = &publisher;
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    assert_eq!(publisher.emit(&numbered(stream, seq, 20)).unwrap(), 2);
                }
            });
        }
    });
    for reader in readers {
        let next = reader
            .join()
            .expect("a subscriber lost or reordered messages");
        assert_eq!(next.len(), THREADS);
        assert!(next.values().all(|&n| n == PER_THREAD), "{next:?}");
    }
    let stats = wait_for_quiet(&publisher);
    let total = THREADS as u64 * PER_THREAD;
    assert_eq!(stats.emitted, total);
    assert_eq!(stats.fanout, 2 * total);
    assert_eq!(stats.delivered, 2 * total);
    assert_eq!(
        stats.dropped_slow + stats.dropped_backlog + stats.dropped_closed,
        0
    );
}

#[test]
fn a_subscriber_that_writes_garbage_gets_one_error_line_and_is_closed_while_others_go_on() {
    let (dir, publisher, mut noisy) = publisher_and_reader("garbage");
    let mut quiet = RawReader::connect_to(&publisher, dir.socket(), 2);
    // Every byte value but the newline: one endless "request line".
    let garbage: Vec<u8> = (0..=255u8)
        .filter(|&b| b != b'\n')
        .cycle()
        .take(1024 * 1024)
        .collect();
    let mut writer = noisy.stream().try_clone().unwrap();
    // The publisher closes the connection part-way through: writes may fail then.
    let flood = std::thread::spawn(move || {
        for _ in 0..4 {
            if writer.write_all(&garbage).is_err() {
                break;
            }
        }
    });
    for seq in 0..2000 {
        assert!(publisher.emit(&numbered(0, seq, 10)).unwrap() >= 1);
    }
    for seq in 0..2000 {
        assert_eq!(parse_numbered(&quiet.line()).1, seq);
    }
    // The noisy one got some of the stream, then exactly one error line, then
    // the end (a reset rather than EOF: it was still writing when closed).
    let lines = noisy.read_until_closed();
    let error = lines.last().expect("an error line before the close");
    let error = String::from_utf8_lossy(error);
    assert!(error.starts_with("{\"notif\":{\"error\":"), "{error}");
    assert!(error.contains("longer than 65536 bytes"), "{error}");
    for (seq, line) in lines[..lines.len() - 1].iter().enumerate() {
        assert_eq!(parse_numbered(line).1, seq as u64);
    }
    flood.join().unwrap();
    publisher.emit(b"{\"after\":\"flood\"}").unwrap();
    assert_eq!(quiet.line(), b"{\"after\":\"flood\"}");
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.subscribers, 1);
    assert_eq!(stats.bad_requests, 1);
    assert_eq!(stats.disconnected, 1);
}

#[test]
fn a_subscriber_that_shuts_down_its_write_side_keeps_receiving() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("half_close");
    // What `socat` does when its standard input ends: no request, then EOF.
    subscriber.stream().shutdown(Shutdown::Write).unwrap();
    publisher.emit(b"{\"n\":1}").unwrap();
    assert_eq!(subscriber.line(), b"{\"n\":1}");
    // Once the publisher has surely seen the end of input, it still sends.
    std::thread::sleep(Duration::from_millis(50));
    for seq in 0..1000 {
        assert_eq!(publisher.emit(&numbered(0, seq, 0)).unwrap(), 1);
    }
    for seq in 0..1000 {
        assert_eq!(parse_numbered(&subscriber.line()).1, seq);
    }
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.subscribers, 1);
    assert_eq!(stats.disconnected, 0);
    assert_eq!(stats.delivered, 1001);
}
