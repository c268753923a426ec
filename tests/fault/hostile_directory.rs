//! Fault: the socket's directory is writable by another user (0777, no sticky
//! bit) who watches it with inotify and, for every new name notif creates in
//! it except the final socket name, atomically exchanges that name with one of
//! its own: a symlink to a root-owned 0600 file, a link to its own listening
//! socket, a symlink to a root-owned 0700 directory, or a directory of its own
//! (or moves it away and puts nothing there).
//! Meanwhile this process opens and closes publishers there, with mode 0660
//! and a group and with mode 0666. No open may change any file's mode or owner,
//! and after every successful open a subscriber of the path must receive the
//! publisher's own notification, never the attacker's.
//!
//! The attacker is this test binary re-executed as uid/gid 65534. The test
//! needs root (CI runs as root); elsewhere it says so and passes.
//! `make test` runs a few hundred opens, `NOTIF_SOAK=1` (make soak) 2,000 + 2,000.

use crate::common;
use crate::common::faults;
use crate::common::other_users::{rerun_as, running_as_root, ReachableExe, NOBODY};

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use faults::scaled;
use notif::{Options, Publisher};

const ATTACKER_ENV: &str = "NOTIF_HOSTILE_ATTACKER";
const FINAL_NAME: &str = "notif.sock";
const TEST_NAME: &str = concat!(
    module_path!(),
    "::an_attacker_swapping_every_new_name_changes_no_file_and_serves_no_socket"
);

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

// ------------------------------------------------------------------ attacker

/// What the attacker puts in place of a name notif created.
/// ("moved-away" puts nothing in its place: the name just disappears.)
const REPLACEMENTS: [&str; 5] = [
    "symlink-to-file",
    "own-socket",
    "symlink-to-dir",
    "own-dir",
    "moved-away",
];

/// Runs as uid 65534: swaps every new name in `dir` until stdin closes, then
/// prints its counts.
fn attacker_main() -> i32 {
    let dir = PathBuf::from(std::env::var_os(ATTACKER_ENV).unwrap());
    let victim_file = PathBuf::from(std::env::var_os("NOTIF_VICTIM_FILE").unwrap());
    let victim_dir = PathBuf::from(std::env::var_os("NOTIF_VICTIM_DIR").unwrap());
    // SAFETY: umask cannot fail; what we create gets predictable modes.
    unsafe { libc::umask(0o022) };
    let socket_path = dir.join("atk-sock");
    let listener = UnixListener::bind(&socket_path).expect("bind the attacker's socket");
    listener.set_nonblocking(true).unwrap();
    // SAFETY: plain inotify calls on a path we own a CString for.
    let inotify = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(inotify >= 0, "inotify_init1");
    // SAFETY: as above.
    let wd = unsafe { libc::inotify_add_watch(inotify, c(&dir).as_ptr(), libc::IN_CREATE) };
    assert!(wd >= 0, "inotify_add_watch");
    println!("@ ready");
    std::io::stdout().flush().unwrap();

    let (mut swapped, mut missed, mut served) = (0u64, 0u64, 0u64);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: inotify,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a live array of three pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, 1000) } < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            // SAFETY: reads into our buffer of the stated size.
            let n = unsafe { libc::read(inotify, buffer.as_mut_ptr().cast(), buffer.len()) };
            let mut at = 0usize;
            while n > 0 && at + 16 <= n as usize {
                let field =
                    |i: usize| u32::from_ne_bytes(buffer[at + i..at + i + 4].try_into().unwrap());
                let (mask, len) = (field(4), field(12) as usize);
                let raw = &buffer[at + 16..at + 16 + len];
                let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(len)];
                at += 16 + len;
                if mask & libc::IN_CREATE == 0
                    || name.starts_with(b"atk-")
                    || name == FINAL_NAME.as_bytes()
                {
                    continue;
                }
                let kind = (swapped + missed) as usize % REPLACEMENTS.len();
                let mine = dir.join(format!("atk-{}-{}", REPLACEMENTS[kind], swapped + missed));
                let made = match kind {
                    0 => std::os::unix::fs::symlink(&victim_file, &mine),
                    1 => std::fs::hard_link(&socket_path, &mine),
                    2 => std::os::unix::fs::symlink(&victim_dir, &mine),
                    3 => std::fs::create_dir(&mine),
                    _ => Ok(()),
                };
                made.expect("make a replacement");
                let target = dir.join(std::ffi::OsStr::from_bytes(name));
                if kind == 4 {
                    match std::fs::rename(&target, &mine) {
                        Ok(()) => swapped += 1,
                        Err(_) => missed += 1,
                    }
                    continue;
                }
                // An atomic exchange: whatever notif made there (socket,
                // directory) moves to our name, ours takes its place.
                // SAFETY: two NUL-terminated paths.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        c(&mine).as_ptr(),
                        libc::AT_FDCWD,
                        c(&target).as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if rc == 0 {
                    swapped += 1;
                } else {
                    missed += 1; // already gone
                }
            }
        }
        if fds[1].revents != 0 {
            while let Ok((mut stream, _)) = listener.accept() {
                served += 1;
                let _ = stream.write_all(b"{\"attacker\":true}\n");
            }
        }
        if fds[2].revents != 0 {
            let mut byte = [0u8; 1];
            if matches!(std::io::stdin().read(&mut byte), Ok(0) | Err(_)) {
                break;
            }
        }
    }
    println!("@ swapped {swapped} missed {missed} served {served}");
    0
}

// ------------------------------------------------------------------ checks

/// The parts of a file's status that must never change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    mode: u32,
    uid: u32,
    gid: u32,
    ino: u64,
    nlink: u64,
}

fn status(path: &Path) -> Status {
    let meta = std::fs::symlink_metadata(path).unwrap();
    Status {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        ino: meta.ino(),
        nlink: meta.nlink(),
    }
}

/// Puts a victim back as it was, so that the next change is seen too.
fn restore(path: &Path, was: &Status) {
    let c_path = c(path);
    // SAFETY: NUL-terminated path.
    unsafe {
        libc::chown(c_path.as_ptr(), was.uid, was.gid);
        libc::chmod(c_path.as_ptr(), was.mode & 0o7777);
    }
}

/// Connects to the path and emits until a line arrives: true if it is the
/// publisher's own notification.
fn serves_its_own_notification(publisher: &Publisher, path: &Path, n: usize) -> Result<(), String> {
    let stream = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    let mut subscriber = RawReader::from_stream(stream);
    // Short: until the server accepts us, emit reaches nobody and is repeated.
    subscriber.set_read_timeout(Duration::from_millis(5));
    let expected = format!("{{\"open\":{n}}}");
    let mut got: Option<Option<Vec<u8>>> = None;
    wait_for(
        || {
            let _ = publisher.emit(expected.as_bytes());
            match subscriber.try_line() {
                Ok(line) => {
                    got = Some(line);
                    true
                }
                Err(_) => false,
            }
        },
        Duration::from_secs(15),
    );
    match got {
        Some(Some(line)) if line == expected.as_bytes() => Ok(()),
        Some(Some(line)) => Err(format!("read {:?}", String::from_utf8_lossy(&line))),
        Some(None) => Err("end of stream".into()),
        None => Err("no line within 15 s".into()),
    }
}

#[test]
fn an_attacker_swapping_every_new_name_changes_no_file_and_serves_no_socket() {
    isolated!();
    if std::env::var_os(ATTACKER_ENV).is_some() {
        std::process::exit(attacker_main());
    }
    if !running_as_root("run an attacker as another user") {
        return;
    }
    let opens_per_mode: usize = scaled(500, 2000);
    let shared = TempDir::new("hostile");
    std::fs::set_permissions(shared.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let victims = TempDir::new("victims");
    std::fs::set_permissions(victims.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let victim_file = victims.join("secret");
    std::fs::write(&victim_file, b"root's").unwrap();
    std::fs::set_permissions(&victim_file, PermissionsExt::from_mode(0o600)).unwrap();
    let victim_dir = victims.join("private");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::set_permissions(&victim_dir, PermissionsExt::from_mode(0o700)).unwrap();
    let victim_file_was = status(&victim_file);
    let victim_dir_was = status(&victim_dir);

    // uid 65534 may not be able to reach the test binary where it was built
    // (a checkout under /root): run a copy from a directory it can read.
    let exe = ReachableExe::new("attacker_exe");
    let spawn = |program: &Path| {
        rerun_as(program, libtest_name(TEST_NAME), NOBODY)
            .env(ATTACKER_ENV, shared.path())
            .env("NOTIF_VICTIM_FILE", &victim_file)
            .env("NOTIF_VICTIM_DIR", &victim_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
    };
    // The original where the copy cannot run (a noexec /tmp).
    let mut attacker = spawn(&exe.copy)
        .or_else(|_| spawn(&exe.original))
        .expect("start the attacker");
    let (tx, lines) = mpsc::channel();
    let stdout = attacker.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("@ ") && tx.send(line).is_err() {
                return;
            }
        }
    });
    let ready = lines.recv_timeout(PATIENCE);
    if ready.is_err() {
        let _ = attacker.kill();
    }
    assert_eq!(
        ready.as_deref().ok(),
        Some("@ ready"),
        "the attacker never got ready"
    );

    let path = shared.join(FINAL_NAME);
    let started = Instant::now();
    let (mut tried, mut succeeded, mut files_changed) = (0usize, 0usize, 0usize);
    let mut first_change_at: Option<usize> = None;
    let mut failed: BTreeMap<i32, (usize, String)> = BTreeMap::new();
    let mut foreign: Vec<String> = Vec::new();
    let cases = [
        Options {
            mode: 0o660,
            group: Some(NOBODY),
            ..Options::default()
        },
        Options {
            mode: 0o666,
            ..Options::default()
        },
    ];
    for options in &cases {
        for _ in 0..opens_per_mode {
            tried += 1;
            match Publisher::open_with(&path, options) {
                Ok(publisher) => {
                    succeeded += 1;
                    if let Err(what) = serves_its_own_notification(&publisher, &path, tried) {
                        foreign.push(format!("open {tried} (mode {:o}): {what}", options.mode));
                    }
                    publisher.close();
                }
                Err(error) => {
                    let entry = failed
                        .entry(error.errno())
                        .or_insert((0, error.to_string()));
                    entry.0 += 1;
                }
            }
            for (victim, was) in [
                (&victim_file, &victim_file_was),
                (&victim_dir, &victim_dir_was),
            ] {
                let now = status(victim);
                if &now != was {
                    files_changed += 1;
                    first_change_at.get_or_insert(tried);
                    if files_changed <= 5 {
                        eprintln!(
                            "open {tried}: {} changed from {was:?} to {now:?}",
                            victim.display()
                        );
                    }
                    restore(victim, was);
                }
            }
            if std::fs::symlink_metadata(&path).is_ok() {
                foreign.push(format!(
                    "open {tried}: {} is still there after close",
                    path.display()
                ));
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let elapsed = started.elapsed();
    drop(attacker.stdin.take());
    let counts = lines.recv_timeout(PATIENCE).unwrap_or_default();
    let _ = attacker.kill();
    let _ = attacker.wait();
    let _ = reader.join();

    // Whatever is left in the directory must be the attacker's, as the
    // attacker made it, or one of notif's private directories that the
    // attacker moved away (empty, owner-only).
    let mut changed_entries = Vec::new();
    for entry in std::fs::read_dir(shared.path()).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = meta.file_type();
        let as_made = if meta.uid() == NOBODY {
            meta.gid() == NOBODY
                && (kind.is_symlink() || (!kind.is_file() && meta.mode() & 0o7777 == 0o755))
        } else {
            meta.uid() == 0
                && kind.is_dir()
                && meta.mode() & 0o7777 == 0o700
                && std::fs::read_dir(entry.path()).unwrap().next().is_none()
        };
        if !as_made {
            changed_entries.push(format!(
                "{name}: uid {} gid {} mode {:o}",
                meta.uid(),
                meta.gid(),
                meta.mode()
            ));
        }
    }
    let victims_changed = files_changed;
    files_changed += changed_entries.len();

    eprintln!(
        "hostile directory: {tried} opens tried in {elapsed:.1?}, {succeeded} succeeded, {} failed {:?}; \
         files changed: {files_changed} (victims {victims_changed}, first after open {first_change_at:?}; \
         entries in the directory not as the attacker made them {}); \
         foreign or missing notifications: {}; attacker: {counts}",
        tried - succeeded,
        failed,
        changed_entries.len(),
        foreign.len()
    );
    assert!(
        changed_entries.is_empty(),
        "{} entries in the directory are not as the attacker made them, e.g. {:?}",
        changed_entries.len(),
        &changed_entries[..changed_entries.len().min(10)]
    );
    assert_eq!(files_changed, 0, "an open changed a victim's mode or owner");
    assert!(
        foreign.is_empty(),
        "{} successful opens did not serve their own notification at the path, e.g. {:?}",
        foreign.len(),
        &foreign[..foreign.len().min(5)]
    );
    assert!(succeeded > 0, "no open succeeded at all: {failed:?}");
    assert!(
        counts.starts_with("@ swapped ") && !counts.starts_with("@ swapped 0 "),
        "the attacker swapped nothing ({counts:?}): the test proved nothing"
    );
}
