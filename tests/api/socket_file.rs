//! The socket file: created at open, removed at close only if it is still the
//! one the publisher created; abstract names; non-UTF-8 paths; its group.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use common::*;
use notif::{Options, Publisher, SocketAddress};

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|meta| meta.file_type().is_socket())
        .unwrap_or(false)
}

#[test]
fn open_creates_a_socket_file_and_close_removes_it() {
    let (dir, publisher) = open_publisher("close_removes");
    assert!(is_socket(&dir.socket()));
    assert_eq!(publisher.address(), &SocketAddress::File(dir.socket()));
    publisher.close();
    assert!(!dir.socket().exists());
    assert!(std::fs::symlink_metadata(dir.socket()).is_err());
}

#[test]
fn close_leaves_a_regular_file_put_at_the_path_meanwhile() {
    let (dir, publisher) = open_publisher("replaced_file");
    std::fs::remove_file(dir.socket()).unwrap();
    std::fs::write(dir.socket(), b"someone else's").unwrap();
    publisher.close();
    assert_eq!(std::fs::read(dir.socket()).unwrap(), b"someone else's");
}

#[test]
fn close_leaves_another_socket_bound_at_the_path_meanwhile() {
    let (dir, publisher) = open_publisher("replaced_socket");
    std::fs::remove_file(dir.socket()).unwrap();
    let other = UnixListener::bind(dir.socket()).unwrap();
    publisher.close();
    assert!(is_socket(&dir.socket()));
    let _client = UnixStream::connect(dir.socket()).expect("the other socket still answers");
    other.accept().unwrap();
}

#[test]
fn close_leaves_a_new_publisher_at_the_path_alone() {
    let dir = TempDir::new("replaced_publisher");
    let old = Publisher::open(dir.socket()).unwrap();
    std::fs::remove_file(dir.socket()).unwrap();
    let new = Publisher::open(dir.socket()).unwrap();
    old.close();
    let mut subscriber = RawReader::connect_to(&new, dir.socket(), 1);
    new.emit(b"{\"from\":\"new\"}").unwrap();
    assert_eq!(subscriber.line(), b"{\"from\":\"new\"}");
    new.close();
    assert!(!dir.socket().exists());
}

#[test]
fn close_copes_with_the_file_already_gone() {
    let (dir, publisher) = open_publisher("already_gone");
    std::fs::remove_file(dir.socket()).unwrap();
    publisher.close();
    assert!(!dir.socket().exists());
}

#[test]
fn an_abstract_socket_works_and_leaves_no_file() {
    let dir = TempDir::new("abstract");
    let name = format!("notif-test-{}-abstract", std::process::id());
    let publisher =
        Publisher::open_bytes(format!("@{name}").as_bytes(), &Options::default()).unwrap();
    assert_eq!(
        publisher.address(),
        &SocketAddress::Abstract(name.clone().into_bytes())
    );
    assert!(!Path::new(&format!("@{name}")).exists());
    assert!(!dir.join(&format!("@{name}")).exists());
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let stream = UnixStream::connect_addr(&address).unwrap();
    let mut subscriber = RawReader::from_stream(stream);
    wait_for_subscribers(&publisher, 1);
    publisher.emit(b"{\"abstract\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"abstract\":true}");
    publisher.close();
    subscriber.expect_eof();
    let refused = UnixStream::connect_addr(&address).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::ECONNREFUSED));
}

#[test]
fn a_path_that_is_not_utf8_works_through_open_bytes() {
    let dir = TempDir::new("not_utf8");
    let mut bytes = dir.path().as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(b"/sock-\xff\xfe.sock");
    let path = Path::new(OsStr::from_bytes(&bytes));
    assert!(std::str::from_utf8(&bytes).is_err());
    let publisher = Publisher::open_bytes(&bytes, &Options::default()).unwrap();
    assert!(is_socket(path));
    let mut subscriber = RawReader::connect_to(&publisher, path, 1);
    publisher.emit(b"{\"bytes\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"bytes\":true}");
    publisher.close();
    assert!(!path.exists());
    subscriber.expect_eof();
}

#[test]
fn a_path_given_as_an_os_str_that_is_not_utf8_works_through_open() {
    let dir = TempDir::new("not_utf8_path");
    let path = dir.path().join(OsStr::from_bytes(b"\xc3\x28.sock"));
    let publisher = Publisher::open(&path).unwrap();
    assert!(is_socket(&path));
    publisher.close();
    assert!(!path.exists());
}

fn own_gid() -> u32 {
    // SAFETY: getegid cannot fail.
    unsafe { libc::getegid() }
}

/// The name of a group by id, if it has one.
fn group_name(gid: u32) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 16 * 1024];
    // SAFETY: zeroed is a valid libc::group.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers refer to live memory of the stated sizes.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut entry,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string in buffer.
    Some(
        unsafe { std::ffi::CStr::from_ptr(entry.gr_name) }
            .to_bytes()
            .to_vec(),
    )
}

#[test]
fn the_group_option_gives_the_socket_file_that_group() {
    let dir = TempDir::new("group");
    let gid = own_gid();
    let options = Options {
        group: Some(gid),
        mode: 0o660,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let meta = std::fs::symlink_metadata(dir.socket()).unwrap();
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.mode() & 0o7777, 0o660);
    publisher.close();
}

#[test]
fn a_group_given_as_a_number_or_a_name_resolves_to_its_gid() {
    let gid = own_gid();
    assert_eq!(
        notif::resolve_group(gid.to_string().as_bytes()).unwrap(),
        gid
    );
    let mut options = Options::default();
    options.set_group(gid.to_string().as_bytes()).unwrap();
    assert_eq!(options.group, Some(gid));
    if let Some(name) = group_name(gid) {
        assert_eq!(notif::resolve_group(&name).unwrap(), gid);
        let mut options = Options::default();
        options.set_group(&name).unwrap();
        assert_eq!(options.group, Some(gid));
        let dir = TempDir::new("group_by_name");
        let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
        assert_eq!(std::fs::symlink_metadata(dir.socket()).unwrap().gid(), gid);
        publisher.close();
    }
}

#[test]
fn a_group_that_does_not_exist_is_enoent_naming_it() {
    let err = notif::resolve_group(b"notif-no-such-group-x7").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT, "{}", err.message());
    assert!(
        err.message().contains("notif-no-such-group-x7"),
        "{}",
        err.message()
    );
    let mut options = Options::default();
    let err = options.set_group(b"notif-no-such-group-x7").unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(options.group, None);
}

#[test]
fn a_numeric_group_other_than_ours_is_applied_when_we_may_chown() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root may give a file to a group it is not in
    }
    let dir = TempDir::new("other_group");
    let mut options = Options::default();
    options.set_group(b"54321").unwrap();
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    assert_eq!(
        std::fs::symlink_metadata(dir.socket()).unwrap().gid(),
        54321
    );
    publisher.close();
}
