//! Another local user against the operator's tools (issue 18, finding 6):
//! the attacker is this test binary re-executed as uid/gid 65534, putting its
//! own sockets in a shared directory (root's, mode 1777) next to root's
//! publisher; the `notif` tool runs as root, as the operator would. Needs
//! root (CI runs as root); elsewhere each test says so and passes.
//!
//! - a socket that listens with a full backlog and never accepts must not
//!   hang `notif stats PATH`, `notif stats --format prometheus GLOB` or
//!   `notif tail GLOB` (which keeps printing root's publisher);
//! - over a glob, tail follows only the sockets of the directory's owner or
//!   of the user running it: an attacker's socket that sorts first neither
//!   hides root's publisher nor gets its lines printed, whenever it appears,
//!   and 2,000 of them cost tail no thread;
//! - `notif tail --pretty` on one valid 4 MB line 120 levels deep (the
//!   attacker's publisher) holds bounded memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::other_users::{rerun_as, running_as_root, ReachableExe, NOBODY};
use crate::temp_dir::TempDir;
use notif::Publisher;

/// Generous: a 2-core machine running other tests can be slow.
const PATIENCE: Duration = Duration::from_secs(60);
const ATTACKER_ENV: &str = "NOTIF_CLI_ATTACKER";
/// The attacker's entry point, as libtest names it (its path without the crate).
fn attacker_test() -> &'static str {
    let path = concat!(module_path!(), "::attacker_entry_point");
    path.split_once("::").map_or(path, |(_, name)| name)
}

/// A directory of root's that everybody may create files in (1777, like /tmp).
fn shared_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o1777)).unwrap();
    dir
}

// ------------------------------------------------------------------ attacker

/// A listening socket at `path` whose backlog is full and that never
/// accepts: listen(0), then connections of its own until one would block.
fn stuck_socket(path: &str) -> Vec<OwnedFd> {
    let listener = UnixListener::bind(path).expect("bind the stuck socket");
    // SAFETY: a valid listening descriptor.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let mut held = vec![OwnedFd::from(listener)];
    let c_path = std::ffi::CString::new(path).unwrap();
    loop {
        // SAFETY: plain system calls on a fresh descriptor and a valid address.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_un is plain data.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(c_path.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: as above.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN),
                "filling the backlog"
            );
            return held;
        }
        held.push(fd);
        assert!(held.len() < 10_000, "the backlog never filled");
    }
}

/// A fake publisher at `path` sending `line` to every reader, every 50 ms
/// (or once, for a large line).
fn fake_publisher(path: &str, line: Vec<u8>) -> UnixListener {
    let listener = UnixListener::bind(path).expect("bind the fake publisher");
    let accepting = listener.try_clone().unwrap();
    let line = Arc::new(line);
    thread::spawn(move || {
        for stream in accepting.incoming() {
            let Ok(mut stream) = stream else { return };
            let line = Arc::clone(&line);
            thread::spawn(move || loop {
                if stream.write_all(&line).is_err() || line.len() > 1 << 20 {
                    let _ = stream.read(&mut [0u8; 1]); // keep it open
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            });
        }
    });
    listener
}

/// One valid JSON object `depth` levels deep, about `size` bytes, newline included.
fn deep_line(depth: usize, size: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(size + 1);
    line.extend_from_slice(br#"{"event_type":"deep","payload":"#);
    for _ in 1..depth {
        line.extend_from_slice(br#"{"k":"#);
    }
    let leaf_count = size.saturating_sub(line.len() + 2 * depth) / 4;
    line.push(b'[');
    for i in 0..leaf_count {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(b"[1]");
    }
    line.push(b']');
    line.extend(std::iter::repeat_n(b'}', depth));
    line.push(b'\n');
    line
}

/// What the attacker does, by `NOTIF_CLI_ATTACKER`: "stuck PATH", "fake
/// PATH...", "deep PATH", "many DIR N". It prints "ready", then holds
/// everything until its stdin closes (or, for "later", creates more first).
fn attacker_main(spec: &str) {
    let words: Vec<&str> = spec.split(' ').collect();
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let fake = || br#"{"event_type":"fake","payload":{"from":"attacker"}}"#.to_vec();
    let mut held_fds = Vec::new();
    let mut held_listeners = Vec::new();
    match words[0] {
        "stuck" => held_fds.extend(stuck_socket(words[1])),
        "fake" => {
            for path in &words[1..] {
                let mut line = fake();
                line.push(b'\n');
                held_listeners.push(fake_publisher(path, line));
            }
        }
        "deep" => held_listeners.push(fake_publisher(words[1], deep_line(120, 4 << 20))),
        "many" => {
            let n: usize = words[2].parse().unwrap();
            for i in 0..n {
                let path = format!("{}/notifications-0{i:05}.sock", words[1]);
                held_listeners.push(UnixListener::bind(&path).expect("bind one of many"));
            }
        }
        other => panic!("unknown attacker mode {other}"),
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    // Commands on stdin: "fake PATH" adds a fake publisher; EOF ends.
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if let Some(path) = line.strip_prefix("fake ") {
            let mut fake_line = fake();
            fake_line.push(b'\n');
            held_listeners.push(fake_publisher(path, fake_line));
            println!("ready");
            std::io::stdout().flush().unwrap();
        }
    }
}

#[test]
fn attacker_entry_point() {
    // Only in the re-executed attacker: the real tests set the variable.
    if let Ok(spec) = std::env::var(ATTACKER_ENV) {
        attacker_main(&spec);
    }
}

struct Attacker {
    child: Child,
    stdin: Option<ChildStdin>,
    ready: mpsc::Receiver<String>,
    _exe: ReachableExe,
}

impl Attacker {
    fn start(spec: &str) -> Attacker {
        // uid 65534 may not reach the test binary where it was built (under
        // /root): run a copy from a directory it can read.
        let exe = ReachableExe::new("exe");
        let spawn = |program: &Path| {
            rerun_as(program, attacker_test(), NOBODY)
                .env(ATTACKER_ENV, spec)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        };
        let mut child = spawn(&exe.copy)
            .or_else(|_| spawn(&exe.original))
            .expect("start the attacker");
        let (tx, ready) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let attacker = Attacker {
            child,
            stdin,
            ready,
            _exe: exe,
        };
        attacker.wait_ready();
        attacker
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ready.recv_timeout(left) {
                Ok(line) if line == "ready" => return,
                Ok(_) => continue,
                Err(_) => panic!("the attacker did not get ready"),
            }
        }
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{line}").unwrap();
        self.wait_ready();
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ root's side

/// Root's publisher at `path`, emitting {"event_type":"root","n":N} every 100 ms.
struct RootPublisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RootPublisher {
    fn start(path: &str) -> RootPublisher {
        let publisher = Publisher::open(path).expect("root's publisher");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut n = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let _ = publisher.emit(format!(r#"{{"event_type":"root","n":{n}}}"#).as_bytes());
                n += 1;
                thread::sleep(Duration::from_millis(100));
            }
        });
        RootPublisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RootPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn notif() -> Command {
    Command::new(env!("CARGO_BIN_EXE_notif"))
}

/// `notif ARGS` run to its end, killed (and the test failed) after PATIENCE.
/// Returns (exit code, stdout, stderr, how long it took).
fn run(args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let mut child = notif()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let elapsed = started.elapsed();
            return (
                status.code().unwrap_or(-1),
                out.join().unwrap(),
                err.join().unwrap(),
                elapsed,
            );
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "notif {} still running after {PATIENCE:?} (hung); stderr: {}",
                args.join(" "),
                err.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `notif tail`, its stdout lines and stderr collected as they come.
struct Tail {
    child: Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Tail {
    fn start(args: &[&str]) -> Tail {
        let mut child = notif()
            .arg("tail")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Tail {
            child,
            lines,
            stderr,
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `condition` holds (panics after PATIENCE, with stderr).
    fn wait_for(&self, what: &str, condition: impl Fn(&Tail) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "tail: {what} did not happen within {PATIENCE:?}; {} lines; stderr:\n{}",
                self.lines.lock().unwrap().len(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ the tests

#[test]
fn stats_of_a_socket_that_never_accepts_gives_up_and_says_so() {
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let dir = shared_dir("stuck");
    let stuck = dir.str("stuck.sock");
    let _attacker = Attacker::start(&format!("stuck {stuck}"));
    let (code, out, err, took) = run(&["stats", &stuck]);
    eprintln!("notif stats on a socket that never accepts: exit {code} after {took:?}");
    assert_eq!(code, 4, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("does not accept connections"), "{err}");
    let (code, _, err, took) = run(&["stats", "--format", "prometheus", &stuck]);
    eprintln!("notif stats --format prometheus on it: exit {code} after {took:?}");
    assert_eq!(code, 4, "{err}");
}

#[test]
fn stats_over_a_glob_is_not_held_by_a_socket_that_never_accepts() {
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let dir = shared_dir("stuckglob");
    let _attacker = Attacker::start(&format!("stuck {}", dir.str("notifications-0.sock")));
    let _root = RootPublisher::start(&dir.str("notifications-5.sock"));
    let glob = dir.str("notifications-*.sock");
    // By default the attacker's socket is not even connected to.
    let (code, out, err, took) = run(&["stats", "--format", "prometheus", &glob]);
    eprintln!(
        "notif stats --format prometheus GLOB past a stuck socket: exit {code} after {took:?}"
    );
    assert!(out.contains("notif_up"), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("notifications-0.sock: skipped: owned by uid 65534"),
        "{err}"
    );
    // Asked to take any owner's, it gives up on it and reports root's.
    let (code, out, err, took) = run(&["stats", "--any-owner", "--format", "prometheus", &glob]);
    eprintln!("... with --any-owner: exit {code} after {took:?}");
    assert_eq!(code, 4, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("does not accept connections"), "{err}");
    assert!(out.contains("notif_up"), "{out}");
}

#[test]
fn tail_over_a_glob_keeps_printing_past_a_socket_that_never_accepts() {
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let dir = shared_dir("stucktail");
    let _attacker = Attacker::start(&format!("stuck {}", dir.str("notifications-0.sock")));
    let _root = RootPublisher::start(&dir.str("notifications-5.sock"));
    let glob = dir.str("notifications-*.sock");
    for extra in [&[][..], &["--any-owner"][..]] {
        let mut args = extra.to_vec();
        args.push(&glob);
        let tail = Tail::start(&args);
        let started = Instant::now();
        tail.wait_for("30 of root's lines", |t| t.count(r#""root""#) >= 30);
        eprintln!(
            "notif tail {}: 30 of root's lines (10/s) in {:?}",
            args.join(" "),
            started.elapsed()
        );
        if extra.is_empty() {
            assert!(tail.stderr().contains("skipped: owned by uid 65534"));
        } else {
            tail.wait_for("the stuck socket reported", |t| {
                t.stderr().contains("accepts no connection")
            });
        }
    }
}

#[test]
fn tail_over_a_glob_follows_root_whatever_sorts_first_and_warns_of_the_rest() {
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let dir = shared_dir("first");
    let mut attacker = Attacker::start(&format!("fake {}", dir.str("notifications-0.sock")));
    let _root = RootPublisher::start(&dir.str("notifications-5.sock"));
    let tail = Tail::start(&[&dir.str("notifications-*.sock")]);
    tail.wait_for("20 of root's lines", |t| t.count(r#""root""#) >= 20);
    assert!(tail
        .stderr()
        .contains("notifications-0.sock: skipped: owned by uid 65534"));
    // One appearing later is warned about too, and not followed either.
    attacker.command(&format!("fake {}", dir.str("notifications-00.sock")));
    tail.wait_for("the new socket warned about", |t| {
        t.stderr()
            .contains("notifications-00.sock: skipped: owned by uid 65534")
    });
    let before = tail.count(r#""root""#);
    tail.wait_for("20 more of root's lines", |t| {
        t.count(r#""root""#) >= before + 20
    });
    assert_eq!(
        tail.count("attacker"),
        0,
        "the attacker's lines were printed"
    );
    // With --owner naming root, likewise; naming the attacker, only theirs.
    let only_root = Tail::start(&["--owner", "root", &dir.str("notifications-*.sock")]);
    only_root.wait_for("root's lines", |t| t.count(r#""root""#) >= 5);
    assert_eq!(only_root.count("attacker"), 0);
}

#[test]
fn tail_over_a_glob_with_2000_attacker_sockets_stays_small_and_follows_root() {
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let dir = shared_dir("many");
    let _attacker = Attacker::start(&format!("many {} 2000", dir.path().display()));
    let _root = RootPublisher::start(&dir.str("notifications-5.sock"));
    let tail = Tail::start(&[&dir.str("notifications-*.sock")]);
    tail.wait_for("20 of root's lines", |t| t.count(r#""root""#) >= 20);
    let threads = tail.threads();
    eprintln!("notif tail GLOB beside 2,000 attacker sockets: {threads} threads");
    assert!(threads <= 8, "{threads} threads");
    let warned = tail.stderr().matches("skipped: owned by uid 65534").count();
    assert_eq!(warned, 2000, "each attacker socket warned about once");
}

/// Peak resident memory of a child, from wait4 (KiB).
fn wait_peak_kib(child: &mut Child) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 on our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64)
}

#[test]
fn tail_pretty_on_a_deep_4mb_line_holds_bounded_memory() {
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let dir = shared_dir("deep");
    let path = dir.str("deep.sock");
    let _attacker = Attacker::start(&format!("deep {path}"));
    let mut child = notif()
        .args(["tail", "--pretty", "--count", "1", &path])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // Read it all (counted, not kept), with a deadline enforced by a killer.
    let pid = child.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let watching = Arc::clone(&done);
    thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE * 3;
        while !watching.load(Ordering::Relaxed) {
            if Instant::now() > deadline {
                // SAFETY: our own child, not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    let (code, peak_kib) = wait_peak_kib(&mut child);
    done.store(true, Ordering::Relaxed);
    let err = err.join().unwrap();
    eprintln!(
        "notif tail --pretty on a 4 MB line 120 deep: {} MB out, peak RSS {} MiB",
        total / 1_000_000,
        peak_kib / 1024
    );
    assert_eq!(code, 0, "{err}");
    assert!(total > 400_000_000, "only {total} bytes printed: {err}");
    assert!(peak_kib < 100 << 10, "peak RSS {} MiB", peak_kib / 1024);
}

#[test]
fn tail_over_a_glob_follows_at_most_256_sockets() {
    // Root's own sockets this time (any user's own, without root): trusted,
    // live, and more than tail follows at once.
    let dir = shared_dir("cap");
    let listeners: Vec<UnixListener> = (0..300)
        .map(|i| UnixListener::bind(dir.str(&format!("n-{i:03}.sock"))).unwrap())
        .collect();
    let tail = Tail::start(&[&dir.str("n-*.sock")]);
    tail.wait_for("44 sockets reported as not followed", |t| {
        t.stderr().matches("sockets are followed already").count() >= 44
    });
    let threads = tail.threads();
    eprintln!("notif tail GLOB over 300 live sockets: {threads} threads");
    assert!(threads <= 256 + 8, "{threads} threads");
    assert_eq!(
        tail.stderr()
            .matches("not followed: 256 sockets are followed already")
            .count(),
        44,
        "each socket over the limit reported once"
    );
    drop(listeners);
}
