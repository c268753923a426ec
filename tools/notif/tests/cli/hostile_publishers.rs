//! Publishers that are not what they seem: notifications posing as control
//! lines, refusals (denied, full), peers that are not a notif publisher, and
//! a terminal that never gets a control character.

use super::*;

// ------------------------------------------- notifications posing as control

#[test]
fn emit_refuses_notifications_posing_as_control_lines_and_tail_prints_what_follows() {
    let dir = TempDir::new("posing");
    let path = dir.str("p.sock");
    let tail = spawn(&["tail", &path, "--count", "2"], false);
    let emitted = emit_to_one_tail(
        &path,
        concat!(
            "{\"notif\":{\"dropped\":1000000}}\n",
            "{\"notif\":{\"error\":\"refused the subscription request\"}}\n",
            "{\"a\":1}\n",
            "{\"b\":2,\"notif\":{\"dropped\":5}}\n",
        ),
    );
    assert_eq!(emitted.code(), 0, "emit stderr: {}", emitted.stderr);
    for n in ["stdin line 1:", "stdin line 2:"] {
        assert!(
            emitted
                .stderr
                .lines()
                .any(|l| l.contains(n) && l.contains("reserved") && l.contains("skipped")),
            "emit must report {n}: {}",
            emitted.stderr
        );
    }
    assert!(
        emitted
            .stderr
            .contains("4 lines read, 2 skipped; emitted 2"),
        "summary: {}",
        emitted.stderr
    );
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "tail stderr: {}", tailed.stderr);
    assert_eq!(
        lines(&tailed.stdout),
        [r#"{"a":1}"#, r#"{"b":2,"notif":{"dropped":5}}"#]
    );
    assert!(!tailed.stderr.contains("dropped"), "{}", tailed.stderr);

    // With nobody listening, emit reports them the same way.
    let mut emit = spawn(&["emit", &dir.str("q.sock")], true);
    emit.write_stdin("{\"notif\":{\"dropped\":1}}\n");
    emit.close_stdin();
    let emitted = emit.finish(PATIENCE);
    assert_eq!(emitted.code(), 0, "emit stderr: {}", emitted.stderr);
    assert!(
        emitted.stderr.contains("stdin line 1:") && emitted.stderr.contains("reserved"),
        "{}",
        emitted.stderr
    );
}

// ------------------------------------------------- refusals: denied and full

/// A fake publisher at `path` that answers every connection with `line` (if
/// any) and closes it, until the returned flag is set; the thread returns how
/// many connections it saw.
fn refusing(
    path: &Path,
    line: &'static str,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    JoinHandle<usize>,
) {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let server = thread::spawn(move || {
        let mut seen = 0;
        while !stopping.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    seen += 1;
                    let _ = conn.write_all(line.as_bytes());
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        seen
    });
    (stop, server)
}

fn stop(
    server: (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        JoinHandle<usize>,
    ),
) -> usize {
    server.0.store(true, Ordering::Relaxed);
    server.1.join().unwrap()
}

#[test]
fn tail_and_stats_exit_3_when_denied_and_6_when_full_without_retrying() {
    let dir = TempDir::new("refuse");
    for (name, line, code, words) in [
        (
            "denied",
            "{\"notif\":{\"error\":\"uid 1000 may not subscribe\",\"reason\":\"denied\"}}\n",
            3,
            &["allow-lists", "uid 1000 may not subscribe"][..],
        ),
        (
            "full",
            "{\"notif\":{\"error\":\"1 subscriber already\",\"reason\":\"full\"}}\n",
            6,
            &["max_subscribers", "1 subscriber already"][..],
        ),
    ] {
        let path = dir.join(&format!("{name}.sock"));
        let at = path.to_str().unwrap();
        for args in [
            &["tail", at][..],
            &["tail", "--no-markers", at],
            &["tail", "--no-reconnect", at],
            &["stats", at],
        ] {
            let server = refusing(&path, line);
            let r = run(args);
            // Time for a reconnection to show, had there been one (the back-off starts at 100 ms).
            thread::sleep(Duration::from_millis(500));
            let connections = stop(server);
            let _ = std::fs::remove_file(&path);
            assert_eq!(r.code(), code, "{args:?}: {}", r.stderr);
            for word in words {
                assert!(r.stderr.contains(word), "{args:?}: {}", r.stderr);
            }
            assert!(r.stderr.contains(at), "{args:?}: {}", r.stderr);
            assert!(!r.stderr.contains("reconnected"), "{args:?}: {}", r.stderr);
            assert_eq!(connections, 1, "{args:?} connected again: {}", r.stderr);
        }
    }

    // A publisher that closes without a line behaves as before: tail
    // --no-reconnect ends quietly (0), stats says it is not a notif publisher (4).
    let path = dir.join("bare.sock");
    let at = path.to_str().unwrap();
    let server = refusing(&path, "");
    let r = run(&["tail", "--no-reconnect", at]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stderr.contains("closed the connection"), "{}", r.stderr);
    let r = run(&["stats", at]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains("not a notif publisher?"), "{}", r.stderr);
    stop(server);

    let r = run(&["tail", "--help"]);
    assert!(r.stdout.contains("6 the publisher is full"), "{}", r.stdout);
    let r = run(&["stats", "--help"]);
    assert!(r.stdout.contains("6 the publisher is full"), "{}", r.stdout);
}

// ----------------------------------------------- what is not a notif publisher

fn hostile_script() -> Vec<u8> {
    let mut script = Vec::new();
    script.extend_from_slice(b"\x1b[2J\x1b]0;pwned\x07\x07\x07\n");
    script.extend_from_slice(b"\xff\xfe random \x00 bytes \x9b\n");
    script.extend_from_slice(b"{\"half\":\n");
    // Valid JSON, carrying raw the characters a terminal may act on.
    script.extend_from_slice("{\"c1\":\"\u{9b}2J\u{85}\u{7f}\"}\n".as_bytes());
    script.extend_from_slice(b"{\"ok\":1}\n");
    script
}

#[test]
fn tail_skips_lines_that_are_not_json_and_says_so() {
    let dir = TempDir::new("garbage");
    let path = dir.join("g.sock");
    let server = scripted(&path, hostile_script());
    let r = spawn(
        &[
            "tail",
            "--no-markers",
            path.to_str().unwrap(),
            "--count",
            "2",
        ],
        false,
    )
    .finish(PATIENCE);
    server.join().unwrap();
    assert_eq!(r.code(), 0, "{}", r.stderr);
    // Through a pipe, valid JSON is passed on as received.
    assert_eq!(
        lines(&r.stdout),
        ["{\"c1\":\"\u{9b}2J\u{85}\u{7f}\"}", r#"{"ok":1}"#]
    );
    assert!(r.stderr.contains("not a JSON object"), "{}", r.stderr);
    assert!(
        r.stderr.contains("is this a notif publisher?"),
        "{}",
        r.stderr
    );
    // Reported on stderr escaped: no raw control byte there either.
    assert!(
        !r.stderr.bytes().any(|b| b < 0x20 && b != b'\n'),
        "{:?}",
        r.stderr
    );
}

/// A pseudo-terminal in raw mode (no output processing): (master, slave).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain calls on descriptors we own; results are checked.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(slave >= 0, "open the pty slave");
        let mut raw: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &mut raw), 0);
        libc::cfmakeraw(&mut raw);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &raw), 0);
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

#[test]
fn tail_on_a_terminal_never_writes_a_control_character() {
    let dir = TempDir::new("tty");
    let path = dir.join("t.sock");
    let server = scripted(&path, hostile_script());
    let (mut master, slave) = pty();
    let mut child = notif()
        .args([
            "tail",
            "--no-markers",
            path.to_str().unwrap(),
            "--count",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("tail did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    };
    server.join().unwrap();
    // Every writer of the slave is gone: the master reads what was written, then EIO.
    let mut output = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match master.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => output.extend_from_slice(&chunk[..n]),
        }
    }
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let text = String::from_utf8(output.clone()).expect("UTF-8 on the terminal");
    assert_eq!(
        lines(&text),
        [r#"{"c1":"\u009b2J\u0085\u007f"}"#, r#"{"ok":1}"#],
        "{stderr}"
    );
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && (c.is_control() || c == '\u{7f}')),
        "{}",
        output.escape_ascii()
    );
}
