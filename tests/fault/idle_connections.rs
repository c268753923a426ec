//! Fault: a local user opens a thousand connections to a busy publisher and
//! never reads from any of them. The publisher runs in a child process whose
//! address space is limited to 800 MB (RLIMIT_AS), as a host under
//! `ulimit -v` would be, emitting 2,000 notifications of 280 bytes a second.
//! It must survive, hold at most its memory limit (plus a fixed allowance)
//! whatever the thousand do, keep its server thread under half a core, deliver
//! every notification in order to a subscriber that reads, and give the memory
//! back once the thousand leave.

use crate::common;
use crate::common::faults;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use faults::*;

const IDLE: usize = 1000;
const RATE: u64 = 2000;
/// Filler that makes each numbered notification 280 bytes.
const PAD: usize = 248;
const ADDRESS_SPACE: u64 = 800_000_000;
const MEMORY_LIMIT: u64 = notif::DEFAULT_MEMORY_LIMIT as u64;
const ALLOWANCE: u64 = 16 * 1024 * 1024;

fn memory(child: &mut Remote) -> (u64, u64) {
    let answer = child.command("memory");
    let fields = parse_fields(answer.strip_prefix("memory ").expect("a memory answer"));
    (fields["rss"], fields["hwm"])
}

#[test]
fn a_thousand_connections_that_never_read_cost_at_most_the_memory_limit() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_thousand_connections_that_never_read_cost_at_most_the_memory_limit"
    );
    role_hook();
    scenario(TEST, None);
}

/// The same with a full replay ring: the ring is counted in the same budget.
#[test]
fn a_full_replay_ring_and_a_thousand_idle_connections_stay_within_the_memory_limit() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_full_replay_ring_and_a_thousand_idle_connections_stay_within_the_memory_limit"
    );
    role_hook();
    scenario(TEST, Some(16 * 1024 * 1024));
}

fn scenario(test: &str, replay: Option<u64>) {
    raise_descriptor_limit();
    let seconds = scaled(8, 14);
    let dir = TempDir::new("idle_thousand");
    let mut env = vec![
        ("NOTIF_FAULT_PATH", dir.socket().display().to_string()),
        ("NOTIF_FAULT_RLIMIT_AS", ADDRESS_SPACE.to_string()),
    ];
    if let Some(bytes) = replay {
        env.push(("NOTIF_FAULT_REPLAY", bytes.to_string()));
    }
    let mut child = spawn_role(test, "publisher", &env);
    let opened = String::from_utf8(child.expect_line("the result of its open")).unwrap();
    assert!(opened.starts_with("@ open-ok"), "{opened}");
    assert_eq!(numbered(0, 1000, PAD).len(), 280);

    let (rss_before, _) = memory(&mut child);
    if let Some(bytes) = replay {
        // Fill the ring first (nobody listens), with more than it holds.
        let answer = child.command(&format!(
            "stream 50000 {} {PAD}",
            2 * bytes / 280 / 50000 + 1
        ));
        assert!(answer.ends_with("failed=0"), "{answer}");
        let stats = child.stats();
        assert!(
            stats["replay_bytes"] <= bytes && stats["replay_bytes"] > bytes / 2,
            "{stats:?}"
        );
    }
    // What the thousand leave behind is measured against this (the ring stays).
    let (rss_settled, _) = memory(&mut child);
    let reader = RawReader::connect(dir.socket());
    wait_until("the reader is connected", || {
        child.stats()["subscribers"] == 1
    });
    let idle: Vec<UnixStream> = (0..IDLE)
        .map(|i| {
            UnixStream::connect(dir.socket())
                .unwrap_or_else(|e| panic!("idle connection {i} cannot connect: {e}"))
        })
        .collect();
    wait_until("the thousand are connected", || {
        child.stats()["subscribers"] == IDLE as u64 + 1
    });

    let expected = RATE * seconds;
    // With a ring, the numbered stream starts again at 0 but its numbers
    // follow the ring's: the reader checks the order of the stream's own numbers.
    let reading = spawn_sequential_reader(reader, expected);
    let pid = child.pid();
    let cpu_before = thread_cpu_time(pid, "notif-server").expect("the server thread");
    let started = Instant::now();
    let answer = child.command(&format!("stream {RATE} {seconds} {PAD}"));
    let wall = started.elapsed();
    let cpu = thread_cpu_time(pid, "notif-server").expect("the server thread") - cpu_before;
    assert_eq!(answer, format!("streamed {expected} failed=0"));
    let reader = reading
        .join()
        .expect("the reader got every notification in order");
    let (rss_during, peak) = memory(&mut child);
    let stats = child.stats();
    eprintln!(
        "{IDLE} idle connections, {expected} notifications of 280 bytes in {wall:?}: \
         peak RSS {} MiB (from {} MiB), server thread CPU {cpu:?} ({:.0}% of a core), \
         dropped_slow {}, delivered {}",
        peak >> 20,
        rss_before >> 20,
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        stats["dropped_slow"],
        stats["delivered"],
    );
    assert!(
        peak.saturating_sub(rss_before) <= MEMORY_LIMIT + ALLOWANCE,
        "the publisher's RSS grew from {rss_before} to a peak of {peak} bytes: more than the memory limit ({MEMORY_LIMIT}) plus {ALLOWANCE}"
    );
    assert!(
        cpu.as_secs_f64() < 0.5 * wall.as_secs_f64(),
        "the server thread used {cpu:?} of CPU in {wall:?}"
    );
    // Without a ring the thousand fall behind and lose what overflows; with
    // one, what they lag behind is what the ring keeps anyway, at no cost of
    // theirs, until the ring moves past them.
    if replay.is_none() {
        assert!(stats["dropped_slow"] > 0, "{stats:?}");
    }
    assert!(rss_during > 0);

    // They leave: the memory they held goes back.
    drop(idle);
    wait_until("the thousand are gone", || {
        child.stats()["subscribers"] == 1
    });
    let settled = wait_for(
        || memory(&mut child).0 <= rss_settled + ALLOWANCE,
        Duration::from_secs(10),
    );
    let (rss_after, _) = memory(&mut child);
    eprintln!("RSS after they left: {} MiB", rss_after >> 20);
    assert!(
        settled,
        "RSS stayed at {rss_after} bytes after the idle connections left (it was {rss_settled})"
    );
    drop(reader);
    wait_until("the reader is gone", || child.stats()["subscribers"] == 0);
    assert_remote_invariant(&child.stats());
    let answer = child.command("close");
    assert_remote_invariant(&parse_fields(answer.strip_prefix("closed ").unwrap()));
    assert!(child.wait_exit(PATIENCE).is_some_and(|s| s.success()));
}
