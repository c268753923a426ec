//! The subscriber client: connects to a publisher's socket, optionally writes a
//! subscription request (docs/subscription-protocol.md), and hands out one
//! notification line at a time, reconnecting by itself when the publisher goes
//! away and comes back.
//!
//! The socket is non-blocking and every wait is a poll(2) bounded by the
//! caller's timeout, so `recv` never blocks past it, even while reconnecting.
//!
//! The parts: `options` (what a subscriber asks for, and the request line
//! that says it), `connection` (one connection: opening it, writing the
//! request, reading and waiting), `reconnection` (what happens when it is
//! lost: back-off, the timer descriptor, the next attempt). The protocol's
//! lines themselves are read by `crate::subscription`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::subscription::{parse_control_line, ControlLine, Cursor, Filter, Reason, Start};
use crate::{Error, SocketAddress};

mod connection;
mod options;
mod reconnection;

use connection::Connection;
use options::request_line;
pub use options::SubscribeOptions;
use reconnection::{publisher_absent, FIRST_BACKOFF};

/// What [`Subscriber::recv`] returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// One notification line without its trailing `'\n'`, valid until the next
    /// call on the subscriber. (The byte right after the slice in memory is a
    /// NUL, which the C API relies on.)
    Notification(&'a [u8]),
    /// The connection was lost and re-established. The subscriber resumed
    /// after the last notification it handed out: if the publisher no longer
    /// had some of what followed, a [`Event::Dropped`] (or
    /// [`Event::DroppedUnknown`]) comes next; otherwise nothing was missed.
    /// Returned once, before anything from the new connection.
    Reconnected,
    /// The publisher reported this many notifications dropped for us: we fell
    /// behind (reported with [`SubscribeOptions::markers`]), or it no longer
    /// had them when we resumed.
    Dropped(u64),
    /// Some notifications were missed and the publisher cannot say how many:
    /// it restarted since our cursor (another epoch), or it drops
    /// notifications at once while nobody listens (its replay ring is off).
    DroppedUnknown,
    /// Nothing arrived within the timeout.
    Timeout,
}

enum State {
    Connected(Connection),
    /// Disconnected; the next attempt is due at this instant.
    Waiting(Instant),
    /// A permanent failure: every later recv returns it.
    Failed(Error),
}

/// A connection to a publisher that reads notifications, reconnecting as needed.
///
/// Use it from one thread at a time (it is `Send`, not `Sync`). A subscriber is
/// not meant to be used in a child process after fork().
pub struct Subscriber {
    address: SocketAddress,
    filter: Filter,
    /// Where the first connection's stream starts; later ones resume after `cursor`.
    start: Start,
    /// The publisher's epoch, from the last acknowledgement.
    epoch: Option<u64>,
    /// The number the next notification line will have, when known.
    next_seq: Option<u64>,
    /// The last notification handed out.
    cursor: Option<Cursor>,
    markers: bool,
    heartbeat: Option<Duration>,
    reconnect: bool,
    state: State,
    ever_connected: bool,
    backoff: Duration,
    /// Readable when the next reconnection attempt is due (see as_raw_fd).
    timer: Option<OwnedFd>,
    /// Received bytes: `buf[head..]` is not handed out yet, and has no '\n'
    /// before `scanned`.
    buf: Vec<u8>,
    head: usize,
    scanned: usize,
    announce_reconnect: bool,
    dropped_total: u64,
    reconnects: u64,
    last_heartbeat: Option<SystemTime>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("address", &self.address)
            .field("fd", &self.as_raw_fd())
            .field("dropped_total", &self.dropped_total)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Connects to the publisher at `path` (a file path, or `@name` for an
    /// abstract socket) and writes the subscription request if `options` ask
    /// for anything (a filter, markers, a heartbeat).
    ///
    /// With `reconnect` (the default) this succeeds even when the publisher is
    /// not there yet (ENOENT, ECONNREFUSED): recv keeps trying. Errors: EINVAL
    /// (bad path or options), ENAMETOOLONG, and without `reconnect` the
    /// connect(2) error (ENOENT, ECONNREFUSED, EACCES...) naming the path.
    pub fn connect(path: impl AsRef<Path>, options: SubscribeOptions) -> Result<Subscriber, Error> {
        Subscriber::connect_bytes(path.as_ref().as_os_str().as_bytes(), options)
    }

    /// Like [`Subscriber::connect`], for a path given as raw bytes.
    pub fn connect_bytes(path: &[u8], options: SubscribeOptions) -> Result<Subscriber, Error> {
        let address = SocketAddress::parse(path)?;
        let start = options.start()?;
        request_line(&options.filter, options.markers, options.heartbeat, start)?;
        let now = Instant::now();
        let mut subscriber = Subscriber {
            address,
            start,
            epoch: None,
            next_seq: None,
            cursor: None,
            filter: options.filter,
            markers: options.markers,
            heartbeat: options.heartbeat,
            reconnect: options.reconnect,
            state: State::Waiting(now),
            ever_connected: false,
            backoff: FIRST_BACKOFF,
            timer: None,
            buf: Vec::new(),
            head: 0,
            scanned: 0,
            announce_reconnect: false,
            dropped_total: 0,
            reconnects: 0,
            last_heartbeat: None,
        };
        match subscriber.open_connection() {
            Ok(connection) => {
                subscriber.state = State::Connected(connection);
                subscriber.ever_connected = true;
            }
            Err(err) if subscriber.reconnect && publisher_absent(err.errno()) => {
                subscriber.schedule_attempt(now)?;
            }
            Err(err) => return Err(err),
        }
        Ok(subscriber)
    }

    /// The next event, waiting at most `timeout` (None: as long as it takes;
    /// zero: only what is already available).
    ///
    /// Control lines are never returned as notifications. Before the publisher
    /// acknowledges a filtered subscription, lines that do not pass the filter
    /// are dropped here, so only matching notifications are ever returned.
    ///
    /// Errors, permanent (the subscriber does not reconnect, and every later
    /// call returns the same error; the publisher's message is kept): EPROTO
    /// when the publisher refused the request, EACCES when its allow-lists
    /// refuse this peer (reason `denied`), EUSERS when it has max_subscribers
    /// already (reason `full`). A publisher that disconnects us because we
    /// were too slow or its memory budget ran out (`too_slow`, `memory`) is
    /// a lost connection like any other. EMSGSIZE for a line over 64 MiB
    /// (the connection is dropped). Without `reconnect`: EPIPE or ECONNRESET ("publisher closed
    /// the connection") and ETIMEDOUT (heartbeats stopped), and later calls
    /// return the same error. With `reconnect`, an unexpected error of a
    /// reconnection attempt (EACCES, EMFILE...) is returned and the next call
    /// tries again after the back-off; so is EAGAIN, at every attempt, while
    /// the socket accepts no connection (its listen backlog stays full). The
    /// connect(2) itself never waits.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Event<'_>, Error> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let State::Failed(err) = &self.state {
                return Err(err.clone());
            }
            if self.announce_reconnect {
                self.announce_reconnect = false;
                return Ok(Event::Reconnected);
            }
            let Some((start, end)) = self.next_line() else {
                if self.fill(deadline)? {
                    continue;
                }
                return Ok(Event::Timeout);
            };
            let line = &self.buf[start..end];
            // Every line starting {"notif": is a control line (emit refuses
            // notifications that start so), on the plain stream too: a
            // publisher that refuses us (denied, full) says so on one.
            if let Some(control) = parse_control_line(line) {
                match control {
                    ControlLine::Subscribed { epoch } => {
                        if let State::Connected(c) = &mut self.state {
                            c.acknowledged = true;
                        }
                        self.epoch = epoch;
                        self.next_seq = None;
                    }
                    ControlLine::Seq(n) => self.next_seq = Some(n),
                    ControlLine::Dropped(n) => {
                        self.dropped_total = self.dropped_total.saturating_add(n);
                        return Ok(Event::Dropped(n));
                    }
                    ControlLine::DroppedUnknown => return Ok(Event::DroppedUnknown),
                    ControlLine::Heartbeat(_) => self.last_heartbeat = Some(SystemTime::now()),
                    ControlLine::Error { message, reason } => {
                        if let Some(err) = self.refused(&message, &reason)? {
                            return Err(err);
                        }
                    }
                    // Not asked for, or not understood: nothing to do with it.
                    ControlLine::Stats(_) | ControlLine::Unknown => {}
                }
                continue;
            }
            let (acknowledged, resuming) = match &self.state {
                State::Connected(c) => (c.acknowledged, c.resuming),
                _ => (false, false),
            };
            if !acknowledged && (resuming || !self.filter.matches_line(line)) {
                continue;
            }
            // Its number: the previous one's plus one, unless a seq line said.
            if acknowledged {
                if let (Some(epoch), Some(seq)) = (self.epoch, self.next_seq) {
                    self.cursor = Some(Cursor { epoch, seq });
                    self.next_seq = Some(seq + 1);
                }
            }
            // The '\n' after the line becomes a NUL, so C gets a C string for free.
            self.buf[end] = 0;
            return Ok(Event::Notification(&self.buf[start..end]));
        }
    }

    /// Owned notification lines, waiting as long as it takes for each;
    /// [`Event::Reconnected`] and [`Event::Dropped`] are skipped (see
    /// [`Subscriber::reconnects`] and [`Subscriber::dropped_total`]). The
    /// iterator ends after the first error, which it yields.
    pub fn notifications(&mut self) -> impl Iterator<Item = Result<Vec<u8>, Error>> + '_ {
        let mut failed = false;
        std::iter::from_fn(move || loop {
            if failed {
                return None;
            }
            match self.recv(None) {
                Ok(Event::Notification(line)) => return Some(Ok(line.to_vec())),
                Ok(_) => continue,
                Err(err) => {
                    failed = true;
                    return Some(Err(err));
                }
            }
        })
    }

    /// The descriptor to wait on with poll/epoll (for reading) before calling
    /// `recv`: the socket while connected, and while waiting between
    /// reconnection attempts a timer descriptor that becomes readable when the
    /// next attempt is due; -1 after a permanent failure. It changes after a
    /// reconnection or a lost connection: ask again after every `recv` (epoll
    /// users re-register it). Do not read it or close it.
    ///
    /// `recv` reads ahead, so call `recv(Some(Duration::ZERO))` until it returns
    /// [`Event::Timeout`] before waiting on the descriptor again. The heartbeat
    /// watchdog only runs inside `recv`: with a heartbeat, wait with a timeout.
    pub fn as_raw_fd(&self) -> RawFd {
        match &self.state {
            State::Connected(c) => c.fd.as_raw_fd(),
            State::Waiting(_) => self.timer.as_ref().map_or(-1, |t| t.as_raw_fd()),
            State::Failed(_) => -1,
        }
    }

    /// The cursor of the last notification handed out (None before the
    /// first): pass it as [`SubscribeOptions::after`] to resume after it,
    /// from this or another process. The subscriber itself resumes after it
    /// when it reconnects.
    pub fn cursor(&self) -> Option<String> {
        self.cursor.map(|cursor| cursor.to_string())
    }

    /// Notifications the publisher reported dropped for us, in total.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// How many times the connection was lost and re-established (the number
    /// of [`Event::Reconnected`] events). The first connection does not count.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// When the last heartbeat line arrived (our clock), if any did.
    pub fn last_heartbeat(&self) -> Option<SystemTime> {
        self.last_heartbeat
    }

    /// Whether the subscriber failed for good: every later recv returns the
    /// same error (a refusal, or any lost connection without `reconnect`).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Whether a connection is established now.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// An error line from the publisher. A transient reason (too_slow,
    /// memory) is a lost connection: with `reconnect`, Ok(None) and the next
    /// attempt follows; a permanent one fails the subscriber for good:
    /// EACCES (denied by the allow-lists), EUSERS (the publisher is full),
    /// EPROTO (the request was refused).
    fn refused(&mut self, message: &str, reason: &Reason) -> Result<Option<Error>, Error> {
        let address = &self.address;
        if reason.is_transient() {
            let why = match reason {
                Reason::TooSlow => "this subscriber was too slow",
                _ => "its memory budget for subscribers ran out",
            };
            let cause = Error::new(
                libc::EPIPE,
                format!(
                    "the publisher at {address} closed the connection because {why} ({}: {message})",
                    reason.as_str()
                ),
            );
            self.lose(cause)?;
            return Ok(None);
        }
        let err = match reason {
            Reason::Denied => Error::new(
                libc::EACCES,
                format!(
                    "the publisher at {address} does not let this user subscribe (its allow-lists; denied: {message})"
                ),
            ),
            Reason::Full => Error::new(
                libc::EUSERS,
                format!(
                    "the publisher at {address} has as many subscribers as it accepts (its max_subscribers; full: {message})"
                ),
            ),
            _ => Error::new(
                libc::EPROTO,
                format!(
                    "the publisher at {address} refused the subscription request: {message}"
                ),
            ),
        };
        self.fail(err.clone());
        Ok(Some(err))
    }

    /// The next complete line in the buffer, as (start, end of line) with
    /// `buf[end] == b'\n'`; consumes it.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let from = self.scanned.max(self.head);
        match self.buf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (start, end) = (self.head, from + i);
                self.head = end + 1;
                self.scanned = self.head;
                Some((start, end))
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    fn clear_buffer(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.scanned = 0;
    }

    fn fail(&mut self, err: Error) {
        self.state = State::Failed(err);
        self.clear_buffer();
    }
}
