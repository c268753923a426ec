//! Opening and closing a publisher again and again leaks neither descriptors
//! nor threads. One test in its own binary: it counts the whole process's
//! descriptors and threads, which tests running alongside would disturb.

use crate::common;

use common::*;
use notif::Publisher;

#[test]
fn open_and_close_200_times_leaks_no_descriptor_and_no_thread() {
    isolated!();
    let dir = TempDir::new("leaks");
    // Warm up anything lazily created once per process.
    Publisher::open(dir.socket()).unwrap().close();
    let fds_before = count_entries("/proc/self/fd");
    let threads_before = settled_thread_count();
    for round in 0..200u64 {
        let publisher = Publisher::open(dir.socket()).unwrap();
        if round % 4 == 0 {
            let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
            publisher.emit(b"{\"round\":1}").unwrap();
            assert_eq!(subscriber.line(), b"{\"round\":1}");
            if round % 8 == 0 {
                drop(subscriber);
                wait_for_subscribers(&publisher, 0);
            } else {
                publisher.close();
                subscriber.expect_eof();
                continue;
            }
        }
        if round % 3 == 0 {
            drop(publisher);
        } else {
            publisher.close();
        }
    }
    assert_eq!(
        count_entries("/proc/self/fd"),
        fds_before,
        "descriptors leaked"
    );
    assert_eq!(settled_thread_count(), threads_before, "threads leaked");
    assert!(!dir.socket().exists());
}

/// Threads in the process once the count holds still: a joined thread can
/// still be listed in /proc/self/task for a moment (pthread_join returns when
/// it has cleared its tid, before the kernel reaps it), longer on a loaded
/// machine.
fn settled_thread_count() -> usize {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = count_entries("/proc/self/task");
    let mut same = 0;
    while same < 10 && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let now = count_entries("/proc/self/task");
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}
