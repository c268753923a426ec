//! The subscriber's socket: non-blocking writes of the queue (timed against
//! the send budget), reads, and the kernel buffer's size.

use std::io;
use std::mem;
use std::time::Instant;

use super::*;

/// Most slices per sendmsg: a few dozen cover a full socket buffer.
const MAX_IOVECS: usize = 64;

impl SubscriberConn {
    /// Writes as much of the queue as the socket takes, counting every message
    /// that is now fully written.
    pub(crate) fn flush(&mut self, log: &MessageLog, counters: &Counters) -> Flush {
        if self.hold_until.is_some() {
            if self.held(log) <= MAX_HELD_BYTES && self.is_holding(Instant::now()) {
                return Flush::Held;
            }
            self.release_hold();
        }
        // At most one step of a resumed history per call, and only as many
        // entries as the server granted (Server::continue_histories shares
        // a budget per round among the connections, in turn).
        let mut stepped = false;
        loop {
            if matches!(self.queue.front(), Some(Span::History { .. })) {
                if stepped || self.history_grant == 0 {
                    return Flush::MoreHistory;
                }
                let grant = std::mem::take(&mut self.history_grant);
                self.materialize_history(log, counters, grant);
                stepped = true;
                if matches!(self.queue.front(), Some(Span::History { .. })) {
                    // The step found nothing to send: the rest next round.
                    return Flush::MoreHistory;
                }
            }
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
            if self.send_cost.exceeded() && !self.is_closing() {
                // The server cuts it off (Closing::TooCostly); only the
                // error line saying so is written to it from now on.
                return Flush::Blocked;
            }
            // A trusted peer (root, the publisher's user) could harm the
            // host anyway: its sends are not budgeted (nor cut off when a
            // slow machine, or valgrind, makes them look costly).
            let timing = (!self.trusted).then(|| self.send_cost.start());
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
            if let Some(timing) = timing {
                self.send_cost.finish(timing, written.max(0) as usize);
            }
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
    pub(super) fn receive(&self, buffer: &mut [u8]) -> isize {
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
}

/// Caps the kernel's send buffer for this socket at about `share` bytes and
/// returns what the kernel actually granted (it doubles requests for its own
/// bookkeeping and clamps them to net.core.wmem_max).
pub(super) fn limit_kernel_buffer(fd: &OwnedFd, share: usize) -> usize {
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
