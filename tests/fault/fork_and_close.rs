//! Fault: fork() while 8 threads emit (the child's copy refuses work with
//! EBADF and its close/drop returns promptly; the parent keeps serving without
//! a gap), and the close contract with shared handles: with `Arc<Publisher>`,
//! close happens when the last reference drops, which may be on a thread that
//! has just emitted; it flushes everything (linger) and leaks nothing.
//!
//! The tests fork and count descriptors and threads: they run one at a time.

use crate::common;
use crate::common::faults;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use notif::{Options, Publisher, Stats};

const EMITTERS: usize = 8;

/// Forks; the child runs `child` and leaves with `_exit(status)`.
fn fork_child(child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `child`, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(status) };
    }
    pid
}

/// The child's exit status, or None if it had to be killed after `timeout`.
fn wait_child(pid: libc::pid_t, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if rc == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn fork_while_8_threads_emit_the_child_gets_ebadf_and_the_parent_keeps_serving() {
    isolated!();
    let _serial = serial();
    let forks = scaled(30, 300);
    let options = fault_options(1024 * 1024);
    let (dir, baseline, memory, publisher) = open_watched("fork8", &options);
    let (readers, pacer, stop) = steady_paced(&publisher, &dir, EMITTERS, 2000);
    let mut outcomes = Vec::new();
    let sent: Vec<u64> = std::thread::scope(|scope| {
        let emitters: Vec<_> = (0..EMITTERS)
            .map(|stream| {
                let (publisher, pacer, stop) = (&publisher, &pacer, &stop);
                scope.spawn(move || emit_stream_until(publisher, pacer, stream, 50, stop))
            })
            .collect();
        for round in 0..forks {
            let started = Instant::now();
            let pid = fork_child(|| {
                // SAFETY: this process's own copy of the publisher; the parent keeps its own.
                let copy: Publisher = unsafe { std::ptr::read(&publisher) };
                for _ in 0..3 {
                    match copy.emit(b"{\"from\":\"child\"}") {
                        Err(e) if e.errno() == libc::EBADF => {}
                        Err(_) => return 2,
                        Ok(_) => return 3,
                    }
                }
                if round % 2 == 0 {
                    copy.close();
                } else {
                    drop(copy);
                }
                0
            });
            let status = wait_child(pid, Duration::from_secs(10));
            outcomes.push((status, started.elapsed()));
            if status != Some(0) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        emitters.into_iter().map(|e| e.join().unwrap()).collect()
    });
    let failed: Vec<_> = outcomes.iter().filter(|(s, _)| *s != Some(0)).collect();
    assert!(
        failed.is_empty(),
        "children that did not get EBADF or hung in close/drop (None: killed after 10 s): {failed:?}"
    );
    let slowest = outcomes.iter().map(|(_, t)| *t).max().unwrap();
    let (subscribers, counts) = join_all(readers);
    for counts in counts {
        assert_eq!(counts, sent, "a subscriber missed messages");
    }
    assert!(
        dir.socket().exists(),
        "a child removed the parent's socket file"
    );
    let expect = Expect::watched(&baseline, &options, 2, memory);
    let stats = check_invariants(&publisher, &expect);
    assert_eq!(stats.dropped_slow + stats.dropped_closed, 0, "{stats:?}");
    eprintln!(
        "fork: {forks} children, slowest {slowest:?}, while {EMITTERS} threads emitted {sent:?}; {stats:?}"
    );
    close_and_check(publisher, subscribers, &baseline);
}

/// 8 threads share an `Arc<Publisher>`, each emits its stream and lets go of
/// its reference; the last one to let go closes the publisher (with
/// `Arc::into_inner` + close when `explicit`, by dropping otherwise). The
/// subscribers start reading only once close has begun (the socket file is
/// removed first), so everything they get was flushed within the linger time.
fn last_reference_closes(explicit: bool) {
    // 8 streams of ~90-byte lines: 8,000 each is about 5.8 MB, within the
    // 8 MiB every subscriber may have waiting while it does not read.
    let per_thread = scaled(2_000u64, 8_000);
    let dir = TempDir::new("arc_close");
    let options = Options {
        // Everything fits in each subscriber's buffer: nothing is dropped.
        subscriber_buffer: 8 * 1024 * 1024,
        max_message: 4096,
        backlog: 16 * 1024 * 1024,
        // Generous: close returns as soon as everything is flushed.
        linger: Duration::from_secs(20),
        ..Options::default()
    };
    let messages = EMITTERS as u64 * (per_thread + 1);
    let baseline = Baseline::take();
    let memory = MemoryWatch::start();
    let publisher = Arc::new(Publisher::open_with(dir.socket(), &options).unwrap());
    let subscribers: Vec<RawReader> = (1..=2)
        .map(|n| RawReader::connect_to(&publisher, dir.socket(), n))
        .collect();
    let socket = dir.socket();
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                wait_until("close begins (the socket file is removed)", || {
                    !socket.exists()
                });
                let lines = subscriber.read_to_eof();
                let mut next = [0u64; EMITTERS];
                let mut ended = 0;
                for line in &lines {
                    if let Some((stream, total)) = parse_end(line) {
                        assert_eq!(next[stream], total, "stream {stream} lost messages");
                        ended += 1;
                        continue;
                    }
                    let (stream, seq) = parse_numbered(line);
                    assert_eq!(seq, next[stream], "stream {stream}: lost or reordered");
                    next[stream] += 1;
                }
                assert_eq!(ended, EMITTERS, "not every stream ended");
                lines.len() as u64
            })
        })
        .collect();
    // The emitters start once this thread has let go of its reference:
    // otherwise, on a loaded machine, they could all finish before this
    // thread's drop, which would then be the last.
    let let_go = Arc::new(std::sync::Barrier::new(EMITTERS + 1));
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|stream| {
            let publisher = Arc::clone(&publisher);
            let let_go = Arc::clone(&let_go);
            std::thread::spawn(move || -> Option<Stats> {
                let_go.wait();
                for seq in 0..per_thread {
                    emit_retrying(&publisher, &numbered(stream, seq, 50));
                }
                emit_retrying(&publisher, &end_of_stream(stream, per_thread));
                if explicit {
                    Arc::into_inner(publisher).map(Publisher::close)
                } else {
                    drop(publisher);
                    None
                }
            })
        })
        .collect();
    // This thread lets go first: the last reference is an emitter's.
    drop(publisher);
    let_go.wait();
    let closed: Vec<Stats> = emitters
        .into_iter()
        .filter_map(|e| e.join().unwrap())
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), messages);
    }
    assert!(!dir.socket().exists());
    let peak = memory.finish();
    if explicit {
        assert_eq!(
            closed.len(),
            1,
            "exactly one thread holds the last reference"
        );
        let stats = closed[0];
        assert_invariant(&stats);
        assert_eq!(stats.delivered, 2 * messages, "{stats:?}");
        assert_eq!(stats.dropped_slow + stats.dropped_closed, 0, "{stats:?}");
        check_closed(&baseline, &stats);
    } else {
        check_resources_released(&baseline);
    }
    let bound = memory_bound(&options, 2);
    assert!(
        peak.saturating_sub(baseline.rss) <= bound,
        "VmRSS grew by {} KiB, bound {} KiB",
        peak.saturating_sub(baseline.rss) / 1024,
        bound / 1024
    );
}

#[test]
fn the_last_arc_closed_explicitly_by_an_emitting_thread_flushes_everything() {
    isolated!();
    let _serial = serial();
    last_reference_closes(true);
}

#[test]
fn the_last_arc_dropped_by_an_emitting_thread_flushes_everything_and_leaks_nothing() {
    isolated!();
    let _serial = serial();
    last_reference_closes(false);
}
