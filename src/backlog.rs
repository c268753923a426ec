//! The hand-off from emitting threads to the server thread.
//!
//! Emitters append each message's compact line to one shared buffer under a
//! short lock: one copy, no allocation per message once the buffer has grown.
//! The server thread swaps the whole buffer out at once, which turns a burst of
//! messages into one batch that every subscriber receives with one write.
//!
//! The wake-up costs a system call only when the server thread is asleep: it
//! marks itself sleeping under the same lock just before it blocks, and only the
//! first emitter to see that mark writes to the eventfd.

use std::io;
use std::sync::{Mutex, MutexGuard};

use crate::fork_guard::OwnedFd;

/// A run of messages taken from the backlog in one go, shared read-only by all
/// subscribers that are sent any part of it.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Each message's compact line followed by '\n', back to back.
    pub(crate) bytes: Vec<u8>,
    /// Offset just past each message's '\n'.
    pub(crate) ends: Vec<usize>,
}

impl Batch {
    /// Byte offset where message `index` starts.
    #[inline]
    #[allow(dead_code)] // used by tests and the subscription filters to come
    pub(crate) fn start_of(&self, index: usize) -> usize {
        if index == 0 {
            0
        } else {
            self.ends[index - 1]
        }
    }

    pub(crate) fn message_count(&self) -> usize {
        self.ends.len()
    }
}

#[derive(Debug, Default)]
struct Pending {
    batch: Batch,
    server_sleeping: bool,
    stop_requested: bool,
}

#[derive(Debug)]
pub(crate) struct Backlog {
    pending: Mutex<Pending>,
    capacity: usize,
    wake_fd: OwnedFd,
}

/// The backlog has no room for the message: it was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BacklogFull;

impl Backlog {
    pub(crate) fn new(capacity: usize) -> io::Result<Backlog> {
        // SAFETY: plain eventfd(2) call.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Backlog {
            pending: Mutex::new(Pending::default()),
            capacity,
            wake_fd: OwnedFd::register(fd),
        })
    }

    pub(crate) fn wake_fd(&self) -> libc::c_int {
        self.wake_fd.raw()
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock can only come from an allocation
        // failure mid-append; the buffer is still well-formed bytes, so go on.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one message's compact line (a newline is added).
    pub(crate) fn push(&self, line: &[u8]) -> Result<(), BacklogFull> {
        let wake = {
            let mut pending = self.lock();
            let bytes = &mut pending.batch.bytes;
            if bytes.len() + line.len() + 1 > self.capacity {
                return Err(BacklogFull);
            }
            bytes.reserve(line.len() + 1);
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
            let end = bytes.len();
            pending.batch.ends.push(end);
            std::mem::take(&mut pending.server_sleeping)
        };
        if wake {
            self.wake();
        }
        Ok(())
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. It never
        // blocks (EFD_NONBLOCK); EAGAIN means the counter is already non-zero,
        // i.e. a wake-up is already pending, which is just as good.
        unsafe { libc::write(self.wake_fd.raw(), (&one as *const u64).cast(), 8) };
    }

    /// Server thread: takes every pending message, leaving `spare` (emptied) as
    /// the new buffer so its capacity is reused.
    pub(crate) fn take(&self, mut spare: Batch) -> Batch {
        spare.bytes.clear();
        spare.ends.clear();
        let mut pending = self.lock();
        pending.server_sleeping = false;
        std::mem::replace(&mut pending.batch, spare)
    }

    /// Server thread: called just before blocking. Returns false (and does not
    /// mark the thread sleeping) when there is already something to take.
    pub(crate) fn prepare_to_sleep(&self) -> bool {
        let mut pending = self.lock();
        if !pending.batch.ends.is_empty() || pending.stop_requested {
            pending.server_sleeping = false;
            return false;
        }
        pending.server_sleeping = true;
        true
    }

    /// Server thread: clears the eventfd after waking up.
    pub(crate) fn drain_wake_fd(&self) {
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; non-blocking.
        unsafe { libc::read(self.wake_fd.raw(), (&mut counter as *mut u64).cast(), 8) };
    }

    /// Messages emitted but not yet taken by the server thread.
    pub(crate) fn pending_messages(&self) -> usize {
        self.lock().batch.ends.len()
    }

    /// Asks the server thread to stop, waking it whatever it is doing.
    pub(crate) fn request_stop(&self) {
        self.lock().stop_requested = true;
        self.wake();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.lock().stop_requested
    }
}
