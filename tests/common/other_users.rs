//! For tests that play another local user (uid/gid 65534, "nobody") against
//! root's publisher: the root check they start with, and this test binary
//! re-executed as that user. On std and libc alone, so that the notif tool's
//! tests share it too (`#[path = "../../../../tests/common/other_users.rs"]`,
//! beside temp_dir.rs).
#![allow(dead_code)] // each test binary uses a different subset

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

/// The other user the attacker runs as.
pub const NOBODY: u32 = 65534;

/// True as root. Elsewhere the test cannot become another user: it says so
/// (`cannot ...`: what it would have done) and is to pass without running.
pub fn running_as_root(cannot: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("not root: cannot {cannot}, skipping");
    }
    root
}

/// This test binary and a copy of it that another user can run: the binary
/// may be where it was built (a checkout under /root) out of that user's
/// reach. The copy is `attacker` in a directory of mode 0755, removed with
/// the returned [`TempDir`]. Where the copy cannot run (a noexec /tmp), start
/// the original: `spawn(&copy).or_else(|_| spawn(&original))`.
pub struct ReachableExe {
    pub dir: TempDir,
    pub copy: PathBuf,
    pub original: PathBuf,
}

impl ReachableExe {
    pub fn new(tag: &str) -> ReachableExe {
        let original = std::env::current_exe().expect("the test binary's path");
        let dir = TempDir::new(tag);
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let copy = dir.join("attacker");
        std::fs::copy(&original, &copy).unwrap();
        std::fs::set_permissions(&copy, PermissionsExt::from_mode(0o755)).unwrap();
        ReachableExe {
            dir,
            copy,
            original,
        }
    }
}

/// `program` (this test binary or its copy) running only `test` (libtest's
/// name for it), as `uid` (and group `uid`; root: 0 leaves them alone).
pub fn rerun_as(program: &Path, test: &str, uid: u32) -> Command {
    let mut command = Command::new(program);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env_remove("RUST_TEST_THREADS");
    if uid != 0 {
        command.uid(uid).gid(uid);
    }
    command
}
