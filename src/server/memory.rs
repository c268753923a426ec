//! The memory budget (`memory_limit`): one ledger of every byte the
//! publisher holds because of a peer.
//!
//! Counted:
//! - the message log (the replay ring, and what subscribers still need);
//! - each subscriber's own spans: copies for filtered and detached
//!   subscribers, control lines (acknowledgements, markers, error lines,
//!   stats answers being written), resumed histories' verdict caches;
//! - filters, each stored once however many subscribers share it, and their
//!   verdict caches (an eighth of the limit at most);
//! - unfinished request lines (a peer may leave one hanging for
//!   REQUEST_TIMEOUT).
//!
//! The last two are "fixed": discarding a queue cannot give them back. They
//! may take at most half the limit together; past it a new filter or a
//! growing request line is refused with the reason `memory`, so a peer can
//! never make the publisher drop a reader's notifications to keep its
//! filter. Queues take the rest: over the limit, the subscribers holding the
//! most lose their queue first (see enforce_memory_limit).
//!
//! Outside the ledger: the kernel's socket buffers (a share of each
//! subscriber's buffer, see connection::MAX_KERNEL_SHARE) and the backlog
//! of what emitters queued (the `backlog` option, its own budget).

use std::os::fd::RawFd;

use super::connection::{Closing, SubscriberConn};
use super::Server;
use crate::options::SlowPolicy;

impl Server {
    /// Memory that discarding queues cannot give back: filters and
    /// unfinished request lines.
    pub(super) fn fixed_held(&self) -> usize {
        self.filters.footprint() + self.request_bytes
    }

    /// What fixed memory may still grow by: half the limit, less what it holds.
    pub(super) fn fixed_room(&self) -> usize {
        (self.options.memory_limit / 2).saturating_sub(self.fixed_held())
    }

    /// Memory held for peers now: the log, every subscriber's own spans, and the fixed part.
    pub(super) fn held_total(&self) -> usize {
        self.log.footprint()
            + self
                .connections
                .values()
                .map(SubscriberConn::own_footprint)
                .sum::<usize>()
            + self.fixed_held()
    }

    /// Makes room for `extra` more bytes under the memory limit: the
    /// subscribers holding the most (but `spare`) lose what is queued for them
    /// (counted in dropped_slow, reported by markers), and under the disconnect
    /// policy are closed too, until the total fits again.
    pub(super) fn enforce_memory_limit(&mut self, extra: usize, spare: Option<RawFd>) {
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
            .connections
            .iter()
            .filter(|(&fd, s)| Some(fd) != spare && s.is_closing() && s.has_queue())
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
            .connections
            .iter()
            .filter(|(&fd, s)| Some(fd) != spare && !s.is_closing() && s.has_queue())
            .map(|(&fd, s)| (s.held(&self.log), fd))
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        for (_, fd) in holders {
            if total <= limit {
                break;
            }
            let Some(subscriber) = self.connections.get_mut(&fd) else {
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
}
