//! Putting the listening socket at its path, and taking it away at close.
//!
//! The socket is bound, given its group and mode, and put in the listening
//! state in a private directory, and only then linked to the requested name.
//! link() never replaces an existing file, and a socket seen at the path is
//! therefore always one that listens with its final permissions: a concurrent
//! opener that finds nobody answering there is looking at a real leftover, not
//! at a publisher between bind() and listen() (which it would otherwise remove,
//! leaving two publishers each believing it owns the path).

use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;

use super::directory::{self, Directory, FileIdentity, SocketCall};
use super::private_dir::PrivateDir;
use super::{listen, new_socket, Listener, SocketAddress};
use crate::error::Error;
use crate::fork_guard::OwnedFd;
use crate::options::Options;

/// The socket file a publisher created, remembered (with its directory, held
/// open) so close removes that file and no other.
#[derive(Debug)]
pub(crate) struct CreatedFile {
    directory: OwnedFd,
    name: CString,
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
        // A failure leaves a stale socket, which the next open recovers.
        let _ = directory::remove_if(self.directory.raw(), &self.name, self.identity, 0);
    }
}

pub(crate) fn bind_file(path: &Path, options: &Options) -> Result<Listener, Error> {
    let split = directory::split(path)?;
    let name = CString::new(split.name).expect("SocketAddress::parse rejected NUL bytes");
    let dir = Directory::open(split.directory, path)?;
    let fd = new_socket().map_err(|e| Error::os("cannot create a Unix socket", e))?;
    // Linux creates the socket file with the socket's own mode, masked by the
    // umask. Owner-only from the start: the file is never more open than
    // configured, not even inside our private directory.
    // SAFETY: fchmod on the socket we just created.
    if unsafe { libc::fchmod(fd.raw(), (options.mode & 0o700) as libc::mode_t) } != 0 {
        return Err(Error::os(
            "cannot restrict the new socket's mode",
            io::Error::last_os_error(),
        ));
    }
    let address = SocketAddress::File(path.to_path_buf());
    let private = PrivateDir::bind(&dir, &fd)?;
    let published = (|| {
        private.restrict_access(options, &path.display())?;
        listen(&fd, &address)?;
        let socket = private
            .socket_status()
            .map_err(|e| Error::os("cannot stat the new socket", e))?;
        publish(&private, &dir, &name, path)?;
        // Linked: make sure the name is ours (another user who can write the
        // directory may already have renamed something over it).
        match dir.stat(&name) {
            Ok(now) if now.identity == socket.identity => Ok(socket.identity),
            _ => Err(Error::new(
                libc::EADDRINUSE,
                format!(
                    "{} was replaced by another process right after notif created it; notif leaves it untouched",
                    path.display()
                ),
            )),
        }
    })();
    // The private name is only a step: the socket lives on under `path`.
    private.remove(&dir);
    let identity = published?;
    Ok(Listener {
        fd,
        file: Some(CreatedFile {
            directory: dir.into_fd(),
            name,
            identity,
            generation: crate::fork_guard::generation(),
        }),
    })
}

/// Links the listening socket to `name`, replacing only a stale socket.
fn publish(private: &PrivateDir, dir: &Directory, name: &CStr, path: &Path) -> Result<(), Error> {
    for _ in 0..3 {
        match private.link_to(dir, name) {
            Ok(()) => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
                take_over_if_stale(dir, name, path)?;
            }
            Err(err) => return Err(Error::os(format!("cannot create {}", path.display()), err)),
        }
    }
    Err(Error::new(
        libc::EADDRINUSE,
        format!(
            "{} keeps being recreated by another process; notif leaves it untouched",
            path.display()
        ),
    ))
}

/// Something is at the name: remove it only if it is a socket nobody listens on.
fn take_over_if_stale(dir: &Directory, name: &CStr, path: &Path) -> Result<(), Error> {
    let probed = match dir.stat(name) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()), // gone meanwhile: link again
        Err(e) => return Err(Error::os(format!("cannot stat {}", path.display()), e)),
    };
    if probed.file_type() != libc::S_IFSOCK {
        let what = match probed.file_type() {
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
    // Probe that very file: hold it by an O_PATH descriptor and connect
    // through /proc/self/fd, so neither a symlink in the caller's path nor a
    // rename in the directory can make us probe another socket.
    // SAFETY: name is NUL-terminated.
    let held = unsafe {
        libc::openat(
            dir.raw(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if held < 0 {
        let err = io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ELOOP)) {
            return Ok(()); // replaced meanwhile: look again
        }
        return Err(Error::os(format!("cannot open {}", path.display()), err));
    }
    let held = OwnedFd::register(held);
    if !matches!(directory::fstat(held.raw()), Ok(now) if now.identity == probed.identity) {
        return Ok(()); // replaced meanwhile: look again
    }
    let probe = new_socket().map_err(|e| Error::os("cannot create a Unix socket", e))?;
    // The probe is non-blocking: a live listener with a full backlog answers
    // EAGAIN, which also means "alive".
    let answered = match directory::socket_call(
        probe.raw(),
        SocketCall::Connect,
        &directory::proc_path(held.raw(), b""),
    ) {
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) && directory::proc_missing() => {
            directory::in_directory(dir.raw(), || {
                directory::socket_call(probe.raw(), SocketCall::Connect, name)
            })
        }
        other => other,
    };
    // Connected: the listener's credentials (those of the process that called
    // listen(), as the kernel recorded them) say who holds the path.
    let holder = answered
        .as_ref()
        .ok()
        .and_then(|()| peer_credentials(probe.raw()));
    drop(probe);
    drop(held);
    match answered.as_ref().map_err(io::Error::raw_os_error) {
        Err(Some(libc::ECONNREFUSED)) => {
            // Remove only the very file that did not answer: if another
            // process replaced it meanwhile, go back and try again.
            dir.remove_if(name, probed.identity, 0).map_err(|e| {
                Error::os(format!("cannot remove stale socket {}", path.display()), e)
            })?;
            Ok(())
        }
        Ok(()) | Err(Some(libc::EAGAIN)) | Err(Some(libc::EINPROGRESS)) => Err(Error::new(
            libc::EADDRINUSE,
            format!(
                "another process{} is already publishing on {}; notif leaves it untouched",
                holder.map(describe_holder).unwrap_or_default(),
                path.display()
            ),
        )),
        Err(_) => Err(Error::os(
            format!("{} exists and cannot be probed", path.display()),
            answered.unwrap_err(),
        )),
    }
}

/// The peer credentials of a connected Unix socket (SO_PEERCRED).
fn peer_credentials(fd: libc::c_int) -> Option<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len describe a writable ucred.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // pid 0: the listener is in another pid namespace (or the kernel did not say).
    (rc == 0 && cred.pid > 0).then_some(cred)
}

/// " (pid 1234, user nova)", or " (pid 1234, uid 1000)" when the uid has no name.
fn describe_holder(cred: libc::ucred) -> String {
    match user_name(cred.uid) {
        Some(name) => format!(" (pid {}, user {name})", cred.pid),
        None => format!(" (pid {}, uid {})", cred.pid, cred.uid),
    }
}

/// The name of a uid in the password database (getpwuid_r), if it has one.
fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live, writable buffer of the stated size.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name points into buffer, NUL-terminated.
    let name = unsafe { CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}
