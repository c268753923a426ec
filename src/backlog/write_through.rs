//! Write-through: while the server thread sleeps with nothing to send, the
//! emitting thread writes a notification to the subscribers' sockets itself.
//! That saves waking the server thread (an eventfd write, then tens of
//! microseconds before it runs on a busy machine) for every notification of
//! a quiet publisher: the line reaches the reader about as fast as a raw
//! socket write would.
//!
//! Bounded so that it never costs the caller much: at most [`MAX_TARGETS`]
//! sockets, one non-blocking send each, only for subscribers that take every
//! notification and have nothing queued, and only while the caller spends
//! at least [`MIN_GAP_PER_TARGET`] per target between emits. Under load the
//! server thread's batched writes cost far less per message, so the first
//! notification that comes sooner ends it, as does the first write the
//! kernel cuts short.
//!
//! Soundness: the server thread grants it just before it sleeps, and takes
//! it back before it touches any subscriber socket again, both under the
//! backlog's lock, which emitters hold while they write. So an emitter and
//! the server thread never write to one socket at once, no socket is closed
//! (and its number reused) while an emitter may write to it, and concurrent
//! emitters write in the order they queue. Every notification written through
//! is queued in the backlog too, so that the server thread numbers it, keeps
//! it for the replay ring and counts it as emitted like any other; what was
//! written (all of it, or how much of the one write that was cut short)
//! tells it where each subscriber's stream goes on.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::stats::{bump, Counters};

/// Most subscribers an emitting thread writes to itself: one send each.
pub(crate) const MAX_TARGETS: usize = 4;
/// A notification that comes sooner than this many microseconds per target
/// after the previous emit returned is left to the server thread, which sends
/// what gathers in one write per subscriber: the caller is emitting in a
/// loop, where a send per notification would cost it (and the readers) far
/// more than batches. The gap is the caller's own time between emits, so a
/// caller that does real work between them (or waits for a reply, however
/// fast) pays for the sends at most about a third of that time.
pub(crate) const MIN_GAP_PER_TARGET: Duration = Duration::from_micros(5);

/// What the server thread granted, and what emitters wrote under it.
#[derive(Debug, Default)]
pub(crate) struct WriteThrough {
    /// The sockets, one per subscriber; none when nothing is granted.
    pub(crate) targets: Vec<Target>,
    /// Notifications written through since the grant (the last one perhaps
    /// only in part, or not at all, to some targets).
    pub(crate) messages: u64,
    /// Whether emitters may write: granted, and not ended since.
    active: bool,
    /// When the last emit that wrote through (or tried to) was done.
    last_at: Option<Instant>,
}

/// One subscriber's socket, and how far its stream got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) fd: RawFd,
    /// Notifications fully written to it.
    pub(crate) delivered: u64,
    /// Bytes written of the notification after those, when the kernel took
    /// only part of it (the server thread sends the rest before anything else).
    pub(crate) partial: usize,
}

/// What an emitter's write-through did with one notification.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Every target took all of it.
    Everywhere,
    /// Not tried: it came too soon after the previous one. Ended.
    TooSoon,
    /// Some target took only part of it, or none (its socket is full or
    /// gone). Ended: the server thread must go on from there.
    CutShort,
}

impl WriteThrough {
    /// Server thread: forgets what was granted before (already accounted
    /// for), keeping the allocation.
    pub(crate) fn clear(&mut self) {
        self.targets.clear();
        self.messages = 0;
        self.active = false;
        self.last_at = None;
    }

    /// Server thread: adds a subscriber's socket to the grant being prepared.
    pub(crate) fn add_target(&mut self, fd: RawFd) {
        self.targets.push(Target {
            fd,
            delivered: 0,
            partial: 0,
        });
    }

    /// Server thread: makes the prepared grant usable by emitters.
    pub(crate) fn activate(&mut self) {
        self.active = !self.targets.is_empty();
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Emitter, under the backlog's lock: writes `line` (one notification
    /// and its newline) to every target with one non-blocking send each.
    pub(crate) fn write(&mut self, line: &[u8], counters: &Counters) -> Written {
        debug_assert!(self.active);
        let now = Instant::now();
        let min_gap = MIN_GAP_PER_TARGET * self.targets.len() as u32;
        let soon = self
            .last_at
            .is_some_and(|at| now.saturating_duration_since(at) < min_gap);
        // Soon, but every reader already took everything (a consumer that
        // answers at once): a send each is what a batch would be.
        if soon && !self.targets.iter().all(|t| unread(t.fd) == 0) {
            self.active = false;
            return Written::TooSoon;
        }
        let mut complete = 0u64;
        for target in &mut self.targets {
            let written = send(target.fd, line);
            if written == line.len() {
                target.delivered += 1;
                complete += 1;
            } else {
                target.partial = written;
            }
            bump(&counters.bytes_sent, written as u64);
        }
        let everywhere = complete == self.targets.len() as u64;
        bump(&counters.writes, self.targets.len() as u64);
        // Handed out and written in one go; what was cut short is handed
        // out (and counted) by the server thread when it sends the rest.
        bump(&counters.fanout, complete);
        bump(&counters.delivered, complete);
        bump(&counters.written_through, complete);
        self.messages += 1;
        self.last_at = Some(Instant::now());
        if everywhere {
            Written::Everywhere
        } else {
            self.active = false;
            Written::CutShort
        }
    }
}

/// Bytes written to the socket that its reader has not read yet (SIOCOUTQ);
/// unknown counts as some.
fn unread(fd: RawFd) -> libc::c_int {
    let mut unread: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int into a live c_int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unread) } != 0 {
        return 1;
    }
    unread
}

/// One non-blocking send of all of `line`: the bytes the kernel took (0 when
/// its buffer is full or the peer is gone; the server thread finds out which).
fn send(fd: RawFd, line: &[u8]) -> usize {
    loop {
        // SAFETY: sends from a live buffer of line.len() bytes. MSG_DONTWAIT:
        // never blocks the emitting thread; MSG_NOSIGNAL: a vanished
        // subscriber never raises SIGPIPE in the host. The descriptor is open:
        // the server thread does not close it while the grant stands.
        let n = unsafe {
            libc::send(
                fd,
                line.as_ptr().cast(),
                line.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return n as usize;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 0;
        }
    }
}
