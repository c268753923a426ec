//! The thread that serves one publisher: it owns the listening socket and every
//! subscriber socket, all non-blocking under one epoll instance, takes batches
//! of messages from the backlog into the shared message log and writes them to
//! each subscriber.
//!
//! What a peer can make the library spend, and who owns each budget:
//!
//! | budget | owner | bound |
//! |---|---|---|
//! | the host's threads' time | `backlog::write_through` | emitters write only to trusted peers (root, the publisher's user): never a syscall for another user's socket |
//! | descriptors | `admission` | a reserve of RLIMIT_NOFILE left to the host; `max_connections_per_uid` per user, `max_subscribers` in all |
//! | memory | `memory` | one ledger against `memory_limit`: log, queues, copies, control lines and stats answers, filters, unfinished requests |
//! | the server thread's time per send | `send_cost` | a peer whose writes cost far more than their bytes is cut off (`too_costly`) |
//! | the server thread's time per round | `lifecycle` (`continue_histories`), `connection::history` | a resumed history reads at most 512 entries per step; all of them together 1,024 per round, in turn |
//! | a stats answer | `stats_answer` | at most 100 subscribers listed, filters shown to the privileged only, bounded in size |
//! | a filter's cost per notification | `filter_set` | one cached verdict per field value, shared by equal filters |
//! | a request's time | `connection::request_reader`, `timers` | one line of at most 64 KiB, finished within REQUEST_TIMEOUT |
//!
//! Layout: `mod.rs` (the loop and its waits), `admission` (accepting),
//! `requests` (a connection's one request and where its stream starts),
//! `fanout` (taking what emitters queued, numbering it, offering it),
//! `lifecycle` (socket events, writes, closing, removal, close's flush),
//! `timers` (deadlines and sleep), `memory`, `stats_answer`, `send_cost`,
//! `table` (the connections and their counts), `filter_set`, `message_log`,
//! `peer_credentials`, and `connection/` (one connection: its phase, queue,
//! offers, history, hold, socket I/O and request reader).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

mod admission;
mod connection;
mod fanout;
mod filter_set;
mod lifecycle;
mod memory;
mod message_log;
mod peer_credentials;
mod requests;
mod send_cost;
mod stats_answer;
mod table;
mod timers;

use crate::backlog::write_through::{WriteThrough, MAX_TARGETS};
use crate::backlog::{Backlog, Batch};
use crate::fork_guard::OwnedFd;
use crate::options::{Options, SlowPolicy};
use crate::stats::{bump, set, Counters};
use crate::subscription::{lines, message_fields, MessageFields, Reason, Request, Start};
use admission::Admission;
use connection::{Closing, Flush, Input, Offered, Peer, Phase, SubscriberConn, ONE_REQUEST};
use filter_set::FilterSet;
use message_log::MessageLog;
use peer_credentials::{peer_allowed, peer_credentials};
use table::Connections;

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
    /// Every connection, and the counts that follow from their phases.
    connections: Connections,
    log: MessageLog,
    filters: FilterSet,
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
    /// Connections with more of a resumed history to read: each gets one
    /// step per round (see continue_histories).
    history_turns: Vec<RawFd>,
    /// Who may connect, and how many per user (the descriptor budget).
    admission: Admission,
    /// Memory unfinished request lines take (see memory.rs).
    request_bytes: usize,
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
                // SAFETY: geteuid never fails.
                let admission =
                    Admission::new(options.max_connections_per_uid, unsafe { libc::geteuid() });
                let filters = FilterSet::new(options.memory_limit);
                let server = Server {
                    shared,
                    options,
                    epoll,
                    listener,
                    listener_paused_until: None,
                    connections: Connections::default(),
                    log: MessageLog::default(),
                    filters,
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
                    history_turns: Vec::new(),
                    admission,
                    request_bytes: 0,
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
            self.continue_histories();
            self.resume_listener_if_due();
            self.send_due_heartbeats();
            self.close_overdue();
            self.trim_log();
            ready = if sent >= COALESCE_AFTER
                && self.shared.backlog.prepare_to_coalesce(COALESCE_BYTES)
            {
                self.wait_briefly(&mut events, COALESCE_WAIT)
            } else if sent > 0 || !self.history_turns.is_empty() {
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
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn unix_now() -> f64 {
    unix_seconds(SystemTime::now())
}
