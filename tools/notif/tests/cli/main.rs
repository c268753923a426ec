//! The `notif` tool end to end, one module a command or area: emit and tail
//! against each other, stats, globs, exit codes and help, publishers that are
//! not what they seem, memory bounds, cursors and replay, what tail reports,
//! and another local user's hostile sockets. Every wait is bounded; children
//! are killed when a test fails (Proc's Drop). The helpers below are shared
//! by the modules (`use super::*`); TempDir and other_users are the
//! Rust tests' own (tests/common/).
//!
//! No test changes process-wide state (the hostile sockets' attacker raises
//! its descriptor limit in a child process of its own); all run in parallel.

#[path = "../../../../tests/common/other_users.rs"]
mod other_users;
#[path = "../../../../tests/common/temp_dir.rs"]
mod temp_dir;

mod cursors_and_replay;
mod emit_and_tail;
mod exit_codes_and_help;
mod globs;
mod hostile_publishers;
mod hostile_sockets;
mod memory_bounds;
mod stats;
mod tail_reports;

use temp_dir::TempDir;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notif::{Options, Publisher};

/// Generous: a 2-core machine running other tests can be slow.
const PATIENCE: Duration = Duration::from_secs(30);

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
/// `notif emit PATH --wait-subscribers 1 --timeout 30` fed `input` on its
/// stdin (it emits once one subscriber, the test's tail, is there); how it ended.
fn emit_to_one_tail(path: &str, input: &str) -> Finished {
    let mut emit = spawn(
        &["emit", path, "--wait-subscribers", "1", "--timeout", "30"],
        true,
    );
    emit.write_stdin(input);
    emit.close_stdin();
    emit.finish(PATIENCE)
}

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
