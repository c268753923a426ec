//! The one error type of the core: an errno a C caller can return as-is, and a
//! sentence a person can act on.

use std::borrow::Cow;
use std::fmt;
use std::io;

/// A failure of the library: `errno()` is the POSIX error number the C API
/// returns (negated) or sets, `message()` says what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    message: Cow<'static, str>,
}

impl Error {
    pub fn new(errno: i32, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            errno,
            message: message.into(),
        }
    }

    /// Wraps an operating-system error with what we were doing when it happened:
    /// "CONTEXT: Permission denied", without the " (os error 13)" that Rust's
    /// io::Error adds (the errno is returned as the code already).
    pub(crate) fn os(context: impl fmt::Display, err: io::Error) -> Error {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        let text = err.to_string();
        let text = match err.raw_os_error() {
            Some(code) => text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text),
            None => &text,
        };
        Error::new(errno, format!("{context}: {text}"))
    }

    /// The POSIX error number (positive), e.g. `libc::EINVAL`.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(err.errno).kind(), err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_messages_have_no_rust_suffix() {
        let err = Error::os(
            "cannot create /run/x.sock",
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(err.errno(), libc::EACCES);
        assert_eq!(
            err.message(),
            "cannot create /run/x.sock: Permission denied"
        );
    }
}
