//! The listening socket and the file it lives at.
//!
//! Following nng rather than ZeroMQ: an existing socket file is probed with
//! connect() and removed only when nobody answers (a live publisher is never
//! evicted); anything that is not a socket is never touched; the file gets its
//! configured group and mode and listens before it appears at its path, so
//! neither the umask nor a race with connect() ever lets in a peer the
//! configuration does not; and close removes the file only if it is still the
//! very file this publisher created.
//!
//! The socket's directory may be writable by other users, who can rename
//! anything over any name in it at any moment. Every step therefore works
//! through descriptors, never by a name another user could replace: the
//! directory is opened once ([`directory`]), the socket is bound and given its
//! permissions inside a private directory of ours ([`private_dir`]), and
//! [`publish`] links it into place and later removes it.

mod directory;
mod private_dir;
mod publish;

use std::ffi::OsStr;
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::Error;
use crate::fork_guard::OwnedFd;
use crate::options::Options;

pub(crate) use publish::CreatedFile;

/// Longest path (or abstract name) that fits in sockaddr_un with room for the
/// terminating NUL.
pub const MAX_PATH_LEN: usize = 107;

/// Where a publisher listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A socket file in the file system.
    File(PathBuf),
    /// A Linux abstract socket name (written `@name`); it has no file and so no permissions.
    Abstract(Vec<u8>),
}

impl SocketAddress {
    /// Parses a path as callers write it: `@name` is an abstract name, anything
    /// else a file path. Paths are bytes and need not be UTF-8.
    pub fn parse(path: &[u8]) -> Result<SocketAddress, Error> {
        if path.is_empty() {
            return Err(Error::new(libc::EINVAL, "the socket path is empty"));
        }
        if path.contains(&0) {
            return Err(Error::new(
                libc::EINVAL,
                "the socket path contains a NUL byte",
            ));
        }
        if let Some(name) = path.strip_prefix(b"@") {
            if name.is_empty() {
                return Err(Error::new(
                    libc::EINVAL,
                    "the abstract socket name after '@' is empty",
                ));
            }
            if name.len() > MAX_PATH_LEN {
                return Err(Error::new(
                    libc::ENAMETOOLONG,
                    format!(
                        "abstract socket name is {} bytes; the limit is {MAX_PATH_LEN}",
                        name.len()
                    ),
                ));
            }
            return Ok(SocketAddress::Abstract(name.to_vec()));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                format!(
                    "socket path is {} bytes; the limit is {MAX_PATH_LEN} (sockaddr_un): use a shorter path, e.g. under /run",
                    path.len()
                ),
            ));
        }
        Ok(SocketAddress::File(PathBuf::from(OsStr::from_bytes(path))))
    }

    pub(crate) fn sockaddr(&self) -> (libc::sockaddr_un, libc::socklen_t) {
        // SAFETY: sockaddr_un is plain data; all zeroes is valid.
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let header = mem::size_of::<libc::sa_family_t>();
        let len = match self {
            SocketAddress::File(path) => {
                let bytes = path.as_os_str().as_bytes();
                for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
                    *dst = src as libc::c_char;
                }
                header + bytes.len() + 1
            }
            SocketAddress::Abstract(name) => {
                // sun_path[0] stays NUL: that is what makes the name abstract.
                for (dst, &src) in addr.sun_path[1..].iter_mut().zip(name) {
                    *dst = src as libc::c_char;
                }
                header + 1 + name.len()
            }
        };
        (addr, len as libc::socklen_t)
    }
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::File(path) => write!(f, "{}", path.display()),
            SocketAddress::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// A bound, listening socket, and the file it created if any.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    pub(crate) file: Option<CreatedFile>,
}

impl Listener {
    pub(crate) fn bind(address: &SocketAddress, options: &Options) -> Result<Listener, Error> {
        match address {
            SocketAddress::File(path) => publish::bind_file(path, options),
            SocketAddress::Abstract(_) => {
                let fd = new_socket().map_err(|e| Error::os("cannot create a Unix socket", e))?;
                // An abstract name is taken or not, atomically: no file, no race.
                let (addr, len) = address.sockaddr();
                // SAFETY: addr is a valid sockaddr_un of length len.
                if unsafe { libc::bind(fd.raw(), (&addr as *const libc::sockaddr_un).cast(), len) }
                    != 0
                {
                    let err = io::Error::last_os_error();
                    if err.raw_os_error() == Some(libc::EADDRINUSE) {
                        return Err(Error::new(
                            libc::EADDRINUSE,
                            format!("abstract socket name {address} is already in use by another process"),
                        ));
                    }
                    return Err(Error::os(format!("cannot bind {address}"), err));
                }
                listen(&fd, address)?;
                Ok(Listener { fd, file: None })
            }
        }
    }
}

impl Listener {
    /// Adopts a socket that is already bound and listening (systemd's
    /// LISTEN_FDS, or one the daemon made itself). Nothing is created, so close
    /// removes nothing. On error the descriptor is left as it was.
    pub(crate) fn adopt(fd: libc::c_int) -> Result<(Listener, SocketAddress), Error> {
        let option = |name: libc::c_int| -> io::Result<libc::c_int> {
            let mut value: libc::c_int = 0;
            let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: reads into a live c_int of the stated size.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    name,
                    (&mut value as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if rc == 0 {
                Ok(value)
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let not_ours = |what: &str| {
            Error::new(libc::EINVAL, format!("descriptor {fd} {what}; notif_open_fd needs a bound, listening Unix stream socket"))
        };
        if fd < 0 {
            return Err(Error::new(
                libc::EBADF,
                format!("descriptor {fd} is not a valid descriptor"),
            ));
        }
        match option(libc::SO_DOMAIN) {
            Ok(domain) if domain == libc::AF_UNIX => {}
            Ok(_) => return Err(not_ours("is not a Unix socket")),
            Err(e) => {
                return Err(Error::os(
                    format!("descriptor {fd} is not a usable socket"),
                    e,
                ))
            }
        }
        if option(libc::SO_TYPE).ok() != Some(libc::SOCK_STREAM) {
            return Err(not_ours("is not a stream socket"));
        }
        if option(libc::SO_ACCEPTCONN).ok() != Some(1) {
            return Err(not_ours(
                "is not listening (call listen() first, or let systemd do it)",
            ));
        }
        // Our thread must never block on accept, and a host's exec must not leak it.
        // SAFETY: fcntl on a descriptor we just checked is a socket.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        Ok((
            Listener {
                fd: OwnedFd::register(fd),
                file: None,
            },
            local_address(fd),
        ))
    }
}

/// The address a socket is bound to, as people write it.
fn local_address(fd: libc::c_int) -> SocketAddress {
    // SAFETY: sockaddr_un is plain data; getsockname fills at most `len` bytes.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: the pointers refer to live locals of the stated size.
    unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
    let header = mem::size_of::<libc::sa_family_t>();
    let path_len = (len as usize)
        .saturating_sub(header)
        .min(addr.sun_path.len());
    let bytes: Vec<u8> = addr.sun_path[..path_len].iter().map(|&c| c as u8).collect();
    match bytes.split_first() {
        Some((0, name)) => SocketAddress::Abstract(name.to_vec()),
        Some(_) => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            SocketAddress::File(PathBuf::from(OsStr::from_bytes(&bytes[..end])))
        }
        None => SocketAddress::Abstract(Vec::new()),
    }
}

pub(crate) fn listen(fd: &OwnedFd, address: &SocketAddress) -> Result<(), Error> {
    // SAFETY: fd is a bound socket.
    if unsafe { libc::listen(fd.raw(), libc::SOMAXCONN) } != 0 {
        return Err(Error::os(
            format!("cannot listen on {address}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub(crate) fn new_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::register(fd))
}
