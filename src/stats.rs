//! The publisher's counters. Every notification that is not delivered to a
//! connected subscriber ends in exactly one of the dropped_* counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Declares each counter once: the public snapshot (`Stats`), the live atomic
/// counters behind it, and the name/value list used by the stats request.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A snapshot of a publisher's counters. Message counters count
        /// messages; delivered, dropped_slow, dropped_closed, fanout and
        /// filtered count (message, subscriber) pairs.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Stats {
            /// Subscribers connected now.
            pub subscribers: u64,
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// The live counters behind [`Stats`], updated without locks.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self, subscribers: u64) -> Stats {
                Stats { subscribers, $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Stats {
            /// Every field by name, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![("subscribers", self.subscribers), $((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Connections accepted since open (including ones closed at once for being over the limit).
    accepted,
    /// Messages accepted by emit for at least one subscriber.
    emitted,
    /// (message, subscriber) pairs fully written to the socket.
    delivered,
    /// Messages with nobody to go to: emitted with no subscriber connected, or
    /// whose subscribers had all gone when the server thread got to them
    /// (without a replay ring: with one, see kept_no_subscriber).
    dropped_no_subscriber,
    /// (message, subscriber) pairs dropped because that subscriber's buffer was full.
    dropped_slow,
    /// Messages dropped by emit because the backlog to the server thread was full (EAGAIN).
    dropped_backlog,
    /// Messages refused by emit: not one JSON object (EINVAL) or too large (EMSGSIZE).
    rejected,
    /// Bytes written to subscriber sockets.
    bytes_sent,
    /// Connections the publisher closed: too slow, over the limit, refused by
    /// the allow-lists, or after a bad request.
    disconnected,
    /// (message, subscriber) pairs still queued when that subscriber went away
    /// (hang-up, error, disconnect policy) or when close's linger ran out.
    dropped_closed,
    /// Connections closed at accept because max_subscribers were connected.
    refused,
    /// (message, subscriber) pairs handed to subscribers' queues. After a quiet
    /// period, fanout = delivered + dropped_slow + dropped_closed.
    fanout,
    /// (message, subscriber) pairs a subscriber's filter left out (not dropped: not wanted).
    filtered,
    /// Subscription request lines that were invalid or too long (each answered with an error and closed).
    bad_requests,
    /// Stats requests answered.
    stats_requests,
    /// Connections closed at accept because the peer's credentials matched no allow-list.
    denied,
    /// (message, subscriber) pairs sent again from the log to a subscriber
    /// that resumed or asked for the replay ring (they are in fanout too).
    replayed,
    /// Gauge: memory the replay ring holds now (0 when it is off).
    replay_bytes,
    /// Gauge: notifications the replay ring holds now.
    replay_messages,
    /// Gauge: sequence number of the oldest notification the ring holds
    /// (next_seq when it holds none).
    replay_oldest,
    /// Gauge: the sequence number the next notification will get.
    next_seq,
    /// System calls that wrote to subscriber sockets: the server thread's
    /// and those of emitting threads writing through (see written_through).
    writes,
    /// Times an emitting thread woke the sleeping server thread (an eventfd write).
    wakeups,
    /// (message, subscriber) pairs an emitting thread wrote to the socket
    /// itself while the server thread slept (also in delivered and fanout).
    written_through,
    /// Connections cut off because writing to them cost the server thread
    /// more than its budget (reason too_costly; also in disconnected).
    disconnected_costly,
    /// Notifications emitted while nobody was connected and kept in the
    /// replay ring (not dropped: a subscriber that resumes or replays gets them).
    kept_no_subscriber,
}

#[inline]
pub(crate) fn set(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    if by != 0 {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}
