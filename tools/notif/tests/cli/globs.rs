//! Globs over many sockets: dead sockets skipped quietly, another owner's
//! sockets skipped with a warning.

use super::*;

/// A socket file nobody listens on, as a worker that exited through
/// `_exit()` leaves behind.
fn dead_socket(path: &Path) {
    drop(UnixListener::bind(path).unwrap());
    assert!(path.exists());
}

#[test]
fn globs_skip_dead_sockets_quietly() {
    let dir = TempDir::new("dead");
    dead_socket(&dir.join("n-1.sock"));
    dead_socket(&dir.join("n-2.sock"));
    let live = Publisher::open(dir.join("n-3.sock")).unwrap();
    let pattern = format!("{}/n-*.sock", dir.path().display());

    let r = run(&["stats", "--json", &pattern]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(r.stderr, "", "dead sockets are skipped quietly");
    let got = lines(&r.stdout);
    assert_eq!(got.len(), 1, "{}", r.stdout);
    assert!(got[0].contains("n-3.sock"), "{}", got[0]);

    // tail: follows the live one only (it would wait on a dead one forever).
    // Its stats probe counts as a subscriber until its request is read: wait
    // for the subscription after it, or the emit could go to the probe alone.
    let accepted = live.stats().accepted;
    let tail = spawn(&["tail", &pattern, "--count", "1"], false);
    wait_for_glob_subscriber(&live, accepted);
    live.emit(br#"{"event_type":"x"}"#).unwrap();
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "{}", tailed.stderr);
    assert_eq!(lines(&tailed.stdout), [r#"{"event_type":"x"}"#]);
    assert!(!tailed.stderr.contains("n-1.sock"), "{}", tailed.stderr);

    // Only dead ones: nothing to report, exit 2 (no socket there).
    drop(live);
    dead_socket(&dir.join("n-3.sock"));
    let r = run(&["stats", &pattern]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
}

#[test]
fn globs_skip_another_owners_sockets_with_a_warning() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to give a socket to another user");
        return;
    }
    let dir = TempDir::new("owner");
    let mine = Publisher::open(dir.join("a.sock")).unwrap();
    let theirs = Publisher::open(dir.join("b.sock")).unwrap();
    std::os::unix::fs::chown(dir.join("b.sock"), Some(4242), None).unwrap();
    let pattern = format!("{}/*.sock", dir.path().display());

    let r = run(&["stats", "--json", &pattern]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout).len(), 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("b.sock") && r.stderr.contains("4242"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--any-owner"), "{}", r.stderr);
    let r = run(&["stats", "--json", "--any-owner", &pattern]);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert_eq!(lines(&r.stdout).len(), 2, "{}", r.stdout);

    let accepted = mine.stats().accepted;
    let tail = spawn(&["tail", &pattern, "--count", "1"], false);
    wait_for_glob_subscriber(&mine, accepted);
    theirs.emit(br#"{"from":"b"}"#).unwrap();
    mine.emit(br#"{"from":"a"}"#).unwrap();
    let tailed = tail.finish(PATIENCE);
    assert_eq!(tailed.code(), 0, "{}", tailed.stderr);
    assert_eq!(lines(&tailed.stdout), [r#"{"from":"a"}"#]);
    assert!(tailed.stderr.contains("b.sock"), "{}", tailed.stderr);
}
