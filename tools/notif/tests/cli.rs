//! The `notif` binary end to end: emit and tail against each other, filters,
//! globs, stats, exit codes, help. Every wait is bounded; children are killed
//! when a test fails (Proc's Drop).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notif::{Options, Publisher};

/// Generous: a 2-core machine running other tests can be slow.
const PATIENCE: Duration = Duration::from_secs(30);

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: socket paths are limited to 107 bytes.
        let dir = std::env::temp_dir().join(format!("ncli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn notif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_notif"))
}

/// A child process that is killed if the test ends without waiting for it.
struct Proc {
    child: Child,
    name: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        all
    })
}

/// Starts `notif ARGS` with stdin piped (when `stdin`), stdout and stderr collected.
fn spawn(args: &[&str], stdin: bool) -> Proc {
    spawn_with(args, stdin, true)
}

fn spawn_with(args: &[&str], stdin: bool, collect_stdout: bool) -> Proc {
    let mut child = notif()
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the notif binary");
    let stdout = if collect_stdout {
        Some(drain(child.stdout.take().unwrap()))
    } else {
        None
    };
    let stderr = Some(drain(child.stderr.take().unwrap()));
    Proc {
        child,
        name: args.join(" "),
        stdout,
        stderr,
    }
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl Proc {
    fn write_stdin(&mut self, text: &str) {
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the process to exit (panics after `limit`, killing it).
    fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap())
                    .unwrap_or_default();
                panic!(
                    "`notif {}` did not exit within {limit:?}; stderr: {}",
                    self.name,
                    String::from_utf8_lossy(&stderr)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8(h.map(|h| h.join().unwrap()).unwrap_or_default()).unwrap()
        };
        Finished {
            status,
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }

    fn kill(mut self) -> Finished {
        let _ = self.child.kill();
        self.finish(PATIENCE)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `notif ARGS` to completion.
fn run(args: &[&str]) -> Finished {
    spawn(args, false).finish(PATIENCE)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_subscribers(publisher: &Publisher, n: u64) {
    wait_until(&format!("{n} subscribers"), || {
        publisher.stats().subscribers >= n
    });
}

/// Over a glob, tail first probes each match (connect, close: is it live?),
/// which `subscribers` may count for a moment: wait for the connection after
/// the probe, `accepted_before` being the count before tail started.
fn wait_for_glob_subscriber(publisher: &Publisher, accepted_before: u64) {
    wait_until("tail's subscription after its probe", || {
        let stats = publisher.stats();
        stats.accepted >= accepted_before + 2 && stats.subscribers >= 1
    });
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn emit_and_tail_end_to_end() {
    let dir = TempDir::new("e2e");
    let path = dir.str("e.sock");
    let tail = spawn(&["tail", &path, "--count", "3"], false);
    let mut emit = spawn(
        &["emit", &path, "--wait-subscribers", "1", "--timeout", "30"],
        true,
    );
    emit.write_stdin(concat!(
        "{\"event_type\":\"a.b\",\"n\":1,\"x\":1.0e+10}\n",
        "{ \"event_type\" : \"c\",  \"list\": [1, 2] }\n",
        "{\"broken\": \n",
        "\n",
        "{\"z\":\"\\u00e9\",\"a\":-0}\n",
    ));
    emit.close_stdin();
    let emitted = emit.finish(PATIENCE);
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
        dir.path("a.sock").exists() && dir.path("b.sock").exists()
    });
    let pattern = format!("{}/*.sock", dir.0.display());
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
    let path = dir.path("r.sock");
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
    let path = dir.path("d.sock");
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

    std::fs::write(dir.path("file.sock"), b"").unwrap();
    let file = dir.str("file.sock");
    let r = run(&["tail", &file]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(&file) && r.stderr.contains("not a socket"),
        "{}",
        r.stderr
    );

    // A socket file nobody listens on.
    drop(UnixListener::bind(dir.path("stale.sock")).unwrap());
    let stale = dir.str("stale.sock");
    let r = run(&["tail", "--no-reconnect", &stale]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains(&stale), "{}", r.stderr);

    // Something that answers the request with an error line.
    let listener = UnixListener::bind(dir.path("err.sock")).unwrap();
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
    let path = dir.path("p.sock");
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
    let (p1, _s1) = busy_publisher(&dir.path("one.sock"));
    let p2 = Publisher::open(dir.path("two.sock")).unwrap();
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

    std::fs::write(dir.path("file"), b"hello").unwrap();
    let file = dir.str("file");
    let r = run(&["stats", "--json", &good, &file]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains(&file), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1);

    // A listener that accepts and closes at once.
    let closer = UnixListener::bind(dir.path("closer.sock")).unwrap();
    let closing = thread::spawn(move || drop(closer.accept().unwrap()));
    let r = run(&["stats", &dir.str("closer.sock")]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(r.stderr.contains("closer.sock"), "{}", r.stderr);
    closing.join().unwrap();

    // A listener that never answers: given up after 2 s.
    let silent = UnixListener::bind(dir.path("silent.sock")).unwrap();
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
fn emit_exit_codes() {
    let dir = TempDir::new("emitx");
    let path = dir.str("e.sock");
    let live = Publisher::open(&path).unwrap();
    let r = run(&["emit", &path]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("another publisher is live"),
        "{}",
        r.stderr
    );
    live.close();

    let r = run(&["emit", &dir.str("no/such/dir.sock")]);
    assert_eq!(r.code(), 2, "{}", r.stderr);

    let r = run(&["emit", &path, "--wait-subscribers", "1", "--timeout", "0.2"]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(r.stderr.contains("0 of the 1 subscribers"), "{}", r.stderr);
    assert!(!dir.path("e.sock").exists(), "the socket file is removed");

    let r = run(&["emit", &path, "--mode", "999"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);

    // Nobody listening: bad lines are still reported.
    let mut emit = spawn(&["emit", &path, "--mode", "0660"], true);
    emit.write_stdin("{\"ok\":1}\n[1]\n");
    emit.close_stdin();
    let r = emit.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stderr.contains("stdin line 2:"), "{}", r.stderr);
    assert!(r.stderr.contains("2 lines read, 1 skipped"), "{}", r.stderr);
}

#[test]
fn help_for_every_command() {
    for args in [
        &["--help"][..],
        &["tail", "--help"],
        &["emit", "--help"],
        &["stats", "--help"],
        &["help", "tail"],
    ] {
        let r = run(args);
        assert_eq!(r.code(), 0, "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: notif"), "{args:?}: {}", r.stdout);
        assert!(r.stdout.contains("Exit codes"), "{args:?}: {}", r.stdout);
    }
    let r = run(&["--version"]);
    assert_eq!(r.code(), 0);
    let r = run(&["frobnicate"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    let r = run(&[]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
}

// ------------------------------------------- notifications posing as control

#[test]
fn emit_refuses_notifications_posing_as_control_lines_and_tail_prints_what_follows() {
    let dir = TempDir::new("posing");
    let path = dir.str("p.sock");
    let tail = spawn(&["tail", &path, "--count", "2"], false);
    let mut emit = spawn(
        &["emit", &path, "--wait-subscribers", "1", "--timeout", "30"],
        true,
    );
    emit.write_stdin(concat!(
        "{\"notif\":{\"dropped\":1000000}}\n",
        "{\"notif\":{\"error\":\"refused the subscription request\"}}\n",
        "{\"a\":1}\n",
        "{\"b\":2,\"notif\":{\"dropped\":5}}\n",
    ));
    emit.close_stdin();
    let emitted = emit.finish(PATIENCE);
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
        let path = dir.path(&format!("{name}.sock"));
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
    let path = dir.path("bare.sock");
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

/// A fake "publisher" writing `script` to its first connection, then holding it open.
fn scripted(path: &Path, script: Vec<u8>) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = conn.write_all(&script);
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    })
}

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
    let path = dir.path("g.sock");
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
    let path = dir.path("t.sock");
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
    let path = dir.path("h.sock");
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

#[test]
fn stats_never_prints_a_control_character_the_publisher_sent() {
    let dir = TempDir::new("statesc");
    let path = dir.path("s.sock");
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

/// A socket file nobody listens on, as a worker that exited through
/// `_exit()` leaves behind.
fn dead_socket(path: &Path) {
    drop(UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

#[test]
fn globs_skip_dead_sockets_quietly() {
    let dir = TempDir::new("dead");
    dead_socket(&dir.path("n-1.sock"));
    dead_socket(&dir.path("n-2.sock"));
    let live = Publisher::open(dir.path("n-3.sock")).unwrap();
    let pattern = format!("{}/n-*.sock", dir.0.display());

    let r = run(&["stats", "--json", &pattern]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.stderr, "", "dead sockets are skipped quietly");
    let got = lines(&r.stdout);
    assert_eq!(got.len(), 1, "{}", r.stdout);
    assert!(got[0].contains("n-3.sock"), "{}", got[0]);

    // tail: follows the live one only (it would wait on a dead one forever).
    let tail = spawn(&["tail", &pattern, "--count", "1"], false);
    wait_for_subscribers(&live, 1);
    live.emit(br#"{"event_type":"x"}"#).unwrap();
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "{}", tailed.stderr);
    assert_eq!(lines(&tailed.stdout), [r#"{"event_type":"x"}"#]);
    assert!(!tailed.stderr.contains("n-1.sock"), "{}", tailed.stderr);

    // Only dead ones: nothing to report, exit 2 (no socket there).
    drop(live);
    dead_socket(&dir.path("n-3.sock"));
    let r = run(&["stats", &pattern]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
}

#[test]
fn globs_skip_another_owners_sockets_with_a_warning() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to give a socket to another user");
        return;
    }
    let dir = TempDir::new("owner");
    let mine = Publisher::open(dir.path("a.sock")).unwrap();
    let theirs = Publisher::open(dir.path("b.sock")).unwrap();
    std::os::unix::fs::chown(dir.path("b.sock"), Some(4242), None).unwrap();
    let pattern = format!("{}/*.sock", dir.0.display());

    let r = run(&["stats", "--json", &pattern]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout).len(), 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("b.sock") && r.stderr.contains("4242"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--any-owner"), "{}", r.stderr);
    let r = run(&["stats", "--json", "--any-owner", &pattern]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout).len(), 2, "{}", r.stdout);

    let accepted = mine.stats().accepted;
    let tail = spawn(&["tail", &pattern, "--count", "1"], false);
    wait_for_glob_subscriber(&mine, accepted);
    theirs.emit(br#"{"from":"b"}"#).unwrap();
    mine.emit(br#"{"from":"a"}"#).unwrap();
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "{}", tailed.stderr);
    assert_eq!(lines(&tailed.stdout), [r#"{"from":"a"}"#]);
    assert!(tailed.stderr.contains("b.sock"), "{}", tailed.stderr);
}

#[test]
fn stats_on_a_stale_socket_suggests_only_what_stats_can_do() {
    let dir = TempDir::new("stale");
    drop(UnixListener::bind(dir.path("stale.sock")).unwrap());
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
    let (publisher, _reader) = busy_publisher(&dir.path("m.sock"));
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
    let listener = UnixListener::bind(dir.path("list.sock")).unwrap();
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
    let path = dir.path("r.sock");
    let socket = dir.str("r.sock");
    let file = dir.path("cursor");
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
    let path = dir.path("p.sock");
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
    let path = dir.path("e.sock");
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
    let file = dir.path("not-cursors");
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
    let path = dir.path("f.sock");
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
    let path = dir.path("k.sock");
    let socket = dir.str("k.sock");
    let file = dir.path("cursor");
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
    let pa = replaying(&dir.path("g-a.sock"), 1 << 20);
    let pb = replaying(&dir.path("g-b.sock"), 1 << 20);
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
    let path = dir.path("f.sock");
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
    let path = dir.path("p.sock");
    let socket = dir.str("p.sock");
    let first = replaying(&path, 256 << 10);
    let tail = spawn(&["tail", &socket, "--replay", "--count", "1"], false);
    wait_for_subscribers(&first, 1);
    first.close();
    // A new publisher whose ring no longer goes back to its first
    // notification, filled before tail can reconnect to it: it is moved into
    // place once full.
    let publisher = replaying(&dir.path("new.sock"), 256 << 10);
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
    std::fs::rename(dir.path("new.sock"), &path).unwrap();
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
        let path = dir.path("t.sock");
        let socket = dir.str("t.sock");
        let file = dir.path("cursor");
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
    let path = dir.path("s.sock");
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
