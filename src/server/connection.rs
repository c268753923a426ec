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
use std::io;
use std::mem;
use std::time::{Duration, Instant, SystemTime};

use super::filter_set::{CachedFilter, FilterId};
use super::message_log::{MessageLog, ENTRY_OVERHEAD, MESSAGE_OVERHEAD};
use crate::fork_guard::OwnedFd;
use crate::stats::{bump, Counters};
use crate::subscription::{lines, message_fields, Filter, MAX_REQUEST_LINE};

/// Bytes a private copy grows by at least, so copying a few small messages
/// does not mean an allocation each.
const OWN_CHUNK_BYTES: usize = 16 * 1024;
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
/// About how much of a resumed history is filtered and copied at a time.
const HISTORY_STEP_BYTES: usize = 64 * 1024;

#[derive(Debug)]
enum Span {
    /// Messages [next, end) of the shared log, of which the first `offset`
    /// bytes of message `next` are already written; `mark` is the mark of the
    /// batch holding `next` (what it pins is counted from there).
    Log {
        next: u64,
        end: u64,
        offset: usize,
        mark: u64,
    },
    /// Messages copied for this subscriber alone.
    Own(OwnChunk),
    /// A control line for this subscriber only.
    Control { line: Vec<u8>, offset: usize },
    /// Log messages [next, end) a filtered subscriber resumed from, not yet
    /// filtered: they are filtered and copied a little at a time as it reads
    /// (the log holds them meanwhile), so a long history costs its copies
    /// only as fast as it is read.
    History { next: u64, end: u64, mark: u64 },
}

#[derive(Debug, Default)]
struct OwnChunk {
    /// Each message's line and newline, back to back.
    bytes: Vec<u8>,
    /// Offset just past each message's newline.
    ends: Vec<usize>,
    /// First message not yet fully written.
    next_message: usize,
    /// Bytes written.
    offset: usize,
}

impl OwnChunk {
    fn footprint(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * mem::size_of::<usize>()
            + 2 * ALLOCATION_OVERHEAD
    }

    fn unwritten_messages(&self) -> usize {
        self.ends.len() - self.next_message
    }
}

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

/// Most slices per sendmsg: a few dozen cover a full socket buffer.
const MAX_IOVECS: usize = 64;

#[derive(Debug)]
enum RequestState {
    /// Nothing read yet, or part of a request line.
    Awaiting(Vec<u8>),
    /// The request was read; the connection carries no other.
    Done,
}

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
    /// Close once the queue is written (after an error or a stats answer); no
    /// notifications are queued meanwhile.
    pub(crate) closing: Option<Closing>,
    /// When a closing subscriber is closed even if its queue is not written.
    pub(crate) closing_deadline: Option<Instant>,
    /// Accepted while the publisher was full: it may ask for stats until this
    /// instant, and is refused otherwise. Not a subscriber meanwhile.
    pub(crate) probe_deadline: Option<Instant>,
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
}

/// Why a subscriber is being closed once its queue is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Its request was invalid, or not finished in time.
    BadRequest,
    /// It asked for stats and got them.
    Answered,
    /// It fell behind under the disconnect policy.
    TooSlow,
    /// It held the most when the memory budget ran out, under the disconnect policy.
    Memory,
    /// The publisher was full and it did not ask for stats.
    Full,
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
            spoke: false,
            filter: None,
            markers: false,
            unreported_drops: 0,
            behind: false,
            heartbeat: None,
            last_sent: Instant::now(),
            closing: None,
            closing_deadline: None,
            probe_deadline: None,
            delivered: 0,
            dropped_slow: 0,
            cursors: false,
            ring_is_free: true,
            next_line_seq: None,
            history_filter: None,
            written_through: None,
            hold_until: Some(Instant::now() + SILENT_PEER_GRACE),
            history_is_replay: true,
        }
    }

    /// Whether what is queued for it is held back for now. A peer that has
    /// not spoken yet may be about to: the library's clients write their
    /// request right after connecting. A notification written to it before
    /// the request is read would come before the acknowledgement, unfiltered
    /// and unnumbered, where a resuming client cannot use it and counts it
    /// as missed. Held, it is taken back when the request comes (see
    /// `withdraw_held`) and sent after the acknowledgement as the request
    /// asks. A plain reader that never speaks gets it when the grace ends.
    pub(crate) fn is_holding(&mut self, now: Instant) -> bool {
        match self.hold_until {
            Some(until)
                if now < until && self.closing.is_none() && self.probe_deadline.is_none() =>
            {
                true
            }
            Some(_) => {
                self.hold_until = None;
                false
            }
            None => false,
        }
    }

    /// Ends the hold: what is queued may be written.
    pub(crate) fn release_hold(&mut self) {
        self.hold_until = None;
    }

    /// When the hold on what is queued ends, if anything is held.
    pub(crate) fn hold_deadline(&self) -> Option<Instant> {
        self.hold_until
            .filter(|_| self.has_queue() && self.closing.is_none() && self.probe_deadline.is_none())
    }

    /// The request was just read: ends the hold and, when what was held is
    /// the plain run of every notification since the connection (nothing
    /// written, nothing dropped, no control line), takes it back unsent and
    /// returns the number of its first, so that the request's own stream
    /// (acknowledged, filtered, numbered) starts there. Otherwise None, and
    /// what was queued goes out as it is, ahead of the acknowledgement.
    pub(crate) fn withdraw_held(&mut self, counters: &Counters) -> Option<u64> {
        self.hold_until.take()?;
        if self.delivered > 0
            || self.dropped_slow > 0
            || self.unreported_drops > 0
            || self.behind
            || self.written_through.is_some()
        {
            return None;
        }
        let (mut first, mut end) = (None, None);
        for span in &self.queue {
            match *span {
                Span::Log {
                    next,
                    end: span_end,
                    offset: 0,
                    ..
                } if end.is_none_or(|end| end == next) => {
                    first.get_or_insert(next);
                    end = Some(span_end);
                }
                _ => return None,
            }
        }
        let first = first?;
        // Offered once here and once more by the request's stream: counted once.
        counters.fanout.fetch_sub(
            self.queued_messages as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.queue.clear();
        self.queued_messages = 0;
        Some(first)
    }

    /// Whether an emitter may write the next notification (number
    /// `next_seq`) to this subscriber itself, exactly as this thread would
    /// send it: it takes everything, has nothing queued, no drop to report,
    /// no partial request line (a request being read may change what it
    /// wants), and, with cursors, no `seq` line due before it.
    pub(crate) fn can_be_written_through(&self, next_seq: u64, now: Instant) -> bool {
        // A peer that has not spoken yet may be about to: the library's
        // clients write their request right after connecting. A line written
        // to it before the request is read would come before the
        // acknowledgement, where a resuming client cannot use it.
        let request_pending = match &self.request {
            RequestState::Awaiting(line) => {
                !line.is_empty() || now.saturating_duration_since(self.accepted) < SILENT_PEER_GRACE
            }
            RequestState::Done => false,
        };
        self.is_subscriber()
            && self.filter.is_none()
            && self.queue.is_empty()
            && !self.behind
            && self.unreported_drops == 0
            && !self.waiting_for_room
            && !request_pending
            && self.hold_until.is_none_or(|until| now >= until)
            && (!self.cursors || self.next_line_seq == Some(next_seq))
    }

    /// Every message emitters wrote was offered: nothing more to skip.
    pub(crate) fn forget_written_through(&mut self) {
        debug_assert!(matches!(self.written_through, None | Some((_, 0))));
        self.written_through = None;
    }

    /// Emitters wrote `delivered` messages from number `base` on to it, and
    /// `partial` bytes of the next (counted by them in delivered, fanout and
    /// bytes_sent, but for that last one's fanout).
    pub(crate) fn was_written_through(&mut self, base: u64, delivered: u64, partial: usize) {
        self.hold_until = None;
        self.delivered += delivered;
        if delivered > 0 || partial > 0 {
            self.last_sent = Instant::now();
        }
        if self.cursors {
            // The client numbers them itself, one after the other.
            self.next_line_seq = Some(base + delivered);
        }
        self.written_through = Some((base + delivered, partial));
    }

    pub(crate) fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    pub(crate) fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether emitters should count this connection as a subscriber.
    pub(crate) fn is_subscriber(&self) -> bool {
        self.closing.is_none() && self.probe_deadline.is_none()
    }

    /// The oldest log message this subscriber still needs, if any.
    pub(crate) fn oldest_log_seq(&self) -> Option<u64> {
        self.queue.iter().find_map(|span| match span {
            Span::Log { next, .. } | Span::History { next, .. } => Some(*next),
            _ => None,
        })
    }

    /// Memory held for this subscriber: the log from its oldest message on
    /// (the log lets go of batches in order, so that is what it keeps alive),
    /// its own copies and control lines, and the queue's own bookkeeping.
    pub(crate) fn held(&self, log: &MessageLog) -> usize {
        self.pinned(log) + self.own_footprint()
    }

    /// The log memory this subscriber keeps alive: every batch from the one
    /// holding its oldest message on.
    pub(crate) fn pinned(&self, log: &MessageLog) -> usize {
        self.pinned_until(log.end_mark(), self.free_from(log))
    }

    /// From which mark the log is kept for the replay ring anyway, at no cost
    /// of this subscriber's: under the drop policy, a subscriber keeps its
    /// place while the ring holds what it still needs (nothing is dropped
    /// that the ring keeps); under the disconnect policy its lag counts
    /// against its buffer as without a ring, so that it is let go while the
    /// ring still holds what it missed, and resumes from there without loss.
    fn free_from(&self, log: &MessageLog) -> u64 {
        if self.ring_is_free {
            log.ring_mark()
        } else {
            log.end_mark()
        }
    }

    /// What it keeps alive of the batches before the one with mark `until`.
    /// What the replay ring keeps anyway (from `ring_mark` on) is not counted.
    fn pinned_until(&self, until: u64, ring_mark: u64) -> usize {
        let first = self.queue.iter().find_map(|span| match span {
            Span::Log { mark, .. } | Span::History { mark, .. } => Some(*mark),
            _ => None,
        });
        first.map_or(0, |mark| {
            let end = until.min(ring_mark).max(mark);
            (end - mark) as usize
        })
    }

    /// Bytes its queue may hold (its buffer less the kernel's share).
    pub(crate) fn capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Whether it keeps more of the log alive than its own limit allows: it
    /// stopped taking messages (it overflowed) while others went on. Only a
    /// subscriber that is behind can: the others take everything up to the
    /// log's end, within their limit.
    pub(crate) fn pins_too_much(&self, log: &MessageLog) -> bool {
        self.behind && self.pinned(log) > self.queue_capacity
    }

    /// The memory its log ranges would take as its own copy.
    pub(crate) fn log_ranges_size(&self, log: &MessageLog) -> usize {
        self.queue
            .iter()
            .map(|span| match span {
                Span::Log {
                    next, end, offset, ..
                } => {
                    log.held_between(*next, *end).saturating_sub(*offset) + 2 * ALLOCATION_OVERHEAD
                }
                _ => 0,
            })
            .sum()
    }

    /// Copies what it still needs from the log into its own spans, so that the
    /// log can let go of everything newer that the other subscribers are done with.
    pub(crate) fn detach_from_log(&mut self, log: &MessageLog) {
        for span in self.queue.iter_mut() {
            let Span::Log {
                next, end, offset, ..
            } = *span
            else {
                continue;
            };
            let mut slices = Vec::new();
            log.slices(next, offset, end, usize::MAX, &mut slices);
            let mut bytes = Vec::with_capacity(slices.iter().map(|s| s.len()).sum());
            for slice in slices {
                bytes.extend_from_slice(slice);
            }
            let base = log.offset_of(next) + offset as u64;
            let ends: Vec<usize> = (next + 1..=end)
                .map(|seq| (log.offset_of(seq) - base) as usize)
                .collect();
            let chunk = OwnChunk {
                bytes,
                ends,
                next_message: 0,
                offset: 0,
            };
            self.own_footprint += chunk.footprint();
            *span = Span::Own(chunk);
        }
    }

    /// Memory held for this subscriber alone (not shared through the log).
    pub(crate) fn own_footprint(&self) -> usize {
        // An empty queue keeps at most a few dozen slots (advance gives larger
        // ones back): not worth showing as bytes queued.
        let bookkeeping = if self.queue.is_empty() {
            0
        } else {
            self.queue.capacity() * mem::size_of::<Span>()
        };
        self.own_footprint + bookkeeping
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

    /// Queues what a resuming subscriber missed: log messages [from, to), all
    /// of them or, with a filter, those that pass it (filtered as it reads).
    /// `missed` comes first: Some(n) for n gone, None for an unknown number.
    /// `replay`: they count as replayed (not when they are what was held
    /// back for it until its request, see `withdraw_held`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn resume(
        &mut self,
        log: &MessageLog,
        from: u64,
        to: u64,
        filter: Option<&Filter>,
        missed: Option<Option<u64>>,
        replay: bool,
        counters: &Counters,
    ) {
        self.history_is_replay = replay;
        match missed {
            Some(Some(0)) | None => {}
            Some(Some(n)) => self.queue_control(lines::dropped(n)),
            Some(None) => self.queue_control(lines::dropped_unknown()),
        }
        if from >= to {
            return;
        }
        match filter {
            None => {
                bump(&counters.fanout, to - from);
                if replay {
                    bump(&counters.replayed, to - from);
                }
                self.enqueue_log(log, from, to);
            }
            Some(filter) => {
                self.history_filter = Some(CachedFilter::new(filter.clone()));
                self.queue.push_back(Span::History {
                    next: from,
                    end: to,
                    mark: log.mark_of(from),
                });
            }
        }
    }

    /// Filters and copies the next part of a resumed history (about 64 KiB
    /// of what passes the filter) ahead of the rest, if the queue starts with one.
    fn materialize_history(&mut self, log: &MessageLog, counters: &Counters) {
        let Some(Span::History { next, end, .. }) = self.queue.front() else {
            return;
        };
        let (mut seq, end) = (*next, *end);
        // Taken out for the step (not cloned: a filter may hold 192 patterns).
        let Some(mut filter) = self.history_filter.take() else {
            return;
        };
        let mut copies: Vec<Span> = Vec::new();
        let mut chunk = OwnChunk::default();
        let (mut wanted, mut left_out) = (0u64, 0u64);
        // What this step copies, all chunks and seq lines counted: a filter
        // that matches every other message starts a chunk per message, so
        // the size of the current chunk alone would never stop the loop.
        let mut copied = 0usize;
        while seq < end && copied < HISTORY_STEP_BYTES {
            let (batch, index) = log.locate(seq);
            let line = &batch.bytes[batch.start_of(index)..batch.ends[index]];
            if filter.matches(&message_fields(&line[..line.len() - 1])) {
                if self.cursors && self.next_line_seq != Some(seq) {
                    if !chunk.ends.is_empty() {
                        copies.push(Span::Own(mem::take(&mut chunk)));
                    }
                    let line = lines::seq(seq);
                    copied +=
                        line.capacity() + 2 * mem::size_of::<Span>() + 4 * ALLOCATION_OVERHEAD;
                    copies.push(Span::Control { line, offset: 0 });
                }
                copied += line.len() + mem::size_of::<usize>();
                chunk.bytes.extend_from_slice(line);
                chunk.ends.push(chunk.bytes.len());
                self.next_line_seq = Some(seq + 1);
                wanted += 1;
            } else {
                left_out += 1;
            }
            seq += 1;
        }
        if !chunk.ends.is_empty() {
            copies.push(Span::Own(chunk));
        }
        bump(&counters.fanout, wanted);
        if self.history_is_replay {
            bump(&counters.replayed, wanted);
        }
        bump(&counters.filtered, left_out);
        self.queued_messages += wanted as usize;
        if seq >= end {
            self.queue.pop_front();
        } else if let Some(Span::History { next, mark, .. }) = self.queue.front_mut() {
            *next = seq;
            *mark = log.mark_of(seq);
            self.history_filter = Some(filter);
        }
        for span in copies.into_iter().rev() {
            match &span {
                Span::Own(chunk) => self.own_footprint += chunk.footprint(),
                Span::Control { line, .. } => {
                    self.own_footprint += line.capacity() + ALLOCATION_OVERHEAD
                }
                _ => {}
            }
            self.queue.push_front(span);
        }
    }

    /// Queues a control line; it counts against the buffer but is always
    /// accepted (control lines are few and small).
    pub(crate) fn queue_control(&mut self, line: Vec<u8>) {
        self.own_footprint += line.capacity() + ALLOCATION_OVERHEAD;
        self.queue.push_back(Span::Control { line, offset: 0 });
        self.last_sent = Instant::now();
    }

    fn room(&self, log: &MessageLog) -> usize {
        self.queue_capacity.saturating_sub(self.held(log))
    }

    /// Room left before the batch holding `first` (the newest) is counted.
    fn room_before(&self, log: &MessageLog, first: u64) -> usize {
        let held =
            self.pinned_until(log.mark_of(first), self.free_from(log)) + self.own_footprint();
        self.queue_capacity.saturating_sub(held)
    }

    /// Queues log messages [first, end) (one batch, just appended), as many as
    /// fit, for a subscriber that takes everything. After an overflow earlier
    /// in the same round, `overflowed` makes every message a drop, so a
    /// subscriber that falls behind sees one gap, not a scattering.
    pub(crate) fn offer_all(
        &mut self,
        log: &MessageLog,
        first: u64,
        end: u64,
        overflowed: bool,
        counters: &Counters,
    ) -> Offered {
        let mut first = first;
        if let Some((until, partial)) = self.written_through {
            if until >= end {
                // Emitters wrote all of these themselves (and counted them).
                return Offered::All;
            }
            self.written_through = None;
            first = first.max(until);
            if partial > 0 {
                // The rest of a line the kernel took only part of goes first,
                // whatever the room: the reader has its beginning.
                bump(&counters.fanout, 1);
                self.enqueue_log(log, first, first + 1);
                if let Some(Span::Log { offset, .. }) = self.queue.back_mut() {
                    *offset = partial;
                }
                first += 1;
                if first == end {
                    return Offered::All;
                }
            }
        }
        let wanted = (end - first) as usize;
        bump(&counters.fanout, wanted as u64);
        if overflowed || self.behind {
            self.count_drops(wanted, counters);
            return Offered::Overflowed;
        }
        loop {
            let fit = self.fitting_log_end(log, first, end);
            if fit > first {
                self.report_drops();
                self.enqueue_log(log, first, fit);
                first = fit;
            }
            if first == end {
                return Offered::All;
            }
            match self.make_room(log, counters) {
                Some(Offered::PeerGone) => {
                    bump(&counters.dropped_closed, end - first);
                    return Offered::PeerGone;
                }
                Some(_) => continue,
                None => {
                    self.count_drops((end - first) as usize, counters);
                    return Offered::Overflowed;
                }
            }
        }
    }

    /// Copies the messages of log batch [first, end) that `wanted` marks
    /// (one verdict per message), as many as fit, for a subscriber with a filter.
    pub(crate) fn offer_filtered(
        &mut self,
        log: &MessageLog,
        first: u64,
        wanted: &[bool],
        overflowed: bool,
        counters: &Counters,
    ) -> Offered {
        let count = wanted.iter().filter(|&&w| w).count();
        bump(&counters.filtered, (wanted.len() - count) as u64);
        bump(&counters.fanout, count as u64);
        if overflowed || self.behind {
            self.count_drops(count, counters);
            return Offered::Overflowed;
        }
        let (batch, base) = log.locate(first);
        let mut left = count;
        for (index, _) in wanted.iter().enumerate().filter(|(_, &w)| w) {
            let message = &batch.bytes[batch.start_of(base + index)..batch.ends[base + index]];
            loop {
                if self.unreported_drops > 0 {
                    // The marker goes first: it must fit too.
                    let marker = lines::dropped(self.unreported_drops);
                    if marker.capacity() + ALLOCATION_OVERHEAD + message.len() <= self.room(log) {
                        self.report_drops();
                    }
                }
                if self.unreported_drops == 0
                    && self.enqueue_copy(first + index as u64, message, self.room(log))
                {
                    left -= 1;
                    break;
                }
                match self.make_room(log, counters) {
                    Some(Offered::PeerGone) => {
                        bump(&counters.dropped_closed, left as u64);
                        return Offered::PeerGone;
                    }
                    Some(_) => continue,
                    None => {
                        self.count_drops(left, counters);
                        return Offered::Overflowed;
                    }
                }
            }
        }
        Offered::All
    }

    /// The queue is full: lets the kernel take what it can (its share of the
    /// buffer). Some(All) when that made room, None when it did not.
    fn make_room(&mut self, log: &MessageLog, counters: &Counters) -> Option<Offered> {
        // Tried even when the kernel said it was full at the last write: the
        // reader may have emptied it since, and its EPOLLOUT be among this
        // round's events, which are dispatched only after the new messages
        // are offered. Giving up here dropped notifications for a reader that
        // kept up. If the kernel is still full, the subscriber overflows: it
        // is behind, and nothing more is offered to it (or tried) until it
        // reads, so this costs one system call per overflow, not per message.
        // Holding back never costs a drop: short of room, it is sent now.
        self.release_hold();
        let held_before = self.held(log);
        match self.flush(log, counters) {
            Flush::PeerGone => Some(Offered::PeerGone),
            Flush::Blocked => {
                self.waiting_for_room = true;
                (self.held(log) < held_before).then_some(Offered::All)
            }
            Flush::Drained | Flush::Held => {
                // The kernel took everything: no EPOLLOUT to wait for.
                self.waiting_for_room = false;
                (self.held(log) < held_before).then_some(Offered::All)
            }
        }
    }

    fn count_drops(&mut self, dropped: usize, counters: &Counters) {
        if dropped > 0 {
            self.behind = true;
        }
        bump(&counters.dropped_slow, dropped as u64);
        self.dropped_slow += dropped as u64;
        if self.markers {
            self.unreported_drops += dropped as u64;
        }
    }

    pub(crate) fn has_unreported_drops(&self) -> bool {
        self.unreported_drops > 0
    }

    /// With markers, tells the subscriber how many it missed, before anything newer.
    pub(crate) fn report_drops(&mut self) {
        if self.unreported_drops > 0 {
            let line = lines::dropped(mem::take(&mut self.unreported_drops));
            self.queue_control(line);
        }
    }

    /// The end of the longest run of log messages from `first` that fits.
    fn fitting_log_end(&self, log: &MessageLog, first: u64, end: u64) -> u64 {
        let available = self.room_before(log, first);
        // Extending the last range adds only the messages; a new range also
        // its bookkeeping. The batch of [first, end) is new: its own
        // bookkeeping is held as soon as one message of it is.
        let extends =
            matches!(self.queue.back(), Some(Span::Log { end: last, .. }) if *last == first);
        let fixed = ENTRY_OVERHEAD + if extends { 0 } else { mem::size_of::<Span>() };
        let Some(available) = available.checked_sub(fixed) else {
            return first;
        };
        let (batch, index) = log.locate(first);
        let start = batch.start_of(index);
        let count = (end - first) as usize;
        // The longest prefix of k messages whose bytes and bookkeeping fit.
        let cost = |k: usize| batch.ends[index + k - 1] - start + k * MESSAGE_OVERHEAD;
        let (mut low, mut high) = (0, count);
        while low < high {
            let middle = (low + high).div_ceil(2);
            if cost(middle) <= available {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        first + low as u64
    }

    /// With cursors, tells the client the number of the message it is about
    /// to get when it would not count it itself.
    fn announce_seq(&mut self, seq: u64, end: u64) {
        if self.cursors && self.next_line_seq != Some(seq) {
            self.queue_control(lines::seq(seq));
        }
        self.next_line_seq = Some(end);
    }

    fn enqueue_log(&mut self, log: &MessageLog, first: u64, end: u64) {
        self.announce_seq(first, end);
        self.queued_messages += (end - first) as usize;
        self.last_sent = Instant::now();
        if let Some(Span::Log { end: last, .. }) = self.queue.back_mut() {
            if *last == first {
                *last = end;
                return;
            }
        }
        self.queue.push_back(Span::Log {
            next: first,
            end,
            offset: 0,
            mark: log.mark_of(first),
        });
    }

    /// Copies message `seq` to the end of our own spans if its cost (the
    /// bytes, or a new chunk's whole allocation) fits in `room`; false if it
    /// does not.
    fn enqueue_copy(&mut self, seq: u64, message: &[u8], room: usize) -> bool {
        // A seq line in between means a chunk of its own after it.
        let announce = self.cursors && self.next_line_seq != Some(seq);
        let reusable = !announce
            && matches!(self.queue.back(), Some(Span::Own(chunk))
            if chunk.bytes.capacity() - chunk.bytes.len() >= message.len()
                && chunk.ends.len() < chunk.ends.capacity());
        if reusable {
            if message.len() > room {
                return false;
            }
        } else {
            // A chunk as large as the room allows, up to OWN_CHUNK_BYTES, so
            // that a small buffer still takes copies.
            let ends = 8;
            let overhead = ends * mem::size_of::<usize>()
                + 2 * ALLOCATION_OVERHEAD
                + mem::size_of::<Span>()
                + if announce { 64 } else { 0 };
            let capacity = message
                .len()
                .max(OWN_CHUNK_BYTES.min(room.saturating_sub(overhead)));
            if capacity + overhead > room {
                return false;
            }
            if announce {
                self.queue_control(lines::seq(seq));
            }
            let mut chunk = OwnChunk::default();
            chunk.bytes.reserve_exact(capacity);
            chunk.ends.reserve_exact(ends);
            self.own_footprint += chunk.footprint();
            self.queue.push_back(Span::Own(chunk));
        }
        self.next_line_seq = Some(seq + 1);
        self.queued_messages += 1;
        self.last_sent = Instant::now();
        let Some(Span::Own(chunk)) = self.queue.back_mut() else {
            unreachable!("an own chunk was just made the last span");
        };
        let before = chunk.footprint();
        chunk.bytes.extend_from_slice(message);
        chunk.ends.push(chunk.bytes.len());
        self.own_footprint = self.own_footprint + chunk.footprint() - before;
        true
    }

    /// Throws away every queued message but the one being written (its rest
    /// must still go, or the subscriber would read half a line), counting them
    /// as dropped; control lines stay. Returns how many were dropped.
    pub(crate) fn discard_queue(&mut self, log: &MessageLog, counters: &Counters) -> usize {
        let mut kept = VecDeque::new();
        let mut dropped = 0;
        let mut first = true;
        for span in self.queue.drain(..) {
            match span {
                Span::Control { .. } => kept.push_back(span),
                Span::Log {
                    next, end, offset, ..
                } => {
                    let mut next = next;
                    if first && offset > 0 {
                        // Keep the rest of the half-written message, as a copy.
                        let mut rest = Vec::new();
                        let mut slices = Vec::new();
                        log.slices(next, offset, next + 1, 2, &mut slices);
                        for slice in slices {
                            rest.extend_from_slice(slice);
                        }
                        let ends = vec![rest.len()];
                        kept.push_back(Span::Own(OwnChunk {
                            bytes: rest,
                            ends,
                            next_message: 0,
                            offset: 0,
                        }));
                        next += 1;
                    }
                    dropped += (end - next) as usize;
                }
                Span::Own(mut chunk) => {
                    if first && chunk.offset > 0 {
                        let end = chunk.ends[chunk.next_message];
                        dropped += chunk.unwritten_messages() - 1;
                        chunk.bytes.truncate(end);
                        chunk.bytes.shrink_to_fit();
                        chunk.ends.truncate(chunk.next_message + 1);
                        chunk.ends.shrink_to_fit();
                        kept.push_back(Span::Own(chunk));
                    } else {
                        dropped += chunk.unwritten_messages();
                    }
                }
                Span::History { next, end, .. } => {
                    // Not handed out yet, so not in fanout: counted as handed
                    // out and dropped (for a filter, an upper bound: they
                    // are not filtered any more).
                    bump(&counters.fanout, end - next);
                    self.queued_messages += (end - next) as usize;
                    dropped += (end - next) as usize;
                    self.history_filter = None;
                }
            }
            first = false;
        }
        self.queue = kept;
        self.own_footprint = self
            .queue
            .iter()
            .map(|span| match span {
                Span::Own(chunk) => chunk.footprint(),
                Span::Control { line, .. } => line.capacity() + ALLOCATION_OVERHEAD,
                Span::Log { .. } | Span::History { .. } => 0,
            })
            .sum();
        self.queued_messages -= dropped;
        self.count_drops(dropped, counters);
        dropped
    }

    /// Writes as much of the queue as the socket takes, counting every message
    /// that is now fully written.
    pub(crate) fn flush(&mut self, log: &MessageLog, counters: &Counters) -> Flush {
        if self.hold_until.is_some() {
            if self.held(log) <= MAX_HELD_BYTES && self.is_holding(Instant::now()) {
                return Flush::Held;
            }
            self.release_hold();
        }
        loop {
            self.materialize_history(log, counters);
            if self.queue.is_empty() {
                break;
            }
            let mut slices: Vec<&[u8]> = Vec::with_capacity(MAX_IOVECS);
            for span in &self.queue {
                let room = MAX_IOVECS - slices.len();
                if room == 0 {
                    break;
                }
                match span {
                    Span::Log {
                        next, end, offset, ..
                    } => log.slices(*next, *offset, *end, room, &mut slices),
                    Span::Own(chunk) => slices.push(&chunk.bytes[chunk.offset..]),
                    Span::Control { line, offset } => slices.push(&line[*offset..]),
                    // Not filtered yet: nothing after it may go before it.
                    Span::History { .. } => break,
                }
            }
            let mut iovecs: [libc::iovec; MAX_IOVECS] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS];
            for (iovec, slice) in iovecs.iter_mut().zip(&slices) {
                *iovec = libc::iovec {
                    iov_base: slice.as_ptr() as *mut libc::c_void,
                    iov_len: slice.len(),
                };
            }
            // SAFETY: msghdr is plain data; zeroed means no address and no control data.
            let mut header: libc::msghdr = unsafe { mem::zeroed() };
            header.msg_iov = iovecs.as_mut_ptr();
            header.msg_iovlen = slices.len() as _;
            drop(slices);
            // MSG_NOSIGNAL: a vanished subscriber must never raise SIGPIPE in the host.
            // SAFETY: the iovecs point into the log and our spans, which
            // outlive the call.
            let written = unsafe {
                libc::sendmsg(
                    self.fd.raw(),
                    &header,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            bump(&counters.writes, 1);
            if written < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Flush::Blocked,
                    _ => return Flush::PeerGone,
                }
            }
            let written = written as usize;
            if written > 0 {
                // It reads again: it may be given messages again.
                self.behind = false;
            }
            bump(&counters.bytes_sent, written as u64);
            let delivered = self.advance(log, written);
            self.delivered += delivered as u64;
            bump(&counters.delivered, delivered as u64);
        }
        Flush::Drained
    }

    /// Moves the queue past `written` bytes; returns how many messages that completed.
    fn advance(&mut self, log: &MessageLog, mut written: usize) -> usize {
        let mut completed = 0;
        while written > 0 {
            let span = self
                .queue
                .front_mut()
                .expect("the kernel took no more than we gave it");
            let done = match span {
                Span::Log {
                    next,
                    end,
                    offset,
                    mark,
                } => {
                    let left = log.bytes_between(*next, *end) as usize - *offset;
                    if written >= left {
                        written -= left;
                        completed += (*end - *next) as usize;
                        true
                    } else {
                        let (to, within) = log.advance(*next, *offset, written);
                        completed += (to - *next) as usize;
                        *next = to;
                        *offset = within;
                        *mark = log.mark_of(to);
                        written = 0;
                        false
                    }
                }
                Span::Own(chunk) => {
                    let step = written.min(chunk.bytes.len() - chunk.offset);
                    written -= step;
                    chunk.offset += step;
                    while chunk.next_message < chunk.ends.len()
                        && chunk.ends[chunk.next_message] <= chunk.offset
                    {
                        chunk.next_message += 1;
                        completed += 1;
                    }
                    chunk.offset == chunk.bytes.len()
                }
                Span::Control { line, offset } => {
                    let step = written.min(line.len() - *offset);
                    written -= step;
                    *offset += step;
                    *offset == line.len()
                }
                Span::History { .. } => {
                    unreachable!("nothing of a history is written before it is copied")
                }
            };
            if done {
                match self.queue.pop_front() {
                    Some(Span::Own(chunk)) => self.own_footprint -= chunk.footprint(),
                    Some(Span::Control { line, .. }) => {
                        self.own_footprint -= line.capacity() + ALLOCATION_OVERHEAD
                    }
                    _ => {}
                }
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            // A long queue's bookkeeping goes back once it is written.
            self.queue = VecDeque::new();
        }
        self.queued_messages -= completed;
        completed
    }

    /// Reads and discards input the subscriber already sent (bounded), so that
    /// closing the socket gives the peer a clean end of stream after our last
    /// line: closing with unread input makes the kernel report ECONNRESET instead.
    pub(crate) fn discard_pending_input(&mut self) {
        let mut scratch = [0u8; 8192];
        for _ in 0..32 {
            if self.receive(&mut scratch) <= 0 {
                return;
            }
        }
    }

    /// One non-blocking recv(2) into `buffer`; its raw result.
    fn receive(&self, buffer: &mut [u8]) -> isize {
        // SAFETY: reads into a live buffer of the given size.
        unsafe {
            libc::recv(
                self.fd.raw(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
            )
        }
    }

    /// Reads what the subscriber sent: at most one request line, bounded.
    pub(crate) fn read_input(&mut self) -> Input {
        let mut scratch = [0u8; 8192];
        loop {
            let n = self.receive(&mut scratch);
            if n < 0 {
                return match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => Input::Idle,
                    _ => Input::PeerGone,
                };
            }
            if n == 0 {
                // A request written without its newline before shutdown(SHUT_WR)
                // (`printf '{"stats":true}' | socat ...`) still counts.
                if let RequestState::Awaiting(buffer) = &mut self.request {
                    if !buffer.is_empty() {
                        let line = mem::take(buffer);
                        self.request = RequestState::Done;
                        self.request_deadline = None;
                        return Input::Request {
                            line,
                            followed_by_more: false,
                        };
                    }
                }
                return Input::PeerStoppedSending;
            }
            self.spoke = true;
            let received = &scratch[..n as usize];
            let RequestState::Awaiting(buffer) = &mut self.request else {
                return Input::Invalid(ONE_REQUEST.into());
            };
            let newline = received.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(received.len());
            if buffer.len() + take + 1 > MAX_REQUEST_LINE {
                return Input::Invalid(format!(
                    "the request line is longer than {MAX_REQUEST_LINE} bytes"
                ));
            }
            buffer.extend_from_slice(&received[..take]);
            if let Some(newline) = newline {
                let line = mem::take(buffer);
                self.request = RequestState::Done;
                self.request_deadline = None;
                return Input::Request {
                    line,
                    followed_by_more: newline + 1 < received.len(),
                };
            }
            if self.request_deadline.is_none() {
                self.request_deadline = Some(Instant::now() + REQUEST_TIMEOUT);
            }
        }
    }
}

/// Caps the kernel's send buffer for this socket at about `share` bytes and
/// returns what the kernel actually granted (it doubles requests for its own
/// bookkeeping and clamps them to net.core.wmem_max).
fn limit_kernel_buffer(fd: &OwnedFd, share: usize) -> usize {
    let request = (share / 2).min(i32::MAX as usize) as libc::c_int;
    // SAFETY: passes a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd.raw(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&request as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let mut granted: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads into a live c_int of the stated size.
    let rc = unsafe {
        libc::getsockopt(
            fd.raw(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || granted <= 0 {
        return share;
    }
    granted as usize
}
