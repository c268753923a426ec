//! The thread that serves one publisher: it owns the listening socket and every
//! subscriber socket, all non-blocking under one epoll instance, takes batches
//! of messages from the backlog and writes them to each subscriber.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backlog::{Backlog, Batch};
use crate::fork_guard::OwnedFd;
use crate::options::{Options, SlowPolicy};
use crate::stats::{bump, Counters};
use crate::subscriber_conn::{Flush, Input, SubscriberConn};

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
    /// Where chunks taken from the backlog land (kept to reuse its allocation).
    taken: Vec<Batch>,
}

/// Starts the server thread for a listening socket.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    listener: OwnedFd,
    options: Options,
) -> io::Result<JoinHandle<()>> {
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
    let server = Server {
        shared,
        options,
        epoll,
        listener: Some(listener),
        listener_paused_until: None,
        subscribers: HashMap::new(),
        taken: Vec::new(),
    };
    // The host's signals are for the host's threads: ours starts with every
    // signal blocked, so it never runs a handler or takes a process-directed
    // signal (SIGINT, SIGTERM...) that the host means to receive elsewhere.
    with_all_signals_blocked(|| {
        std::thread::Builder::new()
            .name("notif-server".into())
            .spawn(move || {
                let shared = Arc::clone(&server.shared);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || server.run()))
                    .is_err()
                {
                    // A bug must not take the host down. Our sockets are closed by
                    // now (dropped while unwinding), so tell emitters nobody listens.
                    shared.subscribers.store(0, Ordering::Release);
                }
            })
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
        match self.listener_paused_until {
            Some(until) => {
                until.saturating_duration_since(Instant::now()).as_millis() as libc::c_int + 1
            }
            None => -1,
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
            self.remove_subscriber(fd, false);
            return;
        }
        if ready & libc::EPOLLIN as u32 != 0 {
            match subscriber.read_input() {
                Input::Idle => {}
                Input::PeerStoppedSending => {
                    subscriber.reading = false;
                    self.update_interest(fd);
                }
                Input::PeerGone => {
                    self.remove_subscriber(fd, false);
                    return;
                }
            }
        }
        let Some(subscriber) = self.subscribers.get_mut(&fd) else {
            return;
        };
        if ready & libc::EPOLLOUT as u32 != 0 {
            match subscriber.flush(&self.shared.counters) {
                Flush::Drained => {
                    subscriber.waiting_for_room = false;
                    self.update_interest(fd);
                }
                Flush::Blocked => {}
                Flush::PeerGone => self.remove_subscriber(fd, false),
            }
        }
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
                self.remove_subscriber(fd, false);
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
            self.shared
                .subscribers
                .store(self.subscribers.len(), Ordering::Release);
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
    fn remove_subscriber(&mut self, fd: RawFd, by_us: bool) {
        if let Some(subscriber) = self.subscribers.remove(&fd) {
            let counters = &self.shared.counters;
            bump(
                &counters.dropped_closed,
                subscriber.queued_messages() as u64,
            );
            if by_us {
                bump(&counters.disconnected, 1);
            }
            let _ = epoll_control(&self.epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
            self.shared
                .subscribers
                .store(self.subscribers.len(), Ordering::Release);
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
        let mut to_remove = Vec::new();
        for (&fd, subscriber) in self.subscribers.iter_mut() {
            bump(&counters.fanout, messages as u64);
            match offer(subscriber, &chunks, counters, self.options.slow_policy) {
                Offer::Keep => {}
                Offer::Remove { by_us } => {
                    to_remove.push((fd, by_us));
                    continue;
                }
            }
            match subscriber.flush(counters) {
                Flush::Drained => {}
                Flush::Blocked if !subscriber.waiting_for_room => {
                    subscriber.waiting_for_room = true;
                    let events = interest(subscriber);
                    if epoll_control(&self.epoll, libc::EPOLL_CTL_MOD, fd, events, fd as u64)
                        .is_err()
                    {
                        to_remove.push((fd, false));
                    }
                }
                Flush::Blocked => {}
                Flush::PeerGone => to_remove.push((fd, false)),
            }
        }
        for (fd, by_us) in to_remove {
            self.remove_subscriber(fd, by_us);
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
            self.remove_subscriber(fd, false);
        }
    }
}

enum Offer {
    Keep,
    Remove { by_us: bool },
}

/// Queues new chunks for one subscriber, as many messages as fit its buffer;
/// the rest are dropped for it (or it is disconnected, by policy).
fn offer(
    subscriber: &mut SubscriberConn,
    chunks: &[Arc<Batch>],
    counters: &Counters,
    policy: SlowPolicy,
) -> Offer {
    for (index, chunk) in chunks.iter().enumerate() {
        let messages = chunk.message_count();
        let mut fits = subscriber.room_for(chunk);
        if fits < messages && subscriber.has_queue() {
            // Make room by writing first: the kernel may have drained since.
            if subscriber.flush(counters) == Flush::PeerGone {
                let unsent: usize = chunks[index..].iter().map(|c| c.message_count()).sum();
                bump(&counters.dropped_closed, unsent as u64);
                return Offer::Remove { by_us: false };
            }
            fits = subscriber.room_for(chunk);
        }
        subscriber.enqueue(chunk, fits);
        if fits < messages {
            let later: usize = chunks[index + 1..].iter().map(|c| c.message_count()).sum();
            match policy {
                // Once one message does not fit, later ones are dropped too, so
                // the subscriber sees one gap rather than a scattering of them.
                SlowPolicy::Drop => {
                    bump(&counters.dropped_slow, (messages - fits + later) as u64);
                    return Offer::Keep;
                }
                SlowPolicy::Disconnect => {
                    bump(&counters.dropped_slow, (messages - fits + later) as u64);
                    return Offer::Remove { by_us: true };
                }
            }
        }
    }
    Offer::Keep
}
