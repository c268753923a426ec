//! A publisher across fork(): the child's copy of the handle refuses work and
//! leaves the parent's socket alone; the parent's subscribers are unaffected by
//! the child, and see the end of stream when the parent closes, child or not.
//!
//! A child inherits copies of every descriptor of the test process, including
//! other tests' sockets, so this file's tests run one at a time.

use crate::common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use notif::{Options, Publisher};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Forks; the child runs `child` and exits with its status via _exit.
fn fork_child(child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `child`, which does little, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(status) };
    }
    pid
}

/// Forks a child that tells the parent it is running (so its fork handlers
/// have run) and then sleeps until killed.
fn fork_sleeping_child() -> libc::pid_t {
    let mut fds = [0; 2];
    // SAFETY: fds is a live array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let pid = fork_child(|| {
        // SAFETY: write and sleep are async-signal-safe; the parent kills us when done.
        unsafe {
            libc::write(fds[1], b"r".as_ptr().cast(), 1);
            libc::sleep(60);
        }
        0
    });
    let mut byte = 0u8;
    // SAFETY: reads one byte into a live u8, then closes our pipe ends.
    unsafe {
        libc::close(fds[1]);
        assert_eq!(
            libc::read(fds[0], (&mut byte as *mut u8).cast(), 1),
            1,
            "the child never ran"
        );
        libc::close(fds[0]);
    }
    pid
}

/// Waits for the child to exit (killing it after `timeout`); returns its exit
/// status, or None if it had to be killed or died of a signal.
fn wait_child(pid: libc::pid_t, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if rc == pid {
            return if libc::WIFEXITED(status) {
                Some(libc::WEXITSTATUS(status))
            } else {
                None
            };
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_child_gets_ebadf_from_emit_and_closing_its_copy_leaves_the_parent_alone() {
    isolated!();
    let _serial = serial();
    let dir = TempDir::new("child_ebadf");
    let mut slot = Some(Publisher::open(dir.socket()).unwrap());
    let mut subscriber = RawReader::connect_to(slot.as_ref().unwrap(), dir.socket(), 1);
    let pid = fork_child(|| {
        let publisher = slot.take().unwrap();
        let status = match publisher.emit(b"{\"from\":\"child\"}") {
            Err(e) if e.errno() == libc::EBADF => 0,
            Err(_) => 2,
            Ok(_) => 3,
        };
        publisher.close();
        status
    });
    assert_eq!(
        wait_child(pid, PATIENCE),
        Some(0),
        "child saw no EBADF, or hung"
    );
    let publisher = slot.take().unwrap();
    assert!(
        dir.socket().exists(),
        "the child removed the parent's socket file"
    );
    for seq in 0..100 {
        assert_eq!(publisher.emit(&numbered(0, seq, 0)).unwrap(), 1);
    }
    for seq in 0..100 {
        assert_eq!(parse_numbered(&subscriber.line()).1, seq);
    }
    let mut late = RawReader::connect_to(&publisher, dir.socket(), 2);
    publisher.emit(b"{\"after\":\"child\"}").unwrap();
    assert_eq!(late.line(), b"{\"after\":\"child\"}");
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.delivered, 102);
    publisher.close();
    assert!(!dir.socket().exists());
}

#[test]
fn a_child_that_merely_drops_its_copy_leaves_the_parents_socket_file() {
    isolated!();
    let _serial = serial();
    let dir = TempDir::new("child_drop");
    let mut slot = Some(Publisher::open(dir.socket()).unwrap());
    let pid = fork_child(|| {
        drop(slot.take());
        0
    });
    assert_eq!(wait_child(pid, PATIENCE), Some(0));
    let publisher = slot.take().unwrap();
    assert!(dir.socket().exists());
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    publisher.emit(b"{\"n\":1}").unwrap();
    assert_eq!(subscriber.line(), b"{\"n\":1}");
}

#[test]
fn a_child_forked_while_the_server_is_busy_can_still_close_its_copy() {
    isolated!();
    let _serial = serial();
    let dir = TempDir::new("busy_fork");
    let options = Options {
        subscriber_buffer: 64 * 1024,
        max_message: 4096,
        ..Options::default()
    };
    let mut slot = Some(Publisher::open_with(dir.socket(), &options).unwrap());
    let publisher = slot.as_ref().unwrap();
    let subscriber = RawReader::connect_to(publisher, dir.socket(), 1);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut hung = 0;
    std::thread::scope(|scope| {
        // Keep the server thread taking batches (and its locks) all the time.
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = publisher.emit(b"{\"busy\":true}");
            }
        });
        for _ in 0..200 {
            let pid = fork_child(|| {
                // SAFETY: the slot is this process's own copy; the parent keeps its own.
                let publisher = unsafe { std::ptr::read(&slot) }.unwrap();
                match publisher.emit(b"{}") {
                    Err(e) if e.errno() == libc::EBADF => {}
                    _ => return 2,
                }
                publisher.close();
                0
            });
            match wait_child(pid, Duration::from_secs(10)) {
                Some(0) => {}
                Some(status) => panic!("child exited with {status}"),
                None => {
                    hung += 1;
                    break;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    drop(subscriber);
    slot.take().unwrap().close();
    assert_eq!(hung, 0, "a child hung (and was killed) in close");
}

#[test]
fn a_subscriber_sees_eof_when_the_parent_closes_while_a_child_lives_on() {
    isolated!();
    let _serial = serial();
    let (dir, publisher, mut subscriber) = publisher_and_reader("eof_with_child");
    publisher.emit(b"{\"before\":\"fork\"}").unwrap();
    let pid = fork_sleeping_child();
    publisher.emit(b"{\"after\":\"fork\"}").unwrap();
    assert_eq!(subscriber.line(), b"{\"before\":\"fork\"}");
    assert_eq!(subscriber.line(), b"{\"after\":\"fork\"}");
    let started = Instant::now();
    publisher.close();
    subscriber.set_read_timeout(Duration::from_secs(10));
    let rest = subscriber.read_to_eof();
    let waited = started.elapsed();
    // SAFETY: the child is still alive here, sleeping.
    assert_eq!(
        unsafe { libc::waitpid(pid, &mut 0, libc::WNOHANG) },
        0,
        "the child should still be alive"
    );
    assert!(rest.is_empty());
    assert!(waited < Duration::from_secs(5), "EOF took {waited:?}");
    assert!(!dir.socket().exists());
    assert_eq!(wait_child(pid, Duration::ZERO), None); // killed
}

#[test]
fn an_abstract_name_is_free_once_the_parent_closes_even_while_a_child_lives_on() {
    isolated!();
    let _serial = serial();
    let name = format!("@notif-test-{}-fork", std::process::id());
    let publisher = Publisher::open_bytes(name.as_bytes(), &Options::default()).unwrap();
    let pid = fork_sleeping_child();
    publisher.close();
    // Had the child kept the listening socket, the name would still be taken.
    let again = Publisher::open_bytes(name.as_bytes(), &Options::default());
    assert_eq!(wait_child(pid, Duration::ZERO), None);
    again
        .expect("the abstract name is still taken by the child's copy")
        .close();
}
