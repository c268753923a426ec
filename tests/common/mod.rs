//! Helpers shared by the integration tests: a temporary directory per test, a
//! poller that waits for a condition instead of sleeping a fixed time, a raw
//! line reader ([`RawReader`]: a client socket read line by line with a
//! timeout, so no test can hang; not the library's `notif::Subscriber`), and
//! [`isolated!`], which runs a test alone in a process of its own.
//!
//! Each test binary (tests/api, tests/delivery, tests/protocol, tests/fault,
//! tests/attack) declares it with `#[path = "../common/mod.rs"] mod common;`;
//! [`faults`] is the rig the fault and attack tests share; [`other_users`]
//! and temp_dir.rs are shared with the notif tool's tests too.
#![allow(dead_code)] // each test binary uses a different subset

pub mod faults;
pub mod other_users;
mod rng;
mod temp_dir;

#[allow(unused_imports)]
pub use rng::Rng;
pub use temp_dir::TempDir;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use notif::{Publisher, Stats};

/// How long any single wait may take before the test fails. Generous: the
/// tests run on a loaded two-core machine; a healthy run waits milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// Read timeout of every subscriber socket.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A publisher with the default options, on the usual socket of a fresh
/// directory ([`TempDir::new`]`(test)`).
pub fn open_publisher(test: &str) -> (TempDir, Publisher) {
    let dir = TempDir::new(test);
    let publisher = Publisher::open(dir.socket()).unwrap();
    (dir, publisher)
}

/// [`open_publisher`] and one [`RawReader`] connected to it (and counted).
pub fn publisher_and_reader(test: &str) -> (TempDir, Publisher, RawReader) {
    let (dir, publisher) = open_publisher(test);
    let reader = RawReader::connect_to(&publisher, dir.socket(), 1);
    (dir, publisher, reader)
}

/// Polls `condition` until it holds; returns false if `timeout` passes first.
pub fn wait_for(mut condition: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Waits for `condition` (up to [`PATIENCE`]) and panics with `what` if it never holds.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        wait_for(condition, PATIENCE),
        "timed out after {PATIENCE:?} waiting until {what}"
    );
}

/// Waits until the publisher has exactly `n` subscribers connected.
pub fn wait_for_subscribers(publisher: &Publisher, n: u64) {
    let mut last = Stats::default();
    let reached = wait_for(
        || {
            last = publisher.stats();
            // Both counts: the stats' and the one emit returns (published
            // for emitters a moment apart from it).
            last.subscribers == n && publisher.subscribers() as u64 == n
        },
        PATIENCE,
    );
    assert!(
        reached,
        "publisher never had {n} subscribers; last stats: {last:?}, emit's count {}",
        publisher.subscribers()
    );
}

/// Waits until every (message, subscriber) pair handed out has an outcome,
/// i.e. fanout == delivered + dropped_slow + dropped_closed, and returns the stats.
pub fn wait_for_quiet(publisher: &Publisher) -> Stats {
    let mut last = Stats::default();
    let settled = wait_for(
        || {
            last = publisher.stats();
            invariant_holds(&last)
        },
        PATIENCE,
    );
    assert!(
        settled,
        "fanout never equalled delivered + dropped_slow + dropped_closed: {last:?}"
    );
    last
}

pub fn invariant_holds(stats: &Stats) -> bool {
    stats.fanout == stats.delivered + stats.dropped_slow + stats.dropped_closed
}

pub fn assert_invariant(stats: &Stats) {
    assert!(
        invariant_holds(stats),
        "fanout != delivered + dropped_slow + dropped_closed: {stats:?}"
    );
}

/// The bytes of a fixture under tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every .json and .txt file in tests/fixtures and tests/fixtures/invalid:
/// (its path, its bytes), sorted by path.
pub fn json_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    for sub in [dir.clone(), dir.join("invalid")] {
        for entry in std::fs::read_dir(sub).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_some_and(|e| e == "json" || e == "txt") {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// A raw subscriber connection: a client socket whose reads time out, read
/// line by line. It speaks no protocol of its own (the test writes any request
/// line itself); the library's client is `notif::Subscriber`.
pub struct RawReader {
    reader: BufReader<UnixStream>,
}

impl RawReader {
    pub fn connect(path: impl AsRef<Path>) -> RawReader {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        RawReader::from_stream(stream)
    }

    pub fn from_stream(stream: UnixStream) -> RawReader {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        RawReader {
            reader: BufReader::with_capacity(256 * 1024, stream),
        }
    }

    /// Connects and waits until the publisher counts `expected` subscribers.
    pub fn connect_to(publisher: &Publisher, path: impl AsRef<Path>, expected: u64) -> RawReader {
        let subscriber = RawReader::connect(path);
        wait_for_subscribers(publisher, expected);
        subscriber
    }

    pub fn stream(&self) -> &UnixStream {
        self.reader.get_ref()
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream().set_read_timeout(Some(timeout)).unwrap();
    }

    /// The next line, without its '\n'; None at end of stream. Panics on a
    /// timeout or on a last line without '\n'.
    pub fn try_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        assert_eq!(
            line.last(),
            Some(&b'\n'),
            "a line was cut short: {:?}",
            String::from_utf8_lossy(&line)
        );
        line.pop();
        Ok(Some(line))
    }

    /// The next line, without its '\n'; panics at end of stream or on timeout.
    pub fn line(&mut self) -> Vec<u8> {
        match self.try_line() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("end of stream where a line was expected"),
            Err(e) => panic!("no line within the read timeout: {e}"),
        }
    }

    /// Reads until the publisher closes the connection; returns the lines read.
    pub fn read_to_eof(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        loop {
            match self.try_line() {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return lines,
                Err(e) => panic!(
                    "no end of stream within the read timeout ({} lines read): {e}",
                    lines.len()
                ),
            }
        }
    }

    /// Like [`Subscriber::read_to_eof`], for a subscriber that was still
    /// writing when the publisher closed it: its unread input makes the kernel
    /// reset the connection, so the end may come as ECONNRESET instead of EOF
    /// (after every line the publisher wrote).
    pub fn read_until_closed(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        loop {
            match self.try_line() {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return lines,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return lines,
                Err(e) => panic!(
                    "no end of stream within the read timeout ({} lines read): {e}",
                    lines.len()
                ),
            }
        }
    }

    /// Reads until the publisher closes the connection; returns the complete
    /// lines and what followed the last '\n' (the part of a message that
    /// was being written when the publisher gave up on this subscriber).
    pub fn read_to_eof_with_tail(&mut self) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut bytes = Vec::new();
        if let Err(e) = self.reader.read_to_end(&mut bytes) {
            panic!("no end of stream within the read timeout: {e}");
        }
        let tail_start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let tail = bytes.split_off(tail_start);
        let lines = bytes
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>();
        let lines = if lines.len() == 1 && lines[0].is_empty() {
            Vec::new()
        } else {
            lines[..lines.len() - 1].to_vec()
        };
        (lines, tail)
    }

    /// Asserts the publisher closed the connection with nothing more to read.
    pub fn expect_eof(&mut self) {
        let rest = self.read_to_eof();
        assert!(
            rest.is_empty(),
            "{} unexpected lines before EOF",
            rest.len()
        );
    }

    /// Asserts that nothing arrives within `window` (and the connection stays open).
    pub fn expect_silence(&mut self, window: Duration) {
        self.set_read_timeout(window);
        let mut byte = [0u8; 1];
        let got = self.reader.read(&mut byte);
        self.set_read_timeout(READ_TIMEOUT);
        match got {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            other => panic!("expected silence, got {other:?}"),
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }
}

/// A message carrying a sequence number (and optionally a stream id), padded to `pad` bytes of filler.
pub fn numbered(stream: usize, seq: u64, pad: usize) -> Vec<u8> {
    format!(
        "{{\"stream\":{stream},\"seq\":{seq},\"pad\":\"{}\"}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

/// Parses the stream id and sequence number back from a [`numbered`] line.
pub fn parse_numbered(line: &[u8]) -> (usize, u64) {
    let text = std::str::from_utf8(line).expect("a UTF-8 line");
    let field = |name: &str| -> u64 {
        let key = format!("\"{name}\":");
        let start = text
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            + key.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("bad {name} in {text}"))
    };
    (field("stream") as usize, field("seq"))
}

/// Spawns a thread that reads `count` numbered lines of stream 0 and checks
/// they come in order 0..count; returns the lines' count on success.
pub fn spawn_sequential_reader(
    mut subscriber: RawReader,
    count: u64,
) -> std::thread::JoinHandle<RawReader> {
    std::thread::spawn(move || {
        for expected in 0..count {
            let line = subscriber.line();
            let (_, seq) = parse_numbered(&line);
            assert_eq!(seq, expected, "message out of order or lost");
        }
        subscriber
    })
}

/// Counts entries of a /proc/self directory (open descriptors, threads).
pub fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// This process's resident memory (VmRSS), in bytes.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

// ------------------------------------------------------------------ process isolation

/// Set in the copy of the test binary that [`run_isolated`] starts: the name of
/// the one test it runs.
const ISOLATED_ENV: &str = "NOTIF_TEST_ISOLATED";

/// The name libtest knows a test by, from a Rust path such as
/// `concat!(module_path!(), "::a_test")`: the path without the crate's name
/// (`fault::resume::a_test` is `resume::a_test`). For re-executing this test
/// binary with `NAME --exact`.
pub fn libtest_name(path: &str) -> &str {
    path.split_once("::").map_or(path, |(_, rest)| rest)
}

/// `isolated!();`, first in a test: runs it alone in a copy of this test
/// binary ([`run_isolated`]), and returns once the copy has run it.
#[allow(unused_macros)] // a binary without such tests
macro_rules! isolated {
    () => {
        if $crate::common::run_isolated() {
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use isolated;

/// Runs the calling test alone, in a fresh copy of this test binary
/// (`NAME --exact --test-threads=1`), for tests that change or measure
/// something of the whole process: its umask, its signal dispositions, its
/// descriptor limit, its descriptor and thread counts, its resident memory, or
/// that fork (a child inherits every descriptor of every test running
/// meanwhile). Call it first, through the macro: `isolated!();`.
///
/// In the test process it starts the copy, waits, forwards its output (kept
/// by the harness unless the test fails), fails if the copy failed and
/// returns true; in the copy it returns false and the body runs. The test's
/// name is its thread's: libtest names the thread of each test after it.
pub fn run_isolated() -> bool {
    let thread = std::thread::current();
    let name = thread.name().expect("a test thread has the test's name");
    if std::env::var(ISOLATED_ENV).is_ok_and(|running| running == name) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture", "-q"])
        .env(ISOLATED_ENV, name)
        .env_remove("RUST_TEST_THREADS")
        .output()
        .expect("start a copy of the test binary");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name}, run in a process of its own: {} (its output is above)",
        output.status
    );
    true
}
