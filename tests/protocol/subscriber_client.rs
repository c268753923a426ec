//! The subscriber client (notif::Subscriber) against real sockets: a real
//! Publisher where it can be, and a fake publisher (a UnixListener speaking the
//! protocol by hand) where the test needs exact control of the lines sent.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{open_publisher, wait_for_subscribers, TempDir, PATIENCE};
use notif::subscription::{Filter, Request};
use notif::{Event, Publisher, SubscribeOptions, Subscriber};

fn plain() -> SubscribeOptions {
    SubscribeOptions::default()
}

fn no_reconnect() -> SubscribeOptions {
    SubscribeOptions {
        reconnect: false,
        ..SubscribeOptions::default()
    }
}

/// An owned copy of an event, so tests can keep it past the next recv.
#[derive(Debug, PartialEq)]
enum Got {
    Line(String),
    Reconnected,
    Dropped(u64),
    DroppedUnknown,
    Timeout,
}

fn own(event: Event<'_>) -> Got {
    match event {
        Event::Notification(line) => Got::Line(String::from_utf8(line.to_vec()).unwrap()),
        Event::Reconnected => Got::Reconnected,
        Event::Dropped(n) => Got::Dropped(n),
        Event::DroppedUnknown => Got::DroppedUnknown,
        Event::Timeout => Got::Timeout,
    }
}

/// The next event that is not a timeout, within PATIENCE.
fn next(subscriber: &mut Subscriber) -> Got {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "nothing from the subscriber within {PATIENCE:?}"
        );
        match own(subscriber.recv(Some(left)).expect("recv")) {
            Got::Timeout => continue,
            got => return got,
        }
    }
}

fn next_line(subscriber: &mut Subscriber) -> String {
    match next(subscriber) {
        Got::Line(line) => line,
        other => panic!("expected a notification, got {other:?}"),
    }
}

/// Calls recv with short timeouts until the subscriber is connected.
fn wait_connected(subscriber: &mut Subscriber) {
    let give_up = Instant::now() + PATIENCE;
    while !subscriber.is_connected() {
        assert!(Instant::now() < give_up, "never connected");
        let got = own(subscriber.recv(Some(Duration::from_millis(20))).unwrap());
        assert_eq!(got, Got::Timeout);
    }
}

fn message(n: usize) -> String {
    format!(r#"{{"event_type":"test.n","priority":"INFO","payload":{{"n":{n}}}}}"#)
}

#[test]
fn plain_subscriber_gets_the_stream_in_order() {
    let (dir, publisher) = open_publisher("plain");
    let mut subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    assert!(subscriber.is_connected());
    wait_for_subscribers(&publisher, 1);
    for n in 0..500 {
        assert_eq!(publisher.emit(message(n).as_bytes()).unwrap(), 1);
    }
    // Pretty-printed input arrives compact.
    publisher
        .emit(b"{\n  \"event_type\": \"pretty\",\n  \"payload\": {}\n}")
        .unwrap();
    for n in 0..500 {
        assert_eq!(next_line(&mut subscriber), message(n));
    }
    assert_eq!(
        next_line(&mut subscriber),
        r#"{"event_type":"pretty","payload":{}}"#
    );
    assert_eq!(subscriber.reconnects(), 0);
    assert_eq!(subscriber.dropped_total(), 0);
    assert_eq!(subscriber.last_heartbeat(), None);
}

#[test]
fn abstract_socket_and_iterator() {
    let name = format!("@notif-test-sub-{}", std::process::id());
    let publisher = Publisher::open(&name).unwrap();
    let mut subscriber = Subscriber::connect(&name, no_reconnect()).unwrap();
    wait_for_subscribers(&publisher, 1);
    for n in 0..3 {
        publisher.emit(message(n).as_bytes()).unwrap();
    }
    let lines: Vec<Vec<u8>> = subscriber
        .notifications()
        .take(3)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        lines,
        (0..3).map(|n| message(n).into_bytes()).collect::<Vec<_>>()
    );
}

#[test]
fn recv_returns_timeout_when_nothing_comes() {
    let (dir, publisher) = open_publisher("timeout");
    let mut subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    wait_for_subscribers(&publisher, 1);
    assert_eq!(
        own(subscriber.recv(Some(Duration::ZERO)).unwrap()),
        Got::Timeout
    );
    let started = Instant::now();
    assert_eq!(
        own(subscriber.recv(Some(Duration::from_millis(100))).unwrap()),
        Got::Timeout
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100),
        "returned early: {waited:?}"
    );
    assert!(waited < PATIENCE, "returned late: {waited:?}");
    // Still working afterwards.
    publisher.emit(message(1).as_bytes()).unwrap();
    assert_eq!(next_line(&mut subscriber), message(1));
}

#[test]
fn reconnects_across_a_publisher_restart() {
    let dir = TempDir::new("restart");
    let first = Publisher::open(dir.socket()).unwrap();
    let mut subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    wait_for_subscribers(&first, 1);
    first.emit(message(1).as_bytes()).unwrap();
    first.emit(message(2).as_bytes()).unwrap();
    first.close();

    // What was sent before the close still arrives, then nothing: with no
    // publisher, recv honours the timeout while it retries.
    assert_eq!(next_line(&mut subscriber), message(1));
    assert_eq!(next_line(&mut subscriber), message(2));
    let started = Instant::now();
    assert_eq!(
        own(subscriber.recv(Some(Duration::from_millis(150))).unwrap()),
        Got::Timeout
    );
    assert!(started.elapsed() < PATIENCE);
    assert!(!subscriber.is_connected());
    assert!(
        subscriber.as_raw_fd() >= 0,
        "the retry timer is there to poll"
    );

    let second = Publisher::open(dir.socket()).unwrap();
    assert_eq!(next(&mut subscriber), Got::Reconnected);
    assert_eq!(subscriber.reconnects(), 1);
    // It resumed after its cursor, of the first publisher: the second cannot
    // say what was missed.
    assert_eq!(next(&mut subscriber), Got::DroppedUnknown);
    wait_for_subscribers(&second, 1);
    second.emit(message(3).as_bytes()).unwrap();
    assert_eq!(next_line(&mut subscriber), message(3));
    assert_eq!(
        own(subscriber.recv(Some(Duration::ZERO)).unwrap()),
        Got::Timeout
    );
}

#[test]
fn connects_once_the_publisher_appears() {
    let dir = TempDir::new("later");
    let mut subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    assert!(!subscriber.is_connected());
    assert_eq!(
        own(subscriber.recv(Some(Duration::from_millis(10))).unwrap()),
        Got::Timeout
    );
    let publisher = Publisher::open(dir.socket()).unwrap();
    // The first connection is not a re-connection: no Reconnected event.
    wait_connected(&mut subscriber);
    wait_for_subscribers(&publisher, 1);
    publisher.emit(message(7).as_bytes()).unwrap();
    assert_eq!(next(&mut subscriber), Got::Line(message(7)));
    assert_eq!(subscriber.reconnects(), 0);
}

#[test]
fn without_reconnect_errors_name_the_path() {
    let dir = TempDir::new("noreconn");
    let missing = dir.join("missing.sock");
    let err = Subscriber::connect(&missing, no_reconnect()).unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT, "{err}");
    assert!(err.message().contains(&*missing.to_string_lossy()), "{err}");

    // A socket file nobody listens on.
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let err = Subscriber::connect(&stale, no_reconnect()).unwrap_err();
    assert_eq!(err.errno(), libc::ECONNREFUSED, "{err}");

    // Bad addresses fail whatever the options.
    assert_eq!(
        Subscriber::connect("", plain()).unwrap_err().errno(),
        libc::EINVAL
    );
    let long = format!("/tmp/{}", "x".repeat(200));
    assert_eq!(
        Subscriber::connect(long, plain()).unwrap_err().errno(),
        libc::ENAMETOOLONG
    );

    // The publisher leaving is an error, and stays one.
    let publisher = Publisher::open(dir.socket()).unwrap();
    let mut subscriber = Subscriber::connect(dir.socket(), no_reconnect()).unwrap();
    wait_for_subscribers(&publisher, 1);
    publisher.close();
    let err = subscriber.recv(Some(PATIENCE)).unwrap_err();
    assert!(
        [libc::EPIPE, libc::ECONNRESET].contains(&err.errno()),
        "{err}"
    );
    assert!(
        err.message().contains("publisher closed the connection"),
        "{err}"
    );
    assert_eq!(subscriber.recv(Some(Duration::ZERO)).unwrap_err(), err);
    assert_eq!(subscriber.as_raw_fd(), -1);
}

#[test]
fn invalid_options_are_refused() {
    let dir = TempDir::new("badopts");
    for heartbeat in [
        Duration::ZERO,
        Duration::from_millis(10),
        Duration::from_secs(7200),
    ] {
        let options = SubscribeOptions {
            heartbeat: Some(heartbeat),
            ..plain()
        };
        let err = Subscriber::connect(dir.socket(), options).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert!(err.message().contains("heartbeat"), "{err}");
    }
    let options = SubscribeOptions {
        filter: Filter {
            event_types: vec!["x".repeat(70_000)],
            ..Filter::default()
        },
        ..plain()
    };
    let err = Subscriber::connect(dir.socket(), options).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert!(err.message().contains("at most"), "{err}");
}

#[test]
fn long_lines_arrive_whole() {
    let (dir, publisher) = open_publisher("long");
    let mut subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    wait_for_subscribers(&publisher, 1);
    let big = |n: usize, size: usize| {
        format!(
            r#"{{"event_type":"big","n":{n},"payload":"{}"}}"#,
            "x".repeat(size)
        )
    };
    let sizes = [200 << 10, 10, 900 << 10, 65_536, 65_535, 1, 300 << 10];
    for (n, &size) in sizes.iter().enumerate() {
        publisher.emit(big(n, size).as_bytes()).unwrap();
    }
    for (n, &size) in sizes.iter().enumerate() {
        let line = next_line(&mut subscriber);
        assert_eq!(line.len(), big(n, size).len());
        assert_eq!(line, big(n, size));
    }
}

fn poll_readable(fd: i32, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    assert!(rc >= 0, "poll: {}", std::io::Error::last_os_error());
    rc == 1 && pfd.revents & libc::POLLIN != 0
}

#[test]
fn the_descriptor_works_with_poll() {
    let dir = TempDir::new("poll");
    // Before the publisher exists, the descriptor is the retry timer: it wakes
    // the caller when an attempt is due.
    let mut subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    let timer = subscriber.as_raw_fd();
    assert!(timer >= 0);
    assert!(
        poll_readable(timer, PATIENCE),
        "the retry timer never fired"
    );
    let publisher = Publisher::open(dir.socket()).unwrap();
    let give_up = Instant::now() + PATIENCE;
    while !subscriber.is_connected() {
        assert!(Instant::now() < give_up, "never connected");
        assert!(poll_readable(subscriber.as_raw_fd(), PATIENCE));
        assert_eq!(
            own(subscriber.recv(Some(Duration::ZERO)).unwrap()),
            Got::Timeout
        );
    }
    let socket = subscriber.as_raw_fd();
    assert_ne!(socket, timer);
    wait_for_subscribers(&publisher, 1);
    // The acknowledgement of its request for cursors comes first: take it.
    assert!(poll_readable(socket, PATIENCE));
    assert_eq!(
        own(subscriber.recv(Some(Duration::ZERO)).unwrap()),
        Got::Timeout
    );
    assert!(!poll_readable(socket, Duration::ZERO));
    publisher.emit(message(1).as_bytes()).unwrap();
    publisher.emit(message(2).as_bytes()).unwrap();
    assert!(poll_readable(socket, PATIENCE));
    let mut got = Vec::new();
    while got.len() < 2 {
        match own(subscriber.recv(Some(Duration::ZERO)).unwrap()) {
            Got::Line(line) => got.push(line),
            Got::Timeout => assert!(poll_readable(socket, PATIENCE)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, [message(1), message(2)]);
    assert_eq!(
        own(subscriber.recv(Some(Duration::ZERO)).unwrap()),
        Got::Timeout
    );
}

#[test]
fn descriptors_are_close_on_exec() {
    let (dir, publisher) = open_publisher("cloexec");
    let subscriber = Subscriber::connect(dir.socket(), plain()).unwrap();
    // SAFETY: fcntl on our own descriptor.
    let flags = unsafe { libc::fcntl(subscriber.as_raw_fd(), libc::F_GETFD) };
    assert!(flags & libc::FD_CLOEXEC != 0);
    drop(publisher);
    let waiting = Subscriber::connect(dir.join("none.sock"), plain()).unwrap();
    // SAFETY: as above.
    let flags = unsafe { libc::fcntl(waiting.as_raw_fd(), libc::F_GETFD) };
    assert!(flags & libc::FD_CLOEXEC != 0);
}

#[test]
fn a_filter_lets_only_matching_notifications_through() {
    // Works whether the publisher filters (after its acknowledgement) or the
    // client does (before it, or with a publisher that never acknowledges).
    let (dir, publisher) = open_publisher("filter");
    let options = SubscribeOptions {
        filter: Filter {
            event_types: vec!["compute.*".into()],
            priorities: vec!["error".into()],
            ..Filter::default()
        },
        ..plain()
    };
    let mut subscriber = Subscriber::connect(dir.socket(), options).unwrap();
    wait_for_subscribers(&publisher, 1);
    let lines = [
        r#"{"event_type":"image.update","priority":"ERROR"}"#,
        r#"{"event_type":"compute.a","priority":"ERROR"}"#,
        r#"{"event_type":"compute.b","priority":"INFO"}"#,
        r#"{"event_type":"compute.c"}"#,
        r#"{"priority":"ERROR"}"#,
        r#"{"event_type":"compute.d","priority":"Error","payload":{}}"#,
    ];
    for line in lines {
        publisher.emit(line.as_bytes()).unwrap();
    }
    assert_eq!(next(&mut subscriber), Got::Line(lines[1].into()));
    assert_eq!(next(&mut subscriber), Got::Line(lines[5].into()));
    assert_eq!(
        own(subscriber.recv(Some(Duration::from_millis(50))).unwrap()),
        Got::Timeout
    );
}

// ---------------------------------------------------------------- fake publisher

/// Accepts one connection on `listener`, with timeouts so no test can hang.
fn accept(listener: &UnixListener) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let give_up = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                stream.set_write_timeout(Some(PATIENCE)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < give_up, "nobody connected");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn read_request(stream: &UnixStream) -> Request {
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line).unwrap();
    assert_eq!(line.last(), Some(&b'\n'), "the request ends with a newline");
    Request::parse(&line[..line.len() - 1]).unwrap()
}

fn fake(dir: &TempDir) -> (UnixListener, std::path::PathBuf) {
    let path = dir.join("fake.sock");
    (UnixListener::bind(&path).unwrap(), path)
}

/// Runs the fake publisher's side in a thread while the test drives the client.
fn serve(
    listener: UnixListener,
    body: impl FnOnce(UnixListener) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || body(listener))
}

#[test]
fn control_lines_from_a_fake_publisher() {
    let dir = TempDir::new("fakectl");
    let (listener, path) = fake(&dir);
    let options = SubscribeOptions {
        filter: Filter {
            event_types: vec!["compute.*".into()],
            ..Filter::default()
        },
        markers: true,
        heartbeat: Some(Duration::from_secs(60)),
        reconnect: true,
        ..SubscribeOptions::default()
    };
    let expected = Request::Subscribe {
        filter: options.filter.clone(),
        markers: true,
        heartbeat: Some(Duration::from_secs(60)),
        cursors: true,
        start: notif::subscription::Start::Live,
    };
    let server = serve(listener, move |listener| {
        let mut stream = accept(&listener);
        assert_eq!(read_request(&stream), expected);
        let script = concat!(
            // Before the acknowledgement: the unfiltered stream.
            r#"{"event_type":"image.update"}"#,
            "\n",
            r#"{"event_type":"compute.a"}"#,
            "\n",
            r#"{"notif":{"subscribed":true,"version":"0.1.0"}}"#,
            "\n",
            r#"{"notif":{"dropped":5}}"#,
            "\n",
            r#"{"notif":{"heartbeat":1700000000.25}}"#,
            "\n",
            r#"{"notif":{"something_new":{"x":1}}}"#,
            "\n",
            r#"{"event_type":"compute.b"}"#,
            "\n",
            r#"{"notif":{"dropped":2}}"#,
            "\n",
            r#"{"notif":{"error":"unknown key \"x\" in the request"}}"#,
            "\n",
        );
        // In pieces, so lines straddle reads.
        for piece in script.as_bytes().chunks(7) {
            stream.write_all(piece).unwrap();
            stream.flush().unwrap();
        }
        // The client must not reconnect after an error line: nobody comes back.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        listener.set_nonblocking(true).unwrap();
        assert!(
            listener.accept().is_err(),
            "the client reconnected after an error"
        );
    });
    let mut subscriber = Subscriber::connect(&path, options).unwrap();
    assert_eq!(
        next(&mut subscriber),
        Got::Line(r#"{"event_type":"compute.a"}"#.into())
    );
    assert_eq!(next(&mut subscriber), Got::Dropped(5));
    assert_eq!(
        next(&mut subscriber),
        Got::Line(r#"{"event_type":"compute.b"}"#.into())
    );
    assert!(subscriber.last_heartbeat().is_some());
    assert_eq!(next(&mut subscriber), Got::Dropped(2));
    assert_eq!(subscriber.dropped_total(), 7);
    let err = subscriber.recv(Some(PATIENCE)).unwrap_err();
    assert_eq!(err.errno(), libc::EPROTO);
    assert!(
        err.message().contains("unknown key \\\"x\\\"")
            || err.message().contains("unknown key \"x\""),
        "{err}"
    );
    assert_eq!(subscriber.recv(Some(Duration::ZERO)).unwrap_err(), err);
    assert_eq!(subscriber.as_raw_fd(), -1);
    assert_eq!(subscriber.reconnects(), 0);
    drop(subscriber);
    server.join().unwrap();
}

#[test]
fn a_default_subscriber_asks_only_for_cursors_and_never_takes_a_control_line_for_a_notification() {
    let dir = TempDir::new("fakeplain");
    let (listener, path) = fake(&dir);
    let server = serve(listener, |listener| {
        let mut stream = accept(&listener);
        // A publisher sends drop markers only to those that asked, or that
        // resumed: the subscriber reports every one it gets.
        stream
            .write_all(b"{\"notif\":{\"dropped\":3}}\n{\"notif\":{\"x\":1},\"a\":0}\n{\"a\":1,\"notif\":2}\n")
            .unwrap();
        // All it writes is the request for cursors (so that it can resume).
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"{\"cursor\":true}\n");
    });
    let mut subscriber = Subscriber::connect(&path, plain()).unwrap();
    assert_eq!(next(&mut subscriber), Got::Dropped(3));
    assert_eq!(
        next(&mut subscriber),
        Got::Line(r#"{"a":1,"notif":2}"#.into())
    );
    assert_eq!(subscriber.dropped_total(), 3);
    drop(subscriber);
    server.join().unwrap();
}

/// A fake publisher that answers every connection with `line` and closes;
/// returns how many connections it saw within `watch` after the first.
fn refuse_all(
    listener: UnixListener,
    line: &'static str,
    watch: Duration,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut stream = accept(&listener);
        stream.write_all(line.as_bytes()).unwrap();
        drop(stream);
        let mut connections = 1;
        let until = Instant::now() + watch;
        listener.set_nonblocking(true).unwrap();
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut again, _)) => {
                    connections += 1;
                    let _ = again.write_all(line.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        connections
    })
}

#[test]
fn denied_and_full_are_permanent_errors_without_reconnecting() {
    for (line, errno, words) in [
        (
            "{\"notif\":{\"error\":\"uid 1000 is not allowed\",\"reason\":\"denied\"}}\n",
            libc::EACCES,
            &["allow-lists", "uid 1000 is not allowed"][..],
        ),
        (
            "{\"notif\":{\"error\":\"1024 subscribers already\",\"reason\":\"full\"}}\n",
            libc::EUSERS,
            &["max_subscribers", "1024 subscribers already"][..],
        ),
    ] {
        for options in [plain(), no_reconnect(), markers()] {
            let dir = TempDir::new("fakerefuse");
            let (listener, path) = fake(&dir);
            // The back-off starts at 100 ms: a second connection would come well within 1.5 s.
            let server = refuse_all(listener, line, Duration::from_millis(1500));
            let mut subscriber = Subscriber::connect(&path, options.clone()).unwrap();
            let err = subscriber.recv(Some(PATIENCE)).unwrap_err();
            assert_eq!(err.errno(), errno, "{err} ({options:?})");
            for word in words {
                assert!(err.message().contains(word), "{err}");
            }
            assert!(err.message().contains(&*path.to_string_lossy()), "{err}");
            assert_eq!(subscriber.recv(Some(Duration::ZERO)).unwrap_err(), err);
            assert_eq!(
                subscriber
                    .recv(Some(Duration::from_millis(300)))
                    .unwrap_err(),
                err
            );
            assert_eq!(subscriber.as_raw_fd(), -1);
            assert_eq!(
                server.join().unwrap(),
                1,
                "the client reconnected after {line}"
            );
        }
    }
}

fn markers() -> SubscribeOptions {
    SubscribeOptions {
        markers: true,
        ..SubscribeOptions::default()
    }
}

#[test]
fn too_slow_and_memory_are_lost_connections_the_client_reconnects_after() {
    for reason in ["too_slow", "memory"] {
        let dir = TempDir::new("faketransient");
        let (listener, path) = fake(&dir);
        let line =
            format!("{{\"n\":1}}\n{{\"notif\":{{\"error\":\"bye\",\"reason\":\"{reason}\"}}}}\n");
        let server = serve(listener, move |listener| {
            let mut first = accept(&listener);
            first.write_all(line.as_bytes()).unwrap();
            drop(first);
            let mut second = accept(&listener);
            second.write_all(b"{\"n\":2}\n").unwrap();
            let mut rest = Vec::new();
            let _ = second.read_to_end(&mut rest);
        });
        let mut subscriber = Subscriber::connect(&path, markers()).unwrap();
        assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":1}"#.into()));
        assert_eq!(next(&mut subscriber), Got::Reconnected, "{reason}");
        assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":2}"#.into()));
        drop(subscriber);
        server.join().unwrap();

        // Without reconnection, it ends the stream as a closed connection
        // does, saying why.
        let dir = TempDir::new("faketransient1");
        let (listener, path) = fake(&dir);
        let line: &'static str = if reason == "too_slow" {
            "{\"notif\":{\"error\":\"bye\",\"reason\":\"too_slow\"}}\n"
        } else {
            "{\"notif\":{\"error\":\"bye\",\"reason\":\"memory\"}}\n"
        };
        let server = refuse_all(listener, line, Duration::ZERO);
        let mut subscriber = Subscriber::connect(&path, no_reconnect()).unwrap();
        let err = subscriber.recv(Some(PATIENCE)).unwrap_err();
        assert_eq!(err.errno(), libc::EPIPE, "{err}");
        assert!(err.message().contains(reason), "{err}");
        server.join().unwrap();
    }
}

#[test]
fn a_publisher_that_closes_without_a_line_is_a_lost_connection_as_before() {
    let dir = TempDir::new("fakebare");
    let (listener, path) = fake(&dir);
    let server = serve(listener, |listener| {
        drop(accept(&listener));
        let mut second = accept(&listener);
        second.write_all(b"{\"n\":2}\n").unwrap();
        let mut rest = Vec::new();
        let _ = second.read_to_end(&mut rest);
    });
    let mut subscriber = Subscriber::connect(&path, plain()).unwrap();
    assert_eq!(next(&mut subscriber), Got::Reconnected);
    assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":2}"#.into()));
    drop(subscriber);
    server.join().unwrap();

    let dir = TempDir::new("fakebare1");
    let (listener, path) = fake(&dir);
    let server = serve(listener, |listener| drop(accept(&listener)));
    let mut subscriber = Subscriber::connect(&path, no_reconnect()).unwrap();
    let err = subscriber.recv(Some(PATIENCE)).unwrap_err();
    assert!(
        matches!(err.errno(), libc::EPIPE | libc::ECONNRESET),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn a_silent_connection_is_dropped_after_three_heartbeats() {
    let dir = TempDir::new("fakehb");
    let (listener, path) = fake(&dir);
    let heartbeat = Duration::from_millis(100);
    let server = serve(listener, |listener| {
        let mut first = accept(&listener);
        read_request(&first);
        first
            .write_all(b"{\"notif\":{\"subscribed\":true}}\n{\"n\":1}\n")
            .unwrap();
        // Then silence: the client must give up on this connection and come back.
        let mut second = accept(&listener);
        read_request(&second);
        second
            .write_all(b"{\"notif\":{\"subscribed\":true}}\n{\"n\":2}\n")
            .unwrap();
        let mut rest = Vec::new();
        let _ = second.read_to_end(&mut rest);
        drop(first);
    });
    let options = SubscribeOptions {
        heartbeat: Some(heartbeat),
        ..plain()
    };
    let mut subscriber = Subscriber::connect(&path, options).unwrap();
    assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":1}"#.into()));
    let silent_since = Instant::now();
    assert_eq!(next(&mut subscriber), Got::Reconnected);
    assert!(
        silent_since.elapsed() >= heartbeat * 2,
        "gave up after {:?}",
        silent_since.elapsed()
    );
    assert_eq!(subscriber.reconnects(), 1);
    assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":2}"#.into()));
    drop(subscriber);
    server.join().unwrap();
}

#[test]
fn a_partial_line_from_a_lost_connection_is_discarded() {
    let dir = TempDir::new("fakepartial");
    let (listener, path) = fake(&dir);
    let server = serve(listener, |listener| {
        let mut first = accept(&listener);
        first.write_all(b"{\"n\":1}\n{\"n\":").unwrap();
        drop(first);
        let mut second = accept(&listener);
        second.write_all(b"{\"n\":2}\n").unwrap();
        let mut rest = Vec::new();
        let _ = second.read_to_end(&mut rest);
    });
    let mut subscriber = Subscriber::connect(&path, plain()).unwrap();
    assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":1}"#.into()));
    assert_eq!(next(&mut subscriber), Got::Reconnected);
    assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":2}"#.into()));
    drop(subscriber);
    server.join().unwrap();
}

#[test]
fn heartbeats_from_the_publisher_are_recorded_not_returned() {
    let (dir, publisher) = open_publisher("realhb");
    let options = SubscribeOptions {
        heartbeat: Some(Duration::from_millis(100)),
        markers: true,
        ..plain()
    };
    let mut subscriber = Subscriber::connect(dir.socket(), options).unwrap();
    wait_for_subscribers(&publisher, 1);
    let give_up = Instant::now() + PATIENCE;
    while subscriber.last_heartbeat().is_none() {
        assert!(Instant::now() < give_up, "no heartbeat from the publisher");
        let got = own(subscriber.recv(Some(Duration::from_millis(50))).unwrap());
        assert_eq!(got, Got::Timeout, "only heartbeats and the ack come");
    }
    assert_eq!(subscriber.reconnects(), 0);
    publisher.emit(message(1).as_bytes()).unwrap();
    assert_eq!(next(&mut subscriber), Got::Line(message(1)));
}

#[test]
fn drop_markers_from_the_real_publisher_add_up() {
    let dir = TempDir::new("realdrops");
    let mut options = notif::Options::default();
    options.set_max_message(4096).unwrap();
    options.set_subscriber_buffer(16 * 1024).unwrap();
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let options = SubscribeOptions {
        filter: Filter {
            event_types: vec!["fill".into()],
            ..Filter::default()
        },
        markers: true,
        ..plain()
    };
    let mut subscriber = Subscriber::connect(dir.socket(), options).unwrap();
    wait_for_subscribers(&publisher, 1);
    // Drops are only reported once the publisher has read the request: it has
    // when it filters a notification out for us.
    common::wait_until("the publisher applies our filter", || {
        publisher.emit(br#"{"event_type":"probe"}"#).unwrap();
        publisher.stats().filtered > 0
    });
    let filler = format!(r#"{{"event_type":"fill","x":"{}"}}"#, "x".repeat(1000));
    const SENT: u64 = 400;
    for _ in 0..SENT {
        publisher.emit(filler.as_bytes()).unwrap();
    }
    common::wait_until("some notifications were dropped", || {
        publisher.stats().dropped_slow > 0
    });
    let (mut received, mut markers) = (0u64, 0u64);
    let mut final_sent = false;
    let give_up = Instant::now() + PATIENCE;
    loop {
        match own(subscriber.recv(Some(Duration::from_millis(20))).unwrap()) {
            Got::Line(line) if line == r#"{"event_type":"fill","final":true}"# => break,
            Got::Line(_) => received += 1,
            Got::Dropped(n) => markers += n,
            // Once the publisher's queue for us is empty, one more
            // notification fits, and the drop marker must come before it.
            Got::Timeout if !final_sent && common::invariant_holds(&publisher.stats()) => {
                publisher
                    .emit(br#"{"event_type":"fill","final":true}"#)
                    .unwrap();
                final_sent = true;
            }
            Got::Timeout => assert!(
                Instant::now() < give_up,
                "the final notification never came"
            ),
            Got::Reconnected => panic!("reconnected"),
            Got::DroppedUnknown => panic!("an unknown drop count"),
        }
    }
    assert_eq!(markers, subscriber.dropped_total());
    assert_eq!(markers, publisher.stats().dropped_slow);
    assert_eq!(received + markers, SENT);
}

#[test]
fn a_line_over_64_mib_is_an_error_and_the_client_reconnects() {
    let dir = TempDir::new("fakehuge");
    let (listener, path) = fake(&dir);
    let server = serve(listener, |listener| {
        let mut first = accept(&listener);
        let chunk = vec![b'x'; 1 << 20];
        first.write_all(b"{\"fill\":\"").unwrap();
        for _ in 0..65 {
            if first.write_all(&chunk).is_err() {
                break; // the client gave up on us
            }
        }
        drop(first);
        let mut second = accept(&listener);
        second.write_all(b"{\"n\":2}\n").unwrap();
        let mut rest = Vec::new();
        let _ = second.read_to_end(&mut rest);
    });
    let mut subscriber = Subscriber::connect(&path, plain()).unwrap();
    let err = subscriber.recv(Some(PATIENCE)).unwrap_err();
    assert_eq!(err.errno(), libc::EMSGSIZE, "{err}");
    assert!(err.message().contains("64 MiB"), "{err}");
    assert_eq!(next(&mut subscriber), Got::Reconnected);
    assert_eq!(next(&mut subscriber), Got::Line(r#"{"n":2}"#.into()));
    drop(subscriber);
    server.join().unwrap();
}

#[test]
fn a_refused_request_is_an_error_from_the_real_publisher() {
    // A request the client's own check would refuse cannot be sent through
    // SubscribeOptions, so write one by hand and check the publisher's
    // answer is a control line the client parses.
    let dir = TempDir::new("realerr");
    let _publisher = Publisher::open(dir.socket()).unwrap();
    let mut stream = UnixStream::connect(dir.socket()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"{\"subscribe\":{\"nope\":[1]}}\n")
        .unwrap();
    let mut line = Vec::new();
    BufReader::new(&stream)
        .read_until(b'\n', &mut line)
        .unwrap();
    assert!(
        matches!(
            notif::subscription::parse_control_line(&line),
            Some(notif::subscription::ControlLine::Error { .. })
        ),
        "{}",
        String::from_utf8_lossy(&line)
    );
}

#[allow(dead_code)]
fn _assert_send(s: Subscriber) -> impl Send {
    s
}

#[allow(dead_code)]
fn _path_is_generic(p: &Path) -> Result<Subscriber, notif::Error> {
    Subscriber::connect(p, plain())
}
