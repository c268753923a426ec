//! One connected subscriber as the server thread sees it: its socket, the
//! messages waiting for it, and how much more it may be given.
//!
//! Messages are never copied per subscriber: a subscriber's queue holds ranges
//! of shared batches, and one sendmsg() writes many messages (several batches)
//! at once. A subscriber's limit counts the kernel's socket buffer in: the
//! kernel gets at most half of it, our queue the rest.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::Arc;

use crate::backlog::Batch;
use crate::fork_guard::OwnedFd;
use crate::stats::{bump, Counters};

/// Messages [next_message, end_message) of a batch, of which the bytes before
/// `offset` are already written.
#[derive(Debug)]
struct Segment {
    batch: Arc<Batch>,
    next_message: usize,
    end_message: usize,
    offset: usize,
}

impl Segment {
    fn unwritten(&self) -> &[u8] {
        &self.batch.bytes[self.offset..self.batch.ends[self.end_message - 1]]
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
    /// The peer shut down its sending side (e.g. `socat` at the end of its
    /// stdin). It may still be reading, so it stays subscribed.
    PeerStoppedSending,
    PeerGone,
}

/// Most iovecs per sendmsg: a few dozen segments cover a full socket buffer.
const MAX_IOVECS: usize = 64;
/// Most bytes read (and discarded) from one subscriber per wake-up, so a peer
/// that floods us cannot monopolise the server thread.
const MAX_READ_PER_WAKEUP: usize = 64 * 1024;

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
        }
    }

    pub(crate) fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    pub(crate) fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// How many of the batch's messages, from the first, fit in our queue now.
    pub(crate) fn room_for(&self, batch: &Batch) -> usize {
        let available = self.queue_capacity.saturating_sub(self.queued_bytes);
        batch.ends.partition_point(|&end| end <= available)
    }

    /// Queues the batch's first `count` messages.
    pub(crate) fn enqueue(&mut self, batch: &Arc<Batch>, count: usize) {
        if count == 0 {
            return;
        }
        self.queue.push_back(Segment {
            batch: Arc::clone(batch),
            next_message: 0,
            end_message: count,
            offset: 0,
        });
        self.queued_bytes += batch.ends[count - 1];
        self.queued_messages += count;
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
            // SAFETY: the iovecs point into batches kept alive by self.queue.
            let written = unsafe {
                libc::sendmsg(
                    self.fd.raw(),
                    &header,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if written < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Flush::Blocked,
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

    /// Moves the queue past `written` bytes; returns how many messages that completed.
    fn advance(&mut self, mut written: usize) -> usize {
        let mut completed = 0;
        self.queued_bytes -= written;
        while written > 0 {
            let segment = self
                .queue
                .front_mut()
                .expect("the kernel took no more than we gave it");
            let unwritten = segment.unwritten().len();
            let step = written.min(unwritten);
            segment.offset += step;
            written -= step;
            while segment.next_message < segment.end_message
                && segment.batch.ends[segment.next_message] <= segment.offset
            {
                segment.next_message += 1;
                completed += 1;
            }
            if segment.next_message == segment.end_message {
                self.queue.pop_front();
            }
        }
        self.queued_messages -= completed;
        completed
    }

    /// Reads and discards what the subscriber sent (the protocol has nothing
    /// for it to say yet); a bounded amount per call.
    pub(crate) fn read_input(&mut self) -> Input {
        let mut scratch = [0u8; 8192];
        let mut total = 0;
        while total < MAX_READ_PER_WAKEUP {
            // SAFETY: reads into a live stack buffer of the given size.
            let n = unsafe {
                libc::recv(
                    self.fd.raw(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                total += n as usize;
                continue;
            }
            if n == 0 {
                return Input::PeerStoppedSending;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Input::Idle,
                _ => return Input::PeerGone,
            }
        }
        Input::Idle
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
