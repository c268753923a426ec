//! emit's exit codes and the help of every command.

use super::*;

#[test]
fn emit_exit_codes() {
    let dir = TempDir::new("emitx");
    let path = dir.str("e.sock");
    let live = Publisher::open(&path).unwrap();
    let r = run(&["emit", &path]);
    assert_eq!(r.code(), 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("another publisher is live"),
        "{}",
        r.stderr
    );
    live.close();

    let r = run(&["emit", &dir.str("no/such/dir.sock")]);
    assert_eq!(r.code(), 2, "{}", r.stderr);

    let r = run(&["emit", &path, "--wait-subscribers", "1", "--timeout", "0.2"]);
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert!(r.stderr.contains("0 of the 1 subscribers"), "{}", r.stderr);
    assert!(!dir.join("e.sock").exists(), "the socket file is removed");

    let r = run(&["emit", &path, "--mode", "999"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);

    // Nobody listening: bad lines are still reported.
    let mut emit = spawn(&["emit", &path, "--mode", "0660"], true);
    emit.write_stdin("{\"ok\":1}\n[1]\n");
    emit.close_stdin();
    let r = emit.finish(PATIENCE);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    assert!(r.stderr.contains("stdin line 2:"), "{}", r.stderr);
    assert!(r.stderr.contains("2 lines read, 1 skipped"), "{}", r.stderr);
}

#[test]
fn help_for_every_command() {
    for args in [
        &["--help"][..],
        &["tail", "--help"],
        &["emit", "--help"],
        &["stats", "--help"],
        &["help", "tail"],
    ] {
        let r = run(args);
        assert_eq!(r.code(), 0, "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: notif"), "{args:?}: {}", r.stdout);
        assert!(r.stdout.contains("Exit codes"), "{args:?}: {}", r.stdout);
    }
    let r = run(&["--version"]);
    assert_eq!(r.code(), 0);
    let r = run(&["frobnicate"]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    let r = run(&[]);
    assert_eq!(r.code(), 1, "{}", r.stderr);
}
