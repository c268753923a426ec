//! The thread that serves one publisher: it owns the listening socket and every
//! subscriber socket, all non-blocking under one epoll instance, takes batches
//! of messages from the backlog and writes them to each subscriber.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

mod connection;
mod peer_credentials;

use crate::backlog::{Backlog, Batch};
use crate::fork_guard::OwnedFd;
use crate::options::{Options, SlowPolicy};
use crate::stats::{bump, Counters};
use crate::subscription::{lines, message_fields, MessageFields, Request};
use connection::{Closing, Flush, Input, Offered, SubscriberConn, ONE_REQUEST};
use peer_credentials::peer_allowed;

/// What emitting threads and the server thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Subscribers connected now: the one value notif_emit reads when nobody listens.
    pub(crate) subscribers: AtomicUsize,
    pub(crate) backlog: Backlog,
    pub(crate) counters: Counters,
}

const LISTENER_TOKEN: u64 = u64::MAX;
const WAKE_TOKEN: u64 = u64::MAX - 1;
/// After accept() fails for lack of descriptors or memory, stop watching the
/// listener this long: retrying at once would spin at 100% CPU.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

struct Server {
    shared: Arc<Shared>,
    options: Options,
    epoll: OwnedFd,
    listener: Option<OwnedFd>,
    listener_paused_until: Option<Instant>,
    subscribers: HashMap<RawFd, SubscriberConn>,
    /// Subscribers with a filter: while there are none, no message is looked at.
    filtering: usize,
    /// Subscribers that asked for heartbeats.
    heartbeating: usize,
    /// Subscribers being closed (see begin_closing).
    closing: usize,
    /// The socket's address as people write it, for the stats answer.
    address: String,
    /// Where chunks taken from the backlog land (kept to reuse its allocation).
    taken: Vec<Batch>,
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
                    filtering: 0,
                    heartbeating: 0,
                    closing: 0,
                    address,
                    taken: Vec::new(),
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
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            self.take_and_distribute();
            if self.shared.backlog.stop_requested() {
                break;
            }
            let timeout = if self.shared.backlog.prepare_to_sleep() {
                self.sleep_timeout_ms()
            } else {
                0
            };
            let ready = self.wait(&mut events, timeout);
            for event in &events[..ready] {
                self.dispatch(*event);
            }
            self.resume_listener_if_due();
            self.send_due_heartbeats();
            self.close_overdue();
        }
        self.shut_down(&mut events);
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

    fn sleep_timeout_ms(&self) -> libc::c_int {
        let wake_at = [
            self.listener_paused_until,
            self.next_heartbeat(),
            self.next_closing_deadline(),
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

    fn next_closing_deadline(&self) -> Option<Instant> {
        if self.closing == 0 {
            return None;
        }
        self.subscribers
            .values()
            .filter_map(|s| s.closing_deadline)
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
            let unix_seconds = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            subscriber.queue_control(lines::heartbeat((unix_seconds * 1000.0).round() / 1000.0));
            self.write_to(fd);
        }
    }

    fn dispatch(&mut self, event: libc::epoll_event) {
        let token = event.u64;
        match token {
            LISTENER_TOKEN => self.accept_all(),
            WAKE_TOKEN => self.shared.backlog.drain_wake_fd(),
            _ => self.serve_subscriber(token as RawFd, event.events),
        }
    }

    fn serve_subscriber(&mut self, fd: RawFd, ready: u32) {
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
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
                Input::Invalid(why) => self.refuse_request(fd, &why),
                Input::PeerStoppedSending => {
                    subscriber.reading = false;
                    self.update_interest(fd);
                }
                Input::PeerGone => {
                    self.remove_subscriber(fd);
                    return;
                }
            }
        }
        if ready & libc::EPOLLOUT as u32 != 0 {
            if let Some(subscriber) = self.subscribers.get_mut(&fd) {
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
        let mut outcome = subscriber.flush(&self.shared.counters);
        // Drained means it has room again: a subscriber with markers hears
        // about its drops now, not only when the next notification comes.
        if outcome == Flush::Drained
            && subscriber.closing.is_none()
            && subscriber.has_unreported_drops()
        {
            subscriber.report_drops();
            outcome = subscriber.flush(&self.shared.counters);
        }
        match outcome {
            Flush::Drained => {
                if subscriber.closing.is_some() {
                    subscriber.discard_pending_input();
                    self.remove_subscriber(fd);
                } else if subscriber.waiting_for_room {
                    subscriber.waiting_for_room = false;
                    self.update_interest(fd);
                }
            }
            Flush::Blocked => {
                if !subscriber.waiting_for_room {
                    subscriber.waiting_for_room = true;
                    self.update_interest(fd);
                }
            }
            Flush::PeerGone => self.remove_subscriber(fd),
        }
    }

    fn handle_request(&mut self, fd: RawFd, line: &[u8], followed_by_more: bool) {
        let request = match Request::parse(line) {
            Ok(_) if followed_by_more => return self.refuse_request(fd, ONE_REQUEST),
            Ok(request) => request,
            Err(why) => return self.refuse_request(fd, &why),
        };
        let stats_line = matches!(request, Request::Stats).then(|| self.stats_line());
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        match request {
            Request::Stats => {
                bump(&self.shared.counters.stats_requests, 1);
                subscriber.queue_control(stats_line.expect("built above"));
                return self.begin_closing(fd, Closing::Answered);
            }
            Request::Subscribe {
                filter,
                markers,
                heartbeat,
            } => {
                subscriber.subscribe(filter, markers, heartbeat);
                self.filtering += usize::from(subscriber.filter.is_some());
                self.heartbeating += usize::from(subscriber.heartbeat.is_some());
            }
        }
        self.write_to(fd);
    }

    /// Answers a bad request with an error line, then closes the connection.
    fn refuse_request(&mut self, fd: RawFd, why: &str) {
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        bump(&self.shared.counters.bad_requests, 1);
        subscriber.queue_control(lines::error(why));
        self.begin_closing(fd, Closing::BadRequest);
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
        subscriber.closing = Some(why);
        subscriber.closing_deadline = Some(Instant::now() + self.options.linger);
        subscriber.reading = false;
        self.closing += 1;
        self.publish_subscriber_count();
        self.update_interest(fd);
        self.write_to(fd);
    }

    /// Tells emitters how many subscribers would receive a message now: the
    /// ones being closed get nothing more, so they do not count.
    fn publish_subscriber_count(&self) {
        self.shared
            .subscribers
            .store(self.subscribers.len() - self.closing, Ordering::Release);
    }

    /// Closes subscribers whose closing took longer than linger allows.
    fn close_overdue(&mut self) {
        if self.closing == 0 {
            return;
        }
        let now = Instant::now();
        let overdue: Vec<RawFd> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.closing_deadline.is_some_and(|deadline| now >= deadline))
            .map(|(&fd, _)| fd)
            .collect();
        for fd in overdue {
            self.remove_subscriber(fd);
        }
    }

    fn stats_line(&self) -> Vec<u8> {
        let mut stats = self.shared.counters.snapshot(self.subscribers.len() as u64);
        stats.emitted += self.shared.backlog.pending_messages() as u64;
        lines::stats(&stats.fields(), crate::VERSION, &self.address)
    }

    fn update_interest(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.subscribers.get(&fd) {
            if epoll_control(
                &self.epoll,
                libc::EPOLL_CTL_MOD,
                fd,
                interest(subscriber),
                fd as u64,
            )
            .is_err()
            {
                self.remove_subscriber(fd);
            }
        }
    }

    fn accept_all(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let listener_fd = listener.raw();
        loop {
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
            if !peer_allowed(fd.raw(), &self.options.allow_uids, &self.options.allow_gids) {
                bump(&counters.denied, 1);
                bump(&counters.disconnected, 1);
                continue; // dropping fd closes it at once
            }
            if self.subscribers.len() >= self.options.max_subscribers {
                bump(&counters.refused, 1);
                bump(&counters.disconnected, 1);
                continue; // dropping fd closes it at once
            }
            let subscriber = SubscriberConn::new(fd, self.options.subscriber_buffer);
            let raw = subscriber.fd.raw();
            if watch(&self.epoll, raw, interest(&subscriber), raw as u64).is_err() {
                bump(&counters.disconnected, 1);
                continue;
            }
            self.subscribers.insert(raw, subscriber);
            self.publish_subscriber_count();
        }
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
            self.filtering -= usize::from(subscriber.filter.is_some());
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

    /// Takes what emitters queued and hands it to every subscriber.
    fn take_and_distribute(&mut self) {
        let mut taken = std::mem::take(&mut self.taken);
        self.shared.backlog.take(&mut taken);
        if taken.is_empty() {
            self.taken = taken;
            return;
        }
        let messages: usize = taken.iter().map(Batch::message_count).sum();
        let counters = &self.shared.counters;
        bump(&counters.emitted, messages as u64);
        if self.subscribers.is_empty() {
            bump(&counters.dropped_no_subscriber, messages as u64);
            self.shared.backlog.recycle(taken.drain(..));
            self.taken = taken;
            return;
        }
        let chunks: Vec<Arc<Batch>> = taken.drain(..).map(Arc::new).collect();
        self.taken = taken;
        // Each message's fields are read once, for all filtering subscribers.
        let fields: Vec<Vec<MessageFields<'_>>> = if self.filtering > 0 {
            chunks
                .iter()
                .map(|chunk| {
                    chunk
                        .ends
                        .iter()
                        .enumerate()
                        .map(|(i, &end)| message_fields(&chunk.bytes[chunk.start_of(i)..end - 1]))
                        .collect()
                })
                .collect()
        } else {
            vec![Vec::new(); chunks.len()]
        };
        let counters = &self.shared.counters;
        let mut to_remove = Vec::new();
        let mut to_close = Vec::new();
        let mut to_write = Vec::new();
        let mut receivers = 0;
        for (&fd, subscriber) in self.subscribers.iter_mut() {
            if subscriber.closing.is_some() {
                continue;
            }
            receivers += 1;
            let mut overflowed = false;
            let mut gone = false;
            for (chunk, chunk_fields) in chunks.iter().zip(&fields) {
                match subscriber.offer(chunk, chunk_fields, overflowed, counters) {
                    Offered::All => {}
                    Offered::Overflowed => overflowed = true,
                    Offered::PeerGone => {
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                to_remove.push(fd);
            } else if overflowed && self.options.slow_policy == SlowPolicy::Disconnect {
                to_close.push(fd);
            } else {
                to_write.push(fd);
            }
        }
        drop(fields);
        if receivers == 0 {
            // Only subscribers on their way out: nobody gets these.
            bump(&counters.dropped_no_subscriber, messages as u64);
        }
        for fd in to_write {
            self.write_to(fd);
        }
        for fd in to_close {
            self.begin_closing(fd, Closing::TooSlow);
        }
        for fd in to_remove {
            self.remove_subscriber(fd);
        }
        // Usually every subscriber wrote everything at once: reuse the chunks.
        self.shared.backlog.recycle(
            chunks
                .into_iter()
                .filter_map(|chunk| Arc::try_unwrap(chunk).ok()),
        );
    }

    /// Close: no new subscribers; flush what is queued for up to the linger time.
    fn shut_down(mut self, events: &mut [libc::epoll_event]) {
        if let Some(listener) = self.listener.take() {
            let _ = epoll_control(
                &self.epoll,
                libc::EPOLL_CTL_DEL,
                listener.raw(),
                0,
                LISTENER_TOKEN,
            );
        }
        self.take_and_distribute();
        let deadline = Instant::now() + self.options.linger;
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
                    self.serve_subscriber(event.u64 as RawFd, event.events);
                }
            }
        }
        let remaining: Vec<RawFd> = self.subscribers.keys().copied().collect();
        for fd in remaining {
            self.remove_subscriber(fd);
        }
    }
}
