//! What `notif tail` says on stderr as a publisher goes away and comes back,
//! and NO_COLOR (issue 21): colours only on a terminal, and never with
//! NO_COLOR set.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::temp_dir::TempDir;
use notif::Publisher;

const PATIENCE: Duration = Duration::from_secs(30);

fn temp_path(tag: &str) -> (TempDir, String) {
    let dir = TempDir::new(tag);
    let path = dir.str("n.sock");
    (dir, path)
}

fn wait_for(what: &str, stderr: &Mutex<String>, needle: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !stderr.lock().unwrap().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{what}: no {needle:?} on stderr within {PATIENCE:?}:\n{}",
            stderr.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tail_says_when_the_publisher_goes_away_and_when_it_comes_back() {
    let (dir, path) = temp_path("away");
    let publisher = Publisher::open(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_notif"))
        .args(["tail", &path])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&stderr);
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut got = false;
    while !got && Instant::now() < deadline {
        let _ = publisher.emit(br#"{"event_type":"one"}"#);
        got = lines.recv_timeout(Duration::from_millis(100)).is_ok();
    }
    assert!(got, "nothing printed from the first publisher");
    drop(publisher);
    wait_for(
        "after the publisher closed",
        &stderr,
        "the publisher went away (connection lost); waiting for it to come back",
    );
    let publisher = Publisher::open(&path).unwrap();
    wait_for(
        "after the publisher came back",
        &stderr,
        "reconnected; resuming after the last notification received",
    );
    let text = stderr.lock().unwrap().clone();
    assert!(
        text.find("went away").unwrap() < text.find("reconnected;").unwrap(),
        "{text}"
    );
    drop(publisher);
    let _ = child.kill();
    let _ = child.wait();
    drop(dir);
}

/// `notif tail --pretty --count 1` with stdout on a pseudo-terminal: what
/// it printed there.
fn pretty_on_a_terminal(no_color: Option<&str>) -> String {
    let (dir, path) = temp_path(if no_color.is_some() {
        "nocolor"
    } else {
        "color"
    });
    let publisher = Publisher::open(&path).unwrap();
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills two descriptors; no name, termios or size given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: fresh descriptors we own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut command = Command::new(env!("CARGO_BIN_EXE_notif"));
    command
        .args(["tail", "--pretty", "--count", "1", &path])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::null());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let mut child = command.spawn().unwrap();
    drop(command); // our copy of the terminal's slave side
    let mut reader = std::fs::File::from(master);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once tail exits and the slave side is closed.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(all);
    });
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "tail did not print its one notification"
        );
        let _ = publisher.emit(br#"{"event_type":"x","n":1}"#);
        thread::sleep(Duration::from_millis(50));
    }
    let out = rx.recv_timeout(PATIENCE).unwrap();
    drop(dir);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn pretty_colours_a_terminal_unless_no_color_is_set() {
    let coloured = pretty_on_a_terminal(None);
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = pretty_on_a_terminal(Some("1"));
    assert!(plain.contains("\"event_type\""), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "colour despite NO_COLOR: {plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    let empty = pretty_on_a_terminal(Some(""));
    assert!(empty.contains("\x1b["), "{empty:?}");
}
