use std::ffi::c_char;

use super::panic_guard::entry;

/// The library's version as "MAJOR.MINOR.PATCH", the same as the NOTIF_VERSION_*
/// macros of the header it was built with. Static: do not free. Thread-safe.
#[no_mangle]
pub extern "C" fn notif_version() -> *const c_char {
    entry(|| Ok(concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()))
}
