//! The subscriber client: connects to a publisher's socket, optionally writes a
//! subscription request (docs/subscription-protocol.md), and hands out one
//! notification line at a time, reconnecting by itself when the publisher goes
//! away and comes back.
//!
//! The socket is non-blocking and every wait is a poll(2) bounded by the
//! caller's timeout, so `recv` never blocks past it, even while reconnecting.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::subscription::{
    parse_control_line, ControlLine, Cursor, Filter, Reason, Request, Start, MAX_REQUEST_LINE,
};
use crate::{Error, SocketAddress};

/// Longest line accepted from the publisher (its own limit is 64 MiB at most).
const MAX_LINE: usize = 64 << 20;
/// How much room each read asks for.
const READ_CHUNK: usize = 256 << 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// With a heartbeat configured, this many intervals of silence mean the
/// connection is dead.
const HEARTBEAT_MISSES: u32 = 3;

/// What a subscriber asks for. The default is the plain stream (nothing is
/// written to the publisher) with automatic reconnection.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeOptions {
    /// Which notifications to receive; the default lets everything through.
    pub filter: Filter,
    /// Ask the publisher to report notifications dropped for us ([`Event::Dropped`]).
    pub markers: bool,
    /// Ask for a heartbeat line whenever the stream has been idle this long
    /// (0.1 s to 3600 s). Silence for three intervals is then taken as a dead
    /// connection and the subscriber reconnects.
    pub heartbeat: Option<Duration>,
    /// Keep trying when the publisher is absent or goes away (the default).
    /// With `false`, connect fails when it is absent and recv fails when it leaves.
    pub reconnect: bool,
    /// Start right after the notification this cursor names (a cursor from
    /// [`Subscriber::cursor`], kept by an earlier run): what the publisher
    /// still holds of what followed it, then live.
    pub after: Option<String>,
    /// Start with everything the publisher's replay ring holds, then live.
    pub replay: bool,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            filter: Filter::default(),
            markers: false,
            heartbeat: None,
            reconnect: true,
            after: None,
            replay: false,
        }
    }
}

impl SubscribeOptions {
    /// Where the stream starts, as the options say.
    fn start(&self) -> Result<Start, Error> {
        match (&self.after, self.replay) {
            (Some(_), true) => Err(Error::new(
                libc::EINVAL,
                "after and replay cannot be combined: after resumes from a cursor, replay starts from the oldest notification the publisher holds",
            )),
            (Some(cursor), false) => Ok(Start::After(
                cursor
                    .parse()
                    .map_err(|why: String| Error::new(libc::EINVAL, why))?,
            )),
            (None, true) => Ok(Start::Replay),
            (None, false) => Ok(Start::Live),
        }
    }
}

/// The request line to write after connecting (newline included). The
/// subscriber always asks for cursors, so that it knows where it is and can
/// resume after a reconnection. Checked as the publisher will check it.
fn request_line(
    filter: &Filter,
    markers: bool,
    heartbeat: Option<Duration>,
    start: Start,
) -> Result<Vec<u8>, Error> {
    let line = Request::Subscribe {
        filter: filter.clone(),
        markers,
        heartbeat,
        cursors: true,
        start,
    }
    .to_line();
    if line.len() > MAX_REQUEST_LINE {
        return Err(Error::new(
            libc::EINVAL,
            format!(
                "the subscription request is {} bytes; the publisher accepts at most {MAX_REQUEST_LINE}",
                line.len()
            ),
        ));
    }
    Request::parse(&line[..line.len() - 1])
        .map_err(|why| Error::new(libc::EINVAL, format!("invalid subscription: {why}")))?;
    Ok(line)
}

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

struct Connection {
    fd: OwnedFd,
    /// The part of the request line not written yet.
    unsent: Vec<u8>,
    /// The publisher acknowledged the request: from here on, it filters.
    acknowledged: bool,
    /// The request resumes (after a cursor, or from the ring): lines before
    /// the acknowledgement were emitted before it was read and come again
    /// after it, so they are skipped.
    resuming: bool,
    /// When anything (a byte of a line, a heartbeat) last arrived.
    last_activity: Instant,
    /// Something arrived on this connection.
    worked: bool,
    established: Instant,
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

/// Errors that mean "the publisher is not there (yet)": worth retrying.
fn publisher_absent(errno: i32) -> bool {
    matches!(errno, libc::ENOENT | libc::ECONNREFUSED | libc::EAGAIN)
}

fn last_os_error() -> std::io::Error {
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

    /// Makes progress towards the next line: reads, or reconnects. Returns
    /// Ok(true) when there may be something new to look at, Ok(false) when the
    /// deadline passed first.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
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

    /// The connection is gone: with `reconnect`, schedule the next attempt
    /// (at once if the connection had worked, else after the back-off);
    /// without, fail for good with `cause`.
    fn lose(&mut self, cause: Error) -> Result<(), Error> {
        self.clear_buffer();
        // A connection that delivered, or lasted, worked: the publisher is
        // probably restarting, so try again at once. One that accepts and hangs
        // up at once (over its subscriber limit, say) only gets the back-off.
        let worked = matches!(&self.state,
            State::Connected(c) if c.worked || c.established.elapsed() >= Duration::from_secs(1));
        if !self.reconnect {
            self.state = State::Failed(cause.clone());
            return Err(cause);
        }
        let now = Instant::now();
        if worked {
            self.backoff = FIRST_BACKOFF;
            self.state = State::Waiting(now);
            self.arm_timer(Duration::ZERO)
        } else {
            self.schedule_attempt(now)
        }
    }

    /// Disconnected: the next attempt is after the back-off, which then doubles.
    fn schedule_attempt(&mut self, now: Instant) -> Result<(), Error> {
        let after = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.state = State::Waiting(now + after);
        self.arm_timer(after)
    }

    fn arm_timer(&mut self, after: Duration) -> Result<(), Error> {
        if self.timer.is_none() {
            // SAFETY: plain system call; the result is checked.
            let fd = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
                )
            };
            if fd < 0 {
                return Err(Error::os("cannot create a timerfd", last_os_error()));
            }
            // SAFETY: a fresh descriptor we own.
            self.timer = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let after = after.max(Duration::from_nanos(1)); // zero would disarm it
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.timer.as_ref().map_or(-1, |t| t.as_raw_fd());
        // SAFETY: a valid timerfd and itimerspec; re-arming also resets its count.
        if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(Error::os(
                "cannot arm the reconnection timer",
                last_os_error(),
            ));
        }
        Ok(())
    }

    /// One reconnection attempt.
    fn attempt(&mut self, now: Instant) -> Result<(), Error> {
        match self.open_connection() {
            Ok(connection) => {
                self.state = State::Connected(connection);
                if self.ever_connected {
                    self.reconnects += 1;
                    self.announce_reconnect = true;
                }
                self.ever_connected = true;
                Ok(())
            }
            Err(err) => {
                self.schedule_attempt(now)?;
                // A full listen backlog is retried, but said: a publisher
                // that never accepts (stuck, or a socket made to hang its
                // readers) must not look like one that is merely quiet.
                if publisher_absent(err.errno()) && err.errno() != libc::EAGAIN {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    fn open_connection(&self) -> Result<Connection, Error> {
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
