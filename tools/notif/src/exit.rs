//! Exit codes and the failures that carry them.

pub const OK: u8 = 0;
pub const USAGE: u8 = 1;
pub const MISSING: u8 = 2;
pub const PERMISSION: u8 = 3;
pub const NOT_NOTIF: u8 = 4;
pub const OTHER: u8 = 5;
/// The publisher has as many subscribers as it accepts (max_subscribers).
pub const FULL: u8 = 6;

/// What ends a command: the exit code and a sentence for stderr (without the
/// leading "notif: ").
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }
}

/// What a failed connect(2) to a publisher's socket means, as an exit code and
/// a sentence naming the path and what to do. `errno` is the connect error.
pub fn connect_failure(path: &str, errno: i32, detail: &str) -> Failure {
    match errno {
        libc::ENOENT => Failure::new(
            MISSING,
            format!("{path}: no such socket: is the publisher running, and is the path right?"),
        ),
        libc::ENOTDIR => Failure::new(
            MISSING,
            format!("{path}: a component of the path is not a directory: check the path"),
        ),
        libc::EACCES | libc::EPERM => Failure::new(
            PERMISSION,
            format!(
                "{path}: permission denied: run as the publisher's user, or have it give the \
                 socket a group you are in (e.g. notif emit --group G --mode 0660)"
            ),
        ),
        libc::ECONNREFUSED => Failure::new(NOT_NOTIF, not_listening(path)),
        libc::ENOTSOCK => Failure::new(
            NOT_NOTIF,
            format!("{path}: not a socket, so not a notif publisher: check the path"),
        ),
        libc::EINVAL | libc::ENAMETOOLONG => Failure::new(USAGE, format!("{path}: {detail}")),
        _ => Failure::new(OTHER, format!("{path}: {detail}")),
    }
}

/// The message for ECONNREFUSED: a socket file nobody listens on, or not a socket.
pub fn not_listening(path: &str) -> String {
    match file_kind(path) {
        Some(kind) if kind != "socket" => {
            format!("{path}: is a {kind}, not a socket: not a notif publisher; check the path")
        }
        _ => format!(
            "{path}: nothing is listening there (a socket left by a publisher that stopped?): \
             not a notif publisher now; start the publisher, or drop --no-reconnect to wait for it"
        ),
    }
}

/// What is at a file path ("socket", "regular file", "directory"...), or None
/// for an abstract name or nothing at all.
pub fn file_kind(path: &str) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if path.starts_with('@') {
        return None;
    }
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(if kind.is_socket() {
        "socket"
    } else if kind.is_file() {
        "regular file"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else {
        "special file"
    })
}
