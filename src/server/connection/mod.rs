//! One connected subscriber as the server thread sees it: its socket, what is
//! waiting for it, how much more it may be given, what it asked for, and who
//! it is.
//!
//! What waits for a subscriber is a queue of spans. A subscriber that takes
//! every notification holds ranges of the shared message log (usually one,
//! however many batches it lags behind), so nothing is copied for it and what
//! it holds is what the log keeps for it. A subscriber with a filter gets its
//! own copy of the messages it wants: it never keeps the log's unwanted bytes
//! alive, and its copy is what its limit counts, allocation included. Control
//! lines are its own too. A subscriber's limit counts the kernel's socket
//! buffer in: the kernel gets at most half of it, our queue the rest.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use super::filter_set::{CachedFilter, FilterId, HISTORY_CACHE_BUDGET};
use super::message_log::{MessageLog, ENTRY_OVERHEAD, MESSAGE_OVERHEAD};
use super::send_cost::SendCost;
use crate::fork_guard::OwnedFd;
use crate::stats::{bump, Counters};
use crate::subscription::{lines, message_fields, Filter, MAX_REQUEST_LINE};

mod history;
mod hold;
mod offers;
mod phase;
mod queue;
mod request_reader;
mod socket_io;

pub(crate) use history::HISTORY_STEP_ENTRIES;
pub(crate) use phase::{Closing, Phase};
use queue::{OwnChunk, Span};
use request_reader::RequestState;
use socket_io::limit_kernel_buffer;

/// Most of a subscriber's buffer given to the kernel's socket buffer, and the
/// least. That memory is the kernel's, outside our heap; it is kept near the
/// kernel's own default, and shrinks as subscribers crowd in (see
/// `Server::kernel_share`), so that a thousand idle connections cannot tie up
/// a thousand times half their buffers in the kernel, nor make the server
/// thread fill each of them with hundreds of writes. A subscriber that lags
/// is held in the shared log instead, which costs nothing per subscriber.
pub(crate) const MAX_KERNEL_SHARE: usize = 256 * 1024;
pub(crate) const MIN_KERNEL_SHARE: usize = 32 * 1024;
/// Bookkeeping the allocator adds to each allocation we make for a subscriber.
const ALLOCATION_OVERHEAD: usize = 16;
/// What a write attempt left behind.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Everything queued is in the kernel now.
    Drained,
    /// The socket is full; wait for EPOLLOUT.
    Blocked,
    /// The peer is gone (EPIPE, ECONNRESET...).
    PeerGone,
    /// Nothing was written: it is held back until the peer speaks (see
    /// `SubscriberConn::is_holding`).
    Held,
    /// A step of a resumed history was taken and more is left: the next
    /// step waits for the next round, after every other connection's turn.
    MoreHistory,
}

/// What reading from the subscriber found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Nothing more to read for now.
    Idle,
    /// A complete request line (without its newline), and whether more bytes
    /// followed it (which the protocol does not allow).
    Request {
        line: Vec<u8>,
        followed_by_more: bool,
    },
    /// Input the protocol does not allow; the message says why.
    Invalid(String),
    /// An unfinished request line that the memory limit has no room for.
    OverBudget,
    /// The peer shut down its sending side (e.g. `socat` at the end of its
    /// stdin). It may still be reading, so it stays subscribed.
    PeerStoppedSending,
    PeerGone,
}

/// How the offer of a batch went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Every wanted message was queued.
    All,
    /// Some did not fit and were dropped for this subscriber.
    Overflowed,
    PeerGone,
}

pub(crate) const ONE_REQUEST: &str = "a connection carries one request line; nothing may follow it";

/// How long a peer may take to finish a request line it started.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer that has said nothing for this long after it was accepted is taken
/// to be a plain reader (socat), which never writes a request. Until then
/// what is queued for it is held back (see `is_holding`), and emitters do not
/// write to it themselves.
const SILENT_PEER_GRACE: Duration = Duration::from_millis(100);

/// At most this much is held back for a silent peer (see `is_holding`): a
/// request comes within microseconds of the connection, so a busy stream
/// needs to hold little, and what is held never delays a fast stream by
/// more than the time it takes to emit this much.
const MAX_HELD_BYTES: usize = 64 * 1024;

/// Who the peer is, as the kernel saw it at connect (SO_PEERCRED).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Peer {
    pub(crate) pid: Option<i32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct SubscriberConn {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: Peer,
    pub(crate) connected_at: SystemTime,
    /// When it was accepted (see SILENT_PEER_GRACE).
    accepted: Instant,
    queue: VecDeque<Span>,
    queued_messages: usize,
    /// Heap memory our own spans hold (copies, control lines), allocation included.
    own_footprint: usize,
    /// Bytes our queue may hold: the subscriber buffer minus the kernel's share.
    queue_capacity: usize,
    /// Whether we watch for input (until the peer shuts its sending side).
    pub(crate) reading: bool,
    /// Whether the kernel's buffer is full: we wait for EPOLLOUT.
    pub(crate) waiting_for_room: bool,
    /// The events epoll watches for this socket now, and the token its events carry.
    pub(crate) registered: u32,
    pub(crate) token: u64,
    request: RequestState,
    /// When a request line that was started must be finished.
    pub(crate) request_deadline: Option<Instant>,
    /// Memory the unfinished request line takes (its buffer's capacity),
    /// charged to the memory limit by the server (see memory.rs).
    request_charge: usize,
    /// Whether the peer wrote a request: only then may it get control lines
    /// other than a refusal.
    pub(crate) spoke: bool,
    /// None: every notification.
    pub(crate) filter: Option<FilterId>,
    pub(crate) markers: bool,
    /// Drops not yet reported with a marker line.
    unreported_drops: u64,
    /// It overflowed and has not read since: everything is dropped for it until
    /// it does, so that it sees one gap, not a scattering of messages that
    /// happened to fit.
    behind: bool,
    pub(crate) heartbeat: Option<Duration>,
    /// When we last queued anything for this subscriber.
    pub(crate) last_sent: Instant,
    /// Where it is in its life (see phase.rs): changed only through
    /// server::table::Connections::set_phase, which keeps the counts.
    phase: Phase,
    /// Messages fully written to this subscriber.
    pub(crate) delivered: u64,
    /// Messages dropped for this subscriber because it fell behind.
    pub(crate) dropped_slow: u64,
    /// Whether it asked to be told its position (`seq` lines).
    cursors: bool,
    /// Whether what the replay ring keeps is free for it (see free_from).
    pub(crate) ring_is_free: bool,
    /// The number the client will give the next notification line it reads
    /// (the previous one's plus one, or what the last `seq` line said).
    next_line_seq: Option<u64>,
    /// Log entries its next history step may read: granted by the server
    /// from the round's budget (see Server::continue_histories), 0 otherwise.
    pub(crate) history_grant: u64,
    /// The filter a resumed history is read through.
    history_filter: Option<CachedFilter>,
    /// Emitters wrote the log's messages before this number to it themselves
    /// (backlog::write_through), and this many bytes of that one: offers skip
    /// the former and send the rest of the latter first.
    written_through: Option<(u64, usize)>,
    /// Until when what is queued for it is held back, not written: it has
    /// not spoken yet (see `is_holding`). None once it spoke, shut its
    /// sending side, began closing, needed room, or the grace ran out.
    hold_until: Option<Instant>,
    /// Whether the resumed history in the queue is a replay (counted as
    /// replayed), rather than notifications held back until the request.
    history_is_replay: bool,
    /// Root or the publisher's own user: a peer that could harm the host
    /// anyway. Only such a peer is written to by emitting threads (see
    /// backlog::write_through), and counted against no per-user cap.
    pub(crate) trusted: bool,
    /// What writing to it costs the server thread (see send_cost).
    pub(crate) send_cost: SendCost,
    /// The number the next notification had when it connected: without a
    /// replay ring, nothing older is ever sent to it (see Server::history).
    pub(crate) first_seq: u64,
}

impl SubscriberConn {
    /// `kernel_share` is at most what the kernel's socket buffer may hold for
    /// it (it gets no more than half of `subscriber_buffer` either).
    pub(crate) fn new(
        fd: OwnedFd,
        subscriber_buffer: usize,
        kernel_share: usize,
        peer: Peer,
    ) -> SubscriberConn {
        let kernel_share = limit_kernel_buffer(&fd, (subscriber_buffer / 2).min(kernel_share));
        SubscriberConn {
            fd,
            peer,
            connected_at: SystemTime::now(),
            accepted: Instant::now(),
            queue: VecDeque::new(),
            queued_messages: 0,
            own_footprint: 0,
            queue_capacity: subscriber_buffer.saturating_sub(kernel_share),
            reading: true,
            waiting_for_room: false,
            registered: 0,
            token: 0,
            request: RequestState::Awaiting(Vec::new()),
            request_deadline: None,
            request_charge: 0,
            spoke: false,
            filter: None,
            markers: false,
            unreported_drops: 0,
            behind: false,
            heartbeat: None,
            last_sent: Instant::now(),
            phase: Phase::Open,
            delivered: 0,
            dropped_slow: 0,
            cursors: false,
            ring_is_free: true,
            next_line_seq: None,
            history_grant: 0,
            history_filter: None,
            written_through: None,
            hold_until: Some(Instant::now() + SILENT_PEER_GRACE),
            history_is_replay: true,
            trusted: false,
            send_cost: SendCost::default(),
            first_seq: 0,
        }
    }

    pub(crate) fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    pub(crate) fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether emitters should count this connection as a subscriber.
    pub(crate) fn is_subscriber(&self) -> bool {
        self.phase.is_open()
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.phase.is_closing()
    }

    pub(crate) fn is_probing(&self) -> bool {
        self.phase.is_probing()
    }

    /// Only for server::table::Connections::set_phase (and before the
    /// connection enters the table).
    pub(crate) fn enter_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Bytes its queue may hold (its buffer less the kernel's share).
    pub(crate) fn capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Applies a subscription request and queues the acknowledgement.
    /// `epoch` is Some when the subscriber asked for cursors.
    pub(crate) fn subscribe(
        &mut self,
        filter: Option<FilterId>,
        markers: bool,
        heartbeat: Option<Duration>,
        epoch: Option<u64>,
    ) {
        self.filter = filter;
        self.markers = markers;
        self.heartbeat = heartbeat;
        self.cursors = epoch.is_some();
        self.next_line_seq = None;
        self.queue_control(lines::subscribed(epoch));
    }
}
