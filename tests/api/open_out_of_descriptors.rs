//! Opening with only a few descriptors left (RLIMIT_NOFILE lowered for a
//! moment): open fails with EMFILE at whatever step runs out, and leaves
//! nothing behind in the socket's directory, neither the socket file nor the
//! private directory it is made in. One test in this file: the limit is
//! process-wide.

use crate::common;

use common::*;
use notif::Publisher;

/// The soft limit under which exactly `free` descriptor numbers are unused.
fn limit_leaving(free: u64) -> u64 {
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // (The descriptor read_dir used is closed again by now.)
    let (mut limit, mut unused) = (0u64, 0u64);
    while unused < free || open.contains(&limit) {
        if !open.contains(&limit) {
            unused += 1;
        }
        limit += 1;
    }
    limit
}

#[test]
fn an_open_that_runs_out_of_descriptors_fails_with_emfile_and_leaves_nothing() {
    isolated!();
    let dir = TempDir::new("emfile_open");
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads into a live rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let (mut failed, mut opened) = (0, 0);
    for free in 0..12u64 {
        let lowered = libc::rlimit {
            rlim_cur: limit_leaving(free),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: sets our own soft limit, restored right below.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let result = Publisher::open(dir.socket());
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        match result {
            Ok(publisher) => {
                opened += 1;
                publisher.close();
            }
            Err(error) => {
                failed += 1;
                assert_eq!(error.errno(), libc::EMFILE, "{free} free: {error}");
            }
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{free} descriptors free: left behind {left:?}"
        );
    }
    assert!(failed > 0 && opened > 0, "failed {failed}, opened {opened}");
}
