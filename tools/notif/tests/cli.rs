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
    assert!(
        tailed.stderr.contains(&format!(
            "notif: {}: reconnected; notifications may have been missed",
            path.display()
        )),
        "stderr: {}",
        tailed.stderr
    );
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
    let names: Vec<&str> = table[1..]
        .iter()
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
