//! Who is on the other end of a connection, and whether the publisher's
//! allow-lists let them in. The socket file's mode and group decide who can
//! connect at all; the allow-lists narrow that further, per connection, with
//! credentials the kernel vouches for (SO_PEERCRED, SO_PEERGROUPS).

use std::mem;
use std::os::fd::RawFd;

/// Whether the peer of `fd` may subscribe: its uid is in `uids`, or its
/// primary or one of its supplementary groups is in `gids`. Empty lists allow
/// everyone who could open the socket. Unknown credentials are refused.
pub(crate) fn peer_allowed(
    fd: RawFd,
    credentials: Option<libc::ucred>,
    uids: &[u32],
    gids: &[u32],
) -> bool {
    if uids.is_empty() && gids.is_empty() {
        return true;
    }
    let Some(credentials) = credentials else {
        return false;
    };
    if uids.contains(&credentials.uid) || gids.contains(&credentials.gid) {
        return true;
    }
    !gids.is_empty() && peer_groups(fd).iter().any(|gid| gids.contains(gid))
}

/// The peer's pid, uid and gid as they were when it connected.
pub(crate) fn peer_credentials(fd: RawFd) -> Option<libc::ucred> {
    // SAFETY: ucred is plain data; getsockopt fills at most `len` bytes.
    let mut credentials: libc::ucred = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the pointers refer to live locals of the stated size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(credentials)
}

/// The peer's supplementary groups as they were when it connected (Linux 4.13+;
/// empty where the kernel does not know the option).
fn peer_groups(fd: RawFd) -> Vec<u32> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * mem::size_of::<u32>()) as libc::socklen_t;
        // SAFETY: `groups` has `len` writable bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / mem::size_of::<u32>());
            return groups;
        }
        // ERANGE: the kernel wrote the size it needs into len.
        let needed = len as usize / mem::size_of::<u32>();
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE)
            || needed <= groups.len()
        {
            return Vec::new();
        }
        groups.resize(needed, 0);
    }
}
