//! Fault: the publisher's process dies with SIGKILL (it never closes, so its
//! socket file stays behind): the next publisher on that path, in another
//! process or in this one, recovers the stale file. And a second publisher
//! started on a live path is refused with EADDRINUSE while the first one keeps
//! serving its subscribers untouched.
//!
//! Publishers run in child processes (this test binary re-executed in a
//! publisher role, driven over its stdin). The tests count descriptors: they
//! run one at a time.

use crate::common;
use crate::common::faults;

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;

use common::*;
use faults::*;
use notif::{Options, Publisher};

fn publisher_env(dir: &TempDir) -> Vec<(&'static str, String)> {
    vec![("NOTIF_FAULT_PATH", dir.socket().display().to_string())]
}

/// The child's first answer: Ok after a successful open, else its errno.
fn open_result(child: &Remote) -> Result<(), i32> {
    let line = String::from_utf8(child.expect_line("the result of its open")).unwrap();
    if line.starts_with("@ open-ok") {
        return Ok(());
    }
    let errno = line
        .strip_prefix("@ open-error ")
        .unwrap_or_else(|| panic!("unexpected first line from the publisher child: {line}"));
    Err(errno.parse().unwrap())
}

fn remote_subscribers(child: &mut Remote) -> u64 {
    child.stats()["subscribers"]
}

#[test]
fn a_publisher_killed_with_sigkill_leaves_a_stale_file_that_the_next_one_recovers() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_publisher_killed_with_sigkill_leaves_a_stale_file_that_the_next_one_recovers"
    );
    role_hook();
    isolated!();
    let _serial = serial();
    let rounds = scaled(2, 10);
    let dir = TempDir::new("crash");
    let mut victim = spawn_role(TEST, "publisher", &publisher_env(&dir));
    open_result(&victim).expect("the first publisher opens");
    for round in 0..rounds {
        let mut subscriber = RawReader::connect(dir.socket());
        wait_until("the publisher child has the subscriber", || {
            remote_subscribers(&mut victim) == 1
        });
        let message = format!("{{\"round\":{round}}}");
        assert_eq!(victim.command(&format!("emit {message}")), "emitted 1");
        assert_eq!(String::from_utf8(subscriber.line()).unwrap(), message);
        // Some more in flight when it dies.
        for seq in 0..50 {
            victim.command(&format!(
                "emit {}",
                String::from_utf8(numbered(0, seq, 10)).unwrap()
            ));
        }
        let status = victim.kill();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Its subscriber sees the end (the kernel closed the connection),
        // possibly after a line cut short.
        let (lines, _tail) = subscriber.read_to_eof_with_tail();
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(parse_numbered(line).1, i as u64);
        }
        // The file stays, and nobody listens on it.
        assert!(
            is_socket(&dir.socket()),
            "no stale socket file after SIGKILL"
        );
        let refused = UnixStream::connect(dir.socket()).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
        // A new publisher process on the same path recovers it.
        victim = spawn_role(TEST, "publisher", &publisher_env(&dir));
        open_result(&victim).unwrap_or_else(|errno| {
            panic!("round {round}: reopening the stale path failed with errno {errno}")
        });
    }
    victim.kill();
    assert!(is_socket(&dir.socket()));
    // And a publisher in this process recovers the last stale file, and works.
    let options = Options::default();
    let baseline = Baseline::take();
    let publisher = Publisher::open_with(dir.socket(), &options)
        .expect("open on the stale file left by a killed publisher");
    let readers = steady_readers(&publisher, &dir.socket(), 2, 1);
    let pacer = Pacer::following(&readers, 500);
    for seq in 0..1000 {
        pacer.emit(&publisher, &numbered(0, seq, 50));
    }
    pacer.emit(&publisher, &end_of_stream(0, 1000));
    let (subscribers, counts) = join_all(readers);
    for counts in counts {
        assert_eq!(counts, vec![1000]);
    }
    check_invariants(&publisher, &Expect::new(&baseline, &options, 2));
    let final_stats = publisher.close();
    assert!(!dir.socket().exists());
    for mut subscriber in subscribers {
        expect_eof_after_markers(&mut subscriber);
    }
    check_closed(&baseline, &final_stats);
}

#[test]
fn a_second_publisher_on_a_live_path_is_refused_and_the_first_keeps_serving() {
    const TEST: &str = concat!(
        module_path!(),
        "::a_second_publisher_on_a_live_path_is_refused_and_the_first_keeps_serving"
    );
    role_hook();
    isolated!();
    let _serial = serial();
    let attempts = scaled(20, 200);
    let dir = TempDir::new("live");
    let mut first = spawn_role(TEST, "publisher", &publisher_env(&dir));
    open_result(&first).expect("the first publisher opens");
    let identity = || {
        let meta = std::fs::symlink_metadata(dir.socket()).unwrap();
        (meta.dev(), meta.ino())
    };
    let before = identity();
    let mut subscriber = RawReader::connect(dir.socket());
    wait_until("the first publisher has its subscriber", || {
        remote_subscribers(&mut first) == 1
    });
    let mut seq = 0u64;
    let mut emit_and_check = |first: &mut Remote, subscriber: &mut RawReader, count: u64| {
        for _ in 0..count {
            let json = String::from_utf8(numbered(0, seq, 10)).unwrap();
            assert!(first
                .command(&format!("emit {json}"))
                .starts_with("emitted "));
            seq += 1;
        }
        for expected in seq - count..seq {
            assert_eq!(parse_numbered(&subscriber.line()).1, expected);
        }
    };
    emit_and_check(&mut first, &mut subscriber, 100);
    let baseline = Baseline::take();
    // A second publisher in this process is refused, and its attempt leaks nothing.
    for _ in 0..attempts {
        let err = Publisher::open(dir.socket()).expect_err("a second publisher on a live path");
        assert_eq!(err.errno(), libc::EADDRINUSE, "{err}");
    }
    check_resources_released(&baseline);
    // So is one in another process.
    for _ in 0..scaled(2, 10) {
        let mut second = spawn_role(TEST, "publisher", &publisher_env(&dir));
        assert_eq!(open_result(&second), Err(libc::EADDRINUSE));
        let status = second.wait_exit(PATIENCE).expect("the refused child exits");
        assert_eq!(status.code(), Some(10));
    }
    // The first one is untouched: same file, same subscriber, no gap.
    assert_eq!(identity(), before, "the socket file was replaced");
    wait_until("the refused publishers' probes are gone", || {
        remote_subscribers(&mut first) == 1
    });
    emit_and_check(&mut first, &mut subscriber, 100);
    let mut late = RawReader::connect(dir.socket());
    wait_until("the first publisher has a new subscriber", || {
        remote_subscribers(&mut first) == 2
    });
    assert_eq!(first.command("emit {\"late\":true}"), "emitted 2");
    assert_eq!(late.line(), b"{\"late\":true}");
    assert_eq!(subscriber.line(), b"{\"late\":true}");
    let answer = first.command("close");
    let final_stats = parse_fields(answer.strip_prefix("closed ").expect("close's answer"));
    assert_remote_invariant(&final_stats);
    assert_eq!(final_stats["delivered"], 200 + 2, "{final_stats:?}");
    assert_eq!(
        final_stats["dropped_slow"] + final_stats["dropped_closed"],
        0
    );
    subscriber.expect_eof();
    late.expect_eof();
    assert!(
        first.wait_exit(PATIENCE).is_some_and(|s| s.success()),
        "the first publisher's process did not exit cleanly"
    );
    assert!(!dir.socket().exists());
}
