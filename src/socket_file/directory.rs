//! The directory the socket file lives in, held open for the publisher's life.
//!
//! Its path is resolved once, at open (its components may be symlinks: that is
//! the caller's choice); from then on every look-up, link and removal is made
//! relative to this descriptor with a single-component name and without
//! following a symlink, so another user who can write the directory can never
//! steer one of our steps to a file elsewhere.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::fork_guard::OwnedFd;

/// Identifies a file, so that we only ever act on the very file we looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    device: u64,
    inode: u64,
}

/// What fstat/fstatat said about a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileStatus {
    pub(crate) identity: FileIdentity,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
}

impl FileStatus {
    fn from(st: &libc::stat) -> FileStatus {
        FileStatus {
            identity: FileIdentity {
                device: st.st_dev,
                inode: st.st_ino,
            },
            mode: st.st_mode,
            uid: st.st_uid,
        }
    }

    pub(crate) fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// fstat(2) of a descriptor (O_PATH descriptors included).
pub(crate) fn fstat(fd: libc::c_int) -> io::Result<FileStatus> {
    // SAFETY: stat is plain data; fstat writes it fully on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileStatus::from(&st))
}

/// fstatat(2) of `name` in the directory `dir`, not following a symlink.
pub(crate) fn stat_at(dir: libc::c_int, name: &CStr) -> io::Result<FileStatus> {
    // SAFETY: stat is plain data; fstatat writes it fully on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: name is NUL-terminated and st is a valid out-pointer.
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileStatus::from(&st))
}

/// The name of the file a descriptor refers to (or of `below` in that
/// directory), through /proc: at most 40 bytes plus `below`, whatever the
/// file's real path, and it reaches exactly that file (the kernel follows the
/// descriptor, not a name).
pub(crate) fn proc_path(fd: libc::c_int, below: &[u8]) -> CString {
    let mut path = format!("/proc/self/fd/{fd}").into_bytes();
    if !below.is_empty() {
        path.push(b'/');
        path.extend_from_slice(below);
    }
    CString::new(path).expect("no NUL in a /proc path")
}

/// Whether /proc is missing (not mounted in this mount namespace or chroot).
pub(crate) fn proc_missing() -> bool {
    std::fs::metadata("/proc/self/fd").is_err()
}

/// The message for a failure, saying so when /proc is missing.
pub(crate) fn without_proc(err: io::Error, what: &str) -> Error {
    if err.raw_os_error() == Some(libc::ENOENT) && proc_missing() {
        return Error::new(
            libc::ENOENT,
            format!("cannot {what}: /proc is not mounted (notif reaches its private directory through /proc/self/fd): mount /proc, or pass a socket you bound yourself to notif_open_fd"),
        );
    }
    Error::os(format!("cannot {what}"), err)
}

/// bind(2) or connect(2).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SocketCall {
    Bind,
    Connect,
}

/// Binds or connects `socket` to the file path `path` (at most 107 bytes).
pub(crate) fn socket_call(socket: libc::c_int, call: SocketCall, path: &CStr) -> io::Result<()> {
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.to_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = (mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    let addr = (&addr as *const libc::sockaddr_un).cast();
    // SAFETY: addr is a valid sockaddr_un of length len.
    let rc = unsafe {
        match call {
            SocketCall::Bind => libc::bind(socket, addr, len),
            SocketCall::Connect => libc::connect(socket, addr, len),
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds or connects `socket` to `name` in the directory `dir`: through
/// /proc/self/fd, or, where /proc is not mounted, from a thread of our own
/// whose current directory (unshared from the process's, which stays as it
/// is) is that directory.
pub(crate) fn socket_call_at(
    socket: libc::c_int,
    call: SocketCall,
    dir: libc::c_int,
    name: &CStr,
) -> io::Result<()> {
    match socket_call(socket, call, &proc_path(dir, name.to_bytes())) {
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) && proc_missing() => {
            in_directory(dir, || socket_call(socket, call, name))
        }
        other => other,
    }
}

/// Runs `f` in a new thread whose current directory is `dir`. The thread
/// unshares its file-system attributes first (CLONE_FS), so the process's
/// current directory never changes, not even for an instant.
pub(crate) fn in_directory<T: Send>(
    dir: libc::c_int,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("notif-open".into())
            .spawn_scoped(scope, move || {
                // SAFETY: unshare(CLONE_FS) and fchdir affect this thread only.
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: as above.
                if unsafe { libc::fchdir(dir) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            })?;
        helper
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("notif's helper thread panicked")))
    })
}

/// The socket's directory, opened once.
#[derive(Debug)]
pub(crate) struct Directory {
    fd: OwnedFd,
    /// The directory as the caller wrote it, for messages.
    shown: PathBuf,
}

/// A socket path split into its directory and the file name in it.
pub(crate) struct SplitPath<'a> {
    pub(crate) directory: &'a [u8],
    pub(crate) name: &'a [u8],
}

/// Splits at the last '/', byte-exactly (std's Path would normalise "a/." to
/// "a", which names something else).
pub(crate) fn split(path: &Path) -> Result<SplitPath<'_>, Error> {
    let bytes = path.as_os_str().as_bytes();
    let (directory, name): (&[u8], &[u8]) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &bytes[1..]),
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (b".", bytes),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Error::new(
            libc::EINVAL,
            format!(
                "the socket path {} does not end in a file name",
                path.display()
            ),
        ));
    }
    Ok(SplitPath { directory, name })
}

impl Directory {
    /// Opens the directory `path` will be created in.
    pub(crate) fn open(directory: &[u8], path: &Path) -> Result<Directory, Error> {
        let shown = PathBuf::from(std::ffi::OsStr::from_bytes(directory));
        let c_dir = CString::new(directory).expect("SocketAddress::parse rejected NUL bytes");
        // SAFETY: c_dir is NUL-terminated. O_PATH needs no permission on the
        // directory itself: creating in it is checked when we create.
        let fd = unsafe {
            libc::open(
                c_dir.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENOENT) => Error::new(
                    libc::ENOENT,
                    format!(
                        "directory {} does not exist; create it first (notif does not create directories)",
                        shown.display()
                    ),
                ),
                Some(libc::ENOTDIR) => Error::new(
                    libc::ENOTDIR,
                    format!(
                        "{} is not a directory, so {} cannot be created",
                        shown.display(),
                        path.display()
                    ),
                ),
                _ => Error::os(format!("cannot use directory {}", shown.display()), err),
            });
        }
        Ok(Directory {
            fd: OwnedFd::register(fd),
            shown,
        })
    }

    pub(crate) fn raw(&self) -> libc::c_int {
        self.fd.raw()
    }

    pub(crate) fn shown(&self) -> &Path {
        &self.shown
    }

    /// What is at `name` in the directory (a symlink itself, not its target).
    pub(crate) fn stat(&self, name: &CStr) -> io::Result<FileStatus> {
        stat_at(self.raw(), name)
    }

    /// Removes `name` if it is still the file `identity` names (see [`remove_if`]).
    pub(crate) fn remove_if(
        &self,
        name: &CStr,
        identity: FileIdentity,
        flags: libc::c_int,
    ) -> io::Result<bool> {
        remove_if(self.raw(), name, identity, flags)
    }

    /// Keeps only the descriptor (for the publisher's life).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// Removes `name` in `dir` if it is still the file `identity` names. Between
/// the check and the removal another user can only have swapped in something
/// they could have removed themselves: a directory that lets them rename over
/// our names lets them unlink anything in it too.
pub(crate) fn remove_if(
    dir: libc::c_int,
    name: &CStr,
    identity: FileIdentity,
    flags: libc::c_int,
) -> io::Result<bool> {
    if !matches!(stat_at(dir, name), Ok(now) if now.identity == identity) {
        return Ok(false);
    }
    // SAFETY: name is NUL-terminated.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), flags) } != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::NotFound {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}
