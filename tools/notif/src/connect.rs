//! Connecting to a socket without waiting on it for ever.
//!
//! A blocking connect(2) to a Unix stream socket whose listen backlog is full
//! waits until the listener accepts: for ever, if it never does (a stuck
//! publisher, or another user's socket made to hang whoever connects). Every
//! connection the tool makes goes through here instead.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// `path` (a file path, or `@name` for an abstract socket) as a sockaddr_un.
fn address(path: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_bytes();
    let (name, offset) = match bytes.strip_prefix(b"@") {
        Some(name) => (name, 1),
        None => (bytes, 0),
    };
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.is_empty() || name.contains(&0) || name.len() + 1 > addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(
            if name.is_empty() || name.contains(&0) {
                libc::EINVAL
            } else {
                libc::ENAMETOOLONG
            },
        ));
    }
    for (dst, &src) in addr.sun_path[offset..].iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    let header = std::mem::size_of::<libc::sa_family_t>();
    // A file path counts its NUL; an abstract name is exactly its bytes.
    let len = header + offset + name.len() + (1 - offset);
    Ok((addr, len as libc::socklen_t))
}

fn socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn connect_fd(fd: &OwnedFd, path: &str) -> io::Result<()> {
    let (addr, len) = address(path)?;
    loop {
        // SAFETY: addr is a valid sockaddr_un of length len.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Connects without waiting: a socket whose listen backlog is full fails at
/// once with EAGAIN (`WouldBlock`). The stream is left non-blocking.
pub fn nonblocking(path: &str) -> io::Result<UnixStream> {
    let fd = socket(libc::SOCK_NONBLOCK)?;
    connect_fd(&fd, path)?;
    Ok(UnixStream::from(fd))
}

/// Connects, waiting at most `timeout` for a listener whose backlog is full
/// to make room; then fails with `TimedOut`. The stream is blocking, with no
/// timeouts set.
pub fn within(path: &str, timeout: Duration) -> io::Result<UnixStream> {
    let fd = socket(0)?;
    // The kernel bounds a Unix stream connect(2) by the send timeout.
    let bound = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros().max(1) as libc::suseconds_t,
    };
    let set = |value: &libc::timeval| {
        // SAFETY: a valid descriptor and a timeval of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (value as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(&bound)?;
    match connect_fd(&fd, path) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("its listen backlog stayed full for {timeout:?}"),
            ))
        }
        Err(err) => return Err(err),
    }
    set(&libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    })?;
    Ok(UnixStream::from(fd))
}

/// The sentence for a socket that accepted no connection in time (a full
/// listen backlog): whatever is there is not serving its readers.
pub fn not_accepting(path: &str, timeout: Duration) -> String {
    format!(
        "{path}: does not accept connections (its listen backlog stayed full for {timeout:?}): \
         a stuck publisher, or not a notif publisher"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::Instant;

    #[test]
    fn a_full_backlog_is_a_timeout_not_a_hang() {
        let dir = std::env::temp_dir().join(format!("notif-cli-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("full.sock").display().to_string();
        let listener = UnixListener::bind(&path).unwrap();
        // Fill the backlog (never accepted): non-blocking connects until EAGAIN.
        let mut held = Vec::new();
        loop {
            match nonblocking(&path) {
                Ok(stream) => held.push(stream),
                Err(err) => {
                    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "{err}");
                    break;
                }
            }
            assert!(held.len() < 100_000);
        }
        let started = Instant::now();
        let err = within(&path, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        drop(listener);
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn connects_to_files_and_abstract_names() {
        let dir = std::env::temp_dir().join(format!("notif-cli-conn2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ok.sock").display().to_string();
        let _listener = UnixListener::bind(&path).unwrap();
        within(&path, Duration::from_secs(5)).unwrap();
        nonblocking(&path).unwrap();
        let name = format!("notif-cli-conn-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _abstract = UnixListener::bind_addr(&addr).unwrap();
        within(&format!("@{name}"), Duration::from_secs(5)).unwrap();
        assert_eq!(
            within(
                &format!("{}/none.sock", dir.display()),
                Duration::from_secs(5)
            )
            .unwrap_err()
            .raw_os_error(),
            Some(libc::ENOENT)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
