use crate::Stats;

/// A publisher's counters (see notif_get_stats). Message counts count
/// messages; delivered, dropped_slow, dropped_closed and fanout count
/// (message, subscriber) pairs. Fields are only ever added at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct notif_stats {
    /// Subscribers connected now.
    pub subscribers: u64,
    /// Connections accepted since open (including ones closed at once for being over the limit).
    pub accepted: u64,
    /// Messages accepted by notif_emit for at least one subscriber.
    pub emitted: u64,
    /// (message, subscriber) pairs fully written to the subscriber's socket.
    pub delivered: u64,
    /// Messages with nobody to go to (notif_emit returned 0, or every subscriber left before they were sent), without a replay ring (with one: kept_no_subscriber).
    pub dropped_no_subscriber: u64,
    /// (message, subscriber) pairs dropped because that subscriber's buffer was full.
    pub dropped_slow: u64,
    /// Messages notif_emit dropped with -EAGAIN because the backlog was full.
    pub dropped_backlog: u64,
    /// Messages notif_emit refused as not one JSON object (-EINVAL) or too large
    /// (-EMSGSIZE). A NULL json pointer is a caller error and is not counted.
    pub rejected: u64,
    /// Bytes written to subscriber sockets.
    pub bytes_sent: u64,
    /// Connections the publisher closed: too slow (NOTIF_SLOW_DISCONNECT), over
    /// max_subscribers, refused by the allow-lists, or after a bad request.
    pub disconnected: u64,
    /// (message, subscriber) pairs still queued when that subscriber hung up or was closed, or when close's linger ran out.
    pub dropped_closed: u64,
    /// Connections closed at accept because max_subscribers were connected.
    pub refused: u64,
    /// (message, subscriber) pairs handed to subscribers; after a quiet period
    /// fanout == delivered + dropped_slow + dropped_closed.
    pub fanout: u64,
    /// (message, subscriber) pairs a subscriber's filter left out (not wanted, so not dropped).
    pub filtered: u64,
    /// Subscription requests that were invalid or too long (answered with an error, then closed).
    pub bad_requests: u64,
    /// Stats requests answered on the socket.
    pub stats_requests: u64,
    /// Connections closed at accept because the peer's credentials matched no allow-list.
    pub denied: u64,
    /// (message, subscriber) pairs sent again from the log to a subscriber
    /// that resumed (`after`) or asked for the replay ring (also in fanout).
    pub replayed: u64,
    /// Memory the replay ring holds now (notif_options_set_replay; 0 when off).
    pub replay_bytes: u64,
    /// Notifications the replay ring holds now.
    pub replay_messages: u64,
    /// Sequence number of the oldest notification the ring holds (next_seq when it is empty).
    pub replay_oldest: u64,
    /// Sequence number the next notification will get.
    pub next_seq: u64,
    /// System calls that wrote to subscriber sockets (the server thread's, and
    /// those of notif_emit writing through while the server thread slept).
    pub writes: u64,
    /// Times notif_emit woke the sleeping server thread (an eventfd write).
    pub wakeups: u64,
    /// (message, subscriber) pairs notif_emit wrote to the socket itself while
    /// the server thread slept (also in delivered and fanout).
    pub written_through: u64,
    /// Connections cut off because writing to them cost the server thread
    /// more than its budget (reason "too_costly"; also in disconnected).
    pub disconnected_costly: u64,
    /// Notifications emitted while nobody was connected and kept in the
    /// replay ring (not dropped: a subscriber that resumes or replays gets them).
    pub kept_no_subscriber: u64,
}

impl From<Stats> for notif_stats {
    fn from(stats: Stats) -> notif_stats {
        notif_stats {
            subscribers: stats.subscribers,
            accepted: stats.accepted,
            emitted: stats.emitted,
            delivered: stats.delivered,
            dropped_no_subscriber: stats.dropped_no_subscriber,
            dropped_slow: stats.dropped_slow,
            dropped_backlog: stats.dropped_backlog,
            rejected: stats.rejected,
            bytes_sent: stats.bytes_sent,
            disconnected: stats.disconnected,
            dropped_closed: stats.dropped_closed,
            refused: stats.refused,
            fanout: stats.fanout,
            filtered: stats.filtered,
            bad_requests: stats.bad_requests,
            stats_requests: stats.stats_requests,
            denied: stats.denied,
            replayed: stats.replayed,
            replay_bytes: stats.replay_bytes,
            replay_messages: stats.replay_messages,
            replay_oldest: stats.replay_oldest,
            next_seq: stats.next_seq,
            writes: stats.writes,
            wakeups: stats.wakeups,
            written_through: stats.written_through,
            disconnected_costly: stats.disconnected_costly,
            kept_no_subscriber: stats.kept_no_subscriber,
        }
    }
}

/// The size of the first published notif_stats (its first ten fields): callers
/// compiled against that header pass this size and get those fields.
pub(crate) const NOTIF_STATS_V1_SIZE: usize = 10 * std::mem::size_of::<u64>();
