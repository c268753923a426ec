//! A temporary directory per test, removed when dropped. Its own file, on std
//! alone, so that the notif tool's tests (tools/notif/tests) share it too:
//! `#[path = "../../../../tests/common/temp_dir.rs"] mod temp_dir;`.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of its own for one test, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        // Short: a socket path must fit in 107 bytes.
        let mut short: String = test.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        short.truncate(16);
        let path = std::env::temp_dir().join(format!(
            "notif-{}-{n}-{nanos:x}-{short}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create the test's temporary directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `join(name)` as a string (for command lines).
    pub fn str(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }

    /// The usual place for the publisher's socket.
    pub fn socket(&self) -> PathBuf {
        self.join("notif.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
