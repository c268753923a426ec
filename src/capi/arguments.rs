//! Argument checks and ownership for every entry point, in one place (after
//! rustls-ffi's `try_ref_from_ptr!` family). The rule for NULL, stated once
//! in the header's opening comment: a NULL pointer where the function needs
//! an object, a string or a buffer is EINVAL, naming the argument; the
//! release functions (notif_close, notif_options_free, notif_unsubscribe)
//! take NULL as a no-op; the arguments documented "may be NULL" (the options
//! of notif_open_with and notif_open_fd, the request of notif_subscribe) mean
//! the defaults.
//!
//! Each function here is `unsafe`: its caller passes on the C caller's
//! promise (documented on each entry point) that a non-NULL pointer is live,
//! of the right type, and not used by another thread against the rules.

use std::ffi::{c_char, CStr};
use std::ptr::NonNull;

use crate::Error;

fn null(name: &str) -> Error {
    Error::new(libc::EINVAL, format!("{name} is NULL"))
}

/// A shared borrow of the object behind `ptr`.
pub(crate) unsafe fn object<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: NULL or live (the caller's promise).
    unsafe { ptr.as_ref() }.ok_or_else(|| null(name))
}

/// An exclusive borrow of the object behind `ptr` (one thread at a time, as
/// documented for the functions that take one).
pub(crate) unsafe fn object_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: NULL or live and not used by another thread (the caller's promise).
    unsafe { ptr.as_mut() }.ok_or_else(|| null(name))
}

/// An optional object: NULL means the defaults.
pub(crate) unsafe fn optional<'a, T>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: NULL or live (the caller's promise).
    unsafe { ptr.as_ref() }
}

/// The bytes of a NUL-terminated string (not necessarily UTF-8).
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a [u8], Error> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and NUL-terminated (the caller's promise).
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// An optional NUL-terminated string: NULL means the default.
pub(crate) unsafe fn optional_c_str<'a>(ptr: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: NULL or NUL-terminated (the caller's promise).
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// `len` bytes at `ptr`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const c_char,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Error> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL with `len` readable bytes (the caller's promise).
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// Where the function writes its result (written with `ptr::write`: the
/// memory may be uninitialised).
pub(crate) fn out<T>(ptr: *mut T, name: &str) -> Result<NonNull<T>, Error> {
    NonNull::new(ptr).ok_or_else(|| null(name))
}

/// Hands a new object to the caller, who releases it with the matching
/// release function (and [`release`]).
pub(crate) fn give<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back an object from [`give`] and drops it; NULL is a no-op.
pub(crate) unsafe fn release<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: from give(), released once, no other thread uses it (the caller's promise).
        drop(unsafe { Box::from_raw(ptr) });
    }
}
