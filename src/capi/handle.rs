//! notif_open / notif_emit / notif_close and friends.

use std::ffi::{c_char, c_int};
use std::ptr;

use super::arguments::{self, bytes, c_str, give, object, optional, release};
use super::options::notif_options;
use super::panic_guard::entry;
use super::stats::{notif_stats, NOTIF_STATS_V1_SIZE};
use crate::{Error, Options, Publisher};

/// An open publisher. Opaque: create with notif_open, release with notif_close.
#[allow(non_camel_case_types)]
pub struct notif_handle {
    publisher: Publisher,
}

impl notif_handle {
    /// The publisher, if this handle belongs to this process (not to the
    /// parent of a child after fork()).
    fn current(&self) -> Result<&Publisher, Error> {
        self.publisher.check_current_process()?;
        Ok(&self.publisher)
    }
}

fn options_or_defaults(opts: Option<&notif_options>) -> Options {
    opts.map_or_else(Options::default, |o| o.get().clone())
}

fn count(n: usize) -> c_int {
    n.min(c_int::MAX as usize) as c_int
}

/// Binds a Unix stream socket at `path` with the default options, starts this
/// handle's server thread and returns the handle.
///
/// `path` is a NUL-terminated file path (bytes, not necessarily UTF-8; at most
/// 107 bytes) or `@name` for a Linux abstract socket. A stale socket file (no
/// listener) is replaced; anything else at the path is left untouched.
/// The parent directory must exist.
///
/// Returns NULL on failure, with errno set and notif_last_error() saying why:
/// EINVAL (NULL or empty path), ENAMETOOLONG, ENOENT (missing directory),
/// EEXIST (not a socket at the path), EADDRINUSE (a live publisher is there),
/// EACCES, EMFILE. The caller owns the handle and must release it with
/// notif_close(). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn notif_open(path: *const c_char) -> *mut notif_handle {
    entry(|| {
        let path = unsafe { c_str(path, "path") }?;
        Ok(give(notif_handle {
            publisher: Publisher::open_bytes(path, &Options::default())?,
        }))
    })
}

/// Like notif_open, with options. `opts` may be NULL (the defaults); it is only
/// read during the call, so the caller may free it right after.
#[no_mangle]
pub unsafe extern "C" fn notif_open_with(
    path: *const c_char,
    opts: *const notif_options,
) -> *mut notif_handle {
    entry(|| {
        let path = unsafe { c_str(path, "path") }?;
        let options = options_or_defaults(unsafe { optional(opts) });
        Ok(give(notif_handle {
            publisher: Publisher::open_bytes(path, &options)?,
        }))
    })
}

/// Serves a socket that is already bound and listening: one systemd passed
/// (LISTEN_FDS, first descriptor 3) or one the daemon made itself. `opts` may
/// be NULL (the defaults); mode and group do not apply to a socket notif did
/// not create.
///
/// On success the handle owns `fd`: notif_close closes it, and never removes
/// the socket file (notif did not create it). On failure it returns NULL with
/// errno set (EBADF: not a descriptor; ENOTSOCK: not a socket; EINVAL: not
/// a listening Unix stream socket, or bad options) and `fd` stays open and the caller's, with
/// O_NONBLOCK and FD_CLOEXEC possibly set. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn notif_open_fd(fd: c_int, opts: *const notif_options) -> *mut notif_handle {
    entry(|| {
        let options = options_or_defaults(unsafe { optional(opts) });
        Ok(give(notif_handle {
            publisher: Publisher::open_fd(fd, &options)?,
        }))
    })
}

/// Queues one notification for every connected subscriber.
///
/// `json` is a NUL-terminated string holding exactly one JSON object in UTF-8;
/// it is sent as one compact line (whitespace outside strings removed). The
/// library copies what it needs: `json` may be reused as soon as this returns.
///
/// Returns the number of subscribers connected, or a negative errno. 0:
/// nobody is connected; without a replay ring the message is then dropped
/// without being looked at, with one (notif_options_set_replay) it is checked
/// as always and kept in the ring for subscribers that resume or replay.
/// Errors: -EINVAL (NULL handle or json,
/// not exactly one JSON object, invalid UTF-8, or an object whose first
/// member is named "notif" in any spelling: that name is reserved for the
/// protocol's control lines; counted in rejected), -EMSGSIZE (over max_message),
/// -EBADF (a handle used in a child after fork()), -EAGAIN
/// (backlog full: dropped and counted). Never blocks, never raises SIGPIPE.
/// Thread-safe: any number of threads may emit on one handle at once.
#[no_mangle]
pub unsafe extern "C" fn notif_emit(handle: *mut notif_handle, json: *const c_char) -> c_int {
    entry(|| {
        let handle = unsafe { object(handle, "handle") }?;
        let json = unsafe { c_str(json, "json") }?;
        Ok(count(handle.publisher.emit(json)?))
    })
}

/// Like notif_emit, for `len` bytes at `json` (no NUL terminator needed; a NUL
/// byte inside is invalid JSON). Returns and errors as notif_emit.
#[no_mangle]
pub unsafe extern "C" fn notif_emit_len(
    handle: *mut notif_handle,
    json: *const c_char,
    len: usize,
) -> c_int {
    entry(|| {
        let handle = unsafe { object(handle, "handle") }?;
        let json = unsafe { bytes(json, len, "json") }?;
        Ok(count(handle.publisher.emit(json)?))
    })
}

/// The number of subscribers connected now (connections that only asked for
/// stats are not counted): one atomic load, never blocks. Returns >= 0, or
/// -EINVAL (NULL handle) or -EBADF (a handle used in a child after fork(): 0
/// subscribers there).
///
/// Without a replay ring, a caller whose notifications are costly to build
/// may ask this first and, when it returns 0, skip building the notification
/// and call notif_skip() so it is counted as notif_emit would have counted
/// it. With a replay ring (notif_options_set_replay) do not skip: a
/// notification emitted while nobody is connected is kept in the ring for the
/// subscribers that resume (their cursor) or replay it, and one skipped is
/// lost to them; emit every notification.
#[no_mangle]
pub unsafe extern "C" fn notif_subscribers(handle: *mut notif_handle) -> c_int {
    entry(|| {
        let handle = unsafe { object(handle, "handle") }?;
        Ok(count(handle.current()?.subscribers()))
    })
}

/// Counts one notification that the caller did not emit because
/// notif_subscribers() returned 0 (in dropped_no_subscriber, as notif_emit
/// counts it without a replay ring). Not for a handle with a replay ring:
/// there, emit the notification so that the ring keeps it (see
/// notif_subscribers). Returns 0 or -EINVAL (NULL handle). Never blocks.
#[no_mangle]
pub unsafe extern "C" fn notif_skip(handle: *mut notif_handle) -> c_int {
    entry(|| {
        unsafe { object(handle, "handle") }?.publisher.skip();
        Ok(0)
    })
}

/// Copies the handle's counters into `out`. Pass `sizeof(notif_stats)` as
/// `out_size`: a program built against an older, smaller notif_stats gets the
/// fields it knows. Returns 0, -EBADF (a handle used in a
/// child after fork(): its counters are the parent's, frozen at the fork) or
/// -EINVAL (NULL handle or out, or out_size smaller than the first version of the
/// struct). Thread-safe. It first lets the server thread take what was
/// emitted before the call (microseconds; at most 100 ms on an overloaded
/// machine), so that next_seq and the replay gauges count every notification
/// notif_emit accepted, written through or not.
#[no_mangle]
pub unsafe extern "C" fn notif_get_stats(
    handle: *mut notif_handle,
    out: *mut notif_stats,
    out_size: usize,
) -> c_int {
    entry(|| {
        let handle = unsafe { object(handle, "handle") }?;
        let target = arguments::out(out, "out")?;
        if out_size < NOTIF_STATS_V1_SIZE {
            return Err(Error::new(
                libc::EINVAL,
                format!("out_size {out_size} is smaller than notif_stats ({NOTIF_STATS_V1_SIZE} bytes at least): pass sizeof(notif_stats)"),
            ));
        }
        let stats = notif_stats::from(handle.current()?.stats());
        let size = out_size.min(std::mem::size_of::<notif_stats>()) / 8 * 8;
        // SAFETY: out has out_size writable bytes (documented) and size <= out_size.
        unsafe {
            ptr::copy_nonoverlapping(
                (&stats as *const notif_stats).cast::<u8>(),
                target.as_ptr().cast::<u8>(),
                size,
            )
        };
        Ok(0)
    })
}

/// Closes the handle: removes the socket file if it is still the one this
/// handle created, flushes queued messages to subscribers for up to the linger
/// time (default 1 s), closes every descriptor, joins the server thread and
/// frees the handle. NULL is a no-op.
///
/// No other thread may use the handle during or after this call. In a child
/// process after fork() it frees the handle only: the parent's socket file and
/// thread are left alone (the inherited descriptors were closed at fork).
#[no_mangle]
pub unsafe extern "C" fn notif_close(handle: *mut notif_handle) {
    entry(|| {
        // SAFETY: from notif_open*, closed once, unused by other threads (documented).
        unsafe { release(handle) };
        Ok(())
    })
}
