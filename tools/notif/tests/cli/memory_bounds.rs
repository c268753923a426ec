//! Memory bounds of tail and emit: a stopped reader, an endless input line.

use super::*;

// --------------------------------------------------------------- memory bounds

/// The peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

#[test]
fn tail_with_a_stopped_reader_holds_a_bounded_number_of_bytes() {
    let dir = TempDir::new("hwm");
    stopped_reader_holds_a_bounded_number_of_bytes(&dir, &[]);
    // Wrapping each line with its path and cursor copies it no more.
    let file = dir.str("cursors");
    stopped_reader_holds_a_bounded_number_of_bytes(
        &dir,
        &["--show-cursor", "--cursor-file", &file],
    );
}

fn stopped_reader_holds_a_bounded_number_of_bytes(dir: &TempDir, extra: &[&str]) {
    const LINE: usize = 60 << 20;
    let path = dir.join("h.sock");
    let _ = std::fs::remove_file(&path);
    let options = Options {
        max_message: LINE + 64,
        subscriber_buffer: 2 * LINE + 1024,
        backlog: 2 * LINE + 1024,
        memory_limit: 4 * LINE,
        ..Options::default()
    };
    let publisher = Publisher::open_with(&path, &options).unwrap();
    // Nobody ever reads tail's stdout.
    let mut args = vec!["tail", "--no-markers", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut tail = spawn_with(&args, false, false);
    let _stdout: ChildStdout = tail.child.stdout.take().unwrap();
    wait_for_subscribers(&publisher, 1);
    let mut line = vec![b'x'; LINE];
    line[..6].copy_from_slice(b"{\"k\":\"");
    line[LINE - 2..].copy_from_slice(b"\"}");
    // 16 lines of 60 MiB: a channel of lines would take them all (960 MiB).
    for _ in 0..16 {
        let _ = publisher.emit(&line);
        // Let the server thread and tail take what they will (no timing is
        // asserted: a slower machine only makes tail take less).
        thread::sleep(Duration::from_millis(150));
    }
    thread::sleep(Duration::from_millis(500));
    let pid = tail.child.id();
    let peak = peak_rss(pid);
    let stats = publisher.stats();
    drop(tail);
    publisher.close();
    eprintln!(
        "tail {extra:?} VmHWM {} MiB; publisher {stats:?}",
        peak >> 20
    );
    assert!(
        peak < (64 << 20) + (64 << 20) + (32 << 20),
        "tail {extra:?} reached {} MiB with a stopped reader",
        peak >> 20
    );
}

#[test]
fn emit_from_an_endless_line_holds_a_bounded_number_of_bytes() {
    let dir = TempDir::new("zero");
    let path = dir.str("z.sock");
    let mut child = notif()
        .args(["emit", &path])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    // Long enough to read gigabytes of zeros.
    thread::sleep(Duration::from_secs(2));
    let peak = peak_rss(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    eprintln!("emit < /dev/zero: VmHWM {} MiB", peak >> 20);
    assert!(peak < 64 << 20, "emit reached {} MiB", peak >> 20);
    assert!(
        stderr.contains("stdin line 1: longer than the max_message limit"),
        "{stderr}"
    );

    // A long line is skipped, and what follows it is emitted.
    let tail = spawn(&["tail", &dir.str("l.sock"), "--count", "1"], false);
    let mut emit = spawn(
        &["emit", &dir.str("l.sock"), "--wait-subscribers", "1"],
        true,
    );
    emit.write_stdin(&format!(
        "{{\"a\":\"{}\"}}\n{{\"ok\":1}}\n",
        "y".repeat(2 << 20)
    ));
    emit.close_stdin();
    let emitted = emit.finish(PATIENCE);
    assert_eq!(emitted.code(), 0, "{}", emitted.stderr);
    assert!(
        emitted.stderr.contains("stdin line 1: longer than")
            && emitted
                .stderr
                .contains("2 lines read, 1 skipped; emitted 1"),
        "{}",
        emitted.stderr
    );
    let tailed = tail.finish(PATIENCE);
    assert_eq!(lines(&tailed.stdout), [r#"{"ok":1}"#], "{}", tailed.stderr);
}
