//! Serving a socket that someone else bound and made listen (systemd's
//! LISTEN_FDS, or the daemon itself): notif_open_fd / Publisher::open_fd.

use crate::common;

use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};

use common::*;
use notif::{Options, Publisher};

/// These tests check descriptor numbers: one test opening a file while another
/// reuses a just-closed number would confuse both, so they run one at a time.
static DESCRIPTORS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    DESCRIPTORS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn descriptor_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only asks about the descriptor.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

#[test]
fn an_adopted_listening_socket_is_served_and_its_file_is_left_alone() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("adopt");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let publisher = Publisher::open_fd(listener.into_raw_fd(), &Options::default()).unwrap();
    assert_eq!(
        publisher.address().to_string(),
        dir.socket().display().to_string()
    );
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    publisher.emit(b"{\"activated\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"activated\":true}");
    publisher.close();
    subscriber.expect_eof();
    assert!(
        dir.socket().exists(),
        "notif did not create the file, so it does not remove it"
    );
    let refused = UnixStream::connect(dir.socket()).unwrap_err();
    assert_eq!(
        refused.raw_os_error(),
        Some(libc::ECONNREFUSED),
        "the listening socket was closed"
    );
}

#[test]
fn an_adopted_abstract_socket_is_named_in_stats() {
    let _serial = one_at_a_time();
    let name = format!("notif-test-adopt-{}", std::process::id());
    let listener = std::os::unix::net::UnixListener::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap(),
    )
    .unwrap();
    let publisher = Publisher::open_fd(listener.into_raw_fd(), &Options::default()).unwrap();
    assert_eq!(publisher.address().to_string(), format!("@{name}"));
}

#[test]
fn descriptors_that_are_not_listening_unix_stream_sockets_are_refused_and_left_open() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("adopt_refused");
    // A regular file.
    let file = File::create(dir.join("plain")).unwrap();
    let error = Publisher::open_fd(file.as_raw_fd(), &Options::default()).unwrap_err();
    assert_eq!(error.errno(), libc::ENOTSOCK, "{error}");
    assert!(descriptor_is_open(file.as_raw_fd()));
    // A connected (not listening) Unix socket.
    let (left, _right) = UnixStream::pair().unwrap();
    let error = Publisher::open_fd(left.as_raw_fd(), &Options::default()).unwrap_err();
    assert_eq!(error.errno(), libc::EINVAL);
    assert!(error.message().contains("not listening"), "{error}");
    assert!(descriptor_is_open(left.as_raw_fd()));
    // A datagram socket.
    let datagram = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let error = Publisher::open_fd(datagram.as_raw_fd(), &Options::default()).unwrap_err();
    assert_eq!(error.errno(), libc::EINVAL);
    assert!(error.message().contains("not a stream socket"), "{error}");
    // A TCP listener is not a Unix socket.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = Publisher::open_fd(tcp.as_raw_fd(), &Options::default()).unwrap_err();
    assert!(error.message().contains("not a Unix socket"), "{error}");
    assert!(descriptor_is_open(tcp.as_raw_fd()));
    // Not a descriptor at all.
    assert_eq!(
        Publisher::open_fd(-1, &Options::default())
            .unwrap_err()
            .errno(),
        libc::EBADF
    );
}

#[test]
fn bad_options_leave_the_descriptor_with_the_caller() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("adopt_bad_options");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let options = Options {
        max_message: 0,
        ..Options::default()
    };
    assert_eq!(
        Publisher::open_fd(listener.as_raw_fd(), &options)
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    assert!(descriptor_is_open(listener.as_raw_fd()));
    // Still usable by its owner.
    let publisher = Publisher::open_fd(listener.into_raw_fd(), &Options::default()).unwrap();
    let _subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
}
