//! The listening socket and the file it lives at.
//!
//! Following nng rather than ZeroMQ: an existing socket file is probed with
//! connect() and removed only when nobody answers (a live publisher is never
//! evicted); anything that is not a socket is never touched; the file is
//! created owner-only and given its configured group and mode before listen(),
//! so neither the umask nor a race with connect() ever lets in a peer the
//! configuration does not; and close removes the file only if it is still the
//! very file this publisher created.

use std::ffi::OsStr;
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::fork_guard::OwnedFd;
use crate::options::Options;

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

/// Identifies the file a publisher created, so close never removes a file
/// that another process has since put at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

fn identity_of(path: &Path) -> io::Result<(FileIdentity, u32)> {
    let c_path = c_path(path);
    // SAFETY: stat is plain data; lstat writes it fully on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and st is a valid out-pointer.
    if unsafe { libc::lstat(c_path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        FileIdentity {
            device: st.st_dev,
            inode: st.st_ino,
        },
        st.st_mode,
    ))
}

fn c_path(path: &Path) -> std::ffi::CString {
    // SocketAddress::parse rejected NUL bytes already.
    std::ffi::CString::new(path.as_os_str().as_bytes()).expect("socket path without NUL")
}

/// The socket file a publisher created, remembered so close removes that file
/// and no other.
#[derive(Debug)]
pub(crate) struct CreatedFile {
    path: PathBuf,
    identity: FileIdentity,
    generation: u64,
}

impl CreatedFile {
    /// Removes the file if it is still the one we created, and only in the
    /// process that created it (a forked child must leave its parent's file alone).
    pub(crate) fn remove_if_ours(self) {
        if self.generation != crate::fork_guard::generation() {
            return;
        }
        if matches!(identity_of(&self.path), Ok((now, _)) if now == self.identity) {
            let c_path = c_path(&self.path);
            // SAFETY: c_path is NUL-terminated. A failure leaves a stale
            // socket, which the next open recovers.
            unsafe { libc::unlink(c_path.as_ptr()) };
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
            SocketAddress::File(path) => bind_file(path, options),
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

fn listen(fd: &OwnedFd, address: &SocketAddress) -> Result<(), Error> {
    // SAFETY: fd is a bound socket.
    if unsafe { libc::listen(fd.raw(), libc::SOMAXCONN) } != 0 {
        return Err(Error::os(
            format!("cannot listen on {address}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Binds a socket file so that the path only ever holds a socket that is
/// listening with its final permissions.
///
/// The socket is bound, given its group and mode, and put in the listening
/// state under a private temporary name in the same directory, and only then
/// linked to the requested path. link() never replaces an existing file, and a
/// socket seen at the path is therefore always one that listens: a concurrent
/// opener that finds nobody answering there is looking at a real leftover, not
/// at a publisher between bind() and listen() (which it would otherwise remove,
/// leaving two publishers each believing it owns the path).
fn bind_file(path: &Path, options: &Options) -> Result<Listener, Error> {
    check_parent_directory(path)?;
    let fd = new_socket().map_err(|e| Error::os("cannot create a Unix socket", e))?;
    // Linux creates the socket file with the socket's own mode, masked by the
    // umask. Making that owner-only before bind() means the file is never more
    // open than configured, not even for an instant: connect() checks
    // permissions when it looks the path up and only later whether the socket
    // listens, so a chmod between bind() and listen() alone could be raced.
    // SAFETY: fchmod on the socket we just created.
    if unsafe { libc::fchmod(fd.raw(), (options.mode & 0o700) as libc::mode_t) } != 0 {
        return Err(Error::os(
            "cannot restrict the new socket's mode",
            io::Error::last_os_error(),
        ));
    }
    let temporary = bind_temporary(&fd, path)?;
    let published = (|| {
        restrict_access(&temporary, options)?;
        listen(&fd, &SocketAddress::File(path.to_path_buf()))?;
        publish(&temporary, path)
    })();
    // The temporary name is only a step: the socket lives on under `path`.
    let c_temporary = c_path(&temporary);
    // SAFETY: c_temporary is NUL-terminated.
    unsafe { libc::unlink(c_temporary.as_ptr()) };
    let identity = published?;
    Ok(Listener {
        fd,
        file: Some(CreatedFile {
            path: path.to_path_buf(),
            identity,
            generation: crate::fork_guard::generation(),
        }),
    })
}

/// Binds `fd` to a fresh name next to `path`, returning that name.
fn bind_temporary(fd: &OwnedFd, path: &Path) -> Result<PathBuf, Error> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for _ in 0..16 {
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            ".notif-{:x}",
            std::process::id() ^ nanos ^ unique.rotate_left(16)
        );
        let temporary = directory.join(name);
        if temporary.as_os_str().len() > MAX_PATH_LEN {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                format!(
                    "the directory {} is too long: notif needs {} bytes for a temporary name beside the socket, over the limit of {MAX_PATH_LEN}",
                    directory.display(),
                    temporary.as_os_str().len()
                ),
            ));
        }
        let (addr, len) = SocketAddress::File(temporary.clone()).sockaddr();
        // SAFETY: addr is a valid sockaddr_un of length len.
        if unsafe { libc::bind(fd.raw(), (&addr as *const libc::sockaddr_un).cast(), len) } == 0 {
            return Ok(temporary);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EADDRINUSE) {
            return Err(Error::os(
                format!("cannot create a socket in {}", directory.display()),
                err,
            ));
        }
    }
    Err(Error::new(
        libc::EEXIST,
        format!(
            "cannot find a free temporary name in {}",
            directory.display()
        ),
    ))
}

/// Links the listening socket at `temporary` to `path`, replacing only a stale
/// socket; returns the identity of the published file.
fn publish(temporary: &Path, path: &Path) -> Result<FileIdentity, Error> {
    let (c_temporary, c_final) = (c_path(temporary), c_path(path));
    for _ in 0..3 {
        // SAFETY: both paths are NUL-terminated.
        if unsafe { libc::link(c_temporary.as_ptr(), c_final.as_ptr()) } == 0 {
            let (identity, _) = identity_of(path)
                .map_err(|e| Error::os(format!("cannot stat {}", path.display()), e))?;
            return Ok(identity);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::os(format!("cannot create {}", path.display()), err));
        }
        take_over_if_stale(path, &SocketAddress::File(path.to_path_buf()))?;
    }
    Err(Error::new(
        libc::EADDRINUSE,
        format!(
            "{} keeps being recreated by another process; notif leaves it untouched",
            path.display()
        ),
    ))
}

fn new_socket() -> io::Result<OwnedFd> {
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

fn check_parent_directory(path: &Path) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => return Ok(()), // a bare name: the current directory
    };
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            libc::ENOTDIR,
            format!(
                "{} is not a directory, so {} cannot be created",
                parent.display(),
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::new(
            libc::ENOENT,
            format!(
                "directory {} does not exist; create it first (notif does not create directories)",
                parent.display()
            ),
        )),
        Err(e) => Err(Error::os(
            format!("cannot use directory {}", parent.display()),
            e,
        )),
    }
}

/// Something is at the path: replace it only if it is a socket nobody listens on.
fn take_over_if_stale(path: &Path, address: &SocketAddress) -> Result<(), Error> {
    let (probed, mode) = match identity_of(path) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()), // gone meanwhile: bind again
        Err(e) => return Err(Error::os(format!("cannot stat {}", path.display()), e)),
    };
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        let what = match mode & libc::S_IFMT {
            libc::S_IFREG => "a regular file",
            libc::S_IFDIR => "a directory",
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFIFO => "a FIFO",
            _ => "not a socket",
        };
        return Err(Error::new(
            libc::EEXIST,
            format!("{} exists and is {what}; notif leaves it untouched: remove it or choose another path", path.display()),
        ));
    }
    let probe = new_socket().map_err(|e| Error::os("cannot create a Unix socket", e))?;
    let (addr, len) = address.sockaddr();
    // SAFETY: addr is a valid sockaddr_un. The probe is non-blocking: a live
    // listener with a full backlog answers EAGAIN, which also means "alive".
    let rc = unsafe { libc::connect(probe.raw(), (&addr as *const libc::sockaddr_un).cast(), len) };
    let err = io::Error::last_os_error();
    drop(probe);
    match (rc, err.raw_os_error()) {
        (_, Some(libc::ECONNREFUSED)) if rc != 0 => {
            // Remove only the very file that did not answer: if another
            // process replaced it meanwhile, go back and try again.
            if !matches!(identity_of(path), Ok((now, _)) if now == probed) {
                return Ok(());
            }
            let c_path = c_path(path);
            // SAFETY: c_path is NUL-terminated.
            if unsafe { libc::unlink(c_path.as_ptr()) } != 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::NotFound {
                    return Err(Error::os(
                        format!("cannot remove stale socket {}", path.display()),
                        err,
                    ));
                }
            }
            Ok(())
        }
        (0, _) | (_, Some(libc::EAGAIN)) | (_, Some(libc::EINPROGRESS)) => Err(Error::new(
            libc::EADDRINUSE,
            format!(
                "another process is already publishing on {}; notif leaves it untouched",
                path.display()
            ),
        )),
        _ => Err(Error::os(
            format!("{} exists and cannot be probed", path.display()),
            err,
        )),
    }
}

fn restrict_access(path: &Path, options: &Options) -> Result<(), Error> {
    let c_path = c_path(path);
    if let Some(gid) = options.group {
        // SAFETY: c_path is NUL-terminated; uid -1 leaves the owner as is.
        if unsafe { libc::chown(c_path.as_ptr(), u32::MAX, gid) } != 0 {
            return Err(Error::os(
                format!("cannot give {} to group {gid}", path.display()),
                io::Error::last_os_error(),
            ));
        }
    }
    // chmod after chown: chown may clear set-id bits, and we want the exact mode.
    // SAFETY: c_path is NUL-terminated.
    if unsafe { libc::chmod(c_path.as_ptr(), options.mode as libc::mode_t) } != 0 {
        return Err(Error::os(
            format!("cannot set mode {:o} on {}", options.mode, path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
