//! Where /proc is not mounted (a chroot, a bare mount namespace), notif cannot
//! reach its private directory through /proc/self/fd; it binds and probes
//! from a helper thread whose own current directory (unshared from the
//! process's) is that directory instead, and everything else works as usual.
//!
//! The test re-executes itself in a new mount namespace (`unshare -m`) with an
//! empty tmpfs over /proc, so it needs root and unshare(1); elsewhere it says
//! so and passes.

use crate::common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::Duration;

use common::*;
use notif::{Options, Publisher};

const INNER_ENV: &str = "NOTIF_WITHOUT_PROC_INNER";

fn receives(publisher: &Publisher, path: &std::path::Path) -> bool {
    let mut subscriber = RawReader::connect(path);
    subscriber.set_read_timeout(Duration::from_millis(50));
    wait_for(
        || {
            publisher.emit(b"{\"no_proc\":true}").unwrap();
            matches!(subscriber.try_line(), Ok(Some(line)) if line == b"{\"no_proc\":true}")
        },
        PATIENCE,
    )
}

/// Runs inside the namespace without /proc.
fn inner() {
    assert!(
        std::fs::metadata("/proc/self/fd").is_err(),
        "/proc is still there"
    );
    let dir = TempDir::new("noproc");
    let path = dir.socket();
    let cwd = std::env::current_dir().unwrap();

    // Open, serve, close, with a mode and group.
    let options = Options {
        mode: 0o660,
        group: Some(65534),
        ..Options::default()
    };
    let publisher = Publisher::open_with(&path, &options).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), 65534);
    assert!(receives(&publisher, &path), "a subscriber never received");

    // A live publisher at the path is left alone.
    let second = Publisher::open(&path).unwrap_err();
    assert_eq!(second.errno(), libc::EADDRINUSE, "{second}");
    publisher.close();
    assert!(std::fs::symlink_metadata(&path).is_err());

    // A stale socket is taken over.
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path).is_ok());
    let publisher = Publisher::open(&path).unwrap();
    assert!(
        receives(&publisher, &path),
        "the stale socket was not replaced"
    );
    publisher.close();

    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(
        std::env::current_dir().unwrap(),
        cwd,
        "the process's cwd moved"
    );
    println!("@ inner ok");
}

#[test]
fn without_proc_open_serve_take_over_and_close_still_work() {
    if std::env::var_os(INNER_ENV).is_some() {
        inner();
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot make a mount namespace without /proc, skipping");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs none /proc && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            libtest_name(concat!(
                module_path!(),
                "::without_proc_open_serve_take_over_and_close_still_work"
            )),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, "1")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            eprintln!("cannot run unshare(1) ({e}), skipping");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("unshare failed") {
        eprintln!("no mount namespaces here ({stderr}), skipping");
        return;
    }
    assert!(
        output.status.success() && stdout.contains("@ inner ok"),
        "the run without /proc failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}
