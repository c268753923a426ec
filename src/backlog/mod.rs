//! The hand-off from emitting threads to the server thread.
//!
//! Emitters append each message's compact line to a chunk under a short lock:
//! one copy, and no allocation per message (chunks are recycled). The server
//! thread takes every pending chunk at once, which turns a burst of messages
//! into a few shared batches that every subscriber receives with one write.
//!
//! The wake-up costs a system call only when the server thread is asleep: it
//! marks itself sleeping under the same lock just before it blocks, and only the
//! first emitter to see that mark writes to the eventfd. While the server
//! thread sleeps with nothing queued, emitters may write each notification to
//! the subscribers themselves instead (write_through); while it is busy, it
//! may sleep until enough has gathered for one large write (coalescing), and
//! the emitter that brings the backlog to that size wakes it.

pub(crate) mod write_through;

use std::io;
use std::sync::{Mutex, MutexGuard};

use crate::fork_guard::OwnedFd;
use crate::stats::{bump, Counters};
use write_through::{WriteThrough, Written};

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

/// Messages are appended to chunks of this size, so appending never copies
/// what is already queued (a growing Vec would, under the lock). 64 KiB stays
/// under glibc's mmap threshold, so a new chunk is a cheap heap allocation.
const CHUNK_BYTES: usize = 64 * 1024;
/// Empty chunks kept for reuse between the server thread and emitters (1 MiB).
const POOL_LIMIT: usize = 16;
/// While emitters write through, the server thread still numbers, keeps (for
/// the replay ring) and counts what they wrote: it is woken once this much
/// has gathered, so that a quiet publisher's backlog stays small.
const WRITTEN_THROUGH_WAKE_BYTES: usize = CHUNK_BYTES;

#[derive(Debug, Default)]
struct Pending {
    /// Full chunks, oldest first, then `current`, which emitters append to.
    sealed: Vec<Batch>,
    current: Batch,
    /// Bytes and messages in `sealed` and `current`.
    bytes: usize,
    messages: usize,
    /// Messages ever queued.
    pushed: u64,
    /// Emptied chunks handed back by the server thread.
    pool: Vec<Batch>,
    server_sleeping: bool,
    /// A sleeping server thread is woken once `bytes` reaches this: 0 when it
    /// sleeps idle, more when it waits for a batch to gather (coalescing).
    wake_at_bytes: usize,
    /// What emitters may write themselves while the server thread sleeps.
    write_through: WriteThrough,
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
        // failure mid-append; the chunks are still well-formed, so go on.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one message's compact line (a newline is added), and writes it
    /// through to the subscribers when the server thread granted that.
    pub(crate) fn push(&self, line: &[u8], counters: &Counters) -> Result<(), BacklogFull> {
        let needed = line.len() + 1;
        let wake = {
            let mut guard = self.lock();
            let pending = &mut *guard;
            if pending.bytes + needed > self.capacity {
                return Err(BacklogFull);
            }
            let current = &mut pending.current;
            if current.bytes.len() + needed > current.bytes.capacity() {
                if !current.ends.is_empty() {
                    let fresh = pending.pool.pop().unwrap_or_default();
                    pending.sealed.push(std::mem::replace(current, fresh));
                }
                // Empty now, so reserving copies nothing.
                let current = &mut pending.current;
                current.bytes.reserve(needed.max(CHUNK_BYTES));
            }
            let current = &mut pending.current;
            let start = current.bytes.len();
            current.bytes.extend_from_slice(line);
            current.bytes.push(b'\n');
            current.ends.push(current.bytes.len());
            pending.bytes += needed;
            pending.messages += 1;
            pending.pushed += 1;
            let wake_at = if pending.write_through.is_active() {
                let line = &pending.current.bytes[start..];
                match pending.write_through.write(line, counters) {
                    // Woken before the backlog can fill, however small it is.
                    Written::Everywhere => WRITTEN_THROUGH_WAKE_BYTES.min(self.capacity / 2),
                    Written::TooSoon | Written::CutShort => 0,
                }
            } else {
                pending.wake_at_bytes
            };
            pending.server_sleeping && pending.bytes >= wake_at && {
                pending.server_sleeping = false;
                true
            }
        };
        if wake {
            bump(&counters.wakeups, 1);
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

    /// Server thread: moves every pending chunk, oldest first, into `into`,
    /// and takes back the write-through grant: `written` gets what emitters
    /// wrote under it (the messages written through are the first ones
    /// taken). From here until the next grant, emitters write nothing.
    pub(crate) fn take(&self, into: &mut Vec<Batch>, written: &mut WriteThrough) {
        written.clear();
        let mut guard = self.lock();
        let pending = &mut *guard;
        pending.server_sleeping = false;
        std::mem::swap(&mut pending.write_through, written);
        if pending.messages == 0 {
            return;
        }
        into.append(&mut pending.sealed);
        let fresh = pending.pool.pop().unwrap_or_default();
        into.push(std::mem::replace(&mut pending.current, fresh));
        pending.bytes = 0;
        pending.messages = 0;
    }

    /// Server thread: hands back chunks every subscriber is done with.
    pub(crate) fn recycle(&self, chunks: impl IntoIterator<Item = Batch>) {
        let mut pending = self.lock();
        for mut chunk in chunks {
            if pending.pool.len() >= POOL_LIMIT {
                break;
            }
            // A chunk that grew for one huge message goes back to the allocator.
            if chunk.bytes.capacity() > 4 * CHUNK_BYTES {
                continue;
            }
            chunk.bytes.clear();
            chunk.ends.clear();
            pending.pool.push(chunk);
        }
    }

    /// Server thread: called just before blocking with nothing to do. Returns
    /// false (and does not mark the thread sleeping) when there is already
    /// something to take. Otherwise `grant` (prepared by the server thread,
    /// possibly empty) is what emitters may write through until `take`.
    pub(crate) fn prepare_to_sleep(&self, grant: &mut WriteThrough) -> bool {
        let mut pending = self.lock();
        if pending.messages != 0 || pending.stop_requested {
            pending.server_sleeping = false;
            return false;
        }
        pending.server_sleeping = true;
        pending.wake_at_bytes = 0;
        grant.activate();
        std::mem::swap(&mut pending.write_through, grant);
        true
    }

    /// Server thread, when busy: called before waiting a little for a batch
    /// of `batch_bytes` to gather. Returns false (do not wait) when that much
    /// is already there or a stop was requested.
    pub(crate) fn prepare_to_coalesce(&self, batch_bytes: usize) -> bool {
        // A backlog too small for the batch would refuse emits meanwhile.
        let batch_bytes = batch_bytes.min(self.capacity / 4);
        let mut pending = self.lock();
        if pending.bytes >= batch_bytes || pending.stop_requested {
            pending.server_sleeping = false;
            return false;
        }
        pending.server_sleeping = true;
        pending.wake_at_bytes = batch_bytes;
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
        self.lock().messages
    }

    /// Messages ever queued (the server thread has taken all but the pending ones).
    pub(crate) fn pushed(&self) -> u64 {
        self.lock().pushed
    }

    /// Wakes the server thread if it sleeps, so that it takes what is queued
    /// now (what emitters wrote through waits otherwise).
    pub(crate) fn nudge(&self) {
        let wake = std::mem::take(&mut self.lock().server_sleeping);
        if wake {
            self.wake();
        }
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
