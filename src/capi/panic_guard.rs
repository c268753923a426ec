//! The one place a panic is stopped before it reaches C, and the one shape of
//! every entry point: [`entry`] runs its body inside the guard and turns an
//! error (or a panic) into the failure value of the function's return type
//! ([`Failure`]), recording the message for notif_last_error().
//!
//! Unwinding across an `extern "C"` boundary aborts the host process, and the
//! library must never take its host down: a panic becomes an EIO error.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::{remember, remember_with_errno};
use crate::Error;

/// How a C function of this return type reports a failure. Every failure
/// also sets this thread's notif_last_error().
pub(crate) trait Failure {
    fn failure(error: &Error) -> Self;
}

/// int: the negative errno.
impl Failure for c_int {
    fn failure(error: &Error) -> c_int {
        remember(error)
    }
}

/// A pointer: NULL, with errno set.
impl<T> Failure for *mut T {
    fn failure(error: &Error) -> *mut T {
        remember_with_errno(error);
        std::ptr::null_mut()
    }
}

/// A pointer: NULL, with errno set.
impl<T> Failure for *const T {
    fn failure(error: &Error) -> *const T {
        remember_with_errno(error);
        std::ptr::null()
    }
}

/// A count: 0, with errno set.
impl Failure for u64 {
    fn failure(error: &Error) -> u64 {
        remember_with_errno(error);
        0
    }
}

/// Nothing to return (the release functions): the message only.
impl Failure for () {
    fn failure(error: &Error) {
        remember(error);
    }
}

/// Every entry point's body: runs `body` inside the panic guard; an `Err`
/// or a panic becomes `R`'s failure value.
pub(crate) fn entry<R: Failure>(body: impl FnOnce() -> Result<R, Error>) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => R::failure(&error),
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            // Never let the panic payload's own drop unwind into C either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            R::failure(&Error::new(
                libc::EIO,
                format!("internal error in libnotif (please report it): {detail}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_failure_value_of_each_return_type() {
        let rc: c_int = entry(|| panic!("boom"));
        assert_eq!(rc, -libc::EIO);
        let p: *mut u8 = entry(|| panic!("boom"));
        assert!(p.is_null());
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EIO)
        );
        let n: u64 = entry(|| panic!("boom"));
        assert_eq!(n, 0);
    }

    #[test]
    fn an_error_becomes_the_failure_value_and_its_message_is_kept() {
        let rc: c_int = entry(|| Err(Error::new(libc::EINVAL, "handle is NULL")));
        assert_eq!(rc, -libc::EINVAL);
        // SAFETY: notif_last_error returns a NUL-terminated string of this thread.
        let text = unsafe { std::ffi::CStr::from_ptr(super::super::notif_last_error()) };
        assert_eq!(text.to_str().unwrap(), "handle is NULL");
    }
}
