//! emit and tail against each other: filters, globs that pick up new sockets,
//! reconnections, drops, exit codes, a closed reader, `--with-path`.

use super::*;

#[test]
fn emit_and_tail_end_to_end() {
    let dir = TempDir::new("e2e");
    let path = dir.str("e.sock");
    let tail = spawn(&["tail", &path, "--count", "3"], false);
    let emitted = emit_to_one_tail(
        &path,
        concat!(
            "{\"event_type\":\"a.b\",\"n\":1,\"x\":1.0e+10}\n",
            "{ \"event_type\" : \"c\",  \"list\": [1, 2] }\n",
            "{\"broken\": \n",
            "\n",
            "{\"z\":\"\\u00e9\",\"a\":-0}\n",
        ),
    );
    assert_eq!(emitted.code(), 0, "emit stderr: {}", emitted.stderr);
    assert!(
        emitted.stderr.contains("stdin line 3:") && emitted.stderr.contains("skipped"),
        "emit must name the bad line: {}",
        emitted.stderr
    );
    assert!(
        emitted.stderr.contains("emitted 3, delivered 3, dropped 0"),
        "summary: {}",
        emitted.stderr
    );
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "tail stderr: {}", tailed.stderr);
    assert_eq!(
        lines(&tailed.stdout),
        [
            r#"{"event_type":"a.b","n":1,"x":1.0e+10}"#,
            r#"{"event_type":"c","list":[1,2]}"#,
            r#"{"z":"\u00e9","a":-0}"#,
        ]
    );
}

#[test]
fn tail_filters_by_event_type_and_priority() {
    let dir = TempDir::new("filt");
    let path = dir.str("f.sock");
    let tail = spawn(
        &[
            "tail",
            &path,
            "--event-type",
            "compute.*",
            "--priority",
            "error",
            "--count",
            "2",
        ],
        false,
    );
    let mut emit = spawn(&["emit", &path, "--wait-subscribers", "1"], true);
    let wanted = [
        r#"{"event_type":"compute.instance.create.end","priority":"ERROR","n":1}"#,
        r#"{"event_type":"compute.x","priority":"error","n":4}"#,
    ];
    let input = [
        r#"{"event_type":"compute.instance.update","priority":"INFO","n":0}"#,
        wanted[0],
        r#"{"event_type":"image.update","priority":"error","n":2}"#,
        r#"{"priority":"error","n":3}"#,
        wanted[1],
        r#"{"event_type":"compute.y","priority":"error","n":5}"#,
    ];
    emit.write_stdin(&(input.join("\n") + "\n"));
    emit.close_stdin();
    assert_eq!(emit.finish(PATIENCE).code(), 0);
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "tail stderr: {}", tailed.stderr);
    assert_eq!(lines(&tailed.stdout), wanted);
}

fn emitter(path: &str, source: &str, n: usize) -> Proc {
    let mut emit = spawn(&["emit", path, "--wait-subscribers", "1"], true);
    let mut text = String::new();
    for i in 0..n {
        text += &format!("{{\"source\":\"{source}\",\"i\":{i}}}\n");
    }
    emit.write_stdin(&text);
    emit.close_stdin();
    emit
}

#[test]
fn tail_follows_a_glob_and_picks_up_new_sockets() {
    const N: usize = 20;
    let dir = TempDir::new("glob");
    let a = emitter(&dir.str("a.sock"), "a", N);
    let b = emitter(&dir.str("b.sock"), "b", N);
    wait_until("a.sock and b.sock", || {
        dir.join("a.sock").exists() && dir.join("b.sock").exists()
    });
    let pattern = format!("{}/*.sock", dir.path().display());
    let count = (3 * N).to_string();
    let tail = spawn(&["tail", &pattern, "--count", &count], false);
    for emit in [a, b] {
        let done = emit.finish(PATIENCE);
        assert_eq!(done.code(), 0, "{}", done.stderr);
    }
    // Created after tail started: found by the re-scan.
    let c = emitter(&dir.str("c.sock"), "c", N);
    let done = c.finish(PATIENCE);
    assert_eq!(done.code(), 0, "{}", done.stderr);

    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "tail stderr: {}", tailed.stderr);
    let got = lines(&tailed.stdout);
    assert_eq!(got.len(), 3 * N);
    for source in ["a", "b", "c"] {
        // Each socket's notifications arrive whole and in order.
        let from: Vec<&str> = got
            .iter()
            .copied()
            .filter(|l| l.contains(&format!("\"source\":\"{source}\"")))
            .collect();
        let want: Vec<String> = (0..N)
            .map(|i| format!("{{\"source\":\"{source}\",\"i\":{i}}}"))
            .collect();
        assert_eq!(from, want, "from {source}");
    }
}

#[test]
fn tail_reports_a_reconnection_and_pretty_prints() {
    let dir = TempDir::new("recon");
    let path = dir.join("r.sock");
    let tail = spawn(
        &["tail", path.to_str().unwrap(), "--count", "2", "--pretty"],
        false,
    );
    let publisher = Publisher::open(&path).unwrap();
    wait_for_subscribers(&publisher, 1);
    publisher
        .emit(br#"{"event_type":"first","payload":{"ok":true,"list":[]}}"#)
        .unwrap();
    wait_until("the first delivery", || publisher.stats().delivered >= 1);
    publisher.close();
    let publisher = Publisher::open(&path).unwrap();
    wait_for_subscribers(&publisher, 1);
    publisher.emit(br#"{"event_type":"second"}"#).unwrap();
    let tailed = tail.finish(PATIENCE);
    publisher.close();
    assert_eq!(tailed.code(), 0, "tail stderr: {}", tailed.stderr);
    // Not a terminal: indented, without colours.
    assert_eq!(
        tailed.stdout,
        "{\n  \"event_type\": \"first\",\n  \"payload\": {\n    \"ok\": true,\n    \"list\": []\n  }\n}\n\
         {\n  \"event_type\": \"second\"\n}\n"
    );
    // The publisher restarted: tail resumed after its cursor, and the new
    // epoch cannot say what it missed.
    for said in [
        "reconnected; resuming after the last notification received",
        "an unknown number of notifications missed",
    ] {
        assert!(
            tailed
                .stderr
                .contains(&format!("notif: {}: {said}", path.display())),
            "stderr: {}",
            tailed.stderr
        );
    }
}

#[test]
fn tail_reports_drops_when_too_slow() {
    let dir = TempDir::new("drops");
    let path = dir.join("d.sock");
    let mut options = Options::default();
    options.set_subscriber_buffer(16 * 1024).unwrap();
    options.set_max_message(8 * 1024).unwrap();
    let publisher = Publisher::open_with(&path, &options).unwrap();
    // Nobody reads tail's stdout for now: it fills the pipe, then its
    // channel, then the publisher's buffer for it, which then drops.
    let mut tail = spawn_with(&["tail", path.to_str().unwrap()], false, false);
    let stdout: ChildStdout = tail.child.stdout.take().unwrap();
    wait_for_subscribers(&publisher, 1);
    let payload = "x".repeat(200);
    let mut i = 0u64;
    let deadline = Instant::now() + PATIENCE;
    while publisher.stats().dropped_slow < 100 {
        assert!(
            Instant::now() < deadline,
            "no drops: {:?}",
            publisher.stats()
        );
        for _ in 0..100 {
            let line = format!("{{\"i\":{i},\"p\":\"{payload}\"}}");
            let _ = publisher.emit(line.as_bytes());
            i += 1;
        }
        thread::sleep(Duration::from_millis(1));
    }
    // Now read, and keep emitting "end" until it comes through (it is preceded
    // by the drop marker).
    let reader = thread::spawn(move || {
        let mut seen_end = false;
        for line in BufReader::new(stdout).lines() {
            if line.unwrap().contains("\"end\"") {
                seen_end = true;
                break;
            }
        }
        seen_end
    });
    let deadline = Instant::now() + PATIENCE;
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the end line never came through");
        let _ = publisher.emit(br#"{"end":true}"#);
        thread::sleep(Duration::from_millis(20));
    }
    assert!(reader.join().unwrap());
    let dropped = publisher.stats().dropped_slow;
    let tailed = tail.kill();
    publisher.close();
    let reported: u64 = tailed
        .stderr
        .lines()
        .filter_map(|l| l.strip_suffix(" notifications dropped (subscriber too slow)"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(reported > 0, "stderr: {}", tailed.stderr);
    assert!(
        reported <= dropped,
        "reported {reported}, dropped {dropped}"
    );
}

#[test]
fn tail_exit_codes() {
    let dir = TempDir::new("tailx");
    let missing = dir.str("missing.sock");
    let r = run(&["tail", "--no-reconnect", &missing]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(r.stderr.contains(&missing), "{}", r.stderr);

    let pattern = dir.str("none-*.sock");
    let r = run(&["tail", "--no-reconnect", &pattern]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(r.stderr.contains(&pattern), "{}", r.stderr);

    std::fs::write(dir.join("file.sock"), b"").unwrap();
    let file = dir.str("file.sock");
    let r = run(&["tail", &file]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(&file) && r.stderr.contains("not a socket"),
        "{}",
        r.stderr
    );

    // A socket file nobody listens on.
    drop(UnixListener::bind(dir.join("stale.sock")).unwrap());
    let stale = dir.str("stale.sock");
    let r = run(&["tail", "--no-reconnect", &stale]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains(&stale), "{}", r.stderr);

    // Something that answers the request with an error line.
    let listener = UnixListener::bind(dir.join("err.sock")).unwrap();
    let server = thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&conn).read_line(&mut request).unwrap();
        (&conn)
            .write_all(b"{\"notif\":{\"error\":\"unknown key\"}}\n")
            .unwrap();
        request
    });
    let r = run(&["tail", &dir.str("err.sock")]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains("unknown key"), "{}", r.stderr);
    assert!(server.join().unwrap().contains("\"markers\":true"));

    let r = run(&["tail", &missing, "--heartbeat", "0"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    let r = run(&["tail"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
}

#[test]
fn tail_piped_into_a_closed_reader_exits_quietly() {
    let dir = TempDir::new("pipe");
    let path = dir.join("p.sock");
    let publisher = Publisher::open(&path).unwrap();
    let mut tail = spawn_with(&["tail", path.to_str().unwrap()], false, false);
    let stdout = tail.child.stdout.take().unwrap();
    wait_for_subscribers(&publisher, 1);
    publisher.emit(br#"{"n":0}"#).unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "{\"n\":0}\n");
    drop(reader); // like `| head -1`
    let deadline = Instant::now() + PATIENCE;
    let mut n = 1;
    while tail.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "tail did not notice stdout closing"
        );
        let _ = publisher.emit(format!("{{\"n\":{n}}}").as_bytes());
        n += 1;
        thread::sleep(Duration::from_millis(5));
    }
    let tailed = tail.finish(PATIENCE);
    publisher.close();
    assert_eq!(tailed.code(), 0, "stderr: {}", tailed.stderr);
    assert_eq!(tailed.stderr, "");
}

#[test]
fn tail_with_path_says_which_socket_each_line_came_from() {
    let dir = TempDir::new("withpath");
    let (a, b) = (dir.str("w-a.sock"), dir.str("w-b.sock"));
    let pa = Publisher::open(&a).unwrap();
    let pb = Publisher::open(&b).unwrap();
    let pattern = dir.str("w-*.sock");
    let tail = spawn(&["tail", "--with-path", &pattern, "--count", "2"], false);
    wait_for_glob_subscriber(&pa, 0);
    wait_for_glob_subscriber(&pb, 0);
    pa.emit(br#"{"from":"a"}"#).unwrap();
    pb.emit(br#"{"from":"b"}"#).unwrap();
    let r = tail.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let mut got: Vec<String> = lines(&r.stdout).iter().map(|l| l.to_string()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            format!("{{\"path\":{a:?},\"notification\":{{\"from\":\"a\"}}}}"),
            format!("{{\"path\":{b:?},\"notification\":{{\"from\":\"b\"}}}}"),
        ]
    );
}
