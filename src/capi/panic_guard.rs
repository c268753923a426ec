//! The one place a panic is stopped before it reaches C. Unwinding across an
//! `extern "C"` boundary aborts the host process, and the library must never
//! take its host down: a panic becomes an error return instead.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::remember;
use crate::Error;

/// Runs `body`; if it panics, records an EIO error and returns `on_panic`.
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            // Never let the panic payload's own drop unwind into C either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            remember(&Error::new(
                libc::EIO,
                format!("internal error in libnotif (please report it): {detail}"),
            ));
            on_panic
        }
    }
}
