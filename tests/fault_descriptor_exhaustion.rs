//! Fault: the publisher's process runs out of descriptors (RLIMIT_NOFILE
//! lowered in a child process that runs the publisher, so this process is not
//! affected) while more clients connect, so accept() fails with EMFILE. The
//! publisher must not spin on the listener meanwhile (its CPU time over a
//! second stays well under half a core), must keep serving the subscribers it
//! has, and must serve new ones once descriptors free up.

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use faults::*;

/// Descriptors left to the publisher's process once it is open.
const FREE: u64 = 20;
/// Clients beyond what fits.
const EXTRA: usize = 10;

#[test]
fn accept_under_emfile_does_not_spin_and_recovers_once_descriptors_free_up() {
    const TEST: &str = "accept_under_emfile_does_not_spin_and_recovers_once_descriptors_free_up";
    role_hook();
    let rounds = scaled(1, 5);
    let dir = TempDir::new("emfile");
    let mut child = spawn_role(
        TEST,
        "publisher",
        &[
            ("NOTIF_FAULT_PATH", dir.socket().display().to_string()),
            ("NOTIF_FAULT_FREE_FDS", FREE.to_string()),
        ],
    );
    let opened = String::from_utf8(child.expect_line("the result of its open")).unwrap();
    let fds_at_open: u64 = opened
        .strip_prefix("@ open-ok fds=")
        .unwrap_or_else(|| panic!("the publisher child did not open: {opened}"))
        .parse()
        .unwrap();
    for round in 0..rounds {
        let accepted_before = child.stats()["accepted"];
        let clients: Vec<UnixStream> = (0..FREE as usize + EXTRA)
            .map(|i| {
                UnixStream::connect(dir.socket())
                    .unwrap_or_else(|e| panic!("round {round}: client {i} cannot connect: {e}"))
            })
            .collect();
        // It takes what fits; then accept() fails with EMFILE and the rest wait.
        let mut last = (0, Instant::now());
        wait_until("the publisher stops taking subscribers", || {
            let now = child.stats()["subscribers"];
            if now != last.0 {
                last = (now, Instant::now());
            }
            now > 0 && last.1.elapsed() >= Duration::from_millis(500)
        });
        let taken = last.0 as usize;
        assert!(
            taken < clients.len(),
            "round {round}: all {} clients were accepted: the descriptor limit was not reached",
            clients.len()
        );
        // It does not spin on a listener that stays readable.
        let pid = child.pid();
        let (cpu_before, started) = (cpu_time(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let (cpu, wall) = (cpu_time(pid) - cpu_before, started.elapsed());
        assert!(
            cpu.as_secs_f64() < 0.5 * wall.as_secs_f64(),
            "round {round}: the publisher used {cpu:?} of CPU in {wall:?} while out of descriptors"
        );
        eprintln!(
            "round {round}: {taken} of {} clients accepted before EMFILE; publisher CPU {cpu:?} in {wall:?}",
            clients.len()
        );
        // It keeps serving the subscribers it has.
        assert_eq!(
            child.command("emit {\"while\":\"exhausted\"}"),
            format!("emitted {taken}")
        );
        let mut subscribers: Vec<Subscriber> =
            clients.into_iter().map(Subscriber::from_stream).collect();
        for subscriber in &mut subscribers[..taken] {
            assert_eq!(subscriber.line(), b"{\"while\":\"exhausted\"}");
        }
        // Descriptors free up: the waiting clients are taken on and served.
        let waiting = subscribers.split_off(taken);
        drop(subscribers);
        let everyone = accepted_before + (FREE as usize + EXTRA) as u64;
        wait_until("the waiting clients are accepted", || {
            let stats = child.stats();
            stats["accepted"] == everyone && stats["subscribers"] == waiting.len() as u64
        });
        assert_eq!(
            child.command("emit {\"after\":\"recovery\"}"),
            format!("emitted {}", waiting.len())
        );
        let mut waiting = waiting;
        for subscriber in &mut waiting {
            assert_eq!(subscriber.line(), b"{\"after\":\"recovery\"}");
        }
        // And so is a new one.
        let mut fresh = Subscriber::connect(dir.socket());
        fresh.write_all(b"{}\n").unwrap();
        assert!(fresh.line().starts_with(b"{\"notif\":{\"subscribed\":true"));
        child.command("emit {\"fresh\":true}");
        assert_eq!(fresh.line(), b"{\"fresh\":true}");
        drop(fresh);
        drop(waiting);
        wait_until("every subscriber is gone", || {
            child.stats()["subscribers"] == 0
        });
        // Nothing leaked in the publisher's process.
        assert_eq!(child.command("fds"), format!("fds {fds_at_open}"));
        assert_remote_invariant(&child.stats());
    }
    let answer = child.command("close");
    let final_stats = parse_fields(answer.strip_prefix("closed ").unwrap());
    assert_remote_invariant(&final_stats);
    assert!(child.wait_exit(PATIENCE).is_some_and(|s| s.success()));
    assert!(!dir.socket().exists());
}
