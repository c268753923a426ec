//! Reading the one request line a connection may carry: bounded in size, in
//! time (REQUEST_TIMEOUT) and, while unfinished, in the memory budget.

use std::io;
use std::mem;
use std::time::Instant;

use super::*;

#[derive(Debug)]
pub(super) enum RequestState {
    /// Nothing read yet, or part of a request line.
    Awaiting(Vec<u8>),
    /// The request was read; the connection carries no other.
    Done,
}

impl SubscriberConn {
    /// Memory its unfinished request line takes now.
    pub(crate) fn request_charge(&self) -> usize {
        self.request_charge
    }

    /// Reads what the subscriber sent: at most one request line, bounded by
    /// MAX_REQUEST_LINE and, while unfinished, by `room`: the memory the
    /// server may still give unfinished request lines (see request_charge).
    pub(crate) fn read_input(&mut self, room: usize) -> Input {
        let input = self.read_request(room);
        if !matches!(self.request, RequestState::Awaiting(_)) {
            self.request_charge = 0;
        }
        input
    }

    pub(super) fn read_request(&mut self, room: usize) -> Input {
        let mut room = room;
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
            if newline.is_none() {
                // Unfinished: what it keeps is charged.
                let before = buffer.capacity();
                let wanted = buffer.len() + take;
                if wanted > before {
                    let grown = (before * 2).clamp(wanted, MAX_REQUEST_LINE);
                    if grown - before > room {
                        return Input::OverBudget;
                    }
                    buffer.reserve_exact(grown - buffer.len());
                    let charged = buffer.capacity() - before;
                    room = room.saturating_sub(charged);
                    self.request_charge += charged;
                }
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
