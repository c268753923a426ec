//! Noticing new sockets at once: inotify on the directories of the globs
//! given to `notif tail`, so that a worker's socket is followed as soon as it
//! is linked into place (before its first notification), not at the next
//! periodic rescan.

use std::ffi::CString;
use std::thread;

/// Starts a thread that watches `dirs` for new entries (created, moved or
/// linked in) and calls `wake` after each batch of events; the thread ends
/// when `wake` returns false. Returns false (nothing started) when inotify is
/// unavailable or no directory could be watched: the caller's periodic
/// rescan still finds new sockets, only later.
pub fn spawn(dirs: &[String], wake: impl Fn() -> bool + Send + 'static) -> bool {
    // SAFETY: plain syscall; the descriptor is owned by the thread below.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mut watched = 0;
    for dir in dirs {
        let Ok(c_dir) = CString::new(dir.as_str()) else {
            continue;
        };
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB | libc::IN_ONLYDIR;
        // SAFETY: a valid descriptor and C string.
        if unsafe { libc::inotify_add_watch(fd, c_dir.as_ptr(), mask) } >= 0 {
            watched += 1;
        }
    }
    if watched == 0 {
        // SAFETY: fd is ours and used nowhere else.
        unsafe { libc::close(fd) };
        return false;
    }
    let started = thread::Builder::new()
        .name("notif-watch".into())
        .spawn(move || {
            // Aligned for struct inotify_event; the events are not parsed: any
            // change in a watched directory means "rescan the globs".
            let mut buf = [0u64; 512];
            loop {
                // SAFETY: reading into our own buffer of that many bytes.
                let n =
                    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)) };
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                if n <= 0 || !wake() {
                    break;
                }
            }
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
        })
        .is_ok();
    if !started {
        // SAFETY: the thread did not start, fd is still ours.
        unsafe { libc::close(fd) };
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn wakes_on_a_new_socket_in_a_watched_directory() {
        let dir = std::env::temp_dir().join(format!("notif-cli-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        assert!(spawn(&[dir.display().to_string()], move || tx
            .send(())
            .is_ok()));
        let _listener = std::os::unix::net::UnixListener::bind(dir.join("new.sock")).unwrap();
        // Generous bound: this checks that the event arrives, not how fast.
        rx.recv_timeout(Duration::from_secs(30))
            .expect("no wake-up for a socket created in the watched directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_to_watch_starts_nothing() {
        assert!(!spawn(&["/nonexistent/notif-watch".into()], || true));
    }
}
