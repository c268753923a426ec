//! Fault: the publisher's process runs short of descriptors (RLIMIT_NOFILE
//! lowered in a child process that runs the publisher, so this process is not
//! affected) while more clients connect. The library keeps a reserve of
//! descriptors for the host (admission.rs: an eighth of the limit, at least
//! 32): once a connection's descriptor falls within it, the connection is
//! told why (reason `full`, naming the descriptors) and closed at once, so
//! the host's own open() still succeeds. The publisher must not spin on the
//! listener meanwhile (its CPU time over a second stays well under half a
//! core), must keep serving the subscribers it has, and must serve new ones
//! once descriptors free up.
use crate::common;
use crate::common::faults;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use faults::*;

/// Descriptors left to the publisher's process once it is open: more than
/// the reserve (32 of so small a limit), so that some connections fit.
const FREE: u64 = 60;
/// Clients beyond what fits.
const EXTRA: usize = 10;

#[test]
fn a_descriptor_shortage_is_refused_with_a_reason_without_spinning_and_recovers() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_descriptor_shortage_is_refused_with_a_reason_without_spinning_and_recovers"
    );
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
        // It takes what fits outside the reserve; the rest are refused at once.
        let everyone = accepted_before + (FREE as usize + EXTRA) as u64;
        if !wait_for(
            || child.stats()["accepted"] == everyone,
            Duration::from_secs(30),
        ) {
            panic!(
                "round {round}: not every client was accepted or refused (accepted_before {accepted_before}, everyone {everyone}): {:?}",
                child.stats()
            );
        }
        let taken = child.stats()["subscribers"] as usize;
        assert!(
            taken > 0 && taken < clients.len(),
            "round {round}: {taken} of {} clients taken: the reserve was not reached, or left nothing",
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
            "round {round}: {taken} of {} clients accepted outside the reserve, the rest refused; publisher CPU {cpu:?} in {wall:?}",
            clients.len()
        );
        // It keeps serving the subscribers it has.
        assert_eq!(
            child.command("emit {\"while\":\"exhausted\"}"),
            format!("emitted {taken}")
        );
        let mut subscribers: Vec<RawReader> =
            clients.into_iter().map(RawReader::from_stream).collect();
        // Accepted in order: the first `taken` are subscribers, the rest were
        // told why they were refused.
        let refused = subscribers.split_off(taken);
        for subscriber in &mut subscribers {
            assert_eq!(subscriber.line(), b"{\"while\":\"exhausted\"}");
        }
        for mut subscriber in refused {
            let line = String::from_utf8(subscriber.line()).unwrap();
            assert!(
                line.contains("\"reason\":\"full\"") && line.contains("file descriptors"),
                "round {round}: a refused client got {line}"
            );
            subscriber.expect_eof();
        }
        // Descriptors free up: as many new clients are taken on and served.
        drop(subscribers);
        wait_until("every subscriber is gone", || {
            child.stats()["subscribers"] == 0
        });
        let mut waiting: Vec<RawReader> = (0..taken)
            .map(|_| RawReader::connect(dir.socket()))
            .collect();
        wait_until("the new clients are accepted", || {
            child.stats()["subscribers"] == taken as u64
        });
        assert_eq!(
            child.command("emit {\"after\":\"recovery\"}"),
            format!("emitted {taken}")
        );
        for subscriber in &mut waiting {
            assert_eq!(subscriber.line(), b"{\"after\":\"recovery\"}");
        }
        drop(waiting);
        wait_until("every subscriber is gone", || {
            child.stats()["subscribers"] == 0
        });
        // And so is a new one.
        let mut fresh = RawReader::connect(dir.socket());
        fresh.write_all(b"{}\n").unwrap();
        assert!(fresh.line().starts_with(b"{\"notif\":{\"subscribed\":true"));
        assert_eq!(child.command("emit {\"fresh\":true}"), "emitted 1");
        assert_eq!(fresh.line(), b"{\"fresh\":true}");
        drop(fresh);
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
