//! One connected subscriber as the server thread sees it: its socket, what is
//! waiting for it, how much more it may be given, and what it asked for.
//!
//! Messages are never copied per subscriber: a subscriber's queue holds ranges
//! of shared batches (and the occasional control line of its own), and one
//! sendmsg() writes many of them at once. A subscriber's limit counts the
//! kernel's socket buffer in: the kernel gets at most half of it, our queue the rest.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backlog::Batch;
use crate::fork_guard::OwnedFd;
use crate::stats::{bump, Counters};
use crate::subscription::{lines, Filter, MessageFields, MAX_REQUEST_LINE};

#[derive(Debug)]
enum Segment {
    /// Messages [next_message, end_message) of a batch, of which the bytes
    /// before `offset` are already written.
    Messages {
        batch: Arc<Batch>,
        next_message: usize,
        end_message: usize,
        offset: usize,
    },
    /// A control line for this subscriber only.
    Control { line: Vec<u8>, offset: usize },
}

impl Segment {
    fn unwritten(&self) -> &[u8] {
        match self {
            Segment::Messages {
                batch,
                end_message,
                offset,
                ..
            } => &batch.bytes[*offset..batch.ends[*end_message - 1]],
            Segment::Control { line, offset } => &line[*offset..],
        }
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

/// Most iovecs per sendmsg: a few dozen segments cover a full socket buffer.
const MAX_IOVECS: usize = 64;

#[derive(Debug)]
enum RequestState {
    /// Nothing read yet, or part of a request line.
    Awaiting(Vec<u8>),
    /// The request was read; the connection carries no other.
    Done,
}

#[derive(Debug)]
pub(crate) struct SubscriberConn {
    pub(crate) fd: OwnedFd,
    queue: VecDeque<Segment>,
    queued_bytes: usize,
    queued_messages: usize,
    /// Bytes our queue may hold: the subscriber buffer minus the kernel's share.
    queue_capacity: usize,
    /// Whether we watch for input (until the peer shuts its sending side).
    pub(crate) reading: bool,
    /// Whether we asked epoll for EPOLLOUT.
    pub(crate) waiting_for_room: bool,
    request: RequestState,
    /// None: every notification.
    pub(crate) filter: Option<Filter>,
    markers: bool,
    /// Drops not yet reported with a marker line.
    unreported_drops: u64,
    pub(crate) heartbeat: Option<Duration>,
    /// When we last queued anything for this subscriber.
    pub(crate) last_sent: Instant,
    /// Close once the queue is written (after an error or a stats answer); no
    /// notifications are queued meanwhile.
    pub(crate) closing: Option<Closing>,
    /// When a closing subscriber is closed even if its queue is not written.
    pub(crate) closing_deadline: Option<Instant>,
}

/// Why a subscriber is being closed once its queue is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Its request was invalid.
    BadRequest,
    /// It asked for stats and got them.
    Answered,
    /// It fell behind under the disconnect policy.
    TooSlow,
}

impl SubscriberConn {
    pub(crate) fn new(fd: OwnedFd, subscriber_buffer: usize) -> SubscriberConn {
        let kernel_share = limit_kernel_buffer(&fd, subscriber_buffer / 2);
        SubscriberConn {
            fd,
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_messages: 0,
            queue_capacity: subscriber_buffer.saturating_sub(kernel_share),
            reading: true,
            waiting_for_room: false,
            request: RequestState::Awaiting(Vec::new()),
            filter: None,
            markers: false,
            unreported_drops: 0,
            heartbeat: None,
            last_sent: Instant::now(),
            closing: None,
            closing_deadline: None,
        }
    }

    pub(crate) fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    pub(crate) fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Applies a subscription request and queues the acknowledgement.
    pub(crate) fn subscribe(&mut self, filter: Filter, markers: bool, heartbeat: Option<Duration>) {
        self.filter = (!filter.is_everything()).then_some(filter);
        self.markers = markers;
        self.heartbeat = heartbeat;
        self.queue_control(lines::subscribed());
    }

    /// Queues a control line; it counts against the buffer but is always
    /// accepted (control lines are few and small).
    pub(crate) fn queue_control(&mut self, line: Vec<u8>) {
        self.queued_bytes += line.len();
        self.queue.push_back(Segment::Control { line, offset: 0 });
        self.last_sent = Instant::now();
    }

    /// Queues the wanted messages of a batch, as many as fit, and counts what
    /// happened to each. `fields` holds each message's filterable fields when
    /// some subscriber filters (it is empty otherwise). After an overflow
    /// earlier in the same round, `overflowed` makes every wanted message a drop,
    /// so a subscriber that falls behind sees one gap, not a scattering.
    pub(crate) fn offer(
        &mut self,
        batch: &Arc<Batch>,
        fields: &[MessageFields<'_>],
        overflowed: bool,
        counters: &Counters,
    ) -> Offered {
        let messages = batch.message_count();
        let runs = self.wanted_runs(batch, fields);
        let wanted: usize = runs.iter().map(|(first, end)| end - first).sum();
        bump(&counters.filtered, (messages - wanted) as u64);
        bump(&counters.fanout, wanted as u64);
        if overflowed {
            self.count_drops(wanted, counters);
            return Offered::Overflowed;
        }
        for (index, &(run_start, end)) in runs.iter().enumerate() {
            let mut first = run_start;
            loop {
                let fit = self.fitting_end(batch, first, end);
                if fit > first {
                    self.report_drops();
                    self.enqueue(batch, first, fit);
                    first = fit;
                }
                if first == end {
                    break;
                }
                // It does not all fit our queue: let the kernel take what it
                // can (its share of the subscriber's buffer), then try again.
                // Only when that makes no room is the subscriber really full.
                let queued_before = self.queued_bytes;
                if self.flush(counters) == Flush::PeerGone {
                    let unqueued = (end - first)
                        + runs[index + 1..]
                            .iter()
                            .map(|(first, end)| end - first)
                            .sum::<usize>();
                    bump(&counters.dropped_closed, unqueued as u64);
                    return Offered::PeerGone;
                }
                if self.queued_bytes == queued_before {
                    let later: usize = runs[index + 1..]
                        .iter()
                        .map(|(first, end)| end - first)
                        .sum();
                    self.count_drops(end - first + later, counters);
                    return Offered::Overflowed;
                }
            }
        }
        Offered::All
    }

    /// The runs of consecutive messages this subscriber wants, as [first, end) pairs.
    fn wanted_runs(&self, batch: &Batch, fields: &[MessageFields<'_>]) -> Vec<(usize, usize)> {
        let messages = batch.message_count();
        let Some(filter) = &self.filter else {
            return vec![(0, messages)];
        };
        let mut runs = Vec::new();
        let mut run_start = None;
        for (index, message_fields) in fields.iter().enumerate().take(messages) {
            match (filter.matches(message_fields), run_start) {
                (true, None) => run_start = Some(index),
                (false, Some(start)) => {
                    runs.push((start, index));
                    run_start = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run_start {
            runs.push((start, messages));
        }
        runs
    }

    fn count_drops(&mut self, dropped: usize, counters: &Counters) {
        bump(&counters.dropped_slow, dropped as u64);
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

    /// The end of the longest prefix of messages [first, end) that fits.
    fn fitting_end(&self, batch: &Batch, first: usize, end: usize) -> usize {
        let available = self.queue_capacity.saturating_sub(self.queued_bytes);
        let start = batch.start_of(first);
        first
            + batch.ends[first..end]
                .partition_point(|&message_end| message_end - start <= available)
    }

    /// Queues messages [first, end) of a batch.
    fn enqueue(&mut self, batch: &Arc<Batch>, first: usize, end: usize) {
        if end == first {
            return;
        }
        let start = batch.start_of(first);
        self.queue.push_back(Segment::Messages {
            batch: Arc::clone(batch),
            next_message: first,
            end_message: end,
            offset: start,
        });
        self.queued_bytes += batch.ends[end - 1] - start;
        self.queued_messages += end - first;
        self.last_sent = Instant::now();
    }

    /// Writes as much of the queue as the socket takes, counting every message
    /// that is now fully written.
    pub(crate) fn flush(&mut self, counters: &Counters) -> Flush {
        while !self.queue.is_empty() {
            let mut iovecs: [libc::iovec; MAX_IOVECS] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS];
            let mut count = 0;
            for segment in self.queue.iter().take(MAX_IOVECS) {
                let bytes = segment.unwritten();
                iovecs[count] = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                };
                count += 1;
            }
            // SAFETY: msghdr is plain data; zeroed means no address and no control data.
            let mut header: libc::msghdr = unsafe { mem::zeroed() };
            header.msg_iov = iovecs.as_mut_ptr();
            header.msg_iovlen = count as _;
            // MSG_NOSIGNAL: a vanished subscriber must never raise SIGPIPE in the host.
            // SAFETY: the iovecs point into segments kept alive by self.queue.
            let written = unsafe {
                libc::sendmsg(
                    self.fd.raw(),
                    &header,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if written < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {
                        self.unpin_sparse_chunks();
                        return Flush::Blocked;
                    }
                    _ => return Flush::PeerGone,
                }
            }
            let written = written as usize;
            bump(&counters.bytes_sent, written as u64);
            let delivered = self.advance(written);
            bump(&counters.delivered, delivered as u64);
        }
        Flush::Drained
    }

    /// A queued range keeps its whole chunk alive (64 KiB or more, shared with
    /// the other subscribers until they are done with it). For a subscriber that
    /// lags, a range much smaller than its chunk (one message taken alone, a
    /// filtered few, the tail of a half-written chunk) is copied into a
    /// right-sized batch of its own, so what the subscriber holds is what its
    /// limit counts. Only lagging subscribers pay for the copy, once per range.
    fn unpin_sparse_chunks(&mut self) {
        for segment in self.queue.iter_mut() {
            let Segment::Messages {
                batch,
                next_message,
                end_message,
                offset,
            } = segment
            else {
                continue;
            };
            // Keep the written part of a half-written message: its boundary
            // tells a forced close where the line started.
            let start = batch.start_of(*next_message);
            let end = batch.ends[*end_message - 1];
            if batch.bytes.capacity() <= 2 * (end - start) + 4096 {
                continue;
            }
            let own = Batch {
                bytes: batch.bytes[start..end].to_vec(),
                ends: batch.ends[*next_message..*end_message]
                    .iter()
                    .map(|e| e - start)
                    .collect(),
            };
            *segment = Segment::Messages {
                batch: Arc::new(own),
                next_message: 0,
                end_message: *end_message - *next_message,
                offset: *offset - start,
            };
        }
    }

    /// Moves the queue past `written` bytes; returns how many messages that completed.
    fn advance(&mut self, mut written: usize) -> usize {
        let mut completed = 0;
        self.queued_bytes -= written;
        while written > 0 {
            let segment = self
                .queue
                .front_mut()
                .expect("the kernel took no more than we gave it");
            let step = written.min(segment.unwritten().len());
            written -= step;
            let done = match segment {
                Segment::Messages {
                    batch,
                    next_message,
                    end_message,
                    offset,
                } => {
                    *offset += step;
                    while *next_message < *end_message && batch.ends[*next_message] <= *offset {
                        *next_message += 1;
                        completed += 1;
                    }
                    *next_message == *end_message
                }
                Segment::Control { line, offset } => {
                    *offset += step;
                    *offset == line.len()
                }
            };
            if done {
                self.queue.pop_front();
            }
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
                        return Input::Request {
                            line,
                            followed_by_more: false,
                        };
                    }
                }
                return Input::PeerStoppedSending;
            }
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
                return Input::Request {
                    line,
                    followed_by_more: newline + 1 < received.len(),
                };
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
