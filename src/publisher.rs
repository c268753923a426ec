//! The publisher: what a daemon holds to emit notifications.

use std::cell::RefCell;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backlog::{Backlog, BacklogFull};
use crate::error::Error;
use crate::fork_guard;
use crate::json_line::{self, Layout};
use crate::options::Options;
use crate::server::{self, Shared};
use crate::socket_file::{CreatedFile, Listener, SocketAddress};
use crate::stats::{bump, Counters, Stats};
use crate::top_level;

#[cold]
fn used_after_fork() -> Error {
    Error::new(
        libc::EBADF,
        "this notif handle belongs to the parent process: after fork(), its socket, thread and counters are the parent's; open a new publisher in the child",
    )
}

/// Relays JSON notifications to every subscriber connected to its Unix socket.
///
/// `emit` may be called from many threads at once (`Publisher` is `Sync`);
/// dropping the publisher closes it as [`Publisher::close`] does.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
    file: Option<CreatedFile>,
    address: SocketAddress,
    max_message: usize,
    /// Whether a replay ring keeps notifications for absent subscribers.
    replay: bool,
    /// The fork generation this publisher belongs to; in a child it is stale.
    generation: u64,
}

/// How long stats() waits at most for the server thread to catch up (it is
/// microseconds unless the machine is overloaded, or the thread is gone).
const SETTLE_WAIT: Duration = Duration::from_millis(100);

thread_local! {
    /// Where pretty-printed input is compacted before it is queued, so the
    /// backlog lock is held only for a memcpy.
    static COMPACTION_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Publisher {
    /// Binds a Unix socket at `path` (or the abstract name `@name`) with the
    /// default options and starts serving it.
    pub fn open(path: impl AsRef<Path>) -> Result<Publisher, Error> {
        Publisher::open_with(path, &Options::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: &Options) -> Result<Publisher, Error> {
        Publisher::open_bytes(path.as_ref().as_os_str().as_bytes(), options)
    }

    /// Like [`Publisher::open_with`], for a path given as raw bytes.
    pub fn open_bytes(path: &[u8], options: &Options) -> Result<Publisher, Error> {
        let options = &options.resolved()?;
        let address = SocketAddress::parse(path)?;
        fork_guard::install_fork_handlers();
        let backlog =
            Backlog::new(options.backlog).map_err(|e| Error::os("cannot create an eventfd", e))?;
        let listener = Listener::bind(&address, options)?;
        Publisher::start(listener, address, backlog, options).map_err(|(listener, err)| {
            if let Some(file) = listener.file {
                file.remove_if_ours();
            }
            err
        })
    }

    /// Serves a socket that is already bound and listening: one systemd passed
    /// (LISTEN_FDS) or one the daemon made itself. On success the publisher owns
    /// `fd` and closes it on close, but never removes its socket file, which it
    /// did not create (mode and group options do not apply either). On error
    /// `fd` is left open and unchanged but for O_NONBLOCK and FD_CLOEXEC.
    pub fn open_fd(fd: std::os::fd::RawFd, options: &Options) -> Result<Publisher, Error> {
        let options = &options.resolved()?;
        fork_guard::install_fork_handlers();
        // Check the caller's descriptor before opening any of ours: a number
        // the caller just closed would otherwise be reused by our eventfd.
        let (listener, address) = Listener::adopt(fd)?;
        let backlog = match Backlog::new(options.backlog) {
            Ok(backlog) => backlog,
            Err(e) => {
                listener.fd.into_raw(); // the caller keeps its descriptor
                return Err(Error::os("cannot create an eventfd", e));
            }
        };
        Publisher::start(listener, address, backlog, options).map_err(|(listener, err)| {
            listener.fd.into_raw(); // the caller keeps its descriptor
            err
        })
    }

    fn start(
        listener: Listener,
        address: SocketAddress,
        backlog: Backlog,
        options: &Options,
    ) -> Result<Publisher, (Listener, Error)> {
        let shared = Arc::new(Shared {
            subscribers: AtomicUsize::new(0),
            backlog,
            counters: Counters::default(),
            epoch: random_epoch(),
            unnumbered: AtomicU64::new(0),
            settled: AtomicU64::new(0),
        });
        let Listener { fd, file } = listener;
        let listen_fd = fd.raw();
        match server::spawn(Arc::clone(&shared), fd, options.clone(), absolute(&address)) {
            Ok(server) => Ok(Publisher {
                shared,
                server: Some(server),
                file,
                address,
                max_message: options.max_message,
                replay: options.replay > 0,
                generation: fork_guard::generation(),
            }),
            Err((fd, e)) => {
                debug_assert_eq!(fd.raw(), listen_fd);
                Err((
                    Listener { fd, file },
                    Error::os("cannot start the notif server thread", e),
                ))
            }
        }
    }

    /// Where this publisher listens.
    pub fn address(&self) -> &SocketAddress {
        &self.address
    }

    /// Queues one notification for every connected subscriber and returns how
    /// many were connected. Never blocks and never waits for a subscriber.
    ///
    /// With nobody connected and no replay ring it returns `Ok(0)` after one
    /// atomic load, without looking at `json`. Otherwise (a subscriber, or a
    /// replay ring, which keeps it for subscribers that resume) `json` must be
    /// exactly one JSON object in UTF-8; it is sent as one compact line.
    ///
    /// Errors: EINVAL (not one JSON object, or its first member is named
    /// `notif`, which is reserved for the protocol's control lines), EMSGSIZE (compact line larger than
    /// max_message), EAGAIN (backlog full; dropped and counted), EBADF (used in
    /// a child process after fork()).
    #[inline]
    pub fn emit(&self, json: &[u8]) -> Result<usize, Error> {
        self.check_current_process()?;
        let subscribers = self.shared.subscribers.load(Ordering::Acquire);
        if subscribers == 0 && !self.replay {
            bump(&self.shared.counters.dropped_no_subscriber, 1);
            bump(&self.shared.unnumbered, 1);
            return Ok(0);
        }
        self.queue(json)?;
        Ok(subscribers)
    }

    /// Whether this handle belongs to this process (false in a child after fork()).
    #[inline]
    pub fn is_current_process(&self) -> bool {
        self.generation == fork_guard::generation()
    }

    /// EBADF in a child process after fork(), naming what to do instead: the
    /// one error of every use of a parent's publisher there.
    #[inline]
    pub fn check_current_process(&self) -> Result<(), Error> {
        if self.is_current_process() {
            return Ok(());
        }
        Err(used_after_fork())
    }

    /// Subscribers connected now: one atomic load. Without a replay ring, a
    /// caller whose notifications are costly to build (serialising, masking)
    /// may ask this first and skip the work when it is 0, then call
    /// [`Publisher::skip`] to count the notification it does not emit. With a
    /// replay ring ([`Publisher::keeps_replay`]) it must emit every
    /// notification: the ring keeps what is emitted while nobody is connected
    /// for the subscribers that resume. Connections that only asked for stats
    /// are not subscribers.
    #[inline]
    pub fn subscribers(&self) -> usize {
        if self.generation != fork_guard::generation() {
            return 0;
        }
        self.shared.subscribers.load(Ordering::Acquire)
    }

    /// Whether this publisher keeps a replay ring (`Options::set_replay` > 0):
    /// then every notification must be emitted, subscribers or not.
    #[inline]
    pub fn keeps_replay(&self) -> bool {
        self.replay
    }

    /// Counts a notification the caller chose not to build because nobody
    /// was listening (see [`Publisher::subscribers`]), in dropped_no_subscriber,
    /// exactly as emit would have.
    #[inline]
    pub fn skip(&self) {
        bump(&self.shared.counters.dropped_no_subscriber, 1);
        bump(&self.shared.unnumbered, 1);
    }

    /// The epoch of this open: cursors of notifications of other opens name
    /// another one.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    fn queue(&self, json: &[u8]) -> Result<(), Error> {
        let counters = &self.shared.counters;
        let layout = json_line::scan(json).map_err(|e| {
            bump(&counters.rejected, 1);
            Error::new(libc::EINVAL, format!("notification rejected: {e}"))
        })?;
        if top_level::first_member_is_reserved(json) {
            bump(&counters.rejected, 1);
            return Err(top_level::reserved_name_refusal());
        }
        let pushed = match layout {
            Layout::Compact => {
                if json.len() > self.max_message {
                    bump(&counters.rejected, 1);
                    return Err(self.too_large(json.len()));
                }
                self.shared.backlog.push(json, counters)
            }
            Layout::NeedsCompaction => COMPACTION_SCRATCH.with(|scratch| {
                let mut compact = scratch.borrow_mut();
                compact.clear();
                json_line::compact_into(json, &mut compact);
                if compact.len() > self.max_message {
                    bump(&counters.rejected, 1);
                    return Err(self.too_large(compact.len()));
                }
                let pushed = self.shared.backlog.push(&compact, counters);
                // Do not let one huge message pin memory in every thread that emitted it.
                if compact.capacity() > 64 * 1024 {
                    *compact = Vec::new();
                }
                Ok(pushed)
            })?,
        };
        match pushed {
            Ok(()) => Ok(()),
            Err(BacklogFull) => {
                bump(&counters.dropped_backlog, 1);
                Err(Error::new(
                    libc::EAGAIN,
                    "notification dropped: the backlog to the notif server thread is full (the host emits faster than it can send)",
                ))
            }
        }
    }

    fn too_large(&self, size: usize) -> Error {
        Error::new(
            libc::EMSGSIZE,
            format!("notification rejected: {size} bytes once compact, over the max_message limit of {}", self.max_message),
        )
    }

    /// The publisher's counters now. It first lets the server thread take
    /// what was emitted before the call (microseconds; at most 100 ms on an
    /// overloaded machine), so that the gauges count every notification.
    pub fn stats(&self) -> Stats {
        if self.generation == fork_guard::generation() {
            self.settle();
        }
        let mut stats = self
            .shared
            .counters
            .snapshot(self.shared.subscribers.load(Ordering::Acquire) as u64);
        // In a forked child the backlog lock may be held by a thread that does
        // not exist there: never touch it (the counters are plain atomics).
        if self.generation == fork_guard::generation() {
            // Messages still in the backlog are emitted but not yet counted by the server thread.
            stats.emitted += self.shared.backlog.pending_messages() as u64;
        }
        stats
    }

    /// Lets the server thread catch up with what was emitted before this
    /// call, for up to SETTLE_WAIT: notifications emitters wrote through are
    /// numbered and kept for the replay ring only when it next takes them, so
    /// the gauges (next_seq, replay_*) would lag otherwise. Costs nothing
    /// when everything emitted was taken already.
    fn settle(&self) {
        let target = self.shared.backlog.pushed();
        if self.shared.settled.load(Ordering::Acquire) >= target {
            return;
        }
        self.shared.backlog.nudge();
        let deadline = Instant::now() + SETTLE_WAIT;
        while self.shared.settled.load(Ordering::Acquire) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Stops serving: removes the socket file (if it is still ours), flushes
    /// queued messages to subscribers for up to the linger time, closes every
    /// descriptor and joins the server thread. Returns the final counters.
    ///
    /// In a child process after fork() it only releases the handle: the
    /// descriptors were closed at fork, the parent's socket file and thread are
    /// left alone, and memory owned by the parent's server thread (which does
    /// not exist in the child) stays allocated until the child exits or execs.
    pub fn close(mut self) -> Stats {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Stats {
        // Already shut down (close() then drop): nothing left to do.
        let Some(server) = self.server.take() else {
            return Stats::default();
        };
        if self.generation != fork_guard::generation() {
            std::mem::forget(server); // that thread does not exist here
            if let Some(file) = self.file.take() {
                std::mem::forget(file);
            }
            return Stats::default();
        }
        // Remove the file first so nobody new connects to a publisher on its way out.
        if let Some(file) = self.file.take() {
            file.remove_if_ours();
        }
        self.shared.backlog.request_stop();
        let _ = server.join();
        self.stats()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A random number to tell this open of a publisher from every other
/// (getrandom(2); the clock and the pid where it is unavailable).
fn random_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most 8 bytes into a live buffer.
    let got =
        unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if got == 8 {
        return u64::from_ne_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ (&bytes as *const _ as u64)
}

/// The address as the stats answer shows it: a relative path made absolute, so
/// a monitoring tool knows which socket answered.
fn absolute(address: &SocketAddress) -> String {
    match address {
        SocketAddress::File(path) if path.is_relative() => std::env::current_dir().map_or_else(
            |_| address.to_string(),
            |dir| dir.join(path).display().to_string(),
        ),
        _ => address.to_string(),
    }
}
