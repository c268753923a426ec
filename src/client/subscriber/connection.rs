//! One connection to the publisher: opening it (the request is written as
//! soon as the socket takes it), reading lines into the subscriber's buffer,
//! and waiting, within the caller's deadline, for data, for the heartbeat
//! watchdog or for the next reconnection attempt.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use super::{request_line, State, Subscriber};
use crate::subscription::Start;
use crate::Error;

/// Longest line accepted from the publisher (its own limit is 64 MiB at most).
const MAX_LINE: usize = 64 << 20;
/// How much room each read asks for.
const READ_CHUNK: usize = 256 << 10;
/// With a heartbeat configured, this many intervals of silence mean the
/// connection is dead.
const HEARTBEAT_MISSES: u32 = 3;

/// One established connection and what is known of it.
pub(super) struct Connection {
    pub(super) fd: OwnedFd,
    /// The part of the request line not written yet.
    pub(super) unsent: Vec<u8>,
    /// The publisher acknowledged the request: from here on, it filters.
    pub(super) acknowledged: bool,
    /// The request resumes (after a cursor, or from the ring): lines before
    /// the acknowledgement were emitted before it was read and come again
    /// after it, so they are skipped.
    pub(super) resuming: bool,
    /// When anything (a byte of a line, a heartbeat) last arrived.
    pub(super) last_activity: Instant,
    /// Something arrived on this connection.
    pub(super) worked: bool,
    pub(super) established: Instant,
}

pub(super) fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Milliseconds for poll(2), rounded up so a wait never ends just short of its deadline.
fn poll_ms(until: Option<Instant>, now: Instant) -> libc::c_int {
    match until {
        None => -1,
        Some(t) => {
            let micros = t.saturating_duration_since(now).as_micros();
            micros.div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Subscriber {
    /// Makes progress towards the next line: reads, or reconnects. Returns
    /// Ok(true) when there may be something new to look at, Ok(false) when the
    /// deadline passed first.
    pub(super) fn fill(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
        loop {
            let now = Instant::now();
            match &mut self.state {
                State::Failed(err) => return Err(err.clone()),
                State::Waiting(next_attempt) => {
                    let next_attempt = *next_attempt;
                    if now >= next_attempt {
                        self.attempt(now)?;
                        if self.is_connected() {
                            return Ok(true);
                        }
                        continue;
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(false);
                    }
                    let until = earliest(Some(next_attempt), deadline);
                    // SAFETY: poll with no descriptors only sleeps.
                    unsafe { libc::poll(std::ptr::null_mut(), 0, poll_ms(until, now)) };
                }
                State::Connected(c) => {
                    let silent_until = self
                        .heartbeat
                        .map(|h| c.last_activity + h * HEARTBEAT_MISSES);
                    if silent_until.is_some_and(|t| now >= t) {
                        let silence = self.heartbeat.unwrap_or_default() * HEARTBEAT_MISSES;
                        self.lose(Error::new(
                            libc::ETIMEDOUT,
                            format!(
                                "nothing from the publisher at {} for {silence:?}, not even a heartbeat",
                                self.address
                            ),
                        ))?;
                        continue;
                    }
                    if !c.unsent.is_empty() {
                        flush(c)?;
                    }
                    match self.read_some()? {
                        Read::Data => return Ok(true),
                        Read::Lost => continue,
                        Read::WouldBlock => {}
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(false);
                    }
                    let State::Connected(c) = &self.state else {
                        continue;
                    };
                    let mut events = libc::POLLIN;
                    if !c.unsent.is_empty() {
                        events |= libc::POLLOUT;
                    }
                    let mut pfd = libc::pollfd {
                        fd: c.fd.as_raw_fd(),
                        events,
                        revents: 0,
                    };
                    let until = earliest(deadline, silent_until);
                    // SAFETY: one valid pollfd.
                    let rc = unsafe { libc::poll(&mut pfd, 1, poll_ms(until, now)) };
                    if rc < 0 && last_os_error().raw_os_error() != Some(libc::EINTR) {
                        return Err(Error::os("poll on the subscriber socket", last_os_error()));
                    }
                }
            }
        }
    }

    /// One read from the connected socket into the buffer.
    fn read_some(&mut self) -> Result<Read, Error> {
        if self.head > 0 && (self.head == self.buf.len() || self.head >= self.buf.capacity() / 2) {
            self.buf.drain(..self.head);
            self.scanned -= self.head.min(self.scanned);
            self.head = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            self.buf = Vec::new(); // a huge line has gone: give its memory back
        }
        if self.buf.len() - self.head > MAX_LINE {
            let err = Error::new(
                libc::EMSGSIZE,
                format!(
                    "a line from the publisher at {} is over {} MiB without a newline; dropped the connection",
                    self.address,
                    MAX_LINE >> 20
                ),
            );
            self.lose(err.clone())?;
            return Err(err);
        }
        self.buf.reserve(READ_CHUNK);
        let State::Connected(c) = &mut self.state else {
            return Ok(Read::Lost);
        };
        let spare = self.buf.spare_capacity_mut();
        // SAFETY: reading into the vector's spare capacity, at most its length.
        let n = unsafe {
            libc::recv(
                c.fd.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            // SAFETY: recv initialised n bytes of the spare capacity.
            unsafe { self.buf.set_len(self.buf.len() + n as usize) };
            c.last_activity = Instant::now();
            c.worked = true;
            return Ok(Read::Data);
        }
        if n == 0 {
            self.lose(Error::new(
                libc::EPIPE,
                format!("the publisher closed the connection ({})", self.address),
            ))?;
            return Ok(Read::Lost);
        }
        let err = last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(Read::WouldBlock),
            Some(libc::ECONNRESET) => {
                self.lose(Error::new(
                    libc::ECONNRESET,
                    format!(
                        "the publisher closed the connection ({}): connection reset",
                        self.address
                    ),
                ))?;
                Ok(Read::Lost)
            }
            _ => {
                self.lose(Error::os(format!("reading from {}", self.address), err))?;
                Ok(Read::Lost)
            }
        }
    }

    pub(super) fn open_connection(&self) -> Result<Connection, Error> {
        // After the first notification, every connection resumes after the
        // last one handed out.
        let start = match self.cursor {
            Some(cursor) => Start::After(cursor),
            None => self.start,
        };
        let request = request_line(&self.filter, self.markers, self.heartbeat, start)?;
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(Error::os("cannot create a socket", last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (addr, len) = self.address.sockaddr();
        // SAFETY: addr is a valid sockaddr_un of length len.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if rc != 0 {
            let err = last_os_error();
            if err.raw_os_error() == Some(libc::EAGAIN) {
                return Err(Error::new(
                    libc::EAGAIN,
                    format!(
                        "the socket at {} accepts no connection (its listen backlog is full: \
                         a stuck publisher, or not a notif publisher)",
                        self.address
                    ),
                ));
            }
            return Err(Error::os(
                format!("cannot connect to {}", self.address),
                err,
            ));
        }
        let mut connection = Connection {
            fd,
            unsent: request,
            acknowledged: false,
            resuming: start != Start::Live,
            last_activity: Instant::now(),
            worked: false,
            established: Instant::now(),
        };
        flush(&mut connection)?;
        Ok(connection)
    }
}

enum Read {
    Data,
    WouldBlock,
    Lost,
}

/// Writes what it can of the request. A publisher that already hung up is
/// noticed by the next read (end of file), so EPIPE is not an error here.
fn flush(c: &mut Connection) -> Result<(), Error> {
    while !c.unsent.is_empty() {
        // SAFETY: sending from a live buffer of the given length.
        let n = unsafe {
            libc::send(
                c.fd.as_raw_fd(),
                c.unsent.as_ptr().cast(),
                c.unsent.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            c.unsent.drain(..n as usize);
            continue;
        }
        let err = last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(()),
            Some(libc::EPIPE | libc::ECONNRESET) => {
                c.unsent.clear();
                return Ok(());
            }
            _ => return Err(Error::os("cannot send the subscription request", err)),
        }
    }
    Ok(())
}
