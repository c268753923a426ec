//! A directory of ours, mode 0700, inside the socket's directory: the socket
//! is bound there and given its group and mode, where nobody but us (and root)
//! can rename, replace or even reach anything, before it is linked to its
//! final name.
//!
//! Only the private directory's own name sits in the shared directory, and it
//! is used exactly twice: once to open the directory we just made (the
//! descriptor is then checked to be a directory owned by us that nobody else
//! can write, else another user swapped it and we try another name), and once
//! to remove it (only if the name still names that very directory). The
//! socket is bound through `/proc/self/fd/<descriptor>/s`, a path of at most
//! 40 bytes, so how long the shared directory's path is does not matter.
//!
//! The check cannot tell our new directory from another directory of our own
//! user that nobody else can write either and that another user renamed over
//! its name (they may rename within the shared directory without owning
//! what they move). Nothing is lost then: nobody else can change anything in
//! it, and we only create our socket there and remove it again; binding fails
//! (and we try another name) if ours would collide with a file in it.

use std::ffi::{CStr, CString};
use std::io;

use super::directory::{self, Directory, FileIdentity, FileStatus, SocketCall};
use crate::error::Error;
use crate::fork_guard::OwnedFd;
use crate::options::Options;

/// The socket's name inside the private directory.
const SOCKET_NAME: &CStr = c"s";

/// How many private directories we try before concluding that another user
/// keeps replacing them.
const ATTEMPTS: usize = 16;

#[derive(Debug)]
pub(crate) struct PrivateDir {
    fd: OwnedFd,
    name: CString,
    identity: FileIdentity,
    /// Whether `s` exists in it (bound by us).
    bound: bool,
}

/// Why one attempt did not give us a private directory.
enum Attempt {
    /// The name was taken or our directory was swapped: try another name.
    Again,
    Failed(Error),
}

impl PrivateDir {
    /// Makes a private directory in `dir` and binds `socket` in it.
    pub(crate) fn bind(dir: &Directory, socket: &OwnedFd) -> Result<PrivateDir, Error> {
        for _ in 0..ATTEMPTS {
            match PrivateDir::try_bind(dir, socket) {
                Ok(private) => return Ok(private),
                Err(Attempt::Again) => continue,
                Err(Attempt::Failed(error)) => return Err(error),
            }
        }
        Err(Error::new(
            libc::EEXIST,
            format!(
                "the private directories notif made in {} were replaced {ATTEMPTS} times in a row: another user can write that directory and it has no sticky bit; use a directory only the publisher can write (e.g. 0755), or one with the sticky bit",
                dir.shown().display()
            ),
        ))
    }

    fn try_bind(dir: &Directory, socket: &OwnedFd) -> Result<PrivateDir, Attempt> {
        let name = CString::new(format!(".notif-{:016x}", random_u64())).expect("no NUL");
        // SAFETY: name is NUL-terminated; mkdirat creates, never follows.
        if unsafe { libc::mkdirat(dir.raw(), name.as_ptr(), 0o700) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EEXIST) {
                return Err(Attempt::Again);
            }
            return Err(Attempt::Failed(Error::os(
                format!("cannot create a socket in {}", dir.shown().display()),
                err,
            )));
        }
        // SAFETY: as above. O_NOFOLLOW: a symlink put at the name is refused.
        let fd = unsafe {
            libc::openat(
                dir.raw(),
                name.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                // Something that is not our directory is at the name now.
                Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::ENOENT) => Err(Attempt::Again),
                _ => {
                    // E.g. out of descriptors: remove the (empty) directory by
                    // name, unchecked. Only another user who could remove an
                    // empty directory there themselves can have swapped it.
                    // SAFETY: name is NUL-terminated.
                    unsafe { libc::unlinkat(dir.raw(), name.as_ptr(), libc::AT_REMOVEDIR) };
                    Err(Attempt::Failed(Error::os(
                        format!(
                            "cannot open the directory notif made in {}",
                            dir.shown().display()
                        ),
                        err,
                    )))
                }
            };
        }
        let fd = OwnedFd::register(fd);
        let status = directory::fstat(fd.raw())
            .map_err(|e| Attempt::Failed(Error::os("cannot stat the directory notif made", e)))?;
        if !is_ours(&status) {
            // Swapped for another user's directory: leave it alone.
            return Err(Attempt::Again);
        }
        let mut private = PrivateDir {
            fd,
            name,
            identity: status.identity,
            bound: false,
        };
        if status.mode & 0o700 != 0o700 {
            // A umask that takes our own bits away: give them back, on the
            // very directory we checked.
            let own = directory::proc_path(private.fd.raw(), b"");
            // SAFETY: own is NUL-terminated; it names our directory's inode.
            if unsafe { libc::chmod(own.as_ptr(), 0o700) } != 0 {
                let err = io::Error::last_os_error();
                private.remove(dir);
                return Err(Attempt::Failed(directory::without_proc(
                    err,
                    "make notif's private directory usable",
                )));
            }
        }
        let bound = directory::socket_call_at(
            socket.raw(),
            SocketCall::Bind,
            private.fd.raw(),
            SOCKET_NAME,
        );
        match bound {
            Ok(()) => {
                private.bound = true;
                Ok(private)
            }
            Err(err) => {
                private.remove(dir);
                match err.raw_os_error() {
                    // Not a fresh directory after all (someone else's of ours),
                    // or removed by another user meanwhile: try another.
                    Some(libc::EADDRINUSE) => Err(Attempt::Again),
                    Some(libc::ENOENT) if !directory::proc_missing() => Err(Attempt::Again),
                    _ => Err(Attempt::Failed(directory::without_proc(
                        err,
                        &format!("create a socket in {}", dir.shown().display()),
                    ))),
                }
            }
        }
    }

    /// Gives the bound socket its group and mode: by a name only we can
    /// reach, so no other file can be changed instead.
    pub(crate) fn restrict_access(
        &self,
        options: &Options,
        shown: &dyn std::fmt::Display,
    ) -> Result<(), Error> {
        if let Some(gid) = options.group {
            // SAFETY: the name is NUL-terminated; uid -1 leaves the owner as is.
            if unsafe {
                libc::fchownat(
                    self.fd.raw(),
                    SOCKET_NAME.as_ptr(),
                    u32::MAX,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } != 0
            {
                return Err(Error::os(
                    format!("cannot give {shown} to group {gid}"),
                    io::Error::last_os_error(),
                ));
            }
        }
        // chmod after chown: chown may clear set-id bits, and we want the exact mode.
        // SAFETY: as above; "s" is our socket (nobody else can replace it).
        if unsafe {
            libc::fchmodat(
                self.fd.raw(),
                SOCKET_NAME.as_ptr(),
                options.mode as libc::mode_t,
                0,
            )
        } != 0
        {
            return Err(Error::os(
                format!("cannot set mode {:o} on {shown}", options.mode),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The identity of the bound socket file.
    pub(crate) fn socket_status(&self) -> io::Result<FileStatus> {
        directory::stat_at(self.fd.raw(), SOCKET_NAME)
    }

    /// Links the socket to `name` in `dir`. Never replaces: EEXIST if taken.
    pub(crate) fn link_to(&self, dir: &Directory, name: &CStr) -> io::Result<()> {
        // SAFETY: both names are NUL-terminated; flags 0: "s" is not followed.
        if unsafe {
            libc::linkat(
                self.fd.raw(),
                SOCKET_NAME.as_ptr(),
                dir.raw(),
                name.as_ptr(),
                0,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes the socket's private name and the directory. The directory is
    /// removed only if its name still names it: if another user moved it, it
    /// stays where they put it (empty), and whatever they put at the name is
    /// left alone.
    pub(crate) fn remove(mut self, dir: &Directory) {
        if self.bound {
            // SAFETY: the name is NUL-terminated. Failure leaves an empty
            // private socket nobody else can reach.
            unsafe { libc::unlinkat(self.fd.raw(), SOCKET_NAME.as_ptr(), 0) };
            self.bound = false;
        }
        let _ = dir.remove_if(&self.name, self.identity, libc::AT_REMOVEDIR);
    }
}

/// A directory we made and that only we can change: owned by our effective
/// uid, no permission bits for group or others (the set-gid bit a set-gid
/// parent passes on is fine). Another user cannot make such a directory.
fn is_ours(status: &FileStatus) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    status.file_type() == libc::S_IFDIR && status.uid == euid && status.mode & 0o077 == 0
}

/// A name nobody can guess in advance (so it cannot be prepared for us).
fn random_u64() -> u64 {
    let mut value = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into value.
    let n = unsafe {
        libc::getrandom(
            (&mut value as *mut u64).cast(),
            std::mem::size_of::<u64>(),
            libc::GRND_NONBLOCK,
        )
    };
    if n == std::mem::size_of::<u64>() as isize {
        return value;
    }
    // No entropy yet (early boot): unique is enough, mkdirat never reuses a name.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .rotate_left(48)
}
