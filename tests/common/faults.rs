//! The fault rig (tests/fault/, and the attackers of tests/attack/): the
//! set-up most scenarios share (fault_options, open_watched, steady_paced),
//! the invariant check every scenario ends with (check_invariants,
//! close_and_check), paced sequence-numbered emitters and checking readers,
//! resource baselines (descriptors, threads, memory), and child processes
//! (the test binary re-executed as a subscriber that relays what it reads to
//! its stdout, or as a publisher driven over its stdin) with a guard that
//! kills them in Drop.
//!
//! A module of `common` (tests/common/mod.rs): `use crate::common::faults::*`.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;
use notif::{Options, Publisher, SocketAddress, Stats};

// ------------------------------------------------------------------ soak

/// `NOTIF_SOAK=1` (make soak) runs the long versions of the scenarios.
pub fn soak() -> bool {
    std::env::var_os("NOTIF_SOAK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `short` in `make test`, `long` under NOTIF_SOAK=1.
pub fn scaled<T>(short: T, long: T) -> T {
    if soak() {
        long
    } else {
        short
    }
}

// ------------------------------------------------------------------ resources

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    count_entries("/proc/self/fd")
}

/// Threads of this process.
pub fn thread_count() -> usize {
    count_entries("/proc/self/task")
}

/// Threads of this process named like the library's server thread.
pub fn server_thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == "notif-server")
        .count()
}

/// VmRSS of this process, in bytes (the shared helper under the name the fault tests use).
pub use crate::common::resident_bytes as rss_bytes;

/// The ids of this process's threads.
pub fn thread_ids() -> HashSet<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn gettid() -> i32 {
    // SAFETY: gettid(2) has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Test threads parked in [`serial`], waiting for their turn: they are the
/// test harness's, not leaks of the test that runs meanwhile.
static WAITING_IN_SERIAL: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Serialises the tests of one binary that count the process's descriptors
/// and threads, or fork (a child inherits every descriptor of the process).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let me = gettid();
    WAITING_IN_SERIAL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(me);
    let guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    WAITING_IN_SERIAL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&tid| tid != me);
    guard
}

/// What the process held before a scenario: checked again after close.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub fds: usize,
    pub threads: HashSet<i32>,
    pub server_threads: usize,
    pub rss: u64,
}

impl Baseline {
    pub fn take() -> Baseline {
        Baseline {
            fds: fd_count(),
            threads: thread_ids(),
            server_threads: server_thread_count(),
            rss: rss_bytes(),
        }
    }

    /// Threads alive now that were not at the baseline (other tests' threads
    /// waiting in [`serial`] aside).
    pub fn new_threads(&self) -> Vec<(i32, String)> {
        let waiting = WAITING_IN_SERIAL
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        thread_ids()
            .into_iter()
            .filter(|tid| !self.threads.contains(tid) && !waiting.contains(tid))
            .map(|tid| {
                let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                    .unwrap_or_default();
                (tid, comm.trim_end().to_owned())
            })
            .collect()
    }
}

fn fd_listing() -> String {
    let mut out = String::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} -> {target}\n",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// Samples VmRSS every few milliseconds on a thread of its own and keeps the peak.
pub struct MemoryWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MemoryWatch {
    pub fn start() -> MemoryWatch {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        MemoryWatch {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the peak VmRSS seen.
    pub fn finish(mut self) -> u64 {
        self.stop_thread();
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// What memory a publisher may use: each subscriber's buffer, the backlog, and
/// the batch being distributed, twice over for allocator slack, plus a fixed
/// allowance for the test's own threads, readers and allocator arenas.
pub fn memory_bound(options: &Options, subscribers: usize) -> u64 {
    const TEST_OVERHEAD: u64 = 8 * 1024 * 1024;
    2 * (subscribers as u64 * options.subscriber_buffer as u64 + options.backlog as u64)
        + TEST_OVERHEAD
}

// ------------------------------------------------------------------ the invariant check

/// What a scenario expects of its publisher once things are quiet.
pub struct Expect<'a> {
    pub baseline: &'a Baseline,
    pub options: &'a Options,
    /// Subscribers (of every kind) that could have had a full buffer at once.
    pub subscribers: usize,
    /// Peak VmRSS during the scenario (a [`MemoryWatch`]), if sampled; else now.
    pub peak_rss: Option<u64>,
    /// Drops the scenario inflicted for sure (stopped, killed or never-reading
    /// subscribers): dropped_slow + dropped_closed must be at least this.
    pub min_dropped: u64,
}

impl<'a> Expect<'a> {
    pub fn new(baseline: &'a Baseline, options: &'a Options, subscribers: usize) -> Expect<'a> {
        Expect {
            baseline,
            options,
            subscribers,
            peak_rss: None,
            min_dropped: 0,
        }
    }

    /// [`Expect::new`] with the peak `memory` saw (the watch ends here).
    pub fn watched(
        baseline: &'a Baseline,
        options: &'a Options,
        subscribers: usize,
        memory: MemoryWatch,
    ) -> Expect<'a> {
        Expect {
            peak_rss: Some(memory.finish()),
            ..Expect::new(baseline, options, subscribers)
        }
    }
}

/// The check every fault scenario ends with, on a live publisher, after the
/// readers that kept up have verified they got every message in order:
/// - every (message, subscriber) pair has an outcome: fanout == delivered +
///   dropped_slow + dropped_closed once quiet, and the inflicted drops are there;
/// - memory stayed within a small multiple of what the options allow;
/// - the publisher still serves a fresh subscriber (connect, emit, receive).
///
/// Returns the quiet stats (after the fresh subscriber has gone).
pub fn check_invariants(publisher: &Publisher, expect: &Expect<'_>) -> Stats {
    let stats = wait_for_quiet(publisher);
    assert!(
        stats.dropped_slow + stats.dropped_closed >= expect.min_dropped,
        "the scenario inflicted at least {} drops, the counters show {} slow + {} closed: {stats:?}",
        expect.min_dropped,
        stats.dropped_slow,
        stats.dropped_closed
    );
    let rss = expect.peak_rss.unwrap_or(0).max(rss_bytes());
    let bound = memory_bound(expect.options, expect.subscribers);
    let growth = rss.saturating_sub(expect.baseline.rss);
    assert!(
        growth <= bound,
        "VmRSS grew by {} KiB (from {} to {} KiB), over the bound of {} KiB for {} subscribers of {} KiB and a backlog of {} KiB",
        growth / 1024,
        expect.baseline.rss / 1024,
        rss / 1024,
        bound / 1024,
        expect.subscribers,
        expect.options.subscriber_buffer / 1024,
        expect.options.backlog / 1024
    );
    eprintln!(
        "memory: VmRSS grew by {} KiB at most (bound {} KiB)",
        growth / 1024,
        bound / 1024
    );
    serves_a_fresh_subscriber(publisher);
    wait_for_quiet(publisher)
}

/// The file path a publisher listens on.
pub fn path_of(publisher: &Publisher) -> PathBuf {
    match publisher.address() {
        SocketAddress::File(path) => path.clone(),
        other => panic!("fault tests use socket files, not {other}"),
    }
}

static FRESH: AtomicU64 = AtomicU64::new(0);

/// Connects a new subscriber, waits until the publisher has taken it on (it
/// answers a `{}` request with its acknowledgement), emits and expects it.
pub fn serves_a_fresh_subscriber(publisher: &Publisher) {
    let before = publisher.stats().subscribers;
    let mut fresh = RawReader::connect(path_of(publisher));
    fresh.write_all(b"{}\n").unwrap();
    let ack = fresh.line();
    assert!(
        ack.starts_with(b"{\"notif\":{\"subscribed\":true"),
        "a fresh subscriber got {:?} instead of the acknowledgement",
        String::from_utf8_lossy(&ack)
    );
    let marker = format!(
        "{{\"fresh\":{},\"pid\":{}}}",
        FRESH.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    emit_retrying(publisher, marker.as_bytes());
    let line = fresh.line();
    assert_eq!(
        String::from_utf8_lossy(&line),
        marker,
        "the fresh subscriber got something else"
    );
    drop(fresh);
    wait_for_subscribers(publisher, before);
}

/// After close: the final counters add up, and every descriptor and thread the
/// publisher had is gone (wait: the kernel and the reader threads take a moment).
pub fn check_closed(baseline: &Baseline, final_stats: &Stats) {
    assert_invariant(final_stats);
    check_resources_released(baseline);
}

/// Descriptors and threads back to the baseline (no publisher of ours alive).
pub fn check_resources_released(baseline: &Baseline) {
    let fds_ok = wait_for(|| fd_count() <= baseline.fds, PATIENCE);
    assert!(
        fds_ok,
        "descriptors leaked: {} open, {} before\n{}",
        fd_count(),
        baseline.fds,
        fd_listing()
    );
    let servers_ok = wait_for(
        || server_thread_count() <= baseline.server_threads,
        PATIENCE,
    );
    assert!(
        servers_ok,
        "notif-server threads leaked: {} alive, {} before",
        server_thread_count(),
        baseline.server_threads
    );
    let threads_ok = wait_for(|| baseline.new_threads().is_empty(), PATIENCE);
    assert!(
        threads_ok,
        "threads leaked (id, name): {:?}",
        baseline.new_threads()
    );
}

// ------------------------------------------------------------------ emitting

/// Emits, retrying while the backlog is full (EAGAIN is a valid answer: the
/// message was not queued and is counted in dropped_backlog, so a retry keeps
/// the sequence whole). Any other error fails the test. Returns emit's count.
pub fn emit_retrying(publisher: &Publisher, json: &[u8]) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match publisher.emit(json) {
            Ok(n) => return n,
            Err(e) if e.errno() == libc::EAGAIN && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!(
                "emit failed with errno {} ({}) for {}",
                e.errno(),
                e.message(),
                String::from_utf8_lossy(&json[..json.len().min(80)])
            ),
        }
    }
}

/// Emits `line(0)`, `line(1)`, ... until they fill a replay ring of `ring`
/// bytes a little over (each notification costs its line and its end in the
/// batch), then waits until the publisher has numbered them all; returns how
/// many it emitted.
pub fn fill_replay_ring(publisher: &Publisher, ring: usize, line: impl Fn(u64) -> String) -> u64 {
    let (mut seq, mut filled) = (0u64, 0usize);
    loop {
        let line = line(seq);
        emit_retrying(publisher, line.as_bytes());
        seq += 1;
        filled += line.len() + 8;
        if filled >= ring + ring / 4 {
            wait_until("every notification numbered", || {
                publisher.stats().next_seq == seq
            });
            return seq;
        }
    }
}

/// Keeps emitters at most `window` messages ahead of the slowest reader that
/// must get everything, so those readers' buffers never overflow.
pub struct Pacer {
    readers: Vec<Arc<AtomicU64>>,
    emitted: AtomicU64,
    window: u64,
}

impl Pacer {
    /// Paces emission to the slowest of `readers`.
    pub fn following(readers: &[SeqReader], window: u64) -> Pacer {
        Pacer::new(readers.iter().map(|r| r.progress.clone()).collect(), window)
    }

    pub fn new(readers: Vec<Arc<AtomicU64>>, window: u64) -> Pacer {
        Pacer {
            readers,
            emitted: AtomicU64::new(0),
            window,
        }
    }

    /// For a pacer that takes over from another: `emitted` messages were already sent.
    pub fn starting_at(self, emitted: u64) -> Pacer {
        self.emitted.store(emitted, Ordering::Relaxed);
        self
    }

    fn slowest(&self) -> u64 {
        self.readers
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn wait_for_room(&self) {
        let emitted = self.emitted.load(Ordering::Relaxed);
        if self.slowest().saturating_add(self.window) >= emitted {
            return;
        }
        let ok = wait_for(
            || self.slowest().saturating_add(self.window) >= emitted,
            PATIENCE,
        );
        assert!(
            ok,
            "the readers that must keep up did not: {} emitted, slowest read {}",
            emitted,
            self.slowest()
        );
    }

    /// Emits one counted message once the readers are close enough behind.
    pub fn emit(&self, publisher: &Publisher, json: &[u8]) -> usize {
        self.wait_for_room();
        let n = emit_retrying(publisher, json);
        self.emitted.fetch_add(1, Ordering::Relaxed);
        n
    }

    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }
}

/// The message that ends stream `stream` after `total` numbered messages.
pub fn end_of_stream(stream: usize, total: u64) -> Vec<u8> {
    format!("{{\"stream\":{stream},\"end\":{total}}}").into_bytes()
}

/// Parses an [`end_of_stream`] line.
pub fn parse_end(line: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("{\"stream\":")?;
    let (stream, rest) = rest.split_once(",\"end\":")?;
    let total = rest.strip_suffix('}')?;
    Some((stream.parse().ok()?, total.parse().ok()?))
}

/// Emits numbered messages of one stream (`common::numbered`) until `stop`,
/// then its end-of-stream message; returns how many numbered messages it sent.
pub fn emit_stream_until(
    publisher: &Publisher,
    pacer: &Pacer,
    stream: usize,
    pad: usize,
    stop: &AtomicBool,
) -> u64 {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        pacer.emit(publisher, &numbered(stream, seq, pad));
        seq += 1;
    }
    pacer.emit(publisher, &end_of_stream(stream, seq));
    seq
}

// ------------------------------------------------------------------ reading

/// A reader thread that must get everything: for each of `streams` streams,
/// numbered messages 0, 1, 2... in order, then the stream's end message with
/// the right total. Publishes how many messages it has read.
pub struct SeqReader {
    pub progress: Arc<AtomicU64>,
    handle: JoinHandle<(RawReader, Vec<u64>)>,
}

/// The subscribers that keep up in a fault scenario: `count` readers that
/// check `streams` sequence-numbered streams arrive whole and in order.
pub fn steady_readers(
    publisher: &Publisher,
    socket: &Path,
    count: u64,
    streams: usize,
) -> Vec<SeqReader> {
    (1..=count)
        .map(|n| SeqReader::spawn(RawReader::connect_to(publisher, socket, n), streams))
        .collect()
}

impl SeqReader {
    pub fn spawn(mut subscriber: RawReader, streams: usize) -> SeqReader {
        let progress = Arc::new(AtomicU64::new(0));
        let shared = Arc::clone(&progress);
        let handle = std::thread::spawn(move || {
            let mut next = vec![0u64; streams];
            let mut ended = 0;
            while ended < streams {
                let line = subscriber.line();
                if let Some((stream, total)) = parse_end(&line) {
                    assert_eq!(
                        next[stream], total,
                        "stream {stream} ended after {total} messages; this reader got {}: lost",
                        next[stream]
                    );
                    ended += 1;
                    continue;
                }
                let (stream, seq) = parse_numbered(&line);
                assert_eq!(
                    seq, next[stream],
                    "stream {stream}: expected message {} next, got {seq} (lost or reordered)",
                    next[stream]
                );
                next[stream] += 1;
                shared.fetch_add(1, Ordering::Relaxed);
            }
            (subscriber, next)
        });
        SeqReader { progress, handle }
    }

    /// Waits for the reader: its subscriber and each stream's count.
    pub fn join(self) -> (RawReader, Vec<u64>) {
        match self.handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

// ------------------------------------------------------------------ the rig

/// The options most fault scenarios run with: each subscriber's buffer
/// `subscriber_buffer` bytes, messages of up to 4 KiB, a 4 MiB backlog.
pub fn fault_options(subscriber_buffer: usize) -> Options {
    Options {
        subscriber_buffer,
        max_message: 4096,
        backlog: 4 * 1024 * 1024,
        ..Options::default()
    }
}

/// The first half of the rig most fault scenarios share: a directory, the
/// process's [`Baseline`] and a [`MemoryWatch`] (both taken before the
/// publisher opens), and the publisher, opened there with `options`. The
/// scenario ends with [`check_invariants`] on the live publisher, then
/// [`close_and_check`].
pub fn open_watched(tag: &str, options: &Options) -> (TempDir, Baseline, MemoryWatch, Publisher) {
    let dir = TempDir::new(tag);
    let baseline = Baseline::take();
    let memory = MemoryWatch::start();
    let publisher = Publisher::open_with(dir.socket(), options).unwrap();
    (dir, baseline, memory, publisher)
}

/// The second half: two steady readers that must get every message of
/// `streams` numbered streams, a [`Pacer`] that keeps the emitters at most
/// `window` messages ahead of them, and the flag that stops the emitters
/// ([`emit_stream_until`]).
pub fn steady_paced(
    publisher: &Publisher,
    dir: &TempDir,
    streams: usize,
    window: u64,
) -> (Vec<SeqReader>, Pacer, AtomicBool) {
    let readers = steady_readers(publisher, &dir.socket(), 2, streams);
    let pacer = Pacer::following(&readers, window);
    (readers, pacer, AtomicBool::new(false))
}

/// Joins `readers`: their connections, and what each counted of every stream.
pub fn join_all(readers: Vec<SeqReader>) -> (Vec<RawReader>, Vec<Vec<u64>>) {
    readers.into_iter().map(SeqReader::join).unzip()
}

/// The end of a scenario: closes the publisher, each of `subscribers` reads
/// to the end of the stream (drop markers allowed), and [`check_closed`].
pub fn close_and_check(publisher: Publisher, subscribers: Vec<RawReader>, baseline: &Baseline) {
    let final_stats = publisher.close();
    for mut subscriber in subscribers {
        expect_eof_after_markers(&mut subscriber);
    }
    check_closed(baseline, &final_stats);
}

// ------------------------------------------------------------------ child processes

/// The environment variable that turns a re-executed test binary into a helper.
pub const ROLE_ENV: &str = "NOTIF_FAULT_ROLE";

/// Call first in every test that starts helper children: in a child it runs
/// the role (and exits); in the test process it returns at once.
pub fn role_hook() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let code = match role.as_str() {
        "relay" => relay_main(),
        "cursor-reader" => cursor_reader_main(),
        "publisher" => publisher_main(),
        other => {
            eprintln!("unknown {ROLE_ENV} {other:?}");
            64
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// A helper child process (the test binary re-executed in a role), killed
/// with SIGKILL and reaped when dropped. Lines it prints that start with `{`
/// (relayed notifications) or `@ ` (a publisher's answers) come out of
/// [`Remote::next_line`]; the test harness's own output is skipped.
pub struct Remote {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// Starts this test binary again, running only `test` (which must call
/// [`role_hook`] first) in `role`, with `env` added. `test` is the test's
/// Rust path, `concat!(module_path!(), "::name")` (see [`libtest_name`]).
pub fn spawn_role(test: &str, role: &str, env: &[(&str, String)]) -> Remote {
    let test = libtest_name(test);
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role)
        .env_remove("RUST_TEST_THREADS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start a helper child");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(256 * 1024, stdout);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.pop() != Some(b'\n') {
                return; // cut short by a kill: not a line
            }
            let ours = line.first() == Some(&b'{') || line.starts_with(b"@ ");
            if ours && tx.send(line).is_err() {
                return;
            }
        }
    });
    Remote {
        child,
        stdin,
        lines: std::sync::Mutex::new(rx),
        reader: Some(reader),
        status: None,
    }
}

impl Remote {
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    pub fn signal(&self, signal: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: plain kill(2) of our own, not yet reaped, child.
            unsafe { libc::kill(self.pid(), signal) };
        }
    }

    /// The next line the child printed, or None after `timeout` or at its end.
    pub fn next_line(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(timeout)
            .ok()
    }

    /// The next line, or a panic saying what was expected.
    pub fn expect_line(&self, what: &str) -> Vec<u8> {
        self.next_line(PATIENCE)
            .unwrap_or_else(|| panic!("the child (pid {}) never sent {what}", self.pid()))
    }

    /// Sends one command line to a publisher child and returns its answer (without `@ `).
    pub fn command(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot send {command:?} to the child: {e}"));
        let line = self.expect_line(&format!("an answer to {command:?}"));
        let text = String::from_utf8(line).unwrap();
        text.strip_prefix("@ ")
            .unwrap_or_else(|| panic!("not an answer to {command:?}: {text}"))
            .to_owned()
    }

    /// A publisher child's counters.
    pub fn stats(&mut self) -> HashMap<String, u64> {
        let answer = self.command("stats");
        parse_fields(answer.strip_prefix("stats ").expect("a stats answer"))
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(status) = self.child.try_wait().expect("waitpid") {
                    self.status = Some(status);
                    break;
                }
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.join_reader();
        self.status
    }

    /// SIGKILL, reap, and wait until its output is all read.
    pub fn kill(&mut self) -> ExitStatus {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("waitpid"));
        }
        self.join_reader();
        self.status.unwrap()
    }

    fn join_reader(&mut self) {
        self.stdin = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // SIGCONT first: a stopped child still dies of SIGKILL, but be sure.
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// Parses `name=value name=value ...`.
pub fn parse_fields(text: &str) -> HashMap<String, u64> {
    text.split_whitespace()
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The fanout == delivered + dropped_slow + dropped_closed check on a child's counters.
pub fn assert_remote_invariant(stats: &HashMap<String, u64>) {
    let field = |name: &str| {
        stats
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
    };
    assert_eq!(
        field("fanout"),
        field("delivered") + field("dropped_slow") + field("dropped_closed"),
        "fanout != delivered + dropped_slow + dropped_closed in the child: {stats:?}"
    );
}

/// User and system CPU time a process has used so far (all its threads).
pub fn cpu_time(pid: libc::pid_t) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may contain spaces: split after it.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); field 3 is fields[0].
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: plain sysconf call.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

// ------------------------------------------------------------------ the roles

/// Connects to $NOTIF_FAULT_PATH, writes $NOTIF_FAULT_REQUEST (a request line)
/// if set, and copies what it reads to stdout until end of stream (exit 0),
/// reading $NOTIF_FAULT_READ_CHUNK bytes at a time with
/// $NOTIF_FAULT_READ_DELAY_US microseconds between reads.
fn relay_main() -> i32 {
    let path = std::env::var("NOTIF_FAULT_PATH").expect("NOTIF_FAULT_PATH");
    let chunk: usize = env_number("NOTIF_FAULT_READ_CHUNK").unwrap_or(64 * 1024) as usize;
    let delay = Duration::from_micros(env_number("NOTIF_FAULT_READ_DELAY_US").unwrap_or(0));
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("relay: cannot connect to {path}: {e}");
            return 2;
        }
    };
    if let Ok(request) = std::env::var("NOTIF_FAULT_REQUEST") {
        if stream.write_all(format!("{request}\n").as_bytes()).is_err() {
            return 3;
        }
    }
    let mut buffer = vec![0u8; chunk];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("relay: read: {e}");
                return 4;
            }
        };
        if out
            .write_all(&buffer[..n])
            .and_then(|()| out.flush())
            .is_err()
        {
            return 5;
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
}

/// Subscribes to $NOTIF_FAULT_PATH with the library's subscriber, resuming
/// after $NOTIF_FAULT_AFTER if set, keeping only $NOTIF_FAULT_EVENT_TYPES
/// (comma-separated globs) if set; prints each of $NOTIF_FAULT_COUNT
/// notifications, then `@ cursor CURSOR`, `@ dropped N` for each drop
/// reported, and exits 0.
fn cursor_reader_main() -> i32 {
    let path = std::env::var("NOTIF_FAULT_PATH").expect("NOTIF_FAULT_PATH");
    let count = env_number("NOTIF_FAULT_COUNT").expect("NOTIF_FAULT_COUNT");
    let mut options = notif::SubscribeOptions {
        after: std::env::var("NOTIF_FAULT_AFTER").ok(),
        ..Default::default()
    };
    if let Ok(globs) = std::env::var("NOTIF_FAULT_EVENT_TYPES") {
        options.filter.event_types = globs.split(',').map(String::from).collect();
    }
    let mut subscriber = match notif::Subscriber::connect(&path, options) {
        Ok(subscriber) => subscriber,
        Err(e) => {
            eprintln!("cursor-reader: {e}");
            return 2;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut read = 0;
    while read < count {
        match subscriber.recv(Some(Duration::from_secs(30))) {
            Ok(notif::Event::Notification(line)) => {
                read += 1;
                let _ = out.write_all(line);
                let _ = out.write_all(b"\n");
            }
            Ok(notif::Event::Dropped(n)) => {
                let _ = writeln!(out, "@ dropped {n}");
            }
            Ok(notif::Event::DroppedUnknown) => {
                let _ = writeln!(out, "@ dropped unknown");
            }
            Ok(notif::Event::Reconnected) => {
                let _ = writeln!(out, "@ reconnected");
            }
            Ok(notif::Event::Timeout) => {
                eprintln!("cursor-reader: nothing for 30 s after {read}");
                return 3;
            }
            Err(e) => {
                eprintln!("cursor-reader: {e}");
                return 4;
            }
        }
    }
    let _ = writeln!(out, "@ cursor {}", subscriber.cursor().unwrap_or_default());
    let _ = out.flush();
    0
}

/// The number in environment variable `name`, if set and a number.
pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A role's answer to the test: `@ LINE` on stdout, flushed.
pub fn say(line: &str) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = out.write_all(format!("@ {line}\n").as_bytes());
    let _ = out.flush();
}

fn stats_text(stats: &Stats) -> String {
    stats
        .fields()
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens a publisher on $NOTIF_FAULT_PATH (subscriber buffer
/// $NOTIF_FAULT_BUFFER if set) and answers commands on stdin, one a line:
/// `emit JSON`, `stats`, `fds`, `close`. With $NOTIF_FAULT_FREE_FDS=k it
/// lowers RLIMIT_NOFILE after open so that only k more descriptors fit.
/// Prints `@ open-ok` or `@ open-error ERRNO` (and exits 10) first.
fn publisher_main() -> i32 {
    let path = std::env::var("NOTIF_FAULT_PATH").expect("NOTIF_FAULT_PATH");
    let mut options = Options::default();
    if let Some(bytes) = env_number("NOTIF_FAULT_BUFFER") {
        options.subscriber_buffer = bytes as usize;
        options.max_message = options.max_message.min(options.subscriber_buffer / 2);
    }
    options.linger = Duration::from_millis(500);
    if let Some(bytes) = env_number("NOTIF_FAULT_MEMORY_LIMIT") {
        options.memory_limit = bytes as usize;
    }
    if let Some(bytes) = env_number("NOTIF_FAULT_REPLAY") {
        options.replay = bytes as usize;
    }
    if let Some(count) = env_number("NOTIF_FAULT_MAX_SUBSCRIBERS") {
        options.max_subscribers = count as usize;
    }
    if let Some(bytes) = env_number("NOTIF_FAULT_RLIMIT_AS") {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: limit is a live rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
            say(&format!(
                "setrlimit-error {}",
                std::io::Error::last_os_error()
            ));
            return 11;
        }
    }
    raise_descriptor_limit();
    let publisher = match Publisher::open_with(&path, &options) {
        Ok(publisher) => publisher,
        Err(e) => {
            say(&format!("open-error {}", e.errno()));
            return 10;
        }
    };
    let fds_after_open = fd_count();
    if let Some(free) = env_number("NOTIF_FAULT_FREE_FDS") {
        // New descriptors take the lowest free numbers, below the limit:
        // the limit is one past the `free`-th free number (existing ones above
        // it stay valid).
        let used: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .collect();
        let last_free = (0u64..)
            .filter(|n| !used.contains(n))
            .nth(free as usize - 1)
            .unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: limit is a live rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        limit.rlim_cur = last_free + 1;
        // SAFETY: limit is a live rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            say(&format!(
                "setrlimit-error {}",
                std::io::Error::last_os_error()
            ));
            return 11;
        }
    }
    say(&format!("open-ok fds={fds_after_open}"));
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (command, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match command {
            "emit" => match publisher.emit(argument.as_bytes()) {
                Ok(n) => say(&format!("emitted {n}")),
                Err(e) => say(&format!("emit-error {}", e.errno())),
            },
            "stats" => say(&format!("stats {}", stats_text(&publisher.stats()))),
            // stream RATE SECONDS PAD: numbered notifications of stream 0,
            // RATE a second for SECONDS, each padded with PAD bytes.
            "stream" => {
                let numbers: Vec<u64> = argument
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                let [rate, seconds, pad] = numbers[..] else {
                    say("stream-error usage: stream RATE SECONDS PAD");
                    continue;
                };
                let (sent, failed) = stream_paced(&publisher, rate, seconds, pad as usize);
                say(&format!("streamed {sent} failed={failed}"));
            }
            "memory" => say(&format!(
                "memory rss={} hwm={}",
                status_bytes("VmRSS:"),
                status_bytes("VmHWM:")
            )),
            "fds" => match std::fs::read_dir("/proc/self/fd") {
                Ok(dir) => say(&format!("fds {}", dir.count())),
                Err(e) => say(&format!("fds-error {e}")),
            },
            "close" => {
                let stats = publisher.close();
                say(&format!("closed {}", stats_text(&stats)));
                return 0;
            }
            other => say(&format!("unknown-command {other}")),
        }
    }
    0
}

/// Emits numbered notifications at `rate` a second for `seconds`; returns
/// how many were emitted and how many emit refused.
fn stream_paced(publisher: &Publisher, rate: u64, seconds: u64, pad: usize) -> (u64, u64) {
    let started = Instant::now();
    let total = rate * seconds;
    let (mut sent, mut failed) = (0, 0);
    for seq in 0..total {
        let due = started + Duration::from_secs_f64(seq as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match publisher.emit(&crate::common::numbered(0, seq, pad)) {
            Ok(_) => sent += 1,
            Err(_) => failed += 1,
        }
    }
    (sent, failed)
}

/// A VmRSS-style line of /proc/self/status, in bytes.
pub fn status_bytes(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Lifts the soft RLIMIT_NOFILE to the hard one: scenarios with a thousand
/// connections need more than the usual 1,024.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a live rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// CPU time (user + system) of the thread named `name` in process `pid`.
pub fn thread_cpu_time(pid: libc::pid_t, name: &str) -> Option<Duration> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        // SAFETY: plain sysconf call.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        return Some(Duration::from_millis(ticks * 1000 / per_second));
    }
    None
}

/// Whether a path exists as a socket file.
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// After close: a subscriber that had read everything else sees only the
/// fresh-subscriber markers [`check_invariants`] emitted, then end of stream.
pub fn expect_eof_after_markers(subscriber: &mut RawReader) {
    for line in subscriber.read_to_eof() {
        assert!(
            line.starts_with(b"{\"fresh\":"),
            "unexpected line before EOF: {}",
            String::from_utf8_lossy(&line)
        );
    }
}
