//! Cursors and replay: tail resuming from its cursor file, --replay, --after,
//! a killed or signalled tail, one cursor per socket over a glob.

use super::*;

/// A publisher with a replay ring of `ring` bytes.
fn replaying(path: &Path, ring: usize) -> Publisher {
    let options = Options {
        replay: ring,
        ..Options::default()
    };
    Publisher::open_with(path, &options).unwrap()
}

/// Emits `{"n":N}` for N in `range`, waiting out a full backlog (EAGAIN)
/// rather than losing a notification: the numbering must have no hole.
fn emit_numbered(publisher: &Publisher, range: std::ops::Range<u64>) {
    for n in range {
        let line = format!("{{\"n\":{n}}}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            match publisher.emit(line.as_bytes()) {
                Ok(_) => break,
                Err(err) if err.errno() == libc::EAGAIN && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1))
                }
                Err(err) => panic!("emit {n}: {err:?}"),
            }
        }
    }
}

fn numbered(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| format!("{{\"n\":{n}}}")).collect()
}

/// The cursor file as an object socket path -> cursor.
fn cursors(file: &Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap();
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => panic!("not a cursor file: {text:?}"),
    }
}

#[test]
fn tail_resumes_from_its_cursor_file_with_nothing_missed_or_repeated() {
    let dir = TempDir::new("resume");
    let path = dir.join("r.sock");
    let socket = dir.str("r.sock");
    let file = dir.join("cursor");
    let file_arg = dir.str("cursor");
    let publisher = replaying(&path, 4 << 20);

    let first = spawn(
        &[
            "tail",
            &socket,
            "--cursor-file",
            &file_arg,
            "--count",
            "1000",
        ],
        false,
    );
    wait_for_subscribers(&publisher, 1);
    emit_numbered(&publisher, 0..1000);
    let r = first.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout), numbered(0..1000), "{}", r.stderr);
    let saved = cursors(&file);
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[&socket].is_string(), "{saved:?}");

    // Nobody listens: the ring keeps them.
    emit_numbered(&publisher, 1000..6000);
    wait_until("the ring to hold 6,000", || {
        publisher.stats().next_seq >= 6000
    });

    let second = spawn(
        &[
            "tail",
            &socket,
            "--cursor-file",
            &file_arg,
            "--count",
            "5100",
        ],
        false,
    );
    wait_for_subscribers(&publisher, 1);
    // Live ones, once it is connected: after the replayed ones, no gap.
    emit_numbered(&publisher, 6000..6100);
    let r = second.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout), numbered(1000..6100), "{}", r.stderr);
    assert!(!r.stderr.contains("missed"), "{}", r.stderr);
    let resaved = cursors(&file);
    assert_ne!(resaved[&socket], saved[&socket], "{resaved:?}");

    // Saved at exit: a third run has nothing to catch up on.
    let third = spawn(
        &["tail", &socket, "--cursor-file", &file_arg, "--count", "1"],
        false,
    );
    wait_for_subscribers(&publisher, 1);
    emit_numbered(&publisher, 6100..6101);
    let r = third.finish(PATIENCE);
    assert_eq!(lines(&r.stdout), numbered(6100..6101), "{}", r.stderr);
}

#[test]
fn tail_replay_prints_what_the_ring_holds_and_says_what_it_no_longer_has() {
    const N: u64 = 4000;
    let dir = TempDir::new("replay");
    let path = dir.join("p.sock");
    let socket = dir.str("p.sock");
    // Room for a part of the 4,000 (of ~200 bytes each) only.
    let publisher = replaying(&path, 256 << 10);
    let pad = "x".repeat(200);
    let line = |n: u64| format!("{{\"n\":{n},\"pad\":\"{pad}\"}}");
    let emit = |range: std::ops::Range<u64>| {
        for n in range {
            let deadline = Instant::now() + PATIENCE;
            while let Err(err) = publisher.emit(line(n).as_bytes()) {
                assert!(
                    err.errno() == libc::EAGAIN && Instant::now() < deadline,
                    "{err:?}"
                );
                thread::sleep(Duration::from_millis(1));
            }
        }
    };
    emit(0..N);
    wait_until("the ring to hold 4,000", || publisher.stats().next_seq >= N);
    let stats = publisher.stats();
    let held = stats.replay_messages;
    assert!(held > 0 && held < N, "{stats:?}");
    let oldest = N - held;
    let count = (held + 10).to_string();
    let tail = spawn(&["tail", &socket, "--replay", "--count", &count], false);
    wait_for_subscribers(&publisher, 1);
    emit(N..N + 10);
    let r = tail.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let want: Vec<String> = (oldest..N + 10).map(line).collect();
    assert_eq!(lines(&r.stdout), want, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{oldest} notifications missed")),
        "{}",
        r.stderr
    );
    assert!(
        publisher.stats().replayed >= held,
        "{:?}",
        publisher.stats()
    );
}

#[test]
fn tail_after_a_cursor_of_a_previous_epoch_says_the_gap_is_unknown_and_goes_on() {
    let dir = TempDir::new("epoch");
    let path = dir.join("e.sock");
    let socket = dir.str("e.sock");
    let old = replaying(&path, 1 << 20);
    let tail = spawn(&["tail", &socket, "--show-cursor", "--count", "1"], false);
    wait_for_subscribers(&old, 1);
    emit_numbered(&old, 0..1);
    let r = tail.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let line: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(line["path"], socket.as_str(), "{line}");
    assert_eq!(line["notification"], serde_json::json!({"n": 0}), "{line}");
    let cursor = line["cursor"].as_str().expect("a cursor").to_string();
    drop(old);

    // The publisher restarted: a new epoch, its own numbering from 0.
    let new = replaying(&path, 1 << 20);
    emit_numbered(&new, 0..5);
    wait_until("the ring to hold 5", || new.stats().next_seq >= 5);
    let tail = spawn(
        &["tail", &socket, "--after", &cursor, "--count", "7"],
        false,
    );
    wait_for_subscribers(&new, 1);
    emit_numbered(&new, 5..7);
    let r = tail.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout), numbered(0..7), "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown number of notifications missed"),
        "{}",
        r.stderr
    );
}

#[test]
fn tail_cursor_options_are_checked_before_anything_is_printed() {
    let dir = TempDir::new("curuse");
    let (a, b) = (dir.str("a.sock"), dir.str("b.sock"));
    let r = run(&["tail", &a, &b, "--after", "0123456789abcdef-1"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("--cursor-file"), "{}", r.stderr);
    let r = run(&["tail", &a, "--after", "0123456789abcdef-1", "--replay"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    let file = dir.join("not-cursors");
    std::fs::write(&file, "precious\n").unwrap();
    let r = run(&["tail", &a, "--cursor-file", file.to_str().unwrap()]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a notif cursor file"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious\n");
    // A cursor file with a cursor that is not one: refused, left as it is.
    let bad = "{\"/x.sock\":\"0123456789abcdef-1\",\"/y.sock\":\"nope\"}\n";
    std::fs::write(&file, bad).unwrap();
    let r = run(&["tail", &a, "--cursor-file", file.to_str().unwrap()]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("the cursor of /y.sock"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), bad);
    let r = run(&["tail", &a, "--after", "nope"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("cursor \"nope\""), "{}", r.stderr);
    let r = run(&["tail", &a, "--cursor-file", &dir.str("no-such-dir/cursors")]);
    assert_eq!(r.code(), 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write the cursor file"),
        "{}",
        r.stderr
    );
}

/// A fake publisher that reads the request line of its first connection,
/// hands it back through the join handle, then writes `script` and holds the
/// connection open until the subscriber goes.
fn answering(path: &Path, script: Vec<u8>) -> JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(conn);
        let mut request = String::new();
        let _ = reader.read_line(&mut request);
        let mut conn = reader.into_inner();
        let _ = conn.write_all(&script);
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        request
    })
}

#[test]
fn tail_after_sends_the_cursor_and_saves_the_cursors_the_publisher_numbers() {
    let dir = TempDir::new("fakecur");
    let path = dir.join("f.sock");
    let socket = dir.str("f.sock");
    let file = dir.str("cursors");
    // Another socket's entry: kept as it is.
    std::fs::write(&file, "{\"/elsewhere.sock\":\"00000000000000ff-3\"}\n").unwrap();
    let epoch = "0123456789abcdef";
    let script = format!(
        concat!(
            "{{\"notif\":{{\"subscribed\":true,\"version\":\"0.1.0\",\"epoch\":\"{epoch}\"}}}}\n",
            "{{\"notif\":{{\"seq\":42}}}}\n",
            "{{\"n\":42}}\n",
            "{{\"n\":43}}\n",
            "{{\"notif\":{{\"seq\":50}}}}\n",
            "{{\"n\":50}}\n",
        ),
        epoch = epoch
    );
    let server = answering(&path, script.into_bytes());
    let after = format!("{epoch}-41");
    let r = run(&[
        "tail",
        &socket,
        "--after",
        &after,
        "--cursor-file",
        &file,
        "--show-cursor",
        "--count",
        "3",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let request: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
    assert_eq!(request["after"], after.as_str(), "{request}");
    let want: Vec<String> = [(42, 42), (43, 43), (50, 50)]
        .iter()
        .map(|(seq, n)| {
            format!("{{\"path\":{socket:?},\"cursor\":\"{epoch}-{seq}\",\"notification\":{{\"n\":{n}}}}}")
        })
        .collect();
    assert_eq!(lines(&r.stdout), want, "{}", r.stderr);
    let saved = cursors(Path::new(&file));
    assert_eq!(saved[&socket], format!("{epoch}-50").as_str(), "{saved:?}");
    assert_eq!(saved["/elsewhere.sock"], "00000000000000ff-3", "{saved:?}");
}

/// The sequence number in a cursor (`EPOCH-SEQ`, docs/subscription-protocol.md).
fn seq_of(cursor: &serde_json::Value) -> u64 {
    let cursor = cursor.as_str().expect("a cursor string");
    cursor.rsplit('-').next().unwrap().parse().expect(cursor)
}

#[test]
fn a_killed_tail_repeats_at_most_what_it_printed_and_never_skips() {
    let dir = TempDir::new("killed");
    let path = dir.join("k.sock");
    let socket = dir.str("k.sock");
    let file = dir.join("cursor");
    let file_arg = dir.str("cursor");
    let publisher = replaying(&path, 4 << 20);
    let mut first = spawn(&["tail", &socket, "--cursor-file", &file_arg], false);
    wait_for_subscribers(&publisher, 1);
    let mut sent = 0;
    let deadline = Instant::now() + PATIENCE;
    // Emit until the file names the 1,000th or later, then kill -9 mid-stream.
    loop {
        emit_numbered(&publisher, sent..sent + 50);
        sent += 50;
        thread::sleep(Duration::from_millis(2));
        let saved = cursors(&file);
        if saved.get(&socket).is_some_and(|c| seq_of(c) >= 1000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cursor file stayed at {saved:?}"
        );
    }
    first.child.kill().unwrap();
    let r = first.finish(PATIENCE);
    emit_numbered(&publisher, sent..sent + 1000);
    let total = sent + 1000;
    let saved = seq_of(&cursors(&file)[&socket]);
    let printed = lines(&r.stdout);
    eprintln!(
        "killed after printing {} of {sent} emitted; the file names {saved}",
        printed.len()
    );
    assert_eq!(printed, numbered(0..printed.len() as u64), "{}", r.stderr);
    assert!(
        saved < printed.len() as u64,
        "the file names {saved}, only 0..{} were printed",
        printed.len()
    );
    wait_until("the ring to hold all", || {
        publisher.stats().next_seq >= total
    });
    let count = (total - saved - 1).to_string();
    let second = spawn(
        &[
            "tail",
            &socket,
            "--cursor-file",
            &file_arg,
            "--count",
            &count,
        ],
        false,
    );
    let r = second.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout), numbered(saved + 1..total), "{}", r.stderr);
}

#[test]
fn tail_over_a_glob_keeps_one_cursor_per_socket() {
    let dir = TempDir::new("globcur");
    let (a, b) = (dir.str("g-a.sock"), dir.str("g-b.sock"));
    let pa = replaying(&dir.join("g-a.sock"), 1 << 20);
    let pb = replaying(&dir.join("g-b.sock"), 1 << 20);
    let pattern = dir.str("g-*.sock");
    let file = dir.str("cursors");
    let tail = spawn(
        &[
            "tail",
            &pattern,
            "--cursor-file",
            &file,
            "--with-path",
            "--count",
            "20",
        ],
        false,
    );
    wait_for_glob_subscriber(&pa, 0);
    wait_for_glob_subscriber(&pb, 0);
    emit_numbered(&pa, 0..10);
    emit_numbered(&pb, 0..10);
    let r = tail.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let saved = cursors(Path::new(&file));
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert_eq!(
        (seq_of(&saved[&a]), seq_of(&saved[&b])),
        (9, 9),
        "{saved:?}"
    );

    emit_numbered(&pa, 10..15);
    emit_numbered(&pb, 10..20);
    wait_until("the rings", || {
        pa.stats().next_seq >= 15 && pb.stats().next_seq >= 20
    });
    let r = run(&[
        "tail",
        &pattern,
        "--cursor-file",
        &file,
        "--with-path",
        "--count",
        "15",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    for (path, range) in [(&a, 10..15), (&b, 10..20)] {
        let got: Vec<String> = lines(&r.stdout)
            .into_iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["path"] == path.as_str())
            .map(|v| v["notification"].to_string())
            .collect();
        assert_eq!(got, numbered(range), "{path}: {}", r.stderr);
    }
    let saved = cursors(Path::new(&file));
    assert_eq!(
        (seq_of(&saved[&a]), seq_of(&saved[&b])),
        (14, 19),
        "{saved:?}"
    );
}

#[test]
fn a_filtered_tail_resumes_after_the_last_notification_it_printed() {
    let dir = TempDir::new("filtres");
    let path = dir.join("f.sock");
    let socket = dir.str("f.sock");
    let file = dir.str("cursor");
    let publisher = replaying(&path, 4 << 20);
    let line = |n: u64| {
        let kind = if n % 2 == 0 { "even" } else { "odd" };
        format!("{{\"event_type\":\"{kind}\",\"n\":{n}}}")
    };
    let emit = |range: std::ops::Range<u64>| {
        for n in range {
            let deadline = Instant::now() + PATIENCE;
            while let Err(err) = publisher.emit(line(n).as_bytes()) {
                assert!(
                    err.errno() == libc::EAGAIN && Instant::now() < deadline,
                    "{err:?}"
                );
                thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let args = |count: &'static str| {
        [
            "tail",
            socket.as_str(),
            "--event-type",
            "odd",
            "--cursor-file",
            file.as_str(),
            "--count",
            count,
        ]
    };
    let first = spawn(&args("100"), false);
    wait_for_subscribers(&publisher, 1);
    emit(0..300);
    let r = first.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let odd = |range: std::ops::Range<u64>| -> Vec<String> {
        range.filter(|n| n % 2 == 1).map(line).collect()
    };
    assert_eq!(lines(&r.stdout), odd(0..200), "{}", r.stderr);
    // The cursor is the last odd one printed (199), not the last emitted.
    assert_eq!(seq_of(&cursors(Path::new(&file))[&socket]), 199);
    emit(300..1000);
    let r = run(&args("400"));
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout), odd(200..1000), "{}", r.stderr);

    // The ring's fields in notif stats, like the other counters.
    let r = run(&["stats", &socket, "--json"]);
    let answer: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(answer["stats"]["next_seq"], 1000, "{answer}");
    assert_eq!(answer["stats"]["replay_messages"], 1000, "{answer}");
    assert!(
        answer["stats"]["replayed"].as_u64().unwrap() >= 400,
        "{answer}"
    );
    let r = run(&["stats", &socket]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["replay_messages", "1000"]),
        "{}",
        r.stdout
    );
    let r = run(&["stats", &socket, "--format", "prometheus"]);
    for want in [
        "# TYPE notif_replayed_total counter",
        "# TYPE notif_replay_bytes gauge",
        "# TYPE notif_next_seq gauge",
        &format!("notif_next_seq{{path=\"{socket}\"}} 1000"),
    ] {
        assert!(
            r.stdout.lines().any(|l| l == want),
            "no {want:?} in\n{}",
            r.stdout
        );
    }
}

#[test]
fn tail_replay_that_reconnects_before_its_first_notification_replays_again() {
    const N: u64 = 4000;
    let dir = TempDir::new("replay2");
    let path = dir.join("p.sock");
    let socket = dir.str("p.sock");
    let first = replaying(&path, 256 << 10);
    let tail = spawn(&["tail", &socket, "--replay", "--count", "1"], false);
    wait_for_subscribers(&first, 1);
    first.close();
    // A new publisher whose ring no longer goes back to its first
    // notification, filled before tail can reconnect to it: it is moved into
    // place once full.
    let publisher = replaying(&dir.join("new.sock"), 256 << 10);
    let pad = "y".repeat(200);
    for n in 0..N {
        let line = format!("{{\"n\":{n},\"pad\":\"{pad}\"}}");
        let deadline = Instant::now() + PATIENCE;
        while let Err(err) = publisher.emit(line.as_bytes()) {
            assert!(
                err.errno() == libc::EAGAIN && Instant::now() < deadline,
                "{err:?}"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
    wait_until("the ring", || publisher.stats().next_seq >= N);
    let oldest = publisher.stats().replay_oldest;
    assert!(oldest > 0, "{:?}", publisher.stats());
    std::fs::rename(dir.join("new.sock"), &path).unwrap();
    let r = tail.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(
        lines(&r.stdout),
        [format!("{{\"n\":{oldest},\"pad\":\"{pad}\"}}")],
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("{oldest} notifications missed before resuming")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("too slow"), "{}", r.stderr);
}

#[test]
fn a_tail_stopped_by_a_signal_saves_exactly_what_it_printed() {
    use std::os::unix::process::ExitStatusExt;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("sigterm");
        let path = dir.join("t.sock");
        let socket = dir.str("t.sock");
        let file = dir.join("cursor");
        let file_arg = dir.str("cursor");
        let publisher = replaying(&path, 4 << 20);
        let tail = spawn(&["tail", &socket, "--cursor-file", &file_arg], false);
        wait_for_subscribers(&publisher, 1);
        let mut sent = 0;
        // Stopped mid-stream: notifications are still coming.
        while sent < 2000 {
            emit_numbered(&publisher, sent..sent + 50);
            sent += 50;
            thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(tail.child.id() as i32, signal) }, 0);
        emit_numbered(&publisher, sent..sent + 500);
        let r = tail.finish(PATIENCE);
        assert_eq!(
            r.status.signal(),
            Some(signal),
            "{:?} {}",
            r.status,
            r.stderr
        );
        let printed = lines(&r.stdout);
        assert!(!printed.is_empty(), "{}", r.stderr);
        assert_eq!(printed, numbered(0..printed.len() as u64), "{}", r.stderr);
        let saved = seq_of(&cursors(&file)[&socket]);
        assert_eq!(saved + 1, printed.len() as u64, "signal {signal}");
    }
}

#[test]
fn one_signal_ends_a_tail_whose_stdout_is_not_read() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("sigstuck");
    let path = dir.join("s.sock");
    let file = dir.str("cursor");
    let publisher = replaying(&path, 4 << 20);
    let mut tail = spawn_with(
        &["tail", path.to_str().unwrap(), "--cursor-file", &file],
        false,
        false,
    );
    // Never read: tail ends up blocked writing to it.
    let _stdout: ChildStdout = tail.child.stdout.take().unwrap();
    wait_for_subscribers(&publisher, 1);
    let pad = "z".repeat(1000);
    for n in 0..2000 {
        let _ = publisher.emit(format!("{{\"n\":{n},\"pad\":\"{pad}\"}}").as_bytes());
    }
    wait_until("tail to take some", || publisher.stats().delivered >= 200);
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(
        unsafe { libc::kill(tail.child.id() as i32, libc::SIGTERM) },
        0
    );
    let r = tail.finish(PATIENCE);
    assert_eq!(
        r.status.signal(),
        Some(libc::SIGTERM),
        "{:?} {}",
        r.status,
        r.stderr
    );
}

#[test]
fn emit_replay_keeps_a_ring_for_a_tail_that_comes_later() {
    let dir = TempDir::new("emitring");
    let socket = dir.str("e.sock");
    let mut emit = spawn(&["emit", &socket, "--replay", "64K"], true);
    emit.write_stdin(&(numbered(0..10).join("\n") + "\n"));
    // Nobody listens yet: the ring keeps them (stdin stays open meanwhile).
    wait_until("the ring to hold 10", || {
        let r = run(&["stats", "--json", &socket]);
        serde_json::from_str::<serde_json::Value>(r.stdout.trim())
            .is_ok_and(|v| v["stats"]["replay_messages"] == 10)
    });
    let r = run(&["tail", &socket, "--replay", "--count", "10"]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout), numbered(0..10), "{}", r.stderr);
    emit.close_stdin();
    let done = emit.finish(PATIENCE);
    assert_eq!(done.code(), 0, "{}", done.stderr);

    for bad in ["lots", "1G", "", "40M"] {
        let r = run(&["emit", &dir.str("bad.sock"), "--replay", bad]);
        assert_eq!(r.code(), 1, "--replay {bad:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("replay"),
            "--replay {bad:?}: {}",
            r.stderr
        );
    }
}
