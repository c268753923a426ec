//! The socket's directory is opened once, at open, and every later step is
//! made through that descriptor: close removes the socket from the directory
//! it was created in even when that directory has since been renamed, and
//! never looks the path up again.

use crate::common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};

use common::*;
use notif::{Options, Publisher};

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|meta| meta.file_type().is_socket())
        .unwrap_or(false)
}

#[test]
fn close_removes_the_socket_from_its_directory_after_that_directory_was_renamed() {
    let base = TempDir::new("renamed_dir");
    let first = base.join("first");
    let moved = base.join("moved");
    std::fs::create_dir(&first).unwrap();
    let publisher = Publisher::open(first.join("s.sock")).unwrap();
    std::fs::rename(&first, &moved).unwrap();
    // A new directory at the old name, with another socket at the old path.
    std::fs::create_dir(&first).unwrap();
    let other = UnixListener::bind(first.join("s.sock")).unwrap();
    publisher.close();
    assert!(
        !moved.join("s.sock").exists() && std::fs::symlink_metadata(moved.join("s.sock")).is_err(),
        "the publisher's own socket file was left behind in the renamed directory"
    );
    assert!(
        is_socket(&first.join("s.sock")),
        "the other socket at the old path was removed"
    );
    let _client =
        UnixStream::connect(first.join("s.sock")).expect("the other socket still answers");
    other.accept().unwrap();
}

#[test]
fn a_stale_socket_is_taken_over_in_the_directory_the_path_named_at_open() {
    let dir = TempDir::new("stale_at");
    drop(UnixListener::bind(dir.socket()).unwrap());
    let publisher = Publisher::open(dir.socket()).unwrap();
    let mut subscriber = RawReader::connect(dir.socket());
    subscriber.set_read_timeout(std::time::Duration::from_millis(50));
    assert!(wait_for(
        || {
            publisher.emit(b"{\"stale\":false}").unwrap();
            matches!(subscriber.try_line(), Ok(Some(_)))
        },
        PATIENCE
    ));
    publisher.close();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn in_a_set_gid_directory_the_socket_gets_the_directory_group_as_before() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot give the directory another group, skipping");
        return;
    }
    let dir = TempDir::new("setgid");
    std::os::unix::fs::chown(dir.path(), None, Some(65534)).unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o2775)).unwrap();
    let publisher = Publisher::open_with(
        dir.socket(),
        &Options {
            mode: 0o660,
            ..Options::default()
        },
    )
    .unwrap();
    let meta = std::fs::symlink_metadata(dir.socket()).unwrap();
    assert_eq!(meta.gid(), 65534, "the set-gid directory's group");
    assert_eq!(meta.mode() & 0o7777, 0o660);
    publisher.close();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
