//! Fault: subscribers connecting and disconnecting in a tight loop, from
//! several threads, while messages flow to two steady subscribers that must
//! get every one of them, in order. 2,000 churn connections in `make test`,
//! 10,000 under NOTIF_SOAK=1 (`make soak`).
//!
//! One test in its own binary: it counts the process's descriptors and threads.

use crate::common;
use crate::common::faults;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use faults::*;

#[test]
fn churning_subscribers_cost_the_steady_ones_nothing() {
    isolated!();
    let connections: u64 = scaled(2_000, 10_000);
    const CHURNERS: u64 = 3;
    let started = Instant::now();
    let options = fault_options(256 * 1024);
    let (dir, baseline, memory, publisher) = open_watched("churn", &options);
    let (steady, pacer, stop) = steady_paced(&publisher, &dir, 1, 500);
    let churned = AtomicU64::new(0);
    let sent = std::thread::scope(|scope| {
        let emitter = scope.spawn(|| emit_stream_until(&publisher, &pacer, 0, 100, &stop));
        let churners: Vec<_> = (0..CHURNERS)
            .map(|t| {
                let (path, churned) = (dir.socket(), &churned);
                scope.spawn(move || {
                    let mut byte = [0u8; 256];
                    for i in 0..connections.div_ceil(CHURNERS) {
                        let mut stream = UnixStream::connect(&path)
                            .unwrap_or_else(|e| panic!("churn connection {i} of thread {t}: {e}"));
                        stream
                            .set_read_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                        // Every way of leaving: at once, after reading a
                        // little, after a request, after shutting down writing.
                        match (i + t) % 4 {
                            0 => {}
                            1 => {
                                let _ = stream.read(&mut byte);
                            }
                            2 => {
                                let _ = stream.write_all(b"{\"markers\":true}\n");
                                let _ = stream.read(&mut byte);
                            }
                            _ => {
                                let _ = stream.shutdown(Shutdown::Write);
                                let _ = stream.read(&mut byte);
                            }
                        }
                        drop(stream);
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for churner in churners {
            churner.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        emitter.join().unwrap()
    });
    let churn_time = started.elapsed();
    let (steady, counts) = join_all(steady);
    for counts in counts {
        assert_eq!(counts, vec![sent], "a steady subscriber missed messages");
    }
    assert!(sent > 0);
    // Every churn connection is gone from the publisher's table.
    wait_for_subscribers(&publisher, 2);
    let stats = publisher.stats();
    assert_eq!(
        stats.accepted,
        2 + churned.load(Ordering::Relaxed),
        "{stats:?}"
    );
    let expect = Expect::watched(&baseline, &options, 2 + CHURNERS as usize, memory);
    let stats = check_invariants(&publisher, &expect);
    assert!(
        stats.delivered >= 2 * (sent + 1),
        "the steady subscribers' messages are not all counted as delivered: {stats:?}"
    );
    eprintln!(
        "churn: {} connections in {churn_time:?} while {sent} messages went to 2 steady subscribers; {stats:?}",
        churned.load(Ordering::Relaxed)
    );
    close_and_check(publisher, steady, &baseline);
}
