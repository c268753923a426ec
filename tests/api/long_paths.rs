//! The path limit is 107 bytes (sockaddr_un) whatever the directory's length:
//! notif needs no room beside the socket for names of its own.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use notif::Publisher;

/// A directory whose path is exactly `len` bytes, inside `base`.
fn directory_of_len(base: &TempDir, len: usize) -> PathBuf {
    let prefix = base.path().as_os_str().len() + 1;
    assert!(
        prefix < len,
        "the temporary directory {} is too long for this test",
        base.path().display()
    );
    let dir = base.path().join("d".repeat(len - prefix));
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(dir.as_os_str().len(), len);
    dir
}

/// A path of exactly `len` bytes in `dir`.
fn path_of_len(dir: &Path, len: usize) -> PathBuf {
    let name_len = len - dir.as_os_str().len() - 1;
    let path = dir.join("s".repeat(name_len));
    assert_eq!(path.as_os_str().len(), len);
    path
}

/// Opens at `path`, proves a subscriber there receives, closes.
fn open_subscribe_receive(path: &Path) {
    let publisher = Publisher::open(path).unwrap_or_else(|e| {
        panic!(
            "open {} ({} bytes): {e}",
            path.display(),
            path.as_os_str().len()
        )
    });
    let mut subscriber = RawReader::connect(path);
    subscriber.set_read_timeout(Duration::from_millis(50));
    let received = wait_for(
        || {
            publisher.emit(b"{\"long\":true}").unwrap();
            matches!(subscriber.try_line(), Ok(Some(line)) if line == b"{\"long\":true}")
        },
        PATIENCE,
    );
    assert!(
        received,
        "a subscriber at {} never received",
        path.display()
    );
    publisher.close();
    assert!(
        std::fs::symlink_metadata(path).is_err(),
        "{} is still there after close",
        path.display()
    );
}

#[test]
fn a_107_byte_path_in_a_100_byte_directory_works() {
    let base = TempDir::new("long100");
    let dir = directory_of_len(&base, 100);
    open_subscribe_receive(&path_of_len(&dir, 107));
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "left behind in the directory: {left:?}");
}

#[test]
fn a_107_byte_path_in_a_105_byte_directory_works() {
    let base = TempDir::new("long105");
    let dir = directory_of_len(&base, 105);
    open_subscribe_receive(&path_of_len(&dir, 107));
}

#[test]
fn a_94_byte_path_in_a_92_byte_directory_works_every_time() {
    // The old temporary name beside the socket made this fail at random.
    let base = TempDir::new("long92");
    let dir = directory_of_len(&base, 92);
    let path = path_of_len(&dir, 94);
    for _ in 0..50 {
        open_subscribe_receive(&path);
    }
}

#[test]
fn a_108_byte_path_is_still_enametoolong() {
    let base = TempDir::new("long108");
    let dir = directory_of_len(&base, 100);
    let err = Publisher::open(path_of_len(&dir, 108)).unwrap_err();
    assert_eq!(err.errno(), libc::ENAMETOOLONG, "{err}");
    assert!(err.message().contains("107"), "{err}");
}

#[test]
fn a_relative_path_works_and_close_removes_it() {
    // Relative to the current directory, against which the directory
    // descriptor is opened once, at open.
    let base = TempDir::new("relative");
    let depth = std::env::current_dir().unwrap().components().count() - 1;
    let absolute = base.join("rel.sock");
    let path = PathBuf::from("../".repeat(depth)).join(absolute.strip_prefix("/").unwrap());
    assert!(path.is_relative());
    let publisher = Publisher::open(&path).unwrap();
    let mut subscriber = RawReader::connect(&path);
    subscriber.set_read_timeout(Duration::from_millis(50));
    assert!(wait_for(
        || {
            publisher.emit(b"{\"rel\":1}").unwrap();
            matches!(subscriber.try_line(), Ok(Some(_)))
        },
        PATIENCE
    ));
    publisher.close();
    assert!(std::fs::symlink_metadata(&path).is_err());
}

#[test]
fn a_path_ending_in_a_slash_or_dot_is_einval() {
    let base = TempDir::new("trailing");
    for suffix in ["/", "/.", "/.."] {
        let path = format!("{}{suffix}", base.join("x").display());
        let err = Publisher::open(&path).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL, "{path}: {err}");
    }
}
