//! The thread that serves one publisher: it owns the listening socket and every
//! subscriber socket, all non-blocking under one epoll instance, takes batches
//! of messages from the backlog into the shared message log and writes them to
//! each subscriber.
//!
//! Bounds a hostile peer cannot lift: each subscriber holds at most its buffer
//! (allocation included), all of them together at most the memory limit (the
//! ones holding the most lose their queue first), a filter costs one cached
//! verdict per notification (filter_set), a request line must be finished in
//! REQUEST_TIMEOUT, and the work per message is proportional to the number of
//! subscribers, never to what they have queued.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

mod connection;
mod filter_set;
mod message_log;
mod peer_credentials;

use crate::backlog::write_through::{WriteThrough, MAX_TARGETS};
use crate::backlog::{Backlog, Batch};
use crate::fork_guard::OwnedFd;
use crate::options::{Options, SlowPolicy};
use crate::stats::{bump, set, Counters};
use crate::subscription::{lines, message_fields, Filter, MessageFields, Reason, Request, Start};
use connection::{Closing, Flush, Input, Offered, Peer, SubscriberConn, ONE_REQUEST};
use filter_set::FilterSet;
use message_log::MessageLog;
use peer_credentials::{peer_allowed, peer_credentials};

/// What emitting threads and the server thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Subscribers connected now: the one value notif_emit reads when nobody listens.
    pub(crate) subscribers: AtomicUsize,
    pub(crate) backlog: Backlog,
    pub(crate) counters: Counters,
    /// Drawn at random at open: names this open of the publisher in cursors.
    pub(crate) epoch: u64,
    /// Notifications emit dropped at once because nobody was connected (and
    /// the replay ring is off): they are never numbered, so a resume across
    /// them cannot say how many it missed.
    pub(crate) unnumbered: AtomicU64,
    /// Messages the server thread has taken from the backlog and finished
    /// with (numbered, handed out, the gauges set).
    pub(crate) settled: AtomicU64,
}

const LISTENER_TOKEN: u64 = u64::MAX;
const WAKE_TOKEN: u64 = u64::MAX - 1;
/// After accept() fails for lack of descriptors or memory, stop watching the
/// listener this long: retrying at once would spin at 100% CPU.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// A connection accepted while max_subscribers are connected may ask for
/// stats within this time (a monitor must see a full publisher); otherwise it
/// is told the publisher is full and closed.
const PROBE_GRACE: Duration = Duration::from_secs(1);
/// Connections waiting like that at once; past it, "full" is said at once.
const MAX_PROBES: usize = 64;
/// Connections accepted per wake-up, at most (see accept_all).
const MAX_ACCEPTS_PER_WAKE: usize = 64;
/// Under load (the last round had notifications to send), wait for about this
/// much to gather before sending again, rather than polling for a handful of
/// messages each time: one large write per subscriber costs the server and
/// the reader far less per message than many small ones.
const COALESCE_BYTES: usize = 32 * 1024;
/// How long such a wait lasts at most: what coalescing may add to a
/// notification's latency, and only under load.
const COALESCE_WAIT: Duration = Duration::from_micros(50);
/// Load, for coalescing, is a round that had at least this many messages to
/// send. One at a time is a quiet publisher whose notification came too
/// soon for write-through (or was cut short): waiting would only delay the
/// next one, and keep the thread out of write-through.
const COALESCE_AFTER: u64 = 4;

struct Server {
    shared: Arc<Shared>,
    options: Options,
    epoll: OwnedFd,
    listener: Option<OwnedFd>,
    listener_paused_until: Option<Instant>,
    subscribers: HashMap<RawFd, SubscriberConn>,
    log: MessageLog,
    filters: FilterSet,
    /// Subscribers that asked for heartbeats.
    heartbeating: usize,
    /// Subscribers being closed (see begin_closing).
    closing: usize,
    /// Connections accepted while full, waiting for a stats request.
    probing: usize,
    /// The socket's address as people write it, for the stats answer.
    address: String,
    /// Where chunks taken from the backlog land (kept to reuse its allocation).
    taken: Vec<Batch>,
    /// Who the publisher runs as: that user (and root) see every subscriber's
    /// credentials in the stats answer.
    own_uid: u32,
    /// `Shared::unnumbered` when last looked at, and the sequence number
    /// after which notifications went unnumbered last.
    unnumbered_seen: u64,
    unnumbered_before: Option<u64>,
    /// The write-through grant being prepared before sleeping, and what
    /// emitters wrote under the last one (two, to keep their allocations).
    grant: WriteThrough,
    written: WriteThrough,
    /// Connections accepted so far: the high half of each one's epoll token.
    accepted_serial: u64,
    /// Messages taken from the backlog so far.
    taken_total: u64,
    /// The kernel has no epoll_pwait2: no coalescing wait.
    no_brief_wait: bool,
}

/// Starts the server thread for a listening socket.
/// On failure the listening socket is handed back, so the caller decides its fate.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    listener: OwnedFd,
    options: Options,
    address: String,
) -> Result<JoinHandle<()>, (OwnedFd, io::Error)> {
    let prepared = (|| -> io::Result<OwnedFd> {
        // SAFETY: plain epoll_create1(2) call.
        let epoll_fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let epoll = OwnedFd::register(epoll_fd);
        watch(&epoll, listener.raw(), libc::EPOLLIN as u32, LISTENER_TOKEN)?;
        watch(
            &epoll,
            shared.backlog.wake_fd(),
            libc::EPOLLIN as u32,
            WAKE_TOKEN,
        )?;
        Ok(epoll)
    })();
    let epoll = match prepared {
        Ok(epoll) => epoll,
        Err(e) => return Err((listener, e)),
    };
    // The listener travels to the thread through this slot, so that it can be
    // handed back if the thread cannot be started.
    let listener_slot = Arc::new(std::sync::Mutex::new(Some(listener)));
    let thread_slot = Arc::clone(&listener_slot);
    let spawned = with_all_signals_blocked(|| {
        std::thread::Builder::new()
            .name("notif-server".into())
            .spawn(move || {
                let listener = thread_slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let server = Server {
                    shared,
                    options,
                    epoll,
                    listener,
                    listener_paused_until: None,
                    subscribers: HashMap::new(),
                    log: MessageLog::default(),
                    filters: FilterSet::default(),
                    heartbeating: 0,
                    closing: 0,
                    probing: 0,
                    address,
                    taken: Vec::new(),
                    // SAFETY: geteuid never fails.
                    own_uid: unsafe { libc::geteuid() },
                    unnumbered_seen: 0,
                    unnumbered_before: None,
                    grant: WriteThrough::default(),
                    written: WriteThrough::default(),
                    accepted_serial: 0,
                    taken_total: 0,
                    no_brief_wait: false,
                };
                let shared = Arc::clone(&server.shared);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || server.run()))
                    .is_err()
                {
                    // A bug must not take the host down. Our sockets are closed by
                    // now (dropped while unwinding), so tell emitters nobody listens.
                    shared.subscribers.store(0, Ordering::Release);
                }
            })
    });
    spawned.map_err(|e| {
        let listener = listener_slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        (
            listener.expect("a thread that never started cannot have taken the listener"),
            e,
        )
    })
}

fn with_all_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data, filled by sigfillset; pthread_sigmask
    // only changes this thread's mask, which we restore before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        result
    }
}

fn epoll_control(
    epoll: &OwnedFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    token: u64,
) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: event is a live epoll_event.
    if unsafe { libc::epoll_ctl(epoll.raw(), op, fd, &mut event) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn watch(epoll: &OwnedFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    epoll_control(epoll, libc::EPOLL_CTL_ADD, fd, events, token)
}

fn interest(subscriber: &SubscriberConn) -> u32 {
    let mut events = 0u32;
    if subscriber.reading {
        events |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    }
    if subscriber.waiting_for_room {
        events |= libc::EPOLLOUT as u32;
    }
    events
}

impl Server {
    fn run(mut self) {
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
        // slack: the coalescing wait is tens of microseconds, and the default
        // slack (50 us) would double it.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut ready = 0;
        loop {
            // First, before any socket is touched: take what emitters queued,
            // and the write-through grant back.
            let sent = self.take_and_distribute();
            if self.shared.backlog.stop_requested() {
                break;
            }
            for event in &events[..ready] {
                self.dispatch(*event);
            }
            self.resume_listener_if_due();
            self.send_due_heartbeats();
            self.close_overdue();
            self.trim_log();
            ready = if sent >= COALESCE_AFTER
                && self.shared.backlog.prepare_to_coalesce(COALESCE_BYTES)
            {
                self.wait_briefly(&mut events, COALESCE_WAIT)
            } else if sent > 0 {
                self.wait(&mut events, 0)
            } else {
                self.prepare_grant();
                let timeout = if self.shared.backlog.prepare_to_sleep(&mut self.grant) {
                    self.sleep_timeout_ms()
                } else {
                    0
                };
                self.wait(&mut events, timeout)
            };
        }
        self.shut_down(&mut events);
    }

    /// Which subscribers emitters may write to themselves while this thread
    /// sleeps (see backlog::write_through): all of them or none, at most
    /// MAX_TARGETS, each taking every notification with nothing queued, so
    /// that what an emitter writes is exactly what this thread would send next.
    fn prepare_grant(&mut self) {
        self.grant.clear();
        let next_seq = self.log.next_seq();
        let now = Instant::now();
        for (&fd, subscriber) in &self.subscribers {
            if !subscriber.is_subscriber() {
                continue;
            }
            if self.grant.targets.len() == MAX_TARGETS
                || !subscriber.can_be_written_through(next_seq, now)
            {
                self.grant.clear();
                return;
            }
            self.grant.add_target(fd);
        }
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: libc::c_int) -> usize {
        // SAFETY: events is a live buffer of events.len() entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.raw(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        // EINTR (a debugger, a stop signal) is a spurious wake-up; nothing else can fail here.
        n.max(0) as usize
    }

    /// Like wait, for less than a millisecond (epoll_pwait2, Linux 5.11; on
    /// older kernels, and under valgrind, which does not know it, a poll).
    fn wait_briefly(&mut self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
        if self.no_brief_wait {
            return self.wait(events, 0);
        }
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: events is a live buffer of events.len() entries, timeout a
        // live timespec; no signal mask is passed (NULL).
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epoll.raw(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                &timeout as *const libc::timespec,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.no_brief_wait = true;
            }
            return self.wait(events, 0);
        }
        n as usize
    }

    fn sleep_timeout_ms(&self) -> libc::c_int {
        let wake_at = [
            self.listener_paused_until,
            self.next_heartbeat(),
            self.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        match wake_at {
            Some(at) => {
                at.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128 - 1) as libc::c_int
                    + 1
            }
            None => -1,
        }
    }

    /// The earliest instant a connection must be acted on: a closing one's
    /// linger, a probe's grace, a started request's timeout, the end of a
    /// silent peer's hold.
    fn next_deadline(&self) -> Option<Instant> {
        self.subscribers
            .values()
            .flat_map(|s| {
                [
                    s.closing_deadline,
                    s.probe_deadline,
                    s.request_deadline,
                    s.hold_deadline(),
                ]
            })
            .flatten()
            .min()
    }

    fn next_heartbeat(&self) -> Option<Instant> {
        if self.heartbeating == 0 {
            return None;
        }
        self.subscribers
            .values()
            .filter_map(|s| s.heartbeat.map(|every| s.last_sent + every))
            .min()
    }

    /// Tells idle subscribers that asked for it that the publisher is alive.
    fn send_due_heartbeats(&mut self) {
        if self.heartbeating == 0 {
            return;
        }
        let now = Instant::now();
        let due: Vec<RawFd> = self
            .subscribers
            .iter()
            .filter(|(_, s)| {
                s.closing.is_none() && s.heartbeat.is_some_and(|every| now >= s.last_sent + every)
            })
            .map(|(&fd, _)| fd)
            .collect();
        for fd in due {
            let Some(subscriber) = self.subscribers.get_mut(&fd) else {
                continue;
            };
            if subscriber.has_queue() {
                // Still sending: not idle, just slow to read.
                subscriber.last_sent = now;
                continue;
            }
            let unix_seconds = unix_now();
            subscriber.queue_control(lines::heartbeat((unix_seconds * 1000.0).round() / 1000.0));
            self.write_to(fd);
        }
    }

    fn dispatch(&mut self, event: libc::epoll_event) {
        let token = event.u64;
        match token {
            LISTENER_TOKEN => self.accept_all(),
            WAKE_TOKEN => self.shared.backlog.drain_wake_fd(),
            _ => self.serve_subscriber(token, event.events),
        }
    }

    fn serve_subscriber(&mut self, token: u64, ready: u32) {
        let fd = token as u32 as RawFd;
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        if subscriber.token != token {
            // For a connection closed since; this one only has its number.
            return;
        }
        if ready & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            // Both directions are closed (or broken): nobody will read what we queue.
            self.remove_subscriber(fd);
            return;
        }
        if ready & libc::EPOLLIN as u32 != 0 {
            match subscriber.read_input() {
                Input::Idle => {}
                Input::Request {
                    line,
                    followed_by_more,
                } => self.handle_request(fd, &line, followed_by_more),
                Input::Invalid(why) => self.refuse_request(fd, &why, Reason::BadRequest),
                Input::PeerStoppedSending => {
                    subscriber.reading = false;
                    // It will not ask for anything: what is held is its stream.
                    subscriber.release_hold();
                    if subscriber.probe_deadline.is_some() {
                        // A probe that asked for nothing gets the refusal now.
                        self.refuse_full(fd);
                    } else {
                        self.update_interest(fd);
                        self.write_to(fd);
                    }
                }
                Input::PeerGone => {
                    self.remove_subscriber(fd);
                    return;
                }
            }
        }
        if ready & libc::EPOLLOUT as u32 != 0 {
            if let Some(subscriber) = self.subscribers.get_mut(&fd) {
                // The kernel has room again.
                subscriber.waiting_for_room = false;
                // Room again: a subscriber with markers hears about its drops first.
                if subscriber.closing.is_none() {
                    subscriber.report_drops();
                }
                self.write_to(fd);
            }
        }
    }

    /// Flushes one subscriber and acts on the outcome: wait for room, close a
    /// subscriber that is done, or remove one that is gone.
    fn write_to(&mut self, fd: RawFd) {
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        let counters = &self.shared.counters;
        let mut outcome = subscriber.flush(&self.log, counters);
        // Drained means it has room again: a subscriber with markers hears
        // about its drops now, not only when the next notification comes.
        if outcome == Flush::Drained
            && subscriber.closing.is_none()
            && subscriber.has_unreported_drops()
        {
            subscriber.report_drops();
            outcome = subscriber.flush(&self.log, counters);
        }
        match outcome {
            Flush::Drained => {
                subscriber.waiting_for_room = false;
                if subscriber.closing.is_some() {
                    subscriber.discard_pending_input();
                    self.remove_subscriber(fd);
                    return;
                }
            }
            Flush::Blocked => subscriber.waiting_for_room = true,
            Flush::PeerGone => return self.remove_subscriber(fd),
            Flush::Held => {}
        }
        self.update_interest_if_changed(fd);
    }

    fn handle_request(&mut self, fd: RawFd, line: &[u8], followed_by_more: bool) {
        let request = match Request::parse(line) {
            Ok(_) if followed_by_more => {
                return self.refuse_request(fd, ONE_REQUEST, Reason::BadRequest)
            }
            Ok(request) => request,
            Err(why) => return self.refuse_request(fd, &why, Reason::BadRequest),
        };
        let probing = self
            .subscribers
            .get(&fd)
            .is_some_and(|s| s.probe_deadline.is_some());
        match request {
            Request::Stats => {
                let stats_line = self.stats_line(fd);
                let Some(subscriber) = self.subscribers.get_mut(&fd) else {
                    return;
                };
                if probing {
                    subscriber.probe_deadline = None;
                    self.probing -= 1;
                }
                bump(&self.shared.counters.stats_requests, 1);
                subscriber.queue_control(stats_line);
                self.begin_closing(fd, Closing::Answered);
                // An answer nobody reads is held until linger runs out: it
                // counts in the budget like any queue (a quiet publisher
                // would otherwise never check it).
                self.enforce_memory_limit(0, None);
            }
            Request::Subscribe { .. } if probing => self.refuse_full(fd),
            Request::Subscribe {
                filter,
                markers,
                heartbeat,
                cursors,
                start,
            } => {
                self.note_unnumbered();
                let history = match self.history(start) {
                    Ok(history) => history,
                    Err(why) => return self.refuse_request(fd, &why, Reason::BadRequest),
                };
                let everything = filter.is_everything();
                let filter_id = (!everything).then(|| self.filters.add(filter.clone()));
                let epoch = cursors.then_some(self.shared.epoch);
                let Some(subscriber) = self.subscribers.get_mut(&fd) else {
                    return;
                };
                // What was held back since it connected is not lost to a
                // live start: it comes after the acknowledgement, filtered
                // and numbered. A resumed history covers it already.
                let withheld = subscriber.withdraw_held(&self.shared.counters);
                let replay = history.is_some();
                let history = history.or(withheld.map(|from| (from, Some(Some(0)))));
                subscriber.subscribe(filter_id, markers, heartbeat, epoch);
                if let Some((from, missed)) = history {
                    let to = self.log.next_seq();
                    let filter = (!everything).then_some(&filter);
                    subscriber.resume(
                        &self.log,
                        from,
                        to,
                        filter,
                        missed,
                        replay,
                        &self.shared.counters,
                    );
                }
                self.heartbeating += usize::from(heartbeat.is_some());
                self.write_to(fd);
            }
        }
    }

    /// Where a resuming subscriber's stream starts in the log, and what to
    /// say first about what it missed (Some(n): n are gone; None: unknown).
    /// None for a live start. An error for a cursor that cannot be.
    #[allow(clippy::type_complexity)]
    fn history(&self, start: Start) -> Result<Option<(u64, Option<Option<u64>>)>, String> {
        let oldest = self.log.oldest_seq();
        let next = self.log.next_seq();
        match start {
            Start::Live => Ok(None),
            Start::Replay => Ok(Some((oldest, Some(Some(oldest))))),
            Start::After(cursor) if cursor.epoch != self.shared.epoch => {
                Ok(Some((oldest, Some(None))))
            }
            Start::After(cursor) => {
                let from = cursor
                    .seq
                    .checked_add(1)
                    .ok_or("the cursor's number is out of range")?;
                if from > next {
                    return Err(format!(
                        "the cursor {cursor} is beyond this publisher's last notification (the next will be number {next})"
                    ));
                }
                // Notifications dropped unnumbered after the cursor: uncountable.
                if self.unnumbered_before.is_some_and(|before| before >= from) {
                    return Ok(Some((oldest.max(from), Some(None))));
                }
                if from < oldest {
                    return Ok(Some((oldest, Some(Some(oldest - from)))));
                }
                Ok(Some((from, Some(Some(0)))))
            }
        }
    }

    /// Answers a bad request with an error line, then closes the connection.
    fn refuse_request(&mut self, fd: RawFd, why: &str, reason: Reason) {
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        if subscriber.closing.is_some() {
            return;
        }
        bump(&self.shared.counters.bad_requests, 1);
        if subscriber.probe_deadline.take().is_some() {
            self.probing -= 1;
        }
        subscriber.queue_control(lines::error(&reason, why));
        self.begin_closing(fd, Closing::BadRequest);
    }

    /// Tells a connection accepted while full that it cannot subscribe.
    fn refuse_full(&mut self, fd: RawFd) {
        let message = self.full_message();
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        if subscriber.probe_deadline.take().is_some() {
            self.probing -= 1;
        }
        bump(&self.shared.counters.refused, 1);
        subscriber.queue_control(lines::error(&Reason::Full, &message));
        self.begin_closing(fd, Closing::Full);
    }

    fn full_message(&self) -> String {
        format!(
            "the publisher already serves its maximum of {} subscribers (max_subscribers); try again later",
            self.options.max_subscribers
        )
    }

    /// Stops giving a subscriber notifications and closes it once what is
    /// queued for it is written (an error line, a stats answer, or for a slow
    /// subscriber what fitted before it fell behind), or when linger runs out.
    fn begin_closing(&mut self, fd: RawFd, why: Closing) {
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        if subscriber.closing.is_some() {
            // Already on its way out (input read in the same wake-up, say):
            // counting it twice would hide a live subscriber from emit.
            return;
        }
        let counters = &self.shared.counters;
        if why != Closing::Answered {
            bump(&counters.disconnected, 1);
        }
        if subscriber.probe_deadline.take().is_some() {
            self.probing -= 1;
        }
        // A subscriber that speaks the protocol hears why it is being let go.
        let reason = match why {
            Closing::TooSlow => Some((
                Reason::TooSlow,
                "disconnected: this subscriber fell behind and the publisher's slow policy is disconnect",
            )),
            Closing::Memory => Some((
                Reason::Memory,
                "disconnected: the publisher's memory limit for all subscribers was reached and this subscriber held the most",
            )),
            _ => None,
        };
        if let Some((reason, message)) = reason {
            if subscriber.spoke {
                subscriber.queue_control(lines::error(&reason, message));
            }
        }
        subscriber.closing = Some(why);
        subscriber.closing_deadline = Some(Instant::now() + self.options.linger);
        subscriber.reading = false;
        self.closing += 1;
        self.publish_subscriber_count();
        self.update_interest(fd);
        self.write_to(fd);
    }

    /// Tells emitters how many subscribers would receive a message now: the
    /// ones being closed and the ones only probing get nothing, so they do not count.
    fn publish_subscriber_count(&self) {
        self.shared.subscribers.store(
            self.subscribers.len() - self.closing - self.probing,
            Ordering::Release,
        );
    }

    /// Acts on every deadline that has passed: closes subscribers whose
    /// closing outlasted linger, refuses probes whose grace is over and
    /// requests not finished in time, and sends what was held for peers
    /// that stayed silent.
    fn close_overdue(&mut self) {
        let now = Instant::now();
        let due = |deadline: Option<Instant>| deadline.is_some_and(|at| now >= at);
        let mut overdue = Vec::new();
        let mut probes = Vec::new();
        let mut slow_requests = Vec::new();
        let mut silent = Vec::new();
        for (&fd, s) in &self.subscribers {
            if due(s.hold_deadline()) {
                silent.push(fd);
            }
            if due(s.closing_deadline) {
                overdue.push(fd);
            } else if s.closing.is_none() && due(s.probe_deadline) {
                probes.push(fd);
            } else if s.closing.is_none() && due(s.request_deadline) {
                slow_requests.push(fd);
            }
        }
        for fd in silent {
            if let Some(subscriber) = self.subscribers.get_mut(&fd) {
                subscriber.release_hold();
                self.write_to(fd);
            }
        }
        for fd in overdue {
            self.remove_subscriber(fd);
        }
        for fd in probes {
            self.refuse_full(fd);
        }
        for fd in slow_requests {
            let why = format!(
                "the request line was not finished within {} s",
                connection::REQUEST_TIMEOUT.as_secs()
            );
            self.refuse_request(fd, &why, Reason::RequestTimeout);
        }
    }

    /// The stats answer for the connection `asker`: every counter, and one
    /// entry per subscriber. Credentials (pid, uid, gid) of a subscriber are
    /// shown to root, to the publisher's own user and to the subscriber's own
    /// user; to anyone else they are null (any subscriber sees every
    /// notification, but not who else is listening).
    fn stats_line(&self, asker: RawFd) -> Vec<u8> {
        // The asker is a stats probe, not a subscriber, even while it still counts.
        let asker_counted = self
            .subscribers
            .get(&asker)
            .is_some_and(|s| s.is_subscriber());
        let subscribers =
            self.subscribers.len() - self.closing - self.probing - usize::from(asker_counted);
        let mut stats = self.shared.counters.snapshot(subscribers as u64);
        stats.emitted += self.shared.backlog.pending_messages() as u64;
        let asker_uid = self.subscribers.get(&asker).and_then(|s| s.peer.uid);
        let sees_all = asker_uid.is_some_and(|uid| uid == 0 || uid == self.own_uid);
        let list: Vec<serde_json::Value> = self
            .subscribers
            .iter()
            .filter(|(&fd, s)| s.is_subscriber() && fd != asker)
            .map(|(_, s)| {
                // Anyone may see its own user's processes.
                let visible = sees_all || (s.peer.uid.is_some() && s.peer.uid == asker_uid);
                let shown = |v: Option<u32>| v.filter(|_| visible);
                serde_json::json!({
                    "pid": s.peer.pid.filter(|_| visible),
                    "uid": shown(s.peer.uid),
                    "gid": shown(s.peer.gid),
                    "connected_at": unix_seconds(s.connected_at),
                    "filter": s.filter.map(|id| filter_json(self.filters.filter(id))),
                    "markers": s.markers,
                    "heartbeat_s": s.heartbeat.map(|d| d.as_secs_f64()),
                    "queued_bytes": s.held(&self.log),
                    "delivered": s.delivered,
                    "dropped_slow": s.dropped_slow,
                })
            })
            .collect();
        lines::stats(&stats.fields(), crate::VERSION, &self.address, &list)
    }

    fn update_interest(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.subscribers.get_mut(&fd) {
            let events = interest(subscriber);
            let token = subscriber.token;
            if epoll_control(&self.epoll, libc::EPOLL_CTL_MOD, fd, events, token).is_err() {
                self.remove_subscriber(fd);
            } else {
                subscriber.registered = events;
            }
        }
    }

    /// Tells epoll what the subscriber waits for now, if that changed.
    fn update_interest_if_changed(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.subscribers.get(&fd) {
            if interest(subscriber) != subscriber.registered {
                self.update_interest(fd);
            }
        }
    }

    fn accept_all(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let listener_fd = listener.raw();
        // Bounded: a peer that connects as fast as we accept would otherwise
        // keep us here for good, and nothing would be distributed meanwhile.
        // The listener is level-triggered: the rest come at the next wake-up.
        for _ in 0..MAX_ACCEPTS_PER_WAKE {
            // SAFETY: accept4 with no peer address requested.
            let fd = unsafe {
                libc::accept4(
                    listener_fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) | Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected:
                    // back off instead of spinning on a listener that stays ready.
                    _ => {
                        self.pause_listener();
                        return;
                    }
                }
            }
            let fd = OwnedFd::register(fd);
            let counters = &self.shared.counters;
            bump(&counters.accepted, 1);
            let credentials = peer_credentials(fd.raw());
            let peer = Peer {
                pid: credentials.map(|c| c.pid),
                uid: credentials.map(|c| c.uid),
                gid: credentials.map(|c| c.gid),
            };
            if !peer_allowed(
                fd.raw(),
                credentials,
                &self.options.allow_uids,
                &self.options.allow_gids,
            ) {
                bump(&counters.denied, 1);
                bump(&counters.disconnected, 1);
                let who = match (peer.uid, peer.gid) {
                    (Some(uid), Some(gid)) => format!("uid {uid} (gid {gid})"),
                    _ => "this peer (its credentials are unknown)".into(),
                };
                refuse_at_accept(
                    &fd,
                    &format!("permission denied: the publisher's allow-lists do not include {who}"),
                    Reason::Denied,
                );
                continue; // dropping fd closes it
            }
            let active = self.subscribers.len() - self.closing - self.probing;
            let full = active >= self.options.max_subscribers;
            if full && self.probing >= MAX_PROBES {
                bump(&counters.refused, 1);
                bump(&counters.disconnected, 1);
                refuse_at_accept(&fd, &self.full_message(), Reason::Full);
                continue;
            }
            let mut subscriber = SubscriberConn::new(
                fd,
                self.options.subscriber_buffer,
                self.kernel_share(active),
                peer,
            );
            subscriber.ring_is_free = self.options.slow_policy == SlowPolicy::Drop;
            if full {
                subscriber.probe_deadline = Some(Instant::now() + PROBE_GRACE);
                self.probing += 1;
            }
            let raw = subscriber.fd.raw();
            // The descriptor's number and a serial: an event for a connection
            // closed earlier in the same round cannot reach the one that got
            // its number since.
            self.accepted_serial += 1;
            subscriber.token = (self.accepted_serial << 32) | u64::from(raw as u32);
            subscriber.registered = interest(&subscriber);
            if watch(&self.epoll, raw, subscriber.registered, subscriber.token).is_err() {
                bump(&counters.disconnected, 1);
                self.probing -= usize::from(full);
                continue;
            }
            let token = subscriber.token;
            self.subscribers.insert(raw, subscriber);
            // A request already sent (a stats probe writes it at once) is read
            // before the connection counts, so such probes are never counted.
            self.serve_subscriber(token, libc::EPOLLIN as u32);
            self.publish_subscriber_count();
        }
    }

    /// The kernel buffer a new subscriber gets when `active` are connected:
    /// together the kernel's buffers stay near a quarter of the memory limit
    /// (the first subscribers get the most, up to MAX_KERNEL_SHARE).
    fn kernel_share(&self, active: usize) -> usize {
        (self.options.memory_limit / 4 / (active + 1))
            .clamp(connection::MIN_KERNEL_SHARE, connection::MAX_KERNEL_SHARE)
    }

    fn pause_listener(&mut self) {
        if let Some(listener) = &self.listener {
            let _ = epoll_control(
                &self.epoll,
                libc::EPOLL_CTL_DEL,
                listener.raw(),
                0,
                LISTENER_TOKEN,
            );
            self.listener_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }

    fn resume_listener_if_due(&mut self) {
        let Some(until) = self.listener_paused_until else {
            return;
        };
        if Instant::now() < until {
            return;
        }
        self.listener_paused_until = None;
        if let Some(listener) = &self.listener {
            if watch(
                &self.epoll,
                listener.raw(),
                libc::EPOLLIN as u32,
                LISTENER_TOKEN,
            )
            .is_err()
            {
                self.pause_listener();
            }
        }
    }

    /// Closes a subscriber; whatever was still queued for it is counted as dropped.
    fn remove_subscriber(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.subscribers.remove(&fd) {
            self.closing -= usize::from(subscriber.closing.is_some());
            self.probing -= usize::from(subscriber.probe_deadline.is_some());
            if let Some(filter) = subscriber.filter {
                self.filters.remove(filter);
            }
            self.heartbeating -= usize::from(subscriber.heartbeat.is_some());
            let counters = &self.shared.counters;
            bump(
                &counters.dropped_closed,
                subscriber.queued_messages() as u64,
            );
            let _ = epoll_control(&self.epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
            self.publish_subscriber_count();
            drop(subscriber); // closes the socket
        }
    }

    /// Takes what emitters queued into the log and offers it to every subscriber.
    /// Takes what emitters queued into the log and hands it to subscribers.
    /// Returns how many of those messages emitters had not written through
    /// themselves (what this thread had to send).
    fn take_and_distribute(&mut self) -> u64 {
        self.note_unnumbered();
        let mut taken = std::mem::take(&mut self.taken);
        self.shared.backlog.take(&mut taken, &mut self.written);
        if taken.is_empty() {
            debug_assert_eq!(self.written.messages, 0);
            self.taken = taken;
            return 0;
        }
        let messages: usize = taken.iter().map(Batch::message_count).sum();
        self.taken_total += messages as u64;
        let written_through = self.written.messages;
        // The messages written through are the first taken: they get the
        // next numbers. Each target's stream goes on after what it got.
        let base = self.log.next_seq();
        for target in &self.written.targets {
            if let Some(subscriber) = self.subscribers.get_mut(&target.fd) {
                subscriber.was_written_through(base, target.delivered, target.partial);
            }
        }
        let counters = &self.shared.counters;
        bump(&counters.emitted, messages as u64);
        let receivers = self
            .subscribers
            .values()
            .filter(|s| s.is_subscriber())
            .count();
        if receivers == 0 {
            bump(&counters.dropped_no_subscriber, messages as u64);
            if self.options.replay == 0 {
                // Numbered all the same, so that cursors count what was
                // missed; then let go at once.
                for batch in taken.drain(..) {
                    self.log.append(batch);
                }
                self.taken = taken;
                self.trim_log();
                self.shared
                    .settled
                    .store(self.taken_total, Ordering::Release);
                return 0;
            }
        }
        let mut spare = Vec::new();
        let mut overflowed: HashMap<RawFd, ()> = HashMap::new();
        let mut gone = Vec::new();
        for batch in taken.drain(..) {
            let count = batch.message_count() as u64;
            let first = self.log.append_taken(batch, &mut spare);
            // The new messages may have joined a batch of the log's own:
            // they are [base, base + count) of the batch that holds them.
            let (batch, base) = self.log.locate(first);
            // Each message's fields are read once, for every filter at once.
            if !self.filters.is_empty() {
                let fields: Vec<MessageFields<'_>> = (base..base + count as usize)
                    .map(|i| message_fields(&batch.bytes[batch.start_of(i)..batch.ends[i] - 1]))
                    .collect();
                self.filters.evaluate(&fields);
            }
            for (&fd, subscriber) in self.subscribers.iter_mut() {
                if !subscriber.is_subscriber() {
                    continue;
                }
                let behind = overflowed.contains_key(&fd);
                let offered = match subscriber.filter {
                    None => subscriber.offer_all(&self.log, first, first + count, behind, counters),
                    Some(id) => subscriber.offer_filtered(
                        &self.log,
                        first,
                        self.filters.matches(id),
                        behind,
                        counters,
                    ),
                };
                match offered {
                    Offered::All => {}
                    Offered::Overflowed => {
                        overflowed.insert(fd, ());
                    }
                    Offered::PeerGone => gone.push(fd),
                }
            }
        }
        self.taken = taken;
        self.shared.backlog.recycle(spare);
        for target in &self.written.targets {
            if let Some(subscriber) = self.subscribers.get_mut(&target.fd) {
                subscriber.forget_written_through();
            }
        }
        for fd in gone {
            self.remove_subscriber(fd);
        }
        let to_write: Vec<RawFd> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.has_queue() && !s.waiting_for_room)
            .map(|(&fd, _)| fd)
            .collect();
        for fd in to_write {
            self.write_to(fd);
        }
        // Offers that found the kernel full made those subscribers wait for room.
        let changed: Vec<RawFd> = self
            .subscribers
            .iter()
            .filter(|(_, s)| interest(s) != s.registered)
            .map(|(&fd, _)| fd)
            .collect();
        for fd in changed {
            self.update_interest(fd);
        }
        if self.options.slow_policy == SlowPolicy::Disconnect {
            for &fd in overflowed.keys() {
                self.begin_closing(fd, Closing::TooSlow);
            }
        }
        self.trim_log();
        self.enforce_memory_limit(0, None);
        self.shared
            .settled
            .store(self.taken_total, Ordering::Release);
        messages as u64 - written_through
    }

    /// Lets go of the log batches no subscriber needs any more. A subscriber
    /// that stopped taking messages while the others went on would keep
    /// everything newer alive: it gets its own copy of what it still needs
    /// (within the memory limit; past it, it loses its queue instead).
    fn trim_log(&mut self) {
        if self.log.is_empty() {
            return;
        }
        let stalled: Vec<RawFd> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.pins_too_much(&self.log))
            .map(|(&fd, _)| fd)
            .collect();
        for fd in stalled {
            let needed = match self.subscribers.get(&fd) {
                Some(s) => s.log_ranges_size(&self.log),
                None => continue,
            };
            // A copy must fit the subscriber's own limit (a resumed history
            // may be larger than its buffer) as well as the memory limit.
            let within_its_buffer = self
                .subscribers
                .get(&fd)
                .is_some_and(|s| needed <= s.capacity());
            if within_its_buffer {
                self.enforce_memory_limit(needed, Some(fd));
            }
            let fits = within_its_buffer && self.held_total() + needed <= self.options.memory_limit;
            let Some(subscriber) = self.subscribers.get_mut(&fd) else {
                continue;
            };
            if fits {
                subscriber.detach_from_log(&self.log);
            }
            // A resumed history not filtered yet cannot be copied as it is:
            // past its limit, a subscriber that still pins the log loses its queue.
            if !fits || subscriber.pins_too_much(&self.log) {
                subscriber.discard_queue(&self.log, &self.shared.counters);
                if self.options.slow_policy == SlowPolicy::Disconnect {
                    self.begin_closing(fd, Closing::Memory);
                }
            }
        }
        self.release_log();
    }

    fn release_log(&mut self) {
        self.log.keep_ring(self.options.replay);
        let keep_from = self
            .subscribers
            .values()
            .filter_map(SubscriberConn::oldest_log_seq)
            .min()
            .unwrap_or(self.log.next_seq())
            .min(self.log.ring_seq());
        let mut recycled = Vec::new();
        self.log.trim(keep_from, |batch| recycled.push(batch));
        if !recycled.is_empty() {
            self.shared.backlog.recycle(recycled);
        }
        let counters = &self.shared.counters;
        let ring_messages = self.log.next_seq() - self.log.ring_seq();
        set(&counters.replay_bytes, self.log.ring_held());
        set(&counters.replay_messages, ring_messages);
        set(&counters.replay_oldest, self.log.ring_seq());
        set(&counters.next_seq, self.log.next_seq());
    }

    /// Notes where notifications went unnumbered (emit dropped them at once).
    fn note_unnumbered(&mut self) {
        let now = self.shared.unnumbered.load(Ordering::Relaxed);
        if now != self.unnumbered_seen {
            self.unnumbered_seen = now;
            self.unnumbered_before = Some(self.log.next_seq());
        }
    }

    /// Memory held for subscribers now: the log and every subscriber's own copies.
    fn held_total(&self) -> usize {
        self.log.footprint()
            + self
                .subscribers
                .values()
                .map(SubscriberConn::own_footprint)
                .sum::<usize>()
    }

    /// Makes room for `extra` more bytes under the memory limit: the
    /// subscribers holding the most (but `spare`) lose what is queued for them
    /// (counted in dropped_slow, reported by markers), and under the disconnect
    /// policy are closed too, until the total fits again.
    fn enforce_memory_limit(&mut self, extra: usize, spare: Option<RawFd>) {
        let limit = self.options.memory_limit;
        let mut total = self.held_total() + extra;
        if total <= limit {
            return;
        }
        // Connections on their way out (unread stats answers, error lines,
        // what a slow one had left) go first, before any subscriber loses
        // its queue: closing them early only loses what they would have lost
        // at linger. What they still held is counted in dropped_closed.
        let mut leaving: Vec<(usize, RawFd)> = self
            .subscribers
            .iter()
            .filter(|(&fd, s)| Some(fd) != spare && s.closing.is_some() && s.has_queue())
            .map(|(&fd, s)| (s.held(&self.log), fd))
            .collect();
        leaving.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        for (_, fd) in leaving {
            if total <= limit {
                return;
            }
            self.remove_subscriber(fd);
            self.release_log();
            total = self.held_total() + extra;
        }
        let mut holders: Vec<(usize, RawFd)> = self
            .subscribers
            .iter()
            .filter(|(&fd, s)| Some(fd) != spare && s.closing.is_none() && s.has_queue())
            .map(|(&fd, s)| (s.held(&self.log), fd))
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        for (_, fd) in holders {
            if total <= limit {
                break;
            }
            let Some(subscriber) = self.subscribers.get_mut(&fd) else {
                continue;
            };
            subscriber.discard_queue(&self.log, &self.shared.counters);
            if self.options.slow_policy == SlowPolicy::Disconnect {
                self.begin_closing(fd, Closing::Memory);
            }
            self.release_log();
            total = self.held_total() + extra;
        }
    }

    /// Close: no new subscribers; flush what is queued for up to the linger
    /// time, counted from now: whatever is still unwritten then is dropped and
    /// counted, however much was queued or however costly the filters.
    fn shut_down(mut self, events: &mut [libc::epoll_event]) {
        let deadline = Instant::now() + self.options.linger;
        if let Some(listener) = self.listener.take() {
            let _ = epoll_control(
                &self.epoll,
                libc::EPOLL_CTL_DEL,
                listener.raw(),
                0,
                LISTENER_TOKEN,
            );
        }
        // Nobody's request will be read now: what is held goes out as it is.
        for subscriber in self.subscribers.values_mut() {
            subscriber.release_hold();
        }
        let held: Vec<RawFd> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.has_queue())
            .map(|(&fd, _)| fd)
            .collect();
        for fd in held {
            self.write_to(fd);
        }
        self.take_and_distribute();
        while self.subscribers.values().any(SubscriberConn::has_queue) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let timeout = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            let ready = self.wait(events, timeout);
            for event in &events[..ready] {
                if event.u64 == WAKE_TOKEN {
                    self.shared.backlog.drain_wake_fd();
                } else if event.u64 != LISTENER_TOKEN {
                    self.serve_subscriber(event.u64, event.events);
                }
            }
            self.trim_log();
        }
        let remaining: Vec<RawFd> = self.subscribers.keys().copied().collect();
        for fd in remaining {
            self.remove_subscriber(fd);
        }
    }
}

/// Says why to a connection refused at accept, then closes it. The line is
/// tiny and the socket new, so one non-blocking send takes it; input the peer
/// already wrote is read first, so that the close is a clean end of stream.
fn refuse_at_accept(fd: &OwnedFd, message: &str, reason: Reason) {
    let line = lines::error(&reason, message);
    let mut scratch = [0u8; 4096];
    // SAFETY: reads into a live buffer of the given size; non-blocking.
    while unsafe {
        libc::recv(
            fd.raw(),
            scratch.as_mut_ptr().cast(),
            scratch.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    // SAFETY: writes from a live buffer; MSG_NOSIGNAL: never SIGPIPE in the host.
    unsafe {
        libc::send(
            fd.raw(),
            line.as_ptr().cast(),
            line.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn unix_now() -> f64 {
    unix_seconds(SystemTime::now())
}

/// A filter as the request wrote it.
fn filter_json(filter: &Filter) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (key, list) in [
        ("event_types", &filter.event_types),
        ("priorities", &filter.priorities),
        ("publishers", &filter.publishers),
    ] {
        if !list.is_empty() {
            object.insert(key.into(), list.clone().into());
        }
    }
    serde_json::Value::Object(object)
}
