//! notif stats: the table, JSON, OpenMetrics and Prometheus forms, errors that
//! name the path, the subscriber list, no control character from a publisher.

use super::*;

/// A publisher with a subscriber that got 3 notifications.
fn busy_publisher(path: &Path) -> (Publisher, std::os::unix::net::UnixStream) {
    let publisher = Publisher::open(path).unwrap();
    let subscriber = std::os::unix::net::UnixStream::connect(path).unwrap();
    wait_for_subscribers(&publisher, 1);
    for i in 0..3 {
        publisher.emit(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
    wait_until("3 deliveries", || publisher.stats().delivered >= 3);
    (publisher, subscriber)
}

#[test]
fn stats_table_and_json() {
    let dir = TempDir::new("stats");
    let (p1, _s1) = busy_publisher(&dir.join("one.sock"));
    let p2 = Publisher::open(dir.join("two.sock")).unwrap();
    let (one, two) = (dir.str("one.sock"), dir.str("two.sock"));

    let r = run(&["stats", &one, &two]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let table = lines(&r.stdout);
    let header: Vec<&str> = table[0].split_whitespace().collect();
    assert_eq!(header, ["field", one.as_str(), two.as_str()]);
    let row = |name: &str| -> Vec<String> {
        let line = table
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{}", r.stdout));
        line.split_whitespace().skip(1).map(String::from).collect()
    };
    assert_eq!(row("emitted"), ["3", "0"]);
    assert_eq!(row("delivered"), ["3", "0"]);
    assert_eq!(row("version"), [notif::VERSION, notif::VERSION]);
    // The counters' rows, up to the blank line before the subscriber tables.
    let names: Vec<&str> = table[1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.len() >= 15, "{names:?}");

    let r = run(&["stats", "--json", &one, &two]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let objects: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["path"], one.as_str());
    assert_eq!(objects[0]["stats"]["emitted"], 3);
    assert_eq!(objects[0]["stats"]["delivered"], 3);
    assert_eq!(objects[1]["path"], two.as_str());
    assert_eq!(objects[1]["stats"]["emitted"], 0);
    assert!(r.stdout.starts_with(&format!(
        "{{\"path\":{},\"stats\":{{",
        serde_json::to_string(&one).unwrap()
    )));
    // The table's rows come in the order the publisher sent the fields.
    let first = r.stdout.lines().next().unwrap();
    let first = &first[first.find("\"stats\":").unwrap()..];
    let offsets: Vec<usize> = names
        .iter()
        .map(|n| first.find(&format!("\"{n}\":")).unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "{names:?} vs {first}"
    );
    p1.close();
    p2.close();
}

#[test]
fn stats_errors_name_the_path_and_other_paths_are_still_reported() {
    let dir = TempDir::new("statx");
    let good = dir.str("good.sock");
    let publisher = Publisher::open(&good).unwrap();

    let missing = dir.str("missing.sock");
    let r = run(&["stats", &missing, &good]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(r.stderr.contains(&missing), "{}", r.stderr);
    assert!(
        r.stdout.contains(&good),
        "the good path is still shown: {}",
        r.stdout
    );

    std::fs::write(dir.join("file"), b"hello").unwrap();
    let file = dir.str("file");
    let r = run(&["stats", "--json", &good, &file]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains(&file), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1);

    // A listener that accepts and closes at once.
    let closer = UnixListener::bind(dir.join("closer.sock")).unwrap();
    let closing = thread::spawn(move || drop(closer.accept().unwrap()));
    let r = run(&["stats", &dir.str("closer.sock")]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains("closer.sock"), "{}", r.stderr);
    closing.join().unwrap();

    // A listener that never answers: given up after 2 s.
    let silent = UnixListener::bind(dir.join("silent.sock")).unwrap();
    let holding = thread::spawn(move || {
        let (conn, _) = silent.accept().unwrap();
        thread::sleep(Duration::from_secs(4));
        drop(conn);
    });
    let started = Instant::now();
    let r = run(&["stats", &dir.str("silent.sock")]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains("no answer"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(15));
    holding.join().unwrap();

    publisher.close();
}

#[test]
fn stats_never_prints_a_control_character_the_publisher_sent() {
    let dir = TempDir::new("statesc");
    let path = dir.join("s.sock");
    let server = scripted(
        &path,
        br#"{"notif":{"stats":{"subscribers":1,"path":"\u001b[2J\u0007","k\u001b":2}}}"#
            .iter()
            .chain(b"\n")
            .copied()
            .collect(),
    );
    let r = run(&["stats", path.to_str().unwrap()]);
    server.join().unwrap();
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stdout.contains("subscribers"), "{}", r.stdout);
    assert!(
        !r.stdout.bytes().any(|b| b < 0x20 && b != b'\n'),
        "{:?}",
        r.stdout
    );
    assert!(r.stdout.contains("\\u{1b}[2J"), "{}", r.stdout);
}

#[test]
fn stats_on_a_stale_socket_suggests_only_what_stats_can_do() {
    let dir = TempDir::new("stale");
    drop(UnixListener::bind(dir.join("stale.sock")).unwrap());
    let stale = dir.str("stale.sock");
    let r = run(&["stats", &stale]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(&stale) && r.stderr.contains("start the publisher"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("--no-reconnect"), "{}", r.stderr);
}

#[test]
fn stats_format_openmetrics_and_prometheus() {
    let dir = TempDir::new("metrics");
    let (publisher, _reader) = busy_publisher(&dir.join("m.sock"));
    let path = dir.str("m.sock");
    let missing = dir.str("missing.sock");

    let r = run(&["stats", "--format", "openmetrics", &path, &missing]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    let out = &r.stdout;
    assert!(out.ends_with("\n# EOF\n"), "{out}");
    for line in [
        format!("notif_up{{path=\"{path}\"}} 1"),
        format!("notif_up{{path=\"{missing}\"}} 0"),
        "# TYPE notif_delivered counter".to_string(),
        format!("notif_delivered_total{{path=\"{path}\"}} 3"),
        format!("notif_emitted_total{{path=\"{path}\"}} 3"),
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    // The system-call counters are counters with their own help; 3
    // notifications were written to the reader in 1 to 3 system calls.
    let sample = |name: &str| -> u64 {
        let prefix = format!("{name}{{path=\"{path}\"}} ");
        out.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
            .parse()
            .unwrap()
    };
    for family in ["notif_writes", "notif_wakeups", "notif_written_through"] {
        assert!(
            out.lines().any(|l| l == format!("# TYPE {family} counter")),
            "no {family} counter in\n{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("# HELP {family} "))
                    && !l.contains("The publisher's")),
            "no help of its own for {family} in\n{out}"
        );
    }
    let writes = sample("notif_writes_total");
    assert!((1..=3).contains(&writes), "{writes} writes in\n{out}");
    assert!(sample("notif_wakeups_total") <= 3, "{out}");
    assert!(sample("notif_written_through_total") <= 3, "{out}");

    let r = run(&["stats", "--format", "prometheus", &path]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "# TYPE notif_delivered_total counter\nnotif_delivered_total{{path=\"{path}\"}} 3\n"
        )),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("# EOF"), "{}", r.stdout);

    // --format json is --json; the two together are a usage error.
    let r = run(&["stats", "--format", "json", &path]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("{\"path\":"), "{}", r.stdout);
    assert_eq!(
        run(&["stats", "--json", "--format", "table", &path]).code(),
        1
    );
    publisher.close();
}

#[test]
fn stats_table_lists_subscribers_when_the_answer_has_them() {
    let dir = TempDir::new("sublist");
    let listener = UnixListener::bind(dir.join("list.sock")).unwrap();
    let server = thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&conn).read_line(&mut request).unwrap();
        assert_eq!(request, "{\"stats\":true}\n");
        (&conn)
            .write_all(
                br#"{"notif":{"stats":{"subscribers":1,"delivered":5,"subscriber_list":[{"pid":4242,"uid":1000,"gid":1000,"connected_at":1,"filter":{"event_types":["compute.*"]},"markers":true,"heartbeat_s":null,"queued_bytes":64,"delivered":5,"dropped_slow":0}]}}}
"#,
            )
            .unwrap();
    });
    let r = run(&["stats", &dir.str("list.sock")]);
    server.join().unwrap();
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let lines = lines(&r.stdout);
    // The counters' table has no subscriber_list row...
    assert!(
        !lines.iter().any(|l| l.starts_with("subscriber_list")),
        "{}",
        r.stdout
    );
    // ...the subscribers have a table of their own.
    let at = lines
        .iter()
        .position(|l| l.starts_with("subscribers of "))
        .unwrap_or_else(|| panic!("no subscriber table in\n{}", r.stdout));
    assert!(lines[at + 1].starts_with("pid"), "{}", r.stdout);
    let row: Vec<&str> = lines[at + 2].split_whitespace().collect();
    assert_eq!(row[..3], ["4242", "1000", "1000"], "{}", r.stdout);
    assert_eq!(row[9], r#"{"event_types":["compute.*"]}"#, "{}", r.stdout);
}
