//! The publisher's counters. Every notification that is not delivered to a
//! connected subscriber ends in exactly one of the dropped_* counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a publisher's counters. Message counters count messages;
/// delivered/dropped_slow/dropped_closed/fanout count (message, subscriber) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Subscribers connected now.
    pub subscribers: u64,
    /// Connections accepted since open (including ones closed at once for being over the limit).
    pub accepted: u64,
    /// Messages accepted by emit for at least one subscriber.
    pub emitted: u64,
    /// (message, subscriber) pairs fully written to the socket.
    pub delivered: u64,
    /// Messages with nobody to go to: emitted with no subscriber connected, or
    /// whose subscribers had all gone when the server thread got to them.
    pub dropped_no_subscriber: u64,
    /// (message, subscriber) pairs dropped because that subscriber's buffer was full.
    pub dropped_slow: u64,
    /// Messages dropped by emit because the backlog to the server thread was full (EAGAIN).
    pub dropped_backlog: u64,
    /// Messages refused by emit: not one JSON object (EINVAL) or too large (EMSGSIZE).
    pub rejected: u64,
    /// Bytes written to subscriber sockets.
    pub bytes_sent: u64,
    /// Subscribers the publisher closed: too slow, over the limit, misbehaving.
    pub disconnected: u64,
    /// (message, subscriber) pairs still queued when that subscriber went away
    /// (hang-up, error, disconnect policy) or when close's linger ran out.
    pub dropped_closed: u64,
    /// Connections closed at accept because max_subscribers were connected.
    pub refused: u64,
    /// (message, subscriber) pairs handed to subscribers' queues. After a quiet
    /// period, fanout = delivered + dropped_slow + dropped_closed.
    pub fanout: u64,
}

/// The live counters behind [`Stats`], updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub emitted: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped_no_subscriber: AtomicU64,
    pub dropped_slow: AtomicU64,
    pub dropped_backlog: AtomicU64,
    pub rejected: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub disconnected: AtomicU64,
    pub dropped_closed: AtomicU64,
    pub refused: AtomicU64,
    pub fanout: AtomicU64,
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    if by != 0 {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn snapshot(&self, subscribers: u64) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            subscribers,
            accepted: load(&self.accepted),
            emitted: load(&self.emitted),
            delivered: load(&self.delivered),
            dropped_no_subscriber: load(&self.dropped_no_subscriber),
            dropped_slow: load(&self.dropped_slow),
            dropped_backlog: load(&self.dropped_backlog),
            rejected: load(&self.rejected),
            bytes_sent: load(&self.bytes_sent),
            disconnected: load(&self.disconnected),
            dropped_closed: load(&self.dropped_closed),
            refused: load(&self.refused),
            fanout: load(&self.fanout),
        }
    }
}
