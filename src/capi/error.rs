//! Error reporting to C: negative errno returns, errno for functions that
//! return pointers, and a per-thread message for people.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use super::panic_guard::entry;
use crate::Error;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `error` as this thread's last error and returns `-errno`.
pub(crate) fn remember(error: &Error) -> c_int {
    let message = CString::new(error.message().replace('\0', "\\0")).unwrap_or_default();
    // try_with: a thread being torn down has no slot left; the code still goes back.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = message);
    -error.errno()
}

/// Like `remember`, for functions that return a pointer: sets errno.
pub(crate) fn remember_with_errno(error: &Error) {
    remember(error);
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = error.errno() };
}

/// The message of the last failed notif call on this thread ("" if none).
///
/// The string belongs to the library and stays valid until the next failing
/// notif call on the same thread. Thread-safe: each thread has its own.
#[no_mangle]
pub extern "C" fn notif_last_error() -> *const c_char {
    entry(|| {
        Ok(LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(c"".as_ptr()))
    })
}

/// A static description of a notif error code. Accepts the negative values the
/// functions return as well as positive errno values; never returns NULL.
/// The string is static: do not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn notif_strerror(code: c_int) -> *const c_char {
    entry(|| Ok(strerror(code)))
}

fn strerror(code: c_int) -> *const c_char {
    // INT_MIN has no positive counterpart: it is simply not a code of ours.
    let text: &'static std::ffi::CStr = match code.checked_abs().unwrap_or(-1) {
        0 => c"success",
        libc::EINVAL => c"invalid argument: not exactly one JSON object in UTF-8, a NULL argument, or a bad option value",
        libc::EMSGSIZE => c"message too large: over the publisher's max_message",
        libc::EBADF => c"bad handle: a publisher used in a child process after fork()",
        libc::EAGAIN => c"backlog full: the message was dropped and counted",
        libc::ENAMETOOLONG => c"socket path too long for a Unix socket (107 bytes at most)",
        libc::EEXIST => c"something that is not a socket exists at the path",
        libc::EADDRINUSE => c"another process is already publishing on this socket",
        libc::ENOENT => c"no such file, directory or group",
        libc::ENOTDIR => c"a component of the socket path is not a directory",
        libc::EACCES => c"permission denied (by the socket file, or by the publisher's allow-lists)",
        libc::EUSERS => c"the publisher is full: it has max_subscribers subscribers",
        libc::EPROTO => c"the publisher refused the subscription request",
        libc::EPERM => c"operation not permitted",
        libc::ENOMEM => c"out of memory",
        libc::EMFILE | libc::ENFILE => c"too many open files",
        libc::EIO => c"internal error in libnotif",
        _ => c"unknown error",
    };
    text.as_ptr()
}
