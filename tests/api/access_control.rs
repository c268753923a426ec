//! Who may subscribe: the socket file's mode (set before anyone can connect,
//! whatever the umask) and the uid/gid allow-lists checked at accept.
//!
//! These tests connect as other users from forked children that drop their
//! privileges, so they need root (CI runs as root); elsewhere they say so and
//! pass without checking anything.

use crate::common;
use crate::common::other_users::{running_as_root, NOBODY};

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use notif::{Options, Publisher};

const SPARE_GROUP: u32 = 54321;

/// umask is process-wide: tests that change it run one at a time.
static UMASK: Mutex<()> = Mutex::new(());

/// What a child connecting as another user saw.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// It read a line: it was let in.
    Received,
    /// The connection was closed at once, without a word.
    ClosedAtAccept,
    /// It was told why it was refused (the error line's reason), then closed.
    Refused(&'static str),
    /// connect() failed with this errno.
    ConnectFailed(i32),
    Other(i32),
}

/// The address of a socket file, built before fork so the child only copies it.
fn socket_address(path: &Path) -> (libc::sockaddr_un, libc::socklen_t) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(c_path.as_bytes()) {
        *dst = src as libc::c_char;
    }
    (
        addr,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    )
}

/// Forks a child that becomes `uid`/`gid` with `groups` as supplementary
/// groups, connects to `path` and waits (up to 10 s) for a line.
fn connect_as(path: &Path, uid: u32, gid: u32, groups: &[u32]) -> libc::pid_t {
    let (addr, len) = socket_address(path);
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the child only makes async-signal-safe calls before _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid != 0 {
            return pid;
        }
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            libc::_exit(20);
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
            libc::_exit(30 + *libc::__errno_location());
        }
        let timeout = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        // Read one line (or up to EOF): a notification, or a refusal.
        let mut line = [0u8; 1024];
        let mut got = 0;
        while got < line.len() {
            let n = libc::read(fd, line[got..].as_mut_ptr().cast(), line.len() - got);
            if n <= 0 {
                break;
            }
            got += n as usize;
            if line[..got].contains(&b'\n') {
                break;
            }
        }
        let line = &line[..got];
        let contains = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
        let mut byte = 0u8;
        let at_eof = libc::read(fd, (&mut byte as *mut u8).cast(), 1) == 0;
        libc::_exit(if line.is_empty() {
            1
        } else if line.starts_with(b"{\"notif\":{\"error\"") && at_eof {
            if contains(b"\"reason\":\"denied\"") {
                3
            } else if contains(b"\"reason\":\"full\"") {
                4
            } else {
                5
            }
        } else if line.starts_with(b"{\"notif\"") {
            2
        } else {
            0
        });
    }
}

fn outcome(pid: libc::pid_t) -> Outcome {
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status}"
    );
    match libc::WEXITSTATUS(status) {
        0 => Outcome::Received,
        1 => Outcome::ClosedAtAccept,
        3 => Outcome::Refused("denied"),
        4 => Outcome::Refused("full"),
        code if code >= 30 => Outcome::ConnectFailed(code - 30),
        code => Outcome::Other(code),
    }
}

fn open_for_everyone(dir: &TempDir, options: Options) -> Publisher {
    // The directory must be searchable by the other users too.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    Publisher::open_with(
        dir.socket(),
        &Options {
            mode: 0o666,
            ..options
        },
    )
    .unwrap()
}

/// Checks a child is let in: emit until it has read something and exited.
/// Waiting for a subscriber count instead would race with the previous
/// child's connection, which may still be counted while it goes away.
fn expect_received(publisher: &Publisher, pid: libc::pid_t) {
    let mut status = 0;
    let exited = wait_for(
        || {
            publisher.emit(b"{\"hello\":true}").unwrap();
            // SAFETY: polls our own child without blocking.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
        },
        Duration::from_secs(15),
    );
    assert!(exited, "the child never received anything");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
}

#[test]
fn with_no_allow_list_anyone_who_can_open_the_socket_may_subscribe() {
    isolated!();
    if !running_as_root("connect as another user") {
        return;
    }
    let dir = TempDir::new("allow_anyone");
    let publisher = open_for_everyone(&dir, Options::default());
    let child = connect_as(&dir.socket(), NOBODY, NOBODY, &[]);
    expect_received(&publisher, child);
    assert_eq!(publisher.stats().denied, 0);
}

#[test]
fn an_allowed_uid_gets_in_and_everyone_else_is_closed_at_accept_and_counted() {
    isolated!();
    if !running_as_root("connect as another user") {
        return;
    }
    let dir = TempDir::new("allow_uid");
    let mut options = Options::default();
    options.allow_uid(NOBODY);
    let publisher = open_for_everyone(&dir, options);
    let allowed = connect_as(&dir.socket(), NOBODY, NOBODY, &[]);
    expect_received(&publisher, allowed);
    let stranger = connect_as(&dir.socket(), NOBODY - 1, NOBODY - 1, &[]);
    assert_eq!(outcome(stranger), Outcome::Refused("denied"));
    // Root is not special: it is not on the list either.
    let root = connect_as(&dir.socket(), 0, 0, &[]);
    assert_eq!(outcome(root), Outcome::Refused("denied"));
    let stats = publisher.stats();
    assert_eq!(stats.denied, 2);
    assert_eq!(stats.disconnected, 2);
    assert_eq!(stats.accepted, 3);
}

#[test]
fn an_allowed_group_counts_as_primary_or_supplementary_group() {
    isolated!();
    if !running_as_root("connect as another user") {
        return;
    }
    let dir = TempDir::new("allow_gid");
    let mut options = Options::default();
    options.allow_gid(SPARE_GROUP);
    let publisher = open_for_everyone(&dir, options);
    let primary = connect_as(&dir.socket(), NOBODY, SPARE_GROUP, &[]);
    expect_received(&publisher, primary);
    let supplementary = connect_as(&dir.socket(), NOBODY, NOBODY, &[SPARE_GROUP]);
    expect_received(&publisher, supplementary);
    let outsider = connect_as(&dir.socket(), NOBODY, NOBODY, &[NOBODY - 1]);
    assert_eq!(outcome(outsider), Outcome::Refused("denied"));
    assert_eq!(publisher.stats().denied, 1);
}

#[test]
fn the_file_mode_keeps_other_users_out_whatever_the_umask() {
    isolated!();
    if !running_as_root("connect as another user") {
        return;
    }
    let _serial = UMASK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("mode_keeps_out");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // SAFETY: umask only changes this process's file creation mask.
    let previous = unsafe { libc::umask(0) };
    let publisher = Publisher::open_with(
        dir.socket(),
        &Options {
            mode: 0o600,
            ..Options::default()
        },
    )
    .unwrap();
    let child = connect_as(&dir.socket(), NOBODY, NOBODY, &[]);
    assert_eq!(outcome(child), Outcome::ConnectFailed(libc::EACCES));
    drop(publisher);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
}

#[test]
fn no_peer_ever_connects_while_the_socket_is_more_open_than_configured() {
    isolated!();
    if !running_as_root("connect as another user") {
        return;
    }
    // A child as another user tries to connect as fast as it can while the
    // publisher is opened and closed again and again with a permissive umask:
    // between bind() and listen() the file is briefly there with the umask's
    // mode, but nobody can connect before listen(), and by then the mode is 0600.
    let _serial = UMASK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("mode_race");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (addr, len) = socket_address(&dir.socket());
    // SAFETY: the child only makes async-signal-safe calls before _exit.
    let prober = unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            if libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                libc::_exit(20);
            }
            let mut connected = 0;
            // Bounded: about two seconds of attempts at most.
            let mut start: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut start);
            loop {
                let mut now: libc::timespec = std::mem::zeroed();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
                if now.tv_sec - start.tv_sec >= 2 {
                    break;
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) == 0 {
                    connected += 1;
                }
                libc::close(fd);
            }
            libc::_exit(if connected == 0 { 0 } else { 1 });
        }
        pid
    };
    // SAFETY: umask only changes this process's file creation mask.
    let previous = unsafe { libc::umask(0) };
    let mut opened = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let publisher = Publisher::open_with(
            dir.socket(),
            &Options {
                mode: 0o600,
                ..Options::default()
            },
        )
        .unwrap();
        opened += 1;
        drop(publisher);
    }
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(prober, &mut status, 0) };
    assert!(opened > 10, "the race was not exercised ({opened} opens)");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "another user connected to a 0600 socket"
    );
}
